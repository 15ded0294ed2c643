//! Where the evaluator's "now" comes from: the system's clock in Spyglass, tokio's (paused in
//! tests) for the state-machine tests, one set by hand in backtests.

/// Unix time in nanoseconds.
pub trait Clock: Send + Sync {
    fn now_unix_nanos(&self) -> u64;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_nanos(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }
}

/// Unix time that moves with tokio's clock from `start_unix_nanos`: with tokio's time paused,
/// tests move it with `tokio::time::advance`.
pub struct TokioClock {
    start_unix_nanos: u64,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new(start_unix_nanos: u64) -> Self {
        Self {
            start_unix_nanos,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_unix_nanos(&self) -> u64 {
        self.start_unix_nanos + self.start.elapsed().as_nanos() as u64
    }
}

/// A clock set by hand: backtests step it through the past.
#[derive(Default)]
pub struct ManualClock(std::sync::atomic::AtomicU64);

impl ManualClock {
    pub fn set(&self, unix_nanos: u64) {
        self.0
            .store(unix_nanos, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_unix_nanos(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}
