//! The `metrics` table: one row per data point.

mod builder;

pub use builder::{
    ExemplarRow, Fixed64, Fixed64s, MetricRow, PointRow, ValueRef, point_rows_to_batch,
};

use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, AsArray, BooleanArray, FixedSizeBinaryArray, Float64Array, Int32Array, Int64Array,
    ListArray, RecordBatch, StringArray, StructArray, UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Fields, Float64Type, Schema, SchemaRef, UInt64Type};

use super::attrs::{
    AttrReader, AttrRef, KvRef, attr_fields, read_resource_scope, resource_scope_fields,
};
use super::columns::{col, list_of, parse_enum, read_list, read_span_id, read_trace_id};
use crate::error::{Error, Result};
use crate::model::{
    AttrValue, Attributes, Exemplar, ExpBuckets, MetricPoint, MetricType, NumberValue, PointValue,
    Quantile, Resource, Temporality,
};

fn u64_list() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::UInt64, true)))
}

fn f64_list() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)))
}

pub fn metrics_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut fields = vec![
                Field::new("metric_name", DataType::Utf8, false),
                // Derived from name, unit and type, for PromQL.
                Field::new("prometheus_name", DataType::Utf8, false),
                Field::new("description", DataType::Utf8, false),
                Field::new("unit", DataType::Utf8, false),
                Field::new("metric_type", DataType::Utf8, false),
                Field::new("temporality", DataType::Utf8, false),
                Field::new("is_monotonic", DataType::Boolean, false),
                Field::new("service_name", DataType::Utf8, false),
                Field::new("series_id", DataType::UInt64, false),
            ];
            fields.extend(attr_fields("attributes"));
            fields.extend([
                Field::new("time_unix_nano", DataType::UInt64, false),
                Field::new("start_time_unix_nano", DataType::UInt64, false),
                Field::new("flags", DataType::UInt32, false),
                // Gauge and sum points; `value_int` is set when the sender sent an integer.
                Field::new("value", DataType::Float64, true),
                Field::new("value_int", DataType::Int64, true),
                // Histogram, exponential histogram and summary points.
                Field::new("count", DataType::UInt64, true),
                Field::new("sum", DataType::Float64, true),
                Field::new("min", DataType::Float64, true),
                Field::new("max", DataType::Float64, true),
                Field::new("bucket_counts", u64_list(), false),
                Field::new("explicit_bounds", f64_list(), false),
                Field::new("scale", DataType::Int32, true),
                Field::new("zero_count", DataType::UInt64, true),
                Field::new("zero_threshold", DataType::Float64, true),
                Field::new("positive_offset", DataType::Int32, true),
                Field::new("positive_bucket_counts", u64_list(), false),
                Field::new("negative_offset", DataType::Int32, true),
                Field::new("negative_bucket_counts", u64_list(), false),
                Field::new("quantiles", list_of(quantile_fields()), false),
                Field::new("exemplars", list_of(exemplar_fields()), false),
            ]);
            fields.extend(resource_scope_fields());
            Arc::new(Schema::new(fields))
        })
        .clone()
}

fn quantile_fields() -> Fields {
    Fields::from(vec![
        Field::new("quantile", DataType::Float64, false),
        Field::new("value", DataType::Float64, false),
    ])
}

fn exemplar_fields() -> Fields {
    let mut fields = vec![
        Field::new("time_unix_nano", DataType::UInt64, false),
        Field::new("value", DataType::Float64, false),
        Field::new("value_int", DataType::Int64, true),
        Field::new("trace_id", DataType::FixedSizeBinary(16), true),
        Field::new("span_id", DataType::FixedSizeBinary(8), true),
    ];
    fields.extend(attr_fields("filtered_attributes"));
    Fields::from(fields)
}

