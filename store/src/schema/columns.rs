//! Small helpers to build and read Arrow columns, shared by the three table layouts.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, FixedSizeBinaryArray, FixedSizeBinaryBuilder, ListArray, RecordBatch,
    StringArray, StructArray, UInt32Array, UInt64Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields};

use crate::error::{Error, Result};
use crate::model::{SpanId, TraceId};

/// Anything that holds named columns: a record batch, or a struct array nested in one.
pub(crate) trait Columns {
    fn named(&self, name: &str) -> Option<&ArrayRef>;
}

impl Columns for RecordBatch {
    fn named(&self, name: &str) -> Option<&ArrayRef> {
        self.column_by_name(name)
    }
}

impl Columns for StructArray {
    fn named(&self, name: &str) -> Option<&ArrayRef> {
        self.column_by_name(name)
    }
}

/// The named column, downcast; a missing or mistyped column means the data is not ours.
pub(crate) fn col<'a, T: 'static>(src: &'a dyn Columns, name: &str) -> Result<&'a T> {
    src.named(name)
        .and_then(|a| a.as_any().downcast_ref::<T>())
        .ok_or_else(|| Error::Corrupt(format!("column {name} is missing or has the wrong type")))
}

pub(crate) fn trace_ids<'a>(ids: impl Iterator<Item = Option<&'a TraceId>>) -> ArrayRef {
    fixed(ids.map(|id| id.map(|id| &id.0[..])), 16)
}

pub(crate) fn span_ids<'a>(ids: impl Iterator<Item = Option<&'a SpanId>>) -> ArrayRef {
    fixed(ids.map(|id| id.map(|id| &id.0[..])), 8)
}

/// A column of fixed-width ids, sized exactly (the builder's default holds 1,024 rows).
pub(crate) fn fixed<'a>(values: impl Iterator<Item = Option<&'a [u8]>>, size: i32) -> ArrayRef {
    let values: Vec<_> = values.collect();
    let mut builder = FixedSizeBinaryBuilder::with_capacity(values.len(), size);
    for value in values {
        match value {
            Some(v) => builder
                .append_value(v)
                .expect("ids have the column's fixed width"),
            None => builder.append_null(),
        }
    }
    Arc::new(builder.finish())
}

pub(crate) fn read_trace_id(array: &FixedSizeBinaryArray, row: usize) -> Option<TraceId> {
    (!array.is_null(row)).then(|| {
        TraceId(
            array
                .value(row)
                .try_into()
                .expect("trace id column is 16 bytes wide"),
        )
    })
}

pub(crate) fn read_span_id(array: &FixedSizeBinaryArray, row: usize) -> Option<SpanId> {
    (!array.is_null(row)).then(|| {
        SpanId(
            array
                .value(row)
                .try_into()
                .expect("span id column is 8 bytes wide"),
        )
    })
}

pub(crate) fn list_of(fields: Fields) -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(fields),
        false,
    )))
}

/// Wraps the flattened children of every row into a list column: `lens[i]` items for row `i`.
pub(crate) fn list_array(
    fields: Fields,
    children: Vec<ArrayRef>,
    lens: &[usize],
) -> Result<ArrayRef> {
    let values = StructArray::try_new(fields.clone(), children, None)?;
    let item = Arc::new(Field::new("item", DataType::Struct(fields), false));
    let offsets = OffsetBuffer::from_lengths(lens.iter().copied());
    Ok(Arc::new(ListArray::try_new(
        item,
        offsets,
        Arc::new(values),
        None,
    )?))
}

/// Splits a list column back into rows, converting its struct items with `convert`, which
/// turns the whole (unsliced) child array into items.
pub(crate) fn read_list<T: Clone>(
    src: &dyn Columns,
    name: &str,
    convert: impl Fn(&StructArray) -> Result<Vec<T>>,
) -> Result<Vec<Vec<T>>> {
    let list: &ListArray = col(src, name)?;
    let items = list
        .values()
        .as_any()
        .downcast_ref::<StructArray>()
        .ok_or_else(|| Error::Corrupt(format!("column {name} does not hold structs")))?;
    let all = convert(items)?;
    let offsets = list.value_offsets();
    Ok(offsets
        .windows(2)
        .map(|w| all[w[0] as usize..w[1] as usize].to_vec())
        .collect())
}

pub(crate) fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

pub(crate) fn u32s(values: impl Iterator<Item = u32>) -> ArrayRef {
    Arc::new(UInt32Array::from_iter_values(values))
}

pub(crate) fn u64s(values: impl Iterator<Item = u64>) -> ArrayRef {
    Arc::new(UInt64Array::from_iter_values(values))
}

/// Parses a stored enum name; an unknown name means the data is not ours.
pub(crate) fn parse_enum<T>(parse: fn(&str) -> Option<T>, column: &str, text: &str) -> Result<T> {
    parse(text).ok_or_else(|| Error::Corrupt(format!("unknown {column} {text:?}")))
}
