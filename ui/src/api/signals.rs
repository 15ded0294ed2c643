//! `/api/v1/logs`, `/api/v1/metrics` and `/api/v1/metrics/series`.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::{Value, json};
use spyglass_query::model::{LogRecord, SpanId};
use spyglass_query::{Aggregation, LogCursor, LogSearch, SeriesQuery};

use super::parse_trace_id;
use super::render::{attributes, typed};
use crate::error::{ApiError, ApiResult};
use crate::params::{self, Params};
use crate::state::AppState;

/// `trace`..`fatal` (OTLP severity ranges) or a severity number 1–24.
fn severity(text: &str) -> ApiResult<i32> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "trace" => 1,
        "debug" => 5,
        "info" => 9,
        "warn" | "warning" => 13,
        "error" => 17,
        "fatal" => 21,
        n => match n.parse::<i32>() {
            Ok(n) if (1..=24).contains(&n) => n,
            _ => {
                return Err(ApiError::bad(
                    "severity",
                    format!("{text:?}; use trace, debug, info, warn, error, fatal or 1-24"),
                ));
            }
        },
    })
}

pub(crate) async fn logs(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(raw.as_deref());
    params.only(&[
        "service", "severity", "q", "trace_id", "span_id", "start", "end", "limit", "cursor",
    ])?;
    let trace_id = params.get("trace_id").map(parse_trace_id).transpose()?;
    let span_id = params
        .get("span_id")
        .map(|text| {
            SpanId::from_hex(text)
                .ok_or_else(|| ApiError::bad("span_id", format!("{text:?} is not 16 hex digits")))
        })
        .transpose()?;
    // A trace's logs are wanted whatever the time range, like the trace itself.
    let (start, end) = match trace_id {
        Some(_) if params.get("start").is_none() => (None, None),
        _ => {
            let (s, e) = params::time_window(&params)?;
            (Some(s), Some(e))
        }
    };
    let search = LogSearch {
        service: params.get("service").map(str::to_string),
        min_severity: params.get("severity").map(severity).transpose()?,
        text: params.get("q").map(str::to_string),
        trace_id,
        span_id,
        start_unix_nano: start,
        end_unix_nano: end,
        limit: match params.get("limit") {
            Some(v) => params::number("limit", v, "a positive integer")?,
            None => 100,
        },
        cursor: params
            .get("cursor")
            .map(|c| {
                LogCursor::decode(c)
                    .ok_or_else(|| ApiError::bad("cursor", "not a cursor this API returned"))
            })
            .transpose()?,
    };
    let page = state.engine()?.logs_page(search).await?;
    Ok(Json(json!({
        "logs": page.records.iter().map(log_json).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor.map(|c| c.encode()),
    })))
}

fn log_json(l: &LogRecord) -> Value {
    json!({
        "time_unix_nano": l.time_unix_nano.to_string(),
        "observed_time_unix_nano": l.observed_time_unix_nano.to_string(),
        "severity_number": l.severity_number,
        "severity_text": l.severity_text,
        "body": l.body.as_ref().map(|b| { let (kind, value) = typed(b); json!({"type": kind, "value": value}) }),
        "event_name": l.event_name,
        "service_name": l.service_name(),
        "trace_id": l.trace_id.map(|t| t.to_hex()),
        "span_id": l.span_id.map(|s| s.to_hex()),
        "flags": l.flags,
        "attributes": attributes(&l.attributes),
        "resource": {"attributes": attributes(&l.resource.attributes)},
        "scope": {"name": l.scope.name, "version": l.scope.version},
    })
}

pub(crate) async fn metrics(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(raw.as_deref());
    params.only(&["start", "end"])?;
    let (start, end) = params::time_window(&params)?;
    let names = state.engine()?.metric_names(start, end).await?;
    Ok(Json(json!({
        "metrics": names.iter().map(|m| json!({
            "name": m.name,
            "type": m.metric_type,
            "unit": m.unit,
            "description": m.description,
            "series": m.series,
            "label_keys": m.label_keys,
        })).collect::<Vec<_>>(),
    })))
}

pub(crate) async fn series(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(raw.as_deref());
    params.only(&["name", "match", "group_by", "agg", "start", "end", "step"])?;
    let name = params
        .get("name")
        .ok_or_else(|| ApiError::bad("name", "required: the metric's OTLP name"))?;
    let mut matchers = Vec::new();
    for m in params.all("match") {
        match m.split_once('=') {
            Some((k, v)) if !k.is_empty() => matchers.push((k.to_string(), v.to_string())),
            _ => return Err(ApiError::bad("match", format!("{m:?} is not label=value"))),
        }
    }
    let aggregation = match params.get("agg") {
        None => Aggregation::Sum,
        Some(a) => Aggregation::parse(a).ok_or_else(|| {
            ApiError::bad("agg", format!("{a:?}; use sum, avg, min, max or rate"))
        })?,
    };
    let (start, end) = params::time_window(&params)?;
    let step = match params.get("step") {
        Some(v) => params::duration("step", v)?.as_nanos() as u64,
        None => ((end - start) / 60).max(1_000_000_000),
    };
    let query = SeriesQuery {
        name: name.to_string(),
        matchers,
        group_by: params.all("group_by").map(str::to_string).collect(),
        aggregation,
        start_unix_nano: start,
        end_unix_nano: end,
        step_nano: step,
    };
    let series = state.engine()?.series(&query).await?;
    Ok(Json(json!({
        "name": name,
        "step_nano": step,
        "series": series.iter().map(|s| json!({
            "labels": s.labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "points": s.points.iter().map(|(t, v)| json!([t.to_string(), v])).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })))
}
