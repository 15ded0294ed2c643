//! Where series come from: one call per selector and query, for the whole time span the query
//! needs of it.

use promql_parser::label::Matcher;

use super::{Labels, PromError, Series};

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
    /// Adds a point to the series with these labels (kept in time order).
    pub fn push(&mut self, labels: &Labels, t: i64, f: f64) {
        let series = match self.series.iter_mut().position(|s| &s.labels == labels) {
            Some(i) => &mut self.series[i],
            None => {
                self.series.push(Series {
                    labels: labels.clone(),
                    points: Vec::new(),
                });
                self.series.last_mut().expect("just pushed")
            }
        };
        let at = series.points.partition_point(|(pt, _)| *pt <= t);
        if at > 0 && series.points[at - 1].0 == t {
            series.points[at - 1].1 = f;
        } else {
            series.points.insert(at, (t, f));
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
                Series {
                    labels: s.labels.clone(),
                    points: s.points[from..to].to_vec(),
                }
            })
            .filter(|s| !s.points.is_empty())
            .collect())
    }
}
