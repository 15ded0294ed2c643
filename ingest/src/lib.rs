//! `spyglass-ingest`: the OTLP receivers.
//!
//! It will own the OTLP/gRPC (`:4317`) and OTLP/HTTP (`:4318`) receivers, decoding with size
//! limits, validation, conversion of OTLP into the store's model, span metrics and the service
//! graph generated at ingest, backpressure and ingest authentication. It must not know Parquet,
//! tantivy, DataFusion or the UI: it hands [`spyglass_store::Records`] to the store.
//!
//! ```text
//! OTLP request ─▶ size caps ─▶ decode ─▶ validate ─▶ convert ─▶ Store::append ─▶ response
//! ```
//!
//! Today it holds its configuration section; the receivers are the next issue's work.

mod config;

pub use config::{IngestConfig, Token};
