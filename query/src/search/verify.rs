//! Checking candidate traces on their stored rows, and summarising the ones that match.
//!
//! A candidate matches when one of its spans meets every span condition and its messages hold
//! every word of the text. Only the columns the conditions name are read (an attribute with a
//! promoted column is read from that column, not from the attribute maps), and the same rows
//! give the result list's summary, so a page of results never decodes whole spans.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow::array::{
    Array, AsArray, FixedSizeBinaryArray, ListArray, MapArray, RecordBatch, StringArray,
    StructArray, UInt64Array,
};
use arrow::datatypes::{Float64Type, Int64Type};
use spyglass_store::Snapshot;
use spyglass_store::model::{StatusCode, TraceId};
use spyglass_store::schema::PROMOTED_SPAN_ATTRIBUTES;

use super::{TraceSearch, TraceSummary, tokens};
use crate::error::{Error, Result};

const BASE_COLUMNS: [&str; 7] = [
    "span_id",
    "parent_span_id",
    "service_name",
    "name",
    "status_code",
    "start_time_unix_nano",
    "end_time_unix_nano",
];
const MAP_SUFFIXES: [&str; 4] = ["", "_int", "_double", "_bool"];

/// The promoted column holding exactly the attribute `key` (one whose column has a single
/// source name), if any.
fn promoted_column(key: &str) -> Option<&'static str> {
    PROMOTED_SPAN_ATTRIBUTES
        .iter()
        .find(|(_, names)| names == &[key])
        .map(|(column, _)| *column)
}

/// Which attributes verification reads for attribute conditions.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Read {
    /// Span attributes only: the index found the conditions on spans, so no resource holds
    /// them.
    SpanAttributes,
    /// Span and resource attributes.
    AllAttributes,
}

/// The columns verifying `search` reads.
fn columns(search: &TraceSearch, read: Read) -> Vec<String> {
    let mut out: Vec<String> = BASE_COLUMNS.iter().map(|c| c.to_string()).collect();
    if !search.attributes.is_empty() {
        let all_promoted = search
            .attributes
            .iter()
            .all(|(k, _)| promoted_column(k).is_some());
        for (key, _) in &search.attributes {
            if let Some(column) = promoted_column(key) {
                out.push(column.to_string());
            }
        }
        let prefixes: &[&str] = match (all_promoted, read) {
            (true, Read::SpanAttributes) => &[],
            (true, Read::AllAttributes) => &["resource_attributes"],
            (false, Read::SpanAttributes) => &["attributes"],
            (false, Read::AllAttributes) => &["attributes", "resource_attributes"],
        };
        for prefix in prefixes {
            out.extend(MAP_SUFFIXES.iter().map(|s| format!("{prefix}{s}")));
        }
    }
    if search.text.is_some() {
        out.push("status_message".into());
        out.push("events".into());
    }
    out
}

/// The traces among `ids` that match, summarised, in the order of `ids`.
pub(super) fn verify(
    snapshot: &Snapshot,
    search: &TraceSearch,
    ids: &[TraceId],
    read: Read,
) -> Result<Vec<TraceSummary>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let names = columns(search, read);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let batches = snapshot.trace_rows(ids, Some(&names))?;
    let mut traces: HashMap<TraceId, Accumulator> = HashMap::new();
    for batch in &batches {
        let rows = Rows::new(batch, search)?;
        for row in 0..batch.num_rows() {
            let id = rows.trace_id_at(row)?;
            traces.entry(id).or_default().add(&rows, row, search);
        }
    }
    let words: Option<HashSet<String>> = search.text.as_deref().map(|t| tokens(t).collect());
    Ok(ids
        .iter()
        .filter_map(|id| {
            let trace = traces.remove(id)?;
            let text_ok = words
                .as_ref()
                .is_none_or(|w| w.iter().all(|w| trace.words.contains(w)));
            (trace.matched && text_ok).then(|| trace.summary(*id))
        })
        .collect())
}

/// The trace ids of the rows of `batch` (spans, with at least the columns verification reads)
/// whose span meets every span condition, one per matching row.
pub(super) fn matching_traces(batch: &RecordBatch, search: &TraceSearch) -> Result<Vec<TraceId>> {
    let rows = Rows::new(batch, search)?;
    (0..batch.num_rows())
        .filter(|&row| rows.matches(row, search))
        .map(|row| rows.trace_id_at(row))
        .collect()
}

/// The typed attribute maps under one prefix, as read (absent when not read).
struct Maps<'a>(Vec<(usize, &'a MapArray)>);

