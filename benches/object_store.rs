//! Object storage: the same spans sent to a Spyglass on local disk (the baseline) and to an
//! ingester that uploads its parts to an S3-compatible server (moto on loopback), then trace by
//! id and search on the local server and on a querier reading the bucket, with a cold cache (a
//! querier started on an empty directory: its first read of the bucket downloads every part)
//! and a warm one.
//!
//! `cargo bench -p spyglass --bench object_store` (`SPYGLASS_BENCH_SPANS`, default 1,000,000;
//! `SPYGLASS_MOTO_SERVER` or `moto_server` on `PATH`, as `./test.sh` installs it). Progress goes
//! to stderr, the figures to stdout as a Markdown table.

mod common;
#[path = "../store/tests/common/moto.rs"]
mod moto;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::grpc::{Encoded, export};
use common::{Figures, Serve, env_usize, metric, ms, now_nanos, percentiles, to_otlp};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use spyglass_store::Signal;
use spyglass_store::bucket::Bucket;
use spyglass_store::synth::SpanGenerator;

const SPANS_PER_REQUEST: usize = 1_000;
const CLIENTS: usize = 4;
const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const LOOKUPS: usize = 300;
const SEARCHES: usize = 40;

/// Sends every request to `grpc` from `CLIENTS` connections, retrying what is refused; answers
/// the spans per second acknowledged.
async fn send_all(grpc: u16, requests: &Arc<Vec<Encoded>>, spans: usize) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (requests, next) = (requests.clone(), next.clone());
            tokio::spawn(async move {
                let channel =
                    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc}"))
                        .unwrap()
                        .connect()
                        .await
                        .expect("connect");
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(request) = requests.get(i) else {
                        break;
                    };
                    while export::<ExportTraceServiceResponse>(
                        channel.clone(),
                        EXPORT,
                        request.clone(),
                    )
                    .await
                    .is_err()
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    spans as f64 / started.elapsed().as_secs_f64()
}

