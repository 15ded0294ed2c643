//! After each evaluation: every active alert's root cause, and so its incident.

use crate::builtin::Observation;
use crate::incident::{Active, AlertRef};
use crate::reader::Reader;

use super::Evaluator;

impl<R: Reader> Evaluator<R> {
    pub(super) async fn find_incidents(&mut self, now: u64) {
        // Where the evidence traces' errors begin, read once per trace.
        let mut wanted = Vec::new();
        for group in &self.groups {
            for run in &group.rules {
                for alert in run.instances.alerts().filter(|a| a.state.is_active()) {
                    wanted.extend(alert.trace_ids.iter().cloned());
                }
            }
        }
        self.origins.retain(|id, _| wanted.contains(id));
        for id in wanted {
            if !self.origins.contains_key(&id) {
                match self.reader.error_origins(&id).await {
                    Ok(origins) => {
                        self.origins.insert(id, origins);
                    }
                    Err(e) => tracing::debug!(error = %e, "trace of an alert not read"),
                }
            }
        }
        let empty = Observation::default();
        let observation = self.observation.as_ref().unwrap_or(&empty);
        let mut roots = Vec::new();
        for group in &self.groups {
            for run in &group.rules {
                for alert in run.instances.alerts().filter(|a| a.state.is_active()) {
                    let origins: Vec<String> = alert
                        .trace_ids
                        .iter()
                        .filter_map(|id| self.origins.get(id))
                        .flatten()
                        .cloned()
                        .collect();
                    let active = Active {
                        rule: &run.rule.name,
                        labels: &alert.labels,
                        trace_origins: &origins,
                    };
                    let found = crate::incident::root(&active, observation, &self.config.builtin);
                    // Where the walk finds no failing edge this time (one window's edge dipped),
                    // the alert stays in the open incident it joined; a cause found further
                    // down (an edge that appeared) moves it there.
                    let kept = alert
                        .incident
                        .as_ref()
                        .and_then(|id| self.incidents.open.values().find(|i| &i.id == id))
                        .map(|i| i.root.clone());
                    let root = match kept {
                        Some(kept) if found == crate::incident::subject(&active) => kept,
                        _ => found,
                    };
                    roots.push((
                        AlertRef {
                            rule: run.rule.name.clone(),
                            labels: alert.labels.clone(),
                        },
                        root,
                    ));
                }
            }
        }
        let ids = self.incidents.update(now, roots);
        for group in &mut self.groups {
            for run in &mut group.rules {
                for alert in run.instances.alerts_mut().filter(|a| a.state.is_active()) {
                    let key = AlertRef {
                        rule: run.rule.name.clone(),
                        labels: alert.labels.clone(),
                    };
                    alert.incident = ids.get(&key).cloned();
                }
            }
        }
    }
}
