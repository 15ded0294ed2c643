//! OTLP/gRPC answers: partial success, INVALID_ARGUMENT for an undecodable message,
//! UNAUTHENTICATED, and UNAVAILABLE with `RetryInfo` when the store is full — then success once
//! it has room.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan};
use spyglass_ingest::{GrpcReceiver, Ingest, IngestConfig, Token};
use spyglass_store::{Records, Share, Signal, Store, StoreConfig};
use tokio::net::TcpListener;
use tonic::Code;
use tonic_types::StatusExt;

async fn start(
    config: IngestConfig,
    store_config: StoreConfig,
) -> (Store, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), store_config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        GrpcReceiver::new(Ingest::new(store.clone(), config)).run(listener, std::future::pending()),
    );
    (store, url, dir)
}

/// Now, in Unix nanoseconds: ingest accepts event times near the present only.
fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn request(n: u64, first: u64) -> ExportTraceServiceRequest {
    let spans = (first..first + n)
        .map(|i| OtlpSpan {
            trace_id: [&[1u8; 8][..], &i.to_be_bytes()].concat(),
            span_id: (i + 1).to_be_bytes().to_vec(),
            name: "grpc".into(),
            start_time_unix_nano: now_nanos(),
            end_time_unix_nano: now_nanos() + 1_000,
            ..Default::default()
        })
        .collect();
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

#[tokio::test]
async fn a_full_store_answers_unavailable_with_retry_info_then_recovers() {
    let small = StoreConfig {
        memtable_max_bytes: 64 << 10,
        flush_bytes: 32 << 10,
        ..StoreConfig::default()
    };
    let (store, url, _dir) = start(IngestConfig::default(), small).await;
    let mut client = TraceServiceClient::connect(url).await.unwrap();
    let mut sent = 0;
    let status = loop {
        match client.export(request(20, sent)).await {
            Ok(_) => sent += 20,
            Err(status) => break status,
        }
        assert!(sent < 200_000, "never throttled");
    };
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let retry = status
        .get_details_retry_info()
        .expect("RetryInfo in the status details");
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(1)));
    store.flush().await.unwrap();
    let response = client
        .export(request(20, sent))
        .await
        .expect("accepted after a flush")
        .into_inner();
    assert!(response.partial_success.is_none());
}

#[tokio::test]
async fn invalid_spans_are_a_partial_success() {
    let (_store, url, _dir) = start(IngestConfig::default(), StoreConfig::default()).await;
    let mut client = TraceServiceClient::connect(url).await.unwrap();
    let mut req = request(3, 0);
    req.resource_spans[0].scope_spans[0].spans[1].span_id = vec![0; 8];
    let partial = client
        .export(req)
        .await
        .unwrap()
        .into_inner()
        .partial_success
        .expect("partial success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("span_id is all zeros"),
        "{}",
        partial.error_message
    );
}

#[tokio::test]
async fn spans_over_a_million_hours_make_no_more_parts_than_the_limit() {
    const HOUR: u64 = 3_600_000_000_000;
    let (store, url, _dir) = start(IngestConfig::default(), StoreConfig::default()).await;
    let mut client = TraceServiceClient::connect(url).await.unwrap();
    let now = now_nanos();
    // 20,000 spans, each in an hour of its own, from 1,000,000 hours ago to 10,000 ahead, and
    // 100 more in each of the last 100 hours: what a broken clock or a hostile client sends.
    let mut req = request(20_100, 0);
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    for (i, span) in spans.iter_mut().enumerate() {
        let i = i as u64;
        let time = match i {
            0..20_000 => (now + 10_000 * HOUR).saturating_sub(i * 50 * HOUR),
            _ => now - (i - 20_000) * HOUR,
        };
        span.start_time_unix_nano = time;
        span.end_time_unix_nano = time + 1_000;
    }
    let partial = client
        .export(req)
        .await
        .unwrap()
        .into_inner()
        .partial_success
        .expect("partial success");
    let limit = IngestConfig::default().max_hours_per_request;
    let stored = store.snapshot().read_records(Signal::Spans).unwrap().len();
    assert!(stored >= limit, "the limit fills: {stored} spans stored");
    assert_eq!(partial.rejected_spans as usize, 20_100 - stored);
    assert!(
        partial.error_message.contains("h in the past")
            || partial.error_message.contains("min in the future"),
        "{}",
        partial.error_message
    );
    store.flush().await.unwrap();
    let parts = store.snapshot().parts(Signal::Spans).len();
    assert!(
        parts <= limit,
        "{parts} parts from one request, at most {limit}"
    );
}

