//! Several processes over one S3-compatible bucket (moto on loopback): two `spyglass serve
//! --role ingest` take telemetry from the Rust OpenTelemetry exporter and upload their parts,
//! and `--role query` processes find every trace by id and by search.

mod common;
#[path = "../store/tests/common/moto.rs"]
mod moto;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{
    Server, TEST_CONFIG, checkout, get_json, provider, spawn_serve_with, sql, start_ready,
    start_server_with, traces_request, within,
};
use moto::Moto;
use opentelemetry::trace::TracerProvider;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use spyglass_store::Signal;
use spyglass_store::bucket::Bucket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The test configuration with the bucket `cluster` of `moto`, everything else by default.
fn cluster_config(moto: &Moto) -> String {
    config_for(&moto.endpoint, "")
}

/// The test configuration with the bucket `cluster` at `endpoint`, and `more` settings of
/// `[store.object_store]`.
fn config_for(endpoint: &str, more: &str) -> String {
    format!(
        "{TEST_CONFIG}
[store.object_store]
url = \"s3://cluster/prod\"
endpoint = \"{endpoint}\"
region = \"us-east-1\"
allow_http = true
{more}

[store.object_store.options]
aws_access_key_id = \"test\"
aws_secret_access_key = \"test\"
"
    )
}

async fn start(moto: &Moto, role: &str) -> Server {
    let args = ["--role".to_owned(), role.to_owned()];
    start_server_with(tempfile::tempdir().unwrap(), &cluster_config(moto), &args).await
}

/// Exports one declined checkout trace to `ingester` and returns its id once acknowledged.
fn export_checkout(ingester: &Server) -> String {
    let frontend = provider("frontend", ingester.grpc);
    let payments = provider("payments", ingester.grpc);
    let id = checkout(&frontend.tracer("shop"), &payments.tracer("shop"), true);
    payments.force_flush().unwrap();
    frontend.force_flush().unwrap();
    id
}

async fn has_trace(querier: &Server, id: &str) -> bool {
    let (status, body) = get_json(querier.ui, &format!("/api/v1/traces/{id}")).await;
    status == 200 && body["spans"].as_array().map(Vec::len) == Some(3)
}

