//! `spyglass check`: write test traces over OTLP, read them back by id and by search, and say
//! exactly what is missing or different (in the spirit of Tempo's Vulture).
//!
//! Only acknowledged exports are expected back: a refused export is reported as such, not as a
//! loss. Reading retries until the timeout, since a trace may take a moment to become visible.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};
use rand::Rng;
use serde_json::{Value as Json, json};

use crate::otel::Target;

pub const SERVICE: &str = "spyglass-check";
const SPANS_PER_TRACE: usize = 6;

pub struct Options {
    pub target: Target,
    /// Base URL of the HTTP API, e.g. `http://127.0.0.1:8080`.
    pub api: String,
    pub traces: usize,
    pub timeout: Duration,
}

/// Runs one check; `Ok(true)` when everything written came back as written.
pub async fn run(options: Options) -> anyhow::Result<bool> {
    let run_id = format!("{:016x}", rand::rng().random::<u64>());
    let traces = build_traces(&run_id, options.traces);
    let started = Instant::now();

    let mut exporter = options.target.span_exporter()?;
    exporter.set_resource(&Resource::builder().with_service_name(SERVICE).build());
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for trace in &traces {
        match exporter.export(trace.clone()).await {
            Ok(()) => acknowledged.push(trace),
            Err(error) => {
                refused += 1;
                println!(
                    "refused: trace {} was not acknowledged: {error}",
                    trace[0].span_context.trace_id()
                );
            }
        }
    }
    let _ = exporter.shutdown();
    if acknowledged.is_empty() {
        println!(
            "FAIL: no export was acknowledged by {}",
            options.target.endpoint
        );
        return Ok(false);
    }

    let client = reqwest::Client::new();
    let deadline = started + options.timeout;
    let mut findings;
    loop {
        findings = Vec::new();
        for trace in &acknowledged {
            findings.extend(check_by_id(&client, &options.api, trace).await?);
        }
        findings.extend(check_search(&client, &options.api, &run_id, &acknowledged).await?);
        if findings.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for finding in &findings {
        println!("{finding}");
    }
    let spans = acknowledged.len() * SPANS_PER_TRACE;
    if findings.is_empty() && refused == 0 {
        println!(
            "ok: {} traces ({spans} spans) written to {} and read back by id and by search from {} in {:.1} s (run {run_id})",
            acknowledged.len(),
            options.target.endpoint,
            options.api,
            started.elapsed().as_secs_f64()
        );
        Ok(true)
    } else {
        println!(
            "FAIL: {} findings, {refused} exports refused, {} traces acknowledged (run {run_id})",
            findings.len(),
            acknowledged.len()
        );
        Ok(false)
    }
}

/// `count` traces of six spans: a server root, a child with typed attributes, a database
/// client call, an event, an error with an exception, and a grandchild with an array.
fn build_traces(run_id: &str, count: usize) -> Vec<Vec<SpanData>> {
    let mut rng = rand::rng();
    let base = SystemTime::now() - Duration::from_secs(1);
    (0..count)
        .map(|i| {
            let trace_id = TraceId::from_bytes(rng.random::<u128>().max(1).to_be_bytes());
            let ids: Vec<SpanId> = (0..SPANS_PER_TRACE)
                .map(|_| SpanId::from_bytes(rng.random::<u64>().max(1).to_be_bytes()))
                .collect();
            let at = |ms: u64| base + Duration::from_millis(i as u64 * 3 + ms);
            let run = KeyValue::new("check.run", run_id.to_owned());
            let span = |k: usize,
                        parent: Option<usize>,
                        name: &'static str,
                        kind: SpanKind,
                        (from, to): (u64, u64),
                        mut attributes: Vec<KeyValue>| {
                attributes.push(run.clone());
                SpanData {
                    span_context: SpanContext::new(
                        trace_id,
                        ids[k],
                        TraceFlags::SAMPLED,
                        false,
                        TraceState::NONE,
                    ),
                    parent_span_id: parent.map_or(SpanId::INVALID, |p| ids[p]),
                    parent_span_is_remote: false,
                    span_kind: kind,
                    name: Cow::Borrowed(name),
                    start_time: at(from),
                    end_time: at(to),
                    attributes,
                    dropped_attributes_count: 0,
                    events: SpanEvents::default(),
                    links: SpanLinks::default(),
                    status: Status::Unset,
                    instrumentation_scope: InstrumentationScope::builder("spyglass-check").build(),
                }
            };
            let mut spans = vec![
                span(
                    0,
                    None,
                    "GET /orders/{id}",
                    SpanKind::Server,
                    (0, 40),
                    vec![
                        KeyValue::new("http.request.method", "GET"),
                        KeyValue::new("http.response.status_code", 500_i64),
                        KeyValue::new("check.trace", i as i64),
                    ],
                ),
                span(
                    1,
                    Some(0),
                    "load order",
                    SpanKind::Internal,
                    (2, 20),
                    vec![
                        KeyValue::new("check.ratio", 0.25),
                        KeyValue::new("check.cached", true),
                    ],
                ),
                span(
                    2,
                    Some(1),
                    "SELECT orders",
                    SpanKind::Client,
                    (4, 12),
                    vec![KeyValue::new(
                        "db.query.text",
                        "SELECT * FROM orders WHERE id = $1",
                    )],
                ),
                span(3, Some(0), "render", SpanKind::Internal, (21, 30), vec![]),
                span(
                    4,
                    Some(0),
                    "validate coupon",
                    SpanKind::Internal,
                    (31, 38),
                    vec![],
                ),
                span(
                    5,
                    Some(1),
                    "parse",
                    SpanKind::Internal,
                    (13, 19),
                    vec![KeyValue::new(
                        "check.tags",
                        Value::Array(vec![StringValue::from("a"), StringValue::from("b")].into()),
                    )],
                ),
            ];
            spans[3].events.events.push(Event::new(
                "cache miss",
                at(22),
                vec![KeyValue::new("cache.key", format!("order:{i}"))],
                0,
            ));
            spans[4].status = Status::error("coupon expired");
            spans[4].events.events.push(Event::new(
                "exception",
                at(37),
                vec![
                    KeyValue::new("exception.type", "CouponExpired"),
                    KeyValue::new("exception.message", "coupon expired"),
                ],
                0,
            ));
            spans[0].status = Status::error("validation failed");
            spans
        })
        .collect()
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        .to_string()
}

/// The typed JSON form the API gives an attribute value.
fn typed(value: &Value) -> Json {
    match value {
        Value::Bool(b) => json!({"type": "bool", "value": b}),
        Value::I64(i) => json!({"type": "int", "value": i}),
        Value::F64(d) => json!({"type": "double", "value": d}),
        Value::String(s) => json!({"type": "string", "value": s.as_str()}),
        Value::Array(a) => {
            let items: Vec<Json> = match a {
                opentelemetry::Array::Bool(v) => v.iter().map(|b| json!(b)).collect(),
                opentelemetry::Array::I64(v) => v.iter().map(|i| json!(i)).collect(),
                opentelemetry::Array::F64(v) => v.iter().map(|d| json!(d)).collect(),
                opentelemetry::Array::String(v) => v.iter().map(|s| json!(s.as_str())).collect(),
                _ => Vec::new(),
            };
            json!({"type": "array", "value": items})
        }
        _ => json!({"type": "unknown"}),
    }
}

/// Attributes as `key → {type, value}`, from what was sent or from the API's answer.
fn sent_attributes(attributes: &[KeyValue]) -> BTreeMap<String, Json> {
    attributes
        .iter()
        .map(|kv| (kv.key.to_string(), typed(&kv.value)))
        .collect()
}

fn read_attributes(value: &Json) -> BTreeMap<String, Json> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|a| {
                    (
                        a["key"].as_str().unwrap_or_default().to_owned(),
                        json!({"type": a["type"], "value": a["value"]}),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn status_code(status: &Status) -> (&'static str, String) {
    match status {
        Status::Unset => ("unset", String::new()),
        Status::Ok => ("ok", String::new()),
        Status::Error { description } => ("error", description.to_string()),
    }
}

fn kind_name(kind: &SpanKind) -> &'static str {
    match kind {
        SpanKind::Client => "client",
        SpanKind::Server => "server",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    }
}

/// What the API should show of a sent span, in the API's JSON form.
fn expected(span: &SpanData) -> Json {
    let (code, message) = status_code(&span.status);
    json!({
        "parent_span_id": (span.parent_span_id != SpanId::INVALID).then(|| span.parent_span_id.to_string()),
        "service_name": SERVICE,
        "name": span.name,
        "kind": kind_name(&span.span_kind),
        "start_time_unix_nano": nanos(span.start_time),
        "end_time_unix_nano": nanos(span.end_time),
        "status": {"code": code, "message": message},
        "attributes": sent_attributes(&span.attributes),
        "events": span.events.iter().map(|e| json!({
            "name": e.name,
            "time_unix_nano": nanos(e.timestamp),
            "attributes": sent_attributes(&e.attributes),
        })).collect::<Vec<_>>(),
    })
}

/// The same fields, read from the API's span.
fn observed(span: &Json) -> Json {
    json!({
        "parent_span_id": span["parent_span_id"],
        "service_name": span["service_name"],
        "name": span["name"],
        "kind": span["kind"],
        "start_time_unix_nano": span["start_time_unix_nano"],
        "end_time_unix_nano": span["end_time_unix_nano"],
        "status": span["status"],
        "attributes": read_attributes(&span["attributes"]),
        "events": span["events"].as_array().map(|events| events.iter().map(|e| json!({
            "name": e["name"],
            "time_unix_nano": e["time_unix_nano"],
            "attributes": read_attributes(&e["attributes"]),
        })).collect::<Vec<_>>()).unwrap_or_default(),
    })
}

async fn get(client: &reqwest::Client, url: &str) -> anyhow::Result<(u16, Json)> {
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot reach the API at {url}"))?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Json::Null)))
}

async fn check_by_id(
    client: &reqwest::Client,
    api: &str,
    trace: &[SpanData],
) -> anyhow::Result<Vec<String>> {
    let id = trace[0].span_context.trace_id().to_string();
    let (status, body) = get(client, &format!("{api}/api/v1/traces/{id}")).await?;
    if status != 200 {
        return Ok(vec![format!(
            "missing: trace {id} by id: HTTP {status} {}",
            body["error"].as_str().unwrap_or_default()
        )]);
    }
    let mut found: BTreeMap<String, &Json> = BTreeMap::new();
    let mut findings = Vec::new();
    for span in body["spans"].as_array().into_iter().flatten() {
        let span_id = span["span_id"].as_str().unwrap_or_default().to_owned();
        if found.insert(span_id.clone(), span).is_some() {
            findings.push(format!("duplicate: trace {id} span {span_id} shown twice"));
        }
    }
    for span in trace {
        let span_id = span.span_context.span_id().to_string();
        match found.remove(&span_id) {
            None => findings.push(format!(
                "missing: trace {id} span {span_id} ({})",
                span.name
            )),
            Some(read) => {
                let (want, got) = (expected(span), observed(read));
                if want != got {
                    findings.push(format!(
                        "different: trace {id} span {span_id} ({}): sent {want}, read {got}",
                        span.name
                    ));
                }
            }
        }
    }
    for span_id in found.keys() {
        findings.push(format!(
            "unexpected: trace {id} has span {span_id}, never sent"
        ));
    }
    Ok(findings)
}

async fn check_search(
    client: &reqwest::Client,
    api: &str,
    run_id: &str,
    traces: &[&Vec<SpanData>],
) -> anyhow::Result<Vec<String>> {
    let start = traces
        .iter()
        .flat_map(|t| t.iter().map(|s| s.start_time))
        .min()
        .map(nanos)
        .unwrap_or_default();
    let end = traces
        .iter()
        .flat_map(|t| t.iter().map(|s| s.end_time))
        .max()
        .map(nanos)
        .unwrap_or_default();
    let url = format!(
        "{api}/api/v1/traces?service={SERVICE}&attr=check.run={run_id}&start={start}&end={end}&limit={}",
        traces.len() + 10
    );
    let (status, body) = get(client, &url).await?;
    if status != 200 {
        return Ok(vec![format!(
            "search failed: HTTP {status} {}",
            body["error"].as_str().unwrap_or_default()
        )]);
    }
    let found: BTreeMap<String, &Json> = body["traces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| (t["trace_id"].as_str().unwrap_or_default().to_owned(), t))
        .collect();
    let mut findings = Vec::new();
    for trace in traces {
        let id = trace[0].span_context.trace_id().to_string();
        let errors = trace
            .iter()
            .filter(|s| matches!(s.status, Status::Error { .. }))
            .count();
        match found.get(&id) {
            None => findings.push(format!("missing: trace {id} not found by search")),
            Some(summary) => {
                let got = (
                    summary["span_count"].as_u64(),
                    summary["error_count"].as_u64(),
                );
                let want = (Some(trace.len() as u64), Some(errors as u64));
                if got != want {
                    findings.push(format!(
                        "different: trace {id} found by search with (spans, errors) {got:?}, sent {want:?}"
                    ));
                }
            }
        }
    }
    if found.len() > traces.len() {
        findings.push(format!(
            "unexpected: search for run {run_id} found {} traces, {} were sent",
            found.len(),
            traces.len()
        ));
    }
    Ok(findings)
}
