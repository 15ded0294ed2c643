//! The configuration file: one section per crate, loaded and validated only here.
//!
//! The `///` comments on each crate's config fields are the user documentation;
//! `spyglass config` prints the defaults with them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use spyglass_alerting::AlertingConfig;
use spyglass_ingest::IngestConfig;
use spyglass_query::QueryConfig;
use spyglass_store::StoreConfig;
use spyglass_ui::UiConfig;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory holding the WAL, the Parquet parts, the trace index and the manifest.
    pub data_dir: PathBuf,
    /// What this process does: "all" (everything, on one machine), "ingest" (receive
    /// telemetry and upload its parts to [store.object_store]), "query" (the UI and API over
    /// the parts in [store.object_store], its data directory a cache) or "alert" (a querier
    /// that evaluates the alert rules while it holds the object store's alerting lease).
    pub role: Role,
    pub store: StoreConfig,
    pub ingest: IngestConfig,
    pub query: QueryConfig,
    pub ui: UiConfig,
    pub alerting: AlertingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            role: Role::All,
            store: StoreConfig::default(),
            ingest: IngestConfig::default(),
            query: QueryConfig::default(),
            ui: UiConfig::default(),
            alerting: AlertingConfig::default(),
        }
    }
}

/// What a `spyglass serve` process does (see "Object storage" in docs/ARCHITECTURE.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: receivers, store, compaction, queries, alerting.
    #[default]
    All,
    /// Receivers and store; its parts go up to the object store.
    Ingest,
    /// The UI and API over the object store's parts.
    Query,
    /// A querier that also evaluates the alert rules and sends notifications while it holds
    /// the alerting lease: one such process at a time, another taking over within 30 s of
    /// its death.
    Alert,
}

/// The demo's defaults: its own data directory, span metrics every 5 s so that charts move
/// while one watches, and built-in rules on a one-minute window, so that each scripted
/// incident (one to one and a half minutes long) fires and resolves before the next.
pub fn demo_defaults() -> Config {
    let mut config = Config {
        data_dir: PathBuf::from("./demo-data"),
        ..Config::default()
    };
    config.ingest.span_metrics_interval_secs = 5;
    let alerting = &mut config.alerting;
    alerting.evaluation_interval_secs = 10;
    alerting.builtin.window_secs = 60;
    alerting.builtin.for_secs = 15;
    alerting.builtin.silent_after_secs = 30;
    alerting.builtin.min_requests = 10;
    alerting.builtin.latency_floor_ms = 50;
    config
}

/// The demo's timeline runs `speed` times faster: so do span metrics, evaluations and every
/// duration of the built-in rules (at least one second each), so that its incidents still
/// fire and resolve their alerts.
pub fn speed_up(config: &mut Config, speed: f64) {
    let scale = |secs: u64| ((secs as f64 / speed.max(1.0)).round() as u64).max(1);
    let b = &mut config.alerting.builtin;
    b.window_secs = scale(b.window_secs);
    b.for_secs = scale(b.for_secs);
    b.latency_baseline_secs = scale(b.latency_baseline_secs);
    b.silent_after_secs = scale(b.silent_after_secs);
    let a = &mut config.alerting;
    a.evaluation_interval_secs = scale(a.evaluation_interval_secs);
    let i = &mut config.ingest;
    i.span_metrics_interval_secs = scale(i.span_metrics_interval_secs);
}

