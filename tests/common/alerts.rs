//! Reading alerts from a running `spyglass serve` while services send it traffic, for the
//! alerting tests.

use std::time::Duration;

use serde_json::Value;

use super::shop::{ALERTING_CONFIG, Shop};
use super::{Server, get_json, start_server_with};

/// A generous bound for what should take a few seconds, on a slow, busy machine.
pub const LIMIT: Duration = Duration::from_secs(120);

pub async fn server() -> Server {
    start_server_with(tempfile::tempdir().unwrap(), ALERTING_CONFIG, &[]).await
}

/// The active alerts as (rule, labels, state) and their JSON.
pub async fn alerts(ui: u16) -> Vec<Value> {
    let (status, body) = get_json(
        ui,
        "/api/v1/alerts?state=pending&state=firing&state=resolved",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["alerts"].as_array().cloned().unwrap_or_default()
}

pub fn find<'a>(alerts: &'a [Value], rule: &str, labels: &[(&str, &str)]) -> Option<&'a Value> {
    alerts
        .iter()
        .find(|a| a["rule"] == rule && labels.iter().all(|(k, v)| a["labels"][*k] == *v))
}

pub fn state_is(alerts: &[Value], rule: &str, labels: &[(&str, &str)], state: &str) -> bool {
    find(alerts, rule, labels).is_some_and(|a| a["state"] == state)
}

/// Sends `traffic` every 100 ms until `done` holds of the alerts (or the limit passes).
pub async fn drive(
    shop: &mut Shop,
    ui: u16,
    what: &str,
    mut traffic: impl FnMut(&mut Shop),
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let started = std::time::Instant::now();
    loop {
        traffic(shop);
        shop.flush();
        let now = alerts(ui).await;
        if done(&now) {
            return now;
        }
        assert!(
            started.elapsed() < LIMIT,
            "{what}: not within {LIMIT:?}; alerts: {now:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The incidents answer, and those of its incidents that are not resolved.
pub async fn open_incidents(ui: u16) -> (Value, Vec<Value>) {
    let (_, incidents) = get_json(ui, "/api/v1/incidents").await;
    let open = incidents["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] != "resolved")
        .cloned()
        .collect();
    (incidents, open)
}

/// Every example trace id of `alert` opens in the trace API.
pub async fn evidence_opens(ui: u16, alert: &Value) {
    let evidence = alert["evidence"].as_array().unwrap();
    assert!(!evidence.is_empty(), "no example traces: {alert:#}");
    assert!(evidence.len() <= 3);
    for e in evidence {
        let id = e["trace_id"].as_str().unwrap();
        let (status, trace) = get_json(ui, &format!("/api/v1/traces/{id}")).await;
        assert_eq!(status, 200, "example trace {id} of {alert:#}");
        assert!(trace["spans"].as_array().is_some_and(|s| !s.is_empty()));
        assert!(
            e["url"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/trace/{id}"))
        );
    }
}
