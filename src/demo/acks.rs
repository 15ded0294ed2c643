//! What the shop's span exporters saw acknowledged: the SDK's OTLP exporter wrapped so that
//! each batch the server accepted is counted (and, for the crash test, written down).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// Spans the exporters had acknowledged, optionally written down one `trace_id span_id` line
/// each (the crash test compares them with what the server kept).
#[derive(Debug, Default)]
pub struct Acks {
    pub spans: AtomicU64,
    record: Option<Mutex<BufWriter<File>>>,
}

impl Acks {
    pub fn recording_to(path: Option<&Path>) -> anyhow::Result<Self> {
        let record = match path {
            Some(path) => Some(Mutex::new(BufWriter::new(File::create(path)?))),
            None => None,
        };
        Ok(Self {
            spans: AtomicU64::new(0),
            record,
        })
    }

    fn recording(&self) -> bool {
        self.record.is_some()
    }

    /// `count` spans acknowledged; `ids` are theirs when recording.
    fn acknowledged(&self, count: usize, ids: &[(TraceId, SpanId)]) {
        self.spans.fetch_add(count as u64, Ordering::Relaxed);
        if let Some(record) = &self.record {
            let mut out = record.lock().expect("acks lock");
            for (trace, span) in ids {
                let _ = writeln!(out, "{trace} {span}");
            }
        }
    }

    pub fn finish(&self) -> std::io::Result<()> {
        match &self.record {
            Some(record) => record.lock().expect("acks lock").flush(),
            None => Ok(()),
        }
    }
}

/// The SDK's OTLP span exporter, counting what the server acknowledged.
#[derive(Debug)]
pub struct CountingExporter {
    pub inner: opentelemetry_otlp::SpanExporter,
    pub acks: Arc<Acks>,
}

impl SpanExporter for CountingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let count = batch.len();
        let ids: Vec<(TraceId, SpanId)> = if self.acks.recording() {
            batch
                .iter()
                .map(|s| (s.span_context.trace_id(), s.span_context.span_id()))
                .collect()
        } else {
            Vec::new()
        };
        let result = self.inner.export(batch).await;
        if result.is_ok() {
            self.acks.acknowledged(count, &ids);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
