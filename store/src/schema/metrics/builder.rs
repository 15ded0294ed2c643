//! Building a `metrics` batch from borrowed points.
//!
//! Both ways in use it: [`super::metrics_to_batch`] (model points) and ingest's fast path,
//! which reads OTLP protobuf straight into [`PointRow`]s without making model points. Sharing
//! the builder is what keeps the two batches identical.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray, PrimitiveArray,
    RecordBatch, StringBuilder, UInt64Array,
};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{ArrowPrimitiveType, Field, Float64Type, UInt64Type};

use super::super::attrs::{AttrMapsBuilder, KvRef, resource_scope_arrays};
use super::super::columns::{fixed, list_array};
use super::{Fnv, exemplar_fields, kv_refs, metrics_schema, quantile_fields};
use crate::error::Result;
use crate::model::{
    MetricPoint, MetricType, NumberValue, PointValue, Quantile, Resource, Scope, Temporality,
    prometheus_name,
};

/// What a metric's points share.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MetricRow<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub unit: &'a str,
    pub metric_type: MetricType,
    pub temporality: Temporality,
    pub is_monotonic: bool,
}

/// One data point, borrowed. `attributes` (and each exemplar's) must be sorted by key with
/// unique keys, as [`crate::schema::sort_attributes`] leaves them.
#[derive(Clone, Debug)]
pub struct PointRow<'a> {
    /// Index of the point's resource and scope in the batch's owners.
    pub owner: usize,
    /// Index of the point's metric in the batch's metrics.
    pub metric: usize,
    pub attributes: Vec<KvRef<'a>>,
    pub time_unix_nano: u64,
    pub start_time_unix_nano: u64,
    pub flags: u32,
    pub value: ValueRef<'a>,
    pub exemplars: Vec<ExemplarRow<'a>>,
}

/// A point's value, borrowed.
#[derive(Clone, Copy, Debug)]
pub enum ValueRef<'a> {
    Number(NumberValue),
    Histogram {
        count: u64,
        sum: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
        bucket_counts: Fixed64s<'a, u64>,
        explicit_bounds: Fixed64s<'a, f64>,
    },
    /// Exponential histograms and summaries, which only model points bring.
    Other(&'a PointValue),
}

#[derive(Clone, Debug)]
pub struct ExemplarRow<'a> {
    pub time_unix_nano: u64,
    pub value: NumberValue,
    pub trace_id: Option<[u8; 16]>,
    pub span_id: Option<[u8; 8]>,
    pub attributes: Vec<KvRef<'a>>,
}

/// A list of 8-byte numbers: a slice, or the little-endian bytes of a packed protobuf field.
#[derive(Clone, Copy, Debug)]
pub enum Fixed64s<'a, T> {
    Values(&'a [T]),
    /// A multiple of 8 bytes.
    Le(&'a [u8]),
}

impl<T> Default for Fixed64s<'_, T> {
    fn default() -> Self {
        Fixed64s::Values(&[])
    }
}

/// A number stored in 8 bytes.
pub trait Fixed64: Copy {
    fn from_le_bytes(bytes: [u8; 8]) -> Self;
}

impl Fixed64 for u64 {
    fn from_le_bytes(bytes: [u8; 8]) -> Self {
        u64::from_le_bytes(bytes)
    }
}

impl Fixed64 for f64 {
    fn from_le_bytes(bytes: [u8; 8]) -> Self {
        f64::from_le_bytes(bytes)
    }
}

