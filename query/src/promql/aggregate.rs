//! Aggregation operators: `sum`, `avg`, `min`, `max`, `count`, `group`, `stddev`, `stdvar`,
//! `quantile`, `topk`, `bottomk`, `count_values`, with `by` and `without`.

use std::collections::BTreeMap;
use std::sync::Arc;

use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::eval::{Evaluator, op_name};
use super::functions::{KahanSum, quantile};
use super::{Histogram, Labels, METRIC_NAME, PromError, Sample, Value, format_value};

pub(super) fn eval(ev: &mut Evaluator, a: &AggregateExpr, t: i64) -> Result<Value, PromError> {
    let op = op_name(a.op);
    let op = op.as_str();
    let mut input = ev.vector(&a.expr, t)?;
    if !matches!(op, "sum" | "avg" | "count" | "group") {
        // The others compare or spread numbers: histograms are left out.
        input.retain(|s| s.h.is_none());
    }
    let grouping = |labels: &Labels| group_labels(&a.modifier, labels);
    match op {
        "topk" | "bottomk" => {
            let k = param_number(ev, a, t)?;
            let top = op == "topk";
            return Ok(Value::Vector(top_k(input, k, top, grouping)));
        }
        "count_values" => {
            let Some(param) = &a.param else {
                return Err(PromError::bad_data("count_values needs a label name"));
            };
            let label = ev.string(param, t)?;
            if !valid_label_name(&label) {
                return Err(PromError::execution(format!(
                    "invalid label name {label:?}"
                )));
            }
            let mut counts: BTreeMap<Labels, f64> = BTreeMap::new();
            for s in &input {
                let mut labels = grouping(&s.labels);
                labels.insert(label.clone(), format_value(s.f));
                *counts.entry(labels).or_default() += 1.0;
            }
            return Ok(Value::Vector(
                counts
                    .into_iter()
                    .map(|(labels, f)| Sample::float(labels, t, f))
                    .collect(),
            ));
        }
        _ => {}
    }
    let q = if op == "quantile" {
        Some(param_number(ev, a, t)?)
    } else {
        None
    };
    let node = a as *const AggregateExpr as usize;
    let mut groups: BTreeMap<Labels, (Vec<f64>, Vec<Arc<Histogram>>)> = BTreeMap::new();
    for s in input {
        let group = ev.memo(node, &s.labels, grouping);
        let (floats, histograms) = groups.entry(group).or_default();
        match s.h {
            Some(h) => histograms.push(h),
            None => floats.push(s.f),
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for (labels, (values, histograms)) in groups {
        if !histograms.is_empty() {
            let n = values.len() + histograms.len();
            let h = match op {
                "count" => {
                    out.push(Sample::float(labels, t, n as f64));
                    continue;
                }
                "group" => {
                    out.push(Sample::float(labels, t, 1.0));
                    continue;
                }
                // A group of numbers and histograms has no sum.
                _ if !values.is_empty() => continue,
                "avg" => sum_histograms(&histograms).scaled(1.0 / n as f64),
                _ => sum_histograms(&histograms),
            };
            out.push(Sample::float(labels, t, 0.0).with(&Arc::new(h.compact())));
            continue;
        }
        let f = match op {
            "sum" => sum(&values),
            "avg" => sum(&values) / values.len() as f64,
            "count" => values.len() as f64,
            "group" => 1.0,
            "min" => extreme(&values, |a, b| a < b),
            "max" => extreme(&values, |a, b| a > b),
            "stdvar" => variance(&values),
            "stddev" => variance(&values).sqrt(),
            "quantile" => quantile(q.unwrap_or(f64::NAN), values),
            other => {
                return Err(PromError::execution(format!(
                    "the aggregation {other} is not supported"
                )));
            }
        };
        out.push(Sample::float(labels, t, f));
    }
    Ok(Value::Vector(out))
}

/// The sum of histograms, in the coarsest schema among them.
fn sum_histograms(histograms: &[Arc<Histogram>]) -> Histogram {
    let mut total = histograms[0].as_ref().clone();
    for h in &histograms[1..] {
        total = total.add_scaled(h, 1.0);
    }
    total
}

/// The labels an aggregation groups `labels` under: those `by` names, or all but those
/// `without` names (and `__name__`), or none.
pub(super) fn group_labels(modifier: &Option<LabelModifier>, labels: &Labels) -> Labels {
    match modifier {
        Some(LabelModifier::Include(keep)) => labels
            .iter()
            .filter(|(k, _)| keep.labels.iter().any(|l| l == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Some(LabelModifier::Exclude(drop)) => labels
            .iter()
            .filter(|(k, _)| *k != METRIC_NAME && !drop.labels.iter().any(|l| l == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        None => Labels::new(),
    }
}

fn param_number(ev: &mut Evaluator, a: &AggregateExpr, t: i64) -> Result<f64, PromError> {
    match &a.param {
        Some(p) => ev.scalar(p, t),
        None => Err(PromError::bad_data(format!(
            "{} needs a parameter",
            op_name(a.op)
        ))),
    }
}

fn sum(values: &[f64]) -> f64 {
    let mut k = KahanSum::default();
    for v in values {
        k.add(*v);
    }
    k.value()
}

/// The smallest (or largest) value; a NaN gives way to any number, as in Prometheus.
fn extreme(values: &[f64], better: impl Fn(f64, f64) -> bool) -> f64 {
    let mut best = values[0];
    for &v in &values[1..] {
        if better(v, best) || best.is_nan() {
            best = v;
        }
    }
    best
}

/// The population variance, computed as Prometheus does (Welford).
pub(super) fn variance(values: &[f64]) -> f64 {
    let (mut mean, mut m2) = (0.0, 0.0);
    for (i, v) in values.iter().enumerate() {
        let delta = v - mean;
        mean += delta / (i + 1) as f64;
        m2 += delta * (v - mean);
    }
    m2 / values.len() as f64
}

/// `topk`/`bottomk`: the `k` largest (smallest) of each group, labels kept, best first. A NaN
/// ranks below every number in both.
fn top_k(
    input: Vec<Sample>,
    k: f64,
    top: bool,
    grouping: impl Fn(&Labels) -> Labels,
) -> Vec<Sample> {
    if k.is_nan() || k < 1.0 {
        return Vec::new();
    }
    let k = if k >= usize::MAX as f64 {
        usize::MAX
    } else {
        k as usize
    };
    let mut groups: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    for s in input {
        groups.entry(grouping(&s.labels)).or_default().push(s);
    }
    let mut out = Vec::new();
    for (_, mut members) in groups {
        members.sort_by(|a, b| {
            let order = match (a.f.is_nan(), b.f.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => return std::cmp::Ordering::Greater,
                (false, true) => return std::cmp::Ordering::Less,
                _ => a.f.total_cmp(&b.f),
            };
            if top { order.reverse() } else { order }
        });
        members.truncate(k);
        out.extend(members);
    }
    out
}

fn valid_label_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_control)
}
