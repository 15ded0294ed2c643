//! Property tests: model → Arrow → Parquet → model, and model → Arrow → WAL payload → model,
//! return exactly what went in, for arbitrary spans, metric points and log records.

use std::sync::Arc;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use crate::model::*;
use crate::schema::Records;
use crate::{ipc, part};

fn attr_value() -> impl Strategy<Value = AttrValue> {
    let leaf = prop_oneof![
        Just(AttrValue::Empty),
        ".{0,12}".prop_map(AttrValue::Str),
        any::<bool>().prop_map(AttrValue::Bool),
        any::<i64>().prop_map(AttrValue::Int),
        any::<f64>().prop_map(AttrValue::Double),
        vec(any::<u8>(), 0..8).prop_map(AttrValue::Bytes),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(AttrValue::Array),
            vec(("[a-z.]{0,6}", inner), 0..4).prop_map(|kvs| AttrValue::KvList(
                kvs.into_iter()
                    .map(|(key, value)| KeyValue { key, value })
                    .collect()
            )),
        ]
    })
}

fn attributes() -> impl Strategy<Value = Attributes> {
    vec(("[a-z._]{1,10}", attr_value()), 0..6).prop_map(|pairs| pairs.into_iter().collect())
}

fn resource() -> impl Strategy<Value = Resource> {
    (
        attributes(),
        option::of("[a-z]{1,8}"),
        any::<u32>(),
        ".{0,10}",
    )
        .prop_map(|(mut attributes, service, dropped, schema_url)| {
            if let Some(service) = service {
                let mut pairs: Vec<KeyValue> = attributes.iter().cloned().collect();
                pairs.push(KeyValue {
                    key: "service.name".into(),
                    value: AttrValue::Str(service),
                });
                attributes = Attributes::new(pairs);
            }
            Resource {
                attributes,
                dropped_attributes_count: dropped,
                schema_url,
            }
        })
}

fn scope() -> impl Strategy<Value = Scope> {
    (".{0,8}", ".{0,8}", attributes(), any::<u32>(), ".{0,8}").prop_map(
        |(name, version, attributes, dropped_attributes_count, schema_url)| Scope {
            name,
            version,
            attributes,
            dropped_attributes_count,
            schema_url,
        },
    )
}

fn trace_id() -> impl Strategy<Value = TraceId> {
    any::<[u8; 16]>().prop_map(TraceId)
}

fn span_id() -> impl Strategy<Value = SpanId> {
    any::<[u8; 8]>().prop_map(SpanId)
}

fn event() -> impl Strategy<Value = SpanEvent> {
    (any::<u64>(), ".{0,10}", attributes(), any::<u32>()).prop_map(
        |(time_unix_nano, name, attributes, dropped_attributes_count)| SpanEvent {
            time_unix_nano,
            name,
            attributes,
            dropped_attributes_count,
        },
    )
}

fn link() -> impl Strategy<Value = SpanLink> {
    (
        trace_id(),
        span_id(),
        ".{0,10}",
        any::<u32>(),
        attributes(),
        any::<u32>(),
    )
        .prop_map(
            |(trace_id, span_id, trace_state, flags, attributes, dropped_attributes_count)| {
                SpanLink {
                    trace_id,
                    span_id,
                    trace_state,
                    flags,
                    attributes,
                    dropped_attributes_count,
                }
            },
        )
}

prop_compose! {
    fn span()(
        ids in (trace_id(), span_id(), option::of(span_id())),
        trace_state in ".{0,10}",
        flags in any::<u32>(),
        name in ".{0,16}",
        kind in proptest::sample::select(SpanKind::ALL.to_vec()),
        times in (any::<u64>(), any::<u64>()),
        status in (proptest::sample::select(StatusCode::ALL.to_vec()), ".{0,16}"),
        attributes in attributes(),
        events in vec(event(), 0..3),
        links in vec(link(), 0..3),
        dropped in any::<(u32, u32, u32)>(),
        resource in resource().prop_map(Arc::new),
        scope in scope().prop_map(Arc::new),
    ) -> Span {
        Span {
            trace_id: ids.0, span_id: ids.1, parent_span_id: ids.2, trace_state, flags, name, kind,
            start_time_unix_nano: times.0, end_time_unix_nano: times.1,
            status_code: status.0, status_message: status.1, attributes,
            dropped_attributes_count: dropped.0, events, dropped_events_count: dropped.1,
            links, dropped_links_count: dropped.2, resource, scope,
        }
    }
}

fn number() -> impl Strategy<Value = NumberValue> {
    prop_oneof![
        any::<i64>().prop_map(NumberValue::Int),
        any::<f64>().prop_map(NumberValue::Double)
    ]
}

fn opt_f64() -> impl Strategy<Value = Option<f64>> {
    option::of(any::<f64>())
}

