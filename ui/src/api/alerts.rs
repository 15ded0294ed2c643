//! `/api/v1/alerts`, `/api/v1/alerts/history`, `/api/v1/incidents` and `/api/v1/rules`: the
//! alerting state in the native shape (times as Unix-nanosecond strings).

use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::{Value, json};
use spyglass_alerting::{Alert, AlertState, Alerting, Incident, RuleStatus, Transition};

use crate::error::ApiResult;
use crate::params::{self, Params};
use crate::state::AppState;

fn nanos(t: Option<u64>) -> Value {
    t.map_or(Value::Null, |t| json!(t.to_string()))
}

/// A link to a trace in the UI.
fn trace_url(alerting: &Alerting, trace_id: &str) -> String {
    format!(
        "{}/trace/{trace_id}",
        alerting.external_url().trim_end_matches('/')
    )
}

pub(crate) fn alert_json(alerting: &Alerting, group: &str, rule: &str, a: &Alert) -> Value {
    json!({
        "group": group,
        "rule": rule,
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "value": finite(a.value),
        "threshold": a.threshold.map(finite),
        "since": a.active_at.to_string(),
        "fired_at": nanos(a.fired_at),
        "resolved_at": nanos(a.resolved_at),
        "incident": a.incident,
        "evidence": a.trace_ids.iter().map(|id| json!({
            "trace_id": id,
            "url": trace_url(alerting, id),
        })).collect::<Vec<_>>(),
    })
}

/// JSON has no NaN or infinity: they are sent as strings.
fn finite(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        json!(spyglass_alerting::template::format_value(v))
    }
}

/// `?state=firing|pending|resolved` (repeatable; default pending and firing), `?service=`.
pub(crate) async fn alerts(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(raw.as_deref());
    params.only(&["state", "service"])?;
    let alerting = state.alerting()?;
    let states: Vec<AlertState> = params
        .all("state")
        .map(|s| match s {
            "pending" => Ok(AlertState::Pending),
            "firing" => Ok(AlertState::Firing),
            "resolved" => Ok(AlertState::Resolved),
            other => Err(crate::error::ApiError::bad(
                "state",
                format!("{other:?} is not pending, firing or resolved"),
            )),
        })
        .collect::<Result<_, _>>()?;
    let service = params.get("service");
    let out: Vec<Value> = alerting
        .alerts(true)
        .iter()
        .filter(|(_, _, a)| {
            if states.is_empty() {
                a.state.is_active()
            } else {
                states.contains(&a.state)
            }
        })
        .filter(|(_, _, a)| service.is_none_or(|s| mentions(&a.labels, s)))
        .map(|(g, r, a)| alert_json(alerting, g, r, a))
        .collect();
    Ok(Json(json!({ "alerts": out })))
}

/// Whether an alert is about `service`: as its service, or either end of its edge.
fn mentions(labels: &spyglass_alerting::Labels, service: &str) -> bool {
    ["service", "service_name", "client", "server"]
        .iter()
        .any(|k| labels.get(*k).is_some_and(|v| v == service))
}

fn incident_json(
    alerting: &Alerting,
    incident: &Incident,
    alerts: &[(String, String, Alert)],
) -> Value {
    let members: Vec<Value> = incident
        .alerts
        .iter()
        .filter_map(|r| {
            alerts
                .iter()
                .find(|(_, rule, a)| *rule == r.rule && a.labels == r.labels)
                .map(|(g, rule, a)| alert_json(alerting, g, rule, a))
        })
        .collect();
    let firing = alerts.iter().any(|(_, rule, a)| {
        a.state == AlertState::Firing
            && incident
                .alerts
                .iter()
                .any(|r| r.rule == *rule && r.labels == a.labels)
    });
    let state = match (incident.resolved_at, firing) {
        (Some(_), _) => "resolved",
        (None, true) => "firing",
        (None, false) => "pending",
    };
    json!({
        "id": incident.id,
        "root": incident.root,
        "state": state,
        "started_at": incident.started_at.to_string(),
        "resolved_at": nanos(incident.resolved_at),
        "affected": incident.affected,
        "alerts": members,
    })
}

pub(crate) async fn incidents(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    Params::parse(raw.as_deref()).only(&[])?;
    let alerting = state.alerting()?;
    let alerts = alerting.alerts(true);
    let incidents = alerting.read(|s| s.incidents.clone());
    let out: Vec<Value> = incidents
        .iter()
        .map(|i| incident_json(alerting, i, &alerts))
        .collect();
    Ok(Json(json!({ "incidents": out })))
}

