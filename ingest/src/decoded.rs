//! What decoding a protobuf request with prost would allocate, worked out from its bytes first.
//!
//! prost turns every message into a struct: an empty `LogRecord` is 2 bytes on the wire and
//! a struct of a few hundred bytes in memory, so a small (or well compressed) request of empty
//! messages could ask for gigabytes. Before the general path decodes a request, [`bytes`]
//! walks it with the OTLP schema — which field of which message holds which message — and adds
//! up the size of each struct prost would make, the bytes of each string and byte field, and 8
//! bytes for each number a packed varint field holds. The pipeline refuses a request whose sum
//! passes `[ingest] max_decoded_bytes` (413 / RESOURCE_EXHAUSTED) without decoding it.
//!
//! Where the bytes are malformed the walk stops: prost stops at the same place, having made at
//! most what was counted.

use std::mem::size_of;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as common;
use opentelemetry_proto::tonic::logs::v1 as logs;
use opentelemetry_proto::tonic::metrics::v1 as metrics;
use opentelemetry_proto::tonic::resource::v1 as resource;
use opentelemetry_proto::tonic::trace::v1 as trace;

use crate::wire::{Fields, Value};

/// The OTLP messages, as far as their fields hold messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Msg {
    ExportTraces,
    ResourceSpans,
    ScopeSpans,
    Span,
    Event,
    Link,
    Status,
    ExportMetrics,
    ResourceMetrics,
    ScopeMetrics,
    Metric,
    /// Gauge and Sum: field 1 holds number points.
    Numbers,
    Histogram,
    ExpHistogram,
    Summary,
    NumberPoint,
    HistogramPoint,
    ExpPoint,
    ExpBuckets,
    SummaryPoint,
    Quantile,
    Exemplar,
    ExportLogs,
    ResourceLogs,
    ScopeLogs,
    LogRecord,
    Resource,
    Scope,
    EntityRef,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

/// A request type and the message it starts with.
pub(crate) trait Root {
    const ROOT: Msg;
}

impl Root for ExportTraceServiceRequest {
    const ROOT: Msg = Msg::ExportTraces;
}

impl Root for ExportMetricsServiceRequest {
    const ROOT: Msg = Msg::ExportMetrics;
}

impl Root for ExportLogsServiceRequest {
    const ROOT: Msg = Msg::ExportLogs;
}

impl Msg {
    /// The message field `number` of this message holds, if it holds one.
    fn child(self, number: u32) -> Option<Msg> {
        use Msg::*;
        Some(match (self, number) {
            (ExportTraces, 1) => ResourceSpans,
            (ResourceSpans, 1) | (ResourceMetrics, 1) | (ResourceLogs, 1) => Resource,
            (ResourceSpans, 2) => ScopeSpans,
            (ScopeSpans, 1) | (ScopeMetrics, 1) | (ScopeLogs, 1) => Scope,
            (ScopeSpans, 2) => Span,
            (Span, 9) | (Event, 3) | (Link, 4) => KeyValue,
            (Span, 11) => Event,
            (Span, 13) => Link,
            (Span, 15) => Status,
            (ExportMetrics, 1) => ResourceMetrics,
            (ResourceMetrics, 2) => ScopeMetrics,
            (ScopeMetrics, 2) => Metric,
            (Metric, 5) | (Metric, 7) => Numbers,
            (Metric, 9) => Histogram,
            (Metric, 10) => ExpHistogram,
            (Metric, 11) => Summary,
            (Metric, 12) => KeyValue,
            (Numbers, 1) => NumberPoint,
            (Histogram, 1) => HistogramPoint,
            (ExpHistogram, 1) => ExpPoint,
            (Summary, 1) => SummaryPoint,
            (NumberPoint, 7) | (HistogramPoint, 9) | (ExpPoint, 1) | (SummaryPoint, 7) => KeyValue,
            (NumberPoint, 5) | (HistogramPoint, 8) | (ExpPoint, 11) => Exemplar,
            (ExpPoint, 8) | (ExpPoint, 9) => ExpBuckets,
            (SummaryPoint, 6) => Quantile,
            (Exemplar, 7) => KeyValue,
            (ExportLogs, 1) => ResourceLogs,
            (ResourceLogs, 2) => ScopeLogs,
            (ScopeLogs, 2) => LogRecord,
            (LogRecord, 5) => AnyValue,
            (LogRecord, 6) => KeyValue,
            (Resource, 1) | (Scope, 3) | (KeyValueList, 1) => KeyValue,
            (Resource, 3) => EntityRef,
            (KeyValue, 2) | (ArrayValue, 1) => AnyValue,
            (AnyValue, 5) => ArrayValue,
            (AnyValue, 6) => KeyValueList,
            _ => return None,
        })
    }

