//! The notification log: per integration and group, which alerts the last successful
//! notification said were firing and resolved, and when. It decides whether a flush sends, and it
//! is saved (`alerts/nflog.json`) so that a restart does not page again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::persist::{read_json, write_atomically};

/// How long an entry is kept at least (Alertmanager's default data retention).
const RETENTION_NANOS: u64 = 5 * 86_400 * 1_000_000_000;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub firing: BTreeSet<u64>,
    pub resolved: BTreeSet<u64>,
    pub sent_at: u64,
    /// When it may be forgotten.
    pub expires_at: u64,
}

/// What a flush finds in a group for one integration.
pub struct Flush<'a> {
    pub firing: &'a BTreeSet<u64>,
    pub resolved: &'a BTreeSet<u64>,
    pub send_resolved: bool,
    pub repeat_nanos: u64,
    pub now: u64,
}

/// Whether a notification must go out, as Alertmanager decides it.
pub fn needs_update(entry: Option<&Entry>, f: &Flush<'_>) -> bool {
    let Some(entry) = entry else {
        return !f.firing.is_empty();
    };
    if !f.firing.is_subset(&entry.firing) {
        return true;
    }
    if f.firing.is_empty() {
        // Everything resolved: the resolve goes out once, if the last notice had firing alerts.
        return !entry.firing.is_empty();
    }
    if f.send_resolved && !f.resolved.is_subset(&entry.resolved) {
        return true;
    }
    f.now >= entry.sent_at.saturating_add(f.repeat_nanos)
}

#[derive(Default, Serialize, Deserialize)]
struct Saved {
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Default)]
pub struct NfLog {
    entries: BTreeMap<String, Entry>,
    path: Option<PathBuf>,
}

/// An entry's key: the integration (`receiver/email[0]`) and the group key.
pub fn key(integration: &str, group_key: &str) -> String {
    format!("{integration}\u{1f}{group_key}")
}

impl NfLog {
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("nflog.json");
        let saved: Saved = read_json(&path)?.unwrap_or_default();
        Ok(Self {
            entries: saved.entries,
            path: Some(path),
        })
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Records a successful notification and saves the log.
    pub fn record(&mut self, key: String, mut entry: Entry, repeat_nanos: u64) {
        entry.expires_at = entry.sent_at + RETENTION_NANOS.max(repeat_nanos);
        let now = entry.sent_at;
        self.entries.insert(key, entry);
        self.entries.retain(|_, e| e.expires_at > now);
        if let Some(path) = &self.path {
            let saved = Saved {
                entries: self.entries.clone(),
            };
            if let Err(e) = write_atomically(path, &saved) {
                tracing::error!(error = %e, "the notification log was not saved");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    /// The cases of Alertmanager's dedup stage (`needsUpdate`).
    #[test]
    fn sends_what_alertmanager_sends() {
        let entry = Entry {
            firing: set(&[1, 2]),
            resolved: set(&[]),
            sent_at: 1_000,
            expires_at: 0,
        };
        let case = |e: Option<&Entry>, firing: &[u64], resolved: &[u64], send_resolved, now| {
            needs_update(
                e,
                &Flush {
                    firing: &set(firing),
                    resolved: &set(resolved),
                    send_resolved,
                    repeat_nanos: 500,
                    now,
                },
            )
        };
        assert!(case(None, &[1], &[], false, 0), "first firing alert");
        assert!(
            !case(None, &[], &[1], true, 0),
            "nothing was sent, only resolved"
        );
        assert!(
            case(Some(&entry), &[1, 2, 3], &[], false, 1_100),
            "a new firing alert"
        );
        assert!(
            !case(Some(&entry), &[1, 2], &[], false, 1_100),
            "nothing new"
        );
        assert!(
            case(Some(&entry), &[1, 2], &[], false, 1_500),
            "repeat interval"
        );
        assert!(
            case(Some(&entry), &[], &[1, 2], false, 1_100),
            "all resolved"
        );
        assert!(
            !case(Some(&entry), &[1], &[2], false, 1_100),
            "one resolved, resolved not sent"
        );
        assert!(
            case(Some(&entry), &[1], &[2], true, 1_100),
            "one resolved, resolved sent"
        );
        let resolved = Entry {
            firing: set(&[]),
            resolved: set(&[1, 2]),
            ..entry.clone()
        };
        assert!(
            !case(Some(&resolved), &[], &[1, 2], true, 9_999),
            "the resolve is sent once"
        );
    }
}
