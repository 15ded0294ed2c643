//! Prometheus's query API over the `metrics` table, so that Grafana's Prometheus data source and
//! `promtool` take `http://HOST:8080/prometheus` as a Prometheus: `query`, `query_range`,
//! `series`, `labels`, `label/{name}/values` (GET, or POST with a form as Prometheus's Go client
//! sends), `query_exemplars`, `metadata` and `status/buildinfo`. Answers and errors are in Prometheus's envelope;
//! `errorType` is `bad_data` (400), `execution` (422), `timeout` (503) or `unavailable` (503).

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header::CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use spyglass_query::QueryEngine;
use spyglass_query::model::MetricType;
use spyglass_query::promql::{self, ErrorType, PromError, Series, Value as PromValue};

use crate::params::{Params, now_nanos, rfc3339};
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/prometheus/api/v1/query", get(query).post(query))
        .route(
            "/prometheus/api/v1/query_range",
            get(query_range).post(query_range),
        )
        .route("/prometheus/api/v1/series", get(series).post(series))
        .route("/prometheus/api/v1/labels", get(labels).post(labels))
        .route("/prometheus/api/v1/label/{name}/values", get(label_values))
        .route("/prometheus/api/v1/metadata", get(metadata))
        .route(
            "/prometheus/api/v1/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route("/prometheus/api/v1/status/buildinfo", get(buildinfo))
}

/// The URL's parameters and, for a form POST (as Prometheus's Go client sends), the body's.
struct Form(Params);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Form {
    type Rejection = Failure;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Failure> {
        let mut text = request.uri().query().unwrap_or_default().to_owned();
        let form = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|e| bad_data(format!("cannot read the request body: {e}")))?;
        if form && !body.is_empty() {
            if !text.is_empty() {
                text.push('&');
            }
            text.push_str(&String::from_utf8_lossy(&body));
        }
        Ok(Form(Params::parse(Some(&text))))
    }
}

fn success(data: Value) -> Response {
    Json(json!({ "status": "success", "data": data })).into_response()
}

/// An error answer: Prometheus's `errorType`, the status and the message.
struct Failure {
    kind: &'static str,
    status: StatusCode,
    error: String,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "status": "error", "errorType": self.kind, "error": self.error })),
        )
            .into_response()
    }
}

impl From<PromError> for Failure {
    fn from(e: PromError) -> Self {
        let status = match e.kind {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Timeout => StatusCode::SERVICE_UNAVAILABLE,
        };
        Failure {
            kind: e.kind.as_str(),
            status,
            error: e.message,
        }
    }
}

fn bad_data(error: String) -> Failure {
    Failure {
        kind: "bad_data",
        status: StatusCode::BAD_REQUEST,
        error,
    }
}

fn engine(state: &AppState) -> Result<&QueryEngine, Failure> {
    state.engine().map_err(|_| Failure {
        kind: "unavailable",
        status: StatusCode::SERVICE_UNAVAILABLE,
        error: "the store is not open yet".into(),
    })
}

/// A time as Prometheus takes one: Unix seconds (with a fraction) or RFC 3339; in ms.
fn time_param(params: &Params, name: &str, default: i64) -> Result<i64, Failure> {
    let Some(text) = params.get(name) else {
        return Ok(default);
    };
    if let Ok(seconds) = text.parse::<f64>()
        && seconds.is_finite()
    {
        return Ok((seconds * 1000.0).round() as i64);
    }
    match rfc3339(text) {
        Some(ns) => Ok((ns / 1_000_000) as i64),
        None => Err(bad_data(format!(
            "invalid parameter \"{name}\": cannot parse \"{text}\" to a valid timestamp"
        ))),
    }
}

/// A step or duration: seconds (with a fraction) or a duration such as `15s` or `1m30s`; in ms.
fn duration_param(params: &Params, name: &str) -> Result<Option<i64>, Failure> {
    let Some(text) = params.get(name) else {
        return Ok(None);
    };
    if let Ok(seconds) = text.parse::<f64>()
        && seconds.is_finite()
    {
        return Ok(Some((seconds * 1000.0).round() as i64));
    }
    crate::params::duration(name, text)
        .map(|d| Some(d.as_millis() as i64))
        .map_err(|_| {
            bad_data(format!(
                "invalid parameter \"{name}\": cannot parse \"{text}\" to a valid duration"
            ))
        })
}

fn now_ms() -> i64 {
    (now_nanos() / 1_000_000) as i64
}

