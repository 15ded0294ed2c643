//! The Jaeger query API (`/api/...`), in the JSON shape the Jaeger UI and Grafana's Jaeger data
//! source read: `{"data", "total", "limit", "offset", "errors"}`; times in microseconds; spans
//! with `references` (parent as `CHILD_OF`, links as `FOLLOWS_FROM`), typed `tags`, events as
//! `logs`, one process per distinct resource.
//!
//! OpenTelemetry fields without a Jaeger field become tags as Jaeger's own OTLP translator
//! names them: `span.kind`, `otel.status_code`, `otel.status_description`, `error` (true on error
//! spans), `otel.scope.name`, `otel.scope.version`.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use spyglass_query::model::{
    AttrValue, Attributes, Resource, Span, SpanKind, StatusCode as Status,
};
use spyglass_query::{Trace, TraceSearch};

use crate::api::{hex, parse_trace_id, typed};
use crate::error::ApiError;
use crate::params::{self, Params, now_nanos};
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/services", get(services))
        .route(
            "/api/services/{service}/operations",
            get(service_operations),
        )
        .route("/api/operations", get(operations))
        .route("/api/traces", get(find_traces))
        .route("/api/traces/{trace_id}", get(get_trace))
        .route("/api/dependencies", get(dependencies))
}

/// How far back service and operation lists look.
const LIST_LOOKBACK: Duration = Duration::from_secs(7 * 24 * 3600);

/// An error in Jaeger's envelope.
struct JaegerError(ApiError);

impl From<ApiError> for JaegerError {
    fn from(e: ApiError) -> Self {
        JaegerError(e)
    }
}

impl From<spyglass_query::Error> for JaegerError {
    fn from(e: spyglass_query::Error) -> Self {
        JaegerError(ApiError::Query(e))
    }
}

impl IntoResponse for JaegerError {
    fn into_response(self) -> Response {
        let (status, message) = self.0.status_and_message();
        let body = json!({
            "data": null, "total": 0, "limit": 0, "offset": 0,
            "errors": [{"code": status.as_u16(), "msg": message}],
        });
        (status, Json(body)).into_response()
    }
}

type JaegerResult = Result<Json<Value>, JaegerError>;

fn envelope(data: Value) -> Json<Value> {
    let total = data.as_array().map_or(0, Vec::len);
    Json(json!({"data": data, "total": total, "limit": 0, "offset": 0, "errors": null}))
}

fn list_window() -> (u64, u64) {
    let end = now_nanos();
    (end.saturating_sub(LIST_LOOKBACK.as_nanos() as u64), end)
}

async fn services(State(state): State<AppState>) -> JaegerResult {
    let (start, end) = list_window();
    let services = state.engine()?.services(start, end).await?;
    Ok(envelope(json!(
        services.iter().map(|s| &s.service).collect::<Vec<_>>()
    )))
}

async fn service_operations(
    State(state): State<AppState>,
    Path(service): Path<String>,
) -> JaegerResult {
    let (start, end) = list_window();
    let ops = state.engine()?.operations(&service, start, end).await?;
    let mut names: Vec<&str> = ops.iter().map(|o| o.name.as_str()).collect();
    names.dedup();
    Ok(envelope(json!(names)))
}

async fn operations(State(state): State<AppState>, RawQuery(raw): RawQuery) -> JaegerResult {
    let params = Params::parse(raw.as_deref());
    let service = params
        .get("service")
        .ok_or_else(|| ApiError::bad("service", "required"))?;
    let kind = params.get("spanKind");
    if let Some(k) = kind
        && SpanKind::parse(k).is_none()
    {
        return Err(ApiError::bad(
            "spanKind",
            "one of server, client, producer, consumer, internal",
        )
        .into());
    }
    let (start, end) = list_window();
    let ops = state.engine()?.operations(service, start, end).await?;
    let data: Vec<Value> = ops
        .iter()
        .filter(|o| kind.is_none_or(|k| o.kind == k))
        .map(|o| json!({"name": o.name, "spanKind": o.kind}))
        .collect();
    Ok(envelope(Value::Array(data)))
}

async fn get_trace(State(state): State<AppState>, Path(trace_id): Path<String>) -> JaegerResult {
    let trace = state.engine()?.trace(parse_trace_id(&trace_id)?).await?;
    Ok(envelope(json!([trace_json(&trace)])))
}

