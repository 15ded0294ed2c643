//! End to end: a real OpenTelemetry SDK exports over OTLP/gRPC to `spyglass serve`, and the
//! traces are found through the native and the Jaeger API within a second of the export's
//! acknowledgement; span metrics then fill the services list and the dependency graph.

mod common;

use std::time::Duration;

use common::{checkout, get_json, provider, start_server, within};
use opentelemetry::trace::TracerProvider;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_traces_are_found_through_both_apis_within_a_second() {
    let server = start_server().await;
    let frontend = provider("frontend", server.grpc);
    let payments = provider("payments", server.grpc);
    let (ft, pt) = (frontend.tracer("shop"), payments.tracer("shop"));

    // frontend GET /checkout ─▶ frontend POST /charge (client) ─▶ payments POST /charge (error)
    let trace_id = checkout(&ft, &pt, true);

    // The acknowledgement: both exporters' batches answered by the server.
    payments.force_flush().unwrap();
    frontend.force_flush().unwrap();

    let ui = server.ui;
    let native = within(Duration::from_secs(1), || async {
        let (status, body) = get_json(ui, &format!("/api/v1/traces/{trace_id}")).await;
        status == 200 && body["spans"].as_array().map(Vec::len) == Some(3)
    })
    .await;
    assert!(
        native.is_some(),
        "trace not complete in the native API within 1 s of the ack"
    );
    let jaeger = within(Duration::from_secs(1), || async {
        let (status, body) = get_json(ui, &format!("/api/traces/{trace_id}")).await;
        status == 200 && body["data"][0]["spans"].as_array().map(Vec::len) == Some(3)
    })
    .await;
    assert!(jaeger.is_some(), "trace not in the Jaeger API within 1 s");
    let search = within(Duration::from_secs(1), || async {
        let (_, body) = get_json(
            ui,
            "/api/v1/traces?service=payments&status=error&attr=card.brand=visa",
        )
        .await;
        body["traces"][0]["trace_id"] == trace_id.as_str()
    })
    .await;
    assert!(
        search.is_some(),
        "trace not found by native search within 1 s"
    );
    let jaeger_search = within(Duration::from_secs(1), || async {
        let (_, body) = get_json(ui, "/api/traces?service=payments&lookback=1h").await;
        body["data"][0]["traceID"] == trace_id.as_str()
    })
    .await;
    assert!(
        jaeger_search.is_some(),
        "trace not found by Jaeger search within 1 s"
    );

    // Span metrics and the service graph are written every second here.
    let graph = within(Duration::from_secs(15), || async {
        let (_, services) = get_json(ui, "/api/v1/services").await;
        let (_, deps) = get_json(ui, "/api/v1/dependencies").await;
        let names: Vec<&str> = services["services"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
            .unwrap_or_default();
        let edge = deps["edges"].as_array().and_then(|edges| {
            edges
                .iter()
                .find(|e| e["client"] == "frontend" && e["server"] == "payments")
                .cloned()
        });
        names.contains(&"frontend")
            && names.contains(&"payments")
            && edge.is_some_and(|e| e["calls"] == 1.0 && e["errors"] == 1.0)
    })
    .await;
    assert!(
        graph.is_some(),
        "services and the failing edge never showed"
    );
    let (_, services) = get_json(ui, "/api/v1/services").await;
    let payments_health = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "payments")
        .unwrap();
    assert_eq!(payments_health["calls"], 1.0);
    assert_eq!(payments_health["error_ratio"], 1.0);
    let (_, jaeger_services) = get_json(ui, "/api/services").await;
    let mut names: Vec<String> = serde_json::from_value(jaeger_services["data"].clone()).unwrap();
    names.sort();
    assert_eq!(names, vec!["frontend", "payments"]);
    let (_, deps) = get_json(ui, "/api/dependencies").await;
    assert!(
        deps["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["parent"] == "frontend" && d["child"] == "payments" && d["callCount"] == 1),
        "{deps}"
    );
    let (_, ops) = get_json(ui, "/api/operations?service=payments&spanKind=server").await;
    assert_eq!(
        ops["data"],
        serde_json::json!([{"name": "POST /charge", "spanKind": "server"}])
    );

    frontend.shutdown().unwrap();
    payments.shutdown().unwrap();
}
