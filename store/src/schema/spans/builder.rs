//! Building a `spans` batch one span at a time, from borrowed fields.
//!
//! Both ways in use it: [`super::spans_to_batch`] (model spans) and ingest's fast path, which
//! reads OTLP protobuf straight into a [`SpanRow`] without making model spans. Sharing the
//! builder is what keeps the two batches identical.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, FixedSizeBinaryArray, Int64Builder, NullBufferBuilder, RecordBatch,
    StringBuilder, UInt32Array, UInt64Array,
};
use arrow::buffer::{Buffer, ScalarBuffer};

use super::super::attrs::{AttrMapsBuilder, AttrRef, KvRef, resource_scope_arrays};
use super::super::columns::list_array;
use super::{INT_PROMOTED, PROMOTED_SPAN_ATTRIBUTES, event_fields, link_fields};
use super::{promoted_values, spans_schema};
use crate::error::Result;
use crate::model::{Resource, Scope, Span, SpanKind, StatusCode};

/// One span's fields, borrowed. `attributes` (and each event's and link's) must be sorted by
/// key with unique keys, as [`crate::schema::sort_attributes`] leaves them.
#[derive(Clone, Debug)]
pub struct SpanRow<'a> {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub trace_state: &'a str,
    pub flags: u32,
    pub name: &'a str,
    pub kind: SpanKind,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub status_code: StatusCode,
    pub status_message: &'a str,
    pub attributes: Vec<KvRef<'a>>,
    pub dropped_attributes_count: u32,
    pub events: Vec<EventRow<'a>>,
    pub dropped_events_count: u32,
    pub links: Vec<LinkRow<'a>>,
    pub dropped_links_count: u32,
}

#[derive(Clone, Debug)]
pub struct EventRow<'a> {
    pub time_unix_nano: u64,
    pub name: &'a str,
    pub attributes: Vec<KvRef<'a>>,
    pub dropped_attributes_count: u32,
}

#[derive(Clone, Debug)]
pub struct LinkRow<'a> {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub trace_state: &'a str,
    pub flags: u32,
    pub attributes: Vec<KvRef<'a>>,
    pub dropped_attributes_count: u32,
}

impl<'a> SpanRow<'a> {
    /// A model span's fields.
    pub fn of(span: &'a Span) -> Self {
        let attributes = |a: &'a crate::model::Attributes| {
            a.iter()
                .map(|kv| (kv.key.as_str(), AttrRef::of(&kv.value)))
                .collect()
        };
        Self {
            trace_id: span.trace_id.0,
            span_id: span.span_id.0,
            parent_span_id: span.parent_span_id.map(|p| p.0),
            trace_state: &span.trace_state,
            flags: span.flags,
            name: &span.name,
            kind: span.kind,
            start_time_unix_nano: span.start_time_unix_nano,
            end_time_unix_nano: span.end_time_unix_nano,
            status_code: span.status_code,
            status_message: &span.status_message,
            attributes: attributes(&span.attributes),
            dropped_attributes_count: span.dropped_attributes_count,
            events: (span.events.iter())
                .map(|e| EventRow {
                    time_unix_nano: e.time_unix_nano,
                    name: &e.name,
                    attributes: attributes(&e.attributes),
                    dropped_attributes_count: e.dropped_attributes_count,
                })
                .collect(),
            dropped_events_count: span.dropped_events_count,
            links: (span.links.iter())
                .map(|l| LinkRow {
                    trace_id: l.trace_id.0,
                    span_id: l.span_id.0,
                    trace_state: &l.trace_state,
                    flags: l.flags,
                    attributes: attributes(&l.attributes),
                    dropped_attributes_count: l.dropped_attributes_count,
                })
                .collect(),
            dropped_links_count: span.dropped_links_count,
        }
    }
}

enum Promoted {
    Str(StringBuilder),
    Int(Int64Builder),
}

/// Appends spans to the columns of the `spans` table; [`SpanBatchBuilder::finish`] makes the
/// batch. Spans take the resource and scope last given to [`SpanBatchBuilder::owner`].
pub struct SpanBatchBuilder {
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    parent_valid: NullBufferBuilder,
    trace_state: StringBuilder,
    flags: Vec<u32>,
    service_name: StringBuilder,
    name: StringBuilder,
    kind: StringBuilder,
    start: Vec<u64>,
    end: Vec<u64>,
    duration: Vec<u64>,
    status_code: StringBuilder,
    status_message: StringBuilder,
    promoted: Vec<Promoted>,
    attributes: AttrMapsBuilder,
    dropped_attributes: Vec<u32>,
    dropped_events: Vec<u32>,
    dropped_links: Vec<u32>,
    events: EventsBuilder,
    links: LinksBuilder,
    owners: Vec<(Arc<Resource>, Arc<Scope>)>,
    owner_of_row: Vec<u32>,
}

