//! Newest-first trace search stops reading parts early: every page, followed by its cursor,
//! must be exactly what a full scan of every span says, over parts and the memtable, with
//! traces that start at the same time and traces whose spans sit in several parts (some of
//! them starting in an older part than the one that holds their newest spans).

mod common;

use std::collections::{BTreeMap, HashSet};

use common::{MS, T0};
use spyglass_query::{QueryConfig, QueryEngine, TraceSearch};
use spyglass_store::model::{Span, StatusCode, TraceId};
use spyglass_store::{Records, Store, StoreConfig};

/// What a full scan says `search` finds: the traces with one span meeting every condition,
/// by start (the earliest span of the whole trace), newest first, ties by trace id (the
/// highest first, as the cursor orders them).
fn full_scan(spans: &[Span], search: &TraceSearch) -> Vec<TraceId> {
    let mut starts: BTreeMap<TraceId, u64> = BTreeMap::new();
    let mut matching: HashSet<TraceId> = HashSet::new();
    for span in spans {
        let start = starts.entry(span.trace_id).or_insert(u64::MAX);
        *start = (*start).min(span.start_time_unix_nano);
        let duration = span.end_time_unix_nano - span.start_time_unix_nano;
        let attribute = |key: &str| {
            span.attributes
                .iter()
                .chain(span.resource.attributes.iter())
                .find(|kv| kv.key == key)
                .map(|kv| kv.value.display().into_owned())
        };
        let meets = search
            .service
            .as_ref()
            .is_none_or(|s| span.service_name() == s)
            && search
                .attributes
                .iter()
                .all(|(k, v)| attribute(k).as_deref() == Some(v.as_str()))
            && search.min_duration_nano.is_none_or(|d| duration >= d)
            && (!search.errors_only || span.status_code == StatusCode::Error)
            && search
                .start_unix_nano
                .is_none_or(|s| span.start_time_unix_nano >= s)
            && search
                .end_unix_nano
                .is_none_or(|e| span.start_time_unix_nano <= e);
        if meets {
            matching.insert(span.trace_id);
        }
    }
    let mut found: Vec<(u64, TraceId)> = matching.into_iter().map(|t| (starts[&t], t)).collect();
    found.sort_by(|a, b| b.cmp(a));
    found.into_iter().map(|(_, t)| t).collect()
}

/// Every page of `search` with `limit`, followed by its cursor.
async fn paged(engine: &QueryEngine, search: &TraceSearch, limit: usize) -> Vec<TraceId> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = engine
            .search(TraceSearch {
                limit,
                cursor,
                ..search.clone()
            })
            .await
            .unwrap();
        assert!(page.traces.len() <= limit);
        out.extend(page.traces.iter().map(|t| t.trace_id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
        assert!(out.len() < 100_000, "pages do not end");
    }
}

