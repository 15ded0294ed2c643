//! Several processes over one S3-compatible bucket (moto on loopback): two `spyglass serve
//! --role ingest` take telemetry from the Rust OpenTelemetry exporter and upload their parts,
//! and `--role query` processes find every trace by id and by search.

mod common;
#[path = "../store/tests/common/moto.rs"]
mod moto;

use std::time::Duration;

use common::{Server, TEST_CONFIG, checkout, get_json, provider, start_server_with, within};
use moto::Moto;
use opentelemetry::trace::TracerProvider;

/// The test configuration with the bucket `cluster` of `moto`, everything else by default.
fn cluster_config(moto: &Moto) -> String {
    format!(
        "{TEST_CONFIG}
[store.object_store]
url = \"s3://cluster/prod\"
endpoint = \"{}\"
region = \"us-east-1\"
allow_http = true

[store.object_store.options]
aws_access_key_id = \"test\"
aws_secret_access_key = \"test\"
",
        moto.endpoint
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
