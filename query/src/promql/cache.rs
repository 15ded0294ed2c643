//! The series each stored series exposes, worked out once from one of its rows and kept for
//! later queries, by series id and the families the query read. A stored series' id hashes its
//! name, attributes and resource; with the family name (which holds the unit) that fixes what
//! it exposes, short of a change of temporality or bucket bounds under one name, which shows
//! once the cache is emptied. Only the value columns of its rows need reading again.
//!
//! Bounded by `[query] promql_series_cache_bytes` (an estimate of the labels' heap size): when
//! an insertion would pass it, the cache is emptied and fills again from the next queries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::Labels;
use super::otlp::Part;

/// What one stored series exposes.
#[derive(Debug)]
pub(super) enum Exposed {
    /// Series read from the value columns of each row: labels, the part of the row, and the
    /// `le` (bucket) index.
    Columns(Vec<(Labels, Part, usize)>),
    /// Series worked out from whole rows (deltas added up from the first point, summaries,
    /// exponential histograms); `history`: rows before the query's span are needed too (the
    /// deltas).
    Rows { history: bool },
}

impl Exposed {
    fn bytes(&self) -> usize {
        const ENTRY: usize = 64;
        match self {
            Exposed::Columns(series) => series
                .iter()
                .map(|(labels, _, _)| {
                    ENTRY
                        + labels
                            .iter()
                            .map(|(k, v)| k.len() + v.len() + ENTRY)
                            .sum::<usize>()
                })
                .sum::<usize>(),
            Exposed::Rows { .. } => ENTRY,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct ExposedCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<(u64, String), Arc<Exposed>>,
    bytes: usize,
}

impl ExposedCache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn get(&self, id: u64, family: &str) -> Option<Arc<Exposed>> {
        self.lock().by_id.get(&(id, family.to_string())).cloned()
    }

    /// Keeps `exposed` for `id` read as `family` within `budget` bytes; 0 keeps nothing.
    pub(super) fn insert(&self, id: u64, family: &str, exposed: Arc<Exposed>, budget: usize) {
        let bytes = exposed.bytes() + family.len();
        if bytes > budget {
            return;
        }
        let mut inner = self.lock();
        if inner.bytes + bytes > budget {
            inner.by_id.clear();
            inner.bytes = 0;
        }
        if let Some(old) = inner.by_id.insert((id, family.to_string()), exposed) {
            inner.bytes -= old.bytes() + family.len();
        }
        inner.bytes += bytes;
    }

    /// The estimated size of what is kept.
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposed(job: &str) -> Arc<Exposed> {
        let labels: Labels = [("job".to_string(), job.to_string())].into_iter().collect();
        Arc::new(Exposed::Columns(vec![(labels, Part::Value, 0)]))
    }

    #[test]
    fn stays_within_its_budget() {
        let cache = ExposedCache::default();
        let one = exposed("a").bytes() + 1;
        let budget = one * 3;
        for id in 0..10 {
            cache.insert(id, "m", exposed("a"), budget);
            assert!(cache.bytes() <= budget, "{} > {budget}", cache.bytes());
            assert!(cache.get(id, "m").is_some(), "the newest entry is kept");
            assert!(
                cache.get(id, "m_ms").is_none(),
                "under another family name it is not"
            );
        }
        // Emptied when full: the oldest are gone.
        assert!(cache.get(0, "m").is_none());
        let nothing = ExposedCache::default();
        nothing.insert(1, "m", exposed("a"), 0);
        assert!(nothing.get(1, "m").is_none(), "a budget of 0 keeps nothing");
    }
}
