//! The web UI where an engineer investigates, in a real headless Chromium against `spyglass
//! serve` fed by the Rust OpenTelemetry SDK: bad input marked at its field, the search (sort,
//! operations, quoted attributes, the scatter's time labels), links that keep the time range,
//! the trace view (logs, event marks, keys, zoom, a narrow window, JSON download and upload),
//! older logs, and the page of a database that sends nothing itself. Pages are saved as PNGs
//! under `target/ui-screenshots/`.

mod common;

use std::time::{Duration, SystemTime};

use common::browser::Ui;
use common::{
    checkout, get_json, logger_provider, provider, sql, start_server, start_server_with, within,
};
use fantoccini::Locator;
use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use fantoccini::key::Key;
use opentelemetry::KeyValue;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{Span as _, SpanId, SpanKind, TraceId, Tracer, TracerProvider};
use serde_json::json;

/// The `name`s of the fields marked wrong, sorted.
async fn marked(ui: &Ui) -> Vec<String> {
    let names = ui
        .script("return [...document.querySelectorAll('.invalid')].map((e) => e.name).sort();")
        .await;
    serde_json::from_value(names).unwrap()
}

async fn texts(ui: &Ui, css: &str) -> Vec<String> {
    let script =
        format!("return [...document.querySelectorAll({css:?})].map((e) => e.textContent.trim());");
    serde_json::from_value(ui.script(&script).await).unwrap()
}

async fn url(ui: &Ui) -> String {
    ui.client.current_url().await.unwrap().to_string()
}

