//! The evaluator: evaluates every group when it is due, moves each alert through its states,
//! finds incidents, persists the state and publishes it to the [`Alerting`] handle.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

mod incidents;
mod publish;

use crate::builtin::{self, Kind, Observation};
use crate::clock::Clock;
use crate::config::AlertingConfig;
use crate::error::{Error, Result};
use crate::incident::Incidents;
use crate::persist::{Saved, SavedRule, StateDir};
use crate::reader::Reader;
use crate::rules::{Expr, Group, Rule, RuleKind, load_rules};
use crate::state::{Instances, Labels, Sample, Timing};
use crate::status::{Alerting, HISTORY_IN_MEMORY, ReloadReply, Transition};
use crate::template::Context;

/// Most alert instances (or recorded series) one rule may have when its group sets no
/// `limit`: a query that returns a row per trace must not become a million alerts.
pub const MAX_INSTANCES: usize = 10_000;

/// A count that only grows (telemetry requests refused), read at each evaluation.
pub type Counter = Arc<dyn Fn() -> u64 + Send + Sync>;

struct RuleRun {
    rule: Rule,
    instances: Instances,
    last_error: Option<String>,
    last_evaluation: Option<u64>,
    evaluation_seconds: f64,
}

struct GroupRun {
    group: Group,
    rules: Vec<RuleRun>,
    interval: Duration,
    due: tokio::time::Instant,
    last_evaluation: Option<u64>,
    evaluation_seconds: f64,
}

pub struct Evaluator<R: Reader> {
    reader: R,
    config: AlertingConfig,
    groups: Vec<GroupRun>,
    incidents: Incidents,
    /// Where the state is saved; `None` in a backtest, which saves nothing.
    state: Option<StateDir>,
    clock: Arc<dyn Clock>,
    handle: Alerting,
    reloads: mpsc::Receiver<ReloadReply>,
    refused: Option<Counter>,
    /// Where recording rules write their points; without one they are evaluated only.
    recorder: Option<crate::record::Recorder>,
    /// (time, refused count) at past evaluations, for the increase over the window.
    refused_seen: VecDeque<(u64, u64)>,
    /// Whether the last saved state held any alert.
    saved_alerts: bool,
    /// The built-in rules' reads of the last evaluation, for incidents.
    observation: Option<Observation>,
    /// Where each evidence trace's errors begin, by trace id.
    origins: HashMap<String, Vec<String>>,
    /// Where firing and resolved alerts go after each evaluation.
    notifier: Option<crate::notify::Notifier>,
    /// While it holds `false`, nothing is evaluated (another process holds the alerting lease).
    gate: Option<tokio::sync::watch::Receiver<bool>>,
}

impl<R: Reader> Evaluator<R> {
    /// Loads the rules and the saved state in `state_dir`; a bad rule file is an error.
    pub fn new(
        reader: R,
        config: AlertingConfig,
        state_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, Alerting)> {
        let groups = load_rules(&config).map_err(Error::Rules)?;
        let state = StateDir::new(state_dir);
        let saved = state.load()?;
        let history = state.transitions(HISTORY_IN_MEMORY)?;
        Ok(Self::build(
            reader,
            config,
            groups,
            Some(state),
            saved,
            history,
            clock,
        ))
    }

    /// An evaluator of `groups` that keeps its state in memory only, for a backtest.
    pub fn in_memory(
        reader: R,
        config: AlertingConfig,
        groups: Vec<Group>,
        clock: Arc<dyn Clock>,
    ) -> (Self, Alerting) {
        Self::build(
            reader,
            config,
            groups,
            None,
            Saved::default(),
            Vec::new(),
            clock,
        )
    }

    fn build(
        reader: R,
        config: AlertingConfig,
        groups: Vec<Group>,
        state: Option<StateDir>,
        saved: Saved,
        history: Vec<Transition>,
        clock: Arc<dyn Clock>,
    ) -> (Self, Alerting) {
        let (reload_tx, reloads) = mpsc::channel(4);
        let handle = Alerting::new(reload_tx, config.clone());
        handle.write(|s| s.history = history.into());
        let mut evaluator = Self {
            reader,
            config,
            groups: Vec::new(),
            incidents: saved.incidents.clone(),
            state,
            clock,
            handle: handle.clone(),
            reloads,
            refused: None,
            recorder: None,
            refused_seen: VecDeque::new(),
            observation: None,
            saved_alerts: true,
            origins: HashMap::new(),
            notifier: None,
            gate: None,
        };
        evaluator.set_groups(groups, saved.rules);
        evaluator.publish();
        (evaluator, handle)
    }

