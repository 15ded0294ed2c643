//! The web UI in a real headless Chromium against `spyglass serve`: the reading-token form,
//! "First error", pages that do not exist and a service's slowest traces. Each page is saved
//! as a PNG under `target/ui-screenshots/`. A missing browser fails these tests.

mod common;

use std::time::Duration;

use common::browser::{BrowserLog, Ui};
use common::{get_json, provider, start_server, within};
use fantoccini::key::Key;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, Tracer, TracerProvider};
use serde_json::{Value, json};

/// With `[ui] tokens`, the UI asks for a token once, refuses a wrong one, keeps the right one
/// in a cookie scripts cannot read, and then shows the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_asks_for_the_reading_token_once() {
    let config = format!("{}[ui]\ntokens = [\"reader-token\"]\n", common::TEST_CONFIG);
    let server = common::start_server_with(tempfile::tempdir().unwrap(), &config, &[]).await;
    let (frontend, payments) = (
        provider("frontend", server.grpc),
        provider("payments", server.grpc),
    );
    common::checkout(&frontend.tracer("shop"), &payments.tracer("shop"), true);
    for p in [&frontend, &payments] {
        p.force_flush().unwrap();
    }
    let (ui, _driver, _profile) = Ui::start(&server).await;

    ui.open("/services").await;
    let input = ui.element("#token-gate input[name=token]").await;
    ui.wait_text("#token-gate h2", "reading token").await;
    let png = ui.client.screenshot().await.unwrap();
    std::fs::write(ui.shots.join("token-gate.png"), png).unwrap();

    input.send_keys("wrong-token").await.unwrap();
    input.send_keys(&Key::Enter.to_string()).await.unwrap();
    ui.wait_text("#token-gate .notice", "not valid").await;

    let input = ui.element("#token-gate input[name=token]").await;
    input.clear().await.unwrap();
    input.send_keys("reader-token").await.unwrap();
    // The refused requests before the token logged 401s: drop them from the console log.
    ui.client.issue_cmd(BrowserLog).await.unwrap();
    input.send_keys(&Key::Enter.to_string()).await.unwrap();
    ui.wait_text("main", "payments").await;
    assert_eq!(ui.count("#token-gate").await, 0, "asked once");
    assert_eq!(
        ui.script("return document.cookie").await,
        json!(""),
        "the token is in an HttpOnly cookie, out of scripts' reach"
    );
    ui.open("/search").await;
    ui.element("form").await;
    assert_eq!(ui.count("#token-gate").await, 0, "the cookie is kept");
    ui.done("token-accepted").await;

    let anonymous = reqwest::get(format!("http://127.0.0.1:{}/api/v1/services", server.ui))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

/// "First error" opens the span where the error began, not its parent that passed it up; the
/// inherited error is drawn dashed, span kinds are shown, and no service is drawn in red.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_error_opens_where_the_error_began() {
    use opentelemetry::Context;
    use opentelemetry::trace::{Status, TraceContextExt};
    let server = start_server().await;
    let (orders, billing) = (
        provider("orders", server.grpc),
        provider("billing", server.grpc),
    );
    let (ot, bt) = (orders.tracer("shop"), billing.tracer("shop"));
    let root = ot
        .span_builder("POST /refund")
        .with_kind(SpanKind::Server)
        .start(&ot);
    let root_cx = Context::current_with_span(root);
    let mut refund = bt
        .span_builder("POST /payouts")
        .with_kind(SpanKind::Server)
        .start_with_context(&bt, &root_cx);
    refund.add_event(
        "exception",
        vec![
            KeyValue::new("exception.type", "BankTimeout"),
            KeyValue::new("exception.message", "the bank timed out"),
        ],
    );
    refund.set_status(Status::error("the bank timed out"));
    let origin = refund.span_context().span_id().to_string();
    refund.end();
    root_cx.span().set_status(Status::error("refund failed"));
    let trace = root_cx.span().span_context().trace_id().to_string();
    root_cx.span().end();
    for p in [&orders, &billing] {
        p.force_flush().unwrap();
    }
    let (ui, _driver, _profile) = Ui::start(&server).await;

    ui.open(&format!("/trace/{trace}")).await;
    ui.wait_text(".wf-row.error", "billing").await;
    assert_eq!(ui.count(".wf-row.error").await, 2);
    assert_eq!(
        ui.count(".wf-row.error.inherited").await,
        1,
        "the root passed the error up"
    );
    let inherited = ui.wait_text(".wf-row.error.inherited", "orders").await;
    assert!(inherited.contains("POST /refund"), "{inherited}");
    assert_eq!(ui.count(".wf-kind").await, 2, "both spans say their kind");
    ui.click("button.first-error").await;
    ui.wait_text("aside.detail", "the bank timed out").await;
    let url = ui.client.current_url().await.unwrap();
    assert!(
        url.query()
            .unwrap_or("")
            .contains(&format!("span={origin}")),
        "First error opened {url}, not the billing span {origin}"
    );
    // Services' colours keep clear of the error red, whatever their names.
    let hues = ui
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             import('/assets/js/format.js').then((fmt) => {
               const hues = [];
               for (let i = 0; i < 500; i++) {
                 hues.push(Number(/hsl\\((\\d+)/.exec(fmt.color(`service-${i}`))[1]));
               }
               done(hues);
             });",
            vec![],
        )
        .await
        .unwrap();
    let reds: Vec<&Value> = hues
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| {
            let h = h.as_f64().unwrap();
            !(25.0..=330.0).contains(&h)
        })
        .collect();
    assert!(reds.is_empty(), "service hues in the error red: {reds:?}");
    ui.done("first-error").await;
    for p in [orders, billing] {
        p.shutdown().unwrap();
    }
}

