//! A compaction holds a batch of each input and the chunk it builds, not its inputs whole:
//! merging parts that decode to 384 MB raises the process's peak memory by less than that.
//! (Alone in its test binary: the peak is the whole process's.)

mod common;

use std::sync::Arc;

use common::*;
use spyglass_store::model::{AttrValue, Attributes, KeyValue};
use spyglass_store::{Signal, StoreConfig};

fn status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merging_parts_holds_a_batch_of_each_not_the_parts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(
        dir.path(),
        StoreConfig {
            compaction_min_parts: 2,
            ..config()
        },
    );
    // Eight parts of one hour (the most one merge takes), each of 6,000 spans carrying 8 KB
    // of attributes: 48 MB a part once decoded, 384 MB for all (on disk they compress to
    // little). The index writer's budget (128 MiB) is the larger part of what a merge holds.
    const PARTS: u64 = 8;
    let mut decoded = 0u64;
    for part in 0..PARTS {
        let spans: Vec<_> = (0..6_000u64)
            .map(|t| {
                let mut s = span(t, part + 1, "api", T0 + t * 1_000 + part);
                let text = format!("{t:08}{}", "x".repeat(8_184));
                s.attributes = Attributes::new(vec![KeyValue {
                    key: "payload".into(),
                    value: AttrValue::Str(text),
                }]);
                s.resource = Arc::clone(&s.resource);
                s
            })
            .collect();
        decoded += spans.len() as u64 * 8_192;
        append(&store, spans).await;
        store.flush().await.unwrap();
    }
    assert_eq!(store.snapshot().parts(Signal::Spans).len(), PARTS as usize);

    // Forget the peak so far (the flushes'), then measure the compaction's.
    std::fs::write("/proc/self/clear_refs", "5").expect("the peak RSS can be reset");
    let before = status("VmRSS:");
    assert_eq!(store.compact().await.unwrap(), PARTS as usize);
    let growth = status("VmHWM:").saturating_sub(before);
    eprintln!(
        "compaction of {PARTS} parts ({} MiB decoded): peak grew by {} MiB",
        decoded >> 20,
        growth >> 20
    );
    assert!(
        growth < decoded,
        "the compaction's peak grew by {} MiB for {} MiB of inputs",
        growth >> 20,
        decoded >> 20
    );
    assert_eq!(store.snapshot().parts(Signal::Spans).len(), 1);
    assert_eq!(
        store.snapshot().find_trace(&trace_id(5_999)).unwrap().len(),
        PARTS as usize
    );
}
