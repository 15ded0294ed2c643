//! Building a `spans` batch one span at a time, from borrowed fields.
//!
//! Both ways in use it: [`super::spans_to_batch`] (model spans) and ingest's fast path, which
//! reads OTLP protobuf straight into [`SpanRow`]s without making model spans. Sharing the
//! builder is what keeps the two batches identical.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeBinaryArray, Int64Array, NullBufferBuilder, RecordBatch, StringBuilder,
    UInt32Array, UInt64Array,
};
use arrow::buffer::{Buffer, ScalarBuffer};

use super::super::attrs::{AttrMapsBuilder, AttrRef, KvRef, resource_scope_arrays};
use super::super::columns::list_array;
use super::{INT_PROMOTED, PROMOTED_SPAN_ATTRIBUTES, event_fields, link_fields};
use super::{promoted_positions, spans_schema};
use crate::error::Result;
use crate::model::{Resource, Scope, Span, SpanKind, StatusCode};

/// One span's fields, borrowed. `attributes` (and each event's and link's) must be sorted by
/// key with unique keys, as [`crate::schema::sort_attributes`] leaves them.
#[derive(Clone, Debug, Default)]
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

#[derive(Clone, Debug, Default)]
pub struct EventRow<'a> {
    pub time_unix_nano: u64,
    pub name: &'a str,
    pub attributes: Vec<KvRef<'a>>,
    pub dropped_attributes_count: u32,
}

#[derive(Clone, Debug, Default)]
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

