//! What the evaluator reads, as a trait: the query engine in Spyglass, a scripted reader in
//! the state-machine tests (which drive the real evaluator with paused time).

use std::collections::BTreeMap;
use std::future::Future;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use spyglass_query::model::TraceId;
use spyglass_query::{Dependencies, QueryEngine, ServiceHealth, TraceSearch};

use crate::state::{Labels, Sample};

pub type ReadResult<T> = Result<T, spyglass_query::Error>;

/// The span kinds that are a service's own requests: what its health is judged by.
pub const ANSWERED_KINDS: [&str; 2] = ["server", "consumer"];

pub trait Reader: Send + Sync + 'static {
    /// A read-only SQL query's rows as samples: string columns are labels, `value` (or the
    /// only numeric column; 1 without one) the value, `trace_id` evidence.
    fn sql(&self, query: &str) -> impl Future<Output = ReadResult<Vec<Sample>>> + Send;

    /// A PromQL expression's value at `at` (Unix ns) as samples: a vector's elements with
    /// their labels (`__name__` left out, as Prometheus leaves it out of alerts), or a scalar
    /// as one sample without labels.
    fn promql(&self, query: &str, at: u64) -> impl Future<Output = ReadResult<Vec<Sample>>> + Send {
        let _ = (query, at);
        async {
            Err(spyglass_query::Error::InvalidInput(
                "this reader evaluates no PromQL".into(),
            ))
        }
    }

    /// Each service's health over `[start, end]` from its span metrics; with `kinds`, only
    /// spans of those kinds count.
    fn services(
        &self,
        start: u64,
        end: u64,
        kinds: Option<&'static [&'static str]>,
    ) -> impl Future<Output = ReadResult<Vec<ServiceHealth>>> + Send;

    /// The service graph over `[start, end]`.
    fn dependencies(
        &self,
        start: u64,
        end: u64,
    ) -> impl Future<Output = ReadResult<Dependencies>> + Send;

    /// Trace ids (hex) that match, newest first, with the services each touches.
    fn search(
        &self,
        search: TraceSearch,
    ) -> impl Future<Output = ReadResult<Vec<(String, Vec<String>)>>> + Send;

    /// The services where a trace's errors begin: those of its error spans that have no
    /// error span below them.
    fn error_origins(&self, trace_id: &str)
    -> impl Future<Output = ReadResult<Vec<String>>> + Send;
}

impl Reader for QueryEngine {
    async fn sql(&self, query: &str) -> ReadResult<Vec<Sample>> {
        let output = QueryEngine::sql(self, query).await?;
        let mut samples = Vec::new();
        for batch in &output.batches {
            samples.extend(rows(batch));
        }
        Ok(samples)
    }

    async fn promql(&self, query: &str, at: u64) -> ReadResult<Vec<Sample>> {
        use spyglass_query::promql::{ErrorType, METRIC_NAME, Value};
        let at_ms = (at / 1_000_000) as i64;
        let value = self
            .promql_instant(query, at_ms)
            .await
            .map_err(|e| match e.kind {
                ErrorType::Timeout => spyglass_query::Error::Timeout(self.config().query_timeout()),
                ErrorType::BadData | ErrorType::Execution => {
                    spyglass_query::Error::InvalidInput(e.message)
                }
            })?;
        let sample = |labels: Labels, value: f64| Sample {
            labels,
            value,
            threshold: None,
            trace_ids: Vec::new(),
        };
        Ok(match value {
            Value::Scalar(f) => vec![sample(Labels::new(), f)],
            Value::Vector(v) if v.iter().any(|s| s.h.is_some()) => {
                return Err(spyglass_query::Error::InvalidInput(
                    "the expression gives native histograms, which a rule cannot hold: take \
                     histogram_quantile, histogram_count or histogram_sum of them"
                        .into(),
                ));
            }
            Value::Vector(v) => v
                .into_iter()
                .map(|s| {
                    let mut labels: Labels = s.labels.into_iter().collect();
                    labels.remove(METRIC_NAME);
                    sample(labels, s.f)
                })
                .collect(),
            other => {
                return Err(spyglass_query::Error::InvalidInput(format!(
                    "the expression gives a {}, not an instant vector or a scalar",
                    other.type_name()
                )));
            }
        })
    }

