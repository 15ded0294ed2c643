//! The `[ingest]` section of the configuration file.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A bearer token. Its `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// Compares in time independent of where the first difference is.
    pub fn matches(&self, offered: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), offered.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Address of the OTLP/gRPC receiver.
    pub otlp_grpc_addr: SocketAddr,
    /// Address of the OTLP/HTTP receiver (`/v1/traces`, `/v1/metrics`, `/v1/logs`).
    pub otlp_http_addr: SocketAddr,
    /// Bearer tokens accepted from exporters (`Authorization: Bearer <token>`); empty accepts
    /// every request. Set them whenever a receiver listens beyond loopback.
    pub tokens: Vec<Token>,
    /// Largest request body accepted, in bytes, checked on the wire and again after
    /// decompression (OTLP answers 413 / RESOURCE_EXHAUSTED beyond it).
    pub max_body_bytes: usize,
    /// Seconds a client is told to wait (`Retry-After`, gRPC `RetryInfo`) when Spyglass is busy.
    pub retry_after_secs: u64,
    /// How often span metrics and the service graph are written to the metrics table, in seconds.
    pub span_metrics_interval_secs: u64,
    /// How long a client span waits for its server span (or becomes an edge to a virtual node
    /// such as a database), in seconds.
    pub service_graph_wait_secs: u64,
    /// Most spans waiting to be paired into service-graph edges; beyond it the oldest are dropped.
    pub service_graph_max_pending: usize,
    /// Most span-metric operations (service and span name) and as many service-graph edges;
    /// past it new ones are counted under `__overflow__` (see `/metrics`).
    pub span_metrics_max_series: usize,
    /// Oldest event time accepted, in hours before now; never more than the signal's retention
    /// (older items would be deleted at once). Raise it, with the retention, to backfill.
    /// Items outside the window are rejected through partial success, with the reason.
    pub accept_past_hours: u64,
    /// Newest event time accepted, in minutes after now (clocks disagree a little).
    pub accept_future_minutes: u64,
    /// Most bytes one request may take once its rows are built, counting each row's copy of
    /// its resource and scope attributes; beyond it the request is refused (413 /
    /// RESOURCE_EXHAUSTED) before the rows are built. Bounds what a small request with one
    /// large resource and many items can cost.
    pub max_expanded_bytes: u64,
    /// Most memory decoding one protobuf request may take on the general path (prost makes a
    /// struct of every message, a few hundred bytes for what can be 2 bytes on the wire);
    /// worked out from the bytes before decoding, and refused beyond it (413 /
    /// RESOURCE_EXHAUSTED).
    pub max_decoded_bytes: u64,
    /// Most distinct hours one request may hold items in; the items of further hours are
    /// rejected through partial success. Each hour is a part of its own in the store.
    pub max_hours_per_request: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            otlp_grpc_addr: SocketAddr::from(([127, 0, 0, 1], 4317)),
            otlp_http_addr: SocketAddr::from(([127, 0, 0, 1], 4318)),
            tokens: Vec::new(),
            max_body_bytes: 64 << 20,
            retry_after_secs: 1,
            span_metrics_interval_secs: 15,
            service_graph_wait_secs: 10,
            service_graph_max_pending: 100_000,
            span_metrics_max_series: crate::spanmetrics::DEFAULT_MAX_SERIES,
            accept_past_hours: 24 * 30,
            accept_future_minutes: 10,
            max_expanded_bytes: 256 << 20,
            max_decoded_bytes: 256 << 20,
            max_hours_per_request: 48,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_print_and_match_exactly() {
        let token = Token::new("s3cret");
        let config = IngestConfig {
            tokens: vec![token.clone()],
            ..IngestConfig::default()
        };
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("s3cret") && printed.contains("<redacted>"),
            "{printed}"
        );
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cre"));
        assert!(!token.matches("s3creT"));
    }
}
