//! The state of each alert instance (a rule and a label set): inactive → pending → firing →
//! resolved, following `for` and `keep_firing_for` as Prometheus does.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub type Labels = BTreeMap<String, String>;

/// How long a resolved alert stays visible before it is forgotten (Prometheus keeps them as
/// long, to tell Alertmanager).
pub const RESOLVED_RETENTION_NANOS: u64 = 15 * 60 * 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }

    pub fn is_active(self) -> bool {
        matches!(self, AlertState::Pending | AlertState::Firing)
    }
}

/// One alert instance. Times are Unix nanoseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The rule's name as `alertname`, the result's labels and the rule's labels.
    pub labels: Labels,
    pub annotations: Labels,
    pub state: AlertState,
    pub value: f64,
    /// What the value is compared with, where the rule knows it (the built-in rules do).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// When it became pending: `for` counts from here.
    pub active_at: u64,
    pub fired_at: Option<u64>,
    pub resolved_at: Option<u64>,
    /// The last evaluation whose result had it.
    pub last_active_at: u64,
    /// Set while it fires only because of `keep_firing_for`: the first evaluation without it,
    /// from which the hold counts.
    #[serde(default)]
    pub keep_firing_since: Option<u64>,
    /// Example trace ids: failing or slow traces that show why it is active.
    pub trace_ids: Vec<String>,
    /// The incident it belongs to while active.
    pub incident: Option<String>,
}

/// One result row of a rule: an active instance with its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
    pub threshold: Option<f64>,
    pub trace_ids: Vec<String>,
}

/// A change of state, for the transitions log.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub labels: Labels,
    pub from: AlertState,
    pub to: AlertState,
    pub value: f64,
}

/// The instances of one alerting rule, by label set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Vec<Alert>", into = "Vec<Alert>")]
pub struct Instances {
    alerts: BTreeMap<Labels, Alert>,
}

impl From<Vec<Alert>> for Instances {
    fn from(alerts: Vec<Alert>) -> Self {
        Self {
            alerts: alerts.into_iter().map(|a| (a.labels.clone(), a)).collect(),
        }
    }
}

impl From<Instances> for Vec<Alert> {
    fn from(instances: Instances) -> Self {
        instances.alerts.into_values().collect()
    }
}

/// A rule's `for` and `keep_firing_for`, in nanoseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timing {
    pub for_nanos: u64,
    pub keep_firing_for_nanos: u64,
}

impl Instances {
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values()
    }

    pub fn alerts_mut(&mut self) -> impl Iterator<Item = &mut Alert> {
        self.alerts.values_mut()
    }

    pub fn get(&self, labels: &Labels) -> Option<&Alert> {
        self.alerts.get(labels)
    }

    /// Takes one evaluation's results at `now`. `annotate` expands the annotations of a
    /// sample. Returns every change of state, in label order.
    pub fn update(
        &mut self,
        now: u64,
        samples: Vec<Sample>,
        timing: Timing,
        annotate: impl Fn(&Sample) -> Labels,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut seen = BTreeSet::new();
        for sample in samples {
            let annotations = annotate(&sample);
            seen.insert(sample.labels.clone());
            match self.alerts.get_mut(&sample.labels) {
                Some(alert) if alert.state.is_active() => {
                    alert.value = sample.value;
                    alert.threshold = sample.threshold;
                    alert.last_active_at = now;
                    alert.keep_firing_since = None;
                    alert.annotations = annotations;
                    if !sample.trace_ids.is_empty() {
                        alert.trace_ids = sample.trace_ids;
                    }
                }
                _ => {
                    let firing = timing.for_nanos == 0;
                    let state = if firing {
                        AlertState::Firing
                    } else {
                        AlertState::Pending
                    };
                    changes.push(Change {
                        labels: sample.labels.clone(),
                        from: AlertState::Inactive,
                        to: state,
                        value: sample.value,
                    });
                    self.alerts.insert(
                        sample.labels.clone(),
                        Alert {
                            labels: sample.labels,
                            annotations,
                            state,
                            value: sample.value,
                            threshold: sample.threshold,
                            active_at: now,
                            fired_at: firing.then_some(now),
                            resolved_at: None,
                            last_active_at: now,
                            keep_firing_since: None,
                            trace_ids: sample.trace_ids,
                            incident: None,
                        },
                    );
                }
            }
        }
        self.alerts.retain(|labels, alert| {
            let active_now = seen.contains(labels);
            match alert.state {
                AlertState::Pending if active_now => {
                    if now.saturating_sub(alert.active_at) >= timing.for_nanos {
                        alert.state = AlertState::Firing;
                        alert.fired_at = Some(now);
                        changes.push(change(alert, AlertState::Pending));
                    }
                    true
                }
                AlertState::Pending => {
                    alert.state = AlertState::Inactive;
                    changes.push(change(alert, AlertState::Pending));
                    false
                }
                AlertState::Firing if !active_now => {
                    // As Prometheus: the hold counts from the first evaluation without it.
                    let since = *alert.keep_firing_since.get_or_insert(now);
                    let kept = now.saturating_sub(since) < timing.keep_firing_for_nanos;
                    if !kept {
                        alert.keep_firing_since = None;
                        alert.state = AlertState::Resolved;
                        alert.resolved_at = Some(now);
                        changes.push(change(alert, AlertState::Firing));
                    }
                    true
                }
                AlertState::Resolved => {
                    now.saturating_sub(alert.resolved_at.unwrap_or(now)) < RESOLVED_RETENTION_NANOS
                }
                _ => true,
            }
        });
        changes
    }
}

