//! Readers hold snapshots: a snapshot taken before a flush, a compaction and a retention pass
//! reads the same rows afterwards, and the files it uses stay on disk until it is dropped.

mod common;

use common::*;
use spyglass_store::synth::SpanGenerator;
use spyglass_store::{Records, Share, Signal, Store, StoreConfig};

#[tokio::test]
async fn a_snapshot_reads_the_same_rows_through_flush_compaction_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        compaction_min_parts: 3,
        spans_retention_hours: 24,
        ..config()
    };
    let store = open_with(dir.path(), config);
    let now = T0 + 30 * HOUR;

    // Three flushed parts in one old hour (to be compacted), one part two days old (to be
    // dropped by retention), and rows still in the memtable.
    let mut all = Vec::new();
    for round in 0..3 {
        let spans: Vec<_> = (0..20)
            .map(|n| span(round, n, "api", T0 + 29 * HOUR + round))
            .collect();
        append(&store, spans.clone()).await;
        all.extend(spans);
        store.flush().await.unwrap();
    }
    let ancient: Vec<_> = (0..5).map(|n| span(9, n, "api", now - 48 * HOUR)).collect();
    append(&store, ancient.clone()).await;
    store.flush().await.unwrap();
    all.extend(ancient.clone());
    let fresh: Vec<_> = (0..5).map(|n| span(10, n, "api", now)).collect();
    append(&store, fresh.clone()).await;
    all.extend(fresh.clone());

    let held = store.snapshot();
    let held_parts = held.parts(Signal::Spans);
    assert_eq!(held_parts.len(), 4);
    assert_eq!(span_ids(&held), expected_ids(&all));

    store.flush().await.unwrap();
    assert_eq!(
        store.compact().await.unwrap(),
        3,
        "the three small parts of one hour merge"
    );
    assert_eq!(
        store.enforce_retention(now).await.unwrap(),
        1,
        "the two-day-old part goes"
    );

    assert_eq!(
        span_ids(&held),
        expected_ids(&all),
        "the held snapshot still reads every row"
    );
    assert!(
        held_parts.iter().all(|p| p.files_exist()),
        "no file is deleted while a snapshot uses it"
    );

    let current = store.snapshot();
    let mut kept = all.clone();
    kept.retain(|s| !ancient.contains(s));
    assert_eq!(
        span_ids(&current),
        expected_ids(&kept),
        "the new view has everything but the expired part"
    );
    let levels: Vec<u32> = current
        .parts(Signal::Spans)
        .iter()
        .map(|p| p.meta().level)
        .collect();
    assert!(levels.contains(&1), "a compacted part: {levels:?}");

    let files: Vec<_> = held_parts
        .iter()
        .map(|p| (p.path(), p.index_path().unwrap()))
        .collect();
    drop(held_parts);
    drop(held);
    for (file, index) in files {
        assert!(
            !file.exists() && !index.exists(),
            "{} is deleted once unused",
            file.display()
        );
    }

    // And the same holds after a restart: the manifest names exactly the live parts.
    drop(current);
    store.close().await.unwrap();
    drop(store);
    let reopened = open(dir.path());
    assert_eq!(span_ids(&reopened.snapshot()), expected_ids(&kept));
}

#[tokio::test]
async fn retention_by_bytes_drops_the_oldest_parts_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for hour in 0..4 {
        append(
            &store,
            (0..50)
                .map(|n| span(hour, n, "api", T0 + hour * HOUR))
                .collect(),
        )
        .await;
        store.flush().await.unwrap();
    }
    let parts = store.snapshot().parts(Signal::Spans);
    let newest_two: u64 = parts[2..]
        .iter()
        .map(|p| p.meta().bytes + p.meta().index_bytes)
        .sum();
    let store = {
        store.close().await.unwrap();
        drop(store);
        open_with(
            dir.path(),
            StoreConfig {
                spans_max_bytes: newest_two,
                spans_retention_hours: 0,
                ..config()
            },
        )
    };
    assert_eq!(store.enforce_retention(T0).await.unwrap(), 2);
    let hours: Vec<u64> = store
        .snapshot()
        .parts(Signal::Spans)
        .iter()
        .map(|p| p.meta().hour)
        .collect();
    assert_eq!(hours, vec![T0 / HOUR + 2, T0 / HOUR + 3]);
}

