//! Snapshots: an immutable view of the store for readers.
//!
//! A snapshot holds the manifest version and the memtables of one instant. Flushes,
//! compactions and retention passes after it change nothing it sees, and the files of parts it
//! holds stay on disk until it is dropped. Its methods read files: call them from blocking
//! contexts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, FixedSizeBinaryArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;

use crate::error::{Error, Result};
use crate::index::{PartCursor, PartIndex, Sample, TraceDigest, TraceHit, TraceQuery};
use crate::manifest::{Manifest, Part};
use crate::memtable::Memtable;
use crate::model::{Signal, Span, TraceId};
use crate::part::{read_part, read_traces};
use crate::schema::{Records, spans_from_batch};

#[derive(Clone)]
pub struct Snapshot {
    manifest: Arc<Manifest>,
    memtables: Vec<Arc<Memtable>>,
}

impl Snapshot {
    pub(crate) fn new(manifest: Arc<Manifest>, memtables: Vec<Arc<Memtable>>) -> Self {
        Self {
            manifest,
            memtables,
        }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Live parts of a signal.
    pub fn parts(&self, signal: Signal) -> Vec<Arc<Part>> {
        self.manifest.parts_of(signal).cloned().collect()
    }

    /// Rows not yet in parts, as Arrow batches in the signal's schema.
    pub fn memtable_batches(&self, signal: Signal) -> Vec<RecordBatch> {
        self.memtables
            .iter()
            .flat_map(|m| m.batches(signal).iter().cloned())
            .collect()
    }

    /// Every row of a signal: all parts, then the memtables.
    pub fn read_all(&self, signal: Signal) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for part in self.manifest.parts_of(signal) {
            out.extend(read_part(&part.path())?);
        }
        out.extend(self.memtable_batches(signal));
        Ok(out)
    }

    /// Every row of a signal in model form.
    pub fn read_records(&self, signal: Signal) -> Result<Records> {
        let mut all = match signal {
            Signal::Spans => Records::Spans(Vec::new()),
            Signal::Metrics => Records::Metrics(Vec::new()),
            Signal::Logs => Records::Logs(Vec::new()),
        };
        for batch in self.read_all(signal)? {
            match (&mut all, Records::from_batch(signal, &batch)?) {
                (Records::Spans(a), Records::Spans(b)) => a.extend(b),
                (Records::Metrics(a), Records::Metrics(b)) => a.extend(b),
                (Records::Logs(a), Records::Logs(b)) => a.extend(b),
                _ => unreachable!("from_batch returns the signal it was asked for"),
            }
        }
        Ok(all)
    }

    /// Parts whose index holds the trace, whatever their time.
    pub fn parts_with_trace(&self, trace_id: &TraceId) -> Result<Vec<Arc<Part>>> {
        let mut out = Vec::new();
        for part in self.manifest.parts_of(Signal::Spans) {
            match part.index()? {
                Some(index) if index.contains(trace_id)? => out.push(part.clone()),
                Some(_) => {}
                None => {
                    return Err(Error::Corrupt(format!(
                        "spans part {} has no index",
                        part.meta().id
                    )));
                }
            }
        }
        Ok(out)
    }

    /// Every span of a trace from parts and memtables, each `span_id` once (retried exports
    /// store a span twice), ordered by start time.
    pub fn find_trace(&self, trace_id: &TraceId) -> Result<Vec<Span>> {
        Ok(self
            .find_traces(std::slice::from_ref(trace_id))?
            .remove(trace_id)
            .unwrap_or_default())
    }

    /// The spans of several traces (as [`Snapshot::find_trace`] gives them), reading each part
    /// once for all of them. Traces with no span are absent from the answer.
    pub fn find_traces(&self, trace_ids: &[TraceId]) -> Result<HashMap<TraceId, Vec<Span>>> {
        Ok(self.find_traces_limited(trace_ids, usize::MAX)?.0)
    }

    /// [`Snapshot::find_traces`], reading at most `max_rows` rows (parts oldest first, then
    /// the memtables); `true` beside the traces when the limit cut the reading short.
    pub fn find_traces_limited(
        &self,
        trace_ids: &[TraceId],
        max_rows: usize,
    ) -> Result<(HashMap<TraceId, Vec<Span>>, bool)> {
        let (batches, cut) = self.trace_rows_limited(trace_ids, None, max_rows)?;
        let mut seen = HashSet::new();
        let mut traces: HashMap<TraceId, Vec<Span>> = HashMap::new();
        for batch in &batches {
            for span in spans_from_batch(batch)? {
                if seen.insert((span.trace_id, span.span_id)) {
                    traces.entry(span.trace_id).or_default().push(span);
                }
            }
        }
        for spans in traces.values_mut() {
            spans.sort_by_key(|s| (s.start_time_unix_nano, s.span_id));
        }
        Ok((traces, cut))
    }

