//! Real clients for metrics and logs: the Rust OpenTelemetry SDK's meter and logger providers
//! with their OTLP exporters (gRPC and HTTP/protobuf); every instrument kind arrives typed.

use std::net::SocketAddr;

use opentelemetry::KeyValue;
use opentelemetry::logs::{
    AnyValue as LogValue, LogRecord as _, Logger, LoggerProvider as _, Severity,
};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader;
use opentelemetry_sdk::metrics::{Aggregation, Instrument, SdkMeterProvider, Stream};
use opentelemetry_sdk::runtime;
use spyglass_ingest::{GrpcReceiver, HttpReceiver, Ingest, IngestConfig};
use spyglass_store::model::{
    AttrValue, MetricPoint, MetricType, NumberValue, PointValue, Temporality,
};
use spyglass_store::{Records, Signal, Store, StoreConfig};
use tokio::net::TcpListener;

async fn start() -> (Store, SocketAddr, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let ingest = Ingest::new(store.clone(), IngestConfig::default());
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
    tokio::spawn(GrpcReceiver::new(ingest.clone()).run(grpc, std::future::pending()));
    tokio::spawn(HttpReceiver::new(ingest).run(http, std::future::pending()));
    (store, addrs.0, addrs.1, dir)
}

fn resource() -> Resource {
    Resource::builder().with_service_name("inventory").build()
}

fn record_metrics(exporter: opentelemetry_otlp::MetricExporter) {
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter, runtime::Tokio).build())
        .with_resource(resource())
        .with_view(|i: &Instrument| {
            (i.name() == "payload.size").then(|| {
                Stream::builder()
                    .with_aggregation(Aggregation::Base2ExponentialHistogram {
                        max_size: 160,
                        max_scale: 20,
                        record_min_max: true,
                    })
                    .build()
                    .unwrap()
            })
        })
        .build();
    let meter = provider.meter("spyglass-test");
    let route = [KeyValue::new("http.route", "/items")];
    meter
        .u64_counter("orders")
        .with_unit("{order}")
        .build()
        .add(3, &route);
    meter
        .i64_up_down_counter("queue.depth")
        .build()
        .add(-2, &route);
    meter
        .f64_gauge("temperature")
        .with_unit("Cel")
        .build()
        .record(21.5, &route);
    let latency = meter
        .f64_histogram("latency")
        .with_unit("s")
        .with_boundaries(vec![0.1, 0.5, 1.0])
        .build();
    for v in [0.05, 0.3, 0.3, 2.0] {
        latency.record(v, &route);
    }
    let size = meter.u64_histogram("payload.size").build();
    for v in [1, 10, 100] {
        size.record(v, &route);
    }
    provider.shutdown().unwrap();
}

fn point<'a>(points: &'a [MetricPoint], name: &str) -> &'a MetricPoint {
    points
        .iter()
        .find(|p| p.metric_name == name)
        .unwrap_or_else(|| panic!("{name} arrived: {points:#?}"))
}

