//! The trace index: one tantivy index per spans part, one document per trace in that part.
//!
//! A document per span would cap ingest near tantivy's ~100k documents/s per core (DESIGN.md
//! §10); a document per trace holds what search needs to pick candidate traces — services,
//! operations, `key=value` terms of every scalar span and resource attribute, kinds, statuses,
//! status and exception messages as full text, and the trace's time and duration bounds — and the
//! query engine checks span-level conditions on the few candidates in Parquet. The trace id is an
//! indexed term, so a trace is found in any part without knowing its time range.

use std::collections::HashSet;
use std::fmt::Write;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Bound;
use std::path::Path;

use arrow::array::{
    Array, AsArray, FixedSizeBinaryArray, ListArray, MapArray, RecordBatch, StringArray,
    StructArray, UInt64Array,
};
use arrow::datatypes::{Float64Type, Int64Type};
use tantivy::collector::DocSetCollector;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{
    BytesOptions, FAST, Field, IndexRecordOption, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{Index, IndexReader, ReloadPolicy, TantivyDocument, Term};

use crate::error::{Error, Result};
use crate::model::TraceId;

/// Attribute values longer than this are indexed by their first bytes only.
pub const MAX_TERM_VALUE_BYTES: usize = 256;
/// Separates a service from the operation in `op` terms.
const SEP: char = '\u{1f}';

#[derive(Clone, Copy)]
struct Fields {
    trace_id: Field,
    service: Field,
    op: Field,
    name: Field,
    attr: Field,
    kind: Field,
    status: Field,
    error_service: Field,
    text: Field,
    start: Field,
    end: Field,
    min_span_duration: Field,
    max_span_duration: Field,
    span_count: Field,
    error_count: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("default")
            .set_index_option(IndexRecordOption::Basic),
    );
    let fields = Fields {
        trace_id: b.add_bytes_field("trace_id", BytesOptions::default().set_indexed().set_fast()),
        service: b.add_text_field("service", STRING),
        op: b.add_text_field("op", STRING),
        name: b.add_text_field("name", STRING),
        attr: b.add_text_field("attr", STRING),
        kind: b.add_text_field("kind", STRING),
        status: b.add_text_field("status", STRING),
        error_service: b.add_text_field("error_service", STRING),
        text: b.add_text_field("text", text),
        start: b.add_u64_field("start", FAST),
        end: b.add_u64_field("end", FAST),
        min_span_duration: b.add_u64_field("min_span_duration", FAST),
        max_span_duration: b.add_u64_field("max_span_duration", FAST),
        span_count: b.add_u64_field("span_count", FAST),
        error_count: b.add_u64_field("error_count", FAST),
    };
    (b.build(), fields)
}

