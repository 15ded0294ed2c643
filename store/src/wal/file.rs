//! The WAL's file layer: the only place the writer touches the file system, so that tests can
//! inject write and fsync failures.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// An open segment the writer appends to.
pub trait WalFile: Send {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes written data durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file back after a failed write, so unacknowledged bytes do not replay.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// Creates segment files.
pub trait WalFs: Send + Sync {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>>;
    /// Makes a new file's directory entry durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default)]
pub struct OsFs;

impl WalFs for OsFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let file = OpenOptions::new().create_new(true).write(true).open(path)?;
        Ok(Box::new(OsFile(file)))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

struct OsFile(File);

impl WalFile for OsFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)?;
        // Appends continue at the new end, not where the failed write left the cursor.
        io::Seek::seek(&mut self.0, io::SeekFrom::Start(len)).map(|_| ())
    }
}
