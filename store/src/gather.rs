//! Gathering rows from many batches into one, in a given order.
//!
//! A flush sorts the memtable's rows and gathers them into parts; a batch built from items of
//! one resource spreads the resource's columns out to its rows. Arrow's `interleave` copies
//! attribute maps one entry at a time, and most rows here carry twenty or more entries. Here a
//! row's entries are copied as one block per child array, columns that are empty in every
//! source (scope attributes, links, most typed maps) are made without reading the sources, and
//! everything else goes to `interleave`. The result is the same as `interleave`'s.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder, FixedSizeBinaryArray, MapArray,
    PrimitiveArray, RecordBatch, StringArray, StructArray, new_empty_array,
};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::compute::interleave;
use arrow::datatypes::{ArrowPrimitiveType, DataType, Float64Type, Int64Type};

use crate::error::Result;

/// Row `indices[i]` = (batch, row) of `batches` becomes row `i` of the result.
pub(crate) fn gather_batch(
    batches: &[&RecordBatch],
    indices: &[(usize, usize)],
) -> Result<RecordBatch> {
    let schema = batches
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| crate::Error::Corrupt("nothing to gather from".into()))?;
    let columns = (0..schema.fields().len())
        .map(|c| {
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
            gather(&arrays, indices)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Row `indices[i]` = (array, row) of `arrays` becomes row `i` of the result.
pub(crate) fn gather(arrays: &[&dyn Array], indices: &[(usize, usize)]) -> Result<ArrayRef> {
    if let Some(out) = empty_nested(arrays, indices.len()) {
        return Ok(out);
    }
    if let Some(maps) = arrays
        .iter()
        .map(|a| a.as_map_opt().filter(|m| plain_map(m)))
        .collect::<Option<Vec<_>>>()
        && let Some(out) = gather_maps(&maps, indices)
    {
        return Ok(out);
    }
    if let Some(ids) = arrays
        .iter()
        .map(|a| a.as_fixed_size_binary_opt().filter(|a| a.nulls().is_none()))
        .collect::<Option<Vec<_>>>()
    {
        return gather_fixed(&ids, indices);
    }
    Ok(interleave(arrays, indices)?)
}

/// A map or list column with no entries and no nulls in any source: rows of empty entries.
fn empty_nested(arrays: &[&dyn Array], rows: usize) -> Option<ArrayRef> {
    let first = arrays.first()?;
    let empty_map = |a: &&dyn Array| {
        a.as_map_opt()
            .is_some_and(|m| m.nulls().is_none() && m.entries().is_empty())
    };
    let empty_list = |a: &&dyn Array| {
        a.as_list_opt::<i32>()
            .is_some_and(|l| l.nulls().is_none() && l.values().is_empty())
    };
    let offsets = || OffsetBuffer::<i32>::new_zeroed(rows);
    if arrays.iter().all(empty_map) {
        let map = first.as_map();
        let DataType::Map(field, ordered) = map.data_type() else {
            return None;
        };
        let entries = new_empty_array(field.data_type());
        Some(Arc::new(MapArray::new(
            field.clone(),
            offsets(),
            entries.as_struct().clone(),
            None,
            *ordered,
        )))
    } else if arrays.iter().all(empty_list) {
        let list = first.as_list::<i32>();
        let DataType::List(field) = list.data_type() else {
            return None;
        };
        Some(Arc::new(arrow::array::ListArray::new(
            field.clone(),
            offsets(),
            new_empty_array(field.data_type()),
            None,
        )))
    } else {
        None
    }
}

/// A map without nulls at any level: the shape attribute maps have.
fn plain_map(map: &MapArray) -> bool {
    map.nulls().is_none()
        && map.entries().nulls().is_none()
        && map.keys().nulls().is_none()
        && map.values().nulls().is_none()
}

/// Maps of string keys and string, integer, float or boolean values, copied a row at a time.
fn gather_maps(maps: &[&MapArray], indices: &[(usize, usize)]) -> Option<ArrayRef> {
    let first = maps.first()?;
    let DataType::Map(field, ordered) = first.data_type() else {
        return None;
    };
    let DataType::Struct(fields) = field.data_type() else {
        return None;
    };
    // The entry range of each output row in its source.
    let ranges: Vec<(usize, usize, usize)> = indices
        .iter()
        .map(|&(a, row)| {
            let offsets = maps[a].value_offsets();
            (a, offsets[row] as usize, offsets[row + 1] as usize)
        })
        .collect();
    let keys = maps
        .iter()
        .map(|m| m.keys().as_string_opt::<i32>())
        .collect::<Option<Vec<_>>>()?;
    let values = maps.iter().map(|m| m.values().as_ref()).collect::<Vec<_>>();
    let values: ArrayRef = match first.values().data_type() {
        DataType::Utf8 => Arc::new(gather_strings(
            &values
                .iter()
                .map(|v| v.as_string_opt::<i32>())
                .collect::<Option<Vec<_>>>()?,
            &ranges,
        )?),
        DataType::Int64 => Arc::new(gather_primitives::<Int64Type>(&values, &ranges)?),
        DataType::Float64 => Arc::new(gather_primitives::<Float64Type>(&values, &ranges)?),
        DataType::Boolean => {
            let bools = values
                .iter()
                .map(|v| v.as_boolean_opt())
                .collect::<Option<Vec<_>>>()?;
            let mut out = BooleanBufferBuilder::new(ranges.iter().map(|r| r.2 - r.1).sum());
            for &(a, start, end) in &ranges {
                out.append_buffer(&bools[a].values().slice(start, end - start));
            }
            Arc::new(BooleanArray::new(out.finish(), None))
        }
        _ => return None,
    };
    let keys: ArrayRef = Arc::new(gather_strings(&keys, &ranges)?);
    let entries = StructArray::try_new(fields.clone(), vec![keys, values], None).ok()?;
    let offsets = OffsetBuffer::from_lengths(ranges.iter().map(|r| r.2 - r.1));
    MapArray::try_new(field.clone(), offsets, entries, None, *ordered)
        .ok()
        .map(|m| Arc::new(m) as ArrayRef)
}

/// The values `start..end` of source `a`, for each `(a, start, end)`, one after another.
fn gather_strings(
    sources: &[&StringArray],
    ranges: &[(usize, usize, usize)],
) -> Option<StringArray> {
    let span = |&(a, start, end): &(usize, usize, usize)| {
        let offsets = sources[a].value_offsets();
        (offsets[start], offsets[end])
    };
    let bytes: usize = ranges
        .iter()
        .map(|r| {
            let (from, to) = span(r);
            (to - from) as usize
        })
        .sum();
    i32::try_from(bytes).ok()?;
    let mut data = Vec::with_capacity(bytes);
    let mut offsets = Vec::with_capacity(ranges.iter().map(|r| r.2 - r.1).sum::<usize>() + 1);
    offsets.push(0i32);
    for range in ranges {
        let &(a, start, end) = range;
        let (from, to) = span(range);
        // Each source offset moved to where its values land (within i32: checked above).
        let shift = data.len() as i32 - from;
        data.extend_from_slice(&sources[a].value_data()[from as usize..to as usize]);
        offsets.extend(
            sources[a].value_offsets()[start + 1..=end]
                .iter()
                .map(|o| o + shift),
        );
    }
    debug_assert!(std::str::from_utf8(&data).is_ok());
    // SAFETY: `data` is made of whole values of valid string arrays, one after another, and
    // `offsets` start at 0, grow, end at `data.len()` and fall on those values' boundaries: so
    // the bytes are UTF-8 and every value starts and ends on a character boundary.
    Some(unsafe {
        StringArray::new_unchecked(
            OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)),
            Buffer::from_vec(data),
            None,
        )
    })
}