/// Waits until the browser's URL satisfies `check`; answers it.
async fn wait_url(ui: &Ui, what: &str, check: impl Fn(&str) -> bool) -> String {
    let started = std::time::Instant::now();
    loop {
        let now = url(ui).await;
        if check(&now) {
            return now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the URL never had {what}: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Bad search parameters are each marked beside their field, with the form kept; the API names
/// every bad parameter at once. On the Compare page a problem is named at its side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_marked_at_each_field_and_the_page_stays() {
    let server = start_server().await;
    let (frontend, payments) = (
        provider("frontend", server.grpc),
        provider("payments", server.grpc),
    );
    let stored = checkout(&frontend.tracer("shop"), &payments.tracer("shop"), false);
    for p in [&frontend, &payments] {
        p.force_flush().unwrap();
    }

    let (status, body) = get_json(
        server.ui,
        "/api/v1/traces?status=bogus&start=yesterday&min_duration=5parsecs",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let mut named: Vec<&str> = body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["parameter"].as_str().unwrap())
        .collect();
    named.sort();
    assert_eq!(named, ["min_duration", "start", "status"], "{body}");

    let (ui, _driver, _profile) = Ui::start(&server).await;
    ui.open("/search?status=bogus&start=yesterday&min=5parsecs")
        .await;
    let notice = ui.wait_text(".notice.error", "Fix the marked fields").await;
    assert_eq!(ui.count("form.search-form").await, 1, "the form stays");
    assert_eq!(marked(&ui).await, ["min", "start", "status"]);
    let problems = texts(&ui, ".field-problem").await;
    assert_eq!(problems.len(), 3, "{problems:?}");
    for (field, words) in [
        ("Status", "the only value is error"),
        ("Start", "\"yesterday\""),
        ("Min duration", "parsecs"),
    ] {
        assert!(
            notice
                .lines()
                .any(|l| l.starts_with(field) && l.contains(words)),
            "{field}: {words} in {notice}"
        );
    }
    // The browser logs each 400 answer as a failed load: only the picture is kept.
    ui.shot("search-problems").await;
    // Mending a field clears its mark.
    ui.element("select[name=status]")
        .await
        .select_by_value("")
        .await
        .unwrap();
    assert_eq!(marked(&ui).await, ["min", "start"]);

    ui.open(&format!("/compare?a={stored}&b=deadbeef")).await;
    let notice = ui.wait_text(".notice.error", "Second trace").await;
    assert!(
        notice.contains("no span of trace deadbeef is stored"),
        "the id as typed: {notice}"
    );
    assert!(!notice.contains("First trace"), "{notice}");
    assert_eq!(marked(&ui).await, ["b"]);
    ui.open("/compare?a=xyz&b=deadbeef").await;
    let notice = ui.wait_text(".notice.error", "First trace").await;
    assert!(notice.contains("“xyz” is not a trace id"), "{notice}");
    assert_eq!(marked(&ui).await, ["a", "b"]);
    ui.shot("compare-problems").await;
    for p in [frontend, payments] {
        p.shutdown().unwrap();
    }
}

/// A first span's service is on the Services page at once, even with span metrics written
/// once a minute. The search sorts what it loaded, lists the service's operations, takes
/// attribute values with spaces, and labels the scatter's times each once; the service page's
/// links keep the range; a service is silent by its own rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_sorts_lists_operations_and_takes_quoted_attributes() {
    let server = start_server_with(
        tempfile::tempdir().unwrap(),
        "[ingest]\nspan_metrics_interval_secs = 60\nservice_graph_wait_secs = 1\n",
        &[],
    )
    .await;
    let (ui, _driver, _profile) = Ui::start(&server).await;
    ui.open("/services").await;
    ui.wait_text("main", "No service has reported spans").await;

    let shop = provider("shop", server.grpc);
    let tracer = shop.tracer("shop");
    let now = SystemTime::now();
    let span = |i: u64| {
        let start = now - Duration::from_secs(300 - i * 20);
        let millis = [12, 48, 7, 33, 60, 21, 5, 54, 27, 40, 16, 9][i as usize];
        let tier = if i.is_multiple_of(3) {
            "gold member"
        } else {
            "basic"
        };
        let mut span = tracer
            .span_builder(if i.is_multiple_of(2) {
                "GET /cart"
            } else {
                "POST /checkout"
            })
            .with_kind(SpanKind::Server)
            .with_start_time(start)
            .with_attributes(vec![KeyValue::new("customer.tier", tier)])
            .start(&tracer);
        span.end_with_timestamp(start + Duration::from_millis(millis));
    };
    span(0);
    shop.force_flush().unwrap();
    let listed = within(Duration::from_secs(10), || async {
        ui.open("/services").await;
        ui.element("main table, main .notice").await;
        texts(&ui, "main table td a")
            .await
            .iter()
            .any(|t| t == "shop")
    })
    .await;
    assert!(
        listed.is_some(),
        "the Services page lists a first span's service at once"
    );
    ui.done("services-first-span").await;

    for i in 1..12 {
        span(i);
    }
    shop.force_flush().unwrap();
    within(Duration::from_secs(20), || async {
        let (_, found) = get_json(server.ui, "/api/v1/traces?service=shop&limit=50").await;
        found["traces"].as_array().is_some_and(|t| t.len() == 12)
    })
    .await
    .expect("the 12 traces are stored");
    within(Duration::from_secs(20), || async {
        let (_, found) = get_json(server.ui, "/api/v1/services/shop/operations").await;
        found["operations"].as_array().is_some_and(|o| o.len() == 2)
    })
    .await
    .expect("span metrics name both operations");

    ui.open("/search?service=shop&range=1h").await;
    ui.wait_text(".result-count", "12 traces").await;
    let operations = texts(&ui, "select[name=operation] option").await;
    assert!(
        operations.contains(&"GET /cart".to_string())
            && operations.contains(&"POST /checkout".to_string()),
        "the service's operations are a list: {operations:?}"
    );
    // The scatter's time labels each say another time.
    let labels = texts(&ui, "svg.scatter text.axis[text-anchor=middle]").await;
    let mut unique = labels.clone();
    unique.dedup();
    assert!(labels.len() >= 2 && unique == labels, "{labels:?}");

    // Five traces loaded: the scatter draws them large and every match of the range small.
    ui.open("/search?service=shop&range=1h&limit=5").await;
    ui.wait_text(".result-count", "5 traces").await;
    let caption = ui
        .wait_text("figure.chart-box figcaption", "about 12 matching traces")
        .await;
    assert!(caption.contains("the 5 loaded"), "{caption}");
    assert_eq!(ui.count("svg.scatter circle.dot").await, 5);
    assert_eq!(ui.count("svg.scatter circle.sample").await, 12);
    ui.done("search-sample").await;
    ui.open("/search?service=shop&range=1h").await;
    ui.wait_text(".result-count", "12 traces").await;

    ui.element("select[name=sort]")
        .await
        .select_by_value("longest")
        .await
        .unwrap();
    ui.wait_text(".result-count", "longest first").await;
    let durations = texts(&ui, "table.traces tbody td:nth-child(3)").await;
    let millis: Vec<f64> = durations
        .iter()
        .map(|d| d.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(millis.len(), 12, "{durations:?}");
    assert!(
        millis.windows(2).all(|w| w[0] >= w[1]),
        "longest first: {millis:?}"
    );
    assert_eq!(millis[0], 60.0);
    assert!(url(&ui).await.contains("sort=longest"));
    ui.done("search-sorted").await;

    let attr = ui.element("input[name=attr]").await;
    attr.send_keys("customer.tier=\"gold member\"\n")
        .await
        .unwrap();
    ui.wait_text(".result-count", "4 traces").await;
    assert!(
        url(&ui).await.contains("attr=customer.tier%3Dgold+member"),
        "{}",
        url(&ui).await
    );
    let kept = ui
        .script("return document.querySelector('input[name=attr]').value;")
        .await;
    assert_eq!(kept, json!("customer.tier=\"gold member\""));

    ui.open("/services/shop?range=6h").await;
    ui.wait_text("main a", "Search its traces").await;
    for (text, path) in [
        ("Search its traces", "/search?service=shop&range=6h"),
        ("Its logs", "/logs?service=shop&range=6h"),
    ] {
        let href = ui
            .client
            .find(Locator::LinkText(text))
            .await
            .unwrap()
            .attr("href")
            .await
            .unwrap();
        assert_eq!(href.as_deref(), Some(path), "{text}");
    }

    // Silence is judged by the service's own rate.
    let silent = ui
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             import('/assets/js/services.js').then(({ isSilent }) => {
               const newest = 1_800_000_000_000;
               const at = (ms) => String((newest - ms) * 1e6);
               done([
                 isSilent({ rate_per_sec: 10, last_seen_unix_nano: at(10_000) }, newest),
                 isSilent({ rate_per_sec: 10, last_seen_unix_nano: at(5_000) }, newest),
                 isSilent({ rate_per_sec: 1 / 60, last_seen_unix_nano: at(300_000) }, newest),
                 isSilent({ rate_per_sec: 1 / 60, last_seen_unix_nano: at(1_500_000) }, newest),
               ]);
             });",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        silent,
        json!([true, false, false, true]),
        "10/s: silent after 10 s, not 5 s; 1/min: not after 5 min, after 25 min"
    );
    shop.shutdown().unwrap();
}

/// Presses `keys` on the span rows (found again when the page was drawn anew meanwhile).
async fn press(ui: &Ui, keys: &str) {
    for _ in 0..50 {
        match ui.element(".waterfall").await.send_keys(keys).await {
            Ok(()) => return,
            Err(e) if e.is_stale_element_reference() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("pressing {keys:?}: {e}"),
        }
    }
    panic!("the span rows went stale 50 times");
}

/// An attribute of the first element matching `css`, read in the page (no stale handle).
async fn attribute(ui: &Ui, css: &str, name: &str) -> Option<String> {
    ui.element(css).await;
    let script = format!("return document.querySelector({css:?}).getAttribute({name:?});");
    serde_json::from_value(ui.script(&script).await).unwrap()
}

fn span_param(url: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "span")
        .map(|(_, v)| v.into_owned())
}

