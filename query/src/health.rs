//! Service health (rate, errors, duration percentiles) and operations, read from the span
//! metrics that ingest writes (`spyglass.span.calls|errors|duration`; documented in
//! `ingest/src/spanmetrics.rs`), never from a scan of the spans.
//!
//! The series are cumulative. The increase of a series over a window is the sum of its rises
//! between consecutive points, counting from the last point before the window; a drop is a
//! restart, after which the new value is the rise. A series with no point before the window
//! counts from zero when it began inside the window, else from its first point.

use std::collections::BTreeMap;

mod cache;
mod points;
mod read;

use arrow::array::RecordBatch;
use spyglass_store::spanmetrics as names;

use crate::QueryEngine;
use crate::error::{Error, Result};
pub(crate) use cache::PointCache;
use points::{Rows, Steps};
pub(crate) use read::{SeriesInfo, SeriesKeys};

/// Calls, errors and latency of a service or of one of its operations over a window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    pub calls: f64,
    pub errors: f64,
    /// Calls per second over the window.
    pub rate_per_sec: f64,
    /// Errors over calls; 0 without calls.
    pub error_ratio: f64,
    /// Duration percentiles in seconds (histogram interpolation), `None` without calls.
    pub p50_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    /// When calls last rose by the window's end (the span-metrics point that showed it, looking
    /// up to 10 minutes before the window): a service that stopped sending keeps this time
    /// while the window moves on.
    pub last_seen_unix_nano: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServiceHealth {
    pub service: String,
    pub health: Health,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OperationHealth {
    pub service: String,
    pub name: String,
    pub kind: String,
    pub health: Health,
}

/// How far before a window to look for the point a series' increase starts from.
const BASELINE_LOOKBACK_NANOS: u64 = 10 * 60 * 1_000_000_000;

/// Three cumulative metrics written together, and the columns that group their series.
pub(crate) struct Family {
    pub(crate) calls: &'static str,
    pub(crate) errors: &'static str,
    pub(crate) duration: &'static str,
    /// The three columns that group the series.
    pub(crate) keys: [KeyColumn; 3],
}

/// A column that groups span-metric series: a column of the table, or an attribute.
#[derive(Clone, Copy)]
pub(crate) enum KeyColumn {
    Column(&'static str),
    Attribute(&'static str),
}

impl KeyColumn {
    /// The column as a SQL expression of type string.
    pub(crate) fn sql(self) -> String {
        match self {
            KeyColumn::Column(name) => name.to_owned(),
            KeyColumn::Attribute(key) => format!("attributes[{}]", sql_string(key)),
        }
    }
}

impl Family {
    /// The three metric names as a SQL list.
    fn names(&self) -> String {
        [self.calls, self.errors, self.duration]
            .map(sql_string)
            .join(", ")
    }
}

const SPAN_FAMILY: Family = Family {
    calls: names::SPAN_CALLS,
    errors: names::SPAN_ERRORS,
    duration: names::SPAN_DURATION,
    keys: [
        KeyColumn::Column("service_name"),
        KeyColumn::Attribute(names::SPAN_NAME),
        KeyColumn::Attribute(names::SPAN_KIND),
    ],
};

pub(crate) type Key = (String, String, String);

/// A string literal for SQL.
pub(crate) fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Accumulated increases of one group (service, or service + operation + kind).
#[derive(Default)]
pub(crate) struct Totals {
    calls: f64,
    errors: f64,
    buckets: Vec<f64>,
    bounds: Vec<f64>,
    last_seen: Option<u64>,
    /// The earliest start of the cumulative series summed here: a rate is over the part of
    /// the window they existed in (as Prometheus' `rate` covers only the samples it has).
    since: Option<u64>,
}

/// Health over a window and, when asked, per step: `steps[k]` covers
/// `[start + k * step, start + (k + 1) * step]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Stepped<T> {
    pub item: T,
    pub steps: Vec<Health>,
}

impl QueryEngine {
    /// Every service with span metrics in `[start, end]`, by name.
    pub async fn services(&self, start: u64, end: u64) -> Result<Vec<ServiceHealth>> {
        Ok(self
            .services_stepped(start, end, None)
            .await?
            .into_iter()
            .map(|s| s.item)
            .collect())
    }

    /// [`QueryEngine::services`], and with `step` each service's health per step, from one
    /// read of the span metrics.
    pub async fn services_stepped(
        &self,
        start: u64,
        end: u64,
        step: Option<u64>,
    ) -> Result<Vec<Stepped<ServiceHealth>>> {
        self.services_filtered(start, end, step, |_| true).await
    }

    /// Every service's health over `[start, end]` counting only its spans of `kinds` (`server`
    /// and `consumer`: the requests it answers, which alert rules judge it by).
    pub async fn services_of_kinds(
        &self,
        start: u64,
        end: u64,
        kinds: &[&str],
    ) -> Result<Vec<ServiceHealth>> {
        Ok(self
            .services_filtered(start, end, None, |kind| kinds.contains(&kind))
            .await?
            .into_iter()
            .map(|s| s.item)
            .collect())
    }

    async fn services_filtered(
        &self,
        start: u64,
        end: u64,
        step: Option<u64>,
        keep_kind: impl Fn(&str) -> bool,
    ) -> Result<Vec<Stepped<ServiceHealth>>> {
        let _timer = self.stats.time(crate::QueryKind::Health);
        let totals = self.span_metric_totals(None, start, end, step).await?;
        let mut by_service: BTreeMap<String, Vec<Totals>> = BTreeMap::new();
        for ((service, _, kind), steps) in totals {
            if !keep_kind(&kind) {
                continue;
            }
            let into = by_service.entry(service).or_default();
            if into.len() < steps.len() {
                into.resize_with(steps.len(), Totals::default);
            }
            for (into, from) in into.iter_mut().zip(&steps) {
                merge(into, from);
            }
        }
        Ok(by_service
            .into_iter()
            .map(|(service, steps)| {
                let (health, steps) = overall_and_steps(&steps, start, end, step);
                Stepped {
                    item: ServiceHealth { service, health },
                    steps,
                }
            })
            .collect())
    }

    /// The operations of `service` with span metrics in `[start, end]`, by name and kind.
    pub async fn operations(
        &self,
        service: &str,
        start: u64,
        end: u64,
    ) -> Result<Vec<OperationHealth>> {
        Ok(self
            .operations_stepped(service, start, end, None)
            .await?
            .into_iter()
            .map(|o| o.item)
            .collect())
    }

    /// [`QueryEngine::operations`], and with `step` each operation's health per step.
    pub async fn operations_stepped(
        &self,
        service: &str,
        start: u64,
        end: u64,
        step: Option<u64>,
    ) -> Result<Vec<Stepped<OperationHealth>>> {
        let _timer = self.stats.time(crate::QueryKind::Health);
        let totals = self
            .span_metric_totals(Some(service), start, end, step)
            .await?;
        Ok(totals
            .into_iter()
            .map(|((service, name, kind), steps)| {
                let (health, steps) = overall_and_steps(&steps, start, end, step);
                Stepped {
                    item: OperationHealth {
                        service,
                        name,
                        kind,
                        health,
                    },
                    steps,
                }
            })
            .collect())
    }

    async fn span_metric_totals(
        &self,
        service: Option<&str>,
        start: u64,
        end: u64,
        step: Option<u64>,
    ) -> Result<BTreeMap<Key, Vec<Totals>>> {
        self.family_totals_stepped(&SPAN_FAMILY, service, start, end, step)
            .await
    }

    /// Increases of a family's series over `[start, end]`, grouped by its three key columns.
    pub(crate) async fn family_totals(
        &self,
        family: &Family,
        service: Option<&str>,
        start: u64,
        end: u64,
    ) -> Result<BTreeMap<Key, Totals>> {
        let stepped = self
            .family_totals_stepped(family, service, start, end, None)
            .await?;
        Ok(stepped
            .into_iter()
            .map(|(k, mut steps)| (k, steps.pop().unwrap_or_default()))
            .collect())
    }

    /// Increases of a family's series grouped by its three key columns (only the series whose
    /// first key is `service`, when given): over `[start, end]` as one step without `step`,
    /// else per step (a rise counts in the step of the point that shows it).
    pub(crate) async fn family_totals_stepped(
        &self,
        family: &Family,
        service: Option<&str>,
        start: u64,
        end: u64,
        step: Option<u64>,
    ) -> Result<BTreeMap<Key, Vec<Totals>>> {
        if start > end {
            return Err(Error::invalid("start is after end"));
        }
        let from = start.saturating_sub(BASELINE_LOOKBACK_NANOS);
        let snapshot = self.snapshot();
        let batches = self.family_points(&snapshot, family, from, end).await?;
        let steps = Steps::new(start, end, step);
        let rows = batches.iter().map(Rows::new).collect::<Result<Vec<_>>>()?;
        // Points in series and time order, sorted here by reference rather than by the SQL
        // engine, which would copy every row's bucket lists twice (sort, then merge). Kept
        // parts hold all their points; only the window's are taken.
        let points = batches.iter().map(RecordBatch::num_rows).sum();
        let mut order: Vec<(u64, u64, u32, u32)> = Vec::with_capacity(points);
        for (b, r) in rows.iter().enumerate() {
            for (i, (&series, &time)) in r.series.values().iter().zip(r.time.values()).enumerate() {
                if (from..=end).contains(&time) {
                    order.push((series, time, b as u32, i as u32));
                }
            }
        }
        // Stable sort: each batch is already in (series, time) order per metric, and the
        // stable sort merges such runs instead of sorting from scratch.
        order.sort();
        let mut ids: Vec<u64> = order.iter().map(|o| o.0).collect();
        ids.dedup();
        let keys = self.series_keys(&snapshot, family, from, end, &ids).await?;
        if let Some(service) = service {
            order.retain(|o| keys.get(&o.0).is_some_and(|k| k.key.0 == service));
        }
        // Two halves, cut between series, walked on two threads.
        let mut cut = order.len() / 2;
        while cut > 0 && cut < order.len() && order[cut].0 == order[cut - 1].0 {
            cut += 1;
        }
        let (first, second) = order.split_at(cut);
        let walk = |points| points::walk(family, &rows, &keys, &steps, points);
        let (mut totals, other) = std::thread::scope(|scope| {
            let other = scope.spawn(|| walk(second));
            (
                walk(first),
                other.join().expect("a series walk does not panic"),
            )
        });
        for (key, steps) in other {
            let into = totals.entry(key).or_default();
            if into.len() < steps.len() {
                into.resize_with(steps.len(), Totals::default);
            }
            for (into, from) in into.iter_mut().zip(&steps) {
                merge(into, from);
            }
        }
        Ok(totals)
    }
}

pub(crate) fn merge(into: &mut Totals, from: &Totals) {
    into.calls += from.calls;
    into.last_seen = into.last_seen.max(from.last_seen);
    into.since = match (into.since, from.since) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    into.errors += from.errors;
    if into.buckets.len() < from.buckets.len() {
        into.buckets.resize(from.buckets.len(), 0.0);
    }
    for (k, v) in from.buckets.iter().enumerate() {
        into.buckets[k] += v;
    }
    if into.bounds.is_empty() {
        into.bounds = from.bounds.clone();
    }
}

/// The health over the whole window (the steps merged) and, with `step`, per step.
pub(crate) fn overall_and_steps(
    steps: &[Totals],
    start: u64,
    end: u64,
    step: Option<u64>,
) -> (Health, Vec<Health>) {
    let mut all = Totals::default();
    for t in steps {
        merge(&mut all, t);
    }
    let overall = health(&all, start, end);
    let per_step = match step {
        Some(step) => steps
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let t0 = start + k as u64 * step;
                health(t, t0, (t0 + step).min(end))
            })
            .collect(),
        None => Vec::new(),
    };
    (overall, per_step)
}

