//! PromQL: expressions parsed by `promql-parser`, evaluated here over series a [`SeriesSource`]
//! gives (the `metrics` table under Prometheus's names, or samples a test writes).
//!
//! ```text
//!  text ─▶ promql_parser::parse ─▶ Expr
//!  Expr ─▶ windows (per selector: the time span every step needs) ─▶ SeriesSource::select, once
//!       ─▶ Evaluator::eval(expr, t) for each step ─▶ Value (scalar, string, vector, matrix)
//! ```
//!
//! Semantics are Prometheus 3's: an instant selector takes a series' newest sample in
//! `(t - lookback, t]` unless that sample is a staleness marker; a range selector takes the
//! samples in `(t - range, t]`; `rate`, `increase` and `delta` extrapolate as Prometheus does;
//! arithmetic, most functions and aggregation `without` drop `__name__`.

mod aggregate;
mod binary;
mod cache;
mod eval;
mod fast;
mod functions;
pub mod histogram;
mod otlp;
mod read;
mod scan;
mod source;
mod store;

pub(crate) use cache::ExposedCache;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use eval::{Evaluator, Limits, Selection};
pub use histogram::Histogram;
pub use otlp::label_name;
pub use source::{MemorySource, SeriesSource};

/// A series' labels, `__name__` among them, in name order. Cheap to clone (shared until
/// changed): a query hands the same labels on at every step.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Arc<BTreeMap<String, String>>);

impl Labels {
    pub fn new() -> Self {
        Self::default()
    }

    /// The address of the shared storage: a key for what is worked out once per label set.
    pub(crate) fn address(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }
}

impl std::ops::Deref for Labels {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Labels {
    fn deref_mut(&mut self) -> &mut Self::Target {
        Arc::make_mut(&mut self.0)
    }
}

impl FromIterator<(String, String)> for Labels {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self(Arc::new(iter.into_iter().collect()))
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Self {
        Self(Arc::new(map))
    }
}

impl IntoIterator for Labels {
    type Item = (String, String);
    type IntoIter = std::collections::btree_map::IntoIter<String, String>;

    fn into_iter(self) -> Self::IntoIter {
        Arc::unwrap_or_clone(self.0).into_iter()
    }
}

impl serde::Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// The label that holds a series' metric name.
pub const METRIC_NAME: &str = "__name__";

/// The NaN Prometheus writes as a staleness marker: the series ended here.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

pub fn is_stale(f: f64) -> bool {
    f.to_bits() == STALE_NAN
}

pub fn stale_marker() -> f64 {
    f64::from_bits(STALE_NAN)
}

/// One element of an instant vector: labels, the time of the sample (ms), its value: a
/// number, or a native histogram (`h`, and then `f` means nothing).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub t: i64,
    pub f: f64,
    pub h: Option<Arc<Histogram>>,
}

impl Sample {
    pub fn float(labels: Labels, t: i64, f: f64) -> Self {
        Self {
            labels,
            t,
            f,
            h: None,
        }
    }

    /// The sample holding histogram `h` instead.
    pub fn with(mut self, h: &Arc<Histogram>) -> Self {
        self.h = Some(h.clone());
        self
    }
}

/// A series with its samples in time order: numbers `(ms, value)` (staleness markers among
/// them) and native histograms `(ms, histogram)`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
    pub histograms: Vec<(i64, Arc<Histogram>)>,
}

impl Series {
    pub fn floats(labels: Labels, points: Vec<(i64, f64)>) -> Self {
        Self {
            labels,
            points,
            histograms: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.histograms.is_empty()
    }

    /// How many samples it holds, numbers and histograms.
    pub fn len(&self) -> usize {
        self.points.len() + self.histograms.len()
    }
}

/// What an expression evaluates to.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(f64),
    String(String),
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

impl Value {
    /// Prometheus's name for the type, as the API's `resultType`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// The kinds of error the Prometheus API names in `errorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    /// The query or a parameter is wrong (`bad_data`).
    BadData,
    /// Evaluation failed, or a limit was reached (`execution`).
    Execution,
    /// The query ran past its timeout (`timeout`).
    Timeout,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
        }
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct PromError {
    pub kind: ErrorType,
    pub message: String,
}

impl PromError {
    pub fn bad_data(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorType::BadData,
            message: message.into(),
        }
    }

