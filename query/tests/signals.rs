//! Log search, the metric list and series queries over parts and memtable.

mod common;

use common::{Layout, MS, T0, trace_id};
use spyglass_query::{Aggregation, LogSearch, SeriesQuery};

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
