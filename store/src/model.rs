//! The data model: plain Rust types for spans, metric points and log records.
//!
//! Nothing here knows OTLP protobuf or Arrow. Conversion from OTLP (in `ingest`) is lossless for
//! every field a user can see; conversion to and from Arrow lives in [`crate::schema`].

use std::fmt;
use std::sync::Arc;

mod ids;
mod prometheus;

pub use ids::{SpanId, TraceId};
pub use prometheus::prometheus_name;

/// An OTLP `AnyValue`, keeping its type.
#[derive(Clone, Debug)]
pub enum AttrValue {
    /// An `AnyValue` with no value set (allowed by OTLP, shown as empty).
    Empty,
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<AttrValue>),
    KvList(Vec<KeyValue>),
}

/// Doubles compare by bit pattern so that NaN round trips are checkable.
impl PartialEq for AttrValue {
    fn eq(&self, other: &Self) -> bool {
        use AttrValue::*;
        match (self, other) {
            (Empty, Empty) => true,
            (Str(a), Str(b)) => a == b,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (Double(a), Double(b)) => a.to_bits() == b.to_bits(),
            (Bytes(a), Bytes(b)) => a == b,
            (Array(a), Array(b)) => a == b,
            (KvList(a), KvList(b)) => a == b,
            _ => false,
        }
    }
}

impl AttrValue {
    /// The value as a user reads it: strings as they are, numbers in decimal, the rest as JSON.
    pub fn to_display_string(&self) -> String {
        self.display().into_owned()
    }

    /// Like [`AttrValue::to_display_string`], borrowing strings.
    pub fn display(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow;
        match self {
            AttrValue::Str(s) => Cow::Borrowed(s),
            AttrValue::Bool(b) => Cow::Owned(b.to_string()),
            AttrValue::Int(i) => Cow::Owned(i.to_string()),
            AttrValue::Double(d) => Cow::Owned(d.to_string()),
            other => Cow::Owned(crate::schema::typed_json::encode(other)),
        }
    }
}

/// One key and its value. Keys inside a kvlist value keep their order and may repeat, as in OTLP.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyValue {
    pub key: String,
    pub value: AttrValue,
}

/// A set of attributes, kept sorted by key with unique keys.
///
/// OTLP requires attribute keys to be unique; when a sender repeats one, the last value wins (as
/// a map insert would). Sorting makes the stored form canonical, so a round trip through storage
/// returns exactly what went in.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attributes(Vec<KeyValue>);

impl Attributes {
    pub fn new(mut pairs: Vec<KeyValue>) -> Self {
        // Stable sort keeps sender order among equal keys, so "last wins" below is well defined.
        pairs.sort_by(|a, b| a.key.cmp(&b.key));
        let mut out: Vec<KeyValue> = Vec::with_capacity(pairs.len());
        for kv in pairs {
            match out.last_mut() {
                Some(last) if last.key == kv.key => *last = kv,
                _ => out.push(kv),
            }
        }
        Self(out)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, KeyValue> {
        self.0.iter()
    }

    pub fn get(&self, key: &str) -> Option<&AttrValue> {
        self.0
            .binary_search_by(|kv| kv.key.as_str().cmp(key))
            .ok()
            .map(|i| &self.0[i].value)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, AttrValue)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (String, AttrValue)>>(iter: I) -> Self {
        Self::new(
            iter.into_iter()
                .map(|(key, value)| KeyValue { key, value })
                .collect(),
        )
    }
}

/// The entity that produced telemetry: OTLP `Resource` plus the resource's schema URL.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resource {
    pub attributes: Attributes,
    pub dropped_attributes_count: u32,
    pub schema_url: String,
}

impl AttrValue {
    /// Bytes the value takes in the tables' columns, about (a lower bound for nested values,
    /// stored as typed JSON).
    pub fn stored_bytes(&self) -> u64 {
        match self {
            AttrValue::Empty => 0,
            AttrValue::Str(s) => s.len() as u64,
            AttrValue::Bool(_) => 1,
            AttrValue::Int(_) | AttrValue::Double(_) => 8,
            AttrValue::Bytes(b) => b.len() as u64,
            AttrValue::Array(values) => values.iter().map(|v| 2 + v.stored_bytes()).sum(),
            AttrValue::KvList(pairs) => pairs
                .iter()
                .map(|kv| 4 + kv.key.len() as u64 + kv.value.stored_bytes())
                .sum(),
        }
    }
}

