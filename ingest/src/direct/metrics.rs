//! The metrics fast path: an OTLP protobuf `ExportMetricsServiceRequest` read straight from its
//! bytes into the `metrics` table's columns, without prost structs or model points.
//!
//! The same contract as the span fast path (see [`super`]): it takes a request only when the
//! general path (prost, then [`crate::convert::metrics`], then
//! [`spyglass_store::schema::metrics_to_batch`]) would store all of it, and stores it exactly
//! as that path would. It reads gauges, sums, histograms, exponential histograms and summaries
//! with their exemplars, with string, int, double and bool attributes. Metric metadata and any
//! point the general path would reject answer [`Fallback`].

use arrow::array::RecordBatch;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use spyglass_store::model::{
    ExpBuckets, MetricType, NumberValue, PointValue, Quantile, Temporality,
};
use spyglass_store::schema::{
    ExemplarRow, Fixed64s, KvRef, MetricRow, PointRow, ValueRef, point_rows_to_batch,
    sort_attributes,
};

use super::{key_value, layer, once};
use crate::convert::{self, NO_RECORDED_VALUE, optional_id};
use crate::wire::{Fallback, Fields, Result, Value, packed_varints, zigzag32};

/// The request's points as a `metrics` batch (`None` when it has none), or [`Fallback`].
pub(crate) fn metrics(request: &[u8], max_expanded: u64) -> Result<Option<RecordBatch>> {
    let (mut owners, mut metrics, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    // The values of exponential histogram and summary points, which are not in the request's
    // bytes as the batch takes them (varint bucket counts, quantile messages), with their rows.
    let mut owned = Vec::new();
    let mut fields = Fields::new(request);
    while let Some((number, value)) = fields.next_field()? {
        if number != 1 {
            continue;
        }
        let resource_metrics = layer::<OtlpResource>(value.bytes()?)?;
        let resource =
            convert::resource(resource_metrics.owner.as_ref(), resource_metrics.schema_url);
        for bytes in resource_metrics.children {
            let scope_metrics = layer::<InstrumentationScope>(bytes)?;
            let scope = convert::scope(scope_metrics.owner.as_ref(), scope_metrics.schema_url);
            owners.push((resource.clone(), scope));
            for bytes in scope_metrics.children {
                metric(bytes, owners.len() - 1, &mut metrics, &mut rows, &mut owned)?;
            }
        }
    }
    if rows.is_empty() {
        return Ok(None);
    }
    for (row, value) in &owned {
        rows[*row].value = ValueRef::Other(value);
    }
    super::expansion_within(&owners, rows.iter().map(|r| r.owner), max_expanded)?;
    point_rows_to_batch(&owners, &metrics, &rows)
        .map(Some)
        .map_err(|_| Fallback)
}

/// Reads one `Metric` into a metric row and its point rows; exponential histogram and summary
/// values go to `owned`, with their row's index.
fn metric<'a>(
    bytes: &'a [u8],
    owner: usize,
    metrics: &mut Vec<MetricRow<'a>>,
    rows: &mut Vec<PointRow<'a>>,
    owned: &mut Vec<(usize, PointValue)>,
) -> Result<()> {
    let mut row = MetricRow::default();
    let mut data = None;
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => row.name = value.str()?,
            2 => row.description = value.str()?,
            3 => row.unit = value.str()?,
            // The `data` oneof; a second one would replace or merge into the first.
            5 | 7 | 9 | 10 | 11 => once(&mut data, (number, value.bytes()?))?,
            // Metadata is decoded (and so checked) by prost, not here.
            12 => return Err(Fallback),
            _ => {}
        }
    }
    let Some((kind, bytes)) = data else {
        // A metric without data has no points.
        return Ok(());
    };
    let (mut points, mut temporality, mut monotonic) = (Vec::new(), 0i32, false);
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match (kind, number) {
            (_, 1) => points.push(value.bytes()?),
            (7 | 9 | 10, 2) => temporality = value.varint()? as i32,
            (7, 3) => monotonic = value.varint()? != 0,
            _ => {}
        }
    }
    if points.is_empty() {
        return Ok(());
    }
    let temporality = || {
        usize::try_from(temporality)
            .ok()
            .and_then(|i| Temporality::ALL.get(i).copied())
            .ok_or(Fallback)
    };
    (row.metric_type, row.temporality, row.is_monotonic) = match kind {
        5 => (MetricType::Gauge, Temporality::Unspecified, false),
        7 => (MetricType::Sum, temporality()?, monotonic),
        9 => (MetricType::Histogram, temporality()?, false),
        10 => (MetricType::ExponentialHistogram, temporality()?, false),
        _ => (MetricType::Summary, Temporality::Unspecified, false),
    };
    metrics.push(row);
    let metric = metrics.len() - 1;
    for bytes in points {
        let mut point = match kind {
            5 | 7 => number_point(bytes)?,
            9 => histogram_point(bytes)?,
            _ => {
                let (point, value) = match kind {
                    10 => exponential_point(bytes)?,
                    _ => summary_point(bytes)?,
                };
                owned.push((rows.len(), value));
                point
            }
        };
        point.owner = owner;
        point.metric = metric;
        rows.push(point);
    }
    Ok(())
}

