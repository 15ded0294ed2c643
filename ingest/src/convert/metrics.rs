//! `ExportMetricsServiceRequest` → metric points, one per data point.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets as ExpDataPointBuckets;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar as OtlpExemplar, Metric, exemplar, metric, number_data_point,
};
use spyglass_store::model::{
    Exemplar, ExpBuckets, MetricPoint, MetricType, NumberValue, PointValue, Quantile, Resource,
    Scope, SpanId, Temporality, TraceId,
};

use super::{Converted, attributes_owned, optional_id, resource, scope};

/// Takes the request by value: attribute keys and values move into the points.
pub fn metrics(request: ExportMetricsServiceRequest) -> Converted<MetricPoint> {
    let count = (request.resource_metrics.iter())
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(points_in)
        .sum();
    let mut out = Converted::with_capacity(count);
    for (r, rm) in request.resource_metrics.into_iter().enumerate() {
        let res = resource(rm.resource.as_ref(), &rm.schema_url);
        for sm in rm.scope_metrics {
            let scp = scope(sm.scope.as_ref(), &sm.schema_url);
            for m in sm.metrics {
                convert_metric(m, &res, &scp, &mut out, r);
            }
        }
    }
    out
}

/// How many data points a metric carries.
fn points_in(m: &Metric) -> usize {
    use metric::Data;
    match &m.data {
        None => 0,
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
    }
}

fn temporality(value: i32) -> Result<Temporality, String> {
    usize::try_from(value)
        .ok()
        .and_then(|i| Temporality::ALL.get(i).copied())
        .ok_or_else(|| format!("aggregation_temporality {value} is out of range"))
}

fn exemplars(list: Vec<OtlpExemplar>) -> Result<Vec<Exemplar>, String> {
    list.into_iter()
        .map(|e| {
            Ok(Exemplar {
                time_unix_nano: e.time_unix_nano,
                value: match e.value {
                    Some(exemplar::Value::AsInt(i)) => NumberValue::Int(i),
                    Some(exemplar::Value::AsDouble(d)) => NumberValue::Double(d),
                    None => return Err("exemplar has no value".to_owned()),
                },
                trace_id: optional_id::<16>(&e.trace_id, "exemplar trace_id")?.map(TraceId),
                span_id: optional_id::<8>(&e.span_id, "exemplar span_id")?.map(SpanId),
                filtered_attributes: attributes_owned(e.filtered_attributes),
            })
        })
        .collect()
}

/// The [`Common`] part of any OTLP data point type (they share these field names).
macro_rules! common {
    ($p:expr, $exemplars:expr) => {
        Common {
            attributes: $p.attributes,
            start_time_unix_nano: $p.start_time_unix_nano,
            time_unix_nano: $p.time_unix_nano,
            flags: $p.flags,
            exemplars: $exemplars,
        }
    };
}

/// What every data point carries besides its value.
struct Common {
    attributes: Vec<KeyValue>,
    start_time_unix_nano: u64,
    time_unix_nano: u64,
    flags: u32,
    exemplars: Vec<OtlpExemplar>,
}

