//! A small, fixed data set (three traces, metrics, logs) stored partly in Parquet parts and
//! partly in the memtable, for the query tests.

#![allow(dead_code)]

use std::sync::Arc;

use spyglass_query::{QueryConfig, QueryEngine};
use spyglass_store::model::{
    AttrValue, Attributes, KeyValue, LogRecord, MetricPoint, MetricType, NumberValue, PointValue,
    Resource, Scope, Span, SpanEvent, SpanId, SpanKind, SpanLink, StatusCode, Temporality, TraceId,
};
use spyglass_store::{Records, Store, StoreConfig};

/// 2026-11-18T11:06:40Z
pub const T0: u64 = 1_795_000_000_000_000_000;
pub const MS: u64 = 1_000_000;

pub fn trace_id(n: u8) -> TraceId {
    TraceId([n; 16])
}

pub fn span_id(trace: u8, n: u8) -> SpanId {
    SpanId([trace, n, 0, 0, 0, 0, 0, 1])
}

pub fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
    Attributes::new(
        pairs
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.to_string(),
                value: v.clone(),
            })
            .collect(),
    )
}

pub fn s(v: &str) -> AttrValue {
    AttrValue::Str(v.to_string())
}

pub fn resource(service: &str) -> Arc<Resource> {
    Arc::new(Resource {
        attributes: attrs(&[
            ("service.name", s(service)),
            ("deployment.environment.name", s("test")),
        ]),
        ..Default::default()
    })
}

fn scope() -> Arc<Scope> {
    Arc::new(Scope {
        name: "shop".into(),
        version: "1.0".into(),
        ..Default::default()
    })
}

pub struct SpanSpec {
    pub trace: u8,
    pub id: u8,
    pub parent: Option<u8>,
    pub service: &'static str,
    pub name: &'static str,
    pub kind: SpanKind,
    pub start_ms: u64,
    pub duration_ms: u64,
    pub error: Option<&'static str>,
    pub attributes: Attributes,
}

pub fn span(spec: SpanSpec) -> Span {
    let start = T0 + spec.start_ms * MS;
    Span {
        trace_id: trace_id(spec.trace),
        span_id: span_id(spec.trace, spec.id),
        parent_span_id: spec.parent.map(|p| span_id(spec.trace, p)),
        name: spec.name.to_string(),
        kind: spec.kind,
        start_time_unix_nano: start,
        end_time_unix_nano: start + spec.duration_ms * MS,
        status_code: if spec.error.is_some() {
            StatusCode::Error
        } else {
            StatusCode::Unset
        },
        status_message: spec.error.unwrap_or_default().to_string(),
        attributes: spec.attributes,
        resource: resource(spec.service),
        scope: scope(),
        ..Default::default()
    }
}

