//! Ingest benchmark: a load generator against a running `spyglass serve` (fsync durability
//! unless `SPYGLASS_BENCH_CONFIG` says otherwise; the table prints the mode the server reports).
//! Rates count acknowledged items only: what a server rejects through partial success is
//! reported beside them, never counted as ingested.
//!
//! N concurrent gRPC clients send pre-encoded export requests of 500–2,000 synthetic spans (the
//! store benchmark's generator), retrying when told to; it reports acknowledged spans/s, MB/s,
//! p50/p99 export latency and the server's peak RSS, next to a same-run baseline:
//! single-thread decode-only throughput of the same requests. Then the same for metric points.
//!
//! `cargo bench -p spyglass --bench ingest` (`SPYGLASS_BENCH_SPANS`, default 600000;
//! `SPYGLASS_BENCH_POINTS`, default 1500000; `SPYGLASS_BENCH_CLIENTS`, default 8;
//! `SPYGLASS_BENCH_EXPONENTIAL=1` sends base-2 exponential histograms where the default mix has
//! explicit-bucket ones, as an SDK configured for them would).

mod common;

use common::grpc::{Encoded, export};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Read;
use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use rand::{Rng, SeedableRng};
use spyglass_store::synth::SpanGenerator;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    grpc: String,
    ui: u16,
    _dir: tempfile::TempDir,
}

fn start_server() -> Server {
    let dir =
        tempfile::tempdir_in(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
            .unwrap();
    let (grpc, http, ui) = (free_port(), free_port(), free_port());
    let mut command = Command::new(env!("CARGO_BIN_EXE_spyglass"));
    command.arg("serve");
    // SPYGLASS_BENCH_CONFIG: a config file for the server (e.g. to change flush thresholds).
    if let Ok(config) = std::env::var("SPYGLASS_BENCH_CONFIG") {
        command.args(["--config", &config]);
    }
    let child = command
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--otlp-grpc",
            &format!("127.0.0.1:{grpc}"),
            "--otlp-http",
            &format!("127.0.0.1:{http}"),
            "--http",
            &format!("127.0.0.1:{ui}"),
        ])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .expect("spyglass serve starts");
    let started = Instant::now();
    loop {
        if get(ui, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "server never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        child,
        grpc: format!("http://127.0.0.1:{grpc}"),
        ui,
        _dir: dir,
    }
}

/// A plain HTTP/1.1 GET on localhost: the whole response, head included.
fn get(port: u16, path: &str) -> Option<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    Some(r)
}

impl Server {
    /// The server's `/metrics`; the benchmark stops if it does not answer.
    fn exposition(&self) -> String {
        let answer = get(self.ui, "/metrics").unwrap_or_default();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "/metrics did not answer: {answer}"
        );
        answer
    }

    /// The durability mode the server says it runs with (`spyglass_wal_durability`).
    fn durability(&self) -> String {
        (self.exposition().lines())
            .find_map(|l| l.strip_prefix("spyglass_wal_durability{mode=\""))
            .and_then(|rest| rest.split('"').next())
            .expect("the server reports its durability mode")
            .to_owned()
    }

    /// Bytes the server's WAL has written so far (from its `/metrics`).
    fn wal_bytes(&self) -> f64 {
        (self.exposition().lines())
            .find_map(|l| l.strip_prefix("spyglass_wal_bytes_written_total "))
            .and_then(|v| v.trim().parse().ok())
            .expect("the server reports its WAL bytes")
    }

    /// Peak resident memory of the server so far (`VmHWM`), in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// CPU time the server has used so far (user and system), in seconds. Less disturbed than
    /// throughput by other work on a shared machine, so it compares two builds better.
    fn cpu_seconds(&self) -> f64 {
        common::cpu_seconds_of(self.child.id())
    }

    fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

struct Load {
    /// Items sent; `rejected` of them the server refused through partial success.
    items: usize,
    rejected: usize,
    bytes: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    retries: usize,
}

