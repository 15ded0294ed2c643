//! Trace lookup and trace search over parts and memtable.

mod common;

use common::{Layout, MS, T0, span_id, trace_id};
use spyglass_query::{QueryConfig, QueryEngine, TraceSearch, TraceSummary};
use spyglass_store::model::TraceId;

#[tokio::test]
async fn a_scattered_trace_comes_back_once_complete_and_as_a_tree() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::scattered_trace_store(dir.path()).await;
    assert_eq!(
        store.snapshot().parts(spyglass_store::Signal::Spans).len(),
        2
    );

    let engine = QueryEngine::new(store, QueryConfig::default());
    let trace = engine.trace(trace_id(7)).await.unwrap();
    let shape: Vec<(u8, u32)> = trace
        .spans
        .iter()
        .map(|s| (s.span.span_id.0[1], s.depth))
        .collect();
    assert_eq!(shape, vec![(1, 0), (2, 1), (3, 2), (4, 3), (5, 1), (6, 2)]);
    assert_eq!(trace.total_spans, 6);
    assert!(!trace.truncated);
    assert!(trace.spans.iter().all(|s| !s.parent_missing));
    assert_eq!(trace.spans[5].span.span_id, span_id(7, 6));

    let missing = engine.trace(TraceId([9; 16])).await.unwrap_err();
    assert_eq!(missing.kind(), spyglass_query::ErrorKind::NotFound);
}

async fn found(engine: &QueryEngine, search: TraceSearch) -> Vec<u8> {
    let page = engine
        .search(TraceSearch {
            limit: 20,
            ..search
        })
        .await
        .unwrap();
    page.traces.iter().map(|t| t.trace_id.0[0]).collect()
}

fn attr(k: &str, v: &str) -> Vec<(String, String)> {
    vec![(k.to_string(), v.to_string())]
}

#[tokio::test]
async fn each_search_filter_alone_and_combined_in_every_layout() {
    for layout in [Layout::Memtable, Layout::Split, Layout::Parts] {
        let dir = tempfile::tempdir().unwrap();
        let engine = common::engine(dir.path(), layout).await;
        let q = TraceSearch::default;
        let ctx = format!("{layout:?}");

        assert_eq!(
            found(&engine, q()).await,
            vec![3, 2, 1],
            "{ctx}: all, newest first"
        );
        let service = |s: &str| Some(s.to_string());
        assert_eq!(
            found(
                &engine,
                TraceSearch {
                    service: service("payments"),
                    ..q()
                }
            )
            .await,
            vec![2, 1],
            "{ctx}"
        );
        assert_eq!(
            found(
                &engine,
                TraceSearch {
                    operation: service("GetCart"),
                    ..q()
                }
            )
            .await,
            vec![3],
            "{ctx}"
        );
        assert_eq!(
            found(
                &engine,
                TraceSearch {
                    attributes: attr("http.route", "/cart"),
                    ..q()
                }
            )
            .await,
            vec![3],
            "{ctx}"
        );
        assert_eq!(
            found(
                &engine,
                TraceSearch {
                    attributes: attr("cart.items", "3"),
                    ..q()
                }
            )
            .await,
            vec![3],
            "{ctx}: typed value as text"
        );
        assert_eq!(
            found(
                &engine,
                TraceSearch {
                    attributes: attr("deployment.environment.name", "test"),
                    ..q()
                }
            )
            .await,
            vec![3, 2, 1],
            "{ctx}: resource attribute"
        );
        assert_eq!(
            found(
                &engine,
                TraceSearch {
                    min_duration_nano: Some(250 * MS),
                    ..q()
                }
            )
            .await,
            vec![2],
            "{ctx}"
        );
        assert_eq!(
            found(
                &engine,
                TraceSearch {
                    max_duration_nano: Some(10 * MS),
                    ..q()
                }
            )
            .await,
            vec![3],
            "{ctx}"
        );
        assert_eq!(
            found(
                &engine,
                TraceSearch {
                    errors_only: true,
                    ..q()
                }
            )
            .await,
            vec![2],
            "{ctx}"
        );
        assert_eq!(
            found(
                &engine,
                TraceSearch {
                    text: Some("Declined".into()),
                    ..q()
                }
            )
            .await,
            vec![2],
            "{ctx}: text, any case"
        );
        assert_eq!(
            found(
                &engine,
                TraceSearch {
                    text: Some("declined nowhere".into()),
                    ..q()
                }
            )
            .await,
            Vec::<u8>::new(),
            "{ctx}: every word"
        );
        assert_eq!(
            found(
                &engine,
                TraceSearch {
                    start_unix_nano: Some(T0 + 1000 * MS),
                    end_unix_nano: Some(T0 + 1500 * MS),
                    ..q()
                }
            )
            .await,
            vec![2],
            "{ctx}: time range"
        );
        // Combined: all on one span.
        let combined = TraceSearch {
            service: service("payments"),
            attributes: attr("http.route", "/charge"),
            min_duration_nano: Some(50 * MS),
            ..q()
        };
        assert_eq!(found(&engine, combined.clone()).await, vec![2, 1], "{ctx}");
        assert_eq!(
            found(
                &engine,
                TraceSearch {
                    errors_only: true,
                    ..combined.clone()
                }
            )
            .await,
            vec![2],
            "{ctx}"
        );
        assert_eq!(
            found(
                &engine,
                TraceSearch {
                    min_duration_nano: Some(100 * MS),
                    ..combined
                }
            )
            .await,
            vec![2],
            "{ctx}"
        );
        // Both conditions hold in trace 1, but on different spans: not a match.
        assert_eq!(
            found(
                &engine,
                TraceSearch {
                    service: service("frontend"),
                    attributes: attr("db.system", "postgresql"),
                    ..q()
                }
            )
            .await,
            Vec::<u8>::new(),
            "{ctx}: conditions on different spans"
        );
    }
}

