//! Counts answered from part rollups: the same answer as counting the rows, whatever mix of
//! parts (inside or straddling the time range) and memtable holds them.

mod common;

use std::collections::BTreeMap;

use spyglass_query::{QueryConfig, QueryEngine};
use spyglass_store::synth::SpanGenerator;
use spyglass_store::{Records, Signal, Store, StoreConfig};

const HOUR: u64 = 3_600_000_000_000;
/// 2026-11-18T10:00:00Z, an hour boundary.
const START: u64 = 1_795_000_000_000_000_000 / HOUR * HOUR;

/// About 8,000 spans over three hours: traces starting in the first two hours flushed (a part
/// per hour), the rest in the memtable. Returns the engine and the span count per service sent.
async fn three_hours(dir: &std::path::Path) -> (QueryEngine, BTreeMap<String, i64>) {
    let (store, _) = Store::open(dir, StoreConfig::default()).unwrap();
    let mut generator = SpanGenerator::new(11, START).with_trace_interval(30_000_000_000);
    let traces: Vec<_> = (0..3 * 120).map(|_| generator.trace()).collect();
    let mut sent: BTreeMap<String, i64> = BTreeMap::new();
    for span in traces.iter().flatten() {
        *sent.entry(span.service_name().to_string()).or_default() += 1;
    }
    let (early, late): (Vec<_>, Vec<_>) = traces
        .into_iter()
        .partition(|t| t[0].start_time_unix_nano < START + 2 * HOUR);
    store.append(&Records::Spans(early.concat())).await.unwrap();
    store.flush().await.unwrap();
    store.append(&Records::Spans(late.concat())).await.unwrap();
    let parts = store.snapshot().parts(Signal::Spans);
    assert!(parts.len() >= 2, "a part per flushed hour");
    assert!(parts.iter().all(|p| p.rollup().is_some()));
    assert!(!store.snapshot().memtable_batches(Signal::Spans).is_empty());
    (QueryEngine::new(store, QueryConfig::default()), sent)
}

async fn table(engine: &QueryEngine, sql: &str) -> String {
    let out = engine
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    out.to_table().unwrap()
}

async fn explained(engine: &QueryEngine, sql: &str) -> String {
    table(engine, &format!("EXPLAIN {sql}")).await
}

/// `count(*)` (answered from rollups where they can) and `count(span_id)` (never: it names a
/// column) must give the same table.
async fn assert_same_counts(engine: &QueryEngine, shape: &str, from_rollups: bool) {
    let star = shape.replace("COUNT", "count(*)");
    let rows = shape.replace("COUNT", "count(span_id)");
    assert_eq!(
        table(engine, &star).await,
        table(engine, &rows).await,
        "{star}"
    );
    let plan = explained(engine, &star).await;
    assert_eq!(
        plan.contains("sum(rows) AS rows"),
        from_rollups,
        "{star} answered from rollups: {from_rollups}\n{plan}"
    );
}

