//! The `metrics` table: one row per data point.

use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, FixedSizeBinaryArray, Float64Array, Int32Array,
    Int64Array, ListArray, RecordBatch, StringArray, StringBuilder, StructArray, UInt32Array,
    UInt64Array,
};
use arrow::datatypes::{DataType, Field, Fields, Float64Type, Schema, SchemaRef, UInt64Type};

use super::attrs::{
    AttrReader, attr_arrays, attr_fields, read_resource_scope, resource_scope_arrays,
    resource_scope_fields,
};
use super::columns::{
    col, list_array, list_of, parse_enum, read_list, read_span_id, read_trace_id, span_ids,
    strings, trace_ids, u32s, u64s,
};
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

    /// A value with its type, without building any text.
    fn value(&mut self, value: &AttrValue) {
        match value {
            AttrValue::Empty => self.feed(b"e"),
            AttrValue::Str(s) => {
                self.feed(b"s");
                self.feed(s.as_bytes());
            }
            AttrValue::Bool(b) => self.feed(if *b { b"bt" } else { b"bf" }),
            AttrValue::Int(i) => {
                self.feed(b"i");
                self.feed(&i.to_le_bytes());
            }
            AttrValue::Double(d) => {
                self.feed(b"d");
                self.feed(&d.to_bits().to_le_bytes());
            }
            AttrValue::Bytes(b) => {
                self.feed(b"y");
                self.feed(b);
            }
            AttrValue::Array(items) => {
                self.feed(b"a");
                for item in items {
                    self.value(item);
                }
            }
            AttrValue::KvList(kvs) => {
                self.feed(b"k");
                for kv in kvs {
                    self.feed(kv.key.as_bytes());
                    self.value(&kv.value);
                }
            }
        }
    }

    fn attributes(&mut self, set: &Attributes) {
        self.feed(b"\x01");
        for kv in set.iter() {
            self.feed(kv.key.as_bytes());
            self.value(&kv.value);
        }
    }
}

/// A stable 64-bit identity of a series: metric name, its labels and its resource's labels.
/// FNV-1a over a canonical binary form of the typed values, so it never changes between
/// versions or machines.
pub fn series_id(metric_name: &str, attributes: &Attributes, resource: &Resource) -> u64 {
    series_id_with(metric_name, attributes, resource_hash(resource))
}

fn resource_hash(resource: &Resource) -> u64 {
    let mut h = Fnv(Fnv::START);
    h.attributes(&resource.attributes);
    h.0
}

fn series_id_with(metric_name: &str, attributes: &Attributes, resource_hash: u64) -> u64 {
    let mut h = Fnv(Fnv::START);
    h.feed(metric_name.as_bytes());
    series_id_after_name(h, attributes, resource_hash)
}

/// The rest of [`series_id_with`] once the metric name is hashed.
fn series_id_after_name(mut named: Fnv, attributes: &Attributes, resource_hash: u64) -> u64 {
    named.attributes(attributes);
    named.feed(&resource_hash.to_le_bytes());
    named.0
}

/// The `series_id` column. Points of one metric and one resource come one after another in a
/// request: the name and the resource's labels are hashed once per run of such points.
fn series_ids(points: &[MetricPoint]) -> ArrayRef {
    let mut resource: Option<(*const Resource, u64)> = None;
    let mut named: Option<(&str, Fnv)> = None;
    u64s(points.iter().map(|p| {
        let r = match resource {
            Some((ptr, hash)) if ptr == Arc::as_ptr(&p.resource) => hash,
            _ => {
                let hash = resource_hash(&p.resource);
                resource = Some((Arc::as_ptr(&p.resource), hash));
                hash
            }
        };
        let prefix = match named {
            Some((name, prefix)) if name == p.metric_name => prefix,
            _ => {
                let mut prefix = Fnv(Fnv::START);
                prefix.feed(p.metric_name.as_bytes());
                named = Some((&p.metric_name, prefix));
                prefix
            }
        };
        series_id_after_name(prefix, &p.attributes, r)
    }))
}

