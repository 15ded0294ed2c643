//! Power loss, not just `kill -9`: the store runs on a file system that forgets at the cut
//! whatever was not fsynced (`common/powerfs.rs`, a FUSE layer), and the cut falls at every
//! point of a flush and of the appends beside it. After power comes back, the store opens,
//! every part its manifest names opens, and every acknowledged span is there.

mod common;
#[path = "common/powerfs.rs"]
mod powerfs;

use std::collections::HashSet;
use std::path::Path;

use common::*;
use powerfs::PowerFs;
use spyglass_store::model::{Span, SpanId};
use spyglass_store::{Records, Store};

/// `n` one-span traces from `first`, half of them an hour later (two parts per flush).
fn spans(first: u64, n: u64) -> Vec<Span> {
    (first..first + n)
        .map(|t| span(t, 1, "api", T0 + (t % 2) * HOUR + t))
        .collect()
}

/// Appends `spans`; answers them when the store acknowledged them.
async fn append_acked(store: &Store, spans: Vec<Span>) -> Vec<Span> {
    match store.append(&Records::Spans(spans.clone())).await {
        Ok(_) => spans,
        Err(_) => Vec::new(),
    }
}

/// One run: spans flushed into parts, spans in the WAL, then a flush and more appends during
/// which the power goes off after `cut` changes to the file system (never, with `None`).
/// Checks what survives; answers the changes the flush and appends made.
async fn run(root: &Path, cut: Option<u64>) -> u64 {
    let mountpoint = root.join(format!("mnt-{}", cut.map_or(-1, |c| c as i64)));
    std::fs::create_dir(&mountpoint).unwrap();
    let fs = PowerFs::new();
    let data = mountpoint.join("data");
    let mut acked = Vec::new();
    let changes = {
        let _mounted = fs.mount(&mountpoint);
        let store = open(&data);
        acked.extend(append_acked(&store, spans(0, 40)).await);
        store.flush().await.expect("a flush with the power on");
        acked.extend(append_acked(&store, spans(100, 40)).await);

        let before = fs.changes();
        if let Some(cut) = cut {
            fs.cut_after(cut);
        }
        let _ = store.flush().await;
        acked.extend(append_acked(&store, spans(200, 20)).await);
        acked.extend(append_acked(&store, spans(300, 20)).await);
        let _ = store.flush().await;
        let changes = fs.changes() - before;
        fs.cut();
        drop(store);
        changes
    };

    fs.restore();
    let _mounted = fs.mount(&mountpoint);
    let (store, report) = Store::open(&data, config())
        .unwrap_or_else(|e| panic!("cut after {cut:?} changes: the store does not open: {e}"));
    store
        .warm_caches()
        .unwrap_or_else(|e| panic!("cut after {cut:?} changes: a part does not open: {e}"));
    let stored: HashSet<SpanId> = span_ids(&store.snapshot()).into_iter().collect();
    let lost: Vec<_> = (acked.iter())
        .filter(|s| !stored.contains(&s.span_id))
        .map(|s| s.span_id)
        .collect();
    assert!(
        lost.is_empty(),
        "cut after {cut:?} changes: {} of {} acknowledged spans lost ({report:?})",
        lost.len(),
        acked.len()
    );
    if cut.is_none() {
        assert_eq!(
            acked.len(),
            120,
            "with the power on, everything is acknowledged"
        );
    }
    drop(store);
    changes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_span_survives_a_power_cut_at_any_point() {
    let root = tempfile::tempdir().unwrap();
    let changes = run(root.path(), None).await;
    assert!(
        changes > 20,
        "the flush and appends change the disk: {changes}"
    );
    // Cut points spread over the whole window, the first and the last change included.
    let step = (changes / 40).max(1);
    let mut cuts: Vec<u64> = (0..changes).step_by(step as usize).collect();
    cuts.push(changes - 1);
    for cut in cuts {
        run(root.path(), Some(cut)).await;
    }
}
