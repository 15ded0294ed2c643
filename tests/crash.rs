//! SIGKILL of `spyglass serve` under load from the demo's shop: after a restart, every span
//! the shop's exporters saw acknowledged is there, and `spyglass check` passes.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{serve_stderr, spawn_serve, start_ready, wait_ready};
use serde_json::{Value, json};

async fn sql(ui: u16, query: &str) -> Value {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{ui}/api/v1/sql"))
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_when_the_server_is_killed_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, ports) = start_ready(dir.path(), |ports| spawn_serve(dir.path(), ports)).await;

    let acks = dir.path().join("acks.txt");
    let shop = Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .args(["demo", "--rate", "60", "--speed", "20", "--endpoint"])
        .arg(format!("http://127.0.0.1:{}", ports.grpc))
        .arg("--record-acks")
        .arg(&acks)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Let acknowledged spans pile up in the WAL and memtable, then kill without warning.
    tokio::time::sleep(Duration::from_secs(5)).await;
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut server = spawn_serve(dir.path(), ports);
    if let Err(why) = wait_ready(ports.ui, &mut server).await {
        panic!(
            "never ready after the restart ({why:?}): {}",
            serve_stderr(dir.path())
        );
    }
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Stop the shop: its exporters flush and it reports what was acknowledged.
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(shop.id() as i32, libc::SIGINT) };
    let output = shop.wait_with_output().unwrap();
    assert!(output.status.success(), "the shop exits cleanly");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let reported: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("acknowledged: spans="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no acknowledged count in {stdout}"));
    let acknowledged: Vec<String> = std::fs::read_to_string(&acks)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(acknowledged.len() as u64, reported);
    assert!(
        reported > 1000,
        "the shop kept the server busy: {reported} spans"
    );

    // Every acknowledged span is stored, and shown once: a request the kill interrupted after
    // its WAL write may be stored again by the exporter's retry, but no trace view shows a span
    // twice.
    let unique: HashSet<&String> = acknowledged.iter().collect();
    assert_eq!(
        unique.len(),
        acknowledged.len(),
        "each span acknowledged once"
    );
    let answer = sql(
        ports.ui,
        "SELECT count(*) AS n, count(DISTINCT span_id) AS distinct_spans FROM spans",
    )
    .await;
    let row = &answer["rows"][0];
    assert!(
        row["distinct_spans"].as_u64().unwrap() >= reported,
        "{row} stored, {reported} acknowledged"
    );
    let mut by_trace: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in &acknowledged {
        let (trace, span) = line.split_once(' ').unwrap();
        by_trace.entry(trace).or_default().push(span);
    }
    let (mut lost, mut twice) = (Vec::new(), Vec::new());
    for (trace, spans) in &by_trace {
        let (status, body) =
            common::get_json(ports.ui, &format!("/api/v1/traces/{trace}?view=tree")).await;
        assert_eq!(status, 200, "trace {trace} of acknowledged spans: {body}");
        let shown: Vec<&str> = body["spans"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["span_id"].as_str())
            .collect();
        let stored: HashSet<&str> = shown.iter().copied().collect();
        if stored.len() != shown.len() {
            twice.push(trace.to_string());
        }
        lost.extend(
            spans
                .iter()
                .filter(|s| !stored.contains(**s))
                .map(|s| format!("{trace} {s}")),
        );
    }
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(twice.is_empty(), "traces showing a span twice: {twice:?}");
    let stored = row["n"].as_u64().unwrap();
    let distinct = row["distinct_spans"].as_u64().unwrap();
    // Rows stored twice come only from requests in flight at the kill: a few exports' worth.
    assert!(
        stored - distinct <= reported / 10,
        "{} duplicate rows for {reported} acknowledged spans",
        stored - distinct
    );

    // And the checker agrees that the restarted server keeps what it acknowledges.
    let check = Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .args(["check", "--endpoint"])
        .arg(format!("http://127.0.0.1:{}", ports.grpc))
        .arg("--api")
        .arg(format!("http://127.0.0.1:{}", ports.ui))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "spyglass check: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