async fn get(ui: u16, path: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(format!("http://127.0.0.1:{ui}{path}"))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// Trace by id for each of `ids` (each must be found whole) and `SEARCHES` searches for the
/// newest 20 traces of a service: their latencies.
async fn measure(ui: u16, ids: &[String], services: &[String]) -> (Figures, Figures) {
    let mut lookups = Vec::new();
    for id in ids {
        let started = Instant::now();
        let (status, body) = get(ui, &format!("/api/v1/traces/{id}")).await;
        lookups.push(started.elapsed());
        assert!(
            status == 200 && body["spans"].as_array().is_some_and(|s| !s.is_empty()),
            "trace {id}"
        );
    }
    let mut searches = Vec::new();
    for i in 0..SEARCHES {
        let service = &services[i % services.len()];
        let started = Instant::now();
        let (status, body) = get(ui, &format!("/api/v1/traces?service={service}&limit=20")).await;
        searches.push(started.elapsed());
        assert!(
            status == 200 && body["traces"].as_array().is_some_and(|t| !t.is_empty()),
            "search {service}"
        );
    }
    (percentiles(lookups), percentiles(searches))
}

async fn listed_spans(bucket: &Bucket, ingester: &str) -> u64 {
    let manifest = bucket.read_ingester_manifest(ingester).await.unwrap();
    manifest.map_or(0, |m| m.rows(Signal::Spans))
}

fn main() {
    let total = env_usize("SPYGLASS_BENCH_SPANS", 1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut generator = SpanGenerator::new(41, now_nanos() - 3_600_000_000_000);
    let mut requests = Vec::new();
    let mut ids = Vec::new();
    let mut services = std::collections::BTreeSet::new();
    let mut spans = 0;
    while spans < total {
        let batch = generator.spans(SPANS_PER_REQUEST);
        spans += batch.len();
        for span in batch
            .iter()
            .step_by(SPANS_PER_REQUEST * 4 / LOOKUPS.max(1) + 1)
        {
            ids.push(span.trace_id.to_hex());
        }
        services.extend(batch.iter().map(|s| s.resource.service_name().to_owned()));
        requests.push(Encoded(to_otlp(&batch).encode_to_vec().into()));
    }
    ids.truncate(LOOKUPS);
    let services: Vec<String> = services.into_iter().collect();
    let requests = Arc::new(requests);
    eprintln!(
        "{spans} spans in {} requests, {} services",
        requests.len(),
        services.len()
    );

    let moto = moto::Moto::start();
    let bucket = moto.bucket("bench", "spyglass");
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir_in(&target).unwrap())
        .collect();
    let flush = "[store]\nflush_interval_secs = 8\n";
    let cluster = format!(
        "{flush}\n[store.object_store]\nurl = \"s3://bench/spyglass\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\nallow_http = true\ningester_id = \"bench\"\n\n[store.object_store.options]\naws_access_key_id = \"test\"\naws_secret_access_key = \"test\"\n",
        moto.endpoint
    );

    runtime.block_on(async {
        // One server at a time, each measured once its compaction has settled, so that none
        // works beside another's measurement.
        let local = common::serve(dirs[0].path(), flush);
        local.ready().await;
        eprintln!("sending to the server on local disk");
        let local_rate = send_all(local.grpc, &requests, spans).await;
        settle(local.ui).await;
        eprintln!("measuring the server on local disk");
        let (local_ids, local_search) = measure(local.ui, &ids, &services).await;
        drop(local);

        let ingester = Serve::with_role(dirs[1].path(), &cluster, "ingest");
        ingester.ready().await;
        eprintln!("sending to the ingester");
        let ingest_rate = send_all(ingester.grpc, &requests, spans).await;
        let acked = Instant::now();
        while listed_spans(&bucket, "bench").await < spans as u64 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let upload_lag = acked.elapsed();
        eprintln!("all listed {upload_lag:?} after the last acknowledgement");
        settle(ingester.ui).await;
        // Its last merge is uploaded within a second or two of the commit.
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(ingester);

        let started = Instant::now();
        let querier = Serve::with_role(dirs[2].path(), &cluster, "query");
        querier.ready().await;
        let ready = started.elapsed();
        let started = Instant::now();
        let (status, _) = get(querier.ui, &format!("/api/v1/traces/{}", ids[0])).await;
        assert_eq!(status, 200);
        let first = started.elapsed();
        let cached: u64 = walk_bytes(&dirs[2].path().join("data/parts"));
        eprintln!("measuring the querier");
        let (bucket_ids, bucket_search) = measure(querier.ui, &ids, &services).await;

        println!("| measure | value | same-run baseline (local disk) | target |");
        println!("|---|---|---|---|");
        println!(
            "| ingest, 4 gRPC clients, spans/s | {ingest_rate:.0} (ingester uploading to moto) | {local_rate:.0} | |"
        );
        println!("| all spans listed in the bucket after the last acknowledgement | {:.1} s | | |", upload_lag.as_secs_f64());
        println!(
            "| cold querier: ready (first read of the bucket, {:.0} MiB downloaded) / first trace by id | {:.1} s / {} | | |",
            cached as f64 / (1 << 20) as f64,
            ready.as_secs_f64(),
            ms(first)
        );
        let ratio = bucket_ids.p99.as_secs_f64() / local_ids.p99.as_secs_f64();
        println!(
            "| warm querier: trace by id p50 / p99 / max ({LOOKUPS}) | {} / {} / {} | {} / {} / {} | p99 within 2× of local: {ratio:.2}× {} |",
            ms(bucket_ids.p50), ms(bucket_ids.p99), ms(bucket_ids.max),
            ms(local_ids.p50), ms(local_ids.p99), ms(local_ids.max),
            if ratio <= 2.0 { "✓" } else { "✗" }
        );
        println!(
            "| warm querier: search, a service's newest 20, p50 / p99 / max ({SEARCHES}) | {} / {} / {} | {} / {} / {} | |",
            ms(bucket_search.p50), ms(bucket_search.p99), ms(bucket_search.max),
            ms(local_search.p50), ms(local_search.p99), ms(local_search.max),
        );
    });
}

/// Waits until the server's memtable holds less than a MiB (span metrics keep arriving) and its
/// span part count has not changed for 10 s (its flushes and merges are done).
async fn settle(ui: u16) {
    let mut last = (-1.0, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let parts = metric(ui, "spyglass_parts{signal=\"spans\"}").await;
        let memtable = metric(ui, "spyglass_memtable_bytes").await;
        if parts != last.0 || memtable >= (1 << 20) as f64 {
            last = (parts, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(10) {
            return;
        }
    }
}

/// Bytes of the files under `dir`.
fn walk_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk_bytes(&path)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}