    /// Writes the points of recording rules.
    pub fn with_recorder(mut self, recorder: crate::record::Recorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Sends firing and resolved alerts to `notifier` after each evaluation.
    pub fn with_notifier(mut self, notifier: crate::notify::Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Evaluates only while `gate` holds `true` (the process holds the alerting lease); rules
    /// that fell due meanwhile are evaluated as soon as it does.
    pub fn with_gate(mut self, gate: tokio::sync::watch::Receiver<bool>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Counts refused telemetry requests for `TelemetryRefused`.
    pub fn with_refusals(mut self, counter: Counter) -> Self {
        self.refused = Some(counter);
        self
    }

    /// Puts `groups` (and the built-in group) in place, keeping the instances of rules that
    /// stay (same group, name and labels) from `saved`.
    fn set_groups(&mut self, groups: Vec<Group>, saved: Vec<SavedRule>) {
        let mut kept: HashMap<(String, String, Labels), Instances> = saved
            .into_iter()
            .map(|r| ((r.group, r.rule, r.rule_labels), r.alerts))
            .collect();
        let default_interval = self.config.evaluation_interval();
        let mut all = Vec::new();
        if self.config.builtin.enabled {
            all.push(builtin::group(&self.config.builtin, default_interval));
        }
        all.extend(groups);
        let now = tokio::time::Instant::now();
        self.groups = all
            .into_iter()
            .map(|group| {
                let rules = group
                    .rules
                    .iter()
                    .map(|rule| RuleRun {
                        instances: kept
                            .remove(&(group.name.clone(), rule.name.clone(), rule.labels.clone()))
                            .unwrap_or_default(),
                        rule: rule.clone(),
                        last_error: None,
                        last_evaluation: None,
                        evaluation_seconds: 0.0,
                    })
                    .collect();
                GroupRun {
                    interval: group.interval.unwrap_or(default_interval),
                    group,
                    rules,
                    due: now,
                    last_evaluation: None,
                    evaluation_seconds: 0.0,
                }
            })
            .collect();
    }

    /// Evaluates every group now, whether due or not.
    pub async fn evaluate(&mut self) {
        let now = self.clock.now_unix_nanos();
        let changes = self.evaluate_groups(now, |_| true).await;
        self.finish(now, changes).await;
    }

    async fn evaluate_due(&mut self) {
        let now = self.clock.now_unix_nanos();
        let tick = tokio::time::Instant::now();
        let changes = self.evaluate_groups(now, |g| g.due <= tick).await;
        self.finish(now, changes).await;
    }

    async fn evaluate_groups(
        &mut self,
        now: u64,
        due: impl Fn(&GroupRun) -> bool,
    ) -> Vec<(usize, usize, crate::state::Change)> {
        let refused = self.refused_in_window(now);
        let mut changes = Vec::new();
        for g in 0..self.groups.len() {
            if !due(&self.groups[g]) {
                continue;
            }
            let started = Instant::now();
            let at = now.saturating_sub(self.groups[g].group.query_offset.as_nanos() as u64);
            if self.groups[g].group.name == builtin::GROUP {
                match Observation::read(&self.reader, &self.config.builtin, at, refused).await {
                    Ok(o) => self.observation = Some(o),
                    Err(e) => {
                        let message = e.client_message();
                        tracing::warn!(error = %e, "built-in rules could not read span metrics");
                        for rule in &mut self.groups[g].rules {
                            rule.last_error = Some(message.clone());
                            rule.last_evaluation = Some(now);
                        }
                        self.handle.write(|s| s.evaluation_failures_total += 1);
                        self.schedule(g, now, started);
                        continue;
                    }
                }
            }
            for r in 0..self.groups[g].rules.len() {
                let rule_started = Instant::now();
                let result = self.samples(g, r, at).await;
                let group = &mut self.groups[g];
                let limit = group.group.limit;
                let run = &mut group.rules[r];
                let limit = if limit == 0 { MAX_INSTANCES } else { limit };
                let samples = match result {
                    Ok(samples) if samples.len() > limit => {
                        run.last_error = Some(format!(
                            "exceeded limit of {limit} with {} alerts",
                            samples.len()
                        ));
                        Vec::new()
                    }
                    Ok(samples) if has_duplicates(&samples) => {
                        // As Prometheus: two results with one label set cannot be two alerts.
                        run.last_error = Some(
                            "two result rows have the same labels after the rule's labels are added"
                                .into(),
                        );
                        Vec::new()
                    }
                    Ok(samples) => {
                        run.last_error = None;
                        samples
                    }
                    Err(e) => {
                        tracing::warn!(rule = %run.rule.name, error = %e, "rule evaluation failed");
                        run.last_error = Some(error_text(&e));
                        self.handle.write(|s| s.evaluation_failures_total += 1);
                        // A failed evaluation is no evidence either way: the alerts stay as
                        // they are (Prometheus keeps them too).
                        run.last_evaluation = Some(now);
                        run.evaluation_seconds = rule_started.elapsed().as_secs_f64();
                        continue;
                    }
                };
                if run.rule.kind == RuleKind::Recording {
                    // A backtest has no recorder: it evaluates, and writes nothing.
                    if let Some(recorder) = &self.recorder {
                        let points = crate::record::points(&run.rule.name, &samples, at);
                        if let Err(e) = recorder(points).await {
                            run.last_error = Some(format!("recorded points not written: {e}"));
                        }
                    }
                    run.last_evaluation = Some(now);
                    run.evaluation_seconds = rule_started.elapsed().as_secs_f64();
                    continue;
                }
                let timing = Timing {
                    for_nanos: run.rule.for_duration.as_nanos() as u64,
                    keep_firing_for_nanos: run.rule.keep_firing_for.as_nanos() as u64,
                };
                let rule = &run.rule;
                let external_url = self.handle.external_url();
                let annotate = |s: &Sample| expand(&rule.annotation_templates, s, external_url);
                let mut ended = Vec::new();
                for change in run.instances.update(now, samples, timing, annotate) {
                    if change.from.is_active() && change.from != change.to {
                        ended.push((change.labels.clone(), change.from.as_str()));
                    }
                    changes.push((g, r, change));
                }
                // Prometheus's ALERTS and ALERTS_FOR_STATE series (a backtest writes none).
                if let Some(recorder) = &self.recorder {
                    let active: Vec<_> = run
                        .instances
                        .alerts()
                        .filter(|a| a.state.is_active())
                        .map(|a| (a.labels.clone(), a.state.as_str(), a.active_at))
                        .collect();
                    if !active.is_empty() || !ended.is_empty() {
                        let points = crate::record::alert_points(&active, &ended, at);
                        if let Err(e) = recorder(points).await {
                            run.last_error = Some(format!("ALERTS series not written: {e}"));
                        }
                    }
                }
                run.last_evaluation = Some(now);
                run.evaluation_seconds = rule_started.elapsed().as_secs_f64();
            }
            self.schedule(g, now, started);
        }
        changes
    }

    fn schedule(&mut self, g: usize, now: u64, started: Instant) {
        let group = &mut self.groups[g];
        group.last_evaluation = Some(now);
        group.evaluation_seconds = started.elapsed().as_secs_f64();
        group.due = tokio::time::Instant::now() + group.interval;
    }

    /// The samples of rule `r` of group `g` at `at`, with the rule's labels and evidence.
    async fn samples(&mut self, g: usize, r: usize, at: u64) -> Result<Vec<Sample>> {
        let rule = &self.groups[g].rules[r].rule;
        let mut samples = match &rule.expr {
            Expr::Sql(query) => {
                // A backtest asks "as of then": `now()` is the evaluation time.
                let query = match self.state {
                    Some(_) => query.clone(),
                    None => as_of(query, at),
                };
                self.reader
                    .sql(&query)
                    .await
                    .map_err(|source| Error::Query {
                        rule: rule.name.clone(),
                        source,
                    })?
            }
            Expr::Builtin(_) => {
                let kind = Kind::from_name(&rule.name).expect("built-in rules are named by kind");
                match &self.observation {
                    Some(o) => {
                        let mut samples = o.samples(kind, &self.config.builtin);
                        if kind == Kind::ServiceSilent {
                            let instances = &self.groups[g].rules[r].instances;
                            samples.extend(still_silent(instances, o, at));
                        }
                        samples
                    }
                    None => Vec::new(),
                }
            }
            Expr::PromQl(query) => {
                self.reader
                    .promql(query, at)
                    .await
                    .map_err(|source| Error::Query {
                        rule: rule.name.clone(),
                        source,
                    })?
            }
        };
        let external_url = self.handle.external_url().to_owned();
        for sample in &mut samples {
            let mut labels = sample.labels.clone();
            for (name, template) in &rule.label_templates {
                labels.insert(
                    name.clone(),
                    template.render(&Context {
                        labels: &sample.labels,
                        value: sample.value,
                        external_url: &external_url,
                    }),
                );
            }
            labels.insert("alertname".into(), rule.name.clone());
            sample.labels = labels;
        }
        // Evidence for built-in alerts that have none yet: one search per new instance.
        if let (Expr::Builtin(_), Some(observation)) = (&rule.expr, &self.observation) {
            let kind = Kind::from_name(&rule.name).expect("built-in rules are named by kind");
            let instances = &self.groups[g].rules[r].instances;
            for sample in &mut samples {
                let has_evidence = instances
                    .get(&sample.labels)
                    .is_some_and(|a| a.state.is_active() && !a.trace_ids.is_empty());
                if has_evidence {
                    continue;
                }
                match observation
                    .evidence(&self.reader, kind, &sample.labels, &self.config.builtin)
                    .await
                {
                    Ok(ids) => sample.trace_ids = ids,
                    Err(e) => tracing::warn!(error = %e, "no example traces for an alert"),
                }
            }
        }
        Ok(samples)
    }

    /// Refused requests between the evaluation about a window ago and now.
    fn refused_in_window(&mut self, now: u64) -> u64 {
        let Some(counter) = &self.refused else {
            return 0;
        };
        let total = counter();
        let window = self.config.builtin.window_secs * 1_000_000_000;
        while self
            .refused_seen
            .get(1)
            .is_some_and(|(t, _)| now.saturating_sub(*t) >= window)
        {
            self.refused_seen.pop_front();
        }
        let since = self.refused_seen.front().map_or(total, |(_, n)| *n);
        self.refused_seen.push_back((now, total));
        total.saturating_sub(since)
    }

    /// After an evaluation: incidents, the transitions log, the saved state, the status.
    async fn finish(&mut self, now: u64, changes: Vec<(usize, usize, crate::state::Change)>) {
        self.find_incidents(now).await;
        let transitions: Vec<Transition> = changes
            .into_iter()
            .map(|(g, r, change)| {
                let group = &self.groups[g];
                let run = &group.rules[r];
                let alert = run.instances.get(&change.labels);
                Transition {
                    time_unix_nano: now,
                    group: group.group.name.clone(),
                    rule: run.rule.name.clone(),
                    incident: alert.and_then(|a| a.incident.clone()),
                    trace_ids: alert.map(|a| a.trace_ids.clone()).unwrap_or_default(),
                    labels: change.labels,
                    state: change.to,
                    value: change.value,
                }
            })
            .collect();
        for t in &transitions {
            tracing::info!(rule = %t.rule, labels = ?t.labels, state = t.state.as_str(), value = t.value, "alert state changed");
        }
        self.persist(&transitions).await;
        self.handle.write(|s| {
            s.evaluations_total += 1;
            for t in transitions {
                if s.history.len() == HISTORY_IN_MEMORY {
                    s.history.pop_front();
                }
                s.history.push_back(t);
            }
        });
        self.publish();
        if let Some(notifier) = &self.notifier {
            notifier.send(self.notify_alerts(now)).await;
        }
    }

    /// Appends `transitions` to the log and saves the state, off the async threads (both
    /// fsync). An evaluation with no alert at all, after one that saved none, writes nothing.
    async fn persist(&mut self, transitions: &[Transition]) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let any = self
            .groups
            .iter()
            .flat_map(|g| &g.rules)
            .any(|r| r.instances.alerts().next().is_some());
        if transitions.is_empty() && !any && !self.saved_alerts {
            return;
        }
        self.saved_alerts = any;
        let saved = self.saved();
        let logged = transitions.to_vec();
        let written = tokio::task::spawn_blocking(move || {
            state.append(&logged)?;
            state.save(&saved)
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "failed to save the alert state"),
            Err(e) => tracing::error!(error = %e, "the alert state writer failed"),
        }
    }

    fn reload(&mut self) -> std::result::Result<(), String> {
        match load_rules(&self.config) {
            Ok(groups) => {
                let saved = self.saved().rules;
                self.set_groups(groups, saved);
                self.publish();
                self.handle.write(|s| s.reload_error = None);
                tracing::info!("rule files reloaded");
                Ok(())
            }
            Err(errors) => {
                let message = Error::Rules(errors).to_string();
                tracing::error!(error = %message, "reload refused; the previous rules keep running");
                self.handle.write(|s| {
                    s.reload_error = Some(message.clone());
                    s.reloads_failed_total += 1;
                });
                Err(message)
            }
        }
    }

    /// Evaluates each group every interval until `shutdown`, answering reloads between.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Some(gate) = self.gate.as_mut()
                && !*gate.borrow_and_update()
            {
                tokio::select! {
                    _ = &mut shutdown => break,
                    changed = gate.changed() => {
                        if changed.is_err() {
                            // The gate's keeper is gone: nothing will open it again.
                            (&mut shutdown).await;
                            break;
                        }
                    }
                    Some(reply) = self.reloads.recv() => {
                        let _ = reply.send(self.reload());
                    }
                }
                continue;
            }
            self.evaluate_due().await;
            let next =
                self.groups.iter().map(|g| g.due).min().unwrap_or_else(|| {
                    tokio::time::Instant::now() + self.config.evaluation_interval()
                });
            // A gate that closes stops the evaluations at once, not at the next due time.
            let gate_moved = async {
                match self.gate.as_mut() {
                    Some(gate) => gate.changed().await.is_err(),
                    None => std::future::pending().await,
                }
            };
            let mut gate_gone = false;
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep_until(next) => {}
                gone = gate_moved => gate_gone = gone,
                Some(reply) = self.reloads.recv() => {
                    let _ = reply.send(self.reload());
                }
            }
            if gate_gone {
                // Its keeper is gone: the lease is not known to be held, so evaluate no more.
                (&mut shutdown).await;
                break;
            }
        }
    }
}

