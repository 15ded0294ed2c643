//! What the handlers share: readiness and, once the store is open, the query engine.

use std::sync::{Arc, OnceLock};

use spyglass_query::QueryEngine;

use crate::error::{ApiError, ApiResult};
use crate::server::Readiness;

/// Where the binary puts the query engine once the store has replayed its WAL; until then the
/// API answers 503.
#[derive(Clone, Default)]
pub struct EngineSlot(Arc<OnceLock<QueryEngine>>);

impl EngineSlot {
    pub fn set(&self, engine: QueryEngine) {
        // A second engine would mean two stores; the first one stays.
        let _ = self.0.set(engine);
    }
}

/// Renders the process's own metrics in the Prometheus/OpenMetrics text format; the binary
/// supplies it, since only the binary sees every component.
pub type Exposition = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) readiness: Readiness,
    pub(crate) engine: EngineSlot,
    pub(crate) exposition: Option<Exposition>,
}

impl AppState {
    pub(crate) fn engine(&self) -> ApiResult<&QueryEngine> {
        self.engine.0.get().ok_or(ApiError::NotReady)
    }
}