async fn search_finds(querier: &Server, ids: &[&str]) -> bool {
    let (_, body) = get_json(querier.ui, "/api/v1/traces?service=payments&status=error").await;
    let found: Vec<&str> = (body["traces"].as_array().into_iter().flatten())
        .filter_map(|t| t["trace_id"].as_str())
        .collect();
    ids.iter().all(|id| found.contains(id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingesters_and_stateless_queriers_share_a_bucket() {
    let moto = Moto::start();
    moto.bucket("cluster", "prod");
    let one = start(&moto, "ingest").await;
    let two = start(&moto, "ingest").await;
    let querier = start(&moto, "query").await;

    // A load balancer routing by trace id sends each trace to one ingester.
    let first = export_checkout(&one);
    let second = export_checkout(&two);
    for id in [&first, &second] {
        let took = within(Duration::from_secs(60), || has_trace(&querier, id)).await;
        let took = took.unwrap_or_else(|| panic!("trace {id} never reached the querier"));
        eprintln!("trace {id} by id on the querier {took:?} after its acknowledgement");
    }
    let both = [first.as_str(), second.as_str()];
    let searched = within(Duration::from_secs(30), || search_finds(&querier, &both)).await;
    assert!(
        searched.is_some(),
        "search on the querier finds both ingesters' traces"
    );

    // The ingesters go away (kill -9); what they uploaded stays. A querier started afresh,
    // with an empty cache, finds everything in the bucket alone.
    drop(one);
    drop(two);
    let fresh = start(&moto, "query").await;
    let found = within(Duration::from_secs(60), || async {
        has_trace(&fresh, &first).await
            && has_trace(&fresh, &second).await
            && search_finds(&fresh, &both).await
    })
    .await;
    assert!(
        found.is_some(),
        "a new querier reads every trace from the bucket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_query_roles_need_an_object_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("spyglass.toml");
    std::fs::write(&config, TEST_CONFIG).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .args(["serve", "--role", "query", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("[store.object_store]"),
        "the refusal names the missing section: {stderr}"
    );
}

/// A TCP proxy in front of the object store that can be cut (connections are closed as they
/// arrive and those open are dropped, as when the store cannot be reached) or slowed (what
/// clients send goes on at ~64 kB/s, so an upload stays in flight for seconds).
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    slow: Arc<AtomicBool>,
    /// Bytes sent to the store while slowed.
    slowed_bytes: Arc<AtomicU64>,
}

impl Proxy {
    async fn start(to: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            up: Arc::new(AtomicBool::new(true)),
            slow: Arc::new(AtomicBool::new(false)),
            slowed_bytes: Arc::new(AtomicU64::new(0)),
        };
        let (up, slow, slowed) = (
            proxy.up.clone(),
            proxy.slow.clone(),
            proxy.slowed_bytes.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if !up.load(Ordering::SeqCst) {
                    continue;
                }
                let (to, up, slow, slowed) = (to.clone(), up.clone(), slow.clone(), slowed.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&to).await else {
                        return;
                    };
                    let (mut from_client, mut to_server) =
                        (client.into_split(), server.into_split());
                    let upstream = async {
                        let mut buffer = vec![0u8; 16 << 10];
                        loop {
                            let read = from_client.0.read(&mut buffer).await.unwrap_or(0);
                            if read == 0 {
                                return;
                            }
                            if slow.load(Ordering::SeqCst) {
                                slowed.fetch_add(read as u64, Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(250)).await;
                            }
                            if to_server.1.write_all(&buffer[..read]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let downstream = tokio::io::copy(&mut to_server.0, &mut from_client.1);
                    let cut = async {
                        while up.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    };
                    tokio::select! {
                        _ = async { tokio::join!(upstream, downstream) } => {}
                        _ = cut => {}
                    }
                });
            }
        });
        proxy
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
        self.slow.store(false, Ordering::SeqCst);
    }

    fn slow_down(&self) {
        self.slow.store(true, Ordering::SeqCst);
    }
}

/// OTLP/HTTP protobuf request `n` of 100 spans with ids of their own.
fn spans_request(n: u64) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let spans = (0..100u64)
        .map(|i| Span {
            trace_id: [7u64.to_be_bytes(), (n << 8 | i).to_be_bytes()].concat(),
            span_id: ((n << 8 | i) + 1).to_be_bytes().to_vec(),
            name: "GET /orders".into(),
            start_time_unix_nano: now,
            end_time_unix_nano: now + 2_000_000,
            ..Default::default()
        })
        .collect();
    traces_request("orders", spans).encode_to_vec()
}

/// Sends request `n` to the ingester's OTLP/HTTP port: its status and `Retry-After`.
async fn send(http: u16, n: u64) -> (u16, Option<String>) {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(spans_request(n))
        .send()
        .await
        .unwrap();
    let retry =
        (response.headers().get("retry-after")).map(|v| v.to_str().unwrap_or_default().to_owned());
    (response.status().as_u16(), retry)
}

/// Spans the bucket lists for ingester `ingester`.
async fn listed_spans(bucket: &Bucket, ingester: &str) -> u64 {
    let manifest = bucket.read_ingester_manifest(ingester).await.unwrap();
    manifest.map_or(0, |m| m.rows(Signal::Spans))
}

/// Spans listed for `ingester`, and then counted by a new querier: each acknowledged span once.
async fn counted_once(moto: &Moto, bucket: &Bucket, ingester: &str, acked: u64) {
    let listed = within(Duration::from_secs(120), || async {
        listed_spans(bucket, ingester).await == acked
    })
    .await;
    assert!(
        listed.is_some(),
        "{} spans listed, {acked} acknowledged",
        listed_spans(bucket, ingester).await
    );
    let querier = start(moto, "query").await;
    let counted = within(Duration::from_secs(60), || async {
        let answer = sql(
            querier.ui,
            "SELECT count(*) AS n, count(DISTINCT span_id) AS d FROM spans",
        )
        .await;
        answer["rows"][0] == serde_json::json!({"n": acked, "d": acked})
    })
    .await;
    assert!(
        counted.is_some(),
        "the querier counts each acknowledged span once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_object_store_is_waited_for_then_caught_up() {
    let moto = Moto::start();
    let bucket = moto.bucket("cluster", "prod");
    let proxy = Proxy::start(moto.endpoint.trim_start_matches("http://").to_owned()).await;
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let config = format!(
        "{}\n[store]\nflush_interval_secs = 1\n",
        config_for(
            &endpoint,
            "ingester_id = \"orders-1\"\nmax_pending_bytes = 100000"
        )
    );
    let args = ["--role".to_owned(), "ingest".to_owned()];
    let ingester = start_server_with(tempfile::tempdir().unwrap(), &config, &args).await;

    let mut acked = 0u64;
    let mut n = 0u64;
    for _ in 0..5 {
        assert_eq!(send(ingester.http, n).await.0, 200);
        (acked, n) = (acked + 100, n + 1);
    }
    let uploaded = within(Duration::from_secs(60), || async {
        listed_spans(&bucket, "orders-1").await == acked
    })
    .await;
    assert!(
        uploaded.is_some(),
        "the first spans go up: {} of {acked} listed",
        listed_spans(&bucket, "orders-1").await
    );

    // The store cannot be reached: acknowledgements go on until 100 kB of parts wait, then
    // 503 with a retry delay.
    proxy.cut();
    let during = acked;
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let refused = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "past the bound, ingest answers 503"
        );
        let (status, retry) = send(ingester.http, n).await;
        n += 1;
        match status {
            200 => acked += 100,
            503 => break retry,
            other => panic!("unexpected answer {other} while the store is away"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(refused.is_some(), "a 503 says when to retry");
    assert!(
        acked > during,
        "spans were acknowledged while the store was away"
    );
    assert_eq!(listed_spans(&bucket, "orders-1").await, during);

    // Back again: everything acknowledged goes up, once, and ingest takes spans again.
    proxy.restore();
    let caught_up = within(Duration::from_secs(240), || async {
        listed_spans(&bucket, "orders-1").await == acked
    })
    .await;
    assert!(
        caught_up.is_some(),
        "every acknowledged span is uploaded: {} of {acked} listed",
        listed_spans(&bucket, "orders-1").await,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while send(ingester.http, n).await.0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "ingest takes spans again"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    acked += 100;

    counted_once(&moto, &bucket, "orders-1", acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingester_killed_during_an_upload_loses_nothing_and_lists_nothing_twice() {
    let moto = Moto::start();
    let bucket = moto.bucket("cluster", "prod");
    let proxy = Proxy::start(moto.endpoint.trim_start_matches("http://").to_owned()).await;
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let config = format!(
        "{}\n[store]\nflush_interval_secs = 1\n",
        config_for(&endpoint, "ingester_id = \"orders-2\"")
    );
    let dir = tempfile::tempdir().unwrap();
    let args = ["--role".to_owned(), "ingest".to_owned()];
    let spawn = |ports| spawn_serve_with(dir.path(), ports, &config, &args);
    let (mut child, ports) = start_ready(dir.path(), spawn).await;

    let mut acked = 0u64;
    for n in 0..10 {
        assert_eq!(send(ports.http, n).await.0, 200);
        acked += 100;
    }
    let up = within(Duration::from_secs(60), || async {
        listed_spans(&bucket, "orders-2").await == acked
    })
    .await;
    assert!(up.is_some(), "the first spans go up");

    // Uploads crawl; more spans are acknowledged and flushed, and the ingester is killed
    // while a part of them is on its way up.
    proxy.slow_down();
    for n in 10..30 {
        assert_eq!(send(ports.http, n).await.0, 200);
        acked += 100;
    }
    let in_flight = within(Duration::from_secs(60), || async {
        proxy.slowed_bytes.load(Ordering::SeqCst) > 32 << 10
    })
    .await;
    assert!(in_flight.is_some(), "an upload is under way");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        listed_spans(&bucket, "orders-2").await < acked,
        "killed before all was up"
    );

    // Restarted on its data directory: the WAL and the parts not yet listed go up, once.
    proxy.restore();
    let (mut child, _) = start_ready(dir.path(), spawn).await;
    counted_once(&moto, &bucket, "orders-2", acked).await;
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Whether the process on `ui` shows the `AlwaysOn` alert: whether it has evaluated the rules.
async fn evaluates(ui: u16) -> bool {
    let (status, body) = get_json(ui, "/api/v1/alerts?state=pending&state=firing").await;
    assert_eq!(status, 200, "{body}");
    (body["alerts"].as_array().into_iter().flatten()).any(|a| a["rule"] == "AlwaysOn")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alerting_lease_moves_when_its_holder_is_killed() {
    let moto = Moto::start();
    moto.bucket("cluster", "prod");
    let rules = tempfile::tempdir().unwrap();
    let file = rules.path().join("always.yml");
    std::fs::write(
        &file,
        "groups:\n  - name: always\n    rules:\n      - alert: AlwaysOn\n        expr: vector(1) > 0\n",
    )
    .unwrap();
    let config = format!(
        "{}\n[alerting]\nevaluation_interval_secs = 1\n",
        cluster_config(&moto)
    );
    let args = [
        "--role".to_owned(),
        "alert".to_owned(),
        "--rules".to_owned(),
        file.display().to_string(),
    ];
    let a = start_server_with(tempfile::tempdir().unwrap(), &config, &args).await;
    let b = start_server_with(tempfile::tempdir().unwrap(), &config, &args).await;

    // One of the two takes the lease and evaluates; the other waits.
    let taken = within(Duration::from_secs(60), || async {
        evaluates(a.ui).await || evaluates(b.ui).await
    })
    .await;
    assert!(taken.is_some(), "one alert process evaluates the rules");
    let (holder, waiting) = if evaluates(a.ui).await {
        (a, b)
    } else {
        (b, a)
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(evaluates(holder.ui).await);
    assert!(
        !evaluates(waiting.ui).await,
        "only the lease's holder evaluates"
    );

    // kill -9: the lease expires 30 s after its last renewal and the other takes it.
    drop(holder);
    let moved = within(Duration::from_secs(120), || evaluates(waiting.ui)).await;
    let moved = moved.expect("the waiting process takes the lease and evaluates");
    eprintln!("the alerting lease moved {moved:?} after its holder was killed");
}
