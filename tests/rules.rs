//! Rule files end to end: `sql:` alerting and recording rules on a real `spyglass serve`,
//! Prometheus's rules and alerts API in its documented shapes, reloads that keep good rules,
//! and backtests over stored data.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::alerts::{alerts, drive, evidence_opens, find, server, state_is};
use common::shop::{ALERTING_CONFIG as CONFIG, Request, Shop};
use common::{get_json, start_server_with};

const SQL_RULES: &str = r#"groups:
  - name: shop
    interval: 1s
    rules:
      - alert: FailedCharge
        sql: SELECT service_name AS service, trace_id, 1 AS value FROM spans WHERE name = 'GET /payments' AND kind = 'server' AND status_code = 'error' LIMIT 1
        for: 1s
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.service }} failed a charge"
      - record: shop:failed_charges:count
        sql: SELECT service_name AS service, count(*) AS value FROM spans WHERE name = 'GET /payments' AND kind = 'server' AND status_code = 'error' GROUP BY service_name
"#;

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_rules_and_alerts_api_have_prometheus_shapes_and_reload_keeps_good_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("shop.rules.yml");
    std::fs::write(&rules, SQL_RULES).unwrap();
    let args = vec!["--rules".to_string(), rules.display().to_string()];
    let server = start_server_with(dir, CONFIG, &args).await;
    let mut shop = Shop::new(server.grpc);
    let failing = Request {
        fail_at: Some(1),
        ..Request::default()
    };
    let firing = drive(
        &mut shop,
        server.ui,
        "the sql rule fires",
        |shop| {
            shop.send(&["checkout", "payments"], failing);
        },
        |a| state_is(a, "FailedCharge", &[("service", "payments")], "firing"),
    )
    .await;
    // A `trace_id` column is the alert's evidence.
    evidence_opens(server.ui, find(&firing, "FailedCharge", &[]).unwrap()).await;

    // GET /api/v1/alerts, as Prometheus's API documentation shows it.
    let (status, body) = get_json(server.ui, "/prometheus/api/v1/alerts").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "success");
    let alert = body["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "FailedCharge")
        .unwrap();
    assert_eq!(
        keys(alert),
        ["activeAt", "annotations", "labels", "state", "value"]
    );
    assert_eq!(alert["state"], "firing");
    assert_eq!(
        alert["value"], "1e+00",
        "values are strings in Go's %e form"
    );
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(alert["annotations"]["summary"], "payments failed a charge");
    assert!(humantime::parse_rfc3339(alert["activeAt"].as_str().unwrap()).is_ok());

    // GET /api/v1/rules: groups with their rules, rules with their alerts.
    let (status, body) = get_json(server.ui, "/prometheus/api/v1/rules").await;
    assert_eq!(status, 200);
    let groups = body["data"]["groups"].as_array().unwrap();
    let shop_group = groups.iter().find(|g| g["name"] == "shop").unwrap();
    assert_eq!(
        keys(shop_group),
        [
            "evaluationTime",
            "file",
            "interval",
            "lastEvaluation",
            "limit",
            "name",
            "rules"
        ]
    );
    assert_eq!(shop_group["interval"], 1);
    assert!(
        shop_group["file"]
            .as_str()
            .unwrap()
            .ends_with("shop.rules.yml")
    );
    let rule = &shop_group["rules"][0];
    assert_eq!(
        keys(rule),
        [
            "alerts",
            "annotations",
            "duration",
            "evaluationTime",
            "health",
            "keepFiringFor",
            "labels",
            "lastEvaluation",
            "name",
            "query",
            "state",
            "type"
        ]
    );
    assert_eq!(
        (
            &rule["type"],
            &rule["state"],
            &rule["health"],
            &rule["duration"]
        ),
        (
            &"alerting".into(),
            &"firing".into(),
            &"ok".into(),
            &1.into()
        )
    );
    assert!(rule["evaluationTime"].is_f64());
    assert_eq!(rule["alerts"][0]["labels"]["alertname"], "FailedCharge");
    let recording = &shop_group["rules"][1];
    assert_eq!(
        keys(recording),
        [
            "evaluationTime",
            "health",
            "labels",
            "lastEvaluation",
            "name",
            "query",
            "type"
        ]
    );
    assert_eq!(recording["type"], "recording");
    // The recording rule's rows are gauge points in the metrics table.
    let answer = common::sql(
        server.ui,
        "SELECT service_name, metric_type, value FROM metrics \
            WHERE metric_name = 'shop:failed_charges:count' ORDER BY time_unix_nano DESC LIMIT 1",
    )
    .await;
    let row = &answer["rows"][0];
    assert_eq!(row["service_name"], "payments", "{answer:#}");
    assert_eq!(row["metric_type"], "gauge");
    assert!(row["value"].as_f64().unwrap() >= 1.0, "{answer:#}");
    let builtin = groups
        .iter()
        .find(|g| g["name"] == "spyglass.builtin")
        .unwrap();
    assert_eq!(builtin["rules"].as_array().unwrap().len(), 5);
    // Filters as Prometheus takes them.
    let (_, filtered) = get_json(
        server.ui,
        "/prometheus/api/v1/rules?type=alert&rule_group[]=shop",
    )
    .await;
    assert_eq!(filtered["data"]["groups"].as_array().unwrap().len(), 1);
    let (_, records) = get_json(server.ui, "/prometheus/api/v1/rules?type=record").await;
    let recorded = records["data"]["groups"].as_array().unwrap();
    assert_eq!(
        recorded.len(),
        1,
        "only the group with a recording rule: {records:#}"
    );
    assert_eq!(recorded[0]["rules"].as_array().unwrap().len(), 1);
    assert_eq!(recorded[0]["rules"][0]["type"], "recording");
    let (status, bad) = get_json(server.ui, "/prometheus/api/v1/rules?type=both").await;
    assert_eq!((status, &bad["status"]), (400, &"error".into()));

    // A reload with a mistake keeps the rule running and says what is wrong.
    std::fs::write(&rules, SQL_RULES.replace("for: 1s", "for: 1 second")).unwrap();
    let client = reqwest::Client::new();
    let reload = client
        .post(format!("http://127.0.0.1:{}/-/reload", server.ui))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 500);
    let text = reload.text().await.unwrap();
    assert!(text.contains("shop.rules.yml:7: bad `for`"), "{text}");
    let (_, native) = get_json(server.ui, "/api/v1/rules").await;
    assert!(
        native["reload_error"]
            .as_str()
            .unwrap()
            .contains("bad `for`")
    );
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", server.ui))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("spyglass_rules_last_reload_successful 0"),
        "{metrics}"
    );
    let still = alerts(server.ui).await;
    assert!(state_is(
        &still,
        "FailedCharge",
        &[("service", "payments")],
        "firing"
    ));
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Sends `how` along both callers' chains every 100 ms for `seconds`.
async fn traffic_for(shop: &mut Shop, seconds: u64, how: Request) {
    let until = std::time::Instant::now() + Duration::from_secs(seconds);
    while std::time::Instant::now() < until {
        shop.send(&["frontend", "payments"], how);
        shop.send(&["checkout", "payments"], how);
        shop.flush();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtest_finds_when_alerts_would_have_been_pending_and_firing() {
    let server = server().await;
    let mut shop = Shop::new(server.grpc);
    let ok = Request::default();
    let start = now_nanos();
    traffic_for(&mut shop, 6, ok).await;
    let failure_start = now_nanos();
    traffic_for(
        &mut shop,
        8,
        Request {
            fail_at: Some(1),
            ..ok
        },
    )
    .await;
    let failure_end = now_nanos();
    traffic_for(&mut shop, 12, ok).await;
    let end = now_nanos();

    let body = serde_json::json!({
        "from": start.to_string(),
        "to": end.to_string(),
        "step": "1s",
    });
    let response = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/api/v1/rules/backtest",
            server.ui
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    let episodes = report["episodes"].as_array().unwrap();
    let time = |v: &Value| v.as_str().unwrap().parse::<u64>().unwrap();
    let s = 1_000_000_000;
    let payments = episodes
        .iter()
        .find(|e| e["rule"] == "ServiceErrors" && e["labels"]["service"] == "payments")
        .unwrap_or_else(|| panic!("{report:#}"));
    let pending = time(&payments["pending_at"]);
    let firing = time(&payments["firing_at"]);
    let resolved = time(&payments["resolved_at"]);
    assert!(
        (failure_start..failure_start + 4 * s).contains(&pending),
        "pending {}s after the failures began",
        (pending as f64 - failure_start as f64) / 1e9
    );
    assert_eq!(
        firing - pending,
        s,
        "`for: 1s` at a 1 s step: firing at the next step"
    );
    assert!(
        (failure_end + 2 * s..failure_end + 9 * s).contains(&resolved),
        "resolved {}s after the failures ended (window 5 s)",
        (resolved as f64 - failure_end as f64) / 1e9
    );
    for e in episodes {
        let began = e["pending_at"]
            .as_str()
            .or(e["firing_at"].as_str())
            .unwrap();
        assert!(
            began.parse::<u64>().unwrap() >= failure_start,
            "nothing in the healthy stretch before the failure: {e:#}"
        );
    }

    // The command line prints the same.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .args(["rules", "backtest", "--from"])
        .arg(start.to_string())
        .arg("--to")
        .arg(end.to_string())
        .args(["--step", "1s", "--api"])
        .arg(format!("http://127.0.0.1:{}", server.ui))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = printed
        .lines()
        .find(|l| l.starts_with("ServiceErrors{service=\"payments\"}"))
        .unwrap_or_else(|| panic!("{printed}"));
    assert!(
        line.contains("pending") && line.contains("firing") && line.contains("resolved"),
        "{line}"
    );
}
