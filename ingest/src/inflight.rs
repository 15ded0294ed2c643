//! What one request holds of the process's memory budget while it is read, decoded and
//! stored (the `requests` share): the body as it comes off the wire, then what decoding and
//! building its rows take. When the budget lacks it the request is answered "retry later";
//! when it needs more than the budget could ever leave to requests, "too large".

use std::sync::{Arc, Mutex};

use spyglass_store::{MemoryBudget, Reserved, Share};

use crate::error::{Error, Result};

/// A request's reservation; clones share it, and the last one dropped gives it back.
#[derive(Clone, Debug)]
pub struct RequestMemory {
    /// `None`: not counted (WAL replay, tests, the fuzzers).
    held: Option<Arc<Mutex<Reserved>>>,
    /// What the dynamic shares may take together when the request started.
    room: u64,
}

impl RequestMemory {
    pub fn new(budget: &Arc<MemoryBudget>) -> Self {
        let held = budget
            .try_reserve(Share::Requests, 0)
            .expect("an empty reservation always fits");
        Self {
            held: Some(Arc::new(Mutex::new(held))),
            room: budget.dynamic_bytes(),
        }
    }

    /// A request whose memory is not counted.
    pub fn uncounted() -> Self {
        Self {
            held: None,
            room: u64::MAX,
        }
    }

    /// Whether the request is counted (estimates are worth working out).
    pub(crate) fn counted(&self) -> bool {
        self.held.is_some()
    }

    /// Admits decoding that will take `bytes`: refused past `limit` (`max_decoded_bytes`),
    /// then taken from the reservation.
    pub(crate) fn admit_decode(&self, bytes: u64, limit: u64) -> Result<()> {
        if bytes > limit {
            return Err(Error::DecodesTooLarge { bytes, limit });
        }
        self.grow(bytes)
    }

    /// Takes `bytes` more.
    pub(crate) fn grow(&self, bytes: u64) -> Result<()> {
        self.reserve(|held| held.bytes().saturating_add(bytes))
    }

    /// Grows to hold `bytes` in all, if it holds fewer.
    pub(crate) fn grow_to(&self, bytes: u64) -> Result<()> {
        self.reserve(|held| held.bytes().max(bytes))
    }

    fn reserve(&self, target: impl FnOnce(&Reserved) -> u64) -> Result<()> {
        let Some(held) = &self.held else {
            return Ok(());
        };
        let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = target(&held);
        if bytes > self.room {
            return Err(Error::OverBudget {
                bytes,
                room: self.room,
            });
        }
        match held.try_grow_to(bytes) {
            true => Ok(()),
            false => Err(Error::MemoryBusy),
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.held.as_ref().map_or(0, |held| {
            held.lock().unwrap_or_else(|e| e.into_inner()).bytes()
        })
    }
}
