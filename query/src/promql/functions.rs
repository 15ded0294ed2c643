//! PromQL's functions, as the Prometheus documentation defines them.

use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr};

use super::eval::Evaluator;

use super::{Labels, METRIC_NAME, PromError, Sample, Series, Value};

mod histograms;
use histograms::{histogram_quantile, of_histograms, over_histograms};

/// Functions whose result keeps the input's metric name.
const KEEP_NAME: &[&str] = &[
    "last_over_time",
    "first_over_time",
    "sort",
    "sort_desc",
    "label_replace",
    "label_join",
];

pub(super) fn eval(ev: &mut Evaluator, call: &Call, t: i64) -> Result<Value, PromError> {
    let name = call.func.name;
    let args: Vec<&Expr> = call.args.args.iter().map(|a| a.as_ref()).collect();
    let drop_name = !KEEP_NAME.contains(&name);
    if let Some(f) = math(name) {
        let v = ev.vector(args[0], t)?;
        return Ok(Value::Vector(map(v, t, drop_name, f)));
    }
    if let Some(part) = date_part(name) {
        let v = match args.first() {
            Some(a) => ev.vector(a, t)?,
            None => vec![Sample::float(Labels::new(), t, t as f64 / 1000.0)],
        };
        return Ok(Value::Vector(map(v, t, true, |f| date(f, part))));
    }
    if name.ends_with("_over_time") || RANGE_FUNCTIONS.contains(&name) {
        return over_range(ev, name, &args, t, drop_name);
    }
    match name {
        "time" => Ok(Value::Scalar(t as f64 / 1000.0)),
        "pi" => Ok(Value::Scalar(std::f64::consts::PI)),
        "vector" => Ok(Value::Vector(vec![Sample::float(
            Labels::new(),
            t,
            ev.scalar(args[0], t)?,
        )])),
        "scalar" => {
            let v = ev.vector(args[0], t)?;
            // Histograms are left out.
            let mut numbers = v.iter().filter(|s| s.h.is_none());
            Ok(Value::Scalar(match (numbers.next(), numbers.next()) {
                (Some(one), None) => one.f,
                _ => f64::NAN,
            }))
        }
        "timestamp" => {
            let of_selector = Evaluator::selector_of(args[0]).is_some();
            let v = ev.vector(args[0], t)?;
            Ok(Value::Vector(
                v.into_iter()
                    .map(|mut s| {
                        s.f = if of_selector { s.t } else { t } as f64 / 1000.0;
                        s.h = None;
                        s.labels.remove(METRIC_NAME);
                        s.t = t;
                        s
                    })
                    .collect(),
            ))
        }
        "absent" => {
            let v = ev.vector(args[0], t)?;
            Ok(Value::Vector(absent(v.is_empty(), args[0], t)))
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let v = ev.vector(args[0], t)?;
            let (lo, hi) = match name {
                "clamp" => (ev.scalar(args[1], t)?, ev.scalar(args[2], t)?),
                "clamp_min" => (ev.scalar(args[1], t)?, f64::INFINITY),
                _ => (f64::NEG_INFINITY, ev.scalar(args[1], t)?),
            };
            if hi < lo {
                return Ok(Value::Vector(Vec::new()));
            }
            Ok(Value::Vector(map(v, t, true, |f| {
                go_max(lo, go_min(hi, f))
            })))
        }
        "round" => {
            let v = ev.vector(args[0], t)?;
            let to = match args.get(1) {
                Some(a) => ev.scalar(a, t)?,
                None => 1.0,
            };
            let inverse = 1.0 / to;
            Ok(Value::Vector(map(v, t, true, |f| {
                (f * inverse + 0.5).floor() / inverse
            })))
        }
        "sort" | "sort_desc" => {
            let mut v = ev.vector(args[0], t)?;
            // Histograms have no order.
            v.retain(|s| s.h.is_none());
            let descending = name == "sort_desc";
            v.sort_by(|a, b| match (a.f.is_nan(), b.f.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if descending => b.f.total_cmp(&a.f),
                _ => a.f.total_cmp(&b.f),
            });
            Ok(Value::Vector(v))
        }
        "label_replace" => label_replace(ev, &args, t),
        "label_join" => label_join(ev, &args, t),
        "histogram_quantile" => {
            let q = ev.scalar(args[0], t)?;
            let v = ev.vector(args[1], t)?;
            Ok(Value::Vector(histogram_quantile(q, v, t)))
        }
        "histogram_fraction" => {
            let lower = ev.scalar(args[0], t)?;
            let upper = ev.scalar(args[1], t)?;
            let v = ev.vector(args[2], t)?;
            Ok(Value::Vector(of_histograms(v, t, |h| {
                h.fraction(lower, upper)
            })))
        }
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            let v = ev.vector(args[0], t)?;
            Ok(Value::Vector(of_histograms(v, t, |h| match name {
                "histogram_count" => h.count,
                "histogram_sum" => h.sum,
                "histogram_avg" => h.sum / h.count,
                "histogram_stddev" => h.variance().sqrt(),
                _ => h.variance(),
            })))
        }
        other => Err(PromError::execution(format!(
            "the function {other} is not supported"
        ))),
    }
}

