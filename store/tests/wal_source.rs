//! Source records: the WAL logs the bytes a batch was made from, and replay makes the batch
//! again with the decoder the store was opened with. Without a decoder the store refuses to
//! open and leaves the WAL as it is; a source the decoder rejects is damage, set aside.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use common::*;
use spyglass_store::wal::Damage;
use spyglass_store::{Records, Signal, SourceDecoder, Store};

/// The test's source format: a trace number as text, standing for one span of that trace.
fn decode(bytes: &[u8]) -> Result<RecordBatch, String> {
    let trace: u64 = std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not a trace number: {bytes:?}"))?;
    Records::Spans(vec![span(trace, 1, "svc", T0 + trace)])
        .to_batch()
        .map_err(|e| e.to_string())
}

fn decoder() -> SourceDecoder {
    Arc::new(|signal, bytes| match signal {
        Signal::Spans => decode(bytes),
        other => Err(format!("no {other} here")),
    })
}

fn open_decoding(dir: &Path) -> (Store, spyglass_store::ReplayReport) {
    Store::open_with_decoder(dir, config(), decoder()).expect("opens with its decoder")
}

/// Spans 1 to 3 as source records and span 4 as a plain one; dropped without a flush.
async fn write(dir: &Path) {
    let (store, _) = open_decoding(dir);
    for trace in 1..=3u64 {
        let source = trace.to_string();
        let batch = decode(source.as_bytes()).unwrap();
        store
            .append_source(Signal::Spans, batch, source.clone().into_bytes().into())
            .await
            .unwrap();
    }
    append(&store, vec![span(4, 1, "svc", T0 + 4)]).await;
}

fn expected(traces: impl IntoIterator<Item = u64>) -> Vec<spyglass_store::model::SpanId> {
    let spans: Vec<_> = (traces.into_iter())
        .map(|t| span(t, 1, "svc", T0 + t))
        .collect();
    expected_ids(&spans)
}

#[tokio::test]
async fn source_records_come_back_through_the_decoder() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path()).await;
    // Record body: lsn (8 bytes), tag (1), payload. Source records carry the bytes as given.
    let wal = fs::read(&wal_segments(dir.path())[0]).unwrap();
    let payloads: Vec<(u8, &[u8])> = (record_offsets(&wal).into_iter())
        .map(|(start, len)| (wal[start + 16], &wal[start + 17..start + 8 + len]))
        .collect();
    assert_eq!(payloads.len(), 4);
    assert_eq!(
        payloads[..3],
        [(0x81, &b"1"[..]), (0x81, &b"2"[..]), (0x81, &b"3"[..])]
    );
    assert_eq!(payloads[3].0, 0x01, "a plain append is Arrow IPC");
    let (store, report) = open_decoding(dir.path());
    assert!(report.damaged.is_empty(), "{report:?}");
    assert_eq!(report.records_replayed, 4);
    assert_eq!(span_ids(&store.snapshot()), expected(1..=4));
}

#[tokio::test]
async fn without_a_decoder_the_store_refuses_to_open_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path()).await;
    let segment = wal_segments(dir.path())[0].clone();
    let before = fs::read(&segment).unwrap();

    let error = Store::open(dir.path(), config())
        .err()
        .expect("no decoder, no open");
    assert!(error.to_string().contains("decoder"), "{error}");
    assert_eq!(fs::read(&segment).unwrap(), before, "the WAL is untouched");
    assert!(!dir.path().join("wal").join("corrupt").exists());

    let (store, report) = open_decoding(dir.path());
    assert!(report.damaged.is_empty());
    assert_eq!(span_ids(&store.snapshot()), expected(1..=4));
}

#[tokio::test]
async fn a_source_the_decoder_rejects_is_damage_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path()).await;
    {
        let (store, _) = open_decoding(dir.path());
        let batch = decode(b"5").unwrap();
        store
            .append_source(
                Signal::Spans,
                batch,
                bytes::Bytes::from_static(b"not a number"),
            )
            .await
            .unwrap();
    }
    let (store, report) = open_decoding(dir.path());
    assert_eq!(report.damaged.len(), 1, "{report:?}");
    assert_eq!(report.damaged[0].damage, Damage::BadContent);
    assert!(report.damaged[0].set_aside_to.exists());
    assert_eq!(span_ids(&store.snapshot()), expected(1..=4));
}