/// A link to a page that does not exist, or to a malformed trace id, opens the app with its
/// navigation and says what is wrong, instead of a bare "404" text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pages_keep_the_app_and_say_what_is_wrong() {
    let server = start_server().await;
    let (ui, _driver, _profile) = Ui::start(&server).await;
    ui.open("/trace/not-a-trace").await;
    ui.wait_text("main", "is not a trace id").await;
    assert_eq!(ui.count("#nav a").await, 8, "the navigation is there");
    // With nothing firing, the Alerts link holds no empty badge.
    let badge = ui
        .script("return document.getElementById('firing').getBoundingClientRect().width;")
        .await;
    assert_eq!(
        badge.as_f64(),
        Some(0.0),
        "the hidden firing count takes no room"
    );
    let png = ui.client.screenshot().await.unwrap();
    std::fs::write(ui.shots.join("not-a-trace.png"), png).unwrap();
    ui.open("/nowhere").await;
    ui.wait_text("main", "No page at /nowhere").await;
    // Tools that do not ask for HTML still get a plain 404.
    let plain = reqwest::get(format!("http://127.0.0.1:{}/nowhere", server.ui))
        .await
        .unwrap();
    assert_eq!(plain.status(), 404);
    assert!(plain.text().await.unwrap().contains("no page or endpoint"));
}

/// The service page's "Slowest recent traces" lists the slowest first, not the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_page_lists_its_slowest_traces_slowest_first() {
    use std::time::SystemTime;
    let server = start_server().await;
    let reports = provider("reports", server.grpc);
    let tracer = reports.tracer("shop");
    let base = SystemTime::now() - Duration::from_secs(120);
    // 60 traces of 30–100 ms, their durations in no order of time: the p95 (interpolated in
    // the 50–100 ms bucket) leaves a few traces above it.
    for i in 0..60u64 {
        let start = base + Duration::from_secs(i);
        let millis = 30 + (i * 37) % 71;
        let mut span = tracer
            .span_builder("GET /report")
            .with_kind(SpanKind::Server)
            .with_start_time(start)
            .start(&tracer);
        span.end_with_timestamp(start + Duration::from_millis(millis));
    }
    reports.force_flush().unwrap();
    within(Duration::from_secs(30), || async {
        let (_, services) = get_json(server.ui, "/api/v1/services?start=now-1h").await;
        services["services"].as_array().is_some_and(|list| {
            list.iter()
                .any(|s| s["name"] == "reports" && s["calls"] == 60.0)
        })
    })
    .await
    .expect("the span metrics count the 60 calls");

    let (ui, _driver, _profile) = Ui::start(&server).await;
    ui.open("/services/reports?range=1h").await;
    ui.element(".slowest table.traces tbody tr").await;
    let durations = ui
        .script(
            "return [...document.querySelectorAll('.slowest table.traces tbody tr td:nth-child(3)')]
               .map((td) => {
                 const m = /^([0-9.]+) ms/.exec(td.textContent);
                 return m ? Number(m[1]) : td.textContent;
               });",
        )
        .await;
    let durations: Vec<f64> = durations
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d.as_f64()
                .unwrap_or_else(|| panic!("a duration in ms: {d}"))
        })
        .collect();
    assert!(durations.len() >= 2, "{durations:?}");
    assert!(
        durations.windows(2).all(|w| w[0] >= w[1]),
        "slowest first: {durations:?}"
    );
    ui.done("service-slowest").await;
    reports.shutdown().unwrap();
}
