//! The series each stored series exposes, worked out once from one of its rows and kept for
//! later queries. A stored series' id is a hash of its name, type, attributes and resource, so
//! what it exposes does not change; only the value columns of its rows need reading again.
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
    /// Series worked out from whole rows (deltas added up from the first point, summaries).
    Rows,
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
            Exposed::Rows => ENTRY,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct ExposedCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<u64, Arc<Exposed>>,
    bytes: usize,
}

impl ExposedCache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn get(&self, id: u64) -> Option<Arc<Exposed>> {
        self.lock().by_id.get(&id).cloned()
    }

    /// Keeps `exposed` for `id` within `budget` bytes; 0 keeps nothing.
    pub(super) fn insert(&self, id: u64, exposed: Arc<Exposed>, budget: usize) {
        let bytes = exposed.bytes();
        if bytes > budget {
            return;
        }
        let mut inner = self.lock();
        if inner.bytes + bytes > budget {
            inner.by_id.clear();
            inner.bytes = 0;
        }
        if let Some(old) = inner.by_id.insert(id, exposed) {
            inner.bytes -= old.bytes();
        }
        inner.bytes += bytes;
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
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
        let one = exposed("a").bytes();
        let budget = one * 3;
        for id in 0..10 {
            cache.insert(id, exposed("a"), budget);
            assert!(cache.bytes() <= budget, "{} > {budget}", cache.bytes());
            assert!(cache.get(id).is_some(), "the newest entry is kept");
        }
        // Emptied when full: the oldest are gone.
        assert!(cache.get(0).is_none());
        let nothing = ExposedCache::default();
        nothing.insert(1, exposed("a"), 0);
        assert!(nothing.get(1).is_none(), "a budget of 0 keeps nothing");
    }
}
