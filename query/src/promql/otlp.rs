//! OTLP points as the series Prometheus's own OTLP receiver makes of them.
//!
//! - `__name__` is the `prometheus_name` column (unit suffixes, `_total`); a histogram is
//!   `_bucket{le}` (cumulative), `_sum` and `_count`; a summary is `{quantile}`, `_sum` and
//!   `_count`; an exponential histogram is one series of native histograms under the name
//!   itself (see [`super::histogram`]), with no `_sum` or `_count`.
//! - Point attributes are labels, their names with characters outside `[a-zA-Z0-9_]` as `_`
//!   (and `key_` before a leading digit); `service.namespace/service.name` is `job`,
//!   `service.instance.id` is `instance` (unless the point has its own); `[query]
//!   promote_resource_attributes` are labels too.
//! - `target_info{job, instance, …}` is 1 for each resource with other attributes, labelled
//!   with them, at each time it sent points.
//! - A point flagged "no recorded value" is a staleness marker.
//! - Delta sums and histograms (exponential ones too) are added up in time order from the
//!   series' first point, as
//!   the OpenTelemetry Collector's `deltatocumulative` processor does, so `rate` and `increase`
//!   read them as counters.

use std::collections::BTreeMap;
use std::sync::Arc;

use spyglass_store::model::{MetricPoint, MetricType, NumberValue, PointValue, Temporality};

use super::{Histogram, Labels, METRIC_NAME, Series, format_value, stale_marker};

/// The series of each resource's other attributes.
pub(super) const TARGET_INFO: &str = "target_info";

/// OTLP `DataPointFlags`: the point holds no value (the series ended).
pub(super) const NO_RECORDED_VALUE: u32 = 1;

/// What a family's points become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Part {
    /// A gauge or sum: the value.
    Value,
    Bucket,
    Sum,
    Count,
    /// A summary's quantiles.
    Quantile,
    /// An exponential histogram: a native histogram.
    Native,
}

/// The series names a metric of this type and name exposes.
pub(super) fn exposed(name: &str, metric_type: MetricType) -> Vec<(String, Part)> {
    let with = |suffix: &str, part| (format!("{name}{suffix}"), part);
    match metric_type {
        MetricType::Gauge | MetricType::Sum => vec![(name.to_string(), Part::Value)],
        MetricType::Histogram => vec![
            with("_bucket", Part::Bucket),
            with("_sum", Part::Sum),
            with("_count", Part::Count),
        ],
        MetricType::ExponentialHistogram => vec![(name.to_string(), Part::Native)],
        MetricType::Summary => vec![
            (name.to_string(), Part::Quantile),
            with("_sum", Part::Sum),
            with("_count", Part::Count),
        ],
    }
}

/// A label name as Prometheus's OTLP translation writes it.
pub fn label_name(key: &str) -> String {
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    }
    out
}

/// Points (in time order) as Prometheus series, each with its samples at or after `from` in
/// time order; delta points added up from the first one given.
pub(super) fn translate(
    points: &[MetricPoint],
    promoted: &[String],
    from: i64,
) -> BTreeMap<Labels, Series> {
    let mut series: BTreeMap<Labels, Series> = BTreeMap::new();
    let mut totals: BTreeMap<Labels, f64> = BTreeMap::new();
    let mut histogram_totals: BTreeMap<Labels, Histogram> = BTreeMap::new();
    for point in points {
        let base = base_labels(point, promoted);
        let t = (point.time_unix_nano / 1_000_000) as i64;
        let stale = point.flags & NO_RECORDED_VALUE != 0;
        let add = accumulates(point);
        for (name, part) in exposed(&point.prometheus_name(), point.metric_type) {
            if part == Part::Native {
                let mut labels = base.clone();
                labels.insert(METRIC_NAME.into(), name);
                if stale {
                    if t >= from {
                        let points = &mut series.entry(labels).or_default().points;
                        points.push((t, stale_marker()));
                    }
                    continue;
                }
                let Some(mut h) = native(point) else {
                    continue;
                };
                if add {
                    h = match histogram_totals.remove(&labels) {
                        Some(total) => total.add_scaled(&h, 1.0).compact(),
                        None => h,
                    };
                    histogram_totals.insert(labels.clone(), h.clone());
                }
                if t >= from {
                    let histograms = &mut series.entry(labels).or_default().histograms;
                    histograms.push((t, Arc::new(h)));
                }
                continue;
            }
            for (extra, value) in part_values(point, part) {
                let mut labels = base.clone();
                labels.insert(METRIC_NAME.into(), name.clone());
                if let Some((k, v)) = extra {
                    labels.insert(k.into(), v);
                }
                let value = if stale {
                    stale_marker()
                } else if add {
                    let total = totals.entry(labels.clone()).or_default();
                    *total += value;
                    *total
                } else {
                    value
                };
                if t >= from {
                    series.entry(labels).or_default().points.push((t, value));
                }
            }
        }
    }
    for (labels, s) in series.iter_mut() {
        s.labels = labels.clone();
        s.points.sort_by_key(|p| p.0);
        later_wins(&mut s.points);
        s.histograms.sort_by_key(|p| p.0);
        later_wins(&mut s.histograms);
    }
    series
}

