//! The Prometheus query API over OTLP metrics: the Rust SDK's OTLP exporter sends a counter, an
//! up-down counter, a gauge, a histogram and an exponential histogram under cumulative and
//! under delta temporality; PromQL reads them by their Prometheus names with the values the SDK
//! exported, through the HTTP API and through Debian's `promtool`; `expr:` rules fire and
//! resolve, recording rules record, and the `ALERTS` series follows; the README's span-metrics
//! queries answer.

mod common;

use std::process::Command;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::{SdkMeterProvider, Temporality};
use serde_json::Value;

/// Two rounds of measurements, each exported: 7 orders ok and 2 failed, a queue at 4, 21.5 °C,
/// latencies 0.05 0.3 | 0.3 0.7 2.0 s, sizes 100 200 | 300 bytes.
fn record(provider: &SdkMeterProvider) {
    let meter = provider.meter("shop");
    let orders = meter
        .u64_counter("shop.orders")
        .with_unit("{order}")
        .build();
    let queue = meter.i64_up_down_counter("shop.queue.depth").build();
    let temperature = meter.f64_gauge("shop.temperature").with_unit("Cel").build();
    let latency = meter
        .f64_histogram("shop.latency")
        .with_unit("s")
        .with_boundaries(vec![0.1, 0.5, 1.0])
        .build();
    let size = meter.u64_histogram("shop.size").with_unit("By").build();
    let ok = [KeyValue::new("outcome", "ok")];
    let failed = [KeyValue::new("outcome", "failed")];

    orders.add(3, &ok);
    orders.add(2, &failed);
    queue.add(5, &[]);
    queue.add(-2, &[]);
    temperature.record(19.0, &[]);
    latency.record(0.05, &[]);
    latency.record(0.3, &[]);
    size.record(100, &[]);
    size.record(200, &[]);
    provider.force_flush().unwrap();

    orders.add(4, &ok);
    queue.add(1, &[]);
    temperature.record(21.5, &[]);
    for v in [0.3, 0.7, 2.0] {
        latency.record(v, &[]);
    }
    size.record(300, &[]);
    provider.force_flush().unwrap();
}

async fn api(ui: u16, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let url = reqwest::Url::parse_with_params(
        &format!("http://127.0.0.1:{ui}/prometheus/api/v1/{path}"),
        params,
    )
    .unwrap();
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The vector `query` evaluates to now: each element's labels and value.
async fn instant(ui: u16, query: &str) -> Vec<(Value, f64)> {
    let (status, body) = api(ui, "query", &[("query", query)]).await;
    assert_eq!(status, 200, "{query}: {body}");
    assert_eq!(body["status"], "success");
    assert_eq!(body["data"]["resultType"], "vector", "{query}: {body}");
    body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let value = r["value"][1].as_str().unwrap().parse::<f64>().unwrap();
            (r["metric"].clone(), value)
        })
        .collect()
}