#[tokio::test]
async fn a_full_memtable_answers_try_later_until_a_flush_frees_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(
        dir.path(),
        StoreConfig {
            memtable_max_bytes: 256 << 10,
            flush_bytes: 128 << 10,
            ..config()
        },
    );
    let mut accepted = 0;
    let err = loop {
        let spans = (0..20).map(|n| span(accepted, n, "api", T0)).collect();
        match store.append(&spyglass_store::Records::Spans(spans)).await {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 10_000, "the memtable never filled");
    };
    assert_eq!(err.kind(), spyglass_store::ErrorKind::TryLater, "{err}");
    assert!(
        store.memtable_bytes() <= 256 << 10,
        "memory stays within the bound"
    );
    assert!(
        store
            .stats()
            .throttled_total
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    store.flush().await.unwrap();
    append(&store, vec![span(99_999, 1, "api", T0)]).await;
    assert_eq!(span_ids(&store.snapshot()).len() as u64, accepted * 20 + 1);
}

/// A store whose WAL starts a segment for every record, holding `n` one-span records.
async fn one_segment_per_record(dir: &std::path::Path, n: u64) -> Store {
    let store = open_with(
        dir,
        StoreConfig {
            wal_segment_bytes: 1,
            ..config()
        },
    );
    for i in 0..n {
        append(&store, vec![span(i, 1, "api", T0)]).await;
    }
    store
}

#[tokio::test]
async fn flush_checkpoints_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let store = one_segment_per_record(dir.path(), 5).await;
    assert_eq!(store.wal_segments(), 5);
    store.flush().await.unwrap();
    assert_eq!(store.wal_segments(), 1, "only the active segment remains");
    assert_eq!(wal_segments(dir.path()).len(), 1);
    drop(store);
    let (store, report) = spyglass_store::Store::open(dir.path(), config()).unwrap();
    assert_eq!(
        report.records_replayed, 0,
        "flushed records are not replayed"
    );
    assert_eq!(
        span_ids(&store.snapshot()).len(),
        5,
        "and are read from parts exactly once"
    );
}

#[tokio::test]
async fn a_segment_that_cannot_be_removed_is_retried_and_the_others_still_go() {
    let dir = tempfile::tempdir().unwrap();
    let store = one_segment_per_record(dir.path(), 4).await;
    let segments = wal_segments(dir.path());
    assert_eq!(segments.len(), 4);
    // A directory where the second segment was: removing it as a file fails.
    let stuck = &segments[1];
    std::fs::remove_file(stuck).unwrap();
    std::fs::create_dir(stuck).unwrap();
    std::fs::write(stuck.join("keep"), b"x").unwrap();
    store
        .flush()
        .await
        .expect("the flush is committed even when one segment stays");
    assert_eq!(
        wal_segments(dir.path()),
        vec![stuck.clone(), segments[3].clone()],
        "the segments after the stuck one are removed too"
    );
    assert_eq!(store.wal_segments(), 2);

    std::fs::remove_dir_all(stuck).unwrap();
    std::fs::write(stuck, b"").unwrap();
    append(&store, vec![span(9, 1, "api", T0)]).await;
    store.flush().await.unwrap();
    assert_eq!(
        wal_segments(dir.path()).len(),
        1,
        "the next checkpoint removes what the last one could not"
    );
    assert_eq!(store.wal_segments(), 1);
}

#[tokio::test]
async fn a_batch_larger_than_the_memtable_is_refused_not_retried_forever() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(
        dir.path(),
        StoreConfig {
            memtable_max_bytes: 64 << 10,
            flush_bytes: 32 << 10,
            ..config()
        },
    );
    let spans: Vec<_> = (0..2000).map(|i| span(i, 1, "api", T0)).collect();
    let err = store
        .append(&spyglass_store::Records::Spans(spans))
        .await
        .expect_err("too large for the memtable");
    assert_eq!(err.kind(), spyglass_store::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("larger than the limit"), "{err}");
    assert_eq!(store.memtable_bytes(), 0);
}

#[tokio::test]
async fn a_compaction_merges_its_inputs_in_order_as_it_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(
        dir.path(),
        StoreConfig {
            compaction_min_parts: 2,
            ..config()
        },
    );
    // Five parts of one hour whose traces interleave: each trace has a span in every part,
    // the later parts' spans starting earlier.
    let mut all = Vec::new();
    for part in 0..5u64 {
        let spans: Vec<_> = (0..3_000u64)
            .map(|t| span(t, part + 1, "api", T0 + (5 - part) * 1_000_000 + t))
            .collect();
        append(&store, spans.clone()).await;
        all.extend(spans);
        store.flush().await.unwrap();
    }
    assert_eq!(store.compact().await.unwrap(), 5);
    let snapshot = store.snapshot();
    let parts = snapshot.parts(Signal::Spans);
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].meta().rows, 15_000);
    let Records::Spans(rows) = snapshot.read_records(Signal::Spans).unwrap() else {
        unreachable!()
    };
    let order: Vec<_> = rows
        .iter()
        .map(|s| (s.trace_id, s.start_time_unix_nano))
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert!(
        order == sorted,
        "the merged part is sorted by trace, then start time"
    );
    assert_eq!(span_ids(&snapshot), expected_ids(&all));
    for t in [0, 1_500, 2_999] {
        assert_eq!(snapshot.find_trace(&trace_id(t)).unwrap().len(), 5);
    }
}