#[tokio::test]
async fn counts_from_rollups_equal_counts_over_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, sent) = three_hours(dir.path()).await;

    // What a user checks: the count per service is what was sent, named and typed as usual.
    let out = engine
        .sql("SELECT service_name, count(*) FROM spans GROUP BY 1 ORDER BY 1")
        .await
        .unwrap();
    assert_eq!(out.schema.field(1).name(), "count(*)");
    assert_eq!(
        out.schema.field(1).data_type(),
        &arrow::datatypes::DataType::Int64
    );
    let mut got: BTreeMap<String, i64> = BTreeMap::new();
    for batch in &out.batches {
        let services =
            arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let services = services
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        let counts = batch
            .column(1)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        for (s, n) in services.iter().zip(counts.iter()) {
            got.insert(s.unwrap().to_string(), n.unwrap());
        }
    }
    assert_eq!(got, sent);
    let plan = explained(
        &engine,
        "SELECT service_name, count(*) FROM spans GROUP BY 1",
    )
    .await;
    assert!(plan.contains("sum(rows) AS rows"), "{plan}");

    // Other groupings, no grouping, several counts.
    for shape in [
        "SELECT COUNT AS n FROM spans",
        "SELECT kind, status_code, COUNT AS n FROM spans GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT name, service_name, COUNT AS n FROM spans GROUP BY name, service_name ORDER BY 2, 1",
        "SELECT status_code, COUNT AS a, COUNT AS b FROM spans GROUP BY 1 ORDER BY 1",
    ] {
        assert_same_counts(&engine, shape, true).await;
    }

    // A range holding hour 1 whole, half of hour 0 and the first minute of hour 2: hour 1's
    // part from its rollup (its spans all end before the range does), hour 0's part and the
    // memtable scanned and filtered.
    let from = START + HOUR / 2;
    let to = START + 2 * HOUR + 60_000_000_000;
    let ranged = format!(
        "SELECT service_name, COUNT AS n FROM spans \
         WHERE start_time_unix_nano >= {from} AND start_time_unix_nano < {to} \
         GROUP BY 1 ORDER BY 1"
    );
    assert_same_counts(&engine, &ranged, true).await;
    // A range inside one hour: no part lies wholly inside it.
    let narrow = format!(
        "SELECT COUNT AS n FROM spans WHERE start_time_unix_nano BETWEEN {from} AND {}",
        from + HOUR / 4
    );
    assert_same_counts(&engine, &narrow, false).await;

    // Filters on rolled-up columns are evaluated on the combinations.
    for shape in [
        "SELECT kind, COUNT AS n FROM spans WHERE service_name = 'cart' GROUP BY 1 ORDER BY 1",
        "SELECT COUNT AS n FROM spans WHERE status_code = 'error' AND name LIKE 'GET%'",
        &format!(
            "SELECT service_name, COUNT AS n FROM spans \
             WHERE start_time_unix_nano >= {from} AND start_time_unix_nano < {to} \
             AND (kind = 'server' OR upper(status_code) = 'ERROR') GROUP BY 1 ORDER BY 1"
        ),
    ] {
        assert_same_counts(&engine, shape, true).await;
    }

    // Not answerable from rollups, and still right: a filter on a column that is not rolled
    // up, a volatile filter, a grouping by a column that is not rolled up, DISTINCT.
    for shape in [
        "SELECT kind, COUNT AS n FROM spans WHERE flags = 1 GROUP BY 1 ORDER BY 1",
        "SELECT kind, COUNT AS n FROM spans WHERE random() < 2.0 GROUP BY 1 ORDER BY 1",
        "SELECT flags, COUNT AS n FROM spans GROUP BY 1 ORDER BY 1",
    ] {
        assert_same_counts(&engine, shape, false).await;
    }
    let distinct = "SELECT count(DISTINCT service_name) AS n FROM spans";
    assert!(
        !explained(&engine, distinct)
            .await
            .contains("sum(rows) AS rows")
    );
    assert!(
        table(&engine, distinct)
            .await
            .contains(&sent.len().to_string())
    );
}

#[tokio::test]
async fn metrics_and_logs_counts_come_from_rollups_too() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::engine(dir.path(), common::Layout::Split).await;
    for (star, rows) in [
        (
            "SELECT metric_name, metric_type, count(*) AS n FROM metrics GROUP BY 1, 2 ORDER BY 1, 2",
            "SELECT metric_name, metric_type, count(time_unix_nano) AS n FROM metrics GROUP BY 1, 2 ORDER BY 1, 2",
        ),
        (
            "SELECT service_name, severity_text, count(*) AS n FROM logs GROUP BY 1, 2 ORDER BY 1, 2",
            "SELECT service_name, severity_text, count(time_unix_nano) AS n FROM logs GROUP BY 1, 2 ORDER BY 1, 2",
        ),
    ] {
        assert_eq!(table(&engine, star).await, table(&engine, rows).await);
        let plan = explained(&engine, star).await;
        assert!(plan.contains("sum(rows) AS rows"), "{star}\n{plan}");
    }
}
