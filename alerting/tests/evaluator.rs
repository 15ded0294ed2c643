//! The evaluator with tokio's time paused: `for`, `keep_firing_for`, flapping, resolution,
//! restarts in the middle of `for` and while firing, reloads. A scripted reader stands in for
//! the query engine (the tests in the workspace's `tests/alerting.rs` use the real one with
//! real OTLP traffic).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use spyglass_alerting::{
    AlertState, Alerting, AlertingConfig, Evaluator, Labels, ReadResult, Reader, Sample, TokioClock,
};
use spyglass_query::{Dependencies, ServiceHealth, TraceSearch};

/// 2026-12-01T00:00:00Z
const START: u64 = 1_796_083_200_000_000_000;

/// Answers every SQL query with the samples the test sets.
#[derive(Clone, Default)]
struct Scripted(Arc<Mutex<Vec<Sample>>>, Arc<Mutex<Vec<ServiceHealth>>>);

impl Scripted {
    fn set(&self, services: &[&str]) {
        *self.0.lock().unwrap() = services
            .iter()
            .map(|s| Sample {
                labels: Labels::from([("service".to_string(), s.to_string())]),
                value: 0.5,
                threshold: None,
                trace_ids: Vec::new(),
            })
            .collect();
    }
}

impl Reader for Scripted {
    async fn sql(&self, _query: &str) -> ReadResult<Vec<Sample>> {
        Ok(self.0.lock().unwrap().clone())
    }
    async fn services(
        &self,
        _: u64,
        _: u64,
        _: Option<&'static [&'static str]>,
    ) -> ReadResult<Vec<ServiceHealth>> {
        Ok(self.1.lock().unwrap().clone())
    }
    async fn dependencies(&self, _: u64, _: u64) -> ReadResult<Dependencies> {
        Ok(Dependencies {
            nodes: Vec::new(),
            edges: Vec::new(),
        })
    }
    async fn search(&self, _: TraceSearch) -> ReadResult<Vec<(String, Vec<String>)>> {
        Ok(Vec::new())
    }
    async fn error_origins(&self, _: &str) -> ReadResult<Vec<String>> {
        Ok(Vec::new())
    }
}

const RULES: &str = r#"
groups:
  - name: shop
    interval: 10s
    rules:
      - alert: CheckoutErrors
        sql: SELECT service_name AS service, 0.5 AS value FROM spans
        for: 1m
        keep_firing_for: 30s
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.service }} fails {{ $value | humanizePercentage }}"
"#;

struct Setup {
    dir: tempfile::TempDir,
    reader: Scripted,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yml"), RULES).unwrap();
        Self {
            dir,
            reader: Scripted::default(),
        }
    }

    fn config(&self) -> AlertingConfig {
        AlertingConfig {
            rule_files: vec![self.dir.path().join("rules.yml").display().to_string()],
            evaluation_interval_secs: 10,
            ..AlertingConfig::default()
        }
    }

    /// An evaluator on the state directory, its clock at `START` + tokio's elapsed time.
    fn evaluator(&self, clock_start: u64) -> (Evaluator<Scripted>, Alerting) {
        let clock = Arc::new(TokioClock::new(clock_start));
        Evaluator::new(
            self.reader.clone(),
            self.config(),
            &self.dir.path().join("alerts"),
            clock,
        )
        .unwrap()
    }
}

fn state_of(handle: &Alerting, service: &str) -> Option<AlertState> {
    handle
        .alerts(true)
        .into_iter()
        .find(|(_, rule, a)| rule == "CheckoutErrors" && a.labels["service"] == service)
        .map(|(_, _, a)| a.state)
}

/// Evaluates, then lets `seconds` pass.
async fn tick(evaluator: &mut Evaluator<Scripted>, seconds: u64) {
    evaluator.evaluate().await;
    tokio::time::advance(Duration::from_secs(seconds)).await;
}

