//! Who may read: the Host allow-list, reading tokens, and the headers every answer carries.
//!
//! One middleware runs before every route:
//! - **Host.** The `Host` header must name one of `[ui] allowed_hosts` (loopback names by
//!   default), or the answer is 421: a page on another site that rebinds its DNS name to
//!   127.0.0.1 still sends its own name. `/healthz` and `/readyz` are exempt (probes use IPs).
//! - **Origin.** A request that changes something (`POST`, `PUT`, `DELETE`) from a page of
//!   another origin gets 403; browsers send `Origin` with every such request.
//! - **Tokens.** With `[ui] tokens` set, the data (`/api/…`, `/prometheus/…`, `/alertmanager/…`,
//!   `/-/reload`) needs `Authorization: Bearer <token>` or the `spyglass_token` cookie, which
//!   `POST /api/v1/session` sets from a token (`HttpOnly`, `SameSite=Strict`); otherwise 401.
//!   `/metrics` needs one of `[ui] metrics_tokens` (or of `tokens` when that is empty). The
//!   pages and their assets hold no data and are served to anyone, so that the UI can ask for
//!   the token.
//! - **Admission.** A data request past `[query] max_concurrent` running ones gets 429 with
//!   `Retry-After`.
//! - Every answer gets `X-Content-Type-Options: nosniff`; API answers also a CSP that lets them
//!   run nothing and be framed nowhere.

use std::fmt;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::state::AppState;

/// The cookie that carries a reading token for the UI.
pub(crate) const COOKIE: &str = "spyglass_token";

/// What API answers may do if a browser opens them as a document: nothing.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// A bearer token. Its `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// Compares in time independent of where the first difference is.
    fn matches(&self, offered: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), offered.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Who may read, from `[ui]`.
#[derive(Clone, Debug)]
pub struct Access {
    tokens: Vec<Token>,
    metrics_tokens: Vec<Token>,
    /// Lowercase host names without port; `*` allows any.
    allowed_hosts: Vec<String>,
}

impl Default for Access {
    fn default() -> Self {
        Self::new(Vec::new(), Vec::new(), default_allowed_hosts())
    }
}

/// Loopback names: what a browser on the same machine sends.
pub fn default_allowed_hosts() -> Vec<String> {
    ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec()
}

impl Access {
    pub fn new(tokens: Vec<Token>, metrics_tokens: Vec<Token>, allowed_hosts: Vec<String>) -> Self {
        Self {
            tokens,
            metrics_tokens,
            allowed_hosts: allowed_hosts
                .into_iter()
                .map(|h| {
                    h.trim()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_lowercase()
                })
                .collect(),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.allowed_hosts.iter().any(|h| h == "*" || h == host)
    }

    fn token_ok(tokens: &[Token], offered: Option<&str>) -> bool {
        offered.is_some_and(|offered| tokens.iter().any(|t| t.matches(offered)))
    }

    /// Whether `offered` is one of the reading tokens (for `POST /api/v1/session`).
    pub(crate) fn is_reading_token(&self, offered: &str) -> bool {
        self.tokens.is_empty() || Self::token_ok(&self.tokens, Some(offered))
    }

    pub(crate) fn tokens_required(&self) -> bool {
        !self.tokens.is_empty()
    }
}

/// The host name a request names, lowercase, without port or IPv6 brackets.
fn host_name(headers: &HeaderMap, uri: &axum::http::Uri) -> Option<String> {
    let raw = match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) => host.to_owned(),
        None => uri.authority()?.as_str().to_owned(),
    };
    let name = match raw.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => raw.rsplit_once(':').map_or(raw.as_str(), |(name, _)| name),
    };
    Some(name.to_lowercase())
}

