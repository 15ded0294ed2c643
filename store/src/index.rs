//! The trace index: one tantivy index per spans part, one document per trace in that part.
//!
//! A document per span would cap ingest near tantivy's ~100k documents/s per core (DESIGN.md
//! §10). A document per trace holds, in its positional `span` field, each span's service, name,
//! scalar attributes, duration bucket and error status at the span's own position, so "one span
//! meets every condition" is a phrase query whose terms share an offset; resource attributes,
//! messages as full text, the trace's bounds, counts and the summary a result list shows sit
//! beside it. The trace id is an indexed term, so a trace is found in any part without knowing
//! its time range. See `docs/ARCHITECTURE.md`, "Trace index".

use std::collections::HashSet;
use std::fmt::Write;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

use arrow::array::{
    Array, AsArray, FixedSizeBinaryArray, ListArray, MapArray, RecordBatch, StringArray,
    StructArray, UInt64Array,
};
use arrow::datatypes::{Float64Type, Int64Type};
use tantivy::schema::{
    BytesOptions, FAST, Field, IndexRecordOption, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{DocAddress, Index, IndexReader, ReloadPolicy, TantivyDocument, Term};

use crate::error::{Error, Result};
use crate::model::TraceId;

mod search;
mod tokens;

pub use search::{TraceHit, TraceQuery};
use tokens::{SpanText, SpanTokenizer};

/// The layout of the documents, kept as the index's commit payload: an index with another (or
/// none) is rebuilt from its part when opened.
const LAYOUT: &str = "spyglass-trace-index/2";
/// The index writer's memory: enough for a part's postings in one segment (a smaller budget
/// writes several segments and merges them, which cost a quarter of the build's time).
const INDEX_WRITER_BYTES: usize = 128 << 20;
/// Separates the parts of a summary.
const SEP: char = '\u{1f}';
/// Separates a service from its span count in a summary.
const COUNT_SEP: char = '\u{1e}';

#[derive(Clone, Copy)]
struct Fields {
    trace_id: Field,
    span: Field,
    resource: Field,
    text: Field,
    start: Field,
    end: Field,
    span_count: Field,
    error_count: Field,
    summary: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("default")
            .set_index_option(IndexRecordOption::Basic),
    );
    let span = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(tokens::TOKENIZER)
            .set_fieldnorms(false)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        trace_id: b.add_bytes_field("trace_id", BytesOptions::default().set_indexed().set_fast()),
        span: b.add_text_field("span", span),
        resource: b.add_text_field("resource", STRING),
        text: b.add_text_field("text", text),
        start: b.add_u64_field("start", FAST),
        end: b.add_u64_field("end", FAST),
        span_count: b.add_u64_field("span_count", FAST),
        error_count: b.add_u64_field("error_count", FAST),
        summary: b.add_text_field("summary", TextOptions::default().set_fast("raw")),
    };
    (b.build(), fields)
}