#[tokio::test]
async fn newest_pages_are_exactly_what_a_full_scan_finds() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let mut generator = spyglass_store::synth::SpanGenerator::new(11, T0).with_common_values();
    // Six flushes of 60 traces each, then 30 traces left in the memtable.
    let mut rounds: Vec<Vec<Vec<Span>>> = (0..7)
        .map(|r| {
            (0..if r < 6 { 60 } else { 30 })
                .map(|_| generator.trace())
                .collect()
        })
        .collect();
    for (r, round) in rounds.iter_mut().enumerate() {
        for (k, trace) in round.iter_mut().enumerate() {
            // Ties: every fifth trace starts when the trace before it did.
            if k % 5 == 4 {
                let shift = trace[0].start_time_unix_nano - (T0 + (r * 60 + k) as u64 * MS);
                for span in trace.iter_mut() {
                    span.start_time_unix_nano -= shift;
                    span.end_time_unix_nano -= shift;
                }
            }
        }
    }
    for r in 1..rounds.len() {
        for k in (0..rounds[r].len()).step_by(7) {
            // A trace whose earliest span went out with the round before: it is older than
            // its start in the newer part says.
            let first = rounds[r][k].remove(0);
            rounds[r - 1].push(vec![first]);
            // And one whose last span comes a round late.
            let last = rounds[r - 1][k + 1].pop().unwrap();
            rounds[r].push(vec![last]);
        }
    }
    let last_round = rounds.len() - 1;
    let mut all: Vec<Span> = Vec::new();
    for (r, traces) in rounds.into_iter().enumerate() {
        let spans: Vec<Span> = traces.into_iter().flatten().collect();
        all.extend(spans.iter().cloned());
        store.append(&Records::Spans(spans)).await.unwrap();
        if r < last_round {
            store.flush().await.unwrap();
        }
    }
    assert_eq!(
        store.snapshot().parts(spyglass_store::Signal::Spans).len(),
        6
    );
    let engine = QueryEngine::new(store, QueryConfig::default());

    let window = (T0 + 100 * MS, T0 + 250 * MS);
    let searches = [
        TraceSearch::default(),
        TraceSearch {
            service: Some("checkout".into()),
            ..Default::default()
        },
        TraceSearch {
            service: Some("cart".into()),
            attributes: vec![("shop.tenant".into(), "tenant-2".into())],
            min_duration_nano: Some(2 * MS),
            ..Default::default()
        },
        TraceSearch {
            errors_only: true,
            ..Default::default()
        },
        TraceSearch {
            service: Some("checkout".into()),
            start_unix_nano: Some(window.0),
            end_unix_nano: Some(window.1),
            ..Default::default()
        },
    ];
    for search in &searches {
        let want = full_scan(&all, search);
        assert!(want.len() >= 5, "{search:?} finds too little to test");
        for limit in [1, 7, 20, 1000] {
            let got = paged(&engine, search, limit).await;
            assert_eq!(got.len(), want.len(), "{search:?} limit {limit}");
            if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
                panic!(
                    "{search:?} limit {limit}: pages differ at {i} of {}: got {:?}, want {:?}",
                    got.len(),
                    &got[i.saturating_sub(1)..(i + 2).min(got.len())],
                    &want[i.saturating_sub(1)..(i + 2).min(want.len())]
                );
            }
        }
    }
}

/// The sample beside a page: about how many traces match over the whole range, and that many
/// of their (start, duration, error) points at most, each a matching trace's. Here no trace is
/// split between parts, so "about" is exact.
#[tokio::test]
async fn the_sample_counts_every_match_and_draws_from_them() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let mut generator = spyglass_store::synth::SpanGenerator::new(5, T0).with_common_values();
    let mut all: Vec<Span> = Vec::new();
    for round in 0..4 {
        let spans: Vec<Span> = (0..50).flat_map(|_| generator.trace()).collect();
        all.extend(spans.iter().cloned());
        store.append(&Records::Spans(spans)).await.unwrap();
        if round < 3 {
            store.flush().await.unwrap();
        }
    }
    let engine = QueryEngine::new(store, QueryConfig::default());
    let search = TraceSearch {
        service: Some("checkout".into()),
        ..Default::default()
    };
    let want = full_scan(&all, &search);
    // Each matching trace as the sample shows it.
    let mut points = std::collections::HashSet::new();
    for id in &want {
        let spans: Vec<&Span> = all.iter().filter(|s| s.trace_id == *id).collect();
        let start = spans.iter().map(|s| s.start_time_unix_nano).min().unwrap();
        let end = spans.iter().map(|s| s.end_time_unix_nano).max().unwrap();
        let error = spans.iter().any(|s| s.status_code == StatusCode::Error);
        points.insert((start, end - start, error));
    }
    let sampled = |n: usize| {
        let engine = &engine;
        let search = search.clone();
        async move {
            let page = engine
                .search(TraceSearch {
                    limit: 5,
                    sample: n,
                    ..search
                })
                .await
                .unwrap();
            page.sample.expect("a sample was asked for")
        }
    };
    let small = sampled(40).await;
    assert_eq!(small.matched, want.len() as u64);
    assert_eq!(small.points.len(), 40.min(want.len()));
    for p in &small.points {
        assert!(
            points.contains(&(p.start_time_unix_nano, p.duration_nano, p.error)),
            "{p:?} is a matching trace"
        );
    }
    assert_eq!(
        sampled(40).await,
        small,
        "the same data gives the same sample"
    );
    let whole = sampled(10_000).await;
    let got: std::collections::HashSet<_> = whole
        .points
        .iter()
        .map(|p| (p.start_time_unix_nano, p.duration_nano, p.error))
        .collect();
    assert_eq!(
        got, points,
        "a sample larger than the matches is all of them"
    );
    let page = engine
        .search(TraceSearch { limit: 5, ..search })
        .await
        .unwrap();
    assert!(page.sample.is_none(), "no sample unless asked for");
}
