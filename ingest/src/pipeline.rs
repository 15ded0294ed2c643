//! What both receivers do with a decoded request: convert, store, and build the OTLP answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use spyglass_store::model::{LogRecord, MetricPoint, Resource, Scope, Span};
use spyglass_store::{Records, Signal, SourceDecoder, Store};

use crate::config::IngestConfig;
use crate::convert::{self, Converted};
use crate::decoded::{self, Root};
use crate::direct;
use crate::error::{Error, Result};
use crate::inflight::RequestMemory;
use crate::spanmetrics::SpanMetrics;
use crate::window::TimeWindow;
use crate::wire::Fallback;

/// The protocol a request came in on, for counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Http,
}

/// Ingest counters per signal and protocol, ready for `/metrics`.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Items stored: `[signal][protocol]`.
    pub accepted_total: [[AtomicU64; 2]; 3],
    /// Items dropped as invalid (partial success).
    pub rejected_total: [[AtomicU64; 2]; 3],
    /// Requests answered "retry later".
    pub throttled_total: [[AtomicU64; 2]; 3],
    /// Requests refused as undecodable, too large or unauthenticated.
    pub refused_total: [[AtomicU64; 2]; 3],
}

fn slot(signal: Signal, protocol: Protocol) -> (usize, usize) {
    let s = match signal {
        Signal::Spans => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    };
    (s, protocol as usize)
}

impl IngestStats {
    pub fn accepted(&self, signal: Signal, protocol: Protocol) -> u64 {
        let (s, p) = slot(signal, protocol);
        self.accepted_total[s][p].load(Ordering::Relaxed)
    }

    pub fn rejected(&self, signal: Signal, protocol: Protocol) -> u64 {
        let (s, p) = slot(signal, protocol);
        self.rejected_total[s][p].load(Ordering::Relaxed)
    }

    pub fn throttled(&self, signal: Signal, protocol: Protocol) -> u64 {
        let (s, p) = slot(signal, protocol);
        self.throttled_total[s][p].load(Ordering::Relaxed)
    }

    pub fn refused(&self, signal: Signal, protocol: Protocol) -> u64 {
        let (s, p) = slot(signal, protocol);
        self.refused_total[s][p].load(Ordering::Relaxed)
    }

