//! The read path of PromQL over the `metrics` table: what a query needs read with SQL (labels
//! once per stored series, then the value columns), turned into series by [`super::otlp`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, UInt32Type, UInt64Type};

use promql_parser::label::{MatchOp, Matcher};
use spyglass_store::model::{MetricPoint, MetricType};

use super::cache::Exposed;
use super::otlp::{
    NO_RECORDED_VALUE, Part, TARGET_INFO, accumulates, base_labels, exposed, label_name,
    later_wins, part_values, translate,
};
use super::source::matches;
use super::{Labels, METRIC_NAME, MemorySource, PromError, Series, stale_marker};
use crate::QueryEngine;
use crate::health::sql_string;

impl QueryEngine {
    /// Reads the series of each selection, by its key.
    pub(super) async fn gather(
        &self,
        needs: Vec<super::Selection>,
    ) -> Result<HashMap<usize, Vec<Series>>, PromError> {
        let limits = self.config.promql_limits();
        let mut out = HashMap::new();
        let (mut series_read, mut samples) = (0usize, 0usize);
        for need in needs {
            let mut seen: std::collections::HashSet<Labels> = std::collections::HashSet::new();
            let mut selected = Vec::new();
            for matchers in &need.matchers {
                for series in self.read_series(matchers, need.from, need.to).await? {
                    samples += series.len();
                    if samples > limits.max_samples {
                        return Err(too_many_samples(limits.max_samples));
                    }
                    // A series two of the selector's `or` alternatives match is read once.
                    if need.matchers.len() == 1 || seen.insert(series.labels.clone()) {
                        selected.push(series);
                    }
                }
            }
            series_read += selected.len();
            if series_read > limits.max_series {
                return Err(PromError::execution(format!(
                    "query reads more than max_series = {} series; narrow its selectors",
                    limits.max_series
                )));
            }
            out.insert(need.key, selected);
        }
        Ok(out)
    }

    /// The series matching `matchers` with their points in `[from, to]` (ms).
    ///
    /// Labels are read once per stored series (from its rows at the first time it has in the
    /// span), then only the value columns of every row: the maps a row carries are the costly
    /// part to read, and they are the same on every row of a series.
    pub(super) async fn read_series(
        &self,
        matchers: &[Matcher],
        from: i64,
        to: i64,
    ) -> Result<Vec<Series>, PromError> {
        let mut out = self.stored_series(matchers, from, to).await?;
        let names_target_info = matchers
            .iter()
            .filter(|m| m.name == METRIC_NAME)
            .all(|m| m.is_match(TARGET_INFO));
        if names_target_info {
            out.extend(self.target_info(matchers, from, to).await?);
        }
        Ok(out)
    }

    /// `target_info`, as Prometheus's OTLP receiver writes it: 1 for each resource with
    /// attributes beyond `job` and `instance`, at each time it sent points, labelled with
    /// them all.
    pub(super) async fn target_info(
        &self,
        matchers: &[Matcher],
        from: i64,
        to: i64,
    ) -> Result<Vec<Series>, PromError> {
        let sql = format!(
            "SELECT DISTINCT ON (service_name, time_unix_nano) * FROM metrics WHERE {}",
            time_condition(from, to)
        );
        let mut series: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        for point in self.points(&sql).await? {
            let mut labels = base_labels(&point, &[]);
            labels.retain(|k, _| k == "job" || k == "instance");
            let before = labels.len();
            for kv in point.resource.attributes.iter() {
                if !matches!(
                    kv.key.as_str(),
                    "service.name" | "service.namespace" | "service.instance.id"
                ) {
                    labels.insert(label_name(&kv.key), kv.value.display().into_owned());
                }
            }
            labels.retain(|_, v| !v.is_empty());
            if labels.len() == before {
                continue;
            }
            labels.insert(METRIC_NAME.into(), TARGET_INFO.into());
            if matches(&labels, matchers) {
                let t = (point.time_unix_nano / 1_000_000) as i64;
                series.entry(labels).or_default().push((t, 1.0));
            }
        }
        Ok(series
            .into_iter()
            .map(|(labels, mut points)| {
                points.sort_by_key(|p| p.0);
                points.dedup_by_key(|p| p.0);
                Series::floats(labels, points)
            })
            .collect())
    }