struct EventsBuilder {
    per_span: Vec<usize>,
    time: Vec<u64>,
    name: StringBuilder,
    attributes: AttrMapsBuilder,
    dropped: Vec<u32>,
}

struct LinksBuilder {
    per_span: Vec<usize>,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    trace_state: StringBuilder,
    flags: Vec<u32>,
    attributes: AttrMapsBuilder,
    dropped: Vec<u32>,
}

/// Expected attributes per span, for the first allocation of the attribute maps.
const ATTRIBUTES_PER_SPAN: usize = 8;

impl SpanBatchBuilder {
    /// Room for `spans` spans (more may be appended).
    pub fn with_capacity(spans: usize) -> Self {
        let text =
            |bytes_per_row: usize| StringBuilder::with_capacity(spans, spans * bytes_per_row);
        let promoted = PROMOTED_SPAN_ATTRIBUTES
            .iter()
            .map(|(column, _)| match *column {
                INT_PROMOTED => Promoted::Int(Int64Builder::with_capacity(spans)),
                _ => Promoted::Str(StringBuilder::with_capacity(spans, 0)),
            })
            .collect();
        Self {
            trace_id: Vec::with_capacity(spans * 16),
            span_id: Vec::with_capacity(spans * 8),
            parent_span_id: Vec::with_capacity(spans * 8),
            parent_valid: NullBufferBuilder::new(spans),
            trace_state: text(0),
            flags: Vec::with_capacity(spans),
            service_name: text(8),
            name: text(16),
            kind: text(16),
            start: Vec::with_capacity(spans),
            end: Vec::with_capacity(spans),
            duration: Vec::with_capacity(spans),
            status_code: text(16),
            status_message: text(0),
            promoted,
            attributes: AttrMapsBuilder::with_capacity(spans, ATTRIBUTES_PER_SPAN),
            dropped_attributes: Vec::with_capacity(spans),
            dropped_events: Vec::with_capacity(spans),
            dropped_links: Vec::with_capacity(spans),
            events: EventsBuilder {
                per_span: Vec::with_capacity(spans),
                time: Vec::new(),
                name: StringBuilder::new(),
                attributes: AttrMapsBuilder::with_capacity(0, 0),
                dropped: Vec::new(),
            },
            links: LinksBuilder {
                per_span: Vec::with_capacity(spans),
                trace_id: Vec::new(),
                span_id: Vec::new(),
                trace_state: StringBuilder::new(),
                flags: Vec::new(),
                attributes: AttrMapsBuilder::with_capacity(0, 0),
                dropped: Vec::new(),
            },
            owners: Vec::new(),
            owner_of_row: Vec::with_capacity(spans),
        }
    }

    /// Spans appended from now on belong to this resource and scope.
    pub fn owner(&mut self, resource: &Arc<Resource>, scope: &Arc<Scope>) {
        let same = self
            .owners
            .last()
            .is_some_and(|(r, s)| Arc::ptr_eq(r, resource) && Arc::ptr_eq(s, scope));
        if !same {
            self.owners.push((resource.clone(), scope.clone()));
        }
    }

