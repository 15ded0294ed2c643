//! Binary operators: arithmetic, comparison (filtering, or 0/1 with `bool`), `and`, `or`,
//! `unless`; vector matching with `on`, `ignoring`, `group_left`, `group_right`.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::aggregate::group_labels;
use super::eval::{Evaluator, op_name};
use std::sync::Arc;

use super::{Histogram, Labels, METRIC_NAME, PromError, Sample, Value};

pub(super) fn eval(ev: &mut Evaluator, b: &BinaryExpr, t: i64) -> Result<Value, PromError> {
    let op = op_name(b.op);
    let op = op.as_str();
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
    let modifier = b.modifier.clone().unwrap_or_default();
    let return_bool = modifier.return_bool;
    let comparison = is_comparison(op);
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (f, keep) = apply(op, l, r)?;
            Ok(Value::Scalar(if comparison {
                f64::from(u8::from(keep))
            } else {
                f
            }))
        }
        (Value::Vector(v), Value::Scalar(s)) => Ok(Value::Vector(vector_scalar(
            op,
            v,
            s,
            false,
            return_bool,
            t,
        )?)),
        (Value::Scalar(s), Value::Vector(v)) => Ok(Value::Vector(vector_scalar(
            op,
            v,
            s,
            true,
            return_bool,
            t,
        )?)),
        (Value::Vector(l), Value::Vector(r)) => Ok(Value::Vector(match op {
            "and" | "or" | "unless" => set_operation(op, l, r, &modifier),
            _ => vector_vector(op, l, r, &modifier, t)?,
        })),
        (l, r) => Err(PromError::execution(format!(
            "{op} between a {} and a {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

/// The value of `l op r`, and whether a comparison holds (always true for arithmetic).
fn apply(op: &str, l: f64, r: f64) -> Result<(f64, bool), PromError> {
    Ok(match op {
        "+" => (l + r, true),
        "-" => (l - r, true),
        "*" => (l * r, true),
        "/" => (l / r, true),
        "%" => (l % r, true),
        "^" => (l.powf(r), true),
        "atan2" => (l.atan2(r), true),
        "==" => (l, l == r),
        "!=" => (l, l != r),
        ">" => (l, l > r),
        "<" => (l, l < r),
        ">=" => (l, l >= r),
        "<=" => (l, l <= r),
        other => {
            return Err(PromError::execution(format!(
                "operator {other} is not defined between numbers"
            )));
        }
    })
}

fn vector_scalar(
    op: &str,
    v: Vec<Sample>,
    s: f64,
    scalar_left: bool,
    return_bool: bool,
    t: i64,
) -> Result<Vec<Sample>, PromError> {
    let comparison = is_comparison(op);
    let mut out = Vec::with_capacity(v.len());
    for mut sample in v {
        if let Some(h) = sample.h.take() {
            let scalar = Operand::Number(s);
            let (l, r) = if scalar_left {
                (scalar, Operand::Histogram(&h))
            } else {
                (Operand::Histogram(&h), scalar)
            };
            if let Some(h) = histogram_apply(op, l, r) {
                sample.labels.remove(METRIC_NAME);
                out.push(Sample::float(sample.labels, t, 0.0).with(&Arc::new(h)));
            }
            continue;
        }
        let (l, r) = if scalar_left {
            (s, sample.f)
        } else {
            (sample.f, s)
        };
        let (mut f, mut keep) = apply(op, l, r)?;
        if comparison && scalar_left {
            // The vector's value is kept whichever side it stands on.
            f = r;
        }
        if return_bool {
            f = f64::from(u8::from(keep));
            keep = true;
        }
        if !keep {
            continue;
        }
        if !comparison || return_bool {
            sample.labels.remove(METRIC_NAME);
        }
        sample.f = f;
        sample.t = t;
        out.push(sample);
    }
    Ok(out)
}

/// The labels two sides are matched by: those `on` names, or all but the `ignoring` names (and
/// `__name__`, as without any).
fn signature(labels: &Labels, matching: &Option<LabelModifier>) -> Labels {
    match matching {
        None => labels
            .iter()
            .filter(|(k, _)| *k != METRIC_NAME)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Some(_) => group_labels(matching, labels),
    }
}

fn describe(labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn vector_vector(
    op: &str,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    modifier: &BinModifier,
    t: i64,
) -> Result<Vec<Sample>, PromError> {
    let comparison = is_comparison(op);
    let (card, include) = match &modifier.card {
        VectorMatchCardinality::ManyToOne(l) => (Card::ManyToOne, l.labels.clone()),
        VectorMatchCardinality::OneToMany(l) => (Card::OneToMany, l.labels.clone()),
        _ => (Card::OneToOne, Vec::new()),
    };
    // The "one" side is on the right; group_right swaps the sides.
    let (many, one, swapped) = if card == Card::OneToMany {
        (rhs, lhs, true)
    } else {
        (lhs, rhs, false)
    };
    let mut ones: HashMap<Labels, &Sample> = HashMap::with_capacity(one.len());
    for s in &one {
        let sig = signature(&s.labels, &modifier.matching);
        if let Some(previous) = ones.insert(sig.clone(), s) {
            let side = if swapped { "left" } else { "right" };
            return Err(PromError::execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                describe(&sig),
                describe(&previous.labels),
                describe(&s.labels)
            )));
        }
    }
    let mut matched: HashMap<Labels, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for m in &many {
        let sig = signature(&m.labels, &modifier.matching);
        let Some(o) = ones.get(&sig) else {
            continue;
        };
        let (ls, rs) = if swapped { (*o, m) } else { (m, *o) };
        let (mut f, mut h) = (0.0, None);
        if let (Some(a), Some(b), "==" | "!=") = (&ls.h, &rs.h, op) {
            // Histograms compare as wholes.
            let keep = (a == b) == (op == "==");
            if modifier.return_bool {
                f = f64::from(u8::from(keep));
            } else if keep {
                h = ls.h.clone();
            } else {
                continue;
            }
        } else if ls.h.is_some() || rs.h.is_some() {
            let Some(out) = histogram_apply(op, Operand::of(ls), Operand::of(rs)) else {
                continue;
            };
            h = Some(Arc::new(out));
        } else {
            let keep;
            (f, keep) = apply(op, ls.f, rs.f)?;
            if modifier.return_bool {
                f = f64::from(u8::from(keep));
            } else if !keep {
                continue;
            }
        }
        let mut labels = m.labels.clone();
        if !comparison || modifier.return_bool {
            labels.remove(METRIC_NAME);
        }
        if card == Card::OneToOne {
            match &modifier.matching {
                Some(LabelModifier::Include(on)) => {
                    labels.retain(|k, _| on.labels.iter().any(|l| l == k));
                }
                Some(LabelModifier::Exclude(ignoring)) => {
                    labels.retain(|k, _| !ignoring.labels.iter().any(|l| l == k));
                }
                None => {}
            }
        }
        for name in &include {
            match o.labels.get(name) {
                Some(v) if !v.is_empty() => {
                    labels.insert(name.clone(), v.clone());
                }
                _ => {
                    labels.remove(name);
                }
            }
        }
        let seen = matched.entry(sig).or_default();
        if card == Card::OneToOne {
            if !seen.is_empty() {
                return Err(PromError::execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                ));
            }
            seen.insert(Labels::new());
        } else if !seen.insert(labels.clone()) {
            return Err(PromError::execution(
                "multiple matches for labels: grouping labels must ensure unique matches",
            ));
        }
        out.push(Sample { labels, t, f, h });
    }
    Ok(out)
}

/// One side of an operation.
#[derive(Clone, Copy)]
enum Operand<'a> {
    Number(f64),
    Histogram(&'a Histogram),
}

impl<'a> Operand<'a> {
    fn of(s: &'a Sample) -> Self {
        match &s.h {
            Some(h) => Operand::Histogram(h),
            None => Operand::Number(s.f),
        }
    }
}

/// An operation with a histogram on one side or both, as Prometheus defines them: `h + h`,
/// `h - h`, `h * n`, `n * h`, `h / n`; `None` for any other (the element is dropped).
fn histogram_apply(op: &str, l: Operand, r: Operand) -> Option<Histogram> {
    let out = match (op, l, r) {
        ("+", Operand::Histogram(a), Operand::Histogram(b)) => a.add_scaled(b, 1.0),
        ("-", Operand::Histogram(a), Operand::Histogram(b)) => a.add_scaled(b, -1.0),
        ("*", Operand::Histogram(h), Operand::Number(n))
        | ("*", Operand::Number(n), Operand::Histogram(h)) => h.scaled(n),
        ("/", Operand::Histogram(h), Operand::Number(n)) => h.scaled(1.0 / n),
        _ => return None,
    };
    Some(out.compact())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
}

fn set_operation(
    op: &str,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    modifier: &BinModifier,
) -> Vec<Sample> {
    let sig = |s: &Sample| signature(&s.labels, &modifier.matching);
    match op {
        "and" => {
            let right: HashSet<Labels> = rhs.iter().map(sig).collect();
            lhs.into_iter()
                .filter(|s| right.contains(&sig(s)))
                .collect()
        }
        "unless" => {
            let right: HashSet<Labels> = rhs.iter().map(sig).collect();
            lhs.into_iter()
                .filter(|s| !right.contains(&sig(s)))
                .collect()
        }
        _ => {
            let left: HashSet<Labels> = lhs.iter().map(sig).collect();
            let mut out = lhs;
            out.extend(rhs.into_iter().filter(|s| !left.contains(&sig(s))));
            out
        }
    }
}
