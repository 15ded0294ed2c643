//! The `[store]` section of the configuration file. The `///` comments are the user
//! documentation: `spyglass config` prints them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::memory::{COMPACTION_BYTES, INDEX_WRITER_BYTES, PROCESS_BYTES, Share};

/// When an append is acknowledged relative to the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fsync before acknowledging: nothing acknowledged is lost, even on power loss.
    #[default]
    Fsync,
    /// fsync at most every `wal_sync_interval_ms`: a power loss may lose that much.
    Interval,
    /// Never fsync the WAL: a crash of the process loses nothing, a power loss may lose
    /// everything not yet written back by the OS.
    None,
}

impl Durability {
    /// The name the configuration file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::Interval => "interval",
            Durability::None => "none",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// When an append is acknowledged: "fsync" (default), "interval" or "none".
    pub durability: Durability,
    /// With durability = "interval": longest time between WAL fsyncs, in milliseconds.
    pub wal_sync_interval_ms: u64,
    /// Size at which the WAL starts a new segment file, in bytes.
    pub wal_segment_bytes: u64,
    /// Appends that may wait for the WAL writer before appends are answered "retry later".
    pub wal_queue_depth: usize,
    /// Memory the process may hold, in bytes, shared by the memtables, a flush, a compaction,
    /// the query caches, SQL queries and ingest requests in flight (see the memory budget in
    /// docs/ARCHITECTURE.md). Past it, ingest answers "retry later", a compaction waits and a
    /// SQL query spills or fails; a configuration whose standing shares do not fit is refused.
    pub memory_budget_bytes: u64,
    /// Memory the memtables (data acknowledged but not yet in Parquet) may use, in bytes.
    /// When it is full, appends are answered "retry later" until a flush frees it.
    pub memtable_max_bytes: u64,
    /// Flush the memtables to Parquet parts once they hold this many bytes. A flush's working
    /// set (the sorted copy, Parquet and index buffers) grows with it.
    pub flush_bytes: u64,
    /// Flush the memtables at least this often, in seconds, so that the WAL stays short. With
    /// an object store, at most every 8 s, so that other processes see the data within 15 s.
    pub flush_interval_secs: u64,
    /// Parquet zstd compression level (1-22).
    pub parquet_zstd_level: i32,
    /// Rows per Parquet row group.
    pub parquet_row_group_rows: usize,
    /// Parts of one hour smaller than this are merged by the compactor, in bytes.
    pub compaction_small_part_bytes: u64,
    /// The compactor merges a partition once it has at least this many small parts.
    pub compaction_min_parts: usize,
    /// How often compaction and retention run, in seconds.
    pub maintenance_interval_secs: u64,
    /// Spans older than this are deleted, in hours (0 keeps them forever).
    pub spans_retention_hours: u64,
    /// Metric points older than this are deleted, in hours (0 keeps them forever).
    pub metrics_retention_hours: u64,
    /// Log records older than this are deleted, in hours (0 keeps them forever).
    pub logs_retention_hours: u64,
    /// Most bytes the spans may take on disk; the oldest parts go first (0: no limit).
    pub spans_max_bytes: u64,
    /// Most bytes the metrics may take on disk; the oldest parts go first (0: no limit).
    pub metrics_max_bytes: u64,
    /// Most bytes the logs may take on disk; the oldest parts go first (0: no limit).
    pub logs_max_bytes: u64,
    /// The S3-compatible bucket that parts and manifests go to (`[store.object_store]`; see
    /// its fields in docs/ARCHITECTURE.md). Unset: everything stays on the local disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_store: Option<crate::bucket::ObjectStoreConfig>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Fsync,
            wal_sync_interval_ms: 200,
            wal_segment_bytes: 64 << 20,
            wal_queue_depth: 4096,
            memory_budget_bytes: 1 << 30,
            memtable_max_bytes: 192 << 20,
            flush_bytes: 64 << 20,
            flush_interval_secs: 60,
            parquet_zstd_level: 3,
            parquet_row_group_rows: 64 * 1024,
            compaction_small_part_bytes: 32 << 20,
            compaction_min_parts: 4,
            maintenance_interval_secs: 60,
            spans_retention_hours: 24 * 7,
            metrics_retention_hours: 24 * 30,
            logs_retention_hours: 24 * 7,
            spans_max_bytes: 0,
            metrics_max_bytes: 0,
            logs_max_bytes: 0,
            object_store: None,
        }
    }
}

