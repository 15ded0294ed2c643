//! The notification config: Alertmanager's file, read so that every mistake names its line, and
//! every field Spyglass does not support is refused by name rather than ignored.

use std::fmt;
use std::time::Duration;

mod read;

use super::matcher::Matcher;
use crate::error::RuleError;
use crate::state::Labels;
use crate::yaml::{self, Checker};

/// A password, key or token: its `Debug` does not show it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<secret>")
        }
    }
}

#[derive(Clone, Debug)]
pub struct NotifyConfig {
    pub resolve_timeout: Duration,
    pub route: Route,
    pub receivers: Vec<Receiver>,
    pub inhibit_rules: Vec<InhibitRule>,
    /// The file's text with its secrets replaced by `<secret>`, as the status API shows it.
    pub original: String,
}

/// `group_wait` and `group_interval` for rules evaluated every `evaluation`: three and thirty
/// evaluations, at most Alertmanager's defaults of 30 s and 5 m.
pub fn default_intervals(evaluation: Duration) -> (Duration, Duration) {
    let at_least_1s = |d: Duration| d.max(Duration::from_secs(1));
    (
        at_least_1s((evaluation * 3).min(Duration::from_secs(30))),
        at_least_1s((evaluation * 30).min(Duration::from_secs(300))),
    )
}

/// What `log_only` is, written as a file.
const LOG_ONLY_YAML: &str = "# no notify config: every notification goes to the log
route:
  receiver: log
  group_by: [incident]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
receivers:
  - name: log
";

/// Fields whose values the status API does not show.
const SECRET_FIELDS: &[&str] = &[
    "smtp_auth_password",
    "auth_password",
    "auth_secret",
    "bearer_token",
    "credentials",
    "routing_key",
    "service_key",
    "api_url",
    "slack_api_url",
    "url",
];

/// `text` with the value of each secret field replaced by `<secret>`, wherever the key stands:
/// at the start of a line, quoted, or inside a flow map (`{bearer_token: x}`); a block scalar
/// (`|`, `>`) loses its lines too. Webhook and Slack URLs count as secrets, as Alertmanager
/// treats them: they often carry a token.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // The indentation of a secret block scalar whose lines are being hidden.
    let mut hiding_below: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(level) = hiding_below {
            if line.trim().is_empty() || indent > level {
                continue;
            }
            hiding_below = None;
        }
        let (redacted, block) = redact_line(line);
        if block {
            hiding_below = Some(indent);
        }
        out.push_str(&redacted);
        out.push('\n');
    }
    out
}

/// One line with each `secret_key: value` hidden; and whether a hidden value is a block scalar
/// whose lines follow.
fn redact_line(line: &str) -> (String, bool) {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    let mut block = false;
    while let Some(value_start) = next_secret_value(rest) {
        let value = &rest[value_start..];
        // A value ends at the end of the line, or of its flow-map entry.
        let end = value.find([',', '}']).unwrap_or(value.len());
        out.push_str(&rest[..value_start]);
        let shown = value[..end].trim();
        if !shown.is_empty() {
            block |= shown.starts_with('|') || shown.starts_with('>');
            out.push_str(" <secret>");
        }
        rest = &value[end..];
    }
    out.push_str(rest);
    (out, block)
}

/// Where the value of the first secret key in `text` begins (just after its colon).
fn next_secret_value(text: &str) -> Option<usize> {
    let mut first: Option<usize> = None;
    for key in SECRET_FIELDS {
        for quote in ["", "\"", "'"] {
            let pattern = format!("{quote}{key}{quote}");
            for (at, _) in text.match_indices(&pattern) {
                let before_ok = text[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| c.is_whitespace() || matches!(c, '{' | ',' | '-'));
                let after = text[at + pattern.len()..].trim_start();
                if before_ok && after.starts_with(':') {
                    let value_start = text.len() - after.len() + 1;
                    first = Some(first.map_or(value_start, |f| f.min(value_start)));
                    break;
                }
            }
        }
    }
    first
}

/// The receiver that the config without a file sends to: each notification goes to the log.
pub const LOG_RECEIVER: &str = "log";

impl NotifyConfig {
    /// Without a file: everything, grouped by incident, to the log, with Alertmanager's
    /// intervals (group_wait 30 s, group_interval 5 m, repeat_interval 4 h).
    pub fn log_only() -> Self {
        Self::log_only_for(Duration::from_secs(30))
    }

    /// [`log_only`](Self::log_only) for rules evaluated every `evaluation`: a shorter
    /// evaluation interval (the demo's) shortens `group_wait` to three of them and
    /// `group_interval` to thirty, so that a short incident is still told.
    pub fn log_only_for(evaluation: Duration) -> Self {
        let (group_wait, group_interval) = default_intervals(evaluation);
        Self {
            resolve_timeout: Duration::from_secs(300),
            route: Route {
                receiver: LOG_RECEIVER.into(),
                group_by: GroupBy::Labels(vec!["incident".into()]),
                group_wait,
                group_interval,
                repeat_interval: Duration::from_secs(4 * 3600),
                matchers: Vec::new(),
                continue_matching: false,
                routes: Vec::new(),
            },
            receivers: vec![Receiver {
                name: LOG_RECEIVER.into(),
                integrations: vec![Integration::Log],
            }],
            inhibit_rules: Vec::new(),
            original: LOG_ONLY_YAML
                .replace("30s", &format!("{}s", group_wait.as_secs()))
                .replace("5m", &format!("{}s", group_interval.as_secs())),
        }
    }

