//! `spyglass-store`: where Spyglass keeps what it has acknowledged.
//!
//! It owns the data model ([`model`]), the Arrow schemas of the `spans`, `metrics` and `logs`
//! tables ([`schema`]), the write-ahead log, the memtables, Parquet parts, the tantivy trace
//! index, the manifest, compaction and retention. It must not know OTLP, HTTP, gRPC or
//! DataFusion: `ingest` converts OTLP into [`model`] types or reads it straight into rows of the
//! table schemas ([`schema::SpanRow`], [`schema::PointRow`]), `query` reads [`Snapshot`]s. The
//! WAL may log the bytes a batch was made from instead of the batch
//! ([`Store::append_source`]); whoever opens the store then gives the [`SourceDecoder`] that
//! reads them back.
//!
//! ```text
//! append(Records) / append_batch / append_source ─▶ WAL (group commit, fsync) ─▶ memtable ─▶ ack
//!                                                                   │ flush (size / age)
//!                          manifest.json ◀── commit ◀── Parquet part + trace index per hour
//!                                │
//!           Snapshot = manifest version + memtables (readers never see half a flush)
//! ```
//!
//! Main types: [`Store`] (open, append, snapshot, flush, close), [`Snapshot`],
//! [`Maintenance`] (the background flusher, compactor and retention, run by the binary).

pub mod bucket;
mod config;
mod error;
mod gather;
mod index;
mod ipc;
mod maintenance;
mod manifest;
pub mod memory;
mod memtable;
pub mod model;
mod part;
mod rollup;
#[cfg(test)]
mod roundtrip_tests;
pub mod schema;
mod snapshot;
pub mod spanmetrics;
pub mod stats;
mod store;
pub mod synth;
mod threads;
pub mod wal;

pub use config::{Durability, StoreConfig};
pub use error::{Error, ErrorKind, Result};
pub use index::{Sample, SamplePoint, TraceDigest, TraceHit, TraceQuery};
pub use maintenance::Maintenance;
pub use manifest::{Manifest, Part, PartMeta};
pub use memory::{MemoryBudget, Reserved, Share};
pub use model::Signal;
pub use rollup::{ROWS_COLUMN, Rollup, rollup_columns};
pub use schema::Records;
pub use snapshot::{Snapshot, TraceHits};
pub use store::{FlushReport, SourceDecoder, Store, StoreStats};
pub use wal::{ReplayReport, WalStats};