#[tokio::test]
async fn pages_follow_the_cursor_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::engine(dir.path(), Layout::Split).await;
    let mut cursor = None;
    let mut seen = Vec::new();
    loop {
        let page = engine
            .search(TraceSearch {
                limit: 1,
                cursor,
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(page.traces.iter().map(|t| t.trace_id.0[0]));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(seen.len() <= 3, "pagination does not end");
    }
    assert_eq!(seen, vec![3, 2, 1]);

    let err = engine
        .search(TraceSearch {
            limit: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
}

/// A result list's summary (read from a few columns) says what the whole trace says.
#[tokio::test]
async fn search_summaries_agree_with_the_whole_trace() {
    let dir = tempfile::tempdir().unwrap();
    let scattered = QueryEngine::new(
        common::scattered_trace_store(dir.path()).await,
        QueryConfig::default(),
    );
    let mut engines = vec![("scattered".to_string(), scattered)];
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    for (layout, dir) in [Layout::Memtable, Layout::Split, Layout::Parts]
        .into_iter()
        .zip(&dirs)
    {
        engines.push((
            format!("{layout:?}"),
            common::engine(dir.path(), layout).await,
        ));
    }
    for (ctx, engine) in engines {
        let page = engine
            .search(TraceSearch {
                limit: 20,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(!page.traces.is_empty(), "{ctx}");
        for summary in page.traces {
            let trace = engine.trace(summary.trace_id).await.unwrap();
            assert_eq!(summary, TraceSummary::of(&trace), "{ctx}");
        }
    }
}

/// 95 ms and 100 ms fall in one duration bucket of the index (92.3–100.7 ms): a bound between
/// them is settled on the spans themselves, in every layout, and a whole trace the index
/// proves is summarised as its rows would be.
#[tokio::test]
async fn a_duration_bound_inside_an_index_bucket_is_checked_on_the_span() {
    use spyglass_store::model::SpanKind;
    let spec = |trace, duration_ms| common::SpanSpec {
        trace,
        id: 1,
        parent: None,
        service: "checkout",
        name: "POST /checkout",
        kind: SpanKind::Server,
        start_ms: u64::from(trace),
        duration_ms,
        error: None,
        attributes: common::attrs(&[("http.route", common::s("/checkout"))]),
    };
    for flush in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) =
            spyglass_store::Store::open(dir.path(), spyglass_store::StoreConfig::default())
                .unwrap();
        let spans = vec![
            common::span(spec(1, 95)),
            common::span(spec(2, 100)),
            common::span(spec(3, 400)),
        ];
        store
            .append(&spyglass_store::Records::Spans(spans))
            .await
            .unwrap();
        if flush {
            store.flush().await.unwrap();
        }
        let engine = QueryEngine::new(store, QueryConfig::default());
        let search = |min_ms: u64| TraceSearch {
            service: Some("checkout".into()),
            attributes: attr("http.route", "/checkout"),
            min_duration_nano: Some(min_ms * MS),
            ..TraceSearch::default()
        };
        assert_eq!(
            found(&engine, search(98)).await,
            vec![3, 2],
            "flushed: {flush}"
        );
        assert_eq!(
            found(&engine, search(101)).await,
            vec![3],
            "flushed: {flush}"
        );
        let page = engine
            .search(TraceSearch {
                limit: 5,
                ..search(200)
            })
            .await
            .unwrap();
        let trace = engine.trace(page.traces[0].trace_id).await.unwrap();
        assert_eq!(page.traces, vec![TraceSummary::of(&trace)]);
    }
}

#[tokio::test]
async fn a_huge_trace_is_cut_while_it_is_read() {
    use spyglass_store::model::Span;
    use spyglass_store::{Records, Store, StoreConfig};
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let base = common::span(common::SpanSpec {
        trace: 9,
        id: 1,
        parent: None,
        service: "batch",
        name: "step",
        kind: spyglass_store::model::SpanKind::Internal,
        start_ms: 0,
        duration_ms: 1,
        error: None,
        attributes: Default::default(),
    });
    // 3,000 spans of one trace: two parts and the memtable.
    let spans: Vec<Span> = (0..3_000u32)
        .map(|i| {
            let mut s = base.clone();
            s.span_id.0[4..].copy_from_slice(&(i + 1).to_be_bytes());
            s.start_time_unix_nano += u64::from(i) * MS;
            s.end_time_unix_nano += u64::from(i) * MS;
            s
        })
        .collect();
    for chunk in spans.chunks(1_000) {
        store.append(&Records::Spans(chunk.to_vec())).await.unwrap();
        if chunk[0].start_time_unix_nano < T0 + 2_000 * MS {
            store.flush().await.unwrap();
        }
    }
    let config = QueryConfig {
        trace_max_spans: 100,
        ..QueryConfig::default()
    };
    let engine = QueryEngine::new(store.clone(), config);
    for trace in [
        engine.trace(trace_id(9)).await.unwrap(),
        engine.trace_tree(trace_id(9)).await.unwrap(),
    ] {
        assert!(trace.truncated);
        assert_eq!(trace.spans.len(), 100);
        assert!(
            trace.total_spans <= 200,
            "read {} spans for a view of 100",
            trace.total_spans
        );
        assert_eq!(
            trace.spans[0].span.start_time_unix_nano, T0,
            "the earliest spans are kept"
        );
    }
    let whole = QueryEngine::new(store, QueryConfig::default());
    let trace = whole.trace(trace_id(9)).await.unwrap();
    assert_eq!((trace.total_spans, trace.truncated), (3_000, false));
}
