//! Query benchmark: 10 million synthetic spans (the store benchmark's generator with common
//! values: most spans in frontend, checkout and cart, `http.route` one of five values, a
//! `shop.tenant` of five on every span, traces of 3–12 spans and 1–30 ms; spread over three
//! hours, loaded through the store with the span metrics ingest would write), then trace by id
//! without a time range; searches for the newest 20 over 1 h: a rare one (service + route + at least
//! 15 ms), service only, service + common attribute + more than 10 ms; errors over the whole
//! range; the services list over 1 h and `SELECT service_name, count(*) FROM spans GROUP BY 1`,
//! each as p50 / p99 / max over repeated runs, next to a same-run baseline: one full scan of
//! `spans`. Then trace by id and two of the searches again, on a copy of the store given 48
//! small parts in its newest hour, while `Store::compact` merges parts in the background.
//!
//! `cargo bench -p spyglass --bench query` (`SPYGLASS_BENCH_SPANS`, default 10000000;
//! `SPYGLASS_BENCH_RUNS`, default 200, so that two runs lie above the p99 and it is not simply
//! the slowest run; a slow query runs for a minute instead, at least 20 times); `-- explain`
//! also prints each SQL measure's `EXPLAIN ANALYZE`. The loaded store is kept under
//! `$HOME/.cache/spyglass-bench/` and reused while its span count matches.

mod common;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Figures, env_usize, ms, now_nanos, percentiles};

use spyglass_ingest::SpanMetrics;
use spyglass_query::model::TraceId;
use spyglass_query::{QueryConfig, QueryEngine, TraceSearch};
use spyglass_store::synth::SpanGenerator;
use spyglass_store::{Durability, Records, Signal, Store, StoreConfig};

const HOUR: u64 = 3_600_000_000_000;
/// Three hours of traces for the default 10 M spans (~1.33 M traces of 3–12 spans).
const TRACE_INTERVAL_NANO: u64 = 8_100_000;
/// Span metrics are written every minute of span time.
const METRICS_INTERVAL_NANO: u64 = 60_000_000_000;
/// Small parts added to the copy that is compacted while queries run, and their spans each.
const SMALL_PARTS: usize = 48;
const SMALL_PART_SPANS: usize = 20_000;

fn store_config() -> StoreConfig {
    StoreConfig {
        durability: Durability::None,
        ..StoreConfig::default()
    }
}

