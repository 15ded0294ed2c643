//! PromQL over the `metrics` table: what a query needs read with SQL (labels once per stored
//! series, then the value columns), turned into series by [`super::otlp`], and evaluated.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, UInt32Type, UInt64Type};

use promql_parser::label::{MatchOp, Matcher};
use spyglass_store::model::{MetricPoint, MetricType, PointValue};

use super::otlp::{
    NO_RECORDED_VALUE, Part, TARGET_INFO, accumulates, base_labels, exposed, label_name, number,
    part_values, translate,
};
use super::source::matches;
use super::{
    Evaluator, Labels, METRIC_NAME, MemorySource, PromError, Series, Value, format_value,
    stale_marker,
};
use crate::QueryEngine;
use crate::health::sql_string;

impl QueryEngine {
    /// `query` at `t` (ms since the epoch).
    pub async fn promql_instant(&self, query: &str, t: i64) -> Result<Value, PromError> {
        let expr = super::parse(query)?;
        let limits = self.config.promql_limits();
        let needs = Evaluator::new(&EMPTY, limits.clone()).needs(&expr, t, t);
        let source = self.gather(needs).await?;
        tokio::task::spawn_blocking(move || Evaluator::new(&source, limits).instant(&expr, t))
            .await
            .map_err(|e| PromError::execution(format!("evaluation failed: {e}")))?
    }

    /// `query` at each `step` from `start` to `end` (ms).
    pub async fn promql_range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Vec<Series>, PromError> {
        let expr = super::parse(query)?;
        let limits = self.config.promql_limits();
        let needs = if step > 0 && end >= start {
            Evaluator::new(&EMPTY, limits.clone()).needs(&expr, start, end)
        } else {
            Vec::new()
        };
        let source = self.gather(needs).await?;
        tokio::task::spawn_blocking(move || {
            Evaluator::new(&source, limits).range(&expr, start, end, step)
        })
        .await
        .map_err(|e| PromError::execution(format!("evaluation failed: {e}")))?
    }