    pub fn execution(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorType::Execution,
            message: message.into(),
        }
    }

    pub fn timeout(limit: Duration) -> Self {
        Self {
            kind: ErrorType::Timeout,
            message: format!("query timed out in expression evaluation (timeout {limit:?})"),
        }
    }
}

/// Parses `text`; a failure is `bad_data` naming what is wrong, and where when the parser says.
pub fn parse(text: &str) -> Result<promql_parser::parser::Expr, PromError> {
    if text.trim().is_empty() {
        return Err(PromError::bad_data("empty query"));
    }
    promql_parser::parser::parse(text).map_err(|e| {
        let at = error_position(text, &e)
            .map(|(line, column)| format!("{line}:{column}: "))
            .unwrap_or_default();
        PromError::bad_data(format!("invalid parameter \"query\": {at}parse error: {e}"))
    })
}

/// Where in `text` the parser's error `message` points, as line and column (from 1). The parser
/// reports no positions, so they are found from what the message names: the end of the input,
/// an unclosed parenthesis, a quoted token, or else the first character after the longest
/// prefix that parses.
fn error_position(text: &str, message: &str) -> Option<(usize, usize)> {
    let offset = if message.contains("end of input") {
        Some(text.trim_end().len())
    } else if message.contains("unclosed left parenthesis") {
        let mut open = Vec::new();
        for (i, c) in text.char_indices() {
            match c {
                '(' => open.push(i),
                ')' => {
                    open.pop();
                }
                _ => {}
            }
        }
        open.last().copied()
    } else if let Some(token) = quoted(message) {
        text.find(token)
    } else if message.contains("invalid promql query") && text.len() <= 4096 {
        let valid = text
            .char_indices()
            .map(|(i, _)| i)
            .chain([text.len()])
            .rfind(|&end| end > 0 && promql_parser::parser::parse(&text[..end]).is_ok())
            .unwrap_or(0);
        let rest = &text[valid..];
        Some(valid + (rest.len() - rest.trim_start().len()))
    } else {
        None
    }?;
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((line, column))
}

/// The token a message quotes (`'x'`), or names after its last `: `.
fn quoted(message: &str) -> Option<&str> {
    if let Some(start) = message.find('\'') {
        let rest = &message[start + 1..];
        if let Some(end) = rest.find('\'') {
            return Some(&rest[..end]).filter(|t| !t.is_empty());
        }
    }
    message
        .rsplit_once(": ")
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty() && !t.contains(' '))
}

/// A number as Prometheus writes one in JSON strings and label values (Go's `'f', -1`).
pub fn format_value(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "+Inf".into()
    } else if f == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{f}")
    }
}

/// Milliseconds from a `Duration`.
pub(crate) fn millis(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_as_prometheus_prints_them() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(-2.5), "-2.5");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert!(is_stale(stale_marker()));
        assert!(!is_stale(f64::NAN));
    }

    #[test]
    fn parse_errors_are_bad_data_with_a_position() {
        let cases = [
            ("sum(foo", "1:4: parse error: unclosed left parenthesis"),
            (
                "foo{",
                "1:5: parse error: unexpected end of input inside braces",
            ),
            ("foo +", "1:5: parse error: invalid promql query"),
            ("1 +* 2", "1:3: parse error: invalid promql query"),
            (
                "foo[5x]",
                "1:5: parse error: bad number or duration syntax: 5x",
            ),
            ("bar)", "1:4: parse error: unexpected right parenthesis ')'"),
            (
                "up\n  and )",
                "2:7: parse error: unexpected right parenthesis ')'",
            ),
        ];
        for (query, want) in cases {
            let e = parse(query).unwrap_err();
            assert_eq!(e.kind, ErrorType::BadData);
            assert_eq!(
                e.message,
                format!("invalid parameter \"query\": {want}"),
                "{query}"
            );
        }
        let e = parse("rate(foo)").unwrap_err();
        assert!(e.message.contains("expected type matrix"), "{}", e.message);
        assert_eq!(parse(" ").unwrap_err().message, "empty query");
    }
}
