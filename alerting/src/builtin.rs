//! The built-in service-health rules: they need no rule file and read what ingest already
//! computes (span metrics, the service graph), with traces as their evidence.

use std::collections::BTreeMap;
use std::time::Duration;

use spyglass_query::{Edge, Health, TraceSearch};

use crate::config::BuiltinConfig;
use crate::reader::{ANSWERED_KINDS, ReadResult, Reader, by_service};
use crate::rules::{Expr, Group, Rule, RuleKind};
use crate::state::{Labels, Sample};
use crate::template::Template;

/// The group the built-in rules show under in the rules API.
pub const GROUP: &str = "spyglass.builtin";

const NANOS: u64 = 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    ServiceErrors,
    ServiceLatency,
    DependencyFailing,
    ServiceSilent,
    TelemetryRefused,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::ServiceErrors,
        Kind::ServiceLatency,
        Kind::DependencyFailing,
        Kind::ServiceSilent,
        Kind::TelemetryRefused,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::ServiceErrors => "ServiceErrors",
            Kind::ServiceLatency => "ServiceLatency",
            Kind::DependencyFailing => "DependencyFailing",
            Kind::ServiceSilent => "ServiceSilent",
            Kind::TelemetryRefused => "TelemetryRefused",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    fn severity(self) -> &'static str {
        match self {
            Kind::ServiceLatency | Kind::TelemetryRefused => "warning",
            _ => "critical",
        }
    }

    /// What it tests, in words, for the rules API (its `query`).
    fn describe(self, c: &BuiltinConfig) -> String {
        let w = crate::duration::format(Duration::from_secs(c.window_secs));
        match self {
            Kind::ServiceErrors => format!(
                "errors / calls of a service's server and consumer spans over {w} > {} with calls >= {}",
                c.error_ratio, c.min_requests
            ),
            Kind::ServiceLatency => format!(
                "p99 of a service's server and consumer spans over {w} > {}ms and > {} x its p99 over the {} before",
                c.latency_floor_ms,
                c.latency_factor,
                crate::duration::format(Duration::from_secs(c.latency_baseline_secs))
            ),
            Kind::DependencyFailing => format!(
                "failures / calls of a client -> server edge over {w} > {} with calls >= {}",
                c.dependency_error_ratio, c.min_requests
            ),
            Kind::ServiceSilent => format!(
                "a service seen in the last {} has sent nothing for {}",
                crate::duration::format(Duration::from_secs(c.latency_baseline_secs)),
                crate::duration::format(Duration::from_secs(c.silent_after_secs))
            ),
            Kind::TelemetryRefused => format!("Spyglass refused or throttled telemetry in {w}"),
        }
    }

    fn annotations(self) -> [(&'static str, &'static str); 2] {
        match self {
            Kind::ServiceErrors => [
                (
                    "summary",
                    "{{ $labels.service }} fails {{ $value | humanizePercentage }} of its requests",
                ),
                (
                    "description",
                    "The error ratio of {{ $labels.service }}'s server and consumer spans is {{ $value | humanizePercentage }}.",
                ),
            ],
            Kind::ServiceLatency => [
                (
                    "summary",
                    "{{ $labels.service }} is slow: p99 {{ $value | humanizeDuration }}",
                ),
                (
                    "description",
                    "The p99 latency of {{ $labels.service }} is {{ $value | humanizeDuration }}, far above its own usual p99.",
                ),
            ],
            Kind::DependencyFailing => [
                (
                    "summary",
                    "{{ $labels.client }} -> {{ $labels.server }} fails {{ $value | humanizePercentage }} of calls",
                ),
                (
                    "description",
                    "Calls from {{ $labels.client }} to {{ $labels.server }} fail: {{ $value | humanizePercentage }} of them.",
                ),
            ],
            Kind::ServiceSilent => [
                (
                    "summary",
                    "{{ $labels.service }} has sent nothing for {{ $value | humanizeDuration }}",
                ),
                (
                    "description",
                    "{{ $labels.service }} was seen before and has stopped sending telemetry.",
                ),
            ],
            Kind::TelemetryRefused => [
                (
                    "summary",
                    "Spyglass refused {{ $value }} telemetry requests",
                ),
                (
                    "description",
                    "Spyglass itself refused or throttled telemetry (limits, backpressure or storage errors); see /metrics.",
                ),
            ],
        }
    }
}

