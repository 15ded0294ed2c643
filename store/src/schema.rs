//! Arrow schemas of the `spans`, `metrics` and `logs` tables, and lossless conversion between
//! them and the model.
//!
//! Attribute sets are stored as five maps per owner so that SQL reads them naturally and types
//! survive: `attributes` (string values), `attributes_int`, `attributes_double`,
//! `attributes_bool`, and `attributes_other` (bytes, arrays, kvlists and empty values in the typed
//! JSON of [`typed_json`]). Resource and scope attributes follow the same pattern with the
//! `resource_` and `scope_` prefixes. Low-cardinality strings are plain `Utf8` in Arrow and are
//! dictionary-encoded by the Parquet writer.

mod attrs;
mod columns;
mod logs;
mod metrics;
mod spans;
pub(crate) mod typed_json;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::model::{LogRecord, MetricPoint, Signal, Span};

pub use attrs::{AttrRef, KvRef, sort_attributes};
pub use logs::{logs_from_batch, logs_schema, logs_to_batch};
pub use metrics::{
    ExemplarRow, Fixed64, Fixed64s, MetricRow, PointRow, ValueRef, metrics_from_batch,
    metrics_schema, metrics_to_batch, point_rows_to_batch, series_id,
};
pub use spans::{
    EventRow, LinkRow, PROMOTED_SPAN_ATTRIBUTES, SpanRow, span_rows_to_batch, spans_from_batch,
    spans_schema, spans_to_batch,
};

/// Version of the table layouts, written into every part and WAL record so that a later
/// Spyglass can tell which layout it is reading.
pub const SCHEMA_VERSION: u32 = 1;

/// The Arrow schema of a signal's table.
pub fn schema_for(signal: Signal) -> SchemaRef {
    match signal {
        Signal::Spans => spans_schema(),
        Signal::Metrics => metrics_schema(),
        Signal::Logs => logs_schema(),
    }
}

/// Rows of one signal, in model form: what `Store::append` takes.
#[derive(Clone, Debug, PartialEq)]
pub enum Records {
    Spans(Vec<Span>),
    Metrics(Vec<MetricPoint>),
    Logs(Vec<LogRecord>),
}

impl Records {
    pub fn signal(&self) -> Signal {
        match self {
            Records::Spans(_) => Signal::Spans,
            Records::Metrics(_) => Signal::Metrics,
            Records::Logs(_) => Signal::Logs,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Records::Spans(v) => v.len(),
            Records::Metrics(v) => v.len(),
            Records::Logs(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn to_batch(&self) -> Result<RecordBatch> {
        match self {
            Records::Spans(v) => spans_to_batch(v),
            Records::Metrics(v) => metrics_to_batch(v),
            Records::Logs(v) => logs_to_batch(v),
        }
    }

    pub fn from_batch(signal: Signal, batch: &RecordBatch) -> Result<Self> {
        Ok(match signal {
            Signal::Spans => Records::Spans(spans_from_batch(batch)?),
            Signal::Metrics => Records::Metrics(metrics_from_batch(batch)?),
            Signal::Logs => Records::Logs(logs_from_batch(batch)?),
        })
    }
}

/// The column holding a row's event time, used for partitioning and time pruning.
pub fn time_column(signal: Signal) -> &'static str {
    match signal {
        Signal::Spans => "start_time_unix_nano",
        Signal::Metrics | Signal::Logs => "time_unix_nano",
    }
}
