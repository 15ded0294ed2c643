//! The dispatcher: takes alerts, puts each in the aggregation groups of the routes it takes,
//! flushes each group after `group_wait` and then every `group_interval`, leaves out what
//! silences and inhibition mute, asks the notification log whether to send, and queues the
//! notification for each integration's worker. It never waits on a send.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant as TokioInstant;

use super::config::{InhibitRule, NotifyConfig, Route};
use super::ledger::Ledger;
use super::matcher::all_match;
use super::message::Notification;
use super::nflog::{self, Entry, Flush, NfLog};
use super::route::{self, RoutePath};
use super::send::Sender;
use super::silence::Silences;
use super::worker::{Job, Worker, attempt_row};
use super::{Alert, Notifier};
use crate::clock::Clock;
use crate::error::Result;

/// Most notifications waiting for one integration (each is rendered when its turn comes); a
/// notification that finds the queue full is dropped, and its group's next flush sends it.
pub const QUEUE_CAPACITY: usize = 4096;
/// Most batches of alerts waiting for the dispatcher.
const INBOX_CAPACITY: usize = 64;
/// How long a resolved alert is remembered after it ends.
const RESOLVED_RETENTION_NANOS: u64 = 15 * 60 * 1_000_000_000;

/// What the dispatcher holds, as the Alertmanager API shows it.
#[derive(Clone, Debug, Default)]
pub struct DispatchView {
    /// Every alert that fires, by fingerprint.
    pub alerts: Vec<AlertView>,
    pub groups: Vec<GroupView>,
}

#[derive(Clone, Debug)]
pub struct AlertView {
    pub alert: Alert,
    pub fingerprint: u64,
    /// When it was last received.
    pub updated_at: u64,
    /// The receivers of the routes it takes.
    pub receivers: Vec<String>,
    /// The active silences that mute it.
    pub silenced_by: Vec<String>,
    /// The fingerprints of the firing alerts that inhibit it.
    pub inhibited_by: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct GroupView {
    pub labels: crate::state::Labels,
    pub receiver: String,
    /// Its firing alerts' fingerprints.
    pub alerts: Vec<u64>,
}

/// What the dispatcher did last, for operators and the benchmark.
#[derive(Clone, Copy, Debug, Default)]
pub struct DispatchStats {
    /// The last batch of alerts: how many, and how long routing them into groups took.
    pub received: usize,
    pub receive_time: Duration,
    /// Flush rounds so far (each flushes the groups due at one moment; every group has its own
    /// timer, as in Alertmanager), and totals over them: groups flushed, notifications queued,
    /// time spent flushing.
    pub rounds: u64,
    pub flushed_total: u64,
    pub queued_total: u64,
    pub flush_busy: Duration,
    /// The last flush round: the groups flushed, the notifications queued, how long it took.
    pub flushed_groups: usize,
    pub queued: usize,
    pub flush_time: Duration,
    /// What it holds: aggregation groups and alerts (resolved ones included until forgotten).
    pub groups: usize,
    pub alerts: usize,
}

/// A question for the dispatcher: what it holds now.
pub(crate) type ViewRequest = oneshot::Sender<DispatchView>;

/// An aggregation group: a route and the values of its `group_by` labels.
struct Group {
    key: String,
    route: RoutePath,
    labels: crate::state::Labels,
    alerts: BTreeMap<u64, Alert>,
    next_flush: TokioInstant,
}

/// One integration's queue, and the latest job queued for each group.
struct Queue {
    name: String,
    send_resolved: bool,
    tx: mpsc::Sender<Job>,
    latest: HashMap<String, Arc<AtomicBool>>,
}

pub struct Dispatcher {
    config: Arc<NotifyConfig>,
    clock: Arc<dyn Clock>,
    external_url: String,
    inbox: mpsc::Receiver<Vec<Alert>>,
    views: mpsc::Receiver<ViewRequest>,
    alerts: HashMap<u64, Alert>,
    /// When each alert was last received.
    updated_at: HashMap<u64, u64>,
    stats: Arc<Mutex<DispatchStats>>,
    groups: BTreeMap<String, Group>,
    silences: Arc<Mutex<Silences>>,
    nflog: Arc<Mutex<NfLog>>,
    ledger: Ledger,
    /// Per receiver (config order), per integration.
    queues: Vec<Vec<Queue>>,
    /// The workers, until `run` starts them.
    workers: Vec<(Sender, mpsc::Receiver<Job>)>,
}

impl Dispatcher {
    /// A dispatcher for `config` whose silences, notification log and ledger live in `dir`.
    /// An integration that cannot be built (an unreadable CA file) is an error.
    pub fn new(
        config: NotifyConfig,
        dir: &Path,
        clock: Arc<dyn Clock>,
        external_url: &str,
    ) -> Result<(Notifier, Dispatcher)> {
        let silences = Arc::new(Mutex::new(Silences::load(dir)?));
        let nflog = Arc::new(Mutex::new(NfLog::load(dir)?));
        let ledger = Ledger::load(dir)?;
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        for receiver in &config.receivers {
            let mut integrations = Vec::new();
            let mut index: HashMap<&str, usize> = HashMap::new();
            for integration in &receiver.integrations {
                let i = index.entry(integration.kind()).or_default();
                let name = format!("{}/{}[{i}]", receiver.name, integration.kind());
                *i += 1;
                let sender = Sender::new(integration.clone())
                    .map_err(|message| crate::error::Error::Notify(format!("{name}: {message}")))?;
                let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
                workers.push((sender, rx));
                integrations.push(Queue {
                    name,
                    send_resolved: integration.send_resolved(),
                    tx,
                    latest: HashMap::new(),
                });
            }
            queues.push(integrations);
        }
        let (inbox_tx, inbox) = mpsc::channel(INBOX_CAPACITY);
        let (views_tx, views) = mpsc::channel(INBOX_CAPACITY);
        let stats = Arc::new(Mutex::new(DispatchStats::default()));
        let config = Arc::new(config);
        let notifier = Notifier {
            inbox: inbox_tx,
            views: views_tx,
            stats: stats.clone(),
            silences: silences.clone(),
            ledger: ledger.clone(),
            config: config.clone(),
            clock: clock.clone(),
        };
        let dispatcher = Dispatcher {
            config,
            clock,
            external_url: external_url.trim_end_matches('/').to_owned(),
            inbox,
            views,
            alerts: HashMap::new(),
            updated_at: HashMap::new(),
            stats,
            groups: BTreeMap::new(),
            silences,
            nflog,
            ledger,
            queues,
            workers,
        };
        Ok((notifier, dispatcher))
    }