impl Config {
    /// The file at `path` over `base`: what the file sets replaces what `base` has, key by
    /// key (so `demo --config` keeps the demo's defaults for what the file leaves out).
    pub fn load_over(base: &Config, path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read config file {}", path.display()))?;
        let file: toml::Table = toml::from_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        let mut merged = toml::Table::try_from(base).expect("the config serializes");
        overlay(&mut merged, file);
        toml::Value::Table(merged)
            .try_into()
            .with_context(|| format!("invalid config file {}", path.display()))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.store.validate().context("invalid [store] section")?;
        let caches = (spyglass_store::Share::Caches, self.query.cache_bytes());
        self.store
            .check_budget(&[caches])
            .context("invalid [store] section")?;
        self.alerting
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid [alerting] section: {e}"))?;
        if self.role != Role::All && self.store.object_store.is_none() {
            bail!(
                "role {:?} needs an object store shared with the other processes: set \
                 [store.object_store] url",
                self.role
            );
        }
        if self.data_dir.as_os_str().is_empty() {
            bail!("data_dir must not be empty");
        }
        // A fast-path request is logged in the WAL as it came: it must fit one record.
        let record = spyglass_store::wal::MAX_PAYLOAD;
        if self.ingest.max_body_bytes > record {
            bail!(
                "[ingest] max_body_bytes ({}) must not exceed the largest WAL record ({record} \
                 bytes)",
                self.ingest.max_body_bytes
            );
        }
        if self.ingest.max_hours_per_request == 0 {
            bail!("[ingest] max_hours_per_request must be at least 1");
        }
        Ok(())
    }

    /// The alerting section as the evaluator takes it: links default to the UI address.
    pub fn alerting(&self) -> AlertingConfig {
        let mut alerting = self.alerting.clone();
        if alerting.external_url.is_empty() {
            alerting.external_url = format!("http://{}", self.ui.http_addr);
        }
        alerting
    }

    /// Addresses bound beyond loopback without the tokens that guard them: the OTLP receivers
    /// without `[ingest] tokens`, the UI and API without `[ui] tokens`. Each with the section
    /// whose tokens are missing.
    pub fn exposed_without_tokens(&self) -> Vec<(SocketAddr, &'static str)> {
        let ingest = self.ingest.tokens.is_empty();
        let ui = self.ui.tokens.is_empty();
        [
            (self.ingest.otlp_grpc_addr, ingest, "[ingest]"),
            (self.ingest.otlp_http_addr, ingest, "[ingest]"),
            (self.ui.http_addr, ui, "[ui]"),
        ]
        .into_iter()
        .filter(|(addr, open, _)| *open && !addr.ip().is_loopback())
        .map(|(addr, _, section)| (addr, section))
        .collect()
    }
}

