//! `spyglass-ingest`: the OTLP receivers.
//!
//! It owns the OTLP/gRPC (`:4317`) and OTLP/HTTP (`:4318`) receivers, decoding with size
//! limits, validation, conversion of OTLP into the store's model, backpressure and ingest
//! authentication. It must not know Parquet, tantivy, DataFusion or the UI: it hands
//! [`spyglass_store::Records`] to [`spyglass_store::Store::append`] and turns the store's
//! answer into the protocol's.
//!
//! ```text
//! gRPC :4317 ─┐                                  ┌─ ok ─────────▶ 200 / OK (+ partial success)
//!             ├─▶ auth ─▶ size caps ─▶ decode ─▶ convert ─▶ Store::append
//! HTTP :4318 ─┘                                  ├─ try later ──▶ 429 + Retry-After / UNAVAILABLE + RetryInfo
//!                                                └─ disk failed ▶ 503 / UNAVAILABLE
//! ```
//!
//! Main types: [`Ingest`] (the shared pipeline and its counters), [`GrpcReceiver`],
//! [`HttpReceiver`].

mod config;
mod convert;
mod direct;
mod error;
mod grpc;
mod http;
mod pipeline;
mod spanmetrics;
mod wire;

pub use config::{IngestConfig, Token};
pub use error::{Answer, Error, Result};
pub use grpc::GrpcReceiver;
pub use http::{HttpReceiver, decode_and_convert};
pub use pipeline::{Ingest, IngestStats, Protocol};
pub use spanmetrics::{DURATION_BOUNDS, SpanMetrics, SpanMetricsWriter};