impl Attributes {
    /// Bytes the attributes take in the tables' columns, about.
    pub fn stored_bytes(&self) -> u64 {
        self.iter()
            .map(|kv| 8 + kv.key.len() as u64 + kv.value.stored_bytes())
            .sum()
    }
}

/// Days since 1970-01-01 as a proleptic Gregorian (year, month, day), after Howard Hinnant's
/// public-domain civil-from-days algorithm.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Bytes one row's copy of its resource and scope takes in a table: every row carries them.
pub fn owner_bytes(resource: &Resource, scope: &Scope) -> u64 {
    resource.attributes.stored_bytes()
        + resource.schema_url.len() as u64
        + scope.attributes.stored_bytes()
        + (scope.name.len() + scope.version.len() + scope.schema_url.len()) as u64
}

impl Resource {
    /// `service.name`, or `unknown_service` as the OpenTelemetry SDKs default to.
    pub fn service_name(&self) -> &str {
        match self.attributes.get("service.name") {
            Some(AttrValue::Str(s)) if !s.is_empty() => s,
            _ => "unknown_service",
        }
    }
}

/// The instrumentation scope (library) that produced telemetry, with its schema URL.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scope {
    pub name: String,
    pub version: String,
    pub attributes: Attributes,
    pub dropped_attributes_count: u32,
    pub schema_url: String,
}

/// OTLP `Span.SpanKind`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SpanKind {
    #[default]
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    pub const ALL: [SpanKind; 6] = [
        SpanKind::Unspecified,
        SpanKind::Internal,
        SpanKind::Server,
        SpanKind::Client,
        SpanKind::Producer,
        SpanKind::Consumer,
    ];

    /// The name stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// OTLP `Status.StatusCode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StatusCode {
    #[default]
    Unset,
    Ok,
    Error,
}

impl StatusCode {
    pub const ALL: [StatusCode; 3] = [StatusCode::Unset, StatusCode::Ok, StatusCode::Error];

    /// The name stored in the `status_code` column.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A span event (`Span.Event`); exceptions are events named `exception`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanEvent {
    pub time_unix_nano: u64,
    pub name: String,
    pub attributes: Attributes,
    pub dropped_attributes_count: u32,
}

/// A link to another span (`Span.Link`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanLink {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub trace_state: String,
    pub flags: u32,
    pub attributes: Attributes,
    pub dropped_attributes_count: u32,
}

/// One span with its resource and scope, as stored in the `spans` table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// `None` for a root span (OTLP sends an empty `parent_span_id`).
    pub parent_span_id: Option<SpanId>,
    pub trace_state: String,
    pub flags: u32,
    pub name: String,
    pub kind: SpanKind,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub status_code: StatusCode,
    pub status_message: String,
    pub attributes: Attributes,
    pub dropped_attributes_count: u32,
    pub events: Vec<SpanEvent>,
    pub dropped_events_count: u32,
    pub links: Vec<SpanLink>,
    pub dropped_links_count: u32,
    /// Shared by every item of one OTLP `ResourceSpans` / `ResourceMetrics` / `ResourceLogs`.
    pub resource: Arc<Resource>,
    /// Shared by every item of one OTLP scope group.
    pub scope: Arc<Scope>,
}

impl Span {
    pub fn service_name(&self) -> &str {
        self.resource.service_name()
    }

    /// End minus start; zero when a sender reports an end before the start.
    pub fn duration_nano(&self) -> u64 {
        self.end_time_unix_nano
            .saturating_sub(self.start_time_unix_nano)
    }
}

/// The kind of a metric and, for sums and histograms, how points aggregate over time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MetricType {
    #[default]
    Gauge,
    Sum,
    Histogram,
    ExponentialHistogram,
    Summary,
}

impl MetricType {
    pub const ALL: [MetricType; 5] = [
        MetricType::Gauge,
        MetricType::Sum,
        MetricType::Histogram,
        MetricType::ExponentialHistogram,
        MetricType::Summary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Sum => "sum",
            MetricType::Histogram => "histogram",
            MetricType::ExponentialHistogram => "exponential_histogram",
            MetricType::Summary => "summary",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// OTLP `AggregationTemporality`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Temporality {
    #[default]
    Unspecified,
    Delta,
    Cumulative,
}

impl Temporality {
    pub const ALL: [Temporality; 3] = [
        Temporality::Unspecified,
        Temporality::Delta,
        Temporality::Cumulative,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Temporality::Unspecified => "unspecified",
            Temporality::Delta => "delta",
            Temporality::Cumulative => "cumulative",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A number as OTLP sends it: integer and double points stay distinct.
#[derive(Clone, Copy, Debug)]
pub enum NumberValue {
    Int(i64),
    Double(f64),
}

impl NumberValue {
    pub fn as_f64(self) -> f64 {
        match self {
            NumberValue::Int(i) => i as f64,
            NumberValue::Double(d) => d,
        }
    }
}

impl PartialEq for NumberValue {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (NumberValue::Int(a), NumberValue::Int(b)) => a == b,
            (NumberValue::Double(a), NumberValue::Double(b)) => a.to_bits() == b.to_bits(),
            _ => false,
        }
    }
}

/// A sampled measurement linked to the trace that was active when it was recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    pub time_unix_nano: u64,
    pub value: NumberValue,
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    pub filtered_attributes: Attributes,
}

