//! The `logs` table.

use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, ArrayRef, FixedSizeBinaryArray, Int32Array, RecordBatch, StringArray, UInt32Array,
    UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::attrs::{
    AttrReader, attr_arrays, attr_fields, read_resource_scope, resource_scope_arrays,
    resource_scope_fields,
};
use super::columns::{col, read_span_id, read_trace_id, span_ids, strings, trace_ids, u32s, u64s};
use super::typed_json;
use crate::error::Result;
use crate::model::{AttrValue, LogRecord};

pub fn logs_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut fields = vec![
                Field::new("time_unix_nano", DataType::UInt64, false),
                Field::new("observed_time_unix_nano", DataType::UInt64, false),
                Field::new("severity_number", DataType::Int32, false),
                Field::new("severity_text", DataType::Utf8, false),
                // A string body as it is; any other body in typed JSON in `body_other`.
                Field::new("body", DataType::Utf8, true),
                Field::new("body_other", DataType::Utf8, true),
                Field::new("event_name", DataType::Utf8, false),
                Field::new("service_name", DataType::Utf8, false),
                Field::new("trace_id", DataType::FixedSizeBinary(16), true),
                Field::new("span_id", DataType::FixedSizeBinary(8), true),
                Field::new("flags", DataType::UInt32, false),
            ];
            fields.extend(attr_fields("attributes"));
            fields.push(Field::new(
                "dropped_attributes_count",
                DataType::UInt32,
                false,
            ));
            fields.extend(resource_scope_fields());
            Arc::new(Schema::new(fields))
        })
        .clone()
}

pub fn logs_to_batch(logs: &[LogRecord]) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = vec![
        u64s(logs.iter().map(|l| l.time_unix_nano)),
        u64s(logs.iter().map(|l| l.observed_time_unix_nano)),
        Arc::new(Int32Array::from_iter_values(
            logs.iter().map(|l| l.severity_number),
        )),
        strings(logs.iter().map(|l| l.severity_text.as_str())),
        Arc::new(StringArray::from_iter(logs.iter().map(|l| match &l.body {
            Some(AttrValue::Str(s)) => Some(s.as_str()),
            _ => None,
        }))),
        Arc::new(StringArray::from_iter(logs.iter().map(|l| match &l.body {
            None | Some(AttrValue::Str(_)) => None,
            Some(other) => Some(typed_json::encode(other)),
        }))),
        strings(logs.iter().map(|l| l.event_name.as_str())),
        Arc::new(StringArray::from_iter_values(
            logs.iter().map(|l| l.service_name()),
        )),
        trace_ids(logs.iter().map(|l| l.trace_id.as_ref())),
        span_ids(logs.iter().map(|l| l.span_id.as_ref())),
        u32s(logs.iter().map(|l| l.flags)),
    ];
    columns.extend(attr_arrays(logs.iter().map(|l| &l.attributes)));
    columns.push(u32s(logs.iter().map(|l| l.dropped_attributes_count)));
    let owners: Vec<_> = logs.iter().map(|l| (&l.resource, &l.scope)).collect();
    columns.extend(resource_scope_arrays(&owners)?);
    Ok(RecordBatch::try_new(logs_schema(), columns)?)
}

pub fn logs_from_batch(batch: &RecordBatch) -> Result<Vec<LogRecord>> {
    let time: &UInt64Array = col(batch, "time_unix_nano")?;
    let observed: &UInt64Array = col(batch, "observed_time_unix_nano")?;
    let severity_number: &Int32Array = col(batch, "severity_number")?;
    let severity_text: &StringArray = col(batch, "severity_text")?;
    let body: &StringArray = col(batch, "body")?;
    let body_other: &StringArray = col(batch, "body_other")?;
    let event_name: &StringArray = col(batch, "event_name")?;
    let trace_id: &FixedSizeBinaryArray = col(batch, "trace_id")?;
    let span_id: &FixedSizeBinaryArray = col(batch, "span_id")?;
    let flags: &UInt32Array = col(batch, "flags")?;
    let attrs = AttrReader::new(batch, "attributes")?;
    let dropped: &UInt32Array = col(batch, "dropped_attributes_count")?;
    let owners = read_resource_scope(batch, batch.num_rows())?;
    owners
        .into_iter()
        .enumerate()
        .map(|(i, (resource, scope))| {
            let body = if body.is_valid(i) {
                Some(AttrValue::Str(body.value(i).to_owned()))
            } else if body_other.is_valid(i) {
                Some(typed_json::decode(body_other.value(i))?)
            } else {
                None
            };
            Ok(LogRecord {
                time_unix_nano: time.value(i),
                observed_time_unix_nano: observed.value(i),
                severity_number: severity_number.value(i),
                severity_text: severity_text.value(i).to_owned(),
                body,
                event_name: event_name.value(i).to_owned(),
                attributes: attrs.row(i)?,
                dropped_attributes_count: dropped.value(i),
                flags: flags.value(i),
                trace_id: read_trace_id(trace_id, i),
                span_id: read_span_id(span_id, i),
                resource,
                scope,
            })
        })
        .collect()
}
