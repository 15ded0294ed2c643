//! Recording rules: each row of a `sql:` recording rule becomes a gauge point of the metric the
//! rule names, written into the `metrics` table through a [`Recorder`] that the binary wires to
//! the store.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use spyglass_query::model::{
    AttrValue, Attributes, KeyValue, MetricPoint, MetricType, NumberValue, PointValue, Resource,
    Scope, Temporality,
};

use crate::state::Sample;

/// Writes recorded points; the error says why they were not written.
pub type Recorder = Arc<
    dyn Fn(Vec<MetricPoint>) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// The service a recorded series belongs to when its labels name none.
pub const RECORDED_SERVICE: &str = "spyglass.rules";

/// One gauge point per sample, at `at`: its labels (less `alertname`) as attributes, its
/// `service` label (or [`RECORDED_SERVICE`]) as the resource's `service.name`.
pub fn points(metric: &str, samples: &[Sample], at: u64) -> Vec<MetricPoint> {
    let scope = Arc::new(Scope {
        name: "spyglass.rules".into(),
        ..Scope::default()
    });
    samples
        .iter()
        .map(|sample| {
            let service = sample
                .labels
                .get("service")
                .map_or(RECORDED_SERVICE, String::as_str);
            let kv = |key: &str, value: &str| KeyValue {
                key: key.to_owned(),
                value: AttrValue::Str(value.to_owned()),
            };
            MetricPoint {
                metric_name: metric.to_owned(),
                description: String::new(),
                unit: String::new(),
                metric_type: MetricType::Gauge,
                temporality: Temporality::Unspecified,
                is_monotonic: false,
                attributes: Attributes::new(
                    sample
                        .labels
                        .iter()
                        .filter(|(k, _)| k.as_str() != "alertname")
                        .map(|(k, v)| kv(k, v))
                        .collect(),
                ),
                time_unix_nano: at,
                start_time_unix_nano: 0,
                flags: 0,
                value: PointValue::Number(NumberValue::Double(sample.value)),
                exemplars: Vec::new(),
                resource: Arc::new(Resource {
                    attributes: Attributes::new(vec![kv("service.name", service)]),
                    ..Resource::default()
                }),
                scope: scope.clone(),
            }
        })
        .collect()
}
