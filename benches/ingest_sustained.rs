//! Sustained ingest: 10 M spans (`SPYGLASS_BENCH_SPANS`) sent to a real `spyglass serve`
//! (default configuration: fsync durability, 1 GiB memory budget, flushes and compaction
//! running) by 4 gRPC clients (`SPYGLASS_BENCH_CLIENTS`), each sending its next request as soon
//! as the last was acknowledged (or, with `SPYGLASS_BENCH_RATE`, when a steady stream of that
//! many spans per second reaches it) and retrying what it is told to retry.
//!
//! The requests are 64 pre-encoded `ExportTraceServiceRequest`s of ~2,000 spans (the store
//! benchmark's generator), sent again and again with their trace ids changed each time (the id
//! bytes are rewritten in place, a copy per send), so every trace is new to the server and the
//! clients cost little CPU beside it.
//!
//! Prints, every 10 s (`SPYGLASS_BENCH_REPORT_SECS`): acknowledged spans/s, requests told to
//! retry and their share, the server's resident memory (now and peak), its memtable bytes and
//! span parts; then the whole run: sustained rate, throttled share, peak RSS, the server's flush
//! and compaction seconds (from its `/metrics`; after the load it waits for the compactor's next
//! round to merge the small parts the load left, until it has merged nothing for 10 s), next to
//! a same-run baseline:
//! single-thread `prost` decode of the same requests.
//!
//! `cargo bench -p spyglass --bench ingest-sustained`

mod common;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::grpc::{Encoded, export};
use common::{env_usize, metric, now_nanos, to_otlp};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use spyglass_store::synth::SpanGenerator;

const TEMPLATES: usize = 64;
const SPANS_PER_REQUEST: usize = 2_000;
const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// An encoded request and where each trace id's bytes are in it.
struct Template {
    bytes: Vec<u8>,
    id_offsets: Vec<usize>,
    spans: usize,
}

impl Template {
    fn new(spans: &[spyglass_store::model::Span]) -> Self {
        let bytes = to_otlp(spans).encode_to_vec();
        let ids: HashSet<[u8; 16]> = spans.iter().map(|s| s.trace_id.0).collect();
        // A span's `trace_id` is field 1, 16 bytes: tag 0x0a, length 0x10, then the id.
        let id_offsets = (0..bytes.len().saturating_sub(18))
            .filter(|&i| {
                bytes[i] == 0x0a
                    && bytes[i + 1] == 0x10
                    && <[u8; 16]>::try_from(&bytes[i + 2..i + 18]).is_ok_and(|id| ids.contains(&id))
            })
            .map(|i| i + 2)
            .collect();
        Self {
            bytes,
            id_offsets,
            spans: spans.len(),
        }
    }

    /// The request with every trace id's last eight bytes XORed with `round`.
    fn instance(&self, round: u64) -> Encoded {
        let mut bytes = self.bytes.clone();
        for &at in &self.id_offsets {
            for (k, b) in round.to_le_bytes().iter().enumerate() {
                bytes[at + 8 + k] ^= b;
            }
        }
        Encoded(bytes.into())
    }
}

/// What the clients did, counted as they go.
#[derive(Default)]
struct Counts {
    acknowledged_spans: AtomicUsize,
    requests: AtomicUsize,
    retries: AtomicUsize,
    rejected_spans: AtomicUsize,
}