    /// The series the `metrics` table stores under the names `matchers` can match.
    ///
    /// One scan of the value columns; what each stored series exposes (its labels) comes from
    /// the engine's [`ExposedCache`], and for series not in it from their rows at the first
    /// time the scan saw them: the maps a row carries are the costly part to read, and they
    /// are the same on every row of a series.
    pub(super) async fn stored_series(
        &self,
        matchers: &[Matcher],
        from: i64,
        to: i64,
    ) -> Result<Vec<Series>, PromError> {
        let families = self.families(matchers, from, to).await?;
        if families.is_empty() {
            return Ok(Vec::new());
        }
        let names = in_list(&families);
        let window = time_condition(from, to);
        // A single family named exactly as the selector asks is a gauge or a sum (a histogram
        // or a summary of that name exposes other names; an exponential histogram's series
        // are read row by row): its value column is all it needs.
        let only_values = families.len() == 1
            && matchers
                .iter()
                .any(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal && m.value == families[0]);
        let mut columns = vec!["series_id", "time_unix_nano", "flags", "value"];
        if !only_values {
            columns.extend(["count", "sum", "bucket_counts"]);
        }
        // Each stored series' exposed series that `matchers` select, as indexes into `out`,
        // worked out as the scan first meets the series; batches holding series not in the
        // cache wait until their labels are read.
        let mut out: Vec<Series> = Vec::new();
        let mut runs: Vec<Runs> = Vec::new();
        let mut targets: HashMap<u64, Targets> = HashMap::new();
        let mut slow: Vec<(u64, bool)> = Vec::new();
        let mut missing: HashMap<u64, u64> = HashMap::new();
        let mut waiting: Vec<(u64, RecordBatch)> = Vec::new();
        // Rows of series not in the cache, held until their labels are read.
        let mut held = 0usize;
        let mut read = 0usize;
        let limit = self.config.promql_max_samples;
        let mut failed = None;
        let scan = super::scan::ValueScan {
            names: families.clone(),
            from: ms_to_ns(from),
            to: ms_to_ns(to).saturating_add(999_999),
            columns,
        };
        let snapshot = self.snapshot();
        let timeout = self.config.query_timeout();
        // Labels depend on the family name too (a unit change keeps the series id).
        let family = families.join(",");
        let scanned = scan.run(&snapshot, |seq, batch| {
            let ids = batch.column(0).as_primitive::<UInt64Type>();
            let times = batch.column(1).as_primitive::<UInt64Type>();
            let mut last = None;
            let mut waits = false;
            let mut holding = false;
            for (row, &id) in ids.values().iter().enumerate() {
                if last == Some(id) || targets.contains_key(&id) {
                    last = Some(id);
                    held += usize::from(holding);
                    continue;
                }
                last = Some(id);
                holding = false;
                if let Some(first) = missing.get_mut(&id) {
                    *first = (*first).min(times.value(row));
                    (waits, holding) = (true, true);
                    held += 1;
                    continue;
                }
                match self.exposed.get(id, &family) {
                    Some(exposed) => {
                        let here = select(&exposed, matchers, &mut out);
                        if let Exposed::Rows { history } = *exposed {
                            slow.push((id, history));
                        }
                        targets.insert(id, here.unwrap_or_default());
                    }
                    None => {
                        missing.insert(id, times.value(row));
                        (waits, holding) = (true, true);
                        held += 1;
                    }
                }
            }
            runs.resize_with(out.len(), Vec::new);
            read += read_values(seq, &batch, &targets, &mut runs);
            if waits {
                waiting.push((seq, batch));
            }
            if read + held > limit {
                failed = Some(too_many_samples(limit));
            }
            failed.is_none()
        });
        tokio::time::timeout(timeout, scanned)
            .await
            .map_err(|_| PromError::timeout(timeout))?
            .map_err(internal)?;
        if let Some(e) = failed {
            return Err(e);
        }
        if !missing.is_empty() {
            let mut late = HashMap::new();
            let found = self
                .exposed_of(&snapshot, &names, &window, &missing, &family)
                .await?;
            for (id, exposed) in found {
                let here = select(&exposed, matchers, &mut out);
                if let Exposed::Rows { history } = *exposed {
                    slow.push((id, history));
                }
                late.insert(id, here.unwrap_or_default());
            }
            for (seq, batch) in &waiting {
                runs.resize_with(out.len(), Vec::new);
                read += read_values(*seq, batch, &late, &mut runs);
                if read > limit {
                    return Err(too_many_samples(limit));
                }
            }
        }
        runs.resize_with(out.len(), Vec::new);
        for (series, runs) in out.iter_mut().zip(runs) {
            series.points = in_time_order(runs);
            later_wins(&mut series.points);
        }
        out.retain(|s| !s.is_empty());
        for history in [true, false] {
            let ids: Vec<u64> = slow
                .iter()
                .filter(|(_, h)| *h == history)
                .map(|(id, _)| *id)
                .collect();
            if !ids.is_empty() {
                let since = if history { None } else { Some(from) };
                out.extend(
                    self.read_series_rows(matchers, &ids, since, from, to)
                        .await?,
                );
            }
        }
        Ok(out)
    }

