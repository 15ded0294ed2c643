//! Notifications end to end: a real `spyglass serve`, services sending traces through the Rust
//! OpenTelemetry SDK, mail received by a real SMTP server (aiosmtpd), and Debian's `amtool`
//! as the client of the Alertmanager API.
//! - Calls from two services into a failing third: one mail naming the third as root and both
//!   callers as affected, whose trace links open; one resolve once the failures stop.
//! - kill -9 while the alert fires: no second mail after the restart, and the resolve arrives.
//! - `amtool alert query`, `silence add`, `silence query`, `silence expire` and `config show`.

mod common;
#[path = "../alerting/tests/smtp/mod.rs"]
mod smtp;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::alerts::LIMIT;
use common::shop::{ALERTING_CONFIG, Request, Shop, mailing_config};
use common::{Ports, get_json, spawn_serve_with, sql, start_ready, wait_ready};
use smtp::SmtpServer;

/// Spyglass mailing `smtp`, grouped by incident; a group waits `group_wait` before its first
/// mail, then 5 s between mails, and tells each resolve.
fn config(dir: &std::path::Path, smtp: &SmtpServer, group_wait: &str) -> String {
    mailing_config(
        dir,
        smtp.port,
        &[
            &format!("group_wait: {group_wait}"),
            "group_interval: 5s",
            "repeat_interval: 1h",
        ],
        &["send_resolved: true"],
    )
}

/// Payments fails every call from frontend and from checkout.
fn failing(shop: &mut Shop) {
    let fail_payments = Request {
        fail_at: Some(1),
        ..Request::default()
    };
    shop.send(&["frontend", "payments"], fail_payments);
    shop.send(&["checkout", "payments"], fail_payments);
}

fn healthy(shop: &mut Shop) {
    shop.send(&["frontend", "payments"], Request::default());
    shop.send(&["checkout", "payments"], Request::default());
}

