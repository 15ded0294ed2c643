//! The HTTP server on `:8080`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;

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
            },
        })
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
        .merge(crate::assets::routes())
        .with_state(state)
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
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn ready_only_after_the_binary_says_so() {
        let readiness = Readiness::default();
        let state = AppState {
            readiness: readiness.clone(),
            engine: EngineSlot::default(),
            exposition: None,
            alerting: AlertingSlot::default(),
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