fn check_metrics(store: &Store) {
    let Records::Metrics(points) = store.snapshot().read_records(Signal::Metrics).unwrap() else {
        unreachable!()
    };
    let orders = point(&points, "orders");
    assert_eq!(
        (orders.metric_type, orders.is_monotonic, orders.temporality),
        (MetricType::Sum, true, Temporality::Cumulative)
    );
    assert_eq!(orders.value, PointValue::Number(NumberValue::Int(3)));
    assert_eq!(orders.unit, "{order}");
    assert_eq!(
        orders.attributes.get("http.route"),
        Some(&AttrValue::Str("/items".into()))
    );
    assert_eq!(orders.service_name(), "inventory");
    let mut prometheus_names: Vec<String> = Vec::new();
    for batch in store.snapshot().read_all(Signal::Metrics).unwrap() {
        let names = batch
            .column_by_name("prometheus_name")
            .expect("prometheus_name column");
        let names = names
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        prometheus_names.extend(names.iter().flatten().map(str::to_owned));
    }
    for expected in [
        "orders_total",
        "queue_depth",
        "temperature_celsius",
        "latency_seconds",
        "payload_size",
    ] {
        assert!(
            prometheus_names.iter().any(|n| n == expected),
            "{expected} in {prometheus_names:?}"
        );
    }
    let queue = point(&points, "queue.depth");
    assert_eq!(
        (queue.metric_type, queue.is_monotonic),
        (MetricType::Sum, false)
    );
    assert_eq!(queue.value, PointValue::Number(NumberValue::Int(-2)));
    let temperature = point(&points, "temperature");
    assert_eq!(temperature.metric_type, MetricType::Gauge);
    assert_eq!(
        temperature.value,
        PointValue::Number(NumberValue::Double(21.5))
    );
    let latency = point(&points, "latency");
    match &latency.value {
        PointValue::Histogram {
            count,
            sum,
            min,
            max,
            bucket_counts,
            explicit_bounds,
        } => {
            assert_eq!(
                (*count, *sum, *min, *max),
                (4, Some(2.65), Some(0.05), Some(2.0))
            );
            assert_eq!(bucket_counts, &[1, 2, 0, 1]);
            assert_eq!(explicit_bounds, &[0.1, 0.5, 1.0]);
        }
        other => panic!("latency is a histogram: {other:?}"),
    }
    match &point(&points, "payload.size").value {
        PointValue::ExponentialHistogram {
            count,
            sum,
            positive,
            ..
        } => {
            assert_eq!((*count, *sum), (3, Some(111.0)));
            assert_eq!(positive.bucket_counts.iter().sum::<u64>(), 3);
        }
        other => panic!("payload.size is an exponential histogram: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_metrics_over_grpc_and_http() {
    let (store, grpc, _, _dir) = start().await;
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{grpc}"))
        .build()
        .unwrap();
    tokio::task::spawn_blocking(move || record_metrics(exporter))
        .await
        .unwrap();
    check_metrics(&store);

    let (store, _, http, _dir) = start().await;
    let endpoint = format!("http://{http}/v1/metrics");
    tokio::task::spawn_blocking(move || {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .build()
            .unwrap();
        record_metrics(exporter)
    })
    .await
    .unwrap();
    check_metrics(&store);
}

fn record_log(provider: &SdkLoggerProvider) {
    let logger = provider.logger("spyglass-test");
    let mut record = logger.create_log_record();
    record.set_severity_number(Severity::Error);
    record.set_severity_text("ERROR");
    record.set_body(LogValue::from("payment declined"));
    record.add_attribute("order.id", 4411i64);
    record.set_trace_context(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        Some(TraceFlags::SAMPLED),
    );
    logger.emit(record);
}

fn check_logs(store: &Store) {
    let Records::Logs(logs) = store.snapshot().read_records(Signal::Logs).unwrap() else {
        unreachable!()
    };
    assert_eq!(logs.len(), 1, "{logs:#?}");
    let log = &logs[0];
    assert_eq!(
        (log.severity_number, log.severity_text.as_str()),
        (17, "ERROR")
    );
    assert_eq!(log.body, Some(AttrValue::Str("payment declined".into())));
    assert_eq!(log.attributes.get("order.id"), Some(&AttrValue::Int(4411)));
    assert_eq!(
        log.trace_id.map(|t| t.to_hex()),
        Some("4bf92f3577b34da6a3ce929d0e0e4736".into())
    );
    assert_eq!(
        log.span_id.map(|s| s.to_hex()),
        Some("00f067aa0ba902b7".into())
    );
    assert_eq!(log.flags & 1, 1, "sampled flag");
    assert_eq!(log.service_name(), "inventory");
    assert_eq!(log.scope.name, "spyglass-test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_logs_with_trace_context_over_grpc_and_http() {
    let (store, grpc, _, _dir) = start().await;
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{grpc}"))
        .build()
        .unwrap();
    tokio::task::spawn_blocking(move || {
        let provider = SdkLoggerProvider::builder()
            .with_simple_exporter(exporter)
            .with_resource(resource())
            .build();
        record_log(&provider);
        provider.shutdown().unwrap();
    })
    .await
    .unwrap();
    check_logs(&store);

    let (store, _, http, _dir) = start().await;
    let endpoint = format!("http://{http}/v1/logs");
    tokio::task::spawn_blocking(move || {
        let exporter = opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .build()
            .unwrap();
        let provider = SdkLoggerProvider::builder()
            .with_simple_exporter(exporter)
            .with_resource(resource())
            .build();
        record_log(&provider);
        provider.shutdown().unwrap();
    })
    .await
    .unwrap();
    check_logs(&store);
}
