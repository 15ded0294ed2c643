//! Query latency per kind of question, for `/metrics`.

use std::time::Instant;

use spyglass_store::stats::Histogram;

/// What a query answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryKind {
    Trace,
    Search,
    Sql,
    Health,
    Graph,
    Logs,
    Metrics,
}

impl QueryKind {
    pub const ALL: [QueryKind; 7] = [
        QueryKind::Trace,
        QueryKind::Search,
        QueryKind::Sql,
        QueryKind::Health,
        QueryKind::Graph,
        QueryKind::Logs,
        QueryKind::Metrics,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueryKind::Trace => "trace",
            QueryKind::Search => "search",
            QueryKind::Sql => "sql",
            QueryKind::Health => "health",
            QueryKind::Graph => "graph",
            QueryKind::Logs => "logs",
            QueryKind::Metrics => "metrics",
        }
    }
}

/// One latency histogram per [`QueryKind`], failed queries included.
#[derive(Debug, Default)]
pub struct QueryStats {
    seconds: [Histogram; QueryKind::ALL.len()],
}

impl QueryStats {
    pub fn seconds(&self, kind: QueryKind) -> &Histogram {
        &self.seconds[kind as usize]
    }

    /// Observes the time until the returned guard is dropped.
    pub(crate) fn time(&self, kind: QueryKind) -> Timer<'_> {
        Timer {
            histogram: self.seconds(kind),
            started: Instant::now(),
        }
    }
}

pub(crate) struct Timer<'a> {
    histogram: &'a Histogram,
    started: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed());
    }
}
