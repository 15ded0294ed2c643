//! The dispatcher against real HTTP listeners: one notification per group in Alertmanager's
//! webhook, Slack and PagerDuty formats, no repeats before `repeat_interval`, exactly one
//! resolve, silences and inhibition, retries while a receiver is down, and a notification log
//! that stops a restarted dispatcher from paging again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use spyglass_alerting::notify::{
    Alert, Dispatcher, Evidence, IncidentInfo, Notifier, Silence, SilenceMatcher, parse_config,
};
use spyglass_alerting::{Clock, Labels, SystemClock};

/// What the listener received: path, Authorization header, body.
type Received = Arc<Mutex<Vec<(String, String, Value)>>>;

struct Listener {
    port: u16,
    received: Received,
    /// While set, the webhook (`/hook`) gets 503.
    down: Arc<AtomicBool>,
}

impl Listener {
    async fn start() -> Self {
        let received = Received::default();
        let down = Arc::new(AtomicBool::new(false));
        let app = axum::Router::new()
            .route(
                "/{kind}",
                post(
                    |State((received, down)): State<(Received, Arc<AtomicBool>)>,
                     Path(kind): Path<String>,
                     headers: HeaderMap,
                     body: axum::Json<Value>| async move {
                        if down.load(Ordering::SeqCst) && kind == "hook" {
                            return StatusCode::SERVICE_UNAVAILABLE;
                        }
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        received.lock().unwrap().push((kind, auth, body.0));
                        StatusCode::OK
                    },
                ),
            )
            .with_state((received.clone(), down.clone()));
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = socket.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(socket, app).await });
        Self {
            port,
            received,
            down,
        }
    }

    fn bodies(&self, kind: &str) -> Vec<Value> {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .filter(|(k, _, _)| k == kind)
            .map(|(_, _, b)| b.clone())
            .collect()
    }

    /// Waits (at most a generous minute) until `kind` has received `count` bodies.
    async fn wait_for(&self, kind: &str, count: usize) -> Vec<Value> {
        for _ in 0..600 {
            let bodies = self.bodies(kind);
            if bodies.len() >= count {
                return bodies;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{kind} received {} of {count}", self.bodies(kind).len());
    }
}

fn config(port: u16) -> String {
    format!(
        r#"
route:
  receiver: oncall
  group_by: [incident]
  group_wait: 200ms
  group_interval: 1s
  repeat_interval: 1h
inhibit_rules:
  - source_matchers: [alertname="ClusterDown"]
    target_matchers: [severity="warning"]
    equal: [cluster]
receivers:
  - name: oncall
    webhook_configs:
      - url: http://127.0.0.1:{port}/hook
        http_config: {{bearer_token: hook-token}}
    slack_configs:
      - api_url: http://127.0.0.1:{port}/slack
        channel: '#ops'
        send_resolved: true
    pagerduty_configs:
      - routing_key: pd-key
        url: http://127.0.0.1:{port}/pd
"#
    )
}

fn start(dir: &std::path::Path, port: u16) -> (Notifier, tokio::task::JoinHandle<()>) {
    let config = parse_config("notify.yml", &config(port)).unwrap();
    let (notifier, dispatcher) =
        Dispatcher::new(config, dir, Arc::new(SystemClock), "http://spyglass:8080").unwrap();
    let task = tokio::spawn(dispatcher.run(std::future::pending()));
    (notifier, task)
}

fn now() -> u64 {
    SystemClock.now_unix_nanos()
}

/// An alert of incident `inc-1`: payments failing, checkout and frontend affected.
fn alert(pairs: &[(&str, &str)], ends_at: u64) -> Alert {
    let mut labels: Labels = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.insert("incident".into(), "inc-1".into());
    Alert {
        labels,
        annotations: Labels::from([("summary".into(), "errors".into())]),
        starts_at: now() - 60_000_000_000,
        ends_at,
        generator_url: "http://spyglass:8080/rules".into(),
        evidence: Evidence {
            group: "spyglass.builtin".into(),
            rule: pairs[0].1.into(),
            value: Some(0.4),
            threshold: Some(0.05),
            trace_ids: vec!["0af7651916cd43dd8448eb211c80319c".into()],
            incident: Some(IncidentInfo {
                id: "inc-1".into(),
                root: "payments".into(),
                affected: vec!["checkout".into(), "frontend".into()],
            }),
        },
    }
}

fn incident(ends_at: u64) -> Vec<Alert> {
    vec![
        alert(
            &[("alertname", "ServiceErrors"), ("service", "payments")],
            ends_at,
        ),
        alert(
            &[
                ("alertname", "DependencyFailing"),
                ("client", "checkout"),
                ("server", "payments"),
            ],
            ends_at,
        ),
        alert(
            &[
                ("alertname", "DependencyFailing"),
                ("client", "frontend"),
                ("server", "payments"),
            ],
            ends_at,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_page_per_incident_in_each_format_then_exactly_one_resolve() {
    let listener = Listener::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (notifier, task) = start(dir.path(), listener.port);
    let firing_until = now() + 3_600_000_000_000;
    notifier.send(incident(firing_until)).await;

    let hook = listener.wait_for("hook", 1).await;
    let slack = listener.wait_for("slack", 1).await;
    let pd = listener.wait_for("pd", 1).await;
    let body = &hook[0];
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["receiver"], "oncall");
    assert_eq!(body["groupLabels"]["incident"], "inc-1");
    assert_eq!(body["commonLabels"]["incident"], "inc-1");
    assert_eq!(body["externalURL"], "http://spyglass:8080");
    assert_eq!(body["truncatedAlerts"], 0);
    let alerts = body["alerts"].as_array().unwrap();
    assert_eq!(
        alerts.len(),
        3,
        "the incident's three alerts in one notification"
    );
    for a in alerts {
        assert_eq!(a["status"], "firing");
        assert_eq!(a["annotations"]["spyglass_root"], "payments");
        assert_eq!(a["annotations"]["spyglass_affected"], "checkout,frontend");
        assert_eq!(a["fingerprint"].as_str().unwrap().len(), 16);
        assert!(a["startsAt"].as_str().unwrap().ends_with('Z'));
    }
    let auth: Vec<String> = listener
        .received
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _, _)| k == "hook")
        .map(|(_, a, _)| a.clone())
        .collect();
    assert_eq!(auth, ["Bearer hook-token"]);

    let subject = "[FIRING:3] payments failing — checkout and frontend affected";
    let attachment = &slack[0]["attachments"][0];
    assert_eq!(slack[0]["channel"], "#ops");
    assert_eq!(attachment["title"], subject);
    assert_eq!(attachment["color"], "danger");
    assert!(
        attachment["text"]
            .as_str()
            .unwrap()
            .contains("http://spyglass:8080/trace/0af7651916cd43dd8448eb211c80319c")
    );
    let event = &pd[0];
    assert_eq!(event["routing_key"], "pd-key");
    assert_eq!(event["event_action"], "trigger");
    assert_eq!(event["payload"]["summary"], subject);
    assert_eq!(event["payload"]["source"], "payments");
    let dedup_key = event["dedup_key"].as_str().unwrap().to_owned();
    assert_eq!(dedup_key.len(), 64, "SHA-256 of the group key, in hex");
    assert_eq!(
        event["links"][0]["href"],
        "http://spyglass:8080/trace/0af7651916cd43dd8448eb211c80319c"
    );

    // The evaluator sends the same alerts again every evaluation: nothing new, no page.
    for _ in 0..3 {
        notifier.send(incident(firing_until)).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert_eq!(
        listener.bodies("hook").len(),
        1,
        "no repeat before repeat_interval"
    );
    assert_eq!(listener.bodies("pd").len(), 1);

    // Resolved: one notice per integration that sends them, once.
    notifier.send(incident(now())).await;
    let hook = listener.wait_for("hook", 2).await;
    let slack = listener.wait_for("slack", 2).await;
    let pd = listener.wait_for("pd", 2).await;
    assert_eq!(hook[1]["status"], "resolved");
    assert!(
        hook[1]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["status"] == "resolved")
    );
    assert_eq!(slack[1]["attachments"][0]["color"], "good");
    assert_eq!(pd[1]["event_action"], "resolve");
    assert_eq!(
        pd[1]["dedup_key"],
        dedup_key.as_str(),
        "the resolve closes the same event"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for kind in ["hook", "slack", "pd"] {
        assert_eq!(listener.bodies(kind).len(), 2, "{kind}: one resolve only");
    }
    let sent = notifier
        .ledger()
        .rows()
        .iter()
        .filter(|r| r.outcome == "sent")
        .count();
    assert_eq!(sent, 6, "every delivery is in the ledger");
    let first = &notifier.ledger().rows()[0];
    assert_eq!(first.incident.as_deref(), Some("inc-1"));
    assert_eq!(first.subject, subject);
    assert!(first.reply.starts_with("HTTP 200"), "{}", first.reply);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_and_inhibition_leave_alerts_out() {
    let listener = Listener::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (notifier, task) = start(dir.path(), listener.port);
    let id = notifier
        .silences(|s, now| {
            s.put(
                Silence {
                    id: String::new(),
                    matchers: vec![SilenceMatcher {
                        name: "service".into(),
                        value: "check.*".into(),
                        is_regex: true,
                        is_equal: true,
                    }],
                    starts_at: now,
                    ends_at: now + 3_600_000_000_000,
                    updated_at: 0,
                    created_by: "oncall".into(),
                    comment: "deploying".into(),
                },
                now,
            )
        })
        .unwrap();
    let until = now() + 3_600_000_000_000;
    let plain = |pairs: &[(&str, &str)]| {
        let mut a = alert(pairs, until);
        a.labels.remove("incident");
        a.evidence.incident = None;
        a
    };
    notifier
        .send(vec![
            plain(&[("alertname", "ClusterDown"), ("cluster", "eu1")]),
            plain(&[
                ("alertname", "DiskFull"),
                ("cluster", "eu1"),
                ("severity", "warning"),
            ]),
            plain(&[
                ("alertname", "DiskFull"),
                ("cluster", "us1"),
                ("severity", "warning"),
            ]),
            plain(&[("alertname", "Errors"), ("service", "checkout")]),
        ])
        .await;
    let hook = listener.wait_for("hook", 1).await;
    let mut got: Vec<String> = hook[0]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{}/{}",
                a["labels"]["alertname"].as_str().unwrap(),
                a["labels"]["cluster"].as_str().unwrap_or("")
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        ["ClusterDown/eu1", "DiskFull/us1"],
        "eu1's warning is inhibited, checkout's alert silenced"
    );
    let silence = notifier.silences(|s, _| s.get(&id).cloned()).unwrap();
    assert_eq!(silence.created_by, "oncall");
    // Silences are saved: a new dispatcher on the same directory still has it.
    task.abort();
    let (again, task) = start(dir.path(), listener.port);
    assert!(again.silences(|s, _| s.get(&id).is_some()));
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_is_retried_and_does_not_block_the_others() {
    let listener = Listener::start().await;
    listener.down.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let (notifier, task) = start(dir.path(), listener.port);
    notifier.send(incident(now() + 3_600_000_000_000)).await;
    // The webhook fails while its listener answers 503; each attempt is a ledger row. Slack and
    // PagerDuty, the same receiver's other integrations, are not held up.
    listener.wait_for("slack", 1).await;
    listener.wait_for("pd", 1).await;
    for _ in 0..600 {
        let failed = notifier
            .ledger()
            .rows()
            .iter()
            .filter(|r| r.integration == "webhook[0]" && r.outcome == "failed")
            .count();
        if failed >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = notifier.ledger().rows();
    let failed: Vec<_> = rows
        .iter()
        .filter(|r| r.integration == "webhook[0]" && r.outcome == "failed")
        .collect();
    assert!(failed.len() >= 2, "{rows:?}");
    assert_eq!(failed[0].reply, "HTTP 503 Service Unavailable");
    assert!(listener.bodies("hook").is_empty());
    listener.down.store(false, Ordering::SeqCst);
    let hook = listener.wait_for("hook", 1).await;
    assert_eq!(hook[0]["alerts"].as_array().unwrap().len(), 3);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        listener.bodies("hook").len(),
        1,
        "delivered once, not once per retry"
    );
    assert_eq!(listener.bodies("slack").len(), 1);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_dispatcher_does_not_page_again_but_still_resolves() {
    let listener = Listener::start().await;
    let dir = tempfile::tempdir().unwrap();
    let until = now() + 3_600_000_000_000;
    let (notifier, task) = start(dir.path(), listener.port);
    notifier.send(incident(until)).await;
    listener.wait_for("hook", 1).await;
    listener.wait_for("pd", 1).await;
    listener.wait_for("slack", 1).await;
    // Give the workers a moment to write the notification log after their sends.
    tokio::time::sleep(Duration::from_millis(300)).await;
    task.abort();
    drop(notifier);

    let (notifier, task) = start(dir.path(), listener.port);
    notifier.send(incident(until)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        listener.bodies("hook").len(),
        1,
        "the saved notification log stops a second page"
    );
    notifier.send(incident(now())).await;
    let hook = listener.wait_for("hook", 2).await;
    assert_eq!(hook[1]["status"], "resolved");
    task.abort();
}
