//! The opt-in durability modes: "none" never fsyncs the WAL, "interval" fsyncs on a timer even
//! when no more appends come; both keep everything across a clean reopen.

mod common;

use std::time::Duration;

use common::*;
use spyglass_store::{Durability, StoreConfig};

#[tokio::test]
async fn fsync_mode_syncs_every_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..5 {
        append(&store, vec![span(i, 1, "api", T0)]).await;
    }
    assert_eq!(
        store.wal_stats().fsync_seconds.snapshot().count,
        5,
        "one fsync per sequential append"
    );
}

#[tokio::test]
async fn none_mode_never_fsyncs_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(
        dir.path(),
        StoreConfig {
            durability: Durability::None,
            ..config()
        },
    );
    let spans: Vec<_> = (0..5).map(|i| span(i, 1, "api", T0)).collect();
    for s in &spans {
        append(&store, vec![s.clone()]).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.wal_stats().fsync_seconds.snapshot().count, 0);
    drop(store);
    assert_eq!(span_ids(&open(dir.path()).snapshot()), expected_ids(&spans));
}

#[tokio::test]
async fn interval_mode_fsyncs_on_a_timer_even_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        durability: Durability::Interval,
        wal_sync_interval_ms: 500,
        ..config()
    };
    let store = open_with(dir.path(), config);
    let spans: Vec<_> = (0..5).map(|i| span(i, 1, "api", T0)).collect();
    for s in &spans {
        append(&store, vec![s.clone()]).await;
    }
    let after_appends = store.wal_stats().fsync_seconds.snapshot().count;
    assert!(
        after_appends < 5,
        "appends do not each wait for an fsync ({after_appends})"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        store.wal_stats().fsync_seconds.snapshot().count > after_appends,
        "the idle timer synced the tail"
    );
    drop(store);
    assert_eq!(span_ids(&open(dir.path()).snapshot()), expected_ids(&spans));
}
