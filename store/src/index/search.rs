//! Searching one part's trace index: conditions on one span become a phrase over the span's
//! positional terms, one per duration bucket allowed; the rest are conditions on the document.

use std::collections::BTreeSet;
use std::ops::Bound;

use tantivy::collector::{Collector, DocSetCollector, SegmentCollector};
use tantivy::query::{
    AllQuery, BooleanQuery, ConstScoreQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocAddress, DocId, Score, Searcher, SegmentOrdinal, SegmentReader, Term};

use super::{PartIndex, tokens};
use crate::error::{Error, Result};
use crate::model::TraceId;

/// What trace search asks of the index. Every condition present must hold for a trace; the
/// span conditions (service, operation, attributes, error, duration) on one span.
#[derive(Clone, Debug, Default)]
pub struct TraceQuery {
    pub service: Option<String>,
    /// Span name.
    pub operation: Option<String>,
    /// `(key, value)` pairs of span or resource attributes, compared as strings.
    pub attributes: Vec<(String, String)>,
    /// The span's status is error.
    pub errors_only: bool,
    /// The span lasts at least this long.
    pub min_duration_nano: Option<u64>,
    /// The span lasts at most this long.
    pub max_duration_nano: Option<u64>,
    /// Words that must all occur in status or exception messages.
    pub text: Option<String>,
    /// The trace overlaps `[start, end]`.
    pub start_unix_nano: Option<u64>,
    pub end_unix_nano: Option<u64>,
}

/// A trace found in one part (or, from `Snapshot::search_traces`, in the parts holding it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceHit {
    pub trace_id: TraceId,
    pub part_id: u64,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub span_count: u64,
    pub error_count: u64,
    /// The index proves the match: one span of the part meets every span condition exactly
    /// (no attribute only among resource terms, no duration bucket straddling a bound) and the
    /// trace's bounds in the part lie inside the time range. An uncertain hit is a candidate
    /// whose rows must be read to know.
    pub certain: bool,
    /// Every attribute condition was met by a span attribute, none only among resource
    /// attributes (in each part holding the hit): checking the candidate needs no resource
    /// attributes.
    pub attributes_on_spans: bool,
}

/// Every matching document with its score.
struct ScoredDocs;

impl Collector for ScoredDocs {
    type Fruit = Vec<(DocAddress, Score)>;
    type Child = SegmentScoredDocs;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        _: &SegmentReader,
    ) -> tantivy::Result<Self::Child> {
        Ok(SegmentScoredDocs(segment, Vec::new()))
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, fruits: Vec<Self::Fruit>) -> tantivy::Result<Self::Fruit> {
        Ok(fruits.into_iter().flatten().collect())
    }
}

struct SegmentScoredDocs(SegmentOrdinal, Vec<(DocAddress, Score)>);

impl SegmentCollector for SegmentScoredDocs {
    type Fruit = Vec<(DocAddress, Score)>;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.1.push((DocAddress::new(self.0, doc), score));
    }

    fn harvest(self) -> Self::Fruit {
        self.1
    }
}

/// The score of a document matched by a proving duration bucket (a proposing one scores 1).
const PROVEN: Score = 2.0;

fn search_err(source: tantivy::TantivyError) -> Error {
    Error::Index {
        action: "search",
        path: Default::default(),
        source,
    }
}

fn term_query(term: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
}

/// A query matching documents where one span has all `terms`.
fn same_span(terms: &[Term]) -> Option<Box<dyn Query>> {
    match terms {
        [] => None,
        [one] => Some(term_query(one.clone())),
        many => Some(Box::new(PhraseQuery::new_with_offset(
            many.iter().map(|t| (0, t.clone())).collect(),
        ))),
    }
}

/// Documents where one span has all `terms` and one of the duration `buckets`; with no
/// bucket terms, none.
fn same_span_in_buckets(terms: &[Term], buckets: &[Term]) -> Box<dyn Query> {
    let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(buckets.len());
    let mut all = terms.to_vec();
    for bucket in buckets {
        all.push(bucket.clone());
        alternatives.push((Occur::Should, same_span(&all).expect("one term at least")));
        all.pop();
    }
    Box::new(BooleanQuery::new(alternatives))
}