/// A point with no value yet, of no owner and metric yet.
fn empty_point<'a>() -> PointRow<'a> {
    PointRow {
        owner: 0,
        metric: 0,
        attributes: Vec::new(),
        time_unix_nano: 0,
        start_time_unix_nano: 0,
        flags: 0,
        value: ValueRef::Number(NumberValue::Int(0)),
        exemplars: Vec::new(),
    }
}

/// The `as_double` / `as_int` oneof of points and exemplars (an `sfixed64` or a `double`).
/// When both come, the last one wins, as in prost.
fn number(is_int: bool, value: Value<'_>) -> Result<NumberValue> {
    let bits = value.fixed64()?;
    Ok(match is_int {
        true => NumberValue::Int(bits as i64),
        false => NumberValue::Double(f64::from_bits(bits)),
    })
}

/// A `double` field.
fn double(value: Value<'_>) -> Result<f64> {
    value.fixed64().map(f64::from_bits)
}

fn number_point(bytes: &[u8]) -> Result<PointRow<'_>> {
    let mut point = empty_point();
    let mut number_value = None;
    let mut fields = Fields::new(bytes);
    while let Some((field, value)) = fields.next_field()? {
        match field {
            2 => point.start_time_unix_nano = value.fixed64()?,
            3 => point.time_unix_nano = value.fixed64()?,
            4 | 6 => number_value = Some(number(field == 6, value)?),
            5 => point.exemplars.push(exemplar(value.bytes()?)?),
            7 => point.attributes.push(key_value(value.bytes()?)?),
            8 => point.flags = value.varint()? as u32,
            _ => {}
        }
    }
    point.value = ValueRef::Number(match number_value {
        Some(n) => n,
        // A gap: stored as NaN with its flag, as the general path does.
        None if point.flags & NO_RECORDED_VALUE != 0 => NumberValue::Double(f64::NAN),
        None => return Err(Fallback),
    });
    sort_attributes(&mut point.attributes);
    Ok(point)
}

fn histogram_point(bytes: &[u8]) -> Result<PointRow<'_>> {
    let mut point = empty_point();
    let (mut count, mut sum, mut min, mut max) = (0, None, None, None);
    let (mut bucket_counts, mut explicit_bounds) = (None, None);
    let mut fields = Fields::new(bytes);
    while let Some((field, value)) = fields.next_field()? {
        match field {
            2 => point.start_time_unix_nano = value.fixed64()?,
            3 => point.time_unix_nano = value.fixed64()?,
            4 => count = value.fixed64()?,
            5 => sum = Some(double(value)?),
            6 => once(&mut bucket_counts, packed_fixed64(value)?)?,
            7 => once(&mut explicit_bounds, packed_fixed64(value)?)?,
            8 => point.exemplars.push(exemplar(value.bytes()?)?),
            9 => point.attributes.push(key_value(value.bytes()?)?),
            10 => point.flags = value.varint()? as u32,
            11 => min = Some(double(value)?),
            12 => max = Some(double(value)?),
            _ => {}
        }
    }
    let bucket_counts = Fixed64s::Le(bucket_counts.unwrap_or_default());
    let explicit_bounds = Fixed64s::Le(explicit_bounds.unwrap_or_default());
    if !bucket_counts.is_empty() && bucket_counts.len() != explicit_bounds.len() + 1 {
        return Err(Fallback);
    }
    point.value = ValueRef::Histogram {
        count,
        sum,
        min,
        max,
        bucket_counts,
        explicit_bounds,
    };
    sort_attributes(&mut point.attributes);
    Ok(point)
}