    /// Routes alerts and flushes groups until `shutdown` (or until every handle is gone).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        for (sender, rx) in std::mem::take(&mut self.workers) {
            let worker = Worker {
                sender,
                nflog: self.nflog.clone(),
                ledger: self.ledger.clone(),
                clock: self.clock.clone(),
            };
            tokio::spawn(worker.run(rx));
        }
        tokio::pin!(shutdown);
        loop {
            let next = self.groups.values().map(|g| g.next_flush).min();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                batch = self.inbox.recv() => match batch {
                    Some(alerts) => self.receive(alerts),
                    None => break,
                },
                _ = sleep => self.flush_due(),
                Some(reply) = self.views.recv() => {
                    let _ = reply.send(self.view());
                }
            }
        }
    }

    /// Puts alerts in the store and in their groups; a new group flushes after `group_wait`.
    fn receive(&mut self, alerts: Vec<Alert>) {
        let started = Instant::now();
        let received = alerts.len();
        let now = self.clock.now_unix_nanos();
        let resolve_timeout = self.config.resolve_timeout.as_nanos() as u64;
        for mut alert in alerts {
            if alert.ends_at == 0 {
                alert.ends_at = now + resolve_timeout;
            }
            let fingerprint = alert.fingerprint();
            // As Alertmanager: an update of an alert that still fires keeps its first start.
            if let Some(old) = self.alerts.get(&fingerprint)
                && old.firing(now)
                && old.starts_at < alert.starts_at
            {
                alert.starts_at = old.starts_at;
            }
            for path in route::routes(&self.config.route, &alert.labels) {
                let route = route::at(&self.config.route, &path);
                let labels = route::group_labels(route, &alert.labels);
                let key = route::group_key(&self.config.route, &path, &labels);
                let group = self.groups.entry(key.clone()).or_insert_with(|| Group {
                    key,
                    route: path.clone(),
                    labels,
                    alerts: BTreeMap::new(),
                    next_flush: TokioInstant::now() + route.group_wait,
                });
                group.alerts.insert(fingerprint, alert.clone());
            }
            self.alerts.insert(fingerprint, alert);
            self.updated_at.insert(fingerprint, now);
        }
        self.alerts
            .retain(|_, a| a.firing(now) || a.ends_at + RESOLVED_RETENTION_NANOS > now);
        let alerts = &self.alerts;
        self.updated_at.retain(|f, _| alerts.contains_key(f));
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.received = received;
        stats.receive_time = started.elapsed();
        stats.groups = self.groups.len();
        stats.alerts = self.alerts.len();
    }

    /// The firing alerts with their receivers and what mutes them, and the groups.
    fn view(&self) -> DispatchView {
        let now = self.clock.now_unix_nanos();
        let silences = self.silences.lock().unwrap_or_else(|e| e.into_inner());
        let mut alerts: Vec<AlertView> = self
            .alerts
            .iter()
            .filter(|(_, a)| a.firing(now))
            .map(|(&fingerprint, alert)| {
                let mut receivers: Vec<String> = route::routes(&self.config.route, &alert.labels)
                    .iter()
                    .map(|path| route::at(&self.config.route, path).receiver.clone())
                    .collect();
                receivers.dedup();
                AlertView {
                    alert: alert.clone(),
                    fingerprint,
                    updated_at: self.updated_at.get(&fingerprint).copied().unwrap_or(now),
                    receivers,
                    silenced_by: silences.muting(&alert.labels, now),
                    inhibited_by: self.inhibitors(alert, now),
                }
            })
            .collect();
        alerts.sort_by_key(|a| a.fingerprint);
        let groups = self
            .groups
            .values()
            .map(|g| GroupView {
                labels: g.labels.clone(),
                receiver: route::at(&self.config.route, &g.route).receiver.clone(),
                alerts: g
                    .alerts
                    .iter()
                    .filter(|(_, a)| a.firing(now))
                    .map(|(&f, _)| f)
                    .collect(),
            })
            .filter(|g| !g.alerts.is_empty())
            .collect();
        DispatchView { alerts, groups }
    }

    fn flush_due(&mut self) {
        let started = Instant::now();
        let tick = TokioInstant::now();
        let due: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.next_flush <= tick)
            .map(|g| g.key.clone())
            .collect();
        let flushed_groups = due.len();
        let mut queued = 0;
        for key in due {
            queued += self.flush(&key);
        }
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let took = started.elapsed();
        stats.rounds += 1;
        stats.flushed_groups = flushed_groups;
        stats.queued = queued;
        stats.flush_time = took;
        stats.flushed_total += flushed_groups as u64;
        stats.queued_total += queued as u64;
        stats.flush_busy += took;
        stats.groups = self.groups.len();
        stats.alerts = self.alerts.len();
    }

    /// Whether an alert is muted now: by an active silence, or by a firing alert that an
    /// inhibit rule lets inhibit it.
    fn muted(&self, alert: &Alert, now: u64) -> bool {
        let silenced = {
            let silences = self.silences.lock().unwrap_or_else(|e| e.into_inner());
            !silences.muting(&alert.labels, now).is_empty()
        };
        silenced || self.inhibited(alert, now)
    }

    fn inhibited(&self, target: &Alert, now: u64) -> bool {
        self.config.inhibit_rules.iter().any(|rule| {
            all_match(&rule.target, &target.labels)
                && self
                    .alerts
                    .values()
                    .any(|source| inhibits(rule, source, target, now))
        })
    }

    /// The fingerprints of the alerts that inhibit `target`.
    fn inhibitors(&self, target: &Alert, now: u64) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .config
            .inhibit_rules
            .iter()
            .filter(|rule| all_match(&rule.target, &target.labels))
            .flat_map(|rule| {
                self.alerts
                    .iter()
                    .filter(move |(_, source)| inhibits(rule, source, target, now))
                    .map(|(&f, _)| f)
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Sends what a group's notification log entries say must go, and schedules its next flush.
    /// Answers how many notifications it queued.
    fn flush(&mut self, key: &str) -> usize {
        let now = self.clock.now_unix_nanos();
        let Some(group) = self.groups.get(key) else {
            return 0;
        };
        let mut queued = 0;
        let route: &Route = route::at(&self.config.route, &group.route);
        let (group_interval, repeat) = (route.group_interval, route.repeat_interval);
        let receiver_index = self
            .config
            .receivers
            .iter()
            .position(|r| r.name == route.receiver);
        let mut firing = Vec::new();
        let mut resolved = Vec::new();
        for alert in group.alerts.values() {
            if self.muted(alert, now) {
                continue;
            }
            if alert.firing(now) {
                firing.push(alert.clone());
            } else {
                resolved.push(alert.clone());
            }
        }
        let firing_ids: BTreeSet<u64> = firing.iter().map(Alert::fingerprint).collect();
        let resolved_ids: BTreeSet<u64> = resolved.iter().map(Alert::fingerprint).collect();
        let group_key = group.key.clone();
        let group_labels = group.labels.clone();
        let receiver = route.receiver.clone();
        if let (Some(r), false) = (receiver_index, firing.is_empty() && resolved.is_empty()) {
            for q in 0..self.queues[r].len() {
                let queue = &self.queues[r][q];
                let nflog_key = nflog::key(&queue.name, &group_key);
                let entry = {
                    let log = self.nflog.lock().unwrap_or_else(|e| e.into_inner());
                    log.get(&nflog_key).cloned()
                };
                let flush = Flush {
                    firing: &firing_ids,
                    resolved: &resolved_ids,
                    send_resolved: queue.send_resolved,
                    repeat_nanos: repeat.as_nanos() as u64,
                    now,
                };
                if !nflog::needs_update(entry.as_ref(), &flush) {
                    continue;
                }
                let new_entry = Entry {
                    firing: firing_ids.clone(),
                    resolved: resolved_ids.clone(),
                    sent_at: now,
                    expires_at: 0,
                };
                // An integration that does not send resolved notices has nothing to say when
                // nothing fires; the log still learns that the alerts resolved.
                if firing.is_empty() && !queue.send_resolved {
                    let mut log = self.nflog.lock().unwrap_or_else(|e| e.into_inner());
                    log.record(nflog_key, new_entry, repeat.as_nanos() as u64);
                    continue;
                }
                let notification = Notification {
                    id: uuid::Uuid::new_v4().simple().to_string(),
                    receiver: receiver.clone(),
                    group_key: group_key.clone(),
                    group_labels: group_labels.clone(),
                    firing: firing.clone(),
                    resolved: if queue.send_resolved {
                        resolved.clone()
                    } else {
                        Vec::new()
                    },
                    external_url: self.external_url.clone(),
                };
                self.enqueue(r, q, notification, nflog_key, new_entry, repeat);
                queued += 1;
            }
        }
        self.forget_resolved(key, receiver_index);
        if let Some(group) = self.groups.get_mut(key) {
            group.next_flush = TokioInstant::now() + group_interval;
        }
        queued
    }

    fn enqueue(
        &mut self,
        r: usize,
        q: usize,
        notification: Notification,
        nflog_key: String,
        entry: Entry,
        repeat: Duration,
    ) {
        let queue = &mut self.queues[r][q];
        let superseded = Arc::new(AtomicBool::new(false));
        if let Some(previous) = queue
            .latest
            .insert(notification.group_key.clone(), superseded.clone())
        {
            previous.store(true, Ordering::Relaxed);
        }
        let job = Job {
            integration: queue.name.clone(),
            notification,
            nflog_key,
            entry,
            repeat_nanos: repeat.as_nanos() as u64,
            send_resolved: queue.send_resolved,
            superseded,
        };
        if let Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) =
            queue.tx.try_send(job)
        {
            // Nothing recorded it as sent: the group's next flush sends it again.
            let mut attempt = attempt_row(&job, self.clock.now_unix_nanos(), 0);
            attempt.outcome = "dropped".into();
            attempt.error = format!("the queue of {} is full", job.integration);
            self.ledger.record(attempt);
        }
    }

    /// Drops the group's resolved alerts whose resolve every integration has sent (or did not
    /// need to), and the group once it is empty.
    fn forget_resolved(&mut self, key: &str, receiver: Option<usize>) {
        let now = self.clock.now_unix_nanos();
        let names: Vec<String> = receiver
            .map(|r| self.queues[r].iter().map(|q| q.name.clone()).collect())
            .unwrap_or_default();
        let log = self.nflog.lock().unwrap_or_else(|e| e.into_inner());
        let Some(group) = self.groups.get_mut(key) else {
            return;
        };
        group.alerts.retain(|fingerprint, alert| {
            alert.firing(now)
                || names.iter().any(|name| {
                    log.get(&nflog::key(name, key))
                        .is_some_and(|e| e.firing.contains(fingerprint))
                })
        });
        if group.alerts.is_empty() {
            self.groups.remove(key);
        }
    }
}

/// Whether `source` inhibits `target` (whose labels the rule's target matchers match) by `rule`.
fn inhibits(rule: &InhibitRule, source: &Alert, target: &Alert, now: u64) -> bool {
    source.firing(now)
        && source.labels != target.labels
        && all_match(&rule.source, &source.labels)
        // An alert on both sides does not inhibit another on both sides.
        && !(all_match(&rule.source, &target.labels) && all_match(&rule.target, &source.labels))
        && rule
            .equal
            .iter()
            .all(|l| source.labels.get(l) == target.labels.get(l))
}