fn index_err(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(tantivy::TantivyError) -> Error + use<> {
    let path = path.to_owned();
    move |source| Error::Index {
        action,
        path,
        source,
    }
}

fn truncated(value: &str) -> &str {
    if value.len() <= MAX_TERM_VALUE_BYTES {
        return value;
    }
    let mut end = MAX_TERM_VALUE_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// The `key=value` term of an attribute, as search looks it up.
pub fn attribute_term(key: &str, value: &str) -> String {
    let mut term = String::new();
    write_attribute_term(&mut term, key, value);
    term
}

/// Writes the `key=value` term into `term`, replacing what it held.
fn write_attribute_term(term: &mut String, key: &str, value: &str) {
    term.clear();
    term.push_str(key);
    term.push('=');
    term.push_str(truncated(value));
}

/// Scalar entries of the typed attribute maps stored under one prefix.
struct ScalarMaps<'a> {
    maps: Vec<(usize, &'a MapArray)>,
}

impl<'a> ScalarMaps<'a> {
    fn new(get: impl Fn(&str) -> Option<&'a MapArray>, prefix: &str) -> Result<Self> {
        let mut maps = Vec::new();
        for (kind, suffix) in ["", "_int", "_double", "_bool"].iter().enumerate() {
            let name = format!("{prefix}{suffix}");
            maps.push((
                kind,
                get(&name).ok_or_else(|| Error::Corrupt(format!("spans lack {name}")))?,
            ));
        }
        Ok(Self { maps })
    }

    /// Calls `f` with the key and the value as text of each entry of `row`; `value` is a
    /// scratch buffer for non-string values.
    fn for_each(&self, row: usize, value: &mut String, mut f: impl FnMut(&str, &str)) {
        for (kind, map) in &self.maps {
            let offsets = map.value_offsets();
            let keys = map.keys().as_string::<i32>();
            let values = map.values();
            for i in offsets[row] as usize..offsets[row + 1] as usize {
                if *kind == 0 {
                    f(keys.value(i), values.as_string::<i32>().value(i));
                    continue;
                }
                value.clear();
                let _ = match kind {
                    1 => write!(value, "{}", values.as_primitive::<Int64Type>().value(i)),
                    2 => write!(value, "{}", values.as_primitive::<Float64Type>().value(i)),
                    _ => write!(value, "{}", values.as_boolean().value(i)),
                };
                f(keys.value(i), value);
            }
        }
    }

    /// A hash of every entry of `row`, to index a resource's attributes once per trace.
    fn row_hash(&self, row: usize) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                hash = (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            hash = (hash ^ 0xff).wrapping_mul(0x0000_0100_0000_01b3);
        };
        let mut scratch = String::new();
        self.for_each(row, &mut scratch, |k, v| {
            feed(k.as_bytes());
            feed(v.as_bytes());
        });
        hash
    }
}

/// A `u64` that is already a hash.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

fn fnv(seed: u64, bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in bytes {
        hash = (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The document of the trace being indexed. Terms are deduplicated by a 64-bit hash of field
/// and text, so a repeated term costs no allocation (a collision would drop one term of one
/// trace from the index: about 2^-64 per pair).
#[derive(Default)]
struct DocBuilder {
    doc: TantivyDocument,
    seen: HashSet<u64, BuildHasherDefault<Prehashed>>,
    /// Hashes of the resources whose attributes are already in the document.
    resources: Vec<u64>,
    text: String,
    start: u64,
    end: u64,
    min_span_duration: u64,
    max_span_duration: u64,
    span_count: u64,
    error_count: u64,
}

impl DocBuilder {
    fn start_trace(&mut self, f: Fields, trace_id: &[u8]) {
        self.doc = TantivyDocument::default();
        self.doc.add_bytes(f.trace_id, trace_id);
        self.seen.clear();
        self.resources.clear();
        self.text.clear();
        (self.start, self.end) = (u64::MAX, 0);
        (self.min_span_duration, self.max_span_duration) = (u64::MAX, 0);
        (self.span_count, self.error_count) = (0, 0);
    }

    fn term(&mut self, field: Field, text: &str) {
        if self
            .seen
            .insert(fnv(u64::from(field.field_id()), text.as_bytes()))
        {
            self.doc.add_text(field, text);
        }
    }

    /// Adds the `key=value` term of an attribute, built in `term`.
    fn attr(&mut self, field: Field, term: &mut String, key: &str, value: &str) {
        write_attribute_term(term, key, value);
        self.term(field, term);
    }

    fn finish(&mut self, f: Fields) -> TantivyDocument {
        let mut doc = std::mem::take(&mut self.doc);
        if !self.text.is_empty() {
            doc.add_text(f.text, &self.text);
        }
        doc.add_u64(f.start, self.start);
        doc.add_u64(f.end, self.end);
        doc.add_u64(f.min_span_duration, self.min_span_duration);
        doc.add_u64(f.max_span_duration, self.max_span_duration);
        doc.add_u64(f.span_count, self.span_count);
        doc.add_u64(f.error_count, self.error_count);
        doc
    }
}

fn string_col<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref())
        .ok_or_else(|| Error::Corrupt(format!("spans lack {name}")))
}

fn u64_col<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a UInt64Array> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref())
        .ok_or_else(|| Error::Corrupt(format!("spans lack {name}")))
}

/// Builds the index of a part from its rows, which are sorted by trace id. Returns its size.
pub(crate) fn build(dir: &Path, batches: &[RecordBatch]) -> Result<u64> {
    // A flush that failed before its manifest commit may have left an index under this name.
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(Error::io("remove stale index", dir))?;
    }
    std::fs::create_dir_all(dir).map_err(Error::io("create index directory", dir))?;
    let (schema, f) = schema();
    let index = Index::create_in_dir(dir, schema).map_err(index_err("create", dir))?;
    let mut writer = index
        .writer_with_num_threads::<TantivyDocument>(1, 32 << 20)
        .map_err(index_err("open writer for", dir))?;

    let mut state = (DocBuilder::default(), String::new(), String::new());
    for batch in batches {
        index_batch(dir, &mut writer, f, batch, &mut state)?;
    }
    writer.commit().map_err(index_err("commit", dir))?;
    writer
        .wait_merging_threads()
        .map_err(index_err("finish", dir))?;
    dir_size(dir)
}