/// Buckets of one sign of an exponential histogram.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExpBuckets {
    pub offset: i32,
    pub bucket_counts: Vec<u64>,
}

/// One quantile of a summary point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantile {
    pub quantile: f64,
    pub value: f64,
}

/// The value part of a data point, by metric type.
#[derive(Clone, Debug, PartialEq)]
pub enum PointValue {
    Number(NumberValue),
    Histogram {
        count: u64,
        sum: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
        bucket_counts: Vec<u64>,
        explicit_bounds: Vec<f64>,
    },
    ExponentialHistogram {
        count: u64,
        sum: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
        scale: i32,
        zero_count: u64,
        zero_threshold: f64,
        positive: ExpBuckets,
        negative: ExpBuckets,
    },
    Summary {
        count: u64,
        sum: f64,
        quantiles: Vec<Quantile>,
    },
}

/// One data point with its metric's identity, as stored in the `metrics` table.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPoint {
    /// The metric name as the sender wrote it (OTLP name).
    pub metric_name: String,
    pub description: String,
    pub unit: String,
    pub metric_type: MetricType,
    pub temporality: Temporality,
    pub is_monotonic: bool,
    pub attributes: Attributes,
    pub time_unix_nano: u64,
    pub start_time_unix_nano: u64,
    /// OTLP `DataPointFlags` (bit 0: no recorded value).
    pub flags: u32,
    pub value: PointValue,
    pub exemplars: Vec<Exemplar>,
    /// Shared by every item of one OTLP `ResourceSpans` / `ResourceMetrics` / `ResourceLogs`.
    pub resource: Arc<Resource>,
    /// Shared by every item of one OTLP scope group.
    pub scope: Arc<Scope>,
}

impl MetricPoint {
    pub fn service_name(&self) -> &str {
        self.resource.service_name()
    }

    /// The metric's Prometheus-compatible name (see [`prometheus_name`]).
    pub fn prometheus_name(&self) -> String {
        prometheus_name(
            &self.metric_name,
            &self.unit,
            self.metric_type,
            self.is_monotonic,
        )
    }
}

/// One log record with its resource and scope, as stored in the `logs` table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogRecord {
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    pub severity_number: i32,
    pub severity_text: String,
    /// `None` when the sender set no body.
    pub body: Option<AttrValue>,
    pub event_name: String,
    pub attributes: Attributes,
    pub dropped_attributes_count: u32,
    pub flags: u32,
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    /// Shared by every item of one OTLP `ResourceSpans` / `ResourceMetrics` / `ResourceLogs`.
    pub resource: Arc<Resource>,
    /// Shared by every item of one OTLP scope group.
    pub scope: Arc<Scope>,
}

impl LogRecord {
    pub fn service_name(&self) -> &str {
        self.resource.service_name()
    }
}

/// The three signals; each has its own table, memtable and parts.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Spans,
    Metrics,
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Spans, Signal::Metrics, Signal::Logs];

    /// The table name, also the folder name of the signal's parts.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Spans => "spans",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub(crate) fn tag(self) -> u8 {
        match self {
            Signal::Spans => 1,
            Signal::Metrics => 2,
            Signal::Logs => 3,
        }
    }

    pub(crate) fn from_tag(tag: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.tag() == tag)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_sorted_and_the_last_repeated_key_wins() {
        let attrs: Attributes = [
            ("b".to_owned(), AttrValue::Int(1)),
            ("a".to_owned(), AttrValue::Bool(true)),
            ("b".to_owned(), AttrValue::Int(2)),
        ]
        .into_iter()
        .collect();
        let keys: Vec<_> = attrs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(attrs.get("b"), Some(&AttrValue::Int(2)));
    }

    #[test]
    fn missing_service_name_is_unknown_service() {
        assert_eq!(Resource::default().service_name(), "unknown_service");
    }
}
