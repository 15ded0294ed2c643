//! DataFusion's memory pool, shared by every SQL query and drawn from the process's memory
//! budget (the `queries` share): a sort, join or aggregation grows within
//! `sql_memory_limit_bytes` for all queries together and within what the budget has left.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryLimit, MemoryPool, MemoryReservation};
use spyglass_store::{MemoryBudget, Reserved, Share};

pub(crate) struct BudgetPool {
    limit: usize,
    /// What the queries hold of the budget: the pool's use.
    held: Mutex<Reserved>,
}

impl BudgetPool {
    pub(crate) fn new(limit: usize, budget: &Arc<MemoryBudget>) -> Self {
        let held = budget
            .try_reserve(Share::Queries, 0)
            .expect("an empty reservation always fits");
        Self {
            limit,
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
            self.held().bytes(),
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
        self.held().force_grow(additional as u64);
    }

    fn shrink(&self, _reservation: &MemoryReservation, shrink: usize) {
        self.held().shrink(shrink as u64);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let mut held = self.held();
        let used = held.bytes() as usize;
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
            None => Ok(()),
            Some(why) => Err(DataFusionError::ResourcesExhausted(format!(
                "failed to allocate {additional} more bytes for {} (holding {}): {why}",
                reservation.consumer().name(),
                reservation.size()
            ))),
        }
    }

    fn reserved(&self) -> usize {
        self.held().bytes() as usize
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}