fn gather_primitives<T: ArrowPrimitiveType>(
    sources: &[&dyn Array],
    ranges: &[(usize, usize, usize)],
) -> Option<PrimitiveArray<T>> {
    let sources = sources
        .iter()
        .map(|s| s.as_primitive_opt::<T>())
        .collect::<Option<Vec<_>>>()?;
    let mut out = Vec::with_capacity(ranges.iter().map(|r| r.2 - r.1).sum());
    for &(a, start, end) in ranges {
        out.extend_from_slice(&sources[a].values()[start..end]);
    }
    Some(PrimitiveArray::new(ScalarBuffer::from(out), None))
}

/// Fixed-width binary values (trace and span ids) without nulls.
fn gather_fixed(sources: &[&FixedSizeBinaryArray], indices: &[(usize, usize)]) -> Result<ArrayRef> {
    let width = sources.first().map_or(0, |s| s.value_length()) as usize;
    if sources.iter().any(|s| s.value_length() as usize != width) {
        let arrays: Vec<&dyn Array> = sources.iter().map(|s| *s as &dyn Array).collect();
        return Ok(interleave(&arrays, indices)?);
    }
    let mut data = Vec::with_capacity(indices.len() * width);
    for &(a, row) in indices {
        data.extend_from_slice(sources[a].value(row));
    }
    Ok(Arc::new(FixedSizeBinaryArray::try_new(
        width as i32,
        Buffer::from_vec(data),
        None,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Records;
    use crate::synth::SpanGenerator;
    use arrow::compute::interleave_record_batch;
    use rand::{Rng, SeedableRng};

    /// Whatever takes the fast paths must equal what `interleave` gives.
    fn check(batches: &[RecordBatch], seed: u64) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        let indices: Vec<(usize, usize)> = (0..500)
            .map(|_| {
                let b = rng.random_range(0..batches.len());
                (b, rng.random_range(0..batches[b].num_rows()))
            })
            .collect();
        let expected = interleave_record_batch(&refs, &indices).unwrap();
        let got = gather_batch(&refs, &indices).unwrap();
        assert_eq!(got, expected);
        for (g, e) in got.columns().iter().zip(expected.columns()) {
            assert_eq!(g.to_data(), e.to_data());
        }
    }

    #[test]
    fn gathered_spans_equal_interleaved_ones() {
        let mut generator = SpanGenerator::new(5, 1_700_000_000_000_000_000);
        let batches: Vec<RecordBatch> = (0..4)
            .map(|_| Records::Spans(generator.spans(200)).to_batch().unwrap())
            .collect();
        check(&batches, 1);
        check(&batches[..1], 2);
    }

    #[test]
    fn typed_maps_nulls_and_empty_columns_gather_like_interleave() {
        use crate::model::{AttrValue, Attributes, KeyValue, LogRecord};
        let log = |i: i64| LogRecord {
            time_unix_nano: i as u64,
            // Bodies are nullable: the fallback path.
            body: (i % 3 != 0).then(|| AttrValue::Str(format!("body {i}"))),
            attributes: Attributes::new(
                (0..(i % 4))
                    .map(|k| KeyValue {
                        key: format!("k{k}"),
                        value: match k {
                            0 => AttrValue::Int(i * k),
                            1 => AttrValue::Double(i as f64 / 3.0),
                            2 => AttrValue::Bool(i % 2 == 0),
                            _ => AttrValue::Array(vec![AttrValue::Int(i)]),
                        },
                    })
                    .collect(),
            ),
            ..LogRecord::default()
        };
        let batches: Vec<RecordBatch> = (0..3)
            .map(|b| {
                Records::Logs((0..50).map(|i| log(b * 50 + i)).collect())
                    .to_batch()
                    .unwrap()
            })
            .collect();
        check(&batches, 3);
    }
}
