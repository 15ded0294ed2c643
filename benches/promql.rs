//! PromQL benchmark: 10,000 counter series and 500 histograms (10 buckets each) of 50 services,
//! one point every 15 s for a day (57.6 M counter points, 2.9 M histogram points), loaded
//! through the store as an SDK's cumulative points would be. Then, as Grafana asks for them
//! (a range query with about one step per pixel of a wide panel):
//!
//! - `sum by (job) (rate(bench_requests_total[5m]))` over the last hour (step 15 s) and the
//!   last day (step 90 s);
//! - `histogram_quantile(0.99, sum by (job, le) (rate(bench_latency_seconds_bucket[5m])))` over
//!   the last hour (step 15 s);
//!
//! each as p50 / p99 / max, next to a same-run baseline: the same samples read with a plain
//! SQL scan (`series_id, time_unix_nano, value` of the metric over the query's span), and
//! the first run apart (it also reads each series' labels, which the engine keeps).
//!
//! `cargo bench -p spyglass --bench promql` (`SPYGLASS_BENCH_RUNS`, default 20; the day-long
//! query runs a quarter as often). The loaded store is kept under
//! `$HOME/.cache/spyglass-bench/promql` and reused.

mod common;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use common::{env_usize, ms, now_nanos, percentiles};

use spyglass_query::model::{
    AttrValue, Attributes, KeyValue, MetricPoint, MetricType, NumberValue, PointValue, Resource,
    Scope, Temporality,
};
use spyglass_query::{QueryConfig, QueryEngine};
use spyglass_store::{Durability, Records, Signal, Store, StoreConfig};

const JOBS: usize = 50;
const INSTANCES: usize = 10;
const ROUTES: usize = 20;
const STEP_NANO: u64 = 15_000_000_000;
const DAY_POINTS: u64 = 24 * 3600 / 15;
const BOUNDS: [f64; 9] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: AttrValue::Str(value.into()),
    }
}

/// The points of every series at step `i` (time `t`).
fn points_at(
    i: u64,
    t: u64,
    resources: &[Arc<Resource>],
    routes: &[Attributes],
    scope: &Arc<Scope>,
) -> Vec<MetricPoint> {
    let point =
        |name: &str, unit: &str, resource: &Arc<Resource>, attributes, value, kind| MetricPoint {
            metric_name: name.into(),
            description: String::new(),
            unit: unit.into(),
            metric_type: kind,
            temporality: Temporality::Cumulative,
            is_monotonic: kind == MetricType::Sum,
            attributes,
            time_unix_nano: t,
            start_time_unix_nano: 0,
            flags: 0,
            value,
            exemplars: Vec::new(),
            resource: resource.clone(),
            scope: scope.clone(),
        };
    let mut out = Vec::with_capacity(resources.len() * (ROUTES + 1));
    for (r, resource) in resources.iter().enumerate() {
        for (k, route) in routes.iter().enumerate() {
            // Each series counts at its own pace, 1 to 13 a step.
            let pace = 1 + ((r * ROUTES + k) % 13) as i64;
            out.push(point(
                "bench.requests",
                "",
                resource,
                route.clone(),
                PointValue::Number(NumberValue::Int(i as i64 * pace)),
                MetricType::Sum,
            ));
        }
        // 20 observations a step, spread over the buckets by the series' own shape.
        let shape = (r % 5) as u64;
        let per_step: Vec<u64> = (0..=BOUNDS.len() as u64)
            .map(|b| if b <= 4 + shape { 2 } else { 1 })
            .collect();
        let count: u64 = per_step.iter().sum::<u64>() * i;
        out.push(point(
            "bench.latency",
            "s",
            resource,
            Attributes::default(),
            PointValue::Histogram {
                count,
                sum: Some(count as f64 * 0.08),
                min: None,
                max: None,
                bucket_counts: per_step.iter().map(|n| n * i).collect(),
                explicit_bounds: BOUNDS.to_vec(),
            },
            MetricType::Histogram,
        ));
    }
    out
}

