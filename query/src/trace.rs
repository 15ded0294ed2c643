//! Trace by id: every span of a trace, wherever it is stored, once, as a tree.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray, FixedSizeBinaryArray, RecordBatch};
use arrow::datatypes::UInt64Type;
use spyglass_store::model::{
    AttrValue, Attributes, KeyValue, Resource, Span, SpanId, SpanKind, StatusCode, TraceId,
};

use crate::QueryEngine;
use crate::error::{Error, Result};

/// One span of an assembled trace, in tree order.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceSpan {
    pub span: Span,
    /// 0 for roots (spans without a parent, or whose parent is not in the trace).
    pub depth: u32,
    /// Its parent is named but not among the returned spans (not received, or cut).
    pub parent_missing: bool,
    pub child_count: u32,
}

/// A whole trace: spans in depth-first order, children by start time.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub trace_id: TraceId,
    pub spans: Vec<TraceSpan>,
    /// Spans stored for the trace (each `span_id` once), before the cap.
    pub total_spans: usize,
    /// More than `trace_max_spans` spans: the earliest ones are returned.
    pub truncated: bool,
}

impl Trace {
    pub fn start_time_unix_nano(&self) -> u64 {
        self.spans
            .iter()
            .map(|s| s.span.start_time_unix_nano)
            .min()
            .unwrap_or(0)
    }

    pub fn end_time_unix_nano(&self) -> u64 {
        self.spans
            .iter()
            .map(|s| s.span.end_time_unix_nano)
            .max()
            .unwrap_or(0)
    }
}

impl QueryEngine {
    /// The trace with this id, whatever its time: the trace index finds its parts without a
    /// time range, the memtable is scanned, retried spans are kept once.
    pub async fn trace(&self, trace_id: TraceId) -> Result<Trace> {
        let _timer = self.stats.time(crate::QueryKind::Trace);
        let snapshot = self.snapshot();
        let cap = self.config.trace_max_spans;
        let (mut found, cut) = tokio::task::spawn_blocking(move || {
            snapshot.find_traces_limited(&[trace_id], read_limit(cap))
        })
        .await??;
        let spans = found.remove(&trace_id).unwrap_or_default();
        if spans.is_empty() {
            return Err(Error::NotFound(format!("trace {}", trace_id.to_hex())));
        }
        Ok(assemble(trace_id, spans, cap, cut))
    }
}

/// What a waterfall draws of a span: its place in the tree, names, times and status.
const TREE_COLUMNS: [&str; 9] = [
    "span_id",
    "parent_span_id",
    "service_name",
    "name",
    "kind",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "status_code",
    "status_message",
];

impl QueryEngine {
    /// The trace as [`QueryEngine::trace`] gives it, but each span holds only its ids, service,
    /// name, kind, times and status (attributes, events, links and the rest of the resource
    /// are left empty): a few columns are read instead of all of them.
    pub async fn trace_tree(&self, trace_id: TraceId) -> Result<Trace> {
        let _timer = self.stats.time(crate::QueryKind::Trace);
        let snapshot = self.snapshot();
        let cap = self.config.trace_max_spans;
        let (spans, cut) = tokio::task::spawn_blocking(move || -> Result<(Vec<Span>, bool)> {
            let (batches, cut) =
                snapshot.trace_rows_limited(&[trace_id], Some(&TREE_COLUMNS), read_limit(cap))?;
            Ok((tree_spans(trace_id, &batches)?, cut))
        })
        .await??;
        if spans.is_empty() {
            return Err(Error::NotFound(format!("trace {}", trace_id.to_hex())));
        }
        Ok(assemble(trace_id, spans, cap, cut))
    }

