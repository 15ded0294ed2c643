//! `spyglass demo` with a compressed timeline: each incident fires its built-in alerts (rooted
//! where it began) and resolves, nothing fires between them, and each shows where a user would look —
//! the services list, the dependency graph, a service's last-seen time and trace search.

mod common;
#[path = "../alerting/tests/smtp/mod.rs"]
mod smtp;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Ports, TEST_CONFIG, get_json, start_ready, stderr_file};
use serde_json::Value;

/// The 10-minute timeline in 60 s: payments errors 12–18 s, database spike 27–33 s, shipping
/// silent 42–51 s.
const SPEED: &str = "10";
/// Requests per second. Sped up, each alert window holds ten times fewer requests; at 100/s a
/// window still holds about 60 checkouts, so the shop's rare healthy failures (0.5% of
/// payments) cannot cross a 5% threshold as one failure among 20 calls would.
const RATE: &str = "100";

struct Demo {
    child: Child,
    /// Where `--smtp` sends the demo's notifications.
    smtp: smtp::SmtpServer,
    lines: mpsc::Receiver<(Instant, SystemTime, String)>,
    _dir: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `spyglass demo` on free ports and waits until its server is ready.
async fn start_demo() -> (Demo, Ports) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("spyglass.toml");
    std::fs::write(&config, TEST_CONFIG).unwrap();
    let smtp = smtp::SmtpServer::start("plain", None, None);
    let (mut child, ports) = start_ready(dir.path(), |ports| {
        Command::new(env!("CARGO_BIN_EXE_spyglass"))
            .args(["demo", "--speed", SPEED, "--rate", RATE, "--config"])
            .arg(&config)
            .args(["--smtp", &format!("127.0.0.1:{}", smtp.port)])
            .args(["--email-to", "oncall@example.com"])
            .arg("--data-dir")
            .arg(dir.path().join("demo-data"))
            .args(ports.args())
            .stdout(Stdio::piped())
            .stderr(stderr_file(dir.path()))
            .spawn()
            .unwrap()
    })
    .await;
    let stdout = child.stdout.take().unwrap();
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if send
                .send((Instant::now(), SystemTime::now(), line))
                .is_err()
            {
                break;
            }
        }
    });
    let demo = Demo {
        child,
        smtp,
        lines,
        _dir: dir,
    };
    (demo, ports)
}

fn unix_nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

/// One look at the API, with the phase the demo was in.
struct Sample {
    at: Instant,
    payments_error_ratio: Option<f64>,
    payments_calls: f64,
    shipping_last_seen: Option<u128>,
    frontend_last_seen: Option<u128>,
    database_p99: Option<f64>,
    /// Edges drawn from checkout to shipping, and the error ratio of the first.
    shipping_edges: usize,
    shipping_edge_errors: Option<f64>,
}

