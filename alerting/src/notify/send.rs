//! One delivery attempt per integration: e-mail through lettre, Alertmanager's webhook JSON
//! (version 4), a Slack message, a PagerDuty Events API v2 event, or a log line.

use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::config::{
    EmailConfig, HttpConfig, Integration, PagerDutyConfig, SlackConfig, TlsConfig, split_host_port,
};
use super::http::{Poster, chain};
use super::message::{Message, Notification, rfc3339};
use super::{Alert, Evidence};

/// How long one SMTP conversation may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an HTTP error body goes into the ledger.
const ERROR_BODY_BYTES: usize = 512;

/// A failed attempt: the server's reply, if it gave one, and what went wrong.
#[derive(Debug)]
pub struct Failure {
    pub reply: String,
    pub error: String,
}

impl Failure {
    fn new(error: impl ToString) -> Self {
        Self {
            reply: String::new(),
            error: error.to_string(),
        }
    }
}

/// An integration ready to send: HTTP ones hold their poster.
pub struct Sender {
    integration: Integration,
    poster: Option<Poster>,
}

impl Sender {
    pub fn new(integration: Integration) -> Result<Self, String> {
        let poster = match &integration {
            Integration::Webhook(c) => Some(Poster::new(&c.http.tls, c.timeout)?),
            Integration::Slack(c) => Some(Poster::new(&c.http.tls, Duration::from_secs(10))?),
            Integration::PagerDuty(c) => Some(Poster::new(&c.http.tls, Duration::from_secs(10))?),
            Integration::Log | Integration::Email(_) => None,
        };
        Ok(Self {
            integration,
            poster,
        })
    }

    /// Sends once; `Ok` holds the server's reply.
    pub async fn send(&self, n: &Notification, m: &Message) -> Result<String, Failure> {
        match (&self.integration, &self.poster) {
            (Integration::Log, _) => {
                tracing::warn!(receiver = %n.receiver, subject = %m.subject, body = %m.text, "notification");
                Ok("written to the log".into())
            }
            (Integration::Email(c), _) => email(c, m).await,
            (Integration::Webhook(c), Some(client)) => {
                let (body, _) = webhook_body(n, c.max_alerts);
                post(client, &c.url, &c.http, &body).await
            }
            (Integration::Slack(c), Some(client)) => {
                post(client, &c.api_url.0, &c.http, &slack_body(c, n, m)).await
            }
            (Integration::PagerDuty(c), Some(client)) => {
                post(client, &c.url, &c.http, &pagerduty_body(c, n, m)).await
            }
            (_, None) => Err(Failure::new("the integration has no HTTP poster")),
        }
    }
}

async fn post(
    poster: &Poster,
    url: &str,
    http: &HttpConfig,
    body: &Value,
) -> Result<String, Failure> {
    let bearer = http.bearer_token.as_ref().map(|t| t.0.as_str());
    let body = serde_json::to_vec(body).map_err(|e| Failure::new(format!("the JSON body: {e}")))?;
    let answer = poster.post(url, bearer, body).await.map_err(Failure::new)?;
    let reply = format!("HTTP {}", answer.status);
    if answer.status.is_success() {
        return Ok(reply);
    }
    let cut = answer
        .body
        .char_indices()
        .nth(ERROR_BODY_BYTES)
        .map_or(answer.body.len(), |(i, _)| i);
    Err(Failure {
        reply,
        error: format!(
            "the receiver answered {}: {}",
            answer.status,
            &answer.body[..cut]
        ),
    })
}

fn tls_parameters(host: &str, tls: &TlsConfig) -> Result<TlsParameters, Failure> {
    let domain = tls.server_name.clone().unwrap_or_else(|| host.to_owned());
    let mut builder = TlsParameters::builder(domain);
    if let Some(path) = &tls.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| Failure::new(format!("cannot read ca_file {path}: {e}")))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| Failure::new(format!("ca_file {path}: {}", chain(&e))))?;
        builder = builder.add_root_certificate(cert);
    }
    if tls.insecure_skip_verify {
        builder = builder.dangerous_accept_invalid_certs(true);
    }
    builder.build_rustls().map_err(|e| Failure::new(chain(&e)))
}