    pub fn receiver(&self, name: &str) -> Option<&Receiver> {
        self.receivers.iter().find(|r| r.name == name)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum GroupBy {
    Labels(Vec<String>),
    /// `'...'`: every label, so each alert is a group of its own.
    All,
}

/// A route with what it inherits already filled in.
#[derive(Clone, Debug)]
pub struct Route {
    pub receiver: String,
    pub group_by: GroupBy,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub matchers: Vec<Matcher>,
    pub continue_matching: bool,
    pub routes: Vec<Route>,
}

#[derive(Clone, Debug)]
pub struct Receiver {
    pub name: String,
    pub integrations: Vec<Integration>,
}

#[derive(Clone, Debug)]
pub enum Integration {
    Log,
    Email(EmailConfig),
    Webhook(WebhookConfig),
    Slack(SlackConfig),
    PagerDuty(PagerDutyConfig),
}

impl Integration {
    /// `email`, `webhook`, `slack`, `pagerduty` or `log`.
    pub fn kind(&self) -> &'static str {
        match self {
            Integration::Log => "log",
            Integration::Email(_) => "email",
            Integration::Webhook(_) => "webhook",
            Integration::Slack(_) => "slack",
            Integration::PagerDuty(_) => "pagerduty",
        }
    }

    pub fn send_resolved(&self) -> bool {
        match self {
            Integration::Log => true,
            Integration::Email(c) => c.send_resolved,
            Integration::Webhook(c) => c.send_resolved,
            Integration::Slack(c) => c.send_resolved,
            Integration::PagerDuty(c) => c.send_resolved,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsConfig {
    pub ca_file: Option<String>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

#[derive(Clone, Debug)]
pub struct EmailConfig {
    /// Recipients, comma-separated as Alertmanager takes them.
    pub to: String,
    pub from: String,
    /// `host:port`.
    pub smarthost: String,
    pub hello: String,
    pub auth_username: String,
    pub auth_password: Secret,
    pub auth_identity: String,
    pub require_tls: bool,
    pub tls: TlsConfig,
    pub headers: Labels,
    pub send_resolved: bool,
}

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub url: String,
    pub send_resolved: bool,
    /// Most alerts in one message; 0 is all of them.
    pub max_alerts: usize,
    pub http: HttpConfig,
    pub timeout: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct HttpConfig {
    pub bearer_token: Option<Secret>,
    pub tls: TlsConfig,
}

#[derive(Clone, Debug)]
pub struct SlackConfig {
    pub api_url: Secret,
    pub channel: String,
    pub username: String,
    pub send_resolved: bool,
    pub http: HttpConfig,
}

#[derive(Clone, Debug)]
pub struct PagerDutyConfig {
    /// Events API v2's key; `service_key` (Events API v1) when `v1` is set.
    pub routing_key: Secret,
    pub v1: bool,
    pub url: String,
    pub send_resolved: bool,
    pub severity: String,
    pub client: String,
    pub client_url: String,
    pub http: HttpConfig,
}

#[derive(Clone, Debug)]
pub struct InhibitRule {
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    pub equal: Vec<String>,
}

pub fn load(path: &str) -> Result<NotifyConfig, Vec<RuleError>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
        Err(e) => Err(vec![RuleError {
            file: path.to_owned(),
            line: 0,
            message: format!("cannot read the file: {e}"),
        }]),
    }
}

/// Parses a notify config; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<NotifyConfig, Vec<RuleError>> {
    let mut c = Checker::new(file);
    let config = match yaml::parse(text) {
        Err(e) => {
            c.error(e.line, format!("invalid YAML: {}", e.message));
            None
        }
        Ok(None) => {
            c.error(0, "the file is empty: it needs a `route` and `receivers`");
            None
        }
        Ok(Some(root)) => c.notify_config(&root),
    };
    match config {
        Some(mut config) if c.errors.is_empty() => {
            config.original = redact(text);
            Ok(config)
        }
        _ => Err(c.errors),
    }
}

/// `host:port` split, the port a number.
pub fn split_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then_some(())?;
    Some((host.to_owned(), port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn secrets_are_hidden_wherever_the_yaml_puts_them() {
        let text = "global:
  smtp_auth_password: hunter2
  smtp_smarthost: mail:25
receivers:
  - name: hook
    webhook_configs:
      - url: http://hooks/T0K3N
        http_config: {bearer_token: abc, follow_redirects: true}
  - name: chat
    slack_configs:
      - \"api_url\": 'https://hooks.slack.com/x'
        channel: '#ops'
  - name: page
    pagerduty_configs:
      - routing_key: |
          multi
          line
        url: https://events.pagerduty.com/v2/enqueue
";
        let shown = redact(text);
        for secret in [
            "hunter2",
            "T0K3N",
            "abc",
            "hooks.slack.com",
            "multi",
            "line\n",
            "events.",
        ] {
            assert!(!shown.contains(secret), "{secret} shown in:\n{shown}");
        }
        for kept in [
            "smtp_smarthost: mail:25",
            "follow_redirects: true",
            "channel: '#ops'",
            "name: page",
        ] {
            assert!(shown.contains(kept), "{kept} lost in:\n{shown}");
        }
        assert!(shown.contains("smtp_auth_password: <secret>"), "{shown}");
        assert!(
            shown.contains("{bearer_token: <secret>, follow_redirects: true}"),
            "{shown}"
        );
    }
}