pub(crate) fn window_secs(start: u64, end: u64) -> f64 {
    (end.saturating_sub(start) as f64 / 1e9).max(1e-9)
}

/// The health of `t` over `[start, end]`; the rate counts from when its series began if
/// that is later than `start`.
pub(crate) fn health(t: &Totals, start: u64, end: u64) -> Health {
    let counted_from = start.max(t.since.unwrap_or(start)).min(end);
    Health {
        calls: t.calls,
        errors: t.errors,
        rate_per_sec: t.calls / window_secs(counted_from, end),
        error_ratio: if t.calls > 0.0 {
            t.errors / t.calls
        } else {
            0.0
        },
        p50_seconds: quantile(0.50, &t.buckets, &t.bounds),
        p95_seconds: quantile(0.95, &t.buckets, &t.bounds),
        p99_seconds: quantile(0.99, &t.buckets, &t.bounds),
        last_seen_unix_nano: t.last_seen,
    }
}

/// The `q` quantile of a histogram's bucket counts (the last bucket is +Inf), interpolating
/// linearly inside the bucket as Prometheus' `histogram_quantile` does; a quantile in the +Inf
/// bucket is the highest finite bound.
pub(crate) fn quantile(q: f64, buckets: &[f64], bounds: &[f64]) -> Option<f64> {
    let total: f64 = buckets.iter().sum();
    if total <= 0.0 || bounds.is_empty() {
        return None;
    }
    let rank = q * total;
    let mut seen = 0.0;
    for (i, &count) in buckets.iter().enumerate() {
        if seen + count >= rank && count > 0.0 {
            let Some(&upper) = bounds.get(i) else {
                return bounds.last().copied();
            };
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            return Some(lower + (upper - lower) * ((rank - seen) / count));
        }
        seen += count;
    }
    bounds.last().copied()
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        let bounds = [0.1, 0.5, 1.0];
        // 10 calls ≤ 0.1 s, 10 in (0.1, 0.5].
        let buckets = [10.0, 10.0, 0.0, 0.0];
        assert_eq!(quantile(0.5, &buckets, &bounds), Some(0.1));
        let p75 = quantile(0.75, &buckets, &bounds).unwrap();
        assert!((p75 - 0.3).abs() < 1e-9, "{p75}");
        assert_eq!(quantile(0.5, &[0.0; 4], &bounds), None);
        assert_eq!(quantile(0.99, &[0.0, 0.0, 0.0, 5.0], &bounds), Some(1.0));
    }
}
