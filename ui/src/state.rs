//! What the handlers share: readiness and, once the store is open, the query engine.

use std::sync::{Arc, OnceLock};

use spyglass_alerting::Alerting;
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

    pub(crate) fn get(&self) -> Option<&QueryEngine> {
        self.0.get()
    }
}

/// Where the binary puts the alerting handle once the evaluator runs; until then the alerting
/// API answers 503.
#[derive(Clone, Default)]
pub struct AlertingSlot(Arc<OnceLock<Alerting>>);

impl AlertingSlot {
    pub fn set(&self, alerting: Alerting) {
        let _ = self.0.set(alerting);
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
    pub(crate) alerting: AlertingSlot,
    pub(crate) access: Arc<crate::access::Access>,
}

impl AppState {
    pub(crate) fn engine(&self) -> ApiResult<&QueryEngine> {
        self.engine.0.get().ok_or(ApiError::NotReady)
    }

    pub(crate) fn alerting(&self) -> ApiResult<&Alerting> {
        self.alerting.0.get().ok_or(ApiError::NotReady)
    }
}
