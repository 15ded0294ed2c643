//! The `Alerting` handle: what the API reads (rules, alerts, incidents, history) and how it
//! asks for a reload. The evaluator writes the status after each evaluation.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::incident::Incident;
use crate::rules::RuleKind;
use crate::state::{Alert, AlertState, Labels};

/// Most transitions kept in memory for the history API; the file keeps all of them.
pub(crate) const HISTORY_IN_MEMORY: usize = 50_000;

/// One change of an alert's state, as logged in `alerts/transitions.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub time_unix_nano: u64,
    pub group: String,
    pub rule: String,
    pub labels: Labels,
    pub state: AlertState,
    pub value: f64,
    pub incident: Option<String>,
    pub trace_ids: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct GroupStatus {
    pub name: String,
    pub file: String,
    pub interval_secs: f64,
    pub limit: usize,
    pub last_evaluation: Option<u64>,
    pub evaluation_seconds: f64,
    pub rules: Vec<RuleStatus>,
}

#[derive(Clone, Debug)]
pub struct RuleStatus {
    pub name: String,
    pub kind: RuleKind,
    /// `sql`, `promql` or `builtin`.
    pub language: &'static str,
    pub query: String,
    pub for_secs: f64,
    pub keep_firing_for_secs: f64,
    pub labels: Labels,
    pub annotations: Labels,
    pub last_error: Option<String>,
    pub last_evaluation: Option<u64>,
    pub evaluation_seconds: f64,
    pub alerts: Vec<Alert>,
}

impl RuleStatus {
    /// The rule's state as Prometheus reports it: its most severe alert's.
    pub fn state(&self) -> AlertState {
        self.alerts
            .iter()
            .map(|a| a.state)
            .filter(|s| s.is_active())
            .max()
            .unwrap_or(AlertState::Inactive)
    }

    /// `ok`, `err`, or `unknown` before the first evaluation.
    pub fn health(&self) -> &'static str {
        match (&self.last_error, self.last_evaluation) {
            (Some(_), _) => "err",
            (None, Some(_)) => "ok",
            (None, None) => "unknown",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Status {
    pub groups: Vec<GroupStatus>,
    pub incidents: Vec<Incident>,
    /// The last reload's error; `None` when it loaded.
    pub reload_error: Option<String>,
    pub reloads_failed_total: u64,
    pub evaluations_total: u64,
    pub evaluation_failures_total: u64,
    pub history: VecDeque<Transition>,
}

pub(crate) type ReloadReply = oneshot::Sender<Result<(), String>>;

/// Cheap to clone; shared by the API and the binary.
#[derive(Clone)]
pub struct Alerting {
    status: Arc<RwLock<Status>>,
    reload: mpsc::Sender<ReloadReply>,
    config: Arc<crate::config::AlertingConfig>,
    notifier: Option<crate::notify::Notifier>,
}

impl Alerting {
    pub(crate) fn new(
        reload: mpsc::Sender<ReloadReply>,
        config: crate::config::AlertingConfig,
    ) -> Self {
        Self {
            status: Arc::default(),
            reload,
            config: Arc::new(config),
            notifier: None,
        }
    }

    /// The handle also reaches the notifier (silences, the dispatcher's alerts, the ledger).
    pub fn with_notifier(mut self, notifier: crate::notify::Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    pub fn notifier(&self) -> Option<&crate::notify::Notifier> {
        self.notifier.as_ref()
    }

    /// The configuration the evaluator runs with (backtests use its built-in thresholds).
    pub fn config(&self) -> &crate::config::AlertingConfig {
        &self.config
    }

    pub(crate) fn write(&self, update: impl FnOnce(&mut Status)) {
        let mut status = self.status.write().unwrap_or_else(|e| e.into_inner());
        update(&mut status);
    }

    /// Reads the status without copying all of it.
    pub fn read<T>(&self, read: impl FnOnce(&Status) -> T) -> T {
        let status = self.status.read().unwrap_or_else(|e| e.into_inner());
        read(&status)
    }

    pub fn external_url(&self) -> &str {
        &self.config.external_url
    }

    /// Every pending and firing alert (resolved ones too with `resolved`), with its group and
    /// rule.
    pub fn alerts(&self, resolved: bool) -> Vec<(String, String, Alert)> {
        self.read(|s| {
            let mut out = Vec::new();
            for group in &s.groups {
                for rule in &group.rules {
                    for alert in &rule.alerts {
                        if resolved || alert.state.is_active() {
                            out.push((group.name.clone(), rule.name.clone(), alert.clone()));
                        }
                    }
                }
            }
            out
        })
    }

    pub fn firing(&self) -> usize {
        self.alerts(false)
            .iter()
            .filter(|(_, _, a)| a.state == AlertState::Firing)
            .count()
    }

    /// Transitions in `[start, end]` that `keep` accepts, oldest first.
    pub fn history(
        &self,
        start: u64,
        end: u64,
        keep: impl Fn(&Transition) -> bool,
    ) -> Vec<Transition> {
        self.read(|s| {
            s.history
                .iter()
                .filter(|t| (start..=end).contains(&t.time_unix_nano) && keep(t))
                .cloned()
                .collect()
        })
    }

    /// The `alerts` SQL table: every state change in the history.
    pub fn table(&self) -> Arc<dyn spyglass_query::BatchSource> {
        Arc::new(crate::table::AlertsTable::new(self.clone()))
    }

    /// Re-reads the rule files. A file with a mistake keeps the rules that run, and the
    /// error is returned and shown in the status.
    pub async fn reload(&self) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.reload
            .send(reply)
            .await
            .map_err(|_| "the rule evaluator has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the rule evaluator has stopped".to_string())?
    }
}
