//! OTLP/HTTP as the specification says, request by request through the router (no socket):
//! JSON and protobuf, compression, limits, bad input — and after each bad request, a good one
//! still succeeds.

use std::io::Write;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan};
use prost::Message;
use spyglass_ingest::{HttpReceiver, Ingest, IngestConfig};
use spyglass_store::{Records, Share, Signal, Store, StoreConfig};
use tower::ServiceExt;

struct Harness {
    router: Router,
    store: Store,
    _dir: tempfile::TempDir,
}

fn harness(config: IngestConfig, store_config: StoreConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), store_config).unwrap();
    let router = HttpReceiver::new(Ingest::new(store.clone(), config)).router();
    Harness {
        router,
        store,
        _dir: dir,
    }
}

fn small_limit() -> Harness {
    harness(
        IngestConfig {
            max_body_bytes: 4096,
            ..IngestConfig::default()
        },
        StoreConfig::default(),
    )
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

async fn post(
    h: &Harness,
    path: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let mut request = Request::post(path).header("content-type", content_type);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    let response = h
        .router
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// Now, in Unix nanoseconds: ingest accepts event times near the present only.
fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn span(trace: u8, span: u8, name: &str) -> OtlpSpan {
    OtlpSpan {
        trace_id: vec![trace; 16],
        span_id: vec![span; 8],
        name: name.into(),
        start_time_unix_nano: now_nanos(),
        end_time_unix_nano: now_nanos() + 500_000,
        ..Default::default()
    }
}

fn request(spans: Vec<OtlpSpan>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn stored_span_names(h: &Harness) -> Vec<String> {
    let Records::Spans(spans) = h.store.snapshot().read_records(Signal::Spans).unwrap() else {
        unreachable!()
    };
    let mut names: Vec<String> = spans.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

/// A bad request was refused with `status` and a `google.rpc.Status` saying why; then a good
/// request is still accepted and stored.
async fn refused_then_recovers(h: &Harness, answer: Answer, status: StatusCode, why: &str) {
    assert_eq!(
        answer.status,
        status,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let rpc = tonic_types::pb::Status::decode(&answer.body[..])
        .expect("the error body is a google.rpc.Status");
    assert!(
        rpc.message.contains(why),
        "message {:?} should mention {why:?}",
        rpc.message
    );
    let before = stored_span_names(h).len();
    let good = post(
        h,
        "/v1/traces",
        "application/x-protobuf",
        None,
        request(vec![span(7, 7, "after")]).encode_to_vec(),
    )
    .await;
    assert_eq!(good.status, StatusCode::OK);
    assert_eq!(
        stored_span_names(h).len(),
        before + 1,
        "the good request after it is stored"
    );
}

#[tokio::test]
async fn truncated_protobuf_is_a_400() {
    let h = small_limit();
    let mut body = request(vec![span(1, 1, "x")]).encode_to_vec();
    body.truncate(body.len() - 3);
    let answer = post(&h, "/v1/traces", "application/x-protobuf", None, body).await;
    refused_then_recovers(&h, answer, StatusCode::BAD_REQUEST, "decode").await;
}

#[tokio::test]
async fn garbage_bytes_are_a_400() {
    let h = small_limit();
    let answer = post(
        &h,
        "/v1/traces",
        "application/x-protobuf",
        None,
        vec![0xff, 0xfe, 0x01, 0x99, 0x42],
    )
    .await;
    refused_then_recovers(&h, answer, StatusCode::BAD_REQUEST, "decode").await;
}

#[tokio::test]
async fn wrong_content_type_is_a_415() {
    let h = small_limit();
    let answer = post(&h, "/v1/traces", "text/plain", None, b"hello".to_vec()).await;
    refused_then_recovers(
        &h,
        answer,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "content type",
    )
    .await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413() {
    let h = small_limit();
    let spans = (0..200)
        .map(|i| span(1, (i % 250) as u8 + 1, &"x".repeat(40)))
        .collect();
    let body = request(spans).encode_to_vec();
    assert!(body.len() > 4096);
    let answer = post(&h, "/v1/traces", "application/x-protobuf", None, body).await;
    refused_then_recovers(
        &h,
        answer,
        StatusCode::PAYLOAD_TOO_LARGE,
        "larger than 4096",
    )
    .await;
}

#[tokio::test]
async fn a_small_gzip_body_expanding_past_the_limit_is_a_413() {
    let h = small_limit();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 2 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 4096, "the compressed body is under the limit");
    let answer = post(
        &h,
        "/v1/traces",
        "application/x-protobuf",
        Some("gzip"),
        bomb,
    )
    .await;
    refused_then_recovers(
        &h,
        answer,
        StatusCode::PAYLOAD_TOO_LARGE,
        "larger than 4096",
    )
    .await;
}

#[tokio::test]
async fn invalid_utf8_in_a_string_is_a_400() {
    let h = small_limit();
    let mut body = request(vec![span(1, 1, "NAME")]).encode_to_vec();
    let at = body.windows(4).position(|w| w == b"NAME").unwrap();
    body[at] = 0xff;
    let answer = post(&h, "/v1/traces", "application/x-protobuf", None, body).await;
    refused_then_recovers(&h, answer, StatusCode::BAD_REQUEST, "decode").await;
}

/// Raw protobuf: field `number` with wire type LEN.
fn len_field(number: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

#[tokio::test]
async fn a_kvlist_nested_ten_thousand_deep_is_a_400() {
    let h = harness(IngestConfig::default(), StoreConfig::default());
    // AnyValue{kvlist_value(6): KeyValueList{values(1): KeyValue{key(1), value(2): AnyValue…}}},
    // built from the inside out without recursion.
    let mut any_value: Vec<u8> = Vec::new();
    for _ in 0..10_000 {
        let mut kv = len_field(1, b"k");
        kv.extend(len_field(2, &any_value));
        any_value = len_field(6, &len_field(1, &kv));
    }
    let mut attribute = len_field(1, b"deep");
    attribute.extend(len_field(2, &any_value));
    let mut span_bytes = span(1, 1, "deep").encode_to_vec();
    span_bytes.extend(len_field(9, &attribute));
    let body = len_field(1, &len_field(2, &len_field(2, &span_bytes)));
    let answer = post(&h, "/v1/traces", "application/x-protobuf", None, body).await;
    refused_then_recovers(&h, answer, StatusCode::BAD_REQUEST, "decode").await;
}

#[tokio::test]
async fn an_empty_request_succeeds() {
    let h = small_limit();
    for body in [
        Vec::new(),
        ExportTraceServiceRequest::default().encode_to_vec(),
    ] {
        let answer = post(&h, "/v1/traces", "application/x-protobuf", None, body).await;
        assert_eq!(answer.status, StatusCode::OK);
        let response = ExportTraceServiceResponse::decode(&answer.body[..]).unwrap();
        assert!(response.partial_success.is_none());
    }
}

#[tokio::test]
async fn invalid_ids_are_a_partial_success_with_the_right_count() {
    let h = small_limit();
    let mut zero_trace = span(0, 2, "zero trace id");
    zero_trace.trace_id = vec![0; 16];
    let mut short_span = span(3, 3, "short span id");
    short_span.span_id = vec![1, 2, 3];
    let mut bad_kind = span(4, 4, "bad kind");
    bad_kind.kind = 42;
    let body = request(vec![
        span(1, 1, "good one"),
        zero_trace,
        short_span,
        bad_kind,
        span(5, 5, "good two"),
    ])
    .encode_to_vec();
    let answer = post(&h, "/v1/traces", "application/x-protobuf", None, body).await;
    assert_eq!(answer.status, StatusCode::OK);
    let partial = ExportTraceServiceResponse::decode(&answer.body[..])
        .unwrap()
        .partial_success
        .expect("partial success");
    assert_eq!(partial.rejected_spans, 3);
    assert!(
        partial.error_message.contains("trace_id is all zeros"),
        "{}",
        partial.error_message
    );
    assert!(
        partial.error_message.contains("2 more rejected"),
        "{}",
        partial.error_message
    );
    assert_eq!(stored_span_names(&h), ["good one", "good two"]);
}

#[tokio::test]
async fn a_wrong_token_is_a_401_and_the_right_one_passes() {
    let config = IngestConfig {
        tokens: vec![spyglass_ingest::Token::new("sekret")],
        ..IngestConfig::default()
    };
    let h = harness(config, StoreConfig::default());
    let body = request(vec![span(1, 1, "x")]).encode_to_vec();
    let send = |auth: Option<&'static str>| {
        let mut r = Request::post("/v1/traces").header("content-type", "application/x-protobuf");
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        h.router
            .clone()
            .oneshot(r.body(Body::from(body.clone())).unwrap())
    };
    assert_eq!(send(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        send(Some("Bearer wrong")).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(Some("Bearer sekret")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(stored_span_names(&h), ["x"]);
}

#[tokio::test]
async fn a_full_store_answers_429_with_retry_after() {
    let h = harness(
        IngestConfig::default(),
        StoreConfig {
            memtable_max_bytes: 64 << 10,
            flush_bytes: 32 << 10,
            ..StoreConfig::default()
        },
    );
    let mut accepted = 0;
    let throttled = loop {
        let spans = (0..20)
            .map(|i| span((accepted % 250) as u8 + 1, i + 1, "load"))
            .collect();
        let answer = post(
            &h,
            "/v1/traces",
            "application/x-protobuf",
            None,
            request(spans).encode_to_vec(),
        )
        .await;
        if answer.status != StatusCode::OK {
            break answer;
        }
        accepted += 1;
        assert!(accepted < 10_000, "never throttled");
    };
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        throttled
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_eq!(
        stored_span_names(&h).len(),
        accepted * 20,
        "everything acknowledged is stored, nothing else"
    );
    h.store.flush().await.unwrap();
    let again = post(
        &h,
        "/v1/traces",
        "application/x-protobuf",
        None,
        request(vec![span(9, 9, "later")]).encode_to_vec(),
    )
    .await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "after a flush frees memory, the retry succeeds"
    );
}

const TRACES_JSON: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-svc"}}]},
 "scopeSpans":[{"scope":{"name":"hand-written"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
 "parentSpanId":"","name":"GET /json","kind":2,"startTimeUnixNano":"1795737600000000000","endTimeUnixNano":1795737600000100000,
 "attributes":[{"key":"http.response.status_code","value":{"intValue":"200"}},{"key":"ok","value":{"boolValue":true}}],
 "status":{"code":1},"unknownField":{"ignored":true}}]}]}]}"#;

const METRICS_JSON: &str = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-svc"}}]},
 "scopeMetrics":[{"metrics":[{"name":"http.server.requests","unit":"1","sum":{"aggregationTemporality":2,"isMonotonic":true,
 "dataPoints":[{"asInt":"42","timeUnixNano":"1795737600000000000","attributes":[{"key":"route","value":{"stringValue":"/json"}}]}]}}]}]}]}"#;

