//! The fast paths: OTLP protobuf requests read straight from their bytes into a table's
//! columns, without prost structs or model items. This module reads spans ([`spans`]); the
//! metrics one is in [`metrics`](mod@metrics).
//!
//! The span fast path reads an `ExportTraceServiceRequest` into the `spans` table's columns.
//!
//! It takes only requests it can store exactly as the general path (prost, then
//! [`crate::convert::spans`], then [`spyglass_store::schema::spans_to_batch`]) would: every
//! span valid, every span, event and link attribute a string, int, double or bool, strings
//! valid UTF-8, no singular message field given twice (prost would merge them). For anything
//! else it answers [`Fallback`] and the caller takes the general path, so error messages and
//! partial success never differ. The tests compare both paths on generated requests.
//!
//! Resources and scopes, one per group rather than per span, are decoded by prost and
//! converted as the general path does.

use std::sync::Arc;

use arrow::array::RecordBatch;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use prost::Message;
use spyglass_store::model::{Resource, Scope, SpanKind, StatusCode};
use spyglass_store::schema::{
    AttrRef, EventRow, KvRef, LinkRow, SpanRow, sort_attributes, span_rows_to_batch,
};

use crate::convert;
use crate::wire::{Fallback, Fields, Result};

mod metrics;

pub(crate) use metrics::metrics;

/// The spans of one scope group, not yet read.
struct Group<'a> {
    resource: Arc<Resource>,
    scope: Arc<Scope>,
    spans: Vec<&'a [u8]>,
}

/// The request's spans as a `spans` batch (`None` when it has none), or [`Fallback`]: also
/// when the rows would take more than `max_expanded` bytes with their resources and scopes
/// (the general path then refuses the request, saying why).
pub(crate) fn spans(request: &[u8], max_expanded: u64) -> Result<Option<RecordBatch>> {
    let mut groups = Vec::new();
    let mut fields = Fields::new(request);
    while let Some((number, value)) = fields.next_field()? {
        if number == 1 {
            resource_spans(value.bytes()?, &mut groups)?;
        }
    }
    let count = groups.iter().map(|g| g.spans.len()).sum();
    if count == 0 {
        return Ok(None);
    }
    // All rows first: the batch's buffers are then sized exactly.
    let mut rows = Vec::with_capacity(count);
    let mut scratch = Vec::new();
    for (owner, group) in groups.iter().enumerate() {
        for bytes in &group.spans {
            rows.push((owner, span(bytes, &mut scratch)?));
        }
    }
    let owners: Vec<_> = (groups.into_iter())
        .map(|g| (g.resource, g.scope))
        .collect();
    expansion_within(&owners, rows.iter().map(|(o, _)| *o), max_expanded)?;
    span_rows_to_batch(&owners, &rows)
        .map(Some)
        .map_err(|_| Fallback)
}

/// Whether rows of `owners` (given by index) take at most `max` bytes once each row carries its
/// resource and scope, measured as the general path measures them
/// ([`crate::pipeline::row_bytes`]).
fn expansion_within(
    owners: &[(Arc<Resource>, Arc<Scope>)],
    rows: impl Iterator<Item = usize>,
    max: u64,
) -> Result<()> {
    let sizes: Vec<u64> = (owners.iter())
        .map(|(r, s)| crate::pipeline::row_bytes(r, s))
        .collect();
    let expanded = rows.fold(0u64, |total, o| total.saturating_add(sizes[o]));
    if expanded > max {
        Err(Fallback)
    } else {
        Ok(())
    }
}

/// A field that may appear once: prost merges repeated messages (or lets a second oneof member
/// replace the first), which this path does not.
fn once<T>(slot: &mut Option<T>, value: T) -> Result<()> {
    match slot.replace(value) {
        Some(_) => Err(Fallback),
        None => Ok(()),
    }
}

/// A `ResourceSpans` or `ScopeSpans`: they share one layout.
struct Layer<'a, M> {
    /// Field 1, decoded by prost: the resource or the scope.
    owner: Option<M>,
    /// Field 2, left as bytes: the scope groups or the spans.
    children: Vec<&'a [u8]>,
    /// Field 3.
    schema_url: &'a str,
}

fn layer<M: Message + Default>(bytes: &[u8]) -> Result<Layer<'_, M>> {
    let (mut owner, mut children, mut schema_url) = (None, Vec::new(), "");
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => once(&mut owner, value.bytes()?)?,
            2 => children.push(value.bytes()?),
            3 => schema_url = value.str()?,
            _ => {}
        }
    }
    let owner = owner
        .map(|b| M::decode(b).map_err(|_| Fallback))
        .transpose()?;
    Ok(Layer {
        owner,
        children,
        schema_url,
    })
}

fn resource_spans<'a>(bytes: &'a [u8], groups: &mut Vec<Group<'a>>) -> Result<()> {
    let resource_spans = layer::<OtlpResource>(bytes)?;
    let resource = convert::resource(resource_spans.owner.as_ref(), resource_spans.schema_url);
    for bytes in resource_spans.children {
        let scope_spans = layer::<InstrumentationScope>(bytes)?;
        groups.push(Group {
            resource: resource.clone(),
            scope: convert::scope(scope_spans.owner.as_ref(), scope_spans.schema_url),
            spans: scope_spans.children,
        });
    }
    Ok(())
}