/// Adds the traces of one batch (whole traces only: chunks end at trace boundaries).
fn index_batch(
    dir: &Path,
    writer: &mut tantivy::IndexWriter<TantivyDocument>,
    f: Fields,
    batch: &RecordBatch,
    (doc, term, scratch): &mut (DocBuilder, String, String),
) -> Result<()> {
    let ids: &FixedSizeBinaryArray = batch
        .column_by_name("trace_id")
        .and_then(|c| c.as_any().downcast_ref())
        .ok_or_else(|| Error::Corrupt("spans lack trace_id".into()))?;
    let service = string_col(batch, "service_name")?;
    let name = string_col(batch, "name")?;
    let kind = string_col(batch, "kind")?;
    let status = string_col(batch, "status_code")?;
    let status_message = string_col(batch, "status_message")?;
    let start = u64_col(batch, "start_time_unix_nano")?;
    let end = u64_col(batch, "end_time_unix_nano")?;
    let duration = u64_col(batch, "duration_nano")?;
    let map = |n: &str| {
        batch
            .column_by_name(n)
            .and_then(|c| c.as_any().downcast_ref::<MapArray>())
    };
    let span_attrs = ScalarMaps::new(map, "attributes")?;
    let resource_attrs = ScalarMaps::new(map, "resource_attributes")?;
    let events: &ListArray = batch
        .column_by_name("events")
        .and_then(|c| c.as_any().downcast_ref())
        .ok_or_else(|| Error::Corrupt("spans lack events".into()))?;
    let event_items: &StructArray = events.values().as_struct();
    let event_name: &StringArray = event_items
        .column_by_name("name")
        .and_then(|c| c.as_any().downcast_ref())
        .ok_or_else(|| Error::Corrupt("events lack name".into()))?;
    let event_map = |n: &str| {
        event_items
            .column_by_name(n)
            .and_then(|c| c.as_any().downcast_ref::<MapArray>())
    };
    let event_attrs = ScalarMaps::new(event_map, "attributes")?;

    let mut row = 0;
    while row < batch.num_rows() {
        let trace = ids.value(row);
        doc.start_trace(f, trace);
        while row < batch.num_rows() && ids.value(row) == trace {
            let svc = service.value(row);
            doc.term(f.service, svc);
            term.clear();
            let _ = write!(term, "{svc}{SEP}{}", name.value(row));
            doc.term(f.op, term);
            doc.term(f.name, name.value(row));
            doc.term(f.kind, kind.value(row));
            doc.term(f.status, status.value(row));
            if status.value(row) == "error" {
                doc.term(f.error_service, svc);
                doc.error_count += 1;
            }
            if !status_message.value(row).is_empty() {
                doc.text.push_str(status_message.value(row));
                doc.text.push('\n');
            }
            span_attrs.for_each(row, scratch, |k, v| doc.attr(f.attr, term, k, v));
            let resource = resource_attrs.row_hash(row);
            if !doc.resources.contains(&resource) {
                doc.resources.push(resource);
                resource_attrs.for_each(row, scratch, |k, v| doc.attr(f.attr, term, k, v));
            }
            let offsets = events.value_offsets();
            for e in offsets[row] as usize..offsets[row + 1] as usize {
                if event_name.value(e) == "exception" {
                    event_attrs.for_each(e, scratch, |k, v| {
                        if k == "exception.message" || k == "exception.type" {
                            doc.text.push_str(v);
                            doc.text.push('\n');
                        }
                    });
                }
            }
            doc.start = doc.start.min(start.value(row));
            doc.end = doc.end.max(end.value(row));
            doc.min_span_duration = doc.min_span_duration.min(duration.value(row));
            doc.max_span_duration = doc.max_span_duration.max(duration.value(row));
            doc.span_count += 1;
            row += 1;
        }
        writer
            .add_document(doc.finish(f))
            .map_err(index_err("add a document to", dir))?;
    }
    Ok(())
}

pub(crate) fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(Error::io("list", dir))? {
        let entry = entry.map_err(Error::io("list", dir))?;
        total += entry
            .metadata()
            .map_err(Error::io("stat", entry.path()))?
            .len();
    }
    Ok(total)
}

/// What trace search asks of the index. Every condition present must hold for a trace.
#[derive(Clone, Debug, Default)]
pub struct TraceQuery {
    pub service: Option<String>,
    /// Span name; with `service`, a span of that service with that name.
    pub operation: Option<String>,
    /// `(key, value)` pairs of span or resource attributes, compared as strings.
    pub attributes: Vec<(String, String)>,
    /// Only traces with an error span (of `service`, when given).
    pub errors_only: bool,
    /// Some span lasts at least this long.
    pub min_duration_nano: Option<u64>,
    /// Some span lasts at most this long.
    pub max_duration_nano: Option<u64>,
    /// Words that must all occur in status or exception messages.
    pub text: Option<String>,
    /// The trace overlaps `[start, end]`.
    pub start_unix_nano: Option<u64>,
    pub end_unix_nano: Option<u64>,
}

/// A trace found in one part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceHit {
    pub trace_id: TraceId,
    pub part_id: u64,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub span_count: u64,
    pub error_count: u64,
}

/// An open part index. Parts are immutable, so the reader never reloads.
pub(crate) struct PartIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
}