fn micros_param(params: &Params, name: &str) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|v| {
            params::number::<u64>(name, v, "Unix microseconds").map(|us| us.saturating_mul(1000))
        })
        .transpose()
}

/// Jaeger's `tags`: a JSON object (`{"http.status_code":"500"}`, as Grafana sends) or
/// space-separated `key=value` pairs; also the older repeated `tag=key:value`.
fn tags(params: &Params) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    if let Some(text) = params.get("tags") {
        if text.trim_start().starts_with('{') {
            let object: HashMap<String, Value> = serde_json::from_str(text)
                .map_err(|e| ApiError::bad("tags", format!("not a JSON object of strings: {e}")))?;
            for (k, v) in object {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.push((k, v));
            }
        } else {
            for pair in text.split_whitespace() {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| ApiError::bad("tags", format!("{pair:?} is not key=value")))?;
                out.push((k.to_string(), v.trim_matches('"').to_string()));
            }
        }
    }
    for pair in params.all("tag") {
        let (k, v) = pair
            .split_once(':')
            .ok_or_else(|| ApiError::bad("tag", format!("{pair:?} is not key:value")))?;
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

async fn find_traces(State(state): State<AppState>, RawQuery(raw): RawQuery) -> JaegerResult {
    let params = Params::parse(raw.as_deref());
    let duration = |name: &str| -> Result<Option<u64>, ApiError> {
        params
            .get(name)
            .map(|v| params::duration(name, v).map(|d| d.as_nanos() as u64))
            .transpose()
    };
    let end = micros_param(&params, "end")?.unwrap_or_else(now_nanos);
    let start = match micros_param(&params, "start")? {
        Some(s) => s,
        None => match params.get("lookback").filter(|l| *l != "custom") {
            Some(l) => end.saturating_sub(params::duration("lookback", l)?.as_nanos() as u64),
            None => end.saturating_sub(3600 * 1_000_000_000),
        },
    };
    let mut attributes = tags(&params)?;
    // Jaeger marks failed spans with the tag error=true; here that is the span status.
    let errors_only = attributes.iter().any(|(k, v)| k == "error" && v == "true");
    attributes.retain(|(k, _)| k != "error");
    let search = TraceSearch {
        service: params.get("service").map(str::to_string),
        operation: params
            .get("operation")
            .filter(|o| *o != "all")
            .map(str::to_string),
        attributes,
        min_duration_nano: duration("minDuration")?,
        max_duration_nano: duration("maxDuration")?,
        errors_only,
        text: None,
        start_unix_nano: Some(start),
        end_unix_nano: Some(end),
        limit: match params.get("limit") {
            Some(v) => params::number("limit", v, "a positive integer")?,
            None => 20,
        },
        cursor: None,
        sample: 0,
    };
    let engine = state.engine()?;
    let page = engine.search(search).await?;
    let traces = engine
        .traces(page.traces.iter().map(|t| t.trace_id).collect())
        .await?;
    Ok(envelope(Value::Array(
        traces.iter().map(trace_json).collect(),
    )))
}

async fn dependencies(State(state): State<AppState>, RawQuery(raw): RawQuery) -> JaegerResult {
    let params = Params::parse(raw.as_deref());
    let ms = |name: &str| -> Result<Option<u64>, ApiError> {
        params
            .get(name)
            .map(|v| {
                params::number::<u64>(name, v, "milliseconds")
                    .map(|ms| ms.saturating_mul(1_000_000))
            })
            .transpose()
    };
    let end = ms("endTs")?.unwrap_or_else(now_nanos);
    let lookback = ms("lookback")?.unwrap_or(24 * 3600 * 1_000_000_000);
    let graph = state
        .engine()?
        .dependencies(end.saturating_sub(lookback), end)
        .await?;
    let data: Vec<Value> = graph
        .edges
        .iter()
        .map(|e| json!({"parent": e.client, "child": e.server, "callCount": e.health.calls.round() as u64}))
        .collect();
    Ok(envelope(Value::Array(data)))
}

pub(crate) fn trace_json(trace: &Trace) -> Value {
    let mut processes: Vec<&Resource> = Vec::new();
    let mut spans: Vec<Value> = Vec::with_capacity(trace.spans.len());
    for s in &trace.spans {
        let resource: &Resource = &s.span.resource;
        let i = match processes.iter().position(|p| *p == resource) {
            Some(i) => i,
            None => {
                processes.push(resource);
                processes.len() - 1
            }
        };
        spans.push(span_json(&s.span, &format!("p{}", i + 1)));
    }
    let processes: serde_json::Map<String, Value> = processes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let tags: Vec<Value> = r
                .attributes
                .iter()
                .filter(|kv| kv.key != "service.name")
                .map(|kv| tag(&kv.key, &kv.value))
                .collect();
            (
                format!("p{}", i + 1),
                json!({"serviceName": r.service_name(), "tags": tags}),
            )
        })
        .collect();
    let warnings = trace.truncated.then(|| {
        json!([format!(
            "trace has {} spans; the first {} are shown",
            trace.total_spans,
            trace.spans.len()
        )])
    });
    json!({
        "traceID": trace.trace_id.to_hex(),
        "spans": spans,
        "processes": processes,
        "warnings": warnings,
    })
}

