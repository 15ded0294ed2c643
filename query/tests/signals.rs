//! Log search, the metric list and series queries over parts and memtable; service health
//! from span metrics.

mod common;

use common::{Layout, MS, T0, trace_id};
use spyglass_query::{Aggregation, LogSearch, QueryConfig, QueryEngine, SeriesQuery};
use spyglass_store::model::{MetricPoint, MetricType, NumberValue, PointValue, Temporality};
use spyglass_store::{Records, Store, StoreConfig};

fn bodies(logs: &[spyglass_store::model::LogRecord]) -> Vec<String> {
    logs.iter()
        .map(|l| {
            l.body
                .as_ref()
                .map(|b| b.to_display_string())
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn logs_by_service_severity_text_trace_and_time_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::engine(dir.path(), Layout::Split).await;
    let q = || LogSearch {
        limit: 100,
        ..Default::default()
    };

    let all = engine.logs(q()).await.unwrap();
    assert_eq!(
        bodies(&all),
        vec!["cart loaded", "card declined by issuer", "checkout started"]
    );
    let by_service = engine
        .logs(LogSearch {
            service: Some("payments".into()),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(bodies(&by_service), vec!["card declined by issuer"]);
    assert_eq!(
        by_service[0]
            .attributes
            .get("card.brand")
            .unwrap()
            .to_display_string(),
        "visa"
    );
    let info_and_up = engine
        .logs(LogSearch {
            min_severity: Some(9),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(
        bodies(&info_and_up),
        vec!["card declined by issuer", "checkout started"]
    );
    let text = engine
        .logs(LogSearch {
            text: Some("DECLINED".into()),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(bodies(&text), vec!["card declined by issuer"]);
    let quoted = engine
        .logs(LogSearch {
            text: Some("it's".into()),
            ..q()
        })
        .await
        .unwrap();
    assert!(quoted.is_empty(), "a quote in the text is data, not SQL");
    let by_trace = engine
        .logs(LogSearch {
            trace_id: Some(trace_id(3)),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(bodies(&by_trace), vec!["cart loaded"]);
    let by_time = engine
        .logs(LogSearch {
            start_unix_nano: Some(T0 + 1000 * MS),
            end_unix_nano: Some(T0 + 1500 * MS),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(bodies(&by_time), vec!["card declined by issuer"]);
    let one = engine.logs(LogSearch { limit: 1, ..q() }).await.unwrap();
    assert_eq!(bodies(&one), vec!["cart loaded"]);
    assert!(engine.logs(LogSearch { limit: 0, ..q() }).await.is_err());
}

/// Pages of logs go on where the last one ended, records of one time included, with none
/// shown twice or skipped, across parts and the memtable; `span_id` narrows to one span.
#[tokio::test]
async fn logs_page_by_cursor_and_narrow_to_a_span() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let template = common::logs().remove(0);
    // Nine records: five at one time (three in a part, two in the memtable), four apart.
    let record = |i: usize, at_ms: u64| {
        let mut r = template.clone();
        r.time_unix_nano = T0 + at_ms * MS;
        r.body = Some(spyglass_store::model::AttrValue::Str(format!("record {i}")));
        r.span_id = Some(common::span_id(1, i as u8));
        r
    };
    let first: Vec<_> = (0..5)
        .map(|i| record(i, if i < 3 { 500 } else { i as u64 }))
        .collect();
    let second: Vec<_> = (5..9)
        .map(|i| record(i, if i < 7 { 500 } else { 900 + i as u64 }))
        .collect();
    store.append(&Records::Logs(first)).await.unwrap();
    store.flush().await.unwrap();
    store.append(&Records::Logs(second)).await.unwrap();
    let engine = QueryEngine::new(store, QueryConfig::default());

    let all = engine
        .logs_page(LogSearch {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(all.next_cursor.is_none());
    let times: Vec<u64> = all.records.iter().map(|r| r.time_unix_nano).collect();
    assert_eq!(times.len(), 9);
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let page = engine
            .logs_page(LogSearch {
                limit: 2,
                cursor,
                ..Default::default()
            })
            .await
            .unwrap();
        paged.extend(bodies(&page.records));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(
        paged,
        bodies(&all.records),
        "pages of 2 are the whole list, in order"
    );

    let one = engine
        .logs(LogSearch {
            trace_id: Some(trace_id(1)),
            span_id: Some(common::span_id(1, 6)),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(bodies(&one), vec!["record 6"]);
}

#[tokio::test]
async fn metric_list_and_series_queries() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::engine(dir.path(), Layout::Split).await;

    let names = engine.metric_names(T0, T0 + 3_600_000 * MS).await.unwrap();
    let summary: Vec<(&str, &str, &str, u64)> = names
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                m.metric_type.as_str(),
                m.unit.as_str(),
                m.series,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("http.server.request.duration", "histogram", "s", 1),
            ("orders.placed", "sum", "{order}", 1),
            ("queue.depth", "gauge", "", 1),
        ]
    );
    assert_eq!(names[0].label_keys, vec!["http.route"]);

    let minute = 60_000 * MS;
    let rate = engine
        .series(&SeriesQuery {
            name: "orders.placed".into(),
            matchers: vec![("service.name".into(), "payments".into())],
            group_by: vec!["service.name".into()],
            aggregation: Aggregation::Rate,
            start_unix_nano: T0,
            end_unix_nano: T0 + 2 * minute,
            step_nano: minute,
        })
        .await
        .unwrap();
    assert_eq!(rate.len(), 1);
    assert_eq!(
        rate[0].labels,
        vec![("service.name".to_string(), "payments".to_string())]
    );
    // 3 at +5 s (no earlier point: no rate), 5 at +65 s: a rise of 2 over one minute.
    assert_eq!(
        rate[0].points,
        vec![(T0, None), (T0 + minute, Some(2.0 / 60.0))]
    );

    let gauge = engine
        .series(&SeriesQuery {
            name: "queue.depth".into(),
            matchers: vec![],
            group_by: vec![],
            aggregation: Aggregation::Max,
            start_unix_nano: T0,
            end_unix_nano: T0 + 2 * minute,
            step_nano: minute,
        })
        .await
        .unwrap();
    assert_eq!(gauge[0].points, vec![(T0, Some(7.5)), (T0 + minute, None)]);

    let none = engine
        .series(&SeriesQuery {
            name: "orders.placed".into(),
            matchers: vec![("service.name".into(), "cart".into())],
            group_by: vec![],
            aggregation: Aggregation::Sum,
            start_unix_nano: T0,
            end_unix_nano: T0 + minute,
            step_nano: minute,
        })
        .await
        .unwrap();
    assert!(none.is_empty(), "no series match");
    let too_many = SeriesQuery {
        name: "queue.depth".into(),
        matchers: vec![],
        group_by: vec![],
        aggregation: Aggregation::Sum,
        start_unix_nano: T0,
        end_unix_nano: T0 + 3_600_000 * MS,
        step_nano: MS,
    };
    assert!(
        engine
            .series(&too_many)
            .await
            .unwrap_err()
            .to_string()
            .contains("step")
    );
}

/// Cumulative span-metric points as ingest writes them (series started at `T0`).
fn span_counter(metric: &str, service: &str, at_secs: u64, value: i64) -> MetricPoint {
    MetricPoint {
        temporality: Temporality::Cumulative,
        is_monotonic: true,
        attributes: common::attrs(&[
            ("span.name", common::s("POST /orders")),
            ("span.kind", common::s("server")),
        ]),
        ..common::point(
            metric,
            service,
            MetricType::Sum,
            at_secs * 1000,
            PointValue::Number(NumberValue::Int(value)),
        )
    }
}

#[tokio::test]
async fn service_health_rates_count_from_when_series_began_and_last_seen_survives_silence() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let points = vec![
        span_counter("spyglass.span.calls", "checkout", 60, 60),
        span_counter("spyglass.span.errors", "checkout", 60, 6),
        span_counter("spyglass.span.calls", "checkout", 120, 120),
        span_counter("spyglass.span.errors", "checkout", 120, 12),
        // Shipping answered 30 calls in its first minute, then went silent.
        span_counter("spyglass.span.calls", "shipping", 60, 30),
        span_counter("spyglass.span.calls", "shipping", 120, 30),
    ];
    store.append(&Records::Metrics(points)).await.unwrap();
    let engine = QueryEngine::new(store.clone(), QueryConfig::default());
    let s = 1_000 * MS;

    // An hour's window over two minutes of data: rates are per second of the series' life.
    let hour = engine.services(T0 - 3600 * s, T0 + 120 * s).await.unwrap();
    let view: Vec<(&str, f64, f64, f64, Option<u64>)> = hour
        .iter()
        .map(|h| {
            (
                h.service.as_str(),
                h.health.calls,
                h.health.rate_per_sec,
                h.health.error_ratio,
                h.health.last_seen_unix_nano,
            )
        })
        .collect();
    assert_eq!(
        view,
        vec![
            ("checkout", 120.0, 1.0, 0.1, Some(T0 + 120 * s)),
            ("shipping", 30.0, 0.25, 0.0, Some(T0 + 60 * s)),
        ]
    );

    // The last 30 s: shipping did nothing, and was last seen before the window.
    let recent = engine.services(T0 + 90 * s, T0 + 120 * s).await.unwrap();
    let view: Vec<(&str, f64, f64, Option<u64>)> = recent
        .iter()
        .map(|h| {
            (
                h.service.as_str(),
                h.health.calls,
                h.health.rate_per_sec,
                h.health.last_seen_unix_nano,
            )
        })
        .collect();
    assert_eq!(
        view,
        vec![
            ("checkout", 60.0, 2.0, Some(T0 + 120 * s)),
            ("shipping", 0.0, 0.0, Some(T0 + 60 * s)),
        ]
    );

    // A series that appears after the engine has answered keeps its own name and operation
    // (the engine remembers the key columns of the series it has seen).
    let later = vec![
        span_counter("spyglass.span.calls", "payments", 150, 45),
        span_counter("spyglass.span.calls", "checkout", 150, 150),
    ];
    store.append(&Records::Metrics(later)).await.unwrap();
    let names: Vec<String> = engine
        .services(T0 + 90 * s, T0 + 150 * s)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.service)
        .collect();
    assert_eq!(names, ["checkout", "payments", "shipping"]);
    let operations = engine
        .operations("payments", T0, T0 + 150 * s)
        .await
        .unwrap();
    let operations: Vec<(&str, &str, &str)> = operations
        .iter()
        .map(|o| (o.service.as_str(), o.name.as_str(), o.kind.as_str()))
        .collect();
    assert_eq!(operations, [("payments", "POST /orders", "server")]);
}

/// The service list as (service, calls, errors, rate per second).
async fn service_view(engine: &QueryEngine, start: u64, end: u64) -> Vec<(String, f64, f64, f64)> {
    engine
        .services(start, end)
        .await
        .unwrap()
        .into_iter()
        .map(|h| {
            (
                h.service,
                h.health.calls,
                h.health.errors,
                h.health.rate_per_sec,
            )
        })
        .collect()
}

#[tokio::test]
async fn service_health_stays_exact_while_parts_are_flushed_and_compacted_between_queries() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        compaction_min_parts: 2,
        ..StoreConfig::default()
    };
    let (store, _) = Store::open(dir.path(), config).unwrap();
    // One engine answers throughout (it keeps the points of parts it has read); another keeps
    // nothing between queries.
    let engine = QueryEngine::new(store.clone(), QueryConfig::default());
    let uncached = QueryEngine::new(
        store.clone(),
        QueryConfig {
            span_metrics_cache_bytes: 0,
            ..QueryConfig::default()
        },
    );
    // Checkout answers 10 calls a minute, one of them failing; minutes `from..=to` arrive.
    let minutes = |from: u64, to: u64| {
        let mut points = Vec::new();
        for m in from..=to {
            points.push(span_counter(
                "spyglass.span.calls",
                "checkout",
                m * 60,
                10 * m as i64,
            ));
            points.push(span_counter(
                "spyglass.span.errors",
                "checkout",
                m * 60,
                m as i64,
            ));
        }
        Records::Metrics(points)
    };
    let s = 1_000 * MS;
    let (start, end) = (T0, T0 + 3600 * s);
    // Shipping answered 5 calls a minute for the first three minutes only: its series are in
    // the oldest part alone.
    let shipping = ("shipping".to_string(), 15.0, 0.0, 15.0 / 3600.0);
    let expect = |calls: f64| {
        vec![
            ("checkout".to_string(), calls, calls / 10.0, calls / 3600.0),
            shipping.clone(),
        ]
    };

    store.append(&minutes(1, 10)).await.unwrap();
    let early: Vec<_> = (1..=3)
        .map(|m| span_counter("spyglass.span.calls", "shipping", m * 60, 5 * m as i64))
        .collect();
    store.append(&Records::Metrics(early)).await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(service_view(&engine, start, end).await, expect(100.0));
    assert!(
        engine.span_metrics_cache_bytes() > 0,
        "the part's points are kept"
    );

    // A second part and points still in the memtable.
    store.append(&minutes(11, 20)).await.unwrap();
    store.flush().await.unwrap();
    store.append(&minutes(21, 25)).await.unwrap();
    assert_eq!(service_view(&engine, start, end).await, expect(250.0));
    assert_eq!(service_view(&uncached, start, end).await, expect(250.0));
    // A window ending inside the first part, and one starting inside the second.
    assert_eq!(
        service_view(&engine, start, T0 + 300 * s).await[0].1,
        50.0,
        "calls in the first five minutes"
    );
    // From minute 15's point on: the rises from minute 14 to 25.
    assert_eq!(service_view(&engine, T0 + 900 * s, end).await[0].1, 110.0);
    assert_eq!(service_view(&uncached, T0 + 900 * s, end).await[0].1, 110.0);

    // Compaction replaces both parts with one; the answers stay.
    store.flush().await.unwrap();
    assert!(store.compact().await.unwrap() >= 2);
    store.append(&minutes(26, 30)).await.unwrap();
    assert_eq!(service_view(&engine, start, end).await, expect(300.0));
    assert_eq!(service_view(&uncached, start, end).await, expect(300.0));
    assert_eq!(uncached.span_metrics_cache_bytes(), 0);
    let operations = engine.operations("checkout", start, end).await.unwrap();
    assert_eq!(operations.len(), 1);
    assert_eq!(operations[0].health.calls, 300.0);
    let operations = engine.operations("shipping", start, end).await.unwrap();
    assert_eq!(operations.len(), 1);
    assert_eq!(operations[0].health.calls, 15.0);
    assert!(
        engine
            .operations("billing", start, end)
            .await
            .unwrap()
            .is_empty()
    );
}
