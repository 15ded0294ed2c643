//! Native histograms: an OTLP exponential histogram point as the float histogram Prometheus's
//! OTLP translation makes of it, and the arithmetic PromQL does on them.
//!
//! Bucket `i` of schema `s` holds the values in `(b^(i-1), b^i]`, its negative twin those in
//! `[-b^i, -b^(i-1))`, with `b = 2^(2^-s)`; the zero bucket holds `[-z, z]`. OTLP numbers its
//! buckets one lower (its bucket `i` is `(b^i, b^(i+1)]`) and calls the schema its scale.

/// The coarsest and finest schemas Prometheus accepts: a finer OTLP scale is merged down to
/// the finest, a coarser one is refused.
pub const MIN_SCHEMA: i32 = -4;
pub const MAX_SCHEMA: i32 = 8;

/// The finest scale OTLP defines; a point claiming a finer one is refused.
const MAX_OTLP_SCALE: i32 = 20;

/// The zero bucket's half-width Prometheus's OTLP translation gives every histogram (OTLP's
/// own `zero_threshold` is not used, as in Prometheus).
pub const OTLP_ZERO_THRESHOLD: f64 = 1e-128;

/// The counts of consecutive buckets of one sign, from bucket `offset` up.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets {
    pub offset: i32,
    pub counts: Vec<f64>,
}

impl Buckets {
    pub fn get(&self, index: i32) -> f64 {
        usize::try_from(index - self.offset)
            .ok()
            .and_then(|k| self.counts.get(k))
            .copied()
            .unwrap_or(0.0)
    }

    /// `(index, count)` of every bucket held, empty ones too.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (i32, f64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .map(|(k, c)| (self.offset + k as i32, *c))
    }

    fn add(&mut self, index: i32, count: f64) {
        if self.counts.is_empty() {
            self.offset = index;
        }
        if index < self.offset {
            let grow = (self.offset - index) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0.0, grow));
            self.offset = index;
        }
        let k = (index - self.offset) as usize;
        if k >= self.counts.len() {
            self.counts.resize(k + 1, 0.0);
        }
        self.counts[k] += count;
    }

    /// The buckets `by` schemas coarser: `2^by` neighbours become one.
    fn coarser(&self, by: i32) -> Buckets {
        if by == 0 {
            return self.clone();
        }
        let mut out = Buckets::default();
        for (i, c) in self.iter() {
            out.add(((i - 1) >> by) + 1, c);
        }
        out
    }

    /// Without empty buckets at either end.
    fn trimmed(mut self) -> Buckets {
        let lead = self.counts.iter().take_while(|c| **c == 0.0).count();
        if lead == self.counts.len() {
            return Buckets::default();
        }
        let trail = self.counts.iter().rev().take_while(|c| **c == 0.0).count();
        self.counts.truncate(self.counts.len() - trail);
        self.counts.drain(..lead);
        self.offset += lead as i32;
        self
    }
}

/// A native histogram with float counts, as PromQL computes with them.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    pub positive: Buckets,
    pub negative: Buckets,
}

/// One bucket, with its bounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    pub lower: f64,
    pub upper: f64,
    pub count: f64,
    /// Which bounds belong to the bucket, as Prometheus's API numbers them: 0 `(lower,
    /// upper]`, 1 `[lower, upper)`, 3 `[lower, upper]` (the zero bucket).
    pub boundaries: u8,
}

impl Bucket {
    fn is_zero_bucket(&self) -> bool {
        self.lower <= 0.0 && self.upper >= 0.0
    }

    /// How much of the bucket lies below `v` (between its bounds): exponentially for
    /// exponential buckets, linearly in the zero bucket.
    fn share_below(&self, v: f64) -> f64 {
        if self.is_zero_bucket() {
            return (v - self.lower) / (self.upper - self.lower);
        }
        let (lo, hi, at) = (
            self.lower.abs().log2(),
            self.upper.abs().log2(),
            v.abs().log2(),
        );
        // For a negative bucket `lo` is the log of the larger magnitude.
        (at - lo) / (hi - lo)
    }

    /// The value `share` of the way up the bucket, the inverse of [`Bucket::share_below`].
    fn value_at(&self, share: f64) -> f64 {
        if self.is_zero_bucket() {
            return self.lower + (self.upper - self.lower) * share;
        }
        let (lo, hi) = (self.lower.abs().log2(), self.upper.abs().log2());
        let magnitude = (lo + (hi - lo) * share).exp2();
        if self.lower > 0.0 {
            magnitude
        } else {
            -magnitude
        }
    }
}

/// The upper bound of positive bucket `index` in `schema`.
pub fn bound(schema: i32, index: i32) -> f64 {
    if schema >= 0 {
        (f64::from(index) / f64::from(1u32 << schema)).exp2()
    } else {
        (f64::from(index) * f64::from(1u32 << -schema)).exp2()
    }
}

