//! The span-metric points of Parquet parts, decoded once and kept between queries.
//!
//! A part never changes, so the points of a family's metrics in it, once decoded, serve every
//! later window that touches the part: the services list that the UI asks for again and again
//! decodes only the memtable and the parts it has not seen yet. The cache holds at most its
//! budget of decoded bytes, dropping the least recently used parts first, and forgets parts
//! that compaction has replaced.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow::array::RecordBatch;

/// Decoded points by part id and family (its calls metric's name).
pub(crate) struct PointCache {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<(u64, &'static str), Entry>,
    bytes: usize,
    /// Counts lookups; an entry keeps the count of its last use.
    clock: u64,
}

struct Entry {
    points: Arc<[RecordBatch]>,
    bytes: usize,
    used: u64,
}

impl PointCache {
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::default(),
        }
    }

    /// Whether anything can be kept (the budget is not 0).
    pub(crate) fn keeps_any(&self) -> bool {
        self.budget > 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The points of `family` in part `part`, when kept.
    pub(crate) fn get(&self, part: u64, family: &'static str) -> Option<Arc<[RecordBatch]>> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let entry = inner.entries.get_mut(&(part, family))?;
        entry.used = now;
        Some(entry.points.clone())
    }

    /// Keeps the points of `family` in part `part` if they fit the budget, making room by
    /// dropping the least recently used parts; returns them either way.
    pub(crate) fn insert(
        &self,
        part: u64,
        family: &'static str,
        points: Vec<RecordBatch>,
    ) -> Arc<[RecordBatch]> {
        let bytes: usize = points.iter().map(RecordBatch::get_array_memory_size).sum();
        let points: Arc<[RecordBatch]> = points.into();
        if bytes > self.budget {
            return points;
        }
        let mut inner = self.lock();
        while inner.bytes + bytes > self.budget {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            inner.remove(&oldest);
        }
        inner.clock += 1;
        let entry = Entry {
            points: points.clone(),
            bytes,
            used: inner.clock,
        };
        inner.bytes += bytes;
        if let Some(old) = inner.entries.insert((part, family), entry) {
            inner.bytes -= old.bytes;
        }
        points
    }

    /// Forgets every part not in `live` (the parts of the latest snapshot).
    pub(crate) fn retain_parts(&self, live: &HashSet<u64>) {
        let mut inner = self.lock();
        let gone: Vec<_> = inner
            .entries
            .keys()
            .filter(|(part, _)| !live.contains(part))
            .copied()
            .collect();
        for key in gone {
            inner.remove(&key);
        }
    }

    /// Decoded bytes kept.
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

impl Inner {
    fn remove(&mut self, key: &(u64, &'static str)) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes -= entry.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{RecordBatch, UInt64Array};

    use super::PointCache;

    fn points(rows: u64) -> Vec<RecordBatch> {
        let column = Arc::new(UInt64Array::from_iter_values(0..rows));
        vec![RecordBatch::try_from_iter([("series_id", column as _)]).unwrap()]
    }

    #[test]
    fn keeps_within_budget_dropping_least_recently_used_parts() {
        let size: usize = points(1000).iter().map(|b| b.get_array_memory_size()).sum();
        let cache = PointCache::new(size * 2);
        cache.insert(1, "calls", points(1000));
        cache.insert(2, "calls", points(1000));
        assert!(cache.get(1, "calls").is_some());
        // Part 2 is now the least recently used, so it makes room for part 3.
        cache.insert(3, "calls", points(1000));
        assert!(cache.get(2, "calls").is_none());
        assert!(cache.get(1, "calls").is_some());
        assert!(cache.get(3, "calls").is_some());
        assert!(cache.bytes() <= size * 2);
        // Another family of the same part is another entry.
        assert!(cache.get(1, "graph").is_none());
        // Too big for the whole budget: returned, not kept.
        let big = cache.insert(4, "calls", points(10_000));
        assert_eq!(big[0].num_rows(), 10_000);
        assert!(cache.get(4, "calls").is_none());
        assert!(cache.get(1, "calls").is_some());
    }

    #[test]
    fn forgets_parts_no_longer_live() {
        let cache = PointCache::new(usize::MAX);
        cache.insert(1, "calls", points(10));
        cache.insert(2, "calls", points(10));
        cache.retain_parts(&[2].into_iter().collect());
        assert!(cache.get(1, "calls").is_none());
        assert!(cache.get(2, "calls").is_some());
        let left: usize = points(10).iter().map(|b| b.get_array_memory_size()).sum();
        assert_eq!(cache.bytes(), left);
    }
}