/// Sets every key of `top` in `base`, descending into tables that both have.
fn overlay(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(top_inner)) => {
                overlay(inner, top_inner)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Sources whose field comments document each section.
const DOCUMENTED: [(&str, &str, &str); 7] = [
    ("", "Config", include_str!("config.rs")),
    (
        "store",
        "StoreConfig",
        include_str!("../store/src/config.rs"),
    ),
    (
        "ingest",
        "IngestConfig",
        include_str!("../ingest/src/config.rs"),
    ),
    (
        "query",
        "QueryConfig",
        include_str!("../query/src/config.rs"),
    ),
    ("ui", "UiConfig", include_str!("../ui/src/config.rs")),
    (
        "alerting",
        "AlertingConfig",
        include_str!("../alerting/src/config.rs"),
    ),
    (
        "alerting.builtin",
        "BuiltinConfig",
        include_str!("../alerting/src/config.rs"),
    ),
];

/// `(section, field) → doc comment` read from the config structs' sources.
fn field_docs() -> Vec<(&'static str, String, String)> {
    let mut docs = Vec::new();
    for (section, name, source) in DOCUMENTED {
        let header = format!("pub struct {name} {{");
        let Some(start) = source.find(&header) else {
            continue;
        };
        let mut pending: Vec<&str> = Vec::new();
        for line in source[start + header.len()..].lines() {
            let line = line.trim();
            if line == "}" {
                break;
            }
            if let Some(doc) = line.strip_prefix("///") {
                pending.push(doc.trim());
            } else if let Some(field) = line.strip_prefix("pub ").and_then(|l| l.split(':').next())
            {
                docs.push((section, field.trim().to_owned(), pending.join("\n")));
                pending.clear();
            } else {
                pending.clear();
            }
        }
    }
    docs
}

/// The default configuration as TOML, every field preceded by its documentation.
pub fn documented_defaults() -> String {
    let docs = field_docs();
    let toml = toml::to_string(&Config::default()).expect("the default config serializes");
    let mut out = String::from("# Spyglass configuration. Every value shown is the default.\n\n");
    let mut section = "";
    for line in toml.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = DOCUMENTED
                .iter()
                .map(|d| d.0)
                .find(|s| *s == name)
                .unwrap_or("");
            out.push('\n');
        } else if let Some((key, _)) = line.split_once(" = ")
            && let Some((_, _, doc)) = docs
                .iter()
                .find(|(s, f, _)| *s == section && f == key.trim())
        {
            for doc_line in doc.lines() {
                out.push_str(&format!("# {doc_line}\n").replace("# \n", "#\n"));
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_defaults_document_every_field_and_parse_back() {
        let text = documented_defaults();
        let parsed: Config = toml::from_str(&text).expect("the printed config is valid");
        assert_eq!(parsed, Config::default());
        let mut previous = "";
        for line in text.lines() {
            if line.contains(" = ") && !line.starts_with('#') {
                assert!(previous.starts_with('#'), "no comment above `{line}`");
            }
            previous = line;
        }
        for key in [
            "durability",
            "memtable_max_bytes",
            "otlp_grpc_addr",
            "http_addr",
            "data_dir",
            "tokens",
            "evaluation_interval_secs",
            "error_ratio",
            "silent_after_secs",
        ] {
            assert!(text.contains(&format!("\n{key} = ")), "{key} is printed");
        }
    }

    #[test]
    fn a_file_overrides_only_what_it_sets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spyglass.toml");
        std::fs::write(&path, "[ingest]\nspan_metrics_interval_secs = 1\n").unwrap();
        let demo = demo_defaults();
        let loaded = Config::load_over(&demo, &path).unwrap();
        assert_eq!(loaded.ingest.span_metrics_interval_secs, 1);
        assert_eq!(loaded.alerting, demo.alerting);
        assert_eq!(loaded.data_dir, demo.data_dir);
        std::fs::write(&path, "[alerting.builtin]\nwindow_sec = 1\n").unwrap();
        assert!(
            Config::load_over(&demo, &path).is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn limits_that_contradict_each_other_are_refused() {
        let mut config = Config::default();
        config.ingest.max_body_bytes = 1 << 30;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("largest WAL record"), "{err}");
        config.ingest.max_body_bytes = 64 << 20;
        config.validate().unwrap();
        config.query.promql_series_cache_bytes = 512 << 20;
        let err = format!("{:#}", config.validate().unwrap_err());
        assert!(
            err.contains("memory_budget_bytes (1024 MiB)") && err.contains("caches 576 MiB"),
            "{err}"
        );
        config.store.memory_budget_bytes = 2 << 30;
        config.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(toml::from_str::<Config>("[store]\nflush_byte = 1\n").is_err());
    }

    #[test]
    fn exposed_addresses_without_tokens_are_reported() {
        let mut config = Config::default();
        assert!(config.exposed_without_tokens().is_empty());
        config.ui.http_addr = "0.0.0.0:8080".parse().unwrap();
        config.ingest.otlp_grpc_addr = "0.0.0.0:4317".parse().unwrap();
        assert_eq!(
            config.exposed_without_tokens(),
            vec![
                (config.ingest.otlp_grpc_addr, "[ingest]"),
                (config.ui.http_addr, "[ui]")
            ]
        );
        config.ingest.tokens.push(spyglass_ingest::Token::new("t"));
        assert_eq!(
            config.exposed_without_tokens(),
            vec![(config.ui.http_addr, "[ui]")],
            "ingest tokens do not guard the API"
        );
        config.ui.tokens.push(spyglass_ui::Token::new("r"));
        assert!(config.exposed_without_tokens().is_empty());
    }
}
