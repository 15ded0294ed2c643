//! Notification benchmark.
//!
//! 1. Dispatch: 10,000 firing alerts in 1,000 incidents (ten alerts each, grouped by incident
//!    as the default route groups them) handed to the dispatcher in one batch, as the evaluator
//!    hands them. Measured: routing the batch into groups, the first flush round (every group
//!    new: 1,000 notifications queued), the steady rounds after it (the same alerts again,
//!    nothing new to send), and the process's memory growth. Same-run baseline: touching each
//!    alert once (its fingerprint, and a map from incident to alerts).
//! 2. End to end: a running `spyglass serve` (span metrics and evaluation every 5 s, `for` 0,
//!    group_wait 2 s) mailing a real SMTP server (aiosmtpd); from the export of a new service's
//!    failing spans being acknowledged to the SMTP server accepting the mail about them.
//!
//! `SPYGLASS_BENCH_INCIDENTS` (default 1,000), `SPYGLASS_BENCH_RUNS` (default 5 steady rounds)
//! and `SPYGLASS_BENCH_TRIALS` (default 5 end-to-end trials) change the size.

mod common;
#[path = "../alerting/tests/smtp/mod.rs"]
mod smtp;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{env_usize, ms, now_nanos};
use spyglass_alerting::notify::{Alert, Dispatcher, Evidence, IncidentInfo, NotifyConfig};
use spyglass_alerting::{Labels, SystemClock};

const ALERTS_PER_INCIDENT: usize = 10;
const RULES: [&str; 5] = [
    "ServiceErrors",
    "ServiceLatency",
    "DependencyFailing",
    "ServiceSilent",
    "HighQueueDepth",
];