fn span_json(s: &Span, process_id: &str) -> Value {
    let mut references = Vec::new();
    if let Some(parent) = s.parent_span_id {
        references.push(json!({"refType": "CHILD_OF", "traceID": s.trace_id.to_hex(), "spanID": parent.to_hex()}));
    }
    for link in &s.links {
        references.push(json!({"refType": "FOLLOWS_FROM", "traceID": link.trace_id.to_hex(), "spanID": link.span_id.to_hex()}));
    }
    let mut tags: Vec<Value> = attribute_tags(&s.attributes);
    if s.kind != SpanKind::Unspecified {
        tags.push(json!({"key": "span.kind", "type": "string", "value": s.kind.as_str()}));
    }
    match s.status_code {
        Status::Unset => {}
        Status::Ok => {
            tags.push(json!({"key": "otel.status_code", "type": "string", "value": "OK"}))
        }
        Status::Error => {
            tags.push(json!({"key": "otel.status_code", "type": "string", "value": "ERROR"}));
            tags.push(json!({"key": "error", "type": "bool", "value": true}));
        }
    }
    if !s.status_message.is_empty() {
        tags.push(
            json!({"key": "otel.status_description", "type": "string", "value": s.status_message}),
        );
    }
    if !s.scope.name.is_empty() {
        tags.push(json!({"key": "otel.scope.name", "type": "string", "value": s.scope.name}));
    }
    if !s.scope.version.is_empty() {
        tags.push(json!({"key": "otel.scope.version", "type": "string", "value": s.scope.version}));
    }
    let logs: Vec<Value> = s
        .events
        .iter()
        .map(|e| {
            let mut fields = vec![json!({"key": "event", "type": "string", "value": e.name})];
            fields.extend(attribute_tags(&e.attributes));
            json!({"timestamp": e.time_unix_nano / 1000, "fields": fields})
        })
        .collect();
    json!({
        "traceID": s.trace_id.to_hex(),
        "spanID": s.span_id.to_hex(),
        "flags": s.flags,
        "operationName": s.name,
        "references": references,
        "startTime": s.start_time_unix_nano / 1000,
        "duration": s.duration_nano() / 1000,
        "tags": tags,
        "logs": logs,
        "processID": process_id,
        "warnings": null,
    })
}

fn attribute_tags(attrs: &Attributes) -> Vec<Value> {
    attrs.iter().map(|kv| tag(&kv.key, &kv.value)).collect()
}

/// A Jaeger tag: `string`, `bool`, `int64`, `float64` or `binary`; arrays and maps as JSON text.
fn tag(key: &str, value: &AttrValue) -> Value {
    let (kind, value) = match value {
        AttrValue::Str(s) => ("string", json!(s)),
        AttrValue::Bool(b) => ("bool", json!(b)),
        AttrValue::Int(i) => ("int64", json!(i)),
        AttrValue::Double(d) if d.is_finite() => ("float64", json!(d)),
        AttrValue::Bytes(b) => ("binary", json!(hex(b))),
        other => ("string", json!(typed(other).1.to_string())),
    };
    json!({"key": key, "type": kind, "value": value})
}
