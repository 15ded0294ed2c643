//! Reading the notify config's YAML tree into [`NotifyConfig`]: each section checked for
//! unknown and unsupported fields, inherited route settings and `global` defaults filled in.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::notify::matcher::{self, Op};
use crate::yaml::Node;

/// Fields of Alertmanager's format that Spyglass refuses, with why, so the error can say so.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "time_intervals",
        "time intervals are not supported; use silences",
    ),
    (
        "mute_time_intervals",
        "time intervals are not supported; use silences",
    ),
    (
        "active_time_intervals",
        "time intervals are not supported; use silences",
    ),
    (
        "html",
        "custom templates are not supported; e-mails have Spyglass's own HTML part",
    ),
    (
        "text",
        "custom templates are not supported; notifications have Spyglass's own text",
    ),
    (
        "title",
        "custom templates are not supported; notifications have Spyglass's own title",
    ),
];

const RECEIVER_TYPES: &[&str] = &[
    "email_configs",
    "webhook_configs",
    "slack_configs",
    "pagerduty_configs",
];

/// Receiver types Alertmanager has and Spyglass does not.
const OTHER_RECEIVER_TYPES: &[&str] = &[
    "discord_configs",
    "msteams_configs",
    "msteamsv2_configs",
    "opsgenie_configs",
    "pushover_configs",
    "sns_configs",
    "telegram_configs",
    "victorops_configs",
    "webex_configs",
    "wechat_configs",
    "rocketchat_configs",
    "jira_configs",
    "incidentio_configs",
];

/// Reads a notify config file; every mistake, with its line.
/// `global`'s values, which receivers take when they set none.
#[derive(Default)]
struct Global {
    resolve_timeout: Option<Duration>,
    smtp_from: String,
    smtp_hello: String,
    smtp_smarthost: String,
    smtp_auth_username: String,
    smtp_auth_password: Secret,
    smtp_auth_identity: String,
    smtp_require_tls: Option<bool>,
    slack_api_url: String,
    pagerduty_url: String,
}

/// What a route sets itself; the rest comes from its parent.
struct Inherited {
    receiver: Option<String>,
    group_by: GroupBy,
    group_wait: Duration,
    group_interval: Duration,
    repeat_interval: Duration,
}