/// FNV-1a, fed field by field; each field ends with a 0xff separator so that adjacent fields
/// cannot run together.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    const START: u64 = 0xcbf2_9ce4_8422_2325;

    fn feed(&mut self, bytes: &[u8]) {
        for b in bytes.iter().chain([0xffu8].iter()) {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn named(metric_name: &str) -> Self {
        let mut h = Fnv(Fnv::START);
        h.feed(metric_name.as_bytes());
        h
    }

    /// A value with its type, without building any text.
    fn value(&mut self, value: AttrRef<'_>) {
        match value {
            AttrRef::Str(s) => {
                self.feed(b"s");
                self.feed(s.as_bytes());
            }
            AttrRef::Bool(b) => self.feed(if b { b"bt" } else { b"bf" }),
            AttrRef::Int(i) => {
                self.feed(b"i");
                self.feed(&i.to_le_bytes());
            }
            AttrRef::Double(d) => {
                self.feed(b"d");
                self.feed(&d.to_bits().to_le_bytes());
            }
            AttrRef::Other(AttrValue::Empty) => self.feed(b"e"),
            AttrRef::Other(AttrValue::Bytes(b)) => {
                self.feed(b"y");
                self.feed(b);
            }
            AttrRef::Other(AttrValue::Array(items)) => {
                self.feed(b"a");
                for item in items {
                    self.value(AttrRef::of(item));
                }
            }
            AttrRef::Other(AttrValue::KvList(kvs)) => {
                self.feed(b"k");
                for kv in kvs {
                    self.feed(kv.key.as_bytes());
                    self.value(AttrRef::of(&kv.value));
                }
            }
            // A scalar wrapped as `Other` hashes as the scalar it is.
            AttrRef::Other(scalar) => self.value(AttrRef::of(scalar)),
        }
    }

    fn attributes<'k>(&mut self, set: impl IntoIterator<Item = KvRef<'k>>) {
        self.feed(b"\x01");
        for (key, value) in set {
            self.feed(key.as_bytes());
            self.value(value);
        }
    }

    /// The series id, once the metric name is hashed into `self`.
    fn series<'k>(mut self, attributes: impl IntoIterator<Item = KvRef<'k>>, resource: u64) -> u64 {
        self.attributes(attributes);
        self.feed(&resource.to_le_bytes());
        self.0
    }
}

fn kv_refs(attributes: &Attributes) -> impl Iterator<Item = KvRef<'_>> {
    (attributes.iter()).map(|kv| (kv.key.as_str(), AttrRef::of(&kv.value)))
}

/// A stable 64-bit identity of a series: metric name, its labels and its resource's labels.
/// FNV-1a over a canonical binary form of the typed values, so it never changes between
/// versions or machines.
pub fn series_id(metric_name: &str, attributes: &Attributes, resource: &Resource) -> u64 {
    Fnv::named(metric_name).series(kv_refs(attributes), resource_hash(resource))
}

fn resource_hash(resource: &Resource) -> u64 {
    let mut h = Fnv(Fnv::START);
    h.attributes(kv_refs(&resource.attributes));
    h.0
}

pub fn metrics_to_batch(points: &[MetricPoint]) -> Result<RecordBatch> {
    let rows = builder::rows_of(points);
    point_rows_to_batch(&rows.owners, &rows.metrics, &rows.points)
}

fn read_number(value: &Float64Array, value_int: &Int64Array, i: usize) -> NumberValue {
    if value_int.is_null(i) {
        NumberValue::Double(value.value(i))
    } else {
        NumberValue::Int(value_int.value(i))
    }
}

fn read_exemplars(items: &StructArray) -> Result<Vec<Exemplar>> {
    let time: &UInt64Array = col(items, "time_unix_nano")?;
    let value: &Float64Array = col(items, "value")?;
    let value_int: &Int64Array = col(items, "value_int")?;
    let trace_id: &FixedSizeBinaryArray = col(items, "trace_id")?;
    let span_id: &FixedSizeBinaryArray = col(items, "span_id")?;
    let attrs = AttrReader::new(items, "filtered_attributes")?;
    (0..items.len())
        .map(|i| {
            Ok(Exemplar {
                time_unix_nano: time.value(i),
                value: read_number(value, value_int, i),
                trace_id: read_trace_id(trace_id, i),
                span_id: read_span_id(span_id, i),
                filtered_attributes: attrs.row(i)?,
            })
        })
        .collect()
}

