//! E-mail through lettre to a real SMTP server on loopback (aiosmtpd, `tests/smtp_server.py`):
//! recipients, the subject naming the root cause, the trace links, both parts; then with AUTH,
//! and with STARTTLS against a CA given as `tls_config.ca_file`; then a server that is down
//! until it comes back.

mod certs;
mod smtp;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use certs::certificates;
use serde_json::Value;
use smtp::{SmtpServer, free_port};
use spyglass_alerting::notify::{Alert, Dispatcher, Evidence, IncidentInfo, parse_config};
use spyglass_alerting::{Clock, Labels, SystemClock};

fn incident_alerts() -> Vec<Alert> {
    let now = SystemClock.now_unix_nanos();
    let alert = |pairs: &[(&str, &str)], trace: &str| Alert {
        labels: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("incident".to_string(), "inc-9".to_string())])
            .collect(),
        annotations: Labels::from([("summary".into(), "calls to payments fail".into())]),
        starts_at: now - 90_000_000_000,
        ends_at: now + 3_600_000_000_000,
        generator_url: String::new(),
        evidence: Evidence {
            group: "spyglass.builtin".into(),
            rule: pairs[0].1.into(),
            value: Some(0.5),
            threshold: Some(0.05),
            trace_ids: vec![trace.into()],
            incident: Some(IncidentInfo {
                id: "inc-9".into(),
                root: "payments".into(),
                affected: vec!["checkout".into(), "frontend".into()],
            }),
        },
    };
    vec![
        alert(
            &[
                ("alertname", "DependencyFailing"),
                ("client", "checkout"),
                ("server", "payments"),
            ],
            "11111111111111111111111111111111",
        ),
        alert(
            &[
                ("alertname", "DependencyFailing"),
                ("client", "frontend"),
                ("server", "payments"),
            ],
            "22222222222222222222222222222222",
        ),
    ]
}

fn dispatcher(
    email: &str,
    dir: &Path,
) -> (
    spyglass_alerting::notify::Notifier,
    tokio::task::JoinHandle<()>,
) {
    let yaml = format!(
        r#"
global:
  smtp_from: 'Spyglass <spyglass@example.org>'
route:
  receiver: oncall
  group_by: [incident]
  group_wait: 100ms
  group_interval: 1s
receivers:
  - name: oncall
    email_configs:
      - to: 'oncall@example.org, sre@example.org'
        headers: {{X-Team: payments}}
{email}
"#
    );
    let config = parse_config("notify.yml", &yaml).unwrap();
    let (notifier, dispatcher) = Dispatcher::new(
        config,
        dir,
        Arc::new(SystemClock),
        "http://spyglass.example:8080",
    )
    .unwrap();
    (
        notifier,
        tokio::spawn(dispatcher.run(std::future::pending())),
    )
}

fn check_message(m: &Value) {
    let mut rcpt: Vec<&str> = m["rcpt_tos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    rcpt.sort();
    assert_eq!(rcpt, ["oncall@example.org", "sre@example.org"]);
    assert_eq!(m["mail_from"], "spyglass@example.org");
    assert_eq!(
        m["subject"],
        "[FIRING:2] payments failing — checkout and frontend affected"
    );
    assert_eq!(m["headers"]["X-Team"], "payments");
    for part in ["text", "html"] {
        let body = m[part].as_str().unwrap();
        for id in ["1111", "2222"] {
            let link = format!("http://spyglass.example:8080/trace/{}", id.repeat(8));
            assert!(body.contains(&link), "{part} lacks {link}:\n{body}");
        }
        assert!(body.contains("payments"), "{part}");
        assert!(body.contains("/silences/new?matcher="), "{part}");
    }
    assert!(
        m["html"]
            .as_str()
            .unwrap()
            .contains("<a href=\"http://spyglass.example:8080/trace/")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_reaches_a_real_smtp_server_plain_with_auth_and_with_starttls() {
    // Plain.
    let server = SmtpServer::start("plain", None, None);
    let dir = tempfile::tempdir().unwrap();
    let (notifier, task) = dispatcher(
        &format!(
            "        smarthost: 127.0.0.1:{}\n        require_tls: false",
            server.port
        ),
        dir.path(),
    );
    notifier.send(incident_alerts()).await;
    let messages = server.wait_for(1).await;
    check_message(&messages[0]);
    assert_eq!(messages[0]["tls"], false);
    let row = notifier
        .ledger()
        .rows()
        .into_iter()
        .find(|r| r.outcome == "sent")
        .unwrap();
    assert!(
        row.reply.starts_with("250"),
        "the SMTP reply is in the ledger: {}",
        row.reply
    );
    assert_eq!(row.integration, "email[0]");
    task.abort();

    // AUTH (PLAIN or LOGIN) with the configured user.
    let server = SmtpServer::start("auth", None, None);
    let dir = tempfile::tempdir().unwrap();
    let (notifier, task) = dispatcher(
        &format!(
            "        smarthost: 127.0.0.1:{}\n        require_tls: false\n        auth_username: alerts\n        auth_password: s3cret",
            server.port
        ),
        dir.path(),
    );
    notifier.send(incident_alerts()).await;
    let messages = server.wait_for(1).await;
    check_message(&messages[0]);
    task.abort();

    // STARTTLS, the server's certificate signed by a CA given as ca_file, and AUTH.
    let certs = tempfile::tempdir().unwrap();
    let (ca, pair) = certificates(certs.path());
    let server = SmtpServer::start("starttls", Some(&pair), None);
    let dir = tempfile::tempdir().unwrap();
    let (notifier, task) = dispatcher(
        &format!(
            "        smarthost: 127.0.0.1:{}\n        require_tls: true\n        auth_username: alerts\n        auth_password: s3cret\n        tls_config: {{ca_file: '{}'}}",
            server.port,
            ca.display()
        ),
        dir.path(),
    );
    notifier.send(incident_alerts()).await;
    let messages = server.wait_for(1).await;
    check_message(&messages[0]);
    assert_eq!(messages[0]["tls"], true, "the message went over TLS");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_waits_for_a_server_that_is_down_and_arrives_once_it_is_back() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let (notifier, task) = dispatcher(
        &format!("        smarthost: 127.0.0.1:{port}\n        require_tls: false"),
        dir.path(),
    );
    notifier.send(incident_alerts()).await;
    for _ in 0..600 {
        if notifier
            .ledger()
            .rows()
            .iter()
            .filter(|r| r.outcome == "failed")
            .count()
            >= 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed: Vec<_> = notifier
        .ledger()
        .rows()
        .into_iter()
        .filter(|r| r.outcome == "failed")
        .collect();
    assert!(
        failed.len() >= 2,
        "attempts are recorded as failed: {failed:?}"
    );
    assert!(!failed[0].error.is_empty());
    let server = SmtpServer::start("plain", None, Some(port));
    let messages = server.wait_for(1).await;
    check_message(&messages[0]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(server.messages().len(), 1, "sent once, not once per retry");
    task.abort();
}
