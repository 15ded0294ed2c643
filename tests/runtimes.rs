//! Queries run on threads of their own (`spyglass-query`), apart from the runtime whose
//! threads receive and acknowledge telemetry: a heavy query spends its CPU time there.

mod common;

use common::start_server;
use serde_json::{Value, json};

/// CPU time (user and system, in clock ticks) of the threads of `pid` whose name starts with
/// `prefix`.
fn thread_cpu(pid: u32, prefix: &str) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let mut ticks = 0;
    for task in tasks {
        let path = task.unwrap().path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // After the name (which ends with ')'): utime and stime are the 12th and 13th fields.
        let fields: Vec<u64> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().skip(11).take(2))
            .into_iter()
            .flatten()
            .filter_map(|v| v.parse().ok())
            .collect();
        ticks += fields.iter().sum::<u64>();
    }
    ticks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heavy_query_runs_on_the_query_threads_not_the_receivers() {
    let server = start_server().await;
    let pid = server.pid();
    let query_before = thread_cpu(pid, "spyglass-query");
    let receivers_before = thread_cpu(pid, "tokio-runtime-w");

    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/sql", server.ui))
        .json(&json!({"query": "SELECT count(*) AS n FROM generate_series(1, 20000000)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["rows"][0]["n"], 20_000_000);

    let query = thread_cpu(pid, "spyglass-query") - query_before;
    let receivers = thread_cpu(pid, "tokio-runtime-w") - receivers_before;
    assert!(
        query >= 5,
        "the query's CPU time is spent on spyglass-query threads: {query} ticks"
    );
    assert!(
        receivers < query,
        "the receivers' runtime did not run it: {receivers} ticks there, {query} on the query threads"
    );
}