/// The built-in rules as a group, for the evaluator and the rules API.
pub fn group(config: &BuiltinConfig, interval: Duration) -> Group {
    let rules = Kind::ALL
        .into_iter()
        .map(|kind| {
            let annotations: BTreeMap<String, String> = kind
                .annotations()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Rule {
                name: kind.name().into(),
                kind: RuleKind::Alerting,
                expr: Expr::Builtin(kind.describe(config)),
                for_duration: Duration::from_secs(config.for_secs),
                keep_firing_for: Duration::ZERO,
                labels: BTreeMap::from([("severity".into(), kind.severity().into())]),
                annotation_templates: annotations
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            Template::parse(v).expect("built-in templates parse"),
                        )
                    })
                    .collect(),
                annotations,
                line: 0,
                label_templates: Vec::new(),
            }
        })
        .collect();
    Group {
        name: GROUP.into(),
        file: String::new(),
        interval: Some(interval),
        limit: 0,
        query_offset: Duration::ZERO,
        rules,
    }
}

/// What the built-in rules read, once per evaluation.
#[derive(Debug, Default)]
pub struct Observation {
    pub now: u64,
    /// Server and consumer spans over the window, by service.
    pub window: BTreeMap<String, Health>,
    /// The same over the baseline before the window.
    pub baseline: BTreeMap<String, Health>,
    /// Every span kind over the baseline and the window: who exists and when it last sent.
    pub seen: BTreeMap<String, Health>,
    pub edges: Vec<Edge>,
    /// Telemetry requests refused during the window.
    pub refused: u64,
}

impl Observation {
    pub async fn read(
        reader: &impl Reader,
        config: &BuiltinConfig,
        now: u64,
        refused: u64,
    ) -> ReadResult<Self> {
        let window = config.window_secs * NANOS;
        let baseline = config.latency_baseline_secs * NANOS;
        let start = now.saturating_sub(window);
        let before = start.saturating_sub(baseline);
        Ok(Self {
            now,
            window: by_service(reader.services(start, now, Some(&ANSWERED_KINDS)).await?),
            baseline: by_service(
                reader
                    .services(before, start, Some(&ANSWERED_KINDS))
                    .await?,
            ),
            seen: by_service(reader.services(before, now, None).await?),
            edges: reader.dependencies(start, now).await?.edges,
            refused,
        })
    }

    /// The samples of one built-in rule.
    pub fn samples(&self, kind: Kind, c: &BuiltinConfig) -> Vec<Sample> {
        let mut out = Vec::new();
        let service = |s: &str| Labels::from([("service".into(), s.to_owned())]);
        let min_calls = c.min_requests as f64;
        match kind {
            Kind::ServiceErrors => {
                for (name, h) in &self.window {
                    if h.calls >= min_calls && h.error_ratio > c.error_ratio {
                        out.push(sample(service(name), h.error_ratio, c.error_ratio));
                    }
                }
            }
            Kind::ServiceLatency => {
                for (name, h) in &self.window {
                    if let Some(threshold) = self.latency_threshold(name, c)
                        && let Some(p99) = h.p99_seconds
                        && h.calls >= min_calls
                        && p99 > threshold
                    {
                        out.push(sample(service(name), p99, threshold));
                    }
                }
            }
            Kind::DependencyFailing => {
                for edge in &self.edges {
                    let h = &edge.health;
                    if h.calls >= min_calls && h.error_ratio > c.dependency_error_ratio {
                        let labels = Labels::from([
                            ("client".into(), edge.client.clone()),
                            ("server".into(), edge.server.clone()),
                        ]);
                        out.push(sample(labels, h.error_ratio, c.dependency_error_ratio));
                    }
                }
            }
            Kind::ServiceSilent => {
                let silent_after = c.silent_after_secs * NANOS;
                for (name, h) in &self.seen {
                    let Some(last) = h.last_seen_unix_nano else {
                        continue;
                    };
                    let quiet = self.now.saturating_sub(last);
                    if quiet >= silent_after {
                        out.push(sample(
                            service(name),
                            quiet as f64 / NANOS as f64,
                            c.silent_after_secs as f64,
                        ));
                    }
                }
            }
            Kind::TelemetryRefused => {
                if self.refused > 0 {
                    out.push(sample(Labels::new(), self.refused as f64, 0.0));
                }
            }
        }
        out
    }

    /// The p99 above which `service` is slow: the floor, and the factor times its own p99 over
    /// the baseline. `None` without a baseline to compare with.
    pub fn latency_threshold(&self, service: &str, c: &BuiltinConfig) -> Option<f64> {
        let baseline = self.baseline.get(service)?;
        if baseline.calls < c.min_requests as f64 {
            return None;
        }
        let floor = c.latency_floor_ms as f64 / 1000.0;
        Some(floor.max(baseline.p99_seconds? * c.latency_factor))
    }

