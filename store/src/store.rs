//! The store: one data directory, one WAL writer, memtables, and the manifest of parts.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use tokio::sync::Notify;

use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::gather::gather_batch;
use crate::manifest::{Manifest, Part, PartMeta};
use crate::memory::{MemoryBudget, Reserved};
use crate::memtable::{Budget, Memtable, Reservation, batch_bytes};
use crate::model::Signal;
use crate::part::{HourPlan, batch_time_range, hour_folder, sort_plan, write_part_stream};
use crate::rollup::RollupCounter;
use crate::schema::{Records, schema_for};
use crate::snapshot::Snapshot;
use crate::threads::blocking;
use crate::wal::{self, OsFs, ReplayReport, Wal, WalFs, WalStats, WriterOptions};
use crate::{index, ipc};

/// Turns a source record's payload back into the batch it was appended with (see
/// [`Store::append_source`]); `Err` names what is wrong with the payload.
pub type SourceDecoder =
    Arc<dyn Fn(Signal, &[u8]) -> std::result::Result<RecordBatch, String> + Send + Sync>;

/// The WAL tag bit of a source record; the other bits are the signal's tag.
const SOURCE_TAG: u8 = 0x80;

/// A batch on its way through the WAL into the memtable.
pub(crate) struct Pending {
    signal: Signal,
    batch: RecordBatch,
    reservation: Reservation,
}

pub(crate) struct State {
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) active: Memtable,
    /// A memtable being written to parts; still read by snapshots until the manifest has it.
    pub(crate) frozen: Option<Arc<Memtable>>,
}

/// Counters of the store, for `/metrics`.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub appends_total: AtomicU64,
    pub rows_appended_total: AtomicU64,
    pub throttled_total: AtomicU64,
    pub flush_seconds: crate::stats::Histogram,
    pub compaction_seconds: crate::stats::Histogram,
    pub parts_dropped_by_retention_total: AtomicU64,
}

pub(crate) struct Inner {
    pub(crate) root: PathBuf,
    pub(crate) config: StoreConfig,
    pub(crate) state: Arc<RwLock<State>>,
    pub(crate) budget: Arc<Budget>,
    /// The process's memory budget; the store holds its standing shares for its lifetime.
    pub(crate) memory: Arc<MemoryBudget>,
    _standing: Vec<Reserved>,
    wal: Wal<Pending>,
    /// Serializes everything that writes the manifest: flush, compaction, retention.
    pub(crate) maintenance: tokio::sync::Mutex<()>,
    pub(crate) flush_wanted: Notify,
    /// Set when an append was refused for lack of memtable room: flush whatever the thresholds.
    pub(crate) memtable_full: std::sync::atomic::AtomicBool,
    /// Bytes of parts not yet in the object store (kept by its uploader; 0 without one).
    upload_backlog: AtomicU64,
    pub(crate) stats: StoreStats,
}

/// The storage engine. Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

/// What a flush wrote.
#[derive(Debug, Clone, Default)]
pub struct FlushReport {
    pub rows: u64,
    pub parts: Vec<PartMeta>,
    pub flushed_lsn: u64,
}

impl Store {
    /// Opens (or creates) the store in `root`, replaying the WAL. Blocking: call it before
    /// serving, or from `spawn_blocking`. Without a [`SourceDecoder`], a WAL that holds
    /// source records (see [`Store::append_source`]) is an error and is left as it is.
    pub fn open(root: impl AsRef<Path>, config: StoreConfig) -> Result<(Self, ReplayReport)> {
        Self::open_inner(root, config, Arc::new(OsFs), None)
    }

    /// Like [`Store::open`], turning source records back into batches with `decoder`.
    pub fn open_with_decoder(
        root: impl AsRef<Path>,
        config: StoreConfig,
        decoder: SourceDecoder,
    ) -> Result<(Self, ReplayReport)> {
        Self::open_inner(root, config, Arc::new(OsFs), Some(decoder))
    }

    /// Like [`Store::open`], with the WAL writing through `fs` (tests inject failures there).
    pub fn open_with_fs(
        root: impl AsRef<Path>,
        config: StoreConfig,
        fs: Arc<dyn WalFs>,
    ) -> Result<(Self, ReplayReport)> {
        Self::open_inner(root, config, fs, None)
    }