/// A value from `/proc/<pid>/status` in MiB (`VmRSS`, `VmHWM`).
fn proc_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let total = env_usize("SPYGLASS_BENCH_SPANS", 10_000_000);
    let every = Duration::from_secs(env_usize("SPYGLASS_BENCH_REPORT_SECS", 10) as u64);
    let clients = env_usize("SPYGLASS_BENCH_CLIENTS", 4);
    // Spans per second to send at most (0: as fast as acknowledged).
    let pace = env_usize("SPYGLASS_BENCH_RATE", 0);
    let mut generator = SpanGenerator::new(23, now_nanos());
    let templates: Arc<Vec<Template>> = Arc::new(
        (0..TEMPLATES)
            .map(|_| Template::new(&generator.spans(SPANS_PER_REQUEST)))
            .collect(),
    );
    let request_bytes: usize = templates.iter().map(|t| t.bytes.len()).sum();
    let template_spans: usize = templates.iter().map(|t| t.spans).sum();
    eprintln!(
        "{TEMPLATES} requests of {:.0} spans, {:.0} bytes per span",
        template_spans as f64 / TEMPLATES as f64,
        request_bytes as f64 / template_spans as f64
    );

    // Baseline: single-thread decode of the same requests.
    let started = Instant::now();
    let mut decoded = 0;
    while started.elapsed() < Duration::from_secs(3) {
        for t in templates.iter() {
            let request = ExportTraceServiceRequest::decode(&t.bytes[..]).expect("decodes");
            decoded += request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum::<usize>();
        }
    }
    let decode_rate = decoded as f64 / started.elapsed().as_secs_f64();

    let dir =
        tempfile::tempdir_in(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
            .expect("a data directory");
    let server = common::serve(dir.path(), "");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(server.ready());
    let pid = server.pid();
    let counts = Arc::new(Counts::default());
    let next = Arc::new(AtomicUsize::new(0));
    let requests_needed = total.div_ceil(template_spans / TEMPLATES);
    let per_request = template_spans as f64 / TEMPLATES as f64;
    let started = Instant::now();

    println!(
        "| at | acknowledged spans/s | requests told to retry (share) | server RSS now / peak | memtable | span parts |"
    );
    println!("|---|---|---|---|---|---|");
    let ui = server.ui;
    let report = {
        let counts = counts.clone();
        runtime.spawn(async move {
            let mut at = Duration::ZERO;
            let (mut spans_before, mut requests_before, mut retries_before) = (0, 0, 0);
            loop {
                tokio::time::sleep(every).await;
                at += every;
                let spans = counts.acknowledged_spans.load(Ordering::Relaxed);
                let requests = counts.requests.load(Ordering::Relaxed);
                let retries = counts.retries.load(Ordering::Relaxed);
                let (d_requests, d_retries) = (requests - requests_before, retries - retries_before);
                println!(
                    "| {} s | {:.0} | {d_retries} ({:.2}%) | {:.0} / {:.0} MiB | {:.0} MiB | {:.0} |",
                    at.as_secs(),
                    (spans - spans_before) as f64 / every.as_secs_f64(),
                    100.0 * d_retries as f64 / (d_requests + d_retries).max(1) as f64,
                    proc_mib(pid, "VmRSS:"),
                    proc_mib(pid, "VmHWM:"),
                    metric(ui, "spyglass_memtable_bytes").await / (1 << 20) as f64,
                    metric(ui, "spyglass_parts{signal=\"spans\"}").await,
                );
                (spans_before, requests_before, retries_before) = (spans, requests, retries);
            }
        })
    };
    let endpoint = format!("http://127.0.0.1:{}", server.grpc);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (templates, next, counts, endpoint) = (
                templates.clone(),
                next.clone(),
                counts.clone(),
                endpoint.clone(),
            );
            runtime.spawn(async move {
                let channel = tonic::transport::Endpoint::from_shared(endpoint)
                    .unwrap()
                    .connect()
                    .await
                    .expect("connect");
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests_needed {
                        break;
                    }
                    let template = &templates[i % TEMPLATES];
                    if pace > 0 {
                        // Request i leaves no earlier than its place in a steady stream.
                        let due =
                            started + Duration::from_secs_f64(i as f64 * per_request / pace as f64);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let request = template.instance((i / TEMPLATES) as u64 + 1);
                    loop {
                        match export::<ExportTraceServiceResponse>(
                            channel.clone(),
                            EXPORT,
                            request.clone(),
                        )
                        .await
                        {
                            Ok(rejected) => {
                                counts.requests.fetch_add(1, Ordering::Relaxed);
                                counts.rejected_spans.fetch_add(rejected, Ordering::Relaxed);
                                counts
                                    .acknowledged_spans
                                    .fetch_add(template.spans - rejected, Ordering::Relaxed);
                                break;
                            }
                            Err(status)
                                if matches!(
                                    status.code(),
                                    tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                                ) =>
                            {
                                counts.retries.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            Err(status) => panic!("export failed: {status}"),
                        }
                    }
                }
            })
        })
        .collect();
    runtime.block_on(async {
        for t in tasks {
            t.await.expect("client");
        }
    });
    let elapsed = started.elapsed();
    let memtable = runtime.block_on(metric(ui, "spyglass_memtable_bytes"));
    // The compactor runs on its own schedule: wait for it to merge what the load left.
    let parts_after_load = runtime.block_on(metric(ui, "spyglass_parts{signal=\"spans\"}"));
    let waited = Instant::now();
    runtime.block_on(async {
        while metric(ui, "spyglass_compaction_seconds_count").await == 0.0
            && waited.elapsed() < Duration::from_secs(180)
        {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // A round merges until nothing is left: wait until it has merged nothing for 10 s.
        let mut merges = metric(ui, "spyglass_compaction_seconds_count").await;
        let mut quiet = Instant::now();
        while quiet.elapsed() < Duration::from_secs(10)
            && waited.elapsed() < Duration::from_secs(300)
        {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = metric(ui, "spyglass_compaction_seconds_count").await;
            if now != merges {
                (merges, quiet) = (now, Instant::now());
            }
        }
    });
    report.abort();
    let parts_at_end = runtime.block_on(metric(ui, "spyglass_parts{signal=\"spans\"}"));
    let spans = counts.acknowledged_spans.load(Ordering::Relaxed);
    let requests = counts.requests.load(Ordering::Relaxed);
    let retries = counts.retries.load(Ordering::Relaxed);
    let peak = proc_mib(pid, "VmHWM:");
    let (flush_s, flushes, compaction_s, compactions) = runtime.block_on(async {
        (
            metric(ui, "spyglass_flush_seconds_sum").await,
            metric(ui, "spyglass_flush_seconds_count").await,
            metric(ui, "spyglass_compaction_seconds_sum").await,
            metric(ui, "spyglass_compaction_seconds_count").await,
        )
    });
    let (server_cpu, generator_cpu) = (
        common::cpu_seconds_of(pid),
        common::cpu_seconds_of(std::process::id()),
    );
    let (budget, refused_requests, deferred_compactions) = runtime.block_on(async {
        (
            metric(ui, "spyglass_memory_budget_bytes").await / (1 << 20) as f64,
            metric(ui, "spyglass_memory_refused_total{share=\"requests\"}").await,
            metric(ui, "spyglass_memory_refused_total{share=\"compaction\"}").await,
        )
    });
    println!();
    println!("| measure | value | same-run baseline | target |");
    println!("|---|---|---|---|");
    println!(
        "| acknowledged spans, sustained | {spans} in {:.0} s: {:.0} spans/s | decode only, one thread: {decode_rate:.0} spans/s | ≥ 100,000 |",
        elapsed.as_secs_f64(),
        spans as f64 / elapsed.as_secs_f64()
    );
    println!(
        "| requests told to retry | {retries} of {} sends ({:.2}%) | | < 1% |",
        requests + retries,
        100.0 * retries as f64 / (requests + retries).max(1) as f64
    );
    println!(
        "| spans rejected through partial success | {} | | 0 |",
        counts.rejected_spans.load(Ordering::Relaxed)
    );
    println!(
        "| server peak RSS | {peak:.0} MiB ({}within the budget + 10%) | memory_budget_bytes: {budget:.0} MiB | ≤ {:.0} MiB |",
        if peak <= budget * 1.1 { "" } else { "NOT " },
        budget * 1.1
    );
    println!(
        "| requests told to retry by the memory budget / compactions it deferred | {refused_requests:.0} / {deferred_compactions:.0} | | |"
    );
    println!(
        "| flushes / compactions | {flushes:.0} in {flush_s:.1} s / {compactions:.0} in {compaction_s:.1} s | | |"
    );
    println!(
        "| CPU seconds: server (receive, flush, compaction) / this load generator | {server_cpu:.0} / {generator_cpu:.0} (of {:.0} on 2 cores) | | |",
        2.0 * (elapsed + waited.elapsed()).as_secs_f64()
    );
    println!(
        "| memtable at the end of the load | {:.0} MiB | | |",
        memtable / (1 << 20) as f64
    );
    println!(
        "| span parts after the load / {:.0} s later | {parts_after_load:.0} / {parts_at_end:.0} | | |",
        waited.elapsed().as_secs_f64()
    );
}
