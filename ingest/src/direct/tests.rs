//! The fast path against the general path: on generated requests, valid and not, and on
//! damaged bytes, the fast path either falls back or makes exactly the general path's batch.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use proptest::prelude::*;
use prost::Message;
use spyglass_store::schema::spans_to_batch;

use super::spans;
use crate::convert;
use crate::wire::Fallback;

/// What the general path makes of `bytes`: the batch, and how many spans it rejected.
fn general(bytes: &[u8]) -> Option<(Option<arrow::array::RecordBatch>, u64)> {
    let request = ExportTraceServiceRequest::decode(bytes).ok()?;
    let converted = convert::spans(request);
    let batch = (!converted.items.is_empty()).then(|| spans_to_batch(&converted.items).unwrap());
    Some((batch, converted.rejected))
}

fn value() -> impl Strategy<Value = any_value::Value> {
    use any_value::Value;
    prop_oneof![
        6 => ".{0,12}".prop_map(Value::StringValue),
        3 => any::<i64>().prop_map(Value::IntValue),
        2 => any::<bool>().prop_map(Value::BoolValue),
        // Finite doubles: arrays compare NaN as unequal to itself.
        2 => any::<i32>().prop_map(|i| Value::DoubleValue(f64::from(i) / 7.0)),
        1 => prop::collection::vec(any::<u8>(), 0..4).prop_map(Value::BytesValue),
        1 => Just(Value::ArrayValue(ArrayValue { values: vec![] })),
    ]
}

pub(super) fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    // Few keys, so that repeats (the last one wins) and promoted names come up often.
    let key = prop::sample::select(vec![
        "a",
        "b",
        "http.route",
        "peer.service",
        "db.system",
        "http.status_code",
        "server.address",
    ]);
    let kv = (key, prop::option::weighted(0.97, value())).prop_map(|(key, value)| KeyValue {
        key: key.into(),
        value: Some(AnyValue { value }),
        key_strindex: 0,
    });
    prop::collection::vec(kv, 0..6)
}

/// Mostly valid ids; sometimes empty, all zeros or the wrong length.
pub(super) fn id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        20 => prop::collection::vec(1u8..=255, len),
        1 => Just(vec![]),
        1 => Just(vec![0; len]),
        1 => prop::collection::vec(any::<u8>(), len + 1),
    ]
}

fn span() -> impl Strategy<Value = Span> {
    let event = (any::<u64>(), ".{0,8}", attributes(), 0u32..3).prop_map(
        |(time_unix_nano, name, attributes, dropped_attributes_count)| Event {
            time_unix_nano,
            name,
            attributes,
            dropped_attributes_count,
        },
    );
    let link = (id(16), id(8), ".{0,4}", attributes(), 0u32..3, any::<u32>()).prop_map(
        |(trace_id, span_id, trace_state, attributes, dropped_attributes_count, flags)| Link {
            trace_id,
            span_id,
            trace_state,
            attributes,
            dropped_attributes_count,
            flags,
        },
    );
    let status =
        prop::option::of((0i32..4, ".{0,8}").prop_map(|(code, message)| Status { code, message }));
    (
        (
            id(16),
            id(8),
            prop_oneof![Just(vec![]), id(8)],
            ".{0,4}",
            any::<u32>(),
        ),
        (".{0,16}", 0i32..7, any::<u64>(), any::<u64>(), status),
        (attributes(), prop::collection::vec(event, 0..3)),
        (prop::collection::vec(link, 0..2), any::<(u32, u32, u32)>()),
    )
        .prop_map(
            |(
                (trace_id, span_id, parent_span_id, trace_state, flags),
                (name, kind, start, end, status),
                (attributes, events),
                (links, (dropped_attributes, dropped_events, dropped_links)),
            )| Span {
                trace_id,
                span_id,
                parent_span_id,
                trace_state,
                flags,
                name,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                dropped_attributes_count: dropped_attributes,
                events,
                dropped_events_count: dropped_events,
                links,
                dropped_links_count: dropped_links,
                status,
            },
        )
}

/// A scope with a name and attributes, or none.
pub(super) fn scope() -> impl Strategy<Value = Option<InstrumentationScope>> {
    prop::option::of(
        (".{0,6}", attributes()).prop_map(|(name, attributes)| InstrumentationScope {
            name,
            attributes,
            ..Default::default()
        }),
    )
}

/// A resource with attributes, or none.
pub(super) fn resource() -> impl Strategy<Value = Option<Resource>> {
    prop::option::of(attributes().prop_map(|attributes| Resource {
        attributes,
        ..Default::default()
    }))
}

fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    let scope = (scope(), prop::collection::vec(span(), 0..5), ".{0,4}").prop_map(
        |(scope, spans, schema_url)| ScopeSpans {
            scope,
            spans,
            schema_url,
        },
    );
    let resource = (resource(), prop::collection::vec(scope, 0..3), ".{0,4}").prop_map(
        |(resource, scope_spans, schema_url)| ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        },
    );
    prop::collection::vec(resource, 0..3)
        .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

/// Whether any span, event or link attribute of `request` is not a scalar.
fn has_non_scalar(request: &ExportTraceServiceRequest) -> bool {
    use any_value::Value;
    let scalar = |kv: &KeyValue| {
        matches!(
            kv.value.as_ref().and_then(|v| v.value.as_ref()),
            Some(Value::StringValue(_) | Value::IntValue(_) | Value::BoolValue(_))
                | Some(Value::DoubleValue(_))
        )
    };
    (request.resource_spans.iter())
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .any(|s| {
            !s.attributes.iter().all(scalar)
                || s.events.iter().any(|e| !e.attributes.iter().all(scalar))
                || s.links.iter().any(|l| !l.attributes.iter().all(scalar))
        })
}

/// Bytes overwritten (position, new byte) and where to cut: damage for an encoded request.
pub(super) type Damage = (Vec<(prop::sample::Index, u8)>, Option<prop::sample::Index>);

pub(super) fn damage() -> impl Strategy<Value = Damage> {
    (
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        any::<Option<prop::sample::Index>>(),
    )
}

/// Cases a fast-path property test runs: `default`, or `PROPTEST_CASES` when set (CI runs many
/// more in a step of their own, so that a rare divergence from prost cannot hide behind luck).
pub(super) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `bytes` with `damage` done to them (an empty request stays empty).
pub(super) fn damaged(mut bytes: Vec<u8>, (cuts, truncate): Damage) -> Vec<u8> {
    if bytes.is_empty() {
        return bytes;
    }
    for (at, byte) in cuts {
        let i = at.index(bytes.len());
        bytes[i] = byte;
    }
    if let Some(at) = truncate {
        bytes.truncate(at.index(bytes.len()));
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(400)))]

    #[test]
    fn the_fast_path_makes_the_general_paths_batch_or_falls_back(request in request()) {
        let bytes = request.encode_to_vec();
        let (expected, rejected) = general(&bytes).expect("prost decodes what it encoded");
        match spans(&bytes, u64::MAX) {
            Ok(batch) => {
                prop_assert_eq!(rejected, 0);
                prop_assert_eq!(batch, expected);
            }
            Err(Fallback) => {
                // Only for what the fast path leaves to the general one.
                prop_assert!(
                    rejected > 0 || has_non_scalar(&request),
                    "fell back on a valid all-scalar request"
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
        if let Ok(batch) = spans(&bytes, u64::MAX) {
            let (expected, rejected) = general(&bytes).expect("prost decodes what the fast path took");
            prop_assert_eq!(rejected, 0);
            prop_assert_eq!(batch, expected);
        }
    }
}

#[test]
fn repeated_keys_and_fields_read_as_prost_reads_them() {
    let kv = |key: &str, v: i64| KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        key_strindex: 0,
    };
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "first".into(),
        attributes: vec![kv("b", 1), kv("a", 2), kv("b", 3)],
        ..Default::default()
    };
    let mut bytes = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let batch = spans(&bytes, u64::MAX).unwrap().unwrap();
    assert_eq!(Some((Some(batch), 0)), general(&bytes));

    // A second status in one span: prost merges the two, the fast path leaves it to prost.
    let status = Status {
        code: 2,
        ..Default::default()
    }
    .encode_to_vec();
    let mut twice = Vec::new();
    for _ in 0..2 {
        twice.push(15 << 3 | 2);
        twice.push(status.len() as u8);
        twice.extend_from_slice(&status);
    }
    // Wrap the extra fields into the (only) span: patch the three enclosing lengths.
    let extra = twice.len() as u8;
    assert!(bytes.len() + usize::from(extra) < 127, "one-byte lengths");
    bytes.extend_from_slice(&twice);
    for at in [1, 3, 5] {
        bytes[at] += extra;
    }
    assert_eq!(spans(&bytes, u64::MAX), Err(Fallback));
    let (batch, rejected) = general(&bytes).unwrap();
    assert_eq!((batch.unwrap().num_rows(), rejected), (1, 0));
}
