//! The notify config: Alertmanager's documented files load unchanged, unsupported fields are
//! refused by name, and alerts take the routes Alertmanager's documentation says they take.

use std::time::Duration;

use spyglass_alerting::Labels;
use spyglass_alerting::notify::config::{GroupBy, Integration};
use spyglass_alerting::notify::{NotifyConfig, parse_config, route};

fn data(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// An alert's labels as written in a table row.
type Pairs = &'static [(&'static str, &'static str)];

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The receivers an alert reaches, in route order, and each route's group labels.
fn receivers(config: &NotifyConfig, alert: &Labels) -> Vec<(String, Labels)> {
    route::routes(&config.route, alert)
        .iter()
        .map(|path| {
            let r = route::at(&config.route, path);
            (r.receiver.clone(), route::group_labels(r, alert))
        })
        .collect()
}

/// Rows are (alert labels, the receivers that get it).
#[test]
fn alertmanagers_example_config_loads_and_routes_as_documented() {
    let config = parse_config("simple.yml", &data("alertmanager-simple.yml")).unwrap();
    assert_eq!(config.receivers.len(), 5);
    assert_eq!(config.route.repeat_interval, Duration::from_secs(3 * 3600));
    let pager = config.receiver("team-X-pager").unwrap();
    let kinds: Vec<_> = pager.integrations.iter().map(Integration::kind).collect();
    assert_eq!(kinds, ["email", "pagerduty"]);
    let Integration::Email(email) = &pager.integrations[0] else {
        unreachable!()
    };
    assert_eq!(email.smarthost, "localhost:25", "global smtp_smarthost");
    assert_eq!(email.auth_username, "alertmanager");
    assert!(
        !format!("{email:?}").contains("password\""),
        "the password is not in Debug: {email:?}"
    );
    assert!(
        !email.send_resolved,
        "e-mail sends no resolved notices by default"
    );

    let table: &[(Pairs, &[&str])] = &[
        (
            &[("service", "foo1"), ("severity", "warning")],
            &["team-X-mails"],
        ),
        (
            &[("service", "baz"), ("severity", "critical")],
            &["team-X-pager"],
        ),
        (&[("service", "foo12")], &["team-X-mails"]), // regexes match whole values: the root
        (
            &[("service", "files"), ("severity", "critical")],
            &["team-Y-pager"],
        ),
        (&[("service", "files")], &["team-Y-mails"]),
        (
            &[("service", "database"), ("owner", "team-X")],
            &["team-X-pager"],
        ),
        (
            &[("service", "database"), ("owner", "team-Y")],
            &["team-Y-pager"],
        ),
        (
            &[("service", "database"), ("owner", "team-Z")],
            &["team-DB-pager"],
        ),
        (&[("service", "unknown")], &["team-X-mails"]),
    ];
    for (alert, expected) in table {
        let got: Vec<String> = receivers(&config, &labels(alert))
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        assert_eq!(got, *expected, "{alert:?}");
    }
    // The database route's children inherit its group_by.
    let alert = labels(&[
        ("alertname", "DbDown"),
        ("service", "database"),
        ("owner", "team-X"),
        ("database", "orders"),
        ("cluster", "eu1"),
        ("instance", "db-3"),
    ]);
    let (_, group) = &receivers(&config, &alert)[0];
    assert_eq!(
        group,
        &labels(&[
            ("alertname", "DbDown"),
            ("cluster", "eu1"),
            ("database", "orders")
        ])
    );
}

#[test]
fn continue_sends_to_every_matching_route() {
    let config = parse_config("receivers.yml", &data("alertmanager-receivers.yml")).unwrap();
    let alert = labels(&[
        ("alertname", "Down"),
        ("team", "frontend"),
        ("severity", "page"),
    ]);
    let got = receivers(&config, &alert);
    assert_eq!(
        got.len(),
        1,
        "the frontend route continues, but no later route matches"
    );
    assert_eq!(got[0].0, "frontend-pager");
    assert_eq!(got[0].1, labels(&[("alertname", "Down")]));

    // `continue: true` on a first match, and a second matching sibling.
    let yaml = r#"
route:
  receiver: all
  routes:
    - matchers: [severity="critical"]
      receiver: pager
      continue: true
    - matchers: [team="db"]
      receiver: db
    - matchers: [team=~".+"]
      receiver: never
receivers: [{name: all}, {name: pager}, {name: db}, {name: never}]
"#;
    let config = parse_config("continue.yml", yaml).unwrap();
    let got: Vec<String> = receivers(
        &config,
        &labels(&[("severity", "critical"), ("team", "db")]),
    )
    .into_iter()
    .map(|(r, _)| r)
    .collect();
    assert_eq!(
        got,
        ["pager", "db"],
        "the first match without continue ends the walk"
    );
    let got = receivers(&config, &labels(&[("team", "web")]));
    assert_eq!(got[0].0, "never");
    let everything = receivers(&config, &labels(&[("x", "1")]));
    assert_eq!(
        everything[0].0, "all",
        "no child matches: the root takes it"
    );
    assert_eq!(config.route.group_by, GroupBy::Labels(Vec::new()));
}

#[test]
fn the_receivers_reference_loads_with_its_defaults() {
    let config = parse_config("receivers.yml", &data("alertmanager-receivers.yml")).unwrap();
    assert_eq!(config.route.group_by, GroupBy::All);
    assert_eq!(config.inhibit_rules.len(), 1);
    let hooks = config.receiver("backend-hooks").unwrap();
    let Integration::Webhook(webhook) = &hooks.integrations[1] else {
        panic!("{:?}", hooks.integrations)
    };
    assert!(
        webhook.send_resolved,
        "webhooks send resolved notices by default"
    );
    assert_eq!(webhook.max_alerts, 10);
    assert_eq!(
        webhook.http.bearer_token.as_ref().map(|t| t.0.as_str()),
        Some("s3cr3t")
    );
    let Integration::Email(email) = &hooks.integrations[0] else {
        unreachable!()
    };
    assert_eq!(email.smarthost, "smtp.example.org:587");
    assert!(email.require_tls);
    assert_eq!(email.headers.get("Reply-To").unwrap(), "sre@example.org");
    let pager = config.receiver("frontend-pager").unwrap();
    let Some(Integration::Slack(slack)) = pager
        .integrations
        .iter()
        .find(|i| matches!(i, Integration::Slack(_)))
    else {
        panic!("{:?}", pager.integrations)
    };
    assert_eq!(slack.channel, "#frontend");
    assert!(slack.api_url.0.starts_with("https://hooks.slack.com/"));
}

#[test]
fn unsupported_and_wrong_fields_are_refused_by_name_and_line() {
    let cases = [
        (
            "route: {receiver: a}\nreceivers:\n  - name: a\n    opsgenie_configs: [{api_key: x}]\n",
            "4: opsgenie_configs in a receiver is not supported",
        ),
        (
            "route: {receiver: a}\ntime_intervals: []\nreceivers: [{name: a}]\n",
            "2: time_intervals in the notify config is not supported",
        ),
        (
            "route: {receiver: a}\nreceivers:\n  - name: a\n    email_configs:\n      - to: x@y\n        from: a@b\n        smarthost: h:25\n        html: '{{ template \"x\" }}'\n",
            "8: html in an email_config is not supported",
        ),
        (
            "route: {receiver: a, group_wiat: 1m}\nreceivers: [{name: a}]\n",
            "1: unknown field \"group_wiat\" in the root route",
        ),
        (
            "route: {receiver: b}\nreceivers: [{name: a}]\n",
            "1: receiver \"b\" is not defined",
        ),
        (
            "route:\n  receiver: a\n  routes:\n    - matchers: ['severity=~\"(\"']\nreceivers: [{name: a}]\n",
            "4: bad matcher",
        ),
        (
            "route: {receiver: a, group_interval: 5 minutes}\nreceivers: [{name: a}]\n",
            "1: bad group_interval",
        ),
        (
            "route: {receiver: a}\nreceivers:\n  - name: a\n    webhook_configs: [{url: 'ftp://x'}]\n",
            "4: url must be an http or https URL",
        ),
        (
            "route: {receiver: a}\nreceivers:\n  - name: a\n    email_configs: [{to: x@y}]\n",
            "needs `from` (or global smtp_from)",
        ),
    ];
    for (yaml, expected) in cases {
        let errors = parse_config("f.yml", yaml).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|e| e.contains(expected)),
            "{yaml}\nexpected {expected:?} in {text:?}"
        );
    }
}
