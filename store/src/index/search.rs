//! Searching one part's trace index: conditions on one span become a phrase over the span's
//! positional terms, one per duration bucket allowed; the rest are conditions on the document.

use std::collections::BTreeSet;
use std::ops::Bound;

use tantivy::query::{
    AllQuery, BooleanQuery, ConstScoreQuery, EnableScoring, Occur, PhraseQuery, Query, RangeQuery,
    TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, DocSet, Score, Searcher, TERMINATED, Term};

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

/// A trace found in one part.
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

    /// The next (up to) `limit` traces of the part matching `q`, newest first (by their start
    /// in the part), from where `cursor` says the last call stopped; `cursor` then says where
    /// this one stopped.
    pub(crate) fn search_from(
        &self,
        part_id: u64,
        q: &TraceQuery,
        cursor: &mut PartCursor,
        limit: usize,
    ) -> Result<Vec<TraceHit>> {
        if cursor.done || limit == 0 {
            return Ok(Vec::new());
        }
        let hits = self.search_chunk(part_id, q, cursor, limit)?;
        if hits.is_none() {
            cursor.done = true;
        }
        Ok(hits.unwrap_or_default())
    }

    /// [`PartIndex::search_from`]; `None` when nothing in the part can match.
    fn search_chunk(
        &self,
        part_id: u64,
        q: &TraceQuery,
        cursor: &mut PartCursor,
        limit: usize,
    ) -> Result<Option<Vec<TraceHit>>> {
        let searcher = self.reader.searcher();
        let Some(Matcher {
            weight,
            scored,
            exact,
            on_spans,
        }) = self.matcher(&searcher, q)?
        else {
            return Ok(None);
        };
        self.read_chunk(
            &searcher,
            part_id,
            q,
            cursor,
            limit,
            (weight, scored, exact, on_spans),
        )
        .map(Some)
    }

    /// Every match of `q` in the part offered to `sample` as `(start, duration, error)`, reading
    /// only fast fields.
    /// Stops, answering false, once `deadline` has passed.
    pub(crate) fn sample_into(
        &self,
        q: &TraceQuery,
        sample: &mut Sample,
        deadline: std::time::Instant,
    ) -> Result<bool> {
        let searcher = self.reader.searcher();
        let Some(matcher) = self.matcher(&searcher, q)? else {
            return Ok(true);
        };
        for segment in searcher.segment_readers() {
            let mut scorer = matcher.weight.scorer(segment, 1.0).map_err(search_err)?;
            let ff = segment.fast_fields();
            let column = |name: &str| ff.u64(name).map_err(search_err);
            let (start, end, errors) = (column("start")?, column("end")?, column("error_count")?);
            let mut doc = scorer.doc();
            let mut read = 0u32;
            while doc != TERMINATED {
                let (s, e) = (start.first(doc).unwrap_or(0), end.first(doc).unwrap_or(0));
                sample.offer(s, e.saturating_sub(s), errors.first(doc).unwrap_or(0) > 0);
                doc = scorer.advance();
                read = read.wrapping_add(1);
                if read.is_multiple_of(4096) && std::time::Instant::now() > deadline {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The query `q` asks of this part, ready to score; `None` when nothing in the part can
    /// match.
    fn matcher(&self, searcher: &Searcher, q: &TraceQuery) -> Result<Option<Matcher>> {
        let f = self.fields;
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
                Self::has_term(searcher, &on_span)?,
                Self::has_term(searcher, &on_resource)?,
            ) {
                (false, false) => return Ok(None),
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
                return Ok(None);
            }
            let mut text = String::new();
            let present =
                buckets_present(searcher, f.span, tokens::bucket(min), tokens::bucket(max))?;
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
                return Ok(None);
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
        let scored = exact && !proposing.is_empty();
        let query = if scored {
            let scored = |buckets: &[Term], score: Score| -> (Occur, Box<dyn Query>) {
                let query = same_span_in_buckets(&positional, buckets);
                (Occur::Should, Box::new(ConstScoreQuery::new(query, score)))
            };
            let either = BooleanQuery::new(vec![scored(&proving, PROVEN), scored(&proposing, 1.0)]);
            with(Some(Box::new(either)))
        } else {
            let span_query = match bounded {
                true => {
                    let all: Vec<Term> = proving.iter().chain(&proposing).cloned().collect();
                    Some(same_span_in_buckets(&positional, &all))
                }
                false => same_span(&positional),
            };
            with(span_query)
        };
        let scoring = match scored {
            true => EnableScoring::enabled_from_searcher(searcher),
            false => EnableScoring::disabled_from_searcher(searcher),
        };
        let weight = query.weight(scoring).map_err(search_err)?;
        Ok(Some(Matcher {
            weight,
            scored,
            exact,
            on_spans,
        }))
    }

    /// The next `limit` matches from `cursor` (see [`PartIndex::search_from`]).
    fn read_chunk(
        &self,
        searcher: &Searcher,
        part_id: u64,
        q: &TraceQuery,
        cursor: &mut PartCursor,
        limit: usize,
        (weight, scored, exact, on_spans): (Box<dyn tantivy::query::Weight>, bool, bool, bool),
    ) -> Result<Vec<TraceHit>> {
        // Each segment's documents are newest first: its matches are read in that order, up to
        // `limit` of them, then the segments' are merged and the newest `limit` kept.
        let segments = searcher.segment_readers();
        if cursor.next.len() != segments.len() {
            cursor.next = vec![0; segments.len()];
        }
        let mut read: Vec<Candidate> = Vec::new();
        let mut stopped_at = vec![TERMINATED; segments.len()];
        for (ord, segment) in segments.iter().enumerate() {
            let from = cursor.next[ord];
            if from == TERMINATED {
                continue;
            }
            let mut scorer = weight.scorer(segment, 1.0).map_err(search_err)?;
            let mut doc = scorer.doc();
            if doc < from {
                doc = scorer.seek(from);
            }
            let starts = segment.fast_fields().u64("start").map_err(search_err)?;
            let mut taken = 0;
            while doc != TERMINATED && taken < limit {
                read.push(Candidate {
                    start: starts.first(doc).unwrap_or(0),
                    segment: ord as u32,
                    doc,
                    proven: if scored {
                        scorer.score() >= PROVEN
                    } else {
                        exact
                    },
                });
                taken += 1;
                doc = scorer.advance();
            }
            stopped_at[ord] = doc;
        }
        // Within a segment starts never rise, so what is kept of it is a prefix of what was read.
        read.sort_by(|a, b| {
            b.start
                .cmp(&a.start)
                .then(a.segment.cmp(&b.segment))
                .then(a.doc.cmp(&b.doc))
        });
        let dropped = read.split_off(read.len().min(limit));
        cursor.next = stopped_at;
        for c in dropped.iter().rev() {
            // The first document of each segment not kept is where it goes on.
            cursor.next[c.segment as usize] = c.doc;
        }
        cursor.done = cursor.next.iter().all(|d| *d == TERMINATED);

        let certain = |proven: bool, start: u64, end: u64| {
            proven
                && q.start_unix_nano.is_none_or(|s| start >= s)
                && q.end_unix_nano.is_none_or(|e| end <= e)
        };
        let mut columns: Vec<Option<super::Columns>> = (0..segments.len()).map(|_| None).collect();
        let mut hits = Vec::with_capacity(read.len());
        let mut id = Vec::with_capacity(16);
        for c in read {
            let columns = match &mut columns[c.segment as usize] {
                Some(columns) => columns,
                slot => slot.insert(self.columns(searcher, c.segment)?),
            };
            let Some(trace_id) = columns.trace_id(c.doc, &mut id)? else {
                continue;
            };
            let (start, end) = columns.bounds(c.doc);
            let (span_count, error_count) = columns.counts(c.doc);
            hits.push(TraceHit {
                trace_id,
                part_id,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                span_count,
                error_count,
                certain: certain(c.proven, start, end),
                attributes_on_spans: on_spans,
            });
        }
        Ok(hits)
    }
}

/// A part's query, ready to score: whether a document's score says which duration buckets it
/// matched (`scored`), whether every match is proven (`exact`, when not scored), and whether
/// every attribute condition was met on spans.
struct Matcher {
    weight: Box<dyn tantivy::query::Weight>,
    scored: bool,
    exact: bool,
    on_spans: bool,
}

/// A uniform random sample of at most `capacity` of the matches offered (a reservoir, with a
/// fixed seed: the same matches give the same sample), and how many were offered.
#[derive(Clone, Debug)]
pub struct Sample {
    capacity: usize,
    offered: u64,
    points: Vec<SamplePoint>,
    state: u64,
}

/// One trace of a [`Sample`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamplePoint {
    pub start_time_unix_nano: u64,
    pub duration_nano: u64,
    pub error: bool,
}

impl Sample {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            offered: 0,
            points: Vec::with_capacity(capacity.min(4096)),
            state: 0x5eed_5eed_5eed_5eed,
        }
    }

    pub fn offer(&mut self, start_time_unix_nano: u64, duration_nano: u64, error: bool) {
        self.offered += 1;
        let point = SamplePoint {
            start_time_unix_nano,
            duration_nano,
            error,
        };
        if self.points.len() < self.capacity {
            self.points.push(point);
            return;
        }
        // Kept with probability capacity / offered, in place of a random one.
        let k = self.next_random() % self.offered;
        if let Some(slot) = usize::try_from(k).ok().and_then(|k| self.points.get_mut(k)) {
            *slot = point;
        }
    }

    /// How many matches were offered.
    pub fn offered(&self) -> u64 {
        self.offered
    }

    /// The sample, oldest first.
    pub fn into_points(mut self) -> Vec<SamplePoint> {
        self.points.sort_by_key(|p| p.start_time_unix_nano);
        self.points
    }

    /// splitmix64.
    fn next_random(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A matching document read, before the segments are merged.
struct Candidate {
    start: u64,
    segment: u32,
    doc: DocId,
    proven: bool,
}

/// Where a search of one part stopped: per segment, the next document to read.
#[derive(Clone, Debug, Default)]
pub struct PartCursor {
    next: Vec<DocId>,
    /// Every match of the part has been handed out.
    pub done: bool,
}