    /// Whether field `number` is a packed list of varints (each becomes 8 bytes).
    fn packed_varints(self, number: u32) -> bool {
        self == Msg::ExpBuckets && number == 2
    }

    /// The size of the struct prost makes of this message.
    fn size(self) -> usize {
        use Msg::*;
        match self {
            ExportTraces => size_of::<ExportTraceServiceRequest>(),
            ResourceSpans => size_of::<trace::ResourceSpans>(),
            ScopeSpans => size_of::<trace::ScopeSpans>(),
            Span => size_of::<trace::Span>(),
            Event => size_of::<trace::span::Event>(),
            Link => size_of::<trace::span::Link>(),
            Status => size_of::<trace::Status>(),
            ExportMetrics => size_of::<ExportMetricsServiceRequest>(),
            ResourceMetrics => size_of::<metrics::ResourceMetrics>(),
            ScopeMetrics => size_of::<metrics::ScopeMetrics>(),
            Metric => size_of::<metrics::Metric>(),
            Numbers => size_of::<metrics::Sum>(),
            Histogram => size_of::<metrics::Histogram>(),
            ExpHistogram => size_of::<metrics::ExponentialHistogram>(),
            Summary => size_of::<metrics::Summary>(),
            NumberPoint => size_of::<metrics::NumberDataPoint>(),
            HistogramPoint => size_of::<metrics::HistogramDataPoint>(),
            ExpPoint => size_of::<metrics::ExponentialHistogramDataPoint>(),
            ExpBuckets => size_of::<metrics::exponential_histogram_data_point::Buckets>(),
            SummaryPoint => size_of::<metrics::SummaryDataPoint>(),
            Quantile => size_of::<metrics::summary_data_point::ValueAtQuantile>(),
            Exemplar => size_of::<metrics::Exemplar>(),
            ExportLogs => size_of::<ExportLogsServiceRequest>(),
            ResourceLogs => size_of::<logs::ResourceLogs>(),
            ScopeLogs => size_of::<logs::ScopeLogs>(),
            LogRecord => size_of::<logs::LogRecord>(),
            Resource => size_of::<resource::Resource>(),
            Scope => size_of::<common::InstrumentationScope>(),
            EntityRef => size_of::<common::EntityRef>(),
            KeyValue => size_of::<common::KeyValue>(),
            AnyValue => size_of::<common::AnyValue>(),
            ArrayValue => size_of::<common::ArrayValue>(),
            KeyValueList => size_of::<common::KeyValueList>(),
        }
    }
}

/// The largest struct prost makes of an OTLP message: every message reachable from the three
/// requests through [`Msg::child`].
fn largest_message() -> usize {
    static LARGEST: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LARGEST.get_or_init(|| {
        let mut seen: Vec<Msg> = Vec::new();
        let mut todo = vec![Msg::ExportTraces, Msg::ExportMetrics, Msg::ExportLogs];
        while let Some(msg) = todo.pop() {
            if !seen.contains(&msg) {
                seen.push(msg);
                todo.extend((1..=MAX_FIELD).filter_map(|number| msg.child(number)));
            }
        }
        seen.iter().map(|m| m.size()).max().unwrap_or(0)
    })
}

/// The highest field number [`Msg::child`] knows.
const MAX_FIELD: u32 = 16;

/// At most the bytes decoding a JSON request takes, without parsing it: each object becomes one
/// struct (counted as the largest, twice for the spare room of the list holding it), each
/// element of a list of numbers 8 bytes (counted for every comma), and strings no more than
/// their text. `{}` is 2 bytes of JSON and a few hundred in memory; the OTLP/HTTP receiver
/// checks this against `max_decoded_bytes` as the protobuf path checks [`bytes`].
pub(crate) fn json_bytes(body: &[u8]) -> u64 {
    let (mut objects, mut commas) = (0u64, 0u64);
    for &b in body {
        objects += u64::from(b == b'{');
        commas += u64::from(b == b',');
    }
    let per_object = 2 * largest_message() as u64;
    (body.len() as u64)
        .saturating_add(objects.saturating_mul(per_object))
        .saturating_add(commas.saturating_add(1).saturating_mul(8))
}

