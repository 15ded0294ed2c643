//! The trace index: one tantivy index per spans part, one document per trace in that part.
//!
//! A document per span would cap ingest near tantivy's ~100k documents/s per core. A document
//! per trace holds, in its positional `span` field, each span's service, name,
//! scalar attributes, duration bucket and error status at the span's own position, so "one span
//! meets every condition" is a phrase query whose terms share an offset; resource attributes,
//! messages as full text, the trace's bounds, counts and the summary a result list shows sit
//! beside it. The trace id is an indexed term, so a trace is found in any part without knowing
//! its time range. See `docs/ARCHITECTURE.md`, "Trace index".

use std::path::Path;

use tantivy::schema::{
    BytesOptions, FAST, Field, IndexRecordOption, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{DocAddress, Index, IndexReader, ReloadPolicy, Term};

use crate::error::{Error, Result};
use crate::model::TraceId;

mod build;
mod search;
mod tokens;

pub(crate) use build::{build_from, rebuild};
pub use search::{PartCursor, Sample, SamplePoint, TraceHit, TraceQuery};
use tokens::SpanTokenizer;

/// The layout of the documents (3: sorted by `start`, newest first), kept as the index's commit
/// payload: an index with another (or none) is rebuilt from its part when opened.
const LAYOUT: &str = "spyglass-trace-index/3";
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
