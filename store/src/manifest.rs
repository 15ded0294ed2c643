//! The manifest: which parts and index segments are live, and how far the WAL is in them.
//!
//! `manifest.json` is replaced atomically: written to `manifest.json.tmp`, fsynced, renamed over
//! the old one, and the directory fsynced. Readers hold an `Arc<Manifest>`; a part dropped from
//! the manifest keeps its files until the last snapshot using it is gone.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::index::PartIndex;
use crate::model::Signal;
use crate::part::Footers;
use crate::rollup::Rollup;

pub(crate) const MANIFEST_FILE: &str = "manifest.json";
const FORMAT_VERSION: u32 = 1;

/// What the manifest records of one part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartMeta {
    pub id: u64,
    pub signal: Signal,
    /// Hours since the Unix epoch of every row's event time.
    pub hour: u64,
    /// The Parquet file, relative to the data directory.
    pub file: String,
    /// The tantivy index directory (spans only), relative to the data directory.
    pub index: Option<String>,
    pub rows: u64,
    pub bytes: u64,
    pub index_bytes: u64,
    pub min_time_unix_nano: u64,
    pub max_time_unix_nano: u64,
    /// 0 for a flushed part; one more than its inputs' highest for a compacted one.
    pub level: u32,
}

impl PartMeta {
    /// Whether the part can hold rows with event times in `[from, to]`.
    pub fn overlaps(&self, from: u64, to: u64) -> bool {
        self.max_time_unix_nano >= from && self.min_time_unix_nano <= to
    }
}

#[derive(Serialize, Deserialize)]
struct ManifestFile {
    format_version: u32,
    generation: u64,
    flushed_lsn: u64,
    next_part_id: u64,
    parts: Vec<PartMeta>,
}

/// A live part: its metadata and, once opened, its index. Files are removed when the part has
/// been dropped from the manifest and no snapshot holds it any more.
pub struct Part {
    meta: PartMeta,
    root: PathBuf,
    obsolete: AtomicBool,
    index: OnceLock<PartIndex>,
    /// Held while an outdated index is rebuilt, so it is rebuilt once.
    rebuilding: Mutex<()>,
    /// The parsed footer while [`Footers`] keeps it.
    footer: Mutex<Option<ArrowReaderMetadata>>,
    footers: &'static Footers,
    me: Weak<Part>,
    /// Set by [`Part::warm`]; `None` inside when the part has too many combinations.
    rollup: OnceLock<Option<Rollup>>,
    /// Whether the directory entries naming the part's files are known durable: true for a
    /// part read from the manifest, set by [`Manifest::persist`] for a new one.
    entries_synced: AtomicBool,
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part").field("meta", &self.meta).finish()
    }
}

impl Part {
    pub(crate) fn new(meta: PartMeta, root: &Path) -> Arc<Self> {
        Self::with_footers(meta, root, Footers::shared())
    }