    /// Several traces (as [`QueryEngine::trace`] gives them) in the order of `ids`, reading
    /// each part once; ids without spans are left out. All of them together are read up to
    /// the row limit of one trace: when that cuts the reading, every trace of the answer says
    /// `truncated`, since which of them lost spans is not known.
    pub async fn traces(&self, ids: Vec<TraceId>) -> Result<Vec<Trace>> {
        let _timer = self.stats.time(crate::QueryKind::Trace);
        let snapshot = self.snapshot();
        let cap = self.config.trace_max_spans;
        tokio::task::spawn_blocking(move || {
            let (mut found, cut) = snapshot.find_traces_limited(&ids, read_limit(cap))?;
            Ok(ids
                .iter()
                .filter_map(|id| Some(assemble(*id, found.remove(id)?, cap, cut)))
                .collect())
        })
        .await?
    }
}

/// Rows read for a trace of at most `cap` spans: room for each span twice (an export retried
/// is stored twice, and kept once), and no more, whatever the trace's size.
fn read_limit(cap: usize) -> usize {
    cap.saturating_mul(2).max(1)
}

/// Spans with the tree columns only, each span id once, sorted by start time.
fn tree_spans(trace_id: TraceId, batches: &[RecordBatch]) -> Result<Vec<Span>> {
    let mut resources: HashMap<String, Arc<Resource>> = HashMap::new();
    let mut seen = HashSet::new();
    let mut spans = Vec::new();
    for batch in batches {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| Error::Internal(format!("trace rows lack {name}")))
        };
        let id = |name: &str| -> Result<&FixedSizeBinaryArray> {
            Ok(column(name)?.as_fixed_size_binary())
        };
        let (span_id, parent) = (id("span_id")?, id("parent_span_id")?);
        let text = |name: &str| -> Result<_> { Ok(column(name)?.as_string::<i32>()) };
        let (service, name, kind) = (text("service_name")?, text("name")?, text("kind")?);
        let (status, message) = (text("status_code")?, text("status_message")?);
        let start = column("start_time_unix_nano")?.as_primitive::<UInt64Type>();
        let end = column("end_time_unix_nano")?.as_primitive::<UInt64Type>();
        let span_id_of = |a: &FixedSizeBinaryArray, row: usize| {
            <[u8; 8]>::try_from(a.value(row))
                .map(SpanId)
                .map_err(|_| Error::Internal("span ids are 8 bytes".into()))
        };
        for row in 0..batch.num_rows() {
            let sid = span_id_of(span_id, row)?;
            if !seen.insert(sid) {
                continue; // the same span from a retried export
            }
            let service = service.value(row);
            let resource = resources
                .entry(service.to_string())
                .or_insert_with(|| {
                    Arc::new(Resource {
                        attributes: Attributes::new(vec![KeyValue {
                            key: "service.name".into(),
                            value: AttrValue::Str(service.to_string()),
                        }]),
                        ..Resource::default()
                    })
                })
                .clone();
            spans.push(Span {
                trace_id,
                span_id: sid,
                parent_span_id: if parent.is_null(row) {
                    None
                } else {
                    Some(span_id_of(parent, row)?)
                },
                name: name.value(row).to_string(),
                kind: SpanKind::parse(kind.value(row)).unwrap_or_default(),
                start_time_unix_nano: start.value(row),
                end_time_unix_nano: end.value(row),
                status_code: StatusCode::parse(status.value(row)).unwrap_or_default(),
                status_message: message.value(row).to_string(),
                resource,
                ..Span::default()
            });
        }
    }
    spans.sort_by_key(|s| (s.start_time_unix_nano, s.span_id));
    Ok(spans)
}

