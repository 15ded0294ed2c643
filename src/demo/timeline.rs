//! The demo's scripted incidents: a ten-minute cycle that `--speed` compresses.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Steady,
    /// Half of the charges fail with an exception.
    PaymentsErrors,
    /// PostgreSQL calls take about fifteen times longer.
    DatabaseSlow,
    /// Shipping exports nothing; checkout's calls to it time out.
    ShippingSilent,
}

impl Phase {
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Steady => "steady",
            Phase::PaymentsErrors => "payments error burst",
            Phase::DatabaseSlow => "database latency spike",
            Phase::ShippingSilent => "shipping silent",
        }
    }
}

/// Seconds into the cycle at which each phase begins (at speed 1).
const CYCLE: [(u64, Phase); 7] = [
    (0, Phase::Steady),
    (120, Phase::PaymentsErrors),
    (180, Phase::Steady),
    (270, Phase::DatabaseSlow),
    (330, Phase::Steady),
    (420, Phase::ShippingSilent),
    (510, Phase::Steady),
];
const CYCLE_SECS: u64 = 600;

#[derive(Clone, Copy, Debug)]
pub struct Timeline {
    started: Instant,
    speed: f64,
}

impl Timeline {
    pub fn new(started: Instant, speed: f64) -> Self {
        Self { started, speed }
    }

    /// The phase at `now` and how long it still lasts (in real time).
    pub fn at(&self, now: Instant) -> (Phase, Duration) {
        let scripted = now.duration_since(self.started).as_secs_f64() * self.speed;
        let into_cycle = scripted % CYCLE_SECS as f64;
        let index = CYCLE
            .iter()
            .rposition(|&(from, _)| from as f64 <= into_cycle)
            .unwrap_or(0);
        let until = CYCLE.get(index + 1).map_or(CYCLE_SECS, |&(from, _)| from) as f64;
        let left = (until - into_cycle) / self.speed;
        (CYCLE[index].1, Duration::from_secs_f64(left.max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_compresses_the_cycle_and_it_repeats() {
        let t0 = Instant::now();
        let timeline = Timeline::new(t0, 10.0);
        let at = |secs: f64| timeline.at(t0 + Duration::from_secs_f64(secs));
        assert_eq!(at(0.0).0, Phase::Steady);
        assert_eq!(at(12.5).0, Phase::PaymentsErrors);
        let left = at(12.5).1.as_secs_f64();
        assert!((left - 5.5).abs() < 1e-6, "{left}");
        assert_eq!(at(28.0).0, Phase::DatabaseSlow);
        assert_eq!(at(43.0).0, Phase::ShippingSilent);
        assert_eq!(at(52.0).0, Phase::Steady);
        assert_eq!(at(60.0 + 12.5).0, Phase::PaymentsErrors);
    }
}
