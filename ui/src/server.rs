//! The HTTP server on `:8080`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::access::Access;
use crate::state::{AlertingSlot, AppState, EngineSlot, Exposition};

/// Whether Spyglass is ready to serve: set by the binary once the WAL is replayed.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The UI and API server, bound and ready to run.
pub struct UiServer {
    listener: TcpListener,
    state: AppState,
}

impl UiServer {
    /// Binds now, so that `/healthz` answers (and `/readyz` says "not yet") during WAL replay.
    /// The API answers 503 until the binary puts the query engine into `engine`.
    pub async fn bind(
        addr: std::net::SocketAddr,
        readiness: Readiness,
        engine: EngineSlot,
    ) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            state: AppState {
                readiness,
                engine,
                exposition: None,
                alerting: AlertingSlot::default(),
                access: Arc::new(Access::default()),
            },
        })
    }

    /// Who may read (tokens, allowed hosts); without it, loopback names and no tokens.
    pub fn with_access(mut self, access: Access) -> Self {
        self.state.access = Arc::new(access);
        self
    }

    /// Serves the alerting API from what the binary puts into `alerting`.
    pub fn with_alerting(mut self, alerting: AlertingSlot) -> Self {
        self.state.alerting = alerting;
        self
    }

    /// Serves `/metrics` from `exposition` (404 without one).
    pub fn with_exposition(mut self, exposition: Exposition) -> Self {
        self.state.exposition = Some(exposition);
        self
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, router(self.state))
            .with_graceful_shutdown(shutdown)
            .await
    }
}

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .merge(crate::api::routes())
        .merge(crate::jaeger::routes())
        .merge(crate::prometheus::routes())
        .merge(crate::promql::routes())
        .merge(crate::alertmanager::routes())
        .merge(crate::assets::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::access::check,
        ))
        .layer(axum::middleware::from_fn(answer_panics))
        .with_state(state)
}