/// Loads `spans` spans ending about now; returns the store and some trace ids to look up.
fn load(dir: &PathBuf, spans: usize, runtime: &tokio::runtime::Runtime) -> (Store, Vec<TraceId>) {
    let ids_file = dir.join("trace-ids.txt");
    if let Ok(text) = std::fs::read_to_string(&ids_file) {
        let (store, _) = Store::open(dir, store_config()).expect("open the cached store");
        let stored: u64 = store
            .snapshot()
            .parts(Signal::Spans)
            .iter()
            .map(|p| p.meta().rows)
            .sum();
        if stored >= spans as u64 {
            let ids = text.lines().filter_map(TraceId::from_hex).collect();
            eprintln!("reusing the store in {} ({stored} spans)", dir.display());
            return (store, ids);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    let (store, _) = Store::open(dir, store_config()).expect("open store");
    let traces_estimate = (spans * 2 / 15) as u64;
    let start = now_nanos().saturating_sub(traces_estimate * TRACE_INTERVAL_NANO);
    let mut generator = SpanGenerator::new(42, start)
        .with_trace_interval(TRACE_INTERVAL_NANO)
        .with_common_values();
    let metrics = SpanMetrics::new(Duration::from_secs(10), 100_000, start);
    let mut ids = Vec::new();
    let mut loaded = 0;
    let mut next_metrics_at = start + METRICS_INTERVAL_NANO;
    let started = Instant::now();
    runtime.block_on(async {
        while loaded < spans {
            let batch = generator.spans(2_000);
            let last_start = batch
                .iter()
                .map(|s| s.start_time_unix_nano)
                .max()
                .unwrap_or(start);
            if ids.len() < 10_000 && loaded % 20_000 < 2_000 {
                ids.push(batch[0].trace_id);
            }
            metrics.record(&batch, Instant::now());
            loaded += batch.len();
            store.append(&Records::Spans(batch)).await.expect("append");
            if last_start >= next_metrics_at {
                let points = metrics.points(Instant::now(), last_start);
                store
                    .append(&Records::Metrics(points))
                    .await
                    .expect("append metrics");
                next_metrics_at = last_start + METRICS_INTERVAL_NANO;
            }
            if store.memtable_bytes() > 400 << 20 {
                store.flush().await.expect("flush");
            }
            if loaded % 500_000 < 2_000 {
                eprintln!(
                    "      loaded {loaded}/{spans} spans ({:.0} s)",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        store.flush().await.expect("flush");
    });
    let text: String = ids.iter().map(|id| format!("{}\n", id.to_hex())).collect();
    std::fs::write(&ids_file, text).expect("write trace ids");
    eprintln!(
        "loaded {loaded} spans in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    (store, ids)
}

fn main() {
    let spans = env_usize("SPYGLASS_BENCH_SPANS", 10_000_000);
    let runs = env_usize("SPYGLASS_BENCH_RUNS", 200);
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    let dir = PathBuf::from(home)
        .join(".cache/spyglass-bench")
        .join(format!("query-common3h-{spans}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (store, ids) = load(&dir, spans, &runtime);
    // As `spyglass serve` does at start: every part's index and footer opened ahead of queries.
    store.warm_caches().expect("warm the part caches");
    let snapshot = store.snapshot();
    let parts = snapshot.parts(Signal::Spans);
    let stored: u64 = parts.iter().map(|p| p.meta().rows).sum();
    let newest = parts
        .iter()
        .map(|p| p.meta().max_time_unix_nano)
        .max()
        .unwrap_or(0);
    let engine = QueryEngine::new(store.clone(), QueryConfig::default());

    // `runs` runs, or as many as fit in a minute when a query is slow (at least 20).
    let measured = |name: &str, f: &mut dyn FnMut(usize) -> Duration| {
        eprintln!("{name}: up to {runs} runs");
        f(0); // warm the caches once
        let started = Instant::now();
        let mut times = Vec::new();
        while times.len() < runs
            && (times.len() < 20 || started.elapsed() < Duration::from_secs(60))
        {
            times.push(f(times.len() + 1));
        }
        eprintln!("{name}: {} runs", times.len());
        percentiles(times)
    };
    let by_id_on = |engine: &QueryEngine, i: usize| {
        let id = ids[(i * 7919) % ids.len()];
        let t = Instant::now();
        let trace = runtime.block_on(engine.trace(id)).expect("trace found");
        assert!(trace.spans.len() >= 3);
        t.elapsed()
    };
    let trace_by_id = measured("trace by id", &mut |i| by_id_on(&engine, i));
    let search_on = |engine: &QueryEngine, name: &str, query: &TraceSearch| {
        let t = Instant::now();
        let page = runtime
            .block_on(engine.search(query.clone()))
            .expect("search");
        assert_eq!(page.traces.len(), 20, "{name}: 20 traces");
        t.elapsed()
    };

    let last_hour = |search: TraceSearch| TraceSearch {
        start_unix_nano: Some(newest - HOUR),
        end_unix_nano: Some(newest),
        limit: 20,
        ..search
    };
    let searches = [
        (
            "search: service + route + at least 15 ms, 1 h, newest 20 (rare)",
            last_hour(TraceSearch {
                service: Some("checkout".into()),
                attributes: vec![("http.route".into(), "/api/checkout".into())],
                min_duration_nano: Some(15_000_000),
                ..Default::default()
            }),
            "≤ 60 ms",
        ),
        (
            "search: service only, 1 h, newest 20",
            last_hour(TraceSearch {
                service: Some("checkout".into()),
                ..Default::default()
            }),
            "≤ 30 ms",
        ),
        (
            "search: service + common attribute + more than 10 ms, 1 h, newest 20",
            last_hour(TraceSearch {
                service: Some("checkout".into()),
                attributes: vec![("shop.tenant".into(), "tenant-1".into())],
                min_duration_nano: Some(10_000_001),
                ..Default::default()
            }),
            "≤ 60 ms",
        ),
        (
            "search: errors over the whole range, newest 20",
            TraceSearch {
                errors_only: true,
                limit: 20,
                ..Default::default()
            },
            "",
        ),
        (
            "search: service only, 1 h, newest 20 and a sample of 1,000 of every match",
            last_hour(TraceSearch {
                service: Some("checkout".into()),
                sample: 1_000,
                ..Default::default()
            }),
            "",
        ),
    ];
    let mut search_figures = Vec::new();
    for (name, query, target) in &searches {
        let mut search = |_| search_on(&engine, name, query);
        search_figures.push((*name, measured(name, &mut search), *target));
    }

    // The services list over the last hour, timed, on `engine`.
    let services_on = |engine: &QueryEngine| {
        let t = Instant::now();
        let services = runtime
            .block_on(engine.services(newest - HOUR, newest))
            .expect("services");
        assert_eq!(services.len(), spyglass_store::synth::SERVICES.len());
        t.elapsed()
    };
    let services = measured("services list", &mut |_| services_on(&engine));
    // The same on an engine that keeps no decoded points between queries, and the first query
    // of a fresh engine (every part's points decoded).
    let uncached = QueryEngine::new(
        store.clone(),
        QueryConfig {
            span_metrics_cache_bytes: 0,
            ..QueryConfig::default()
        },
    );
    let services_uncached = measured("services list, nothing kept", &mut |_| {
        services_on(&uncached)
    });
    let services_first = measured("services list, fresh engine", &mut |_| {
        services_on(&QueryEngine::new(store.clone(), QueryConfig::default()))
    });

    let mut count = |_| {
        let t = Instant::now();
        let out = runtime
            .block_on(engine.sql("SELECT service_name, count(*) FROM spans GROUP BY 1"))
            .expect("sql");
        assert_eq!(out.rows, spyglass_store::synth::SERVICES.len());
        t.elapsed()
    };
    let count = measured("count per service", &mut count);

    if std::env::args().any(|a| a == "explain") {
        for sql in [
            "SELECT service_name, count(*) FROM spans GROUP BY 1",
            "SELECT count(name) FROM spans WHERE strpos(name, 'no such name') > 0",
        ] {
            let out = runtime
                .block_on(engine.sql(&format!("EXPLAIN ANALYZE {sql}")))
                .expect("explain");
            eprintln!("{}", out.to_table().expect("render the plan"));
        }
    }

    let scan = |_| {
        let t = Instant::now();
        let out = runtime
            .block_on(
                engine.sql("SELECT count(name) FROM spans WHERE strpos(name, 'no such name') > 0"),
            )
            .expect("sql");
        assert_eq!(out.rows, 1);
        t.elapsed()
    };
    let baseline_runs = runs.min(10);
    eprintln!("baseline: full scan, {baseline_runs} runs");
    scan(0);
    let baseline = percentiles((0..baseline_runs).map(|i| scan(i + 1)).collect());

    // Again while a compaction runs: a copy of the store (opened as after a restart) gets small
    // parts in its newest hour, one flush each, and is compacted in the background until
    // nothing is left to merge, while trace by id and two searches take turns.
    let copy = dir.with_extension("compacting");
    let _ = std::fs::remove_dir_all(&copy);
    copy_dir(&dir, &copy);
    let (busy, _) = Store::open(&copy, store_config()).expect("open the copy");
    busy.warm_caches().expect("warm the copy's caches");
    runtime.block_on(async {
        let mut generator = SpanGenerator::new(7, newest - HOUR / 2)
            .with_trace_interval(TRACE_INTERVAL_NANO)
            .with_common_values();
        for _ in 0..SMALL_PARTS {
            let spans = generator.spans(SMALL_PART_SPANS);
            busy.append(&Records::Spans(spans)).await.expect("append");
            busy.flush().await.expect("flush");
        }
    });
    let parts_before = busy.snapshot().parts(Signal::Spans).len();
    let busy_engine = QueryEngine::new(busy.clone(), QueryConfig::default());
    let compaction = runtime.spawn({
        let busy = busy.clone();
        async move {
            let started = Instant::now();
            let mut merged = 0;
            loop {
                match busy.compact().await.expect("compact") {
                    0 => break,
                    n => merged += n,
                }
            }
            (merged, started.elapsed())
        }
    });
    eprintln!("while compacting {parts_before} parts: trace by id and two searches in turn");
    let (mut by_id_busy, mut searches_busy) = (Vec::new(), [Vec::new(), Vec::new()]);
    let busy_searches = [&searches[1], &searches[2]];
    // At least one round, however soon the compaction ends.
    loop {
        by_id_busy.push(by_id_on(&busy_engine, by_id_busy.len()));
        for (times, (name, query, _)) in searches_busy.iter_mut().zip(busy_searches) {
            times.push(search_on(&busy_engine, name, query));
        }
        if compaction.is_finished() {
            break;
        }
    }
    let (merged, compaction_time) = runtime.block_on(compaction).expect("compaction task");
    let parts_after = busy.snapshot().parts(Signal::Spans).len();
    let busy_runs = by_id_busy.len();
    drop((busy_engine, busy));
    let _ = std::fs::remove_dir_all(&copy);

    println!("| measure | p50 | p99 | max | target (p99) |");
    println!("|---|---|---|---|---|");
    println!("| spans stored | {stored} in {} parts | | | |", parts.len());
    let row = |name: &str, f: &Figures, target: &str| {
        println!(
            "| {name} | {} | {} | {} | {target} |",
            ms(f.p50),
            ms(f.p99),
            ms(f.max)
        );
    };
    row("trace by id, no time range", &trace_by_id, "≤ 30 ms");
    for (name, figures, target) in &search_figures {
        row(name, figures, target);
    }
    row("services list, 1 h", &services, "≤ 50 ms");
    row(
        "services list, 1 h, nothing kept between queries",
        &services_uncached,
        "",
    );
    row(
        "services list, 1 h, first query of a fresh engine",
        &services_first,
        "",
    );
    row(
        "SELECT service_name, count(*) FROM spans GROUP BY 1",
        &count,
        "≤ 50 ms",
    );
    row(
        "baseline: full scan of spans (name column, every row)",
        &baseline,
        "",
    );
    println!(
        "| while compacting: {parts_before} parts became {parts_after} in {:.1} s ({merged} parts merged, some twice), {busy_runs} runs each | | | | |",
        compaction_time.as_secs_f64()
    );
    row(
        "trace by id, while compacting",
        &percentiles(by_id_busy),
        "≤ 30 ms",
    );
    for (times, (name, _, target)) in searches_busy.into_iter().zip(busy_searches) {
        row(
            &format!("{name}, while compacting"),
            &percentiles(times),
            target,
        );
    }
}

/// Copies a store's directory (its parts never change; the copy is compacted on its own).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("list the store") {
        let entry = entry.expect("list the store");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a store file");
        }
    }
}
