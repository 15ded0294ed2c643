//! What one SQL query may cost: functions that make large values are refused before they
//! allocate, and an answer stops at its byte limit.

mod common;

use common::Layout;
use spyglass_query::{ErrorKind, QueryConfig, QueryEngine};
use spyglass_store::Share;

async fn engine(dir: &std::path::Path, config: QueryConfig) -> QueryEngine {
    QueryEngine::new(common::loaded_store(dir, Layout::Split).await, config)
}

#[tokio::test]
async fn growing_functions_are_refused_past_the_limits_and_work_below_them() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), QueryConfig::default()).await;
    for (query, function) in [
        ("SELECT repeat('x', 200000000)", "repeat"),
        ("SELECT length(repeat('x', 200000000)) AS n", "repeat"),
        ("SELECT lpad('x', 100000000)", "lpad"),
        ("SELECT rpad('x', 100000000, 'yz')", "rpad"),
        ("SELECT range(10000000000)", "range"),
        ("SELECT generate_series(1, 5000000000)", "generate_series"),
        ("SELECT array_repeat('abc', 100000000)", "array_repeat"),
        ("SELECT repeat(service_name, 10000000) FROM spans", "repeat"),
    ] {
        let err = engine.sql(query).await.expect_err(query);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{query}: {err}");
        let message = err.to_string();
        assert!(
            message.contains(&format!("{function}() would make")),
            "{query}: {message}"
        );
    }
    let out = engine
        .sql("SELECT repeat('ab', 3) AS r, lpad('7', 3, '0') AS p, cardinality(range(5)) AS n")
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.to_json().unwrap()).unwrap();
    assert_eq!(
        json["rows"][0],
        serde_json::json!({"r": "ababab", "p": "007", "n": 5})
    );
}

#[tokio::test]
async fn an_answer_stops_at_its_byte_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = QueryConfig {
        sql_max_bytes: 64 << 10,
        sql_max_value_bytes: 16 << 10,
        ..QueryConfig::default()
    };
    let engine = engine(dir.path(), config).await;
    let all = engine
        .sql("SELECT count(*) AS n FROM generate_series(1, 100000)")
        .await
        .unwrap();
    assert!(!all.truncated);
    let out = engine
        .sql("SELECT value, repeat('x', 100) AS padding FROM generate_series(1, 100000)")
        .await
        .unwrap();
    assert!(out.truncated, "the answer was cut");
    assert!(out.rows > 0 && out.rows < 10_000, "{} rows", out.rows);
    let answer = out.to_json().unwrap().len();
    assert!(answer <= 2 * (64 << 10), "a {answer}-byte answer");
}

#[tokio::test]
async fn sql_queries_take_their_memory_from_the_process_budget() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::loaded_store(dir.path(), Layout::Split).await;
    let engine = QueryEngine::new(store.clone(), QueryConfig::default());
    let query = "SELECT count(DISTINCT value) AS n FROM generate_series(1, 3000000)";
    let memory = store.memory().clone();
    let taken = memory
        .try_reserve(Share::Requests, memory.dynamic_bytes() - (256 << 10))
        .unwrap();
    let err = engine.sql(query).await.expect_err("no room for the query");
    assert_eq!(err.kind(), ErrorKind::TooExpensive, "{err}");
    assert!(err.to_string().contains("memory_budget_bytes"), "{err}");
    assert_eq!(memory.reserved_by(Share::Queries), 0, "given back");
    drop(taken);
    let out = engine.sql(query).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.to_json().unwrap()).unwrap();
    assert_eq!(json["rows"][0]["n"], 3_000_000);
    assert_eq!(memory.reserved_by(Share::Queries), 0, "given back");
}
