//! The contract between ingest, which writes span metrics and the service graph into the
//! `metrics` table, and query, which reads them: metric names, attribute keys and node kinds.
//! Both sides use these constants, so renaming one cannot leave the other reading nothing.

/// Metric names starting with this are Spyglass's own; clients may not write them.
pub const RESERVED_PREFIX: &str = "spyglass.";

/// Calls per operation (monotonic sum; `SPAN_NAME`, `SPAN_KIND`, `STATUS_CODE`).
pub const SPAN_CALLS: &str = "spyglass.span.calls";
/// Errors per operation (monotonic sum; `SPAN_NAME`, `SPAN_KIND`).
pub const SPAN_ERRORS: &str = "spyglass.span.errors";
/// Duration per operation (histogram, seconds; `SPAN_NAME`, `SPAN_KIND`, `STATUS_CODE`).
pub const SPAN_DURATION: &str = "spyglass.span.duration";
/// Calls per edge (monotonic sum; `CLIENT`, `SERVER`, `CONNECTION_TYPE`).
pub const GRAPH_CALLS: &str = "spyglass.service_graph.calls";
/// Failed calls per edge (monotonic sum; `CLIENT`, `SERVER`, `CONNECTION_TYPE`).
pub const GRAPH_FAILURES: &str = "spyglass.service_graph.failures";
/// Duration per edge (histogram, seconds; `CLIENT`, `SERVER`, `CONNECTION_TYPE`).
pub const GRAPH_DURATION: &str = "spyglass.service_graph.duration";

/// The scope the series are written under.
pub const SCOPE: &str = "spyglass.spanmetrics";

/// Attribute keys of the span series.
pub const SPAN_NAME: &str = "span.name";
pub const SPAN_KIND: &str = "span.kind";
pub const STATUS_CODE: &str = "status.code";

/// Attribute keys of the edge series.
pub const CLIENT: &str = "client";
pub const SERVER: &str = "server";
pub const CONNECTION_TYPE: &str = "connection_type";

/// `CONNECTION_TYPE` of an edge to a database, a messaging system, or another node known only
/// from its callers; empty between two services.
pub const DATABASE: &str = "database";
pub const MESSAGING_SYSTEM: &str = "messaging_system";
pub const VIRTUAL_NODE: &str = "virtual_node";
