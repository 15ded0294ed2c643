//! The metrics fast path against the general path, as for spans: on generated requests, valid
//! and not, and on damaged bytes, it either falls back or makes exactly the general path's
//! batch.

use arrow::array::RecordBatch;
use arrow::ipc::writer::StreamWriter;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, metric, number_data_point,
};
use proptest::prelude::*;
use prost::Message;
use spyglass_store::schema::metrics_to_batch;

use super::super::tests::{attributes, damage, damaged, id, resource, scope};
use super::metrics;
use crate::convert;
use crate::wire::Fallback;

/// What the general path makes of `bytes`: the batch, and how many points it rejected.
fn general(bytes: &[u8]) -> Option<(Option<RecordBatch>, u64)> {
    let request = ExportMetricsServiceRequest::decode(bytes).ok()?;
    let converted = convert::metrics(request);
    let batch = (!converted.items.is_empty()).then(|| metrics_to_batch(&converted.items).unwrap());
    Some((batch, converted.rejected))
}

/// A batch as IPC bytes: compared bit for bit, so that a gap's NaN equals itself.
fn bits(batch: &Option<RecordBatch>) -> Option<Vec<u8>> {
    let batch = batch.as_ref()?;
    let mut writer = StreamWriter::try_new(Vec::new(), &batch.schema()).unwrap();
    writer.write(batch).unwrap();
    Some(writer.into_inner().unwrap())
}

/// A finite double: the model and Arrow compare NaN as unequal to itself.
fn double() -> impl Strategy<Value = f64> {
    any::<i32>().prop_map(|i| f64::from(i) / 8.0)
}

/// Mostly valid ids; sometimes empty (no id), all zeros or the wrong length.
fn optional_id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![3 => id(len), 1 => Just(vec![])]
}

fn exemplars() -> impl Strategy<Value = Vec<Exemplar>> {
    let value = prop::option::weighted(
        0.95,
        prop_oneof![
            any::<i64>().prop_map(exemplar::Value::AsInt),
            double().prop_map(exemplar::Value::AsDouble),
        ],
    );
    let exemplar = (
        attributes(),
        any::<u64>(),
        value,
        optional_id(8),
        optional_id(16),
    )
        .prop_map(
            |(filtered_attributes, time_unix_nano, value, span_id, trace_id)| Exemplar {
                filtered_attributes,
                time_unix_nano,
                span_id,
                trace_id,
                value,
            },
        );
    // Rarely, so that each kind of invalid item shows up alone often enough.
    prop_oneof![3 => Just(vec![]), 1 => prop::collection::vec(exemplar, 1..3)]
}

fn number_point() -> impl Strategy<Value = NumberDataPoint> {
    let value = prop::option::weighted(
        0.97,
        prop_oneof![
            any::<i64>().prop_map(number_data_point::Value::AsInt),
            double().prop_map(number_data_point::Value::AsDouble),
        ],
    );
    (
        attributes(),
        any::<(u64, u64)>(),
        value,
        exemplars(),
        0u32..3,
    )
        .prop_map(
            |(attributes, (start, time), value, exemplars, flags)| NumberDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: time,
                exemplars,
                flags,
                value,
            },
        )
}

fn histogram_point() -> impl Strategy<Value = HistogramDataPoint> {
    let buckets = (0usize..4).prop_flat_map(|bounds| {
        // Mostly one count more than bounds (or none); sometimes a mismatch.
        let counts = prop_oneof![
            12 => Just(bounds + 1),
            2 => Just(0),
            1 => 0usize..6,
        ];
        (
            counts.prop_flat_map(|n| prop::collection::vec(any::<u64>(), n)),
            prop::collection::vec(double(), bounds),
        )
    });
    (
        (attributes(), any::<(u64, u64, u64)>(), 0u32..3),
        (
            prop::option::of(double()),
            prop::option::of(double()),
            prop::option::of(double()),
        ),
        buckets,
        exemplars(),
    )
        .prop_map(
            |(
                (attributes, (start, time, count), flags),
                (sum, min, max),
                (bucket_counts, explicit_bounds),
                exemplars,
            )| HistogramDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: time,
                count,
                sum,
                bucket_counts,
                explicit_bounds,
                exemplars,
                flags,
                min,
                max,
            },
        )
}