#[tokio::test]
async fn warming_a_reopened_store_opens_every_part_and_changes_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let spans = SpanGenerator::new(3, 1_795_737_600_000_000_000).spans(300);
    let trace = spans[0].trace_id;
    {
        let (store, _) = Store::open(dir.path(), StoreConfig::default()).unwrap();
        store.append(&Records::Spans(spans.clone())).await.unwrap();
        store.flush().await.unwrap();
        store.close().await.unwrap();
    }
    let (store, _) = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let before = store.snapshot().find_trace(&trace).unwrap();
    store.warm_caches().unwrap();
    let after = store.snapshot().find_trace(&trace).unwrap();
    assert_eq!(before, after);
    assert_eq!(
        after.len(),
        spans.iter().filter(|s| s.trace_id == trace).count()
    );
}

/// A compaction merges without the lock flushes take: flushes made while it runs keep their
/// parts, ids stay unique, every row is read once, and the manifest reopens the same. Whatever
/// the interleaving, these hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushes_go_on_while_a_compaction_merges() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        compaction_min_parts: 4,
        ..config()
    };
    let store = open_with(dir.path(), config.clone());
    let mut all = Vec::new();
    let mut generator = SpanGenerator::new(3, T0 + 5 * HOUR);
    for _ in 0..8 {
        flushed(&store, generator.spans(3_000), &mut all).await;
    }
    let compaction = tokio::spawn({
        let store = store.clone();
        async move { store.compact().await.unwrap() }
    });
    // Flushes of rows an hour later (not compacted with the others) while it runs.
    let mut later = SpanGenerator::new(4, T0 + 7 * HOUR);
    for _ in 0..3 {
        flushed(&store, later.spans(500), &mut all).await;
    }
    assert_eq!(compaction.await.unwrap(), 8, "the eight small parts merge");
    let snapshot = store.snapshot();
    let parts = snapshot.parts(Signal::Spans);
    let ids: std::collections::HashSet<u64> = parts.iter().map(|p| p.meta().id).collect();
    assert_eq!(ids.len(), parts.len(), "part ids are unique");
    assert_eq!(
        parts.len(),
        1 + 3,
        "the merged part and the three flushed meanwhile"
    );
    assert_eq!(span_ids(&snapshot), expected_ids(&all), "every row, once");
    drop((snapshot, store));
    let reopened = open_with(dir.path(), config);
    assert_eq!(span_ids(&reopened.snapshot()), expected_ids(&all));
    assert_eq!(reopened.snapshot().parts(Signal::Spans).len(), 4);
}

/// Appends `spans` (kept in `all`) and flushes them into a part of their own.
async fn flushed(
    store: &Store,
    spans: Vec<spyglass_store::model::Span>,
    all: &mut Vec<spyglass_store::model::Span>,
) {
    all.extend(spans.iter().cloned());
    store.append(&Records::Spans(spans)).await.unwrap();
    store.flush().await.unwrap();
}

/// A compaction takes its working set from the memory budget first: while queries and
/// requests hold what the standing shares leave, it merges nothing, and the next round does.
#[tokio::test]
async fn a_compaction_waits_while_the_memory_budget_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(
        dir.path(),
        StoreConfig {
            compaction_min_parts: 2,
            ..config()
        },
    );
    let mut all = Vec::new();
    for part in 0..3u64 {
        let spans = (0..100).map(|t| span(t, part + 1, "api", T0 + t)).collect();
        flushed(&store, spans, &mut all).await;
    }
    let memory = store.memory().clone();
    let room = memory.dynamic_bytes();
    let queries = memory.try_reserve(Share::Queries, room / 2).unwrap();
    let requests = memory.try_reserve(Share::Requests, room / 2).unwrap();
    assert_eq!(store.compact().await.unwrap(), 0, "no room for a merge");
    assert_eq!(store.snapshot().parts(Signal::Spans).len(), 3);
    assert_eq!(memory.refused(Share::Compaction), 1);
    drop(queries);
    assert_eq!(store.compact().await.unwrap(), 3);
    assert_eq!(store.snapshot().parts(Signal::Spans).len(), 1);
    assert_eq!(span_ids(&store.snapshot()), expected_ids(&all));
    assert_eq!(memory.reserved_by(Share::Compaction), 0, "given back");
    assert!(memory.reserved() <= memory.total());
    drop(requests);
}
