//! A lease: which one process does a piece of work (compaction, alert evaluation), settled by
//! conditional puts of `leases/<name>.json`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Bucket, Committed, Version};
use crate::error::Result;

/// What the lease object holds.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    holder: String,
    expires_unix_ms: u64,
}

/// One process's view of one lease.
pub struct Lease {
    bucket: Bucket,
    key: String,
    holder: String,
    ttl: Duration,
    /// The version this process last wrote, while it holds the lease.
    held: Option<Version>,
}

impl Lease {
    /// The lease `name` as seen by `holder`, an id no other process uses. A holder that stops
    /// renewing loses the lease `ttl` after its last renewal.
    pub fn new(bucket: Bucket, name: &str, holder: &str, ttl: Duration) -> Self {
        Self {
            bucket,
            key: format!("leases/{name}.json"),
            holder: holder.to_owned(),
            ttl,
            held: None,
        }
    }

    /// Whether this process held the lease at its last refresh.
    pub fn holds(&self) -> bool {
        self.held.is_some()
    }

    /// Renews the lease if this process holds it, takes it if it is free or expired; returns
    /// whether this process holds it now. Call it every `ttl / 3`.
    pub async fn refresh(&mut self) -> Result<bool> {
        self.refresh_at(now_unix_ms()).await
    }

    /// [`Lease::refresh`] as of `now_unix_ms` by this process's clock.
    pub async fn refresh_at(&mut self, now_unix_ms: u64) -> Result<bool> {
        let record = Record {
            holder: self.holder.clone(),
            expires_unix_ms: now_unix_ms.saturating_add(self.ttl.as_millis() as u64),
        };
        // A renewal that loses means another process wrote the lease: read it below (it may be
        // this process's own write whose answer was lost, or a taker's). A renewal that fails
        // on the way leaves the version known, so that a release can still give the lease up.
        if let Some(version) = self.held.clone() {
            match (self.bucket.put_json(&self.key, &record, Some(&version))).await? {
                Committed::Done(version) => {
                    self.held = Some(version);
                    return Ok(true);
                }
                Committed::Lost => self.held = None,
            }
        }
        let read = match self.bucket.get_json::<Record>(&self.key).await? {
            None => None,
            Some((current, version)) => {
                let ours = current.holder == self.holder;
                if !ours && current.expires_unix_ms > now_unix_ms {
                    return Ok(false);
                }
                Some(version)
            }
        };
        if let Committed::Done(version) = self
            .bucket
            .put_json(&self.key, &record, read.as_ref())
            .await?
        {
            self.held = Some(version);
        }
        Ok(self.held.is_some())
    }

    /// Gives the lease up (it expires at once), so another process need not wait for `ttl`.
    pub async fn release(&mut self) -> Result<()> {
        if let Some(version) = self.held.take() {
            let record = Record {
                holder: self.holder.clone(),
                expires_unix_ms: 0,
            };
            // Lost: someone else holds it already, which is what releasing wants.
            self.bucket
                .put_json(&self.key, &record, Some(&version))
                .await?;
        }
        Ok(())
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
