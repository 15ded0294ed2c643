//! The `[alerting]` section of the configuration file.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// Rule files in Prometheus's format (paths or globs); `serve --rules` adds to them.
    pub rule_files: Vec<String>,
    /// How often rules are evaluated, in seconds, unless their group sets `interval`.
    pub evaluation_interval_secs: u64,
    /// Base of the links in alerts (`$externalURL`, trace links); empty: the UI address.
    pub external_url: String,
    /// Notification config in Alertmanager's format; empty: notifications go to the log,
    /// one per incident.
    pub notify_config: String,
    pub builtin: BuiltinConfig,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        Self {
            rule_files: Vec::new(),
            evaluation_interval_secs: 30,
            external_url: String::new(),
            notify_config: String::new(),
            builtin: BuiltinConfig::default(),
        }
    }
}

/// The built-in service-health rules, which need no rule file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuiltinConfig {
    /// Whether the built-in rules run.
    pub enabled: bool,
    /// The window each built-in rule looks at, in seconds.
    pub window_secs: u64,
    /// How long a built-in condition must hold before its alert fires, in seconds.
    pub for_secs: u64,
    /// ServiceErrors: errors over calls of a service's server and consumer spans above this.
    pub error_ratio: f64,
    /// ServiceErrors, DependencyFailing: fewest calls in the window to judge a ratio at all.
    pub min_requests: u64,
    /// ServiceLatency: p99 above this, in milliseconds...
    pub latency_floor_ms: u64,
    /// ...and above this many times the service's own p99 over the baseline.
    pub latency_factor: f64,
    /// ServiceLatency's baseline (the time before the window) and ServiceSilent's memory of
    /// which services exist, in seconds.
    pub latency_baseline_secs: u64,
    /// DependencyFailing: failures over calls of a client → server edge above this.
    pub dependency_error_ratio: f64,
    /// ServiceSilent: a service seen in the baseline that has sent nothing for this long.
    pub silent_after_secs: u64,
}

impl Default for BuiltinConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window_secs: 300,
            for_secs: 60,
            error_ratio: 0.05,
            min_requests: 20,
            latency_floor_ms: 100,
            latency_factor: 3.0,
            latency_baseline_secs: 86_400,
            dependency_error_ratio: 0.05,
            silent_after_secs: 300,
        }
    }
}

impl AlertingConfig {
    pub fn evaluation_interval(&self) -> Duration {
        Duration::from_secs(self.evaluation_interval_secs.max(1))
    }

    /// Refuses values that cannot work, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        let b = &self.builtin;
        if self.evaluation_interval_secs == 0 {
            return Err("evaluation_interval_secs must be at least 1".into());
        }
        if b.window_secs == 0 || b.latency_baseline_secs == 0 || b.silent_after_secs == 0 {
            return Err(
                "builtin window_secs, latency_baseline_secs and silent_after_secs must be at least 1"
                    .into(),
            );
        }
        for (key, ratio) in [
            ("error_ratio", b.error_ratio),
            ("dependency_error_ratio", b.dependency_error_ratio),
        ] {
            if !(0.0..1.0).contains(&ratio) {
                return Err(format!("builtin {key} must be in [0, 1), not {ratio}"));
            }
        }
        if !(b.latency_factor.is_finite() && b.latency_factor > 0.0) {
            return Err("builtin latency_factor must be more than 0".into());
        }
        Ok(())
    }
}