#[tokio::test]
async fn a_missing_token_is_answered_before_the_body_is_sent() {
    let config = IngestConfig {
        tokens: vec![Token::new("t0k")],
        ..IngestConfig::default()
    };
    let (_store, url, _dir) = start(config, StoreConfig::default()).await;
    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    // A client-streaming call whose message never comes: only the headers reach the server.
    let body = tokio_stream::pending::<ExportTraceServiceRequest>();
    let path = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        .parse()
        .unwrap();
    let call = grpc.client_streaming::<_, _, ExportTraceServiceResponse, _>(
        tonic::Request::new(body),
        path,
        tonic_prost::ProstCodec::default(),
    );
    let status = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("answered without waiting for the body")
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_missing_token_is_unauthenticated() {
    let config = IngestConfig {
        tokens: vec![Token::new("t0k")],
        ..IngestConfig::default()
    };
    let (_store, url, _dir) = start(config, StoreConfig::default()).await;
    let mut client = TraceServiceClient::connect(url).await.unwrap();
    let status = client.export(request(1, 0)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut authorized = tonic::Request::new(request(1, 0));
    authorized
        .metadata_mut()
        .insert("authorization", "Bearer t0k".parse().unwrap());
    assert!(client.export(authorized).await.is_ok());
}

/// A message whose field 1 (`resource_spans`, `resource_metrics`, `resource_logs`) holds bytes
/// that decode as none of them.
#[derive(Clone, PartialEq, prost::Message)]
struct Undecodable {
    #[prost(bytes = "vec", tag = "1")]
    resources: Vec<u8>,
}

#[tokio::test]
async fn an_undecodable_message_is_invalid_argument_and_the_next_one_succeeds() {
    let (store, url, _dir) = start(IngestConfig::default(), StoreConfig::default()).await;
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    for service in [
        "trace.v1.TraceService",
        "metrics.v1.MetricsService",
        "logs.v1.LogsService",
    ] {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let path = format!("/opentelemetry.proto.collector.{service}/Export");
        let path = tonic::codegen::http::uri::PathAndQuery::try_from(path).unwrap();
        // Field 1 (resource_*) holds a length-delimited field 2 claiming 100 bytes, with 1 behind it.
        let garbage = Undecodable {
            resources: vec![0x12, 100, 0],
        };
        let codec = tonic_prost::ProstCodec::<Undecodable, ExportTraceServiceResponse>::default();
        let status = grpc
            .unary(tonic::Request::new(garbage), path, codec)
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{service}: {status:?}"
        );
        assert!(
            status.message().contains("failed to decode"),
            "{service}: {}",
            status.message()
        );
    }

    let mut client = TraceServiceClient::connect(url).await.unwrap();
    let response = client.export(request(2, 0)).await.unwrap().into_inner();
    assert!(response.partial_success.is_none());
    let Records::Spans(stored) = store.snapshot().read_records(Signal::Spans).unwrap() else {
        unreachable!()
    };
    assert_eq!(stored.len(), 2, "only the good request's spans are stored");
}

#[tokio::test]
async fn a_taken_memory_budget_answers_unavailable_with_retry_info_then_recovers() {
    let (store, url, _dir) = start(IngestConfig::default(), StoreConfig::default()).await;
    let mut client = TraceServiceClient::connect(url).await.unwrap();
    let memory = store.memory().clone();
    // Queries and a compaction hold everything the standing shares leave.
    let taken = memory
        .try_reserve(Share::Queries, memory.dynamic_bytes() - 1024)
        .unwrap();
    let status = client.export(request(20, 0)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("memory budget"), "{status:?}");
    let retry = status.get_details_retry_info().expect("RetryInfo");
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(1)));
    assert!(memory.refused(Share::Requests) > 0);
    assert_eq!(memory.reserved_by(Share::Requests), 0, "given back");
    drop(taken);
    let response = client
        .export(request(20, 0))
        .await
        .expect("accepted")
        .into_inner();
    assert!(response.partial_success.is_none());
    assert_eq!(memory.reserved_by(Share::Requests), 0, "given back");
    let Records::Spans(stored) = store.snapshot().read_records(Signal::Spans).unwrap() else {
        panic!("spans read as spans");
    };
    assert_eq!(stored.len(), 20);
}

#[tokio::test]
async fn a_request_needing_more_than_the_budget_leaves_is_refused_not_retried() {
    let config = IngestConfig {
        max_decoded_bytes: 4 << 30,
        ..IngestConfig::default()
    };
    let (store, url, _dir) = start(config, StoreConfig::default()).await;
    let mut client = TraceServiceClient::connect(url).await.unwrap();
    // Two million empty spans: 4 MiB on the wire, a few hundred bytes each once decoded.
    let mut request = request(1, 0);
    request.resource_spans[0].scope_spans[0].spans = vec![OtlpSpan::default(); 2_000_000];
    let status = client.export(request).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("memory_budget_bytes"),
        "{status:?}"
    );
    assert_eq!(store.memory().reserved_by(Share::Requests), 0);
}