/// Of samples (in time order, stably sorted) at one time, keeps the last: a point sent twice
/// counts once, the later one.
pub(super) fn later_wins<T>(samples: &mut Vec<(i64, T)>) {
    samples.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            std::mem::swap(later, earlier);
            true
        } else {
            false
        }
    });
}

/// An exponential histogram point as a native histogram; `None` for another point, or one
/// whose scale Prometheus refuses.
fn native(point: &MetricPoint) -> Option<Histogram> {
    let PointValue::ExponentialHistogram {
        count,
        sum,
        scale,
        zero_count,
        positive,
        negative,
        ..
    } = &point.value
    else {
        return None;
    };
    Histogram::from_otlp(
        *scale,
        *count,
        *sum,
        *zero_count,
        (positive.offset, &positive.bucket_counts),
        (negative.offset, &negative.bucket_counts),
    )
}

/// Delta sums and histograms are added up into counters.
pub(super) fn accumulates(p: &MetricPoint) -> bool {
    p.temporality == Temporality::Delta
        && matches!(
            p.metric_type,
            MetricType::Sum | MetricType::Histogram | MetricType::ExponentialHistogram
        )
}

pub(super) fn base_labels(point: &MetricPoint, promoted: &[String]) -> Labels {
    let mut labels = Labels::new();
    let resource = &point.resource.attributes;
    for key in promoted {
        if let Some(v) = resource.get(key) {
            labels.insert(label_name(key), v.display().into_owned());
        }
    }
    for kv in point.attributes.iter() {
        labels.insert(label_name(&kv.key), kv.value.display().into_owned());
    }
    // Prometheus has no empty labels: an empty value is no label.
    labels.retain(|_, v| !v.is_empty());
    let text = |key: &str| resource.get(key).map(|v| v.display().into_owned());
    // A point's own `job` or `instance` (a recording rule's, say) stays.
    if let Some(service) = text("service.name") {
        let job = match text("service.namespace") {
            Some(ns) if !ns.is_empty() => format!("{ns}/{service}"),
            _ => service,
        };
        labels.entry("job".into()).or_insert(job);
    }
    if let Some(instance) = text("service.instance.id") {
        labels.entry("instance".into()).or_insert(instance);
    }
    labels
}

/// The samples one point gives for one part: an extra label (`le`, `quantile`) and a value.
pub(super) fn part_values(
    point: &MetricPoint,
    part: Part,
) -> Vec<(Option<(&'static str, String)>, f64)> {
    match (&point.value, part) {
        (PointValue::Number(n), Part::Value) => vec![(None, number(n))],
        (
            PointValue::Histogram {
                count,
                bucket_counts,
                explicit_bounds,
                ..
            },
            Part::Bucket,
        ) => {
            let mut out = Vec::with_capacity(explicit_bounds.len() + 1);
            let mut cumulative = 0u64;
            for (bound, c) in explicit_bounds.iter().zip(bucket_counts) {
                cumulative += c;
                out.push((Some(("le", format_value(*bound))), cumulative as f64));
            }
            out.push((Some(("le", "+Inf".to_string())), *count as f64));
            out
        }
        (PointValue::Histogram { sum, .. }, Part::Sum) => {
            sum.map(|s| vec![(None, s)]).unwrap_or_default()
        }
        (PointValue::Histogram { count, .. }, Part::Count)
        | (PointValue::Summary { count, .. }, Part::Count) => vec![(None, *count as f64)],
        (PointValue::Summary { sum, .. }, Part::Sum) => vec![(None, *sum)],
        (PointValue::Summary { quantiles, .. }, Part::Quantile) => quantiles
            .iter()
            .map(|q| (Some(("quantile", format_value(q.quantile))), q.value))
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn number(n: &NumberValue) -> f64 {
    match n {
        NumberValue::Int(i) => *i as f64,
        NumberValue::Double(d) => *d,
    }
}
