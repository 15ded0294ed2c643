//! The evaluator's state as it is saved to disk and as the [`Alerting`] handle shows it.
//!
//! [`Alerting`]: crate::Alerting

use crate::persist::{Saved, SavedRule};
use crate::reader::Reader;
use crate::rules::Expr;
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
