//! The trace index: a trace is found by id in any part whatever its time, and search finds
//! traces by service, operation, attribute, error, duration, text and time.

mod common;

use common::*;
use spyglass_store::model::{AttrValue, Attributes, KeyValue, SpanEvent};
use spyglass_store::{Signal, TraceHit, TraceQuery};

#[tokio::test]
async fn a_trace_is_assembled_from_parts_in_different_hours_and_the_memtable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // One trace spread over two hours, two flushes and the memtable, with a re-sent span.
    append(
        &store,
        vec![span(7, 1, "web", T0 + HOUR - 10), span(8, 1, "web", T0)],
    )
    .await;
    store.flush().await.unwrap();
    append(
        &store,
        vec![
            span(7, 2, "db", T0 + HOUR + 5),
            span(7, 1, "web", T0 + HOUR - 10),
        ],
    )
    .await;
    store.flush().await.unwrap();
    append(&store, vec![span(7, 3, "cache", T0 + HOUR + 6)]).await;

    let snapshot = store.snapshot();
    assert_eq!(
        snapshot.parts(Signal::Spans).len(),
        3,
        "two hours in the second flush"
    );
    assert_eq!(
        snapshot.parts_with_trace(&trace_id(7)).unwrap().len(),
        3,
        "both parts of the second flush and the first"
    );
    assert_eq!(snapshot.parts_with_trace(&trace_id(8)).unwrap().len(), 1);
    let trace = snapshot.find_trace(&trace_id(7)).unwrap();
    let names: Vec<_> = trace
        .iter()
        .map(|s| (s.service_name().to_owned(), s.span_id))
        .collect();
    let expected: Vec<_> = [(1, "web"), (2, "db"), (3, "cache")]
        .iter()
        .map(|(n, svc)| (svc.to_string(), span(7, *n, svc, 0).span_id))
        .collect();
    assert_eq!(names, expected, "each span once, in start order");
    assert!(snapshot.find_trace(&trace_id(12345)).unwrap().is_empty());
}

#[tokio::test]
async fn search_filters_alone_and_combined() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut checkout = span(1, 1, "checkout", T0);
    checkout.name = "POST /cart".into();
    checkout.attributes = Attributes::new(vec![
        KeyValue {
            key: "http.route".into(),
            value: AttrValue::Str("/cart".into()),
        },
        KeyValue {
            key: "http.response.status_code".into(),
            value: AttrValue::Int(500),
        },
    ]);
    checkout.end_time_unix_nano = T0 + 900_000_000;
    checkout.status_code = spyglass_store::model::StatusCode::Error;
    checkout.events.push(SpanEvent {
        name: "exception".into(),
        attributes: Attributes::new(vec![KeyValue {
            key: "exception.message".into(),
            value: AttrValue::Str("card declined by issuer".into()),
        }]),
        ..SpanEvent::default()
    });
    let slow_ok = {
        let mut s = span(2, 1, "checkout", T0 + HOUR);
        s.end_time_unix_nano = s.start_time_unix_nano + 2_000_000_000;
        s
    };
    let fast_error = error_span(3, 1, "payments", T0 + 2 * HOUR, "upstream timeout");
    append(
        &store,
        vec![
            checkout,
            span(1, 2, "payments", T0 + 1),
            slow_ok,
            fast_error,
        ],
    )
    .await;
    store.flush().await.unwrap();
    let snapshot = store.snapshot();

    let found = |q: TraceQuery| -> Vec<u64> {
        let mut ids: Vec<u64> = all_hits(&snapshot, &q)
            .iter()
            .map(|h| u64::from_be_bytes(h.trace_id.0[8..].try_into().unwrap()))
            .collect();
        ids.sort();
        ids
    };
    let q = TraceQuery::default;
    assert_eq!(found(q()), [1, 2, 3]);
    assert_eq!(
        found(TraceQuery {
            service: Some("checkout".into()),
            ..q()
        }),
        [1, 2]
    );
    assert_eq!(
        found(TraceQuery {
            service: Some("checkout".into()),
            operation: Some("POST /cart".into()),
            ..q()
        }),
        [1]
    );
    assert_eq!(
        found(TraceQuery {
            operation: Some("op-1".into()),
            ..q()
        }),
        [2, 3]
    );
    assert_eq!(
        found(TraceQuery {
            attributes: vec![("http.route".into(), "/cart".into())],
            ..q()
        }),
        [1]
    );
    assert_eq!(
        found(TraceQuery {
            attributes: vec![("http.response.status_code".into(), "500".into())],
            ..q()
        }),
        [1]
    );
    assert_eq!(
        found(TraceQuery {
            attributes: vec![("service.name".into(), "payments".into())],
            ..q()
        }),
        [1, 3],
        "resource attributes are searchable"
    );
    assert_eq!(
        found(TraceQuery {
            errors_only: true,
            ..q()
        }),
        [1, 3]
    );
    assert_eq!(
        found(TraceQuery {
            errors_only: true,
            service: Some("payments".into()),
            ..q()
        }),
        [3],
        "the error must be in that service"
    );
    assert_eq!(
        found(TraceQuery {
            min_duration_nano: Some(1_000_000_000),
            ..q()
        }),
        [2]
    );
    assert_eq!(
        found(TraceQuery {
            max_duration_nano: Some(5_000_000),
            ..q()
        }),
        [1, 3]
    );
    assert_eq!(
        found(TraceQuery {
            text: Some("Card Declined".into()),
            ..q()
        }),
        [1],
        "exception messages, any case"
    );
    assert_eq!(
        found(TraceQuery {
            text: Some("timeout".into()),
            ..q()
        }),
        [3],
        "status messages"
    );
    assert_eq!(
        found(TraceQuery {
            start_unix_nano: Some(T0 + HOUR),
            end_unix_nano: Some(T0 + HOUR + 10),
            ..q()
        }),
        [2]
    );
    assert_eq!(
        found(TraceQuery {
            service: Some("checkout".into()),
            attributes: vec![("http.route".into(), "/cart".into())],
            min_duration_nano: Some(500_000_000),
            errors_only: true,
            ..q()
        }),
        [1]
    );
    assert!(
        found(TraceQuery {
            service: Some("checkout".into()),
            text: Some("timeout".into()),
            ..q()
        })
        .is_empty()
    );

    let hits: Vec<TraceHit> = all_hits(&snapshot, &q()).into_iter().take(2).collect();
    assert_eq!(hits.len(), 2, "limit");
    assert!(
        hits[0].start_time_unix_nano >= hits[1].start_time_unix_nano,
        "newest first"
    );
    let one = all_hits(
        &snapshot,
        &TraceQuery {
            service: Some("checkout".into()),
            operation: Some("POST /cart".into()),
            ..q()
        },
    );
    assert_eq!((one[0].span_count, one[0].error_count), (2, 1));
}