fn register_tokenizer(index: &Index) {
    index
        .tokenizers()
        .register(tokens::TOKENIZER, SpanTokenizer::default());
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

/// The `key=value` term of a resource attribute, as search looks it up.
pub(crate) fn attribute_term(key: &str, value: &str) -> String {
    let mut term = String::new();
    write_attribute_term(&mut term, key, value);
    term
}

/// Writes the `key=value` term into `term`, replacing what it held.
fn write_attribute_term(term: &mut String, key: &str, value: &str) {
    term.clear();
    term.push_str(key);
    term.push('=');
    term.push_str(tokens::truncated(value));
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

/// The root of a trace so far: parentless first, then earliest, then lowest span id (the query
/// engine's rule for summaries).
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
struct RootKey {
    has_parent: bool,
    start: u64,
    span_id: [u8; 8],
}

/// The document of the trace being indexed. Resource terms are deduplicated by a 64-bit hash
/// of their text, so a repeated term costs no allocation (a collision would drop one term of
/// one trace from the index: about 2^-64 per pair).
#[derive(Default)]
struct DocBuilder {
    trace_id: Option<[u8; 16]>,
    doc: TantivyDocument,
    seen: HashSet<u64, BuildHasherDefault<Prehashed>>,
    /// Span ids of the trace so far (a retried export stores a span twice).
    span_ids: HashSet<u64, BuildHasherDefault<Prehashed>>,
    /// Hashes of the resources whose attributes are already in the document.
    resources: Vec<u64>,
    spans: SpanText,
    text: String,
    start: u64,
    end: u64,
    span_count: u64,
    error_count: u64,
    root: Option<(RootKey, String, String)>,
    /// Span counts per service; the first `service_count` entries are this trace's (the
    /// strings of the others are kept for reuse).
    services: Vec<(String, u64)>,
    service_count: usize,
    summary: String,
}

impl DocBuilder {
    fn start_trace(&mut self, f: Fields, trace_id: [u8; 16]) {
        self.trace_id = Some(trace_id);
        self.doc = TantivyDocument::default();
        self.doc.add_bytes(f.trace_id, &trace_id);
        self.seen.clear();
        self.span_ids.clear();
        self.resources.clear();
        self.spans.clear();
        self.text.clear();
        (self.start, self.end) = (u64::MAX, 0);
        (self.span_count, self.error_count) = (0, 0);
        self.root = None;
        self.service_count = 0;
    }

    fn resource_term(&mut self, field: Field, term: &mut String, key: &str, value: &str) {
        write_attribute_term(term, key, value);
        if self.seen.insert(fnv(0, term.as_bytes())) {
            self.doc.add_text(field, &*term);
        }
    }

    fn count_service(&mut self, service: &str) {
        let live = &mut self.services[..self.service_count];
        if let Some((_, n)) = live.iter_mut().find(|(s, _)| s == service) {
            *n += 1;
            return;
        }
        if self.service_count == self.services.len() {
            self.services.push((String::new(), 0));
        }
        let slot = &mut self.services[self.service_count];
        slot.0.clear();
        slot.0.push_str(service);
        slot.1 = 1;
        self.service_count += 1;
    }

    fn consider_root(&mut self, key: RootKey, service: &str, name: &str) {
        match &mut self.root {
            Some((best, s, n)) if key < *best => {
                *best = key;
                s.clear();
                s.push_str(service);
                n.clear();
                n.push_str(name);
            }
            Some(_) => {}
            None => self.root = Some((key, service.to_owned(), name.to_owned())),
        }
    }

    /// The finished document, if a trace was started.
    fn finish(&mut self, f: Fields) -> Option<TantivyDocument> {
        self.trace_id.take()?;
        let mut doc = std::mem::take(&mut self.doc);
        if !self.spans.is_empty() {
            doc.add_text(f.span, self.spans.as_str());
        }
        if !self.text.is_empty() {
            doc.add_text(f.text, &self.text);
        }
        doc.add_u64(f.start, self.start);
        doc.add_u64(f.end, self.end);
        doc.add_u64(f.span_count, self.span_count);
        doc.add_u64(f.error_count, self.error_count);
        self.summary.clear();
        if let Some((_, service, name)) = &self.root {
            self.summary.push_str(service);
            self.summary.push(SEP);
            self.summary.push_str(name);
        } else {
            self.summary.push(SEP);
        }
        let services = &mut self.services[..self.service_count];
        services.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (service, n) in services.iter() {
            let _ = write!(self.summary, "{SEP}{service}{COUNT_SEP}{n}");
        }
        doc.add_text(f.summary, &self.summary);
        Some(doc)
    }
}

/// Builds the index of a part from its rows, which are sorted by trace id (a trace may continue
/// from one batch into the next). Returns its size.
pub(crate) fn build(dir: &Path, batches: &[RecordBatch]) -> Result<u64> {
    build_from(dir, batches.iter().map(|b| Ok(b.clone())))
}

/// [`build`] from batches as they are read (a part is never held whole in memory).
fn build_from(dir: &Path, batches: impl Iterator<Item = Result<RecordBatch>>) -> Result<u64> {
    // A flush that failed before its manifest commit may have left an index under this name.
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(Error::io("remove stale index", dir))?;
    }
    std::fs::create_dir_all(dir).map_err(Error::io("create index directory", dir))?;
    let (schema, f) = schema();
    let index = Index::create_in_dir(dir, schema).map_err(index_err("create", dir))?;
    register_tokenizer(&index);
    let mut writer = index
        .writer_with_num_threads::<TantivyDocument>(1, INDEX_WRITER_BYTES)
        .map_err(index_err("open writer for", dir))?;

    let mut state = (DocBuilder::default(), String::new(), String::new());
    for batch in batches {
        index_batch(dir, &mut writer, f, &batch?, &mut state)?;
    }
    if let Some(doc) = state.0.finish(f) {
        writer
            .add_document(doc)
            .map_err(index_err("add a document to", dir))?;
    }
    let mut commit = writer.prepare_commit().map_err(index_err("commit", dir))?;
    commit.set_payload(LAYOUT);
    commit.commit().map_err(index_err("commit", dir))?;
    writer
        .wait_merging_threads()
        .map_err(index_err("finish", dir))?;
    dir_size(dir)
}

/// Adds the spans of one batch, finishing a document whenever the trace changes.
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
    let span_ids: &FixedSizeBinaryArray = batch
        .column_by_name("span_id")
        .and_then(|c| c.as_any().downcast_ref())
        .ok_or_else(|| Error::Corrupt("spans lack span_id".into()))?;
    let parents: &FixedSizeBinaryArray = batch
        .column_by_name("parent_span_id")
        .and_then(|c| c.as_any().downcast_ref())
        .ok_or_else(|| Error::Corrupt("spans lack parent_span_id".into()))?;
    let service = string_col(batch, "service_name")?;
    let name = string_col(batch, "name")?;
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

    for row in 0..batch.num_rows() {
        let trace: [u8; 16] = ids
            .value(row)
            .try_into()
            .map_err(|_| Error::Corrupt("trace ids are 16 bytes".into()))?;
        if doc.trace_id != Some(trace) {
            if let Some(finished) = doc.finish(f) {
                writer
                    .add_document(finished)
                    .map_err(index_err("add a document to", dir))?;
            }
            doc.start_trace(f, trace);
        }
        let span_id: [u8; 8] = span_ids.value(row).try_into().unwrap_or_default();
        if !doc.span_ids.insert(u64::from_le_bytes(span_id)) {
            continue; // the same span from a retried export
        }
        let svc = service.value(row);
        let is_error = status.value(row) == "error";
        doc.spans.next_span();
        tokens::term(term, tokens::SERVICE, svc);
        doc.spans.push(term);
        tokens::term(term, tokens::NAME, name.value(row));
        doc.spans.push(term);
        tokens::duration_term(term, duration.value(row));
        doc.spans.push(term);
        if is_error {
            doc.spans.push(tokens::ERROR);
            doc.error_count += 1;
        }
        span_attrs.for_each(row, scratch, |k, v| {
            tokens::attr_term(term, k, v);
            doc.spans.push(term);
        });
        if !status_message.value(row).is_empty() {
            doc.text.push_str(status_message.value(row));
            doc.text.push('\n');
        }
        let resource = resource_attrs.row_hash(row);
        if !doc.resources.contains(&resource) {
            doc.resources.push(resource);
            resource_attrs.for_each(row, scratch, |k, v| {
                doc.resource_term(f.resource, term, k, v)
            });
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
        doc.span_count += 1;
        doc.count_service(svc);
        let key = RootKey {
            has_parent: !parents.is_null(row),
            start: start.value(row),
            span_id,
        };
        doc.consider_root(key, svc, name.value(row));
    }
    Ok(())
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

/// What the index of one part knows of a trace: enough for a result list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceDigest {
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    /// Distinct span ids.
    pub span_count: u64,
    pub error_count: u64,
    /// Service and name of the root span: the parentless span with the earliest start (lowest
    /// span id on ties), else the earliest span.
    pub root_service: String,
    pub root_name: String,
    /// Services and their span counts, most spans first (then by name).
    pub services: Vec<(String, u64)>,
}

impl TraceDigest {
    fn parse(summary: &str, bounds: (u64, u64), counts: (u64, u64)) -> Self {
        let mut parts = summary.split(SEP);
        let root_service = parts.next().unwrap_or_default().to_owned();
        let root_name = parts.next().unwrap_or_default().to_owned();
        let services = parts
            .filter_map(|p| {
                let (service, n) = p.rsplit_once(COUNT_SEP)?;
                Some((service.to_owned(), n.parse().ok()?))
            })
            .collect();
        Self {
            start_time_unix_nano: bounds.0,
            end_time_unix_nano: bounds.1,
            span_count: counts.0,
            error_count: counts.1,
            root_service,
            root_name,
            services,
        }
    }
}

/// The fast columns of one segment.
struct Columns {
    trace_id: tantivy::columnar::BytesColumn,
    start: tantivy::columnar::Column<u64>,
    end: tantivy::columnar::Column<u64>,
    span_count: tantivy::columnar::Column<u64>,
    error_count: tantivy::columnar::Column<u64>,
}

impl Columns {
    fn trace_id(&self, doc: u32, buffer: &mut Vec<u8>) -> Result<Option<TraceId>> {
        buffer.clear();
        if let Some(ord) = self.trace_id.term_ords(doc).next() {
            self.trace_id
                .ord_to_bytes(ord, buffer)
                .map_err(Error::io("read trace id from index", ""))?;
        }
        Ok(<[u8; 16]>::try_from(buffer.as_slice()).ok().map(TraceId))
    }

    fn bounds(&self, doc: u32) -> (u64, u64) {
        (
            self.start.first(doc).unwrap_or(0),
            self.end.first(doc).unwrap_or(0),
        )
    }

    fn counts(&self, doc: u32) -> (u64, u64) {
        (
            self.span_count.first(doc).unwrap_or(0),
            self.error_count.first(doc).unwrap_or(0),
        )
    }
}

fn lookup_err(source: tantivy::TantivyError) -> Error {
    Error::Index {
        action: "look up a trace in",
        path: Default::default(),
        source,
    }
}

/// An open part index. Parts are immutable, so the reader never reloads.
pub(crate) struct PartIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
}