/// A time as Prometheus writes one: seconds, with the milliseconds when there are some.
fn seconds(ms: i64) -> Value {
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

fn labels_json(labels: &promql::Labels) -> Value {
    json!(labels)
}

/// A native histogram as Prometheus's API writes one: count, sum and each bucket that holds
/// observations as `[boundaries, lower, upper, count]`.
fn histogram_json(h: &promql::Histogram) -> Value {
    let mut out = json!({
        "count": promql::format_value(h.count),
        "sum": promql::format_value(h.sum),
    });
    let buckets = h.buckets();
    if !buckets.is_empty() {
        out["buckets"] = buckets
            .iter()
            .map(|b| {
                json!([
                    b.boundaries,
                    promql::format_value(b.lower),
                    promql::format_value(b.upper),
                    promql::format_value(b.count),
                ])
            })
            .collect();
    }
    out
}

/// Series as `{metric, values}`, with `histograms` beside (or instead of) `values` for native
/// histogram samples, as Prometheus writes them.
fn matrix_json(series: &[Series]) -> Value {
    Value::Array(
        series
            .iter()
            .map(|s| {
                let mut out = json!({ "metric": labels_json(&s.labels) });
                if !s.points.is_empty() || s.histograms.is_empty() {
                    out["values"] = s
                        .points
                        .iter()
                        .map(|(t, f)| json!([seconds(*t), promql::format_value(*f)]))
                        .collect();
                }
                if !s.histograms.is_empty() {
                    out["histograms"] = s
                        .histograms
                        .iter()
                        .map(|(t, h)| json!([seconds(*t), histogram_json(h)]))
                        .collect();
                }
                out
            })
            .collect(),
    )
}

fn value_json(value: &PromValue, t: i64) -> Value {
    match value {
        PromValue::Scalar(f) => json!({
            "resultType": "scalar",
            "result": [seconds(t), promql::format_value(*f)],
        }),
        PromValue::String(s) => json!({ "resultType": "string", "result": [seconds(t), s] }),
        PromValue::Vector(v) => json!({
            "resultType": "vector",
            "result": v.iter().map(|s| match &s.h {
                Some(h) => json!({
                    "metric": labels_json(&s.labels),
                    "histogram": [seconds(t), histogram_json(h)],
                }),
                None => json!({
                    "metric": labels_json(&s.labels),
                    "value": [seconds(t), promql::format_value(s.f)],
                }),
            }).collect::<Vec<_>>(),
        }),
        PromValue::Matrix(m) => json!({ "resultType": "matrix", "result": matrix_json(m) }),
    }
}

fn query_text(params: &Params) -> Result<String, Failure> {
    match params.get("query") {
        Some(q) => Ok(q.to_string()),
        None => Err(bad_data(
            "invalid parameter \"query\": no query given".into(),
        )),
    }
}

/// `query`, `time` (default now).
async fn query(State(state): State<AppState>, Form(params): Form) -> Result<Response, Failure> {
    let engine = engine(&state)?;
    let text = query_text(&params)?;
    let t = time_param(&params, "time", now_ms())?;
    let value = engine
        .promql_instant(&text, t)
        .await
        .map_err(Failure::from)?;
    Ok(success(value_json(&value, t)))
}

/// `query`, `start`, `end`, `step`.
async fn query_range(
    State(state): State<AppState>,
    Form(params): Form,
) -> Result<Response, Failure> {
    let engine = engine(&state)?;
    let text = query_text(&params)?;
    let (Some(_), Some(_)) = (params.get("start"), params.get("end")) else {
        return Err(bad_data(
            "invalid parameter \"start\" or \"end\": both are needed".into(),
        ));
    };
    let start = time_param(&params, "start", 0)?;
    let end = time_param(&params, "end", 0)?;
    if end < start {
        return Err(bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time".into(),
        ));
    }
    let Some(step) = duration_param(&params, "step")? else {
        return Err(bad_data("invalid parameter \"step\": no step given".into()));
    };
    if step <= 0 {
        return Err(bad_data(
                "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
    }
    let matrix = engine
        .promql_range(&text, start, end, step)
        .await
        .map_err(Failure::from)?;
    Ok(success(
        json!({ "resultType": "matrix", "result": matrix_json(&matrix) }),
    ))
}

/// `match[]` selectors as matcher sets (a selector's `or` alternatives are sets of their own).
fn selectors(
    params: &Params,
    required: bool,
) -> Result<Vec<Vec<promql_parser::label::Matcher>>, Failure> {
    let texts: Vec<&str> = params.all("match[]").collect();
    if texts.is_empty() {
        if required {
            return Err(bad_data("no match[] parameter provided".into()));
        }
        // Every series: a name that is not empty.
        return Ok(vec![vec![promql_parser::label::Matcher::new(
            promql_parser::label::MatchOp::NotEqual,
            promql::METRIC_NAME,
            "",
        )]]);
    }
    let mut out = Vec::new();
    for text in texts {
        let expr = promql::parse(text).map_err(Failure::from)?;
        let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
            return Err(bad_data(format!(
                "invalid parameter \"match[]\": {text:?} is not a series selector"
            )));
        };
        let name = vs.name.as_ref().map(|n| {
            promql_parser::label::Matcher::new(
                promql_parser::label::MatchOp::Equal,
                promql::METRIC_NAME,
                n,
            )
        });
        let sets = if vs.matchers.or_matchers.is_empty() {
            vec![vs.matchers.matchers.clone()]
        } else {
            vs.matchers.or_matchers.clone()
        };
        for mut set in sets {
            set.extend(name.clone());
            out.push(set);
        }
    }
    Ok(out)
}

/// `start` and `end` of a metadata query: the last 6 hours by default.
fn window(params: &Params) -> Result<(i64, i64), Failure> {
    let end = time_param(params, "end", now_ms())?;
    let start = time_param(params, "start", end - 6 * 3_600_000)?;
    if end < start {
        return Err(bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time".into(),
        ));
    }
    Ok((start, end))
}