    /// The rows of several traces in parts and memtables, as stored: a span exported twice is
    /// there twice. With `columns`, the batches hold only those columns (in table order, with
    /// `trace_id` always; `duration_nano` is derived, so ask for the times instead); without,
    /// every column. Each part is read once, and only its pages that can hold the traces.
    pub fn trace_rows(
        &self,
        trace_ids: &[TraceId],
        columns: Option<&[&str]>,
    ) -> Result<Vec<RecordBatch>> {
        Ok(self.trace_rows_limited(trace_ids, columns, usize::MAX)?.0)
    }

    /// [`Snapshot::trace_rows`], reading at most `max_rows` rows: parts oldest first, then the
    /// memtables, so a cut keeps the earliest rows. `true` beside the rows when the limit cut
    /// the reading short (a trace of millions of spans costs no more than the limit).
    pub fn trace_rows_limited(
        &self,
        trace_ids: &[TraceId],
        columns: Option<&[&str]>,
        max_rows: usize,
    ) -> Result<(Vec<RecordBatch>, bool)> {
        let mut sorted = trace_ids.to_vec();
        sorted.sort();
        sorted.dedup();
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut left = max_rows;
        let mut parts: Vec<_> = self.manifest.parts_of(Signal::Spans).collect();
        parts.sort_by_key(|p| (p.meta().min_time_unix_nano, p.meta().id));
        for part in parts {
            let index = part.index()?.ok_or_else(|| {
                Error::Corrupt(format!("spans part {} has no index", part.meta().id))
            })?;
            let mut here = Vec::new();
            for id in &sorted {
                if index.contains(id)? {
                    here.push(*id);
                }
            }
            if here.is_empty() {
                continue;
            }
            if left == 0 {
                return Ok((batches, true));
            }
            // One row more than fits tells a cut from an exact fit.
            for batch in read_traces(part, &here, columns, left.saturating_add(1))? {
                if batch.num_rows() > left {
                    batches.push(batch.slice(0, left));
                    return Ok((batches, true));
                }
                left -= batch.num_rows();
                batches.push(batch);
            }
        }
        for batch in self.memtable_batches(Signal::Spans) {
            let ids = batch
                .column_by_name("trace_id")
                .and_then(|c| c.as_any().downcast_ref::<FixedSizeBinaryArray>())
                .ok_or_else(|| Error::Corrupt("spans lack trace_id".into()))?;
            let rows: Vec<u32> = (0..ids.len() as u32)
                .filter(|&i| {
                    let id = ids.value(i as usize);
                    sorted.binary_search_by(|t| t.0[..].cmp(id)).is_ok()
                })
                .collect();
            if rows.is_empty() {
                continue;
            }
            let batch = match columns {
                Some(names) => {
                    let schema = batch.schema();
                    let keep: Vec<usize> = (0..batch.num_columns())
                        .filter(|&i| {
                            let name = schema.field(i).name().as_str();
                            name == "trace_id" || (names.contains(&name) && name != "duration_nano")
                        })
                        .collect();
                    batch.project(&keep)?
                }
                None => batch,
            };
            if left == 0 {
                return Ok((batches, true));
            }
            let mut rows = rows;
            let cut = rows.len() > left;
            rows.truncate(left);
            left -= rows.len();
            batches.push(take_record_batch(&batch, &UInt32Array::from(rows))?);
            if cut {
                return Ok((batches, true));
            }
        }
        Ok((batches, false))
    }

    /// What the indexes know of each trace held by exactly one part and not by the memtable
    /// (one document then describes the whole trace); the others are left out, for the caller
    /// to read their rows.
    pub fn indexed_summaries(
        &self,
        trace_ids: &[TraceId],
    ) -> Result<HashMap<TraceId, TraceDigest>> {
        let mut wanted: HashSet<TraceId> = trace_ids.iter().copied().collect();
        for batch in self.memtable_batches(Signal::Spans) {
            let ids = batch
                .column_by_name("trace_id")
                .and_then(|c| c.as_any().downcast_ref::<FixedSizeBinaryArray>())
                .ok_or_else(|| Error::Corrupt("spans lack trace_id".into()))?;
            for row in 0..ids.len() {
                if let Ok(id) = <[u8; 16]>::try_from(ids.value(row)) {
                    wanted.remove(&TraceId(id));
                }
            }
        }
        let mut digests: HashMap<TraceId, TraceDigest> = HashMap::new();
        let mut held_elsewhere: HashSet<TraceId> = HashSet::new();
        for part in self.manifest.parts_of(Signal::Spans) {
            let Some(index) = part.index()? else { continue };
            for id in &wanted {
                if held_elsewhere.contains(id) {
                    continue;
                }
                if digests.contains_key(id) {
                    if index.contains(id)? {
                        digests.remove(id);
                        held_elsewhere.insert(*id);
                    }
                } else if let Some(digest) = index.digest(id)? {
                    digests.insert(*id, digest);
                }
            }
        }
        Ok(digests)
    }