fn subjects(mails: &[Value]) -> Vec<String> {
    mails
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Sends `traffic` every 100 ms until the SMTP server holds `count` mails; then the mails.
async fn drive_until_mail(
    shop: &mut Shop,
    smtp: &SmtpServer,
    count: usize,
    what: &str,
    traffic: fn(&mut Shop),
) -> Vec<Value> {
    let started = Instant::now();
    loop {
        traffic(shop);
        shop.flush();
        let mails = smtp.messages();
        if mails.len() >= count {
            return mails;
        }
        assert!(
            started.elapsed() < LIMIT,
            "{what}: not within {LIMIT:?}; mails: {:?}",
            subjects(&mails)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `traffic` for `how_long`.
async fn keep_sending(shop: &mut Shop, how_long: Duration, traffic: fn(&mut Shop)) {
    let started = Instant::now();
    while started.elapsed() < how_long {
        traffic(shop);
        shop.flush();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The trace ids a mail links to.
fn linked_traces(text: &str) -> Vec<String> {
    text.split("/trace/")
        .skip(1)
        .map(|rest| rest.chars().take_while(char::is_ascii_hexdigit).collect())
        .filter(|id: &String| id.len() == 32)
        .collect()
}

/// Checks the firing mail: subject, root and callers, and trace links that open.
async fn check_firing_mail(mail: &Value, ui: u16) {
    let subject = mail["subject"].as_str().unwrap();
    assert!(subject.starts_with("[FIRING:"), "{subject}");
    assert!(
        subject.contains("payments failing") && subject.contains("checkout and frontend affected"),
        "{subject}"
    );
    assert_eq!(mail["rcpt_tos"], json!(["oncall@example.com"]));
    let text = mail["text"].as_str().unwrap();
    let traces = linked_traces(text);
    assert!(!traces.is_empty(), "no trace link in:\n{text}");
    for id in traces {
        let (status, trace) = get_json(ui, &format!("/api/v1/traces/{id}")).await;
        assert_eq!(status, 200, "trace {id} from the mail: {trace}");
        let spans = trace["spans"].as_array().map_or(0, Vec::len);
        assert!(spans > 0, "trace {id} has no spans: {trace}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mail_per_incident_names_the_root_then_one_resolve() {
    let smtp = SmtpServer::start("plain", None, None);
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &smtp, "8s");
    let (server, ports) = start_ready(dir.path(), |ports| {
        spawn_serve_with(dir.path(), ports, &config, &[])
    })
    .await;
    let _server = KillOnDrop(server);
    let mut shop = Shop::new(ports.grpc);
    keep_sending(&mut shop, Duration::from_secs(2), healthy).await;

    let mails = drive_until_mail(&mut shop, &smtp, 1, "the page", failing).await;
    check_firing_mail(&mails[0], ports.ui).await;
    // The failures go on: the group has been told, so nothing more is sent.
    keep_sending(&mut shop, Duration::from_secs(12), failing).await;
    assert_eq!(
        subjects(&smtp.messages()).len(),
        1,
        "{:?}",
        subjects(&smtp.messages())
    );

    let mails = drive_until_mail(&mut shop, &smtp, 2, "the resolve", healthy).await;
    keep_sending(&mut shop, Duration::from_secs(12), healthy).await;
    let all = subjects(&smtp.messages());
    assert_eq!(all.len(), 2, "{all:?}");
    let resolved = mails[1]["subject"].as_str().unwrap();
    assert!(resolved.starts_with("[RESOLVED]"), "{all:?}");
    assert!(resolved.contains("payments"), "{resolved}");

    // The ledger holds both, sent at the first attempt.
    let answer = sql(
        ports.ui,
        "SELECT status, outcome, receiver, integration FROM notifications ORDER BY time_unix_nano",
    )
    .await;
    assert_eq!(
        answer["rows"],
        json!([
            {"status": "firing", "outcome": "sent", "receiver": "oncall", "integration": "email[0]"},
            {"status": "resolved", "outcome": "sent", "receiver": "oncall", "integration": "email[0]"},
        ]),
        "{answer:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_nothing_is_sent_twice_and_the_resolve_arrives() {
    let smtp = SmtpServer::start("plain", None, None);
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &smtp, "3s");
    let (server, ports) = start_ready(dir.path(), |ports| {
        spawn_serve_with(dir.path(), ports, &config, &[])
    })
    .await;
    let mut server = KillOnDrop(server);
    let mut shop = Shop::new(ports.grpc);
    keep_sending(&mut shop, Duration::from_secs(2), healthy).await;
    let mails = drive_until_mail(&mut shop, &smtp, 1, "the page", failing).await;
    check_firing_mail(&mails[0], ports.ui).await;

    server.0.kill().unwrap(); // SIGKILL
    server.0.wait().unwrap();
    let mut server = KillOnDrop(spawn_serve_with(dir.path(), ports, &config, &[]));
    wait_ready(ports.ui, &mut server.0)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "not ready after the restart: {}",
                common::serve_stderr(dir.path())
            )
        });
    let mut shop = Shop::new(ports.grpc);
    // Well past group_wait and several group intervals, the alert still firing.
    keep_sending(&mut shop, Duration::from_secs(15), failing).await;
    let all = subjects(&smtp.messages());
    assert_eq!(all.len(), 1, "sent again after the restart: {all:?}");

    let mails = drive_until_mail(&mut shop, &smtp, 2, "the resolve", healthy).await;
    let resolved = mails[1]["subject"].as_str().unwrap();
    assert!(resolved.starts_with("[RESOLVED]"), "{:?}", subjects(&mails));
}

/// A `spyglass serve` that is killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `amtool` against the server's Alertmanager API; answers its standard output.
fn amtool(ui: u16, args: &[&str]) -> String {
    let output = Command::new("amtool")
        .arg(format!(
            "--alertmanager.url=http://127.0.0.1:{ui}/alertmanager"
        ))
        .args(args)
        .output()
        .expect("amtool is needed: ./test.sh installs prometheus-alertmanager");
    assert!(
        output.status.success(),
        "amtool {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

async fn post(ui: u16, path: &str, body: &Value) -> (u16, Value) {
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{ui}{path}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amtool_queries_alerts_and_adds_queries_and_expires_silences() {
    let dir = tempfile::tempdir().unwrap();
    let (server, ports): (_, Ports) = start_ready(dir.path(), |ports| {
        spawn_serve_with(dir.path(), ports, ALERTING_CONFIG, &[])
    })
    .await;
    let _server = KillOnDrop(server);
    let ui = ports.ui;
    // Alerts as a Prometheus posts them.
    let alerts = json!([
        {"labels": {"alertname": "DiskFull", "instance": "db1", "severity": "page"},
         "annotations": {"summary": "db1's disk is 97% full"},
         "generatorURL": "http://prometheus:9090/graph"},
        {"labels": {"alertname": "HighLoad", "instance": "web1"},
         "annotations": {"summary": "web1 is busy"}},
    ]);
    let (status, body) = post(ui, "/alertmanager/api/v2/alerts", &alerts).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        ui,
        "/alertmanager/api/v2/alerts",
        &json!([{"labels": {"bad-name": "x"}}]),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.as_str().unwrap().contains("bad-name"), "{body}");
    // The valid alerts of a batch are taken even when one is refused, as Alertmanager does.
    let (status, _) = post(
        ui,
        "/alertmanager/api/v2/alerts",
        &json!([{"labels": {"alertname": "QueueDeep", "queue": "mail"}}, {"labels": {}}]),
    )
    .await;
    assert_eq!(status, 400);

    // amtool's own alert, its unset end sent as Go's zero time.
    amtool(
        ui,
        &[
            "alert",
            "add",
            "ManualPage",
            "instance=ops1",
            "--annotation=summary=paged by hand",
        ],
    );
    let listed = amtool(ui, &["alert", "query"]);
    assert!(
        listed.contains("ManualPage") && listed.contains("paged by hand"),
        "{listed}"
    );
    assert!(
        listed.contains("DiskFull") && listed.contains("db1's disk is 97% full"),
        "{listed}"
    );
    assert!(listed.contains("HighLoad"), "{listed}");
    let one = amtool(ui, &["alert", "query", "instance=db1"]);
    assert!(
        one.contains("DiskFull") && !one.contains("HighLoad"),
        "{one}"
    );

    let id = amtool(
        ui,
        &[
            "silence",
            "add",
            "alertname=DiskFull",
            "instance=db1",
            "--author=oncall",
            "--comment=disk being replaced",
            "--duration=2h",
        ],
    )
    .trim()
    .to_owned();
    assert_eq!(id.len(), 36, "a silence id: {id:?}");
    let silences = amtool(ui, &["silence", "query"]);
    assert!(
        silences.contains(&id)
            && silences.contains("alertname=\"DiskFull\"")
            && silences.contains("oncall")
            && silences.contains("disk being replaced"),
        "{silences}"
    );
    // The silenced alert leaves the active ones; it shows among the silenced.
    let active = amtool(ui, &["alert", "query"]);
    assert!(
        !active.contains("DiskFull") && active.contains("HighLoad"),
        "{active}"
    );
    let silenced = amtool(ui, &["alert", "query", "--silenced"]);
    assert!(silenced.contains("DiskFull"), "{silenced}");
    let (_, groups) = get_json(ui, "/alertmanager/api/v2/alerts?silenced=true&active=false").await;
    assert_eq!(groups[0]["status"]["silencedBy"], json!([id]), "{groups:#}");

    amtool(ui, &["silence", "expire", &id]);
    let silences = amtool(ui, &["silence", "query"]);
    assert!(!silences.contains(&id), "{silences}");
    let expired = amtool(ui, &["silence", "query", "--expired"]);
    assert!(expired.contains(&id), "{expired}");
    let active = amtool(ui, &["alert", "query"]);
    assert!(
        active.contains("DiskFull") && active.contains("QueueDeep"),
        "{active}"
    );

    // The config, as amtool shows it; and a silence for an unknown id.
    let shown = amtool(ui, &["config", "show"]);
    assert!(shown.contains("receiver: log"), "{shown}");
    let (status, _) = get_json(ui, "/alertmanager/api/v2/silence/no-such-id").await;
    assert_eq!(status, 404);
}
