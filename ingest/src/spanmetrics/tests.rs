//! Exact counts and buckets of the generator.

use super::*;
use spyglass_store::model::{Resource, Span};

const MS: u64 = 1_000_000;

fn span(
    (trace, id, parent): (u8, u8, Option<u8>),
    service: &str,
    name: &str,
    kind: SpanKind,
    ms: u64,
    error: bool,
    attrs: Vec<KeyValue>,
) -> Span {
    Span {
        trace_id: TraceId([trace; 16]),
        span_id: SpanId([id; 8]),
        parent_span_id: parent.map(|p| SpanId([p; 8])),
        name: name.into(),
        kind,
        start_time_unix_nano: 1_000 * MS,
        end_time_unix_nano: 1_000 * MS + ms * MS,
        status_code: if error {
            StatusCode::Error
        } else {
            StatusCode::Unset
        },
        attributes: Attributes::new(attrs),
        resource: Arc::new(Resource {
            attributes: Attributes::new(vec![kv("service.name", service)]),
            ..Resource::default()
        }),
        ..Span::default()
    }
}

/// A → B → database, twice; the second time B fails and so does A's call to it.
fn traces() -> Vec<Span> {
    let mut spans = Vec::new();
    for (t, failing) in [(1u8, false), (2u8, true)] {
        spans.push(span(
            (t, 1, None),
            "a",
            "GET /a",
            SpanKind::Server,
            200,
            false,
            vec![],
        ));
        spans.push(span(
            (t, 2, Some(1)),
            "a",
            "call b",
            SpanKind::Client,
            150,
            failing,
            vec![kv("peer.service", "b")],
        ));
        spans.push(span(
            (t, 3, Some(2)),
            "b",
            "handle",
            SpanKind::Server,
            120,
            failing,
            vec![],
        ));
        spans.push(span(
            (t, 4, Some(3)),
            "b",
            "SELECT",
            SpanKind::Client,
            50,
            true,
            vec![kv("db.system.name", "postgresql")],
        ));
    }
    spans
}

fn find<'a>(
    points: &'a [MetricPoint],
    name: &str,
    service: &str,
    labels: &[(&str, &str)],
) -> &'a MetricPoint {
    points
        .iter()
        .find(|p| {
            p.metric_name == name
                && p.service_name() == service
                && labels
                    .iter()
                    .all(|(k, v)| p.attributes.get(k) == Some(&AttrValue::Str((*v).into())))
        })
        .unwrap_or_else(|| panic!("{name} {service} {labels:?} in {points:#?}"))
}

fn count(p: &MetricPoint) -> i64 {
    match p.value {
        PointValue::Number(NumberValue::Int(n)) => n,
        ref other => panic!("a counter: {other:?}"),
    }
}

fn buckets(p: &MetricPoint) -> (u64, Vec<u64>) {
    match &p.value {
        PointValue::Histogram {
            count,
            bucket_counts,
            ..
        } => (*count, bucket_counts.clone()),
        other => panic!("a histogram: {other:?}"),
    }
}

fn bucket(seconds: f64, n: u64) -> Vec<u64> {
    let mut b = vec![0; DURATION_BOUNDS.len() + 1];
    b[DURATION_BOUNDS.iter().position(|x| seconds <= *x).unwrap()] = n;
    b
}

#[test]
fn calls_errors_edges_and_buckets_are_exact() {
    let generator = SpanMetrics::new(Duration::from_secs(10), 1000, 0);
    let start = Instant::now();
    // Arrival order must not matter: servers before their clients for the second trace.
    let mut spans = traces();
    spans.swap(5, 6);
    generator.record(&spans, start);
    let points = generator.points(start + Duration::from_secs(11), 42);

    let calls = |service, name, kind, status| {
        count(find(
            &points,
            "spyglass.span.calls",
            service,
            &[
                ("span.name", name),
                ("span.kind", kind),
                ("status.code", status),
            ],
        ))
    };
    assert_eq!(calls("a", "GET /a", "server", "ok"), 2);
    assert_eq!(calls("a", "call b", "client", "ok"), 1);
    assert_eq!(calls("a", "call b", "client", "error"), 1);
    assert_eq!(calls("b", "handle", "server", "error"), 1);
    assert_eq!(calls("b", "SELECT", "client", "error"), 2);
    assert_eq!(
        count(find(
            &points,
            "spyglass.span.errors",
            "b",
            &[("span.name", "SELECT")]
        )),
        2
    );
    assert_eq!(
        buckets(find(
            &points,
            "spyglass.span.duration",
            "a",
            &[("span.name", "GET /a")]
        )),
        (2, bucket(0.2, 2))
    );

    let edge = |client, server| [("client", client), ("server", server)];
    let ab = edge("a", "b");
    assert_eq!(
        count(find(&points, "spyglass.service_graph.calls", "a", &ab)),
        2
    );
    assert_eq!(
        count(find(&points, "spyglass.service_graph.failures", "a", &ab)),
        1
    );
    assert_eq!(
        buckets(find(&points, "spyglass.service_graph.duration", "a", &ab)),
        (2, bucket(0.15, 2))
    );
    let db = [
        ("client", "b"),
        ("server", "postgresql"),
        ("connection_type", "database"),
    ];
    assert_eq!(
        count(find(&points, "spyglass.service_graph.calls", "b", &db)),
        2
    );
    assert_eq!(
        count(find(&points, "spyglass.service_graph.failures", "b", &db)),
        2
    );
    assert_eq!(
        buckets(find(&points, "spyglass.service_graph.duration", "b", &db)),
        (2, bucket(0.05, 2))
    );
    assert!(
        !points.iter().any(
            |p| p.attributes.get("server") == Some(&AttrValue::Str("b".into()))
                && p.service_name() == "b"
        ),
        "no self edge"
    );
    assert!(
        points
            .iter()
            .all(|p| p.time_unix_nano == 42 && p.temporality == Temporality::Cumulative)
    );
}

