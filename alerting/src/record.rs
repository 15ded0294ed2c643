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

/// OTLP's "no recorded value" flag: the point ends its series (a staleness marker).
const NO_RECORDED_VALUE: u32 = 1;

/// Prometheus's alert series at `at`, for an alerting rule's alerts after an evaluation:
/// `ALERTS{alertname, alertstate, …labels} 1` and `ALERTS_FOR_STATE{alertname, …labels}` (the
/// time the alert became active, in Unix seconds) for each pending or firing alert, and a
/// staleness marker for each `ended` series (labels and the state it left), so that PromQL
/// stops seeing it at once rather than after the lookback. They belong to no service.
pub fn alert_points(
    active: &[(crate::state::Labels, &'static str, u64)],
    ended: &[(crate::state::Labels, &'static str)],
    at: u64,
) -> Vec<MetricPoint> {
    let scope = Arc::new(Scope {
        name: "spyglass.rules".into(),
        ..Scope::default()
    });
    let resource = Arc::new(Resource::default());
    let point = |name: &str, labels: &crate::state::Labels, state: Option<&str>, value, flags| {
        let mut attributes: Vec<KeyValue> = labels
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: AttrValue::Str(v.clone()),
            })
            .collect();
        if let Some(state) = state {
            attributes.push(KeyValue {
                key: "alertstate".into(),
                value: AttrValue::Str(state.into()),
            });
        }
        MetricPoint {
            metric_name: name.to_owned(),
            description: String::new(),
            unit: String::new(),
            metric_type: MetricType::Gauge,
            temporality: Temporality::Unspecified,
            is_monotonic: false,
            attributes: Attributes::new(attributes),
            time_unix_nano: at,
            start_time_unix_nano: 0,
            flags,
            value: PointValue::Number(NumberValue::Double(value)),
            exemplars: Vec::new(),
            resource: resource.clone(),
            scope: scope.clone(),
        }
    };
    let mut out = Vec::new();
    for (labels, state, active_at) in active {
        out.push(point("ALERTS", labels, Some(state), 1.0, 0));
        let since = *active_at as f64 / 1e9;
        out.push(point("ALERTS_FOR_STATE", labels, None, since, 0));
    }
    for (labels, state) in ended {
        out.push(point(
            "ALERTS",
            labels,
            Some(state),
            f64::NAN,
            NO_RECORDED_VALUE,
        ));
        if !active.iter().any(|(l, _, _)| l == labels) {
            out.push(point(
                "ALERTS_FOR_STATE",
                labels,
                None,
                f64::NAN,
                NO_RECORDED_VALUE,
            ));
        }
    }
    out
}
