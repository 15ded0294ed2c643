//! What metrics exist, and simple series queries for charts until PromQL lands: one metric,
//! label matchers, an aggregation across series, grouped by labels, one point per step.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, UInt64Type};

use crate::QueryEngine;
use crate::error::{Error, Result};
use crate::health::sql_string;

/// A metric name with its type, unit, series count and label keys over a window.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricInfo {
    pub name: String,
    pub metric_type: String,
    pub unit: String,
    pub description: String,
    pub series: u64,
    pub label_keys: Vec<String>,
}

/// How series are combined per step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregation {
    Sum,
    Avg,
    Min,
    Max,
    /// Per-second increase of cumulative counters, summed.
    Rate,
}

impl Aggregation {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sum" => Aggregation::Sum,
            "avg" => Aggregation::Avg,
            "min" => Aggregation::Min,
            "max" => Aggregation::Max,
            "rate" => Aggregation::Rate,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SeriesQuery {
    pub name: String,
    /// `(label, value)`: series whose attribute (or `service_name` for `service.name`) equals.
    pub matchers: Vec<(String, String)>,
    pub group_by: Vec<String>,
    pub aggregation: Aggregation,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub step_nano: u64,
}

/// One output series: its group's label values and a value per step (`None`: no data).
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesResult {
    pub labels: Vec<(String, String)>,
    pub points: Vec<(u64, Option<f64>)>,
}

/// Most points a series query returns per series.
pub const MAX_STEPS: u64 = 1_000;

fn label_expr(label: &str) -> String {
    if label == "service.name" {
        "service_name".to_string()
    } else {
        // Any attribute type, as text.
        let k = sql_string(label);
        format!(
            "coalesce(attributes[{k}], CAST(attributes_int[{k}] AS VARCHAR), \
             CAST(attributes_double[{k}] AS VARCHAR), CAST(attributes_bool[{k}] AS VARCHAR))"
        )
    }
}

impl QueryEngine {
    pub async fn metric_names(&self, start: u64, end: u64) -> Result<Vec<MetricInfo>> {
        let _timer = self.stats.time(crate::QueryKind::Metrics);
        let sql = format!(
            "SELECT metric_name, min(metric_type), min(unit), min(description), \
                    count(DISTINCT series_id), \
                    array_sort(array_distinct(flatten(array_agg(array_concat( \
                        map_keys(attributes), map_keys(attributes_int), \
                        map_keys(attributes_double), map_keys(attributes_bool)))))) \
             FROM metrics WHERE time_unix_nano >= {start} AND time_unix_nano <= {end} \
             GROUP BY metric_name ORDER BY metric_name"
        );
        let mut out = Vec::new();
        for batch in self.internal_sql(&sql).await? {
            let texts = (0..4)
                .map(|i| utf8(batch.column(i)))
                .collect::<Result<Vec<_>>>()?;
            let text = |i: usize| &texts[i];
            let series = batch
                .column(4)
                .as_primitive::<arrow::datatypes::Int64Type>();
            let keys = batch.column(5).as_list::<i32>();
            for row in 0..batch.num_rows() {
                let label_keys = if keys.is_null(row) {
                    Vec::new()
                } else {
                    let k = utf8(&keys.value(row))?;
                    (0..k.len())
                        .filter(|&i| !k.is_null(i))
                        .map(|i| k.value(i).to_string())
                        .collect()
                };
                out.push(MetricInfo {
                    name: text(0).value(row).to_string(),
                    metric_type: text(1).value(row).to_string(),
                    unit: text(2).value(row).to_string(),
                    description: text(3).value(row).to_string(),
                    series: series.value(row) as u64,
                    label_keys,
                });
            }
        }
        Ok(out)
    }

