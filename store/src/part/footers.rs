//! Parsed Parquet footers (with their page index) of parts, kept for reuse up to a bound. A
//! footer of a 100k-span part is ~0.3–0.4 MB in memory, so keeping every part's footer grows
//! with the number of parts (479 parts after ten minutes at 100k spans/s, before the compactor
//! caught up). The least recently used footers are dropped first and parsed again when asked.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, Weak};

use crate::manifest::Part;

/// What the footers kept may take together (inside the memory budget's `process` share).
pub(crate) const FOOTER_CACHE_BYTES: u64 = 64 << 20;

pub(crate) struct Footers {
    cap: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    tick: u64,
    bytes: u64,
    /// By the part's address (stable while a `Weak` to it lives).
    kept: HashMap<usize, Kept>,
}

struct Kept {
    part: Weak<Part>,
    used: u64,
    bytes: u64,
}

impl Footers {
    pub(crate) fn new(cap: u64) -> Self {
        Self {
            cap,
            state: Mutex::default(),
        }
    }

    /// The process's footers.
    pub(crate) fn shared() -> &'static Footers {
        static SHARED: OnceLock<Footers> = OnceLock::new();
        SHARED.get_or_init(|| Footers::new(FOOTER_CACHE_BYTES))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A kept footer was used.
    pub(crate) fn touch(&self, key: usize) {
        let mut state = self.state();
        state.tick += 1;
        let tick = state.tick;
        if let Some(kept) = state.kept.get_mut(&key) {
            kept.used = tick;
        }
    }

    /// `part` now keeps a footer of `bytes`; drops the least recently used others past the cap.
    pub(crate) fn keep(&self, key: usize, part: Weak<Part>, bytes: u64) {
        let victims: Vec<Weak<Part>> = {
            let mut state = self.state();
            state.tick += 1;
            let used = state.tick;
            if let Some(old) = state.kept.insert(key, Kept { part, used, bytes }) {
                state.bytes -= old.bytes;
            }
            state.bytes += bytes;
            let mut victims = Vec::new();
            while state.bytes > self.cap && state.kept.len() > 1 {
                let Some((&oldest, _)) = (state.kept.iter())
                    .filter(|(k, _)| **k != key)
                    .min_by_key(|(_, kept)| kept.used)
                else {
                    break;
                };
                let gone = state.kept.remove(&oldest).expect("found above");
                state.bytes -= gone.bytes;
                victims.push(gone.part);
            }
            victims
        };
        // Outside the lock: a part's own lock is taken before this one when it is read.
        for victim in victims {
            if let Some(part) = victim.upgrade() {
                part.drop_footer();
            }
        }
    }

    /// A part went away.
    pub(crate) fn forget(&self, key: usize) {
        let mut state = self.state();
        if let Some(gone) = state.kept.remove(&key) {
            state.bytes -= gone.bytes;
        }
    }

    /// Bytes of the footers kept.
    pub(crate) fn bytes(&self) -> u64 {
        self.state().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Records, Signal, Store, StoreConfig};

    #[tokio::test]
    async fn footers_past_the_cap_are_dropped_and_parsed_again() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let mut spans = crate::synth::SpanGenerator::new(3, 1_795_737_600_000_000_000);
        for _ in 0..4 {
            store
                .append(&Records::Spans(spans.spans(500)))
                .await
                .unwrap();
            store.flush().await.unwrap();
        }
        let stored = store.snapshot().parts(Signal::Spans).to_vec();
        let one = stored[0]
            .reader_metadata()
            .unwrap()
            .metadata()
            .memory_size() as u64;
        // Room for two footers.
        let footers: &'static Footers = Box::leak(Box::new(Footers::new(2 * one + one / 2)));
        let parts: Vec<_> = (stored.iter())
            .map(|p| Part::with_footers(p.meta().clone(), dir.path(), footers))
            .collect();
        for part in &parts {
            part.reader_metadata().unwrap();
            assert!(
                footers.bytes() <= 2 * one + one / 2,
                "{} bytes kept",
                footers.bytes()
            );
        }
        let kept: Vec<bool> = parts.iter().map(|p| p.keeps_footer()).collect();
        assert_eq!(
            kept,
            [false, false, true, true],
            "the least recently used went"
        );
        // Used again, the first is parsed again and equal; the third (least recent) goes.
        let again = parts[0].reader_metadata().unwrap();
        let rows = again.metadata().file_metadata().num_rows() as u64;
        assert_eq!(rows, parts[0].meta().rows);
        let kept: Vec<bool> = parts.iter().map(|p| p.keeps_footer()).collect();
        assert_eq!(kept, [true, false, false, true]);
        drop(parts);
        assert_eq!(footers.bytes(), 0, "parts that went away are forgotten");
    }
}