/// Orders `spans` (unique span ids, sorted by start time) as a tree, keeping at most `cap`.
/// The trace of `spans` in tree order, cut to `cap` spans; `cut` says the reading already
/// stopped at its limit (then `total_spans` counts what was read, a lower bound).
pub(crate) fn assemble(trace_id: TraceId, mut spans: Vec<Span>, cap: usize, cut: bool) -> Trace {
    let total_spans = spans.len();
    let truncated = cut || spans.len() > cap;
    spans.truncate(cap);

    let index: HashMap<SpanId, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut roots = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        match span.parent_span_id.and_then(|p| index.get(&p)) {
            Some(&parent) if parent != i => children[parent].push(i),
            _ => roots.push(i),
        }
    }
    // `spans` is sorted by start time, so each children list already is.

    let mut order: Vec<(usize, u32)> = Vec::with_capacity(spans.len());
    let mut visited = vec![false; spans.len()];
    let walk = |root: usize, order: &mut Vec<(usize, u32)>, visited: &mut [bool]| {
        let mut stack = vec![(root, 0u32)];
        while let Some((i, depth)) = stack.pop() {
            if std::mem::replace(&mut visited[i], true) {
                continue;
            }
            order.push((i, depth));
            for &c in children[i].iter().rev() {
                stack.push((c, depth + 1));
            }
        }
    };
    for &root in &roots {
        walk(root, &mut order, &mut visited);
    }
    // Spans on a parent cycle (a broken sender) are unreachable from any root: show them
    // as roots rather than drop them.
    for i in 0..spans.len() {
        if !visited[i] {
            walk(i, &mut order, &mut visited);
        }
    }

    let child_counts: Vec<u32> = children.iter().map(|c| c.len() as u32).collect();
    let mut slots: Vec<Option<Span>> = spans.into_iter().map(Some).collect();
    let spans = order
        .into_iter()
        .map(|(i, depth)| {
            let span = slots[i].take().expect("each span is visited once");
            let parent_missing = span.parent_span_id.is_some_and(|p| !index.contains_key(&p));
            TraceSpan {
                span,
                depth,
                parent_missing,
                child_count: child_counts[i],
            }
        })
        .collect();
    Trace {
        trace_id,
        spans,
        total_spans,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: u8, parent: Option<u8>, start: u64) -> Span {
        Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([id; 8]),
            parent_span_id: parent.map(|p| SpanId([p; 8])),
            start_time_unix_nano: start,
            end_time_unix_nano: start + 10,
            ..Default::default()
        }
    }

    fn shape(trace: &Trace) -> Vec<(u8, u32, bool)> {
        trace
            .spans
            .iter()
            .map(|s| (s.span.span_id.0[0], s.depth, s.parent_missing))
            .collect()
    }

    #[test]
    fn depth_first_with_children_by_start_time() {
        // 1 ─┬─ 3 ── 4
        //    └─ 2        (2 starts after 3)
        let spans = vec![
            span(1, None, 0),
            span(3, Some(1), 1),
            span(4, Some(3), 2),
            span(2, Some(1), 5),
        ];
        let trace = assemble(TraceId([1; 16]), spans, 100, false);
        assert_eq!(
            shape(&trace),
            vec![(1, 0, false), (3, 1, false), (4, 2, false), (2, 1, false)]
        );
        assert_eq!(trace.spans[0].child_count, 2);
        assert!(!trace.truncated);
    }

    #[test]
    fn orphans_and_cycles_become_roots_and_nothing_is_lost() {
        let spans = vec![
            span(1, None, 0),
            span(5, Some(9), 1),
            span(6, Some(7), 2),
            span(7, Some(6), 3),
        ];
        let trace = assemble(TraceId([1; 16]), spans, 100, false);
        let got = shape(&trace);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], (1, 0, false));
        assert_eq!(got[1], (5, 0, true), "parent 9 was never received");
        let ids: Vec<u8> = got.iter().map(|g| g.0).collect();
        assert!(ids.contains(&6) && ids.contains(&7));
    }

    #[test]
    fn cap_keeps_the_earliest_spans_and_says_so() {
        let spans: Vec<Span> = (0..10)
            .map(|i| span(i + 1, if i == 0 { None } else { Some(1) }, i as u64))
            .collect();
        let trace = assemble(TraceId([1; 16]), spans, 4, false);
        assert!(trace.truncated);
        assert_eq!(trace.total_spans, 10);
        assert_eq!(
            shape(&trace),
            vec![(1, 0, false), (2, 1, false), (3, 1, false), (4, 1, false)]
        );
    }
}
