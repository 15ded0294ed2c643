//! UI benchmark, in headless Chromium: the trace view of a 10,000-span trace, from navigation
//! to the first full render (fetch, parse, waterfall drawn and painted), and scrolling its
//! waterfall top to bottom, next to a same-run baseline: fetching and parsing what the view
//! fetches first (the trace's tree, `?view=tree`) in the page without rendering it. The full
//! answer (attributes, events; fetched behind the first render) is timed too.
//!
//! `cargo bench -p spyglass --bench ui` (`SPYGLASS_BENCH_SPANS`, default 10000;
//! `SPYGLASS_BENCH_RUNS`, default 10). Needs Debian's `chromium` and `chromium-driver`.

#[path = "../tests/common/mod.rs"]
mod server;

use std::time::Duration;

use common::to_otlp;
use prost::Message;
use serde_json::{Value, json};
use server::browser::{browser, chromedriver};
use server::{free_port, get_json, start_server};
use spyglass_store::model::{SpanId, TraceId};
use spyglass_store::synth::SpanGenerator;

mod common;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One trace of `n` spans: the generator's traces joined under the first one's root.
fn giant_trace(n: usize) -> (TraceId, Vec<spyglass_store::model::Span>) {
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        - 60_000_000_000;
    let mut generator = SpanGenerator::new(7, start).with_trace_interval(1_000_000);
    let mut spans = generator.spans(n);
    spans.truncate(n);
    let trace_id = spans[0].trace_id;
    let root: SpanId = spans[0].span_id;
    let end = spans.iter().map(|s| s.end_time_unix_nano).max().unwrap();
    for (i, span) in spans.iter_mut().enumerate() {
        span.trace_id = trace_id;
        if i == 0 {
            span.end_time_unix_nano = end;
        } else if span.parent_span_id.is_none() {
            span.parent_span_id = Some(root);
        }
    }
    (trace_id, spans)
}

fn percentiles(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

const SCROLL: &str = r#"
const done = arguments[arguments.length - 1];
const box = document.querySelector('.waterfall');
const frames = [];
let last = performance.now();
const step = Math.max(box.clientHeight, 200);
function tick(now) {
  frames.push(now - last);
  last = now;
  if (box.scrollTop + box.clientHeight >= box.scrollHeight - 1) {
    done({frames, rows: document.querySelectorAll('.wf-row').length, height: box.scrollHeight});
    return;
  }
  box.scrollTop += step;
  requestAnimationFrame(tick);
}
requestAnimationFrame((now) => { last = now; box.scrollTop += step; requestAnimationFrame(tick); });
"#;

const FETCH_ONLY: &str = r#"
const done = arguments[arguments.length - 1];
const t0 = performance.now();
fetch(arguments[0]).then((r) => r.json()).then((trace) => done({ms: performance.now() - t0, spans: trace.spans.length}));
"#;

fn main() {
    let spans_wanted = env_usize("SPYGLASS_BENCH_SPANS", 10_000);
    let runs = env_usize("SPYGLASS_BENCH_RUNS", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = start_server().await;
        let (trace_id, spans) = giant_trace(spans_wanted);
        let body = to_otlp(&spans).encode_to_vec();
        eprintln!(
            "sending one trace of {} spans ({} KB of OTLP)",
            spans.len(),
            body.len() / 1024
        );
        let response = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/v1/traces", server.http))
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "export accepted");
        let id = trace_id.to_hex();
        let (status, trace) = get_json(server.ui, &format!("/api/v1/traces/{id}")).await;
        assert_eq!(status, 200);
        let stored = trace["spans"].as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(stored, spans.len(), "the whole trace is served");
        // The server's part: the API's answer read whole by a Rust client.
        let mut api = Vec::new();
        for _ in 0..runs.max(3) {
            let t = std::time::Instant::now();
            let bytes = reqwest::get(format!("http://127.0.0.1:{}/api/v1/traces/{id}", server.ui))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            api.push(t.elapsed().as_secs_f64() * 1e3);
            eprintln!("API answer: {} KB in {:.0} ms", bytes.len() / 1024, api.last().unwrap());
        }

        let driver_port = free_port();
        let _driver = chromedriver(driver_port);
        let profile = tempfile::tempdir().unwrap();
        let client = browser(driver_port, profile.path()).await;
        let base = format!("http://127.0.0.1:{}", server.ui);

        let mut baseline = Vec::new();
        let mut full = Vec::new();
        let mut render = Vec::new();
        let mut frames = Vec::new();
        let mut scroll_total = Vec::new();
        for run in 0..=runs {
            // A fresh page load each time: nothing is cached in the page.
            client.goto(&format!("{base}/services")).await.unwrap();
            let fetched = client
                .execute_async(FETCH_ONLY, vec![json!(format!("/api/v1/traces/{id}?view=tree"))])
                .await
                .unwrap();
            let fetched_full = client
                .execute_async(FETCH_ONLY, vec![json!(format!("/api/v1/traces/{id}"))])
                .await
                .unwrap();
            client.goto(&format!("{base}/trace/{id}")).await.unwrap();
            let painted = loop {
                let v = client
                    .execute(
                        "const m = performance.getEntriesByName('spyglass.trace.painted'); \
                         return m.length ? m[0].startTime : null;",
                        vec![],
                    )
                    .await
                    .unwrap();
                if let Some(ms) = v.as_f64() {
                    break ms;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            let scrolled: Value = client.execute_async(SCROLL, vec![]).await.unwrap();
            let f: Vec<f64> = scrolled["frames"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_f64)
                .collect();
            eprintln!(
                "run {run}: fetch+parse {:.0} ms, first full render {painted:.0} ms, scroll {} frames, {} rows in the DOM",
                fetched["ms"].as_f64().unwrap_or(0.0),
                f.len(),
                scrolled["rows"]
            );
            if run == 0 {
                continue; // warm-up: the server's caches and the browser's code cache
            }
            baseline.push(fetched["ms"].as_f64().unwrap());
            full.push(fetched_full["ms"].as_f64().unwrap());
            render.push(painted);
            scroll_total.push(f.iter().sum::<f64>());
            frames.extend(f);
        }
        client.close().await.unwrap();

        let (b50, b99) = percentiles(baseline);
        let (r50, r99) = percentiles(render);
        let (f50, f99) = percentiles(frames);
        let (s50, s99) = percentiles(scroll_total);
        let (a50, a99) = percentiles(api);
        let (u50, u99) = percentiles(full);
        println!("| measure ({} spans, {runs} runs) | p50 | p99 | target |", spans.len());
        println!("|---|---|---|---|");
        println!("| trace view: navigation to first full render | {r50:.0} ms | {r99:.0} ms | ≤ 500 ms |");
        println!("| scroll the waterfall top to bottom, per frame | {f50:.1} ms | {f99:.1} ms | |");
        println!("| scroll the waterfall top to bottom, total | {s50:.0} ms | {s99:.0} ms | |");
        println!("| baseline: fetch + JSON.parse of the trace's tree in the page | {b50:.0} ms | {b99:.0} ms | |");
        println!("| the full answer (attributes, events; loaded behind the view): fetch + parse | {u50:.0} ms | {u99:.0} ms | |");
        println!("| of which the server: the full answer read by a Rust client | {a50:.0} ms | {a99:.0} ms | |");
    });
}