/// The token a request offers: the bearer header first, then the UI's cookie.
fn offered_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
    {
        return Some(bearer.trim());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

enum Area {
    /// `/healthz`, `/readyz`: no checks beyond the headers.
    Probe,
    Metrics,
    /// Data: the API, Jaeger's, Prometheus's, Alertmanager's, reload.
    Data,
    /// `POST /api/v1/session`: where a token is offered, so none is needed.
    Session,
    /// Pages and assets: no data.
    Page,
}

fn area(path: &str) -> Area {
    match path {
        "/healthz" | "/readyz" => Area::Probe,
        "/metrics" => Area::Metrics,
        "/api/v1/session" => Area::Session,
        _ if path.starts_with("/api/")
            || path.starts_with("/prometheus/")
            || path.starts_with("/alertmanager/")
            || path == "/-/reload" =>
        {
            Area::Data
        }
        _ => Area::Page,
    }
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The middleware: see the module's documentation.
pub(crate) async fn check(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let access = &state.access;
    let path = request.uri().path().to_owned();
    let area = area(&path);
    if !matches!(area, Area::Probe) {
        let host = host_name(request.headers(), request.uri());
        if !host.as_deref().is_some_and(|h| access.host_allowed(h)) {
            return refuse(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "host {:?} is not in [ui] allowed_hosts; add the name this server is reached \
                     by",
                    host.unwrap_or_default()
                ),
            );
        }
        if matches!(
            *request.method(),
            Method::POST | Method::PUT | Method::DELETE | Method::PATCH
        ) && let Some(origin) = request.headers().get(header::ORIGIN)
        {
            let origin_host = origin
                .to_str()
                .ok()
                .and_then(|o| o.parse::<axum::http::Uri>().ok())
                .and_then(|uri| host_name(&HeaderMap::new(), &uri));
            if !origin_host.is_some_and(|h| access.host_allowed(&h)) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "requests from pages of another origin are refused".into(),
                );
            }
        }
    }
    let offered = offered_token(request.headers());
    let authorized = match area {
        Area::Probe | Area::Page | Area::Session => true,
        Area::Data => !access.tokens_required() || Access::token_ok(&access.tokens, offered),
        Area::Metrics => {
            let tokens = match access.metrics_tokens.is_empty() {
                true => &access.tokens,
                false => &access.metrics_tokens,
            };
            tokens.is_empty() || Access::token_ok(tokens, offered)
        }
    };
    if !authorized {
        let mut answer = refuse(
            StatusCode::UNAUTHORIZED,
            "a reading token is needed: send Authorization: Bearer <token>, or enter it in the UI"
                .into(),
        );
        answer
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return with_headers(answer, &area);
    }
    // Reading queries past `[query] max_concurrent` are told to come back.
    let _permit = match (&area, state.engine.get()) {
        (Area::Data, Some(engine)) => match engine.try_admit() {
            Some(permit) => Some(permit),
            None => {
                let mut answer = refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many queries are running ([query] max_concurrent); retry shortly".into(),
                );
                answer
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return with_headers(answer, &area);
            }
        },
        _ => None,
    };
    let answer = next.run(request).await;
    with_headers(answer, &area)
}

fn with_headers(mut answer: Response, area: &Area) -> Response {
    let headers = answer.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !matches!(area, Area::Page) && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(API_CSP),
        );
    }
    answer
}

#[derive(Deserialize)]
pub(crate) struct SessionRequest {
    token: String,
}

/// `POST /api/v1/session` with `{"token": "…"}`: a valid reading token comes back as the UI's
/// cookie; 401 otherwise.
pub(crate) async fn open_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = json_only(&headers) {
        return refused.into_response();
    }
    let request: SessionRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("the body must be {{\"token\": \"…\"}}: {e}"),
            );
        }
    };
    let token = request.token.trim();
    if !state.access.is_reading_token(token) || token.contains([';', ',', ' ', '"']) {
        return refuse(StatusCode::UNAUTHORIZED, "that token is not valid".into());
    }
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    let mut answer = Response::new(Body::from("{}"));
    let headers = answer.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, value);
    }
    answer
}

/// `DELETE /api/v1/session`: forgets the cookie.
pub(crate) async fn close_session() -> Response {
    let mut answer = StatusCode::NO_CONTENT.into_response();
    answer.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("spyglass_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    answer
}

/// 415 unless the body is declared JSON: a cross-site HTML form can only send form or text
/// bodies, so JSON-only endpoints cannot be their target.
pub(crate) fn json_only(headers: &HeaderMap) -> Result<(), crate::error::ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(crate::error::ApiError::UnsupportedMediaType(format!(
            "the body must be sent as Content-Type: application/json, not {content_type:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_their_port_and_brackets() {
        let uri: axum::http::Uri = "/".parse().unwrap();
        let mut headers = HeaderMap::new();
        for (host, name) in [
            ("127.0.0.1:8080", "127.0.0.1"),
            ("LocalHost", "localhost"),
            ("[::1]:8080", "::1"),
            ("evil.example:80", "evil.example"),
        ] {
            headers.insert(header::HOST, HeaderValue::from_static(host));
            assert_eq!(host_name(&headers, &uri).as_deref(), Some(name));
        }
    }

    #[test]
    fn the_cookie_or_the_bearer_header_offers_a_token() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; spyglass_token=s3cret"),
        );
        assert_eq!(offered_token(&headers), Some("s3cret"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer other"),
        );
        assert_eq!(offered_token(&headers), Some("other"));
        let access = Access::new(vec![Token::new("s3cret")], vec![], default_allowed_hosts());
        assert!(access.is_reading_token("s3cret"));
        assert!(!access.is_reading_token("s3cre"));
        assert!(!format!("{access:?}").contains("s3cret"));
    }
}
