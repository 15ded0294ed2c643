//! The value columns of metric rows, read straight from the parts' Parquet files and the
//! memtable for PromQL selections: the one read a range query spends most of its time in.
//!
//! A part's rows are sorted by name, series and time, so most of its row groups hold one name;
//! their name and time statistics decide which row groups to read, and a row group of only
//! wanted names inside the window is read without its name column and without any filter. Only
//! row groups at an edge (another name, or times outside the window) get their rows filtered.
//! Two parts are read at a time, on blocking threads; batches come back as they are read.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, UInt64Type};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::RowGroupMetaData;
use parquet::file::statistics::Statistics;
use spyglass_store::{Part, Signal, Snapshot};

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Parts read at once.
const PARALLEL: usize = 2;
const BATCH_ROWS: usize = 16 * 1024;

/// What to read: rows of `names` with `time_unix_nano` in `[from, to]` (ns), the `columns` (in
/// this order; `series_id` and `time_unix_nano` first).
#[derive(Clone, Debug)]
pub(super) struct ValueScan {
    pub names: Vec<String>,
    pub from: u64,
    pub to: u64,
    pub columns: Vec<&'static str>,
}

impl ValueScan {
    /// Hands each batch of `snapshot`'s rows to `each` as it is read (parts in no set order,
    /// then the memtable), with the place of its source in ingest order: parts by id, the
    /// memtable last (of two points of a series at one time, the one from the later source
    /// is the one kept). `each` returning false stops the scan.
    pub(super) async fn run(
        self,
        snapshot: &Snapshot,
        mut each: impl FnMut(u64, RecordBatch) -> bool,
    ) -> Result<(), String> {
        let scan = Arc::new(self);
        let parts: VecDeque<Arc<Part>> = snapshot
            .parts(Signal::Metrics)
            .into_iter()
            .filter(|p| p.meta().overlaps(scan.from, scan.to))
            .collect();
        let queue = Arc::new(Mutex::new(parts));
        // Set when the reading stops early for any reason (the consumer is done, failed, or
        // was dropped on a timeout): readers leave at their next batch.
        let stop = Arc::new(AtomicBool::new(false));
        let _stop_on_drop = StopOnDrop(stop.clone());
        let (send, mut receive) =
            tokio::sync::mpsc::channel::<Result<(u64, RecordBatch), String>>(8);
        let readers: Vec<_> = (0..PARALLEL)
            .map(|_| {
                let (queue, send, scan) = (queue.clone(), send.clone(), scan.clone());
                let stop = stop.clone();
                tokio::task::spawn_blocking(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let part = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                        let Some(part) = part else {
                            return;
                        };
                        let id = part.meta().id;
                        let read = scan.read_part(&part, &mut |batch| {
                            !stop.load(Ordering::Relaxed)
                                && send.blocking_send(Ok((id, batch))).is_ok()
                        });
                        if let Err(e) = read {
                            let _ = send.blocking_send(Err(format!(
                                "reading {}: {e}",
                                part.path().display()
                            )));
                            return;
                        }
                    }
                })
            })
            .collect();
        drop(send);
        let mut outcome = Ok(true);
        while let Some(read) = receive.recv().await {
            match read {
                Ok((id, batch)) => {
                    if !each(id, batch) {
                        outcome = Ok(false);
                        break;
                    }
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        // Readers blocked on a full channel see it closed and stop.
        drop(receive);
        for reader in readers {
            reader
                .await
                .map_err(|e| format!("a part reader failed: {e}"))?;
        }
        if !outcome? {
            return Ok(());
        }
        for batch in snapshot.memtable_batches(Signal::Metrics) {
            if let Some(batch) = scan.wanted_rows(&batch)?
                && !each(u64::MAX, batch)
            {
                break;
            }
        }
        Ok(())
    }

    /// Reads one part's wanted row groups, handing over batches until `each` says stop.
    fn read_part(
        &self,
        part: &Part,
        each: &mut dyn FnMut(RecordBatch) -> bool,
    ) -> Result<(), String> {
        let file = File::open(part.path()).map_err(|e| e.to_string())?;
        // The footer the part keeps (parsed again only when the footer cache dropped it).
        let arrow_metadata = part.reader_metadata().map_err(|e| e.to_string())?;
        let metadata = arrow_metadata.metadata().clone();
        let fields = metadata
            .file_metadata()
            .schema_descr()
            .root_schema()
            .get_fields()
            .to_vec();
        let root = |name: &str| {
            fields
                .iter()
                .position(|f| f.name() == name)
                .ok_or_else(|| format!("the part lacks the column {name}"))
        };
        let name_leaf = leaf(metadata.row_groups(), "prometheus_name");
        let time_leaf = leaf(metadata.row_groups(), "time_unix_nano");
        // Row groups wholly of wanted names and inside the window, and those at an edge.
        let (mut whole, mut edge) = (Vec::new(), Vec::new());
        for (i, group) in metadata.row_groups().iter().enumerate() {
            let (names, times) = (
                name_leaf.and_then(|c| text_bounds(group, c)),
                time_leaf.and_then(|c| time_bounds(group, c)),
            );
            if let Some((lo, hi)) = &names
                && !self.names.iter().any(|n| lo <= n && n <= hi)
            {
                continue;
            }
            if let Some((lo, hi)) = times
                && (hi < self.from || lo > self.to)
            {
                continue;
            }
            let one_name = names.is_some_and(|(lo, hi)| lo == hi && self.names.contains(&lo));
            let inside = times.is_some_and(|(lo, hi)| lo >= self.from && hi <= self.to);
            match one_name && inside {
                true => whole.push(i),
                false => edge.push(i),
            }
        }
        for (groups, filtered) in [(whole, false), (edge, true)] {
            if groups.is_empty() {
                continue;
            }
            let mut roots = self
                .columns
                .iter()
                .map(|c| root(c))
                .collect::<Result<Vec<_>, _>>()?;
            if filtered {
                roots.push(root("prometheus_name")?);
            }
            let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(
                file.try_clone().map_err(|e| e.to_string())?,
                arrow_metadata.clone(),
            );
            let mask = ProjectionMask::roots(reader.parquet_schema(), roots);
            let reader = reader
                .with_projection(mask)
                .with_row_groups(groups)
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| e.to_string())?;
            for batch in reader {
                let batch = batch.map_err(|e| e.to_string())?;
                let batch = match filtered {
                    true => self.wanted_rows(&batch)?,
                    false => Some(self.in_order(&batch)?),
                };
                if let Some(batch) = batch
                    && !each(batch)
                {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// `batch`'s columns in the scan's order.
    fn in_order(&self, batch: &RecordBatch) -> Result<RecordBatch, String> {
        let schema = batch.schema();
        let indices = self
            .columns
            .iter()
            .map(|c| schema.index_of(c).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        batch.project(&indices).map_err(|e| e.to_string())
    }

    /// The rows of `batch` of wanted names and times, in the scan's columns; `None` when none
    /// is.
    fn wanted_rows(&self, batch: &RecordBatch) -> Result<Option<RecordBatch>, String> {
        let rows = batch.num_rows();
        let column = batch
            .column_by_name("prometheus_name")
            .ok_or("no prometheus_name column")?;
        let names = arrow::compute::cast(column, &DataType::Utf8).map_err(|e| e.to_string())?;
        let names = names.as_string::<i32>();
        let times = batch
            .column_by_name("time_unix_nano")
            .ok_or("no time_unix_nano column")?
            .as_primitive_opt::<UInt64Type>()
            .ok_or("time_unix_nano is not UInt64")?;
        let keep: Vec<bool> = (0..rows)
            .map(|k| {
                !names.is_null(k)
                    && self.names.iter().any(|n| n == names.value(k))
                    && (self.from..=self.to).contains(&times.value(k))
            })
            .collect();
        let kept = keep.iter().filter(|k| **k).count();
        if kept == 0 {
            return Ok(None);
        }
        let batch = self.in_order(batch)?;
        if kept == rows {
            return Ok(Some(batch));
        }
        filter_record_batch(&batch, &BooleanArray::from(keep))
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

/// The leaf column index of the top-level column `name`.
fn leaf(groups: &[RowGroupMetaData], name: &str) -> Option<usize> {
    let group = groups.first()?;
    group
        .columns()
        .iter()
        .position(|c| c.column_path().string() == name)
}

/// A row group's smallest and largest value of a string column, when both are exact.
fn text_bounds(group: &RowGroupMetaData, column: usize) -> Option<(String, String)> {
    let Some(Statistics::ByteArray(s)) = group.column(column).statistics() else {
        return None;
    };
    if !s.min_is_exact() || !s.max_is_exact() {
        return None;
    }
    let text = |b: &parquet::data_type::ByteArray| b.as_utf8().ok().map(str::to_string);
    Some((text(s.min_opt()?)?, text(s.max_opt()?)?))
}

/// A row group's earliest and latest time.
fn time_bounds(group: &RowGroupMetaData, column: usize) -> Option<(u64, u64)> {
    let Some(Statistics::Int64(s)) = group.column(column).statistics() else {
        return None;
    };
    Some((*s.min_opt()? as u64, *s.max_opt()? as u64))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, UInt32Type, UInt64Type};
    use spyglass_store::model::{
        AttrValue, Attributes, KeyValue, MetricPoint, MetricType, NumberValue, PointValue,
        Resource, Scope, Temporality,
    };
    use spyglass_store::{Durability, Records, Store, StoreConfig};

    use super::ValueScan;
    use crate::{QueryConfig, QueryEngine};

    const SECOND: u64 = 1_000_000_000;
    const T0: u64 = 1_700_000_000 * SECOND;

    fn point(name: &str, series: usize, t: u64, value: f64) -> MetricPoint {
        MetricPoint {
            metric_name: name.into(),
            description: String::new(),
            unit: String::new(),
            metric_type: MetricType::Gauge,
            temporality: Temporality::Unspecified,
            is_monotonic: false,
            attributes: Attributes::new(vec![KeyValue {
                key: "k".into(),
                value: AttrValue::Str(format!("s{series}")),
            }]),
            time_unix_nano: t,
            start_time_unix_nano: 0,
            flags: 0,
            value: PointValue::Number(NumberValue::Double(value)),
            exemplars: Vec::new(),
            resource: Arc::new(Resource::default()),
            scope: Arc::new(Scope::default()),
        }
    }

    /// `(series_id, time, flags, value)` of each row, sorted.
    fn rows(batches: &[arrow::array::RecordBatch]) -> Vec<(u64, u64, u32, Option<u64>)> {
        let mut out = Vec::new();
        for b in batches {
            let ids = b.column(0).as_primitive::<UInt64Type>();
            let times = b.column(1).as_primitive::<UInt64Type>();
            let flags = b.column(2).as_primitive::<UInt32Type>();
            let values = b.column(3).as_primitive::<Float64Type>();
            for r in 0..b.num_rows() {
                let value = (!values.is_null(r)).then(|| values.value(r).to_bits());
                out.push((ids.value(r), times.value(r), flags.value(r), value));
            }
        }
        out.sort();
        out
    }

    /// The direct read returns exactly the rows SQL selects, from parts (row groups of several
    /// names and times cut by the window) and the memtable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_the_rows_sql_selects() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            durability: Durability::None,
            parquet_row_group_rows: 37,
            ..StoreConfig::default()
        };
        let (store, _) = Store::open(dir.path(), config).unwrap();
        for (i, flush) in [(0..60u64, true), (60..90, true), (90..100, false)] {
            for step in i {
                let t = T0 + step * 15 * SECOND;
                let points = ["alpha", "beta", "gamma"]
                    .iter()
                    .flat_map(|name| {
                        (0..4).map(move |s| point(name, s, t, (step * s as u64) as f64))
                    })
                    .collect();
                store.append(&Records::Metrics(points)).await.unwrap();
            }
            if flush {
                store.flush().await.unwrap();
            }
        }
        let engine = QueryEngine::new(store.clone(), QueryConfig::default());
        let at = |step: u64| T0 + step * 15 * SECOND;
        for (names, from, to) in [
            (vec!["beta"], at(10), at(75)),
            (vec!["alpha", "gamma"], at(0), at(99)),
            (vec!["gamma"], at(55) + 1, at(95) - 1),
            (vec!["beta"], at(200), at(300)),
            (vec!["delta"], at(0), at(99)),
        ] {
            let names: Vec<String> = names.into_iter().map(String::from).collect();
            let scan = ValueScan {
                names: names.clone(),
                from,
                to,
                columns: vec!["series_id", "time_unix_nano", "flags", "value"],
            };
            let mut read = Vec::new();
            scan.run(&store.snapshot(), |_, b| {
                read.push(b);
                true
            })
            .await
            .unwrap();
            let list: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
            let sql = format!(
                "SELECT series_id, time_unix_nano, flags, value FROM metrics \
                 WHERE prometheus_name IN ({}) AND time_unix_nano >= {from} \
                 AND time_unix_nano <= {to}",
                list.join(", ")
            );
            let expected = engine.internal_sql(&sql).await.unwrap();
            let (got, want) = (rows(&read), rows(&expected));
            assert_eq!(got, want, "{names:?} in [{from}, {to}]");
            if names[0] != "delta" && from < at(100) {
                assert!(!want.is_empty(), "{names:?}: the case reads rows");
            }
        }
    }
}
