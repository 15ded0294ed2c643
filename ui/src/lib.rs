//! `spyglass-ui`: the HTTP surface on `:8080`.
//!
//! It owns the HTTP API (native JSON under `/api/v1`, the Jaeger query API under `/api`), the
//! web UI's assets and their serving, and the operational endpoints `/healthz`, `/readyz` and `/metrics` (rendered by the binary).
//! It reads data through `spyglass-query` and `spyglass-alerting` only, and must not know the
//! store's files, OTLP or how alerts are delivered.
//!
//! ```text
//! browser, Grafana ─▶ axum router ─┬─ /healthz, /readyz, /metrics
//!                                  ├─ /api/v1/…  native JSON (api.rs)
//!                                  ├─ /api/…     Jaeger query API (jaeger.rs)
//!                                  ├─ /prometheus/api/v1/{rules,alerts}, /-/reload (prometheus.rs)
//!                                  ├─ /prometheus/api/v1/{query,query_range,series,labels,…} (promql.rs)
//!                                  ├─ /alertmanager/api/v2/…  Alertmanager's API (alertmanager.rs)
//!                                  │     └─▶ Alerting (spyglass-alerting)
//!                                  │     └─▶ QueryEngine (spyglass-query)
//!                                  └─ /assets/…, every other page: the web UI (assets.rs,
//!                                        files in ui/assets/, compiled in)
//! ```

mod access;
mod alertmanager;
mod api;
mod assets;
mod config;
mod error;
mod jaeger;
mod params;
mod prometheus;
mod promql;
mod server;
mod state;

pub use access::{Access, Token};
pub use config::UiConfig;
pub use server::{Readiness, UiServer};
pub use state::{AlertingSlot, EngineSlot, Exposition};
