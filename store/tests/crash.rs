//! Kill -9 mid-stream: a child process appends batches and reports each acknowledgement on
//! stdout; the parent kills it with SIGKILL, reopens the store, and finds every acknowledged
//! span exactly once.
//!
//! The child is this same test binary, started with `SPYGLASS_CRASH_CHILD_DIR` set.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use spyglass_store::{ErrorKind, Records, StoreConfig};

const CHILD_ENV: &str = "SPYGLASS_CRASH_CHILD_DIR";
const BATCH: u64 = 50;

fn child(dir: &str) -> ! {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // Small flush threshold: the kill also lands around flushes and WAL checkpoints.
        let config = StoreConfig {
            flush_bytes: 1 << 20,
            ..config()
        };
        let store = open_with(std::path::Path::new(dir), config);
        let maintenance = store.maintenance();
        tokio::spawn(maintenance.run(std::future::pending()));
        let mut tasks = Vec::new();
        for writer in 0..4u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for batch in 0.. {
                    let trace = writer << 32 | batch;
                    let spans = Records::Spans(
                        (0..BATCH)
                            .map(|n| span(trace, n, "crash", T0 + batch))
                            .collect(),
                    );
                    // Retry when told to, as an OTLP exporter does on 429 / RESOURCE_EXHAUSTED.
                    loop {
                        match store.append(&spans).await {
                            Ok(_) => break,
                            Err(e) if e.kind() == ErrorKind::TryLater => {
                                tokio::time::sleep(Duration::from_millis(20)).await
                            }
                            Err(e) => panic!("append failed: {e}"),
                        }
                    }
                    println!("acked {trace}");
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    unreachable!("the parent kills the child")
}

#[test]
fn sigkill_loses_no_acknowledged_span() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "sigkill_loses_no_acknowledged_span",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acked = Vec::new();
    let started = Instant::now();
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(trace) = line.strip_prefix("acked ") {
            acked.push(trace.parse::<u64>().unwrap());
        }
        if acked.len() >= 400 || started.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    // SIGKILL: no destructor, no flush, no final fsync.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        acked.len() >= 100,
        "the child acknowledged only {} batches",
        acked.len()
    );

    let (store, report) = spyglass_store::Store::open(dir.path(), config()).unwrap();
    assert!(
        report
            .damaged
            .iter()
            .all(|d| d.damage == spyglass_store::wal::Damage::Truncated),
        "only a torn tail may be found: {report:?}"
    );
    let stored = span_ids(&store.snapshot());
    let mut unique = stored.clone();
    unique.dedup();
    assert_eq!(unique.len(), stored.len(), "no span is stored twice");
    let expected: Vec<_> = acked
        .iter()
        .flat_map(|&t| (0..BATCH).map(move |n| span(t, n, "crash", 0)))
        .collect();
    let stored: std::collections::HashSet<_> = stored.into_iter().collect();
    let missing = expected
        .iter()
        .filter(|s| !stored.contains(&s.span_id))
        .count();
    assert_eq!(
        missing,
        0,
        "{missing} acknowledged spans lost of {}",
        expected.len()
    );
}