/// Resident memory of this process, in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf reads a constant.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// Ten alerts for each incident, as the built-in rules make them: a rule, a service or an
/// edge, the incident label, a summary, three example traces and the incident's root.
fn alerts(incidents: usize, now: u64) -> Vec<Alert> {
    let mut out = Vec::with_capacity(incidents * ALERTS_PER_INCIDENT);
    for i in 0..incidents {
        let root = format!("service-{i:04}");
        let affected: Vec<String> = (1..ALERTS_PER_INCIDENT)
            .map(|j| format!("caller-{i:04}-{j}"))
            .collect();
        for j in 0..ALERTS_PER_INCIDENT {
            let rule = RULES[j % RULES.len()];
            let service = if j == 0 {
                root.clone()
            } else {
                affected[j - 1].clone()
            };
            let mut labels = Labels::new();
            labels.insert("alertname".into(), rule.into());
            labels.insert("service".into(), service.clone());
            labels.insert("severity".into(), "page".into());
            labels.insert("incident".into(), format!("{:016x}", i * 7919 + 1));
            let mut annotations = Labels::new();
            annotations.insert(
                "summary".into(),
                format!("{service} fails 12.5% of its requests"),
            );
            out.push(Alert {
                labels,
                annotations,
                starts_at: now - 60_000_000_000,
                ends_at: now + 120_000_000_000,
                generator_url: "http://localhost:8080/rules#spyglass-builtin".into(),
                evidence: Evidence {
                    group: "spyglass-builtin".into(),
                    rule: rule.into(),
                    value: Some(0.125),
                    threshold: Some(0.05),
                    trace_ids: (0..3)
                        .map(|t| format!("{:032x}", i * 31 + j * 7 + t))
                        .collect(),
                    incident: Some(IncidentInfo {
                        id: format!("{:016x}", i * 7919 + 1),
                        root: root.clone(),
                        affected: affected.clone(),
                    }),
                },
            });
        }
    }
    out
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn dispatch(incidents: usize, runs: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The default route (group by incident, to the log), with short waits for the benchmark.
    let mut config = NotifyConfig::log_only();
    config.route.group_wait = Duration::from_millis(500);
    config.route.group_interval = Duration::from_secs(1);
    let (notifier, dispatcher) = Dispatcher::new(
        config,
        dir.path(),
        Arc::new(SystemClock),
        "http://localhost:8080",
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    runtime.spawn(dispatcher.run(async {
        let _ = stopped.await;
    }));
    let now = now_nanos();
    let batch = alerts(incidents, now);
    let total = batch.len();

    // Baseline: each alert touched once — its fingerprint, and the incidents' map.
    let baseline = median(
        (0..runs.max(3))
            .map(|_| {
                let started = Instant::now();
                let mut by_incident: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
                for a in &batch {
                    by_incident
                        .entry(a.labels["incident"].as_str())
                        .or_default()
                        .push(a.fingerprint());
                }
                assert_eq!(by_incident.len(), incidents);
                started.elapsed()
            })
            .collect(),
    );

    let rss_before = rss_bytes();
    let wait_for =
        |what: &str, done: &dyn Fn(&spyglass_alerting::notify::DispatchStats) -> bool| {
            let started = Instant::now();
            loop {
                let stats = notifier.stats();
                if done(&stats) {
                    return stats;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "{what}: {stats:?}"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        };
    let groups = incidents as u64;
    runtime.block_on(notifier.send(batch.clone()));
    let received = wait_for("the first batch", &|s| s.received == total);
    // Each group has its own timer: the first cycle is done when every group has flushed once.
    let first = wait_for("the first cycle", &|s| s.flushed_total >= groups);
    assert_eq!(first.groups, incidents, "{first:?}");
    assert_eq!(first.queued_total, groups, "{first:?}");
    // Every notification delivered (to the log) and in the ledger.
    let started = Instant::now();
    while notifier.ledger().rows().len() < incidents {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not delivered"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let delivered = started.elapsed();
    let rss_after = rss_bytes();

    // Steady rounds: the evaluator sends the same alerts again; nothing new goes out.
    let mut receives = Vec::new();
    let mut cycles = Vec::new();
    for _ in 0..runs {
        let before = notifier.stats();
        runtime.block_on(notifier.send(batch.clone()));
        let r = wait_for("a later batch", &|s| s.flushed_total > before.flushed_total);
        receives.push(r.receive_time);
        // A steady cycle: every group flushed once more, with nothing new to send.
        let base = notifier.stats();
        let next = wait_for("a steady cycle", &|s| {
            s.flushed_total >= base.flushed_total + groups
        });
        let flushed = (next.flushed_total - base.flushed_total) as f64;
        cycles.push(Duration::from_secs_f64(
            (next.flush_busy - base.flush_busy).as_secs_f64() * groups as f64 / flushed,
        ));
    }
    // Nothing was sent twice: one ledger row per group, each its first attempt. (A group that
    // flushes again while its notification waits in the queue queues a second one, which the
    // worker drops: the notification log already has it.)
    let rows = notifier.ledger().rows();
    assert_eq!(rows.len(), incidents, "sent again");
    assert!(rows.iter().all(|r| r.outcome == "sent" && r.attempt == 1));
    let _ = stop.send(());
    drop(runtime);

    println!(
        "notify benchmark: {total} firing alerts in {incidents} groups (one per incident), default route"
    );
    println!(
        "  routing the batch into groups: first {}, later batches median {}",
        ms(received.receive_time),
        ms(median(receives))
    );
    println!(
        "  dispatch cycle, first (every group new, {} notifications queued in {} rounds): {} of flushing; target <= 500 ms",
        first.queued_total,
        first.rounds,
        ms(first.flush_busy)
    );
    println!(
        "  dispatch cycle, steady (each group flushed again, nothing new): median {} of flushing over {runs}; target <= 500 ms",
        ms(median(cycles))
    );
    println!(
        "  baseline, each alert touched once (fingerprint and incident map): {}",
        ms(baseline)
    );
    println!(
        "  {incidents} notifications rendered and delivered to the log and the ledger in {}",
        ms(delivered)
    );
    println!(
        "  memory: RSS grew {:.1} MiB holding the alerts, groups, notification log and ledger",
        (rss_after.saturating_sub(rss_before)) as f64 / (1024.0 * 1024.0)
    );
}

/// A running server mailing a real SMTP server; each trial starts a new service failing at a
/// different moment of the 5 s cycles and times from the acknowledgement of its spans to the
/// SMTP server accepting the mail about it.
fn end_to_end(trials: usize) {
    let smtp = smtp::SmtpServer::start("plain", None, None);
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.yml");
    std::fs::write(
        &notify,
        format!(
            "global:\n  smtp_smarthost: 127.0.0.1:{}\n  smtp_from: spyglass@example.com\n  smtp_require_tls: false\nroute:\n  receiver: oncall\n  group_by: [incident]\n  group_wait: 2s\n  group_interval: 1m\n  repeat_interval: 4h\nreceivers:\n  - name: oncall\n    email_configs:\n      - to: oncall@example.com\n",
            smtp.port
        ),
    )
    .unwrap();
    let server = common::serve(
        dir.path(),
        &format!(
            "[ingest]\nspan_metrics_interval_secs = 5\n[alerting]\nevaluation_interval_secs = 5\nnotify_config = {:?}\n[alerting.builtin]\nfor_secs = 0\n",
            notify.to_str().unwrap()
        ),
    );
    let grpc = server.grpc;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let delays = runtime.block_on(async {
        server.ready().await;
        let mut delays = Vec::new();
        let mut providers = Vec::new();
        for trial in 0..trials {
            let offset = Duration::from_millis((trial as u64 * 2_300 + 700) % 5_000);
            tokio::time::sleep(offset).await;
            let name = format!("mailed-{trial}");
            let provider = common::fail_service(grpc, &name);
            let acknowledged = now_nanos();
            let started = Instant::now();
            let accepted = loop {
                let mail = smtp.messages().into_iter().find(|m| {
                    m["subject"]
                        .as_str()
                        .is_some_and(|s| s.contains(&format!("{name} failing")))
                });
                if let Some(mail) = mail {
                    break mail["accepted_ns"].as_u64().expect("accepted_ns");
                }
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "no mail about {name}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let delay = Duration::from_nanos(accepted.saturating_sub(acknowledged));
            eprintln!("  end to end {trial}: {:.2} s", delay.as_secs_f64());
            delays.push(delay);
            providers.push(provider);
        }
        delays
    });
    drop(server);
    let mut sorted = delays.clone();
    sorted.sort();
    println!(
        "  end to end, first failing span acknowledged -> mail accepted by the SMTP server (span metrics 5 s, evaluation 5 s, for 0, group_wait 2 s): median {:.2} s, max {:.2} s over {trials} trials; target <= 5 + 5 + 2 + 1 = 13 s",
        sorted[trials / 2].as_secs_f64(),
        sorted[trials - 1].as_secs_f64()
    );
}

fn main() {
    let incidents = env_usize("SPYGLASS_BENCH_INCIDENTS", 1000);
    let runs = env_usize("SPYGLASS_BENCH_RUNS", 5).max(1);
    let trials = env_usize("SPYGLASS_BENCH_TRIALS", 5);
    dispatch(incidents, runs);
    if trials > 0 {
        end_to_end(trials);
    }
}
