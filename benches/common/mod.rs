//! Shared by the benchmark programs: the model → OTLP conversion an SDK would do.
#![allow(dead_code)]

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue as OtlpKeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as OtlpSpan, Status, span,
};
use spyglass_store::model::{AttrValue, Attributes, Span};

pub fn otlp_value(value: &AttrValue) -> AnyValue {
    use any_value::Value;
    let value = match value {
        AttrValue::Empty => None,
        AttrValue::Str(s) => Some(Value::StringValue(s.clone())),
        AttrValue::Bool(b) => Some(Value::BoolValue(*b)),
        AttrValue::Int(i) => Some(Value::IntValue(*i)),
        AttrValue::Double(d) => Some(Value::DoubleValue(*d)),
        AttrValue::Bytes(b) => Some(Value::BytesValue(b.clone())),
        AttrValue::Array(items) => Some(Value::ArrayValue(ArrayValue {
            values: items.iter().map(otlp_value).collect(),
        })),
        AttrValue::KvList(kvs) => Some(Value::KvlistValue(KeyValueList {
            values: kvs
                .iter()
                .map(|kv| OtlpKeyValue {
                    key: kv.key.clone(),
                    value: Some(otlp_value(&kv.value)),
                    ..Default::default()
                })
                .collect(),
        })),
    };
    AnyValue { value }
}

pub fn otlp_attributes(attrs: &Attributes) -> Vec<OtlpKeyValue> {
    attrs
        .iter()
        .map(|kv| OtlpKeyValue {
            key: kv.key.clone(),
            value: Some(otlp_value(&kv.value)),
            ..Default::default()
        })
        .collect()
}

/// The export request an SDK would send for these spans: grouped by resource, then scope.
pub fn to_otlp(spans: &[Span]) -> ExportTraceServiceRequest {
    let mut by_resource: HashMap<String, (usize, Vec<&Span>)> = HashMap::new();
    for span in spans {
        let key = format!("{:?}", span.resource.attributes);
        let next = by_resource.len();
        by_resource
            .entry(key)
            .or_insert((next, Vec::new()))
            .1
            .push(span);
    }
    let mut groups: Vec<_> = by_resource.into_values().collect();
    groups.sort_by_key(|g| g.0);
    let resource_spans = groups
        .into_iter()
        .map(|(_, spans)| {
            let first = spans[0];
            ResourceSpans {
                resource: Some(OtlpResource {
                    attributes: otlp_attributes(&first.resource.attributes),
                    dropped_attributes_count: 0,
                    entity_refs: Vec::new(),
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: first.scope.name.clone(),
                        version: first.scope.version.clone(),
                        attributes: Vec::new(),
                        dropped_attributes_count: 0,
                    }),
                    spans: spans
                        .iter()
                        .map(|s| OtlpSpan {
                            trace_id: s.trace_id.0.to_vec(),
                            span_id: s.span_id.0.to_vec(),
                            trace_state: s.trace_state.clone(),
                            parent_span_id: s
                                .parent_span_id
                                .map(|p| p.0.to_vec())
                                .unwrap_or_default(),
                            flags: s.flags,
                            name: s.name.clone(),
                            kind: s.kind as i32,
                            start_time_unix_nano: s.start_time_unix_nano,
                            end_time_unix_nano: s.end_time_unix_nano,
                            attributes: otlp_attributes(&s.attributes),
                            dropped_attributes_count: s.dropped_attributes_count,
                            events: s
                                .events
                                .iter()
                                .map(|e| span::Event {
                                    time_unix_nano: e.time_unix_nano,
                                    name: e.name.clone(),
                                    attributes: otlp_attributes(&e.attributes),
                                    dropped_attributes_count: 0,
                                })
                                .collect(),
                            dropped_events_count: 0,
                            links: Vec::new(),
                            dropped_links_count: 0,
                            status: Some(Status {
                                message: s.status_message.clone(),
                                code: s.status_code as i32,
                            }),
                        })
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: first.resource.schema_url.clone(),
            }
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}