/// The trace view: its logs and a span's, the exception marked on its bar, keys to move between
/// spans, zoom from the overview, a narrow window, JSON download and upload. The logs page
/// pages back past 200 records, and the database the shop calls has a page of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_view_links_logs_marks_events_zooms_moves_by_keys_and_opens_files() {
    let server = start_server().await;
    let (frontend, payments) = (
        provider("frontend", server.grpc),
        provider("payments", server.grpc),
    );
    let (ft, pt) = (frontend.tracer("shop"), payments.tracer("shop"));
    let declined = checkout(&ft, &pt, true);
    checkout(&ft, &pt, false);
    for p in [&frontend, &payments] {
        p.force_flush().unwrap();
    }
    let path = format!("/api/v1/traces/{declined}");
    within(Duration::from_secs(20), || async {
        let (status, body) = get_json(server.ui, &path).await;
        status == 200 && body["spans"].as_array().is_some_and(|s| s.len() == 3)
    })
    .await
    .expect("the declined checkout is stored");
    let (_, trace) = get_json(server.ui, &path).await;
    let charge = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service_name"] == "payments")
        .unwrap()["span_id"]
        .as_str()
        .unwrap()
        .to_string();

    // 250 log records of payments, three of them of the failed charge.
    let loggers = logger_provider("payments", server.grpc);
    let logger = loggers.logger("shop");
    for i in 0..250 {
        let mut record = logger.create_log_record();
        record.set_severity_number(Severity::Info);
        record.set_severity_text("INFO");
        record.set_body(AnyValue::from(format!("charge attempt {i}")));
        if i % 100 == 7 {
            record.set_trace_context(
                TraceId::from_hex(&declined).unwrap(),
                SpanId::from_hex(&charge).unwrap(),
                None,
            );
        }
        logger.emit(record);
    }
    loggers.force_flush().unwrap();
    within(Duration::from_secs(20), || async {
        sql(server.ui, "SELECT count(*) AS n FROM logs").await["rows"][0]["n"] == 250
    })
    .await
    .expect("the 250 records are stored");

    let (ui, _driver, profile) = Ui::start(&server).await;
    ui.open(&format!("/trace/{declined}")).await;
    ui.wait_text(".wf-row", "payments").await;
    ui.element(".wf-event.exception").await;
    let logs = attribute(&ui, ".toolbar a[href^='/logs']", "href").await;
    assert_eq!(logs, Some(format!("/logs?trace_id={declined}")));

    // Download: the whole trace as a file.
    let href = attribute(&ui, "a[download]", "href").await.unwrap();
    let file = reqwest::get(format!("{}{href}", ui.base)).await.unwrap();
    let disposition = file.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.contains(&format!("trace-{declined}.json")),
        "{disposition}"
    );
    let downloaded = profile.path().join(format!("trace-{declined}.json"));
    std::fs::write(&downloaded, file.bytes().await.unwrap()).unwrap();

    // Keys: ↓ moves to the next span and the rows keep the focus; Esc unselects.
    let rows = ui
        .script("return [...document.querySelectorAll('.wf-row')].map((r) => r.dataset.span);")
        .await;
    let rows: Vec<String> = serde_json::from_value(rows).unwrap();
    assert_eq!(rows.len(), 3);
    ui.click(".wf-row").await;
    wait_url(&ui, "the first span", |u| {
        span_param(u).as_deref() == Some(&rows[0])
    })
    .await;
    press(&ui, &Key::Down.to_string()).await;
    wait_url(&ui, "the second span", |u| {
        span_param(u).as_deref() == Some(&rows[1])
    })
    .await;
    ui.element("aside.detail").await;
    let focused = ui
        .script("return document.activeElement.classList.contains('waterfall');")
        .await;
    assert_eq!(focused, json!(true), "the rows keep the focus");
    press(&ui, "j").await;
    wait_url(&ui, "the third span", |u| {
        span_param(u).as_deref() == Some(&rows[2])
    })
    .await;
    press(&ui, &Key::Escape.to_string()).await;
    wait_url(&ui, "no span", |u| span_param(u).is_none()).await;

    // Zoom: a drag across the right half of the overview.
    for attempt in 0.. {
        // The overview is drawn again as the page settles: a stale element is looked up anew.
        let minimap = ui.element(".minimap").await;
        let width = match minimap.rectangle().await {
            Ok((_, _, width, _)) => width,
            Err(e) if e.is_stale_element_reference() && attempt < 20 => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => panic!("measuring the overview: {e}"),
        };
        let drag = MouseActions::new("mouse".into())
            .then(PointerAction::MoveToElement {
                element: minimap.clone(),
                duration: None,
                x: 0.0,
                y: 0.0,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::MoveToElement {
                element: minimap.clone(),
                duration: Some(Duration::from_millis(200)),
                x: width / 2.0 - 2.0,
                y: 0.0,
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            });
        match ui.client.perform_actions(drag).await {
            Ok(()) => break,
            Err(e) if e.is_stale_element_reference() && attempt < 20 => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("dragging across the overview: {e}"),
        }
    }
    wait_url(&ui, "a zoom", |u| u.contains("zoom=")).await;
    ui.wait_text(".zoom-note", "Showing +").await;
    ui.done("trace-zoomed").await;
    ui.click(".zoom-note button").await;
    wait_url(&ui, "no zoom", |u| !u.contains("zoom=")).await;

    // A narrow window: the details go under the spans, whose names keep their room.
    ui.client.set_window_size(800, 900).await.unwrap();
    ui.open(&format!("/trace/{declined}?span={charge}")).await;
    ui.wait_text("aside.detail", "payments").await;
    let geometry = ui
        .script(
            "const name = document.querySelector('.wf-row .wf-name').getBoundingClientRect();
             const rows = document.querySelector('.waterfall').getBoundingClientRect();
             const detail = document.querySelector('aside.detail').getBoundingClientRect();
             return [name.width, rows.bottom, detail.top];",
        )
        .await;
    let [name, rows_bottom, detail_top]: [f64; 3] = serde_json::from_value(geometry).unwrap();
    assert!(name >= 200.0, "span names keep {name} px at 800 px");
    assert!(
        detail_top >= rows_bottom,
        "{detail_top} under {rows_bottom}"
    );
    ui.done("trace-800").await;
    ui.client.set_window_size(1440, 1000).await.unwrap();

    // The span's logs.
    ui.click("aside.detail a[href^='/logs']").await;
    ui.wait_text("h1", "of one span").await;
    ui.wait_text(".result-count", "3 records").await;

    // Older logs: 200, then the other 50, none twice.
    ui.open("/logs?service=payments&range=1h").await;
    ui.wait_text(".result-count", "The newest 200 records")
        .await;
    ui.click("button.more").await;
    ui.wait_text(".result-count", "250 records").await;
    let bodies = texts(&ui, "table.logs tbody td:nth-child(4)").await;
    let mut unique = bodies.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((bodies.len(), unique.len()), (250, 250));
    ui.done("logs-more").await;

    // Upload: the downloaded file, an OTLP JSON file, and a file that is no trace.
    let otlp = profile.path().join("otlp.json");
    std::fs::write(
        &otlp,
        json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "uploaded-svc"}}]},
        "scopeSpans": [{"scope": {"name": "file"}, "spans": [
            {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
             "name": "GET /upload", "kind": 2,
             "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000050000000",
             "status": {"code": 2, "message": "it failed"}},
            {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b175",
             "parentSpanId": "eee19b7ec3c1b174", "name": "SELECT files", "kind": "SPAN_KIND_CLIENT",
             "startTimeUnixNano": "1700000000010000000", "endTimeUnixNano": "1700000000030000000",
             "events": [{"timeUnixNano": "1700000000020000000", "name": "exception"}]}
        ]}]}]})
        .to_string(),
    )
    .unwrap();
    let junk = profile.path().join("junk.json");
    std::fs::write(&junk, r#"{"hello": "world"}"#).unwrap();
    let upload = |path: std::path::PathBuf| {
        let ui = &ui;
        async move {
            ui.element("input.trace-file").await;
            ui.script("document.querySelector('input.trace-file').hidden = false;")
                .await;
            ui.element("input.trace-file")
                .await
                .send_keys(path.to_str().unwrap())
                .await
                .unwrap();
        }
    };
    ui.open("/search").await;
    upload(downloaded).await;
    ui.wait_text(".toolbar", "From the file").await;
    assert_eq!(ui.count(".wf-row").await, 3);
    upload(otlp).await;
    ui.wait_text(".wf-row", "uploaded-svc").await;
    assert_eq!(ui.count(".wf-row").await, 2);
    assert_eq!(ui.count(".wf-row.error").await, 1);
    ui.element(".wf-event.exception").await;
    ui.done("trace-file").await;
    upload(junk).await;
    ui.wait_text(".notice.error", "junk.json: This file is not a trace")
        .await;

    // The database: what its callers see of it.
    ui.open("/services/postgresql?range=1h").await;
    ui.wait_text(".card", "sends no telemetry of its own").await;
    ui.wait_text("figure", "Calls per second, by caller").await;
    let lines = texts(&ui, "figure svg path title").await;
    assert!(lines.iter().any(|t| t == "payments"), "{lines:?}");
    ui.done("peer-postgresql").await;
    loggers.shutdown().unwrap();
    for p in [frontend, payments] {
        p.shutdown().unwrap();
    }
}