    /// A part whose footer `footers` keeps or drops.
    pub(crate) fn with_footers(
        meta: PartMeta,
        root: &Path,
        footers: &'static Footers,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            meta,
            root: root.to_owned(),
            obsolete: AtomicBool::new(false),
            index: OnceLock::new(),
            rebuilding: Mutex::new(()),
            footer: Mutex::new(None),
            footers,
            me: me.clone(),
            rollup: OnceLock::new(),
            entries_synced: AtomicBool::new(false),
        })
    }

    /// A part named by a manifest already on disk.
    fn persisted(meta: PartMeta, root: &Path) -> Arc<Self> {
        let part = Self::new(meta, root);
        part.entries_synced.store(true, Ordering::Release);
        part
    }

    pub fn meta(&self) -> &PartMeta {
        &self.meta
    }

    /// Absolute path of the Parquet file.
    pub fn path(&self) -> PathBuf {
        self.root.join(&self.meta.file)
    }

    pub fn index_path(&self) -> Option<PathBuf> {
        self.meta.index.as_ref().map(|i| self.root.join(i))
    }

    pub(crate) fn index(&self) -> Result<Option<&PartIndex>> {
        let Some(dir) = self.index_path() else {
            return Ok(None);
        };
        if let Some(index) = self.index.get() {
            return Ok(Some(index));
        }
        let _rebuilding = self.rebuilding.lock().unwrap_or_else(|e| e.into_inner());
        if self.index.get().is_none() {
            // The index is derived from the part: one written in another layout, missing (a
            // rebuild interrupted between its two renames) or unreadable is built again.
            let opened = match dir.exists() {
                true => PartIndex::open(&dir).unwrap_or_else(|e| {
                    tracing::warn!(part = self.meta.id, error = %e, "unreadable trace index");
                    None
                }),
                false => None,
            };
            let index = match opened {
                Some(index) => index,
                None => self.rebuild_index(&dir)?,
            };
            let _ = self.index.set(index);
        }
        Ok(self.index.get())
    }

    /// Builds the part's index again from its rows.
    fn rebuild_index(&self, dir: &Path) -> Result<PartIndex> {
        let started = std::time::Instant::now();
        let batches = crate::part::part_batches(&self.path())?;
        let bytes = crate::index::rebuild(dir, batches)?;
        tracing::info!(
            part = self.meta.id,
            rows = self.meta.rows,
            index_bytes = bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "rebuilt a trace index from its part"
        );
        PartIndex::open(dir)?
            .ok_or_else(|| Error::Corrupt(format!("rebuilt index {} is unreadable", dir.display())))
    }

    /// The Parquet footer and page index: parsed on first use and kept while the store's
    /// footer cache has room ([`Footers`]), parsed again after it was dropped.
    pub fn reader_metadata(&self) -> Result<ArrowReaderMetadata> {
        let key = self as *const Self as usize;
        let kept = self.footer_slot().clone();
        if let Some(footer) = kept {
            self.footers.touch(key);
            return Ok(footer);
        }
        let footer = crate::part::load_reader_metadata(&self.path())?;
        *self.footer_slot() = Some(footer.clone());
        let bytes = footer.metadata().memory_size() as u64;
        self.footers.keep(key, self.me.clone(), bytes);
        Ok(footer)
    }

    fn footer_slot(&self) -> std::sync::MutexGuard<'_, Option<ArrowReaderMetadata>> {
        self.footer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops the parsed footer (the footer cache needs the room).
    pub(crate) fn drop_footer(&self) {
        *self.footer_slot() = None;
    }

    #[cfg(test)]
    pub(crate) fn keeps_footer(&self) -> bool {
        self.footer_slot().is_some()
    }

    /// Row counts per combination of the signal's rollup columns, once [`Part::warm`] has run
    /// (never reads files: a part not yet warm has none).
    pub fn rollup(&self) -> Option<&Rollup> {
        self.rollup.get().and_then(Option::as_ref)
    }

    /// Opens the trace index, reads the Parquet footer and the rollup now, so that the first
    /// query touching the part does not pay for them (a part written before rollups is counted
    /// here).
    pub fn warm(&self) -> Result<()> {
        self.index()?;
        let metadata = self.reader_metadata()?;
        if self.rollup.get().is_none() {
            let rollup = crate::rollup::load(self.meta.signal, &self.path(), &metadata)?;
            let _ = self.rollup.set(rollup);
        }
        Ok(())
    }

    pub(crate) fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::Release);
    }

    /// Whether both the Parquet file and the index are on disk.
    pub fn files_exist(&self) -> bool {
        self.path().exists() && self.index_path().is_none_or(|p| p.exists())
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        self.footers.forget(self as *const Self as usize);
        if !self.obsolete.load(Ordering::Acquire) {
            return;
        }
        let path = self.path();
        if let Err(e) = fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "could not delete an obsolete part");
        }
        if let Some(dir) = self.index_path()
            && let Err(e) = fs::remove_dir_all(&dir)
        {
            tracing::warn!(path = %dir.display(), error = %e, "could not delete an obsolete index");
        }
    }
}

/// Some file or directory under `parts/<signal>/<hour>/`, if there is one.
fn any_part(root: &Path) -> Result<Option<std::path::PathBuf>> {
    let parts = root.join("parts");
    if !parts.exists() {
        return Ok(None);
    }
    for signal in fs::read_dir(&parts).map_err(Error::io("list", &parts))? {
        let signal = signal.map_err(Error::io("list", &parts))?.path();
        if !signal.is_dir() {
            continue;
        }
        for hour in fs::read_dir(&signal).map_err(Error::io("list", &signal))? {
            let hour = hour.map_err(Error::io("list", &signal))?.path();
            if !hour.is_dir() {
                continue;
            }
            if let Some(entry) = fs::read_dir(&hour)
                .map_err(Error::io("list", &hour))?
                .next()
            {
                return Ok(Some(entry.map_err(Error::io("list", &hour))?.path()));
            }
        }
    }
    Ok(None)
}

/// One immutable version of the manifest.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    pub generation: u64,
    /// Every WAL record at or below this LSN is in a part.
    pub flushed_lsn: u64,
    pub next_part_id: u64,
    pub parts: Vec<Arc<Part>>,
}

