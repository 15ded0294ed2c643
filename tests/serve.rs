//! `spyglass serve` as a user runs it: health endpoints, readiness after WAL replay, and a
//! SIGTERM that flushes what the WAL held and exits cleanly.

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spyglass_store::model::{AttrValue, Attributes, KeyValue, Resource, Span, SpanId, TraceId};
use spyglass_store::{Records, Signal, Store, StoreConfig};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response))
}

fn spans(n: u64) -> Vec<Span> {
    (0..n)
        .map(|i| Span {
            trace_id: TraceId([7; 16]),
            span_id: SpanId((i + 1).to_be_bytes()),
            name: "GET /".into(),
            start_time_unix_nano: 1_795_737_600_000_000_000 + i,
            end_time_unix_nano: 1_795_737_600_000_000_000 + i + 1000,
            resource: std::sync::Arc::new(Resource {
                attributes: Attributes::new(vec![KeyValue {
                    key: "service.name".into(),
                    value: AttrValue::Str("web".into()),
                }]),
                ..Resource::default()
            }),
            ..Span::default()
        })
        .collect()
}

/// Posts one span as OTLP/HTTP protobuf, as an SDK would; returns the HTTP status.
fn post_otlp_span(port: u16) -> u16 {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan};
    use prost::Message;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![OtlpSpan {
                    trace_id: vec![9; 16],
                    span_id: vec![9; 8],
                    name: "exported".into(),
                    start_time_unix_nano: now,
                    end_time_unix_nano: now + 1_000,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let body = request.encode_to_vec();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /v1/traces HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn serve_replays_reports_ready_and_flushes_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // Leave acknowledged spans in the WAL only, as a crash would.
    {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (store, _) = Store::open(dir.path(), StoreConfig::default()).unwrap();
        runtime
            .block_on(store.append(&Records::Spans(spans(25))))
            .unwrap();
    }

    let (port, otlp_port) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args([
            "--http",
            &format!("127.0.0.1:{port}"),
            "--otlp-grpc",
            "127.0.0.1:0",
            "--otlp-http",
            &format!("127.0.0.1:{otlp_port}"),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let ready = loop {
        if let Some((200, _)) = get(port, "/readyz") {
            break true;
        }
        if started.elapsed() > Duration::from_secs(60) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(ready, "/readyz never answered 200");
    assert_eq!(get(port, "/healthz").map(|r| r.0), Some(200));
    assert_eq!(get(port, "/nope").map(|r| r.0), Some(404));
    assert_eq!(post_otlp_span(otlp_port), 200, "OTLP/HTTP export accepted");

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut log = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_to_string(&mut log)
        .unwrap();
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert!(log.lines().any(|l| l.contains("stopped")), "{log}");

    // The flush on shutdown left the spans in a part and nothing to replay.
    let (store, report) = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(
        report.records_replayed, 0,
        "the WAL was checkpointed after the final flush"
    );
    let parts = store.snapshot().parts(Signal::Spans);
    assert_eq!(
        parts.iter().map(|p| p.meta().rows).sum::<u64>(),
        26,
        "replayed and exported spans"
    );
}

#[test]
fn config_prints_documented_defaults() {
    let output = Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .arg("config")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("# When an append is acknowledged"), "{text}");
    assert!(text.contains("[store]") && text.contains("[ingest]") && text.contains("[ui]"));
}

#[test]
fn a_bad_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spyglass.toml");
    std::fs::write(&path, "[store]\nflush_bytes = 0\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("flush_bytes"), "{stderr}");
}