const LOGS_JSON: &str = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-svc"}}]},
 "scopeLogs":[{"logRecords":[{"timeUnixNano":"1795737600000000000","severityNumber":17,"severityText":"ERROR",
 "body":{"stringValue":"payment failed"},"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}]}"#;

fn encode(encoding: Option<&str>, body: &[u8]) -> Vec<u8> {
    match encoding {
        None => body.to_vec(),
        Some("gzip") => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(body).unwrap();
            gz.finish().unwrap()
        }
        Some("zstd") => zstd::encode_all(body, 3).unwrap(),
        Some(other) => panic!("no encoder for {other}"),
    }
}

#[tokio::test]
async fn hand_written_json_for_all_signals_plain_gzip_and_zstd() {
    for encoding in [None, Some("gzip"), Some("zstd")] {
        let h = harness(IngestConfig::default(), StoreConfig::default());
        for (path, json) in [
            ("/v1/traces", TRACES_JSON),
            ("/v1/metrics", METRICS_JSON),
            ("/v1/logs", LOGS_JSON),
        ] {
            // The hand-written times, moved to now (ingest accepts times near the present).
            let now = now_nanos();
            let json = json
                .replace("1795737600000000000", &now.to_string())
                .replace("1795737600000100000", &(now + 100_000).to_string());
            let answer = post(
                &h,
                path,
                "application/json",
                encoding,
                encode(encoding, json.as_bytes()),
            )
            .await;
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{path} {encoding:?}: {}",
                String::from_utf8_lossy(&answer.body)
            );
            assert_eq!(
                answer.headers.get("content-type").unwrap(),
                "application/json",
                "answered in the request's encoding"
            );
            let response: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
            assert!(
                response.get("partialSuccess").is_none_or(|p| p.is_null()),
                "{response}"
            );
        }
        let snapshot = h.store.snapshot();
        let Records::Spans(spans) = snapshot.read_records(Signal::Spans).unwrap() else {
            unreachable!()
        };
        assert_eq!(spans.len(), 1);
        assert_eq!(
            spans[0].trace_id.to_hex(),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(spans[0].service_name(), "json-svc");
        assert_eq!(
            spans[0].attributes.get("http.response.status_code"),
            Some(&spyglass_store::model::AttrValue::Int(200))
        );
        assert_eq!(
            spans[0].end_time_unix_nano - spans[0].start_time_unix_nano,
            100_000,
            "64-bit integers as strings or numbers"
        );
        let Records::Metrics(points) = snapshot.read_records(Signal::Metrics).unwrap() else {
            unreachable!()
        };
        assert_eq!(points.len(), 1);
        assert_eq!(
            points[0].value,
            spyglass_store::model::PointValue::Number(spyglass_store::model::NumberValue::Int(42))
        );
        assert!(points[0].is_monotonic);
        let Records::Logs(logs) = snapshot.read_records(Signal::Logs).unwrap() else {
            unreachable!()
        };
        assert_eq!(logs.len(), 1);
        assert_eq!(
            logs[0].body,
            Some(spyglass_store::model::AttrValue::Str(
                "payment failed".into()
            ))
        );
        assert_eq!(
            logs[0].span_id.map(|s| s.to_hex()),
            Some("eee19b7ec3c1b174".into())
        );
    }
}

/// Fails when the process's peak resident memory so far (`/proc/self/status`) passed the 1 GiB
/// budget.
fn assert_peak_rss_within_budget() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        kib < 1 << 20,
        "peak RSS {} MiB, over the 1 GiB budget",
        kib >> 10
    );
}

/// `body` gzipped, checked to be a small request (under 1 MiB on the wire).
fn small_gzip(body: &[u8]) -> Vec<u8> {
    let gzipped = encode(Some("gzip"), body);
    assert!(
        gzipped.len() < 1 << 20,
        "a small request: {} bytes",
        gzipped.len()
    );
    gzipped
}

#[tokio::test]
async fn a_small_gzip_request_that_expands_past_the_limit_is_refused() {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let h = harness(IngestConfig::default(), StoreConfig::default());
    // One resource with a 1 MiB attribute, and 100,000 minimal spans: each stored row would
    // carry a copy of the resource, 100 GB in all.
    let resource = Resource {
        attributes: vec![KeyValue {
            key: "k8s.pod.annotations".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("x".repeat(1 << 20))),
            }),
            key_strindex: 0,
        }],
        ..Default::default()
    };
    let now = now_nanos();
    let spans: Vec<OtlpSpan> = (0..100_000u32)
        .map(|i| OtlpSpan {
            trace_id: [&[7u8; 12][..], &i.to_be_bytes()].concat(),
            span_id: [&[1u8; 4][..], &i.to_be_bytes()].concat(),
            start_time_unix_nano: now,
            end_time_unix_nano: now + 1,
            ..Default::default()
        })
        .collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let body = small_gzip(&request.encode_to_vec());

    let answer = post(
        &h,
        "/v1/traces",
        "application/x-protobuf",
        Some("gzip"),
        body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    let text = String::from_utf8_lossy(&answer.body);
    assert!(text.contains("max_expanded_bytes"), "{text}");
    assert_eq!(
        h.store
            .snapshot()
            .read_records(Signal::Spans)
            .unwrap()
            .len(),
        0
    );
    assert_peak_rss_within_budget();

    // The same spans with a small resource are stored.
    let mut small = request.clone();
    small.resource_spans[0].resource = None;
    let answer = post(
        &h,
        "/v1/traces",
        "application/x-protobuf",
        None,
        small.encode_to_vec(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        h.store
            .snapshot()
            .read_records(Signal::Spans)
            .unwrap()
            .len(),
        100_000
    );
}

/// A protobuf length-delimited field: key, length, bytes.
fn field(number: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![number << 3 | 2];
    let mut len = body.len() as u64;
    while len >= 0x80 {
        out.push(len as u8 | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn a_small_request_that_decodes_to_gigabytes_is_refused_before_decoding() {
    let h = harness(IngestConfig::default(), StoreConfig::default());
    // 10 million empty log records: 2 bytes each on the wire, a struct of a few hundred bytes
    // each once decoded; gzip makes the 20 MB body a few kilobytes.
    let records: Vec<u8> = [0x12u8, 0x00].repeat(10_000_000);
    let body = small_gzip(&field(1, &field(2, &records)));

    let answer = post(&h, "/v1/logs", "application/x-protobuf", Some("gzip"), body).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    let text = String::from_utf8_lossy(&answer.body);
    assert!(text.contains("max_decoded_bytes"), "{text}");
    assert_peak_rss_within_budget();

    // The same shape at a size that decodes within the limit is stored.
    let now = now_nanos().to_le_bytes();
    let record = [&[0x09u8][..], &now].concat(); // time_unix_nano, fixed64
    let small = field(1, &field(2, &field(2, &record).repeat(1000)));
    let answer = post(&h, "/v1/logs", "application/x-protobuf", None, small).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        h.store.snapshot().read_records(Signal::Logs).unwrap().len(),
        1000
    );
}

#[tokio::test]
async fn a_taken_memory_budget_answers_429_then_the_same_request_is_stored() {
    let h = harness(IngestConfig::default(), StoreConfig::default());
    let memory = h.store.memory().clone();
    let taken = memory
        .try_reserve(Share::Compaction, memory.dynamic_bytes() - 10)
        .unwrap();
    let body = request(vec![span(1, 1, "kept")]).encode_to_vec();
    for content_type in ["application/x-protobuf", "application/json"] {
        let answer = post(&h, "/v1/traces", content_type, None, body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{content_type}"
        );
        let retry = answer
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok());
        assert_eq!(retry, Some("1"));
        assert!(String::from_utf8_lossy(&answer.body).contains("memory budget"));
    }
    assert_eq!(memory.reserved_by(Share::Requests), 0, "given back");
    drop(taken);
    let answer = post(&h, "/v1/traces", "application/x-protobuf", None, body).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(stored_span_names(&h), ["kept"]);
    assert_eq!(memory.reserved_by(Share::Requests), 0, "given back");
}

#[tokio::test]
async fn json_of_empty_objects_is_refused_before_it_is_decoded() {
    let h = harness(
        IngestConfig {
            max_decoded_bytes: 64 << 20,
            ..IngestConfig::default()
        },
        StoreConfig::default(),
    );
    // 3 MiB of `{}`: a million log records, a few hundred MiB once decoded.
    let records = vec!["{}"; 1_000_000].join(",");
    let body = format!(r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{records}]}}]}}]}}"#);
    let answer = post(&h, "/v1/logs", "application/json", None, body.into_bytes()).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    let message = String::from_utf8_lossy(&answer.body).to_string();
    assert!(message.contains("max_decoded_bytes"), "{message}");
}