    /// What the stored series `first` names expose, from their rows at the given times (the
    /// first each has in the span; scraped series share their times, so the times are few),
    /// kept in the engine's cache.
    pub(super) async fn exposed_of(
        &self,
        snapshot: &spyglass_store::Snapshot,
        names: &str,
        window: &str,
        first: &HashMap<u64, u64>,
        family: &str,
    ) -> Result<HashMap<u64, Arc<Exposed>>, PromError> {
        let times: std::collections::BTreeSet<u64> = first.values().copied().collect();
        let list = |values: &mut dyn Iterator<Item = u64>| {
            values.map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
        };
        // The scan's snapshot: the rows it saw are there still.
        let table =
            crate::tables::SnapshotTable::new(spyglass_store::Signal::Metrics, snapshot.clone());
        let heads = self
            .internal_sql_over(
                snapshot,
                table,
                &format!(
                    "SELECT * FROM metrics WHERE prometheus_name IN ({names}) AND {window} \
                 AND time_unix_nano IN ({}) AND series_id IN ({})",
                    list(&mut times.into_iter()),
                    list(&mut first.keys().copied())
                ),
            )
            .await
            .map_err(internal)?;
        let promoted = &self.config.promote_resource_attributes;
        let budget = self.config.promql_series_cache_bytes;
        let mut out = HashMap::new();
        for batch in &heads {
            let ids = batch
                .column_by_name("series_id")
                .ok_or_else(|| internal("no series_id column"))?
                .as_primitive::<UInt64Type>()
                .clone();
            let points = spyglass_store::schema::metrics_from_batch(batch).map_err(internal)?;
            for (row, point) in points.iter().enumerate() {
                let id = ids.value(row);
                if out.contains_key(&id) {
                    continue;
                }
                let exposed = Arc::new(exposed_by(point, promoted));
                self.exposed.insert(id, family, exposed.clone(), budget);
                out.insert(id, exposed);
            }
        }
        Ok(out)
    }

