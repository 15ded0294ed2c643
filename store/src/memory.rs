//! The process's memory budget (`[store] memory_budget_bytes`), shared by every large consumer
//! of memory: standing shares held from start to stop (the memtable's capacity, a flush's
//! working set, the query caches, the process itself) and dynamic ones taken from what is left
//! (a compaction's merge, ingest requests in flight, SQL queries). A consumer that cannot get
//! its bytes waits or is told to retry; nothing counted grows past the budget.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// What the process holds that no share counts (code, runtimes, stacks, open parts' footers and
/// index readers, search answers being built).
pub const PROCESS_BYTES: u64 = 256 << 20;
/// The index writer's budget of a flush or a merge (see `index::build`).
pub const INDEX_WRITER_BYTES: u64 = 128 << 20;
/// What one compaction merge holds: the index writer, chunks of at most 8 MiB on their way to
/// the writers, a batch of each input.
pub const COMPACTION_BYTES: u64 = INDEX_WRITER_BYTES + (32 << 20);

/// Who holds a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Share {
    Process,
    Memtable,
    Flush,
    Caches,
    Compaction,
    Requests,
    Queries,
}

impl Share {
    pub const ALL: [Share; 7] = [
        Share::Process,
        Share::Memtable,
        Share::Flush,
        Share::Caches,
        Share::Compaction,
        Share::Requests,
        Share::Queries,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Share::Process => "process",
            Share::Memtable => "memtable",
            Share::Flush => "flush",
            Share::Caches => "caches",
            Share::Compaction => "compaction",
            Share::Requests => "requests",
            Share::Queries => "queries",
        }
    }

    /// Held from start to stop rather than taken and given back.
    pub fn is_standing(self) -> bool {
        matches!(
            self,
            Share::Process | Share::Memtable | Share::Flush | Share::Caches
        )
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that makes room when the budget is short (the binary's allocator returning the
/// memory it keeps for reuse).
type Relief = Box<dyn Fn() + Send + Sync>;

/// Least time between two calls of the relief.
const RELIEF_EVERY: Duration = Duration::from_millis(50);

/// The budget and what each share holds of it.
pub struct MemoryBudget {
    total: u64,
    reserved: AtomicU64,
    by_share: [AtomicU64; Share::ALL.len()],
    refused: [AtomicU64; Share::ALL.len()],
    relief: OnceLock<Relief>,
    started: Instant,
    /// When the relief last ran, in ms since `started`.
    relieved_ms: AtomicU64,
}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("total", &self.total)
            .field("reserved", &self.reserved())
            .finish()
    }
}

impl MemoryBudget {
    pub fn new(total: u64) -> Arc<Self> {
        Arc::new(Self {
            total,
            reserved: AtomicU64::new(0),
            by_share: Default::default(),
            refused: Default::default(),
            relief: OnceLock::new(),
            started: Instant::now(),
            relieved_ms: AtomicU64::new(0),
        })
    }

    /// Calls `relief` (at most every 50 ms) when a reservation is refused. The binary gives
    /// its allocator's "return what you keep" here: freed memory an allocator keeps for reuse
    /// counts in the process's size but in no share.
    pub fn on_short(&self, relief: impl Fn() + Send + Sync + 'static) {
        let _ = self.relief.set(Box::new(relief));
    }

