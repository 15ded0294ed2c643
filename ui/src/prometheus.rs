//! Prometheus's HTTP API where it serves alerting: `/prometheus/api/v1/rules`,
//! `/prometheus/api/v1/alerts` (the shapes of Prometheus's API documentation, which Grafana's
//! Prometheus data source reads) and `POST /-/reload`.

use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use spyglass_alerting::rules::RuleKind;
use spyglass_alerting::template::format_e;
use spyglass_alerting::{Alert, RuleStatus};

use crate::error::ApiError;
use crate::params::Params;
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/prometheus/api/v1/rules", get(rules))
        .route("/prometheus/api/v1/alerts", get(alerts))
        .route("/-/reload", post(reload).put(reload))
}

/// Prometheus's envelope around an answer.
fn success(data: Value) -> Response {
    Json(json!({ "status": "success", "data": data })).into_response()
}

/// Prometheus's error envelope.
fn failure(status: StatusCode, error_type: &str, error: String) -> Response {
    (
        status,
        Json(json!({ "status": "error", "errorType": error_type, "error": error })),
    )
        .into_response()
}

fn unavailable(e: ApiError) -> Response {
    let (status, message) = e.status_and_message();
    failure(status, "unavailable", message)
}

/// RFC 3339 with nanoseconds, as Go prints `time.Time`; Go's zero time when never.
fn rfc3339(t: Option<u64>) -> String {
    match t {
        Some(t) => {
            humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(t)).to_string()
        }
        None => "0001-01-01T00:00:00Z".into(),
    }
}

/// Seconds as Go encodes a float64: a whole number without a fraction.
fn seconds(s: f64) -> Value {
    if s.fract() == 0.0 && s.abs() < 1e15 {
        json!(s as i64)
    } else {
        json!(s)
    }
}

fn alert_json(a: &Alert) -> Value {
    let mut out = json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": rfc3339(Some(a.active_at)),
        "value": format_e(a.value),
    });
    if let Some(since) = a.keep_firing_since {
        out["keepFiringSince"] = json!(rfc3339(Some(since)));
    }
    out
}

fn rule_json(rule: &RuleStatus, with_alerts: bool) -> Value {
    let common = |mut v: Value| {
        v["name"] = json!(rule.name);
        v["query"] = json!(rule.query);
        v["labels"] = json!(rule.labels);
        v["health"] = json!(rule.health());
        v["evaluationTime"] = json!(rule.evaluation_seconds);
        v["lastEvaluation"] = json!(rfc3339(rule.last_evaluation));
        if let Some(e) = &rule.last_error {
            v["lastError"] = json!(e);
        }
        v
    };
    match rule.kind {
        RuleKind::Alerting => {
            let active: Vec<Value> = rule
                .alerts
                .iter()
                .filter(|a| a.state.is_active())
                .map(alert_json)
                .collect();
            let mut v = common(json!({
                "type": "alerting",
                "state": rule.state().as_str(),
                "duration": seconds(rule.for_secs),
                "keepFiringFor": seconds(rule.keep_firing_for_secs),
                "annotations": rule.annotations,
            }));
            if with_alerts {
                v["alerts"] = json!(active);
            }
            v
        }
        RuleKind::Recording => common(json!({ "type": "recording" })),
    }
}

/// `type=alert|record`, `rule_name[]`, `rule_group[]`, `file[]`, `exclude_alerts`; other
/// parameters are ignored, as Prometheus ignores them.
async fn rules(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let params = Params::parse(raw.as_deref());
    let kind = match params.get("type") {
        None => None,
        Some("alert") => Some(RuleKind::Alerting),
        Some("record") => Some(RuleKind::Recording),
        Some(other) => {
            return failure(
                StatusCode::BAD_REQUEST,
                "bad_data",
                format!("invalid query parameter type=\"{other}\": not alert or record"),
            );
        }
    };
    let names: Vec<&str> = params.all("rule_name[]").collect();
    let groups: Vec<&str> = params.all("rule_group[]").collect();
    let files: Vec<&str> = params.all("file[]").collect();
    let with_alerts = params.get("exclude_alerts") != Some("true");
    let alerting = match state.alerting() {
        Ok(a) => a,
        Err(e) => return unavailable(e),
    };
    let data = alerting.read(|s| {
        let groups: Vec<Value> = s
            .groups
            .iter()
            .filter(|g| groups.is_empty() || groups.contains(&g.name.as_str()))
            .filter(|g| files.is_empty() || files.contains(&g.file.as_str()))
            .filter_map(|g| {
                let rules: Vec<Value> = g
                    .rules
                    .iter()
                    .filter(|r| kind.is_none_or(|k| r.kind == k))
                    .filter(|r| names.is_empty() || names.contains(&r.name.as_str()))
                    .map(|r| rule_json(r, with_alerts))
                    .collect();
                // Prometheus leaves out groups that a filter emptied.
                let filtered = kind.is_some() || !names.is_empty();
                (!(filtered && rules.is_empty())).then(|| {
                    json!({
                        "name": g.name,
                        "file": g.file,
                        "rules": rules,
                        "interval": seconds(g.interval_secs),
                        "limit": g.limit,
                        "evaluationTime": g.evaluation_seconds,
                        "lastEvaluation": rfc3339(g.last_evaluation),
                    })
                })
            })
            .collect();
        json!({ "groups": groups })
    });
    success(data)
}

async fn alerts(State(state): State<AppState>) -> Response {
    let alerting = match state.alerting() {
        Ok(a) => a,
        Err(e) => return unavailable(e),
    };
    let alerts: Vec<Value> = alerting
        .alerts(false)
        .iter()
        .map(|(_, _, a)| alert_json(a))
        .collect();
    success(json!({ "alerts": alerts }))
}

/// Re-reads the rule files, as Prometheus's `/-/reload` does (200, or 500 with the error).
async fn reload(State(state): State<AppState>) -> Response {
    let alerting = match state.alerting() {
        Ok(a) => a,
        Err(e) => return unavailable(e),
    };
    match alerting.reload().await {
        Ok(()) => (StatusCode::OK, "rules reloaded\n").into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload the rules; the previous rules keep running:\n{error}\n"),
        )
            .into_response(),
    }
}