/// Three traces: 1 a good checkout (frontend → payments → postgres), 2 the same failing in
/// payments with an exception, 3 a cart read with typed attributes.
pub fn spans() -> Vec<Span> {
    use SpanKind::*;
    let http = |route: &str, status: i64| {
        attrs(&[
            ("http.request.method", s("GET")),
            ("http.route", s(route)),
            ("http.response.status_code", AttrValue::Int(status)),
        ])
    };
    let mut failing = span(SpanSpec {
        trace: 2,
        id: 3,
        parent: Some(2),
        service: "payments",
        name: "POST /charge",
        kind: Server,
        start_ms: 1010,
        duration_ms: 280,
        error: Some("card declined"),
        attributes: http("/charge", 402),
    });
    failing.events.push(SpanEvent {
        time_unix_nano: T0 + 1200 * MS,
        name: "exception".into(),
        attributes: attrs(&[
            ("exception.type", s("CardError")),
            ("exception.message", s("card declined by issuer")),
            (
                "exception.stacktrace",
                s("CardError: card declined\n    at charge (pay.rs:10)"),
            ),
        ]),
        dropped_attributes_count: 0,
    });
    vec![
        span(SpanSpec {
            trace: 1,
            id: 1,
            parent: None,
            service: "frontend",
            name: "GET /checkout",
            kind: Server,
            start_ms: 0,
            duration_ms: 120,
            error: None,
            attributes: http("/checkout", 200),
        }),
        span(SpanSpec {
            trace: 1,
            id: 2,
            parent: Some(1),
            service: "frontend",
            name: "POST /charge",
            kind: Client,
            start_ms: 10,
            duration_ms: 80,
            error: None,
            attributes: attrs(&[("peer.service", s("payments"))]),
        }),
        span(SpanSpec {
            trace: 1,
            id: 3,
            parent: Some(2),
            service: "payments",
            name: "POST /charge",
            kind: Server,
            start_ms: 12,
            duration_ms: 70,
            error: None,
            attributes: http("/charge", 200),
        }),
        span(SpanSpec {
            trace: 1,
            id: 4,
            parent: Some(3),
            service: "payments",
            name: "INSERT payments",
            kind: Client,
            start_ms: 20,
            duration_ms: 30,
            error: None,
            attributes: attrs(&[("db.system", s("postgresql")), ("server.address", s("db"))]),
        }),
        span(SpanSpec {
            trace: 2,
            id: 1,
            parent: None,
            service: "frontend",
            name: "GET /checkout",
            kind: Server,
            start_ms: 1000,
            duration_ms: 300,
            error: Some("downstream failed"),
            attributes: http("/checkout", 502),
        }),
        span(SpanSpec {
            trace: 2,
            id: 2,
            parent: Some(1),
            service: "frontend",
            name: "POST /charge",
            kind: Client,
            start_ms: 1005,
            duration_ms: 290,
            error: Some("402"),
            attributes: attrs(&[("peer.service", s("payments"))]),
        }),
        failing,
        span(SpanSpec {
            trace: 3,
            id: 1,
            parent: None,
            service: "frontend",
            name: "GET /cart",
            kind: Server,
            start_ms: 2000,
            duration_ms: 15,
            error: None,
            attributes: http("/cart", 200),
        }),
        with_link(span(SpanSpec {
            trace: 3,
            id: 2,
            parent: Some(1),
            service: "cart",
            name: "GetCart",
            kind: Server,
            start_ms: 2002,
            duration_ms: 8,
            error: None,
            attributes: attrs(&[
                ("rpc.service", s("CartService")),
                ("rpc.method", s("GetCart")),
                ("cart.items", AttrValue::Int(3)),
                ("cart.premium", AttrValue::Bool(true)),
                ("cart.total", AttrValue::Double(12.5)),
            ]),
        })),
    ]
}

/// The cart read links to the checkout trace of the same session.
fn with_link(mut span: Span) -> Span {
    span.links.push(SpanLink {
        trace_id: trace_id(1),
        span_id: span_id(1, 1),
        attributes: attrs(&[("link.reason", s("same session"))]),
        ..Default::default()
    });
    span
}

pub fn point(
    name: &str,
    service: &str,
    metric_type: MetricType,
    at_ms: u64,
    value: PointValue,
) -> MetricPoint {
    MetricPoint {
        metric_name: name.to_string(),
        description: String::new(),
        unit: String::new(),
        metric_type,
        temporality: Temporality::Unspecified,
        is_monotonic: false,
        attributes: Attributes::default(),
        time_unix_nano: T0 + at_ms * MS,
        start_time_unix_nano: T0,
        flags: 0,
        value,
        exemplars: Vec::new(),
        resource: resource(service),
        scope: scope(),
    }
}

pub fn metrics() -> Vec<MetricPoint> {
    let orders = |at_ms, v| MetricPoint {
        unit: "{order}".into(),
        temporality: Temporality::Cumulative,
        is_monotonic: true,
        ..point(
            "orders.placed",
            "payments",
            MetricType::Sum,
            at_ms,
            PointValue::Number(NumberValue::Int(v)),
        )
    };
    vec![
        MetricPoint {
            unit: "s".into(),
            temporality: Temporality::Cumulative,
            attributes: attrs(&[("http.route", s("/checkout"))]),
            ..point(
                "http.server.request.duration",
                "frontend",
                MetricType::Histogram,
                5000,
                PointValue::Histogram {
                    count: 2,
                    sum: Some(0.42),
                    min: Some(0.12),
                    max: Some(0.3),
                    bucket_counts: vec![0, 2, 0, 0],
                    explicit_bounds: vec![0.1, 0.5, 1.0],
                },
            )
        },
        orders(5000, 3),
        orders(65000, 5),
        point(
            "queue.depth",
            "cart",
            MetricType::Gauge,
            5000,
            PointValue::Number(NumberValue::Double(7.5)),
        ),
    ]
}