#[tokio::test]
async fn a_large_flush_indexes_every_trace_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // More rows than one sorted chunk (32 Ki), so chunk boundaries fall between traces.
    let spans = spyglass_store::synth::SpanGenerator::new(3, T0).spans(40_000);
    for batch in spans.chunks(2_000) {
        append(&store, batch.to_vec()).await;
    }
    store.flush().await.unwrap();
    let snapshot = store.snapshot();
    let mut traces: std::collections::HashMap<_, usize> = std::collections::HashMap::new();
    for s in &spans {
        *traces.entry(s.trace_id).or_default() += 1;
    }
    let hits = all_hits(&snapshot, &TraceQuery::default());
    assert_eq!(hits.len(), traces.len(), "one hit per trace");
    for hit in &hits {
        assert_eq!(
            hit.span_count as usize, traces[&hit.trace_id],
            "a trace is never split between documents"
        );
    }
    let (id, count) = traces.iter().next().unwrap();
    assert_eq!(snapshot.find_trace(id).unwrap().len(), *count);
}

fn with_route(
    mut span: spyglass_store::model::Span,
    route: &str,
    millis_tenths: u64,
) -> spyglass_store::model::Span {
    span.attributes = Attributes::new(vec![KeyValue {
        key: "http.route".into(),
        value: AttrValue::Str(route.into()),
    }]);
    span.end_time_unix_nano = span.start_time_unix_nano + millis_tenths * 100_000;
    span
}

/// The index proves a match only when one span holds every condition exactly; a duration
/// bucket straddling the bound, a resource attribute or a trace crossing the time range's edge
/// only propose a candidate, and conditions met by different spans do not even do that.
#[tokio::test]
async fn hits_are_certain_only_when_the_index_proves_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(
        &store,
        vec![
            // 100.5 ms and 95 ms fall in the same duration bucket (92.3–100.7 ms).
            with_route(span(1, 1, "checkout", T0), "/cart", 1005),
            with_route(span(2, 1, "checkout", T0 + 10), "/cart", 950),
            // The route on one span, the long duration on another.
            with_route(span(3, 1, "checkout", T0 + 20), "/home", 4000),
            with_route(span(3, 2, "payments", T0 + 21), "/cart", 4000),
            // Well past the bound.
            with_route(span(4, 1, "checkout", T0 + 30), "/cart", 4000),
        ],
    )
    .await;
    store.flush().await.unwrap();
    let snapshot = store.snapshot();
    let hits = |q: TraceQuery| -> Vec<(u64, bool)> {
        let mut hits: Vec<(u64, bool)> = all_hits(&snapshot, &q)
            .iter()
            .map(|h| {
                let n = u64::from_be_bytes(h.trace_id.0[8..].try_into().unwrap());
                (n, h.certain)
            })
            .collect();
        hits.sort();
        hits
    };
    let q = || TraceQuery {
        service: Some("checkout".into()),
        attributes: vec![("http.route".into(), "/cart".into())],
        ..TraceQuery::default()
    };
    assert_eq!(
        hits(TraceQuery {
            min_duration_nano: Some(100_000_000),
            ..q()
        }),
        [(1, false), (2, false), (4, true)],
        "the bucket holding 100 ms only proposes; trace 3 has no such span"
    );
    assert_eq!(
        hits(TraceQuery {
            min_duration_nano: Some(200_000_000),
            ..q()
        }),
        [(4, true)]
    );
    assert_eq!(hits(q()), [(1, true), (2, true), (4, true)]);
    assert_eq!(
        hits(TraceQuery {
            attributes: vec![("service.name".into(), "checkout".into())],
            ..q()
        }),
        [(1, false), (2, false), (3, false), (4, false)],
        "a resource attribute may belong to another span's resource"
    );
    assert_eq!(
        hits(TraceQuery {
            start_unix_nano: Some(T0 + 10),
            end_unix_nano: Some(T0 + HOUR),
            ..q()
        }),
        [(1, false), (2, true), (4, true)],
        "trace 1 starts before the range"
    );
}

