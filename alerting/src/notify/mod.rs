//! Notifications: Alertmanager's routing, grouping, silences and inhibition over Spyglass's
//! alerts, delivered by e-mail, webhook, Slack, PagerDuty or the log, every attempt in a ledger.
//!
//! ```text
//!  Evaluator ─ alerts ─▶ Notifier ─▶ Dispatcher: routes → groups → mute → nflog → queues
//!                                                                   │
//!                         ledger ◀─ every attempt ─ workers (one per integration)
//! ```

pub mod config;
mod dispatch;
mod http;
mod ledger;
pub mod matcher;
mod message;
mod nflog;
pub mod route;
mod send;
pub mod silence;
mod worker;

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use config::{NotifyConfig, load as load_config, parse as parse_config};
pub use dispatch::{AlertView, DispatchStats, DispatchView, Dispatcher, GroupView};
pub use ledger::{Attempt, Ledger};
pub use message::{Message, render, rfc3339};
pub use silence::{Silence, SilenceMatcher, SilenceState, Silences};

use crate::clock::Clock;
use crate::state::Labels;

/// An alert as the dispatcher takes it: Alertmanager's fields, and Spyglass's evidence.
/// Times are Unix nanoseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: Labels,
    pub annotations: Labels,
    pub starts_at: u64,
    /// When it stops firing; 0 when its sender did not say (it then ends `resolve_timeout`
    /// after it was last received).
    pub ends_at: u64,
    pub generator_url: String,
    #[serde(default)]
    pub evidence: Evidence,
}

/// Why an alert fires, as far as Spyglass knows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The rule group and rule that made it (empty for alerts posted to the API).
    pub group: String,
    pub rule: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    /// Example traces that show the failure.
    pub trace_ids: Vec<String>,
    pub incident: Option<IncidentInfo>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncidentInfo {
    pub id: String,
    /// The failing service or dependency.
    pub root: String,
    /// The services whose alerts it explains.
    pub affected: Vec<String>,
}

impl Alert {
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    /// Whether it fires at `now` (it has not ended).
    pub fn firing(&self, now: u64) -> bool {
        self.ends_at == 0 || self.ends_at > now
    }

    /// Its identity: 64-bit FNV-1a over its sorted labels.
    pub fn fingerprint(&self) -> u64 {
        fingerprint(&self.labels)
    }

    /// `alertname{label="value", …}`, the other labels in name order.
    pub fn describe(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .filter(|(k, _)| *k != "alertname")
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        format!("{}{{{}}}", self.name(), labels.join(", "))
    }
}

/// 64-bit FNV-1a over label names and values, each followed by a 0xff byte.
pub fn fingerprint(labels: &Labels) -> u64 {
    fnv1a(
        labels
            .iter()
            .flat_map(|(k, v)| k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff])),
    )
}

/// 64-bit FNV-1a: stable across builds and platforms, unlike the standard hasher.
pub(crate) fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The notifier's handle: hands alerts to the dispatcher, holds the silences and the ledger.
/// Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inbox: mpsc::Sender<Vec<Alert>>,
    views: mpsc::Sender<dispatch::ViewRequest>,
    stats: Arc<Mutex<DispatchStats>>,
    silences: Arc<Mutex<Silences>>,
    ledger: Ledger,
    config: Arc<NotifyConfig>,
    clock: Arc<dyn Clock>,
}

impl Notifier {
    /// Alerts for the dispatcher. It waits only while the dispatcher's inbox is full.
    pub async fn send(&self, alerts: Vec<Alert>) {
        if alerts.is_empty() {
            return;
        }
        if self.inbox.send(alerts).await.is_err() {
            tracing::warn!("the notification dispatcher has stopped; alerts not routed");
        }
    }

    /// What the dispatcher holds now; `None` once it has stopped.
    pub async fn view(&self) -> Option<DispatchView> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.views.send(reply).await.ok()?;
        answer.await.ok()
    }

    /// What the dispatcher did last: its latest batch and flush round.
    pub fn stats(&self) -> DispatchStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn now(&self) -> u64 {
        self.clock.now_unix_nanos()
    }

    pub fn config(&self) -> &NotifyConfig {
        &self.config
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Reads or changes the silences.
    pub fn silences<T>(&self, use_them: impl FnOnce(&mut Silences, u64) -> T) -> T {
        let now = self.clock.now_unix_nanos();
        let mut silences = self.silences.lock().unwrap_or_else(|e| e.into_inner());
        use_them(&mut silences, now)
    }
}
