//! Shared by the benchmark programs: the model → OTLP conversion an SDK would do.
#![allow(dead_code)]

pub mod grpc;

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue as OtlpKeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as OtlpSpan, Status, span,
};
use spyglass_store::model::{AttrValue, Attributes, Span};

pub fn otlp_value(value: &AttrValue) -> AnyValue {
    use any_value::Value;
    let value = match value {
        AttrValue::Empty => None,
        AttrValue::Str(s) => Some(Value::StringValue(s.clone())),
        AttrValue::Bool(b) => Some(Value::BoolValue(*b)),
        AttrValue::Int(i) => Some(Value::IntValue(*i)),
        AttrValue::Double(d) => Some(Value::DoubleValue(*d)),
        AttrValue::Bytes(b) => Some(Value::BytesValue(b.clone())),
        AttrValue::Array(items) => Some(Value::ArrayValue(ArrayValue {
            values: items.iter().map(otlp_value).collect(),
        })),
        AttrValue::KvList(kvs) => Some(Value::KvlistValue(KeyValueList {
            values: kvs
                .iter()
                .map(|kv| OtlpKeyValue {
                    key: kv.key.clone(),
                    value: Some(otlp_value(&kv.value)),
                    ..Default::default()
                })
                .collect(),
        })),
    };
    AnyValue { value }
}

pub fn otlp_attributes(attrs: &Attributes) -> Vec<OtlpKeyValue> {
    attrs
        .iter()
        .map(|kv| OtlpKeyValue {
            key: kv.key.clone(),
            value: Some(otlp_value(&kv.value)),
            ..Default::default()
        })
        .collect()
}

/// The export request an SDK would send for these spans: grouped by resource, then scope.
pub fn to_otlp(spans: &[Span]) -> ExportTraceServiceRequest {
    let mut by_resource: HashMap<String, (usize, Vec<&Span>)> = HashMap::new();
    for span in spans {
        let key = format!("{:?}", span.resource.attributes);
        let next = by_resource.len();
        by_resource
            .entry(key)
            .or_insert((next, Vec::new()))
            .1
            .push(span);
    }
    let mut groups: Vec<_> = by_resource.into_values().collect();
    groups.sort_by_key(|g| g.0);
    let resource_spans = groups
        .into_iter()
        .map(|(_, spans)| {
            let first = spans[0];
            ResourceSpans {
                resource: Some(OtlpResource {
                    attributes: otlp_attributes(&first.resource.attributes),
                    dropped_attributes_count: 0,
                    entity_refs: Vec::new(),
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: first.scope.name.clone(),
                        version: first.scope.version.clone(),
                        attributes: Vec::new(),
                        dropped_attributes_count: 0,
                    }),
                    spans: spans
                        .iter()
                        .map(|s| OtlpSpan {
                            trace_id: s.trace_id.0.to_vec(),
                            span_id: s.span_id.0.to_vec(),
                            trace_state: s.trace_state.clone(),
                            parent_span_id: s
                                .parent_span_id
                                .map(|p| p.0.to_vec())
                                .unwrap_or_default(),
                            flags: s.flags,
                            name: s.name.clone(),
                            kind: s.kind as i32,
                            start_time_unix_nano: s.start_time_unix_nano,
                            end_time_unix_nano: s.end_time_unix_nano,
                            attributes: otlp_attributes(&s.attributes),
                            dropped_attributes_count: s.dropped_attributes_count,
                            events: s
                                .events
                                .iter()
                                .map(|e| span::Event {
                                    time_unix_nano: e.time_unix_nano,
                                    name: e.name.clone(),
                                    attributes: otlp_attributes(&e.attributes),
                                    dropped_attributes_count: 0,
                                })
                                .collect(),
                            dropped_events_count: 0,
                            links: Vec::new(),
                            dropped_links_count: 0,
                            status: Some(Status {
                                message: s.status_message.clone(),
                                code: s.status_code as i32,
                            }),
                        })
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: first.resource.schema_url.clone(),
            }
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// A new service `name` whose 30 server spans all fail, sent over OTLP/gRPC to `grpc` with the
/// OpenTelemetry SDK; answers once the export was acknowledged, with the provider (keep it:
/// dropping it shuts the exporter down).
pub fn fail_service(grpc: u16, name: &str) -> opentelemetry_sdk::trace::SdkTracerProvider {
    use opentelemetry::trace::{Status, TraceContextExt, Tracer, TracerProvider as _};
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://127.0.0.1:{grpc}"))
        .build()
        .unwrap();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(name.to_owned())
                .build(),
        )
        .build();
    let tracer = provider.tracer("bench");
    for _ in 0..30 {
        let span = tracer
            .span_builder("GET /fail")
            .with_kind(opentelemetry::trace::SpanKind::Server)
            .with_attributes(vec![opentelemetry::KeyValue::new("http.route", "/fail")])
            .start(&tracer);
        let cx = opentelemetry::Context::current_with_span(span);
        cx.span().set_status(Status::error("failed"));
        cx.span().end();
    }
    provider.force_flush().unwrap();
    provider
}

/// `spyglass serve` on free loopback ports, configured by `config` (TOML), its data in `dir`;
/// killed when dropped.
pub struct Serve {
    child: std::process::Child,
    pub ui: u16,
    pub grpc: u16,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(dir: &std::path::Path, config: &str) -> Serve {
    serve_as(dir, config, "all")
}

impl Serve {
    /// [`serve`] with `--role role`.
    #[allow(dead_code)]
    pub fn with_role(dir: &std::path::Path, config: &str, role: &str) -> Serve {
        serve_as(dir, config, role)
    }
}

fn serve_as(dir: &std::path::Path, config: &str, role: &str) -> Serve {
    let port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (ui, grpc, http) = (port(), port(), port());
    let path = dir.join("spyglass.toml");
    std::fs::write(&path, config).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .args(["serve", "--config"])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args([
            "--http",
            &format!("127.0.0.1:{ui}"),
            "--otlp-grpc",
            &format!("127.0.0.1:{grpc}"),
            "--otlp-http",
            &format!("127.0.0.1:{http}"),
            "--role",
            role,
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spyglass serve starts");
    Serve { child, ui, grpc }
}

impl Serve {
    /// The server's process id (for its `/proc` figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `/readyz` answers 200.
    pub async fn ready(&self) {
        while reqwest::get(format!("http://127.0.0.1:{}/readyz", self.ui))
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// CPU time process `pid` has used so far (user and system, its exited threads included), in
/// seconds, from `/proc/<pid>/stat`.
#[allow(dead_code)]
pub fn cpu_seconds_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime and stime are 12th and 13th.
    let ticks: f64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().skip(11).take(2))
        .into_iter()
        .flatten()
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf reads a constant of the system.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// A size from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// `12.3 ms`.
pub fn ms(d: std::time::Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Median, 99th percentile and maximum of measured runs.
pub struct Figures {
    pub p50: std::time::Duration,
    pub p99: std::time::Duration,
    pub max: std::time::Duration,
}

pub fn percentiles(mut samples: Vec<std::time::Duration>) -> Figures {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Figures {
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// A sample's value from the server's `/metrics` (the first line starting with `name`).
#[allow(dead_code)]
pub async fn metric(ui: u16, name: &str) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{ui}/metrics"))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
