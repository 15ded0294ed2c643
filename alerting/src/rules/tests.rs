use super::*;

/// A rule file as people write them for Prometheus (several groups, `for`, templates, a
/// recording rule, the same alert twice with different severities).
const PROMETHEUS_FILE: &str = r#"
groups:
  - name: http
    interval: 1m
    rules:
      - record: job:http_requests:rate5m
        expr: sum by (job) (rate(http_requests_total[5m]))
      - alert: HighErrorRate
        expr: |
          sum by (job) (rate(http_requests_total{code=~"5.."}[5m]))
            / sum by (job) (rate(http_requests_total[5m])) > 0.05
        for: 10m
        keep_firing_for: 5m
        labels:
          severity: warning
        annotations:
          summary: "High error rate on {{ $labels.job }}"
          description: "{{ $value | humanizePercentage }} of requests fail."
      - alert: HighErrorRate
        expr: job:http_errors:ratio5m > 0.2
        for: 5m
        labels:
          severity: critical
  - name: instances
    limit: 10
    rules:
      - alert: InstanceDown
        expr: up == 0
        for: 5m
        annotations:
          summary: "Instance {{ $labels.instance }} down"
          runbook_url: "{{ $externalURL }}/runbooks/down"
"#;

fn errors(text: &str) -> Vec<RuleError> {
    parse("rules.yml", text).expect_err("the file has a mistake")
}

fn one_error(text: &str) -> RuleError {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.into_iter().next().unwrap()
}

#[test]
fn a_prometheus_rule_file_loads_unchanged() {
    let groups = parse("rules.yml", PROMETHEUS_FILE).unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].interval, Some(Duration::from_secs(60)));
    assert_eq!(groups[0].rules.len(), 3);
    assert_eq!(groups[0].rules[0].kind, RuleKind::Recording);
    let high = &groups[0].rules[1];
    assert_eq!(high.for_duration, Duration::from_secs(600));
    assert_eq!(high.keep_firing_for, Duration::from_secs(300));
    assert_eq!(high.labels["severity"], "warning");
    assert_eq!(high.line, 8);
    assert!(matches!(high.expr, Expr::PromQl(_)));
    assert_eq!(groups[1].limit, 10);
}

#[test]
fn sql_rules_load() {
    let groups = parse(
        "r.yml",
        "groups:\n- name: g\n  rules:\n  - alert: SlowCheckout\n    sql: SELECT service_name AS service, count(*) AS value FROM spans GROUP BY service_name\n",
    )
    .unwrap();
    assert!(matches!(groups[0].rules[0].expr, Expr::Sql(_)));
}

#[test]
fn each_kind_of_mistake_is_reported_with_its_line() {
    let cases: [(&str, usize, &str); 9] = [
        ("groups:\n  - name: a\n    rules: [\n", 4, "invalid YAML"),
        (
            "groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: up\n        severity: page\n",
            6,
            "unknown field \"severity\"",
        ),
        (
            "groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: up\n        for: 5 minutes\n",
            6,
            "bad `for`",
        ),
        (
            "groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: up\n        annotations:\n          summary: \"{{ $labels.job \"\n",
            7,
            "bad template",
        ),
        (
            "groups:\n  - name: a\n    rules:\n      - alert: A\n        sql: SELEC 1\n",
            5,
            "bad `sql`",
        ),
        (
            "groups:\n  - name: a\n    rules:\n      - alert: A\n        sql: DELETE FROM spans\n",
            5,
            "read-only",
        ),
        (
            "groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: up\n      - alert: A\n        expr: up == 0\n",
            6,
            "repeated",
        ),
        (
            "groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: sum(rate(x[5m]) by\n",
            5,
            "bad PromQL",
        ),
        (
            "groups:\n  - name: a\n    interval: often\n    rules: []\n",
            3,
            "bad group interval",
        ),
    ];
    for (text, line, message) in cases {
        let error = one_error(text);
        assert!(
            error.message.contains(message),
            "{text:?}: expected {message:?}, got {error}"
        );
        // A YAML syntax error is found where the parser gives up: at or after the bad line.
        if message == "invalid YAML" {
            assert!(error.line >= line - 1, "{error}");
        } else {
            assert_eq!(error.line, line, "{text:?}: {error}");
        }
        assert!(
            error
                .to_string()
                .starts_with(&format!("rules.yml:{}: ", error.line))
        );
    }
}

#[test]
fn every_mistake_of_a_file_is_reported() {
    let text = "groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: up\n        for: x\n      - alert: B\n        sql: DROP TABLE spans\n  - name: a\n    rules: []\n";
    let lines: Vec<usize> = errors(text).iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![6, 8, 9]);
}

#[test]
fn the_same_alert_with_other_labels_is_not_a_duplicate() {
    let text = "groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: up\n        labels: {severity: warning}\n      - alert: A\n        expr: up\n        labels: {severity: critical}\n";
    assert_eq!(parse("r.yml", text).unwrap()[0].rules.len(), 2);
}

#[test]
fn recording_rules_refuse_alert_fields() {
    let error = one_error(
        "groups:\n  - name: a\n    rules:\n      - record: x:y\n        expr: up\n        for: 5m\n",
    );
    assert!(error.message.contains("not recording rules"), "{error}");
}

#[test]
fn globs_expand_and_a_glob_that_matches_nothing_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yml"), PROMETHEUS_FILE).unwrap();
    std::fs::write(
        dir.path().join("b.yml"),
        "groups:\n  - name: other\n    rules: []\n",
    )
    .unwrap();
    let all = format!("{}/*.yml", dir.path().display());
    let groups = load(&[all]).unwrap();
    assert_eq!(groups.len(), 3);
    let none = format!("{}/*.yaml", dir.path().display());
    let errors = load(&[none]).unwrap_err();
    assert!(errors[0].message.contains("no file matches"));
    let missing = format!("{}/missing.yml", dir.path().display());
    assert!(
        load(&[missing]).unwrap_err()[0]
            .message
            .contains("cannot read")
    );
}
