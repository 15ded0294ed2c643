//! What a notification says: a subject that names the root cause, and a plain-text and an HTML
//! body with the evidence of every alert (rule, value, threshold, since when, example traces,
//! a link to the alert and one that opens a silence for it).

use std::fmt::Write as _;

use spyglass_query::model::civil_from_days;

use super::{Alert, IncidentInfo};
use crate::state::Labels;

/// One notification of one group to one integration.
#[derive(Clone, Debug)]
pub struct Notification {
    /// Shared by all its delivery attempts.
    pub id: String,
    pub receiver: String,
    pub group_key: String,
    pub group_labels: Labels,
    pub firing: Vec<Alert>,
    pub resolved: Vec<Alert>,
    /// Where the UI is, for links.
    pub external_url: String,
}

impl Notification {
    /// `firing` while any alert fires, else `resolved`.
    pub fn status(&self) -> &'static str {
        if self.firing.is_empty() {
            "resolved"
        } else {
            "firing"
        }
    }

    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.firing.iter().chain(&self.resolved)
    }

    /// The incident its alerts belong to (the first that names one).
    pub fn incident(&self) -> Option<&IncidentInfo> {
        self.alerts().find_map(|a| a.evidence.incident.as_ref())
    }

    /// Labels that every alert shares.
    pub fn common_labels(&self) -> Labels {
        common(self.alerts().map(|a| &a.labels))
    }

    /// Annotations that every alert shares.
    pub fn common_annotations(&self) -> Labels {
        common(self.alerts().map(|a| &a.annotations))
    }

    /// The link to a trace in the UI.
    pub fn trace_url(&self, trace_id: &str) -> String {
        format!("{}/trace/{trace_id}", self.base())
    }

    /// The link to an alert on the alerts page.
    pub fn alert_url(&self, alert: &Alert) -> String {
        match &alert.evidence.incident {
            Some(i) => format!("{}/alerts?incident={}", self.base(), encode(&i.id)),
            None => format!("{}/alerts?rule={}", self.base(), encode(alert.name())),
        }
    }

    /// The link that opens the silence form filled with the alert's labels.
    pub fn silence_url(&self, alert: &Alert) -> String {
        let matchers: Vec<String> = alert
            .labels
            .iter()
            .map(|(k, v)| format!("matcher={}", encode(&format!("{k}={v:?}"))))
            .collect();
        format!("{}/silences/new?{}", self.base(), matchers.join("&"))
    }

    fn base(&self) -> &str {
        self.external_url.trim_end_matches('/')
    }
}

/// The pairs that every map of `maps` holds.
fn common<'a>(mut maps: impl Iterator<Item = &'a Labels>) -> Labels {
    let mut out = maps.next().cloned().unwrap_or_default();
    for m in maps {
        out.retain(|k, v| m.get(k) == Some(v));
    }
    out
}

/// A rendered notification.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The subject: `[FIRING:3] payments failing — checkout and frontend affected` for an
/// incident; `[FIRING:2] HighLatency (job="api")` (alert name and group labels) otherwise.
pub fn subject(n: &Notification) -> String {
    let head = match n.status() {
        "firing" => format!("[FIRING:{}]", n.firing.len()),
        _ => "[RESOLVED]".to_owned(),
    };
    if let Some(incident) = n.incident() {
        let affected = &incident.affected;
        return if affected.is_empty() {
            format!("{head} {} failing", incident.root)
        } else {
            format!(
                "{head} {} failing — {} affected",
                incident.root,
                list(affected, 4)
            )
        };
    }
    let names: std::collections::BTreeSet<&str> = n.alerts().map(Alert::name).collect();
    let name = names.into_iter().collect::<Vec<_>>().join(", ");
    let labels: Vec<String> = n
        .group_labels
        .iter()
        .filter(|(k, _)| *k != "alertname")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if labels.is_empty() {
        format!("{head} {name}")
    } else {
        format!("{head} {name} ({})", labels.join(", "))
    }
}

/// `a`, `a and b`, `a, b and c`, `a, b, c and 2 more`.
fn list(items: &[String], most: usize) -> String {
    match items.len() {
        0 => String::new(),
        1 => items[0].clone(),
        n if n <= most => format!("{} and {}", items[..n - 1].join(", "), items[n - 1]),
        n => format!(
            "{} and {} more",
            items[..most - 1].join(", "),
            n - (most - 1)
        ),
    }
}

