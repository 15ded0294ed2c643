//! The evaluator's state as it is saved to disk and as the [`Alerting`] handle shows it.
//!
//! [`Alerting`]: crate::Alerting

use crate::notify::{Evidence, IncidentInfo};
use crate::persist::{Saved, SavedRule};
use crate::reader::Reader;
use crate::rules::Expr;
use crate::state::AlertState;
use crate::status::{GroupStatus, RuleStatus};

use super::Evaluator;

impl<R: Reader> Evaluator<R> {
    pub(super) fn saved(&self) -> Saved {
        let rules = self
            .groups
            .iter()
            .flat_map(|g| {
                g.rules.iter().map(|r| SavedRule {
                    group: g.group.name.clone(),
                    rule: r.rule.name.clone(),
                    rule_labels: r.rule.labels.clone(),
                    alerts: r.instances.clone(),
                })
            })
            .collect();
        Saved::new(rules, self.incidents.clone())
    }

    /// Copies the groups, rules, alerts and incidents into the handle.
    pub(super) fn publish(&self) {
        let groups = self
            .groups
            .iter()
            .map(|g| GroupStatus {
                name: g.group.name.clone(),
                file: g.group.file.clone(),
                interval_secs: g.interval.as_secs_f64(),
                limit: g.group.limit,
                last_evaluation: g.last_evaluation,
                evaluation_seconds: g.evaluation_seconds,
                rules: g
                    .rules
                    .iter()
                    .map(|r| RuleStatus {
                        name: r.rule.name.clone(),
                        kind: r.rule.kind,
                        language: match r.rule.expr {
                            Expr::Sql(_) => "sql",
                            Expr::PromQl(_) => "promql",
                            Expr::Builtin(_) => "builtin",
                        },
                        query: r.rule.expr.text().to_owned(),
                        for_secs: r.rule.for_duration.as_secs_f64(),
                        keep_firing_for_secs: r.rule.keep_firing_for.as_secs_f64(),
                        labels: r.rule.labels.clone(),
                        annotations: r.rule.annotations.clone(),
                        last_error: r.last_error.clone(),
                        last_evaluation: r.last_evaluation,
                        evaluation_seconds: r.evaluation_seconds,
                        alerts: r.instances.alerts().cloned().collect(),
                    })
                    .collect(),
            })
            .collect();
        let mut incidents: Vec<_> = self.incidents.open.values().cloned().collect();
        incidents.extend(self.incidents.recent.iter().rev().cloned());
        self.handle.write(|s| {
            s.groups = groups;
            s.incidents = incidents;
        });
    }
}

impl<R: Reader> Evaluator<R> {
    /// The alerts the notifier gets after an evaluation at `now`: each firing one, ending four
    /// of its group's intervals from now unless it is sent again (as Prometheus sends them),
    /// and each resolved one with its resolve time. Pending alerts are not sent.
    pub(super) fn notify_alerts(&self, now: u64) -> Vec<crate::notify::Alert> {
        let incidents: Vec<&crate::incident::Incident> = self
            .incidents
            .open
            .values()
            .chain(&self.incidents.recent)
            .collect();
        let base = self.handle.external_url().trim_end_matches('/').to_owned();
        let mut out = Vec::new();
        for group in &self.groups {
            let hold = 4 * group.interval.as_nanos() as u64;
            for run in &group.rules {
                for alert in run.instances.alerts() {
                    let ends_at = match (alert.state, alert.resolved_at) {
                        (AlertState::Firing, _) => now + hold,
                        (AlertState::Resolved, Some(at)) => at,
                        _ => continue,
                    };
                    let incident = alert.incident.as_ref().and_then(|id| {
                        incidents
                            .iter()
                            .find(|i| &i.id == id)
                            .map(|i| IncidentInfo {
                                id: i.id.clone(),
                                root: i.root.clone(),
                                affected: i.affected.clone(),
                            })
                    });
                    let mut labels = alert.labels.clone();
                    if let Some(i) = &incident {
                        labels.insert("incident".into(), i.id.clone());
                    }
                    out.push(crate::notify::Alert {
                        labels,
                        annotations: alert.annotations.clone(),
                        starts_at: alert.fired_at.unwrap_or(alert.active_at),
                        ends_at,
                        generator_url: format!("{base}/rules#{}", group.group.name),
                        evidence: Evidence {
                            group: group.group.name.clone(),
                            rule: run.rule.name.clone(),
                            value: Some(alert.value),
                            threshold: alert.threshold,
                            trace_ids: alert.trace_ids.clone(),
                            incident,
                        },
                    });
                }
            }
        }
        out
    }
}
