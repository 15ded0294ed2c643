//! The memory budget seen from outside: `spyglass serve` with a 640 MiB budget, driven by 48
//! gRPC clients at once, each sending 8 MiB requests (what a burst of collectors after an
//! outage sends). Requests past the budget are told to retry; the clients retry until every
//! request is acknowledged; everything acknowledged is stored; and the process's peak RSS stays
//! within the budget and 10%. Without the budget the bodies, messages and batches of 48 such
//! requests in flight take well over a GiB.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1::Span;

const BUDGET: u64 = 640 << 20;
const CLIENTS: u64 = 48;
const REQUESTS_PER_CLIENT: u64 = 2;
const SPANS_PER_REQUEST: u64 = 1_000;

const CONFIG: &str = "[store]
memory_budget_bytes = 671088640
memtable_max_bytes = 33554432
flush_bytes = 16777216
durability = \"interval\"

[query]
span_metrics_cache_bytes = 8388608
promql_series_cache_bytes = 8388608
";

/// A request of 1,000 spans of ~8 KiB each (their W3C trace state, which is stored but not
/// indexed), with ids that name the client and the request.
fn request(client: u64, n: u64) -> ExportTraceServiceRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let state = format!("vendor={}", "abcdefgh".repeat(1024));
    let spans = (0..SPANS_PER_REQUEST)
        .map(|i| Span {
            trace_id: [(client + 1).to_be_bytes(), (n << 32 | i).to_be_bytes()].concat(),
            span_id: (i + 1).to_be_bytes().to_vec(),
            trace_state: state.clone(),
            name: "burst".into(),
            start_time_unix_nano: now,
            end_time_unix_nano: now + 1_000_000,
            ..Default::default()
        })
        .collect();
    traces_request("burst", spans)
}

/// Peak resident memory of `pid` so far, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

async fn metric(ui: u16, name: &str) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{ui}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_budget_is_told_to_retry_and_the_process_stays_within_it() {
    let server = start_server_with(tempfile::tempdir().unwrap(), CONFIG, &[]).await;
    let url = format!("http://127.0.0.1:{}", server.grpc);
    let retried = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (url, retried) = (url.clone(), retried.clone());
        clients.push(tokio::spawn(async move {
            let mut exporter = TraceServiceClient::connect(url)
                .await
                .unwrap()
                .max_encoding_message_size(64 << 20);
            for n in 0..REQUESTS_PER_CLIENT {
                let request = request(client, n);
                let mut tries = 0;
                loop {
                    match exporter.export(request.clone()).await {
                        Ok(_) => break,
                        Err(status) if status.code() == tonic::Code::Unavailable => {
                            retried.fetch_add(1, Ordering::Relaxed);
                            tries += 1;
                            assert!(tries < 2_000, "never accepted: {status:?}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(status) => panic!("client {client}: {status:?}"),
                    }
                }
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let peak = peak_rss(server.pid());
    eprintln!(
        "peak RSS {} MiB; {} requests told to retry",
        peak >> 20,
        retried.load(Ordering::Relaxed)
    );
    let stored = sql(server.ui, "SELECT count(*) AS n FROM spans").await;
    assert_eq!(
        stored["rows"][0]["n"],
        CLIENTS * REQUESTS_PER_CLIENT * SPANS_PER_REQUEST,
        "every acknowledged span is stored once"
    );
    assert!(
        retried.load(Ordering::Relaxed) > 0,
        "48 requests of 8 MiB at once are past the budget"
    );
    let refused = metric(
        server.ui,
        r#"spyglass_memory_refused_total{share="requests"}"#,
    )
    .await;
    assert!(
        refused > 0.0,
        "the budget, not only the memtable, told clients to retry"
    );
    let held = metric(
        server.ui,
        r#"spyglass_memory_reserved_bytes{share="requests"}"#,
    )
    .await;
    assert_eq!(held, 0.0, "every request gave its memory back");
    assert!(
        peak <= BUDGET + BUDGET / 10,
        "peak RSS {} MiB, budget {} MiB",
        peak >> 20,
        BUDGET >> 20
    );
}