    fn open_inner(
        root: impl AsRef<Path>,
        config: StoreConfig,
        fs: Arc<dyn WalFs>,
        decoder: Option<SourceDecoder>,
    ) -> Result<(Self, ReplayReport)> {
        config.validate()?;
        let root = root.as_ref().to_owned();
        crate::manifest::create_dir_durably(&root)?;
        let manifest = Manifest::load(&root)?;
        remove_unreferenced_parts(&root, &manifest)?;
        let budget = Arc::new(Budget::new(config.memtable_max_bytes));
        let mut active = Memtable::default();
        let wal_dir = root.join("wal");
        let replayed = wal::replay(&wal_dir, manifest.flushed_lsn, &mut |lsn, tag, payload| {
            let Some(signal) = Signal::from_tag(tag & !SOURCE_TAG) else {
                return Ok(Err(format!("unknown signal tag {tag}")));
            };
            let batch = match (tag & SOURCE_TAG != 0, &decoder) {
                (false, _) => ipc::decode(signal, payload).map_err(|e| e.to_string()),
                (true, Some(decode)) => decode(signal, payload),
                (true, None) => {
                    return Err(Error::Corrupt(format!(
                        "the WAL in {} holds source records and no decoder was given to read \
                         them; open the store through spyglass serve",
                        wal_dir.display()
                    )));
                }
            };
            let batch = match batch {
                Ok(batch) if schema_for(signal).fields() == batch.schema().fields() => batch,
                Ok(_) => return Ok(Err(format!("record {lsn} is not in the {signal} schema"))),
                Err(why) => return Ok(Err(why)),
            };
            let bytes = batch_bytes(&batch);
            budget.force_reserve(bytes);
            active.insert(lsn, signal, batch, bytes);
            Ok(Ok(()))
        })?;
        let next_lsn = replayed.max_lsn.max(manifest.flushed_lsn) + 1;
        let report = replayed.report;
        tracing::info!(
            records = report.records_replayed,
            damaged = report.damaged.len(),
            bytes_set_aside = report.bytes_set_aside(),
            "wal replayed"
        );
        let state = Arc::new(RwLock::new(State {
            manifest: Arc::new(manifest),
            active,
            frozen: None,
        }));
        let apply_to = state.clone();
        let apply: wal::Apply<Pending> = Box::new(move |items| {
            let mut state = apply_to.write().expect("store state lock");
            for (lsn, p) in items {
                let bytes = p.reservation.into_memtable();
                state.active.insert(lsn, p.signal, p.batch, bytes);
            }
        });
        let options = WriterOptions {
            durability: config.durability,
            sync_interval: config.wal_sync_interval(),
            segment_bytes: config.wal_segment_bytes,
            queue_depth: config.wal_queue_depth,
            max_group_bytes: 16 << 20,
        };
        let wal = Wal::start(wal_dir, options, fs, replayed.segments, next_lsn, apply)?;
        let memory = MemoryBudget::new(config.memory_budget_bytes);
        let standing = (config.standing_shares().iter())
            .map(|&(share, bytes)| memory.hold(share, bytes))
            .collect();
        let inner = Inner {
            root,
            config,
            state,
            budget,
            memory,
            _standing: standing,
            wal,
            maintenance: tokio::sync::Mutex::new(()),
            flush_wanted: Notify::new(),
            memtable_full: std::sync::atomic::AtomicBool::new(false),
            upload_backlog: AtomicU64::new(0),
            stats: StoreStats::default(),
        };
        Ok((
            Self {
                inner: Arc::new(inner),
            },
            report,
        ))
    }

    /// The process's memory budget, shared with the receivers (requests in flight) and the
    /// query engine (caches, SQL queries).
    pub fn memory(&self) -> &Arc<MemoryBudget> {
        &self.inner.memory
    }

