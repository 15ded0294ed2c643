//! Where series come from: one call per selector and query, for the whole time span the query
//! needs of it.

use std::sync::Arc;

use promql_parser::label::Matcher;

use super::{Histogram, Labels, PromError, Series};

/// Series by label matchers.
pub trait SeriesSource {
    /// Every series whose labels satisfy all `matchers` (a missing label is the empty string),
    /// with its points in `[start, end]` (ms, both ends included) in time order. Series with no
    /// point there may be left out.
    fn select(&self, matchers: &[Matcher], start: i64, end: i64) -> Result<Vec<Series>, PromError>;

    /// Every series' labels, points aside, for `series`, `labels` and `label/{name}/values`.
    fn series_labels(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<Labels>, PromError> {
        Ok(self
            .select(matchers, start, end)?
            .into_iter()
            .map(|s| s.labels)
            .collect())
    }
}

/// Whether `labels` satisfy every matcher.
pub fn matches(labels: &Labels, matchers: &[Matcher]) -> bool {
    matchers
        .iter()
        .all(|m| m.is_match(labels.get(&m.name).map_or("", String::as_str)))
}

/// Series held in memory: what tests load, and what a caller has already gathered.
#[derive(Clone, Debug, Default)]
pub struct MemorySource {
    pub series: Vec<Series>,
}

impl MemorySource {
    /// Adds a point to the series with these labels (kept in time order; a sample at a time
    /// the series has replaces it).
    pub fn push(&mut self, labels: &Labels, t: i64, f: f64) {
        let series = self.series_mut(labels);
        series.histograms.retain(|(ht, _)| *ht != t);
        let at = series.points.partition_point(|(pt, _)| *pt <= t);
        if at > 0 && series.points[at - 1].0 == t {
            series.points[at - 1].1 = f;
        } else {
            series.points.insert(at, (t, f));
        }
    }

    /// Adds a native histogram sample to the series with these labels.
    pub fn push_histogram(&mut self, labels: &Labels, t: i64, h: Histogram) {
        let series = self.series_mut(labels);
        series.points.retain(|(pt, _)| *pt != t);
        let at = series.histograms.partition_point(|(ht, _)| *ht <= t);
        if at > 0 && series.histograms[at - 1].0 == t {
            series.histograms[at - 1].1 = Arc::new(h);
        } else {
            series.histograms.insert(at, (t, Arc::new(h)));
        }
    }

    fn series_mut(&mut self, labels: &Labels) -> &mut Series {
        match self.series.iter().position(|s| &s.labels == labels) {
            Some(i) => &mut self.series[i],
            None => {
                self.series.push(Series::floats(labels.clone(), Vec::new()));
                self.series.last_mut().expect("just pushed")
            }
        }
    }
}

impl SeriesSource for MemorySource {
    fn select(&self, matchers: &[Matcher], start: i64, end: i64) -> Result<Vec<Series>, PromError> {
        Ok(self
            .series
            .iter()
            .filter(|s| matches(&s.labels, matchers))
            .map(|s| {
                let from = s.points.partition_point(|(t, _)| *t < start);
                let to = s.points.partition_point(|(t, _)| *t <= end);
                let h_from = s.histograms.partition_point(|(t, _)| *t < start);
                let h_to = s.histograms.partition_point(|(t, _)| *t <= end);
                Series {
                    labels: s.labels.clone(),
                    points: s.points[from..to].to_vec(),
                    histograms: s.histograms[h_from..h_to].to_vec(),
                }
            })
            .filter(|s| !s.is_empty())
            .collect())
    }
}