#[test]
fn an_unanswered_client_waits_before_becoming_a_virtual_node() {
    let generator = SpanMetrics::new(Duration::from_secs(10), 1000, 0);
    let start = Instant::now();
    let db_call = span(
        (1, 4, Some(3)),
        "b",
        "SELECT",
        SpanKind::Client,
        50,
        false,
        vec![kv("db.system", "mysql")],
    );
    generator.record(&[db_call], start);
    let early = generator.points(start + Duration::from_secs(1), 1);
    assert!(
        !early
            .iter()
            .any(|p| p.metric_name.starts_with("spyglass.service_graph")),
        "still waiting for a server span"
    );
    let late = generator.points(start + Duration::from_secs(11), 2);
    assert_eq!(
        count(find(
            &late,
            "spyglass.service_graph.calls",
            "b",
            &[("server", "mysql")]
        )),
        1
    );
}

#[test]
fn unanswered_clients_name_their_peer_by_the_first_attribute_present() {
    let generator = SpanMetrics::new(Duration::from_secs(1), 1000, 0);
    let start = Instant::now();
    let client = |id: u8, attributes| {
        span(
            (1, id, None),
            "a",
            "call",
            SpanKind::Client,
            5,
            false,
            attributes,
        )
    };
    generator.record(
        &[
            // peer.service before db.system before server.address.
            client(
                10,
                vec![
                    kv("server.address", "10.0.0.1"),
                    kv("db.system", "postgresql"),
                    kv("peer.service", "billing"),
                ],
            ),
            client(
                11,
                vec![
                    kv("server.address", "cache.internal"),
                    kv("messaging.system", "kafka"),
                ],
            ),
            // The old semantic-convention name of server.address.
            client(12, vec![kv("net.peer.name", "legacy-host")]),
            // No peer at all: no edge.
            client(13, vec![kv("http.route", "/x")]),
        ],
        start,
    );
    let points = generator.points(start + Duration::from_secs(2), 1);
    let edge = |server: &str, connection_type: &str| {
        count(find(
            &points,
            "spyglass.service_graph.calls",
            "a",
            &[("server", server), ("connection_type", connection_type)],
        ))
    };
    assert_eq!(edge("billing", "virtual_node"), 1);
    assert_eq!(edge("kafka", "messaging_system"), 1);
    assert_eq!(edge("legacy-host", "virtual_node"), 1);
    let edges = points
        .iter()
        .filter(|p| p.metric_name == "spyglass.service_graph.calls")
        .count();
    assert_eq!(edges, 3, "one edge per client with a peer");
}

#[test]
fn waiting_spans_are_bounded() {
    let generator = SpanMetrics::new(Duration::from_secs(60), 10, 0);
    let now = Instant::now();
    let clients: Vec<Span> = (1..=50)
        .map(|i| {
            span(
                (i, i, None),
                "a",
                "call",
                SpanKind::Client,
                1,
                false,
                vec![],
            )
        })
        .collect();
    generator.record(&clients, now);
    assert_eq!(generator.dropped_pending(), 40);
    assert_eq!(generator.waiting(), 10, "the newest ten still wait");
}

/// A retried export delivers the same spans again: a waiting span counts once, paired or
/// settled, and the copy it replaced settles nothing.
#[test]
fn a_span_sent_twice_waits_once() {
    let generator = SpanMetrics::new(Duration::from_secs(10), 1000, 0);
    let start = Instant::now();
    let client = |id: u8, peer: &str| {
        span(
            (1, id, Some(1)),
            "a",
            "call",
            SpanKind::Client,
            10,
            false,
            vec![kv("peer.service", peer)],
        )
    };
    let server = span(
        (1, 9, Some(2)),
        "b",
        "handle",
        SpanKind::Server,
        5,
        false,
        vec![],
    );
    generator.record(&[client(2, "b"), client(3, "db")], start);
    generator.record(
        &[client(2, "b"), client(3, "db")],
        start + Duration::from_secs(1),
    );
    generator.record(&[server], start + Duration::from_secs(2));
    {
        let state = generator.state.lock().unwrap();
        assert_eq!((state.clients.len(), state.servers.len()), (1, 0));
    }
    let points = generator.points(start + Duration::from_secs(12), 1);
    let calls = |server: &str| {
        count(find(
            &points,
            "spyglass.service_graph.calls",
            "a",
            &[("server", server)],
        ))
    };
    assert_eq!(calls("b"), 1, "paired once");
    assert_eq!(calls("db"), 1, "settled once, by the copy that came last");
    assert_eq!(generator.dropped_pending(), 0);
    let state = generator.state.lock().unwrap();
    assert_eq!(state.waiting.spans.len(), 0, "nothing left waiting");
}

