//! Reading a family's points and the keys of its series: from the parts (kept once decoded)
//! and the memtable.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, UInt64Type};
use futures::{StreamExt, TryStreamExt};
use spyglass_store::{Signal, Snapshot};

use super::{Family, Key};
use crate::QueryEngine;
use crate::error::{Error, Result};
use crate::tables::SnapshotTable;

/// Parts whose span-metric points are decoded at once when not kept yet.
const PARALLEL_PART_READS: usize = 4;

/// Series kept in [`SeriesKeys`] at most; past it the cache starts again empty.
const MAX_CACHED_SERIES: usize = 100_000;

/// What does not change from point to point of a series.
#[derive(Clone, Debug, Default)]
pub(crate) struct SeriesInfo {
    pub(crate) key: Key,
    /// The histogram's bucket bounds (empty for a sum). Spyglass writes span metrics with
    /// fixed bounds; a series is read with the bounds of one of its points, as Prometheus
    /// reads a series with one set of `le` labels.
    pub(crate) bounds: Vec<f64>,
}

/// The key columns and bounds of series by id, shared by the engine's queries, so a query over
/// a window reads the points' values without decoding their attribute maps or bounds.
#[derive(Default)]
pub(crate) struct SeriesKeys(Mutex<HashMap<u64, SeriesInfo>>);

impl SeriesKeys {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, SeriesInfo>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl QueryEngine {
    /// The points of a family's metrics that `[from, end]` may need, as batches of the columns
    /// [`Rows`] reads: every point of each overlapping part (kept in the engine's
    /// [`PointCache`] once decoded) and the memtable's points in the window; only the window's
    /// points when the engine keeps none.
    pub(super) async fn family_points(
        &self,
        snapshot: &Snapshot,
        family: &Family,
        from: u64,
        end: u64,
    ) -> Result<Vec<RecordBatch>> {
        let select = format!(
            "SELECT metric_name, series_id, time_unix_nano, start_time_unix_nano, value, \
                    bucket_counts \
             FROM metrics WHERE metric_name IN ({})",
            family.names()
        );
        let table = SnapshotTable::new(Signal::Metrics, snapshot.clone());
        let window = format!(" AND time_unix_nano >= {from} AND time_unix_nano <= {end}");
        if !self.points.keeps_any() {
            // Nothing is kept: read only the window's points, of parts and memtable at once.
            return self
                .internal_sql_over(snapshot, table, &(select + &window))
                .await;
        }
        let parts = snapshot.parts(Signal::Metrics);
        self.points
            .retain_parts(&parts.iter().map(|p| p.meta().id).collect());
        let mut batches = Vec::new();
        let mut missing = Vec::new();
        for part in parts {
            let meta = part.meta();
            if !meta.overlaps(from, end) {
                continue;
            }
            match self.points.get(meta.id, family.calls) {
                Some(kept) => batches.extend(kept.iter().cloned()),
                None => missing.push(part),
            }
        }
        let reads = missing.into_iter().map(|part| {
            let table = table.restricted_to(vec![part.clone()]).without_memtable();
            let select = &select;
            async move {
                let points = self.internal_sql_over(snapshot, table, select).await?;
                Ok::<_, Error>(self.points.insert(part.meta().id, family.calls, points))
            }
        });
        // A few parts at a time: a long window's first query must not hold every part at once.
        let decoded: Vec<_> = futures::stream::iter(reads)
            .buffer_unordered(PARALLEL_PART_READS)
            .try_collect()
            .await?;
        for kept in decoded {
            batches.extend(kept.iter().cloned());
        }
        // The memtable changes with every append: read each time, for the window only.
        let memtable = table.restricted_to(Vec::new());
        batches.extend(
            self.internal_sql_over(snapshot, memtable, &(select + &window))
                .await?,
        );
        Ok(batches)
    }

    /// The key columns and bounds of the series `ids` (sorted, distinct): from the cache, and
    /// for series not seen before from their rows in the window, which decodes attribute maps
    /// and bounds only for them. The newest part in the window and the memtable are read first:
    /// they hold nearly every live series, and the older parts are read only for the rest. A
    /// series id hashes the series' identity, so its keys never change.
    pub(super) async fn series_keys(
        &self,
        snapshot: &Snapshot,
        family: &Family,
        from: u64,
        end: u64,
        ids: &[u64],
    ) -> Result<HashMap<u64, SeriesInfo>> {
        let mut keys = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        {
            let cache = self.series_keys.lock();
            for &id in ids {
                match cache.get(&id) {
                    Some(key) => {
                        keys.insert(id, key.clone());
                    }
                    None => missing.push(id),
                }
            }
        }
        let mut older: Vec<_> = snapshot
            .parts(Signal::Metrics)
            .into_iter()
            .filter(|p| p.meta().overlaps(from, end))
            .collect();
        older.sort_by_key(|p| std::cmp::Reverse(p.meta().max_time_unix_nano));
        let newest = match older.is_empty() {
            true => Vec::new(),
            false => vec![older.remove(0)],
        };
        let table = SnapshotTable::new(Signal::Metrics, snapshot.clone());
        let reads = [
            table.restricted_to(newest),
            table.restricted_to(older).without_memtable(),
        ];
        let [k1, k2, k3] = family.keys.map(|k| k.sql());
        for read in reads {
            if missing.is_empty() {
                break;
            }
            let list: Vec<String> = missing.iter().map(u64::to_string).collect();
            let sql = format!(
                "SELECT series_id, {k1}, {k2}, {k3}, explicit_bounds FROM metrics \
                 WHERE metric_name IN ({}) \
                   AND time_unix_nano >= {from} AND time_unix_nano <= {end} \
                   AND series_id IN ({})",
                family.names(),
                list.join(", ")
            );
            let found = self.internal_sql_over(snapshot, read, &sql).await?;
            self.remember_keys(&found, &mut keys);
            missing.retain(|id| !keys.contains_key(id));
        }
        Ok(keys)
    }

    /// Takes each series' keys from its first row in `found` (series id, three keys, bounds)
    /// into `keys` and the engine's cache.
    fn remember_keys(&self, found: &[RecordBatch], keys: &mut HashMap<u64, SeriesInfo>) {
        let mut cache = self.series_keys.lock();
        for batch in found {
            let series = batch.column(0).as_primitive::<UInt64Type>();
            let text = |c: usize, i: usize| {
                let column = batch.column(c).as_string::<i32>();
                match column.is_null(i) {
                    true => String::new(),
                    false => column.value(i).to_string(),
                }
            };
            for i in 0..batch.num_rows() {
                let id = series.value(i);
                if keys.contains_key(&id) {
                    continue;
                }
                let bounds = batch.column(4).as_list::<i32>();
                let info = SeriesInfo {
                    key: (text(1, i), text(2, i), text(3, i)),
                    bounds: match bounds.is_null(i) {
                        true => Vec::new(),
                        false => bounds
                            .value(i)
                            .as_primitive::<Float64Type>()
                            .values()
                            .to_vec(),
                    },
                };
                if cache.len() >= MAX_CACHED_SERIES {
                    cache.clear();
                }
                cache.insert(id, info.clone());
                keys.insert(id, info);
            }
        }
    }
}