/// Makes a `spans` batch of `rows`, each with the index of its resource and scope in
/// `owners`. Every buffer is sized exactly before the rows are written.
pub fn span_rows_to_batch(
    owners: &[(Arc<Resource>, Arc<Scope>)],
    rows: &[(usize, SpanRow<'_>)],
) -> Result<RecordBatch> {
    let mut builder = SpanBatchBuilder::for_rows(owners, rows);
    for (owner, row) in rows {
        builder.push(*owner, row);
    }
    builder.finish(owners, promoted_columns(rows))
}

/// The promoted columns, each sized exactly.
fn promoted_columns(rows: &[(usize, SpanRow<'_>)]) -> Vec<ArrayRef> {
    let found: Vec<_> = (rows.iter())
        .map(|(_, r)| promoted_positions(&r.attributes))
        .collect();
    let column = |c: usize| {
        (found.iter().zip(rows))
            .map(move |(at, (_, r))| r.attributes.get(at[c] as usize).map(|kv| kv.1))
    };
    (PROMOTED_SPAN_ATTRIBUTES.iter().enumerate())
        .map(|(c, (name, _))| -> ArrayRef {
            if *name == INT_PROMOTED {
                return Arc::new(Int64Array::from_iter(column(c).map(|v| match v? {
                    AttrRef::Int(i) => Some(i),
                    AttrRef::Str(s) => s.parse().ok(),
                    _ => None,
                })));
            }
            let bytes = column(c).flatten().map(|v| v.display().len()).sum();
            let mut text = StringBuilder::with_capacity(rows.len(), bytes);
            for value in column(c) {
                text.append_option(value.map(|v| v.display()));
            }
            Arc::new(text.finish())
        })
        .collect()
}

/// The columns of a `spans` batch being written, span by span.
struct SpanBatchBuilder {
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
    attributes: AttrMapsBuilder,
    dropped_attributes: Vec<u32>,
    dropped_events: Vec<u32>,
    dropped_links: Vec<u32>,
    events: EventsBuilder,
    links: LinksBuilder,
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

/// A string column of `rows` rows holding `bytes` bytes.
fn text_of<'a>(values: impl Iterator<Item = &'a str>) -> StringBuilder {
    let (rows, bytes) = values.fold((0, 0), |(n, b), v| (n + 1, b + v.len()));
    StringBuilder::with_capacity(rows, bytes)
}

impl SpanBatchBuilder {
    /// Room for exactly `rows`.
    fn for_rows(owners: &[(Arc<Resource>, Arc<Scope>)], rows: &[(usize, SpanRow<'_>)]) -> Self {
        let n = rows.len();
        let services: Vec<&str> = owners.iter().map(|(r, _)| r.service_name()).collect();
        let spans = || rows.iter().map(|(_, r)| r);
        let events = || spans().flat_map(|s| &s.events);
        let links = || spans().flat_map(|s| &s.links);
        let n_events = events().count();
        let n_links = links().count();
        Self {
            trace_id: Vec::with_capacity(n * 16),
            span_id: Vec::with_capacity(n * 8),
            parent_span_id: Vec::with_capacity(n * 8),
            parent_valid: NullBufferBuilder::new(n),
            trace_state: text_of(spans().map(|s| s.trace_state)),
            flags: Vec::with_capacity(n),
            service_name: text_of(rows.iter().map(|(o, _)| services[*o])),
            name: text_of(spans().map(|s| s.name)),
            kind: text_of(spans().map(|s| s.kind.as_str())),
            start: Vec::with_capacity(n),
            end: Vec::with_capacity(n),
            duration: Vec::with_capacity(n),
            status_code: text_of(spans().map(|s| s.status_code.as_str())),
            status_message: text_of(spans().map(|s| s.status_message)),
            attributes: AttrMapsBuilder::for_rows(spans().map(|s| s.attributes.iter().copied())),
            dropped_attributes: Vec::with_capacity(n),
            dropped_events: Vec::with_capacity(n),
            dropped_links: Vec::with_capacity(n),
            events: EventsBuilder {
                per_span: Vec::with_capacity(n),
                time: Vec::with_capacity(n_events),
                name: text_of(events().map(|e| e.name)),
                attributes: AttrMapsBuilder::for_rows(
                    events().map(|e| e.attributes.iter().copied()),
                ),
                dropped: Vec::with_capacity(n_events),
            },
            links: LinksBuilder {
                per_span: Vec::with_capacity(n),
                trace_id: Vec::with_capacity(n_links * 16),
                span_id: Vec::with_capacity(n_links * 8),
                trace_state: text_of(links().map(|l| l.trace_state)),
                flags: Vec::with_capacity(n_links),
                attributes: AttrMapsBuilder::for_rows(
                    links().map(|l| l.attributes.iter().copied()),
                ),
                dropped: Vec::with_capacity(n_links),
            },
            owner_of_row: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, owner: usize, span: &SpanRow<'_>) {
        self.owner_of_row.push(owner as u32);
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
        self.attributes.append(span.attributes.iter().copied());
        self.dropped_attributes.push(span.dropped_attributes_count);
        self.dropped_events.push(span.dropped_events_count);
        self.dropped_links.push(span.dropped_links_count);
        let events = &mut self.events;
        events.per_span.push(span.events.len());
        for e in &span.events {
            events.time.push(e.time_unix_nano);
            events.name.append_value(e.name);
            events.attributes.append(e.attributes.iter().copied());
            events.dropped.push(e.dropped_attributes_count);
        }
        let links = &mut self.links;
        links.per_span.push(span.links.len());
        for l in &span.links {
            links.trace_id.extend_from_slice(&l.trace_id);
            links.span_id.extend_from_slice(&l.span_id);
            links.trace_state.append_value(l.trace_state);
            links.flags.push(l.flags);
            links.attributes.append(l.attributes.iter().copied());
            links.dropped.push(l.dropped_attributes_count);
        }
    }

    fn finish(
        mut self,
        owners: &[(Arc<Resource>, Arc<Scope>)],
        promoted: Vec<ArrayRef>,
    ) -> Result<RecordBatch> {
        let services: Vec<&str> = owners.iter().map(|(r, _)| r.service_name()).collect();
        for &o in &self.owner_of_row {
            self.service_name.append_value(services[o as usize]);
        }
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
        columns.extend(promoted);
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
        let per_row: Vec<_> = (self.owner_of_row.iter())
            .map(|&o| {
                let (r, s) = &owners[o as usize];
                (r, s)
            })
            .collect();
        columns.extend(resource_scope_arrays(&per_row)?);
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
    Arc::new(builder.finish())
}

fn u32s(values: Vec<u32>) -> ArrayRef {
    Arc::new(UInt32Array::new(ScalarBuffer::from(values), None))
}

fn u64s(values: Vec<u64>) -> ArrayRef {
    Arc::new(UInt64Array::new(ScalarBuffer::from(values), None))
}

#[cfg(test)]
mod tests {
    use crate::memtable::batch_bytes;
    use crate::schema::{spans_from_batch, spans_to_batch};
    use crate::synth::SpanGenerator;

    #[test]
    fn a_batch_holds_no_spare_capacity_and_round_trips() {
        let spans = SpanGenerator::new(3, 1_700_000_000_000_000_000).spans(2_000);
        let batch = spans_to_batch(&spans).unwrap();
        // What the memtable's budget counts (the data, 2.2 MB) against what the batch holds
        // (its buffers' capacity): the 64-byte rounding of each buffer only.
        let used = batch_bytes(&batch) as usize;
        let held = batch.get_array_memory_size();
        assert!(held - used <= 32 << 10, "held {held} for {used} used");
        assert_eq!(spans_from_batch(&batch).unwrap(), spans);
    }
}
