//! The `alerts` SQL table: every alert state change (time, group, rule, labels, state, value,
//! incident, example trace ids), from the history the evaluator keeps.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, ListBuilder, MapBuilder, RecordBatch, StringBuilder, UInt64Builder,
};
use arrow::datatypes::SchemaRef;
use spyglass_query::BatchSource;

use crate::status::Alerting;

/// The table over `alerting`'s history.
pub(crate) struct AlertsTable {
    pub(crate) alerting: Alerting,
    pub(crate) schema: SchemaRef,
}

impl AlertsTable {
    pub(crate) fn new(alerting: Alerting) -> Self {
        let schema = Arc::new(
            RecordBatch::try_from_iter(Self::columns(&[]))
                .expect("the alerts table's columns agree")
                .schema()
                .as_ref()
                .clone(),
        );
        Self { alerting, schema }
    }

    fn columns(history: &[crate::status::Transition]) -> Vec<(&'static str, ArrayRef)> {
        let mut time = UInt64Builder::new();
        let mut group = StringBuilder::new();
        let mut rule = StringBuilder::new();
        let mut labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        let mut state = StringBuilder::new();
        let mut value = Float64Builder::new();
        let mut incident = StringBuilder::new();
        let mut trace_ids = ListBuilder::new(StringBuilder::new());
        for t in history {
            time.append_value(t.time_unix_nano);
            group.append_value(&t.group);
            rule.append_value(&t.rule);
            for (k, v) in &t.labels {
                labels.keys().append_value(k);
                labels.values().append_value(v);
            }
            labels
                .append(true)
                .expect("keys and values are appended in pairs");
            state.append_value(t.state.as_str());
            value.append_value(t.value);
            incident.append_option(t.incident.as_deref());
            for id in &t.trace_ids {
                trace_ids.values().append_value(id);
            }
            trace_ids.append(true);
        }
        vec![
            ("time_unix_nano", Arc::new(time.finish()) as ArrayRef),
            ("rule_group", Arc::new(group.finish())),
            ("rule", Arc::new(rule.finish())),
            ("labels", Arc::new(labels.finish())),
            ("state", Arc::new(state.finish())),
            ("value", Arc::new(value.finish())),
            ("incident", Arc::new(incident.finish())),
            ("trace_ids", Arc::new(trace_ids.finish())),
        ]
    }
}

impl BatchSource for AlertsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn batches(&self) -> Vec<RecordBatch> {
        let history: Vec<_> = self.alerting.read(|s| s.history.iter().cloned().collect());
        let columns: Vec<ArrayRef> = Self::columns(&history)
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        match RecordBatch::try_new(self.schema.clone(), columns) {
            Ok(batch) => vec![batch],
            Err(error) => {
                tracing::error!(%error, "the alerts table could not be built");
                Vec::new()
            }
        }
    }
}
