//! OTLP → store model, with validation.
//!
//! Conversion is lossless for every field the model has (see `docs/ARCHITECTURE.md`). Items
//! that break the OTLP data model — ids of the wrong length or all zeros, enum values out of
//! range, histograms whose bucket counts do not match their bounds — are dropped and counted,
//! and the first reason is kept for the `partial_success.error_message` of the response
//! (<https://opentelemetry.io/docs/specs/otlp/#partial-success>). The rest is stored.

mod logs;
mod metrics;
mod traces;

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use spyglass_store::model::{self, AttrValue, Attributes, Resource, Scope, SpanId, TraceId};

pub use logs::logs;
pub(crate) use metrics::NO_RECORDED_VALUE;
pub use metrics::metrics;
pub use traces::spans;

/// Converted items, and what was dropped.
#[derive(Debug)]
pub struct Converted<T> {
    pub items: Vec<T>,
    pub rejected: u64,
    /// Why the first dropped item was dropped.
    pub first_error: Option<String>,
}

impl<T> Converted<T> {
    /// Room for `items` items up front: growing a vector of spans or points copies them all.
    fn with_capacity(items: usize) -> Self {
        Self {
            items: Vec::with_capacity(items),
            rejected: 0,
            first_error: None,
        }
    }

    pub(crate) fn reject(&mut self, why: impl FnOnce() -> String) {
        self.rejected += 1;
        if self.first_error.is_none() {
            self.first_error = Some(why());
        }
    }

    /// The `error_message` of a partial success: the first reason and how many were dropped.
    pub fn error_message(&self) -> String {
        match &self.first_error {
            Some(first) if self.rejected > 1 => {
                format!("{first} (and {} more rejected)", self.rejected - 1)
            }
            Some(first) => first.clone(),
            None => String::new(),
        }
    }
}

/// An OTLP value as the model's, moving strings and bytes out of it.
pub(crate) fn value_owned(v: AnyValue) -> AttrValue {
    use any_value::Value;
    match v.value {
        None | Some(Value::StringValueStrindex(_)) => AttrValue::Empty,
        Some(Value::StringValue(s)) => AttrValue::Str(s),
        Some(Value::BoolValue(b)) => AttrValue::Bool(b),
        Some(Value::IntValue(i)) => AttrValue::Int(i),
        Some(Value::DoubleValue(d)) => AttrValue::Double(d),
        Some(Value::BytesValue(b)) => AttrValue::Bytes(b),
        Some(Value::ArrayValue(a)) => {
            AttrValue::Array(a.values.into_iter().map(value_owned).collect())
        }
        Some(Value::KvlistValue(kvs)) => AttrValue::KvList(
            kvs.values
                .into_iter()
                .map(|kv| model::KeyValue {
                    key: kv.key,
                    value: kv.value.map_or(AttrValue::Empty, value_owned),
                })
                .collect(),
        ),
    }
}

/// Attributes as the model's, moving keys and values out of the request.
pub(crate) fn attributes_owned(kvs: Vec<KeyValue>) -> Attributes {
    kvs.into_iter()
        .map(|kv| (kv.key, kv.value.map_or(AttrValue::Empty, value_owned)))
        .collect()
}

pub(crate) fn attributes(kvs: &[KeyValue]) -> Attributes {
    attributes_owned(kvs.to_vec())
}

pub(crate) fn resource(r: Option<&OtlpResource>, schema_url: &str) -> Arc<Resource> {
    Arc::new(Resource {
        attributes: r.map(|r| attributes(&r.attributes)).unwrap_or_default(),
        dropped_attributes_count: r.map_or(0, |r| r.dropped_attributes_count),
        schema_url: schema_url.to_owned(),
    })
}

pub(crate) fn scope(s: Option<&InstrumentationScope>, schema_url: &str) -> Arc<Scope> {
    Arc::new(Scope {
        name: s.map(|s| s.name.clone()).unwrap_or_default(),
        version: s.map(|s| s.version.clone()).unwrap_or_default(),
        attributes: s.map(|s| attributes(&s.attributes)).unwrap_or_default(),
        dropped_attributes_count: s.map_or(0, |s| s.dropped_attributes_count),
        schema_url: schema_url.to_owned(),
    })
}

/// A required trace id: 16 bytes, not all zero.
pub(crate) fn trace_id(bytes: &[u8]) -> Result<TraceId, String> {
    match <[u8; 16]>::try_from(bytes) {
        Ok(id) if id != [0; 16] => Ok(TraceId(id)),
        Ok(_) => Err("trace_id is all zeros".into()),
        Err(_) => Err(format!("trace_id must be 16 bytes, got {}", bytes.len())),
    }
}

/// A required span id: 8 bytes, not all zero.
pub(crate) fn span_id(bytes: &[u8]) -> Result<SpanId, String> {
    match <[u8; 8]>::try_from(bytes) {
        Ok(id) if id != [0; 8] => Ok(SpanId(id)),
        Ok(_) => Err("span_id is all zeros".into()),
        Err(_) => Err(format!("span_id must be 8 bytes, got {}", bytes.len())),
    }
}

/// An optional id (a parent span, a log's trace context): empty or all zeros mean "none".
pub(crate) fn optional_id<const N: usize>(
    bytes: &[u8],
    name: &str,
) -> Result<Option<[u8; N]>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    match <[u8; N]>::try_from(bytes) {
        Ok(id) if id == [0; N] => Ok(None),
        Ok(id) => Ok(Some(id)),
        Err(_) => Err(format!(
            "{name} must be empty or {N} bytes, got {}",
            bytes.len()
        )),
    }
}
