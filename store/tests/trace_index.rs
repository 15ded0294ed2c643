//! The trace index: a trace is found by id in any part whatever its time, and search finds
//! traces by service, operation, attribute, error, duration, text and time.

mod common;

use common::*;
use spyglass_store::model::{AttrValue, Attributes, KeyValue, SpanEvent};
use spyglass_store::{Signal, TraceQuery};

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
        let mut ids: Vec<u64> = snapshot
            .search_traces(&q, 100)
            .unwrap()
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

    let hits = snapshot.search_traces(&q(), 2).unwrap();
    assert_eq!(hits.len(), 2, "limit");
    assert!(
        hits[0].start_time_unix_nano >= hits[1].start_time_unix_nano,
        "newest first"
    );
    let one = snapshot
        .search_traces(
            &TraceQuery {
                service: Some("checkout".into()),
                operation: Some("POST /cart".into()),
                ..q()
            },
            10,
        )
        .unwrap();
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
    let hits = snapshot
        .search_traces(&TraceQuery::default(), usize::MAX)
        .unwrap();
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
