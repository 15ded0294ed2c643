//! The histogram functions: `histogram_quantile` over classic `_bucket{le}` series and native
//! histograms, the other `histogram_*` functions' shared walk, and the range functions over
//! windows that hold native histograms.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::super::{Histogram, Labels, METRIC_NAME, Sample};
use super::extrapolation;

/// `f` of each histogram in `v`, as a number without the metric name; numbers are left out.
pub(super) fn of_histograms(v: Vec<Sample>, t: i64, f: impl Fn(&Histogram) -> f64) -> Vec<Sample> {
    v.into_iter()
        .filter_map(|mut s| {
            let h = s.h.take()?;
            s.labels.remove(METRIC_NAME);
            Some(Sample::float(s.labels, t, f(&h)))
        })
        .collect()
}

/// A range function over a series with histogram samples in the window (`start`, `end`,
/// `range` in ms), as Prometheus computes it: the functions that take histograms give a
/// histogram (or a count); a window that mixes numbers and histograms gives only what counts
/// or picks samples; every other function gives nothing.
pub(super) fn over_histograms(
    name: &str,
    floats: &[(i64, f64)],
    hs: &[(i64, Arc<Histogram>)],
    (start, end, range): (i64, i64, i64),
) -> Option<Sample> {
    let number = |f: f64| Some(Sample::float(Labels::new(), 0, f));
    let histogram = |h: Histogram| Some(Sample::float(Labels::new(), 0, 0.0).with(&Arc::new(h)));
    let n = floats.len() + hs.len();
    match name {
        "count_over_time" => return number(n as f64),
        "present_over_time" => return number(1.0),
        "last_over_time" | "first_over_time" => {
            let last = name == "last_over_time";
            let pick_h = if last { hs.last() } else { hs.first() }?;
            let pick_f = if last { floats.last() } else { floats.first() };
            return match pick_f {
                Some(&(ft, f)) if (ft > pick_h.0) == last => number(f),
                _ => Some(Sample::float(Labels::new(), 0, 0.0).with(&pick_h.1)),
            };
        }
        "resets" | "changes" | "irate" | "idelta" => {}
        _ if !floats.is_empty() => return None,
        _ => {}
    }
    match name {
        "rate" | "increase" | "delta" => {
            let counter = name != "delta";
            let change = super::super::histogram::change(hs, counter)?;
            let first = &hs[0].1;
            let factor = extrapolation(
                (hs[0].0, hs[hs.len() - 1].0, hs.len()),
                (start, end),
                counter.then_some((first.count, change.count)),
                (name == "rate").then_some(range),
            )?;
            histogram(change.scaled(factor))
        }
        "irate" | "idelta" => {
            let [.., (t0, h0), (t1, h1)] = hs else {
                return None;
            };
            // The last two samples must both be histograms.
            if floats.last().is_some_and(|(ft, _)| ft > t0) {
                return None;
            }
            if name == "idelta" {
                return histogram(h1.add_scaled(h0, -1.0).compact());
            }
            let change = if h1.is_reset_after(h0) {
                h1.as_ref().clone()
            } else {
                h1.add_scaled(h0, -1.0)
            };
            let seconds = (t1 - t0) as f64 / 1000.0;
            if seconds <= 0.0 {
                return None;
            }
            histogram(change.compact().scaled(1.0 / seconds))
        }
        "resets" | "changes" => {
            // In time order; a switch between a number and a histogram counts as both.
            let mut samples: Vec<(i64, Result<f64, &Histogram>)> = floats
                .iter()
                .map(|(t, f)| (*t, Ok(*f)))
                .chain(hs.iter().map(|(t, h)| (*t, Err(h.as_ref()))))
                .collect();
            samples.sort_by_key(|s| s.0);
            let counted = samples.windows(2).filter(|w| match (&w[0].1, &w[1].1) {
                (Ok(a), Ok(b)) if name == "resets" => b < a,
                (Ok(a), Ok(b)) => a != b && !(a.is_nan() && b.is_nan()),
                (Err(a), Err(b)) if name == "resets" => b.is_reset_after(a),
                (Err(a), Err(b)) => a != b,
                _ => true,
            });
            number(counted.count() as f64)
        }
        "sum_over_time" | "avg_over_time" => {
            let mut total = hs[0].1.as_ref().clone();
            for (_, h) in &hs[1..] {
                total = total.add_scaled(h, 1.0);
            }
            if name == "avg_over_time" {
                total = total.scaled(1.0 / hs.len() as f64);
            }
            histogram(total.compact())
        }
        _ => None,
    }
}

/// One bucket of a classic histogram: its upper bound and cumulative count.
struct Bucket {
    le: f64,
    count: f64,
}

/// `histogram_quantile` over native histograms (each on its own, see [`Histogram::quantile`])
/// and classic `_bucket{le}` series: grouped by their labels without `le` (and the name),
/// interpolated linearly within the bucket the rank falls in.
pub(super) fn histogram_quantile(q: f64, v: Vec<Sample>, t: i64) -> Vec<Sample> {
    let (native, classic): (Vec<Sample>, Vec<Sample>) = v.into_iter().partition(|s| s.h.is_some());
    let mut out = of_histograms(native, t, |h| h.quantile(q));
    let mut groups: BTreeMap<Labels, Vec<Bucket>> = BTreeMap::new();
    for mut s in classic {
        let Some(le) = s.labels.remove("le") else {
            continue;
        };
        let Some(le) = parse_bound(&le) else {
            continue;
        };
        s.labels.remove(METRIC_NAME);
        groups
            .entry(s.labels)
            .or_default()
            .push(Bucket { le, count: s.f });
    }
    for (labels, buckets) in groups {
        // A native histogram and classic buckets under one label set: neither is answered, as
        // in Prometheus.
        match out.iter().position(|s| s.labels == labels) {
            Some(i) => {
                out.swap_remove(i);
            }
            None => out.push(Sample::float(labels, t, bucket_quantile(q, buckets))),
        }
    }
    out
}

fn parse_bound(text: &str) -> Option<f64> {
    match text.trim() {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

fn bucket_quantile(q: f64, mut buckets: Vec<Bucket>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.le.total_cmp(&b.le));
    if buckets.last().is_none_or(|b| b.le != f64::INFINITY) {
        return f64::NAN;
    }
    // Buckets with one bound are one bucket.
    let mut merged: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match merged.last_mut() {
            Some(last) if last.le == b.le => last.count += b.count,
            _ => merged.push(b),
        }
    }
    // Counts must not fall from one bucket to the next; tiny differences are rounding.
    let mut previous = merged[0].count;
    for b in &mut merged[1..] {
        if b.count == previous {
            continue;
        }
        if (b.count - previous).abs() <= 1e-12 * b.count.abs().max(previous.abs()) {
            b.count = previous;
            continue;
        }
        if b.count < previous {
            b.count = previous;
            continue;
        }
        previous = b.count;
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].count;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = merged[..merged.len() - 1]
        .iter()
        .position(|b| b.count >= rank)
        .unwrap_or(merged.len() - 1);
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].le;
    }
    if b == 0 && merged[0].le <= 0.0 {
        return merged[0].le;
    }
    let (start, mut count) = (if b > 0 { merged[b - 1].le } else { 0.0 }, merged[b].count);
    if b > 0 {
        count -= merged[b - 1].count;
        rank -= merged[b - 1].count;
    }
    start + (merged[b].le - start) * (rank / count)
}