    async fn services(
        &self,
        start: u64,
        end: u64,
        kinds: Option<&'static [&'static str]>,
    ) -> ReadResult<Vec<ServiceHealth>> {
        match kinds {
            Some(kinds) => self.services_of_kinds(start, end, kinds).await,
            None => QueryEngine::services(self, start, end).await,
        }
    }

    async fn dependencies(&self, start: u64, end: u64) -> ReadResult<Dependencies> {
        QueryEngine::dependencies(self, start, end).await
    }

    async fn search(&self, search: TraceSearch) -> ReadResult<Vec<(String, Vec<String>)>> {
        Ok(QueryEngine::search(self, search)
            .await?
            .traces
            .into_iter()
            .map(|t| {
                let services = t.services.into_iter().map(|(s, _)| s).collect();
                (t.trace_id.to_hex(), services)
            })
            .collect())
    }

    async fn error_origins(&self, trace_id: &str) -> ReadResult<Vec<String>> {
        let Some(id) = TraceId::from_hex(trace_id) else {
            return Ok(Vec::new());
        };
        let trace = self.trace_tree(id).await?;
        let failed = |s: &spyglass_query::model::Span| {
            s.status_code == spyglass_query::model::StatusCode::Error
        };
        let failing_parents: std::collections::HashSet<_> = trace
            .spans
            .iter()
            .filter(|s| failed(&s.span))
            .filter_map(|s| s.span.parent_span_id)
            .collect();
        let mut origins: Vec<String> = trace
            .spans
            .iter()
            .filter(|s| failed(&s.span) && !failing_parents.contains(&s.span.span_id))
            .map(|s| s.span.service_name().to_owned())
            .collect();
        origins.sort();
        origins.dedup();
        Ok(origins)
    }
}

/// One sample per row of `batch`.
fn rows(batch: &RecordBatch) -> Vec<Sample> {
    let schema = batch.schema();
    let mut labels: Vec<(String, Vec<Option<String>>)> = Vec::new();
    let mut numbers: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    let mut trace_ids: Option<Vec<Option<String>>> = None;
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name().clone();
        if name == "trace_id" {
            trace_ids = Some(strings(column.as_ref()));
        } else if field.data_type().is_numeric() {
            let floats = arrow::compute::cast(column, &DataType::Float64)
                .map(|c| c.as_primitive::<Float64Type>().iter().collect())
                .unwrap_or_else(|_| vec![None; batch.num_rows()]);
            numbers.push((name, floats));
        } else {
            labels.push((name, strings(column.as_ref())));
        }
    }
    let value_column = numbers
        .iter()
        .find(|(n, _)| n == "value")
        .or(if numbers.len() == 1 {
            numbers.first()
        } else {
            None
        })
        .map(|(_, v)| v);
    (0..batch.num_rows())
        .map(|row| Sample {
            labels: labels
                .iter()
                .filter_map(|(name, values)| Some((name.clone(), values[row].clone()?)))
                .collect::<Labels>(),
            value: value_column.map_or(1.0, |v| v[row].unwrap_or(f64::NAN)),
            threshold: None,
            trace_ids: trace_ids
                .as_ref()
                .and_then(|t| t[row].clone())
                .into_iter()
                .collect(),
        })
        .collect()
}

/// A column as text: strings as they are, binary (trace ids) as hex, the rest as Arrow
/// prints it.
fn strings(column: &dyn Array) -> Vec<Option<String>> {
    if let DataType::FixedSizeBinary(_) | DataType::Binary = column.data_type() {
        let binary = arrow::compute::cast(column, &DataType::Binary).ok();
        if let Some(b) = binary {
            return b
                .as_binary::<i32>()
                .iter()
                .map(|v| v.map(|bytes| bytes.iter().map(|x| format!("{x:02x}")).collect()))
                .collect();
        }
    }
    match arrow::compute::cast(column, &DataType::Utf8) {
        Ok(text) => text
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect(),
        Err(_) => vec![None; column.len()],
    }
}

/// Health by service name.
pub(crate) fn by_service(services: Vec<ServiceHealth>) -> BTreeMap<String, spyglass_query::Health> {
    services
        .into_iter()
        .map(|s| (s.service, s.health))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{FixedSizeBinaryArray, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn rows_become_samples() {
        let schema = Schema::new(vec![
            Field::new("service", DataType::Utf8, true),
            Field::new("calls", DataType::Int64, false),
            Field::new("value", DataType::Float64, false),
            Field::new("trace_id", DataType::FixedSizeBinary(16), true),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec![Some("checkout"), None])),
                Arc::new(Int64Array::from(vec![10, 20])),
                Arc::new(Float64Array::from(vec![0.5, 0.25])),
                Arc::new(
                    FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                        vec![Some([0xab_u8; 16]), None].into_iter(),
                        16,
                    )
                    .unwrap(),
                ),
            ],
        )
        .unwrap();
        let samples = rows(&batch);
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].labels["service"], "checkout");
        assert_eq!(samples[0].value, 0.5);
        assert_eq!(samples[0].trace_ids, vec!["ab".repeat(16)]);
        assert!(samples[1].labels.is_empty(), "a null label is left out");
        assert!(samples[1].trace_ids.is_empty());
    }
}
