//! `spyglass-ui`: the HTTP surface on `:8080`.
//!
//! It owns the HTTP API (native JSON under `/api/v1`, later the Jaeger-compatible API), the web
//! UI's assets and their serving, and the operational endpoints `/healthz` and `/readyz`. It
//! reads data through `spyglass-query` and `spyglass-alerting` only, and must not know the
//! store's files, OTLP or how alerts are delivered.
//!
//! ```text
//! browser, Grafana ─▶ axum router ─▶ /healthz, /readyz (today) · /api/v1, UI (later issues)
//! ```

mod config;
mod server;

pub use config::UiConfig;
pub use server::{Readiness, UiServer};