fn read_quantiles(items: &StructArray) -> Result<Vec<Quantile>> {
    let quantile: &Float64Array = col(items, "quantile")?;
    let value: &Float64Array = col(items, "value")?;
    Ok((0..items.len())
        .map(|i| Quantile {
            quantile: quantile.value(i),
            value: value.value(i),
        })
        .collect())
}

fn opt<T: arrow::datatypes::ArrowPrimitiveType>(
    array: &arrow::array::PrimitiveArray<T>,
    i: usize,
) -> Option<T::Native> {
    (!array.is_null(i)).then(|| array.value(i))
}

fn list_row<T: arrow::datatypes::ArrowPrimitiveType>(list: &ListArray, i: usize) -> Vec<T::Native> {
    list.value(i).as_primitive::<T>().values().to_vec()
}

pub fn metrics_from_batch(batch: &RecordBatch) -> Result<Vec<MetricPoint>> {
    let name: &StringArray = col(batch, "metric_name")?;
    let description: &StringArray = col(batch, "description")?;
    let unit: &StringArray = col(batch, "unit")?;
    let metric_type: &StringArray = col(batch, "metric_type")?;
    let temporality: &StringArray = col(batch, "temporality")?;
    let monotonic: &BooleanArray = col(batch, "is_monotonic")?;
    let attrs = AttrReader::new(batch, "attributes")?;
    let time: &UInt64Array = col(batch, "time_unix_nano")?;
    let start: &UInt64Array = col(batch, "start_time_unix_nano")?;
    let flags: &UInt32Array = col(batch, "flags")?;
    let value: &Float64Array = col(batch, "value")?;
    let value_int: &Int64Array = col(batch, "value_int")?;
    let count: &UInt64Array = col(batch, "count")?;
    let sum: &Float64Array = col(batch, "sum")?;
    let min: &Float64Array = col(batch, "min")?;
    let max: &Float64Array = col(batch, "max")?;
    let bucket_counts: &ListArray = col(batch, "bucket_counts")?;
    let bounds: &ListArray = col(batch, "explicit_bounds")?;
    let scale: &Int32Array = col(batch, "scale")?;
    let zero_count: &UInt64Array = col(batch, "zero_count")?;
    let zero_threshold: &Float64Array = col(batch, "zero_threshold")?;
    let pos_offset: &Int32Array = col(batch, "positive_offset")?;
    let pos_counts: &ListArray = col(batch, "positive_bucket_counts")?;
    let neg_offset: &Int32Array = col(batch, "negative_offset")?;
    let neg_counts: &ListArray = col(batch, "negative_bucket_counts")?;
    let mut quantiles = read_list(batch, "quantiles", read_quantiles)?.into_iter();
    let mut exemplars = read_list(batch, "exemplars", read_exemplars)?.into_iter();
    let owners = read_resource_scope(batch, batch.num_rows())?;
    owners
        .into_iter()
        .enumerate()
        .map(|(i, (resource, scope))| {
            let metric_type = parse_enum(MetricType::parse, "metric type", metric_type.value(i))?;
            let missing = || Error::Corrupt(format!("metric row {i} lacks its count"));
            let quantiles = quantiles.next().unwrap_or_default();
            let value = match metric_type {
                MetricType::Gauge | MetricType::Sum => {
                    PointValue::Number(read_number(value, value_int, i))
                }
                MetricType::Histogram => PointValue::Histogram {
                    count: opt(count, i).ok_or_else(missing)?,
                    sum: opt(sum, i),
                    min: opt(min, i),
                    max: opt(max, i),
                    bucket_counts: list_row::<UInt64Type>(bucket_counts, i),
                    explicit_bounds: list_row::<Float64Type>(bounds, i),
                },
                MetricType::ExponentialHistogram => PointValue::ExponentialHistogram {
                    count: opt(count, i).ok_or_else(missing)?,
                    sum: opt(sum, i),
                    min: opt(min, i),
                    max: opt(max, i),
                    scale: scale.value(i),
                    zero_count: zero_count.value(i),
                    zero_threshold: zero_threshold.value(i),
                    positive: ExpBuckets {
                        offset: pos_offset.value(i),
                        bucket_counts: list_row::<UInt64Type>(pos_counts, i),
                    },
                    negative: ExpBuckets {
                        offset: neg_offset.value(i),
                        bucket_counts: list_row::<UInt64Type>(neg_counts, i),
                    },
                },
                MetricType::Summary => PointValue::Summary {
                    count: opt(count, i).ok_or_else(missing)?,
                    sum: sum.value(i),
                    quantiles,
                },
            };
            Ok(MetricPoint {
                metric_name: name.value(i).to_owned(),
                description: description.value(i).to_owned(),
                unit: unit.value(i).to_owned(),
                metric_type,
                temporality: parse_enum(Temporality::parse, "temporality", temporality.value(i))?,
                is_monotonic: monotonic.value(i),
                attributes: attrs.row(i)?,
                time_unix_nano: time.value(i),
                start_time_unix_nano: start.value(i),
                flags: flags.value(i),
                value,
                exemplars: exemplars.next().unwrap_or_default(),
                resource,
                scope,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KeyValue;

    fn attrs(value: AttrValue) -> Attributes {
        Attributes::new(vec![KeyValue {
            key: "k".into(),
            value,
        }])
    }

    #[test]
    fn series_ids_tell_types_and_owners_apart() {
        let resource = Resource {
            attributes: attrs(AttrValue::Str("svc".into())),
            ..Resource::default()
        };
        let id = |name: &str, a: Attributes| series_id(name, &a, &resource);
        assert_eq!(
            id("m", attrs(AttrValue::Int(1))),
            id("m", attrs(AttrValue::Int(1)))
        );
        assert_ne!(
            id("m", attrs(AttrValue::Int(1))),
            id("m", attrs(AttrValue::Str("1".into())))
        );
        assert_ne!(
            id("m", attrs(AttrValue::Int(1))),
            id("n", attrs(AttrValue::Int(1)))
        );
        assert_ne!(
            id("m", Attributes::default()),
            series_id("m", &Attributes::default(), &Resource::default())
        );
    }

    /// Stored ids must stay what earlier versions wrote: a value of every type, pinned.
    #[test]
    fn series_ids_do_not_change_between_versions() {
        let kv = |key: &str, value| KeyValue {
            key: key.into(),
            value,
        };
        let resource = Resource {
            attributes: Attributes::new(vec![
                kv("service.name", AttrValue::Str("checkout".into())),
                kv("host.cpus", AttrValue::Int(8)),
            ]),
            ..Resource::default()
        };
        let attributes = Attributes::new(vec![
            kv("route", AttrValue::Str("/cart".into())),
            kv("code", AttrValue::Int(-200)),
            kv("ratio", AttrValue::Double(0.25)),
            kv("ok", AttrValue::Bool(true)),
            kv("raw", AttrValue::Bytes(vec![0, 255])),
            kv("empty", AttrValue::Empty),
            kv(
                "list",
                AttrValue::Array(vec![AttrValue::Int(1), AttrValue::Str("x".into())]),
            ),
            kv(
                "map",
                AttrValue::KvList(vec![kv("inner", AttrValue::Bool(false))]),
            ),
        ]);
        let id = series_id("http.server.duration", &attributes, &resource);
        assert_eq!(id, 0x0200_398f_88a9_e4c3);
    }
}