    /// The labels of every series matching any of `selectors` with a point in `[start, end]`
    /// (read from each series' newest point there, not from all of them).
    pub async fn promql_series(
        &self,
        selectors: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Result<Vec<Labels>, PromError> {
        let limit = self.config.promql_max_series;
        let mut out = std::collections::BTreeSet::new();
        for matchers in selectors {
            let families = self.families(matchers, start, end).await?;
            if families.is_empty() {
                continue;
            }
            let sql = format!(
                "SELECT DISTINCT ON (series_id) * FROM metrics \
                 WHERE prometheus_name IN ({}) AND {} ORDER BY series_id, time_unix_nano DESC",
                in_list(&families),
                time_condition(start, end)
            );
            let points = self.points(&sql).await?;
            let promoted = &self.config.promote_resource_attributes;
            for labels in translate(&points, promoted, start).into_keys() {
                if matches(&labels, matchers) {
                    out.insert(labels);
                }
            }
            let names_target_info = matchers
                .iter()
                .filter(|m| m.name == METRIC_NAME)
                .all(|m| m.is_match(TARGET_INFO));
            if names_target_info {
                for series in self.target_info(matchers, start, end).await? {
                    out.insert(series.labels);
                }
            }
            if out.len() > limit {
                return Err(PromError::execution(format!(
                    "more than max_series = {limit} series match; narrow the selectors"
                )));
            }
        }
        Ok(out.into_iter().collect())
    }

    /// The exemplars of the series `query`'s selectors read, in `[start, end]` (ms): per
    /// series, its labels and each exemplar's labels (`trace_id`, `span_id`, the filtered
    /// attributes), value and time (ms). A histogram's exemplar belongs to the `_bucket` series
    /// its value falls in, as Prometheus's OTLP translation files it.
    pub async fn promql_exemplars(
        &self,
        query: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<(Labels, Vec<(Labels, f64, i64)>)>, PromError> {
        let expr = super::parse(query)?;
        let mut selectors = Vec::new();
        super::eval::selectors(&expr, &mut selectors);
        let promoted = &self.config.promote_resource_attributes;
        let mut out: BTreeMap<Labels, Vec<(Labels, f64, i64)>> = BTreeMap::new();
        for matchers in selectors {
            let families = self.families(&matchers, start, end).await?;
            if families.is_empty() {
                continue;
            }
            let sql = format!(
                "SELECT * FROM metrics WHERE prometheus_name IN ({}) AND {} \
                 AND cardinality(exemplars) > 0 ORDER BY time_unix_nano",
                in_list(&families),
                time_condition(start, end)
            );
            for point in self.points(&sql).await? {
                let base = base_labels(&point, promoted);
                let name = point.prometheus_name();
                for exemplar in &point.exemplars {
                    let value = number(&exemplar.value);
                    let mut labels = base.clone();
                    match &point.value {
                        PointValue::Histogram {
                            explicit_bounds, ..
                        } => {
                            let le = explicit_bounds
                                .iter()
                                .find(|b| value <= **b)
                                .map_or("+Inf".to_string(), |b| format_value(*b));
                            labels.insert(METRIC_NAME.into(), format!("{name}_bucket"));
                            labels.insert("le".into(), le);
                        }
                        PointValue::Number(_) => {
                            labels.insert(METRIC_NAME.into(), name.clone());
                        }
                        _ => continue,
                    }
                    if !matches(&labels, &matchers) {
                        continue;
                    }
                    let mut own = Labels::new();
                    if let Some(t) = exemplar.trace_id {
                        own.insert("trace_id".into(), t.to_hex());
                    }
                    if let Some(s) = exemplar.span_id {
                        own.insert("span_id".into(), s.to_hex());
                    }
                    for kv in exemplar.filtered_attributes.iter() {
                        own.insert(label_name(&kv.key), kv.value.display().into_owned());
                    }
                    let t = (exemplar.time_unix_nano / 1_000_000) as i64;
                    out.entry(labels).or_default().push((own, value, t));
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Every metric family in `[start, end]`: its Prometheus name, type, unit and description.
    pub async fn promql_metadata(
        &self,
        start: i64,
        end: i64,
    ) -> Result<Vec<(String, MetricType, String, String)>, PromError> {
        let sql = format!(
            "SELECT prometheus_name, min(metric_type), min(unit), min(description) FROM metrics \
             WHERE {} GROUP BY prometheus_name ORDER BY prometheus_name",
            time_condition(start, end)
        );
        let batches = self.internal_sql(&sql).await.map_err(internal)?;
        let mut out = Vec::new();
        for batch in batches {
            let columns: Vec<_> = (0..4)
                .map(|i| crate::metrics::utf8(batch.column(i)))
                .collect::<crate::Result<_>>()
                .map_err(internal)?;
            for row in 0..batch.num_rows() {
                let text = |c: usize| columns[c].value(row).to_string();
                let Some(metric_type) = MetricType::parse(&text(1)) else {
                    continue;
                };
                out.push((text(0), metric_type, text(2), text(3)));
            }
        }
        Ok(out)
    }

    /// Reads what an evaluation needs into memory.
    async fn gather(&self, needs: Vec<super::Selection>) -> Result<MemorySource, PromError> {
        let limits = self.config.promql_limits();
        let mut source = MemorySource::default();
        let mut seen: HashMap<Labels, usize> = HashMap::new();
        let mut samples = 0usize;
        for need in needs {
            for matchers in &need.matchers {
                for series in self.read_series(matchers, need.from, need.to).await? {
                    samples += series.points.len();
                    if samples > limits.max_samples {
                        return Err(PromError::execution(format!(
                            "query processing would load too many samples into memory (more than max_samples = {})",
                            limits.max_samples
                        )));
                    }
                    // A series two selections read (with other windows) is kept once, with
                    // the points of both.
                    match seen.get(&series.labels) {
                        Some(&i) => {
                            let points: &mut Vec<(i64, f64)> = &mut source.series[i].points;
                            points.extend(series.points);
                            points.sort_by_key(|p| p.0);
                            points.dedup_by_key(|p| p.0);
                        }
                        None => {
                            seen.insert(series.labels.clone(), source.series.len());
                            source.series.push(series);
                        }
                    }
                }
                if source.series.len() > limits.max_series {
                    return Err(PromError::execution(format!(
                        "query reads more than max_series = {} series; narrow its selectors",
                        limits.max_series
                    )));
                }
            }
        }
        Ok(source)
    }

    /// The series matching `matchers` with their points in `[from, to]` (ms).
    ///
    /// Labels are read once per stored series (from its rows at the first time it has in the
    /// span), then only the value columns of every row: the maps a row carries are the costly
    /// part to read, and they are the same on every row of a series.
    async fn read_series(
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
    async fn target_info(
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
                Series { labels, points }
            })
            .collect())
    }

    /// The series the `metrics` table stores under the names `matchers` can match.
    async fn stored_series(
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
        // 1. Each stored series' first time in the span; its rows at those times hold its
        //    labels (scraped series share their times, so the times are few).
        let firsts = self
            .internal_sql(&format!(
                "SELECT DISTINCT min(time_unix_nano) FROM metrics \
                 WHERE prometheus_name IN ({names}) AND {window} GROUP BY series_id"
            ))
            .await
            .map_err(internal)?;
        let mut times = Vec::new();
        for batch in &firsts {
            let column = batch.column(0).as_primitive::<UInt64Type>();
            times.extend(column.iter().flatten().map(|t| t.to_string()));
        }
        if times.is_empty() {
            return Ok(Vec::new());
        }
        let heads = self
            .internal_sql(&format!(
                "SELECT * FROM metrics WHERE prometheus_name IN ({names}) AND {window} \
                 AND time_unix_nano IN ({})",
                times.join(", ")
            ))
            .await
            .map_err(internal)?;
        let promoted = &self.config.promote_resource_attributes;
        // Stored series id → its exposed series: (index in `out`, part, `le`/`quantile` index).
        let mut wanted: HashMap<u64, Vec<(usize, Part, usize)>> = HashMap::new();
        let mut out: Vec<Series> = Vec::new();
        let mut slow: Vec<u64> = Vec::new();
        for batch in &heads {
            let ids = batch
                .column_by_name("series_id")
                .ok_or_else(|| internal("no series_id column"))?
                .as_primitive::<UInt64Type>()
                .clone();
            let points = spyglass_store::schema::metrics_from_batch(batch).map_err(internal)?;
            for (row, point) in points.iter().enumerate() {
                let id = ids.value(row);
                if wanted.contains_key(&id) || slow.contains(&id) {
                    continue;
                }
                // Deltas are added up from the first point, summaries have no fixed columns,
                // exponential histograms are rare: those take the row-by-row path.
                if accumulates(point) || point.metric_type == MetricType::Summary {
                    slow.push(id);
                    continue;
                }
                let base = base_labels(point, promoted);
                let mut exposed_here = Vec::new();
                for (name, part) in exposed(&point.prometheus_name(), point.metric_type) {
                    for (k, (extra, _)) in part_values(point, part).into_iter().enumerate() {
                        let mut labels = base.clone();
                        labels.insert(METRIC_NAME.into(), name.clone());
                        if let Some((key, value)) = extra {
                            labels.insert(key.into(), value);
                        }
                        if matches(&labels, matchers) {
                            exposed_here.push((out.len(), part, k));
                            out.push(Series {
                                labels,
                                points: Vec::new(),
                            });
                        }
                    }
                }
                wanted.insert(id, exposed_here);
            }
        }
        wanted.retain(|_, exposed| !exposed.is_empty());
        // 2. The values of the wanted series, every row in the span.
        if !wanted.is_empty() {
            let rows = self
                .internal_sql(&format!(
                    "SELECT series_id, time_unix_nano, flags, value, count, sum, bucket_counts \
                     FROM metrics WHERE prometheus_name IN ({names}) AND {window}"
                ))
                .await
                .map_err(internal)?;
            let mut read = 0usize;
            let limit = self.config.promql_max_samples;
            for batch in &rows {
                let ids = batch.column(0).as_primitive::<UInt64Type>();
                let time = batch.column(1).as_primitive::<UInt64Type>();
                let flags = batch.column(2).as_primitive::<UInt32Type>();
                let value = batch.column(3).as_primitive::<Float64Type>();
                let count = batch.column(4).as_primitive::<UInt64Type>();
                let sum = batch.column(5).as_primitive::<Float64Type>();
                let buckets = batch.column(6).as_list::<i32>();
                for row in 0..batch.num_rows() {
                    let Some(exposed_here) = wanted.get(&ids.value(row)) else {
                        continue;
                    };
                    let t = (time.value(row) / 1_000_000) as i64;
                    let stale = flags.value(row) & NO_RECORDED_VALUE != 0;
                    let mut cumulative: Option<Vec<u64>> = None;
                    for &(index, part, k) in exposed_here {
                        let f = if stale {
                            Some(stale_marker())
                        } else {
                            match part {
                                Part::Value => (!value.is_null(row)).then(|| value.value(row)),
                                Part::Count => {
                                    (!count.is_null(row)).then(|| count.value(row) as f64)
                                }
                                Part::Sum => (!sum.is_null(row)).then(|| sum.value(row)),
                                Part::Bucket => {
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
                                Part::Quantile => None,
                            }
                        };
                        if let Some(f) = f {
                            out[index].points.push((t, f));
                            read += 1;
                        }
                    }
                }
                if read > limit {
                    return Err(PromError::execution(format!(
                        "query processing would load too many samples into memory (more than max_samples = {limit})"
                    )));
                }
            }
        }
        for series in &mut out {
            series.points.sort_by_key(|p| p.0);
            // A point sent twice at one time counts once, the later one.
            series.points.dedup_by(|later, earlier| {
                if later.0 == earlier.0 {
                    earlier.1 = later.1;
                    true
                } else {
                    false
                }
            });
        }
        out.retain(|s| !s.points.is_empty());
        if !slow.is_empty() {
            out.extend(self.read_series_rows(matchers, &slow, from, to).await?);
        }
        Ok(out)
    }

    /// Row by row, every column: delta series (added up from their first point, so their rows
    /// before `from` are read too) and summaries.
    async fn read_series_rows(
        &self,
        matchers: &[Matcher],
        ids: &[u64],
        from: i64,
        to: i64,
    ) -> Result<Vec<Series>, PromError> {
        let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
        let sql = format!(
            "SELECT * FROM metrics WHERE series_id IN ({}) AND time_unix_nano <= {} \
             ORDER BY time_unix_nano",
            ids.join(", "),
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
            .into_iter()
            .filter(|(labels, _)| matches(labels, matchers))
            .map(|(labels, points)| Series { labels, points })
            .collect())
    }

    /// The `prometheus_name`s whose exposed series names can satisfy the `__name__` matchers.
    async fn families(
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

    async fn points(&self, sql: &str) -> Result<Vec<MetricPoint>, PromError> {
        let mut out = Vec::new();
        for batch in self.internal_sql(sql).await.map_err(internal)? {
            out.extend(spyglass_store::schema::metrics_from_batch(&batch).map_err(internal)?);
        }
        Ok(out)
    }
}

fn in_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| sql_string(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A source with nothing in it, for working out what a query needs.
static EMPTY: MemorySource = MemorySource { series: Vec::new() };

fn internal(e: impl std::fmt::Display) -> PromError {
    PromError::execution(format!("reading the metrics table: {e}"))
}

fn ms_to_ns(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

fn time_condition(from: i64, to: i64) -> String {
    // Whole milliseconds: a point at 12.5 ms is the sample at 12 ms.
    let end = ms_to_ns(to).saturating_add(999_999);
    format!(
        "time_unix_nano >= {} AND time_unix_nano <= {end}",
        ms_to_ns(from)
    )
}
