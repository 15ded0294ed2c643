//! `spyglass-query`: answers questions over store snapshots.
//!
//! It will own the DataFusion session and table providers over [`spyglass_store::Snapshot`]s,
//! trace assembly, trace search, the SQL guard, service health and the dependency graph. It must
//! not know OTLP, HTTP or how the store lays out its files beyond what a snapshot exposes.
//!
//! ```text
//! question ─▶ snapshot ─▶ index lookup / DataFusion plan over parts + memtable ─▶ answer
//! ```
//!
//! The query engine is the work of a later issue; today the crate only fixes its place in the
//! workspace (it may depend on `spyglass-store` alone).

pub use spyglass_store::Snapshot;
