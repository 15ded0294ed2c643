//! The web UI in a real headless Chromium (Debian `chromium` + `chromium-driver`, driven over
//! WebDriver with fantoccini) against `spyglass serve` loaded over OTLP by the Rust SDK: each
//! page shows what it should, no page logs a console error, hostile span text stays text, and
//! every page is saved as a PNG under `target/ui-screenshots/`.
//!
//! A missing browser fails this test: it never skips.

mod common;
#[path = "../alerting/tests/smtp/mod.rs"]
mod smtp;

use std::time::{Duration, Instant};

use common::browser::{BrowserLog, Ui};
use common::{Server, checkout, get_json, provider, start_server, within};
use fantoccini::key::Key;
use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Span as _, SpanKind, Tracer, TracerProvider};
use serde_json::json;

const HOSTILE_NAME: &str = "<img src=x onerror=\"window.__pwned=1\">charge";
const HOSTILE_VALUE: &str = "<script>window.__pwned=2</script><b>bold</b>";

struct Traces {
    failed: String,
    ok: String,
    hostile: String,
}

/// Three traces over OTLP/gRPC with the Rust SDK: a checkout whose payment fails, one that
/// succeeds (and also queries the database), and one with HTML in its name and attributes.
async fn load(server: &Server) -> Traces {
    let frontend = provider("frontend", server.grpc);
    let payments = provider("payments", server.grpc);
    let (ft, pt) = (frontend.tracer("shop"), payments.tracer("shop"));
    let failed = checkout(&ft, &pt, true);
    let ok = checkout(&ft, &pt, false);
    let mut hostile = ft
        .span_builder(HOSTILE_NAME)
        .with_kind(SpanKind::Server)
        .with_attributes(vec![KeyValue::new("note", HOSTILE_VALUE)])
        .start(&ft);
    let hostile_id = hostile.span_context().trace_id().to_string();
    hostile.end();
    frontend.force_flush().unwrap();
    payments.force_flush().unwrap();
    frontend.shutdown().unwrap();
    payments.shutdown().unwrap();
    Traces {
        failed,
        ok,
        hostile: hostile_id,
    }
}

