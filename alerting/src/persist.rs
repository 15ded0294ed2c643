//! The evaluator's state on disk, under `data_dir/alerts/`:
//! - `state.json`: every alert instance (with its `for` progress and start time) and the open
//!   incidents, replaced atomically (write, fsync, rename, fsync the directory);
//! - `transitions.jsonl`: one JSON line per change of state, appended and fsynced.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::incident::Incidents;
use crate::state::{Instances, Labels};
use crate::status::Transition;

const VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Saved {
    pub(crate) version: u32,
    pub(crate) rules: Vec<SavedRule>,
    pub(crate) incidents: Incidents,
}

/// A rule's instances; a rule is its group, name and static labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct SavedRule {
    pub(crate) group: String,
    pub(crate) rule: String,
    pub(crate) rule_labels: Labels,
    pub(crate) alerts: Instances,
}

#[derive(Clone)]
pub(crate) struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn transitions_path(&self) -> PathBuf {
        self.dir.join("transitions.jsonl")
    }

    /// The saved state; nothing saved yet is an empty state.
    pub(crate) fn load(&self) -> Result<Saved> {
        let path = self.state_path();
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Saved::default()),
            Err(source) => return Err(Error::ReadState { path, source }),
        };
        let saved: Saved = serde_json::from_slice(&text).map_err(|e| Error::DamagedState {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if saved.version != VERSION {
            return Err(Error::DamagedState {
                path,
                message: format!("version {} is not {VERSION}", saved.version),
            });
        }
        Ok(saved)
    }

    pub(crate) fn save(&self, saved: &Saved) -> Result<()> {
        let write = |path: &Path| -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let tmp = path.with_extension("json.tmp");
            let mut file = File::create(&tmp)?;
            file.write_all(&serde_json::to_vec(saved).map_err(std::io::Error::other)?)?;
            file.sync_data()?;
            std::fs::rename(&tmp, path)?;
            File::open(&self.dir)?.sync_all()
        };
        let path = self.state_path();
        write(&path).map_err(|source| Error::WriteState { path, source })
    }

    pub(crate) fn append(&self, transitions: &[Transition]) -> Result<()> {
        if transitions.is_empty() {
            return Ok(());
        }
        let path = self.transitions_path();
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
            let mut text = Vec::new();
            for t in transitions {
                serde_json::to_writer(&mut text, t).map_err(std::io::Error::other)?;
                text.push(b'\n');
            }
            file.write_all(&text)?;
            file.sync_data()
        };
        write().map_err(|source| Error::WriteState {
            path: path.clone(),
            source,
        })
    }

    /// The last `keep` transitions; a damaged line (a torn last write) is skipped. A log of more
    /// than twice `keep` lines is cut to those `keep`, so that it does not grow without end.
    pub(crate) fn transitions(&self, keep: usize) -> Result<Vec<Transition>> {
        let path = self.transitions_path();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(Error::ReadState { path, source }),
        };
        let mut out = std::collections::VecDeque::new();
        let mut lines = 0;
        for line in BufReader::new(file).lines() {
            lines += 1;
            let line = line.map_err(|source| Error::ReadState {
                path: path.clone(),
                source,
            })?;
            if let Ok(t) = serde_json::from_str::<Transition>(&line) {
                if out.len() == keep {
                    out.pop_front();
                }
                out.push_back(t);
            }
        }
        let kept: Vec<Transition> = out.into();
        if lines > 2 * keep {
            self.rewrite_transitions(&kept)
                .map_err(|source| Error::WriteState { path, source })?;
        }
        Ok(kept)
    }

    fn rewrite_transitions(&self, kept: &[Transition]) -> std::io::Result<()> {
        let path = self.transitions_path();
        let tmp = path.with_extension("jsonl.tmp");
        let mut text = Vec::new();
        for t in kept {
            serde_json::to_writer(&mut text, t).map_err(std::io::Error::other)?;
            text.push(b'\n');
        }
        let mut file = File::create(&tmp)?;
        file.write_all(&text)?;
        file.sync_data()?;
        std::fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()
    }
}

impl Saved {
    pub(crate) fn new(rules: Vec<SavedRule>, incidents: Incidents) -> Self {
        Self {
            version: VERSION,
            rules,
            incidents,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::AlertState;

    fn transition(i: u64) -> Transition {
        Transition {
            time_unix_nano: i,
            group: "g".into(),
            rule: "r".into(),
            labels: Labels::new(),
            state: AlertState::Firing,
            value: i as f64,
            incident: None,
            trace_ids: Vec::new(),
        }
    }

    #[test]
    fn the_log_keeps_the_newest_and_is_cut_when_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let all: Vec<Transition> = (0..25).map(transition).collect();
        state.append(&all).unwrap();
        // A torn last line is skipped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("transitions.jsonl"))
            .unwrap()
            .write_all(b"{\"time_unix")
            .unwrap();
        let kept = state.transitions(10).unwrap();
        assert_eq!(kept, all[15..].to_vec());
        let lines = std::fs::read_to_string(dir.path().join("transitions.jsonl"))
            .unwrap()
            .lines()
            .count();
        assert_eq!(lines, 10, "more than twice the kept lines: cut");
        assert_eq!(state.transitions(10).unwrap(), all[15..].to_vec());
    }

    #[test]
    fn saved_state_reads_back_and_a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert_eq!(state.load().unwrap(), Saved::default());
        let saved = Saved::new(Vec::new(), Incidents::default());
        state.save(&saved).unwrap();
        assert_eq!(state.load().unwrap(), saved);
        std::fs::write(dir.path().join("state.json"), b"{not json").unwrap();
        assert!(matches!(state.load(), Err(Error::DamagedState { .. })));
    }
}