impl PartIndex {
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let index = Index::open_in_dir(dir).map_err(index_err("open", dir))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(index_err("open a reader for", dir))?;
        Ok(Self {
            index,
            reader,
            fields: schema().1,
        })
    }

    pub(crate) fn contains(&self, trace_id: &TraceId) -> Result<bool> {
        let term = Term::from_field_bytes(self.fields.trace_id, &trace_id.0);
        let n = self
            .reader
            .searcher()
            .doc_freq(&term)
            .map_err(|source| Error::Index {
                action: "look up a trace in",
                path: Default::default(),
                source,
            })?;
        Ok(n > 0)
    }

    pub(crate) fn search(&self, part_id: u64, q: &TraceQuery) -> Result<Vec<TraceHit>> {
        let f = self.fields;
        let term = |field: Field, value: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, value),
                IndexRecordOption::Basic,
            ))
        };
        let range = |field: Field, lo: Bound<u64>, hi: Bound<u64>| -> Box<dyn Query> {
            Box::new(RangeQuery::new(
                lo.map(|v| Term::from_field_u64(field, v)),
                hi.map(|v| Term::from_field_u64(field, v)),
            ))
        };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut must = |q: Box<dyn Query>| clauses.push((Occur::Must, q));
        match (&q.service, &q.operation) {
            (Some(s), Some(op)) => must(term(f.op, &format!("{s}{SEP}{op}"))),
            (Some(s), None) => must(term(f.service, s)),
            (None, Some(op)) => must(term(f.name, op)),
            (None, None) => {}
        }
        for (k, v) in &q.attributes {
            must(term(f.attr, &attribute_term(k, v)));
        }
        if q.errors_only {
            match &q.service {
                Some(s) => must(term(f.error_service, s)),
                None => must(term(f.status, "error")),
            }
        }
        if let Some(min) = q.min_duration_nano {
            must(range(
                f.max_span_duration,
                Bound::Included(min),
                Bound::Unbounded,
            ));
        }
        if let Some(max) = q.max_duration_nano {
            must(range(
                f.min_span_duration,
                Bound::Unbounded,
                Bound::Included(max),
            ));
        }
        if let Some(end) = q.end_unix_nano {
            must(range(f.start, Bound::Unbounded, Bound::Included(end)));
        }
        if let Some(start) = q.start_unix_nano {
            must(range(f.end, Bound::Included(start), Bound::Unbounded));
        }
        if let Some(text) = &q.text {
            let mut tokenizer =
                self.index
                    .tokenizer_for_field(f.text)
                    .map_err(|source| Error::Index {
                        action: "tokenize for",
                        path: Default::default(),
                        source,
                    })?;
            let mut stream = tokenizer.token_stream(text);
            while let Some(token) = stream.next() {
                must(term(f.text, &token.text));
            }
        }
        let query: Box<dyn Query> = if clauses.is_empty() {
            Box::new(AllQuery)
        } else {
            Box::new(BooleanQuery::new(clauses))
        };
        let searcher = self.reader.searcher();
        let search_err = |source| Error::Index {
            action: "search",
            path: Default::default(),
            source,
        };
        let docs = searcher
            .search(&query, &DocSetCollector)
            .map_err(search_err)?;
        // Column readers are opened once per segment, not once per document.
        let mut docs: Vec<_> = docs.into_iter().collect();
        docs.sort_unstable_by_key(|a| (a.segment_ord, a.doc_id));
        let mut hits = Vec::with_capacity(docs.len());
        for segment in docs.chunk_by(|a, b| a.segment_ord == b.segment_ord) {
            let ff = searcher
                .segment_reader(segment[0].segment_ord)
                .fast_fields();
            let bytes = ff
                .bytes("trace_id")
                .map_err(search_err)?
                .ok_or_else(|| Error::Corrupt("index lacks trace ids".into()))?;
            let column = |name: &str| ff.u64(name).map_err(search_err);
            let (start, end) = (column("start")?, column("end")?);
            let (spans, errors) = (column("span_count")?, column("error_count")?);
            let mut id = Vec::with_capacity(16);
            for addr in segment {
                id.clear();
                if let Some(ord) = bytes.term_ords(addr.doc_id).next() {
                    bytes
                        .ord_to_bytes(ord, &mut id)
                        .map_err(Error::io("read trace id from index", ""))?;
                }
                let Ok(trace_id) = <[u8; 16]>::try_from(id.as_slice()) else {
                    continue;
                };
                hits.push(TraceHit {
                    trace_id: TraceId(trace_id),
                    part_id,
                    start_time_unix_nano: start.first(addr.doc_id).unwrap_or(0),
                    end_time_unix_nano: end.first(addr.doc_id).unwrap_or(0),
                    span_count: spans.first(addr.doc_id).unwrap_or(0),
                    error_count: errors.first(addr.doc_id).unwrap_or(0),
                });
            }
        }
        Ok(hits)
    }
}
