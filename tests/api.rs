//! The HTTP API on a real socket, over a store holding a fixed data set: the native JSON API
//! and the Jaeger query API, their answers field by field, and their errors.

#[path = "../query/tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;

use common::{Layout, T0, trace_id};
use serde_json::Value;
use spyglass_query::{QueryConfig, QueryEngine};
use spyglass_store::Store;
use spyglass_ui::{EngineSlot, Readiness, UiServer};

/// Serves `store` on a free port; the server lives as long as the test's runtime.
async fn serve(store: Store) -> SocketAddr {
    serve_engine(QueryEngine::new(store, QueryConfig::default())).await
}

async fn serve_engine(engine: QueryEngine) -> SocketAddr {
    let slot = EngineSlot::default();
    slot.set(engine);
    let readiness = Readiness::default();
    readiness.set_ready();
    let server = UiServer::bind("127.0.0.1:0".parse().unwrap(), readiness, slot)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run(std::future::pending()));
    addr
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, json)
}

fn ids(spans: &Value, field: &str) -> Vec<String> {
    spans
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[field].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_scattered_trace_is_returned_once_and_whole_by_both_apis() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::scattered_trace_store(dir.path()).await;
    let addr = serve(store).await;
    let id = trace_id(7).to_hex();
    let expected_order: Vec<String> = [1u8, 2, 3, 4, 5, 6]
        .iter()
        .map(|n| common::span_id(7, *n).to_hex())
        .collect();

    // A time range far from the trace must not hide it.
    for query in ["", "?start=2020-01-01T00:00:00Z&end=2020-01-02T00:00:00Z"] {
        let (status, native) = get(addr, &format!("/api/v1/traces/{id}{query}")).await;
        assert_eq!(status, 200, "{native}");
        assert_eq!(
            ids(&native["spans"], "span_id"),
            expected_order,
            "native, tree order"
        );
        let depths: Vec<u64> = native["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["depth"].as_u64().unwrap())
            .collect();
        assert_eq!(depths, vec![0, 1, 2, 3, 1, 2]);
        assert_eq!(native["truncated"], false);
        assert_eq!(native["summary"]["span_count"], 6);
        assert_eq!(native["summary"]["root_name"], "GET /checkout");
    }
    // The tree view: the same spans in the same order, without their attributes and events.
    let (_, full) = get(addr, &format!("/api/v1/traces/{id}")).await;
    let (status, tree) = get(addr, &format!("/api/v1/traces/{id}?view=tree")).await;
    assert_eq!(status, 200, "{tree}");
    assert_eq!(ids(&tree["spans"], "span_id"), expected_order);
    assert_eq!(tree["summary"], full["summary"]);
    for (t, f) in tree["spans"]
        .as_array()
        .unwrap()
        .iter()
        .zip(full["spans"].as_array().unwrap())
    {
        for key in [
            "parent_span_id",
            "service_name",
            "name",
            "start_time_unix_nano",
            "duration_nano",
            "status",
            "depth",
            "child_count",
        ] {
            assert_eq!(t[key], f[key], "{key}");
        }
        assert!(t.get("attributes").is_none() && t.get("resource").is_none());
    }
    let jaeger_range = format!("?start={}&end={}", T0 / 1000 - 10, T0 / 1000 - 5);
    for query in ["".to_string(), jaeger_range] {
        let (status, jaeger) = get(addr, &format!("/api/traces/{id}{query}")).await;
        assert_eq!(status, 200, "{jaeger}");
        let spans = &jaeger["data"][0]["spans"];
        let mut got = ids(spans, "spanID");
        got.sort();
        let mut want = expected_order.clone();
        want.sort();
        assert_eq!(got, want, "jaeger: each span once");
    }
}

#[tokio::test]
async fn jaeger_answers_have_the_shape_the_jaeger_ui_reads() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(common::loaded_store(dir.path(), Layout::Split).await).await;

    let (status, body) = get(addr, &format!("/api/traces/{}", trace_id(2).to_hex())).await;
    assert_eq!(status, 200);
    for key in ["data", "total", "limit", "offset", "errors"] {
        assert!(body.get(key).is_some(), "envelope lacks {key}: {body}");
    }
    assert_eq!(body["errors"], Value::Null);
    let trace = &body["data"][0];
    assert_eq!(trace["traceID"], trace_id(2).to_hex());
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 3);

    let failing = spans
        .iter()
        .find(|s| s["spanID"] == common::span_id(2, 3).to_hex())
        .unwrap();
    assert_eq!(failing["operationName"], "POST /charge");
    assert_eq!(
        failing["startTime"],
        (T0 + 1010 * common::MS) / 1000,
        "microseconds"
    );
    assert_eq!(failing["duration"], 280_000, "microseconds");
    assert_eq!(failing["references"][0]["refType"], "CHILD_OF");
    assert_eq!(
        failing["references"][0]["spanID"],
        common::span_id(2, 2).to_hex()
    );
    assert_eq!(failing["references"][0]["traceID"], trace_id(2).to_hex());
    let tag = |span: &Value, key: &str| -> Value {
        span["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["key"] == key)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        tag(failing, "http.response.status_code"),
        serde_json::json!({"key": "http.response.status_code", "type": "int64", "value": 402})
    );
    assert_eq!(tag(failing, "http.route")["type"], "string");
    assert_eq!(
        tag(failing, "error"),
        serde_json::json!({"key": "error", "type": "bool", "value": true})
    );
    assert_eq!(tag(failing, "span.kind")["value"], "server");
    assert_eq!(tag(failing, "otel.status_code")["value"], "ERROR");
    assert_eq!(
        tag(failing, "otel.status_description")["value"],
        "card declined"
    );
    let log = &failing["logs"][0];
    assert_eq!(log["timestamp"], (T0 + 1200 * common::MS) / 1000);
    let field = |key: &str| {
        log["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == key)
            .cloned()
            .unwrap()
    };
    assert_eq!(field("event")["value"], "exception");
    assert_eq!(
        field("exception.message")["value"],
        "card declined by issuer"
    );

    // One process per service, referenced by every span.
    let processes = trace["processes"].as_object().unwrap();
    assert_eq!(processes.len(), 2);
    for span in spans {
        let process = &processes[span["processID"].as_str().unwrap()];
        assert!(process["serviceName"].is_string());
        assert!(
            process["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["key"] == "deployment.environment.name")
        );
    }

    // Links are FOLLOWS_FROM; typed attribute tags.
    let (_, cart) = get(addr, &format!("/api/traces/{}", trace_id(3).to_hex())).await;
    let get_cart = cart["data"][0]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["operationName"] == "GetCart")
        .cloned()
        .unwrap();
    let refs = get_cart["references"].as_array().unwrap();
    assert_eq!(refs[0]["refType"], "CHILD_OF");
    assert_eq!(refs[1]["refType"], "FOLLOWS_FROM");
    assert_eq!(refs[1]["traceID"], trace_id(1).to_hex());
    assert_eq!(tag(&get_cart, "cart.items")["type"], "int64");
    assert_eq!(
        tag(&get_cart, "cart.premium"),
        serde_json::json!({"key": "cart.premium", "type": "bool", "value": true})
    );
    assert_eq!(
        tag(&get_cart, "cart.total"),
        serde_json::json!({"key": "cart.total", "type": "float64", "value": 12.5})
    );

    // Search: Jaeger's error=true tag, durations, microsecond ranges.
    let range = format!("start={}&end={}", T0 / 1000, (T0 + 3_000_000_000) / 1000);
    let (status, found) = get(
        addr,
        &format!("/api/traces?service=payments&tags=%7B%22error%22%3A%22true%22%7D&{range}"),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    assert_eq!(found["data"][0]["traceID"], trace_id(2).to_hex());
    let (_, found) = get(
        addr,
        &format!("/api/traces?service=frontend&minDuration=100ms&{range}"),
    )
    .await;
    let mut traces: Vec<&str> = found["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap())
        .collect();
    traces.sort();
    assert_eq!(traces, vec![trace_id(1).to_hex(), trace_id(2).to_hex()]);

    let (status, missing) = get(addr, &format!("/api/traces/{}", trace_id(9).to_hex())).await;
    assert_eq!(status, 404);
    assert_eq!(missing["errors"][0]["code"], 404);
    let (status, bad) = get(addr, "/api/traces?service=x&minDuration=fast").await;
    assert_eq!(status, 400);
    assert!(
        bad["errors"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("minDuration"),
        "{bad}"
    );
}

#[tokio::test]
async fn native_search_sql_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(common::loaded_store(dir.path(), Layout::Split).await).await;

    let (status, page) = get(
        addr,
        "/api/v1/traces?service=payments&attr=http.route=/charge&min_duration=100ms&status=error",
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let traces = page["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 1);
    let summary = &traces[0];
    assert_eq!(summary["trace_id"], trace_id(2).to_hex());
    assert_eq!(summary["root_service"], "frontend");
    assert_eq!(summary["root_name"], "GET /checkout");
    assert_eq!(summary["span_count"], 3);
    assert_eq!(summary["error_count"], 3);
    assert_eq!(summary["duration_nano"], 300_000_000);
    assert_eq!(
        summary["start_time_unix_nano"],
        (T0 + 1_000_000_000).to_string()
    );
    assert_eq!(
        summary["services"],
        serde_json::json!([{"name": "frontend", "span_count": 2}, {"name": "payments", "span_count": 1}])
    );

    let (_, first) = get(addr, "/api/v1/traces?limit=2").await;
    assert_eq!(first["traces"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = get(addr, &format!("/api/v1/traces?limit=2&cursor={cursor}")).await;
    assert_eq!(second["traces"][0]["trace_id"], trace_id(1).to_hex());
    assert_eq!(second["next_cursor"], Value::Null);
    // The sample of the whole range: every match (three traces), as [start, duration, error].
    let (_, sampled) = get(addr, "/api/v1/traces?limit=1&sample=10").await;
    assert_eq!(sampled["traces"].as_array().unwrap().len(), 1);
    assert_eq!(sampled["sample"]["matched"], 3, "{sampled}");
    let points = sampled["sample"]["points"].as_array().unwrap();
    assert_eq!(points.len(), 3, "{sampled}");
    let first_start = (T0 + 1_000_000_000).to_string();
    assert!(
        points.iter().any(|p| p[0] == first_start.as_str()),
        "{sampled}"
    );
    assert!(first.get("sample").is_none(), "no sample unless asked for");

    for (path, parameter) in [
        ("/api/v1/traces?min_duration=10", "min_duration"),
        ("/api/v1/traces?status=ok", "status"),
        ("/api/v1/traces?limit=-1", "limit"),
        ("/api/v1/traces?sample=5000", "sample"),
        ("/api/v1/traces?attr=novalue", "attr"),
        ("/api/v1/traces?start=yesterday", "start"),
        ("/api/v1/traces?servce=x", "servce"),
        ("/api/v1/traces/xyz", "trace_id"),
        (
            "/api/v1/traces/00000000000000000000000000000007?view=all",
            "view",
        ),
    ] {
        let (status, body) = get(addr, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(parameter),
            "{path}: {body}"
        );
    }
    let (status, _) = get(addr, &format!("/api/v1/traces/{}", trace_id(9).to_hex())).await;
    assert_eq!(status, 404);

    let client = reqwest::Client::new();
    let sql = |query: &str, accept: &str| {
        client
            .post(format!("http://{addr}/api/v1/sql"))
            .header("accept", accept)
            .json(&serde_json::json!({"query": query}))
            .send()
    };
    let response = sql(
        "SELECT service_name, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1",
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["rows"],
        serde_json::json!([{"service_name": "cart", "n": 1}, {"service_name": "frontend", "n": 5}, {"service_name": "payments", "n": 3}])
    );
    assert_eq!(body["columns"][1]["name"], "n");
    assert_eq!(body["truncated"], false);
    let csv = sql(
        "SELECT service_name FROM spans WHERE name = 'GetCart'",
        "text/csv",
    )
    .await
    .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv");
    assert_eq!(csv.text().await.unwrap(), "service_name\ncart\n");
    let ipc = sql(
        "SELECT count(*) FROM logs",
        "application/vnd.apache.arrow.stream",
    )
    .await
    .unwrap();
    assert_eq!(ipc.status(), 200);
    assert_eq!(
        ipc.headers()["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let bytes = ipc.bytes().await.unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    assert_eq!(batches[0].num_rows(), 1);

    let bad = sql("SELEC 1", "application/json").await.unwrap();
    assert_eq!(bad.status(), 400);
    let message: Value = bad.json().await.unwrap();
    assert!(
        message["error"].as_str().unwrap().contains("SELEC"),
        "{message}"
    );
    let write = sql("DROP TABLE spans", "application/json").await.unwrap();
    assert_eq!(write.status(), 400);
}

#[tokio::test]
async fn logs_and_metrics_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(common::loaded_store(dir.path(), Layout::Split).await).await;
    let window = format!("start={}&end={}", T0, T0 + 3_600_000_000_000);

    let (status, body) = get(addr, &format!("/api/v1/logs?severity=error&{window}")).await;
    assert_eq!(status, 200, "{body}");
    let logs = body["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(
        logs[0]["body"],
        serde_json::json!({"type": "string", "value": "card declined by issuer"})
    );
    assert_eq!(logs[0]["trace_id"], trace_id(2).to_hex());
    assert_eq!(logs[0]["service_name"], "payments");
    // By trace id without a time range: found although the default window (last hour) misses it.
    let (_, by_trace) = get(
        addr,
        &format!("/api/v1/logs?trace_id={}", trace_id(3).to_hex()),
    )
    .await;
    assert_eq!(by_trace["logs"][0]["body"]["value"], "cart loaded");
    let (status, bad) = get(addr, "/api/v1/logs?severity=loud").await;
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().contains("severity"));

    let (_, metrics) = get(addr, &format!("/api/v1/metrics?{window}")).await;
    let names: Vec<&str> = metrics["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "http.server.request.duration",
            "orders.placed",
            "queue.depth"
        ]
    );
    let (status, series) = get(
        addr,
        &format!(
            "/api/v1/metrics/series?name=queue.depth&agg=max&group_by=service.name&step=1h&{window}"
        ),
    )
    .await;
    assert_eq!(status, 200, "{series}");
    assert_eq!(series["series"][0]["labels"]["service.name"], "cart");
    assert_eq!(series["series"][0]["points"][0][1], 7.5);
    let (status, bad) = get(addr, "/api/v1/metrics/series?name=queue.depth&agg=median").await;
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().contains("agg"));
}

#[tokio::test]
async fn queries_past_max_concurrent_are_told_to_retry() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::loaded_store(dir.path(), Layout::Split).await;
    let config = QueryConfig {
        max_concurrent: 1,
        ..QueryConfig::default()
    };
    let engine = QueryEngine::new(store, config);
    let addr = serve_engine(engine.clone()).await;
    // One query is running: it holds the only permit.
    let running = engine.try_admit().expect("a permit is free");
    let response = reqwest::get(format!("http://{addr}/api/v1/services"))
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("max_concurrent"),
        "{body}"
    );
    drop(running);
    let (status, _) = get(addr, "/api/v1/services").await;
    assert_eq!(status, 200, "answered once the running query is done");
}

/// Every route of the native, Jaeger and Prometheus APIs, with every documented parameter, over
/// data in parts and in the memtable: each answers JSON, and none fails on the server's side
/// (the alerting routes answer 503 here: this server runs no evaluator).
#[tokio::test]
async fn every_route_with_every_documented_parameter_answers() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::loaded_store(dir.path(), Layout::Split).await;
    let addr = serve(store).await;
    let id = trace_id(2).to_hex();
    let (start, end) = (T0 / 1000 * 1000 - 60_000_000_000, T0 + 3_600_000_000_000);
    let range = format!("start={start}&end={end}");
    let micros = format!("start={}&end={}", start / 1000, end / 1000);
    let mut routes = vec![
        format!("/api/v1/traces/{id}"),
        format!("/api/v1/traces/{id}?view=tree"),
        format!("/api/v1/traces/{id}?view=full&{range}"),
        format!(
            "/api/v1/traces?service=payments&operation=POST%20/charge&attr=card.brand=visa\
             &min_duration=1ms&max_duration=10s&status=error&q=declined&{range}&limit=5"
        ),
        format!("/api/v1/traces?{range}&limit=1"),
        format!("/api/v1/services?{range}&step=60s"),
        format!("/api/v1/services?{range}"),
        format!("/api/v1/services/payments/operations?{range}&step=60s"),
        format!("/api/v1/dependencies?{range}"),
        format!("/api/v1/services/postgresql/callers?{range}&step=60s"),
        format!("/api/v1/logs?service=payments&severity=error&q=declined&{range}&limit=10"),
        format!("/api/v1/logs?trace_id={id}"),
        format!("/api/v1/logs?trace_id={id}&span_id=00f067aa0ba902b7&limit=1&cursor=1-0"),
        format!("/api/v1/traces/{id}?download=1"),
        format!("/api/v1/metrics?{range}"),
        "/api/services".to_string(),
        "/api/services/payments/operations".to_string(),
        "/api/operations?service=payments&spanKind=server".to_string(),
        format!(
            "/api/traces?service=payments&operation=POST%20/charge&tags=%7B%22card.brand%22%3A%22visa%22%7D\
             &minDuration=1ms&maxDuration=10s&{micros}&limit=5"
        ),
        "/api/traces?service=frontend&lookback=2h&limit=20".to_string(),
        format!("/api/traces/{id}"),
        format!(
            "/api/dependencies?endTs={}&lookback=3600000",
            end / 1_000_000
        ),
    ];
    for (name, label) in [
        ("orders.placed", "service.name"),
        ("http.server.request.duration", "http.route"),
        ("queue.depth", "service.name"),
    ] {
        for agg in ["sum", "avg", "min", "max", "rate"] {
            routes.push(format!(
                "/api/v1/metrics/series?name={name}&group_by={label}&agg={agg}&{range}&step=60s"
            ));
        }
        routes.push(format!(
            "/api/v1/metrics/series?name={name}&match={label}=x&{range}&step=60s"
        ));
    }
    for path in &routes {
        let (status, body) = get(addr, path).await;
        assert!(status < 500, "{path}: {status} {body}");
    }
    let (status, grouped) = get(
        addr,
        &format!(
            "/api/v1/metrics/series?name=orders.placed&group_by=service.name&{range}&step=60s"
        ),
    )
    .await;
    assert_eq!(status, 200, "{grouped}");
    assert_eq!(
        grouped["series"][0]["labels"]["service.name"], "payments",
        "{grouped}"
    );
    for path in [
        "/api/v1/alerts?state=firing&service=payments",
        "/api/v1/alerts/history",
        "/api/v1/incidents",
        "/api/v1/rules",
        "/prometheus/api/v1/rules",
        "/prometheus/api/v1/alerts",
    ] {
        let (status, body) = get(addr, path).await;
        assert_eq!(status, 503, "{path}: {body}");
    }
}
