//! The built-in alerts end to end: a real `spyglass serve`, services sending traces through the
//! Rust OpenTelemetry SDK, every duration of the rules set to seconds. Each kind fires and then
//! resolves; their example traces open; calls from two services into a failing third are one
//! incident rooted there, and an unrelated failure is another.

mod common;

use std::time::Duration;

use common::alerts::{drive, evidence_opens, find, open_incidents, server, state_is};
use common::get_json;
use common::shop::{Request, Shop};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_fire_with_evidence_and_group_into_one_incident_per_cause() {
    let server = server().await;
    let mut shop = Shop::new(server.grpc);
    let ok = Request::default();
    let healthy = |shop: &mut Shop| {
        shop.send(&["frontend", "payments"], ok);
        shop.send(&["checkout", "payments"], ok);
        shop.send(&["search"], ok);
    };
    // A quiet service: two requests, one failed. Never enough requests to judge.
    shop.send(&["rare"], ok);
    shop.send(
        &["rare"],
        Request {
            fail_at: Some(0),
            ..ok
        },
    );
    for _ in 0..20 {
        healthy(&mut shop);
    }

    // payments fails every call from frontend and checkout; search fails on its own.
    let failing = |shop: &mut Shop| {
        let fail_payments = Request {
            fail_at: Some(1),
            ..ok
        };
        shop.send(&["frontend", "payments"], fail_payments);
        shop.send(&["checkout", "payments"], fail_payments);
        shop.send(
            &["search"],
            Request {
                fail_at: Some(0),
                ..ok
            },
        );
    };
    let expected: [(&str, &[(&str, &str)]); 6] = [
        ("ServiceErrors", &[("service", "payments")]),
        ("ServiceErrors", &[("service", "frontend")]),
        ("ServiceErrors", &[("service", "checkout")]),
        ("ServiceErrors", &[("service", "search")]),
        (
            "DependencyFailing",
            &[("client", "frontend"), ("server", "payments")],
        ),
        (
            "DependencyFailing",
            &[("client", "checkout"), ("server", "payments")],
        ),
    ];
    let firing = drive(&mut shop, server.ui, "errors fire", failing, |a| {
        expected
            .iter()
            .all(|(rule, l)| state_is(a, rule, l, "firing"))
    })
    .await;
    for (rule, labels) in expected {
        evidence_opens(server.ui, find(&firing, rule, labels).unwrap()).await;
    }
    let payments = find(&firing, "ServiceErrors", &[("service", "payments")]).unwrap();
    assert_eq!(payments["threshold"], 0.05);
    assert!(
        payments["annotations"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("payments fails")
    );

    // One incident rooted at payments with both callers affected; search is its own.
    let (incidents, open) = open_incidents(server.ui).await;
    let root = |name: &str| open.iter().find(|i| i["root"] == name);
    let at_payments = root("payments").unwrap_or_else(|| panic!("{incidents:#}"));
    assert_eq!(
        at_payments["affected"],
        serde_json::json!(["checkout", "frontend"])
    );
    assert_eq!(
        at_payments["alerts"].as_array().unwrap().len(),
        5,
        "{at_payments:#}"
    );
    let at_search = root("search").unwrap_or_else(|| panic!("{incidents:#}"));
    assert_eq!(at_search["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(open.len(), 2, "{incidents:#}");
    let incident_of = |rule, labels| find(&firing, rule, labels).unwrap()["incident"].clone();
    assert_eq!(
        incident_of("ServiceErrors", &[("service", "frontend")]),
        at_payments["id"]
    );

    // Healthy again: every alert resolves once the window has passed.
    drive(&mut shop, server.ui, "errors resolve", healthy, |a| {
        expected
            .iter()
            .all(|(rule, l)| state_is(a, rule, l, "resolved"))
    })
    .await;
    let (_, history) = get_json(
        server.ui,
        "/api/v1/alerts/history?rule=ServiceErrors&service=rare&start=now-1h",
    )
    .await;
    assert_eq!(
        history["transitions"],
        serde_json::json!([]),
        "one error of two never pages"
    );
    let (_, history) = get_json(
        server.ui,
        "/api/v1/alerts/history?rule=ServiceErrors&service=payments",
    )
    .await;
    let states: Vec<&str> = history["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["pending", "firing", "resolved"]);

    // The same changes in the `alerts` SQL table.
    let answer = common::sql(
        server.ui,
        "SELECT state, incident FROM alerts \
            WHERE rule = 'ServiceErrors' AND labels['service'] = 'payments' ORDER BY time_unix_nano",
    )
    .await;
    let rows = answer["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer:#}"));
    let states: Vec<&str> = rows.iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["pending", "firing", "resolved"], "{answer:#}");
    assert_eq!(rows[1]["incident"], at_payments["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_fires_on_the_callers_rooted_at_the_slow_database() {
    let server = server().await;
    let mut shop = Shop::new(server.grpc);
    let fast = Request {
        db_ms: Some(8),
        ..Request::default()
    };
    let slow = Request {
        db_ms: Some(400),
        ..Request::default()
    };
    // A baseline of fast requests, older than the 5 s window.
    for _ in 0..30 {
        shop.send(&["frontend", "inventory"], fast);
        shop.send(&["inventory"], fast);
    }
    shop.flush();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let expected: [&[(&str, &str)]; 2] = [&[("service", "inventory")], &[("service", "frontend")]];
    let firing = drive(
        &mut shop,
        server.ui,
        "latency fires",
        |shop| {
            shop.send(&["frontend", "inventory"], slow);
            shop.send(&["inventory"], slow);
        },
        |a| {
            expected
                .iter()
                .all(|l| state_is(a, "ServiceLatency", l, "firing"))
        },
    )
    .await;
    for labels in expected {
        let alert = find(&firing, "ServiceLatency", labels).unwrap();
        evidence_opens(server.ui, alert).await;
        assert!(alert["value"].as_f64().unwrap() > alert["threshold"].as_f64().unwrap());
    }
    let (incidents, open) = open_incidents(server.ui).await;
    assert_eq!(open.len(), 1, "{incidents:#}");
    assert_eq!(open[0]["root"], "postgresql", "{incidents:#}");
    assert_eq!(
        open[0]["affected"],
        serde_json::json!(["frontend", "inventory"])
    );

    drive(
        &mut shop,
        server.ui,
        "latency resolves",
        |shop| {
            shop.send(&["frontend", "inventory"], fast);
            shop.send(&["inventory"], fast);
        },
        |a| {
            expected
                .iter()
                .all(|l| state_is(a, "ServiceLatency", l, "resolved"))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_service_and_refused_telemetry_fire_and_resolve() {
    let server = server().await;
    let mut shop = Shop::new(server.grpc);
    let ok = Request::default();
    for _ in 0..20 {
        shop.send(&["checkout", "shipping"], ok);
    }
    // shipping stops answering: checkout's calls time out.
    let timeouts = Request {
        unanswered: true,
        ..ok
    };
    let firing = drive(
        &mut shop,
        server.ui,
        "silence fires",
        |shop| {
            shop.send(&["checkout", "shipping"], timeouts);
        },
        |a| {
            state_is(a, "ServiceSilent", &[("service", "shipping")], "firing")
                && state_is(
                    a,
                    "DependencyFailing",
                    &[("client", "checkout"), ("server", "shipping")],
                    "firing",
                )
        },
    )
    .await;
    let edge = find(
        &firing,
        "DependencyFailing",
        &[("client", "checkout"), ("server", "shipping")],
    )
    .unwrap();
    evidence_opens(server.ui, edge).await;
    let (_, incidents) = get_json(server.ui, "/api/v1/incidents").await;
    assert!(
        incidents["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["root"] == "shipping" && i["state"] == "firing"),
        "{incidents:#}"
    );

    // A request Spyglass refuses (not protobuf) is an alert about Spyglass itself.
    let refused = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/traces", server.http))
        .header("content-type", "application/x-protobuf")
        .body(vec![0xff_u8; 64])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    drive(
        &mut shop,
        server.ui,
        "silence resolves, refusal fires",
        |shop| {
            shop.send(&["checkout", "shipping"], ok);
        },
        |a| {
            state_is(a, "ServiceSilent", &[("service", "shipping")], "resolved")
                && state_is(a, "TelemetryRefused", &[], "firing")
        },
    )
    .await;
    drive(
        &mut shop,
        server.ui,
        "refusal resolves",
        |shop| {
            shop.send(&["checkout", "shipping"], ok);
        },
        |a| {
            state_is(a, "TelemetryRefused", &[], "resolved")
                && state_is(
                    a,
                    "DependencyFailing",
                    &[("client", "checkout"), ("server", "shipping")],
                    "resolved",
                )
        },
    )
    .await;
}
