//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use spyglass_store::model::{
    AttrValue, Attributes, KeyValue, Resource, Span, SpanId, StatusCode, TraceId,
};
use spyglass_store::{Records, Signal, Snapshot, Store, StoreConfig};

pub const HOUR: u64 = 3_600_000_000_000;
/// 2026-11-27T00:00:00Z.
pub const T0: u64 = 1_795_737_600_000_000_000;

pub fn config() -> StoreConfig {
    StoreConfig {
        memtable_max_bytes: 64 << 20,
        flush_bytes: 32 << 20,
        ..StoreConfig::default()
    }
}

pub fn open(dir: &Path) -> Store {
    open_with(dir, config())
}

pub fn open_with(dir: &Path, config: StoreConfig) -> Store {
    Store::open(dir, config).expect("store opens").0
}

/// A span whose ids encode `(trace, n)`, so tests can name exactly what they expect.
pub fn span(trace: u64, n: u64, service: &str, start: u64) -> Span {
    let mut trace_id = [0u8; 16];
    trace_id[8..].copy_from_slice(&trace.to_be_bytes());
    trace_id[0] = 0x5a;
    let mut span_id = [0u8; 8];
    span_id.copy_from_slice(&(trace << 16 | n).to_be_bytes());
    span_id[0] |= 0x80;
    Span {
        trace_id: TraceId(trace_id),
        span_id: SpanId(span_id),
        name: format!("op-{}", n % 3),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1_000_000 * (n + 1),
        resource: Arc::new(Resource {
            attributes: Attributes::new(vec![KeyValue {
                key: "service.name".into(),
                value: AttrValue::Str(service.into()),
            }]),
            ..Resource::default()
        }),
        ..Span::default()
    }
}

pub fn error_span(trace: u64, n: u64, service: &str, start: u64, message: &str) -> Span {
    Span {
        status_code: StatusCode::Error,
        status_message: message.into(),
        ..span(trace, n, service, start)
    }
}

pub fn trace_id(trace: u64) -> TraceId {
    span(trace, 0, "x", 0).trace_id
}

pub async fn append(store: &Store, spans: Vec<Span>) -> u64 {
    store
        .append(&Records::Spans(spans))
        .await
        .expect("append is acknowledged")
}

/// Every stored span's id, sorted, duplicates kept.
pub fn span_ids(snapshot: &Snapshot) -> Vec<SpanId> {
    let Records::Spans(spans) = snapshot.read_records(Signal::Spans).expect("spans read") else {
        unreachable!()
    };
    let mut ids: Vec<SpanId> = spans.iter().map(|s| s.span_id).collect();
    ids.sort();
    ids
}

pub fn expected_ids(spans: &[Span]) -> Vec<SpanId> {
    let mut ids: Vec<SpanId> = spans.iter().map(|s| s.span_id).collect();
    ids.sort();
    ids
}

pub fn wal_segments(dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .expect("wal directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    segments
}

/// Offsets of each record in a segment file: (start, body length).
pub fn record_offsets(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 8;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        if pos + 8 + len > bytes.len() {
            break;
        }
        out.push((pos, len));
        pos += 8 + len;
    }
    out
}
pub mod moto;
