//! The workers: one per integration, delivering its queued notifications one at a time,
//! retrying each with backoff until it is sent or superseded, every attempt in the ledger.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::Alert;
use super::ledger::{Attempt, Ledger};
use super::message::{Notification, render, subject};
use super::nflog::{self, Entry, Flush, NfLog};
use super::send::Sender;
use crate::clock::Clock;

/// Retries wait 1 s, 2 s, 4 s … up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A notification waiting for its integration's worker.
pub(super) struct Job {
    pub(super) notification: Notification,
    pub(super) integration: String,
    pub(super) nflog_key: String,
    pub(super) entry: Entry,
    pub(super) repeat_nanos: u64,
    pub(super) send_resolved: bool,
    /// Set when a newer notification of the same group is queued: retries of this one stop.
    pub(super) superseded: Arc<AtomicBool>,
}

/// A ledger row for an attempt of `job`.
pub(super) fn attempt_row(job: &Job, now: u64, attempt: u32) -> Attempt {
    let n = &job.notification;
    let (receiver, integration) = job
        .integration
        .split_once('/')
        .unwrap_or(("", &job.integration));
    Attempt {
        time_unix_nano: now,
        notification: n.id.clone(),
        receiver: receiver.to_owned(),
        integration: integration.to_owned(),
        group_key: n.group_key.clone(),
        incident: n.incident().map(|i| i.id.clone()),
        status: n.status().to_owned(),
        alerts: n.alerts().map(Alert::describe).collect(),
        attempt,
        subject: subject(n),
        ..Attempt::default()
    }
}

/// Delivers one integration's notifications, one at a time, retrying each with backoff.
pub(super) struct Worker {
    pub(super) sender: Sender,
    pub(super) nflog: Arc<Mutex<NfLog>>,
    pub(super) ledger: Ledger,
    pub(super) clock: Arc<dyn Clock>,
}

impl Worker {
    pub(super) async fn run(self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(job) = jobs.recv().await {
            self.deliver(job).await;
        }
    }

    /// Whether the notification log (written by an earlier job that got through late) already
    /// says what `job` would say.
    fn already_sent(&self, job: &Job) -> bool {
        let log = self.nflog.lock().unwrap_or_else(|e| e.into_inner());
        let flush = Flush {
            firing: &job.entry.firing,
            resolved: &job.entry.resolved,
            send_resolved: job.send_resolved,
            repeat_nanos: job.repeat_nanos,
            now: job.entry.sent_at,
        };
        log.get(&job.nflog_key).is_some() && !nflog::needs_update(log.get(&job.nflog_key), &flush)
    }

    async fn deliver(&self, job: Job) {
        let message = render(&job.notification);
        let mut backoff = Duration::from_secs(1);
        for attempt in 1.. {
            if self.already_sent(&job) {
                return;
            }
            let started = Instant::now();
            let result = self.sender.send(&job.notification, &message).await;
            let mut row = attempt_row(&job, self.clock.now_unix_nanos(), attempt);
            row.duration_ms = started.elapsed().as_secs_f64() * 1e3;
            if attempt == 1 {
                row.text = message.text.clone();
                row.html = message.html.clone();
            }
            let sent = match result {
                Ok(reply) => {
                    row.outcome = "sent".into();
                    row.reply = reply;
                    true
                }
                Err(failure) => {
                    row.outcome = "failed".into();
                    row.reply = failure.reply;
                    row.error = failure.error;
                    false
                }
            };
            self.ledger.record(row);
            if sent {
                let mut log = self.nflog.lock().unwrap_or_else(|e| e.into_inner());
                log.record(job.nflog_key.clone(), job.entry.clone(), job.repeat_nanos);
                return;
            }
            if job.superseded.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(backoff).await;
            if job.superseded.load(Ordering::Relaxed) {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}