async fn email(c: &EmailConfig, m: &Message) -> Result<String, Failure> {
    let (host, port) = split_host_port(&c.smarthost)
        .ok_or_else(|| Failure::new(format!("smarthost {:?} is not host:port", c.smarthost)))?;
    // Port 465 speaks TLS from the first byte; elsewhere `require_tls` asks for STARTTLS.
    let tls = if port == 465 {
        Tls::Wrapper(tls_parameters(&host, &c.tls)?)
    } else if c.require_tls {
        Tls::Required(tls_parameters(&host, &c.tls)?)
    } else {
        Tls::None
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .tls(tls)
        .hello_name(ClientId::Domain(c.hello.clone()))
        .timeout(Some(SMTP_TIMEOUT));
    if !c.auth_username.is_empty() {
        transport = transport
            .credentials(Credentials::new(
                c.auth_username.clone(),
                c.auth_password.0.clone(),
            ))
            .authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
    let mail = mail(c, m)?;
    let response = transport.build().send(mail).await.map_err(|e| Failure {
        reply: e.status().map(|s| s.to_string()).unwrap_or_default(),
        error: chain(&e),
    })?;
    Ok(format!(
        "{} {}",
        response.code(),
        response.message().collect::<Vec<_>>().join(" ")
    ))
}

fn mail(c: &EmailConfig, m: &Message) -> Result<lettre::Message, Failure> {
    let from: Mailbox = c
        .from
        .parse()
        .map_err(|e| Failure::new(format!("from {:?}: {e}", c.from)))?;
    let mut builder = lettre::Message::builder().from(from);
    for to in c.to.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let to: Mailbox = to
            .parse()
            .map_err(|e| Failure::new(format!("to {to:?}: {e}")))?;
        builder = builder.to(to);
    }
    let mut subject = m.subject.clone();
    for (name, value) in &c.headers {
        if name.eq_ignore_ascii_case("subject") {
            subject = value.clone();
            continue;
        }
        if ["from", "to", "cc", "bcc"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            continue;
        }
        let header = HeaderName::new_from_ascii(name.clone())
            .map_err(|e| Failure::new(format!("header {name:?}: {e}")))?;
        builder = builder.raw_header(HeaderValue::new(header, value.clone()));
    }
    builder
        .subject(subject)
        .multipart(MultiPart::alternative_plain_html(
            m.text.clone(),
            m.html.clone(),
        ))
        .map_err(|e| Failure::new(format!("the e-mail could not be built: {e}")))
}

/// An alert as Alertmanager's webhook and API write it.
pub fn alert_json(a: &Alert, firing: bool) -> Value {
    let mut annotations = a.annotations.clone();
    evidence_annotations(&a.evidence, &mut annotations);
    json!({
        "status": if firing { "firing" } else { "resolved" },
        "labels": a.labels,
        "annotations": annotations,
        "startsAt": rfc3339(a.starts_at),
        "endsAt": if a.ends_at == 0 { "0001-01-01T00:00:00Z".to_owned() } else { rfc3339(a.ends_at) },
        "generatorURL": a.generator_url,
        "fingerprint": format!("{:016x}", a.fingerprint()),
    })
}

/// Spyglass's evidence, as annotations a webhook receiver can read.
fn evidence_annotations(e: &Evidence, annotations: &mut crate::state::Labels) {
    if !e.trace_ids.is_empty() {
        annotations.insert("spyglass_trace_ids".into(), e.trace_ids.join(","));
    }
    if let Some(i) = &e.incident {
        annotations.insert("spyglass_incident".into(), i.id.clone());
        annotations.insert("spyglass_root".into(), i.root.clone());
        annotations.insert("spyglass_affected".into(), i.affected.join(","));
    }
}

/// Alertmanager's webhook payload, version 4, with at most `max_alerts` alerts (0: all).
pub fn webhook_body(n: &Notification, max_alerts: usize) -> (Value, usize) {
    let all: Vec<(&Alert, bool)> = n
        .firing
        .iter()
        .map(|a| (a, true))
        .chain(n.resolved.iter().map(|a| (a, false)))
        .collect();
    let kept = if max_alerts == 0 {
        all.len()
    } else {
        all.len().min(max_alerts)
    };
    let truncated = all.len() - kept;
    let alerts: Vec<Value> = all[..kept]
        .iter()
        .map(|(a, firing)| alert_json(a, *firing))
        .collect();
    let body = json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": truncated,
        "status": n.status(),
        "receiver": n.receiver,
        "groupLabels": n.group_labels,
        "commonLabels": n.common_labels(),
        "commonAnnotations": n.common_annotations(),
        "externalURL": n.external_url.trim_end_matches('/'),
        "alerts": alerts,
    });
    (body, truncated)
}