/// A trace described whole by one part's index gets its summary from there; one spread over
/// parts, or with spans still in the memtable, is left for its rows to be read.
#[tokio::test]
async fn indexed_summaries_describe_whole_traces_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut root = span(1, 1, "web", T0);
    root.name = "GET /".into();
    let mut child = error_span(1, 2, "db", T0 + 1, "boom");
    child.parent_span_id = Some(root.span_id);
    append(
        &store,
        vec![
            child.clone(),
            root.clone(),
            span(1, 3, "db", T0 + 2),
            child, // a retried export
            span(2, 1, "web", T0),
            span(3, 1, "web", T0),
        ],
    )
    .await;
    store.flush().await.unwrap();
    append(&store, vec![span(2, 2, "db", T0 + 5)]).await;
    store.flush().await.unwrap();
    append(&store, vec![span(3, 2, "db", T0 + 5)]).await;

    let snapshot = store.snapshot();
    let digests = snapshot
        .indexed_summaries(&[trace_id(1), trace_id(2), trace_id(3)])
        .unwrap();
    assert_eq!(
        digests.len(),
        1,
        "traces 2 and 3 are not whole in one index"
    );
    let digest = &digests[&trace_id(1)];
    assert_eq!(
        (digest.root_service.as_str(), digest.root_name.as_str()),
        ("web", "GET /")
    );
    assert_eq!(
        (digest.span_count, digest.error_count),
        (3, 1),
        "the retried span once"
    );
    assert_eq!(
        digest.services,
        [("db".to_string(), 2), ("web".to_string(), 1)]
    );
    assert_eq!(digest.start_time_unix_nano, T0);
}

/// An index written in an earlier layout, or damaged, is rebuilt from its part when first
/// opened, and the part's traces are found as before.
#[tokio::test]
async fn an_index_in_an_earlier_layout_or_damaged_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        append(
            &store,
            vec![span(1, 1, "web", T0), span(1, 2, "db", T0 + 1)],
        )
        .await;
        store.flush().await.unwrap();
    }
    let index_dir = {
        let store = open(dir.path());
        let snapshot = store.snapshot();
        snapshot.parts(Signal::Spans)[0].index_path().unwrap()
    };
    // Replace it with an index of another schema, as an older Spyglass wrote.
    std::fs::remove_dir_all(&index_dir).unwrap();
    std::fs::create_dir_all(&index_dir).unwrap();
    let mut schema = tantivy::schema::Schema::builder();
    let service = schema.add_text_field("service", tantivy::schema::STRING);
    let old = tantivy::Index::create_in_dir(&index_dir, schema.build()).unwrap();
    let mut writer = old.writer_with_num_threads(1, 15_000_000).unwrap();
    writer
        .add_document(tantivy::doc!(service => "web"))
        .unwrap();
    writer.commit().unwrap();
    drop(writer);

    let store = open(dir.path());
    let snapshot = store.snapshot();
    let hits = all_hits(
        &snapshot,
        &TraceQuery {
            service: Some("db".into()),
            ..TraceQuery::default()
        },
    );
    assert_eq!(hits.len(), 1);
    assert_eq!((hits[0].trace_id, hits[0].span_count), (trace_id(1), 2));
    assert_eq!(snapshot.parts_with_trace(&trace_id(1)).unwrap().len(), 1);
    assert!(!index_dir.with_extension("rebuild").exists());
    drop((snapshot, store));

    // Damaged: its metadata is garbage.
    std::fs::write(index_dir.join("meta.json"), b"{ not json").unwrap();
    let store = open(dir.path());
    let found = store.snapshot().find_trace(&trace_id(1)).unwrap();
    assert_eq!(found.len(), 2);
}

/// Every hit of `q`, in the order the parts hand them out (newest first).
fn all_hits(snapshot: &spyglass_store::Snapshot, q: &TraceQuery) -> Vec<TraceHit> {
    let mut hits = snapshot.trace_hits(q);
    let mut out = Vec::new();
    while let Some(hit) = hits.next_hit().unwrap() {
        out.push(hit);
    }
    assert!(
        out.windows(2)
            .all(|w| w[0].start_time_unix_nano >= w[1].start_time_unix_nano),
        "newest first"
    );
    out
}