/// Services whose `ServiceSilent` alert is active but who have dropped out of what the reads
/// see (silent for longer than the baseline): still silent, until they send again.
fn still_silent(instances: &Instances, observation: &Observation, at: u64) -> Vec<Sample> {
    instances
        .alerts()
        .filter(|a| a.state.is_active())
        .filter_map(|a| {
            let service = a.labels.get("service")?;
            if observation.seen.contains_key(service) {
                return None;
            }
            let more = at.saturating_sub(a.last_active_at) as f64 / 1e9;
            Some(Sample {
                labels: Labels::from([("service".to_string(), service.clone())]),
                value: a.value + more,
                threshold: a.threshold,
                trace_ids: Vec::new(),
            })
        })
        .collect()
}

/// Whether two samples share a label set.
fn has_duplicates(samples: &[Sample]) -> bool {
    let mut seen = std::collections::HashSet::new();
    samples.iter().any(|s| !seen.insert(&s.labels))
}

/// `query` with each `now()` replaced by the time `at`.
fn as_of(query: &str, at: u64) -> String {
    let lower = query.to_ascii_lowercase();
    let mut out = String::with_capacity(query.len());
    let mut rest = 0;
    for (i, _) in lower.match_indices("now()") {
        out.push_str(&query[rest..i]);
        out.push_str(&format!("to_timestamp_nanos({at})"));
        rest = i + "now()".len();
    }
    out.push_str(&query[rest..]);
    out
}

fn expand(templates: &[(String, crate::template::Template)], sample: &Sample, url: &str) -> Labels {
    let context = Context {
        labels: &sample.labels,
        value: sample.value,
        external_url: url,
    };
    templates
        .iter()
        .map(|(name, t)| (name.clone(), t.render(&context)))
        .collect()
}

/// An error's message with its causes, for the rules API.
fn error_text(error: &Error) -> String {
    match error {
        Error::Query { source, .. } => source.client_message(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backtests_see_now_as_the_evaluation_time() {
        assert_eq!(
            super::as_of(
                "SELECT 1 WHERE t > NOW() - INTERVAL '5 minutes' AND now() > 0",
                42
            ),
            "SELECT 1 WHERE t > to_timestamp_nanos(42) - INTERVAL '5 minutes' AND to_timestamp_nanos(42) > 0"
        );
    }
}