/// The longest time between flushes with an object store: a span is searchable from every
/// querier within its flush, its upload and the querier's next read of the bucket (15 s).
const OBJECT_STORE_FLUSH_SECS: u64 = 8;

impl StoreConfig {
    /// How often the memtables are flushed when not full.
    pub fn flush_every(&self) -> Duration {
        let mut secs = self.flush_interval_secs.max(1);
        if self.object_store.is_some() {
            secs = secs.min(OBJECT_STORE_FLUSH_SECS);
        }
        Duration::from_secs(secs)
    }

    pub fn validate(&self) -> Result<()> {
        let fail = |what: &str| Err(Error::Config(what.to_owned()));
        if self.memtable_max_bytes == 0 || self.flush_bytes == 0 {
            return fail("memtable_max_bytes and flush_bytes must be above 0");
        }
        if self.flush_bytes > self.memtable_max_bytes {
            return fail("flush_bytes must not exceed memtable_max_bytes");
        }
        self.check_budget(&[])?;
        if !(1..=22).contains(&self.parquet_zstd_level) {
            return fail("parquet_zstd_level must be between 1 and 22");
        }
        if self.wal_queue_depth == 0 || self.parquet_row_group_rows == 0 {
            return fail("wal_queue_depth and parquet_row_group_rows must be above 0");
        }
        Ok(())
    }

    /// The standing shares of the memory budget the store holds: the process, the memtables'
    /// capacity, one flush.
    pub fn standing_shares(&self) -> [(Share, u64); 3] {
        [
            (Share::Process, PROCESS_BYTES),
            (Share::Memtable, self.memtable_max_bytes),
            (
                Share::Flush,
                self.flush_bytes.saturating_add(INDEX_WRITER_BYTES),
            ),
        ]
    }

    /// Checks that the store's standing shares, `others` (shares held outside the store) and one
    /// compaction fit in `memory_budget_bytes`, naming each when they do not.
    pub fn check_budget(&self, others: &[(Share, u64)]) -> Result<()> {
        let mut shares: Vec<(Share, u64)> = self.standing_shares().to_vec();
        shares.extend_from_slice(others);
        shares.push((Share::Compaction, COMPACTION_BYTES));
        let needed = shares
            .iter()
            .fold(0u64, |sum, (_, b)| sum.saturating_add(*b));
        if needed <= self.memory_budget_bytes {
            return Ok(());
        }
        let listed: Vec<String> = shares
            .iter()
            .map(|(share, bytes)| format!("{share} {} MiB", bytes >> 20))
            .collect();
        Err(Error::Config(format!(
            "memory_budget_bytes ({} MiB) is smaller than what its shares need ({} MiB: {}); \
             raise it or lower memtable_max_bytes, flush_bytes or the query caches",
            self.memory_budget_bytes >> 20,
            needed >> 20,
            listed.join(", ")
        )))
    }

    pub fn wal_sync_interval(&self) -> Duration {
        Duration::from_millis(self.wal_sync_interval_ms.max(1))
    }

    /// Hours the signal is kept (0: no limit).
    pub fn retention_hours(&self, signal: crate::model::Signal) -> u64 {
        use crate::model::Signal::*;
        match signal {
            Spans => self.spans_retention_hours,
            Metrics => self.metrics_retention_hours,
            Logs => self.logs_retention_hours,
        }
    }

    pub(crate) fn max_bytes(&self, signal: crate::model::Signal) -> u64 {
        use crate::model::Signal::*;
        match signal {
            Spans => self.spans_max_bytes,
            Metrics => self.metrics_max_bytes,
            Logs => self.logs_max_bytes,
        }
    }
}
