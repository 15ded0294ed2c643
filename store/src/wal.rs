//! The write-ahead log: what `append` acknowledges is in here, fsynced, before the caller hears
//! back.
//!
//! One writer thread owns the active segment. Appenders hand it encoded records through a bounded
//! queue; it takes everything queued (group commit), writes it with one `write`, makes it durable
//! with one `fdatasync`, hands the group to the memtable in LSN order, and only then answers the
//! appenders. A failed write or fsync answers every appender of the group with an error, cuts the
//! segment back, and moves on to a fresh segment: a file whose fsync failed is never trusted again.
//!
//! On open, [`replay`] reads every segment in order. A record whose frame is intact but whose
//! content cannot be used is set aside alone (copied to `wal/corrupt/`, and the segment rewritten
//! without it); replay goes on with the next record. Damage to the framing itself (a torn
//! record, a bad length or checksum, an unreadable segment) leaves no way to find the next
//! record: that segment stops there, the bytes from the damage on are moved to `wal/corrupt/`,
//! and replay goes on with the next segment. Everything set aside is counted in the
//! [`ReplayReport`].

mod file;
mod record;
mod replay;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use file::{OsFs, WalFile, WalFs};
pub use record::Damage;
pub use record::MAX_PAYLOAD;
pub(crate) use record::segment_header;
pub(crate) use replay::replay;

use crate::config::Durability;
use crate::error::{Error, Result};

/// Where the WAL writer is, for `/metrics`.
#[derive(Debug, Default)]
pub struct WalStats {
    pub bytes_written_total: AtomicU64,
    pub records_total: AtomicU64,
    pub fsync_seconds: crate::stats::Histogram,
    pub write_failures_total: AtomicU64,
}

/// What replay found. Damaged ranges are kept under `wal/corrupt/`, never deleted.
#[derive(Debug, Default, Clone)]
pub struct ReplayReport {
    pub segments: usize,
    pub records_replayed: u64,
    /// Records already in Parquet parts (at or below the manifest's flushed LSN).
    pub records_already_flushed: u64,
    pub damaged: Vec<DamagedRange>,
}

impl ReplayReport {
    pub fn bytes_set_aside(&self) -> u64 {
        self.damaged.iter().map(|d| d.bytes_set_aside).sum()
    }
}

#[derive(Debug, Clone)]
pub struct DamagedRange {
    pub segment: PathBuf,
    pub offset: u64,
    pub damage: Damage,
    pub bytes_set_aside: u64,
    pub set_aside_to: PathBuf,
}

#[derive(Debug)]
pub(crate) struct SegmentInfo {
    path: PathBuf,
    /// Highest LSN written to the segment; 0 when it holds no record.
    last_lsn: u64,
    active: bool,
}

fn segment_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}.wal")
}

fn parse_segment_name(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".wal")?.parse().ok()
}

/// Settings the writer needs, taken from [`crate::config::StoreConfig`].
#[derive(Clone, Debug)]
pub(crate) struct WriterOptions {
    pub durability: Durability,
    pub sync_interval: Duration,
    pub segment_bytes: u64,
    pub queue_depth: usize,
    pub max_group_bytes: usize,
}

struct Request<T> {
    tag: u8,
    /// Shared, not copied: a source record is the request's own buffer.
    payload: Bytes,
    item: T,
    reply: tokio::sync::oneshot::Sender<Result<u64>>,
}

/// Called by the writer with each durable group, in LSN order, before anyone is answered.
pub(crate) type Apply<T> = Box<dyn FnMut(Vec<(u64, T)>) + Send>;

pub(crate) struct Wal<T> {
    sender: Mutex<Option<SyncSender<Request<T>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    segments: Arc<Mutex<Vec<SegmentInfo>>>,
    stats: Arc<WalStats>,
}

