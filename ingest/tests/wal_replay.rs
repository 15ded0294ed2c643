//! Requests the fast paths take are logged in the WAL as they came; after a crash, replay with
//! `source_decoder` gives back exactly the rows that were acknowledged.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use spyglass_ingest::{Ingest, IngestConfig, Protocol, source_decoder};
use spyglass_store::{Records, Signal, Store, StoreConfig};

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv(
            "service.name",
            any_value::Value::StringValue("checkout".into()),
        )],
        ..Default::default()
    })
}

/// Now, in Unix nanoseconds: ingest accepts event times near the present only.
fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn traces(first: u8) -> Vec<u8> {
    let spans = (first..first + 3)
        .map(|i| Span {
            trace_id: vec![i; 16],
            span_id: vec![i; 8],
            name: format!("GET /cart/{i}"),
            kind: 2,
            start_time_unix_nano: now_nanos() + 1_000 * u64::from(i),
            end_time_unix_nano: now_nanos() + 1_000 * u64::from(i) + 500,
            attributes: vec![
                kv("http.route", any_value::Value::StringValue("/cart".into())),
                kv("http.status_code", any_value::Value::IntValue(200)),
            ],
            status: Some(Status {
                code: 1,
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn metrics() -> Vec<u8> {
    let number = |value| NumberDataPoint {
        attributes: vec![kv("queue", any_value::Value::StringValue("orders".into()))],
        time_unix_nano: now_nanos(),
        value: Some(value),
        ..Default::default()
    };
    let metrics = vec![
        Metric {
            name: "queue.depth".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![number(number_data_point::Value::AsInt(7))],
            })),
            ..Default::default()
        },
        Metric {
            name: "orders".into(),
            unit: "{order}".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![number(number_data_point::Value::AsDouble(3.5))],
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            ..Default::default()
        },
        Metric {
            name: "http.server.duration".into(),
            unit: "ms".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    time_unix_nano: now_nanos(),
                    count: 4,
                    sum: Some(40.0),
                    bucket_counts: vec![1, 3],
                    explicit_bounds: vec![10.0],
                    exemplars: vec![Exemplar {
                        value: Some(exemplar::Value::AsDouble(12.0)),
                        trace_id: vec![9; 16],
                        span_id: vec![9; 8],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            })),
            ..Default::default()
        },
        Metric {
            name: "rpc.server.duration".into(),
            unit: "s".into(),
            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    time_unix_nano: now_nanos(),
                    count: 6,
                    sum: Some(1.5),
                    scale: -2,
                    zero_count: 1,
                    zero_threshold: 1e-9,
                    positive: Some(Buckets {
                        offset: -3,
                        bucket_counts: vec![2, 0, 300],
                    }),
                    negative: Some(Buckets {
                        offset: 1,
                        bucket_counts: vec![1],
                    }),
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        },
        Metric {
            name: "gc.pause".into(),
            data: Some(metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: now_nanos(),
                    count: 3,
                    sum: 0.25,
                    quantile_values: vec![
                        ValueAtQuantile {
                            quantile: 0.5,
                            value: 0.05,
                        },
                        ValueAtQuantile {
                            quantile: 0.99,
                            value: 0.2,
                        },
                    ],
                    ..Default::default()
                }],
            })),
            ..Default::default()
        },
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn read(store: &Store, signal: Signal) -> Records {
    store.snapshot().read_records(signal).unwrap()
}

#[tokio::test]
async fn fast_path_requests_come_back_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let open = || Store::open_with_decoder(dir.path(), StoreConfig::default(), source_decoder());
    let (store, _) = open().unwrap();
    let ingest = Ingest::new(store.clone(), IngestConfig::default());
    for first in [1, 4] {
        let answer = ingest
            .traces_protobuf(
                &traces(first).into(),
                Protocol::Grpc,
                &ingest.request_memory(),
            )
            .await;
        assert!(answer.unwrap().partial_success.is_none());
    }
    let answer = ingest
        .metrics_protobuf(&metrics().into(), Protocol::Http, &ingest.request_memory())
        .await;
    assert!(answer.unwrap().partial_success.is_none());
    let (spans, points) = (read(&store, Signal::Spans), read(&store, Signal::Metrics));
    assert_eq!((spans.len(), points.len()), (6, 5));
    // No flush: everything is in the WAL only, as after `kill -9`.
    drop((ingest, store));

    // The records are the requests themselves: a store without the decoder cannot read them.
    let error = Store::open(dir.path(), StoreConfig::default()).err();
    assert!(
        error.is_some(),
        "opened a WAL of source records without a decoder"
    );

    let (store, report) = open().unwrap();
    assert!(report.damaged.is_empty(), "{report:?}");
    assert_eq!(report.records_replayed, 3);
    assert_eq!(read(&store, Signal::Spans), spans);
    assert_eq!(read(&store, Signal::Metrics), points);
}
