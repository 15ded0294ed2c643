//! The native JSON API under `/api/v1`.

mod alerts;
mod health;
mod notifications;
mod render;
mod signals;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use spyglass_query::model::TraceId;
use spyglass_query::{Cursor, TraceSearch};

use crate::error::{ApiError, ApiResult, Problems};
use crate::params::{self, Params};
use crate::state::AppState;

pub(crate) use render::{hex, typed};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/traces", get(search_traces))
        .route("/api/v1/traces/{trace_id}", get(get_trace))
        .route("/api/v1/sql", post(sql))
        .route(
            "/api/v1/session",
            post(crate::access::open_session).delete(crate::access::close_session),
        )
        .route("/api/v1/services", get(health::services))
        .route(
            "/api/v1/services/{service}/operations",
            get(health::operations),
        )
        .route("/api/v1/services/{service}/callers", get(health::callers))
        .route("/api/v1/dependencies", get(health::dependencies))
        .route("/api/v1/logs", get(signals::logs))
        .route("/api/v1/metrics", get(signals::metrics))
        .route("/api/v1/metrics/series", get(signals::series))
        .route("/api/v1/alerts", get(alerts::alerts))
        .route("/api/v1/alerts/history", get(alerts::history))
        .route("/api/v1/incidents", get(alerts::incidents))
        .route("/api/v1/rules", get(alerts::rules))
        .route("/api/v1/rules/backtest", post(alerts::backtest))
        .route("/api/v1/notifications", get(notifications::list))
        .route("/api/v1/notifications/{id}", get(notifications::one))
        .route("/api/v1/notifications/{id}/html", get(notifications::html))
}

pub(crate) fn parse_trace_id(text: &str) -> ApiResult<TraceId> {
    // Shorter ids (64-bit, from older tracers) are left-padded, as Jaeger does.
    let padded = format!("{text:0>32}");
    match TraceId::from_hex(&padded) {
        Some(id) if text.len() <= 32 && id.0 != [0; 16] => Ok(id),
        _ => Err(ApiError::bad(
            "trace_id",
            format!("{text:?} is not a trace id (1 to 32 hex digits, not all zero)"),
        )),
    }
}

/// `GET /api/v1/traces/{id}`: the trace, whole (`view=full`) or as a waterfall draws it
/// (`view=tree`); `download=1` answers it as a file, `trace-{id}.json`.
async fn get_trace(
    State(state): State<AppState>,
    Path(trace_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let params = Params::parse(raw.as_deref());
    params.only(&["start", "end", "view", "download"])?;
    let tree_only = match params.get("view") {
        None | Some("full") => false,
        Some("tree") => true,
        Some(other) => {
            return Err(ApiError::bad(
                "view",
                format!("{other:?}; use full (every field) or tree (what a waterfall draws)"),
            ));
        }
    };
    let download = match params.get("download") {
        None | Some("0") => false,
        Some("1") => true,
        Some(other) => return Err(ApiError::bad("download", format!("{other:?}; use 1 or 0"))),
    };
    // The lookup does not depend on a time range; a given one is only checked for sense.
    for name in ["start", "end"] {
        if let Some(v) = params.get(name) {
            params::time(name, v)?;
        }
    }
    let engine = state.engine()?;
    let id = parse_trace_id(&trace_id)?;
    let body = if tree_only {
        render::trace_tree(&engine.trace_tree(id).await?)
    } else {
        render::trace(&engine.trace(id).await?)
    };
    let mut response = Json(body).into_response();
    if download {
        let disposition = format!("attachment; filename=\"trace-{}.json\"", id.to_hex());
        if let Ok(value) = HeaderValue::from_str(&disposition) {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, value);
        }
    }
    Ok(response)
}

const SEARCH_PARAMS: &[&str] = &[
    "service",
    "operation",
    "attr",
    "min_duration",
    "max_duration",
    "status",
    "q",
    "start",
    "end",
    "limit",
    "cursor",
    "sample",
];

/// The largest sample a search answers beside its page.
const MAX_SAMPLE: usize = 2_000;