impl<T: Fixed64> Fixed64s<'_, T> {
    pub fn len(&self) -> usize {
        match self {
            Fixed64s::Values(v) => v.len(),
            Fixed64s::Le(bytes) => bytes.len() / 8,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn extend_into(&self, out: &mut Vec<T>) {
        match self {
            Fixed64s::Values(v) => out.extend_from_slice(v),
            Fixed64s::Le(bytes) => out.extend(
                (bytes.chunks_exact(8)).map(|b| T::from_le_bytes(b.try_into().expect("8 bytes"))),
            ),
        }
    }
}

impl<'a> ValueRef<'a> {
    pub fn of(value: &'a PointValue) -> Self {
        match value {
            PointValue::Number(n) => ValueRef::Number(*n),
            PointValue::Histogram {
                count,
                sum,
                min,
                max,
                bucket_counts,
                explicit_bounds,
            } => ValueRef::Histogram {
                count: *count,
                sum: *sum,
                min: *min,
                max: *max,
                bucket_counts: Fixed64s::Values(bucket_counts),
                explicit_bounds: Fixed64s::Values(explicit_bounds),
            },
            other => ValueRef::Other(other),
        }
    }

    fn number(&self) -> Option<NumberValue> {
        match self {
            ValueRef::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// Count, then sum, min and max: what histograms and summaries have.
    fn totals(&self) -> (Option<u64>, [Option<f64>; 3]) {
        match *self {
            ValueRef::Number(_) | ValueRef::Other(PointValue::Number(_)) => (None, [None; 3]),
            ValueRef::Histogram {
                count,
                sum,
                min,
                max,
                ..
            } => (Some(count), [sum, min, max]),
            ValueRef::Other(
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
                },
            ) => (Some(*count), [*sum, *min, *max]),
            ValueRef::Other(PointValue::Summary { count, sum, .. }) => {
                (Some(*count), [Some(*sum), None, None])
            }
        }
    }

    /// A histogram's bucket counts and bounds; empty for other points.
    fn buckets(&self) -> (Fixed64s<'a, u64>, Fixed64s<'a, f64>) {
        match *self {
            ValueRef::Histogram {
                bucket_counts,
                explicit_bounds,
                ..
            } => (bucket_counts, explicit_bounds),
            _ => Default::default(),
        }
    }
}

impl<'a> ExemplarRow<'a> {
    fn of(e: &'a crate::model::Exemplar) -> Self {
        Self {
            time_unix_nano: e.time_unix_nano,
            value: e.value,
            trace_id: e.trace_id.map(|t| t.0),
            span_id: e.span_id.map(|s| s.0),
            attributes: kv_refs(&e.filtered_attributes).collect(),
        }
    }
}

/// Model points as rows, with what the rows point to.
pub(super) struct Rows<'a> {
    pub(super) owners: Vec<(Arc<Resource>, Arc<Scope>)>,
    pub(super) metrics: Vec<MetricRow<'a>>,
    pub(super) points: Vec<PointRow<'a>>,
}

/// Model points as rows: one owner per run of points of one resource and scope, one metric
/// per run of points of one metric.
pub(super) fn rows_of(points: &[MetricPoint]) -> Rows<'_> {
    let mut owners: Vec<(Arc<Resource>, Arc<Scope>)> = Vec::new();
    let mut metrics: Vec<MetricRow<'_>> = Vec::new();
    let points = (points.iter())
        .map(|p| {
            let same_owner = owners
                .last()
                .is_some_and(|(r, s)| Arc::ptr_eq(r, &p.resource) && Arc::ptr_eq(s, &p.scope));
            if !same_owner {
                owners.push((p.resource.clone(), p.scope.clone()));
            }
            let metric = MetricRow {
                name: &p.metric_name,
                description: &p.description,
                unit: &p.unit,
                metric_type: p.metric_type,
                temporality: p.temporality,
                is_monotonic: p.is_monotonic,
            };
            if metrics.last() != Some(&metric) {
                metrics.push(metric);
            }
            PointRow {
                owner: owners.len() - 1,
                metric: metrics.len() - 1,
                attributes: kv_refs(&p.attributes).collect(),
                time_unix_nano: p.time_unix_nano,
                start_time_unix_nano: p.start_time_unix_nano,
                flags: p.flags,
                value: ValueRef::of(&p.value),
                exemplars: p.exemplars.iter().map(ExemplarRow::of).collect(),
            }
        })
        .collect();
    Rows {
        owners,
        metrics,
        points,
    }
}

/// A string column of these values, its buffers sized exactly.
fn text<'a>(values: impl Iterator<Item = &'a str> + Clone) -> ArrayRef {
    let (rows, bytes) = (values.clone()).fold((0, 0), |(n, b), v| (n + 1, b + v.len()));
    let mut out = StringBuilder::with_capacity(rows, bytes);
    for v in values {
        out.append_value(v);
    }
    Arc::new(out.finish())
}

fn primitive<T: ArrowPrimitiveType>(values: Vec<T::Native>) -> ArrayRef {
    Arc::new(PrimitiveArray::<T>::new(ScalarBuffer::from(values), None))
}

