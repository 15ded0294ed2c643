//! The memtable: acknowledged rows not yet in a Parquet part, as Arrow batches per signal.
//!
//! The WAL writer inserts each durable group in LSN order, so a memtable always holds a
//! contiguous run of LSNs and `max_lsn` says exactly what a flush of it covers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arrow::record_batch::RecordBatch;

use crate::model::Signal;

#[derive(Clone, Debug, Default)]
pub(crate) struct Memtable {
    batches: [Vec<RecordBatch>; 3],
    pub(crate) bytes: u64,
    pub(crate) rows: u64,
    pub(crate) max_lsn: u64,
    pub(crate) oldest: Option<Instant>,
}

fn slot(signal: Signal) -> usize {
    match signal {
        Signal::Spans => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

impl Memtable {
    pub(crate) fn insert(&mut self, lsn: u64, signal: Signal, batch: RecordBatch, bytes: u64) {
        self.rows += batch.num_rows() as u64;
        self.bytes += bytes;
        self.max_lsn = self.max_lsn.max(lsn);
        self.oldest.get_or_insert_with(Instant::now);
        self.batches[slot(signal)].push(batch);
    }

    pub(crate) fn batches(&self, signal: Signal) -> &[RecordBatch] {
        &self.batches[slot(signal)]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows == 0
    }
}

/// The memory the memtables may hold. Appends reserve before writing the WAL; a flush releases.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: u64,
    used: AtomicU64,
}

impl Budget {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// Reserves `bytes` unless that would pass the limit.
    pub(crate) fn try_reserve(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + bytes <= self.limit).then_some(used + bytes)
            })
            .is_ok()
    }

    /// Reserves whatever the limit says: used for WAL replay, which must not refuse data.
    pub(crate) fn force_reserve(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
    }

    pub(crate) fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }
}

/// Bytes reserved for one append. Dropping it gives them back (the append failed, was refused
/// or its caller went away before the WAL took it); [`Reservation::into_memtable`] hands them
/// to the memtable, which gives them back when it is flushed.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: std::sync::Arc<Budget>,
    bytes: u64,
}

impl Reservation {
    pub(crate) fn try_new(budget: &std::sync::Arc<Budget>, bytes: u64) -> Option<Self> {
        budget.try_reserve(bytes).then(|| Self {
            budget: budget.clone(),
            bytes,
        })
    }

    /// The memtable now holds the bytes: they are released when it is flushed.
    pub(crate) fn into_memtable(mut self) -> u64 {
        std::mem::take(&mut self.bytes)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.release(self.bytes);
        }
    }
}

/// Bytes a batch's rows take in memory. Counts the used part of each buffer, so that batches
/// decoded from the WAL (whose columns slice shared buffers) are not counted many times over.
pub(crate) fn batch_bytes(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size()) as u64
        })
        .sum()
}