fn rule_json(rule: &RuleStatus) -> Value {
    json!({
        "name": rule.name,
        "type": match rule.kind {
            spyglass_alerting::rules::RuleKind::Alerting => "alerting",
            spyglass_alerting::rules::RuleKind::Recording => "recording",
        },
        "language": rule.language,
        "query": rule.query,
        "for_seconds": rule.for_secs,
        "keep_firing_for_seconds": rule.keep_firing_for_secs,
        "labels": rule.labels,
        "annotations": rule.annotations,
        "state": rule.state().as_str(),
        "health": rule.health(),
        "last_error": rule.last_error,
        "last_evaluation": nanos(rule.last_evaluation),
        "evaluation_seconds": rule.evaluation_seconds,
        "alerts": rule.alerts.iter().filter(|a| a.state.is_active()).count(),
    })
}

pub(crate) async fn rules(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    Params::parse(raw.as_deref()).only(&[])?;
    let alerting = state.alerting()?;
    Ok(Json(alerting.read(|s| {
        json!({
            "reload_error": s.reload_error,
            "groups": s.groups.iter().map(|g| json!({
                "name": g.name,
                "file": g.file,
                "interval_seconds": g.interval_secs,
                "limit": g.limit,
                "last_evaluation": nanos(g.last_evaluation),
                "evaluation_seconds": g.evaluation_seconds,
                "rules": g.rules.iter().map(rule_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    })))
}

fn transition_json(t: &Transition) -> Value {
    json!({
        "time": t.time_unix_nano.to_string(),
        "group": t.group,
        "rule": t.rule,
        "labels": t.labels,
        "state": t.state.as_str(),
        "value": finite(t.value),
        "incident": t.incident,
        "trace_ids": t.trace_ids,
    })
}

/// `?rule=&service=&start=&end=` (the last hour by default): state changes, oldest first.
pub(crate) async fn history(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(raw.as_deref());
    params.only(&["rule", "service", "start", "end"])?;
    let (start, end) = params::time_window(&params)?;
    let rule = params.get("rule");
    let service = params.get("service");
    let out: Vec<Value> = state
        .alerting()?
        .history(start, end, |t| {
            rule.is_none_or(|r| t.rule == r) && service.is_none_or(|s| mentions(&t.labels, s))
        })
        .iter()
        .map(transition_json)
        .collect();
    Ok(Json(json!({ "transitions": out })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BacktestRequest {
    /// Rule files as `{name, text}`; none: the built-in rules alone.
    #[serde(default)]
    files: Vec<RuleFile>,
    from: String,
    to: String,
    /// A duration; the evaluation interval by default.
    step: Option<String>,
    /// Whether the built-in rules run too (default true).
    builtin: Option<bool>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    text: String,
}

/// `POST /api/v1/rules/backtest`: the rules evaluated over stored data from `from` to `to`,
/// with when each alert would have been pending, firing and resolved.
pub(crate) async fn backtest(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    use crate::error::ApiError;
    crate::access::json_only(&headers)?;
    let request: BacktestRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadParameter(format!(
            "the body must be {{\"files\": [{{\"name\", \"text\"}}], \"from\", \"to\", \"step\", \"builtin\"}}: {e}"
        ))
    })?;
    let from = params::time("from", &request.from)?;
    let to = params::time("to", &request.to)?;
    let engine = state.engine()?.clone();
    let alerting = state.alerting()?;
    let mut config = alerting.config().clone();
    config.builtin.enabled = request.builtin.unwrap_or(true);
    let step = match &request.step {
        Some(s) => params::duration("step", s)?,
        None => config.evaluation_interval(),
    };
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for file in &request.files {
        match spyglass_alerting::rules::parse(&file.name, &file.text) {
            Ok(g) => groups.extend(g),
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(ApiError::BadParameter(text.join("\n")));
    }
    let report = match spyglass_alerting::backtest(engine, config, groups, from, to, step).await {
        Ok(report) => report,
        Err(e @ spyglass_alerting::Error::BadBacktest(_)) => {
            return Err(ApiError::BadParameter(e.to_string()));
        }
        Err(e) => {
            tracing::error!(error = %e, "backtest failed");
            return Err(ApiError::Internal);
        }
    };
    let episodes: Vec<Value> = report
        .episodes
        .iter()
        .map(|e| {
            json!({
                "group": e.group,
                "rule": e.rule,
                "labels": e.labels,
                "pending_at": nanos(e.pending_at),
                "firing_at": nanos(e.firing_at),
                "resolved_at": nanos(e.resolved_at),
                "cleared_at": nanos(e.cleared_at),
                "max_value": finite(e.max_value),
            })
        })
        .collect();
    Ok(Json(json!({
        "from": from.to_string(),
        "to": to.to_string(),
        "step_seconds": step.as_secs_f64(),
        "evaluations": report.evaluations,
        "episodes": episodes,
    })))
}