impl Histogram {
    /// An OTLP exponential histogram point, as Prometheus's OTLP translation converts it; `None`
    /// for a scale coarser than [`MIN_SCHEMA`] or finer than OTLP allows, or buckets beyond the
    /// largest number (which would make the dense bucket lists of two such points huge).
    pub fn from_otlp(
        scale: i32,
        count: u64,
        sum: Option<f64>,
        zero_count: u64,
        positive: (i32, &[u64]),
        negative: (i32, &[u64]),
    ) -> Option<Histogram> {
        if !(MIN_SCHEMA..=MAX_OTLP_SCALE).contains(&scale) {
            return None;
        }
        let down = (scale - MAX_SCHEMA).max(0);
        let schema = scale - down;
        // 2^1024 overflows an f64: no bucket lies beyond index 1024 · 2^schema.
        let limit = 1024i64 << schema.max(0) >> (-schema).max(0);
        let side = |(offset, counts): (i32, &[u64])| -> Option<Buckets> {
            let mut out = Buckets::default();
            for (k, c) in counts.iter().enumerate() {
                if *c == 0 {
                    continue;
                }
                let index = ((i64::from(offset) + k as i64) >> down) + 1;
                if index.abs() > limit {
                    return None;
                }
                out.add(index as i32, *c as f64);
            }
            Some(out.trimmed())
        };
        Some(Histogram {
            schema,
            zero_threshold: OTLP_ZERO_THRESHOLD,
            zero_count: zero_count as f64,
            count: count as f64,
            sum: sum.unwrap_or(0.0),
            positive: side(positive)?,
            negative: side(negative)?,
        })
    }

    /// The same observations in a coarser (smaller or equal) schema.
    pub fn with_schema(&self, schema: i32) -> Histogram {
        let by = (self.schema - schema).max(0);
        Histogram {
            schema: self.schema - by,
            positive: self.positive.coarser(by),
            negative: self.negative.coarser(by),
            ..self.clone()
        }
    }

    /// With a zero bucket at least `threshold` wide: buckets wholly inside it move into it, and
    /// a bucket it would cut widens it to the bucket's bound.
    fn with_zero_threshold(&self, threshold: f64) -> Histogram {
        if threshold <= self.zero_threshold {
            return self.clone();
        }
        let mut threshold = threshold;
        for side in [&self.positive, &self.negative] {
            for (i, c) in side.iter() {
                if c != 0.0
                    && bound(self.schema, i - 1) < threshold
                    && threshold < bound(self.schema, i)
                {
                    threshold = bound(self.schema, i);
                }
            }
        }
        let mut out = self.clone();
        out.zero_threshold = threshold;
        for side in [&mut out.positive, &mut out.negative] {
            let mut kept = Buckets::default();
            for (i, c) in side.iter() {
                if bound(self.schema, i) <= threshold {
                    out.zero_count += c;
                } else {
                    kept.add(i, c);
                }
            }
            *side = kept;
        }
        out
    }

    /// `self + factor · other`, in the coarser of the two schemas and the wider zero bucket.
    pub fn add_scaled(&self, other: &Histogram, factor: f64) -> Histogram {
        let schema = self.schema.min(other.schema);
        let zero = self.zero_threshold.max(other.zero_threshold);
        let mut out = self.with_schema(schema).with_zero_threshold(zero);
        let other = other.with_schema(schema).with_zero_threshold(zero);
        out.count += factor * other.count;
        out.sum += factor * other.sum;
        out.zero_count += factor * other.zero_count;
        for (i, c) in other.positive.iter() {
            out.positive.add(i, factor * c);
        }
        for (i, c) in other.negative.iter() {
            out.negative.add(i, factor * c);
        }
        out
    }

    /// Every count and the sum times `factor`.
    pub fn scaled(&self, factor: f64) -> Histogram {
        let mut out = self.clone();
        out.count *= factor;
        out.sum *= factor;
        out.zero_count *= factor;
        for c in out
            .positive
            .counts
            .iter_mut()
            .chain(&mut out.negative.counts)
        {
            *c *= factor;
        }
        out
    }

    /// Without empty buckets at the ends.
    pub fn compact(mut self) -> Histogram {
        self.positive = std::mem::take(&mut self.positive).trimmed();
        self.negative = std::mem::take(&mut self.negative).trimmed();
        self
    }