    /// Offers every match of `query` in the parts to `sample` (from the indexes' fast fields;
    /// a trace held by several parts is offered once per part that matches).
    /// Stops, answering false, once `deadline` has passed (a search that timed out).
    pub fn sample_traces(
        &self,
        query: &TraceQuery,
        sample: &mut Sample,
        deadline: std::time::Instant,
    ) -> Result<bool> {
        let (from, to) = (
            query.start_unix_nano.unwrap_or(0),
            query.end_unix_nano.unwrap_or(u64::MAX),
        );
        for part in self.manifest.parts_of(Signal::Spans) {
            if !part.meta().overlaps(from, to) {
                continue;
            }
            if let Some(index) = part.index()?
                && !index.sample_into(query, sample, deadline)?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The traces in parts matching `query`, newest first by their start in the part (see
    /// [`TraceHits`]). Memtable rows are not indexed: the query engine scans them itself.
    pub fn trace_hits(&self, query: &TraceQuery) -> TraceHits<'_> {
        let (from, to) = (
            query.start_unix_nano.unwrap_or(0),
            query.end_unix_nano.unwrap_or(u64::MAX),
        );
        let mut waiting: Vec<&Arc<Part>> = self
            .manifest
            .parts_of(Signal::Spans)
            .filter(|p| p.meta().overlaps(from, to))
            .collect();
        // Newest last: the next part to open is popped.
        waiting.sort_by_key(|p| (p.meta().max_time_unix_nano, p.meta().id));
        TraceHits {
            query: query.clone(),
            waiting,
            open: Vec::new(),
            chunk: HIT_CHUNK,
        }
    }
}

/// Hits read from a part at a time.
const HIT_CHUNK: usize = 64;

/// The matches of a trace query over the parts, handed out newest first by each trace's start
/// in its part: the parts merged like sorted lists, each read a chunk at a time as far as the
/// merge needs (see `docs/ARCHITECTURE.md`, "Newest first, stopping early"). A trace held by
/// several parts may come once per part.
pub struct TraceHits<'s> {
    query: TraceQuery,
    /// Parts not opened yet, the one with the newest time last.
    waiting: Vec<&'s Arc<Part>>,
    open: Vec<PartHits<'s>>,
    chunk: usize,
}

/// One open part: its hits read but not handed out, and where its search stopped.
struct PartHits<'s> {
    id: u64,
    index: &'s PartIndex,
    cursor: PartCursor,
    buffer: std::collections::VecDeque<TraceHit>,
}

impl PartHits<'_> {
    /// Reads the part's next chunk when every hit read was handed out.
    fn fill(&mut self, query: &TraceQuery, chunk: usize) -> Result<()> {
        if self.buffer.is_empty() && !self.cursor.done {
            let hits = self
                .index
                .search_from(self.id, query, &mut self.cursor, chunk)?;
            self.buffer.extend(hits);
        }
        Ok(())
    }

    fn head(&self) -> Option<u64> {
        self.buffer.front().map(|h| h.start_time_unix_nano)
    }
}

impl TraceHits<'_> {
    /// The next hit, newest first; `None` once every part is read.
    pub fn next_hit(&mut self) -> Result<Option<TraceHit>> {
        loop {
            let best = (0..self.open.len()).max_by_key(|&i| self.open[i].head());
            let best_start = best.and_then(|i| self.open[i].head());
            // A part whose newest time is at or after every open part's next hit is opened.
            if let Some(part) = self.waiting.last()
                && best_start.is_none_or(|s| part.meta().max_time_unix_nano >= s)
            {
                let part = self.waiting.pop().expect("just seen");
                if let Some(index) = part.index()? {
                    let mut hits = PartHits {
                        id: part.meta().id,
                        index,
                        cursor: PartCursor::default(),
                        buffer: Default::default(),
                    };
                    hits.fill(&self.query, self.chunk)?;
                    if hits.head().is_some() {
                        self.open.push(hits);
                    }
                }
                continue;
            }
            let Some(i) = best.filter(|_| best_start.is_some()) else {
                return Ok(None);
            };
            let hit = self.open[i].buffer.pop_front();
            self.open[i].fill(&self.query, self.chunk)?;
            if self.open[i].head().is_none() {
                self.open.swap_remove(i);
            }
            return Ok(hit);
        }
    }

    /// The newest start a hit not yet handed out can have (`None`: there is none). A trace's
    /// start is the earliest over every part holding it, so no trace found later starts after
    /// this.
    pub fn frontier(&self) -> Option<u64> {
        let open = self.open.iter().filter_map(PartHits::head).max();
        let waiting = self.waiting.last().map(|p| p.meta().max_time_unix_nano);
        open.max(waiting)
    }
}