pub(crate) fn search_from(params: &Params) -> ApiResult<TraceSearch> {
    // Every parameter is checked, so that one answer names each bad one.
    let mut problems = Problems::default();
    problems.take(params.only(SEARCH_PARAMS));
    let mut attributes = Vec::new();
    for pair in params.all("attr") {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => attributes.push((k.to_string(), v.to_string())),
            _ => problems.add("attr", format!("{pair:?} is not key=value")),
        }
    }
    let errors_only = match params.get("status") {
        None => false,
        Some("error") => true,
        Some(other) => {
            problems.add("status", format!("{other:?}; the only value is error"));
            false
        }
    };
    let mut nanos = |name: &str| -> Option<u64> {
        let value = params.get(name)?;
        problems.take(params::duration(name, value).map(|d| d.as_nanos() as u64))
    };
    let min_duration_nano = nanos("min_duration");
    let max_duration_nano = nanos("max_duration");
    let mut time = |name: &str| {
        problems
            .take(params.get(name).map(|v| params::time(name, v)).transpose())
            .flatten()
    };
    let start_unix_nano = time("start");
    let end_unix_nano = time("end");
    let limit = match params.get("limit") {
        Some(v) => problems
            .take(params::number("limit", v, "a positive integer"))
            .unwrap_or(20),
        None => 20,
    };
    let sample = match params.get("sample") {
        Some(v) => match problems.take(params::number("sample", v, "a positive integer")) {
            Some(n) if n > MAX_SAMPLE => {
                problems.add("sample", format!("{n} is more than {MAX_SAMPLE}"));
                0
            }
            n => n.unwrap_or(0),
        },
        None => 0,
    };
    let cursor = params.get("cursor").and_then(|c| {
        let cursor = Cursor::decode(c);
        if cursor.is_none() {
            problems.add("cursor", "not a cursor this API returned");
        }
        cursor
    });
    if let (Some(s), Some(e)) = (start_unix_nano, end_unix_nano)
        && s > e
    {
        problems.add("start", "after end");
    }
    problems.finish()?;
    Ok(TraceSearch {
        service: params.get("service").map(str::to_string),
        operation: params.get("operation").map(str::to_string),
        attributes,
        min_duration_nano,
        max_duration_nano,
        errors_only,
        text: params.get("q").map(str::to_string),
        start_unix_nano,
        end_unix_nano,
        limit,
        cursor,
        sample,
    })
}

async fn search_traces(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(raw.as_deref());
    let search = search_from(&params)?;
    let engine = state.engine()?;
    let page = engine.search(search).await?;
    let mut body = json!({
        "traces": page.traces.iter().map(render::summary_json).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor.map(|c| c.encode()),
    });
    if let Some(sample) = page.sample {
        // Compact: [start (ns, as text), duration (ns), error] per trace.
        body["sample"] = json!({
            "matched": sample.matched,
            "points": sample.points.iter().map(|p| json!([
                p.start_time_unix_nano.to_string(),
                p.duration_nano,
                p.error,
            ])).collect::<Vec<_>>(),
        });
    }
    Ok(Json(body))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    query: String,
}

/// `POST /api/v1/sql` `{"query": "..."}`: JSON by default; `Accept: text/csv` or
/// `application/vnd.apache.arrow.stream` for those.
async fn sql(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    crate::access::json_only(&headers)?;
    let request: SqlRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadParameter(format!("the body must be {{\"query\": \"SQL\"}}: {e}"))
    })?;
    let engine = state.engine()?;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let format = if accept.contains("text/csv") {
        "text/csv"
    } else if accept.contains("application/vnd.apache.arrow.stream") {
        "application/vnd.apache.arrow.stream"
    } else {
        "application/json"
    };
    let output = engine.sql(&request.query).await?;
    let body = match format {
        "text/csv" => output.to_csv()?,
        "application/vnd.apache.arrow.stream" => output.to_arrow_ipc()?,
        _ => output.to_json()?,
    };
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(format));
    if output.truncated {
        response
            .headers_mut()
            .insert("x-spyglass-truncated", HeaderValue::from_static("true"));
    }
    Ok(response)
}