async fn matching(
    state: &AppState,
    params: &Params,
    required: bool,
) -> Result<Vec<promql::Labels>, Failure> {
    let engine = engine(state)?;
    let sets = selectors(params, required)?;
    let (start, end) = window(params)?;
    engine
        .promql_series(&sets, start, end)
        .await
        .map_err(Failure::from)
}

/// `match[]` (at least one), `start`, `end`.
async fn series(State(state): State<AppState>, Form(params): Form) -> Result<Response, Failure> {
    let found = matching(&state, &params, true).await?;
    Ok(success(json!(found)))
}

/// `match[]` (optional), `start`, `end`.
async fn labels(State(state): State<AppState>, Form(params): Form) -> Result<Response, Failure> {
    let found = matching(&state, &params, false).await?;
    let names: BTreeSet<&String> = found.iter().flat_map(|l| l.keys()).collect();
    Ok(success(json!(names)))
}

/// The values of one label: `match[]` (optional), `start`, `end`.
async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Form(params): Form,
) -> Result<Response, Failure> {
    let found = matching(&state, &params, false).await?;
    let values: BTreeSet<&String> = found.iter().filter_map(|l| l.get(&name)).collect();
    Ok(success(json!(values)))
}

/// `metric` (optional), `limit` (optional): each metric's type, help and unit.
async fn metadata(State(state): State<AppState>, Form(params): Form) -> Result<Response, Failure> {
    let engine = engine(&state)?;
    let (start, end) = window(&params)?;
    let limit = match params.get("limit") {
        Some(l) => l.parse::<i64>().map_err(|_| {
            bad_data(format!(
                "invalid parameter \"limit\": {l:?} is not a number"
            ))
        })?,
        None => -1,
    };
    let families = engine
        .promql_metadata(start, end)
        .await
        .map_err(Failure::from)?;
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for (name, metric_type, unit, help) in families {
        if params.get("metric").is_some_and(|m| m != name) {
            continue;
        }
        if limit >= 0 && out.len() as i64 >= limit {
            break;
        }
        let kind = match metric_type {
            MetricType::Gauge => "gauge",
            MetricType::Sum if name.ends_with("_total") => "counter",
            MetricType::Sum => "gauge",
            MetricType::Histogram | MetricType::ExponentialHistogram => "histogram",
            MetricType::Summary => "summary",
        };
        out.insert(name, json!([{ "type": kind, "help": help, "unit": unit }]));
    }
    Ok(success(json!(out)))
}

/// `query`, `start`, `end`: the exemplars of the series the query's selectors read.
async fn query_exemplars(
    State(state): State<AppState>,
    Form(params): Form,
) -> Result<Response, Failure> {
    let engine = engine(&state)?;
    let text = query_text(&params)?;
    let (start, end) = window(&params)?;
    let found = engine
        .promql_exemplars(&text, start, end)
        .await
        .map_err(Failure::from)?;
    let data: Vec<Value> = found
        .iter()
        .map(|(series, exemplars)| {
            json!({
                "seriesLabels": labels_json(series),
                "exemplars": exemplars.iter().map(|(labels, value, t)| json!({
                    "labels": labels_json(labels),
                    "value": promql::format_value(*value),
                    "timestamp": seconds(*t),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(success(json!(data)))
}

async fn buildinfo() -> Response {
    success(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
        "application": "spyglass",
    }))
}
