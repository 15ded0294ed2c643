//! `spyglass-ingest`: the OTLP receivers.
//!
//! It owns the OTLP/gRPC (`:4317`) and OTLP/HTTP (`:4318`) receivers, decoding with size
//! limits, validation, conversion of OTLP into the store's model, backpressure and ingest
//! authentication. It must not know Parquet, tantivy, DataFusion or the UI: it hands batches in
//! the store's schemas to [`spyglass_store::Store`] and turns the store's answer into the
//! protocol's. Protobuf trace and metrics requests are read straight into a batch when they can
//! be (the fast paths in `direct`), and the WAL then logs the request itself
//! ([`source_decoder`] reads it back on replay); everything else is decoded, then converted.
//!
//! ```text
//! gRPC :4317 ─┐                     ┌ fast path ───────────┐        ┌─ ok ──▶ 200 / OK (+ partial success)
//!             ├─▶ auth ─▶ size caps ┤                      ├─▶ Store::append_source / append_batch
//! HTTP :4318 ─┘                     └ decode ─▶ convert ───┘        ├─ try later ──▶ 429 + Retry-After / UNAVAILABLE + RetryInfo
//!                                                                   └─ disk failed ▶ 503 / UNAVAILABLE
//! ```
//!
//! Main types: [`Ingest`] (the shared pipeline and its counters), [`GrpcReceiver`],
//! [`HttpReceiver`].

mod config;
mod convert;
mod decoded;
mod direct;
mod error;
mod grpc;
mod http;
mod inflight;
mod pipeline;
mod spanmetrics;
mod window;
mod wire;

pub use config::{IngestConfig, Token};
pub use error::{Answer, Error, Result};
pub use grpc::GrpcReceiver;
pub use http::{HttpReceiver, decode_and_convert};
pub use inflight::RequestMemory;
pub use pipeline::{Ingest, IngestStats, Protocol, source_decoder};
pub use spanmetrics::{DURATION_BOUNDS, SpanMetrics, SpanMetricsWriter};
pub use window::TimeWindow;