#[tokio::test(start_paused = true)]
async fn for_then_keep_firing_for_then_resolved() {
    let setup = Setup::new();
    let (mut evaluator, handle) = setup.evaluator(START);
    setup.reader.set(&["checkout"]);
    tick(&mut evaluator, 30).await;
    assert_eq!(state_of(&handle, "checkout"), Some(AlertState::Pending));
    tick(&mut evaluator, 30).await;
    assert_eq!(
        state_of(&handle, "checkout"),
        Some(AlertState::Pending),
        "30 s of 60"
    );
    tick(&mut evaluator, 10).await;
    assert_eq!(
        state_of(&handle, "checkout"),
        Some(AlertState::Firing),
        "60 s of 60"
    );
    let alert = &handle.alerts(false)[0].2;
    assert_eq!(alert.active_at, START);
    assert_eq!(alert.fired_at, Some(START + 60_000_000_000));
    assert_eq!(alert.annotations["summary"], "checkout fails 50%");
    assert_eq!(alert.labels["severity"], "page");
    assert_eq!(alert.labels["alertname"], "CheckoutErrors");

    // The condition clears at the evaluation at 70 s: it keeps firing for 30 s from there.
    setup.reader.set(&[]);
    for held in [0, 10, 20] {
        tick(&mut evaluator, 10).await;
        assert_eq!(
            state_of(&handle, "checkout"),
            Some(AlertState::Firing),
            "{held} s of 30"
        );
    }
    evaluator.evaluate().await;
    assert_eq!(state_of(&handle, "checkout"), Some(AlertState::Resolved));

    let history: Vec<AlertState> = handle
        .history(0, u64::MAX, |_| true)
        .iter()
        .map(|t| t.state)
        .collect();
    assert_eq!(
        history,
        [
            AlertState::Pending,
            AlertState::Firing,
            AlertState::Resolved
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn flapping_never_fires() {
    let setup = Setup::new();
    let (mut evaluator, handle) = setup.evaluator(START);
    for step in 0..20 {
        // Active for 40 s, gone for 10 s: never 60 s in a row.
        setup
            .reader
            .set(if step % 5 == 4 { &[] } else { &["checkout"] });
        tick(&mut evaluator, 10).await;
        assert_ne!(
            state_of(&handle, "checkout"),
            Some(AlertState::Firing),
            "step {step}"
        );
    }
    let fired = handle
        .history(0, u64::MAX, |t| t.state == AlertState::Firing)
        .len();
    assert_eq!(fired, 0);
}

#[tokio::test(start_paused = true)]
async fn a_restart_in_the_middle_of_for_keeps_its_progress() {
    let setup = Setup::new();
    {
        let (mut evaluator, handle) = setup.evaluator(START);
        setup.reader.set(&["checkout"]);
        tick(&mut evaluator, 10).await;
        tick(&mut evaluator, 30).await;
        assert_eq!(state_of(&handle, "checkout"), Some(AlertState::Pending));
        // Dropped without a shutdown: what is on disk is what a kill -9 leaves.
    }
    // The new process starts 10 s later (40 s after the alert became pending).
    let (mut evaluator, handle) = setup.evaluator(START + 50_000_000_000);
    assert_eq!(
        state_of(&handle, "checkout"),
        Some(AlertState::Pending),
        "restored"
    );
    tick(&mut evaluator, 10).await;
    assert_eq!(
        state_of(&handle, "checkout"),
        Some(AlertState::Pending),
        "50 s of 60"
    );
    evaluator.evaluate().await;
    assert_eq!(
        state_of(&handle, "checkout"),
        Some(AlertState::Firing),
        "60 s of 60"
    );
    assert_eq!(handle.alerts(false)[0].2.active_at, START);
}

#[tokio::test(start_paused = true)]
async fn a_restart_while_firing_keeps_the_start_time_and_does_not_fire_again() {
    let setup = Setup::new();
    let fired_at = {
        let (mut evaluator, handle) = setup.evaluator(START);
        setup.reader.set(&["checkout"]);
        for _ in 0..8 {
            tick(&mut evaluator, 10).await;
        }
        assert_eq!(state_of(&handle, "checkout"), Some(AlertState::Firing));
        handle.alerts(false)[0].2.fired_at
    };
    let (mut evaluator, handle) = setup.evaluator(START + 600_000_000_000);
    assert_eq!(state_of(&handle, "checkout"), Some(AlertState::Firing));
    tick(&mut evaluator, 10).await;
    let alert = &handle.alerts(false)[0].2;
    assert_eq!(
        (alert.state, alert.fired_at, alert.active_at),
        (AlertState::Firing, fired_at, START)
    );
    let firings = handle
        .history(0, u64::MAX, |t| t.state == AlertState::Firing)
        .len();
    assert_eq!(
        firings, 1,
        "the history read back from disk has one firing, not two"
    );
}

#[tokio::test(start_paused = true)]
async fn a_bad_file_on_reload_keeps_the_previous_rules() {
    let setup = Setup::new();
    let (evaluator, handle) = setup.evaluator(START);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(evaluator.run(async {
        let _ = stopped.await;
    }));
    setup.reader.set(&["checkout"]);
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(state_of(&handle, "checkout"), Some(AlertState::Pending));

    std::fs::write(
        setup.dir.path().join("rules.yml"),
        RULES.replace("for: 1m", "for: soon"),
    )
    .unwrap();
    let error = handle.reload().await.unwrap_err();
    assert!(error.contains("rules.yml:8: bad `for`"), "{error}");
    assert!(handle.read(|s| s.reload_error.clone()).is_some());
    // The old rule goes on: it fires at 60 s.
    tokio::time::sleep(Duration::from_secs(50)).await;
    assert_eq!(state_of(&handle, "checkout"), Some(AlertState::Firing));

    // A good file takes effect and keeps the instances of the rules that stay.
    std::fs::write(
        setup.dir.path().join("rules.yml"),
        RULES.replace("keep_firing_for: 30s", "keep_firing_for: 1m"),
    )
    .unwrap();
    handle.reload().await.unwrap();
    assert!(handle.read(|s| s.reload_error.is_none()));
    let groups = handle.read(|s| s.groups.clone());
    let rule = &groups.iter().find(|g| g.name == "shop").unwrap().rules[0];
    assert_eq!(rule.keep_firing_for_secs, 60.0);
    let _ = stop.send(());
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_service_silent_for_longer_than_the_baseline_stays_silent() {
    let setup = Setup::new();
    std::fs::write(setup.dir.path().join("rules.yml"), "groups: []\n").unwrap();
    let mut config = setup.config();
    config.builtin = spyglass_alerting::BuiltinConfig {
        for_secs: 0,
        window_secs: 5,
        silent_after_secs: 4,
        latency_baseline_secs: 60,
        ..Default::default()
    };
    let clock = Arc::new(TokioClock::new(START));
    let (mut evaluator, handle) = Evaluator::new(
        setup.reader.clone(),
        config,
        &setup.dir.path().join("alerts"),
        clock,
    )
    .unwrap();
    let silent = |handle: &Alerting| {
        handle
            .alerts(true)
            .into_iter()
            .find(|(_, rule, _)| rule == "ServiceSilent")
            .map(|(_, _, a)| (a.state, a.value))
    };
    // shipping last sent at START; the reads see it until the baseline forgets it.
    *setup.reader.1.lock().unwrap() = vec![ServiceHealth {
        service: "shipping".into(),
        health: spyglass_query::Health {
            calls: 100.0,
            last_seen_unix_nano: Some(START),
            ..Default::default()
        },
    }];
    tick(&mut evaluator, 10).await;
    tick(&mut evaluator, 10).await;
    assert_eq!(silent(&handle).map(|s| s.0), Some(AlertState::Firing));
    // Past the baseline the reads no longer list it: the alert goes on, and counts on.
    setup.reader.1.lock().unwrap().clear();
    tick(&mut evaluator, 100).await;
    evaluator.evaluate().await;
    let (state, value) = silent(&handle).unwrap();
    assert_eq!(state, AlertState::Firing, "still silent");
    assert!(value >= 120.0, "silent for {value} s");
}
