//! Storage benchmark: durable append rate, flush rate (Parquet + index), bytes per span on disk,
//! next to same-run baselines (OTLP protobuf size per span, and its zstd-1 size).
//!
//! `cargo bench -p spyglass --bench store` (SPYGLASS_BENCH_SPANS sets the span count, default
//! 400000). Progress goes to stderr, the figures to stdout as a Markdown table.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue as OtlpKeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as OtlpSpan, Status, span,
};
use prost::Message;
use spyglass_store::model::{AttrValue, Attributes, Span};
use spyglass_store::synth::SpanGenerator;
use spyglass_store::{Records, Signal, Store, StoreConfig};

const BATCH_SPANS: usize = 1000;
const APPENDERS: usize = 8;

fn otlp_value(value: &AttrValue) -> AnyValue {
    use any_value::Value;
    let value = match value {
        AttrValue::Empty => None,
        AttrValue::Str(s) => Some(Value::StringValue(s.clone())),
        AttrValue::Bool(b) => Some(Value::BoolValue(*b)),
        AttrValue::Int(i) => Some(Value::IntValue(*i)),
        AttrValue::Double(d) => Some(Value::DoubleValue(*d)),
        AttrValue::Bytes(b) => Some(Value::BytesValue(b.clone())),
        AttrValue::Array(items) => Some(Value::ArrayValue(ArrayValue {
            values: items.iter().map(otlp_value).collect(),
        })),
        AttrValue::KvList(kvs) => Some(Value::KvlistValue(KeyValueList {
            values: kvs
                .iter()
                .map(|kv| OtlpKeyValue {
                    key: kv.key.clone(),
                    value: Some(otlp_value(&kv.value)),
                    ..Default::default()
                })
                .collect(),
        })),
    };
    AnyValue { value }
}

fn otlp_attributes(attrs: &Attributes) -> Vec<OtlpKeyValue> {
    attrs
        .iter()
        .map(|kv| OtlpKeyValue {
            key: kv.key.clone(),
            value: Some(otlp_value(&kv.value)),
            ..Default::default()
        })
        .collect()
}

