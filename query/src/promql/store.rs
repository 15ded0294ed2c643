//! PromQL over the `metrics` table, as the API asks it: instant and range queries, series,
//! exemplars and metadata; what they read comes from [`super::read`].

use std::collections::BTreeMap;

use promql_parser::label::Matcher;
use spyglass_store::model::{MetricType, PointValue};

use super::otlp::{TARGET_INFO, base_labels, label_name, number, translate};
use super::read::{EMPTY, in_list, internal, time_condition};
use super::source::matches;
use super::{Evaluator, Labels, METRIC_NAME, PromError, Series, Value, format_value};
use crate::QueryEngine;

impl QueryEngine {
    /// `query` at `t` (ms since the epoch).
    pub async fn promql_instant(&self, query: &str, t: i64) -> Result<Value, PromError> {
        // Boxed: the selections' keys are addresses in it, kept when it moves to the evaluation.
        let expr = Box::new(super::parse(query)?);
        let limits = self.config.promql_limits();
        let needs = Evaluator::new(&EMPTY, limits.clone()).needs(&expr, t, t);
        let given = self.gather(needs).await?;
        tokio::task::spawn_blocking(move || {
            Evaluator::new(&EMPTY, limits)
                .given(given)
                .instant(&expr, t)
        })
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
        let expr = Box::new(super::parse(query)?);
        let limits = self.config.promql_limits();
        let needs = if step > 0 && end >= start {
            Evaluator::new(&EMPTY, limits.clone()).needs(&expr, start, end)
        } else {
            Vec::new()
        };
        let given = self.gather(needs).await?;
        tokio::task::spawn_blocking(move || {
            Evaluator::new(&EMPTY, limits)
                .given(given)
                .range(&expr, start, end, step)
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
    /// its value falls in, an exponential histogram's to its native series, as Prometheus's OTLP
    /// translation files them.
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
                        // A number's, and an exponential histogram's (its one native series).
                        PointValue::Number(_) | PointValue::ExponentialHistogram { .. } => {
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
}