    /// Row by row, every column, from `since` (`None`: from their first point, for delta
    /// series, which are added up from it): deltas, summaries and exponential histograms.
    pub(super) async fn read_series_rows(
        &self,
        matchers: &[Matcher],
        ids: &[u64],
        since: Option<i64>,
        from: i64,
        to: i64,
    ) -> Result<Vec<Series>, PromError> {
        let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
        let sql = format!(
            "SELECT * FROM metrics WHERE series_id IN ({}) AND time_unix_nano >= {} \
             AND time_unix_nano <= {} ORDER BY time_unix_nano",
            ids.join(", "),
            since.map_or(0, ms_to_ns),
            ms_to_ns(to).saturating_add(999_999)
        );
        let points: Vec<MetricPoint> = self
            .points(&sql)
            .await?
            .into_iter()
            .filter(|p| accumulates(p) || p.time_unix_nano >= ms_to_ns(from))
            .collect();
        let promoted = &self.config.promote_resource_attributes;
        Ok(translate(&points, promoted, from)
            .into_values()
            .filter(|s| matches(&s.labels, matchers))
            .collect())
    }

    /// The `prometheus_name`s whose exposed series names can satisfy the `__name__` matchers.
    pub(super) async fn families(
        &self,
        matchers: &[Matcher],
        from: i64,
        to: i64,
    ) -> Result<Vec<String>, PromError> {
        let name_matchers: Vec<&Matcher> =
            matchers.iter().filter(|m| m.name == METRIC_NAME).collect();
        let fits = |name: &str| name_matchers.iter().all(|m| m.is_match(name));
        // One exact name needs no listing: it is the family or one of its suffixed series.
        if let Some(exact) = name_matchers.iter().find(|m| m.op == MatchOp::Equal) {
            let name = exact.value.clone();
            let mut out = vec![name.clone()];
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(base) = name.strip_suffix(suffix) {
                    out.push(base.to_string());
                }
            }
            return Ok(out);
        }
        let sql = format!(
            "SELECT DISTINCT prometheus_name, metric_type FROM metrics WHERE {}",
            time_condition(from, to)
        );
        let batches = self.internal_sql(&sql).await.map_err(internal)?;
        let mut out = Vec::new();
        for batch in batches {
            let names = crate::metrics::utf8(batch.column(0)).map_err(internal)?;
            let types = crate::metrics::utf8(batch.column(1)).map_err(internal)?;
            for row in 0..batch.num_rows() {
                let name = names.value(row);
                let Some(metric_type) = MetricType::parse(types.value(row)) else {
                    continue;
                };
                if exposed(name, metric_type).iter().any(|(n, _)| fits(n)) {
                    out.push(name.to_string());
                }
            }
        }
        Ok(out)
    }

    pub(super) async fn points(&self, sql: &str) -> Result<Vec<MetricPoint>, PromError> {
        let mut out = Vec::new();
        for batch in self.internal_sql(sql).await.map_err(internal)? {
            out.extend(spyglass_store::schema::metrics_from_batch(&batch).map_err(internal)?);
        }
        Ok(out)
    }
}

