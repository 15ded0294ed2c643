//! Trace search: which traces have a span matching every condition, newest first.
//!
//! The trace index of each part finds the traces where one span meets the span conditions
//! (service, operation, attributes, duration, error) and the messages hold every word of the
//! text; the memtable, which has no index, is scanned. What the index proves is summarised
//! from the index. What it only proposes (an attribute found among resource attributes, a
//! duration bucket straddling a bound, a trace crossing the time range's edge) is read, only
//! the columns the conditions name, and kept when one span meets all span conditions together;
//! the same rows give the summary.

use std::collections::{BTreeMap, HashSet};

pub use spyglass_store::SamplePoint;
use spyglass_store::model::{StatusCode, TraceId};
use spyglass_store::{Sample, Signal, Snapshot, TraceDigest, TraceHit, TraceQuery};

use crate::QueryEngine;
use crate::error::{Error, Result};
use crate::trace::Trace;

mod verify;
use verify::{Read, verify};

/// Conditions of a trace search; the span conditions must hold on one span.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceSearch {
    pub service: Option<String>,
    /// Span name.
    pub operation: Option<String>,
    /// Span or resource attributes, values compared as text.
    pub attributes: Vec<(String, String)>,
    pub min_duration_nano: Option<u64>,
    pub max_duration_nano: Option<u64>,
    pub errors_only: bool,
    /// Words that must all occur in the trace's status and exception messages.
    pub text: Option<String>,
    /// The matching span starts in `[start, end]`.
    pub start_unix_nano: Option<u64>,
    pub end_unix_nano: Option<u64>,
    pub limit: usize,
    /// Continue after the last trace of the previous page.
    pub cursor: Option<Cursor>,
    /// Also answer a sample of at most this many matching traces over the whole time range,
    /// and about how many match (0: none).
    pub sample: usize,
}

/// Where a page ended: traces are ordered by (start time, trace id), newest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub start_time_unix_nano: u64,
    pub trace_id: TraceId,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}-{}", self.start_time_unix_nano, self.trace_id.to_hex())
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (start, id) = text.split_once('-')?;
        Some(Self {
            start_time_unix_nano: start.parse().ok()?,
            trace_id: TraceId::from_hex(id)?,
        })
    }

    fn key(&self) -> (u64, TraceId) {
        (self.start_time_unix_nano, self.trace_id)
    }
}

/// One page of results, newest first.
#[derive(Clone, Debug)]
pub struct SearchPage {
    pub traces: Vec<TraceSummary>,
    pub next_cursor: Option<Cursor>,
    /// When asked for: a sample of the matches over the whole range.
    pub sample: Option<TraceSample>,
}

/// About how many traces match over the whole range, and a uniform sample of them, oldest
/// first (see `docs/ARCHITECTURE.md`, "A sample of the whole range").
#[derive(Clone, Debug, PartialEq)]
pub struct TraceSample {
    pub matched: u64,
    pub points: Vec<SamplePoint>,
}

/// What a result list shows of a trace.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceSummary {
    pub trace_id: TraceId,
    pub root_service: String,
    pub root_name: String,
    pub start_time_unix_nano: u64,
    pub duration_nano: u64,
    pub span_count: usize,
    pub error_count: usize,
    /// Services and their span counts, most spans first.
    pub services: Vec<(String, usize)>,
}

impl TraceSummary {
    /// The summary of a trace one part's index describes whole.
    fn from_digest(trace_id: TraceId, digest: TraceDigest) -> Self {
        Self {
            trace_id,
            root_service: digest.root_service,
            root_name: digest.root_name,
            start_time_unix_nano: digest.start_time_unix_nano,
            duration_nano: digest
                .end_time_unix_nano
                .saturating_sub(digest.start_time_unix_nano),
            span_count: digest.span_count as usize,
            error_count: digest.error_count as usize,
            services: digest
                .services
                .into_iter()
                .map(|(s, n)| (s, n as usize))
                .collect(),
        }
    }