/// The export request an SDK would send for these spans: grouped by resource, then scope.
fn to_otlp(spans: &[Span]) -> ExportTraceServiceRequest {
    let mut by_resource: HashMap<String, (usize, Vec<&Span>)> = HashMap::new();
    for span in spans {
        let key = format!("{:?}", span.resource.attributes);
        let next = by_resource.len();
        by_resource
            .entry(key)
            .or_insert((next, Vec::new()))
            .1
            .push(span);
    }
    let mut groups: Vec<_> = by_resource.into_values().collect();
    groups.sort_by_key(|g| g.0);
    let resource_spans = groups
        .into_iter()
        .map(|(_, spans)| {
            let first = spans[0];
            ResourceSpans {
                resource: Some(OtlpResource {
                    attributes: otlp_attributes(&first.resource.attributes),
                    dropped_attributes_count: 0,
                    entity_refs: Vec::new(),
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: first.scope.name.clone(),
                        version: first.scope.version.clone(),
                        attributes: Vec::new(),
                        dropped_attributes_count: 0,
                    }),
                    spans: spans
                        .iter()
                        .map(|s| OtlpSpan {
                            trace_id: s.trace_id.0.to_vec(),
                            span_id: s.span_id.0.to_vec(),
                            trace_state: s.trace_state.clone(),
                            parent_span_id: s
                                .parent_span_id
                                .map(|p| p.0.to_vec())
                                .unwrap_or_default(),
                            flags: s.flags,
                            name: s.name.clone(),
                            kind: s.kind as i32,
                            start_time_unix_nano: s.start_time_unix_nano,
                            end_time_unix_nano: s.end_time_unix_nano,
                            attributes: otlp_attributes(&s.attributes),
                            dropped_attributes_count: s.dropped_attributes_count,
                            events: s
                                .events
                                .iter()
                                .map(|e| span::Event {
                                    time_unix_nano: e.time_unix_nano,
                                    name: e.name.clone(),
                                    attributes: otlp_attributes(&e.attributes),
                                    dropped_attributes_count: 0,
                                })
                                .collect(),
                            dropped_events_count: 0,
                            links: Vec::new(),
                            dropped_links_count: 0,
                            status: Some(Status {
                                message: s.status_message.clone(),
                                code: s.status_code as i32,
                            }),
                        })
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: first.resource.schema_url.clone(),
            }
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

struct Round {
    append: f64,
    flush: f64,
    fsyncs: u64,
    fsync_ms: f64,
    parquet_bytes: u64,
    index_bytes: u64,
    wal_bytes: u64,
    memtable_bytes: u64,
}

/// Appends every batch to a fresh store with `APPENDERS` concurrent tasks, then flushes it.
fn round(records: &Arc<Vec<Records>>, spans: usize) -> Round {
    let dir =
        tempfile::tempdir_in(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
            .unwrap();
    let config = StoreConfig {
        memtable_max_bytes: 16 << 30,
        flush_bytes: 8 << 30,
        wal_queue_depth: 1024,
        ..StoreConfig::default()
    };
    let (store, _) = Store::open(dir.path(), config).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    runtime.block_on(async {
        let progress = {
            let next = next.clone();
            let n = records.len();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    eprintln!(
                        "      {}/{} batches",
                        next.load(Ordering::Relaxed).min(n),
                        n
                    );
                }
            })
        };
        let tasks: Vec<_> = (0..APPENDERS)
            .map(|_| {
                let (store, records, next) = (store.clone(), records.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(batch) = records.get(i) else { break };
                        store.append(batch).await.expect("append");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        progress.abort();
    });
    let append_elapsed = started.elapsed();
    let wal = store.wal_stats();
    let fsyncs = wal.fsyncs_total.load(Ordering::Relaxed);
    let fsync_ms =
        wal.fsync_nanos_total.load(Ordering::Relaxed) as f64 / 1e6 / fsyncs.max(1) as f64;
    let wal_bytes = wal.bytes_written_total.load(Ordering::Relaxed);
    let memtable_bytes = store.memtable_bytes();
    let started = Instant::now();
    runtime.block_on(store.flush()).unwrap();
    let flush_elapsed = started.elapsed();
    let parts = store.snapshot().parts(Signal::Spans);
    let stored: u64 = parts.iter().map(|p| p.meta().rows).sum();
    assert_eq!(stored as usize, spans, "every appended span is in a part");
    Round {
        append: per_second(spans, append_elapsed),
        flush: per_second(spans, flush_elapsed),
        fsyncs,
        fsync_ms,
        parquet_bytes: parts.iter().map(|p| p.meta().bytes).sum(),
        index_bytes: parts.iter().map(|p| p.meta().index_bytes).sum(),
        wal_bytes,
        memtable_bytes,
    }
}

/// Median and range of a figure over the rounds.
fn spread(values: impl Iterator<Item = f64>) -> String {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    format!(
        "{:.0} (range {:.0}–{:.0})",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1]
    )
}

fn main() {
    let total: usize = std::env::var("SPYGLASS_BENCH_SPANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400_000);
    let rounds: usize = std::env::var("SPYGLASS_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;

    eprintln!("generating {total} synthetic spans in batches of about {BATCH_SPANS}");
    let mut generator = SpanGenerator::new(42, now - 3_600_000_000_000);
    let mut batches: Vec<Vec<Span>> = Vec::new();
    let mut generated = 0;
    while generated < total {
        let batch = generator.spans(BATCH_SPANS);
        generated += batch.len();
        batches.push(batch);
    }

    eprintln!("baselines: OTLP protobuf and zstd-1");
    let (mut proto_bytes, mut zstd_bytes) = (0usize, 0usize);
    for batch in &batches {
        let encoded = to_otlp(batch).encode_to_vec();
        proto_bytes += encoded.len();
        zstd_bytes += zstd::bulk::compress(&encoded, 1).unwrap().len();
    }

    let records: Arc<Vec<Records>> = Arc::new(batches.into_iter().map(Records::Spans).collect());
    let mut results = Vec::new();
    for r in 1..=rounds {
        eprintln!(
            "round {r}/{rounds}: durable append ({APPENDERS} appenders, fsync on), then flush"
        );
        results.push(round(&records, generated));
    }
    let last = results.last().expect("at least one round");
    let per_span = |bytes: u64| bytes as f64 / generated as f64;
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| spans | {generated} in batches of ~{BATCH_SPANS}, {APPENDERS} appenders, {rounds} rounds (median, range) |"
    );
    println!(
        "| durable append (fsync) | {} spans/s |",
        spread(results.iter().map(|r| r.append))
    );
    println!(
        "| spans per fsync (group commit) | {} ({:.2} ms per fsync) |",
        spread(
            results
                .iter()
                .map(|r| generated as f64 / r.fsyncs.max(1) as f64)
        ),
        last.fsync_ms
    );
    println!(
        "| flush (Parquet + index) | {} spans/s |",
        spread(results.iter().map(|r| r.flush))
    );
    println!(
        "| Parquet on disk | {:.1} bytes/span |",
        per_span(last.parquet_bytes)
    );
    println!(
        "| trace index on disk | {:.1} bytes/span |",
        per_span(last.index_bytes)
    );
    println!(
        "| WAL written | {:.1} bytes/span |",
        per_span(last.wal_bytes)
    );
    println!(
        "| memtable (Arrow) | {:.1} bytes/span |",
        per_span(last.memtable_bytes)
    );
    println!(
        "| baseline: OTLP protobuf | {:.1} bytes/span |",
        per_span(proto_bytes as u64)
    );
    println!(
        "| baseline: OTLP protobuf, zstd-1 | {:.1} bytes/span |",
        per_span(zstd_bytes as u64)
    );
}
