//! The durability modes: "fsync" makes every group durable before answering, "none" never
//! fsyncs the WAL, "interval" fsyncs on a timer even when no more appends come; all keep
//! everything across a clean reopen.

mod common;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use spyglass_store::wal::{OsFs, WalFile, WalFs};
use spyglass_store::{Durability, Store, StoreConfig};

/// The real file system, counting the `fdatasync` calls made on WAL segments.
#[derive(Default)]
struct CountingFs {
    syncs: Arc<AtomicUsize>,
}

struct CountingFile {
    file: Box<dyn WalFile>,
    syncs: Arc<AtomicUsize>,
}

impl WalFs for CountingFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        Ok(Box::new(CountingFile {
            file: OsFs.create(path)?,
            syncs: self.syncs.clone(),
        }))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsFs.sync_dir(dir)
    }
}

impl WalFile for CountingFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        self.file.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

/// Appends five spans one after another; answers the fdatasync calls made for the last four.
async fn syncs_for_four_appends(config: StoreConfig) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(CountingFs::default());
    let (store, _) = Store::open_with_fs(dir.path(), config, fs.clone()).unwrap();
    // The first append also creates the segment (and syncs its header).
    append(&store, vec![span(0, 1, "api", T0)]).await;
    let before = fs.syncs.load(Ordering::SeqCst);
    for i in 1..5 {
        append(&store, vec![span(i, 1, "api", T0)]).await;
    }
    fs.syncs.load(Ordering::SeqCst) - before
}

#[tokio::test]
async fn fsync_mode_syncs_every_group() {
    assert_eq!(
        syncs_for_four_appends(config()).await,
        4,
        "one fdatasync per sequential append"
    );
    let none = StoreConfig {
        durability: Durability::None,
        ..config()
    };
    assert_eq!(syncs_for_four_appends(none).await, 0, "and none without it");
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