fn service<'a>(services: &'a Value, name: &str) -> Option<&'a Value> {
    services["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

fn last_seen(service: Option<&Value>) -> Option<u128> {
    service?["last_seen_unix_nano"].as_str()?.parse().ok()
}

fn median(mut values: Vec<f64>) -> f64 {
    assert!(!values.is_empty());
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_incident_shows_where_a_user_would_look() {
    let (demo, ports) = start_demo().await;
    let started = Instant::now();
    let mut burst: Option<(SystemTime, SystemTime)> = None;
    let mut burst_began = None;
    let mut changes: Vec<(Instant, String)> = Vec::new();
    let mut walls: Vec<(SystemTime, String)> = Vec::new();
    let mut samples = Vec::new();
    let mut shipping_back = None;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "the timeline did not finish; phase changes: {changes:?}"
        );
        while let Ok((at, wall, line)) = demo.lines.try_recv() {
            if let Some(rest) = line.strip_prefix("timeline: ") {
                changes.push((at, rest.to_owned()));
                walls.push((wall, rest.to_owned()));
                if rest == "payments error burst begins" {
                    burst_began = Some(wall);
                } else if let Some(name) = rest.strip_suffix(" ends") {
                    if name == "payments error burst" {
                        burst = Some((burst_began.expect("the burst began"), wall));
                    }
                    if name == "shipping silent" {
                        shipping_back = Some(at);
                    }
                }
            }
        }
        if shipping_back.is_some_and(|at| at.elapsed() > Duration::from_secs(13)) {
            break;
        }
        let (status, services) = get_json(ports.ui, "/api/v1/services?start=now-3s").await;
        if status != 200 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let (_, graph) = get_json(ports.ui, "/api/v1/dependencies?start=now-3s").await;
        let payments = service(&services, "payments");
        let database_p99 = graph["edges"].as_array().and_then(|edges| {
            edges
                .iter()
                .filter(|e| e["server"] == "postgresql")
                .filter_map(|e| e["p99_seconds"].as_f64())
                .reduce(f64::max)
        });
        let shipping_edges: Vec<&Value> = graph["edges"]
            .as_array()
            .map(|edges| {
                edges
                    .iter()
                    .filter(|e| e["client"] == "checkout" && e["server"] == "shipping")
                    .collect()
            })
            .unwrap_or_default();
        samples.push(Sample {
            shipping_edges: shipping_edges.len(),
            shipping_edge_errors: shipping_edges
                .first()
                .and_then(|e| e["error_ratio"].as_f64()),
            at: Instant::now(),
            payments_error_ratio: payments.and_then(|p| p["error_ratio"].as_f64()),
            payments_calls: payments.and_then(|p| p["calls"].as_f64()).unwrap_or(0.0),
            shipping_last_seen: last_seen(service(&services, "shipping")),
            frontend_last_seen: last_seen(service(&services, "frontend")),
            database_p99,
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let change = |text: &str| {
        changes
            .iter()
            .find(|(_, t)| t == text)
            .map(|(at, _)| *at)
            .unwrap_or_else(|| panic!("no `{text}` in {changes:?}"))
    };
    // A sample shows a phase once the 3 s window lies inside it.
    let settled = |sample: &Sample, from: Instant, to: Instant| {
        sample.at > from + Duration::from_secs(3) && sample.at < to
    };

    // Payments: the error ratio rises during the burst and falls after it.
    let (burst_from, burst_to) = (
        change("payments error burst begins"),
        change("payments error burst ends"),
    );
    let during: Vec<f64> = samples
        .iter()
        .filter(|s| settled(s, burst_from, burst_to + Duration::from_secs(1)))
        .filter_map(|s| s.payments_error_ratio)
        .collect();
    let after: Vec<f64> = samples
        .iter()
        .filter(|s| s.payments_calls > 0.0)
        .filter(|s| {
            settled(
                s,
                burst_to + Duration::from_secs(1),
                change("database latency spike begins"),
            )
        })
        .filter_map(|s| s.payments_error_ratio)
        .collect();
    let before: Vec<f64> = samples
        .iter()
        .filter(|s| s.payments_calls > 0.0 && s.at < burst_from)
        .filter_map(|s| s.payments_error_ratio)
        .collect();
    // Half the charges fail; payments' database calls do not, so its ratio is near 25%. Judged
    // over the whole burst, from the counts stored (the services view of that time range), not
    // from 3 s samples, whose counts a busy machine thins out.
    let (burst_start, burst_end) = burst.expect("the burst began and ended");
    let (status, whole) = get_json(
        ports.ui,
        &format!(
            "/api/v1/services?start={}&end={}",
            unix_nanos(burst_start) + 2_000_000_000,
            unix_nanos(burst_end)
        ),
    )
    .await;
    assert_eq!(status, 200, "{whole}");
    let ratio = service(&whole, "payments").and_then(|p| p["error_ratio"].as_f64());
    assert!(
        ratio.is_some_and(|r| r >= 0.15),
        "payments error ratio over the burst: {ratio:?} (3 s samples: {during:?})"
    );
    for (when, ratios) in [("before", &before), ("after", &after)] {
        assert!(
            !ratios.is_empty() && median(ratios.to_vec()) <= 0.05,
            "payments error ratio {when} the burst: {ratios:?}"
        );
    }

    // Database: the p99 of the calls into PostgreSQL rises during the spike.
    let (spike_from, spike_to) = (
        change("database latency spike begins"),
        change("database latency spike ends"),
    );
    let p99 = |from: Instant, to: Instant| -> Vec<f64> {
        samples
            .iter()
            .filter(|s| settled(s, from, to))
            .filter_map(|s| s.database_p99)
            .collect()
    };
    let steady = p99(burst_to, spike_from);
    let spike = p99(spike_from, spike_to + Duration::from_secs(1));
    assert!(
        !steady.is_empty() && !spike.is_empty(),
        "database edge p99 before {steady:?} and during the spike {spike:?}"
    );
    assert!(
        median(spike.clone()) > 3.0 * median(steady.clone()),
        "database edge p99 before {steady:?} and during the spike {spike:?}"
    );

    eprintln!(
        "payments error ratio before {before:?} during {during:?} after {after:?}; \
         database p99 steady {steady:?} spike {spike:?}"
    );

    // Shipping: its last-seen time stops while frontend's goes on, and moves again after.
    let (silent_from, silent_to) = (
        change("shipping silent begins"),
        change("shipping silent ends"),
    );
    let silent: Vec<&Sample> = samples
        .iter()
        .filter(|s| settled(s, silent_from, silent_to))
        .collect();
    assert!(
        silent.len() >= 3,
        "too few samples while shipping was silent"
    );
    let (first, last) = (silent[0], silent[silent.len() - 1]);
    assert!(
        first.shipping_last_seen.is_some(),
        "shipping was seen before"
    );
    assert_eq!(
        first.shipping_last_seen, last.shipping_last_seen,
        "shipping's last-seen time while it was silent"
    );
    assert!(
        last.frontend_last_seen > first.frontend_last_seen,
        "frontend's last-seen time moves on meanwhile"
    );
    // On the map, checkout's calls to shipping fail (timeouts) on the one edge between them.
    assert!(
        silent.iter().all(|s| s.shipping_edges == 1),
        "one checkout → shipping edge: {:?}",
        silent.iter().map(|s| s.shipping_edges).collect::<Vec<_>>()
    );
    let edge_errors: Vec<f64> = silent
        .iter()
        .filter_map(|s| s.shipping_edge_errors)
        .collect();
    assert!(
        edge_errors.iter().copied().reduce(f64::max).unwrap_or(0.0) >= 0.5,
        "checkout → shipping failures while shipping is silent: {edge_errors:?}"
    );
    let latest = samples.last().unwrap();
    assert!(
        latest.shipping_last_seen > last.shipping_last_seen,
        "shipping's last-seen time moves again once it is back"
    );

    // The burst's error traces are searchable, with the failing payments span in them.
    let (from, to) = burst.unwrap();
    let (status, found) = get_json(
        ports.ui,
        &format!(
            "/api/v1/traces?service=payments&status=error&start={}&end={}&limit=20",
            unix_nanos(from),
            unix_nanos(to + Duration::from_secs(1))
        ),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    let traces = found["traces"].as_array().unwrap();
    assert!(traces.len() >= 3, "error traces of the burst: {found}");
    assert!(
        traces
            .iter()
            .all(|t| t["root_service"] == "frontend" && t["error_count"].as_u64() >= Some(1))
    );
    let id = traces[0]["trace_id"].as_str().unwrap();
    let (_, trace) = get_json(ports.ui, &format!("/api/v1/traces/{id}")).await;
    let failing = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service_name"] == "payments" && s["status"]["code"] == "error")
        .expect("a failing payments span");
    assert!(
        failing["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "exception"),
        "the failing charge carries its exception: {failing}"
    );

    // Alerts: each incident fires its built-in alerts, rooted where it began, and they
    // resolve; nothing fires in the healthy stretches.
    let wall = |text: &str| {
        walls
            .iter()
            .find(|(_, t)| t == text)
            .map(|(at, _)| unix_nanos(*at))
            .unwrap_or_else(|| panic!("no `{text}` in {walls:?}"))
    };
    // At speed 10 the demo's one-minute window is 6 s: alerts resolve within it after the end.
    let settle = Duration::from_secs(6 + 5).as_nanos();
    let incidents = [
        (
            "payments error burst",
            "payments",
            vec![
                ("ServiceErrors", vec![("service", "payments")]),
                (
                    "DependencyFailing",
                    vec![("client", "checkout"), ("server", "payments")],
                ),
            ],
        ),
        (
            "database latency spike",
            "postgresql",
            vec![("ServiceLatency", vec![])],
        ),
        (
            "shipping silent",
            "shipping",
            vec![
                ("ServiceSilent", vec![("service", "shipping")]),
                (
                    "DependencyFailing",
                    vec![("client", "checkout"), ("server", "shipping")],
                ),
            ],
        ),
    ];
    let (_, history) = get_json(ports.ui, "/api/v1/alerts/history?start=now-10m").await;
    let transitions = history["transitions"].as_array().unwrap().clone();
    let (_, all_incidents) = get_json(ports.ui, "/api/v1/incidents").await;
    let time_of = |t: &Value| t.as_str().unwrap().parse::<u128>().unwrap();
    let mut windows = Vec::new();
    for (name, root, alerts) in &incidents {
        let from = wall(&format!("{name} begins"));
        let to = wall(&format!("{name} ends"));
        windows.push((from, to + settle));
        for (rule, labels) in alerts {
            let of_it = |t: &&Value| {
                t["rule"] == *rule && labels.iter().all(|(k, v)| t["labels"][*k] == *v)
            };
            let fired = transitions
                .iter()
                .filter(of_it)
                .find(|t| {
                    t["state"] == "firing" && (from..to + settle).contains(&time_of(&t["time"]))
                })
                .unwrap_or_else(|| {
                    panic!("{name}: no {rule}{labels:?} firing; history {history:#}")
                });
            let fired_at = time_of(&fired["time"]);
            eprintln!(
                "{name}: {rule}{labels:?} fired {:.1}s after it began",
                (fired_at - from) as f64 / 1e9
            );
            assert!(
                transitions
                    .iter()
                    .filter(of_it)
                    .any(|t| t["state"] == "resolved" && time_of(&t["time"]) > fired_at),
                "{name}: {rule}{labels:?} never resolved; history {history:#}"
            );
        }
        assert!(
            all_incidents["incidents"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| {
                    i["root"] == *root && (from..to + settle).contains(&time_of(&i["started_at"]))
                }),
            "{name}: no incident rooted at {root}: {all_incidents:#}"
        );
    }
    let healthy_firings: Vec<&Value> = transitions
        .iter()
        .filter(|t| t["state"] == "firing")
        .filter(|t| {
            let at = time_of(&t["time"]);
            !windows.iter().any(|(from, to)| (*from..*to).contains(&at))
        })
        .collect();
    assert!(
        healthy_firings.is_empty(),
        "alerts fired in a healthy stretch: {healthy_firings:#?}"
    );

    // `--smtp`: on-call got a mail for each incident, naming where it began.
    let subjects: Vec<String> = demo
        .smtp
        .messages()
        .iter()
        .filter(|m| m["rcpt_tos"] == serde_json::json!(["oncall@example.com"]))
        .map(|m| m["subject"].as_str().unwrap_or_default().to_owned())
        .collect();
    for root in ["payments", "postgresql", "shipping"] {
        assert!(
            subjects
                .iter()
                .any(|s| s.starts_with("[FIRING:") && s.contains(&format!("{root} failing"))),
            "no mail for the incident at {root}: {subjects:#?}"
        );
    }
    let (_, ledger) = get_json(ports.ui, "/api/v1/notifications?status=firing").await;
    let sent = ledger["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["outcome"] == "sent" && n["integration"] == "email[0]")
        .count();
    assert!(sent >= 3, "{ledger:#}");
}