    /// Whether `self`, a counter histogram's sample after `previous`, shows a counter reset:
    /// fewer observations in all or in any bucket, a finer schema or a narrower zero bucket.
    pub fn is_reset_after(&self, previous: &Histogram) -> bool {
        if self.count < previous.count
            || self.schema > previous.schema
            || self.zero_threshold < previous.zero_threshold
        {
            return true;
        }
        let before = previous
            .with_schema(self.schema)
            .with_zero_threshold(self.zero_threshold);
        self.zero_count < before.zero_count
            || before
                .positive
                .iter()
                .any(|(i, c)| self.positive.get(i) < c)
            || before
                .negative
                .iter()
                .any(|(i, c)| self.negative.get(i) < c)
    }

    /// Every bucket from the lowest values to the highest, the empty ones left out.
    pub fn buckets(&self) -> Vec<Bucket> {
        let mut out = Vec::new();
        for (i, c) in self.negative.iter().rev() {
            out.push(Bucket {
                lower: -bound(self.schema, i),
                upper: -bound(self.schema, i - 1),
                count: c,
                boundaries: 1,
            });
        }
        out.push(Bucket {
            lower: -self.zero_threshold,
            upper: self.zero_threshold,
            count: self.zero_count,
            boundaries: 3,
        });
        for (i, c) in self.positive.iter() {
            out.push(Bucket {
                lower: bound(self.schema, i - 1),
                upper: bound(self.schema, i),
                count: c,
                boundaries: 0,
            });
        }
        out.retain(|b| b.count != 0.0);
        out
    }

    /// [`Histogram::buckets`] as quantiles and fractions see them: the zero bucket of a
    /// histogram with buckets of one sign only starts (or ends) at 0.
    fn estimated_buckets(&self) -> Vec<Bucket> {
        let mut out = self.buckets();
        let only_positive = self.negative.counts.iter().all(|c| *c == 0.0)
            && self.positive.counts.iter().any(|c| *c != 0.0);
        let only_negative = self.positive.counts.iter().all(|c| *c == 0.0)
            && self.negative.counts.iter().any(|c| *c != 0.0);
        for b in &mut out {
            if b.boundaries == 3 && b.lower < 0.0 && b.upper > 0.0 {
                if only_positive {
                    b.lower = 0.0;
                } else if only_negative {
                    b.upper = 0.0;
                }
            }
        }
        out
    }

    /// The φ-quantile: the bucket the rank falls in found from the low end (φ < 0.5) or the
    /// high end, then interpolated exponentially in it (linearly in the zero bucket).
    pub fn quantile(&self, q: f64) -> f64 {
        if q < 0.0 {
            return f64::NEG_INFINITY;
        }
        if q > 1.0 {
            return f64::INFINITY;
        }
        if self.count == 0.0 || q.is_nan() {
            return f64::NAN;
        }
        let buckets = self.estimated_buckets();
        let forward = q < 0.5 || self.sum.is_nan();
        let rank = if forward {
            q * self.count
        } else {
            (1.0 - q) * self.count
        };
        let mut seen = 0.0;
        let mut found = None;
        let ordered: Box<dyn Iterator<Item = &Bucket>> = if forward {
            Box::new(buckets.iter())
        } else {
            Box::new(buckets.iter().rev())
        };
        for b in ordered {
            seen += b.count;
            found = Some(*b);
            if seen >= rank {
                break;
            }
        }
        let Some(bucket) = found else {
            return f64::NAN;
        };
        let seen = seen.min(self.count);
        if seen < rank {
            return bucket.upper;
        }
        let into = if forward {
            rank - (seen - bucket.count)
        } else {
            seen - rank
        };
        bucket.value_at(into / bucket.count)
    }

    /// The share of observations between `lower` and `upper`, interpolated as
    /// [`Histogram::quantile`] does.
    pub fn fraction(&self, lower: f64, upper: f64) -> f64 {
        if self.count == 0.0 || lower.is_nan() || upper.is_nan() {
            return f64::NAN;
        }
        if lower >= upper {
            return 0.0;
        }
        let rank_of = |v: f64| {
            let mut rank = 0.0;
            for b in self.estimated_buckets() {
                if b.lower >= v {
                    return rank;
                }
                if b.upper > v {
                    return rank + b.count * b.share_below(v);
                }
                rank += b.count;
            }
            self.count
        };
        let (lo, hi) = (
            rank_of(lower).min(self.count),
            rank_of(upper).min(self.count),
        );
        (hi - lo) / self.count
    }

    /// The estimated variance of the observations: each bucket's at its geometric middle (the
    /// zero bucket's at 0), around the mean `sum / count`.
    pub fn variance(&self) -> f64 {
        let mean = self.sum / self.count;
        let mut total = super::functions::KahanSum::default();
        for b in self.estimated_buckets() {
            let middle = if b.is_zero_bucket() {
                0.0
            } else if b.upper < 0.0 {
                -(b.upper * b.lower).sqrt()
            } else {
                (b.upper * b.lower).sqrt()
            };
            let d = middle - mean;
            total.add(b.count * d * d);
        }
        total.value() / self.count
    }
}

