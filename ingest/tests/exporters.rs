//! Real clients: the Rust OpenTelemetry SDK with its OTLP exporter, over gRPC and over
//! HTTP/protobuf, against the receivers on loopback; what the store holds afterwards is exactly
//! what was sent.

use std::net::SocketAddr;
use std::sync::Arc;

use opentelemetry::trace::{
    Link, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, TraceState, Tracer,
    TracerProvider,
};
use opentelemetry::{Array, KeyValue, SpanId, TraceId, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use spyglass_ingest::{GrpcReceiver, HttpReceiver, Ingest, IngestConfig};
use spyglass_store::model::{AttrValue, Span, StatusCode};
use spyglass_store::{Records, Signal, Store, StoreConfig};
use tokio::net::TcpListener;

struct Server {
    store: Store,
    ingest: Ingest,
    grpc: SocketAddr,
    http: SocketAddr,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let ingest = Ingest::new(store.clone(), IngestConfig::default());
    let grpc_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (grpc, http) = (
        grpc_listener.local_addr().unwrap(),
        http_listener.local_addr().unwrap(),
    );
    tokio::spawn(GrpcReceiver::new(ingest.clone()).run(grpc_listener, std::future::pending()));
    tokio::spawn(HttpReceiver::new(ingest.clone()).run(http_listener, std::future::pending()));
    Server {
        store,
        ingest,
        grpc,
        http,
        _dir: dir,
    }
}

/// Records one trace through the SDK: a server span with every attribute type, an event, a
/// link and an error status, and a client child span.
fn record_trace(provider: &SdkTracerProvider) -> (TraceId, SpanId) {
    let tracer = provider.tracer_with_scope(
        opentelemetry::InstrumentationScope::builder("spyglass-test")
            .with_version("1.2.3")
            .build(),
    );
    let linked = SpanContext::new(
        TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
        SpanId::from_hex("b7ad6b7169203331").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let span = tracer
        .span_builder("POST /checkout")
        .with_kind(SpanKind::Server)
        .with_attributes(vec![
            KeyValue::new("http.route", "/checkout"),
            KeyValue::new("http.response.status_code", 500i64),
            KeyValue::new("retry", true),
            KeyValue::new("ratio", 0.25f64),
            KeyValue::new(
                "tags",
                Value::Array(Array::String(vec!["a".into(), "b".into()])),
            ),
            KeyValue::new("sizes", Value::Array(Array::I64(vec![1, 2, 3]))),
        ])
        .with_links(vec![Link::with_context(linked)])
        .start(&tracer);
    let cx = opentelemetry::Context::current_with_span(span);
    let ids = {
        let span = cx.span();
        let ids = (
            span.span_context().trace_id(),
            span.span_context().span_id(),
        );
        span.add_event(
            "exception",
            vec![KeyValue::new("exception.message", "card declined")],
        );
        let _child = tracer
            .span_builder("SELECT orders")
            .with_kind(SpanKind::Client)
            .start_with_context(&tracer, &cx);
        span.set_status(Status::error("payment failed"));
        ids
    };
    cx.span().end();
    ids
}

fn provider(exporter: opentelemetry_otlp::SpanExporter) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name("checkout")
                .with_attribute(KeyValue::new("deployment.environment.name", "test"))
                .build(),
        )
        .build()
}

