//! The store's error type. Callers branch on [`Error::kind`], never on message text.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The memtable is full or the WAL is behind: the caller should retry after a delay.
    #[error("store is busy ({reason}), retry later")]
    TryLater { reason: &'static str },
    /// The WAL could not make a write durable; nothing in the failed group was acknowledged.
    #[error("failed to write the write-ahead log")]
    WalWrite {
        #[source]
        source: std::io::Error,
    },
    #[error("the store is shut down")]
    Closed,
    /// The object store has been unreachable long enough that `pending` bytes of parts wait
    /// for upload, more than `max_pending_bytes`: nothing more is taken until they are up.
    #[error(
        "the object store is unreachable and {pending} bytes of parts wait for upload (more \
         than max_pending_bytes, {limit}); retry later"
    )]
    UploadBehind { pending: u64, limit: u64 },
    /// One append larger than the store can ever take at once (the memtable, or a WAL record).
    #[error("{what} of {bytes} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        bytes: u64,
        limit: u64,
    },
    #[error("failed to {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to convert a batch to or from arrow")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("failed to {action} parquet part {path}")]
    Parquet {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("failed to {action} the trace index {path}")]
    Index {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: tantivy::TantivyError,
    },
    #[error("failed to read manifest {path}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to {action} {key} in the object store")]
    Bucket {
        action: &'static str,
        key: String,
        /// Boxed: `object_store`'s error is large, and every `Result` of the store carries it.
        #[source]
        source: Box<object_store::Error>,
    },
    /// Another process keeps changing an object this one writes.
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("a background store task failed: {0}")]
    Task(String),
    #[error("invalid store configuration: {0}")]
    Config(String),
    #[error(
        "data directory {root} holds parts (such as {example}) but no manifest.json; nothing was \
         deleted. Put back the manifest.json that belongs with these parts, or move parts/ \
         away to start an empty store here"
    )]
    MissingManifest { root: PathBuf, example: PathBuf },
}

/// What a caller at the edge (HTTP, gRPC) needs to know to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Retry after a delay (HTTP 429, gRPC RESOURCE_EXHAUSTED/UNAVAILABLE with retry info).
    TryLater,
    /// The store cannot accept writes right now (HTTP 503, gRPC UNAVAILABLE).
    Unavailable,
    Internal,
    InvalidInput,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::TryLater { .. } => ErrorKind::TryLater,
            Error::WalWrite { .. } | Error::Closed | Error::UploadBehind { .. } => {
                ErrorKind::Unavailable
            }
            Error::Config(_) | Error::TooLarge { .. } => ErrorKind::InvalidInput,
            _ => ErrorKind::Internal,
        }
    }

    /// Whether this is the object store saying the object is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Bucket { source, .. } if matches!(**source, object_store::Error::NotFound { .. }))
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}