impl<'a> Maps<'a> {
    fn new(batch: &'a RecordBatch, prefix: &str) -> Option<Self> {
        let mut maps = Vec::new();
        for (kind, suffix) in MAP_SUFFIXES.iter().enumerate() {
            let map = batch
                .column_by_name(&format!("{prefix}{suffix}"))?
                .as_any()
                .downcast_ref::<MapArray>()?;
            maps.push((kind, map));
        }
        Some(Self(maps))
    }

    /// The value of `key` in `row` as text equals `value`: `None` when the row lacks the key.
    fn equals(&self, row: usize, key: &str, value: &str) -> Option<bool> {
        for (kind, map) in &self.0 {
            let offsets = map.value_offsets();
            let keys = map.keys().as_string::<i32>();
            for i in offsets[row] as usize..offsets[row + 1] as usize {
                if keys.value(i) != key {
                    continue;
                }
                let values = map.values();
                return Some(match kind {
                    0 => values.as_string::<i32>().value(i) == value,
                    1 => values.as_primitive::<Int64Type>().value(i).to_string() == value,
                    2 => values.as_primitive::<Float64Type>().value(i).to_string() == value,
                    _ => values.as_boolean().value(i).to_string() == value,
                });
            }
        }
        None
    }

    fn string(&self, row: usize, key: &str) -> Option<&'a str> {
        let (_, map) = self.0.first()?;
        let offsets = map.value_offsets();
        let keys = map.keys().as_string::<i32>();
        (offsets[row] as usize..offsets[row + 1] as usize)
            .find(|&i| keys.value(i) == key)
            .map(|i| map.values().as_string::<i32>().value(i))
    }
}

/// The columns of one batch of candidate rows.
struct Rows<'a> {
    trace_id: &'a FixedSizeBinaryArray,
    span_id: &'a FixedSizeBinaryArray,
    parent: &'a FixedSizeBinaryArray,
    service: &'a StringArray,
    name: &'a StringArray,
    status: &'a StringArray,
    start: &'a UInt64Array,
    end: &'a UInt64Array,
    /// Per attribute condition, its promoted column when it has one.
    promoted: Vec<Option<&'a StringArray>>,
    span_maps: Option<Maps<'a>>,
    resource_maps: Option<Maps<'a>>,
    status_message: Option<&'a StringArray>,
    events: Option<(&'a ListArray, Maps<'a>)>,
}