    pub fn len(&self) -> usize {
        self.start.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push(&mut self, span: &SpanRow<'_>) {
        let (resource, _) = self
            .owners
            .last()
            .expect("SpanBatchBuilder::owner is called before the first span");
        self.service_name.append_value(resource.service_name());
        self.owner_of_row.push(self.owners.len() as u32 - 1);
        self.trace_id.extend_from_slice(&span.trace_id);
        self.span_id.extend_from_slice(&span.span_id);
        match &span.parent_span_id {
            Some(parent) => {
                self.parent_span_id.extend_from_slice(parent);
                self.parent_valid.append_non_null();
            }
            None => {
                self.parent_span_id.extend_from_slice(&[0; 8]);
                self.parent_valid.append_null();
            }
        }
        self.trace_state.append_value(span.trace_state);
        self.flags.push(span.flags);
        self.name.append_value(span.name);
        self.kind.append_value(span.kind.as_str());
        self.start.push(span.start_time_unix_nano);
        self.end.push(span.end_time_unix_nano);
        self.duration.push(
            span.end_time_unix_nano
                .saturating_sub(span.start_time_unix_nano),
        );
        self.status_code.append_value(span.status_code.as_str());
        self.status_message.append_value(span.status_message);
        for (builder, value) in self
            .promoted
            .iter_mut()
            .zip(promoted_values(&span.attributes))
        {
            match builder {
                Promoted::Int(b) => b.append_option(value.and_then(|v| match v {
                    AttrRef::Int(i) => Some(i),
                    AttrRef::Str(s) => s.parse().ok(),
                    _ => None,
                })),
                Promoted::Str(b) => b.append_option(value.map(|v| v.display())),
            }
        }
        self.attributes.append(&span.attributes);
        self.dropped_attributes.push(span.dropped_attributes_count);
        self.dropped_events.push(span.dropped_events_count);
        self.dropped_links.push(span.dropped_links_count);
        let events = &mut self.events;
        events.per_span.push(span.events.len());
        for e in &span.events {
            events.time.push(e.time_unix_nano);
            events.name.append_value(e.name);
            events.attributes.append(&e.attributes);
            events.dropped.push(e.dropped_attributes_count);
        }
        let links = &mut self.links;
        links.per_span.push(span.links.len());
        for l in &span.links {
            links.trace_id.extend_from_slice(&l.trace_id);
            links.span_id.extend_from_slice(&l.span_id);
            links.trace_state.append_value(l.trace_state);
            links.flags.push(l.flags);
            links.attributes.append(&l.attributes);
            links.dropped.push(l.dropped_attributes_count);
        }
    }

    pub fn finish(mut self) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = vec![
            ids(self.trace_id, 16, None),
            ids(self.span_id, 8, None),
            ids(self.parent_span_id, 8, self.parent_valid.finish()),
            text(&mut self.trace_state),
            u32s(self.flags),
            text(&mut self.service_name),
            text(&mut self.name),
            text(&mut self.kind),
            u64s(self.start),
            u64s(self.end),
            u64s(self.duration),
            text(&mut self.status_code),
            text(&mut self.status_message),
        ];
        for builder in self.promoted {
            columns.push(match builder {
                Promoted::Str(mut b) => text(&mut b),
                Promoted::Int(mut b) => {
                    let mut array = b.finish();
                    array.shrink_to_fit();
                    Arc::new(array)
                }
            });
        }
        columns.extend(self.attributes.finish());
        columns.push(u32s(self.dropped_attributes));
        let mut events = self.events;
        let mut event_columns = vec![u64s(events.time), text(&mut events.name)];
        event_columns.extend(events.attributes.finish());
        event_columns.push(u32s(events.dropped));
        columns.push(list_array(event_fields(), event_columns, &events.per_span)?);
        columns.push(u32s(self.dropped_events));
        let mut links = self.links;
        let mut link_columns = vec![
            ids(links.trace_id, 16, None),
            ids(links.span_id, 8, None),
            text(&mut links.trace_state),
            u32s(links.flags),
        ];
        link_columns.extend(links.attributes.finish());
        link_columns.push(u32s(links.dropped));
        columns.push(list_array(link_fields(), link_columns, &links.per_span)?);
        columns.push(u32s(self.dropped_links));
        let owners: Vec<_> = (self.owner_of_row.iter())
            .map(|&o| {
                let (r, s) = &self.owners[o as usize];
                (r, s)
            })
            .collect();
        columns.extend(resource_scope_arrays(&owners)?);
        Ok(RecordBatch::try_new(spans_schema(), columns)?)
    }
}

fn ids(mut bytes: Vec<u8>, width: i32, nulls: Option<arrow::buffer::NullBuffer>) -> ArrayRef {
    bytes.shrink_to_fit();
    Arc::new(FixedSizeBinaryArray::new(
        width,
        Buffer::from_vec(bytes),
        nulls,
    ))
}

fn text(builder: &mut StringBuilder) -> ArrayRef {
    let mut array = builder.finish();
    array.shrink_to_fit();
    Arc::new(array)
}

fn u32s(mut values: Vec<u32>) -> ArrayRef {
    values.shrink_to_fit();
    Arc::new(UInt32Array::new(ScalarBuffer::from(values), None))
}

fn u64s(mut values: Vec<u64>) -> ArrayRef {
    values.shrink_to_fit();
    Arc::new(UInt64Array::new(ScalarBuffer::from(values), None))
}
