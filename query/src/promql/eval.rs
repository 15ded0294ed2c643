//! The evaluator: selectors read once per query, then the expression evaluated at each step.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};

use super::{
    Labels, METRIC_NAME, PromError, Sample, Series, SeriesSource, Value, aggregate, binary,
    functions, is_stale, millis,
};

/// The most steps a range query may have per series, as Prometheus allows.
const MAX_STEPS: i64 = 11_000;

/// One selector's read: any of `matchers` (each set all of its matchers), in `[from, to]` (ms).
#[derive(Clone, Debug)]
pub struct Selection {
    /// The selector's address in the expression: its series go back to an evaluator of the
    /// same expression (not moved since) by [`Evaluator::given`].
    pub key: usize,
    pub matchers: Vec<Vec<Matcher>>,
    pub from: i64,
    pub to: i64,
}

/// What one query may use.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Series read from the source, over all selectors.
    pub max_series: usize,
    /// Points read from the source plus points held in results, at any time.
    pub max_samples: usize,
    pub timeout: Duration,
    /// How far back an instant selector looks for a series' newest sample.
    pub lookback: Duration,
    /// A subquery's step when it names none.
    pub subquery_step: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_series: 100_000,
            max_samples: 5_000_000,
            timeout: Duration::from_secs(120),
            lookback: Duration::from_secs(300),
            subquery_step: Duration::from_secs(60),
        }
    }
}

/// Evaluates one query (instant or range) over a source.
pub struct Evaluator<'a> {
    source: &'a dyn SeriesSource,
    limits: Limits,
    /// The query's start and end, for `@ start()` and `@ end()`.
    start: i64,
    end: i64,
    started: Instant,
    /// Each selector's series, by the selector's address in the expression.
    data: HashMap<usize, Vec<Series>>,
    samples_read: usize,
    /// Labels worked out once per operation and label set (a range function's result labels,
    /// an aggregation's group), by the operation's and the input labels' addresses; the input
    /// is kept so its address stays its own.
    memo: HashMap<(usize, usize), (Labels, Labels)>,
    /// Aggregations a range query worked out series by series for all its steps (see
    /// [`super::fast`]), by the aggregation's address, with the steps' start and width.
    stepped: HashMap<usize, (i64, i64, Vec<Series>)>,
    /// Series a caller read already (see [`Evaluator::needs`]), by selector address.
    given: HashMap<usize, Vec<Series>>,
}

impl<'a> Evaluator<'a> {
    pub fn new(source: &'a dyn SeriesSource, limits: Limits) -> Self {
        Self {
            source,
            limits,
            start: 0,
            end: 0,
            started: Instant::now(),
            data: HashMap::new(),
            samples_read: 0,
            memo: HashMap::new(),
            stepped: HashMap::new(),
            given: HashMap::new(),
        }
    }

    /// Hands over the series of each [`Selection`] that [`Evaluator::needs`] named, by its
    /// key: the evaluation reads them instead of asking the source (and copies nothing).
    pub fn given(mut self, series: HashMap<usize, Vec<Series>>) -> Self {
        self.given = series;
        self
    }

    /// The value of `expr` at `t` (ms).
    pub fn instant(&mut self, expr: &Expr, t: i64) -> Result<Value, PromError> {
        self.prepare(expr, t, t)?;
        let value = self.eval(expr, t)?;
        if let Value::Vector(v) = &value {
            check_unique(v)?;
        }
        Ok(value)
    }