impl Manifest {
    pub(crate) fn load(root: &Path) -> Result<Self> {
        let path = root.join(MANIFEST_FILE);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Parts without a manifest are a restored backup or an operator's mistake, not
                // a new store: taking them for one would delete every part as unreferenced.
                if let Some(example) = any_part(root)? {
                    return Err(Error::MissingManifest {
                        root: root.to_owned(),
                        example,
                    });
                }
                // A new store has its manifest from the start, so that the case above can
                // only be such a mistake, never a crash before the first flush.
                let fresh = Self {
                    next_part_id: 1,
                    ..Self::default()
                };
                fresh.persist(root)?;
                return Ok(fresh);
            }
            Err(e) => return Err(Error::io("read manifest", &path)(e)),
        };
        let file: ManifestFile =
            serde_json::from_slice(&text).map_err(|source| Error::Manifest {
                path: path.clone(),
                source,
            })?;
        if file.format_version != FORMAT_VERSION {
            return Err(Error::Corrupt(format!(
                "manifest {} has format version {}, this build reads {FORMAT_VERSION}",
                path.display(),
                file.format_version
            )));
        }
        Ok(Self {
            generation: file.generation,
            flushed_lsn: file.flushed_lsn,
            next_part_id: file.next_part_id,
            parts: file
                .parts
                .into_iter()
                .map(|m| Part::persisted(m, root))
                .collect(),
        })
    }

    /// Writes this version durably and atomically as the current manifest. First makes the
    /// directory entries of its new parts durable, so that after a power loss the manifest
    /// never names a file whose entry was lost (while the WAL that held its rows is gone).
    pub(crate) fn persist(&self, root: &Path) -> Result<()> {
        self.sync_new_entries(root)?;
        let file = ManifestFile {
            format_version: FORMAT_VERSION,
            generation: self.generation,
            flushed_lsn: self.flushed_lsn,
            next_part_id: self.next_part_id,
            parts: self.parts.iter().map(|p| p.meta.clone()).collect(),
        };
        let text = serde_json::to_vec_pretty(&file).expect("the manifest always serializes");
        let tmp = root.join(format!("{MANIFEST_FILE}.tmp"));
        let mut f = fs::File::create(&tmp).map_err(Error::io("create", &tmp))?;
        f.write_all(&text).map_err(Error::io("write", &tmp))?;
        f.sync_all().map_err(Error::io("sync", &tmp))?;
        let path = root.join(MANIFEST_FILE);
        fs::rename(&tmp, &path).map_err(Error::io("replace manifest with", &tmp))?;
        sync_dir(root)
    }

    /// Fsyncs every directory from each new part's files up to `root`.
    fn sync_new_entries(&self, root: &Path) -> Result<()> {
        let fresh: Vec<&Arc<Part>> = self
            .parts
            .iter()
            .filter(|p| !p.entries_synced.load(Ordering::Acquire))
            .collect();
        let mut dirs = std::collections::BTreeSet::new();
        for part in &fresh {
            let mut files = vec![part.path()];
            if let Some(index) = part.index_path() {
                // The index directory's own files, and its entry in the hour directory.
                dirs.insert(index.clone());
                files.push(index);
            }
            for file in files {
                let mut dir = file.parent();
                while let Some(d) = dir.filter(|d| d.starts_with(root)) {
                    dirs.insert(d.to_owned());
                    dir = d.parent();
                }
            }
        }
        for dir in &dirs {
            sync_dir(dir)?;
        }
        for part in fresh {
            part.entries_synced.store(true, Ordering::Release);
        }
        Ok(())
    }

    pub fn parts_of(&self, signal: Signal) -> impl Iterator<Item = &Arc<Part>> {
        self.parts.iter().filter(move |p| p.meta.signal == signal)
    }

    /// Relative paths of every file and index directory the manifest references.
    pub(crate) fn referenced(&self) -> std::collections::HashSet<PathBuf> {
        self.parts
            .iter()
            .flat_map(|p| {
                std::iter::once(PathBuf::from(&p.meta.file))
                    .chain(p.meta.index.as_ref().map(PathBuf::from))
            })
            .collect()
    }
}

/// Creates `dir` and the parents it lacks, each made durable in its parent directory (a
/// directory created and not synced there is gone after a power loss, with all it holds).
pub(crate) fn create_dir_durably(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durably(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(Error::io("create directory", dir)(e)),
    }
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Makes the entries of `dir` (files created, renamed or removed in it) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("sync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(file: &str) -> PartMeta {
        PartMeta {
            id: 1,
            signal: Signal::Spans,
            hour: 1,
            file: file.into(),
            index: None,
            rows: 1,
            bytes: 1,
            index_bytes: 0,
            min_time_unix_nano: 0,
            max_time_unix_nano: 0,
            level: 0,
        }
    }

    #[test]
    fn a_manifest_is_not_written_before_its_new_parts_directories_are_synced() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        // The hour directory is gone (its entry lost): syncing it fails, and the manifest that
        // would name the part is not written.
        let lost = Manifest {
            generation: 1,
            next_part_id: 2,
            parts: vec![Part::new(meta("parts/spans/2026112700/1.parquet"), root)],
            ..Manifest::default()
        };
        let err = lost
            .persist(root)
            .expect_err("the part's directory cannot be synced");
        assert!(err.to_string().contains("sync directory"), "{err}");
        assert!(!root.join(MANIFEST_FILE).exists());

        let hour = root.join("parts/spans/2026112700");
        fs::create_dir_all(&hour).unwrap();
        fs::write(hour.join("1.parquet"), b"x").unwrap();
        lost.persist(root).unwrap();
        assert!(lost.parts[0].entries_synced.load(Ordering::Acquire));
        assert_eq!(Manifest::load(root).unwrap().parts.len(), 1);
    }
}
