//! Keeping a bucket and a local store in step: an ingester's [`Uploader`] puts its parts up
//! and lists them; a querier's [`Mirror`] brings the visible parts down into a store of its own.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::{
    Bucket, BucketPart, Committed, FORMAT_VERSION, Ingester, OwnerManifest, PartRef, Version,
    ingester_manifest,
};
use crate::error::{Error, Result};
use crate::model::Signal;
use crate::store::Store;

/// Parts a querier filling its cache takes into its store at a time.
const ADOPT_BATCH: usize = 32;

/// Times a manifest commit is tried again after losing to another write.
const COMMIT_TRIES: usize = 3;

/// How long the objects of a part dropped from an ingester's manifest are kept: a querier that
/// read the manifest before may still be downloading them.
const DROPPED_GRACE: Duration = Duration::from_secs(300);

/// What waits for upload: the store's parts the bucket does not list yet. Cheap to clone: the
/// uploader keeps it up to date, and anyone may measure it without touching the network.
#[derive(Clone, Default)]
pub struct Backlog {
    /// Ids of the parts the bucket lists (`None` until its manifest was first read).
    listed: Arc<RwLock<Option<HashSet<u64>>>>,
    /// The store's parts when first measured: until the manifest is read, they are taken as
    /// uploaded (most are; a restart while the bucket is away must not refuse ingest for them).
    at_start: Arc<std::sync::OnceLock<HashSet<u64>>>,
}

impl Backlog {
    /// Bytes of the store's parts the bucket does not list (before its manifest was first
    /// read: of those made since the first measure), recorded in the store, which refuses
    /// appends past `max_pending_bytes`.
    pub fn update(&self, store: &Store) -> u64 {
        let snapshot = store.snapshot();
        let parts: Vec<_> = Signal::ALL
            .iter()
            .flat_map(|s| snapshot.parts(*s))
            .collect();
        let at_start = self
            .at_start
            .get_or_init(|| parts.iter().map(|p| p.meta().id).collect());
        let listed = self.listed.read().expect("backlog lock");
        let bytes = (parts.iter())
            .filter(|p| match listed.as_ref() {
                Some(listed) => !listed.contains(&p.meta().id),
                None => !at_start.contains(&p.meta().id),
            })
            .map(|p| p.meta().bytes + p.meta().index_bytes)
            .sum();
        store.set_upload_backlog(bytes);
        bytes
    }

    fn listed(&self, manifest: &OwnerManifest) {
        let ids = manifest.parts.iter().map(|p| p.meta.id).collect();
        *self.listed.write().expect("backlog lock") = Some(ids);
    }
}

/// Uploads an ingester's parts and keeps its manifest in the bucket in step with its store.
pub struct Uploader {
    bucket: Bucket,
    owner: String,
    token: String,
    backlog: Backlog,
    /// The manifest as last read or written, and its version (`None`: there is none yet).
    listed: Option<(OwnerManifest, Option<Version>)>,
    /// Parts dropped from the manifest (merged, or past retention), and when their objects go.
    dropped: Vec<(Instant, BucketPart)>,
    grace: Duration,
}

/// What one [`Uploader::sync`] or [`Mirror::refresh`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Synced {
    pub added: usize,
    pub removed: usize,
}

impl Uploader {
    /// The uploader of `ingester` (see [`super::ingester`]).
    pub fn new(bucket: Bucket, ingester: &Ingester) -> Result<Self> {
        check_owner(&ingester.id)?;
        Ok(Self {
            bucket,
            owner: ingester.id.clone(),
            token: ingester.token.clone(),
            backlog: Backlog::default(),
            listed: None,
            dropped: Vec::new(),
            grace: DROPPED_GRACE,
        })
    }

    /// Keeps the objects of dropped parts for `grace` instead of five minutes.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// What waits for upload, kept up to date by [`Uploader::sync`].
    pub fn backlog(&self) -> Backlog {
        self.backlog.clone()
    }

    /// Uploads the store's parts the bucket does not list yet, then commits the ingester's
    /// manifest: the parts the store has (a part it compacted away leaves the list in the same
    /// commit as the part that replaced it). A part is listed only once all its files are up;
    /// after a failure nothing new is listed, and the next call uploads it again.
    pub async fn sync(&mut self, store: &Store) -> Result<Synced> {
        let synced = self.commit(store).await;
        self.backlog.update(store);
        self.delete_dropped().await;
        synced
    }