fn check(store: &Store, trace_id: TraceId, root_id: SpanId) {
    let Records::Spans(spans) = store.snapshot().read_records(Signal::Spans).unwrap() else {
        unreachable!()
    };
    let trace: Vec<&Span> = spans
        .iter()
        .filter(|s| s.trace_id.0 == trace_id.to_bytes())
        .collect();
    assert_eq!(trace.len(), 2, "both spans arrived: {spans:#?}");
    let root = trace
        .iter()
        .find(|s| s.span_id.0 == root_id.to_bytes())
        .expect("root span");
    let child = trace
        .iter()
        .find(|s| s.span_id.0 != root_id.to_bytes())
        .expect("child span");
    assert_eq!(child.parent_span_id.map(|p| p.0), Some(root_id.to_bytes()));
    assert_eq!(root.parent_span_id, None);
    assert_eq!(root.name, "POST /checkout");
    assert_eq!(root.kind, spyglass_store::model::SpanKind::Server);
    assert_eq!(child.kind, spyglass_store::model::SpanKind::Client);
    assert_eq!(
        (root.status_code, root.status_message.as_str()),
        (StatusCode::Error, "payment failed")
    );
    let a = |k: &str| root.attributes.get(k).cloned();
    assert_eq!(a("http.route"), Some(AttrValue::Str("/checkout".into())));
    assert_eq!(a("http.response.status_code"), Some(AttrValue::Int(500)));
    assert_eq!(a("retry"), Some(AttrValue::Bool(true)));
    assert_eq!(a("ratio"), Some(AttrValue::Double(0.25)));
    assert_eq!(
        a("tags"),
        Some(AttrValue::Array(vec![
            AttrValue::Str("a".into()),
            AttrValue::Str("b".into())
        ]))
    );
    assert_eq!(
        a("sizes"),
        Some(AttrValue::Array(vec![
            AttrValue::Int(1),
            AttrValue::Int(2),
            AttrValue::Int(3)
        ]))
    );
    assert_eq!(root.events.len(), 1);
    assert_eq!(root.events[0].name, "exception");
    assert_eq!(
        root.events[0].attributes.get("exception.message"),
        Some(&AttrValue::Str("card declined".into()))
    );
    assert_eq!(root.links.len(), 1);
    assert_eq!(
        root.links[0].trace_id.to_hex(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(root.links[0].span_id.to_hex(), "b7ad6b7169203331");
    assert!(root.end_time_unix_nano >= root.start_time_unix_nano && root.start_time_unix_nano > 0);
    assert_eq!(root.service_name(), "checkout");
    assert_eq!(
        root.resource.attributes.get("deployment.environment.name"),
        Some(&AttrValue::Str("test".into()))
    );
    assert_eq!(
        (root.scope.name.as_str(), root.scope.version.as_str()),
        ("spyglass-test", "1.2.3")
    );
    assert!(Arc::ptr_eq(&root.resource, &child.resource) || root.resource == child.resource);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_over_grpc_stores_exactly_what_it_sent() {
    let server = start().await;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{}", server.grpc))
        .build()
        .unwrap();
    let (trace, root) = tokio::task::spawn_blocking(move || {
        let provider = provider(exporter);
        let ids = record_trace(&provider);
        provider.shutdown().unwrap();
        ids
    })
    .await
    .unwrap();
    check(&server.store, trace, root);

    // The same spans fed the span metrics: one failed server call of `POST /checkout`.
    let writer = spyglass_ingest::SpanMetricsWriter::new(
        server.ingest.span_metrics().clone(),
        server.store.clone(),
        std::time::Duration::from_secs(60),
    );
    assert!(writer.write_once().await.unwrap() > 0);
    let Records::Metrics(points) = server
        .store
        .snapshot()
        .read_records(Signal::Metrics)
        .unwrap()
    else {
        unreachable!()
    };
    let calls = points
        .iter()
        .find(|p| {
            p.metric_name == "spyglass.span.calls"
                && p.attributes.get("span.name") == Some(&AttrValue::Str("POST /checkout".into()))
        })
        .expect("a calls series for the root span");
    assert_eq!(calls.service_name(), "checkout");
    assert_eq!(
        calls.attributes.get("status.code"),
        Some(&AttrValue::Str("error".into()))
    );
    assert_eq!(
        calls.value,
        spyglass_store::model::PointValue::Number(spyglass_store::model::NumberValue::Int(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_over_http_protobuf_stores_exactly_what_it_sent() {
    let server = start().await;
    let endpoint = format!("http://{}/v1/traces", server.http);
    let (trace, root) = tokio::task::spawn_blocking(move || {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .build()
            .unwrap();
        let provider = provider(exporter);
        let ids = record_trace(&provider);
        provider.shutdown().unwrap();
        ids
    })
    .await
    .unwrap();
    check(&server.store, trace, root);
}