/// Loads a day of points ending at the last whole step; returns the store and that end.
fn load(dir: &Path, runtime: &tokio::runtime::Runtime) -> (Store, u64) {
    let end_file = dir.join("end.txt");
    let config = StoreConfig {
        durability: Durability::None,
        ..StoreConfig::default()
    };
    if let Some(end) = std::fs::read_to_string(&end_file)
        .ok()
        .and_then(|t| t.trim().parse().ok())
    {
        let (store, _) = Store::open(dir, config).expect("open the cached store");
        eprintln!("reusing the store in {}", dir.display());
        return (store, end);
    }
    let _ = std::fs::remove_dir_all(dir);
    let (store, _) = Store::open(dir, config).expect("open store");
    let end = now_nanos() / STEP_NANO * STEP_NANO;
    let start = end - (DAY_POINTS - 1) * STEP_NANO;
    let resources: Vec<Arc<Resource>> = (0..JOBS)
        .flat_map(|j| {
            (0..INSTANCES).map(move |n| {
                Arc::new(Resource {
                    attributes: Attributes::new(vec![
                        kv("service.name", &format!("svc-{j:02}")),
                        kv("service.instance.id", &format!("{j:02}-{n}")),
                    ]),
                    ..Resource::default()
                })
            })
        })
        .collect();
    let routes: Vec<Attributes> = (0..ROUTES)
        .map(|k| Attributes::new(vec![kv("http.route", &format!("/api/r{k:02}"))]))
        .collect();
    let scope = Arc::new(Scope::default());
    let started = Instant::now();
    runtime.block_on(async {
        for i in 0..DAY_POINTS {
            let t = start + i * STEP_NANO;
            let points = points_at(i, t, &resources, &routes, &scope);
            store
                .append(&Records::Metrics(points))
                .await
                .expect("append");
            if store.memtable_bytes() > 400 << 20 {
                store.flush().await.expect("flush");
            }
            if i % 240 == 0 {
                eprintln!(
                    "      loaded {i}/{DAY_POINTS} steps ({:.0} s)",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        store.flush().await.expect("flush");
    });
    std::fs::write(&end_file, (end / 1_000_000).to_string()).expect("write the end");
    eprintln!(
        "loaded a day of points in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    (store, end / 1_000_000)
}

/// `mi_option_purge_delay` (`mimalloc.h`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // As `spyglass serve` does (src/main.rs): freed memory stays with the process for 10 s
    // instead of 10 ms, so a query's buffers reuse the pages the one before freed.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option of the allocator; no memory is touched.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10_000) };
    }
    let runs = env_usize("SPYGLASS_BENCH_RUNS", 20);
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    let dir = Path::new(&home).join(".cache/spyglass-bench/promql");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (store, end) = load(&dir, &runtime);
    let end = end as i64;
    store.warm_caches().expect("warm the part caches");
    let rows: u64 = store
        .snapshot()
        .parts(Signal::Metrics)
        .iter()
        .map(|p| p.meta().rows)
        .sum();
    eprintln!("{rows} stored points");
    let engine = QueryEngine::new(
        store.clone(),
        QueryConfig {
            promql_max_samples: 200_000_000,
            query_timeout_secs: 600,
            ..QueryConfig::default()
        },
    );
    let hour = 3_600_000i64;
    let day = 24 * hour;
    let rate = "sum by (job) (rate(bench_requests_total[5m]))";
    let quantile =
        "histogram_quantile(0.99, sum by (job, le) (rate(bench_latency_seconds_bucket[5m])))";
    let cases: [(&str, &str, i64, i64, usize, &str); 3] = [
        (
            "sum by (rate), 1 h, step 15 s",
            rate,
            hour,
            15_000,
            runs,
            "bench_requests_total",
        ),
        (
            "sum by (rate), 24 h, step 90 s",
            rate,
            day,
            90_000,
            runs.div_ceil(4),
            "bench_requests_total",
        ),
        (
            "histogram_quantile, 1 h, step 15 s",
            quantile,
            hour,
            15_000,
            runs,
            "bench_latency_seconds",
        ),
    ];
    let mut report = Vec::new();
    for (name, query, span, step, n, metric) in cases {
        let start = end - span;
        let run = || {
            let t = Instant::now();
            let series = runtime
                .block_on(engine.promql_range(query, start, end, step))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(series.len(), JOBS, "{name}: a series per job");
            t.elapsed()
        };
        eprintln!("{name}: {n} runs");
        // The first run also reads each series' labels, which the engine then keeps.
        let first = run();
        let figures = percentiles((0..n).map(|_| run()).collect());
        // Baseline: the same rows (the span plus the 5 m window before it) by SQL.
        let sql = format!(
            "SELECT series_id, time_unix_nano, value, bucket_counts FROM metrics \
             WHERE prometheus_name = '{metric}' AND time_unix_nano >= {} AND time_unix_nano <= {}",
            (start - 300_000) * 1_000_000,
            end * 1_000_000 + 999_999
        );
        let scan = || {
            let t = Instant::now();
            let out = runtime
                .block_on(engine.scan_rows(&sql))
                .expect("baseline scan");
            (t.elapsed(), out)
        };
        let (_, read) = scan();
        let baseline = percentiles((0..n.min(10)).map(|_| scan().0).collect());
        report.push((name, first, figures, baseline, read));
    }
    println!(
        "| query (10,000 series + 500 histograms, a day at 15 s) | p50 | p99 | max | first run | baseline: SQL scan of its rows, p50 / p99 | rows |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, first, f, b, read) in report {
        println!(
            "| {name} | {} | {} | {} | {} | {} / {} | {read} |",
            ms(f.p50),
            ms(f.p99),
            ms(f.max),
            ms(first),
            ms(b.p50),
            ms(b.p99)
        );
    }
}