pub(super) fn in_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| sql_string(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A source with nothing in it, for working out what a query needs.
pub(super) static EMPTY: MemorySource = MemorySource { series: Vec::new() };

pub(super) fn internal(e: impl std::fmt::Display) -> PromError {
    PromError::execution(format!("reading the metrics table: {e}"))
}

fn ms_to_ns(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

pub(super) fn time_condition(from: i64, to: i64) -> String {
    // Whole milliseconds: a point at 12.5 ms is the sample at 12 ms.
    let end = ms_to_ns(to).saturating_add(999_999);
    format!(
        "time_unix_nano >= {} AND time_unix_nano <= {end}",
        ms_to_ns(from)
    )
}

/// What the stored series of `point` exposes. Deltas are added up from the first point, and
/// summaries and exponential histograms have no fixed columns: those are read row by row.
fn exposed_by(point: &MetricPoint, promoted: &[String]) -> Exposed {
    if accumulates(point)
        || matches!(
            point.metric_type,
            MetricType::Summary | MetricType::ExponentialHistogram
        )
    {
        return Exposed::Rows {
            history: accumulates(point),
        };
    }
    let base = base_labels(point, promoted);
    let mut series = Vec::new();
    for (name, part) in exposed(&point.prometheus_name(), point.metric_type) {
        for (k, (extra, _)) in part_values(point, part).into_iter().enumerate() {
            let mut labels = base.clone();
            labels.insert(METRIC_NAME.into(), name.clone());
            if let Some((key, value)) = extra {
                labels.insert(key.into(), value);
            }
            series.push((labels, part, k));
        }
    }
    Exposed::Columns(series)
}

/// Where a stored series' samples go: the exposed series (its index among those being read),
/// the part of the row it is, and its `le` index.
type Targets = Vec<(usize, Part, usize)>;

/// The points of each series being read, one run per batch it is in, with its source's place
/// in ingest order (see [`super::scan::ValueScan::run`]). A part's runs are in time order; a
/// memtable run is in the order the points came.
type Runs = Vec<(u64, Vec<(i64, f64)>)>;

/// Adds the samples of `batch` (`series_id, time_unix_nano, flags, value` and perhaps
/// `count, sum, bucket_counts`) to the series that `targets` names for each stored series,
/// as a new run of each; returns how many it added.
fn read_values(
    seq: u64,
    batch: &RecordBatch,
    targets: &HashMap<u64, Targets>,
    runs: &mut [Runs],
) -> usize {
    let ids = batch.column(0).as_primitive::<UInt64Type>();
    let time = batch.column(1).as_primitive::<UInt64Type>();
    let flags = batch.column(2).as_primitive::<UInt32Type>();
    let value = batch.column(3).as_primitive::<Float64Type>();
    let histogram = (batch.num_columns() == 7).then(|| {
        (
            batch.column(4).as_primitive::<UInt64Type>(),
            batch.column(5).as_primitive::<Float64Type>(),
            batch.column(6).as_list::<i32>(),
        )
    });
    let mut read = 0;
    let mut current: (Option<u64>, Option<&Targets>) = (None, None);
    for row in 0..batch.num_rows() {
        let id = ids.value(row);
        if current.0 != Some(id) {
            current = (Some(id), targets.get(&id));
            if let Some(exposed_here) = current.1 {
                let length = ids.values()[row..].iter().take_while(|i| **i == id).count();
                for &(index, _, _) in exposed_here {
                    runs[index].push((seq, Vec::with_capacity(length)));
                }
            }
        }
        let Some(exposed_here) = current.1 else {
            continue;
        };
        let t = (time.value(row) / 1_000_000) as i64;
        let stale = flags.value(row) & NO_RECORDED_VALUE != 0;
        let mut cumulative: Option<Vec<u64>> = None;
        for &(index, part, k) in exposed_here {
            let f = if stale {
                Some(stale_marker())
            } else {
                match (part, histogram) {
                    (Part::Value, _) => (!value.is_null(row)).then(|| value.value(row)),
                    (Part::Count, Some((count, _, _))) => {
                        (!count.is_null(row)).then(|| count.value(row) as f64)
                    }
                    (Part::Sum, Some((_, sum, _))) => (!sum.is_null(row)).then(|| sum.value(row)),
                    (Part::Bucket, Some((_, _, buckets))) => {
                        let c = cumulative.get_or_insert_with(|| {
                            let counts = buckets.value(row);
                            let counts = counts.as_primitive::<UInt64Type>();
                            let mut total = 0;
                            counts
                                .values()
                                .iter()
                                .map(|n| {
                                    total += n;
                                    total
                                })
                                .collect()
                        });
                        // The last bucket's cumulative count is the `+Inf` one.
                        c.get(k).map(|n| *n as f64)
                    }
                    _ => None,
                }
            };
            if let (Some(f), Some((_, run))) = (f, runs[index].last_mut()) {
                run.push((t, f));
                read += 1;
            }
        }
    }
    read
}

/// The exposed series of a stored series that `matchers` select, each added to `out`, as
/// `(index in out, part, le index)`; `None` for a series read row by row.
fn select(exposed: &Exposed, matchers: &[Matcher], out: &mut Vec<Series>) -> Option<Targets> {
    let Exposed::Columns(series) = exposed else {
        return None;
    };
    let mut here = Vec::new();
    for (labels, part, k) in series {
        if matches(labels, matchers) {
            here.push((out.len(), *part, *k));
            out.push(Series::floats(labels.clone(), Vec::new()));
        }
    }
    Some(here)
}

fn too_many_samples(limit: usize) -> PromError {
    PromError::execution(format!(
        "query processing would load too many samples into memory (more than max_samples = {limit})"
    ))
}

/// A series' points in time order, from its runs; of points at one time, those of a later
/// source come after (so that the dedup keeps them). Parts are read in no set order, so their
/// runs may come in any order: runs in order that do not overlap are put end to end (one copy,
/// where a sort would merge them pass by pass; none for a single run).
fn in_time_order(mut runs: Runs) -> Vec<(i64, f64)> {
    runs.retain(|(_, r)| !r.is_empty());
    runs.sort_by_key(|(seq, r)| (r[0].0, *seq));
    let ordered = runs.iter().all(|(_, r)| r.is_sorted_by_key(|p| p.0));
    let apart = runs
        .windows(2)
        .all(|w| w[0].1[w[0].1.len() - 1].0 < w[1].1[0].0);
    if ordered && apart {
        if runs.len() <= 1 {
            return runs.pop().map(|(_, r)| r).unwrap_or_default();
        }
        let mut points = Vec::with_capacity(runs.iter().map(|(_, r)| r.len()).sum());
        for (_, run) in &runs {
            points.extend_from_slice(run);
        }
        return points;
    }
    // A stable sort by time then source keeps the order points came in within one source.
    let mut all: Vec<(i64, u64, f64)> = runs
        .iter()
        .flat_map(|(seq, r)| r.iter().map(|&(t, f)| (t, *seq, f)))
        .collect();
    all.sort_by_key(|&(t, seq, _)| (t, seq));
    all.into_iter().map(|(t, _, f)| (t, f)).collect()
}

#[cfg(test)]
mod tests {
    use super::in_time_order;

    #[test]
    fn runs_of_parts_come_out_in_time_order() {
        let run = |from: i64, to: i64| (from..to).map(|t| (t * 10, t as f64)).collect::<Vec<_>>();
        // Three parts' runs read out of order, then runs that overlap, one run, none, and a
        // memtable run whose points came newest first.
        for runs in [
            vec![run(20, 30), run(0, 10), Vec::new(), run(10, 20)],
            vec![run(5, 15), run(0, 10)],
            vec![run(0, 30)],
            vec![],
            vec![run(0, 10).into_iter().rev().collect()],
        ] {
            let mut expected = runs.concat();
            expected.sort_by_key(|p| p.0);
            let runs = runs
                .into_iter()
                .enumerate()
                .map(|(i, r)| (i as u64, r))
                .collect();
            assert_eq!(in_time_order(runs), expected);
        }
    }

    #[test]
    fn of_two_points_at_one_time_the_later_source_comes_last() {
        // Part 7's point at 20 and the memtable's: the memtable's is kept by the dedup.
        let part = (7, vec![(10, 1.0), (20, 2.0)]);
        let memtable = (u64::MAX, vec![(20, 5.0), (30, 6.0)]);
        for runs in [vec![part.clone(), memtable.clone()], vec![memtable, part]] {
            assert_eq!(
                in_time_order(runs),
                vec![(10, 1.0), (20, 2.0), (20, 5.0), (30, 6.0)]
            );
        }
    }
}
