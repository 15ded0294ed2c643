//! Backtests: the rules evaluated over stored data, step by step through a past time range,
//! to see when each alert would have been pending and firing ("would this rule have paged
//! during last night's incident?") before it is deployed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::ManualClock;
use crate::config::AlertingConfig;
use crate::error::{Error, Result};
use crate::evaluator::Evaluator;
use crate::reader::Reader;
use crate::rules::Group;
use crate::state::{AlertState, Labels};

/// Most evaluations one backtest may run.
pub const MAX_STEPS: u64 = 20_000;

/// One stretch of an alert instance's life: from pending (or firing at once) until it resolved,
/// or until its condition cleared while pending.
#[derive(Clone, Debug, PartialEq)]
pub struct Episode {
    pub group: String,
    pub rule: String,
    pub labels: Labels,
    pub pending_at: Option<u64>,
    pub firing_at: Option<u64>,
    pub resolved_at: Option<u64>,
    /// The condition cleared before `for` passed.
    pub cleared_at: Option<u64>,
    pub max_value: f64,
}

/// What a backtest found, with how many evaluations it ran.
#[derive(Debug)]
pub struct Report {
    pub evaluations: u64,
    pub episodes: Vec<Episode>,
}

/// Evaluates `groups` (and the built-in rules when `config.builtin.enabled`) at `from`,
/// `from + step`, … up to `to`, over the data `reader` has. SQL rules see `now()` as the
/// evaluation time.
pub async fn backtest<R: Reader>(
    reader: R,
    config: AlertingConfig,
    groups: Vec<Group>,
    from: u64,
    to: u64,
    step: Duration,
) -> Result<Report> {
    let step_nanos = step.as_nanos() as u64;
    if step_nanos == 0 || to <= from {
        return Err(Error::BadBacktest(
            "the range must be non-empty and the step more than 0".into(),
        ));
    }
    let steps = (to - from) / step_nanos + 1;
    if steps > MAX_STEPS {
        return Err(Error::BadBacktest(format!(
            "{steps} evaluations asked; at most {MAX_STEPS}: use a longer step or a shorter range"
        )));
    }
    let clock = Arc::new(ManualClock::default());
    let (mut evaluator, handle) = Evaluator::in_memory(reader, config, groups, clock.clone());
    for k in 0..steps {
        clock.set(from + k * step_nanos);
        evaluator.evaluate().await;
    }
    let evaluations = steps;
    let transitions = handle.history(0, u64::MAX, |_| true);
    let mut open: BTreeMap<(String, String, Labels), Episode> = BTreeMap::new();
    let mut episodes = Vec::new();
    for t in transitions {
        let key = (t.group.clone(), t.rule.clone(), t.labels.clone());
        let episode = open.entry(key.clone()).or_insert_with(|| Episode {
            group: t.group.clone(),
            rule: t.rule.clone(),
            labels: t.labels.clone(),
            pending_at: None,
            firing_at: None,
            resolved_at: None,
            cleared_at: None,
            max_value: f64::NEG_INFINITY,
        });
        episode.max_value = episode.max_value.max(t.value);
        match t.state {
            AlertState::Pending => episode.pending_at = Some(t.time_unix_nano),
            AlertState::Firing => episode.firing_at = Some(t.time_unix_nano),
            AlertState::Resolved => episode.resolved_at = Some(t.time_unix_nano),
            AlertState::Inactive => episode.cleared_at = Some(t.time_unix_nano),
        }
        if matches!(t.state, AlertState::Resolved | AlertState::Inactive) {
            episodes.extend(open.remove(&key));
        }
    }
    episodes.extend(open.into_values());
    episodes.sort_by_key(|e| (e.pending_at.or(e.firing_at), e.rule.clone()));
    Ok(Report {
        evaluations,
        episodes,
    })
}