/// A Slack incoming-webhook message: one attachment with the subject as its linked title.
fn slack_body(c: &SlackConfig, n: &Notification, m: &Message) -> Value {
    let link = n
        .alerts()
        .next()
        .map(|a| n.alert_url(a))
        .unwrap_or_else(|| n.external_url.clone());
    let mut body = json!({
        "attachments": [{
            "title": m.subject,
            "title_link": link,
            "text": m.text,
            "fallback": m.subject,
            "color": if n.firing.is_empty() { "good" } else { "danger" },
            "mrkdwn_in": ["text"],
        }],
    });
    if !c.channel.is_empty() {
        body["channel"] = json!(c.channel);
    }
    if !c.username.is_empty() {
        body["username"] = json!(c.username);
    }
    body
}

/// A PagerDuty Events API v2 event: `trigger` while anything fires, else `resolve`, with the
/// group key's SHA-256 as the dedup key so that the resolve closes the same incident.
fn pagerduty_body(c: &PagerDutyConfig, n: &Notification, m: &Message) -> Value {
    let dedup_key = format!("{:x}", Sha256::digest(n.group_key.as_bytes()));
    if c.v1 {
        // Events API v1: `service_key`, `event_type` and `incident_key`.
        let description: String = m.subject.chars().take(1024).collect();
        return json!({
            "service_key": c.routing_key.0,
            "incident_key": dedup_key,
            "event_type": if n.firing.is_empty() { "resolve" } else { "trigger" },
            "description": description,
            "client": c.client,
            "client_url": if c.client_url.is_empty() { n.external_url.clone() } else { c.client_url.clone() },
            "details": {"firing": m.text, "num_firing": n.firing.len(), "num_resolved": n.resolved.len()},
        });
    }
    if n.firing.is_empty() {
        return json!({
            "routing_key": c.routing_key.0,
            "dedup_key": dedup_key,
            "event_action": "resolve",
        });
    }
    let summary: String = m.subject.chars().take(1024).collect();
    let links: Vec<Value> = n
        .firing
        .iter()
        .flat_map(|a| a.evidence.trace_ids.iter().take(3))
        .take(3)
        .map(|id| json!({"href": n.trace_url(id), "text": format!("Trace {id}")}))
        .collect();
    let incident = n.incident();
    json!({
        "routing_key": c.routing_key.0,
        "dedup_key": dedup_key,
        "event_action": "trigger",
        "payload": {
            "summary": summary,
            "source": incident.map_or(c.client.as_str(), |i| i.root.as_str()),
            "severity": c.severity,
            "custom_details": {
                "firing": m.text,
                "num_firing": n.firing.len(),
                "num_resolved": n.resolved.len(),
                "root": incident.map(|i| i.root.clone()),
                "affected": incident.map(|i| i.affected.clone()),
            },
        },
        "client": c.client,
        "client_url": if c.client_url.is_empty() { n.external_url.clone() } else { c.client_url.clone() },
        "links": links,
    })
}
