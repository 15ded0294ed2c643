//! The range query dashboards ask most, `sum|avg|min|max|count by|without (…)
//! (rate|increase|delta(selector[r]))`, evaluated series by series instead of step by step:
//! each series' window slides over its points once for all steps, its group is worked out
//! once, and each group's value at each step is added up in the order the step-by-step
//! evaluation adds it (series order), so the answers are the same to the bit.

use std::collections::BTreeMap;

use promql_parser::parser::{AggregateExpr, Expr, VectorSelector};

use super::aggregate::group_labels;
use super::eval::{Evaluator, offset_ms, op_name};
use super::functions::{KahanSum, extrapolated};
use super::{Labels, METRIC_NAME, PromError, Series, is_stale, millis};

/// `Some` when `expr` has the shape this evaluates; `None` leaves it to the general path.
pub(super) fn range(
    ev: &mut Evaluator,
    expr: &Expr,
    start: i64,
    end: i64,
    step: i64,
) -> Option<Result<Vec<Series>, PromError>> {
    let Expr::Aggregate(a) = expr else {
        return None;
    };
    let op = op_name(a.op);
    if !matches!(op.as_str(), "sum" | "avg" | "min" | "max" | "count") || a.param.is_some() {
        return None;
    }
    let Expr::Call(call) = unparen(&a.expr) else {
        return None;
    };
    let (counter, per_second) = match call.func.name {
        "rate" => (true, true),
        "increase" => (true, false),
        "delta" => (false, false),
        _ => return None,
    };
    let Expr::MatrixSelector(ms) = unparen(call.args.args.first()?) else {
        return None;
    };
    if ms.vs.at.is_some() {
        return None;
    }
    Some(evaluate(
        ev,
        a,
        &ms.vs,
        millis(&ms.range),
        (counter, per_second),
        (start, end, step),
    ))
}

fn unparen(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}

/// One group's value at one step, as the aggregation builds it.
#[derive(Default)]
struct Acc {
    n: usize,
    sum: KahanSum,
    best: f64,
}

fn evaluate(
    ev: &Evaluator,
    a: &AggregateExpr,
    vs: &VectorSelector,
    range: i64,
    (counter, per_second): (bool, bool),
    (start, end, step): (i64, i64, i64),
) -> Result<Vec<Series>, PromError> {
    let op = op_name(a.op);
    let steps = ((end - start) / step + 1) as usize;
    let offset = offset_ms(&vs.offset);
    let series = ev.series_of(vs);
    let mut groups: BTreeMap<Labels, usize> = BTreeMap::new();
    let mut accs: Vec<Acc> = Vec::new();
    let mut points = Vec::new();
    for s in series {
        ev.check_time()?;
        // The function drops the name; the aggregation then groups.
        let mut labels = s.labels.clone();
        labels.remove(METRIC_NAME);
        let group = group_labels(&a.modifier, &labels);
        let next = groups.len();
        let g = *groups.entry(group).or_insert(next);
        if g == next {
            accs.resize_with(accs.len() + steps, Acc::default);
        }
        points.clear();
        points.extend(s.points.iter().filter(|(_, f)| !is_stale(*f)).copied());
        let (mut lo, mut hi) = (0, 0);
        for i in 0..steps {
            let at = start + i as i64 * step - offset;
            let from = at - range;
            while lo < points.len() && points[lo].0 <= from {
                lo += 1;
            }
            hi = hi.max(lo);
            while hi < points.len() && points[hi].0 <= at {
                hi += 1;
            }
            let Some(f) = extrapolated(
                &points[lo..hi],
                from,
                at,
                counter,
                per_second.then_some(range),
            ) else {
                continue;
            };
            let acc = &mut accs[g * steps + i];
            match op.as_str() {
                "sum" | "avg" => acc.sum.add(f),
                "min" if acc.n == 0 || f < acc.best || acc.best.is_nan() => acc.best = f,
                "max" if acc.n == 0 || f > acc.best || acc.best.is_nan() => acc.best = f,
                _ => {}
            }
            acc.n += 1;
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    let mut held = 0;
    for (labels, g) in groups {
        let points: Vec<(i64, f64)> = (0..steps)
            .filter_map(|i| {
                let acc = &accs[g * steps + i];
                let value = match op.as_str() {
                    _ if acc.n == 0 => return None,
                    "sum" => acc.sum.value(),
                    "avg" => acc.sum.value() / acc.n as f64,
                    "count" => acc.n as f64,
                    _ => acc.best,
                };
                Some((start + i as i64 * step, value))
            })
            .collect();
        held += points.len();
        if !points.is_empty() {
            out.push(Series { labels, points });
        }
    }
    ev.check_samples(held)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::{Limits, MemorySource, parse, stale_marker};

    /// Counters with resets, gaps, staleness and uneven spacing in three groups.
    fn source() -> MemorySource {
        let mut source = MemorySource::default();
        let mut state = 7u64;
        let mut random = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as f64 / (1u64 << 31) as f64
        };
        for s in 0..30 {
            let labels: Labels = [
                ("__name__".to_string(), "requests_total".to_string()),
                ("job".to_string(), format!("job{}", s % 3)),
                ("instance".to_string(), format!("i{s}")),
            ]
            .into_iter()
            .collect();
            let mut value = 0.0;
            let mut t = (random() * 30_000.0) as i64;
            while t < 3_600_000 {
                let r = random();
                if r < 0.02 {
                    value = 0.0; // a reset
                } else {
                    value += (r * 10.0).floor();
                }
                let f = if r > 0.99 { stale_marker() } else { value };
                if r > 0.05 {
                    source.push(&labels, t, f);
                }
                t += 10_000 + (random() * 10_000.0) as i64;
            }
        }
        source
    }

    #[test]
    fn series_by_series_equals_step_by_step() {
        let source = source();
        for query in [
            "sum by (job) (rate(requests_total[5m]))",
            "avg without (instance) (increase(requests_total[2m]))",
            "max by (job) (delta(requests_total[90s] offset 1m))",
            "min (rate(requests_total[3m]))",
            "count by (job) (rate(requests_total{job!=\"job1\"}[1m]))",
        ] {
            let expr = parse(query).unwrap();
            let (start, end, step) = (600_000, 3_600_000, 15_000);
            let fast = Evaluator::new(&source, Limits::default())
                .range(&expr, start, end, step)
                .unwrap();
            let mut slow_ev = Evaluator::new(&source, Limits::default());
            slow_ev.prepare(&expr, start, end).unwrap();
            let slow = slow_ev.at_steps(&expr, start, end, step, "test").unwrap();
            assert!(!fast.is_empty(), "{query}");
            assert_eq!(fast.len(), slow.len(), "{query}");
            for (f, s) in fast.iter().zip(&slow) {
                assert_eq!(f.labels, s.labels, "{query}");
                assert_eq!(f.points.len(), s.points.len(), "{query} {:?}", f.labels);
                for (a, b) in f.points.iter().zip(&s.points) {
                    assert_eq!(a.0, b.0, "{query}");
                    assert!(
                        a.1 == b.1 || (a.1.is_nan() && b.1.is_nan()),
                        "{query} at {}: {} vs {}",
                        a.0,
                        a.1,
                        b.1
                    );
                }
            }
        }
    }
}