/// The duration buckets in `lo..=hi` that some span of the part falls in, read from the term
/// dictionary (one range per segment rather than a lookup per bucket).
fn buckets_present(searcher: &Searcher, field: Field, lo: u32, hi: u32) -> Result<BTreeSet<u32>> {
    let (mut from, mut to) = (String::new(), String::new());
    tokens::bucket_term(&mut from, lo);
    tokens::bucket_term(&mut to, hi);
    let mut present = BTreeSet::new();
    for segment in searcher.segment_readers() {
        let index = segment.inverted_index(field).map_err(search_err)?;
        let mut terms = index
            .terms()
            .range()
            .ge(&from)
            .le(&to)
            .into_stream()
            .map_err(Error::io("read the duration terms of an index", ""))?;
        while terms.advance() {
            present.extend(tokens::term_bucket(terms.key()));
        }
    }
    Ok(present)
}

impl PartIndex {
    fn has_term(searcher: &Searcher, term: &Term) -> Result<bool> {
        Ok(searcher.doc_freq(term).map_err(search_err)? > 0)
    }

    pub(crate) fn search(&self, part_id: u64, q: &TraceQuery) -> Result<Vec<TraceHit>> {
        let f = self.fields;
        let searcher = self.reader.searcher();
        let span_term = |tag: &str, value: &str| {
            let mut text = String::new();
            tokens::term(&mut text, tag, value);
            Term::from_field_text(f.span, &text)
        };

        // Conditions on one span, as positional terms.
        let mut positional: Vec<Term> = Vec::new();
        if let Some(s) = &q.service {
            positional.push(span_term(tokens::SERVICE, s));
        }
        if let Some(op) = &q.operation {
            positional.push(span_term(tokens::NAME, op));
        }
        if q.errors_only {
            positional.push(Term::from_field_text(f.span, tokens::ERROR));
        }
        // Conditions on the document.
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut on_spans = true;
        for (key, value) in &q.attributes {
            let mut text = String::new();
            tokens::attr_term(&mut text, key, value);
            let on_span = Term::from_field_text(f.span, &text);
            let on_resource = Term::from_field_text(f.resource, &super::attribute_term(key, value));
            match (
                Self::has_term(&searcher, &on_span)?,
                Self::has_term(&searcher, &on_resource)?,
            ) {
                (false, false) => return Ok(Vec::new()),
                (true, false) => positional.push(on_span),
                (false, true) => {
                    clauses.push((Occur::Must, term_query(on_resource)));
                    on_spans = false;
                }
                (true, true) => {
                    let either = BooleanQuery::new(vec![
                        (Occur::Should, term_query(on_span)),
                        (Occur::Should, term_query(on_resource)),
                    ]);
                    clauses.push((Occur::Must, Box::new(either)));
                    on_spans = false;
                }
            }
        }

        // The duration bounds as buckets present in this part: those wholly inside the bounds
        // prove the condition, the ones straddling a bound only propose.
        let (mut proving, mut proposing) = (Vec::new(), Vec::new());
        let bounded = q.min_duration_nano.is_some() || q.max_duration_nano.is_some();
        if bounded {
            let min = q.min_duration_nano.unwrap_or(0);
            let max = q.max_duration_nano.unwrap_or(u64::MAX);
            if min > max {
                return Ok(Vec::new());
            }
            let mut text = String::new();
            let present =
                buckets_present(&searcher, f.span, tokens::bucket(min), tokens::bucket(max))?;
            for b in present {
                tokens::bucket_term(&mut text, b);
                let term = Term::from_field_text(f.span, &text);
                if tokens::bucket_floor(b) >= min && tokens::bucket_ceiling(b) <= max {
                    proving.push(term);
                } else {
                    proposing.push(term);
                }
            }
            if proving.is_empty() && proposing.is_empty() {
                return Ok(Vec::new());
            }
        }

        let range = |field: Field, lo: Bound<u64>, hi: Bound<u64>| -> Box<dyn Query> {
            Box::new(RangeQuery::new(
                lo.map(|v| Term::from_field_u64(field, v)),
                hi.map(|v| Term::from_field_u64(field, v)),
            ))
        };
        if let Some(end) = q.end_unix_nano {
            clauses.push((
                Occur::Must,
                range(f.start, Bound::Unbounded, Bound::Included(end)),
            ));
        }
        if let Some(start) = q.start_unix_nano {
            clauses.push((
                Occur::Must,
                range(f.end, Bound::Included(start), Bound::Unbounded),
            ));
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
                clauses.push((
                    Occur::Must,
                    term_query(Term::from_field_text(f.text, &token.text)),
                ));
            }
        }