    fn relieve(&self) {
        let Some(relief) = self.relief.get() else {
            return;
        };
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.relieved_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= RELIEF_EVERY.as_millis() as u64
            && (self.relieved_ms)
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            relief();
        }
    }

    /// The budget, in bytes.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes reserved by every share together.
    pub fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::Acquire)
    }

    /// Bytes reserved by `share`.
    pub fn reserved_by(&self, share: Share) -> u64 {
        self.by_share[share as usize].load(Ordering::Acquire)
    }

    /// Reservations of `share` refused for lack of room.
    pub fn refused(&self, share: Share) -> u64 {
        self.refused[share as usize].load(Ordering::Relaxed)
    }

    /// What the dynamic shares may take together: the budget less the standing shares.
    pub fn dynamic_bytes(&self) -> u64 {
        let standing: u64 = Share::ALL
            .iter()
            .filter(|s| s.is_standing())
            .map(|&s| self.reserved_by(s))
            .sum();
        self.total.saturating_sub(standing)
    }

    /// Holds `bytes` for `share` whatever is left: for the standing shares, whose sum the
    /// configuration's validation already checked against the budget.
    pub fn hold(self: &Arc<Self>, share: Share, bytes: u64) -> Reserved {
        let mut held = Reserved {
            budget: self.clone(),
            share,
            bytes: 0,
        };
        held.force_grow(bytes);
        held
    }

    /// Reserves `bytes` for `share` unless that would pass the budget.
    pub fn try_reserve(self: &Arc<Self>, share: Share, bytes: u64) -> Option<Reserved> {
        let mut reserved = Reserved {
            budget: self.clone(),
            share,
            bytes: 0,
        };
        reserved.try_grow(bytes).then_some(reserved)
    }

    fn take(&self, share: Share, bytes: u64) -> bool {
        let taken = self
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&after| after <= self.total)
            })
            .is_ok();
        match taken {
            true => self.by_share[share as usize].fetch_add(bytes, Ordering::AcqRel),
            false => self.refused[share as usize].fetch_add(1, Ordering::Relaxed),
        };
        if !taken {
            self.relieve();
        }
        taken
    }

    fn give_back(&self, share: Share, bytes: u64) {
        self.by_share[share as usize].fetch_sub(bytes, Ordering::AcqRel);
        self.reserved.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Bytes one share holds of the budget; dropping it gives them back.
#[derive(Debug)]
pub struct Reserved {
    budget: Arc<MemoryBudget>,
    share: Share,
    bytes: u64,
}

impl Reserved {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Takes `bytes` more unless that would pass the budget (then nothing changes).
    pub fn try_grow(&mut self, bytes: u64) -> bool {
        if bytes == 0 {
            return true;
        }
        let taken = self.budget.take(self.share, bytes);
        if taken {
            self.bytes += bytes;
        }
        taken
    }

    /// Grows to hold `bytes` in all, if it holds fewer; `false` (and nothing changes) when the
    /// budget lacks the difference.
    pub fn try_grow_to(&mut self, bytes: u64) -> bool {
        self.try_grow(bytes.saturating_sub(self.bytes))
    }

    /// Takes `bytes` more whatever is left: for memory a consumer already holds and must
    /// account for (DataFusion's infallible `grow`).
    pub fn force_grow(&mut self, bytes: u64) {
        self.budget.reserved.fetch_add(bytes, Ordering::AcqRel);
        self.budget.by_share[self.share as usize].fetch_add(bytes, Ordering::AcqRel);
        self.bytes += bytes;
    }

    /// Gives back `bytes` (at most what it holds).
    pub fn shrink(&mut self, bytes: u64) {
        let bytes = bytes.min(self.bytes);
        self.budget.give_back(self.share, bytes);
        self.bytes -= bytes;
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.budget.give_back(self.share, self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_take_what_is_left_and_give_it_back() {
        let budget = MemoryBudget::new(100);
        let standing = budget.hold(Share::Memtable, 60);
        assert_eq!(budget.dynamic_bytes(), 40);
        let mut request = budget.try_reserve(Share::Requests, 30).unwrap();
        assert!(budget.try_reserve(Share::Compaction, 11).is_none());
        assert_eq!(budget.refused(Share::Compaction), 1);
        assert!(!request.try_grow(11));
        assert_eq!(request.bytes(), 30);
        assert!(request.try_grow_to(40));
        assert_eq!(budget.reserved(), 100);
        request.shrink(25);
        assert_eq!(budget.reserved_by(Share::Requests), 15);
        let merge = budget.try_reserve(Share::Compaction, 25).unwrap();
        drop((request, merge));
        assert_eq!(budget.reserved(), 60);
        drop(standing);
        assert_eq!(budget.reserved(), 0);
        for share in Share::ALL {
            assert_eq!(budget.reserved_by(share), 0, "{share}");
        }
    }
}