/// The `prometheus_name` column, computed once per run of points of one metric.
fn prometheus_names(points: &[MetricPoint]) -> ArrayRef {
    let same_metric = |a: &MetricPoint, b: &MetricPoint| {
        a.metric_name == b.metric_name
            && a.unit == b.unit
            && a.metric_type == b.metric_type
            && a.is_monotonic == b.is_monotonic
    };
    let mut out = StringBuilder::with_capacity(points.len(), 32 * points.len());
    for run in points.chunk_by(same_metric) {
        let name = run[0].prometheus_name();
        for _ in run {
            out.append_value(&name);
        }
    }
    Arc::new(out.finish())
}

struct Parts {
    count: Option<u64>,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
}

fn hist_parts(value: &PointValue) -> Parts {
    match value {
        PointValue::Number(_) => Parts {
            count: None,
            sum: None,
            min: None,
            max: None,
        },
        PointValue::Histogram {
            count,
            sum,
            min,
            max,
            ..
        }
        | PointValue::ExponentialHistogram {
            count,
            sum,
            min,
            max,
            ..
        } => Parts {
            count: Some(*count),
            sum: *sum,
            min: *min,
            max: *max,
        },
        PointValue::Summary { count, sum, .. } => Parts {
            count: Some(*count),
            sum: Some(*sum),
            min: None,
            max: None,
        },
    }
}

fn number(value: &PointValue) -> Option<NumberValue> {
    match value {
        PointValue::Number(n) => Some(*n),
        _ => None,
    }
}

fn exp(value: &PointValue) -> Option<(i32, u64, f64, &ExpBuckets, &ExpBuckets)> {
    match value {
        PointValue::ExponentialHistogram {
            scale,
            zero_count,
            zero_threshold,
            positive,
            negative,
            ..
        } => Some((*scale, *zero_count, *zero_threshold, positive, negative)),
        _ => None,
    }
}

fn u64_lists<'a>(rows: impl Iterator<Item = &'a [u64]>) -> ArrayRef {
    Arc::new(ListArray::from_iter_primitive::<UInt64Type, _, _>(
        rows.map(|r| Some(r.iter().map(|v| Some(*v)))),
    ))
}