    /// Deletes the objects of dropped parts whose grace has passed; what fails is tried again
    /// at the next sync. (A process that dies first leaves them: nothing lists them.)
    async fn delete_dropped(&mut self) {
        let now = Instant::now();
        let mut kept = Vec::new();
        for (due, part) in std::mem::take(&mut self.dropped) {
            if due > now {
                kept.push((due, part));
            } else if let Err(error) = self.bucket.delete_part(&part).await {
                tracing::warn!(%error, part = part.meta.id, "failed to delete a dropped part's objects");
                kept.push((due, part));
            }
        }
        self.dropped = kept;
    }

    async fn commit(&mut self, store: &Store) -> Result<Synced> {
        let name = ingester_manifest(&self.owner);
        for _ in 0..COMMIT_TRIES {
            let (listed, version) = match self.listed.take() {
                Some(listed) => listed,
                None => match self.bucket.get_json::<OwnerManifest>(&name).await? {
                    Some((manifest, version)) => {
                        self.backlog.listed(&manifest);
                        (manifest, Some(version))
                    }
                    None => (
                        OwnerManifest {
                            format_version: FORMAT_VERSION,
                            token: self.token.clone(),
                            parts: Vec::new(),
                        },
                        None,
                    ),
                },
            };
            if listed.token != self.token {
                return Err(Error::Conflict(format!(
                    "ingester id {} belongs to another data directory (its manifest in the \
                     bucket was written by it): give this one another ingester_id",
                    self.owner
                )));
            }
            let snapshot = store.snapshot();
            let local: Vec<_> = (Signal::ALL.iter())
                .flat_map(|s| snapshot.parts(*s))
                .collect();
            let local_ids: HashSet<u64> = local.iter().map(|p| p.meta().id).collect();
            let listed_ids: HashSet<u64> = listed.parts.iter().map(|p| p.meta.id).collect();
            let mut next = listed.clone();
            next.parts.retain(|p| local_ids.contains(&p.meta.id));
            let synced = Synced {
                removed: listed.parts.len() - next.parts.len(),
                added: local_ids.difference(&listed_ids).count(),
            };
            if synced == Synced::default() {
                self.listed = Some((listed, version));
                return Ok(synced);
            }
            for part in local.iter().filter(|p| !listed_ids.contains(&p.meta().id)) {
                let uploaded = self
                    .bucket
                    .upload_part(&self.owner, part.meta(), store.root());
                match uploaded.await {
                    Ok(up) => next.parts.push(up),
                    Err(e) => {
                        self.listed = Some((listed, version));
                        return Err(e);
                    }
                }
            }
            next.parts.sort_by_key(|p| p.meta.id);
            match self.bucket.put_json(&name, &next, version.as_ref()).await {
                Ok(Committed::Done(version)) => {
                    self.backlog.listed(&next);
                    let kept: HashSet<u64> = next.parts.iter().map(|p| p.meta.id).collect();
                    let due = Instant::now() + self.grace;
                    (self.dropped).extend(
                        (listed.parts.iter())
                            .filter(|p| !kept.contains(&p.meta.id))
                            .map(|p| (due, p.clone())),
                    );
                    self.listed = Some((next, Some(version)));
                    return Ok(synced);
                }
                // Lost: read the manifest again (it may hold a commit of ours whose answer
                // was lost) and redo the difference.
                Ok(Committed::Lost) => {}
                Err(e) => {
                    // The commit may or may not have happened: read it again next time.
                    return Err(e);
                }
            }
        }
        Err(Error::Conflict(format!(
            "the manifest of ingester {} keeps changing under it: is another process using \
             that ingester id?",
            self.owner
        )))
    }
}

/// Brings the bucket's visible parts into a local store (a querier's), and drops from it the
/// parts the bucket no longer shows.
pub struct Mirror {
    bucket: Bucket,
    /// Bucket part → the local store's id for it.
    held: Option<HashMap<PartRef, u64>>,
}

impl Mirror {
    pub fn new(bucket: Bucket) -> Self {
        Self { bucket, held: None }
    }