pub fn logs() -> Vec<LogRecord> {
    let log =
        |service: &str, at_ms: u64, severity: (i32, &str), body: &str, trace: u8, span: u8| {
            LogRecord {
                time_unix_nano: T0 + at_ms * MS,
                observed_time_unix_nano: T0 + at_ms * MS,
                severity_number: severity.0,
                severity_text: severity.1.to_string(),
                body: Some(s(body)),
                event_name: String::new(),
                attributes: Attributes::default(),
                dropped_attributes_count: 0,
                flags: 1,
                trace_id: Some(trace_id(trace)),
                span_id: Some(span_id(trace, span)),
                resource: resource(service),
                scope: scope(),
            }
        };
    vec![
        log("frontend", 1, (9, "INFO"), "checkout started", 1, 1),
        LogRecord {
            attributes: attrs(&[("card.brand", s("visa"))]),
            ..log(
                "payments",
                1015,
                (17, "ERROR"),
                "card declined by issuer",
                2,
                3,
            )
        },
        log("cart", 2003, (5, "DEBUG"), "cart loaded", 3, 2),
    ]
}

/// Where the data set sits in the store.
#[derive(Clone, Copy, Debug)]
pub enum Layout {
    Memtable,
    /// The first half of every signal flushed into parts, the rest in the memtable.
    Split,
    Parts,
}

pub async fn loaded_store(dir: &std::path::Path, layout: Layout) -> Store {
    let (store, _) = Store::open(dir, StoreConfig::default()).expect("open store");
    let (spans, metrics, logs) = (spans(), metrics(), logs());
    let (s1, s2) = spans.split_at(spans.len() / 2);
    let (m1, m2) = metrics.split_at(metrics.len() / 2);
    let (l1, l2) = logs.split_at(logs.len() / 2);
    for records in [
        Records::Spans(s1.to_vec()),
        Records::Metrics(m1.to_vec()),
        Records::Logs(l1.to_vec()),
    ] {
        store.append(&records).await.expect("append");
    }
    if !matches!(layout, Layout::Memtable) {
        store.flush().await.expect("flush");
    }
    for records in [
        Records::Spans(s2.to_vec()),
        Records::Metrics(m2.to_vec()),
        Records::Logs(l2.to_vec()),
    ] {
        store.append(&records).await.expect("append");
    }
    if matches!(layout, Layout::Parts) {
        store.flush().await.expect("flush");
    }
    store
}

pub async fn engine(dir: &std::path::Path, layout: Layout) -> QueryEngine {
    QueryEngine::new(loaded_store(dir, layout).await, QueryConfig::default())
}

/// Trace 7 as a trace lookup meets it in practice: six spans arriving out of order in three
/// exports, the second sent twice (a retry), the first two flushed into two parts and the
/// last still in the memtable. Its tree, in order:
///
/// ```text
///  1 frontend ─┬─ 2 frontend client ── 3 cart server ── 4 cart db client
///              └─ 5 frontend client ── 6 payments server
/// ```
pub async fn scattered_trace_store(dir: &std::path::Path) -> Store {
    use SpanKind::*;
    let (store, _) = Store::open(dir, StoreConfig::default()).expect("open store");
    let spec = |id, parent, service, name, kind, start_ms| {
        span(SpanSpec {
            trace: 7,
            id,
            parent,
            service,
            name,
            kind,
            start_ms,
            duration_ms: 5,
            error: None,
            attributes: Default::default(),
        })
    };
    let export_1 = vec![
        spec(6, Some(5), "payments", "charge", Server, 40),
        spec(4, Some(3), "cart", "SELECT", Client, 12),
    ];
    let export_2 = vec![
        spec(3, Some(2), "cart", "GetCart", Server, 11),
        spec(5, Some(1), "frontend", "POST /charge", Client, 30),
    ];
    let export_3 = vec![
        spec(2, Some(1), "frontend", "GET /cart", Client, 10),
        spec(1, None, "frontend", "GET /checkout", Server, 0),
    ];
    store
        .append(&Records::Spans(export_1))
        .await
        .expect("append");
    store.flush().await.expect("flush");
    store
        .append(&Records::Spans(export_2.clone()))
        .await
        .expect("append");
    store
        .append(&Records::Spans(export_2))
        .await
        .expect("append the retry");
    store.flush().await.expect("flush");
    store
        .append(&Records::Spans(export_3))
        .await
        .expect("append");
    store
}