fn change(alert: &Alert, from: AlertState) -> Change {
    Change {
        labels: alert.labels.clone(),
        from,
        to: alert.state,
        value: alert.value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn sample(service: &str, value: f64) -> Sample {
        Sample {
            labels: Labels::from([("service".into(), service.into())]),
            value,
            threshold: None,
            trace_ids: Vec::new(),
        }
    }

    fn states(instances: &Instances) -> Vec<AlertState> {
        instances.alerts().map(|a| a.state).collect()
    }

    fn step(instances: &mut Instances, now: u64, active: bool, timing: Timing) -> Vec<Change> {
        let samples = if active {
            vec![sample("a", 1.0)]
        } else {
            Vec::new()
        };
        instances.update(now, samples, timing, |_| Labels::new())
    }

    #[test]
    fn for_zero_fires_at_once_and_resolves_when_gone() {
        let mut i = Instances::default();
        let changes = step(&mut i, 10 * S, true, Timing::default());
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].from, changes[0].to),
            (AlertState::Inactive, AlertState::Firing)
        );
        let changes = step(&mut i, 20 * S, false, Timing::default());
        assert_eq!(changes[0].to, AlertState::Resolved);
        assert_eq!(i.alerts().next().unwrap().resolved_at, Some(20 * S));
        // Forgotten after the retention.
        step(
            &mut i,
            20 * S + RESOLVED_RETENTION_NANOS,
            false,
            Timing::default(),
        );
        assert!(states(&i).is_empty());
    }

    #[test]
    fn pending_fires_only_once_for_has_passed() {
        let timing = Timing {
            for_nanos: 60 * S,
            keep_firing_for_nanos: 0,
        };
        let mut i = Instances::default();
        step(&mut i, 0, true, timing);
        assert_eq!(states(&i), [AlertState::Pending]);
        step(&mut i, 59 * S, true, timing);
        assert_eq!(states(&i), [AlertState::Pending]);
        let changes = step(&mut i, 60 * S, true, timing);
        assert_eq!(states(&i), [AlertState::Firing]);
        assert_eq!(changes[0].from, AlertState::Pending);
        let alert = i.alerts().next().unwrap();
        assert_eq!((alert.active_at, alert.fired_at), (0, Some(60 * S)));
    }

    #[test]
    fn a_flapping_condition_never_fires_and_starts_over() {
        let timing = Timing {
            for_nanos: 60 * S,
            keep_firing_for_nanos: 0,
        };
        let mut i = Instances::default();
        for k in 0..10 {
            step(&mut i, k * 40 * S, k % 2 == 0, timing);
            assert_ne!(states(&i), [AlertState::Firing], "step {k}");
        }
        // Active again from 400 s: `for` counts from there, not from the first time.
        step(&mut i, 400 * S, true, timing);
        step(&mut i, 440 * S, true, timing);
        assert_eq!(states(&i), [AlertState::Pending]);
        step(&mut i, 460 * S, true, timing);
        assert_eq!(states(&i), [AlertState::Firing]);
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert_after_its_condition_clears() {
        let timing = Timing {
            for_nanos: 0,
            keep_firing_for_nanos: 120 * S,
        };
        let mut i = Instances::default();
        step(&mut i, 0, true, timing);
        // Cleared at 60 s: held until 60 + 120 s.
        step(&mut i, 60 * S, false, timing);
        step(&mut i, 179 * S, false, timing);
        assert_eq!(states(&i), [AlertState::Firing]);
        // Back within the hold: the hold starts again when it clears again.
        step(&mut i, 180 * S, true, timing);
        assert_eq!(i.alerts().next().unwrap().keep_firing_since, None);
        step(&mut i, 200 * S, false, timing);
        step(&mut i, 319 * S, false, timing);
        assert_eq!(states(&i), [AlertState::Firing]);
        step(&mut i, 320 * S, false, timing);
        assert_eq!(states(&i), [AlertState::Resolved]);
        assert_eq!(
            i.alerts().next().unwrap().fired_at,
            Some(0),
            "one firing, not two"
        );
    }

    #[test]
    fn a_resolved_alert_that_comes_back_starts_a_new_pending() {
        let timing = Timing {
            for_nanos: 30 * S,
            keep_firing_for_nanos: 0,
        };
        let mut i = Instances::default();
        step(&mut i, 0, true, timing);
        step(&mut i, 30 * S, true, timing);
        step(&mut i, 60 * S, false, timing);
        assert_eq!(states(&i), [AlertState::Resolved]);
        step(&mut i, 90 * S, true, timing);
        let alert = i.alerts().next().unwrap();
        assert_eq!(
            (alert.state, alert.active_at),
            (AlertState::Pending, 90 * S)
        );
    }

    #[test]
    fn instances_are_kept_apart_by_labels_and_survive_serialization() {
        let mut i = Instances::default();
        let timing = Timing {
            for_nanos: 60 * S,
            keep_firing_for_nanos: 0,
        };
        i.update(0, vec![sample("a", 1.0), sample("b", 2.0)], timing, |s| {
            Labels::from([("summary".into(), format!("{}", s.value))])
        });
        assert_eq!(i.alerts().count(), 2);
        let json = serde_json::to_string(&i).unwrap();
        let back: Instances = serde_json::from_str(&json).unwrap();
        assert_eq!(back, i);
        assert_eq!(back.alerts().nth(1).unwrap().annotations["summary"], "2");
    }
}
