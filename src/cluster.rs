//! The background work of a process sharing an object store with others: uploading an
//! ingester's parts, measuring what waits for upload, reading the bucket into a querier's
//! cache, and keeping the alerting lease (see "Object storage" in docs/ARCHITECTURE.md).

use std::future::Future;
use std::time::Duration;

use spyglass_store::Store;
use spyglass_store::bucket::{Backlog, Lease, Mirror, Uploader};

/// How often an ingester looks for parts to upload.
const UPLOAD_EVERY: Duration = Duration::from_secs(1);

/// The longest wait between upload attempts while the object store fails.
const UPLOAD_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// How long a lease outlives its holder's last renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// Uploads new parts every second until `stop`; after a failure it waits twice as long (at most
/// a minute). Returns the uploader for a last upload after the final flush.
pub async fn upload_loop(
    mut uploader: Uploader,
    store: Store,
    stop: impl Future<Output = ()>,
) -> Uploader {
    tokio::pin!(stop);
    let mut delay = UPLOAD_EVERY;
    loop {
        tokio::select! {
            _ = &mut stop => return uploader,
            _ = tokio::time::sleep(delay) => {}
        }
        match uploader.sync(&store).await {
            Ok(synced) => {
                if synced.added + synced.removed > 0 {
                    tracing::debug!(
                        added = synced.added,
                        removed = synced.removed,
                        "parts uploaded"
                    );
                }
                delay = UPLOAD_EVERY;
            }
            Err(error) => {
                delay = (delay * 2).min(UPLOAD_BACKOFF_MAX);
                tracing::warn!(%error, retry_in = ?delay, "failed to upload parts");
            }
        }
    }
}

/// Keeps the lease: refreshes it every third of its time to live and tells the evaluator
/// (`gate`) whether this process holds it. The gate stays open only while the last successful
/// renewal was *sent* less than half the time to live ago, and a refresh is given up after a
/// third of it, so the holder stops before the lease it wrote can expire, whatever the bucket
/// does. Releases it when stopped.
pub async fn hold_lease(
    mut lease: Lease,
    gate: tokio::sync::watch::Sender<bool>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut renewed: Option<tokio::time::Instant> = None;
    loop {
        let sent = tokio::time::Instant::now();
        match tokio::time::timeout(LEASE_TTL / 3, lease.refresh()).await {
            Ok(Ok(true)) => renewed = Some(sent),
            Ok(Ok(false)) => renewed = None,
            Ok(Err(error)) => tracing::warn!(%error, "failed to refresh the alerting lease"),
            Err(_) => tracing::warn!("refreshing the alerting lease timed out"),
        }
        let open_until = renewed.map(|at| at + LEASE_TTL / 2);
        let held = open_until.is_some_and(|until| tokio::time::Instant::now() < until);
        if held != *gate.borrow() {
            tracing::info!(held, "alerting lease");
        }
        gate.send_replace(held);
        let next = sent + LEASE_TTL / 3;
        // Close the gate at `open_until` even if the next refresh has not answered by then.
        let close = async {
            match open_until {
                Some(until) if held => {
                    tokio::time::sleep_until(until).await;
                    gate.send_replace(false);
                    std::future::pending::<()>().await
                }
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep_until(next) => {}
            _ = close => {}
        }
    }
    gate.send_replace(false);
    if let Err(error) = lease.release().await {
        tracing::warn!(%error, "failed to release the alerting lease; it expires by itself");
    }
}

/// This process's name in a lease: host, process id and a random part.
pub fn lease_holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!(
        "{}-{}-{:08x}",
        host.trim(),
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Records every second how many bytes of parts wait for upload (the store refuses appends
/// past `max_pending_bytes`). Ends with the process.
pub async fn watch_backlog(backlog: Backlog, store: Store) {
    let mut every = tokio::time::interval(UPLOAD_EVERY);
    loop {
        every.tick().await;
        backlog.update(&store);
    }
}

/// Reads the bucket every `every` and brings its parts into the querier's store, until `stop`.
pub async fn mirror_loop(
    mut mirror: Mirror,
    store: Store,
    every: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(every) => {}
        }
        match mirror.refresh(&store).await {
            Ok(synced) => {
                if synced.added + synced.removed > 0 {
                    tracing::debug!(
                        added = synced.added,
                        removed = synced.removed,
                        "parts read from the object store"
                    );
                }
            }
            Err(error) => tracing::warn!(%error, "failed to read the object store"),
        }
    }
}