fn exponential_point() -> impl Strategy<Value = ExponentialHistogramDataPoint> {
    // Offsets and scales of both signs, counts of every varint length.
    let buckets = prop::option::weighted(
        0.8,
        (any::<i32>(), prop::collection::vec(any::<u64>(), 0..5)).prop_map(
            |(offset, bucket_counts)| Buckets {
                offset,
                bucket_counts,
            },
        ),
    );
    (
        (
            attributes(),
            any::<(u64, u64, u64)>(),
            0u32..3,
            any::<i32>(),
        ),
        (
            prop::option::of(double()),
            prop::option::of(double()),
            prop::option::of(double()),
            double(),
            any::<u64>(),
        ),
        (buckets.clone(), buckets),
        exemplars(),
    )
        .prop_map(
            |(
                (attributes, (start, time, count), flags, scale),
                (sum, min, max, zero_threshold, zero_count),
                (positive, negative),
                exemplars,
            )| ExponentialHistogramDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: time,
                count,
                sum,
                scale,
                zero_count,
                positive,
                negative,
                flags,
                exemplars,
                min,
                max,
                zero_threshold,
            },
        )
}

fn summary_point() -> impl Strategy<Value = SummaryDataPoint> {
    let quantile =
        (double(), double()).prop_map(|(quantile, value)| ValueAtQuantile { quantile, value });
    (
        (attributes(), any::<(u64, u64, u64)>(), 0u32..3),
        double(),
        prop::collection::vec(quantile, 0..4),
    )
        .prop_map(
            |((attributes, (start, time, count), flags), sum, quantile_values)| SummaryDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: time,
                count,
                sum,
                quantile_values,
                flags,
            },
        )
}

fn data() -> impl Strategy<Value = Option<metric::Data>> {
    use metric::Data;
    let points = || prop::collection::vec(number_point(), 0..4);
    // Temporality out of range (4) now and then, which the general path rejects.
    let temporality = || prop_oneof![5 => 0i32..3, 1 => Just(4)];
    prop_oneof![
        1 => Just(None),
        4 => points().prop_map(|data_points| Some(Data::Gauge(Gauge { data_points }))),
        4 => (points(), temporality(), any::<bool>()).prop_map(
            |(data_points, aggregation_temporality, is_monotonic)| Some(Data::Sum(Sum {
                data_points,
                aggregation_temporality,
                is_monotonic,
            }))
        ),
        4 => (prop::collection::vec(histogram_point(), 0..3), temporality()).prop_map(
            |(data_points, aggregation_temporality)| Some(Data::Histogram(Histogram {
                data_points,
                aggregation_temporality,
            }))
        ),
        3 => (prop::collection::vec(exponential_point(), 0..3), temporality()).prop_map(
            |(data_points, aggregation_temporality)| Some(Data::ExponentialHistogram(
                ExponentialHistogram {
                    data_points,
                    aggregation_temporality,
                }
            ))
        ),
        3 => prop::collection::vec(summary_point(), 0..3)
            .prop_map(|data_points| Some(Data::Summary(Summary { data_points }))),
    ]
}

fn request() -> impl Strategy<Value = ExportMetricsServiceRequest> {
    let metric = (
        prop::sample::select(vec!["http.server.duration", "queue.depth", "requests"]),
        ".{0,6}",
        prop::sample::select(vec!["", "ms", "By", "{request}"]),
        data(),
    )
        .prop_map(|(name, description, unit, data)| Metric {
            name: name.into(),
            description,
            unit: unit.into(),
            data,
            metadata: vec![],
        });
    let scope = (scope(), prop::collection::vec(metric, 0..4), ".{0,4}").prop_map(
        |(scope, metrics, schema_url)| ScopeMetrics {
            scope,
            metrics,
            schema_url,
        },
    );
    let resource = (resource(), prop::collection::vec(scope, 0..3), ".{0,4}").prop_map(
        |(resource, scope_metrics, schema_url)| ResourceMetrics {
            resource,
            scope_metrics,
            schema_url,
        },
    );
    prop::collection::vec(resource, 0..3)
        .prop_map(|resource_metrics| ExportMetricsServiceRequest { resource_metrics })
}