    pub async fn series(&self, q: &SeriesQuery) -> Result<Vec<SeriesResult>> {
        let _timer = self.stats.time(crate::QueryKind::Metrics);
        if q.start_unix_nano >= q.end_unix_nano {
            return Err(Error::invalid("start must be before end"));
        }
        if q.step_nano == 0 || (q.end_unix_nano - q.start_unix_nano) / q.step_nano >= MAX_STEPS {
            return Err(Error::invalid(format!(
                "step gives more than {MAX_STEPS} points over the window; use a longer step"
            )));
        }
        let mut conditions = vec![format!("metric_name = {}", sql_string(&q.name))];
        for (label, value) in &q.matchers {
            conditions.push(format!("{} = {}", label_expr(label), sql_string(value)));
        }
        // Counters need the point before the window to know the first increase.
        let from = if q.aggregation == Aggregation::Rate {
            q.start_unix_nano.saturating_sub(q.step_nano)
        } else {
            q.start_unix_nano
        };
        let group_select = q
            .group_by
            .iter()
            .enumerate()
            .map(|(i, l)| format!(", {} AS g{i}", label_expr(l)))
            .collect::<String>();
        let sql = format!(
            "SELECT series_id, time_unix_nano, value{group_select} FROM metrics \
             WHERE {} AND time_unix_nano >= {from} AND time_unix_nano < {} \
             ORDER BY series_id, time_unix_nano",
            conditions.join(" AND "),
            q.end_unix_nano
        );
        let steps = (q.end_unix_nano - q.start_unix_nano).div_ceil(q.step_nano) as usize;
        // Per group, per step: the values of each series (last value in the step, or its rate).
        let mut groups: BTreeMap<Vec<String>, Vec<Vec<f64>>> = BTreeMap::new();
        for batch in self.internal_sql(&sql).await? {
            let series = batch.column(0).as_primitive::<UInt64Type>();
            let time = batch.column(1).as_primitive::<UInt64Type>();
            let value = batch.column(2).as_primitive::<Float64Type>();
            let group_columns = (0..q.group_by.len())
                .map(|g| utf8(batch.column(3 + g)))
                .collect::<Result<Vec<_>>>()?;
            let mut i = 0;
            while i < batch.num_rows() {
                let id = series.value(i);
                let mut j = i;
                while j < batch.num_rows() && series.value(j) == id {
                    j += 1;
                }
                let key: Vec<String> = (group_columns.iter())
                    .map(|c| {
                        if c.is_null(i) {
                            String::new()
                        } else {
                            c.value(i).to_string()
                        }
                    })
                    .collect();
                let per_step = series_steps(
                    q,
                    steps,
                    (i..j)
                        .filter(|&r| !value.is_null(r))
                        .map(|r| (time.value(r), value.value(r))),
                );
                let slot = groups.entry(key).or_insert_with(|| vec![Vec::new(); steps]);
                for (s, v) in per_step.into_iter().enumerate() {
                    if let Some(v) = v {
                        slot[s].push(v);
                    }
                }
                i = j;
            }
        }
        Ok(groups
            .into_iter()
            .map(|(key, per_step)| SeriesResult {
                labels: q.group_by.iter().cloned().zip(key).collect(),
                points: per_step
                    .into_iter()
                    .enumerate()
                    .map(|(s, values)| {
                        (
                            q.start_unix_nano + s as u64 * q.step_nano,
                            combine(q.aggregation, &values),
                        )
                    })
                    .collect(),
            })
            .collect())
    }
}

/// One series' value per step: its last value in the step, or for `rate` its increase in the
/// step (a drop is a restart) per second.
fn series_steps(
    q: &SeriesQuery,
    steps: usize,
    points: impl Iterator<Item = (u64, f64)>,
) -> Vec<Option<f64>> {
    let mut out = vec![None; steps];
    let mut previous: Option<f64> = None;
    for (t, v) in points {
        if t >= q.start_unix_nano {
            let s = ((t - q.start_unix_nano) / q.step_nano) as usize;
            if s < steps {
                match q.aggregation {
                    Aggregation::Rate => {
                        if let Some(p) = previous {
                            let rise = if v >= p { v - p } else { v };
                            let secs = q.step_nano as f64 / 1e9;
                            *out[s].get_or_insert(0.0) += rise / secs;
                        }
                    }
                    _ => out[s] = Some(v),
                }
            }
        }
        previous = Some(v);
    }
    out
}

fn combine(aggregation: Aggregation, values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(match aggregation {
        Aggregation::Sum | Aggregation::Rate => values.iter().sum(),
        Aggregation::Avg => values.iter().sum::<f64>() / values.len() as f64,
        Aggregation::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
        Aggregation::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

/// A string column as `Utf8`, whatever string type the engine gave it (`Utf8View` for
/// columns read from Parquet and for map values, `LargeUtf8`, dictionaries).
pub(crate) fn utf8(column: &arrow::array::ArrayRef) -> Result<arrow::array::StringArray> {
    let cast = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8)
        .map_err(|e| Error::Internal(format!("a text column is not text: {e}")))?;
    Ok(cast.as_string::<i32>().clone())
}