pub fn render(n: &Notification) -> Message {
    Message {
        subject: subject(n),
        text: text(n),
        html: html(n),
    }
}

fn text(n: &Notification) -> String {
    let mut out = String::new();
    if let Some(i) = n.incident() {
        let _ = writeln!(out, "Root cause: {}", i.root);
        if !i.affected.is_empty() {
            let _ = writeln!(out, "Affected: {}", i.affected.join(", "));
        }
        let _ = writeln!(out, "Incident: {}\n", i.id);
    }
    for (title, alerts) in [("Firing", &n.firing), ("Resolved", &n.resolved)] {
        if alerts.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title} ({}):\n", alerts.len());
        for a in alerts {
            let _ = writeln!(out, "* {}", a.describe());
            if let Some(summary) = a.annotations.get("summary") {
                let _ = writeln!(out, "  {summary}");
            }
            let _ = writeln!(out, "  {}", facts(a).join("; "));
            for id in a.evidence.trace_ids.iter().take(3) {
                let _ = writeln!(out, "  Trace: {}", n.trace_url(id));
            }
            let _ = writeln!(out, "  Alert: {}", n.alert_url(a));
            let _ = writeln!(out, "  Silence: {}\n", n.silence_url(a));
        }
    }
    out
}

/// Rule, value and threshold, since when, and until when for a resolved alert.
fn facts(a: &Alert) -> Vec<String> {
    let mut out = Vec::new();
    if !a.evidence.rule.is_empty() {
        out.push(format!("rule {}", a.evidence.rule));
    }
    match (a.evidence.value, a.evidence.threshold) {
        (Some(v), Some(t)) => out.push(format!("value {} (threshold {})", number(v), number(t))),
        (Some(v), None) => out.push(format!("value {}", number(v))),
        _ => {}
    }
    out.push(format!("since {}", utc(a.starts_at)));
    if a.ends_at != 0 && !a.firing(u64::MAX) {
        out.push(format!("until {}", utc(a.ends_at)));
    }
    out
}

fn html(n: &Notification) -> String {
    let mut out = String::from(
        "<!doctype html><html><body style=\"font-family:sans-serif;font-size:14px;color:#222\">",
    );
    let colour = if n.firing.is_empty() {
        "#2e7d32"
    } else {
        "#c62828"
    };
    let _ = write!(
        out,
        "<h2 style=\"color:{colour};margin:0 0 8px\">{}</h2>",
        escape(&subject(n))
    );
    if let Some(i) = n.incident() {
        let _ = write!(out, "<p><b>Root cause:</b> {}", escape(&i.root));
        if !i.affected.is_empty() {
            let _ = write!(
                out,
                "<br><b>Affected:</b> {}",
                escape(&i.affected.join(", "))
            );
        }
        out.push_str("</p>");
    }
    for (title, alerts) in [("Firing", &n.firing), ("Resolved", &n.resolved)] {
        if alerts.is_empty() {
            continue;
        }
        let _ = write!(out, "<h3>{title} ({})</h3>", alerts.len());
        for a in alerts {
            out.push_str(
                "<div style=\"border-left:4px solid #999;padding:4px 10px;margin:8px 0\">",
            );
            let _ = write!(out, "<b>{}</b>", escape(&a.describe()));
            if let Some(summary) = a.annotations.get("summary") {
                let _ = write!(out, "<br>{}", escape(summary));
            }
            let _ = write!(out, "<br><small>{}</small>", escape(&facts(a).join("; ")));
            if !a.evidence.trace_ids.is_empty() {
                out.push_str("<br>Example traces:");
                for id in a.evidence.trace_ids.iter().take(3) {
                    let _ = write!(
                        out,
                        " <a href=\"{}\">{}</a>",
                        escape(&n.trace_url(id)),
                        escape(&id[..id.len().min(16)])
                    );
                }
            }
            let _ = write!(
                out,
                "<br><a href=\"{}\">View alert</a> · <a href=\"{}\">Silence</a></div>",
                escape(&n.alert_url(a)),
                escape(&n.silence_url(a))
            );
        }
    }
    out.push_str("</body></html>");
    out
}

