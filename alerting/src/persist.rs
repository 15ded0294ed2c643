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

    /// The last `keep` transitions; a damaged line (a torn last write) is skipped.
    pub(crate) fn transitions(&self, keep: usize) -> Result<Vec<Transition>> {
        let path = self.transitions_path();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(Error::ReadState { path, source }),
        };
        let mut out = std::collections::VecDeque::new();
        for line in BufReader::new(file).lines() {
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
        Ok(out.into())
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