    /// Reads the bucket's manifests, downloads the parts the store lacks and drops those no
    /// longer visible, in one manifest commit of the store.
    pub async fn refresh(&mut self, store: &Store) -> Result<Synced> {
        let mut held = match self.held.take() {
            Some(held) => held,
            None => mirrored(store),
        };
        let visible = match self.bucket.visible_parts().await {
            Ok(visible) => visible,
            Err(e) => {
                self.held = Some(held);
                return Err(e);
            }
        };
        let keys: HashSet<PartRef> = visible.iter().map(BucketPart::key).collect();
        let gone: Vec<PartRef> = held.keys().filter(|k| !keys.contains(k)).cloned().collect();
        let gone_ids: Vec<u64> = gone.iter().map(|k| held[k]).collect();
        // Parts that replace others (merges) go in with the removal of what they replace, in
        // one commit. When nothing goes (a querier filling its cache), parts are taken in
        // batches as they arrive, so a long first read shows its progress and keeps it.
        let batch = if gone.is_empty() {
            ADOPT_BATCH
        } else {
            usize::MAX
        };
        let mut synced = Synced {
            added: 0,
            removed: gone_ids.len(),
        };
        let (mut metas, mut refs) = (Vec::new(), Vec::new());
        let mut failed = None;
        let wanted: Vec<&BucketPart> = (visible.iter())
            .filter(|p| !held.contains_key(&p.key()))
            .collect();
        for part in wanted {
            let base = mirror_name(part);
            let mut meta = part.meta.clone();
            meta.file = format!("{base}.parquet");
            meta.index = part.meta.index.as_ref().map(|_| format!("{base}.index"));
            let index = meta.index.as_ref().map(|i| store.root().join(i));
            let file = store.root().join(&meta.file);
            match self
                .bucket
                .download_part(part, &file, index.as_deref())
                .await
            {
                Ok(_) => {
                    metas.push(meta);
                    refs.push(part.key());
                }
                // Dropped (merged again, or past retention) since the manifest was read: the
                // next read shows what replaced it.
                Err(e) if e.is_not_found() => {
                    tracing::debug!(part = ?part.key(), "a part left the bucket while read");
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            if metas.len() >= batch {
                synced.added += metas.len();
                let ids = store.adopt_parts(std::mem::take(&mut metas), &[]).await?;
                held.extend(std::mem::take(&mut refs).into_iter().zip(ids));
            }
        }
        if failed.is_some() && !gone.is_empty() {
            // All or nothing when parts go: what was fetched is taken at the next read.
            metas.clear();
            refs.clear();
            synced.removed = 0;
        }
        if !metas.is_empty() || synced.removed > 0 {
            synced.added += metas.len();
            let removing = if synced.removed > 0 {
                gone_ids.as_slice()
            } else {
                &[]
            };
            let ids = store.adopt_parts(metas, removing).await?;
            if synced.removed > 0 {
                for key in &gone {
                    held.remove(key);
                }
            }
            held.extend(refs.into_iter().zip(ids));
        }
        self.held = Some(held);
        match failed {
            Some(e) => Err(e),
            None => Ok(synced),
        }
    }
}

/// Where a mirrored part's files go: beside local parts of its hour, named by owner and id.
fn mirror_name(part: &BucketPart) -> String {
    let hour = Path::new(&part.meta.file)
        .parent()
        .map_or_else(String::new, |p| p.to_string_lossy().into_owned());
    format!("{hour}/{}.{:012}", part.owner, part.meta.id)
}

/// The bucket parts a store holds, read back from their file names.
fn mirrored(store: &Store) -> HashMap<PartRef, u64> {
    let snapshot = store.snapshot();
    let mut held = HashMap::new();
    for part in Signal::ALL.iter().flat_map(|s| snapshot.parts(*s)) {
        let stem = Path::new(&part.meta().file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some((owner, id)) = stem.rsplit_once('.')
            && let Ok(id) = id.parse()
        {
            let key = PartRef {
                owner: owner.to_owned(),
                id,
            };
            held.insert(key, part.meta().id);
        }
    }
    held
}

pub(super) fn check_owner(owner: &str) -> Result<()> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if owner.is_empty() || owner == "shared" || !owner.chars().all(fine) {
        return Err(Error::Config(format!(
            "ingester id {owner:?} must be letters, digits, '.', '_' or '-' (and not \"shared\")"
        )));
    }
    Ok(())
}