    pub fn of(trace: &Trace) -> Self {
        let root = trace
            .spans
            .iter()
            .find(|s| s.depth == 0 && s.span.parent_span_id.is_none())
            .or_else(|| trace.spans.first());
        let mut services: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &trace.spans {
            *services.entry(s.span.service_name()).or_default() += 1;
        }
        let mut services: Vec<(String, usize)> = services
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        services.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let start = trace.start_time_unix_nano();
        Self {
            trace_id: trace.trace_id,
            root_service: root
                .map(|r| r.span.service_name().to_string())
                .unwrap_or_default(),
            root_name: root.map(|r| r.span.name.clone()).unwrap_or_default(),
            start_time_unix_nano: start,
            duration_nano: trace.end_time_unix_nano().saturating_sub(start),
            span_count: trace.spans.len(),
            error_count: trace
                .spans
                .iter()
                .filter(|s| s.span.status_code == StatusCode::Error)
                .count(),
            services,
        }
    }
}

/// Most index candidates read per search before giving up on finding more matches.
const MAX_CANDIDATES: usize = 20_000;
/// Hits taken together after the first chunk (one pass over each part for the candidates).
const MIN_CHUNK: usize = 16;
const MAX_CHUNK: usize = 64;

impl QueryEngine {
    pub async fn search(&self, search: TraceSearch) -> Result<SearchPage> {
        let _timer = self.stats.time(crate::QueryKind::Search);
        if search.limit == 0 || search.limit > self.config.search_max_limit {
            return Err(Error::invalid(format!(
                "limit must be between 1 and {}",
                self.config.search_max_limit
            )));
        }
        let snapshot = self.snapshot();
        let timeout = self.config.query_timeout();
        // The blocking work goes on after the timeout answers; the sample, which reads every
        // match, stops at it.
        let deadline = std::time::Instant::now() + timeout;
        let task = tokio::task::spawn_blocking(move || {
            run_search(&snapshot, &search, (deadline, timeout))
        });
        match tokio::time::timeout(timeout, task).await {
            Ok(joined) => joined?,
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }
}

fn run_search(
    snapshot: &Snapshot,
    search: &TraceSearch,
    (deadline, timeout): (std::time::Instant, std::time::Duration),
) -> Result<SearchPage> {
    let wanted = search.limit + 1;
    let before_cursor = |trace: &TraceSummary| match &search.cursor {
        Some(c) => (trace.start_time_unix_nano, trace.trace_id) < c.key(),
        None => true,
    };
    let mut found: Vec<TraceSummary> = Vec::new();
    let mut seen: HashSet<TraceId> = HashSet::new();

    // The memtable first: its traces are the newest.
    let mut fresh: Vec<TraceId> = memtable_matches(snapshot, search)?;
    fresh.retain(|id| seen.insert(*id));
    let in_memtable = verify(snapshot, search, &fresh, Read::AllAttributes)?;
    let sample = match search.sample {
        0 => None,
        n => {
            let mut sample = Sample::new(n);
            if !snapshot.sample_traces(&index_query(search), &mut sample, deadline)? {
                return Err(Error::Timeout(timeout));
            }
            for t in &in_memtable {
                sample.offer(t.start_time_unix_nano, t.duration_nano, t.error_count > 0);
            }
            Some(TraceSample {
                matched: sample.offered(),
                points: sample.into_points(),
            })
        }
    };
    found.extend(in_memtable.into_iter().filter(|t| before_cursor(t)));

    // The parts' indexes hand out their matches newest first, each part read only as far as
    // needed. Hits the index proves are summarised from it; the others are candidates whose
    // rows are read, a chunk at a time, until no hit still to come can enter the page. The
    // first chunk is the page's size: when the index proves its hits, that is all there is to
    // read.
    let mut hits = snapshot.trace_hits(&index_query(search));
    let mut chunk_len = wanted;
    // Hits that start, in their part, at or before the cursor count against MAX_CANDIDATES;
    // those after it are settled only to learn whether their trace starts before it.
    let cursor_start = search.cursor.map_or(u64::MAX, |c| c.start_time_unix_nano);
    let mut taken = 0;
    // Where the search stopped before every match was read: what is unread starts at or
    // before it.
    let mut cut_at = None;
    loop {
        if taken >= MAX_CANDIDATES {
            cut_at = hits.frontier();
            break;
        }
        let mut chunk = Vec::with_capacity(chunk_len);
        while chunk.len() < chunk_len
            && let Some(hit) = hits.next_hit()?
        {
            chunk.push(hit);
        }
        if chunk.is_empty() {
            break;
        }
        taken += chunk
            .iter()
            .filter(|h| h.start_time_unix_nano <= cursor_start)
            .count();
        let fresh: Vec<&TraceHit> = chunk.iter().filter(|h| seen.insert(h.trace_id)).collect();
        let proven: Vec<TraceId> = fresh
            .iter()
            .filter(|h| h.certain)
            .map(|h| h.trace_id)
            .collect();
        let mut digests = snapshot.indexed_summaries(&proven)?;
        // Candidates whose attribute conditions the index found on spans need no resource
        // attributes read.
        let (mut on_spans, mut anywhere) = (Vec::new(), Vec::new());
        for hit in fresh {
            match digests.remove(&hit.trace_id) {
                Some(digest) => {
                    let trace = TraceSummary::from_digest(hit.trace_id, digest);
                    if before_cursor(&trace) {
                        found.push(trace);
                    }
                }
                None if hit.attributes_on_spans => on_spans.push(hit.trace_id),
                None => anywhere.push(hit.trace_id),
            }
        }
        let checked = verify(snapshot, search, &on_spans, Read::SpanAttributes)?
            .into_iter()
            .chain(verify(snapshot, search, &anywhere, Read::AllAttributes)?);
        found.extend(checked.filter(|t| before_cursor(t)));
        // No hit still to come starts after the frontier: once `wanted` traces do, the page
        // is settled.
        let Some(frontier) = hits.frontier() else {
            break;
        };
        let enough = found
            .iter()
            .filter(|t| t.start_time_unix_nano > frontier)
            .count();
        if enough >= wanted {
            break;
        }
        // Read about twice what is missing next (most hits are proven when the index can).
        chunk_len = (2 * (wanted - enough)).clamp(MIN_CHUNK, MAX_CHUNK);
    }

    found.sort_by(|a, b| {
        (b.start_time_unix_nano, b.trace_id).cmp(&(a.start_time_unix_nano, a.trace_id))
    });
    if let Some(frontier) = cut_at {
        // Cut short: only traces after the frontier are sure to be the newest; the next page
        // goes on from the frontier if this one is not full.
        found.retain(|t| t.start_time_unix_nano > frontier);
        if found.len() <= search.limit {
            return Ok(SearchPage {
                traces: found,
                next_cursor: Some(Cursor {
                    start_time_unix_nano: frontier.saturating_add(1),
                    trace_id: TraceId([0; 16]),
                }),
                sample,
            });
        }
    }
    let more = found.len() > search.limit;
    found.truncate(search.limit);
    let next_cursor = more.then(|| {
        let last = found.last().expect("limit is at least 1");
        Cursor {
            start_time_unix_nano: last.start_time_unix_nano,
            trace_id: last.trace_id,
        }
    });
    Ok(SearchPage {
        traces: found,
        next_cursor,
        sample,
    })
}

/// The search as the index takes it. The cursor is not a bound on it: a trace's start in one
/// part can be after the cursor while the trace itself, with older spans in another part,
/// starts before it; the cursor is applied to settled traces.
fn index_query(search: &TraceSearch) -> TraceQuery {
    TraceQuery {
        service: search.service.clone(),
        operation: search.operation.clone(),
        attributes: search.attributes.clone(),
        errors_only: search.errors_only,
        min_duration_nano: search.min_duration_nano,
        max_duration_nano: search.max_duration_nano,
        text: search.text.clone(),
        start_unix_nano: search.start_unix_nano,
        end_unix_nano: search.end_unix_nano,
    }
}

pub(crate) fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// Trace ids of memtable spans meeting the span conditions, checked on the Arrow arrays as
/// part candidates are.
fn memtable_matches(snapshot: &Snapshot, search: &TraceSearch) -> Result<Vec<TraceId>> {
    let mut out = Vec::new();
    for batch in snapshot.memtable_batches(Signal::Spans) {
        out.extend(verify::matching_traces(&batch, search)?);
    }
    Ok(out)
}