impl PartIndex {
    /// Opens the index in `dir`; `None` when it was written in another layout (see
    /// [`rebuild`]).
    pub(crate) fn open(dir: &Path) -> Result<Option<Self>> {
        let index = Index::open_in_dir(dir).map_err(index_err("open", dir))?;
        let (current, fields) = schema();
        let metas = index
            .load_metas()
            .map_err(index_err("read the metadata of", dir))?;
        if metas.payload.as_deref() != Some(LAYOUT) || index.schema() != current {
            return Ok(None);
        }
        register_tokenizer(&index);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(index_err("open a reader for", dir))?;
        Ok(Some(Self {
            index,
            reader,
            fields,
        }))
    }

    fn columns(&self, searcher: &tantivy::Searcher, segment: u32) -> Result<Columns> {
        let ff = searcher.segment_reader(segment).fast_fields();
        let column = |name: &str| ff.u64(name).map_err(lookup_err);
        Ok(Columns {
            trace_id: ff
                .bytes("trace_id")
                .map_err(lookup_err)?
                .ok_or_else(|| Error::Corrupt("index lacks trace ids".into()))?,
            start: column("start")?,
            end: column("end")?,
            span_count: column("span_count")?,
            error_count: column("error_count")?,
        })
    }

    /// The document of a trace: segment and document number.
    fn find(&self, searcher: &tantivy::Searcher, trace_id: &TraceId) -> Result<Option<DocAddress>> {
        let term = Term::from_field_bytes(self.fields.trace_id, &trace_id.0);
        for (ord, segment) in searcher.segment_readers().iter().enumerate() {
            let postings = segment
                .inverted_index(self.fields.trace_id)
                .map_err(lookup_err)?
                .read_postings(&term, IndexRecordOption::Basic)
                .map_err(Error::io("read the postings of a trace id", ""))?;
            if let Some(postings) = postings {
                let doc = tantivy::DocSet::doc(&postings);
                if doc != tantivy::TERMINATED {
                    return Ok(Some(DocAddress::new(ord as u32, doc)));
                }
            }
        }
        Ok(None)
    }