impl<'a> Rows<'a> {
    fn new(batch: &'a RecordBatch, search: &TraceSearch) -> Result<Self> {
        fn get<'b, T: 'static>(batch: &'b RecordBatch, name: &str) -> Result<&'b T> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<T>())
                .ok_or_else(|| Error::Internal(format!("candidate rows lack {name}")))
        }
        let events = match batch.column_by_name("events") {
            Some(list) => {
                let list = list
                    .as_any()
                    .downcast_ref::<ListArray>()
                    .ok_or_else(|| Error::Internal("events are not a list".into()))?;
                let items: &StructArray = list.values().as_struct();
                let maps = MAP_SUFFIXES
                    .iter()
                    .enumerate()
                    .map(|(kind, suffix)| {
                        items
                            .column_by_name(&format!("attributes{suffix}"))
                            .and_then(|c| c.as_any().downcast_ref::<MapArray>())
                            .map(|m| (kind, m))
                            .ok_or_else(|| Error::Internal("events lack attributes".into()))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Some((list, Maps(maps)))
            }
            None => None,
        };
        Ok(Self {
            trace_id: get(batch, "trace_id")?,
            span_id: get(batch, "span_id")?,
            parent: get(batch, "parent_span_id")?,
            service: get(batch, "service_name")?,
            name: get(batch, "name")?,
            status: get(batch, "status_code")?,
            start: get(batch, "start_time_unix_nano")?,
            end: get(batch, "end_time_unix_nano")?,
            promoted: search
                .attributes
                .iter()
                .map(|(k, _)| promoted_column(k).and_then(|c| get(batch, c).ok()))
                .collect(),
            span_maps: Maps::new(batch, "attributes"),
            resource_maps: Maps::new(batch, "resource_attributes"),
            status_message: get(batch, "status_message").ok(),
            events,
        })
    }

    fn trace_id_at(&self, row: usize) -> Result<TraceId> {
        self.trace_id
            .value(row)
            .try_into()
            .map(TraceId)
            .map_err(|_| Error::Internal("trace ids are 16 bytes".into()))
    }

    /// The span of `row` meets every span condition of `search`.
    fn matches(&self, row: usize, search: &TraceSearch) -> bool {
        let (start, end) = (self.start.value(row), self.end.value(row));
        let duration = end.saturating_sub(start);
        search
            .service
            .as_deref()
            .is_none_or(|s| self.service.value(row) == s)
            && search
                .operation
                .as_deref()
                .is_none_or(|o| self.name.value(row) == o)
            && (!search.errors_only || self.status.value(row) == StatusCode::Error.as_str())
            && search.min_duration_nano.is_none_or(|m| duration >= m)
            && search.max_duration_nano.is_none_or(|m| duration <= m)
            && search.start_unix_nano.is_none_or(|t| start >= t)
            && search.end_unix_nano.is_none_or(|t| start <= t)
            && search
                .attributes
                .iter()
                .zip(&self.promoted)
                .all(|((key, value), promoted)| self.attribute(row, key, value, *promoted))
    }

    /// A span attribute wins over a resource attribute of the same key.
    fn attribute(
        &self,
        row: usize,
        key: &str,
        value: &str,
        promoted: Option<&StringArray>,
    ) -> bool {
        let on_span = match promoted {
            Some(column) => (!column.is_null(row)).then(|| column.value(row) == value),
            None => self
                .span_maps
                .as_ref()
                .and_then(|m| m.equals(row, key, value)),
        };
        on_span.unwrap_or_else(|| {
            self.resource_maps
                .as_ref()
                .and_then(|m| m.equals(row, key, value))
                .unwrap_or(false)
        })
    }

    /// The words of the row's status message and exception type and message.
    fn words(&self, row: usize, into: &mut HashSet<String>) {
        if let Some(message) = self.status_message {
            into.extend(tokens(message.value(row)));
        }
        if let Some((list, maps)) = &self.events {
            let offsets = list.value_offsets();
            for e in offsets[row] as usize..offsets[row + 1] as usize {
                for key in ["exception.type", "exception.message"] {
                    if let Some(v) = maps.string(e, key) {
                        into.extend(tokens(v));
                    }
                }
            }
        }
    }
}

/// What the rows read so far say about one trace.
#[derive(Default)]
struct Accumulator {
    spans: HashSet<[u8; 8]>,
    matched: bool,
    words: HashSet<String>,
    start: Option<u64>,
    end: u64,
    errors: usize,
    services: BTreeMap<String, usize>,
    /// The root so far: parentless first, then earliest, then lowest span id.
    root: Option<(bool, u64, [u8; 8], String, String)>,
}

impl Accumulator {
    fn add(&mut self, rows: &Rows, row: usize, search: &TraceSearch) {
        let span_id: [u8; 8] = rows.span_id.value(row).try_into().unwrap_or_default();
        if !self.spans.insert(span_id) {
            return; // the same span from a retried export
        }
        let (start, end) = (rows.start.value(row), rows.end.value(row));
        self.start = Some(self.start.map_or(start, |s| s.min(start)));
        self.end = self.end.max(end);
        if rows.status.value(row) == StatusCode::Error.as_str() {
            self.errors += 1;
        }
        let service = rows.service.value(row);
        match self.services.get_mut(service) {
            Some(n) => *n += 1,
            None => {
                self.services.insert(service.to_string(), 1);
            }
        }
        let parentless = rows.parent.is_null(row);
        let better = self
            .root
            .as_ref()
            .is_none_or(|(p, s, id, _, _)| (!parentless, start, span_id) < (!*p, *s, *id));
        if better {
            self.root = Some((
                parentless,
                start,
                span_id,
                service.to_string(),
                rows.name.value(row).to_string(),
            ));
        }
        if !self.matched && rows.matches(row, search) {
            self.matched = true;
        }
        if search.text.is_some() {
            rows.words(row, &mut self.words);
        }
    }

    fn summary(self, trace_id: TraceId) -> TraceSummary {
        let start = self.start.unwrap_or(0);
        let mut services: Vec<(String, usize)> = self.services.into_iter().collect();
        services.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let (root_service, root_name) = self
            .root
            .map(|(_, _, _, service, name)| (service, name))
            .unwrap_or_default();
        TraceSummary {
            trace_id,
            root_service,
            root_name,
            start_time_unix_nano: start,
            duration_nano: self.end.saturating_sub(start),
            span_count: self.spans.len(),
            error_count: self.errors,
            services,
        }
    }
}