/// Reads one span, or [`Fallback`] when it is not valid. Its attributes are read into
/// `scratch` first, so that the span's own list is allocated once, at its size.
fn span<'a>(bytes: &'a [u8], scratch: &mut Vec<KvRef<'a>>) -> Result<SpanRow<'a>> {
    let (mut trace_id, mut span_id, mut parent): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let (mut kind, mut status) = (0i32, None);
    let attributes = scratch;
    attributes.clear();
    let (mut events, mut links) = (Vec::new(), Vec::new());
    let mut row = SpanRow::default();
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => trace_id = value.bytes()?,
            2 => span_id = value.bytes()?,
            3 => row.trace_state = value.str()?,
            4 => parent = value.bytes()?,
            5 => row.name = value.str()?,
            6 => kind = value.varint()? as i32,
            7 => row.start_time_unix_nano = value.fixed64()?,
            8 => row.end_time_unix_nano = value.fixed64()?,
            9 => attributes.push(key_value(value.bytes()?)?),
            10 => row.dropped_attributes_count = value.varint()? as u32,
            11 => events.push(event(value.bytes()?)?),
            12 => row.dropped_events_count = value.varint()? as u32,
            13 => links.push(link(value.bytes()?)?),
            14 => row.dropped_links_count = value.varint()? as u32,
            15 => once(&mut status, value.bytes()?)?,
            16 => row.flags = value.fixed32()?,
            _ => {}
        }
    }
    row.trace_id = required(trace_id)?;
    row.span_id = required(span_id)?;
    row.parent_span_id = match parent {
        [] => None,
        bytes => Some(<[u8; 8]>::try_from(bytes).map_err(|_| Fallback)?).filter(|p| *p != [0; 8]),
    };
    row.kind = usize::try_from(kind)
        .ok()
        .and_then(|i| SpanKind::ALL.get(i).copied())
        .ok_or(Fallback)?;
    if let Some(bytes) = status {
        let (message, code) = self::status(bytes)?;
        row.status_message = message;
        row.status_code = code;
    }
    sort_attributes(attributes);
    row.attributes = attributes.as_slice().to_vec();
    row.events = events;
    row.links = links;
    Ok(row)
}

/// A required id: `N` bytes, not all zero.
fn required<const N: usize>(bytes: &[u8]) -> Result<[u8; N]> {
    match <[u8; N]>::try_from(bytes) {
        Ok(id) if id != [0; N] => Ok(id),
        _ => Err(Fallback),
    }
}

fn status(bytes: &[u8]) -> Result<(&str, StatusCode)> {
    let (mut message, mut code) = ("", 0i32);
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            2 => message = value.str()?,
            3 => code = value.varint()? as i32,
            _ => {}
        }
    }
    let code = usize::try_from(code)
        .ok()
        .and_then(|i| StatusCode::ALL.get(i).copied())
        .ok_or(Fallback)?;
    Ok((message, code))
}

fn event(bytes: &[u8]) -> Result<EventRow<'_>> {
    let mut event = EventRow::default();
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => event.time_unix_nano = value.fixed64()?,
            2 => event.name = value.str()?,
            3 => event.attributes.push(key_value(value.bytes()?)?),
            4 => event.dropped_attributes_count = value.varint()? as u32,
            _ => {}
        }
    }
    sort_attributes(&mut event.attributes);
    Ok(event)
}

fn link(bytes: &[u8]) -> Result<LinkRow<'_>> {
    let (mut trace_id, mut span_id): (&[u8], &[u8]) = (&[], &[]);
    let mut link = LinkRow::default();
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => trace_id = value.bytes()?,
            2 => span_id = value.bytes()?,
            3 => link.trace_state = value.str()?,
            4 => link.attributes.push(key_value(value.bytes()?)?),
            5 => link.dropped_attributes_count = value.varint()? as u32,
            6 => link.flags = value.fixed32()?,
            _ => {}
        }
    }
    link.trace_id = required(trace_id)?;
    link.span_id = required(span_id)?;
    sort_attributes(&mut link.attributes);
    Ok(link)
}

/// A `KeyValue` whose value is a string, bool, int or double; anything else falls back.
fn key_value(bytes: &[u8]) -> Result<KvRef<'_>> {
    let (mut key, mut any) = ("", None);
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => key = value.str()?,
            2 => once(&mut any, value.bytes()?)?,
            // `key_strindex` (profiles only) is ignored, as the general path ignores it.
            3 => {
                value.varint()?;
            }
            _ => {}
        }
    }
    let mut scalar = None;
    let mut fields = Fields::new(any.ok_or(Fallback)?);
    while let Some((number, value)) = fields.next_field()? {
        let v = match number {
            1 => AttrRef::Str(value.str()?),
            2 => AttrRef::Bool(value.varint()? != 0),
            3 => AttrRef::Int(value.varint()? as i64),
            4 => AttrRef::Double(f64::from_bits(value.fixed64()?)),
            // Arrays, kvlists, bytes and string indexes take the general path.
            5..=8 => return Err(Fallback),
            _ => continue,
        };
        if scalar.replace(v).is_some() {
            return Err(Fallback);
        }
    }
    Ok((key, scalar.ok_or(Fallback)?))
}

#[cfg(test)]
mod tests;
