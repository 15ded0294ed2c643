//! A write or fsync error fails the append without acknowledging it; once the disk recovers,
//! appends succeed again and nothing acknowledged earlier is lost.

mod common;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use spyglass_store::wal::{OsFs, WalFile, WalFs};
use spyglass_store::{Error, ErrorKind, Records, Store};

/// The real file system, with switches that make writes or fsyncs fail like a full or dying disk.
#[derive(Default)]
struct FlakyFs {
    fail_writes: Arc<AtomicBool>,
    fail_syncs: Arc<AtomicBool>,
}

struct FlakyFile {
    file: Box<dyn WalFile>,
    fail_writes: Arc<AtomicBool>,
    fail_syncs: Arc<AtomicBool>,
}

impl WalFs for FlakyFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        Ok(Box::new(FlakyFile {
            file: OsFs.create(path)?,
            fail_writes: self.fail_writes.clone(),
            fail_syncs: self.fail_syncs.clone(),
        }))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsFs.sync_dir(dir)
    }
}

impl WalFile for FlakyFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
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
