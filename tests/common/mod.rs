//! A `spyglass serve` process on free ports and a real OpenTelemetry SDK pointed at it, for the
//! end-to-end tests.

#![allow(dead_code)] // each test binary uses its own part of this

pub mod alerts;
pub mod browser;
pub mod shop;

use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{
    Aggregation, Instrument, PeriodicReader, SdkMeterProvider, Stream, Temporality,
};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use serde_json::Value;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    child: Child,
    pub ui: u16,
    pub grpc: u16,
    pub http: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    /// The process id of `spyglass serve`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The configuration the end-to-end tests run with: span metrics every second.
pub const TEST_CONFIG: &str =
    "[ingest]\nspan_metrics_interval_secs = 1\nservice_graph_wait_secs = 1\n";

/// Where a test's Spyglass listens.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub ui: u16,
    pub grpc: u16,
    pub http: u16,
}

impl Ports {
    pub fn free() -> Self {
        Self {
            ui: free_port(),
            grpc: free_port(),
            http: free_port(),
        }
    }

    /// The flags that make `serve` or `demo` listen on these ports.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--http".into(),
            format!("127.0.0.1:{}", self.ui),
            "--otlp-grpc".into(),
            format!("127.0.0.1:{}", self.grpc),
            "--otlp-http".into(),
            format!("127.0.0.1:{}", self.http),
        ]
    }
}

/// Where a process started for `dir` writes its stderr: `dir/serve.stderr`, appended, so a
/// restarted server adds to it.
pub fn stderr_file(dir: &std::path::Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("serve.stderr"))
        .unwrap()
}

/// Spawns `spyglass serve` with the test configuration on `dir/data`, stderr to
/// [`stderr_file`].
pub fn spawn_serve(dir: &std::path::Path, ports: Ports) -> Child {
    spawn_serve_with(dir, ports, TEST_CONFIG, &[])
}

/// [`spawn_serve`] with another configuration file and more flags.
pub fn spawn_serve_with(
    dir: &std::path::Path,
    ports: Ports,
    config_text: &str,
    args: &[String],
) -> Child {
    let config = dir.join("spyglass.toml");
    std::fs::write(&config, config_text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(ports.args())
        .args(args)
        .stderr(stderr_file(dir))
        .spawn()
        .unwrap()
}

/// What the server wrote to stderr, for a failure message.
pub fn serve_stderr(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("serve.stderr")).unwrap_or_default()
}

/// Why a server never became ready.
#[derive(Debug)]
pub enum NotReady {
    /// It exited first, with this status.
    Exited(ExitStatus),
    /// It still runs but `/readyz` did not answer 200 within 60 s.
    TimedOut,
}

/// Waits until `/readyz` on `ui` answers 200 (60 s at most), noticing when `child` exits first.
pub async fn wait_ready(ui: u16, child: &mut Child) -> Result<(), NotReady> {
    let started = Instant::now();
    while reqwest::get(format!("http://127.0.0.1:{ui}/readyz"))
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(NotReady::Exited(status));
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(NotReady::TimedOut);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Starts a process with `spawn` on free ports and waits until it is ready.
///
/// A port chosen free can be taken before the server binds it (another test's client gets it as
/// its ephemeral port), so a process that exits before it is ready is started again on new
/// ports. `dir` holds its `serve.stderr`, quoted when it never gets ready.
pub async fn start_ready(
    dir: &std::path::Path,
    mut spawn: impl FnMut(Ports) -> Child,
) -> (Child, Ports) {
    for _ in 0..5 {
        let ports = Ports::free();
        let mut child = spawn(ports);
        match wait_ready(ports.ui, &mut child).await {
            Ok(()) => return (child, ports),
            Err(NotReady::Exited(_)) => continue,
            Err(NotReady::TimedOut) => {
                let _ = child.kill();
                panic!("never ready: {}", serve_stderr(dir));
            }
        }
    }
    panic!(
        "exited before it was ready five times: {}",
        serve_stderr(dir)
    );
}

/// Starts `spyglass serve` writing span metrics every second, and waits until it is ready.
pub async fn start_server() -> Server {
    start_server_with(tempfile::tempdir().unwrap(), TEST_CONFIG, &[]).await
}

/// [`start_server`] with another configuration file and more flags; `dir` is kept by the
/// server.
pub async fn start_server_with(dir: tempfile::TempDir, config: &str, args: &[String]) -> Server {
    let (child, ports) = start_ready(dir.path(), |ports| {
        spawn_serve_with(dir.path(), ports, config, args)
    })
    .await;
    Server {
        child,
        ui: ports.ui,
        grpc: ports.grpc,
        http: ports.http,
        _dir: dir,
    }
}

fn resource(service: &str) -> Resource {
    Resource::builder()
        .with_service_name(service.to_string())
        .build()
}

/// A tracer provider of `service` exporting over OTLP/gRPC with the Rust SDK's exporter.
pub fn provider(service: &str, grpc: u16) -> SdkTracerProvider {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://127.0.0.1:{grpc}"))
        .build()
        .unwrap();
    SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource(service))
        .build()
}

