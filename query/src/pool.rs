//! DataFusion's memory pool, shared by every SQL query and drawn from the process's memory
//! budget (the `queries` share): a sort, join or aggregation grows within
//! `sql_memory_limit_bytes` for all queries together and within what the budget has left.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryLimit, MemoryPool, MemoryReservation};
use spyglass_store::{MemoryBudget, Reserved, Share};

pub(crate) struct BudgetPool {
    limit: usize,
    used: AtomicUsize,
    /// What the queries hold of the budget; grows and shrinks with `used`.
    held: Mutex<Reserved>,
}

impl BudgetPool {
    pub(crate) fn new(limit: usize, budget: &Arc<MemoryBudget>) -> Self {
        let held = budget
            .try_reserve(Share::Queries, 0)
            .expect("an empty reservation always fits");
        Self {
            limit,
            used: AtomicUsize::new(0),
            held: Mutex::new(held),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Reserved> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for BudgetPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for BudgetPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SQL memory pool: {} of {} bytes used",
            self.used.load(Ordering::Relaxed),
            self.limit
        )
    }
}

impl MemoryPool for BudgetPool {
    fn name(&self) -> &str {
        "spyglass-budget"
    }

    /// Accounts for memory a consumer already holds: counted in the budget whatever is left.
    fn grow(&self, _reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::Relaxed);
        self.held().force_grow(additional as u64);
    }

    fn shrink(&self, _reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::Relaxed);
        self.held().shrink(shrink as u64);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let mut held = self.held();
        let used = self.used.load(Ordering::Relaxed);
        let why = if used.saturating_add(additional) > self.limit {
            Some(format!(
                "SQL queries hold {used} bytes of their {} ([query] sql_memory_limit_bytes)",
                self.limit
            ))
        } else if !held.try_grow(additional as u64) {
            Some("the process's memory budget ([store] memory_budget_bytes) is taken".to_owned())
        } else {
            None
        };
        match why {
            None => {
                self.used.fetch_add(additional, Ordering::Relaxed);
                Ok(())
            }
            Some(why) => Err(DataFusionError::ResourcesExhausted(format!(
                "failed to allocate {additional} more bytes for {} (holding {}): {why}",
                reservation.consumer().name(),
                reservation.size()
            ))),
        }
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}