    /// The value of `expr` at every step from `start` to `end` (ms), as series.
    pub fn range(
        &mut self,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Vec<Series>, PromError> {
        if step <= 0 {
            return Err(PromError::bad_data(
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        if end < start {
            return Err(PromError::bad_data(
                "end timestamp must not be before start time",
            ));
        }
        if (end - start) / step >= MAX_STEPS {
            return Err(PromError::bad_data(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ));
        }
        match expr.value_type() {
            promql_parser::parser::value::ValueType::Vector
            | promql_parser::parser::value::ValueType::Scalar => {}
            other => {
                return Err(PromError::bad_data(format!(
                    "invalid expression type \"{other}\" for range query, must be Scalar or instant Vector"
                )));
            }
        }
        self.prepare(expr, start, end)?;
        if let Some(series) = super::fast::range(self, expr, start, end, step) {
            return series;
        }
        self.step_aggregations(expr, start, end, step)?;
        self.at_steps(expr, start, end, step, "a range query")
    }

    /// Works out, for every step of the range query at once, the aggregations inside `expr`
    /// that [`super::fast`] evaluates series by series (`sum by (le) (rate(…))` under
    /// `histogram_quantile`, the two sides of an error ratio), so that each step only looks
    /// their values up. Subqueries step on their own grid and are left alone.
    fn step_aggregations(
        &mut self,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<(), PromError> {
        match expr {
            Expr::Aggregate(a) => match super::fast::range(self, expr, start, end, step) {
                Some(series) => {
                    let key = expr as *const Expr as usize;
                    self.stepped.insert(key, (start, step, series?));
                }
                None => {
                    self.step_aggregations(&a.expr, start, end, step)?;
                    if let Some(p) = &a.param {
                        self.step_aggregations(p, start, end, step)?;
                    }
                }
            },
            Expr::Paren(p) => self.step_aggregations(&p.expr, start, end, step)?,
            Expr::Unary(u) => self.step_aggregations(&u.expr, start, end, step)?,
            Expr::Binary(b) => {
                self.step_aggregations(&b.lhs, start, end, step)?;
                self.step_aggregations(&b.rhs, start, end, step)?;
            }
            Expr::Call(c) => {
                for arg in &c.args.args {
                    self.step_aggregations(arg, start, end, step)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The value at `t` of an aggregation [`Evaluator::step_aggregations`] worked out, when
    /// `t` is one of its steps.
    fn stepped_at(&self, expr: &Expr, t: i64) -> Option<Value> {
        let (start, step, series) = self.stepped.get(&(expr as *const Expr as usize))?;
        if t < *start || (t - start) % step != 0 {
            return None;
        }
        Some(Value::Vector(
            series
                .iter()
                .filter_map(|s| {
                    let i = s.points.binary_search_by_key(&t, |p| p.0).ok()?;
                    Some(Sample::float(s.labels.clone(), t, s.points[i].1))
                })
                .collect(),
        ))
    }

    /// `expr` at `first`, `first + step`, … up to `end`, as series (a scalar as the series
    /// without labels); `what` names the caller in errors.
    pub(super) fn at_steps(
        &mut self,
        expr: &Expr,
        first: i64,
        end: i64,
        step: i64,
        what: &str,
    ) -> Result<Vec<Series>, PromError> {
        let mut out: BTreeMap<Labels, Series> = BTreeMap::new();
        let mut held = 0usize;
        let mut t = first;
        while t <= end {
            match self.eval(expr, t)? {
                Value::Scalar(f) => {
                    out.entry(Labels::new()).or_default().points.push((t, f));
                    held += 1;
                }
                Value::Vector(v) => {
                    check_unique(&v)?;
                    held += v.len();
                    for s in v {
                        let series = out.entry(s.labels).or_default();
                        match s.h {
                            Some(h) => series.histograms.push((t, h)),
                            None => series.points.push((t, s.f)),
                        }
                    }
                }
                other => {
                    return Err(PromError::execution(format!(
                        "{what} cannot give a {}",
                        other.type_name()
                    )));
                }
            }
            self.check_samples(held)?;
            t += step;
        }
        Ok(out
            .into_iter()
            .map(|(labels, mut series)| {
                series.labels = labels;
                series
            })
            .collect())
    }

    /// What evaluating `expr` from `start` to `end` reads: per selector, its matcher sets and
    /// the span its steps need. A caller that must gather series first (asynchronously) gathers
    /// these into a [`super::MemorySource`].
    pub fn needs(&mut self, expr: &Expr, start: i64, end: i64) -> Vec<Selection> {
        self.start = start;
        self.end = end;
        let mut windows: HashMap<usize, (&VectorSelector, i64, i64)> = HashMap::new();
        self.windows(expr, start, end, &mut windows);
        windows
            .into_iter()
            .map(|(key, (vs, from, to))| Selection {
                key,
                matchers: selector_matchers(vs),
                from,
                to,
            })
            .collect()
    }

    /// Reads every selector's series once, over the span all steps need of it.
    pub(super) fn prepare(&mut self, expr: &Expr, start: i64, end: i64) -> Result<(), PromError> {
        self.start = start;
        self.end = end;
        self.started = Instant::now();
        let mut windows: HashMap<usize, (&VectorSelector, i64, i64)> = HashMap::new();
        self.windows(expr, start, end, &mut windows);
        let mut series_read = 0usize;
        for (key, (vs, from, to)) in windows {
            let series = match self.given.remove(&key) {
                Some(series) => series,
                None => self.select(vs, from, to)?,
            };
            series_read += series.len();
            if series_read > self.limits.max_series {
                return Err(PromError::execution(format!(
                    "query reads more than max_series = {} series; narrow its selectors",
                    self.limits.max_series
                )));
            }
            self.samples_read += series.iter().map(Series::len).sum::<usize>();
            self.check_samples(0)?;
            self.data.insert(key, series);
        }
        Ok(())
    }

    /// The series of `vs` in `[from, to]`, each once.
    fn select(&self, vs: &VectorSelector, from: i64, to: i64) -> Result<Vec<Series>, PromError> {
        let mut series = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for matchers in selector_matchers(vs) {
            for s in self.source.select(&matchers, from, to)? {
                if seen.insert(s.labels.clone()) {
                    series.push(s);
                }
            }
        }
        Ok(series)
    }

    fn windows<'e>(
        &self,
        expr: &'e Expr,
        start: i64,
        end: i64,
        out: &mut HashMap<usize, (&'e VectorSelector, i64, i64)>,
    ) {
        let mut add = |vs: &'e VectorSelector, from: i64, to: i64| {
            let key = vs as *const VectorSelector as usize;
            let entry = out.entry(key).or_insert((vs, from, to));
            entry.1 = entry.1.min(from);
            entry.2 = entry.2.max(to);
        };
        match expr {
            Expr::VectorSelector(vs) => {
                let (s, e) = self.shifted(&vs.offset, &vs.at, start, end);
                add(vs, s - millis(&self.limits.lookback), e);
            }
            Expr::MatrixSelector(ms) => {
                let (s, e) = self.shifted(&ms.vs.offset, &ms.vs.at, start, end);
                add(&ms.vs, s - millis(&ms.range), e);
            }
            Expr::Subquery(sq) => {
                let (s, e) = self.shifted(&sq.offset, &sq.at, start, end);
                self.windows(&sq.expr, s - millis(&sq.range), e, out);
            }
            Expr::Aggregate(a) => {
                self.windows(&a.expr, start, end, out);
                if let Some(p) = &a.param {
                    self.windows(p, start, end, out);
                }
            }
            Expr::Unary(u) => self.windows(&u.expr, start, end, out),
            Expr::Paren(p) => self.windows(&p.expr, start, end, out),
            Expr::Binary(b) => {
                self.windows(&b.lhs, start, end, out);
                self.windows(&b.rhs, start, end, out);
            }
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.windows(a, start, end, out);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    /// The span `[start, end]` moved by an offset, or pinned by `@`.
    fn shifted(
        &self,
        offset: &Option<Offset>,
        at: &Option<AtModifier>,
        start: i64,
        end: i64,
    ) -> (i64, i64) {
        let off = offset_ms(offset);
        match at {
            Some(at) => {
                let t = self.at_time(at);
                (t - off, t - off)
            }
            None => (start - off, end - off),
        }
    }

    fn at_time(&self, at: &AtModifier) -> i64 {
        match at {
            AtModifier::Start => self.start,
            AtModifier::End => self.end,
            AtModifier::At(time) => system_time_ms(*time),
        }
    }

    /// The time a selector or subquery reads at, evaluated at `t`.
    fn read_time(&self, offset: &Option<Offset>, at: &Option<AtModifier>, t: i64) -> i64 {
        let base = at.as_ref().map_or(t, |at| self.at_time(at));
        base - offset_ms(offset)
    }

    /// `f(labels)` for operation `op` (its node's address), worked out once per label set.
    pub(super) fn memo(
        &mut self,
        op: usize,
        labels: &Labels,
        f: impl FnOnce(&Labels) -> Labels,
    ) -> Labels {
        let key = (op, labels.address());
        if let Some((_, out)) = self.memo.get(&key) {
            return out.clone();
        }
        let out = f(labels);
        self.memo.insert(key, (labels.clone(), out.clone()));
        out
    }

    /// When the evaluation runs out of time, for work done away from the evaluator.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.started.checked_add(self.limits.timeout)
    }

    pub(super) fn check_time(&self) -> Result<(), PromError> {
        if self.started.elapsed() > self.limits.timeout {
            return Err(PromError::timeout(self.limits.timeout));
        }
        Ok(())
    }

    pub(super) fn check_samples(&self, held: usize) -> Result<(), PromError> {
        if self.samples_read + held > self.limits.max_samples {
            return Err(PromError::execution(format!(
                "query processing would load too many samples into memory (more than max_samples = {})",
                self.limits.max_samples
            )));
        }
        Ok(())
    }

    /// The value of `expr` at `t`.
    pub(super) fn eval(&mut self, expr: &Expr, t: i64) -> Result<Value, PromError> {
        self.check_time()?;
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Value::Scalar(f) => Ok(Value::Scalar(-f)),
                Value::Vector(v) => Ok(Value::Vector(
                    v.into_iter()
                        .map(|mut s| {
                            s.f = -s.f;
                            s.h = s.h.map(|h| Arc::new(h.scaled(-1.0)));
                            s.labels.remove(METRIC_NAME);
                            s.t = t;
                            s
                        })
                        .collect(),
                )),
                other => Err(PromError::execution(format!(
                    "unary minus on a {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.instant_selection(vs, t))),
            Expr::MatrixSelector(ms) => {
                let at = self.read_time(&ms.vs.offset, &ms.vs.at, t);
                Ok(Value::Matrix(self.range_selection(
                    &ms.vs,
                    at,
                    millis(&ms.range),
                )))
            }
            Expr::Subquery(sq) => {
                let end = self.read_time(&sq.offset, &sq.at, t);
                let step = sq
                    .step
                    .as_ref()
                    .map_or(millis(&self.limits.subquery_step), millis);
                Ok(Value::Matrix(self.subquery(
                    &sq.expr,
                    end,
                    millis(&sq.range),
                    step,
                )?))
            }
            Expr::Aggregate(a) => match self.stepped_at(expr, t) {
                Some(value) => Ok(value),
                None => aggregate::eval(self, a, t),
            },
            Expr::Binary(b) => binary::eval(self, b, t),
            Expr::Call(c) => functions::eval(self, c, t),
            Expr::Extension(_) => Err(PromError::execution(
                "extension expressions are not evaluated",
            )),
        }
    }

    /// The series read for selector `vs`.
    pub(super) fn series_of(&self, vs: &VectorSelector) -> &[Series] {
        let key = vs as *const VectorSelector as usize;
        self.data.get(&key).map_or(&[], Vec::as_slice)
    }

    /// Each series' newest sample in `(t - lookback, t]`, unless it is a staleness marker.
    fn instant_selection(&self, vs: &VectorSelector, t: i64) -> Vec<Sample> {
        let at = self.read_time(&vs.offset, &vs.at, t);
        let from = at - millis(&self.limits.lookback);
        self.series_of(vs)
            .iter()
            .filter_map(|s| {
                let end = s.points.partition_point(|(pt, _)| *pt <= at);
                let float = end.checked_sub(1).map(|i| s.points[i]);
                let end = s.histograms.partition_point(|(ht, _)| *ht <= at);
                let histogram = end.checked_sub(1).map(|i| &s.histograms[i]);
                let sample = match (float, histogram) {
                    (Some((ft, _)), Some((ht, h))) if *ht > ft => {
                        Sample::float(s.labels.clone(), *ht, 0.0).with(h)
                    }
                    (None, Some((ht, h))) => Sample::float(s.labels.clone(), *ht, 0.0).with(h),
                    (Some((ft, f)), _) if !is_stale(f) => Sample::float(s.labels.clone(), ft, f),
                    _ => return None,
                };
                (sample.t > from).then_some(sample)
            })
            .collect()
    }

    /// Each series' samples in `(at - range, at]`, staleness markers left out.
    fn range_selection(&self, vs: &VectorSelector, at: i64, range: i64) -> Vec<Series> {
        self.series_of(vs)
            .iter()
            .filter_map(|s| {
                let lo = s.points.partition_point(|(pt, _)| *pt <= at - range);
                let hi = s.points.partition_point(|(pt, _)| *pt <= at);
                let points: Vec<(i64, f64)> = s.points[lo..hi]
                    .iter()
                    .filter(|(_, f)| !is_stale(*f))
                    .copied()
                    .collect();
                let h_lo = s.histograms.partition_point(|(ht, _)| *ht <= at - range);
                let h_hi = s.histograms.partition_point(|(ht, _)| *ht <= at);
                let series = Series {
                    labels: s.labels.clone(),
                    points,
                    histograms: s.histograms[h_lo..h_hi].to_vec(),
                };
                (!series.is_empty()).then_some(series)
            })
            .collect()
    }

    /// `expr` at each multiple of `step` in `(end - range, end]`, as series.
    fn subquery(
        &mut self,
        expr: &Expr,
        end: i64,
        range: i64,
        step: i64,
    ) -> Result<Vec<Series>, PromError> {
        if step <= 0 {
            return Err(PromError::bad_data("a subquery's step must be positive"));
        }
        let start = end - range;
        // The first multiple of the step after the start (the start itself is outside).
        let first = start.div_euclid(step) * step + step;
        self.at_steps(expr, first, end, step, "a subquery's expression")
    }

    /// The query's timestamps for `timestamp()` of a selector: each sample's own time.
    pub(super) fn selector_of(expr: &Expr) -> Option<&VectorSelector> {
        match expr {
            Expr::VectorSelector(vs) => Some(vs),
            Expr::Paren(p) => Self::selector_of(&p.expr),
            _ => None,
        }
    }

    /// An expression that must give an instant vector.
    pub(super) fn vector(&mut self, expr: &Expr, t: i64) -> Result<Vec<Sample>, PromError> {
        match self.eval(expr, t)? {
            Value::Vector(v) => Ok(v),
            other => Err(expected("an instant vector", &other)),
        }
    }

    /// An expression that must give a range vector.
    pub(super) fn matrix(&mut self, expr: &Expr, t: i64) -> Result<Vec<Series>, PromError> {
        match self.eval(expr, t)? {
            Value::Matrix(m) => Ok(m),
            other => Err(expected("a range vector", &other)),
        }
    }

    /// An expression that must give a scalar.
    pub(super) fn scalar(&mut self, expr: &Expr, t: i64) -> Result<f64, PromError> {
        match self.eval(expr, t)? {
            Value::Scalar(f) => Ok(f),
            other => Err(expected("a scalar", &other)),
        }
    }

    /// An expression that must give a string.
    pub(super) fn string(&mut self, expr: &Expr, t: i64) -> Result<String, PromError> {
        match self.eval(expr, t)? {
            Value::String(s) => Ok(s),
            other => Err(expected("a string", &other)),
        }
    }

    /// The range of a matrix argument (selector or subquery), in ms.
    pub(super) fn range_of(expr: &Expr) -> Option<i64> {
        match expr {
            Expr::MatrixSelector(ms) => Some(millis(&ms.range)),
            Expr::Subquery(sq) => Some(millis(&sq.range)),
            Expr::Paren(p) => Self::range_of(&p.expr),
            _ => None,
        }
    }

    /// The end of the window a matrix argument reads at `t` (offset and `@` applied).
    pub(super) fn range_end(&self, expr: &Expr, t: i64) -> i64 {
        match expr {
            Expr::MatrixSelector(ms) => self.read_time(&ms.vs.offset, &ms.vs.at, t),
            Expr::Subquery(sq) => self.read_time(&sq.offset, &sq.at, t),
            Expr::Paren(p) => self.range_end(&p.expr, t),
            _ => t,
        }
    }
}

/// The matcher sets of every selector in `expr`.
pub(super) fn selectors(expr: &Expr, out: &mut Vec<Vec<Matcher>>) {
    match expr {
        Expr::VectorSelector(vs) => out.extend(selector_matchers(vs)),
        Expr::MatrixSelector(ms) => out.extend(selector_matchers(&ms.vs)),
        Expr::Subquery(sq) => selectors(&sq.expr, out),
        Expr::Aggregate(a) => {
            selectors(&a.expr, out);
            if let Some(p) = &a.param {
                selectors(p, out);
            }
        }
        Expr::Unary(u) => selectors(&u.expr, out),
        Expr::Paren(p) => selectors(&p.expr, out),
        Expr::Binary(b) => {
            selectors(&b.lhs, out);
            selectors(&b.rhs, out);
        }
        Expr::Call(c) => c.args.args.iter().for_each(|a| selectors(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// A selector's matcher sets: one, or one per `or` alternative; the name as `__name__`.
fn selector_matchers(vs: &VectorSelector) -> Vec<Vec<Matcher>> {
    let name = vs
        .name
        .as_ref()
        .map(|n| Matcher::new(MatchOp::Equal, METRIC_NAME, n));
    let mut sets = Vec::new();
    if vs.matchers.or_matchers.is_empty() {
        sets.push(vs.matchers.matchers.clone());
    } else {
        sets.extend(vs.matchers.or_matchers.iter().cloned());
    }
    for set in &mut sets {
        if let Some(n) = &name {
            set.push(n.clone());
        }
    }
    sets
}

/// An operator's text (`+`, `sum`, `and`).
pub(super) fn op_name(op: promql_parser::parser::token::TokenType) -> String {
    op.to_string()
}

pub(super) fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        Some(Offset::Pos(d)) => millis(d),
        Some(Offset::Neg(d)) => -millis(d),
        None => 0,
    }
}

fn system_time_ms(time: SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => millis(&d),
        Err(e) => -millis(&e.duration()),
    }
}

fn expected(what: &str, got: &Value) -> PromError {
    PromError::execution(format!("expected {what}, got a {}", got.type_name()))
}

/// Prometheus refuses a vector with two elements of one label set.
fn check_unique(v: &[Sample]) -> Result<(), PromError> {
    let mut seen = std::collections::HashSet::with_capacity(v.len());
    for s in v {
        if !seen.insert(&s.labels) {
            return Err(PromError::execution(
                "vector cannot contain metrics with the same labelset",
            ));
        }
    }
    Ok(())
}