/// `rate`, `increase` and `delta` of histogram samples before extrapolation: the last minus
/// the first, in the coarsest schema among them, with what each counter reset took away added
/// back.
pub fn change(points: &[(i64, std::sync::Arc<Histogram>)], counter: bool) -> Option<Histogram> {
    let (first, last) = (&points.first()?.1, &points.last()?.1);
    // A counter's resets are added back in the coarsest schema of all; a gauge's change only
    // needs its two ends.
    let schema = match counter {
        true => points.iter().map(|(_, h)| h.schema).min()?,
        false => first.schema.min(last.schema),
    };
    let mut out = last.with_schema(schema).add_scaled(first, -1.0);
    if counter {
        for pair in points.windows(2) {
            if pair[1].1.is_reset_after(&pair[0].1) {
                out = out.add_scaled(&pair[0].1, 1.0);
            }
        }
    }
    Some(out.compact())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positive(schema: i32, offset: i32, counts: &[f64]) -> Histogram {
        Histogram {
            schema,
            zero_threshold: 0.0,
            zero_count: 0.0,
            count: counts.iter().sum(),
            sum: 0.0,
            positive: Buckets {
                offset,
                counts: counts.to_vec(),
            },
            negative: Buckets::default(),
        }
    }

    #[test]
    fn otlp_buckets_are_one_index_higher_and_fine_scales_are_merged() {
        let h = Histogram::from_otlp(0, 3, Some(4.0), 0, (0, &[1, 2]), (0, &[])).unwrap();
        assert_eq!(h.positive.offset, 1);
        // OTLP bucket 0 of scale 0 is (1, 2]: Prometheus's bucket 1.
        assert_eq!(h.buckets()[0].lower, 1.0);
        assert_eq!(h.buckets()[0].upper, 2.0);
        // Scale 10 is merged four to one into schema 8.
        let fine = Histogram::from_otlp(10, 8, None, 0, (-3, &[1; 8]), (0, &[])).unwrap();
        assert_eq!(fine.schema, 8);
        // OTLP indexes -3..=4 become (i >> 2) + 1: 0, 0, 0, 1, 1, 1, 1, 2.
        assert_eq!(fine.positive.offset, 0);
        assert_eq!(fine.positive.counts, vec![3.0, 4.0, 1.0]);
        assert!(Histogram::from_otlp(-5, 1, None, 0, (0, &[1]), (0, &[])).is_none());
        // Scales past OTLP's finest and buckets past the largest number are refused, not
        // allocated.
        assert!(Histogram::from_otlp(40, 1, None, 0, (0, &[1]), (0, &[])).is_none());
        assert!(Histogram::from_otlp(0, 1, None, 0, (i32::MAX - 1, &[1, 1]), (0, &[])).is_none());
        assert!(Histogram::from_otlp(8, 1, None, 0, (0, &[]), (-2_000_000_000, &[1])).is_none());
        let edge = Histogram::from_otlp(0, 1, None, 0, (1023, &[1]), (0, &[])).unwrap();
        assert_eq!(edge.positive.offset, 1024);
        assert_eq!(edge.buckets()[0].lower, 2f64.powi(1023));
    }

    #[test]
    fn coarser_schemas_merge_neighbours_and_resets_are_seen() {
        // Schema 1 buckets 1 and 2 ((1, √2] and (√2, 2]) are schema 0's bucket 1 (1, 2].
        let fine = positive(1, 1, &[1.0, 1.0]);
        assert_eq!(fine.with_schema(0).positive.counts, vec![2.0]);
        assert_eq!(fine.with_schema(0).positive.offset, 1);
        let sum = positive(0, 0, &[1.0, 1.0]).add_scaled(&fine, 1.0);
        assert_eq!(
            (sum.positive.offset, sum.positive.counts),
            (0, vec![1.0, 3.0])
        );
        let before = positive(0, 0, &[2.0, 2.0]);
        assert!(positive(0, 0, &[1.0, 5.0]).is_reset_after(&before));
        assert!(!positive(0, 0, &[2.0, 3.0]).is_reset_after(&before));
        assert!(positive(1, 0, &[2.0, 2.0, 2.0]).is_reset_after(&before));
    }

    #[test]
    fn quantiles_interpolate_exponentially() {
        // (0.5, 1]: 1, (1, 2]: 2, (2, 4]: 1.
        let h = positive(0, 0, &[1.0, 2.0, 1.0]);
        assert!((h.quantile(0.5) - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(h.quantile(0.25), 1.0);
        assert!((h.fraction(0.0, 2.0) - 0.75).abs() < 1e-12);
        assert!((h.fraction(h.quantile(0.9), f64::INFINITY) - 0.1).abs() < 1e-12);
    }
}