/// Functions over a range vector whose names do not end in `_over_time`.
const RANGE_FUNCTIONS: &[&str] = &[
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "resets",
    "changes",
    "deriv",
    "predict_linear",
];

/// `f` of each number in `v`; histogram samples are left out.
fn map(v: Vec<Sample>, t: i64, drop_name: bool, f: impl Fn(f64) -> f64) -> Vec<Sample> {
    v.into_iter()
        .filter(|s| s.h.is_none())
        .map(|mut s| {
            s.f = f(s.f);
            s.t = t;
            if drop_name {
                s.labels.remove(METRIC_NAME);
            }
            s
        })
        .collect()
}

fn math(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "sqrt" => f64::sqrt,
        "exp" => f64::exp,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sgn" => |f: f64| {
            if f > 0.0 {
                1.0
            } else if f < 0.0 {
                -1.0
            } else {
                f
            }
        },
        "acos" => f64::acos,
        "acosh" => f64::acosh,
        "asin" => f64::asin,
        "asinh" => f64::asinh,
        "atan" => f64::atan,
        "atanh" => f64::atanh,
        "cos" => f64::cos,
        "cosh" => f64::cosh,
        "sin" => f64::sin,
        "sinh" => f64::sinh,
        "tan" => f64::tan,
        "tanh" => f64::tanh,
        "deg" => f64::to_degrees,
        "rad" => f64::to_radians,
        _ => return None,
    })
}

