//! `/api/v1/services`, `/api/v1/services/{service}/operations` and `/api/v1/dependencies`.
//!
//! Windows default to the last hour. With `step=` the services and operations endpoints also
//! return one point per step for charts (at most `MAX_POINTS`).

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde_json::{Value, json};
use spyglass_query::Health;

use crate::error::{ApiError, ApiResult};
use crate::params::{self, Params};
use crate::state::AppState;

const MAX_POINTS: u64 = 300;

struct Window {
    start: u64,
    end: u64,
    step: Option<u64>,
}

fn window(params: &Params) -> ApiResult<Window> {
    params.only(&["start", "end", "step"])?;
    let (start, end) = params::time_window(params)?;
    let step = params
        .get("step")
        .map(|v| params::duration("step", v).map(|d| d.as_nanos() as u64))
        .transpose()?;
    if let Some(step) = step
        && (step == 0 || (end - start) / step > MAX_POINTS)
    {
        return Err(ApiError::bad(
            "step",
            format!("gives more than {MAX_POINTS} points over the window; use a longer step"),
        ));
    }
    Ok(Window { start, end, step })
}

fn health_json(h: &Health) -> Value {
    json!({
        "calls": h.calls,
        "errors": h.errors,
        "rate_per_sec": h.rate_per_sec,
        "error_ratio": h.error_ratio,
        "p50_seconds": h.p50_seconds,
        "p95_seconds": h.p95_seconds,
        "p99_seconds": h.p99_seconds,
        "last_seen_unix_nano": h.last_seen_unix_nano.map(|t| t.to_string()),
    })
}

/// One point per step, each stamped with the time its step starts.
fn points(w: &Window, steps: &[Health]) -> Value {
    let step = w.step.unwrap_or(0);
    Value::Array(
        steps
            .iter()
            .enumerate()
            .map(|(k, h)| {
                let mut point = health_json(h);
                point["t"] = json!((w.start + k as u64 * step).to_string());
                point
            })
            .collect(),
    )
}

pub(crate) async fn services(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let w = window(&Params::parse(raw.as_deref()))?;
    let services = state
        .engine()?
        .services_stepped(w.start, w.end, w.step)
        .await?;
    let out: Vec<Value> = services
        .iter()
        .map(|s| {
            let mut v = health_json(&s.item.health);
            v["name"] = json!(s.item.service);
            v["points"] = points(&w, &s.steps);
            v
        })
        .collect();
    Ok(Json(json!({
        "start": w.start.to_string(),
        "end": w.end.to_string(),
        "services": out,
    })))
}

pub(crate) async fn operations(
    State(state): State<AppState>,
    Path(service): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let w = window(&Params::parse(raw.as_deref()))?;
    let ops = state
        .engine()?
        .operations_stepped(&service, w.start, w.end, w.step)
        .await?;
    let out: Vec<Value> = ops
        .iter()
        .map(|o| {
            let mut v = health_json(&o.item.health);
            v["name"] = json!(o.item.name);
            v["kind"] = json!(o.item.kind);
            v["points"] = points(&w, &o.steps);
            v
        })
        .collect();
    Ok(Json(json!({
        "service": service,
        "start": w.start.to_string(),
        "end": w.end.to_string(),
        "operations": out,
    })))
}

/// `GET /api/v1/services/{service}/callers`: the edges into a service or peer, per caller,
/// with `points` per `step`: how a database or other peer that sends nothing itself is seen.
pub(crate) async fn callers(
    State(state): State<AppState>,
    Path(service): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let w = window(&Params::parse(raw.as_deref()))?;
    let edges = state
        .engine()?
        .calls_into(&service, w.start, w.end, w.step)
        .await?;
    let out: Vec<Value> = edges
        .iter()
        .map(|e| {
            let mut v = health_json(&e.item.health);
            v["client"] = json!(e.item.client);
            v["connection_type"] = json!(e.item.connection_type);
            v["points"] = points(&w, &e.steps);
            v
        })
        .collect();
    Ok(Json(json!({
        "service": service,
        "start": w.start.to_string(),
        "end": w.end.to_string(),
        "callers": out,
    })))
}

pub(crate) async fn dependencies(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(raw.as_deref());
    params.only(&["start", "end"])?;
    let w = window(&params)?;
    let graph = state.engine()?.dependencies(w.start, w.end).await?;
    Ok(Json(json!({
        "start": w.start.to_string(),
        "end": w.end.to_string(),
        "nodes": graph.nodes.iter().map(|n| json!({"name": n.name, "kind": n.kind})).collect::<Vec<_>>(),
        "edges": graph.edges.iter().map(|e| {
            let mut v = health_json(&e.health);
            v["client"] = json!(e.client);
            v["server"] = json!(e.server);
            v["connection_type"] = json!(e.connection_type);
            v
        }).collect::<Vec<_>>(),
    })))
}