impl<T: Send + 'static> Wal<T> {
    pub(crate) fn start(
        dir: PathBuf,
        options: WriterOptions,
        fs: Arc<dyn WalFs>,
        replayed: Vec<SegmentInfo>,
        next_lsn: u64,
        apply: Apply<T>,
    ) -> Result<Self> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(options.queue_depth);
        let segments = Arc::new(Mutex::new(replayed));
        let stats = Arc::new(WalStats::default());
        let writer = Writer {
            dir,
            options,
            fs,
            file: None,
            file_len: 0,
            next_lsn,
            unsynced: false,
            last_sync: Instant::now(),
            segments: segments.clone(),
            stats: stats.clone(),
            apply,
        };
        let thread = std::thread::Builder::new()
            .name("spyglass-wal".into())
            .spawn(move || writer.run(receiver))
            .map_err(Error::io("start wal writer thread", "spyglass-wal"))?;
        Ok(Self {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
            segments,
            stats,
        })
    }

    /// Appends one record; resolves once it is durable (per the durability setting) and handed
    /// to the memtable. A full queue answers [`Error::TryLater`] at once.
    pub(crate) async fn append(&self, tag: u8, payload: Bytes, item: T) -> Result<u64> {
        if payload.len() > record::MAX_PAYLOAD {
            return Err(Error::TooLarge {
                what: "a write-ahead log record",
                bytes: payload.len() as u64,
                limit: record::MAX_PAYLOAD as u64,
            });
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sender = self
            .sender
            .lock()
            .expect("wal sender lock")
            .clone()
            .ok_or(Error::Closed)?;
        sender
            .try_send(Request {
                tag,
                payload,
                item,
                reply,
            })
            .map_err(|e| match e {
                TrySendError::Full(_) => Error::TryLater {
                    reason: "write-ahead log is behind",
                },
                TrySendError::Disconnected(_) => Error::Closed,
            })?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Deletes segments whose every record is at or below `flushed_lsn`.
    pub(crate) fn checkpoint(&self, flushed_lsn: u64) -> Result<usize> {
        let mut segments = self.segments.lock().expect("wal segments lock");
        let mut removed = 0;
        let mut first_error = None;
        // A segment that could not be removed stays listed, so that the next checkpoint tries
        // it again; the others go on being removed.
        segments.retain(|seg| {
            if seg.active || seg.last_lsn > flushed_lsn {
                return true;
            }
            match fs::remove_file(&seg.path) {
                Ok(()) => {
                    removed += 1;
                    false
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => {
                    first_error.get_or_insert_with(|| {
                        Error::io("remove checkpointed wal segment", &seg.path)(e)
                    });
                    true
                }
            }
        });
        match first_error {
            Some(error) => Err(error),
            None => Ok(removed),
        }
    }

    pub(crate) fn stats(&self) -> &Arc<WalStats> {
        &self.stats
    }

    /// Number of segment files the WAL holds now.
    pub(crate) fn segment_count(&self) -> usize {
        self.segments.lock().expect("wal segments lock").len()
    }

    /// Stops accepting appends, lets the writer finish what is queued, and waits for it.
    pub(crate) fn close(&self) {
        self.sender.lock().expect("wal sender lock").take();
        if let Some(thread) = self.thread.lock().expect("wal thread lock").take() {
            let _ = thread.join();
        }
    }
}

impl<T> Drop for Wal<T> {
    fn drop(&mut self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
    }
}

struct Writer<T> {
    dir: PathBuf,
    options: WriterOptions,
    fs: Arc<dyn WalFs>,
    file: Option<Box<dyn WalFile>>,
    file_len: u64,
    next_lsn: u64,
    unsynced: bool,
    last_sync: Instant,
    segments: Arc<Mutex<Vec<SegmentInfo>>>,
    stats: Arc<WalStats>,
    apply: Apply<T>,
}

impl<T> Writer<T> {
    fn run(mut self, receiver: Receiver<Request<T>>) {
        let mut buf = Vec::new();
        loop {
            let timer_due = self.unsynced && self.options.durability == Durability::Interval;
            let first = if timer_due {
                match receiver.recv_timeout(self.options.sync_interval) {
                    Ok(req) => req,
                    Err(RecvTimeoutError::Timeout) => {
                        self.timer_sync();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match receiver.recv() {
                    Ok(req) => req,
                    Err(_) => break,
                }
            };
            let mut group = vec![first];
            let mut group_bytes = group[0].payload.len();
            while group_bytes < self.options.max_group_bytes {
                match receiver.try_recv() {
                    Ok(req) => {
                        group_bytes += req.payload.len();
                        group.push(req);
                    }
                    Err(_) => break,
                }
            }
            self.commit(group, &mut buf);
        }
        if self.unsynced && self.options.durability != Durability::None {
            let _ = self.sync();
        }
    }

    fn commit(&mut self, group: Vec<Request<T>>, buf: &mut Vec<u8>) {
        buf.clear();
        let first_lsn = self.next_lsn;
        for req in &group {
            record::encode(buf, self.next_lsn, req.tag, &req.payload);
            self.next_lsn += 1;
        }
        match self.write_durably(first_lsn, buf) {
            Ok(()) => {
                let last_lsn = self.next_lsn - 1;
                if let Some(seg) = self.segments.lock().expect("wal segments lock").last_mut() {
                    seg.last_lsn = last_lsn;
                }
                self.stats
                    .records_total
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                let mut replies = Vec::with_capacity(group.len());
                let mut items = Vec::with_capacity(group.len());
                for (i, req) in group.into_iter().enumerate() {
                    let lsn = first_lsn + i as u64;
                    items.push((lsn, req.item));
                    replies.push((lsn, req.reply));
                }
                (self.apply)(items);
                for (lsn, reply) in replies {
                    let _ = reply.send(Ok(lsn));
                }
            }
            Err(source) => {
                self.stats
                    .write_failures_total
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %source, records = group.len(), "wal write failed; the group is not acknowledged");
                for req in group {
                    let error = std::io::Error::new(source.kind(), source.to_string());
                    let _ = req.reply.send(Err(Error::WalWrite { source: error }));
                }
            }
        }
    }

    fn write_durably(&mut self, first_lsn: u64, buf: &[u8]) -> std::io::Result<()> {
        let full = self.file_len + buf.len() as u64 > self.options.segment_bytes
            && self.file_len > record::SEGMENT_HEADER_LEN as u64;
        if self.file.is_none() || full {
            self.roll(first_lsn)?;
        }
        let group_start = self.file_len;
        let result = self.write_and_sync(buf);
        if result.is_err() {
            self.abandon_segment(group_start);
        }
        result
    }

    fn write_and_sync(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let file = self.file.as_mut().expect("a segment is open after roll");
        file.write_all(buf)?;
        self.file_len += buf.len() as u64;
        self.stats
            .bytes_written_total
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.unsynced = true;
        match self.options.durability {
            Durability::Fsync => self.sync(),
            Durability::Interval if self.last_sync.elapsed() >= self.options.sync_interval => {
                self.sync()
            }
            Durability::Interval | Durability::None => Ok(()),
        }
    }

    fn sync(&mut self) -> std::io::Result<()> {
        if let Some(file) = self.file.as_mut() {
            let started = Instant::now();
            file.sync_data()?;
            self.stats.fsync_seconds.observe(started.elapsed());
        }
        self.unsynced = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// The interval mode's fsync of records already acknowledged. When it fails they cannot
    /// be taken back: the memtable holds them and the next flush makes them durable in parts.
    /// The segment is never written again (its page cache cannot be trusted after a failed
    /// fsync); the next group starts a new one.
    fn timer_sync(&mut self) {
        if let Err(error) = self.sync() {
            self.stats
                .write_failures_total
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(%error, "wal fsync on the interval timer failed; the segment is closed and a new one starts with the next write");
            self.file = None;
            if let Some(seg) = self.segments.lock().expect("wal segments lock").last_mut() {
                seg.active = false;
            }
            self.unsynced = false;
        }
    }

    /// Starts a new segment whose first record will be `first_lsn`.
    fn roll(&mut self, first_lsn: u64) -> std::io::Result<()> {
        if self.file.is_some()
            && self.options.durability != Durability::None
            && let Err(error) = self.sync()
        {
            // Never retried on the same file: a second fsync can report success for pages
            // the first one lost.
            self.abandon_segment(self.file_len);
            return Err(error);
        }
        let path = self.dir.join(segment_name(first_lsn));
        let mut file = self.fs.create(&path)?;
        let header = segment_header();
        file.write_all(&header)?;
        file.sync_data()?;
        self.fs.sync_dir(&self.dir)?;
        let mut segments = self.segments.lock().expect("wal segments lock");
        for seg in segments.iter_mut() {
            seg.active = false;
        }
        segments.push(SegmentInfo {
            path,
            last_lsn: 0,
            active: true,
        });
        self.file = Some(file);
        self.file_len = header.len() as u64;
        Ok(())
    }

    /// After a failed write or fsync: cut the group's bytes off if the file lets us, and never
    /// write to this file again (after a failed fsync the page cache cannot be trusted).
    fn abandon_segment(&mut self, group_start: u64) {
        if let Some(mut file) = self.file.take() {
            let _ = file.set_len(group_start);
        }
        if let Some(seg) = self.segments.lock().expect("wal segments lock").last_mut() {
            seg.active = false;
        }
        self.unsynced = false;
    }
}