impl Load {
    fn acknowledged(&self) -> usize {
        self.items - self.rejected
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

/// Sends every request with `clients` concurrent connections; retries refused ones.
async fn drive<Req, F, Fut>(
    requests: Arc<Vec<(Req, usize, usize)>>,
    clients: usize,
    send: F,
) -> Load
where
    Req: Clone + Send + Sync + 'static,
    F: Fn(Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<usize, tonic::Status>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let progress = {
        let (next, n) = (next.clone(), requests.len());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                eprintln!("      {}/{n} requests", next.load(Ordering::Relaxed).min(n));
            }
        })
    };
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (requests, next, send) = (requests.clone(), next.clone(), send.clone());
            tokio::spawn(async move {
                let (mut latencies, mut retries, mut rejected) = (Vec::new(), 0, 0);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((request, _, _)) = requests.get(i) else {
                        break;
                    };
                    loop {
                        let t = Instant::now();
                        match send(request.clone()).await {
                            Ok(refused) => {
                                latencies.push(t.elapsed());
                                rejected += refused;
                                break;
                            }
                            Err(status) if status.code() == tonic::Code::Unavailable => {
                                retries += 1;
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            Err(status) => panic!("export failed: {status}"),
                        }
                    }
                }
                (latencies, retries, rejected)
            })
        })
        .collect();
    let (mut latencies, mut retries, mut rejected) = (Vec::new(), 0, 0);
    for t in tasks {
        let (l, r, x) = t.await.unwrap();
        latencies.extend(l);
        retries += r;
        rejected += x;
    }
    progress.abort();
    latencies.sort();
    Load {
        items: requests.iter().map(|r| r.1).sum(),
        rejected,
        bytes: requests.iter().map(|r| r.2).sum(),
        elapsed: started.elapsed(),
        latencies,
        retries,
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// A request of `points` data points: sums, gauges and 10-bucket histograms across services
/// (or, with `exponential`, base-2 exponential histograms of 20 buckets instead).
fn metrics_request(
    rng: &mut rand::rngs::StdRng,
    points: usize,
    now: u64,
    exponential: bool,
) -> ExportMetricsServiceRequest {
    let services = spyglass_store::synth::SERVICES;
    let service = services[rng.random_range(0..services.len())];
    let mut metrics = Vec::new();
    let mut made = 0;
    while made < points {
        let route = format!("/api/{}", rng.random_range(0..20));
        let attrs = vec![
            kv("http.route", &route),
            kv("http.request.method", "GET"),
            kv("http.response.status_code", "200"),
        ];
        let n = 20.min(points - made);
        let data = match rng.random_range(0..4) {
            0 | 1 => metric::Data::Sum(Sum {
                data_points: (0..n)
                    .map(|i| NumberDataPoint {
                        attributes: attrs.clone(),
                        time_unix_nano: now + i as u64,
                        value: Some(number_data_point::Value::AsInt(
                            rng.random_range(0..1_000_000),
                        )),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
            2 => metric::Data::Gauge(Gauge {
                data_points: (0..n)
                    .map(|i| NumberDataPoint {
                        attributes: attrs.clone(),
                        time_unix_nano: now + i as u64,
                        value: Some(number_data_point::Value::AsDouble(rng.random())),
                        ..Default::default()
                    })
                    .collect(),
            }),
            _ if exponential => metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: (0..n)
                    .map(|i| ExponentialHistogramDataPoint {
                        attributes: attrs.clone(),
                        time_unix_nano: now + i as u64,
                        count: 100,
                        sum: Some(12.5),
                        scale: 3,
                        positive: Some(Buckets {
                            offset: -60,
                            bucket_counts: (0..20).map(|_| rng.random_range(0..20)).collect(),
                        }),
                        min: Some(0.004),
                        max: Some(4.2),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: 2,
            }),
            _ => metric::Data::Histogram(Histogram {
                data_points: (0..n)
                    .map(|i| HistogramDataPoint {
                        attributes: attrs.clone(),
                        time_unix_nano: now + i as u64,
                        count: 100,
                        sum: Some(12.5),
                        bucket_counts: (0..11).map(|_| rng.random_range(0..20)).collect(),
                        explicit_bounds: vec![
                            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        ],
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: 2,
            }),
        };
        metrics.push(Metric {
            name: format!("http.server.metric_{}", rng.random_range(0..30)),
            unit: "s".into(),
            data: Some(data),
            ..Default::default()
        });
        made += n;
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

fn main() {
    let spans_total = env("SPYGLASS_BENCH_SPANS", 600_000);
    let points_total = env("SPYGLASS_BENCH_POINTS", 1_500_000);
    let clients = env("SPYGLASS_BENCH_CLIENTS", 8);
    let exponential = std::env::var("SPYGLASS_BENCH_EXPONENTIAL").is_ok_and(|v| v == "1");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);

    eprintln!("building {spans_total} spans in requests of 500–2000");
    let mut generator = SpanGenerator::new(42, now - 600_000_000_000);
    let mut span_requests = Vec::new();
    let mut made = 0;
    while made < spans_total {
        let spans = generator.spans(rng.random_range(500..=2000));
        let encoded = Encoded(common::to_otlp(&spans).encode_to_vec().into());
        let bytes = encoded.0.len();
        made += spans.len();
        span_requests.push((encoded, spans.len(), bytes));
    }
    eprintln!("baseline: single-thread decode of the same requests");
    let t = Instant::now();
    for (encoded, _, _) in &span_requests {
        std::hint::black_box(ExportTraceServiceRequest::decode(&encoded.0[..]).unwrap());
    }
    let decode_rate = made as f64 / t.elapsed().as_secs_f64();

    let server = start_server();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    eprintln!("traces: {clients} gRPC clients against spyglass serve");
    let cpu_start = server.cpu_seconds();
    let url = server.grpc.clone();
    let traces = runtime.block_on(async {
        let channel = tonic::transport::Channel::from_shared(url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        drive(Arc::new(span_requests), clients, move |request| {
            export::<ExportTraceServiceResponse>(
                channel.clone(),
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                request,
            )
        })
        .await
    });
    let rss_after_traces = server.peak_rss_mib();
    let cpu_traces = server.cpu_seconds() - cpu_start;
    let wal_after_traces = server.wal_bytes();

    let histograms = if exponential {
        "exponential"
    } else {
        "explicit-bucket"
    };
    eprintln!("metrics: requests of 2000 points ({histograms} histograms)");
    let mut metric_requests = Vec::new();
    let mut points = 0;
    while points < points_total {
        let encoded = Encoded(
            metrics_request(&mut rng, 2000, now, exponential)
                .encode_to_vec()
                .into(),
        );
        let bytes = encoded.0.len();
        points += 2000;
        metric_requests.push((encoded, 2000, bytes));
    }
    let t = Instant::now();
    for (encoded, _, _) in &metric_requests {
        std::hint::black_box(ExportMetricsServiceRequest::decode(&encoded.0[..]).unwrap());
    }
    let metric_decode_rate = points as f64 / t.elapsed().as_secs_f64();
    let cpu_start = server.cpu_seconds();
    let url = server.grpc.clone();
    let metrics = runtime.block_on(async {
        let channel = tonic::transport::Channel::from_shared(url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        drive(Arc::new(metric_requests), clients, move |request| {
            export::<ExportMetricsServiceResponse>(
                channel.clone(),
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                request,
            )
        })
        .await
    });
    let rss = server.peak_rss_mib();
    let cpu_metrics = server.cpu_seconds() - cpu_start;
    // Span metrics add a few records of their own to the metrics phase's WAL bytes.
    let wal_metrics = server.wal_bytes() - wal_after_traces;
    let durability = server.durability();
    server.stop();

    let rate = |l: &Load| l.acknowledged() as f64 / l.elapsed.as_secs_f64();
    let mbps = |l: &Load| l.bytes as f64 / l.elapsed.as_secs_f64() / 1e6;
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| spans | {} in {} requests, {clients} concurrent gRPC clients, durability {durability} |",
        traces.items,
        traces.latencies.len()
    );
    println!(
        "| rejected through partial success | {} spans, {} points |",
        traces.rejected, metrics.rejected
    );
    println!(
        "| acknowledged spans/s | {:.0} ({:.1} MB/s of OTLP protobuf) |",
        rate(&traces),
        mbps(&traces)
    );
    println!(
        "| export latency p50 / p99 | {:.1} ms / {:.1} ms ({} retries after UNAVAILABLE) |",
        percentile(&traces.latencies, 0.5),
        percentile(&traces.latencies, 0.99),
        traces.retries
    );
    println!("| server peak RSS after traces | {rss_after_traces:.0} MiB |");
    println!(
        "| server CPU per 1,000 spans (during the trace phase) | {:.1} ms |",
        cpu_traces * 1e6 / traces.acknowledged() as f64
    );
    println!(
        "| WAL bytes per span (OTLP protobuf: {:.0}) | {:.0} |",
        traces.bytes as f64 / traces.items as f64,
        wal_after_traces / traces.acknowledged() as f64
    );
    println!("| baseline: single-thread decode only | {decode_rate:.0} spans/s |");
    println!(
        "| metric points | {} in requests of 2000 (sums, gauges, {histograms} histograms) |",
        metrics.items
    );
    println!(
        "| acknowledged points/s | {:.0} ({:.1} MB/s) |",
        rate(&metrics),
        mbps(&metrics)
    );
    println!(
        "| export latency p50 / p99 (metrics) | {:.1} ms / {:.1} ms ({} retries) |",
        percentile(&metrics.latencies, 0.5),
        percentile(&metrics.latencies, 0.99),
        metrics.retries
    );
    println!(
        "| server CPU per 1,000 points (during the metrics phase) | {:.1} ms |",
        cpu_metrics * 1e6 / metrics.acknowledged() as f64
    );
    println!(
        "| WAL bytes per point (OTLP protobuf: {:.0}) | {:.0} |",
        metrics.bytes as f64 / metrics.items as f64,
        wal_metrics / metrics.acknowledged() as f64
    );
    println!(
        "| baseline: single-thread decode only (metrics) | {metric_decode_rate:.0} points/s |"
    );
    println!("| server peak RSS overall | {rss:.0} MiB |");
}