fn convert_metric(
    m: Metric,
    res: &Arc<Resource>,
    scp: &Arc<Scope>,
    out: &mut Converted<MetricPoint>,
    r: usize,
) {
    use metric::Data;
    let Some(data) = m.data else {
        // A metric without data has no points to store or reject.
        return;
    };
    let mut push = |kind: MetricType,
                    temporality: Result<Temporality, String>,
                    monotonic: bool,
                    common: Common,
                    value: Result<PointValue, String>| {
        let point = (|| {
            Ok::<_, String>(MetricPoint {
                metric_name: m.name.clone(),
                description: m.description.clone(),
                unit: m.unit.clone(),
                metric_type: kind,
                temporality: temporality.clone()?,
                is_monotonic: monotonic,
                attributes: attributes_owned(common.attributes),
                time_unix_nano: common.time_unix_nano,
                start_time_unix_nano: common.start_time_unix_nano,
                flags: common.flags,
                value: value?,
                exemplars: exemplars(common.exemplars)?,
                resource: res.clone(),
                scope: scp.clone(),
            })
        })();
        match point {
            Ok(p) => out.items.push(p),
            Err(why) => out.reject(|| format!("resource_metrics[{r}] metric {:?}: {why}", m.name)),
        }
    };
    match data {
        Data::Gauge(g) => {
            for p in g.data_points {
                let (value, flags) = (p.value, p.flags);
                let common = common!(p, p.exemplars);
                push(
                    MetricType::Gauge,
                    Ok(Temporality::Unspecified),
                    false,
                    common,
                    number(value, flags),
                );
            }
        }
        Data::Sum(s) => {
            for p in s.data_points {
                let (value, flags) = (p.value, p.flags);
                let common = common!(p, p.exemplars);
                push(
                    MetricType::Sum,
                    temporality(s.aggregation_temporality),
                    s.is_monotonic,
                    common,
                    number(value, flags),
                );
            }
        }
        Data::Histogram(h) => {
            for p in h.data_points {
                let value = if !p.bucket_counts.is_empty()
                    && p.bucket_counts.len() != p.explicit_bounds.len() + 1
                {
                    Err(format!(
                        "{} bucket counts for {} explicit bounds",
                        p.bucket_counts.len(),
                        p.explicit_bounds.len()
                    ))
                } else {
                    Ok(PointValue::Histogram {
                        count: p.count,
                        sum: p.sum,
                        min: p.min,
                        max: p.max,
                        bucket_counts: p.bucket_counts,
                        explicit_bounds: p.explicit_bounds,
                    })
                };
                let common = common!(p, p.exemplars);
                push(
                    MetricType::Histogram,
                    temporality(h.aggregation_temporality),
                    false,
                    common,
                    value,
                );
            }
        }
        Data::ExponentialHistogram(h) => {
            for p in h.data_points {
                let buckets = |b: Option<ExpDataPointBuckets>| {
                    b.map_or_else(ExpBuckets::default, |b| ExpBuckets {
                        offset: b.offset,
                        bucket_counts: b.bucket_counts,
                    })
                };
                let value = Ok(PointValue::ExponentialHistogram {
                    count: p.count,
                    sum: p.sum,
                    min: p.min,
                    max: p.max,
                    scale: p.scale,
                    zero_count: p.zero_count,
                    zero_threshold: p.zero_threshold,
                    positive: buckets(p.positive),
                    negative: buckets(p.negative),
                });
                let common = common!(p, p.exemplars);
                push(
                    MetricType::ExponentialHistogram,
                    temporality(h.aggregation_temporality),
                    false,
                    common,
                    value,
                );
            }
        }
        Data::Summary(s) => {
            for p in s.data_points {
                let value = Ok(PointValue::Summary {
                    count: p.count,
                    sum: p.sum,
                    quantiles: p
                        .quantile_values
                        .iter()
                        .map(|q| Quantile {
                            quantile: q.quantile,
                            value: q.value,
                        })
                        .collect(),
                });
                let common = common!(p, Vec::new());
                push(
                    MetricType::Summary,
                    Ok(Temporality::Unspecified),
                    false,
                    common,
                    value,
                );
            }
        }
    }
}

/// `DataPointFlags.NO_RECORDED_VALUE`: the point marks a gap (Prometheus' staleness marker).
pub(crate) const NO_RECORDED_VALUE: u32 = 1;

fn number(value: Option<number_data_point::Value>, flags: u32) -> Result<PointValue, String> {
    match value {
        Some(number_data_point::Value::AsInt(i)) => Ok(PointValue::Number(NumberValue::Int(i))),
        Some(number_data_point::Value::AsDouble(d)) => {
            Ok(PointValue::Number(NumberValue::Double(d)))
        }
        // A gap has no value by definition; it is stored as NaN with its flag kept.
        None if flags & NO_RECORDED_VALUE != 0 => {
            Ok(PointValue::Number(NumberValue::Double(f64::NAN)))
        }
        None => Err("number data point has no value".to_owned()),
    }
}
