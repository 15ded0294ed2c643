//! `spyglass rules check` and `spyglass rules backtest`.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// `spyglass rules check`: true when every file is valid.
pub fn check(paths: &[PathBuf]) -> bool {
    check_each(
        paths,
        |file| {
            std::fs::read_to_string(file)
                .map_err(|e| {
                    vec![spyglass_alerting::RuleError {
                        file: file.to_owned(),
                        line: 0,
                        message: format!("cannot read the file: {e}"),
                    }]
                })
                .and_then(|text| spyglass_alerting::rules::parse(file, &text))
        },
        |groups| {
            let rules: usize = groups.iter().map(|g| g.rules.len()).sum();
            println!("  SUCCESS: {rules} rules found");
        },
    )
}

/// `spyglass notify check`: true when every file is valid. Prints what each holds, as
/// `amtool check-config` does.
pub fn check_notify(paths: &[PathBuf]) -> bool {
    check_each(paths, spyglass_alerting::notify::load_config, |config| {
        let integrations: usize = config.receivers.iter().map(|r| r.integrations.len()).sum();
        println!("  SUCCESS");
        println!("Found:");
        println!(" - global config");
        println!(" - route");
        println!(" - {} inhibit rules", config.inhibit_rules.len());
        println!(
            " - {} receivers ({integrations} integrations)",
            config.receivers.len()
        );
    })
}

/// Loads each file, printing what `found` says of a valid one and every mistake of the others;
/// true when all are valid.
fn check_each<T>(
    paths: &[PathBuf],
    load: impl Fn(&str) -> Result<T, Vec<spyglass_alerting::RuleError>>,
    found: impl Fn(T),
) -> bool {
    let mut valid = true;
    for path in paths {
        println!("Checking {}", path.display());
        match load(&path.display().to_string()) {
            Ok(loaded) => found(loaded),
            Err(errors) => {
                valid = false;
                println!("  FAILED:");
                for error in errors {
                    println!("{error}");
                }
            }
        }
        println!();
    }
    valid
}

pub struct Backtest {
    pub paths: Vec<PathBuf>,
    pub from: String,
    pub to: String,
    pub step: Option<String>,
    pub builtin: bool,
    pub api: String,
}

/// `spyglass rules backtest`: sends the files to `POST /api/v1/rules/backtest` and prints each
/// alert's pending, firing and resolved times.
pub async fn backtest(options: Backtest) -> anyhow::Result<()> {
    let mut files = Vec::new();
    for path in &options.paths {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        files.push(json!({ "name": path.display().to_string(), "text": text }));
    }
    let body = json!({
        "files": files,
        "from": options.from,
        "to": options.to,
        "step": options.step,
        "builtin": options.builtin,
    });
    let url = format!(
        "{}/api/v1/rules/backtest",
        options.api.trim_end_matches('/')
    );
    let response = crate::reading_token(reqwest::Client::new().post(&url))
        .json(&body)
        .send()
        .await
        .with_context(|| format!("failed to reach {url}"))?;
    let status = response.status();
    let answer: Value = response.json().await.context("the answer is not JSON")?;
    if !status.is_success() {
        bail!("{}", answer["error"].as_str().unwrap_or("backtest refused"));
    }
    println!(
        "{} evaluations from {} to {}, every {}s",
        answer["evaluations"],
        time(&answer["from"]),
        time(&answer["to"]),
        answer["step_seconds"]
    );
    let episodes = answer["episodes"].as_array().cloned().unwrap_or_default();
    if episodes.is_empty() {
        println!("no alert would have been pending or firing");
    }
    for e in episodes {
        println!("{}", describe(&e));
    }
    Ok(())
}

/// `ServiceErrors{service="payments"}  pending … firing … resolved …`
fn describe(e: &Value) -> String {
    let labels: Vec<String> = e["labels"]
        .as_object()
        .map(|l| {
            l.iter()
                .filter(|(k, _)| *k != "alertname")
                .map(|(k, v)| format!("{k}={v}"))
                .collect()
        })
        .unwrap_or_default();
    let mut line = format!(
        "{}{{{}}}",
        e["rule"].as_str().unwrap_or(""),
        labels.join(",")
    );
    for (key, word) in [
        ("pending_at", "pending"),
        ("firing_at", "firing"),
        ("resolved_at", "resolved"),
        ("cleared_at", "cleared"),
    ] {
        if !e[key].is_null() {
            line.push_str(&format!("  {word} {}", time(&e[key])));
        }
    }
    line
}

/// A Unix-nanosecond string as RFC 3339.
fn time(nanos: &Value) -> String {
    match nanos.as_str().and_then(|n| n.parse::<u64>().ok()) {
        Some(n) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(n)).to_string()
        }
        None => "?".into(),
    }
}
