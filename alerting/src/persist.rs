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
        let Some(saved) = read_json::<Saved>(&path)? else {
            return Ok(Saved::default());
        };
        if saved.version != VERSION {
            return Err(Error::DamagedState {
                path,
                message: format!("version {} is not {VERSION}", saved.version),
            });
        }
        Ok(saved)
    }

    pub(crate) fn save(&self, saved: &Saved) -> Result<()> {
        let path = self.state_path();
        write_atomically(&path, saved).map_err(|source| Error::WriteState { path, source })
    }

    pub(crate) fn append(&self, transitions: &[Transition]) -> Result<()> {
        let path = self.transitions_path();
        append_lines(&path, transitions, true).map_err(|source| Error::WriteState { path, source })
    }

    /// The last `keep` transitions (see [`read_lines`]).
    pub(crate) fn transitions(&self, keep: usize) -> Result<Vec<Transition>> {
        read_lines(&self.transitions_path(), keep)
    }
}

/// Replaces the file at `path` with `value` as JSON: write a temporary file, fsync it, rename
/// it over the old one, fsync the directory. A crash leaves the old file or the new one.
pub(crate) fn write_atomically<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(value).map_err(std::io::Error::other)?)?;
    file.sync_data()?;
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// The JSON file at `path`; `None` when there is none.
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::ReadState {
                path: path.to_owned(),
                source,
            });
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| Error::DamagedState {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

/// Appends one JSON line per value, in one write; `sync` also fsyncs it.
pub(crate) fn append_lines<T: Serialize>(
    path: &Path,
    values: &[T],
    sync: bool,
) -> std::io::Result<()> {
    if values.is_empty() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut text = Vec::new();
    for v in values {
        serde_json::to_writer(&mut text, v).map_err(std::io::Error::other)?;
        text.push(b'\n');
    }
    file.write_all(&text)?;
    if sync {
        file.sync_data()?;
    }
    Ok(())
}

/// The last `keep` lines of a JSON-lines log; a damaged line (a torn last write) is skipped. A
/// log of more than twice `keep` lines is cut to those `keep`, so that it does not grow without
/// end.
pub(crate) fn read_lines<T: Serialize + for<'de> Deserialize<'de>>(
    path: &Path,
    keep: usize,
) -> Result<Vec<T>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::ReadState {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut out = std::collections::VecDeque::new();
    let mut lines = 0;
    for line in BufReader::new(file).lines() {
        lines += 1;
        let line = line.map_err(|source| Error::ReadState {
            path: path.to_owned(),
            source,
        })?;
        if let Ok(t) = serde_json::from_str::<T>(&line) {
            if out.len() == keep {
                out.pop_front();
            }
            out.push_back(t);
        }
    }
    let kept: Vec<T> = out.into();
    if lines > 2 * keep {
        rewrite_lines(path, &kept).map_err(|source| Error::WriteState {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(kept)
}

fn rewrite_lines<T: Serialize>(path: &Path, kept: &[T]) -> std::io::Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    let mut text = Vec::new();
    for t in kept {
        serde_json::to_writer(&mut text, t).map_err(std::io::Error::other)?;
        text.push(b'\n');
    }
    let mut file = File::create(&tmp)?;
    file.write_all(&text)?;
    file.sync_data()?;
    std::fs::rename(&tmp, path)?;
    File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
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