        // The document conditions score nothing, so that a document's score says which
        // buckets matched: 2 or more for a proving one, 1 for a proposing one only.
        let mut with = |span_query: Option<Box<dyn Query>>| -> Box<dyn Query> {
            let mut all: Vec<(Occur, Box<dyn Query>)> = clauses
                .drain(..)
                .map(|(o, q)| (o, Box::new(ConstScoreQuery::new(q, 0.0)) as Box<dyn Query>))
                .collect();
            if let Some(s) = span_query {
                all.push((Occur::Must, s));
            }
            if all.is_empty() {
                Box::new(AllQuery)
            } else {
                Box::new(BooleanQuery::new(all))
            }
        };
        let exact = on_spans && (!bounded || !proving.is_empty());
        let docs: Vec<(DocAddress, bool)> = if exact && !proposing.is_empty() {
            let scored = |buckets: &[Term], score: Score| -> (Occur, Box<dyn Query>) {
                let query = same_span_in_buckets(&positional, buckets);
                (Occur::Should, Box::new(ConstScoreQuery::new(query, score)))
            };
            let either = BooleanQuery::new(vec![scored(&proving, PROVEN), scored(&proposing, 1.0)]);
            let query = with(Some(Box::new(either)));
            searcher
                .search(query.as_ref(), &ScoredDocs)
                .map_err(search_err)?
                .into_iter()
                .map(|(addr, score)| (addr, score >= PROVEN))
                .collect()
        } else {
            let span_query = match bounded {
                true => {
                    let all: Vec<Term> = proving.iter().chain(&proposing).cloned().collect();
                    Some(same_span_in_buckets(&positional, &all))
                }
                false => same_span(&positional),
            };
            let query = with(span_query);
            searcher
                .search(query.as_ref(), &DocSetCollector)
                .map_err(search_err)?
                .into_iter()
                .map(|addr| (addr, exact))
                .collect()
        };
        let certain = |proven: bool, start: u64, end: u64| {
            proven
                && q.start_unix_nano.is_none_or(|s| start >= s)
                && q.end_unix_nano.is_none_or(|e| end <= e)
        };

        // Column readers are opened once per segment, not once per document.
        let mut docs = docs;
        docs.sort_unstable_by_key(|(a, _)| (a.segment_ord, a.doc_id));
        let mut hits = Vec::with_capacity(docs.len());
        for segment in docs.chunk_by(|(a, _), (b, _)| a.segment_ord == b.segment_ord) {
            let columns = self.columns(&searcher, segment[0].0.segment_ord)?;
            let mut id = Vec::with_capacity(16);
            for (addr, proven) in segment {
                let Some(trace_id) = columns.trace_id(addr.doc_id, &mut id)? else {
                    continue;
                };
                let (start, end) = columns.bounds(addr.doc_id);
                let (span_count, error_count) = columns.counts(addr.doc_id);
                hits.push(TraceHit {
                    trace_id,
                    part_id,
                    start_time_unix_nano: start,
                    end_time_unix_nano: end,
                    span_count,
                    error_count,
                    certain: certain(*proven, start, end),
                    attributes_on_spans: on_spans,
                });
            }
        }
        Ok(hits)
    }
}