/// Deeper than this, prost refuses the message (its recursion limit).
const MAX_DEPTH: usize = 100;

/// The bytes prost would allocate to decode `body` as a `root` message (a lower bound for
/// malformed bytes, where prost stops too).
pub(crate) fn bytes(root: Msg, body: &[u8]) -> u64 {
    let mut total = root.size() as u64;
    walk(root, body, 0, &mut total);
    total
}

fn walk(msg: Msg, body: &[u8], depth: usize, total: &mut u64) {
    if depth > MAX_DEPTH {
        return;
    }
    let mut fields = Fields::new(body);
    while let Ok(Some((number, value))) = fields.next_field() {
        let cost = match (value, msg.child(number)) {
            (Value::Bytes(inner), Some(child)) => {
                walk(child, inner, depth + 1, total);
                child.size()
            }
            (Value::Bytes(inner), None) if msg.packed_varints(number) => inner.len() * 8,
            (Value::Bytes(inner), None) => inner.len(),
            // A number outside a packed list: in its struct, or one element of a list.
            _ => 8,
        };
        *total = total.saturating_add(cost as u64);
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn empty_messages_cost_their_structs() {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![logs::ResourceLogs {
                scope_logs: vec![logs::ScopeLogs {
                    log_records: vec![logs::LogRecord::default(); 1000],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let body = request.encode_to_vec();
        let estimate = bytes(Msg::ExportLogs, &body);
        assert!(body.len() < 2_100, "{} bytes on the wire", body.len());
        let structs = 1000 * size_of::<logs::LogRecord>() as u64;
        assert!(
            estimate >= structs && estimate < structs + 4096,
            "{estimate} for {structs} bytes of structs"
        );
    }

    #[test]
    fn the_largest_message_is_reached_from_the_requests() {
        let largest = [
            size_of::<trace::Span>(),
            size_of::<logs::LogRecord>(),
            size_of::<metrics::ExponentialHistogramDataPoint>(),
            size_of::<metrics::HistogramDataPoint>(),
            size_of::<metrics::Metric>(),
        ];
        assert!(largest.iter().all(|&size| largest_message() >= size));
    }

    #[test]
    fn json_of_empty_objects_costs_at_least_their_structs() {
        let records = vec!["{}"; 10_000].join(",");
        let body =
            format!(r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{records}]}}]}}]}}"#);
        let decoded: ExportLogsServiceRequest = serde_json::from_str(&body).unwrap();
        let records = &decoded.resource_logs[0].scope_logs[0].log_records;
        let structs = (records.capacity() * size_of::<logs::LogRecord>()) as u64;
        let estimate = json_bytes(body.as_bytes());
        assert!(body.len() < 31_000, "{} bytes of JSON", body.len());
        assert!(
            estimate >= structs && estimate < 20 * structs,
            "{estimate} for {structs} bytes of structs"
        );
        let numbers = format!("[{}]", vec!["1"; 10_000].join(","));
        assert!(json_bytes(numbers.as_bytes()) >= 80_000);
    }

    #[test]
    fn strings_and_nested_values_are_counted() {
        let value = |s: &str| common::AnyValue {
            value: Some(common::any_value::Value::StringValue(s.into())),
        };
        let nested = common::AnyValue {
            value: Some(common::any_value::Value::ArrayValue(common::ArrayValue {
                values: vec![value("abc"); 10],
            })),
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![trace::ResourceSpans {
                scope_spans: vec![trace::ScopeSpans {
                    spans: vec![trace::Span {
                        name: "x".repeat(1000),
                        attributes: vec![common::KeyValue {
                            key: "k".into(),
                            value: Some(nested),
                            key_strindex: 0,
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let estimate = bytes(Msg::ExportTraces, &request.encode_to_vec());
        let floor = 1000 + 10 * 3 + size_of::<trace::Span>() + 11 * size_of::<common::AnyValue>();
        assert!(estimate >= floor as u64, "{estimate} < {floor}");
    }
}
