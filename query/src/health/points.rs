//! Span-metric points read one by one: the columns of the SQL answer, each series' state as its
//! cumulative points go by, and the steps a window is cut into.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, UInt64Type};

use super::{BASELINE_LOOKBACK_NANOS, Family, Key, SeriesInfo, Totals};
use crate::error::{Error, Result};

pub(super) struct Rows<'a> {
    metric: &'a arrow::array::StringArray,
    pub(super) series: &'a arrow::array::UInt64Array,
    pub(super) time: &'a arrow::array::UInt64Array,
    start: &'a arrow::array::UInt64Array,
    value: &'a arrow::array::Float64Array,
    buckets: &'a arrow::array::ListArray,
    /// The bucket lists' values, indexed by `buckets`' offsets.
    bucket_values: &'a [u64],
}

impl<'a> Rows<'a> {
    pub(super) fn new(batch: &'a RecordBatch) -> Result<Self> {
        let c = |i: usize| batch.column(i);
        if batch.num_columns() != 6 {
            return Err(Error::Internal("span metric query shape".into()));
        }
        Ok(Self {
            metric: c(0).as_string::<i32>(),
            series: c(1).as_primitive::<UInt64Type>(),
            time: c(2).as_primitive::<UInt64Type>(),
            start: c(3).as_primitive::<UInt64Type>(),
            value: c(4).as_primitive::<Float64Type>(),
            buckets: c(5).as_list::<i32>(),
            bucket_values: c(5)
                .as_list::<i32>()
                .values()
                .as_primitive::<UInt64Type>()
                .values(),
        })
    }

    /// Row `i`'s bucket counts, without copying (empty when null).
    fn buckets(&self, i: usize) -> &'a [u64] {
        if self.buckets.is_null(i) {
            return &[];
        }
        let offsets = self.buckets.value_offsets();
        &self.bucket_values[offsets[i] as usize..offsets[i + 1] as usize]
    }
}