/// One OTLP/HTTP JSON log record of the failed payment, with its trace context.
async fn log_the_failure(server: &Server, trace_id: &str) {
    let (_, trace) = get_json(server.ui, &format!("/api/v1/traces/{trace_id}")).await;
    let span_id = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service_name"] == "payments")
        .unwrap()["span_id"]
        .clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .to_string();
    let body = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "payments"}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": now, "severityNumber": 17, "severityText": "ERROR",
            "body": {"stringValue": "payment declined for order 42"},
            "traceId": trace_id, "spanId": span_id,
        }]}],
    }]});
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/logs", server.http))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_shows_its_content_in_a_real_browser() {
    let server = start_server().await;
    let traces = load(&server).await;
    log_the_failure(&server, &traces.failed).await;
    // Span metrics (services, map) are written every second by this server.
    let ready = within(Duration::from_secs(20), || async {
        let (_, deps) = get_json(server.ui, "/api/v1/dependencies").await;
        deps["edges"].as_array().is_some_and(|edges| {
            edges.iter().any(|e| {
                e["client"] == "frontend" && e["server"] == "payments" && e["calls"] == 2.0
            })
        })
    })
    .await;
    assert!(ready.is_some(), "span metrics never showed the edge");

    let (ui, _driver, _profile) = Ui::start(&server).await;

    // Services: both services, payments with its errors.
    ui.open("/services").await;
    ui.wait_text("table.services tbody", "payments").await;
    let rows = ui.wait_text("table.services tbody", "frontend").await;
    // payments: two charges (one failed) and one database call.
    assert!(
        rows.contains("33%"),
        "payments fails one span in three: {rows}"
    );
    assert!(
        rows.contains("s ago"),
        "each service says when it last sent spans: {rows}"
    );
    ui.done("services").await;
    // Every range preset is one the API takes.
    for range in ["15m", "6h", "24h", "7d"] {
        ui.open(&format!("/services?range={range}")).await;
        ui.wait_text("table.services tbody", "payments").await;
        ui.done(&format!("services-{range}")).await;
    }

    // Search finds the error trace; it opens; its failing span is highlighted and shows the
    // exception message.
    ui.open("/search?service=payments&status=error").await;
    ui.wait_text("table.traces", "frontend").await;
    assert_eq!(
        ui.count("table.traces tbody tr").await,
        1,
        "one error trace"
    );
    assert_eq!(ui.count("svg.scatter circle.dot").await, 1, "one dot");
    ui.done("search").await;
    ui.click(&format!("table.traces a[href='/trace/{}']", traces.failed))
        .await;
    let error_row = ui.wait_text(".wf-row.error", "payments").await;
    assert!(error_row.contains("POST /charge"), "{error_row}");
    assert_eq!(
        ui.count(".wf-row.error").await,
        1,
        "only the failing span is red"
    );
    // The ruler's 0 stands over the root bar's left edge, and no bar leaves its track.
    let geometry = ui
        .script(
            "const zero = document.querySelector('.ruler .ticks span').getBoundingClientRect();
             const rows = [...document.querySelectorAll('.wf-row')];
             const root = rows[0].querySelector('.wf-bar').getBoundingClientRect();
             const inside = rows.every((r) => {
               const bar = r.querySelector('.wf-bar').getBoundingClientRect();
               const track = r.querySelector('.wf-track').getBoundingClientRect();
               return bar.left >= track.left - 0.5 && bar.right <= track.right + 0.5;
             });
             return [zero.left + zero.width / 2, root.left, inside, rows.length];",
        )
        .await;
    let (zero, root) = (geometry[0].as_f64().unwrap(), geometry[1].as_f64().unwrap());
    assert!(
        (zero - root).abs() <= 2.0,
        "the ruler's 0 at x={zero}, the root bar starts at x={root}"
    );
    assert_eq!(
        geometry[2],
        json!(true),
        "a bar leaves its track: {geometry}"
    );
    assert_eq!(geometry[3], json!(3), "{geometry}");
    ui.click(".wf-row.error").await;
    ui.wait_text("aside.detail", "card declined: insufficient funds")
        .await;
    let url = ui.client.current_url().await.unwrap();
    assert_eq!(url.path(), format!("/trace/{}", traces.failed));
    assert!(url.query().unwrap_or("").contains("span="), "{url}");
    ui.done("trace").await;

    // The same view from its link alone, whatever the range (state in the URL).
    ui.open(&format!("{}?{}", url.path(), url.query().unwrap()))
        .await;
    ui.wait_text("aside.detail", "CardDeclined").await;
    // Find by attribute, and the critical path on demand.
    let find = ui.element("form.find input").await;
    find.send_keys("card.brand=visa\n").await.unwrap();
    ui.wait_text(".toolbar", "1 match").await;
    assert_eq!(ui.count(".wf-row.match").await, 1);
    assert_eq!(ui.count(".wf-row.dim").await, 2);
    ui.click("input[type=checkbox]").await;
    within(Duration::from_secs(10), || async {
        ui.count(".wf-row.critical").await == 3
    })
    .await
    .expect("the whole chain is the critical path");

    // Service detail: the operation and the caller.
    ui.open("/services/payments").await;
    ui.wait_text("table.grid", "POST /charge").await;
    ui.wait_text(".card", "frontend").await;
    ui.done("service").await;

    // Service map: the failing edge and the database as a virtual node.
    ui.open("/map").await;
    ui.wait_text("svg.map", "payments").await;
    assert_eq!(
        ui.count("svg.map g.edge.failing[data-edge='frontend->payments']")
            .await,
        1,
        "the failing edge is marked"
    );
    assert_eq!(
        ui.count("svg.map g.node.virtual").await,
        1,
        "postgresql is a virtual node"
    );
    ui.done("map").await;

    // Comparison: the database span only the successful trace has.
    ui.open(&format!("/compare?a={}&b={}", traces.failed, traces.ok))
        .await;
    let only = ui.wait_text("tr[data-only='1']", "SELECT payments").await;
    assert!(only.contains("only here"), "{only}");
    assert_eq!(ui.count("tr[data-only='1']").await, 1, "one span differs");
    ui.done("compare").await;

    // Metrics explorer: the span metrics as a chart.
    ui.open("/explore?name=spyglass.span.calls").await;
    ui.wait_text("figure.chart-box figcaption", "spyglass.span.calls")
        .await;
    assert!(
        ui.count("figure.chart-box svg path").await >= 1,
        "a line is drawn"
    );
    ui.done("metrics").await;

    // The explorer's PromQL mode: examples first, then a range chart with its legend and the
    // exemplars that open traces, the instant values as a table, and a bad query marked.
    ui.open("/explore").await;
    ui.wait_text(".examples", "p99 latency per service").await;
    assert_eq!(ui.count(".examples li a").await, 3);
    ui.open(&format!(
        "/explore?query={}",
        encode("sum by (job) (rate(spyglass_span_calls_total[1m]))")
    ))
    .await;
    ui.wait_text("figure.chart-box figcaption", "series").await;
    ui.wait_text(".legend", "{job=\"frontend\"}").await;
    // A line per job, or a dot where a job has one value so far.
    let drawn = ui
        .script(
            "return document.querySelectorAll('figure.chart-box svg path[d*=L], \
             figure.chart-box svg circle.point').length",
        )
        .await;
    assert!(drawn.as_u64().unwrap() >= 2, "{drawn}");
    ui.done("metrics-promql-rate").await;
    ui.open(&format!(
        "/explore?query={}",
        encode("histogram_quantile(0.99, sum by (le) (rate(spyglass_span_duration_seconds_bucket[1m])))")
    ))
    .await;
    ui.wait_text("figure.chart-box figcaption", "exemplars")
        .await;
    let marks = ui
        .script(
            "return [...document.querySelectorAll('svg.chart a.mark')].map(a => a.getAttribute('href'))",
        )
        .await;
    let marks: Vec<String> = marks
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(!marks.is_empty());
    assert!(
        marks
            .iter()
            .all(|href| [&traces.failed, &traces.ok, &traces.hostile]
                .iter()
                .any(|id| href == &format!("/trace/{id}"))),
        "exemplars lead to the loaded traces: {marks:?}"
    );
    ui.done("metrics-promql-exemplars").await;
    ui.click("svg.chart a.mark").await;
    ui.element(".trace-head").await;
    assert!(
        ui.client
            .current_url()
            .await
            .unwrap()
            .path()
            .starts_with("/trace/"),
        "an exemplar opens its trace"
    );
    ui.open(&format!(
        "/explore?type=instant&query={}",
        encode("sum by (job) (spyglass_span_calls_total)")
    ))
    .await;
    ui.wait_text("table.instant", "job=\"payments\"").await;
    assert!(ui.count("table.instant tbody tr").await >= 2);
    ui.done("metrics-promql-instant").await;
    // A native histogram (an exponential histogram from the SDK): its buckets as bars, and its
    // count over time as a line.
    let meters = common::meter_provider(
        "shop",
        server.grpc,
        opentelemetry_sdk::metrics::Temporality::Cumulative,
    );
    let size = meters
        .meter("shop")
        .u64_histogram("shop.size")
        .with_unit("By")
        .build();
    for bytes in [100, 200, 300, 310] {
        size.record(bytes, &[]);
    }
    meters.shutdown().unwrap();
    ui.open(&format!(
        "/explore?type=instant&query={}",
        encode("shop_size_bytes")
    ))
    .await;
    ui.wait_text(
        "table.instant figure.chart-box figcaption",
        "4 observations, sum 910",
    )
    .await;
    // 100, 200 and 300 fall in buckets of their own, 310 beside 300 or with it.
    let bars = ui.count("table.instant svg.bars rect").await;
    assert!((3..=4).contains(&bars), "{bars} buckets drawn");
    ui.done("metrics-promql-histogram").await;
    ui.open(&format!("/explore?query={}", encode("shop_size_bytes")))
        .await;
    ui.wait_text(".legend", "shop_size_bytes{job=\"shop\"} (count)")
        .await;
    ui.done("metrics-promql-histogram-range").await;
    ui.open(&format!(
        "/explore?query={}",
        encode("sum(rate(spyglass_span_calls_total[1m])")
    ))
    .await;
    ui.wait_text(
        ".notice.error",
        "1:4: parse error: unclosed left parenthesis",
    )
    .await;
    let caret = ui.wait_text("pre.query-caret", "^").await;
    assert!(caret.ends_with("\n   ^"), "{caret:?}");
    ui.shot("metrics-promql-error").await;
    // The refused query logged its 400: drop it from the console log.
    ui.client.issue_cmd(BrowserLog).await.unwrap();

    // Logs, linked to their trace.
    ui.open("/logs").await;
    ui.wait_text("table.logs", "payment declined for order 42")
        .await;
    assert_eq!(
        ui.count(&format!("table.logs a[href^='/trace/{}']", traces.failed))
            .await,
        1
    );
    ui.done("logs").await;

    // SQL console: typed, run with Ctrl+Enter.
    ui.open("/sql").await;
    let editor = ui.element("textarea.sql").await;
    editor
        .send_keys("SELECT count(*) FROM spans")
        .await
        .unwrap();
    editor
        .send_keys(&(Key::Control + &Key::Enter.to_string()))
        .await
        .unwrap();
    let (_, spans) = get_json(server.ui, "/api/v1/traces?limit=20&start=now-1h").await;
    let stored: u64 = spans["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["span_count"].as_u64().unwrap())
        .sum();
    assert_eq!(stored, 8, "3 + 4 + 1 spans were exported");
    ui.wait_text("table.sql-result td", "8").await;
    ui.wait_text(".result-count", "1 row").await;
    // A link fills the editor and runs nothing until Run is pressed.
    ui.open("/sql?q=SELECT%20count(*)%20AS%20linked%20FROM%20spans")
        .await;
    ui.wait_text(".results", "press Run").await;
    assert_eq!(
        ui.count("table.sql-result").await,
        0,
        "the link ran nothing"
    );
    ui.click(".toolbar button.primary").await;
    ui.wait_text("table.sql-result th", "linked").await;
    ui.done("sql").await;

    // Safety: HTML in a span name and an attribute value is shown as text.
    ui.open(&format!("/trace/{}", traces.hostile)).await;
    ui.wait_text(".wf-row", "charge").await;
    ui.click(".wf-row").await;
    let detail = ui.wait_text("aside.detail", "bold").await;
    assert!(detail.contains(HOSTILE_VALUE), "{detail}");
    let title = ui.wait_text("h1", "onerror").await;
    assert!(title.contains(HOSTILE_NAME), "{title}");
    assert_eq!(
        ui.count("main img, main script").await,
        0,
        "no element from span data"
    );
    assert_eq!(
        ui.script(
            "return [...document.querySelectorAll('main b')].some((b) => b.textContent === 'bold')"
        )
        .await,
        json!(false),
        "the <b> in the attribute value is text"
    );
    assert_eq!(
        ui.script("return window.__pwned === undefined").await,
        json!(true)
    );
    ui.open("/search?service=frontend").await;
    ui.wait_text("table.traces", "onerror").await;
    assert_eq!(ui.count("main img").await, 0);
    assert_eq!(
        ui.script("return window.__pwned === undefined").await,
        json!(true)
    );
    ui.done("safety").await;

    // Dark mode: the toggle flips the theme and it is kept.
    ui.open("/services").await;
    ui.wait_text("table.services", "payments").await;
    let before = ui
        .script("return getComputedStyle(document.body).backgroundColor")
        .await;
    ui.click("#theme").await;
    let after = ui
        .script("return getComputedStyle(document.body).backgroundColor")
        .await;
    assert_ne!(before, after, "the toggle changes the colours");
    ui.done("services-toggled-theme").await;

    ui.client.close().await.unwrap();
}