/// Whether `request` holds what the fast path leaves to the general one although it is
/// valid: non-scalar attributes.
fn left_to_the_general_path(request: &ExportMetricsServiceRequest) -> bool {
    use any_value::Value;
    use metric::Data;
    let scalar = |kvs: &[KeyValue]| {
        kvs.iter().all(|kv| {
            matches!(
                kv.value.as_ref().and_then(|v| v.value.as_ref()),
                Some(
                    Value::StringValue(_)
                        | Value::IntValue(_)
                        | Value::BoolValue(_)
                        | Value::DoubleValue(_)
                )
            )
        })
    };
    let exemplars_scalar = |e: &[Exemplar]| e.iter().all(|e| scalar(&e.filtered_attributes));
    (request.resource_metrics.iter())
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .any(|m| match &m.data {
            None => false,
            Some(Data::Gauge(Gauge { data_points }) | Data::Sum(Sum { data_points, .. })) => {
                !(data_points.iter())
                    .all(|p| scalar(&p.attributes) && exemplars_scalar(&p.exemplars))
            }
            Some(Data::Histogram(h)) => !(h.data_points.iter())
                .all(|p| scalar(&p.attributes) && exemplars_scalar(&p.exemplars)),
            Some(Data::ExponentialHistogram(h)) => !(h.data_points.iter())
                .all(|p| scalar(&p.attributes) && exemplars_scalar(&p.exemplars)),
            Some(Data::Summary(s)) => !s.data_points.iter().all(|p| scalar(&p.attributes)),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::direct::tests::cases(1000)))]

    #[test]
    fn the_fast_path_makes_the_general_paths_batch_or_falls_back(request in request()) {
        let bytes = request.encode_to_vec();
        let (expected, rejected) = general(&bytes).expect("prost decodes what it encoded");
        match metrics(&bytes, u64::MAX) {
            Ok(batch) => {
                prop_assert_eq!(rejected, 0);
                prop_assert_eq!(bits(&batch), bits(&expected));
            }
            Err(Fallback) => {
                prop_assert!(
                    rejected > 0 || left_to_the_general_path(&request),
                    "fell back on a request it should take"
                );
            }
        }
    }

    #[test]
    fn damaged_bytes_never_pass_the_fast_path_unless_prost_agrees(
        request in request(),
        damage in damage(),
    ) {
        let bytes = damaged(request.encode_to_vec(), damage);
        if let Ok(batch) = metrics(&bytes, u64::MAX) {
            let (expected, rejected) =
                general(&bytes).expect("prost decodes what the fast path took");
            prop_assert_eq!(rejected, 0);
            prop_assert_eq!(bits(&batch), bits(&expected));
        }
    }
}

#[test]
fn a_gap_and_a_second_value_read_as_prost_reads_them() {
    let point = |value, flags| NumberDataPoint {
        value,
        flags,
        time_unix_nano: 7,
        ..Default::default()
    };
    let request = |points| ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue.depth".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: points,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    // A point without a value is a gap when flagged so, and stored as NaN.
    let gap = request(vec![point(None, 1)]).encode_to_vec();
    let batch = metrics(&gap, u64::MAX).unwrap();
    assert_eq!(bits(&batch), bits(&general(&gap).unwrap().0));
    let value = batch.unwrap().column_by_name("value").unwrap().clone();
    let value = value
        .as_any()
        .downcast_ref::<arrow::array::Float64Array>()
        .unwrap()
        .value(0);
    assert!(value.is_nan());
    // Without the flag, the general path rejects it: the fast path falls back.
    let missing = request(vec![point(None, 0)]).encode_to_vec();
    assert_eq!(metrics(&missing, u64::MAX), Err(Fallback));
    assert_eq!(general(&missing).unwrap().1, 1);

    // Both `as_int` and `as_double` in one point: the last one wins.
    let wrap = |field: u8, inner: Vec<u8>| {
        assert!(inner.len() < 128, "one-byte lengths");
        let mut out = vec![field << 3 | 2, inner.len() as u8];
        out.extend(inner);
        out
    };
    let mut point_bytes = point(Some(number_data_point::Value::AsInt(5)), 0).encode_to_vec();
    point_bytes.extend([4 << 3 | 1, 0, 0, 0, 0, 0, 0, 0x14, 0x40]); // as_double 5.0
    let mut metric_bytes = Metric {
        name: "queue.depth".into(),
        ..Default::default()
    }
    .encode_to_vec();
    metric_bytes.extend(wrap(5, wrap(1, point_bytes)));
    let bytes = wrap(1, wrap(2, wrap(2, metric_bytes)));
    let batch = metrics(&bytes, u64::MAX).unwrap();
    assert_eq!(bits(&batch), bits(&general(&bytes).unwrap().0));
    let ints = batch.unwrap().column_by_name("value_int").unwrap().clone();
    assert!(ints.is_null(0), "the double came last");
}

