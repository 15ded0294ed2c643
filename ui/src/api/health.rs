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
    })
}

/// Appends the step starting at `t` to an entry's `points` (zeros when it had no calls).
fn push_point(entry: &mut Value, t: u64, health: Option<&Health>) {
    let mut point = health_json(health.unwrap_or(&Health::default()));
    point["t"] = json!(t.to_string());
    entry["points"]
        .as_array_mut()
        .expect("every entry starts with a points array")
        .push(point);
}

/// Step windows `[t, t + step]` covering `[start, end]`.
fn steps(w: &Window) -> Vec<(u64, u64)> {
    let Some(step) = w.step else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut t = w.start;
    while t < w.end {
        out.push((t, (t + step).min(w.end)));
        t += step;
    }
    out
}

pub(crate) async fn services(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let w = window(&Params::parse(raw.as_deref()))?;
    let engine = state.engine()?;
    let services = engine.services(w.start, w.end).await?;
    let mut out: Vec<Value> = services
        .iter()
        .map(|s| {
            let mut v = health_json(&s.health);
            v["name"] = json!(s.service);
            v["points"] = json!([]);
            v
        })
        .collect();
    for (t0, t1) in steps(&w) {
        let at = engine.services(t0, t1).await?;
        for (entry, s) in out.iter_mut().zip(&services) {
            let point = at.iter().find(|p| p.service == s.service);
            push_point(entry, t0, point.map(|p| &p.health));
        }
    }
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
    let engine = state.engine()?;
    let ops = engine.operations(&service, w.start, w.end).await?;
    let mut out: Vec<Value> = ops
        .iter()
        .map(|o| {
            let mut v = health_json(&o.health);
            v["name"] = json!(o.name);
            v["kind"] = json!(o.kind);
            v["points"] = json!([]);
            v
        })
        .collect();
    for (t0, t1) in steps(&w) {
        let at = engine.operations(&service, t0, t1).await?;
        for (entry, o) in out.iter_mut().zip(&ops) {
            let point = at.iter().find(|p| p.name == o.name && p.kind == o.kind);
            push_point(entry, t0, point.map(|p| &p.health));
        }
    }
    Ok(Json(json!({
        "service": service,
        "start": w.start.to_string(),
        "end": w.end.to_string(),
        "operations": out,
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
