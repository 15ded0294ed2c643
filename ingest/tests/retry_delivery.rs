//! Backpressure end to end: a deliberately tiny memtable makes the receiver answer
//! UNAVAILABLE + `RetryInfo`, and the real OpenTelemetry exporter, with retries enabled,
//! still delivers every span.

use std::sync::atomic::Ordering;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::{Tracer, TracerProvider};
use opentelemetry_otlp::{RetryPolicy, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use spyglass_ingest::{GrpcReceiver, Ingest, IngestConfig, Protocol};
use spyglass_store::{Records, Signal, Store, StoreConfig};
use tokio::net::TcpListener;

const SPANS: usize = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_exporter_with_retries_delivers_every_span() {
    let dir = tempfile::tempdir().unwrap();
    // Room for about two export batches, flushed only once full: the exporter is throttled.
    let config = StoreConfig {
        memtable_max_bytes: 1 << 20,
        flush_bytes: 1 << 20,
        flush_interval_secs: 1,
        ..StoreConfig::default()
    };
    let (store, _) = Store::open(dir.path(), config).unwrap();
    tokio::spawn(store.maintenance().run(std::future::pending()));
    let ingest = Ingest::new(store.clone(), IngestConfig::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(GrpcReceiver::new(ingest.clone()).run(listener, std::future::pending()));

    tokio::task::spawn_blocking(move || {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(url)
            .with_retry_policy(
                RetryPolicy::recommended()
                    .with_max_retries(100)
                    .with_max_delay(Duration::from_secs(2)),
            )
            .build()
            .unwrap();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_export_batch_size(512)
                    .with_max_queue_size(SPANS * 2)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .build();
        let tracer = provider.tracer("retry-test");
        for i in 0..SPANS {
            tracer.in_span(format!("work {i}"), |cx| {
                use opentelemetry::trace::TraceContextExt;
                cx.span()
                    .set_attribute(KeyValue::new("payload", "x".repeat(200)));
            });
        }
        provider.force_flush().unwrap();
        provider.shutdown().unwrap();
    })
    .await
    .unwrap();

    let throttled = ingest.stats().throttled(Signal::Spans, Protocol::Grpc);
    assert!(throttled > 0, "the memtable was small enough to throttle");
    let Records::Spans(spans) = store.snapshot().read_records(Signal::Spans).unwrap() else {
        unreachable!()
    };
    let mut names: Vec<String> = spans.into_iter().map(|s| s.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        SPANS,
        "every span delivered despite {throttled} throttled exports"
    );
    assert!(store.stats().throttled_total.load(Ordering::Relaxed) >= throttled);
}
