//! API errors and the answers they get: a JSON body `{"error": "..."}` with a status code;
//! internal failures are logged and answered without their text. Bad parameters are also
//! listed one by one, `"problems": [{"parameter", "problem"}]`, so that a form can mark each
//! field it sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use spyglass_query::ErrorKind;

#[derive(Debug)]
pub(crate) enum ApiError {
    /// A bad request that is not one parameter's (a body, a rule): 400 saying what is wrong.
    BadParameter(String),
    /// Bad parameters: 400 naming each and what it accepts.
    BadParameters(Vec<Problem>),
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

/// What is wrong with one parameter.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Problem {
    pub(crate) parameter: String,
    pub(crate) problem: String,
}

/// Gathers the problems of every parameter of a request, so that one answer names them all.
#[derive(Default)]
pub(crate) struct Problems {
    found: Vec<Problem>,
    other: Option<ApiError>,
}

impl Problems {
    /// The value, or `None` with its problems kept.
    pub(crate) fn take<T>(&mut self, result: ApiResult<T>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(ApiError::BadParameters(found)) => {
                self.found.extend(found);
                None
            }
            Err(other) => {
                self.other.get_or_insert(other);
                None
            }
        }
    }

    pub(crate) fn add(&mut self, parameter: &str, problem: impl std::fmt::Display) {
        self.take::<()>(Err(ApiError::bad(parameter, problem)));
    }

    /// `Ok` when nothing was wrong.
    pub(crate) fn finish(self) -> ApiResult<()> {
        match (self.other, self.found.is_empty()) {
            (Some(other), _) => Err(other),
            (None, true) => Ok(()),
            (None, false) => Err(ApiError::BadParameters(self.found)),
        }
    }
}

impl From<spyglass_query::Error> for ApiError {
    fn from(e: spyglass_query::Error) -> Self {
        ApiError::Query(e)
    }
}

impl ApiError {
    pub(crate) fn bad(parameter: &str, problem: impl std::fmt::Display) -> Self {
        ApiError::BadParameters(vec![Problem {
            parameter: parameter.to_string(),
            problem: problem.to_string(),
        }])
    }

    pub(crate) fn status_and_message(&self) -> (StatusCode, String) {
        match self {
            ApiError::BadParameter(m) => (StatusCode::BAD_REQUEST, m.clone()),
            ApiError::BadParameters(problems) => (
                StatusCode::BAD_REQUEST,
                problems
                    .iter()
                    .map(|p| format!("invalid parameter {:?}: {}", p.parameter, p.problem))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
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
        let body = match &self {
            ApiError::BadParameters(problems) => {
                serde_json::json!({ "error": message, "problems": problems })
            }
            _ => serde_json::json!({ "error": message }),
        };
        (status, Json(body)).into_response()
    }
}