    pub(crate) fn count_error(&self, signal: Signal, protocol: Protocol, error: &Error) {
        let (s, p) = slot(signal, protocol);
        let counter = match error {
            Error::Store(e) if e.kind() == spyglass_store::ErrorKind::TryLater => {
                &self.throttled_total[s][p]
            }
            Error::MemoryBusy => &self.throttled_total[s][p],
            Error::Store(_) => return,
            _ => &self.refused_total[s][p],
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The ingest pipeline shared by the gRPC and HTTP receivers.
#[derive(Clone)]
pub struct Ingest {
    store: Store,
    config: Arc<IngestConfig>,
    stats: Arc<IngestStats>,
    span_metrics: SpanMetrics,
}

impl Ingest {
    pub fn new(store: Store, config: IngestConfig) -> Self {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let span_metrics = SpanMetrics::new(
            Duration::from_secs(config.service_graph_wait_secs),
            config.service_graph_max_pending,
            started,
        )
        .with_max_series(config.span_metrics_max_series);
        Self {
            store,
            config: Arc::new(config),
            stats: Arc::new(IngestStats::default()),
            span_metrics,
        }
    }

    /// The span-metrics generator fed by this pipeline (its writer is run by the binary).
    pub fn span_metrics(&self) -> &SpanMetrics {
        &self.span_metrics
    }

    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    pub fn stats(&self) -> &Arc<IngestStats> {
        &self.stats
    }

    /// The event times a request of `signal` may carry now.
    fn window(&self, signal: Signal) -> TimeWindow {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let retention = self.store.config().retention_hours(signal);
        TimeWindow::new(signal, now, &self.config, retention)
    }

    /// Checks an `Authorization` header value against the configured tokens.
    pub fn authorize(&self, header: Option<&str>) -> Result<()> {
        if self.config.tokens.is_empty() {
            return Ok(());
        }
        let offered = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim);
        match offered {
            Some(token) if self.config.tokens.iter().any(|t| t.matches(token)) => Ok(()),
            _ => Err(Error::Unauthenticated),
        }
    }

    /// Appends a batch (when there is one) and counts what was stored and dropped. Spans
    /// are counted by the span-metrics generator once acknowledged.
    /// `source` is the request the batch was read from by a fast path: the WAL logs it instead
    /// of the batch (see [`source_decoder`]).
    async fn store(
        &self,
        signal: Signal,
        protocol: Protocol,
        batch: Option<RecordBatch>,
        rejected: u64,
        source: Option<Bytes>,
    ) -> Result<()> {
        let (s, p) = slot(signal, protocol);
        let count = batch.as_ref().map_or(0, |b| b.num_rows() as u64);
        if let Some(batch) = batch {
            match source {
                Some(source) => {
                    (self.store)
                        .append_source(signal, batch.clone(), source)
                        .await?
                }
                None => self.store.append_batch(signal, batch.clone()).await?,
            };
            if signal == Signal::Spans {
                self.span_metrics.record_batch(&batch, Instant::now());
            }
        }
        self.stats.accepted_total[s][p].fetch_add(count, Ordering::Relaxed);
        self.stats.rejected_total[s][p].fetch_add(rejected, Ordering::Relaxed);
        Ok(())
    }

    /// A reservation for one request in the store's memory budget (the `requests` share).
    pub fn request_memory(&self) -> RequestMemory {
        RequestMemory::new(self.store.memory())
    }

    /// Converts and appends items, answering with what was dropped: `(rejected, message)`.
    /// Refuses the request before building its rows when they would take more than
    /// `max_expanded_bytes` with their resources and scopes.
    async fn store_converted<T: Owned>(
        &self,
        signal: Signal,
        protocol: Protocol,
        converted: Converted<T>,
        wrap: fn(Vec<T>) -> Records,
        memory: &RequestMemory,
    ) -> Result<(i64, String)> {
        let limit = self.config.max_expanded_bytes;
        let bytes = expanded_bytes(&converted.items);
        if bytes > limit {
            return Err(Error::Expands { bytes, limit });
        }
        memory.grow(bytes)?;
        let rejected = converted.rejected;
        let message = converted.error_message();
        let batch = match converted.items.is_empty() {
            true => None,
            false => Some(wrap(converted.items).to_batch()?),
        };
        self.store(signal, protocol, batch, rejected, None).await?;
        Ok((rejected as i64, message))
    }

    /// Stores what a fast path (`direct`) read from `body`; `false` when it left the request
    /// to the general path.
    async fn store_direct(
        &self,
        signal: Signal,
        protocol: Protocol,
        body: &Bytes,
        read: fn(&[u8], u64) -> std::result::Result<Option<RecordBatch>, Fallback>,
    ) -> Result<bool> {
        match read(body, self.config.max_expanded_bytes) {
            Ok(Some(batch)) if !self.window(signal).admits_batch(&batch) => Ok(false),
            Ok(batch) => {
                (self.store(signal, protocol, batch, 0, Some(body.clone()))).await?;
                Ok(true)
            }
            Err(Fallback) => Ok(false),
        }
    }

    /// A protobuf trace request as it came: read straight into the table's columns when the
    /// fast path takes it, decoded and converted otherwise. `memory` is the request's
    /// reservation ([`Ingest::request_memory`]), which holds the body already (the receivers
    /// count it as they read it); on the general path what decoding and building the rows
    /// take is added to it first (retry later when the budget lacks it).
    pub async fn traces_protobuf(
        &self,
        body: &Bytes,
        protocol: Protocol,
        memory: &RequestMemory,
    ) -> Result<ExportTraceServiceResponse> {
        if self
            .store_direct(Signal::Spans, protocol, body, direct::spans)
            .await?
        {
            return Ok(ExportTraceServiceResponse::default());
        }
        let request = decode_protobuf(body, self.config.max_decoded_bytes, memory)?;
        self.traces(request, protocol, memory).await
    }

    /// A protobuf metrics request as it came, the same way as [`Ingest::traces_protobuf`].
    pub async fn metrics_protobuf(
        &self,
        body: &Bytes,
        protocol: Protocol,
        memory: &RequestMemory,
    ) -> Result<ExportMetricsServiceResponse> {
        if self
            .store_direct(Signal::Metrics, protocol, body, direct::metrics)
            .await?
        {
            return Ok(ExportMetricsServiceResponse::default());
        }
        let request = decode_protobuf(body, self.config.max_decoded_bytes, memory)?;
        self.metrics(request, protocol, memory).await
    }

    pub async fn traces(
        &self,
        request: ExportTraceServiceRequest,
        protocol: Protocol,
        memory: &RequestMemory,
    ) -> Result<ExportTraceServiceResponse> {
        let mut converted = convert::spans(request);
        self.window(Signal::Spans).retain_spans(&mut converted);
        let (rejected, message) = self
            .store_converted(Signal::Spans, protocol, converted, Records::Spans, memory)
            .await?;
        Ok(ExportTraceServiceResponse {
            partial_success: (rejected > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: rejected,
                error_message: message,
            }),
        })
    }

    pub async fn metrics(
        &self,
        request: ExportMetricsServiceRequest,
        protocol: Protocol,
        memory: &RequestMemory,
    ) -> Result<ExportMetricsServiceResponse> {
        let mut converted = convert::metrics(request);
        self.window(Signal::Metrics).retain_points(&mut converted);
        let (rejected, message) = self
            .store_converted(
                Signal::Metrics,
                protocol,
                converted,
                Records::Metrics,
                memory,
            )
            .await?;
        Ok(ExportMetricsServiceResponse {
            partial_success: (rejected > 0).then_some(ExportMetricsPartialSuccess {
                rejected_data_points: rejected,
                error_message: message,
            }),
        })
    }

    pub async fn logs(
        &self,
        request: ExportLogsServiceRequest,
        protocol: Protocol,
        memory: &RequestMemory,
    ) -> Result<ExportLogsServiceResponse> {
        let mut converted = convert::logs(request);
        self.window(Signal::Logs).retain_logs(&mut converted);
        let (rejected, message) = self
            .store_converted(Signal::Logs, protocol, converted, Records::Logs, memory)
            .await?;
        Ok(ExportLogsServiceResponse {
            partial_success: (rejected > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: message,
            }),
        })
    }
}

