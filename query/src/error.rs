//! What can go wrong answering a question, and what kind of wrong it is.

use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter the caller gave is not usable; the message names it and what is allowed.
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The SQL engine refused or failed the query; its message is for the user.
    #[error("{0}")]
    Sql(String),
    /// The query needed more memory than its limit allows.
    #[error("{0}")]
    TooExpensive(String),
    #[error("query exceeded its time limit of {0:?}")]
    Timeout(Duration),
    #[error("failed to read the store")]
    Store(#[from] spyglass_store::Error),
    #[error("query engine failed: {0}")]
    Internal(String),
}

/// The kinds the edges map to HTTP status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidInput,
    NotFound,
    TooExpensive,
    Timeout,
    Internal,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidInput(_) | Error::Sql(_) => ErrorKind::InvalidInput,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::TooExpensive(_) => ErrorKind::TooExpensive,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::Store(_) | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The message a client may see: internal failures only by kind.
    pub fn client_message(&self) -> String {
        match self.kind() {
            ErrorKind::Internal => "internal error; see the server log".to_string(),
            _ => self.to_string(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError as E;
        match e.find_root() {
            E::ResourcesExhausted(_) => Error::TooExpensive(e.strip_backtrace()),
            E::Internal(_) | E::IoError(_) | E::ObjectStore(_) | E::ParquetError(_) => {
                Error::Internal(e.strip_backtrace())
            }
            _ => Error::Sql(e.strip_backtrace()),
        }
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Internal(format!("query task failed: {e}"))
    }
}