/// An exponential histogram point; its value (bucket counts decoded from varints) apart.
fn exponential_point(bytes: &[u8]) -> Result<(PointRow<'_>, PointValue)> {
    let mut point = empty_point();
    let (mut count, mut sum, mut min, mut max) = (0, None, None, None);
    let (mut scale, mut zero_count, mut zero_threshold) = (0, 0, 0.0);
    let (mut positive, mut negative) = (None, None);
    let mut fields = Fields::new(bytes);
    while let Some((field, value)) = fields.next_field()? {
        match field {
            1 => point.attributes.push(key_value(value.bytes()?)?),
            2 => point.start_time_unix_nano = value.fixed64()?,
            3 => point.time_unix_nano = value.fixed64()?,
            4 => count = value.fixed64()?,
            5 => sum = Some(double(value)?),
            6 => scale = zigzag32(value.varint()?),
            7 => zero_count = value.fixed64()?,
            8 => once(&mut positive, value.bytes()?)?,
            9 => once(&mut negative, value.bytes()?)?,
            10 => point.flags = value.varint()? as u32,
            11 => point.exemplars.push(exemplar(value.bytes()?)?),
            12 => min = Some(double(value)?),
            13 => max = Some(double(value)?),
            14 => zero_threshold = double(value)?,
            _ => {}
        }
    }
    let value = PointValue::ExponentialHistogram {
        count,
        sum,
        min,
        max,
        scale,
        zero_count,
        zero_threshold,
        positive: positive.map_or(Ok(ExpBuckets::default()), exp_buckets)?,
        negative: negative.map_or(Ok(ExpBuckets::default()), exp_buckets)?,
    };
    sort_attributes(&mut point.attributes);
    Ok((point, value))
}

/// An exponential histogram's `Buckets`: a `sint32` offset and packed `uint64` counts.
fn exp_buckets(bytes: &[u8]) -> Result<ExpBuckets> {
    let (mut offset, mut counts) = (0, None);
    let mut fields = Fields::new(bytes);
    while let Some((field, value)) = fields.next_field()? {
        match field {
            1 => offset = zigzag32(value.varint()?),
            // Unpacked counts, or a second packed run, which prost appends: left to prost.
            2 => once(&mut counts, value.bytes()?)?,
            _ => {}
        }
    }
    Ok(ExpBuckets {
        offset,
        bucket_counts: counts.map_or(Ok(Vec::new()), packed_varints)?,
    })
}

/// A summary point (no exemplars in OTLP); its value, with the quantiles, apart.
fn summary_point(bytes: &[u8]) -> Result<(PointRow<'_>, PointValue)> {
    let mut point = empty_point();
    let (mut count, mut sum, mut quantiles) = (0, 0.0, Vec::new());
    let mut fields = Fields::new(bytes);
    while let Some((field, value)) = fields.next_field()? {
        match field {
            2 => point.start_time_unix_nano = value.fixed64()?,
            3 => point.time_unix_nano = value.fixed64()?,
            4 => count = value.fixed64()?,
            5 => sum = double(value)?,
            6 => {
                let mut quantile = Quantile {
                    quantile: 0.0,
                    value: 0.0,
                };
                let mut fields = Fields::new(value.bytes()?);
                while let Some((field, value)) = fields.next_field()? {
                    match field {
                        1 => quantile.quantile = double(value)?,
                        2 => quantile.value = double(value)?,
                        _ => {}
                    }
                }
                quantiles.push(quantile);
            }
            7 => point.attributes.push(key_value(value.bytes()?)?),
            8 => point.flags = value.varint()? as u32,
            _ => {}
        }
    }
    sort_attributes(&mut point.attributes);
    Ok((
        point,
        PointValue::Summary {
            count,
            sum,
            quantiles,
        },
    ))
}

/// A packed `repeated fixed64` or `repeated double`. Unpacked elements, which prost also
/// reads, fall back.
fn packed_fixed64(value: Value<'_>) -> Result<&[u8]> {
    let bytes = value.bytes()?;
    match bytes.len() % 8 {
        0 => Ok(bytes),
        _ => Err(Fallback),
    }
}

fn exemplar(bytes: &[u8]) -> Result<ExemplarRow<'_>> {
    let (mut time_unix_nano, mut number_value) = (0, None);
    let (mut trace_id, mut span_id): (&[u8], &[u8]) = (&[], &[]);
    let mut attributes: Vec<KvRef<'_>> = Vec::new();
    let mut fields = Fields::new(bytes);
    while let Some((field, value)) = fields.next_field()? {
        match field {
            2 => time_unix_nano = value.fixed64()?,
            3 | 6 => number_value = Some(number(field == 6, value)?),
            4 => span_id = value.bytes()?,
            5 => trace_id = value.bytes()?,
            7 => attributes.push(key_value(value.bytes()?)?),
            _ => {}
        }
    }
    sort_attributes(&mut attributes);
    Ok(ExemplarRow {
        time_unix_nano,
        value: number_value.ok_or(Fallback)?,
        trace_id: optional_id::<16>(trace_id, "").map_err(|_| Fallback)?,
        span_id: optional_id::<8>(span_id, "").map_err(|_| Fallback)?,
        attributes,
    })
}

#[cfg(test)]
mod tests;