/// An item that carries its resource and scope.
pub(crate) trait Owned {
    fn owners(&self) -> (&Arc<Resource>, &Arc<Scope>);
}

impl Owned for Span {
    fn owners(&self) -> (&Arc<Resource>, &Arc<Scope>) {
        (&self.resource, &self.scope)
    }
}

impl Owned for MetricPoint {
    fn owners(&self) -> (&Arc<Resource>, &Arc<Scope>) {
        (&self.resource, &self.scope)
    }
}

impl Owned for LogRecord {
    fn owners(&self) -> (&Arc<Resource>, &Arc<Scope>) {
        (&self.resource, &self.scope)
    }
}

/// What one row takes with its copy of its resource and scope, about: the owners' attributes
/// and names, and a floor for the row's own columns.
pub(crate) fn row_bytes(resource: &Resource, scope: &Scope) -> u64 {
    spyglass_store::model::owner_bytes(resource, scope) + 64
}

/// What the items' rows take, by [`row_bytes`] (items of one group are together, so each group
/// is measured once).
fn expanded_bytes<T: Owned>(items: &[T]) -> u64 {
    let mut last: Option<(*const Resource, *const Scope, u64)> = None;
    let mut total = 0u64;
    for item in items {
        let (resource, scope) = item.owners();
        let key = (Arc::as_ptr(resource), Arc::as_ptr(scope));
        let size = match last {
            Some((r, s, size)) if (r, s) == key => size,
            _ => {
                let size = row_bytes(resource, scope);
                last = Some((key.0, key.1, size));
                size
            }
        };
        total = total.saturating_add(size);
    }
    total
}