/// Go's `math.Max`: NaN wins, and so does +Inf.
fn go_max(a: f64, b: f64) -> f64 {
    if a == f64::INFINITY || b == f64::INFINITY {
        f64::INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: NaN wins, and so does -Inf.
fn go_min(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY || b == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn over_range(
    ev: &mut Evaluator,
    name: &str,
    args: &[&Expr],
    t: i64,
    drop_name: bool,
) -> Result<Value, PromError> {
    // quantile_over_time takes the quantile first; predict_linear the seconds after.
    let (matrix_arg, scalar) = match name {
        "quantile_over_time" => (args[1], Some(ev.scalar(args[0], t)?)),
        "predict_linear" => (args[0], Some(ev.scalar(args[1], t)?)),
        _ => (args[0], None),
    };
    let range = Evaluator::range_of(matrix_arg).unwrap_or(0);
    let end = ev.range_end(matrix_arg, t);
    let matrix = ev.matrix(matrix_arg, t)?;
    if name == "absent_over_time" {
        return Ok(Value::Vector(absent(matrix.is_empty(), matrix_arg, t)));
    }
    let op = call_address(args);
    let mut out = Vec::with_capacity(matrix.len());
    for Series {
        mut labels,
        points,
        histograms,
    } in matrix
    {
        // Functions of numbers read a mixed window's numbers; `irate` and `idelta` its last two
        // samples, numbers or histograms.
        let numbers_only = matches!(
            name,
            "min_over_time"
                | "max_over_time"
                | "stddev_over_time"
                | "stdvar_over_time"
                | "quantile_over_time"
                | "deriv"
                | "predict_linear"
        );
        let last_two_numbers = matches!(name, "irate" | "idelta")
            && points.len() >= 2
            && histograms
                .last()
                .is_none_or(|(ht, _)| *ht < points[points.len() - 2].0);
        let read_numbers = (numbers_only && !points.is_empty()) || last_two_numbers;
        if !histograms.is_empty() && !read_numbers {
            let Some(mut sample) =
                over_histograms(name, &points, &histograms, (end - range, end, range))
            else {
                continue;
            };
            if drop_name {
                labels = ev.memo(op, &labels, |l| {
                    let mut l = l.clone();
                    l.remove(METRIC_NAME);
                    l
                });
            }
            sample.labels = labels;
            sample.t = t;
            out.push(sample);
            continue;
        }
        let value = match name {
            "rate" => extrapolated(&points, end - range, end, true, Some(range)),
            "increase" => extrapolated(&points, end - range, end, true, None),
            "delta" => extrapolated(&points, end - range, end, false, None),
            "irate" | "idelta" => instant_change(&points, name == "irate"),
            "resets" => Some(points.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64),
            "changes" => Some(
                points
                    .windows(2)
                    .filter(|w| w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan()))
                    .count() as f64,
            ),
            "deriv" => (points.len() >= 2).then(|| linear_regression(&points, points[0].0).0),
            "predict_linear" => (points.len() >= 2).then(|| {
                let (slope, intercept) = linear_regression(&points, t);
                slope * scalar.unwrap_or(0.0) + intercept
            }),
            "avg_over_time" => Some(mean(&points)),
            "sum_over_time" => {
                let mut k = KahanSum::default();
                points.iter().for_each(|p| k.add(p.1));
                Some(k.value())
            }
            "count_over_time" => Some(points.len() as f64),
            "min_over_time" => Some(extreme(&points, |a, b| a < b)),
            "max_over_time" => Some(extreme(&points, |a, b| a > b)),
            "last_over_time" => points.last().map(|p| p.1),
            "first_over_time" => points.first().map(|p| p.1),
            "present_over_time" => Some(1.0),
            "stdvar_over_time" | "stddev_over_time" => {
                let values: Vec<f64> = points.iter().map(|p| p.1).collect();
                let var = super::aggregate::variance(&values);
                Some(if name == "stdvar_over_time" {
                    var
                } else {
                    var.sqrt()
                })
            }
            "quantile_over_time" => Some(quantile(
                scalar.unwrap_or(f64::NAN),
                points.iter().map(|p| p.1).collect(),
            )),
            other => {
                return Err(PromError::execution(format!(
                    "the function {other} is not supported"
                )));
            }
        };
        if let Some(f) = value {
            if drop_name {
                labels = ev.memo(op, &labels, |l| {
                    let mut l = l.clone();
                    l.remove(METRIC_NAME);
                    l
                });
            }
            out.push(Sample::float(labels, t, f));
        }
    }
    Ok(Value::Vector(out))
}

/// An address standing for the call whose arguments these are.
fn call_address(args: &[&Expr]) -> usize {
    args.first().map_or(0, |a| *a as *const Expr as usize)
}

/// `rate`, `increase` and `delta`: the change over the samples in `(start, end]`, extrapolated
/// towards the window's edges as Prometheus does (to half a sample interval at most, and for a
/// counter not below zero), counter resets added back; per second when `rate_over` is the
/// window.
pub(super) fn extrapolated(
    points: &[(i64, f64)],
    start: i64,
    end: i64,
    counter: bool,
    rate_over: Option<i64>,
) -> Option<f64> {
    extrapolated_with(points, start, end, counter, counter, rate_over)
}

/// [`extrapolated`], told whether `points` may hold a counter reset: a caller that knows they
/// hold none (`resets` false) saves the scan for them.
pub(super) fn extrapolated_with(
    points: &[(i64, f64)],
    start: i64,
    end: i64,
    counter: bool,
    resets: bool,
    rate_over: Option<i64>,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (first_t, first) = points[0];
    let (last_t, last) = points[points.len() - 1];
    let mut result = last - first;
    if counter && resets {
        let mut previous = first;
        for &(_, f) in &points[1..] {
            if f < previous {
                result += previous;
            }
            previous = f;
        }
    }
    let factor = extrapolation(
        (first_t, last_t, points.len()),
        (start, end),
        counter.then_some((first, result)),
        rate_over,
    )?;
    Some(result * factor)
}

/// What the change between the first and the last of `n` samples (at `first_t`, `last_t`)
/// is multiplied by to cover the window `(start, end]`: extrapolated to the window's edges,
/// or half an average sample interval past the samples when they stop short of an edge; for a
/// counter (its first value and the change) no further back than where it would be zero; per
/// second of `rate_over` when given.
fn extrapolation(
    (first_t, last_t, n): (i64, i64, usize),
    (start, end): (i64, i64),
    counter: Option<(f64, f64)>,
    rate_over: Option<i64>,
) -> Option<f64> {
    if n < 2 {
        return None;
    }
    let mut to_start = (first_t - start) as f64 / 1000.0;
    let mut to_end = (end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let average = sampled / (n - 1) as f64;
    let threshold = average * 1.1;
    if to_start >= threshold {
        to_start = average / 2.0;
    }
    if let Some((first, result)) = counter
        && result > 0.0
        && first >= 0.0
    {
        // A counter starts at zero: extrapolate no further back than where it would be 0.
        to_start = to_start.min(sampled * (first / result));
    }
    if to_end >= threshold {
        to_end = average / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if let Some(range) = rate_over {
        factor /= range as f64 / 1000.0;
    }
    Some(factor)
}

/// `irate` (per second, a drop read as a reset) and `idelta` from the last two samples.
fn instant_change(points: &[(i64, f64)], rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (t0, f0) = points[points.len() - 2];
    let (t1, f1) = points[points.len() - 1];
    if !rate {
        return Some(f1 - f0);
    }
    let change = if f1 < f0 { f1 } else { f1 - f0 };
    let seconds = (t1 - t0) as f64 / 1000.0;
    if seconds == 0.0 {
        return None;
    }
    Some(change / seconds)
}

/// Least squares over `(seconds since intercept_time, value)`: slope and intercept.
fn linear_regression(points: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let first = points[0].1;
    if points.iter().all(|p| p.1 == first) {
        if first.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, first);
    }
    let n = points.len() as f64;
    let (mut sx, mut sy, mut sxy, mut sx2) = (
        KahanSum::default(),
        KahanSum::default(),
        KahanSum::default(),
        KahanSum::default(),
    );
    for &(pt, f) in points {
        let x = (pt - intercept_time) as f64 / 1000.0;
        sx.add(x);
        sy.add(f);
        sxy.add(x * f);
        sx2.add(x * x);
    }
    let (sx, sy, sxy, sx2) = (sx.value(), sy.value(), sxy.value(), sx2.value());
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

fn mean(points: &[(i64, f64)]) -> f64 {
    let mut k = KahanSum::default();
    points.iter().for_each(|p| k.add(p.1));
    let sum = k.value();
    if sum.is_finite() || points.iter().any(|p| !p.1.is_finite()) {
        return sum / points.len() as f64;
    }
    // The sum overflowed: a running mean does not.
    let mut m = 0.0;
    for (i, p) in points.iter().enumerate() {
        m += (p.1 - m) / (i + 1) as f64;
    }
    m
}

fn extreme(points: &[(i64, f64)], better: impl Fn(f64, f64) -> bool) -> f64 {
    let mut best = points[0].1;
    for &(_, f) in &points[1..] {
        if better(f, best) || best.is_nan() {
            best = f;
        }
    }
    best
}

/// Kahan–Babuška summation, as Prometheus sums.
#[derive(Default)]
pub(super) struct KahanSum {
    sum: f64,
    c: f64,
}

impl KahanSum {
    pub(super) fn add(&mut self, f: f64) {
        let t = self.sum + f;
        if t.is_infinite() {
            self.c = 0.0;
        } else if self.sum.abs() >= f.abs() {
            self.c += (self.sum - t) + f;
        } else {
            self.c += (f - t) + self.sum;
        }
        self.sum = t;
    }

    pub(super) fn value(&self) -> f64 {
        self.sum + self.c
    }
}

/// The φ-quantile of `values`, interpolated between the two nearest ranks.
pub(super) fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// `absent` and `absent_over_time`: nothing when there is data, else 1 with the labels the
/// selector fixes by `=` (a label fixed twice is left out).
fn absent(has_none: bool, arg: &Expr, t: i64) -> Vec<Sample> {
    if !has_none {
        return Vec::new();
    }
    let selector = match arg {
        Expr::MatrixSelector(ms) => Some(&ms.vs),
        other => Evaluator::selector_of(other),
    };
    let mut labels = Labels::new();
    let mut twice = Vec::new();
    if let Some(vs) = selector {
        for m in &vs.matchers.matchers {
            if m.op != MatchOp::Equal || m.name == METRIC_NAME {
                continue;
            }
            if labels.insert(m.name.clone(), m.value.clone()).is_some() {
                twice.push(m.name.clone());
            }
        }
    }
    for name in twice {
        labels.remove(&name);
    }
    vec![Sample::float(labels, t, 1.0)]
}

fn label_replace(ev: &mut Evaluator, args: &[&Expr], t: i64) -> Result<Value, PromError> {
    let v = ev.vector(args[0], t)?;
    let dst = ev.string(args[1], t)?;
    let replacement = ev.string(args[2], t)?;
    let src = ev.string(args[3], t)?;
    let pattern = ev.string(args[4], t)?;
    let re = regex::Regex::new(&format!("^(?s:{pattern})$")).map_err(|e| {
        PromError::execution(format!(
            "invalid regular expression in label_replace(): {e}"
        ))
    })?;
    if !valid_label_name(&dst) {
        return Err(PromError::execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    Ok(Value::Vector(
        v.into_iter()
            .map(|mut s| {
                let value = s.labels.get(&src).cloned().unwrap_or_default();
                if let Some(caps) = re.captures(&value) {
                    let mut out = String::new();
                    caps.expand(&replacement, &mut out);
                    if out.is_empty() {
                        s.labels.remove(&dst);
                    } else {
                        s.labels.insert(dst.clone(), out);
                    }
                }
                s.t = t;
                s
            })
            .collect(),
    ))
}

fn label_join(ev: &mut Evaluator, args: &[&Expr], t: i64) -> Result<Value, PromError> {
    let v = ev.vector(args[0], t)?;
    let dst = ev.string(args[1], t)?;
    let separator = ev.string(args[2], t)?;
    let mut sources = Vec::new();
    for a in &args[3..] {
        sources.push(ev.string(a, t)?);
    }
    if !valid_label_name(&dst) {
        return Err(PromError::execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    Ok(Value::Vector(
        v.into_iter()
            .map(|mut s| {
                let joined = sources
                    .iter()
                    .map(|l| s.labels.get(l).map_or("", String::as_str))
                    .collect::<Vec<_>>()
                    .join(&separator);
                if joined.is_empty() {
                    s.labels.remove(&dst);
                } else {
                    s.labels.insert(dst.clone(), joined);
                }
                s.t = t;
                s
            })
            .collect(),
    ))
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[derive(Clone, Copy)]
enum DatePart {
    Year,
    Month,
    DayOfMonth,
    DayOfWeek,
    DayOfYear,
    DaysInMonth,
    Hour,
    Minute,
}

fn date_part(name: &str) -> Option<DatePart> {
    Some(match name {
        "year" => DatePart::Year,
        "month" => DatePart::Month,
        "day_of_month" => DatePart::DayOfMonth,
        "day_of_week" => DatePart::DayOfWeek,
        "day_of_year" => DatePart::DayOfYear,
        "days_in_month" => DatePart::DaysInMonth,
        "hour" => DatePart::Hour,
        "minute" => DatePart::Minute,
        _ => return None,
    })
}

/// A part of the UTC date and time `seconds` after the epoch.
fn date(seconds: f64, part: DatePart) -> f64 {
    if !seconds.is_finite() {
        return f64::NAN;
    }
    let secs = seconds.floor() as i64;
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (y, m, d) = spyglass_store::model::civil_from_days(days);
    let (m, d) = (i64::from(m), i64::from(d));
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    const BEFORE: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    (match part {
        DatePart::Year => y,
        DatePart::Month => m,
        DatePart::DayOfMonth => d,
        // 1970-01-01 was a Thursday (4).
        DatePart::DayOfWeek => (days + 4).rem_euclid(7),
        DatePart::DayOfYear => BEFORE[(m - 1) as usize] + d + i64::from(leap && m > 2),
        DatePart::DaysInMonth => match m {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        },
        DatePart::Hour => of_day / 3600,
        DatePart::Minute => of_day % 3600 / 60,
    }) as f64
}