impl Checker<'_> {
    /// The entries of a mapping, each key checked against `allowed`; a field of Alertmanager's
    /// that Spyglass does not support is refused with its name and why.
    fn section<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        allowed: &[&str],
    ) -> Option<BTreeMap<&'n str, &'n Node>> {
        self.fields_refusing(node, what, allowed, &|key, value| {
            let _ = value;
            if let Some((_, why)) = UNSUPPORTED.iter().find(|(k, _)| *k == key) {
                return Some((*why).to_owned());
            }
            OTHER_RECEIVER_TYPES
                .contains(&key)
                .then(|| "Spyglass sends e-mail, webhooks, Slack and PagerDuty".to_owned())
        })
    }

    fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match self.string(node, what)?.as_str() {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            other => {
                self.error(
                    node.line(),
                    format!("{what} must be true or false, not {other:?}"),
                );
                None
            }
        }
    }

    fn strings(&mut self, node: &Node, what: &str) -> Vec<String> {
        match node {
            Node::Seq { items, .. } => items.iter().filter_map(|n| self.string(n, what)).collect(),
            n if n.is_null() => Vec::new(),
            n => {
                self.error(n.line(), format!("{what} must be a list, not {}", n.kind()));
                Vec::new()
            }
        }
    }

    fn list<'n>(&mut self, node: &'n Node, what: &str) -> &'n [Node] {
        match node {
            Node::Seq { items, .. } => items,
            n if n.is_null() => &[],
            n => {
                self.error(n.line(), format!("{what} must be a list, not {}", n.kind()));
                &[]
            }
        }
    }

    fn url(&mut self, node: &Node, what: &str) -> Option<String> {
        let url = self.string(node, what)?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            self.error(node.line(), format!("{what} must be an http or https URL"));
            return None;
        }
        Some(url)
    }

    /// `matchers:` (strings), `match:` (equalities) and `match_re:` (regexes) together.
    fn matchers(
        &mut self,
        fields: &BTreeMap<&str, &Node>,
        keys: (&str, &str, &str),
    ) -> Vec<Matcher> {
        let mut out = Vec::new();
        if let Some(node) = fields.get(keys.0) {
            for item in self.list(node, keys.0) {
                if let Some(text) = self.string(item, keys.0) {
                    match matcher::parse(&text) {
                        Ok(m) => out.extend(m),
                        Err(e) => self.error(item.line(), e),
                    }
                }
            }
        }
        for (key, op) in [(keys.1, Op::Equal), (keys.2, Op::Regex)] {
            if let Some(node) = fields.get(key) {
                for (name, value) in self.labels(node, key) {
                    match Matcher::new(&name, op, &value) {
                        Ok(m) => out.push(m),
                        Err(e) => self.error(node.line(), e),
                    }
                }
            }
        }
        out
    }

    pub(super) fn notify_config(&mut self, root: &Node) -> Option<NotifyConfig> {
        let fields = self.section(
            root,
            "the notify config",
            &["global", "route", "receivers", "inhibit_rules", "templates"],
        )?;
        // Template files only define named templates; without `text:`, `html:` or `title:`
        // (which are refused) nothing uses them, so they are not read.
        if let Some(n) = fields.get("templates") {
            let files = self.strings(n, "templates");
            if !files.is_empty() {
                tracing::warn!(
                    ?files,
                    "template files are not read: notifications have Spyglass's own layout"
                );
            }
        }
        let global = match fields.get("global") {
            Some(n) => self.global(n),
            None => Global::default(),
        };
        let mut receivers = Vec::new();
        match fields.get("receivers") {
            Some(n) => {
                for item in self.list(n, "receivers") {
                    if let Some(r) = self.receiver(item, &global) {
                        if receivers.iter().any(|x: &Receiver| x.name == r.name) {
                            self.error(
                                item.line(),
                                format!("receiver {:?} is defined twice", r.name),
                            );
                        }
                        receivers.push(r);
                    }
                }
            }
            None => self.error(root.line(), "the notify config has no `receivers`"),
        }
        let Some(route_node) = fields.get("route") else {
            self.error(root.line(), "the notify config has no `route`");
            return None;
        };
        let defaults = Inherited {
            receiver: None,
            group_by: GroupBy::Labels(Vec::new()),
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
        };
        let route = self.route(route_node, &defaults, true, &receivers)?;
        let inhibit_rules = match fields.get("inhibit_rules") {
            Some(n) => self
                .list(n, "inhibit_rules")
                .iter()
                .filter_map(|item| self.inhibit_rule(item))
                .collect(),
            None => Vec::new(),
        };
        Some(NotifyConfig {
            resolve_timeout: global.resolve_timeout.unwrap_or(Duration::from_secs(300)),
            route,
            receivers,
            inhibit_rules,
            original: String::new(),
        })
    }

    fn global(&mut self, node: &Node) -> Global {
        let Some(fields) = self.section(
            node,
            "global",
            &[
                "resolve_timeout",
                "smtp_from",
                "smtp_hello",
                "smtp_smarthost",
                "smtp_auth_username",
                "smtp_auth_password",
                "smtp_auth_identity",
                "smtp_require_tls",
                "slack_api_url",
                "pagerduty_url",
            ],
        ) else {
            return Global::default();
        };
        let mut text = |key: &str| {
            fields
                .get(key)
                .and_then(|n| self.string(n, key))
                .unwrap_or_default()
        };
        let mut global = Global {
            smtp_from: text("smtp_from"),
            smtp_hello: text("smtp_hello"),
            smtp_smarthost: text("smtp_smarthost"),
            smtp_auth_username: text("smtp_auth_username"),
            smtp_auth_password: Secret(text("smtp_auth_password")),
            smtp_auth_identity: text("smtp_auth_identity"),
            slack_api_url: text("slack_api_url"),
            pagerduty_url: text("pagerduty_url"),
            ..Global::default()
        };
        global.resolve_timeout = fields
            .get("resolve_timeout")
            .and_then(|n| self.duration(n, "resolve_timeout"));
        global.smtp_require_tls = fields
            .get("smtp_require_tls")
            .and_then(|n| self.bool(n, "smtp_require_tls"));
        global
    }

    fn route(
        &mut self,
        node: &Node,
        parent: &Inherited,
        root: bool,
        receivers: &[Receiver],
    ) -> Option<Route> {
        let what = if root { "the root route" } else { "a route" };
        let fields = self.section(
            node,
            what,
            &[
                "receiver",
                "group_by",
                "group_wait",
                "group_interval",
                "repeat_interval",
                "matchers",
                "match",
                "match_re",
                "continue",
                "routes",
            ],
        )?;
        let receiver = fields
            .get("receiver")
            .and_then(|n| self.string(n, "receiver"))
            .or_else(|| parent.receiver.clone());
        let Some(receiver) = receiver else {
            self.error(node.line(), "the root route needs a `receiver`");
            return None;
        };
        if !receivers.iter().any(|r| r.name == receiver) && fields.contains_key("receiver") {
            self.error(
                fields["receiver"].line(),
                format!("receiver {receiver:?} is not defined in `receivers`"),
            );
        }
        let group_by = match fields.get("group_by") {
            Some(n) => {
                let names = self.strings(n, "group_by");
                if names.iter().any(|s| s == "...") {
                    if names.len() > 1 {
                        self.error(
                            n.line(),
                            "group_by '...' groups by every label and cannot be listed with others",
                        );
                    }
                    GroupBy::All
                } else {
                    for name in &names {
                        if !yaml::is_label_name(name) {
                            self.error(
                                n.line(),
                                format!("{name:?} in group_by is not a valid label name"),
                            );
                        }
                    }
                    GroupBy::Labels(names)
                }
            }
            None => parent.group_by.clone(),
        };
        let mut interval = |key: &str, inherited: Duration| match fields.get(key) {
            Some(n) => match self.duration(n, key) {
                Some(d) if d.is_zero() && key != "group_wait" => {
                    self.error(n.line(), format!("{key} must be more than 0"));
                    inherited
                }
                Some(d) => d,
                None => inherited,
            },
            None => inherited,
        };
        let group_wait = interval("group_wait", parent.group_wait);
        let group_interval = interval("group_interval", parent.group_interval);
        let repeat_interval = interval("repeat_interval", parent.repeat_interval);
        let matchers = self.matchers(&fields, ("matchers", "match", "match_re"));
        let continue_matching = fields
            .get("continue")
            .and_then(|n| self.bool(n, "continue"))
            .unwrap_or(false);
        if root && !matchers.is_empty() {
            self.error(
                node.line(),
                "the root route must not have matchers: it takes every alert",
            );
        }
        if root && continue_matching {
            self.error(node.line(), "the root route cannot have `continue`");
        }
        let inherited = Inherited {
            receiver: Some(receiver.clone()),
            group_by: group_by.clone(),
            group_wait,
            group_interval,
            repeat_interval,
        };
        let routes = match fields.get("routes") {
            Some(n) => self
                .list(n, "routes")
                .iter()
                .filter_map(|child| self.route(child, &inherited, false, receivers))
                .collect(),
            None => Vec::new(),
        };
        Some(Route {
            receiver,
            group_by,
            group_wait,
            group_interval,
            repeat_interval,
            matchers,
            continue_matching,
            routes,
        })
    }

    fn receiver(&mut self, node: &Node, global: &Global) -> Option<Receiver> {
        let mut allowed = vec!["name"];
        allowed.extend_from_slice(RECEIVER_TYPES);
        let fields = self.section(node, "a receiver", &allowed)?;
        let Some(name) = fields
            .get("name")
            .and_then(|n| self.string(n, "receiver name"))
        else {
            self.error(node.line(), "a receiver needs a `name`");
            return None;
        };
        let mut integrations = Vec::new();
        for kind in RECEIVER_TYPES {
            let Some(list) = fields.get(kind) else {
                continue;
            };
            for item in self.list(list, kind) {
                let integration = match *kind {
                    "email_configs" => self.email(item, global).map(Integration::Email),
                    "webhook_configs" => self.webhook(item).map(Integration::Webhook),
                    "slack_configs" => self.slack(item, global).map(Integration::Slack),
                    _ => self.pagerduty(item, global).map(Integration::PagerDuty),
                };
                integrations.extend(integration);
            }
        }
        Some(Receiver { name, integrations })
    }

    fn tls(&mut self, node: &Node, what: &str) -> TlsConfig {
        let Some(fields) = self.section(
            node,
            what,
            &["ca_file", "server_name", "insecure_skip_verify"],
        ) else {
            return TlsConfig::default();
        };
        TlsConfig {
            ca_file: fields
                .get("ca_file")
                .and_then(|n| self.string(n, "ca_file")),
            server_name: fields
                .get("server_name")
                .and_then(|n| self.string(n, "server_name")),
            insecure_skip_verify: fields
                .get("insecure_skip_verify")
                .and_then(|n| self.bool(n, "insecure_skip_verify"))
                .unwrap_or(false),
        }
    }

    fn http_config(&mut self, node: Option<&&Node>) -> HttpConfig {
        let Some(node) = node else {
            return HttpConfig::default();
        };
        let Some(fields) = self.section(
            node,
            "http_config",
            &["bearer_token", "authorization", "tls_config"],
        ) else {
            return HttpConfig::default();
        };
        let mut bearer_token = fields
            .get("bearer_token")
            .and_then(|n| self.string(n, "bearer_token"))
            .map(Secret);
        if let Some(auth) = fields.get("authorization")
            && let Some(a) = self.section(auth, "authorization", &["type", "credentials"])
        {
            let kind = a
                .get("type")
                .and_then(|n| self.string(n, "authorization type"))
                .unwrap_or_else(|| "Bearer".into());
            if kind != "Bearer" {
                self.error(
                    auth.line(),
                    format!("authorization type {kind:?} is not supported: only Bearer"),
                );
            }
            bearer_token = a
                .get("credentials")
                .and_then(|n| self.string(n, "credentials"))
                .map(Secret);
        }
        let tls = match fields.get("tls_config") {
            Some(n) => self.tls(n, "tls_config"),
            None => TlsConfig::default(),
        };
        HttpConfig { bearer_token, tls }
    }

    fn email(&mut self, node: &Node, g: &Global) -> Option<EmailConfig> {
        let fields = self.section(
            node,
            "an email_config",
            &[
                "to",
                "from",
                "smarthost",
                "hello",
                "auth_username",
                "auth_password",
                "auth_identity",
                "require_tls",
                "tls_config",
                "headers",
                "send_resolved",
            ],
        )?;
        let mut text = |key: &str, default: &str| {
            fields
                .get(key)
                .and_then(|n| self.string(n, key))
                .unwrap_or_else(|| default.to_owned())
        };
        let config = EmailConfig {
            to: text("to", ""),
            from: text("from", &g.smtp_from),
            smarthost: text("smarthost", &g.smtp_smarthost),
            hello: text(
                "hello",
                if g.smtp_hello.is_empty() {
                    "localhost"
                } else {
                    &g.smtp_hello
                },
            ),
            auth_username: text("auth_username", &g.smtp_auth_username),
            auth_password: Secret(text("auth_password", &g.smtp_auth_password.0)),
            auth_identity: text("auth_identity", &g.smtp_auth_identity),
            require_tls: fields
                .get("require_tls")
                .and_then(|n| self.bool(n, "require_tls"))
                .or(g.smtp_require_tls)
                .unwrap_or(true),
            tls: match fields.get("tls_config") {
                Some(n) => self.tls(n, "tls_config"),
                None => TlsConfig::default(),
            },
            headers: fields
                .get("headers")
                .map(|n| self.headers(n))
                .unwrap_or_default(),
            send_resolved: fields
                .get("send_resolved")
                .and_then(|n| self.bool(n, "send_resolved"))
                .unwrap_or(false),
        };
        let line = node.line();
        if config.to.is_empty() {
            self.error(line, "an email_config needs `to`");
        }
        if config.from.is_empty() {
            self.error(line, "an email_config needs `from` (or global smtp_from)");
        }
        if config.smarthost.is_empty() {
            self.error(
                line,
                "an email_config needs `smarthost` (or global smtp_smarthost)",
            );
        } else if split_host_port(&config.smarthost).is_none() {
            self.error(
                line,
                format!("smarthost {:?} must be host:port", config.smarthost),
            );
        }
        Some(config)
    }

    /// E-mail headers: any name, string values (`Subject` overrides the subject).
    fn headers(&mut self, node: &Node) -> Labels {
        let Node::Map { entries, .. } = node else {
            self.error(node.line(), "headers must be a mapping");
            return Labels::new();
        };
        entries
            .iter()
            .filter_map(|(k, _, v)| Some((k.clone(), self.string(v, "a header")?)))
            .collect()
    }

    fn webhook(&mut self, node: &Node) -> Option<WebhookConfig> {
        let fields = self.section(
            node,
            "a webhook_config",
            &[
                "url",
                "send_resolved",
                "max_alerts",
                "http_config",
                "timeout",
            ],
        )?;
        let Some(url) = fields.get("url").and_then(|n| self.url(n, "url")) else {
            if !fields.contains_key("url") {
                self.error(node.line(), "a webhook_config needs `url`");
            }
            return None;
        };
        let max_alerts = match fields.get("max_alerts") {
            Some(n) => {
                let text = self.string(n, "max_alerts")?;
                text.parse().unwrap_or_else(|_| {
                    self.error(
                        n.line(),
                        format!("max_alerts {text:?} is not a whole number"),
                    );
                    0
                })
            }
            None => 0,
        };
        Some(WebhookConfig {
            url,
            send_resolved: fields
                .get("send_resolved")
                .and_then(|n| self.bool(n, "send_resolved"))
                .unwrap_or(true),
            max_alerts,
            http: self.http_config(fields.get("http_config")),
            timeout: fields
                .get("timeout")
                .and_then(|n| self.duration(n, "timeout"))
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(10)),
        })
    }

    fn slack(&mut self, node: &Node, g: &Global) -> Option<SlackConfig> {
        let fields = self.section(
            node,
            "a slack_config",
            &[
                "api_url",
                "channel",
                "username",
                "send_resolved",
                "http_config",
            ],
        )?;
        let api_url = match fields.get("api_url") {
            Some(n) => self.url(n, "api_url")?,
            None if !g.slack_api_url.is_empty() => g.slack_api_url.clone(),
            None => {
                self.error(
                    node.line(),
                    "a slack_config needs `api_url` (or global slack_api_url)",
                );
                return None;
            }
        };
        let mut text = |key: &str| {
            fields
                .get(key)
                .and_then(|n| self.string(n, key))
                .unwrap_or_default()
        };
        Some(SlackConfig {
            api_url: Secret(api_url),
            channel: text("channel"),
            username: text("username"),
            send_resolved: fields
                .get("send_resolved")
                .and_then(|n| self.bool(n, "send_resolved"))
                .unwrap_or(false),
            http: self.http_config(fields.get("http_config")),
        })
    }

    fn pagerduty(&mut self, node: &Node, g: &Global) -> Option<PagerDutyConfig> {
        let fields = self.section(
            node,
            "a pagerduty_config",
            &[
                "routing_key",
                "service_key",
                "url",
                "send_resolved",
                "severity",
                "client",
                "client_url",
                "http_config",
            ],
        )?;
        let (routing_key, v1) = match (fields.get("routing_key"), fields.get("service_key")) {
            (Some(n), None) => (self.string(n, "routing_key")?, false),
            (None, Some(n)) => (self.string(n, "service_key")?, true),
            _ => {
                self.error(
                    node.line(),
                    "a pagerduty_config needs `routing_key` (Events API v2) or `service_key` (v1), one of them",
                );
                return None;
            }
        };
        let url = match fields.get("url") {
            Some(n) => self.url(n, "url")?,
            None if !g.pagerduty_url.is_empty() => g.pagerduty_url.clone(),
            None if v1 => {
                "https://events.pagerduty.com/generic/2010-04-15/create_event.json".into()
            }
            None => "https://events.pagerduty.com/v2/enqueue".into(),
        };
        let mut text = |key: &str, default: &str| {
            fields
                .get(key)
                .and_then(|n| self.string(n, key))
                .unwrap_or_else(|| default.to_owned())
        };
        let (severity, client, client_url) = (
            text("severity", "error"),
            text("client", "Spyglass"),
            text("client_url", ""),
        );
        if !["critical", "error", "warning", "info"].contains(&severity.as_str()) {
            self.error(
                node.line(),
                format!("severity {severity:?} must be critical, error, warning or info"),
            );
        }
        Some(PagerDutyConfig {
            routing_key: Secret(routing_key),
            v1,
            url,
            severity,
            client,
            client_url,
            send_resolved: fields
                .get("send_resolved")
                .and_then(|n| self.bool(n, "send_resolved"))
                .unwrap_or(true),
            http: self.http_config(fields.get("http_config")),
        })
    }

    fn inhibit_rule(&mut self, node: &Node) -> Option<InhibitRule> {
        let fields = self.section(
            node,
            "an inhibit rule",
            &[
                "source_matchers",
                "target_matchers",
                "source_match",
                "source_match_re",
                "target_match",
                "target_match_re",
                "equal",
            ],
        )?;
        let source = self.matchers(
            &fields,
            ("source_matchers", "source_match", "source_match_re"),
        );
        let target = self.matchers(
            &fields,
            ("target_matchers", "target_match", "target_match_re"),
        );
        let equal = match fields.get("equal") {
            Some(n) => self.strings(n, "equal"),
            None => Vec::new(),
        };
        Some(InhibitRule {
            source,
            target,
            equal,
        })
    }
}