/// Decodes a protobuf request with prost, unless that would take more than `limit` bytes of
/// memory ([`crate::decoded`]).
pub(crate) fn decode_protobuf<M: Message + Default + Root>(
    body: &[u8],
    limit: u64,
    memory: &RequestMemory,
) -> Result<M> {
    if limit < u64::MAX || memory.counted() {
        memory.admit_decode(decoded::bytes(M::ROOT, body), limit)?;
    }
    M::decode(body).map_err(|e| Error::Decode(e.to_string()))
}

/// The store's decoder for WAL records that hold a request as it came (what the fast paths
/// read): give it to [`spyglass_store::Store::open_with_decoder`]. It reads the request as
/// the fast path did; should a later fast path leave it to the general path, the general path
/// makes the same batch (the fast paths' tests check this), and a request that no longer
/// converts without rejections is damaged content.
pub fn source_decoder() -> SourceDecoder {
    Arc::new(|signal, bytes| {
        let fast = match signal {
            Signal::Spans => direct::spans(bytes, u64::MAX),
            Signal::Metrics => direct::metrics(bytes, u64::MAX),
            Signal::Logs => Err(Fallback),
        };
        let why = |e: Error| e.to_string();
        let (records, rejected) = match fast {
            Ok(Some(batch)) => return Ok(batch),
            Ok(None) => return Err("the request holds no rows".into()),
            Err(Fallback) => match signal {
                Signal::Spans => {
                    let c = convert::spans(
                        decode_protobuf(bytes, u64::MAX, &RequestMemory::uncounted())
                            .map_err(why)?,
                    );
                    (Records::Spans(c.items), c.rejected)
                }
                Signal::Metrics => {
                    let c = convert::metrics(
                        decode_protobuf(bytes, u64::MAX, &RequestMemory::uncounted())
                            .map_err(why)?,
                    );
                    (Records::Metrics(c.items), c.rejected)
                }
                Signal::Logs => {
                    let c = convert::logs(
                        decode_protobuf(bytes, u64::MAX, &RequestMemory::uncounted())
                            .map_err(why)?,
                    );
                    (Records::Logs(c.items), c.rejected)
                }
            },
        };
        if rejected > 0 || records.is_empty() {
            return Err(format!(
                "the request converts to {} rows with {rejected} rejected",
                records.len()
            ));
        }
        records.to_batch().map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    fn request(spans: Vec<Span>) -> Vec<u8> {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    fn span(id: u8) -> Span {
        Span {
            trace_id: vec![id; 16],
            span_id: vec![id; 8],
            ..Default::default()
        }
    }

    #[test]
    fn the_source_decoder_reads_what_the_fast_path_leaves_and_refuses_rejections() {
        let decode = source_decoder();
        // An array attribute: the fast path leaves it to the general path, which stores it.
        let mut with_array = span(1);
        with_array.attributes = vec![KeyValue {
            key: "tags".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![] })),
            }),
            key_strindex: 0,
        }];
        let bytes = request(vec![with_array]);
        assert_eq!(direct::spans(&bytes, u64::MAX), Err(Fallback));
        let general =
            convert::spans(decode_protobuf(&bytes, u64::MAX, &RequestMemory::uncounted()).unwrap());
        let expected = Records::Spans(general.items).to_batch().unwrap();
        assert_eq!(decode(Signal::Spans, &bytes).unwrap(), expected);
        // A request with a rejected span was never logged as a source: it is damage.
        let bytes = request(vec![span(2), span(0)]);
        assert!(decode(Signal::Spans, &bytes).is_err());
        assert!(decode(Signal::Spans, b"\xff\xff").is_err());
        assert!(decode(Signal::Spans, &request(vec![])).is_err());
    }
}
