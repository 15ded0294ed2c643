//! The periodic writer of span metrics into the metrics table.

use std::time::{Duration, Instant};

use super::SpanMetrics;

/// How long after a new series the early write waits, to take the rest of its burst.
const EARLY_DELAY: Duration = Duration::from_millis(100);
/// Least time between two early writes.
const EARLY_GAP: Duration = Duration::from_secs(1);

/// Writes the span metrics into the store every `interval`; run by the binary.
pub struct SpanMetricsWriter {
    metrics: SpanMetrics,
    store: spyglass_store::Store,
    interval: Duration,
}

impl SpanMetricsWriter {
    pub fn new(metrics: SpanMetrics, store: spyglass_store::Store, interval: Duration) -> Self {
        Self {
            metrics,
            store,
            interval,
        }
    }

    /// Appends the current series once. A busy store is retried at the next interval: the
    /// series are cumulative, so nothing is lost by skipping one.
    pub async fn write_once(&self) -> Result<usize, spyglass_store::Error> {
        let now_unix_nano = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let points = self.metrics.points(Instant::now(), now_unix_nano);
        if points.is_empty() {
            return Ok(0);
        }
        let n = points.len();
        self.store
            .append(&spyglass_store::Records::Metrics(points))
            .await?;
        Ok(n)
    }

    /// Writes every `interval`, and also soon after a new service, operation or edge appears
    /// (at most once a second), so that lists read from span metrics show it in a moment.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.tick().await;
        tokio::pin!(shutdown);
        let mut early_after = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
                _ = self.metrics.new_series().notified() => {
                    // A burst of new series is written once.
                    tokio::time::sleep_until(early_after).await;
                    tokio::time::sleep(EARLY_DELAY).await;
                    early_after = tokio::time::Instant::now() + EARLY_GAP;
                }
            }
            if let Err(e) = self.write_once().await {
                tracing::warn!(error = %e, "could not write span metrics; retrying at the next interval");
            }
        }
        // Last values before shutdown, so a restart starts from them.
        if let Err(e) = self.write_once().await {
            tracing::warn!(error = %e, "could not write the final span metrics");
        }
    }
}
