//! The native API's JSON for traces and spans.
//!
//! Times are Unix nanoseconds as decimal strings (as in OTLP JSON: exact, where a JSON number
//! would lose precision in a browser); durations are nanoseconds as numbers. Attribute values
//! keep their type: `{"key", "type": "string|int|double|bool|bytes|array|kvlist|empty", "value"}`.

use serde_json::{Value, json};
use spyglass_query::model::{AttrValue, Attributes, Span};
use spyglass_query::{Trace, TraceSummary};

pub(crate) fn trace(trace: &Trace) -> Value {
    let summary = TraceSummary::of(trace);
    json!({
        "trace_id": trace.trace_id.to_hex(),
        "summary": summary_json(&summary),
        "total_spans": trace.total_spans,
        "truncated": trace.truncated,
        "spans": trace.spans.iter().map(|s| {
            let mut v = span(&s.span);
            v["depth"] = json!(s.depth);
            v["child_count"] = json!(s.child_count);
            v["parent_missing"] = json!(s.parent_missing);
            v
        }).collect::<Vec<_>>(),
    })
}

/// The trace as a waterfall draws it: each span's place in the tree, names, times and status,
/// without attributes, events, links, resource or scope (a tenth of the full answer's size).
pub(crate) fn trace_tree(trace: &Trace) -> Value {
    let summary = TraceSummary::of(trace);
    json!({
        "trace_id": trace.trace_id.to_hex(),
        "view": "tree",
        "summary": summary_json(&summary),
        "total_spans": trace.total_spans,
        "truncated": trace.truncated,
        "spans": trace.spans.iter().map(|s| json!({
            "span_id": s.span.span_id.to_hex(),
            "parent_span_id": s.span.parent_span_id.map(|p| p.to_hex()),
            "service_name": s.span.service_name(),
            "name": s.span.name,
            "kind": s.span.kind.as_str(),
            "start_time_unix_nano": s.span.start_time_unix_nano.to_string(),
            "duration_nano": s.span.duration_nano(),
            "status": {"code": s.span.status_code.as_str(), "message": s.span.status_message},
            "depth": s.depth,
            "child_count": s.child_count,
            "parent_missing": s.parent_missing,
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn summary_json(s: &TraceSummary) -> Value {
    json!({
        "trace_id": s.trace_id.to_hex(),
        "root_service": s.root_service,
        "root_name": s.root_name,
        "start_time_unix_nano": s.start_time_unix_nano.to_string(),
        "duration_nano": s.duration_nano,
        "span_count": s.span_count,
        "error_count": s.error_count,
        "services": s.services.iter().map(|(name, n)| json!({"name": name, "span_count": n})).collect::<Vec<_>>(),
    })
}

pub(crate) fn span(s: &Span) -> Value {
    json!({
        "trace_id": s.trace_id.to_hex(),
        "span_id": s.span_id.to_hex(),
        "parent_span_id": s.parent_span_id.map(|p| p.to_hex()),
        "trace_state": s.trace_state,
        "flags": s.flags,
        "service_name": s.service_name(),
        "name": s.name,
        "kind": s.kind.as_str(),
        "start_time_unix_nano": s.start_time_unix_nano.to_string(),
        "end_time_unix_nano": s.end_time_unix_nano.to_string(),
        "duration_nano": s.duration_nano(),
        "status": {"code": s.status_code.as_str(), "message": s.status_message},
        "attributes": attributes(&s.attributes),
        "dropped_attributes_count": s.dropped_attributes_count,
        "events": s.events.iter().map(|e| json!({
            "time_unix_nano": e.time_unix_nano.to_string(),
            "name": e.name,
            "attributes": attributes(&e.attributes),
            "dropped_attributes_count": e.dropped_attributes_count,
        })).collect::<Vec<_>>(),
        "dropped_events_count": s.dropped_events_count,
        "links": s.links.iter().map(|l| json!({
            "trace_id": l.trace_id.to_hex(),
            "span_id": l.span_id.to_hex(),
            "trace_state": l.trace_state,
            "flags": l.flags,
            "attributes": attributes(&l.attributes),
            "dropped_attributes_count": l.dropped_attributes_count,
        })).collect::<Vec<_>>(),
        "dropped_links_count": s.dropped_links_count,
        "resource": {
            "attributes": attributes(&s.resource.attributes),
            "dropped_attributes_count": s.resource.dropped_attributes_count,
            "schema_url": s.resource.schema_url,
        },
        "scope": {
            "name": s.scope.name,
            "version": s.scope.version,
            "attributes": attributes(&s.scope.attributes),
            "dropped_attributes_count": s.scope.dropped_attributes_count,
            "schema_url": s.scope.schema_url,
        },
    })
}

pub(crate) fn attributes(attrs: &Attributes) -> Value {
    Value::Array(
        attrs
            .iter()
            .map(|kv| {
                let (kind, value) = typed(&kv.value);
                json!({"key": kv.key, "type": kind, "value": value})
            })
            .collect(),
    )
}

/// The type name and JSON value of an attribute value.
pub(crate) fn typed(value: &AttrValue) -> (&'static str, Value) {
    match value {
        AttrValue::Empty => ("empty", Value::Null),
        AttrValue::Str(s) => ("string", json!(s)),
        AttrValue::Bool(b) => ("bool", json!(b)),
        AttrValue::Int(i) => ("int", json!(i)),
        AttrValue::Double(d) if d.is_finite() => ("double", json!(d)),
        AttrValue::Double(d) => ("double", json!(d.to_string())),
        AttrValue::Bytes(b) => ("bytes", json!(hex(b))),
        AttrValue::Array(items) => (
            "array",
            Value::Array(items.iter().map(|v| typed(v).1).collect()),
        ),
        AttrValue::KvList(pairs) => (
            "kvlist",
            Value::Array(
                pairs
                    .iter()
                    .map(|kv| {
                        let (kind, value) = typed(&kv.value);
                        json!({"key": kv.key, "type": kind, "value": value})
                    })
                    .collect(),
            ),
        ),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