#[test]
fn every_point_the_general_path_rejects_sends_the_request_there() {
    let good_exemplar = Exemplar {
        value: Some(exemplar::Value::AsInt(1)),
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        ..Default::default()
    };
    let number = |p: NumberDataPoint| {
        metric::Data::Gauge(Gauge {
            data_points: vec![p],
        })
    };
    let good = NumberDataPoint {
        value: Some(number_data_point::Value::AsInt(3)),
        exemplars: vec![good_exemplar.clone()],
        ..Default::default()
    };
    let with_exemplar = |e: Exemplar| {
        number(NumberDataPoint {
            exemplars: vec![e],
            ..good.clone()
        })
    };
    let defects = [
        number(NumberDataPoint {
            value: None,
            ..good.clone()
        }),
        metric::Data::Sum(Sum {
            data_points: vec![good.clone()],
            aggregation_temporality: 3,
            is_monotonic: true,
        }),
        metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                bucket_counts: vec![1, 2],
                explicit_bounds: vec![1.0, 2.0],
                ..Default::default()
            }],
            aggregation_temporality: 1,
        }),
        with_exemplar(Exemplar {
            value: None,
            ..good_exemplar.clone()
        }),
        with_exemplar(Exemplar {
            trace_id: vec![1; 17],
            ..good_exemplar.clone()
        }),
        with_exemplar(Exemplar {
            span_id: vec![2; 9],
            ..good_exemplar.clone()
        }),
    ];
    let request = |data| {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "m".into(),
                        data: Some(data),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    };
    let fine = request(number(good.clone()));
    assert_eq!(metrics(&fine, u64::MAX).unwrap().unwrap().num_rows(), 1);
    for (i, data) in defects.into_iter().enumerate() {
        let bytes = request(data);
        assert_eq!(general(&bytes).unwrap().1, 1, "defect {i} is rejected");
        assert_eq!(
            metrics(&bytes, u64::MAX),
            Err(Fallback),
            "defect {i} falls back"
        );
    }
}

/// prost appends a second packed run of bucket counts and merges a repeated `positive`
/// message; the fast path leaves both, and unpacked counts, to it.
#[test]
fn repeated_bucket_runs_and_messages_go_to_the_general_path() {
    let wrap = |field: u8, inner: &[u8]| {
        assert!(inner.len() < 128, "one-byte lengths");
        let mut out = vec![field << 3 | 2, inner.len() as u8];
        out.extend(inner);
        out
    };
    let request = |point: Vec<u8>| {
        let mut metric = Metric {
            name: "latency".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let mut data = wrap(1, &point);
        data.extend([2 << 3, 2]); // cumulative
        metric.extend(wrap(10, &data));
        wrap(1, &wrap(2, &wrap(2, &metric)))
    };
    let counts = |run: &[u8]| wrap(2, run);
    let two_runs = [counts(&[1, 2]), counts(&[3])].concat();
    let unpacked = [2 << 3, 5];
    let once_each = wrap(8, &counts(&[1, 2]));
    let twice = [wrap(8, &counts(&[1])), wrap(8, &counts(&[2]))].concat();
    let fine = request(once_each);
    assert_eq!(
        bits(&metrics(&fine, u64::MAX).unwrap()),
        bits(&general(&fine).unwrap().0)
    );
    for (what, point) in [
        ("two packed runs", wrap(8, &two_runs)),
        ("an unpacked count", wrap(8, &unpacked)),
        ("positive twice", twice),
    ] {
        let bytes = request(point);
        let (batch, rejected) = general(&bytes).unwrap();
        assert!(batch.is_some() && rejected == 0, "{what}: prost takes it");
        assert_eq!(metrics(&bytes, u64::MAX), Err(Fallback), "{what}");
    }
}