/// The totals per key of the points in `order` (series, time, batch, row), which must hold
/// each of its series' points together and in time order.
pub(super) fn walk(
    family: &Family,
    rows: &[Rows<'_>],
    keys: &HashMap<u64, SeriesInfo>,
    steps: &Steps,
    order: &[(u64, u64, u32, u32)],
) -> BTreeMap<Key, Vec<Totals>> {
    let mut totals: BTreeMap<Key, Vec<Totals>> = BTreeMap::new();
    let mut series: Option<SeriesState> = None;
    for &(id, _, b, i) in order {
        let (rows, i) = (&rows[b as usize], i as usize);
        if series.as_ref().is_none_or(|s| s.id != id) {
            if let Some(done) = series.take() {
                done.finish(&mut totals);
            }
            let info = keys.get(&id).cloned().unwrap_or_default();
            series = Some(SeriesState::new(family, rows, i, info, steps.count));
        }
        series.as_mut().expect("set above").add(rows, i, steps);
    }
    if let Some(done) = series.take() {
        done.finish(&mut totals);
    }
    totals
}

/// One series being read point by point.
pub(super) struct SeriesState {
    pub(super) id: u64,
    key: Key,
    is_duration: bool,
    is_error: bool,
    /// The last point seen: value (calls) or bucket counts (duration).
    last: Vec<f64>,
    has_last: bool,
    /// The point being added (kept to reuse its allocation).
    current: Vec<f64>,
    /// Per step, the increase of each value (one for calls, one per bucket for durations).
    increase: Vec<Vec<f64>>,
    bounds: Vec<f64>,
    /// When the cumulative series began counting.
    start: u64,
    /// Per step, the time of the last point that showed calls rising (the first step also
    /// counts rises before the window).
    last_rise: Vec<Option<u64>>,
}

/// The steps a window is cut into (one when no step is asked for).
pub(super) struct Steps {
    start: u64,
    step: u64,
    pub(super) count: usize,
}

impl Steps {
    pub(super) fn new(start: u64, end: u64, step: Option<u64>) -> Self {
        let span = end - start;
        match step {
            Some(step) if step > 0 => Self {
                start,
                step,
                count: span.div_ceil(step).max(1) as usize,
            },
            _ => Self {
                start,
                step: span.saturating_add(1),
                count: 1,
            },
        }
    }

    /// The step of a point at `t` (at or after the window's start).
    fn of(&self, t: u64) -> usize {
        (((t - self.start) / self.step) as usize).min(self.count - 1)
    }
}

impl SeriesState {
    pub(super) fn new(
        family: &Family,
        rows: &Rows<'_>,
        i: usize,
        info: SeriesInfo,
        steps: usize,
    ) -> Self {
        Self {
            id: rows.series.value(i),
            key: info.key,
            is_duration: rows.metric.value(i) == family.duration,
            is_error: rows.metric.value(i) == family.errors,
            last: Vec::new(),
            has_last: false,
            current: Vec::new(),
            increase: vec![Vec::new(); steps],
            bounds: info.bounds,
            start: rows.start.value(i),
            last_rise: vec![None; steps],
        }
    }

    pub(super) fn add(&mut self, rows: &Rows<'_>, i: usize, steps: &Steps) {
        let window_start = steps.start;
        let Self {
            is_duration,
            is_error,
            last,
            has_last,
            current,
            increase,
            last_rise,
            ..
        } = self;
        current.clear();
        if *is_duration {
            current.extend(rows.buckets(i).iter().map(|&v| v as f64));
        } else if rows.value.is_null(i) {
            return;
        } else {
            current.push(rows.value.value(i));
        }
        let time = rows.time.value(i);
        let is_calls = !*is_duration && !*is_error;
        let sum: f64 = current.iter().sum();
        // With no earlier point the series counts from zero if it began after `since`.
        let from_zero = |since: u64| rows.start.value(i) >= since;
        let mut previous: Option<f64> = has_last.then(|| last.iter().sum());
        if time < window_start {
            // Before the window: only when calls last rose (a silent service keeps that time).
            let lookback = window_start.saturating_sub(BASELINE_LOOKBACK_NANOS);
            let before = previous.or_else(|| from_zero(lookback).then_some(0.0));
            if is_calls && before.is_some_and(|p| sum > p) {
                last_rise[0] = Some(time);
            }
        } else {
            if previous.is_none() && from_zero(window_start) {
                last.clear();
                last.resize(current.len(), 0.0);
                previous = Some(0.0);
            }
            if let Some(previous) = previous {
                let step = steps.of(time);
                if is_calls && sum > previous {
                    last_rise[step] = Some(time);
                }
                let increase = &mut increase[step];
                if increase.len() < current.len() {
                    increase.resize(current.len(), 0.0);
                }
                let reset = sum < previous;
                for (k, v) in current.iter().enumerate() {
                    let p = if reset {
                        0.0
                    } else {
                        last.get(k).copied().unwrap_or(0.0)
                    };
                    increase[k] += (v - p).max(0.0);
                }
            }
        }
        std::mem::swap(last, current);
        *has_last = true;
    }

    pub(super) fn finish(self, totals: &mut BTreeMap<Key, Vec<Totals>>) {
        let all = totals.entry(self.key).or_default();
        if all.len() < self.increase.len() {
            all.resize_with(self.increase.len(), Totals::default);
        }
        for ((t, increase), rise) in all.iter_mut().zip(&self.increase).zip(&self.last_rise) {
            t.last_seen = t.last_seen.max(*rise);
            t.since = Some(t.since.map_or(self.start, |s| s.min(self.start)));
            if self.is_duration {
                if t.buckets.len() < increase.len() {
                    t.buckets.resize(increase.len(), 0.0);
                }
                for (k, v) in increase.iter().enumerate() {
                    t.buckets[k] += v;
                }
                if t.bounds.is_empty() {
                    t.bounds = self.bounds.clone();
                }
            } else {
                let increase: f64 = increase.iter().sum();
                if self.is_error {
                    t.errors += increase;
                } else {
                    t.calls += increase;
                }
            }
        }
    }
}