#[test]
fn operations_and_edges_past_the_limit_go_to_the_overflow_series() {
    let generator = SpanMetrics::new(Duration::from_secs(10), 1000, 0).with_max_series(3);
    let start = Instant::now();
    // One service with 10 span names (a name with an id in it): 3 kept, 7 overflow.
    let spans: Vec<Span> = (0..10u8)
        .map(|i| {
            let name = format!("GET /users/{i}");
            span(
                (i + 1, 1, None),
                "api",
                &name,
                SpanKind::Server,
                5,
                false,
                vec![],
            )
        })
        .collect();
    generator.record(&spans, start);
    // A new service once the limit is reached.
    let late = span(
        (50, 1, None),
        "late",
        "GET /",
        SpanKind::Server,
        5,
        false,
        vec![],
    );
    generator.record(&[late], start);
    let points = generator.points(start, 42);
    let calls: Vec<&MetricPoint> = points
        .iter()
        .filter(|p| p.metric_name == "spyglass.span.calls")
        .collect();
    let overflow = |service| {
        count(find(
            &points,
            "spyglass.span.calls",
            service,
            &[("span.name", OVERFLOW)],
        ))
    };
    assert_eq!(overflow("api"), 7);
    assert_eq!(overflow(OVERFLOW), 1, "a new service past the limit");
    assert_eq!(calls.len(), 5, "3 operations and 2 overflow series");
    let total: i64 = calls.iter().map(|p| count(p)).sum();
    assert_eq!(total, 11, "every span is still counted");
    assert_eq!(generator.overflowed(), 8);
    assert_eq!(generator.series(), 5);
}

#[test]
fn duration_points_name_the_failed_then_slowest_spans_once() {
    let generator = SpanMetrics::new(Duration::from_secs(10), 1000, 0);
    let start = Instant::now();
    // Four calls of one operation (status ok), 10, 400, 30 and 250 ms; the slowest two are
    // its exemplars. A fast failed call on the edge beats slow successful ones there.
    let mut spans = Vec::new();
    for (t, ms) in [(1u8, 10), (2, 400), (3, 30), (4, 250)] {
        spans.push(span(
            (t, 1, None),
            "a",
            "GET /a",
            SpanKind::Server,
            ms,
            false,
            vec![],
        ));
    }
    for (t, ms, failing) in [(5u8, 300, false), (6, 5, true), (7, 200, false)] {
        spans.push(span(
            (t, 2, None),
            "a",
            "call b",
            SpanKind::Client,
            ms,
            false,
            vec![],
        ));
        spans.push(span(
            (t, 3, Some(2)),
            "b",
            "handle",
            SpanKind::Server,
            ms,
            failing,
            vec![],
        ));
    }
    generator.record(&spans, start);
    let points = generator.points(start, 42);
    let exemplar_traces = |p: &MetricPoint| {
        let mut ids: Vec<(u8, f64)> = p
            .exemplars
            .iter()
            .map(|e| {
                let seconds = match e.value {
                    NumberValue::Double(s) => s,
                    NumberValue::Int(i) => i as f64,
                };
                (e.trace_id.unwrap().0[0], seconds)
            })
            .collect();
        ids.sort_by_key(|(t, _)| *t);
        ids
    };
    let op = find(
        &points,
        "spyglass.span.duration",
        "a",
        &[("span.name", "GET /a"), ("status.code", "ok")],
    );
    assert_eq!(exemplar_traces(op), [(2, 0.4), (4, 0.25)]);
    let trace_two = &op
        .exemplars
        .iter()
        .find(|e| e.trace_id.unwrap().0[0] == 2)
        .unwrap();
    assert_eq!(trace_two.span_id, Some(SpanId([1; 8])));
    assert_eq!(trace_two.time_unix_nano, 1_000 * MS + 400 * MS);
    let edge = find(
        &points,
        "spyglass.service_graph.duration",
        "a",
        &[("server", "b")],
    );
    assert_eq!(exemplar_traces(edge), [(5, 0.3), (6, 0.005)]);
    // The next point names only spans counted after this one.
    let later = generator.points(start, 43);
    let op = find(
        &later,
        "spyglass.span.duration",
        "a",
        &[("span.name", "GET /a"), ("status.code", "ok")],
    );
    assert!(op.exemplars.is_empty());
}