fn point_value() -> impl Strategy<Value = (MetricType, PointValue)> {
    prop_oneof![
        number().prop_map(|n| (MetricType::Gauge, PointValue::Number(n))),
        number().prop_map(|n| (MetricType::Sum, PointValue::Number(n))),
        (
            any::<u64>(),
            opt_f64(),
            opt_f64(),
            opt_f64(),
            vec(any::<u64>(), 0..6),
            vec(any::<f64>(), 0..5)
        )
            .prop_map(|(count, sum, min, max, bucket_counts, explicit_bounds)| (
                MetricType::Histogram,
                PointValue::Histogram {
                    count,
                    sum,
                    min,
                    max,
                    bucket_counts,
                    explicit_bounds
                }
            )),
        (
            any::<u64>(),
            opt_f64(),
            opt_f64(),
            opt_f64(),
            any::<i32>(),
            any::<u64>(),
            any::<f64>(),
            (any::<i32>(), vec(any::<u64>(), 0..5)),
            (any::<i32>(), vec(any::<u64>(), 0..5))
        )
            .prop_map(
                |(count, sum, min, max, scale, zero_count, zero_threshold, pos, neg)| (
                    MetricType::ExponentialHistogram,
                    PointValue::ExponentialHistogram {
                        count,
                        sum,
                        min,
                        max,
                        scale,
                        zero_count,
                        zero_threshold,
                        positive: ExpBuckets {
                            offset: pos.0,
                            bucket_counts: pos.1
                        },
                        negative: ExpBuckets {
                            offset: neg.0,
                            bucket_counts: neg.1
                        }
                    }
                )
            ),
        (
            any::<u64>(),
            any::<f64>(),
            vec((any::<f64>(), any::<f64>()), 0..4)
        )
            .prop_map(|(count, sum, qs)| (
                MetricType::Summary,
                PointValue::Summary {
                    count,
                    sum,
                    quantiles: qs
                        .into_iter()
                        .map(|(quantile, value)| Quantile { quantile, value })
                        .collect()
                }
            )),
    ]
}

fn exemplar() -> impl Strategy<Value = Exemplar> {
    (
        any::<u64>(),
        number(),
        option::of(trace_id()),
        option::of(span_id()),
        attributes(),
    )
        .prop_map(
            |(time_unix_nano, value, trace_id, span_id, filtered_attributes)| Exemplar {
                time_unix_nano,
                value,
                trace_id,
                span_id,
                filtered_attributes,
            },
        )
}

prop_compose! {
    fn metric_point()(
        names in (".{0,12}", ".{0,12}", ".{0,6}"),
        value in point_value(),
        temporality in proptest::sample::select(Temporality::ALL.to_vec()),
        is_monotonic in any::<bool>(),
        attributes in attributes(),
        times in any::<(u64, u64, u32)>(),
        exemplars in vec(exemplar(), 0..3),
        resource in resource().prop_map(Arc::new),
        scope in scope().prop_map(Arc::new),
    ) -> MetricPoint {
        MetricPoint {
            metric_name: names.0, description: names.1, unit: names.2, metric_type: value.0,
            temporality, is_monotonic, attributes, time_unix_nano: times.0,
            start_time_unix_nano: times.1, flags: times.2, value: value.1, exemplars, resource, scope,
        }
    }
}

prop_compose! {
    fn log_record()(
        times in any::<(u64, u64)>(),
        severity in (any::<i32>(), ".{0,6}"),
        body in option::of(attr_value()),
        event_name in ".{0,8}",
        attributes in attributes(),
        counts in any::<(u32, u32)>(),
        ids in (option::of(trace_id()), option::of(span_id())),
        resource in resource().prop_map(Arc::new),
        scope in scope().prop_map(Arc::new),
    ) -> LogRecord {
        LogRecord {
            time_unix_nano: times.0, observed_time_unix_nano: times.1, severity_number: severity.0,
            severity_text: severity.1, body, event_name, attributes, dropped_attributes_count: counts.0,
            flags: counts.1, trace_id: ids.0, span_id: ids.1, resource, scope,
        }
    }
}

/// Through Parquet (the part writer's settings) and through the WAL payload encoding.
fn round_trip(records: &Records) -> Result<(), TestCaseError> {
    let batch = records
        .to_batch()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let path = dir.path().join("part.parquet");
    let none = || Ok(None);
    part::write_part(
        &path,
        records.signal(),
        std::slice::from_ref(&batch),
        3,
        7,
        none,
    )
    .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let read = part::read_part(&path).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let merged =
        arrow::compute::concat_batches(&crate::schema::schema_for(records.signal()), &read)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back = Records::from_batch(records.signal(), &merged)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, records);

    let payload = ipc::encode(&batch).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let decoded =
        ipc::decode(records.signal(), &payload).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back = Records::from_batch(records.signal(), &decoded)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, records);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn spans_round_trip(spans in vec(span(), 0..12)) {
        round_trip(&Records::Spans(spans))?;
    }

    #[test]
    fn metric_points_round_trip(points in vec(metric_point(), 0..12)) {
        round_trip(&Records::Metrics(points))?;
    }

    #[test]
    fn log_records_round_trip(logs in vec(log_record(), 0..12)) {
        round_trip(&Records::Logs(logs))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// The builder sizes every buffer before writing, so a batch holds no memory the memtable's
    /// budget does not count; and each row's series id is that of its own point.
    #[test]
    fn metric_batches_are_exactly_sized_and_name_their_series(
        points in vec(metric_point(), 100..200)
    ) {
        let batch = crate::schema::metrics_to_batch(&points)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let used = crate::memtable::batch_bytes(&batch) as usize;
        let held = batch.get_array_memory_size();
        prop_assert!(held - used <= 32 << 10, "held {} for {} used", held, used);
        let ids = batch
            .column_by_name("series_id")
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::UInt64Array>())
            .expect("series_id column");
        for (point, id) in points.iter().zip(ids.values()) {
            let expected =
                crate::schema::series_id(&point.metric_name, &point.attributes, &point.resource);
            prop_assert_eq!(*id, expected);
        }
    }
}
