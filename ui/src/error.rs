//! API errors and the answers they get: a JSON body `{"error": "..."}` with a status code;
//! internal failures are logged and answered without their text.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use spyglass_query::ErrorKind;

#[derive(Debug)]
pub(crate) enum ApiError {
    /// A bad parameter: 400 naming it and what is allowed.
    BadParameter(String),
    Query(spyglass_query::Error),
    /// A body in another format than the endpoint takes: 415.
    UnsupportedMediaType(String),
    /// What was asked for does not exist: 404.
    NotFound(String),
    /// The store is still replaying its WAL.
    NotReady,
    /// A failure that is not the caller's, logged where it happened.
    Internal,
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl From<spyglass_query::Error> for ApiError {
    fn from(e: spyglass_query::Error) -> Self {
        ApiError::Query(e)
    }
}

impl ApiError {
    pub(crate) fn bad(parameter: &str, problem: impl std::fmt::Display) -> Self {
        ApiError::BadParameter(format!("invalid parameter {parameter:?}: {problem}"))
    }

    pub(crate) fn status_and_message(&self) -> (StatusCode, String) {
        match self {
            ApiError::BadParameter(m) => (StatusCode::BAD_REQUEST, m.clone()),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            ApiError::UnsupportedMediaType(m) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, m.clone()),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the server log".to_string(),
            ),
            ApiError::NotReady => (
                StatusCode::SERVICE_UNAVAILABLE,
                "replaying the write-ahead log; retry shortly".to_string(),
            ),
            ApiError::Query(e) => {
                let status = match e.kind() {
                    ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
                    ErrorKind::NotFound => StatusCode::NOT_FOUND,
                    ErrorKind::TooExpensive => StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
                    ErrorKind::Internal => {
                        tracing::error!(error = ?e, "query failed");
                        StatusCode::INTERNAL_SERVER_ERROR
                    }
                };
                (status, e.client_message())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = self.status_and_message();
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}