/// The size histogram as the API shows a native histogram: count, sum, and the buckets that
/// hold 100, 200 and 300 bytes, one each.
async fn native_sizes(ui: u16, query: &str, job: &str) {
    let (status, body) = api(ui, "query", &[("query", query)]).await;
    assert_eq!(status, 200, "{query}: {body}");
    let result = body["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{job}: {body}");
    assert!(result[0].get("value").is_none(), "{job}: {body}");
    let h = &result[0]["histogram"][1];
    assert_eq!(h["count"], "3", "{job}: {body}");
    assert_eq!(h["sum"], "600", "{job}: {body}");
    let number = |v: &Value| v.as_str().unwrap().parse::<f64>().unwrap();
    let buckets = h["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 3, "{job}: {body}");
    for (bucket, value) in buckets.iter().zip([100.0, 200.0, 300.0]) {
        // Boundary rule 0: (lower, upper].
        assert_eq!(bucket[0], 0, "{job}: {body}");
        assert!(
            number(&bucket[1]) < value && value <= number(&bucket[2]),
            "{job}: {body}"
        );
        assert_eq!(number(&bucket[3]), 1.0, "{job}: {body}");
    }
}

async fn one(ui: u16, query: &str) -> f64 {
    let v = instant(ui, query).await;
    assert_eq!(v.len(), 1, "{query}: {v:?}");
    v[0].1
}

fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool is needed: ./test.sh installs Debian's prometheus package");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "promtool {args:?}: {text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_metrics_answer_promql_by_their_prometheus_names() {
    let server = common::start_server().await;
    let ui = server.ui;
    for (service, temporality) in [
        ("shop-cumulative", Temporality::Cumulative),
        ("shop-delta", Temporality::Delta),
    ] {
        let provider = common::meter_provider(service, server.grpc, temporality);
        record(&provider);
        provider.shutdown().unwrap();
    }

    // The SDK exported what it was told to: the delta provider's counter points are deltas.
    for (service, want) in [("shop-cumulative", "cumulative"), ("shop-delta", "delta")] {
        let answer = common::sql(
            ui,
            &format!(
                "SELECT DISTINCT temporality FROM metrics \
                 WHERE service_name = '{service}' AND metric_name = 'shop.orders'"
            ),
        )
        .await;
        assert!(
            answer.to_string().contains(&format!("\"{want}\"")),
            "{answer}"
        );
    }

    for job in ["shop-cumulative", "shop-delta"] {
        let sel = |name: &str, extra: &str| format!("{name}{{job=\"{job}\"{extra}}}");
        assert_eq!(
            one(ui, &sel("shop_orders_total", ",outcome=\"ok\"")).await,
            7.0,
            "{job}"
        );
        assert_eq!(
            one(ui, &sel("shop_orders_total", ",outcome=\"failed\"")).await,
            2.0,
            "{job}"
        );
        assert_eq!(one(ui, &sel("shop_queue_depth", "")).await, 4.0, "{job}");
        assert_eq!(
            one(ui, &sel("shop_temperature_celsius", "")).await,
            21.5,
            "{job}"
        );
        let buckets = instant(ui, &sel("shop_latency_seconds_bucket", "")).await;
        let mut by_le: Vec<(String, f64)> = buckets
            .iter()
            .map(|(m, v)| (m["le"].as_str().unwrap().to_string(), *v))
            .collect();
        by_le.sort_by(|a, b| a.1.total_cmp(&b.1));
        assert_eq!(
            by_le,
            [
                ("0.1".to_string(), 1.0),
                ("0.5".to_string(), 3.0),
                ("1".to_string(), 4.0),
                ("+Inf".to_string(), 5.0)
            ],
            "{job}"
        );
        let sum = one(ui, &sel("shop_latency_seconds_sum", "")).await;
        assert!((sum - 3.35).abs() < 1e-9, "{job}: {sum}");
        assert_eq!(one(ui, &sel("shop_latency_seconds_count", "")).await, 5.0);
        // Rank 2.5 of 5 falls in (0.1, 0.5], 1.5 of its 2: 0.1 + 0.4 × 0.75.
        let p50 = one(
            ui,
            &format!(
                "histogram_quantile(0.5, {})",
                sel("shop_latency_seconds_bucket", "")
            ),
        )
        .await;
        assert!((p50 - 0.4).abs() < 1e-9, "{job}: {p50}");
        // The exponential histogram is one series of native histograms, as Prometheus makes it.
        let size = sel("shop_size_bytes", "");
        native_sizes(ui, &size, job).await;
        assert_eq!(one(ui, &format!("histogram_sum({size})")).await, 600.0);
        assert_eq!(one(ui, &format!("histogram_count({size})")).await, 3.0);
        // Rank 1.5 of 100, 200, 300 from the top: half-way (on a log scale) through the bucket
        // that holds 200, which the SDK's 160 buckets make narrower than 5%.
        let p50 = one(ui, &format!("histogram_quantile(0.5, {size})")).await;
        assert!((p50 - 200.0).abs() < 10.0, "{job}: {p50}");
        let fraction = one(ui, &format!("histogram_fraction(0, 250, {size})")).await;
        assert!((fraction - 2.0 / 3.0).abs() < 1e-9, "{job}: {fraction}");
        assert!(
            instant(ui, &sel("shop_size_bytes_count", ""))
                .await
                .is_empty(),
            "{job}: an exponential histogram has no _count series"
        );
        let total = one(ui, &format!("sum({})", sel("shop_orders_total", ""))).await;
        assert_eq!(total, 9.0, "{job}");
    }
    let both = instant(ui, "sum by (job) (shop_orders_total)").await;
    assert_eq!(both.len(), 2);
    assert!(both.iter().all(|(_, v)| *v == 9.0), "{both:?}");

    // The listing endpoints.
    let (status, series) = api(ui, "series", &[("match[]", "shop_latency_seconds_bucket")]).await;
    assert_eq!(status, 200, "{series}");
    assert_eq!(series["data"].as_array().unwrap().len(), 8, "{series}");
    let (_, labels) = api(ui, "labels", &[]).await;
    for name in ["__name__", "job", "le", "outcome"] {
        assert!(
            labels["data"].as_array().unwrap().iter().any(|l| l == name),
            "{name}: {labels}"
        );
    }
    let (_, jobs) = api(ui, "label/job/values", &[("match[]", "shop_orders_total")]).await;
    assert_eq!(
        jobs["data"],
        serde_json::json!(["shop-cumulative", "shop-delta"])
    );
    let (_, metadata) = api(ui, "metadata", &[("metric", "shop_orders_total")]).await;
    assert_eq!(metadata["data"]["shop_orders_total"][0]["type"], "counter");

    // Errors in Prometheus's envelope.
    let (status, bad) = api(ui, "query", &[("query", "sum(shop_orders_total")]).await;
    assert_eq!(status, 400);
    assert_eq!(bad["status"], "error");
    assert_eq!(bad["errorType"], "bad_data");
    assert_eq!(
        bad["error"],
        "invalid parameter \"query\": 1:4: parse error: unclosed left parenthesis"
    );
    let (status, bad) = api(
        ui,
        "query_range",
        &[
            ("query", "up"),
            ("start", "10"),
            ("end", "5"),
            ("step", "1"),
        ],
    )
    .await;
    assert_eq!((status, bad["errorType"].as_str()), (400, Some("bad_data")));

    // Debian's promtool as the client.
    let url = format!("http://127.0.0.1:{ui}/prometheus");
    let out = promtool(&[
        "query",
        "instant",
        &url,
        "shop_orders_total{job=\"shop-delta\", outcome=\"ok\"}",
    ]);
    assert!(
        out.contains("job=\"shop-delta\"") && out.contains("=> 7 @["),
        "{out}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Whole seconds: the last step lies after the last export, which may share `now`'s second.
    let (start, end) = ((now - 28).to_string(), (now + 2).to_string());
    let out = promtool(&[
        "query",
        "range",
        "--start",
        &start,
        "--end",
        &end,
        "--step",
        "10s",
        &url,
        "sum by (job) (shop_orders_total)",
    ]);
    assert!(out.contains("job=\"shop-cumulative\""), "{out}");
    assert!(out.contains("9 @["), "{out}");
    let out = promtool(&["query", "labels", &url, "job"]);
    assert!(out.contains("shop-delta"), "{out}");

    // The labels of the series read are kept for the next queries, and /metrics says how much.
    let metrics = reqwest::get(format!("http://127.0.0.1:{ui}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let kept: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("spyglass_query_promql_series_cache_bytes "))
        .unwrap_or_else(|| panic!("no series cache gauge in\n{metrics}"))
        .parse()
        .unwrap();
    assert!(kept > 0.0, "{kept} bytes kept after the queries");
}

const PROMQL_RULES: &str = r#"groups:
  - name: shop-promql
    interval: 1s
    rules:
      - alert: QueueBacklog
        expr: shop_queue_depth > 3
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.job }} has {{ $value }} waiting"
      - alert: SlowOrders
        expr: histogram_quantile(0.5, shop_latency_seconds_bucket) > 10
      - record: job:shop_orders:sum
        expr: sum by (job) (shop_orders_total)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_rules_alert_record_and_write_the_alerts_series() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("shop.rules.yml");
    std::fs::write(&rules, PROMQL_RULES).unwrap();
    let args = vec!["--rules".to_string(), rules.display().to_string()];
    let server = common::start_server_with(dir, common::shop::ALERTING_CONFIG, &args).await;
    let ui = server.ui;
    let provider = common::meter_provider("shop-cumulative", server.grpc, Temporality::Cumulative);
    record(&provider);

    // The alerting rule fires (no `for`) with the series' labels, `__name__` left out.
    let firing = common::within(common::alerts::LIMIT, || async {
        let (_, body) = common::get_json(ui, "/prometheus/api/v1/alerts").await;
        body["data"]["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["labels"]["alertname"] == "QueueBacklog"))
    })
    .await;
    assert!(firing.is_some(), "QueueBacklog never fired");
    let (_, body) = common::get_json(ui, "/prometheus/api/v1/alerts").await;
    let alerts = body["data"]["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "SlowOrders must not fire: {body}");
    let alert = &alerts[0];
    assert_eq!(alert["state"], "firing");
    assert_eq!(
        alert["labels"],
        serde_json::json!({"alertname": "QueueBacklog", "job": "shop-cumulative", "severity": "page"})
    );
    assert_eq!(
        alert["annotations"]["summary"],
        "shop-cumulative has 4 waiting"
    );
    assert_eq!(alert["value"], "4e+00");

    // The recording rule's series, and Prometheus's ALERTS series, answer PromQL.
    let recorded = common::within(common::alerts::LIMIT, || async {
        let v = instant(ui, "job:shop_orders:sum").await;
        v.len() == 1 && v[0].1 == 9.0
    })
    .await;
    assert!(
        recorded.is_some(),
        "{:?}",
        instant(ui, "job:shop_orders:sum").await
    );
    let v = instant(ui, "job:shop_orders:sum").await;
    assert_eq!(v[0].0["job"], "shop-cumulative", "{v:?}");
    let series = instant(ui, "ALERTS{alertstate=\"firing\"}").await;
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0].0["alertname"], "QueueBacklog");
    assert_eq!(series[0].0["job"], "shop-cumulative");
    assert_eq!(series[0].1, 1.0);
    let since = one(ui, "ALERTS_FOR_STATE{alertname=\"QueueBacklog\"}").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(since <= now && since > now - 300.0, "{since} vs {now}");

    // The rules API shows the PromQL rules healthy.
    let (_, rules) = common::get_json(ui, "/prometheus/api/v1/rules").await;
    let group = &rules["data"]["groups"][0];
    for rule in group["rules"].as_array().unwrap() {
        assert_eq!(rule["health"], "ok", "{rule}");
    }

    // The queue drains to 1: the alert resolves, and its ALERTS series ends at once (a
    // staleness marker, not five minutes of lookback).
    let queue = provider
        .meter("shop")
        .i64_up_down_counter("shop.queue.depth")
        .build();
    queue.add(-3, &[]);
    provider.force_flush().unwrap();
    let resolved = common::within(common::alerts::LIMIT, || async {
        let (_, body) = common::get_json(ui, "/prometheus/api/v1/alerts").await;
        body["data"]["alerts"]
            .as_array()
            .is_some_and(|a| a.is_empty())
    })
    .await;
    assert!(resolved.is_some(), "QueueBacklog never resolved");
    assert_eq!(one(ui, "shop_queue_depth").await, 1.0);
    let ended = common::within(common::alerts::LIMIT, || async {
        instant(ui, "ALERTS").await.is_empty()
    })
    .await;
    assert!(ended.is_some(), "{:?}", instant(ui, "ALERTS").await);
    assert!(instant(ui, "ALERTS_FOR_STATE").await.is_empty());
    let (_, history) = common::get_json(ui, "/api/v1/alerts?state=resolved").await;
    assert!(
        history["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["rule"] == "QueueBacklog")),
        "{history}"
    );
    provider.shutdown().unwrap();
}

/// The README's span-metrics queries: error ratio per service, p99 per service, failing edges.
const ERROR_RATIO: &str = "sum by (job) (rate(spyglass_span_errors_total{span_kind=\"server\"}[5m])) / sum by (job) (rate(spyglass_span_calls_total{span_kind=\"server\"}[5m]))";
const P99: &str = "histogram_quantile(0.99, sum by (job, le) (rate(spyglass_span_duration_seconds_bucket{span_kind=\"server\"}[5m])))";
const FAILING_EDGES: &str = "sum by (client, server) (rate(spyglass_service_graph_failures_total[5m])) / sum by (client, server) (rate(spyglass_service_graph_calls_total[5m])) > 0.05";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn span_metrics_answer_the_readme_queries() {
    let server = common::start_server().await;
    let ui = server.ui;
    let frontend_provider = common::provider("frontend", server.grpc);
    let payments_provider = common::provider("payments", server.grpc);
    let frontend = opentelemetry::trace::TracerProvider::tracer(&frontend_provider, "shop");
    let payments = opentelemetry::trace::TracerProvider::tracer(&payments_provider, "shop");
    // Checkouts, every other one declined, until the span metrics have two points in range.
    let mut round = 0;
    let ready = common::within(common::alerts::LIMIT, || {
        round += 1;
        common::checkout(&frontend, &payments, round % 2 == 0);
        let _ = frontend_provider.force_flush();
        let _ = payments_provider.force_flush();
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let v = instant(ui, ERROR_RATIO).await;
            v.iter().any(|(m, f)| m["job"] == "payments" && *f > 0.0)
        }
    })
    .await;
    assert!(ready.is_some(), "{:?}", instant(ui, ERROR_RATIO).await);

    let ratios = instant(ui, ERROR_RATIO).await;
    let payments_ratio = ratios
        .iter()
        .find(|(m, _)| m["job"] == "payments")
        .unwrap()
        .1;
    assert!(payments_ratio > 0.0 && payments_ratio <= 1.0, "{ratios:?}");
    // The frontend's own spans never fail: it has no error series, so no ratio.
    assert!(
        ratios.iter().all(|(m, _)| m["job"] != "frontend"),
        "{ratios:?}"
    );

    let p99 = instant(ui, P99).await;
    assert!(
        p99.iter().any(|(m, f)| m["job"] == "frontend" && *f > 0.0),
        "{p99:?}"
    );
    // The duration series name example traces, failed ones first, and they open.
    let (status, found) = api(
        ui,
        "query_exemplars",
        &[(
            "query",
            "spyglass_span_duration_seconds_bucket{job=\"payments\"}",
        )],
    )
    .await;
    assert_eq!(status, 200, "{found}");
    let series = found["data"].as_array().unwrap();
    assert!(!series.is_empty(), "{found}");
    let mut trace_ids = Vec::new();
    for s in series {
        assert_eq!(
            s["seriesLabels"]["__name__"],
            "spyglass_span_duration_seconds_bucket"
        );
        assert_eq!(s["seriesLabels"]["job"], "payments");
        for e in s["exemplars"].as_array().unwrap() {
            let value: f64 = e["value"].as_str().unwrap().parse().unwrap();
            let le = s["seriesLabels"]["le"].as_str().unwrap();
            assert!(le == "+Inf" || value <= le.parse::<f64>().unwrap(), "{s}");
            trace_ids.push(e["labels"]["trace_id"].as_str().unwrap().to_string());
        }
    }
    assert!(
        series
            .iter()
            .any(|s| s["seriesLabels"]["status_code"] == "error"),
        "{found}"
    );
    for id in &trace_ids {
        let (status, trace) = common::get_json(ui, &format!("/api/v1/traces/{id}")).await;
        assert_eq!(status, 200, "exemplar trace {id}: {trace}");
    }
    let edges = instant(ui, FAILING_EDGES).await;
    assert!(
        edges
            .iter()
            .any(|(m, f)| m["client"] == "frontend" && m["server"] == "payments" && *f > 0.05),
        "{edges:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_days_old_are_queryable_at_their_time_with_their_target_info() {
    let server = common::start_server().await;
    let ui = server.ui;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // A batch job reporting three days late, over OTLP/HTTP JSON.
    let first = now - 3 * 86_400;
    let second = first + 60;
    let body = serde_json::json!({"resourceMetrics": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "batch-job"}},
            {"key": "deployment.environment", "value": {"stringValue": "prod"}},
            {"key": "host.name", "value": {"stringValue": "h1"}}
        ]},
        "scopeMetrics": [{"scope": {"name": "backfill"}, "metrics": [{
            "name": "backfill.jobs",
            "unit": "{job}",
            "sum": {"aggregationTemporality": 2, "isMonotonic": true, "dataPoints": [
                {"asInt": "5", "startTimeUnixNano": format!("{}", (first - 60) * 1_000_000_000),
                 "timeUnixNano": format!("{}", first * 1_000_000_000)},
                {"asInt": "12", "startTimeUnixNano": format!("{}", (first - 60) * 1_000_000_000),
                 "timeUnixNano": format!("{}", second * 1_000_000_000)}
            ]}
        }, {
            // Scale 0: buckets (1, 2] and (2, 4] hold one observation each; one exemplar.
            "name": "backfill.batch.size",
            "exponentialHistogram": {"aggregationTemporality": 2, "dataPoints": [
                {"startTimeUnixNano": format!("{}", (first - 60) * 1_000_000_000),
                 "timeUnixNano": format!("{}", second * 1_000_000_000),
                 "count": "2", "sum": 4.5, "scale": 0,
                 "positive": {"offset": 0, "bucketCounts": ["1", "1"]},
                 "exemplars": [{"asDouble": 3.0,
                                "timeUnixNano": format!("{}", second * 1_000_000_000),
                                "traceId": "0af7651916cd43dd8448eb211c80319c",
                                "spanId": "b7ad6b7169203331"}]}
            ]}
        }]}]
    }]});
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/metrics", server.http))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    let at = (second + 10).to_string();
    let (_, body) = api(
        ui,
        "query",
        &[
            ("query", "histogram_count(backfill_batch_size)"),
            ("time", &at),
        ],
    )
    .await;
    assert_eq!(body["data"]["result"][0]["value"][1], "2", "{body}");
    let (status, body) = api(
        ui,
        "query_exemplars",
        &[
            ("query", "backfill_batch_size"),
            ("start", &first.to_string()),
            ("end", &at),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let series = &body["data"][0];
    assert_eq!(
        series["seriesLabels"]["__name__"], "backfill_batch_size",
        "{body}"
    );
    let exemplar = &series["exemplars"][0];
    assert_eq!(exemplar["value"], "3", "{body}");
    assert_eq!(
        exemplar["labels"]["trace_id"], "0af7651916cd43dd8448eb211c80319c",
        "{body}"
    );
    let (status, body) = api(
        ui,
        "query",
        &[("query", "backfill_jobs_total"), ("time", &at)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let result = &body["data"]["result"];
    assert_eq!(result.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(result[0]["value"][1], "12");
    assert_eq!(result[0]["metric"]["job"], "batch-job");
    let (_, body) = api(
        ui,
        "query",
        &[("query", "target_info{job=\"batch-job\"}"), ("time", &at)],
    )
    .await;
    let info = &body["data"]["result"][0]["metric"];
    assert_eq!(info["deployment_environment"], "prod", "{body}");
    assert_eq!(info["host_name"], "h1", "{body}");
    // Joined onto the series, as queries written for Prometheus's OTLP receiver do.
    let (_, body) = api(
        ui,
        "query",
        &[
            (
                "query",
                "backfill_jobs_total * on (job) group_left (host_name) target_info",
            ),
            ("time", &at),
        ],
    )
    .await;
    assert_eq!(
        body["data"]["result"][0]["metric"]["host_name"], "h1",
        "{body}"
    );
    assert_eq!(body["data"]["result"][0]["value"][1], "12");
    // Three days later, beyond the lookback, it is gone.
    assert!(instant(ui, "backfill_jobs_total").await.is_empty());
}