pub fn metrics_to_batch(points: &[MetricPoint]) -> Result<RecordBatch> {
    let empty: &[u64] = &[];
    let mut columns: Vec<ArrayRef> = vec![
        strings(points.iter().map(|p| p.metric_name.as_str())),
        prometheus_names(points),
        strings(points.iter().map(|p| p.description.as_str())),
        strings(points.iter().map(|p| p.unit.as_str())),
        strings(points.iter().map(|p| p.metric_type.as_str())),
        strings(points.iter().map(|p| p.temporality.as_str())),
        Arc::new(BooleanArray::from_iter(
            points.iter().map(|p| Some(p.is_monotonic)),
        )),
        Arc::new(StringArray::from_iter_values(
            points.iter().map(|p| p.service_name()),
        )),
        series_ids(points),
    ];
    columns.extend(attr_arrays(points.iter().map(|p| &p.attributes)));
    let parts: Vec<Parts> = points.iter().map(|p| hist_parts(&p.value)).collect();
    let exps: Vec<_> = points.iter().map(|p| exp(&p.value)).collect();
    columns.extend([
        u64s(points.iter().map(|p| p.time_unix_nano)),
        u64s(points.iter().map(|p| p.start_time_unix_nano)),
        u32s(points.iter().map(|p| p.flags)),
        Arc::new(Float64Array::from_iter(
            points
                .iter()
                .map(|p| number(&p.value).map(NumberValue::as_f64)),
        )) as ArrayRef,
        Arc::new(Int64Array::from_iter(points.iter().map(|p| {
            match number(&p.value) {
                Some(NumberValue::Int(i)) => Some(i),
                _ => None,
            }
        }))),
        Arc::new(UInt64Array::from_iter(parts.iter().map(|p| p.count))),
        Arc::new(Float64Array::from_iter(parts.iter().map(|p| p.sum))),
        Arc::new(Float64Array::from_iter(parts.iter().map(|p| p.min))),
        Arc::new(Float64Array::from_iter(parts.iter().map(|p| p.max))),
        u64_lists(points.iter().map(|p| match &p.value {
            PointValue::Histogram { bucket_counts, .. } => bucket_counts.as_slice(),
            _ => empty,
        })),
        Arc::new(ListArray::from_iter_primitive::<Float64Type, _, _>(
            points.iter().map(|p| {
                let bounds: &[f64] = match &p.value {
                    PointValue::Histogram {
                        explicit_bounds, ..
                    } => explicit_bounds,
                    _ => &[],
                };
                Some(bounds.iter().map(|b| Some(*b)))
            }),
        )),
        Arc::new(Int32Array::from_iter(exps.iter().map(|e| e.map(|e| e.0)))),
        Arc::new(UInt64Array::from_iter(exps.iter().map(|e| e.map(|e| e.1)))),
        Arc::new(Float64Array::from_iter(exps.iter().map(|e| e.map(|e| e.2)))),
        Arc::new(Int32Array::from_iter(
            exps.iter().map(|e| e.map(|e| e.3.offset)),
        )),
        u64_lists(
            exps.iter()
                .map(|e| e.map_or(empty, |e| e.3.bucket_counts.as_slice())),
        ),
        Arc::new(Int32Array::from_iter(
            exps.iter().map(|e| e.map(|e| e.4.offset)),
        )),
        u64_lists(
            exps.iter()
                .map(|e| e.map_or(empty, |e| e.4.bucket_counts.as_slice())),
        ),
        quantiles_array(points)?,
        exemplars_array(points)?,
    ]);
    let owners: Vec<_> = points.iter().map(|p| (&p.resource, &p.scope)).collect();
    columns.extend(resource_scope_arrays(&owners)?);
    Ok(RecordBatch::try_new(metrics_schema(), columns)?)
}

fn quantiles_array(points: &[MetricPoint]) -> Result<ArrayRef> {
    let none: &[Quantile] = &[];
    let per_row: Vec<&[Quantile]> = points
        .iter()
        .map(|p| match &p.value {
            PointValue::Summary { quantiles, .. } => quantiles.as_slice(),
            _ => none,
        })
        .collect();
    let all: Vec<&Quantile> = per_row.iter().flat_map(|q| q.iter()).collect();
    let children: Vec<ArrayRef> = vec![
        Arc::new(Float64Array::from_iter_values(
            all.iter().map(|q| q.quantile),
        )),
        Arc::new(Float64Array::from_iter_values(all.iter().map(|q| q.value))),
    ];
    let lens: Vec<usize> = per_row.iter().map(|q| q.len()).collect();
    list_array(quantile_fields(), children, &lens)
}

fn exemplars_array(points: &[MetricPoint]) -> Result<ArrayRef> {
    let all: Vec<&Exemplar> = points.iter().flat_map(|p| &p.exemplars).collect();
    let mut children: Vec<ArrayRef> = vec![
        u64s(all.iter().map(|e| e.time_unix_nano)),
        Arc::new(Float64Array::from_iter_values(
            all.iter().map(|e| e.value.as_f64()),
        )),
        Arc::new(Int64Array::from_iter(all.iter().map(|e| match e.value {
            NumberValue::Int(i) => Some(i),
            NumberValue::Double(_) => None,
        }))),
        trace_ids(all.iter().map(|e| e.trace_id.as_ref())),
        span_ids(all.iter().map(|e| e.span_id.as_ref())),
    ];
    children.extend(attr_arrays(all.iter().map(|e| &e.filtered_attributes)));
    let lens: Vec<usize> = points.iter().map(|p| p.exemplars.len()).collect();
    list_array(exemplar_fields(), children, &lens)
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
}
