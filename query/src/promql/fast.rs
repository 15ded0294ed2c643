//! The range query dashboards ask most, `sum|avg|min|max|count by|without (…)
//! (rate|increase|delta(selector[r]))`, evaluated series by series instead of step by step:
//! each series' window slides over its points once for all steps, its group is worked out
//! once, and each group's value at each step is added up in the order the step-by-step
//! evaluation adds it (series order), so the answers are the same to the bit.

use std::collections::BTreeMap;
use std::time::Instant;

use promql_parser::parser::{AggregateExpr, Expr, VectorSelector};

use super::aggregate::group_labels;
use super::eval::{Evaluator, offset_ms, op_name};
use super::functions::{KahanSum, extrapolated_with};
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
    // Native histograms take the general path.
    if ms.vs.at.is_some()
        || ev
            .series_of(&ms.vs)
            .iter()
            .any(|s| !s.histograms.is_empty())
    {
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

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Sum,
    Avg,
    Min,
    Max,
    Count,
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
    let op = match op_name(a.op).as_str() {
        "sum" => Op::Sum,
        "avg" => Op::Avg,
        "min" => Op::Min,
        "max" => Op::Max,
        _ => Op::Count,
    };
    let steps = ((end - start) / step + 1) as usize;
    let series = ev.series_of(vs);
    // Each series' group: the function drops the name; the aggregation then groups.
    let mut groups: BTreeMap<Labels, usize> = BTreeMap::new();
    let mut group_of = Vec::with_capacity(series.len());
    for s in series {
        let mut labels = s.labels.clone();
        labels.remove(METRIC_NAME);
        let next = groups.len();
        group_of.push(
            *groups
                .entry(group_labels(&a.modifier, &labels))
                .or_insert(next),
        );
    }
    // Groups are independent: each thread adds up its own groups, every one of them in series
    // order, so the sums are the same to the bit however many threads there are.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(groups.len())
        .max(1);
    let mut accs: Vec<Acc> = Vec::new();
    accs.resize_with(groups.len() * steps, Acc::default);
    let mut shares: Vec<Vec<&mut [Acc]>> = (0..threads).map(|_| Vec::new()).collect();
    for (g, chunk) in accs.chunks_mut(steps).enumerate() {
        shares[g % threads].push(chunk);
    }
    let window = Window {
        offset: offset_ms(&vs.offset),
        range,
        counter,
        per_second,
        op,
        start,
        step,
        steps,
    };
    let deadline = ev.deadline();
    let timed_out = std::thread::scope(|scope| {
        let workers: Vec<_> = shares
            .into_iter()
            .enumerate()
            .map(|(t, mut share)| {
                let group_of = &group_of;
                let window = &window;
                scope.spawn(move || {
                    let mut scratch = Scratch::default();
                    for (s, &g) in series.iter().zip(group_of) {
                        if g % threads != t {
                            continue;
                        }
                        if deadline.is_some_and(|d| Instant::now() > d) {
                            return true;
                        }
                        window.slide(&s.points, share[g / threads], &mut scratch);
                    }
                    false
                })
            })
            .collect();
        let mut timed_out = false;
        for worker in workers {
            match worker.join() {
                Ok(out) => timed_out |= out,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        timed_out
    });
    if timed_out {
        ev.check_time()?;
    }
    let mut out = Vec::with_capacity(groups.len());
    let mut held = 0;
    for (labels, g) in groups {
        let points: Vec<(i64, f64)> = (0..steps)
            .filter_map(|i| {
                let acc = &accs[g * steps + i];
                let value = match op {
                    _ if acc.n == 0 => return None,
                    Op::Sum => acc.sum.value(),
                    Op::Avg => acc.sum.value() / acc.n as f64,
                    Op::Count => acc.n as f64,
                    Op::Min | Op::Max => acc.best,
                };
                Some((start + i as i64 * step, value))
            })
            .collect();
        held += points.len();
        if !points.is_empty() {
            out.push(Series::floats(labels, points));
        }
    }
    ev.check_samples(held)?;
    Ok(out)
}

/// The function and aggregation at every step.
struct Window {
    offset: i64,
    range: i64,
    counter: bool,
    per_second: bool,
    op: Op,
    start: i64,
    step: i64,
    steps: usize,
}

/// Buffers one thread reuses from series to series.
#[derive(Default)]
struct Scratch {
    /// The series' points without staleness markers, when it has any.
    live: Vec<(i64, f64)>,
    /// How many drops (counter resets) each point and those before it follow.
    drops: Vec<u32>,
}

impl Window {
    /// Adds one series' value at each step to its group's `accs`.
    fn slide(&self, points: &[(i64, f64)], accs: &mut [Acc], scratch: &mut Scratch) {
        let points = if points.iter().any(|(_, f)| is_stale(*f)) {
            scratch.live.clear();
            let live = points.iter().filter(|(_, f)| !is_stale(*f));
            scratch.live.extend(live.copied());
            &scratch.live
        } else {
            points
        };
        let drops = &mut scratch.drops;
        if self.counter {
            drops.clear();
            let mut n = 0;
            drops.push(0);
            for pair in points.windows(2) {
                n += u32::from(pair[1].1 < pair[0].1);
                drops.push(n);
            }
        }
        let (mut lo, mut hi) = (0, 0);
        for (i, acc) in accs.iter_mut().enumerate().take(self.steps) {
            let at = self.start + i as i64 * self.step - self.offset;
            let from = at - self.range;
            while lo < points.len() && points[lo].0 <= from {
                lo += 1;
            }
            hi = hi.max(lo);
            while hi < points.len() && points[hi].0 <= at {
                hi += 1;
            }
            let resets = self.counter && hi > lo && drops[hi - 1] > drops[lo];
            let Some(f) = extrapolated_with(
                &points[lo..hi],
                from,
                at,
                self.counter,
                resets,
                self.per_second.then_some(self.range),
            ) else {
                continue;
            };
            match self.op {
                Op::Sum | Op::Avg => acc.sum.add(f),
                Op::Min if acc.n == 0 || f < acc.best || acc.best.is_nan() => acc.best = f,
                Op::Max if acc.n == 0 || f > acc.best || acc.best.is_nan() => acc.best = f,
                _ => {}
            }
            acc.n += 1;
        }
    }
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
        // `range` takes the series-by-series path; `prepare` then `at_steps` never does.
        let source = source();
        for query in [
            "sum by (job) (rate(requests_total[5m]))",
            "avg without (instance) (increase(requests_total[2m]))",
            "max by (job) (delta(requests_total[90s] offset 1m))",
            "min (rate(requests_total[3m]))",
            "count by (job) (rate(requests_total{job!=\"job1\"}[1m]))",
            // Aggregations inside other expressions, looked up at each step.
            "sum by (job) (rate(requests_total[5m])) / on() group_left sum(rate(requests_total[5m]))",
            "topk(2, sum by (job) (increase(requests_total[2m])))",
            "sum(max by (job) (rate(requests_total[1m]))) + 1",
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
