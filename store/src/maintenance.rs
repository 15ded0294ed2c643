//! Background work on the store: flushing, compaction of small parts, retention.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::Result;
use crate::manifest::{Manifest, Part, PartMeta};
use crate::memory::{COMPACTION_BYTES, Share};
use crate::model::Signal;
use crate::part::{MERGE_BATCH_ROWS, Merge, NANOS_PER_HOUR, part_batches_of};
use crate::store::Store;
use crate::threads::{background, blocking};

/// Most parts one compaction merges: it holds a batch of each, and its index writer fills its
/// 128 MiB budget with the postings of about a million spans.
const MAX_PARTS_PER_MERGE: usize = 8;

impl Store {
    /// Merges the small parts of each hour that has at least `compaction_min_parts` of them (at
    /// most [`MAX_PARTS_PER_MERGE`] per hour in one call). Returns how many parts were merged
    /// away.
    ///
    /// What to merge, and the merged parts' ids, are settled under the maintenance lock; the
    /// merges run without it, so flushes go on meanwhile, and each merged part is installed
    /// under it onto the manifest as it is then. A merge whose inputs left the manifest
    /// meanwhile (retention, another compaction) is dropped.
    ///
    /// A compaction reserves its working set in the memory budget first; when the budget lacks
    /// it, nothing is merged (the next round tries again).
    pub async fn compact(&self) -> Result<usize> {
        let (plans, _working_set) = {
            let _guard = self.inner.maintenance.lock().await;
            let config = &self.inner.config;
            let manifest = self.current_manifest();
            let mut groups: BTreeMap<(Signal, u64), Vec<Arc<Part>>> = BTreeMap::new();
            for part in &manifest.parts {
                if part.meta().bytes < config.compaction_small_part_bytes {
                    groups
                        .entry((part.meta().signal, part.meta().hour))
                        .or_default()
                        .push(part.clone());
                }
            }
            groups.retain(|_, group| group.len() >= config.compaction_min_parts.max(2));
            if groups.is_empty() {
                return Ok(0);
            }
            let memory = &self.inner.memory;
            let Some(working_set) = memory.try_reserve(Share::Compaction, COMPACTION_BYTES) else {
                tracing::debug!("the memory budget lacks a compaction's working set; deferred");
                return Ok(0);
            };
            // The merged parts' ids are taken now, in a manifest commit of their own, so that
            // flushes meanwhile (and a restart) never give them out again.
            let mut next = (*manifest).clone();
            next.generation += 1;
            let mut plans = Vec::with_capacity(groups.len());
            for ((signal, hour), mut group) in groups {
                group.truncate(MAX_PARTS_PER_MERGE);
                plans.push((signal, hour, group, next.next_part_id));
                next.next_part_id += 1;
            }
            let root = self.inner.root.clone();
            let next = blocking(move || next.persist(&root).map(|_| next)).await?;
            self.install(next, &[]);
            (plans, working_set)
        };
        let mut merged = 0;
        for (signal, hour, group, id) in plans {
            let started = Instant::now();
            let inner = self.inner.clone();
            let inputs = group.clone();
            let part = background(move || {
                // Each input is read a batch at a time and merged in order as it is read.
                let mut streams = Vec::with_capacity(inputs.len());
                for part in &inputs {
                    let batches: Box<dyn Iterator<Item = Result<_>> + Send> =
                        Box::new(part_batches_of(&part.path(), MERGE_BATCH_ROWS)?);
                    streams.push(batches);
                }
                let rows = inputs.iter().map(|p| p.meta().rows as usize).sum();
                let merged = Merge::new(signal, streams)?;
                let level = inputs.iter().map(|p| p.meta().level).max().unwrap_or(0) + 1;
                let meta = inner.write_chunks(signal, hour, rows, merged, id, level)?;
                let part = Part::new(meta, &inner.root);
                part.warm()?;
                Ok(part)
            })
            .await?;
            let _guard = self.inner.maintenance.lock().await;
            let current = self.current_manifest();
            let present: HashSet<u64> = current.parts.iter().map(|p| p.meta().id).collect();
            if !group.iter().all(|p| present.contains(&p.meta().id)) {
                tracing::debug!(%signal, hour, "an input left the manifest; merge dropped");
                part.mark_obsolete();
                continue;
            }
            let gone: HashSet<u64> = group.iter().map(|p| p.meta().id).collect();
            let mut next = (*current).clone();
            next.generation += 1;
            next.parts.retain(|p| !gone.contains(&p.meta().id));
            next.parts.push(part);
            let root = self.inner.root.clone();
            let next = blocking(move || next.persist(&root).map(|_| next)).await?;
            self.install(next, &group);
            merged += group.len();
            self.inner
                .stats
                .compaction_seconds
                .observe(started.elapsed());
            tracing::debug!(%signal, hour, parts = group.len(), "compacted");
        }
        Ok(merged)
    }