/// During a failure, the Alerts page shows the incident with its root cause and affected
/// services; an example trace opens on the failing span; the nav counts what fires; the
/// Rules page, the service page and the map show the alerts too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alerts_page_shows_the_incident_and_leads_to_the_failing_span() {
    use common::shop::{ALERTING_CONFIG, Request, Shop};
    let server =
        common::start_server_with(tempfile::tempdir().unwrap(), ALERTING_CONFIG, &[]).await;
    let mut shop = Shop::new(server.grpc);
    let failing = Request {
        fail_at: Some(1),
        ..Request::default()
    };
    // payments fails the calls of frontend and checkout, all along the test.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                shop.send(&["frontend", "payments"], failing);
                shop.send(&["checkout", "payments"], failing);
                shop.flush();
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let started = Instant::now();
    loop {
        let (_, incidents) = get_json(server.ui, "/api/v1/incidents").await;
        let firing = incidents["incidents"].as_array().is_some_and(|all| {
            all.iter().any(|i| {
                i["root"] == "payments"
                    && i["state"] == "firing"
                    && i["affected"] == json!(["checkout", "frontend"])
            })
        });
        if firing {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no incident: {incidents:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (ui, _driver, _profile) = Ui::start(&server).await;

    ui.open("/alerts").await;
    let incident = ui
        .wait_text(
            "section.incident.firing[data-root='payments'] h2",
            "payments",
        )
        .await;
    assert!(
        incident.contains("Root cause") && incident.contains("FIRING"),
        "{incident}"
    );
    let affected = ui.wait_text("section.incident .affected", "checkout").await;
    assert!(affected.contains("frontend"), "{affected}");
    let card = ui
        .wait_text(
            "section.incident .alert[data-rule='ServiceErrors'][data-subject='payments']",
            "100%",
        )
        .await;
    assert!(card.contains("threshold of 5"), "{card}");
    let firing = ui.wait_text("#firing", "").await;
    assert!(
        firing.trim().parse::<u32>().unwrap() >= 5,
        "nav count {firing:?}"
    );
    // The chart of the error ratio with its threshold.
    ui.element("section.incident .alert[data-rule='ServiceErrors'][data-subject='payments'] svg.chart path")
        .await;
    ui.done("alerts").await;

    // An example trace opens on the failing span.
    ui.click(
        "section.incident .alert[data-rule='ServiceErrors'][data-subject='payments'] .evidence a",
    )
    .await;
    let error_row = ui.wait_text(".wf-row.error", "payments").await;
    assert!(error_row.contains("GET /payments"), "{error_row}");
    ui.done("alert-trace").await;

    ui.open("/alerts/rules").await;
    let rules = ui.wait_text("table.rules", "ServiceErrors").await;
    assert!(
        rules.contains("DependencyFailing") && rules.contains("FIRING"),
        "{rules}"
    );
    ui.done("rules").await;

    ui.open("/services/payments").await;
    ui.wait_text(".alert[data-rule='ServiceErrors']", "payments")
        .await;
    let history = ui.wait_text("table.history", "ServiceErrors").await;
    assert!(
        history.contains("FIRING") || history.contains("firing"),
        "{history}"
    );
    ui.done("service-alerts").await;

    ui.open("/map").await;
    ui.element("svg.map .node.alerting[data-node='payments']")
        .await;
    ui.element("svg.map .edge.alerting[data-edge='checkout->payments']")
        .await;
    ui.done("map-alerts").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    traffic.await.unwrap();
}

/// On-call silences an alert from its card: the form comes filled with the alert's labels, the
/// repeated mails about it stop, the Silences page lists it, and the Notifications page shows
/// every attempt with the message as it was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_made_from_an_alert_stops_its_mails_and_the_ledger_shows_them() {
    use common::shop::{Request, Shop, mailing_config};
    let smtp = smtp::SmtpServer::start("plain", None, None);
    let dir = tempfile::tempdir().unwrap();
    let config = mailing_config(
        dir.path(),
        smtp.port,
        &[
            "group_wait: 1s",
            "group_interval: 2s",
            "repeat_interval: 3s",
        ],
        &[],
    );
    let server = common::start_server_with(dir, &config, &[]).await;
    // search fails on its own, all along the test.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        let mut shop = Shop::new(server.grpc);
        tokio::task::spawn_blocking(move || {
            let failing = Request {
                fail_at: Some(0),
                ..Request::default()
            };
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                shop.send(&["search"], failing);
                shop.flush();
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // The page repeats: every repeat_interval while it fires.
    let repeated = within(Duration::from_secs(120), || async {
        smtp.messages().len() >= 2
    })
    .await;
    assert!(repeated.is_some(), "mails: {}", smtp.messages().len());

    let (ui, _driver, _profile) = Ui::start(&server).await;
    ui.open("/alerts").await;
    ui.wait_text(
        "section.incident[data-root='search'] .notified",
        "firing to oncall",
    )
    .await;
    ui.click(
        "section.incident .alert[data-rule='ServiceErrors'][data-subject='search'] .silence-link",
    )
    .await;
    let first = ui.element(".silence-form .matcher input").await;
    let matchers: Vec<String> = {
        let mut out = Vec::new();
        for input in ui
            .client
            .find_all(fantoccini::Locator::Css(".silence-form .matcher input"))
            .await
            .unwrap()
        {
            out.push(input.prop("value").await.unwrap().unwrap_or_default());
        }
        out
    };
    drop(first);
    assert!(
        matchers.contains(&"alertname=\"ServiceErrors\"".to_string())
            && matchers.contains(&"service=\"search\"".to_string()),
        "{matchers:?}"
    );
    ui.wait_text(".affected-alerts", "It mutes 1 alert").await;
    ui.element(".silence-form input[name='createdBy']")
        .await
        .send_keys("oncall")
        .await
        .unwrap();
    ui.element(".silence-form textarea[name='comment']")
        .await
        .send_keys("search index rebuild")
        .await
        .unwrap();
    ui.done("silence-form").await;
    ui.click(".silence-form button[type='submit']").await;
    let row = ui
        .wait_text("table.silences tr.silence.active", "search index rebuild")
        .await;
    assert!(
        row.contains("service=\"search\"") && row.contains("oncall"),
        "{row}"
    );
    ui.done("silences").await;

    // A mail already on its way may still land; after that, nothing for three repeat intervals.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = smtp.messages().len();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        smtp.messages().len(),
        settled,
        "mails went on after the silence"
    );
    let (_, silenced) = get_json(
        server.ui,
        "/alertmanager/api/v2/alerts?active=false&silenced=true&filter=service%3D%22search%22",
    )
    .await;
    assert_eq!(silenced.as_array().map(Vec::len), Some(1), "{silenced:#}");

    ui.open("/notifications").await;
    let table = ui.wait_text("table.notifications", "search failing").await;
    assert!(
        table.contains("oncall · email[0]") && table.contains("sent"),
        "{table}"
    );
    assert_eq!(
        ui.count("table.notifications tr.notification").await,
        settled
    );
    ui.done("notifications").await;
    ui.click("table.notifications tr.notification a[href^='/notifications/']")
        .await;
    let attempts = ui.wait_text("ol.attempts", "sent").await;
    assert!(attempts.contains("250"), "the SMTP reply: {attempts}");
    ui.element("iframe.message-html").await;
    ui.done("notification").await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    traffic.await.unwrap();
}

/// `text` percent-encoded for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