    pub(crate) fn contains(&self, trace_id: &TraceId) -> Result<bool> {
        let term = Term::from_field_bytes(self.fields.trace_id, &trace_id.0);
        let n = self.reader.searcher().doc_freq(&term).map_err(lookup_err)?;
        Ok(n > 0)
    }

    /// What this part's index knows of a trace, if it holds it.
    pub(crate) fn digest(&self, trace_id: &TraceId) -> Result<Option<TraceDigest>> {
        let searcher = self.reader.searcher();
        let Some(addr) = self.find(&searcher, trace_id)? else {
            return Ok(None);
        };
        let columns = self.columns(&searcher, addr.segment_ord)?;
        let summary = searcher
            .segment_reader(addr.segment_ord)
            .fast_fields()
            .str("summary")
            .map_err(lookup_err)?
            .ok_or_else(|| Error::Corrupt("index lacks summaries".into()))?;
        let mut text = String::new();
        if let Some(ord) = summary.term_ords(addr.doc_id).next() {
            summary
                .ord_to_str(ord, &mut text)
                .map_err(Error::io("read a summary from index", ""))?;
        }
        Ok(Some(TraceDigest::parse(
            &text,
            columns.bounds(addr.doc_id),
            columns.counts(addr.doc_id),
        )))
    }
}

/// Rebuilds the index of a part in `dir` from the part's rows, read batch by batch, in a sibling
/// directory renamed over the old one. Returns its size.
pub(crate) fn rebuild(
    dir: &Path,
    batches: impl Iterator<Item = Result<RecordBatch>>,
) -> Result<u64> {
    let fresh = dir.with_extension("rebuild");
    let bytes = build_from(&fresh, batches)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(Error::io("remove outdated index", dir))?;
    }
    std::fs::rename(&fresh, dir).map_err(Error::io("move rebuilt index", dir))?;
    Ok(bytes)
}
