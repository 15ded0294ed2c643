//! Storage benchmark: durable append rate, flush rate (Parquet + index), bytes per span on disk,
//! next to same-run baselines (OTLP protobuf size per span, and its zstd-1 size).
//!
//! `cargo bench -p spyglass --bench store` (SPYGLASS_BENCH_SPANS sets the span count, default
//! 400000). Progress goes to stderr, the figures to stdout as a Markdown table.

mod common;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use spyglass_store::model::Span;
use spyglass_store::synth::SpanGenerator;
use spyglass_store::{Records, Rollup, Signal, Store, StoreConfig};

const BATCH_SPANS: usize = 1000;
const APPENDERS: usize = 8;

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
        // Appends alone are measured: the memtable holds everything, whatever the budget.
        memory_budget_bytes: 32 << 30,
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
    let fsync = wal.fsync_seconds.snapshot();
    let fsyncs = fsync.count;
    let fsync_ms = fsync.sum_seconds * 1e3 / fsyncs.max(1) as f64;
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
        let encoded = common::to_otlp(batch).encode_to_vec();
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
    // What counting rollups costs (ARCHITECTURE.md, "Part rollups"), measured alone over the
    // same spans; a flush runs it on the index thread, beside the Parquet writer.
    let tables: Vec<_> = records.iter().map(|r| r.to_batch().unwrap()).collect();
    let started = Instant::now();
    let rollup = Rollup::count(Signal::Spans, &tables).unwrap();
    let rollup_ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(rollup.map(|r| r.rows()), Some(generated as u64));
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
    let mut flushes: Vec<f64> = results.iter().map(|r| r.flush).collect();
    flushes.sort_by(f64::total_cmp);
    let flush_ms = generated as f64 / flushes[flushes.len() / 2] * 1e3;
    println!(
        "| rollup counting, measured alone (in a flush it runs beside the Parquet writer) | {rollup_ms:.0} ms, {:.1}% of a {flush_ms:.0} ms flush |",
        rollup_ms / flush_ms * 100.0
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