/// A number as a person reads it: ratios as they are, to 4 significant digits.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
        let text = format!("{v:.digits$}");
        match text.contains('.') {
            true => text.trim_end_matches('0').trim_end_matches('.').to_owned(),
            false => text,
        }
    }
}

/// Unix nanoseconds as `2026-12-04 19:28:58 UTC`.
pub fn utc(nanos: u64) -> String {
    format!("{} UTC", date_time(nanos, ' '))
}

/// Unix nanoseconds as RFC 3339 (`2026-12-04T19:28:58.123Z`), as Alertmanager's JSON has them.
pub fn rfc3339(nanos: u64) -> String {
    format!(
        "{}.{:03}Z",
        date_time(nanos, 'T'),
        nanos % 1_000_000_000 / 1_000_000
    )
}

/// `2026-12-04{separator}19:28:58`, in UTC.
fn date_time(nanos: u64, separator: char) -> String {
    let secs = (nanos / 1_000_000_000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}{separator}{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes everything but unreserved characters, for a query parameter.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Evidence;

    fn alert(labels: &[(&str, &str)], incident: Option<(&str, &[&str])>) -> Alert {
        Alert {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: Labels::from([("summary".into(), "<b>payments</b> errors".into())]),
            starts_at: 1_796_412_538_000_000_000,
            ends_at: 0,
            generator_url: String::new(),
            evidence: Evidence {
                group: "spyglass.builtin".into(),
                rule: "ServiceErrors".into(),
                value: Some(0.31416),
                threshold: Some(0.05),
                trace_ids: vec!["4bf92f3577b34da6a3ce929d0e0e4736".into()],
                incident: incident.map(|(root, affected)| IncidentInfo {
                    id: "7".into(),
                    root: root.into(),
                    affected: affected.iter().map(|s| s.to_string()).collect(),
                }),
            },
        }
    }

    fn notification(firing: Vec<Alert>) -> Notification {
        Notification {
            id: "n1".into(),
            receiver: "oncall".into(),
            group_key: "{}:{}".into(),
            group_labels: Labels::from([("job".into(), "api".into())]),
            firing,
            resolved: Vec::new(),
            external_url: "http://spyglass:8080/".into(),
        }
    }

    #[test]
    fn the_subject_names_the_root_and_who_is_affected() {
        let a = alert(
            &[("alertname", "ServiceErrors"), ("service", "payments")],
            Some(("payments", &["checkout", "frontend"])),
        );
        let n = notification(vec![a.clone()]);
        assert_eq!(
            subject(&n),
            "[FIRING:1] payments failing — checkout and frontend affected"
        );
        let plain = alert(&[("alertname", "HighLatency"), ("job", "api")], None);
        assert_eq!(
            subject(&notification(vec![plain.clone(), plain])),
            "[FIRING:2] HighLatency (job=\"api\")"
        );
        let many: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        assert_eq!(list(&many, 4), "a, b, c and 2 more");
    }

    #[test]
    fn bodies_carry_the_evidence_and_escape_it() {
        let a = alert(
            &[("alertname", "ServiceErrors"), ("service", "payments")],
            Some(("payments", &["checkout"])),
        );
        let m = render(&notification(vec![a]));
        for part in [&m.text, &m.html] {
            assert!(part.contains("http://spyglass:8080/trace/4bf92f3577b34da6a3ce929d0e0e4736"));
            assert!(part.contains("http://spyglass:8080/alerts?incident=7"));
            assert!(part.contains("/silences/new?matcher=alertname%3D%22ServiceErrors%22&"));
            assert!(part.contains("value 0.3142 (threshold 0.05)"), "{part}");
            assert!(part.contains("since 2026-12-04"), "{part}");
        }
        assert!(m.html.contains("&lt;b&gt;payments&lt;/b&gt;"));
        assert!(!m.html.contains("<b>payments</b>"));
        assert!(m.text.contains("Root cause: payments"));
    }

    #[test]
    fn dates_are_gregorian() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(rfc3339(951_782_400_123_000_000), "2000-02-29T00:00:00.123Z");
    }
}
