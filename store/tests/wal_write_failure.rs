//! A write or fsync error fails the append without acknowledging it; once the disk recovers,
//! appends succeed again and nothing acknowledged earlier is lost. A segment whose fsync failed
//! is never written again, and a failed append gives its memtable reservation back.

mod common;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use spyglass_store::wal::{OsFs, WalFile, WalFs};
use spyglass_store::{Durability, Error, ErrorKind, Records, Store, StoreConfig};

/// The real file system, with switches that make writes or fsyncs fail like a full or dying disk.
#[derive(Default)]
struct FlakyFs {
    fail_writes: Arc<AtomicBool>,
    fail_syncs: Arc<AtomicBool>,
    /// While set, a write waits (the disk hangs) before going on.
    hold_writes: Arc<AtomicBool>,
    segments_created: AtomicUsize,
}

struct FlakyFile {
    file: Box<dyn WalFile>,
    fail_writes: Arc<AtomicBool>,
    fail_syncs: Arc<AtomicBool>,
    hold_writes: Arc<AtomicBool>,
}

impl WalFs for FlakyFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        self.segments_created.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FlakyFile {
            file: OsFs.create(path)?,
            fail_writes: self.fail_writes.clone(),
            fail_syncs: self.fail_syncs.clone(),
            hold_writes: self.hold_writes.clone(),
        }))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsFs.sync_dir(dir)
    }
}

impl WalFile for FlakyFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        while self.hold_writes.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.fail_writes.load(Ordering::SeqCst) {
            // A short write, then ENOSPC: what a full disk does.
            self.file.write_all(&buf[..buf.len() / 2])?;
            return Err(io::Error::from_raw_os_error(28));
        }
        self.file.write_all(buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        if self.fail_syncs.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.file.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

async fn failure_then_recovery(switch: fn(&FlakyFs) -> &Arc<AtomicBool>) {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FlakyFs::default());
    let (store, _) = Store::open_with_fs(dir.path(), config(), fs.clone()).unwrap();
    let before: Vec<_> = (0..3).map(|i| span(i, 1, "svc", T0)).collect();
    for s in &before {
        append(&store, vec![s.clone()]).await;
    }

    switch(&fs).store(true, Ordering::SeqCst);
    let failed = span(50, 1, "svc", T0);
    let err = store
        .append(&Records::Spans(vec![failed.clone()]))
        .await
        .expect_err("a failed disk write is not acknowledged");
    assert!(matches!(err, Error::WalWrite { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        !span_ids(&store.snapshot()).contains(&failed.span_id),
        "an unacknowledged span is not readable"
    );

    switch(&fs).store(false, Ordering::SeqCst);
    let after: Vec<_> = (100..103).map(|i| span(i, 1, "svc", T0)).collect();
    for s in &after {
        append(&store, vec![s.clone()]).await;
    }
    let mut acknowledged = before.clone();
    acknowledged.extend(after);
    assert_eq!(span_ids(&store.snapshot()), expected_ids(&acknowledged));
    assert_eq!(
        store
            .wal_stats()
            .write_failures_total
            .load(Ordering::Relaxed),
        1
    );

    drop(store);
    let reopened = open(dir.path());
    assert_eq!(
        span_ids(&reopened.snapshot()),
        expected_ids(&acknowledged),
        "after restart: every acknowledged span, and not the failed one"
    );
}

#[tokio::test]
async fn fsync_error_fails_the_append_and_the_store_recovers() {
    failure_then_recovery(|fs| &fs.fail_syncs).await;
}

#[tokio::test]
async fn write_error_fails_the_append_and_the_store_recovers() {
    failure_then_recovery(|fs| &fs.fail_writes).await;
}

/// Waits (up to a generous deadline) until the WAL has counted `n` write failures.
async fn wait_for_failures(store: &Store, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store
        .wal_stats()
        .write_failures_total
        .load(Ordering::Relaxed)
        < n
    {
        assert!(Instant::now() < deadline, "no wal failure was counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_append_given_up_by_its_caller_gives_its_memory_back_when_the_write_fails() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FlakyFs::default());
    let (store, _) = Store::open_with_fs(dir.path(), config(), fs.clone()).unwrap();
    fs.hold_writes.store(true, Ordering::SeqCst);
    fs.fail_writes.store(true, Ordering::SeqCst);
    let given_up = tokio::time::timeout(
        Duration::from_millis(100),
        store.append(&Records::Spans(vec![span(1, 1, "svc", T0)])),
    )
    .await;
    assert!(given_up.is_err(), "the hung disk held the append");
    assert!(
        store.memtable_bytes() > 0,
        "the queued record holds its bytes"
    );
    fs.hold_writes.store(false, Ordering::SeqCst);
    wait_for_failures(&store, 1).await;
    assert_eq!(
        store.memtable_bytes(),
        0,
        "nobody was left to release the failed record's bytes but the record itself"
    );
}

#[tokio::test]
async fn a_failed_interval_fsync_retires_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FlakyFs::default());
    let config = StoreConfig {
        durability: Durability::Interval,
        wal_sync_interval_ms: 50,
        ..config()
    };
    let (store, _) = Store::open_with_fs(dir.path(), config, fs.clone()).unwrap();
    let mut spans: Vec<_> = (0..2).map(|i| span(i, 1, "svc", T0)).collect();
    for s in &spans {
        append(&store, vec![s.clone()]).await;
    }
    fs.fail_syncs.store(true, Ordering::SeqCst);
    append(&store, vec![span(2, 1, "svc", T0)]).await;
    spans.push(span(2, 1, "svc", T0));
    wait_for_failures(&store, 1).await;
    fs.fail_syncs.store(false, Ordering::SeqCst);
    assert_eq!(fs.segments_created.load(Ordering::SeqCst), 1);

    let later = span(3, 1, "svc", T0);
    append(&store, vec![later.clone()]).await;
    spans.push(later);
    assert_eq!(
        fs.segments_created.load(Ordering::SeqCst),
        2,
        "the write after a failed fsync goes to a new segment, never to the failed one"
    );
    drop(store);
    assert_eq!(span_ids(&open(dir.path()).snapshot()), expected_ids(&spans));
}