    /// Drops parts older than each signal's retention and, per signal, the oldest parts beyond
    /// its byte limit. Returns how many parts were dropped.
    pub async fn enforce_retention(&self, now_unix_nano: u64) -> Result<usize> {
        let _guard = self.inner.maintenance.lock().await;
        let config = &self.inner.config;
        let manifest = self.current_manifest();
        let mut dropped: Vec<Arc<Part>> = Vec::new();
        for signal in Signal::ALL {
            let mut parts: Vec<&Arc<Part>> = manifest.parts_of(signal).collect();
            parts.sort_by_key(|p| (p.meta().max_time_unix_nano, p.meta().id));
            let hours = config.retention_hours(signal);
            let cutoff = now_unix_nano.saturating_sub(hours.saturating_mul(NANOS_PER_HOUR));
            let (old, mut kept): (Vec<_>, Vec<_>) = parts
                .into_iter()
                .partition(|p| hours > 0 && p.meta().max_time_unix_nano < cutoff);
            dropped.extend(old.into_iter().cloned());
            let max_bytes = config.max_bytes(signal);
            if max_bytes > 0 {
                let mut total: u64 = kept
                    .iter()
                    .map(|p| p.meta().bytes + p.meta().index_bytes)
                    .sum();
                while total > max_bytes && !kept.is_empty() {
                    let oldest = kept.remove(0);
                    total -= oldest.meta().bytes + oldest.meta().index_bytes;
                    dropped.push(oldest.clone());
                }
            }
        }
        if dropped.is_empty() {
            return Ok(0);
        }
        let gone: HashSet<u64> = dropped.iter().map(|p| p.meta().id).collect();
        let mut next = (*manifest).clone();
        next.generation += 1;
        next.parts.retain(|p| !gone.contains(&p.meta().id));
        let root = self.inner.root.clone();
        let next = blocking(move || next.persist(&root).map(|_| next)).await?;
        self.install(next, &dropped);
        self.inner
            .stats
            .parts_dropped_by_retention_total
            .fetch_add(dropped.len() as u64, Ordering::Relaxed);
        tracing::info!(parts = dropped.len(), "retention dropped parts");
        Ok(dropped.len())
    }

    fn current_manifest(&self) -> Arc<Manifest> {
        self.inner
            .state
            .read()
            .expect("store state lock")
            .manifest
            .clone()
    }

    /// Makes a committed manifest current; the removed parts' files go once unused.
    /// Makes parts written elsewhere part of this store: `add` (each part's files already under
    /// the data directory at the paths it names; its `id` is ignored) join the manifest and the
    /// parts whose ids are in `remove` leave it (their files are deleted once no snapshot holds
    /// them). One manifest commit. Returns the ids given to `add`, in order. This is how a
    /// querier mirrors the parts of an object store.
    pub async fn adopt_parts(&self, add: Vec<PartMeta>, remove: &[u64]) -> Result<Vec<u64>> {
        let root = self.inner.root.clone();
        let _guard = self.inner.maintenance.lock().await;
        let current = self.current_manifest();
        let mut next = (*current).clone();
        next.generation += 1;
        let gone: HashSet<u64> = remove.iter().copied().collect();
        let removed: Vec<Arc<Part>> = (next.parts.iter())
            .filter(|p| gone.contains(&p.meta().id))
            .cloned()
            .collect();
        next.parts.retain(|p| !gone.contains(&p.meta().id));
        let mut ids = Vec::with_capacity(add.len());
        let mut added = Vec::with_capacity(add.len());
        for mut meta in add {
            meta.id = next.next_part_id;
            next.next_part_id += 1;
            ids.push(meta.id);
            added.push(Part::new(meta, &root));
        }
        let next = blocking(move || {
            for part in &added {
                part.warm()?;
            }
            next.parts.extend(added);
            next.persist(&root).map(|_| next)
        })
        .await?;
        self.install(next, &removed);
        Ok(ids)
    }

    fn install(&self, next: Manifest, removed: &[Arc<Part>]) {
        self.inner.state.write().expect("store state lock").manifest = Arc::new(next);
        for part in removed {
            part.mark_obsolete();
        }
    }

    /// The long-running component that flushes, compacts and applies retention.
    pub fn maintenance(&self) -> Maintenance {
        Maintenance {
            store: self.clone(),
        }
    }
}

/// Flushes when the memtables are big or old enough; applies retention every
/// `maintenance_interval_secs`, and compacts as often, in a task of its own that merges until
/// nothing is left to merge. Errors are logged and retried on the next round.
pub struct Maintenance {
    store: Store,
}

impl Maintenance {
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let inner = self.store.inner.clone();
        let config = inner.config.clone();
        let maintenance_every = Duration::from_secs(config.maintenance_interval_secs.max(1));
        let flush_every = config.flush_every();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut last_maintenance = Instant::now();
        let compactor = tokio::spawn(compact_rounds(self.store.clone(), maintenance_every));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
                _ = inner.flush_wanted.notified() => {}
            }
            let due = {
                let state = inner.state.read().expect("store state lock");
                state.frozen.is_some()
                    || state.active.bytes >= config.flush_bytes
                    || state
                        .active
                        .oldest
                        .is_some_and(|t| t.elapsed() >= flush_every)
                    || inner.budget.used() >= config.flush_bytes
                    || inner.memtable_full.swap(false, Ordering::AcqRel)
            };
            if due && let Err(e) = self.store.flush().await {
                tracing::error!(error = %e, "flush failed; will retry");
            }
            if last_maintenance.elapsed() >= maintenance_every {
                last_maintenance = Instant::now();
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                if let Err(e) = self.store.enforce_retention(now).await {
                    tracing::error!(error = %e, "retention failed; will retry");
                }
            }
        }
        compactor.abort();
    }
}

/// Every `every`, merges small parts until none are left to merge (a round catches up with
/// what sustained ingest flushed since the last), beside the flushes.
async fn compact_rounds(store: Store, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        loop {
            match store.compact().await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "compaction failed; will retry");
                    break;
                }
            }
        }
    }
}
