//! The operator's commands against a running `spyglass serve`: `check` (and that it notices a
//! loss), `query`, and `/metrics`.

mod common;

use std::process::{Command, Output};

use common::{checkout, provider, start_server};

fn spyglass(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_against_a_server_and_reports_what_another_one_lacks() {
    let server = start_server().await;
    let endpoint = format!("http://127.0.0.1:{}", server.grpc);
    let api = format!("http://127.0.0.1:{}", server.ui);
    let passed = spyglass(&["check", "--endpoint", &endpoint, "--api", &api]);
    let stdout = text(&passed.stdout);
    assert!(passed.status.success(), "{stdout}{}", text(&passed.stderr));
    assert!(
        stdout.contains("ok: 20 traces (120 spans)"),
        "the summary says what was checked: {stdout}"
    );

    // Written to one server, read from another: every trace is reported missing.
    let other = start_server().await;
    let elsewhere = format!("http://127.0.0.1:{}", other.ui);
    let failed = spyglass(&[
        "check",
        "--endpoint",
        &endpoint,
        "--api",
        &elsewhere,
        "--traces",
        "3",
        "--timeout",
        "1",
    ]);
    let stdout = text(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("missing: trace") && l.contains("by id: HTTP 404"))
            .count(),
        3,
        "each trace is missing by id: {stdout}"
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.ends_with("not found by search"))
            .count(),
        3,
        "and by search: {stdout}"
    );
    assert!(stdout.contains("FAIL:"), "{stdout}");

    // Nothing listens at this endpoint: the check says so and fails.
    let nowhere = format!("http://127.0.0.1:{}", common::free_port());
    let refused = spyglass(&[
        "check",
        "--endpoint",
        &nowhere,
        "--api",
        &api,
        "--traces",
        "1",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stdout).contains("no export was acknowledged"),
        "{}",
        text(&refused.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_prints_a_table_and_metrics_count_what_came_in() {
    let server = start_server().await;
    let frontend = provider("frontend", server.grpc);
    let payments = provider("payments", server.grpc);
    let tracers = (
        opentelemetry::trace::TracerProvider::tracer(&frontend, "test"),
        opentelemetry::trace::TracerProvider::tracer(&payments, "test"),
    );
    checkout(&tracers.0, &tracers.1, true);
    checkout(&tracers.0, &tracers.1, false);
    frontend.force_flush().unwrap();
    payments.force_flush().unwrap();

    let api = format!("http://127.0.0.1:{}", server.ui);
    let output = spyglass(&[
        "query",
        "--api",
        &api,
        "SELECT service_name, count(*) AS spans FROM spans GROUP BY 1 ORDER BY 1",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "service_name │ spans\n\
         ─────────────┼──────\n\
         frontend     │     4\n\
         payments     │     3\n\
         (2 rows)\n"
    );
    let bad = spyglass(&["query", "--api", &api, "SELECT nope FROM spans"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("nope") && text(&bad.stderr).contains("HTTP 400"),
        "the engine's message and the status: {}",
        text(&bad.stderr)
    );

    let metrics = reqwest::get(format!("{api}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert_eq!(
        value(r#"spyglass_ingest_accepted_total{signal="spans",protocol="grpc"}"#),
        7.0
    );
    assert_eq!(
        value(r#"spyglass_query_seconds_count{kind="sql"}"#),
        2.0,
        "the two queries above"
    );
    assert_eq!(
        value("spyglass_service_graph_dropped_spans_total"),
        0.0,
        "far below the bound, no waiting span is dropped"
    );
    // Client and server spans of each charge have paired; only the database call may still
    // wait for its timeout to become an edge to the `postgresql` node.
    let waiting = value("spyglass_service_graph_waiting_spans");
    assert!(waiting <= 1.0, "{waiting} spans waiting");
    assert_eq!(value("spyglass_span_metrics_overflow_spans_total"), 0.0);
    assert_eq!(value("spyglass_span_metrics_series_limit"), 10_000.0);
    assert!(value("spyglass_wal_fsync_seconds_count") >= 1.0);
    assert!(value("spyglass_wal_bytes_written_total") > 0.0);
    assert!(value("spyglass_memtable_bytes") > 0.0);
    assert_eq!(value("spyglass_memory_budget_bytes"), (1u64 << 30) as f64);
    assert_eq!(
        value(r#"spyglass_memory_reserved_bytes{share="memtable"}"#),
        (192u64 << 20) as f64,
        "the memtables' capacity, whatever they hold"
    );
    assert_eq!(
        value(r#"spyglass_memory_reserved_bytes{share="requests"}"#),
        0.0
    );
    assert_eq!(
        value(r#"spyglass_memory_refused_total{share="requests"}"#),
        0.0
    );
    // Nothing flushed yet, so no part's span-metric points are kept.
    assert_eq!(value("spyglass_query_span_metrics_cache_bytes"), 0.0);
    assert!(
        metrics.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );
}

#[test]
fn rules_check_accepts_prometheus_files_and_names_each_mistake_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        r#"groups:
  - name: node
    rules:
      - record: instance:up:sum
        expr: sum by (instance) (up)
      - alert: InstanceDown
        expr: up == 0
        for: 5m
        labels: {severity: page}
        annotations:
          summary: "{{ $labels.instance }} down for {{ $value | humanizeDuration }}"
  - name: spans
    rules:
      - alert: CheckoutErrors
        sql: SELECT service_name AS service, count(*) AS value FROM spans WHERE status_code = 'error' GROUP BY service_name
"#,
    )
    .unwrap();
    let out = spyglass(&["rules", "check", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let printed = text(&out.stdout);
    assert!(printed.contains("SUCCESS: 3 rules found"), "{printed}");

    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "groups:\n  - name: a\n    rules:\n      - alert: A\n        sql: UPDATE spans SET name = 'x'\n        for: 5 min\n      - alert: A\n        expr: up\n        typo: 1\n",
    )
    .unwrap();
    let out = spyglass(&[
        "rules",
        "check",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let printed = text(&out.stdout);
    let bad_name = bad.display().to_string();
    for expected in [
        format!("{bad_name}:5: bad `sql`"),
        format!("{bad_name}:6: bad `for`"),
        format!("{bad_name}:9: unknown field \"typo\""),
    ] {
        assert!(printed.contains(&expected), "{expected:?} in:\n{printed}");
    }
}