    /// Bytes of the parsed Parquet footers kept for reuse (bounded; see `part::Footers`).
    pub fn footer_cache_bytes(&self) -> u64 {
        crate::part::Footers::shared().bytes()
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Appends rows. Resolves once they are durable and queryable, with the WAL sequence number
    /// that holds them. [`Error::TryLater`] when the memtable is full or the WAL is behind;
    /// [`Error::WalWrite`] when the disk failed (nothing was acknowledged).
    pub async fn append(&self, records: &Records) -> Result<u64> {
        self.append_batch(records.signal(), records.to_batch()?)
            .await
    }

    /// Records how many bytes of parts wait for upload to the object store: past
    /// `max_pending_bytes`, appends are refused with [`Error::UploadBehind`] until they are up.
    pub fn set_upload_backlog(&self, bytes: u64) {
        self.inner.upload_backlog.store(bytes, Ordering::Release);
    }

    /// Bytes of parts waiting for upload to the object store, as last recorded.
    pub fn upload_backlog(&self) -> u64 {
        self.inner.upload_backlog.load(Ordering::Acquire)
    }

    /// Appends a batch already in the signal's Arrow schema.
    pub async fn append_batch(&self, signal: Signal, batch: RecordBatch) -> Result<u64> {
        self.append_with(signal, batch, None).await
    }

    /// Appends a batch made from `source` (ingest's OTLP request bytes), logging `source` in the
    /// WAL instead of the batch: replay turns it back into the batch with the
    /// [`SourceDecoder`] given to [`Store::open_with_decoder`], which must make exactly this
    /// batch of it.
    pub async fn append_source(
        &self,
        signal: Signal,
        batch: RecordBatch,
        source: Bytes,
    ) -> Result<u64> {
        self.append_with(signal, batch, Some(source)).await
    }

    async fn append_with(
        &self,
        signal: Signal,
        batch: RecordBatch,
        source: Option<Bytes>,
    ) -> Result<u64> {
        // Batches from `Records::to_batch` share the schema's `Arc`: compare fields only otherwise.
        let table = schema_for(signal);
        if !Arc::ptr_eq(&batch.schema(), &table) && batch.schema().fields() != table.fields() {
            return Err(Error::Corrupt(format!(
                "batch is not in the {signal} schema"
            )));
        }
        let inner = &self.inner;
        if let Some(limit) = inner
            .config
            .object_store
            .as_ref()
            .map(|c| c.max_pending_bytes)
        {
            let pending = inner.upload_backlog.load(Ordering::Acquire);
            if pending > limit {
                return Err(Error::UploadBehind { pending, limit });
            }
        }
        let bytes = batch_bytes(&batch);
        if bytes > inner.budget.limit() {
            return Err(Error::TooLarge {
                what: "a batch",
                bytes,
                limit: inner.budget.limit(),
            });
        }
        let Some(reservation) = Reservation::try_new(&inner.budget, bytes) else {
            inner.stats.throttled_total.fetch_add(1, Ordering::Relaxed);
            inner.memtable_full.store(true, Ordering::Release);
            inner.flush_wanted.notify_one();
            return Err(Error::TryLater {
                reason: "memtable is full",
            });
        };
        let rows = batch.num_rows() as u64;
        let (tag, payload) = match source {
            Some(source) => (signal.tag() | SOURCE_TAG, source),
            None => (signal.tag(), Bytes::from(ipc::encode(&batch)?)),
        };
        // From here the reservation travels with the record: the memtable takes it when the
        // WAL has made the record durable; if the write fails, or this future is dropped before
        // the WAL took the record, dropping it gives the bytes back.
        let pending = Pending {
            signal,
            batch,
            reservation,
        };
        match inner.wal.append(tag, payload, pending).await {
            Ok(lsn) => {
                inner.stats.appends_total.fetch_add(1, Ordering::Relaxed);
                inner
                    .stats
                    .rows_appended_total
                    .fetch_add(rows, Ordering::Relaxed);
                if inner.budget.used() >= inner.config.flush_bytes {
                    inner.flush_wanted.notify_one();
                }
                Ok(lsn)
            }
            Err(e) => {
                if matches!(e, Error::TryLater { .. }) {
                    inner.stats.throttled_total.fetch_add(1, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }

    /// An immutable view of everything acknowledged so far: live parts and memtables.
    /// Opens every live part's trace index and Parquet footer (parts written by this process
    /// are warm already): call once after [`Store::open`], from a blocking context, so the first
    /// trace lookups after a restart do not pay for it.
    pub fn warm_caches(&self) -> Result<()> {
        let manifest = self.snapshot().manifest().clone();
        for part in &manifest.parts {
            part.warm()?;
        }
        Ok(())
    }

    pub fn snapshot(&self) -> Snapshot {
        let state = self.inner.state.read().expect("store state lock");
        let mut memtables = Vec::with_capacity(2);
        if let Some(frozen) = &state.frozen {
            memtables.push(frozen.clone());
        }
        memtables.push(Arc::new(state.active.clone()));
        Snapshot::new(state.manifest.clone(), memtables)
    }

    /// Writes the memtables to Parquet parts (and the trace index), commits the manifest and
    /// deletes WAL segments it covers. `None` when there was nothing to flush.
    pub async fn flush(&self) -> Result<Option<FlushReport>> {
        let _guard = self.inner.maintenance.lock().await;
        let started = Instant::now();
        let (frozen, manifest) = {
            let mut state = self.inner.state.write().expect("store state lock");
            if state.frozen.is_none() {
                if state.active.is_empty() {
                    return Ok(None);
                }
                state.frozen = Some(Arc::new(std::mem::take(&mut state.active)));
            }
            (
                state.frozen.clone().expect("frozen was just set"),
                state.manifest.clone(),
            )
        };
        let inner = self.inner.clone();
        let table = frozen.clone();
        // At the priority of ingest: what is acknowledged waits in memory until it is flushed
        // (a flush at lower priority let the memtable fill under sustained ingest).
        let (next, report) = blocking(move || inner.write_flush(&manifest, &table)).await?;
        {
            let mut state = self.inner.state.write().expect("store state lock");
            state.manifest = Arc::new(next);
            state.frozen = None;
        }
        self.inner.budget.release(frozen.bytes);
        if let Err(error) = self.inner.wal.checkpoint(report.flushed_lsn) {
            // The flush itself is committed; segments that could not be removed stay listed
            // and the next checkpoint removes them.
            tracing::warn!(%error, "wal checkpoint failed; the next flush retries it");
        }
        self.inner.stats.flush_seconds.observe(started.elapsed());
        tracing::debug!(
            rows = report.rows,
            parts = report.parts.len(),
            "flushed memtable"
        );
        Ok(Some(report))
    }

    /// Stops taking appends, waits for queued ones, and flushes the memtables.
    pub async fn close(&self) -> Result<()> {
        let inner = self.inner.clone();
        blocking(move || {
            inner.wal.close();
            Ok(())
        })
        .await?;
        self.flush().await.map(|_| ())
    }

    pub fn stats(&self) -> &StoreStats {
        &self.inner.stats
    }

    pub fn wal_stats(&self) -> &WalStats {
        self.inner.wal.stats()
    }

    /// Bytes the memtables hold now (including one being flushed).
    pub fn memtable_bytes(&self) -> u64 {
        self.inner.budget.used()
    }

    /// Number of WAL segment files on disk.
    pub fn wal_segments(&self) -> usize {
        self.inner.wal.segment_count()
    }
}

impl Inner {
    fn write_flush(
        &self,
        manifest: &Manifest,
        table: &Memtable,
    ) -> Result<(Manifest, FlushReport)> {
        let mut next = manifest.clone();
        next.generation += 1;
        let mut report = FlushReport::default();
        for signal in Signal::ALL {
            let batches = table.batches(signal);
            if batches.is_empty() {
                continue;
            }
            let sources: Vec<&RecordBatch> = batches.iter().collect();
            for plan in sort_plan(signal, batches)? {
                let id = next.next_part_id;
                next.next_part_id += 1;
                let meta = self.write_part(signal, &sources, &plan, id, 0)?;
                report.rows += meta.rows;
                report.parts.push(meta.clone());
                let part = Part::new(meta, &self.root);
                part.warm()?;
                next.parts.push(part);
            }
        }
        next.flushed_lsn = table.max_lsn.max(manifest.flushed_lsn);
        report.flushed_lsn = next.flushed_lsn;
        next.persist(&self.root)?;
        Ok((next, report))
    }

    /// Writes one part's Parquet file and, for spans, its index: the rows of `plan`, gathered
    /// from `sources` chunk by chunk as they are needed, so the sorted copy is never whole in
    /// memory. The caller's thread gathers, a second writes Parquet, a third counts the rollup
    /// (which the Parquet writer waits for before closing the file) and the time range and
    /// builds the trace index. (Two gathering threads used more CPU for no more throughput.)
    pub(crate) fn write_part(
        &self,
        signal: Signal,
        sources: &[&RecordBatch],
        plan: &HourPlan,
        id: u64,
        level: u32,
    ) -> Result<PartMeta> {
        let chunks = plan.chunks.iter().map(|rows| gather_batch(sources, rows));
        self.write_chunks(signal, plan.hour, plan.rows, chunks, id, level)
    }

    /// [`Inner::write_part`] from `rows` rows of `hour` already sorted, as chunks come.
    pub(crate) fn write_chunks(
        &self,
        signal: Signal,
        hour: u64,
        rows: usize,
        chunks: impl Iterator<Item = Result<RecordBatch>>,
        id: u64,
        level: u32,
    ) -> Result<PartMeta> {
        let dir = format!("parts/{signal}/{}", hour_folder(hour));
        let file = format!("{dir}/{id:012}.parquet");
        let index_rel = (signal == Signal::Spans).then(|| format!("{dir}/{id:012}.index"));
        let index_path = index_rel.as_ref().map(|rel| self.root.join(rel));
        let part_path = self.root.join(&file);
        let (bytes, (index_bytes, (min, max))) = std::thread::scope(|scope| {
            // One chunk waiting per consumer: memory holds a few chunks, not the part.
            let (to_parquet, parquet_rx) = std::sync::mpsc::sync_channel::<Result<RecordBatch>>(1);
            let (to_derived, derived_rx) = std::sync::mpsc::sync_channel::<RecordBatch>(1);
            let (rollup_tx, rollup_rx) = std::sync::mpsc::sync_channel(1);
            let derived = scope.spawn(move || -> Result<(u64, (u64, u64))> {
                let mut counter = RollupCounter::new(signal);
                let mut range: Option<(u64, u64)> = None;
                let batches = derived_rx.iter().map(|batch| {
                    counter.add(&batch)?;
                    let (lo, hi) = batch_time_range(signal, &batch);
                    range = Some(range.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
                    Ok(batch)
                });
                let index_bytes = match &index_path {
                    Some(path) => index::build_from(path, batches)?,
                    None => {
                        for batch in batches {
                            batch?;
                        }
                        0
                    }
                };
                let _ = rollup_tx.send(counter.finish());
                Ok((index_bytes, range.unwrap_or((0, 0))))
            });
            let parquet = scope.spawn(move || {
                let rollup = || {
                    rollup_rx
                        .recv()
                        .map_err(|_| Error::Task("rollup counter stopped".into()))?
                };
                write_part_stream(
                    &part_path,
                    signal,
                    rows,
                    parquet_rx.iter(),
                    self.config.parquet_zstd_level,
                    self.config.parquet_row_group_rows,
                    rollup,
                )
            });
            for chunk in chunks {
                let copy = chunk.as_ref().ok().cloned();
                // A consumer that stopped has its error to tell; the other sees the end.
                if to_parquet.send(chunk).is_err() {
                    break;
                }
                let Some(batch) = copy else { break };
                if to_derived.send(batch).is_err() {
                    break;
                }
            }
            drop((to_parquet, to_derived));
            let panicked = |what: &str| Error::Task(format!("{what} panicked"));
            let derived = derived.join().map_err(|_| panicked("index builder"))?;
            let bytes = parquet.join().map_err(|_| panicked("part writer"))?;
            // The index side's error first: the Parquet side then only knows the rollup is missing.
            let derived = derived?;
            Ok::<_, Error>((bytes?, derived))
        })?;
        Ok(PartMeta {
            id,
            signal,
            hour,
            file,
            index: index_rel,
            rows: rows as u64,
            bytes,
            index_bytes,
            min_time_unix_nano: min,
            max_time_unix_nano: max,
            level,
        })
    }
}

/// Deletes part files and index directories the manifest does not name: leftovers of a flush or
/// compaction that crashed before its manifest commit, or of a deletion that crashed midway.
fn remove_unreferenced_parts(root: &Path, manifest: &Manifest) -> Result<()> {
    let referenced = manifest.referenced();
    let parts = root.join("parts");
    if !parts.exists() {
        return Ok(());
    }
    for signal in std::fs::read_dir(&parts).map_err(Error::io("list", &parts))? {
        let signal = signal.map_err(Error::io("list", &parts))?.path();
        for hour in std::fs::read_dir(&signal).map_err(Error::io("list", &signal))? {
            let hour = hour.map_err(Error::io("list", &signal))?.path();
            for entry in std::fs::read_dir(&hour).map_err(Error::io("list", &hour))? {
                let path = entry.map_err(Error::io("list", &hour))?.path();
                let rel = path.strip_prefix(root).expect("under the data directory");
                if referenced.contains(rel) {
                    continue;
                }
                tracing::info!(path = %path.display(), "removing a part file the manifest does not reference");
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(Error::io("remove unreferenced part", &path))?;
            }
        }
    }
    Ok(())
}
