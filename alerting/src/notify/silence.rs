//! Silences: matchers, a start, an end, who made one and why. An alert is muted while an active
//! silence's matchers all match it. Kept in `alerts/silences.json`, replaced on every change.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::matcher::{Matcher, Op};
use crate::error::Result;
use crate::persist::{read_json, write_atomically};
use crate::state::Labels;

/// How long an expired silence is kept (Alertmanager's default data retention).
pub const EXPIRED_RETENTION_NANOS: u64 = 5 * 86_400 * 1_000_000_000;

/// A matcher as a silence stores it (and as Alertmanager's API shows it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SilenceMatcher {
    pub name: String,
    pub value: String,
    #[serde(rename = "isRegex")]
    pub is_regex: bool,
    #[serde(rename = "isEqual", default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl SilenceMatcher {
    pub fn matcher(&self) -> std::result::Result<Matcher, String> {
        let op = match (self.is_regex, self.is_equal) {
            (false, true) => Op::Equal,
            (false, false) => Op::NotEqual,
            (true, true) => Op::Regex,
            (true, false) => Op::NotRegex,
        };
        Matcher::new(&self.name, op, &self.value)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<SilenceMatcher>,
    pub starts_at: u64,
    pub ends_at: u64,
    pub updated_at: u64,
    pub created_by: String,
    pub comment: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SilenceState {
    Pending,
    Active,
    Expired,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

impl Silence {
    pub fn state(&self, now: u64) -> SilenceState {
        if now < self.starts_at {
            SilenceState::Pending
        } else if now < self.ends_at {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    fn matchers(&self) -> Vec<Matcher> {
        self.matchers
            .iter()
            .filter_map(|m| m.matcher().ok())
            .collect()
    }

    /// Whether it mutes an alert with `labels` at `now`.
    pub fn mutes(&self, labels: &Labels, now: u64) -> bool {
        self.state(now) == SilenceState::Active && {
            let matchers = self.matchers();
            !matchers.is_empty() && matchers.iter().all(|m| m.matches(labels))
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Saved {
    silences: Vec<Silence>,
}

/// Every silence, saved in a file when it has one.
#[derive(Debug, Default)]
pub struct Silences {
    silences: Vec<Silence>,
    path: Option<PathBuf>,
}

impl Silences {
    /// The silences saved in `dir`; none when nothing was saved.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("silences.json");
        let saved: Saved = read_json(&path)?.unwrap_or_default();
        Ok(Self {
            silences: saved.silences,
            path: Some(path),
        })
    }

    pub fn all(&self) -> &[Silence] {
        &self.silences
    }

    pub fn get(&self, id: &str) -> Option<&Silence> {
        self.silences.iter().find(|s| s.id == id)
    }

    /// The ids of the active silences that mute `labels`.
    pub fn muting(&self, labels: &Labels, now: u64) -> Vec<String> {
        self.silences
            .iter()
            .filter(|s| s.mutes(labels, now))
            .map(|s| s.id.clone())
            .collect()
    }

    /// Adds a silence, or replaces the one with its id; answers the id. A silence needs a
    /// matcher that does not match every alert, and must end after it starts and after now.
    pub fn put(&mut self, mut silence: Silence, now: u64) -> std::result::Result<String, String> {
        if silence.matchers.is_empty() {
            return Err("a silence needs at least one matcher".into());
        }
        let matchers = silence
            .matchers
            .iter()
            .map(SilenceMatcher::matcher)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if matchers.iter().all(|m| m.matches(&Labels::new())) {
            return Err("a silence's matchers must not all match the empty label set: it would silence every alert".into());
        }
        if silence.ends_at <= silence.starts_at {
            return Err("a silence must end after it starts".into());
        }
        if silence.ends_at <= now {
            return Err("a silence must end in the future".into());
        }
        if silence.created_by.trim().is_empty() {
            return Err("a silence needs createdBy".into());
        }
        silence.updated_at = now;
        if silence.id.is_empty() {
            silence.id = uuid::Uuid::new_v4().to_string();
        }
        match self.silences.iter_mut().find(|s| s.id == silence.id) {
            Some(existing) if existing.state(now) == SilenceState::Expired => {
                return Err(format!(
                    "silence {} has expired and cannot be changed",
                    silence.id
                ));
            }
            Some(existing) => *existing = silence.clone(),
            None => self.silences.push(silence.clone()),
        }
        self.save()?;
        Ok(silence.id)
    }

    /// Ends a silence now; an unknown id is `Err`.
    pub fn expire(&mut self, id: &str, now: u64) -> std::result::Result<(), String> {
        let silence = self
            .silences
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| format!("no silence has id {id}"))?;
        if silence.state(now) == SilenceState::Expired {
            return Err(format!("silence {id} has already expired"));
        }
        silence.starts_at = silence.starts_at.min(now);
        silence.ends_at = now;
        silence.updated_at = now;
        self.save()
    }

    /// Forgets silences that expired more than five days ago.
    pub fn collect_garbage(&mut self, now: u64) {
        let before = self.silences.len();
        self.silences
            .retain(|s| s.ends_at + EXPIRED_RETENTION_NANOS > now);
        if self.silences.len() != before {
            let _ = self.save();
        }
    }

    fn save(&self) -> std::result::Result<(), String> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let saved = Saved {
            silences: self.silences.clone(),
        };
        write_atomically(path, &saved).map_err(|e| {
            tracing::error!(error = %e, "silences not saved");
            "the silence could not be saved".to_string()
        })
    }
}