/// A meter provider of `service` exporting over OTLP/gRPC with `temporality`; `shop.size` is an
/// exponential histogram. It exports when flushed (its interval is an hour).
pub fn meter_provider(service: &str, grpc: u16, temporality: Temporality) -> SdkMeterProvider {
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://127.0.0.1:{grpc}"))
        .with_temporality(temporality)
        .build()
        .unwrap();
    SdkMeterProvider::builder()
        .with_reader(
            PeriodicReader::builder(exporter)
                .with_interval(Duration::from_secs(3600))
                .build(),
        )
        .with_resource(resource(service))
        .with_view(|i: &Instrument| {
            (i.name() == "shop.size")
                .then(|| {
                    Stream::builder()
                        .with_aggregation(Aggregation::Base2ExponentialHistogram {
                            max_size: 160,
                            max_scale: 20,
                            record_min_max: true,
                        })
                        .build()
                        .ok()
                })
                .flatten()
        })
        .build()
}

/// A logger provider of `service` exporting over OTLP/gRPC with the Rust SDK's exporter.
pub fn logger_provider(service: &str, grpc: u16) -> SdkLoggerProvider {
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://127.0.0.1:{grpc}"))
        .build()
        .unwrap();
    SdkLoggerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource(service))
        .build()
}

/// One checkout trace: frontend `GET /checkout` ─▶ frontend `POST /charge` (client) ─▶ payments
/// `POST /charge` (server, `card.brand=visa`). Declined: the charge fails with an exception
/// event. Paid: the charge also queries the database (`SELECT payments`, `db.system`). Returns
/// the trace id as hex.
pub fn checkout(frontend: &SdkTracer, payments: &SdkTracer, declined: bool) -> String {
    let root = frontend
        .span_builder("GET /checkout")
        .with_kind(SpanKind::Server)
        .with_attributes(vec![KeyValue::new("http.route", "/checkout")])
        .start(frontend);
    let root_cx = Context::current_with_span(root);
    let client = frontend
        .span_builder("POST /charge")
        .with_kind(SpanKind::Client)
        .with_attributes(vec![KeyValue::new("peer.service", "payments")])
        .start_with_context(frontend, &root_cx);
    let client_cx = root_cx.with_span(client);
    let mut charge = payments
        .span_builder("POST /charge")
        .with_kind(SpanKind::Server)
        .with_attributes(vec![KeyValue::new("card.brand", "visa")])
        .start_with_context(payments, &client_cx);
    if declined {
        charge.add_event(
            "exception",
            vec![
                KeyValue::new("exception.type", "CardDeclined"),
                KeyValue::new("exception.message", "card declined: insufficient funds"),
                KeyValue::new(
                    "exception.stacktrace",
                    "CardDeclined: card declined\n  at payments::charge (src/charge.rs:42)",
                ),
            ],
        );
        charge.set_status(Status::error("card declined"));
        charge.end();
    } else {
        let charge_cx = client_cx.with_span(charge);
        payments
            .span_builder("SELECT payments")
            .with_kind(SpanKind::Client)
            .with_attributes(vec![KeyValue::new("db.system", "postgresql")])
            .start_with_context(payments, &charge_cx)
            .end();
        charge_cx.span().end();
    }
    let id = client_cx.span().span_context().trace_id().to_string();
    client_cx.span().end();
    root_cx.span().end();
    id
}

/// Runs `query` through `POST /api/v1/sql`; answers the JSON answer.
pub async fn sql(ui: u16, query: &str) -> Value {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{ui}/api/v1/sql"))
        .json(&serde_json::json!({ "query": query }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn get_json(ui: u16, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("http://127.0.0.1:{ui}{path}"))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls `check` until it holds or `limit` passes; returns how long it took.
pub async fn within<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An OTLP export request of `spans`, all of one resource with `service.name` = `service`.
pub fn traces_request(
    service: &str,
    spans: Vec<opentelemetry_proto::tonic::trace::v1::Span>,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
    let service = KeyValue {
        key: "service.name".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(service.into())),
        }),
        ..Default::default()
    };
    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![service],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
