//! The duration histogram of one series: fixed buckets, and the spans its next point names as
//! exemplars.

use spyglass_store::model::{Attributes, Exemplar, NumberValue, PointValue, SpanId, TraceId};

/// Upper bounds of the duration histograms, in seconds.
pub const DURATION_BOUNDS: [f64; 12] = [
    0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Exemplars a duration series keeps from one write to the next: its slowest spans, failed
/// ones first.
pub const EXEMPLARS_PER_SERIES: usize = 2;

#[derive(Clone, Debug, Default)]
pub(super) struct Histogram {
    count: u64,
    sum: f64,
    buckets: [u64; DURATION_BOUNDS.len() + 1],
    /// Spans recorded since the last write that the next point names as exemplars.
    examples: Vec<Example>,
}

/// A span a duration series may name as an exemplar.
#[derive(Clone, Copy, Debug)]
pub(super) struct Example {
    pub(super) trace: TraceId,
    pub(super) span: SpanId,
    /// When the span ended, Unix nanoseconds.
    pub(super) time: u64,
    pub(super) seconds: f64,
    pub(super) error: bool,
}

impl Example {
    /// Failed before succeeded, then slower before faster.
    fn rank(&self) -> (bool, f64) {
        (self.error, self.seconds)
    }
}

impl Histogram {
    pub(super) fn record(&mut self, example: Example) {
        let seconds = example.seconds;
        self.count += 1;
        self.sum += seconds;
        let i = DURATION_BOUNDS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(DURATION_BOUNDS.len());
        self.buckets[i] += 1;
        if self.examples.len() < EXEMPLARS_PER_SERIES {
            self.examples.push(example);
            return;
        }
        let (worst, kept) = self
            .examples
            .iter()
            .enumerate()
            .min_by(|a, b| {
                a.1.rank()
                    .partial_cmp(&b.1.rank())
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .expect("full");
        if example.rank() > kept.rank() {
            self.examples[worst] = example;
        }
    }

    /// The kept spans as exemplars, and none kept for the next point.
    pub(super) fn take_exemplars(&mut self) -> Vec<Exemplar> {
        self.examples
            .drain(..)
            .map(|e| Exemplar {
                time_unix_nano: e.time,
                value: NumberValue::Double(e.seconds),
                trace_id: Some(e.trace),
                span_id: Some(e.span),
                filtered_attributes: Attributes::default(),
            })
            .collect()
    }
}

pub(super) fn histogram(h: &Histogram) -> PointValue {
    PointValue::Histogram {
        count: h.count,
        sum: Some(h.sum),
        min: None,
        max: None,
        bucket_counts: h.buckets.to_vec(),
        explicit_bounds: DURATION_BOUNDS.to_vec(),
    }
}
