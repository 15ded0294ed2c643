//! Services sending traces through the Rust OpenTelemetry SDK along chains of calls, with
//! failures, timeouts and slow database calls where a test wants them.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use super::provider;

/// Span metrics every second, and every duration of the built-in rules in seconds.
pub const ALERTING_CONFIG: &str = "[ingest]
span_metrics_interval_secs = 1
service_graph_wait_secs = 1

[alerting]
evaluation_interval_secs = 1

[alerting.builtin]
window_secs = 5
for_secs = 1
min_requests = 10
latency_baseline_secs = 60
silent_after_secs = 4
";

/// [`ALERTING_CONFIG`] with notifications by e-mail to oncall@example.com through the SMTP
/// server on `smtp_port`, grouped by incident; the notify config is written into `dir`.
/// `route` holds the intervals (`group_wait: 2s` …), `email` more of the e-mail config.
pub fn mailing_config(
    dir: &std::path::Path,
    smtp_port: u16,
    route: &[&str],
    email: &[&str],
) -> String {
    let line = |indent: &str, fields: &[&str]| -> String {
        fields.iter().map(|f| format!("{indent}{f}\n")).collect()
    };
    let notify = dir.join("notify.yml");
    std::fs::write(
        &notify,
        format!(
            "global:
  smtp_smarthost: 127.0.0.1:{smtp_port}
  smtp_from: spyglass@example.com
  smtp_require_tls: false
route:
  receiver: oncall
  group_by: [incident]
{}receivers:
  - name: oncall
    email_configs:
      - to: oncall@example.com
{}",
            line("  ", route),
            line("        ", email)
        ),
    )
    .unwrap();
    ALERTING_CONFIG.replace(
        "[alerting]\n",
        &format!(
            "[alerting]\nnotify_config = {:?}\n",
            notify.to_str().unwrap()
        ),
    )
}

/// One SDK tracer provider per service, all exporting to the server over OTLP/gRPC.
pub struct Shop {
    grpc: u16,
    providers: BTreeMap<&'static str, (SdkTracerProvider, SdkTracer)>,
}

/// How a request along a chain of services goes.
#[derive(Clone, Copy, Default)]
pub struct Request {
    /// The service (index in the chain) whose handler fails; its callers fail with it.
    pub fail_at: Option<usize>,
    /// The last service never answers: its caller's call times out after 1 s.
    pub unanswered: bool,
    /// The last service answering queries PostgreSQL for this long.
    pub db_ms: Option<u64>,
}

impl Shop {
    pub fn new(grpc: u16) -> Self {
        Self {
            grpc,
            providers: BTreeMap::new(),
        }
    }

    fn tracer(&mut self, service: &'static str) -> SdkTracer {
        let grpc = self.grpc;
        self.providers
            .entry(service)
            .or_insert_with(|| {
                let p = provider(service, grpc);
                let t = p.tracer("alerting-test");
                (p, t)
            })
            .1
            .clone()
    }

    pub fn flush(&self) {
        for (p, _) in self.providers.values() {
            p.force_flush().unwrap();
        }
    }

    /// One trace along `chain` (each service calls the next); returns its id.
    pub fn send(&mut self, chain: &[&'static str], how: Request) -> String {
        let n = chain.len();
        let answered = if how.unanswered { n - 1 } else { n };
        // Outermost first: (service, name, kind, attributes, failed).
        let mut spans: Vec<(&'static str, String, SpanKind, Vec<KeyValue>, bool)> = Vec::new();
        for i in 0..n {
            if i < answered {
                let failed = how.fail_at.is_some_and(|k| i <= k) || how.unanswered;
                let name = format!("GET /{}", chain[i]);
                spans.push((chain[i], name, SpanKind::Server, vec![], failed));
            }
            if i + 1 < n {
                let failed = how.fail_at.is_some_and(|k| i < k) || how.unanswered;
                let peer = vec![KeyValue::new("peer.service", chain[i + 1])];
                let name = format!("GET /{}", chain[i + 1]);
                spans.push((chain[i], name, SpanKind::Client, peer, failed));
            }
        }
        if how.db_ms.is_some() {
            let db = vec![KeyValue::new("db.system", "postgresql")];
            spans.push((
                chain[answered - 1],
                "SELECT stock".into(),
                SpanKind::Client,
                db,
                false,
            ));
        }
        let innermost = if how.unanswered {
            1000
        } else {
            how.db_ms.unwrap_or(3)
        };
        let t0 = SystemTime::now() - Duration::from_millis(innermost + 50);
        let ms = Duration::from_millis;
        let count = spans.len() as u64;
        let mut contexts: Vec<(Context, SystemTime, bool)> = Vec::new();
        let mut parent = Context::new();
        for (j, (service, name, kind, attributes, failed)) in spans.into_iter().enumerate() {
            let j = j as u64;
            let tracer = self.tracer(service);
            let start = t0 + ms(j);
            // The innermost span lasts `innermost`; each outer one ends 1 ms after its child.
            let end = t0 + ms(count - 1) + ms(innermost) + ms(count - 1 - j);
            let span = tracer
                .span_builder(name)
                .with_kind(kind)
                .with_attributes(attributes)
                .with_start_time(start)
                .start_with_context(&tracer, &parent);
            let cx = parent.with_span(span);
            parent = cx.clone();
            contexts.push((cx, end, failed));
        }
        let id = contexts[0].0.span().span_context().trace_id().to_string();
        for (cx, end, failed) in contexts.into_iter().rev() {
            if failed {
                cx.span().set_status(Status::error("request failed"));
            }
            cx.span().end_with_timestamp(end);
        }
        id
    }
}
