//! `/api/v1/notifications`: the ledger, one entry per notification with every attempt at it,
//! newest first; `/api/v1/notifications/{id}` adds the message as rendered, and
//! `/api/v1/notifications/{id}/html` serves its HTML part alone, to be framed by the UI.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use spyglass_alerting::notify::{Attempt, Notifier};

use crate::error::{ApiError, ApiResult};
use crate::params::{self, Params};
use crate::state::AppState;

/// Most notifications one answer lists.
const MAX_LIMIT: usize = 1000;

/// The HTML part may style itself and show nothing else; it runs nothing and only the UI may
/// frame it.
const MESSAGE_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'; sandbox";

fn notifier(state: &AppState) -> ApiResult<&Notifier> {
    state.alerting()?.notifier().ok_or(ApiError::NotReady)
}

/// The attempts of each notification, oldest attempt first, newest notification first.
fn by_notification(rows: Vec<Attempt>) -> Vec<Vec<Attempt>> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<Attempt>> = HashMap::new();
    for row in rows {
        if !groups.contains_key(&row.notification) {
            order.push(row.notification.clone());
        }
        groups
            .entry(row.notification.clone())
            .or_default()
            .push(row);
    }
    order
        .iter()
        .rev()
        .filter_map(|id| groups.remove(id))
        .collect()
}

fn summary(attempts: &[Attempt]) -> Value {
    let first = &attempts[0];
    let last = &attempts[attempts.len() - 1];
    json!({
        "id": first.notification,
        "time": first.time_unix_nano.to_string(),
        "receiver": first.receiver,
        "integration": first.integration,
        "group_key": first.group_key,
        "incident": first.incident,
        "status": first.status,
        "alerts": first.alerts,
        "subject": first.subject,
        "outcome": last.outcome,
        "attempts": attempts.iter().map(|a| json!({
            "attempt": a.attempt,
            "time": a.time_unix_nano.to_string(),
            "outcome": a.outcome,
            "reply": a.reply,
            "error": a.error,
            "duration_ms": a.duration_ms,
        })).collect::<Vec<_>>(),
    })
}

/// `?incident=`, `?receiver=`, `?status=firing|resolved`, `?outcome=sent|failed|dropped` (of the
/// last attempt), `?limit=` (100; at most 1000).
pub(crate) async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(raw.as_deref());
    params.only(&["incident", "receiver", "status", "outcome", "limit"])?;
    let limit = match params.get("limit") {
        Some(text) => params::number::<usize>("limit", text, "a count from 1 to 1000")?,
        None => 100,
    };
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad("limit", "must be from 1 to 1000"));
    }
    if let Some(s) = params.get("status")
        && !["firing", "resolved"].contains(&s)
    {
        return Err(ApiError::bad("status", "firing or resolved"));
    }
    if let Some(o) = params.get("outcome")
        && !["sent", "failed", "dropped"].contains(&o)
    {
        return Err(ApiError::bad("outcome", "sent, failed or dropped"));
    }
    let notifier = notifier(&state)?;
    // Every attempt of a notification has its incident, receiver and status.
    let rows = notifier.ledger().select(
        |a| {
            params
                .get("incident")
                .is_none_or(|i| a.incident.as_deref() == Some(i))
                && params.get("receiver").is_none_or(|r| a.receiver == r)
                && params.get("status").is_none_or(|s| a.status == s)
        },
        false,
    );
    let all = by_notification(rows);
    let chosen: Vec<&Vec<Attempt>> = all
        .iter()
        .filter(|a| {
            params
                .get("outcome")
                .is_none_or(|o| a[a.len() - 1].outcome == o)
        })
        .collect();
    let truncated = chosen.len() > limit;
    Ok(Json(json!({
        "notifications": chosen.iter().take(limit).map(|a| summary(a)).collect::<Vec<_>>(),
        "truncated": truncated,
    })))
}

fn find(notifier: &Notifier, id: &str) -> ApiResult<Vec<Attempt>> {
    let rows = notifier.ledger().select(|a| a.notification == id, true);
    if rows.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no notification {id:?} in the ledger"
        )));
    }
    Ok(rows)
}

/// One notification with its message: subject, plain text and HTML.
pub(crate) async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let attempts = find(notifier(&state)?, &id)?;
    let mut out = summary(&attempts);
    let message = attempts
        .iter()
        .find(|a| !a.text.is_empty() || !a.html.is_empty());
    out["text"] = json!(message.map_or("", |a| a.text.as_str()));
    out["html"] = json!(message.map_or("", |a| a.html.as_str()));
    Ok(Json(out))
}

/// The HTML part alone, as the mail client shows it.
pub(crate) async fn html(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let attempts = find(notifier(&state)?, &id)?;
    let html = attempts
        .iter()
        .find(|a| !a.html.is_empty())
        .map(|a| a.html.clone())
        .unwrap_or_else(|| "<p>This notification has no HTML part.</p>".to_owned());
    let mut answer = html.into_response();
    let headers = answer.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(MESSAGE_CSP),
    );
    Ok(answer)
}