/// A list of numbers per row, its buffers sized exactly.
fn number_lists<T, P>(lists: &[Fixed64s<'_, T>]) -> ArrayRef
where
    T: Fixed64 + arrow::datatypes::ArrowNativeType,
    P: ArrowPrimitiveType<Native = T>,
{
    let mut values = Vec::with_capacity(lists.iter().map(Fixed64s::len).sum());
    for list in lists {
        list.extend_into(&mut values);
    }
    let item = Arc::new(Field::new_list_field(P::DATA_TYPE, true));
    Arc::new(ListArray::new(
        item,
        OffsetBuffer::from_lengths(lists.iter().map(Fixed64s::len)),
        primitive::<P>(values),
        None,
    ))
}

/// Makes a `metrics` batch of `rows`: each names its resource and scope in `owners` and its
/// metric in `metrics`.
pub fn point_rows_to_batch(
    owners: &[(Arc<Resource>, Arc<Scope>)],
    metrics: &[MetricRow<'_>],
    rows: &[PointRow<'_>],
) -> Result<RecordBatch> {
    let metric = |r: &PointRow<'_>| &metrics[r.metric];
    let prometheus: Vec<String> = (metrics.iter())
        .map(|m| prometheus_name(m.name, m.unit, m.metric_type, m.is_monotonic))
        .collect();
    let mut columns: Vec<ArrayRef> = vec![
        text(rows.iter().map(|r| metric(r).name)),
        text(rows.iter().map(|r| prometheus[r.metric].as_str())),
        text(rows.iter().map(|r| metric(r).description)),
        text(rows.iter().map(|r| metric(r).unit)),
        text(rows.iter().map(|r| metric(r).metric_type.as_str())),
        text(rows.iter().map(|r| metric(r).temporality.as_str())),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(metric(r).is_monotonic)),
        )),
        text(rows.iter().map(|r| owners[r.owner].0.service_name())),
        series_ids(owners, metrics, rows),
    ];
    let mut attributes =
        AttrMapsBuilder::for_rows(rows.iter().map(|r| r.attributes.iter().copied()));
    for r in rows {
        attributes.append(r.attributes.iter().copied());
    }
    columns.extend(attributes.finish());
    let (counts, totals): (Vec<Option<u64>>, Vec<[Option<f64>; 3]>) =
        rows.iter().map(|r| r.value.totals()).unzip();
    let exps: Vec<_> = rows.iter().map(|r| exponential(&r.value)).collect();
    let (buckets, bounds): (Vec<Fixed64s<'_, u64>>, Vec<Fixed64s<'_, f64>>) =
        rows.iter().map(|r| r.value.buckets()).unzip();
    columns.extend([
        primitive::<UInt64Type>(rows.iter().map(|r| r.time_unix_nano).collect()),
        primitive::<UInt64Type>(rows.iter().map(|r| r.start_time_unix_nano).collect()),
        primitive::<arrow::datatypes::UInt32Type>(rows.iter().map(|r| r.flags).collect()),
        Arc::new(Float64Array::from_iter(
            rows.iter()
                .map(|r| r.value.number().map(NumberValue::as_f64)),
        )) as ArrayRef,
        Arc::new(Int64Array::from_iter(rows.iter().map(
            |r| match r.value.number() {
                Some(NumberValue::Int(i)) => Some(i),
                _ => None,
            },
        ))),
        Arc::new(UInt64Array::from(counts)),
        Arc::new(Float64Array::from_iter(totals.iter().map(|t| t[0]))),
        Arc::new(Float64Array::from_iter(totals.iter().map(|t| t[1]))),
        Arc::new(Float64Array::from_iter(totals.iter().map(|t| t[2]))),
        number_lists::<u64, UInt64Type>(&buckets),
        number_lists::<f64, Float64Type>(&bounds),
        Arc::new(Int32Array::from_iter(exps.iter().map(|e| e.map(|e| e.0)))),
        Arc::new(UInt64Array::from_iter(exps.iter().map(|e| e.map(|e| e.1)))),
        Arc::new(Float64Array::from_iter(exps.iter().map(|e| e.map(|e| e.2)))),
    ]);
    columns.extend(exponential_side(exps.iter().map(|e| e.map(|e| e.3))));
    columns.extend(exponential_side(exps.iter().map(|e| e.map(|e| e.4))));
    columns.extend([quantiles_array(rows)?, exemplars_array(rows)?]);
    let per_row: Vec<_> = (rows.iter())
        .map(|r| {
            let (resource, scope) = &owners[r.owner];
            (resource, scope)
        })
        .collect();
    columns.extend(resource_scope_arrays(&per_row)?);
    Ok(RecordBatch::try_new(metrics_schema(), columns)?)
}

type Exponential<'a> = (
    i32,
    u64,
    f64,
    &'a crate::model::ExpBuckets,
    &'a crate::model::ExpBuckets,
);

