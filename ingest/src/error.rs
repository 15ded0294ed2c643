//! Why a request was refused, and what each protocol answers for it.

use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to decode the request body: {0}")]
    Decode(String),
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error(
        "the request would take {bytes} bytes once stored, more than the limit of {limit} \
         ([ingest] max_expanded_bytes): every item carries a copy of its resource and scope \
         attributes; send fewer items per request or smaller resources"
    )]
    Expands { bytes: u64, limit: u64 },
    #[error(
        "decoding the request would take {bytes} bytes of memory, more than the limit of \
         {limit} ([ingest] max_decoded_bytes); send fewer items per request"
    )]
    DecodesTooLarge { bytes: u64, limit: u64 },
    #[error(
        "the server's memory budget is taken by the requests and queries in flight; retry later"
    )]
    MemoryBusy,
    #[error(
        "the request needs {bytes} bytes of memory to be read and stored, more than the server's \
         memory budget leaves to requests ({room}; [store] memory_budget_bytes); send fewer \
         items per request"
    )]
    OverBudget { bytes: u64, room: u64 },
    #[error("unsupported {what} {value:?}; use {allowed}")]
    Unsupported {
        what: &'static str,
        value: String,
        allowed: &'static str,
    },
    #[error("missing or invalid bearer token")]
    Unauthenticated,
    #[error("failed to store the request")]
    Store(#[from] spyglass_store::Error),
}

/// How the edges answer an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 400 / INVALID_ARGUMENT, with the message.
    BadRequest,
    /// 413 / RESOURCE_EXHAUSTED, not retryable.
    TooLarge,
    /// 415 (HTTP only).
    UnsupportedMediaType,
    /// 401 / UNAUTHENTICATED.
    Unauthenticated,
    /// 429 + Retry-After / UNAVAILABLE + RetryInfo.
    RetryLater(Duration),
    /// 503 / UNAVAILABLE: the store cannot make data durable; nothing was acknowledged.
    Unavailable,
    /// 500 / INTERNAL, without internal details.
    Internal,
}

impl Error {
    pub fn answer(&self, retry_after: Duration) -> Answer {
        use spyglass_store::ErrorKind;
        match self {
            Error::Decode(_) => Answer::BadRequest,
            Error::TooLarge { .. }
            | Error::Expands { .. }
            | Error::DecodesTooLarge { .. }
            | Error::OverBudget { .. } => Answer::TooLarge,
            Error::MemoryBusy => Answer::RetryLater(retry_after),
            Error::Unsupported { .. } => Answer::UnsupportedMediaType,
            Error::Unauthenticated => Answer::Unauthenticated,
            Error::Store(spyglass_store::Error::TooLarge { .. }) => Answer::TooLarge,
            Error::Store(e) => match e.kind() {
                ErrorKind::TryLater => Answer::RetryLater(retry_after),
                ErrorKind::Unavailable => Answer::Unavailable,
                ErrorKind::InvalidInput | ErrorKind::Internal => Answer::Internal,
            },
        }
    }

    /// The message a client may see: ours in full, the store's only by kind.
    pub fn client_message(&self) -> String {
        match self {
            Error::Store(e) => match e.kind() {
                spyglass_store::ErrorKind::TryLater => e.to_string(),
                spyglass_store::ErrorKind::Unavailable => {
                    if matches!(e, spyglass_store::Error::UploadBehind { .. }) {
                        format!("{e}; nothing was stored")
                    } else {
                        "storage is unavailable; nothing was stored, retry later".into()
                    }
                }
                _ if matches!(e, spyglass_store::Error::TooLarge { .. }) => {
                    format!(
                        "the request is too large to store at once: {e}; send it in smaller requests"
                    )
                }
                _ => "internal error".into(),
            },
            other => other.to_string(),
        }
    }
}