/// A handler that panics answers 500 with a JSON error, logged, instead of closing the
/// connection with no answer: each request runs as a task of its own, whose panic ends only it.
async fn answer_panics(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let what = format!("{} {}", request.method(), request.uri().path());
    match tokio::spawn(next.run(request)).await {
        Ok(answer) => answer,
        Err(error) => {
            tracing::error!(request = %what, %error, "a handler failed; answered 500");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(serde_json::json!({ "error": "internal error; see the server log" })),
            )
                .into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match &state.exposition {
        Some(render) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            render(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn ready(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "replaying the write-ahead log\n",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn status(router: Router, path: &str) -> StatusCode {
        router
            .oneshot(
                Request::get(path)
                    .header("host", "127.0.0.1:8080")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap()
            .status()
    }

    fn state_with(access: Access) -> AppState {
        let readiness = Readiness::default();
        readiness.set_ready();
        AppState {
            readiness,
            engine: EngineSlot::default(),
            exposition: Some(Arc::new(|| "spyglass_up 1\n".to_owned())),
            alerting: AlertingSlot::default(),
            access: Arc::new(access),
        }
    }

    fn with_tokens() -> AppState {
        state_with(Access::new(
            vec![crate::Token::new("reader")],
            vec![crate::Token::new("scraper")],
            crate::access::default_allowed_hosts(),
        ))
    }

    async fn send(state: &AppState, request: Request<Body>) -> axum::response::Response {
        router(state.clone()).oneshot(request).await.unwrap()
    }

    fn get(path: &str) -> axum::http::request::Builder {
        Request::get(path).header("host", "localhost:8080")
    }

    #[tokio::test]
    async fn without_a_token_the_data_is_refused_and_the_pages_are_not() {
        let state = with_tokens();
        for path in [
            "/api/v1/traces",
            "/api/v1/services",
            "/api/services",
            "/api/traces/0123456789abcdef0123456789abcdef",
            "/prometheus/api/v1/rules",
            "/alertmanager/api/v2/silences",
            "/metrics",
        ] {
            let answer = send(&state, get(path).body(Body::empty()).unwrap()).await;
            assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(answer.headers()["www-authenticate"], "Bearer");
        }
        let reload = Request::post("/-/reload").header("host", "localhost");
        let answer = send(&state, reload.body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        for path in ["/", "/search", "/assets/js/app.js", "/healthz", "/readyz"] {
            let answer = send(&state, get(path).body(Body::empty()).unwrap()).await;
            assert_eq!(answer.status(), StatusCode::OK, "{path}");
        }
    }

    #[tokio::test]
    async fn a_bearer_token_or_the_session_cookie_opens_the_data() {
        let state = with_tokens();
        let bearer = get("/api/v1/traces").header("authorization", "Bearer reader");
        // Past the check, the API answers 503: this router has no store behind it.
        let answer = send(&state, bearer.body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        let wrong = get("/api/v1/traces").header("authorization", "Bearer readers");
        let answer = send(&state, wrong.body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);

        let session = |token: &str| {
            Request::post("/api/v1/session")
                .header("host", "localhost")
                .header("content-type", "application/json")
                .body(Body::from(format!("{{\"token\": \"{token}\"}}")))
                .unwrap()
        };
        let refused = send(&state, session("guess")).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(refused.headers().get("set-cookie").is_none());
        let opened = send(&state, session("reader")).await;
        assert_eq!(opened.status(), StatusCode::OK);
        let cookie = opened.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let pair = cookie.split(';').next().unwrap();
        let with_cookie = get("/api/v1/traces").header("cookie", pair);
        let answer = send(&state, with_cookie.body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);

        // `/metrics` takes its own tokens.
        let scrape = get("/metrics").header("authorization", "Bearer scraper");
        let answer = send(&state, scrape.body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status(), StatusCode::OK);
        let reader = get("/metrics").header("authorization", "Bearer reader");
        let answer = send(&state, reader.body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_foreign_host_or_origin_is_refused() {
        let state = state_with(Access::default());
        let rebound = Request::get("/api/v1/traces").header("host", "evil.example:8080");
        let answer = send(&state, rebound.body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status(), StatusCode::MISDIRECTED_REQUEST);
        let page = Request::get("/").header("host", "evil.example");
        let answer = send(&state, page.body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status(), StatusCode::MISDIRECTED_REQUEST);
        let probe = Request::get("/healthz").header("host", "10.0.0.7:8080");
        let answer = send(&state, probe.body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status(), StatusCode::OK, "probes come by IP");

        let cross_site = Request::post("/api/v1/sql")
            .header("host", "127.0.0.1:8080")
            .header("origin", "https://evil.example")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"query": "SELECT 1"}"#))
            .unwrap();
        assert_eq!(
            send(&state, cross_site).await.status(),
            StatusCode::FORBIDDEN
        );
        let form = Request::post("/api/v1/sql")
            .header("host", "127.0.0.1:8080")
            .header("content-type", "text/plain")
            .body(Body::from(r#"{"query": "SELECT 1"}"#))
            .unwrap();
        assert_eq!(
            send(&state, form).await.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a form post cannot reach the SQL endpoint"
        );

        let named = state_with(Access::new(
            vec![],
            vec![],
            vec!["spyglass.internal".into()],
        ));
        let ok = Request::get("/").header("host", "Spyglass.Internal:8080");
        assert_eq!(
            send(&named, ok.body(Body::empty()).unwrap()).await.status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn a_handler_that_panics_answers_500_with_json_and_the_server_goes_on() {
        async fn boom() -> &'static str {
            panic!("a handler bug")
        }
        let router = Router::new()
            .route("/boom", axum::routing::get(boom))
            .route("/fine", axum::routing::get(|| async { "fine" }))
            .layer(axum::middleware::from_fn(answer_panics));
        let answer = router
            .clone()
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(answer.into_body(), 1 << 16)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "internal error; see the server log");
        let fine = router
            .oneshot(Request::get("/fine").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(fine.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn api_answers_say_nosniff_and_run_nothing() {
        let state = state_with(Access::default());
        let answer = send(&state, get("/api/v1/traces").body(Body::empty()).unwrap()).await;
        assert_eq!(answer.headers()["x-content-type-options"], "nosniff");
        assert_eq!(
            answer.headers()["content-security-policy"],
            "default-src 'none'; frame-ancestors 'none'"
        );
        let page = send(&state, get("/").body(Body::empty()).unwrap()).await;
        assert_eq!(page.headers()["x-content-type-options"], "nosniff");
        assert!(
            page.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'"),
            "pages keep their own policy"
        );
    }

    #[tokio::test]
    async fn ready_only_after_the_binary_says_so() {
        let readiness = Readiness::default();
        let state = AppState {
            readiness: readiness.clone(),
            engine: EngineSlot::default(),
            exposition: None,
            alerting: AlertingSlot::default(),
            access: Arc::new(Access::default()),
        };
        assert_eq!(
            status(router(state.clone()), "/healthz").await,
            StatusCode::OK
        );
        assert_eq!(
            status(router(state.clone()), "/readyz").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status(router(state.clone()), "/api/v1/traces").await,
            StatusCode::SERVICE_UNAVAILABLE,
            "the API waits for the store"
        );
        readiness.set_ready();
        assert_eq!(status(router(state), "/readyz").await, StatusCode::OK);
    }
}
