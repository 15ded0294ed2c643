//! A service is listed as soon as its first span is acknowledged, not at the next span-metrics
//! interval: a Jaeger or Grafana user who sends a first span and opens the service drop-down
//! finds it there.

mod common;

use std::time::Duration;

use common::{get_json, provider, start_server_with, within};
use opentelemetry::trace::{Span as _, SpanKind, Tracer, TracerProvider};
use serde_json::Value;

/// Span metrics written every minute: only the early write can list the service in time.
const CONFIG: &str = "[ingest]\nspan_metrics_interval_secs = 60\n";

fn names(list: &Value, field: Option<&str>) -> Vec<String> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| match field {
                    Some(f) => i[f].as_str(),
                    None => i.as_str(),
                })
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_span_lists_its_service_and_operation_at_once() {
    let server = start_server_with(tempfile::tempdir().unwrap(), CONFIG, &[]).await;
    let tracers = provider("first-service", server.grpc);
    let tracer = tracers.tracer("test");
    let mut span = tracer
        .span_builder("GET /first")
        .with_kind(SpanKind::Server)
        .start(&tracer);
    span.end();
    tracers.force_flush().unwrap();

    // Far below the 60 s interval; a generous bound for a busy machine.
    let limit = Duration::from_secs(10);
    let ui = server.ui;
    // Jaeger's lists are `data: [name]`; the native list is `services: [{name, …}]`.
    let listed = |path: &'static str, field: Option<&'static str>, want: &'static str| async move {
        let (status, body) = get_json(ui, path).await;
        let list = match field {
            Some(_) => &body["services"],
            None => &body["data"],
        };
        status == 200 && names(list, field).iter().any(|n| n == want)
    };
    let jaeger = within(limit, || listed("/api/services", None, "first-service")).await;
    let native = within(limit, || {
        listed(
            "/api/v1/services?start=now-1h",
            Some("name"),
            "first-service",
        )
    })
    .await;
    let operations = within(limit, || {
        listed("/api/services/first-service/operations", None, "GET /first")
    })
    .await;
    eprintln!("listed after: Jaeger {jaeger:?}, native {native:?}, operations {operations:?}");
    assert!(jaeger.is_some(), "Jaeger's /api/services lists the service");
    assert!(native.is_some(), "/api/v1/services lists the service");
    assert!(
        operations.is_some(),
        "Jaeger's operations list has the span's name"
    );
    tracers.shutdown().unwrap();
}