    /// Up to 3 trace ids that show why the instance is active, found by a trace search over
    /// the window (so each exists in the store).
    pub async fn evidence(
        &self,
        reader: &impl Reader,
        kind: Kind,
        labels: &Labels,
        c: &BuiltinConfig,
    ) -> ReadResult<Vec<String>> {
        let mut search = TraceSearch {
            start_unix_nano: Some(self.now.saturating_sub(c.window_secs * NANOS)),
            end_unix_nano: Some(self.now),
            limit: 3,
            ..TraceSearch::default()
        };
        let mut must_touch = None;
        match kind {
            Kind::ServiceErrors => {
                search.service = labels.get("service").cloned();
                search.errors_only = true;
            }
            Kind::ServiceLatency => {
                let service = labels.get("service").cloned().unwrap_or_default();
                let threshold = self
                    .latency_threshold(&service, c)
                    .unwrap_or(c.latency_floor_ms as f64 / 1000.0);
                search.min_duration_nano = Some((threshold * NANOS as f64) as u64);
                search.service = Some(service);
            }
            Kind::DependencyFailing => {
                search.service = labels.get("client").cloned();
                search.errors_only = true;
                search.limit = 20;
                must_touch = labels
                    .get("server")
                    .filter(|s| self.seen.contains_key(*s))
                    .cloned();
            }
            Kind::ServiceSilent | Kind::TelemetryRefused => return Ok(Vec::new()),
        }
        let found = reader.search(search).await?;
        // The client's failing traces that reach the server; where none does (a server that
        // stopped answering), the client's failing traces.
        let reaching: Vec<String> = found
            .iter()
            .filter(|(_, services)| must_touch.as_ref().is_none_or(|s| services.contains(s)))
            .map(|(id, _)| id.clone())
            .take(3)
            .collect();
        if !reaching.is_empty() {
            return Ok(reaching);
        }
        Ok(found.into_iter().map(|(id, _)| id).take(3).collect())
    }
}

fn sample(labels: Labels, value: f64, threshold: f64) -> Sample {
    Sample {
        labels,
        value,
        threshold: Some(threshold),
        trace_ids: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(calls: f64, errors: f64, p99: f64, last_seen: u64) -> Health {
        Health {
            calls,
            errors,
            rate_per_sec: calls / 300.0,
            error_ratio: if calls > 0.0 { errors / calls } else { 0.0 },
            p50_seconds: Some(p99 / 4.0),
            p95_seconds: Some(p99 / 2.0),
            p99_seconds: Some(p99),
            last_seen_unix_nano: Some(last_seen),
        }
    }

    fn observation() -> Observation {
        let now = 10_000 * NANOS;
        Observation {
            now,
            window: BTreeMap::from([
                ("checkout".into(), health(100.0, 30.0, 0.05, now)),
                ("tiny".into(), health(2.0, 1.0, 0.05, now)),
                ("slow".into(), health(100.0, 0.0, 0.9, now)),
            ]),
            baseline: BTreeMap::from([
                ("checkout".into(), health(1000.0, 1.0, 0.05, now)),
                ("slow".into(), health(1000.0, 0.0, 0.1, now)),
            ]),
            seen: BTreeMap::from([
                ("checkout".into(), health(1100.0, 31.0, 0.05, now)),
                ("gone".into(), health(500.0, 0.0, 0.05, now - 600 * NANOS)),
            ]),
            edges: vec![],
            refused: 0,
        }
    }

    fn names(samples: &[Sample]) -> Vec<&str> {
        samples
            .iter()
            .map(|s| s.labels["service"].as_str())
            .collect()
    }

    #[test]
    fn errors_need_enough_requests() {
        let c = BuiltinConfig::default();
        let errors = observation().samples(Kind::ServiceErrors, &c);
        assert_eq!(names(&errors), ["checkout"], "one error of two never pages");
        assert_eq!(errors[0].value, 0.3);
    }

    #[test]
    fn latency_is_judged_against_the_services_own_history() {
        let c = BuiltinConfig::default();
        // checkout's p99 is its usual one; slow's is 9x its baseline and above the floor.
        assert_eq!(
            names(&observation().samples(Kind::ServiceLatency, &c)),
            ["slow"]
        );
        let strict = BuiltinConfig {
            latency_factor: 10.0,
            ..c
        };
        assert!(
            observation()
                .samples(Kind::ServiceLatency, &strict)
                .is_empty()
        );
    }

    #[test]
    fn a_service_that_stopped_sending_is_silent() {
        let c = BuiltinConfig::default();
        let silent = observation().samples(Kind::ServiceSilent, &c);
        assert_eq!(names(&silent), ["gone"]);
        assert_eq!(silent[0].value, 600.0);
    }
}