fn exponential<'a>(value: &ValueRef<'a>) -> Option<Exponential<'a>> {
    match value {
        ValueRef::Other(PointValue::ExponentialHistogram {
            scale,
            zero_count,
            zero_threshold,
            positive,
            negative,
            ..
        }) => Some((*scale, *zero_count, *zero_threshold, positive, negative)),
        _ => None,
    }
}

/// The offset and bucket-count columns of the positive or negative range of exponential
/// histograms (`None` for other points).
fn exponential_side<'a>(
    sides: impl Iterator<Item = Option<&'a crate::model::ExpBuckets>> + Clone,
) -> [ArrayRef; 2] {
    let offsets = Int32Array::from_iter(sides.clone().map(|s| s.map(|s| s.offset)));
    let counts: Vec<Fixed64s<'_, u64>> = sides
        .map(|s| s.map_or_else(Default::default, |s| Fixed64s::Values(&s.bucket_counts)))
        .collect();
    [Arc::new(offsets), number_lists::<u64, UInt64Type>(&counts)]
}

/// The `series_id` column: the metric name and the resource's labels are hashed once per
/// metric and owner.
fn series_ids(
    owners: &[(Arc<Resource>, Arc<Scope>)],
    metrics: &[MetricRow<'_>],
    rows: &[PointRow<'_>],
) -> ArrayRef {
    let resources: Vec<u64> = (owners.iter())
        .map(|(r, _)| super::resource_hash(r))
        .collect();
    let names: Vec<Fnv> = metrics.iter().map(|m| Fnv::named(m.name)).collect();
    let ids = (rows.iter())
        .map(|r| names[r.metric].series(r.attributes.iter().copied(), resources[r.owner]))
        .collect();
    primitive::<UInt64Type>(ids)
}

fn quantiles_array(rows: &[PointRow<'_>]) -> Result<ArrayRef> {
    let per_row: Vec<&[Quantile]> = (rows.iter())
        .map(|r| match r.value {
            ValueRef::Other(PointValue::Summary { quantiles, .. }) => quantiles.as_slice(),
            _ => &[],
        })
        .collect();
    let all = || per_row.iter().flat_map(|q| q.iter());
    let children: Vec<ArrayRef> = vec![
        primitive::<Float64Type>(all().map(|q| q.quantile).collect()),
        primitive::<Float64Type>(all().map(|q| q.value).collect()),
    ];
    let lens: Vec<usize> = per_row.iter().map(|q| q.len()).collect();
    list_array(quantile_fields(), children, &lens)
}

fn exemplars_array(rows: &[PointRow<'_>]) -> Result<ArrayRef> {
    let all = || rows.iter().flat_map(|r| &r.exemplars);
    let mut attributes = AttrMapsBuilder::for_rows(all().map(|e| e.attributes.iter().copied()));
    for e in all() {
        attributes.append(e.attributes.iter().copied());
    }
    let mut children: Vec<ArrayRef> = vec![
        primitive::<UInt64Type>(all().map(|e| e.time_unix_nano).collect()),
        primitive::<Float64Type>(all().map(|e| e.value.as_f64()).collect()),
        Arc::new(Int64Array::from_iter(all().map(|e| match e.value {
            NumberValue::Int(i) => Some(i),
            NumberValue::Double(_) => None,
        }))),
        fixed(all().map(|e| e.trace_id.as_ref().map(|id| &id[..])), 16),
        fixed(all().map(|e| e.span_id.as_ref().map(|id| &id[..])), 8),
    ];
    children.extend(attributes.finish());
    let lens: Vec<usize> = rows.iter().map(|r| r.exemplars.len()).collect();
    list_array(exemplar_fields(), children, &lens)
}
