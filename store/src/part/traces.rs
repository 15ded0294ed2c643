//! Reading some traces' rows from a part: row groups and pages picked by trace-id statistics,
//! then the exact rows found from the `trace_id` column before the other columns are read.

use arrow::array::{Array, FixedSizeBinaryArray, RecordBatch};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::statistics::Statistics;

use super::{from_stored, open_part, parquet_err};
use crate::error::{Error, Result};
use crate::manifest::Part;
use crate::model::TraceId;

/// Reads the rows of some traces from a part: row groups whose trace-id statistics rule them
/// all out are skipped, and inside the others only the pages whose trace-id bounds (page
/// index) can hold one of them are looked at (parts are sorted by trace id, so a trace is
/// usually one page run): their `trace_id` column gives the traces' exact rows, and only those
/// rows are read of the other columns. `trace_ids` must be sorted. With `columns`, only those columns are read (the
/// batches hold them in table order, `trace_id` always among them); without, every column.
pub(crate) fn read_traces(
    part: &Part,
    trace_ids: &[TraceId],
    columns: Option<&[&str]>,
    max_rows: usize,
) -> Result<Vec<RecordBatch>> {
    debug_assert!(trace_ids.is_sorted());
    if trace_ids.is_empty() || max_rows == 0 {
        return Ok(Vec::new());
    }
    let path = &part.path();
    let metadata = part.reader_metadata()?.metadata().clone();
    let column = metadata
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == "trace_id")
        .ok_or_else(|| Error::Corrupt(format!("part {} has no trace_id column", path.display())))?;
    let row_groups: Vec<usize> = metadata
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, rg)| match rg.column(column).statistics() {
            Some(Statistics::FixedLenByteArray(s)) => match (s.min_opt(), s.max_opt()) {
                (Some(min), Some(max)) => any_within(trace_ids, min.data(), max.data()),
                _ => true,
            },
            _ => true,
        })
        .map(|(i, _)| i)
        .collect();
    if row_groups.is_empty() {
        return Ok(Vec::new());
    }
    let pages = page_selection(&metadata, &row_groups, column, trace_ids);
    let total: usize = row_groups
        .iter()
        .map(|&rg| metadata.row_group(rg).num_rows() as usize)
        .sum();
    let Some(selection) = trace_rows_selection(part, &row_groups, pages, total, trace_ids)? else {
        return Ok(Vec::new());
    };
    let builder = open_part(part)?;
    let builder = match columns {
        Some(names) => {
            let roots: Vec<usize> = builder
                .schema()
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| f.name() == "trace_id" || names.contains(&f.name().as_str()))
                .map(|(i, _)| i)
                .collect();
            let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
            builder.with_projection(mask)
        }
        None => builder,
    };
    let reader = builder
        .with_row_groups(row_groups)
        .with_row_selection(selection)
        .with_limit(max_rows)
        .build()
        .map_err(parquet_err(path, "read"))?;
    // The selection holds the traces' rows exactly: every row read is one of theirs.
    reader
        .map(|batch| match columns {
            Some(_) => Ok(batch?),
            None => from_stored(batch?),
        })
        .collect()
}

/// The exact rows of `trace_ids` among the rows `pages` selects (pages whose trace-id bounds
/// can hold one of them), found by reading the `trace_id` column alone there: the other columns
/// then decode a trace's few rows instead of whole pages of 4,096. `None` when no row matches.
fn trace_rows_selection(
    part: &Part,
    row_groups: &[usize],
    pages: RowSelection,
    total: usize,
    trace_ids: &[TraceId],
) -> Result<Option<RowSelection>> {
    let path = &part.path();
    let builder = open_part(part)?;
    let root = builder
        .schema()
        .index_of("trace_id")
        .map_err(|_| Error::Corrupt(format!("part {} has no trace_id column", path.display())))?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [root]);
    // Positions (among the row groups' rows) of the rows the selection reads, in order.
    let mut positions = pages.iter().scan(0usize, |at, selector| {
        let from = *at;
        *at += selector.row_count;
        Some((!selector.skip).then_some(from..*at))
    });
    let mut run = positions.by_ref().flatten().next();
    let reader = builder
        .with_projection(mask)
        .with_row_groups(row_groups.to_vec())
        .with_row_selection(pages.clone())
        .build()
        .map_err(parquet_err(path, "read"))?;
    let mut matching: Vec<std::ops::Range<usize>> = Vec::new();
    for batch in reader {
        let batch = batch?;
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<FixedSizeBinaryArray>()
            .ok_or_else(|| Error::Corrupt("trace_id column has the wrong type".into()))?;
        for i in 0..ids.len() {
            let Some(range) = run.as_mut() else {
                return Err(Error::Corrupt("more trace ids than rows selected".into()));
            };
            let at = range.start;
            range.start += 1;
            if range.start == range.end {
                run = positions.by_ref().flatten().next();
            }
            let id = ids.value(i);
            if trace_ids.binary_search_by(|t| t.0[..].cmp(id)).is_ok() {
                match matching.last_mut() {
                    Some(last) if last.end == at => last.end += 1,
                    _ => matching.push(at..at + 1),
                }
            }
        }
    }
    if matching.is_empty() {
        return Ok(None);
    }
    Ok(Some(RowSelection::from_consecutive_ranges(
        matching.into_iter(),
        total,
    )))
}

/// Whether a sorted id list has an id in `[min, max]`.
fn any_within(trace_ids: &[TraceId], min: &[u8], max: &[u8]) -> bool {
    let first = trace_ids.partition_point(|t| &t.0[..] < min);
    trace_ids.get(first).is_some_and(|t| &t.0[..] <= max)
}

/// Rows of `row_groups` (in order) on pages whose trace-id bounds can hold one of `trace_ids`
/// (sorted); whole row groups where the page index is missing.
fn page_selection(
    metadata: &ParquetMetaData,
    row_groups: &[usize],
    column: usize,
    trace_ids: &[TraceId],
) -> RowSelection {
    let mut selectors = Vec::new();
    for &rg in row_groups {
        let rows = metadata.row_group(rg).num_rows() as usize;
        let index = metadata
            .column_index()
            .and_then(|ci| ci.get(rg))
            .and_then(|c| c.get(column));
        let offsets = metadata
            .offset_index()
            .and_then(|oi| oi.get(rg))
            .and_then(|c| c.get(column));
        let (Some(ColumnIndexMetaData::FIXED_LEN_BYTE_ARRAY(index)), Some(offsets)) =
            (index, offsets)
        else {
            selectors.push(RowSelector::select(rows));
            continue;
        };
        let pages = offsets.page_locations();
        for (p, page) in pages.iter().enumerate() {
            let first = page.first_row_index as usize;
            let end = pages
                .get(p + 1)
                .map_or(rows, |n| n.first_row_index as usize);
            let may_hold = match (index.min_value(p), index.max_value(p)) {
                (Some(min), Some(max)) => any_within(trace_ids, min, max),
                _ => false, // an all-null page holds no trace id
            };
            selectors.push(if may_hold {
                RowSelector::select(end - first)
            } else {
                RowSelector::skip(end - first)
            });
        }
    }
    RowSelection::from(selectors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Signal;
    use crate::part::{partition_and_sort, time_range, write_part};
    use crate::rollup::Rollup;

    #[test]
    fn reading_traces_returns_exactly_their_rows_across_row_groups_and_pages() {
        let dir = tempfile::tempdir().unwrap();
        let spans = crate::synth::SpanGenerator::new(5, 1_795_000_000_000_000_000).spans(20_000);
        let batch = crate::schema::spans_to_batch(&spans).unwrap();
        let mut hours = partition_and_sort(Signal::Spans, &[batch]).unwrap();
        assert_eq!(hours.len(), 1, "the spans lie in one hour");
        let (hour, batches) = hours.remove(0);
        // Row groups of 5,000 rows: traces straddle row groups and pages.
        let path = dir.path().join("p.parquet");
        let count = || Rollup::count(Signal::Spans, &batches);
        let bytes = write_part(&path, Signal::Spans, &batches, 3, 5000, count).unwrap();
        let (min, max) = time_range(Signal::Spans, &batches);
        let meta = crate::manifest::PartMeta {
            id: 1,
            signal: Signal::Spans,
            hour,
            file: "p.parquet".into(),
            index: None,
            rows: spans.len() as u64,
            bytes,
            index_bytes: 0,
            min_time_unix_nano: min,
            max_time_unix_nano: max,
            level: 0,
        };
        let part = Part::new(meta, dir.path());

        let mut ids: Vec<TraceId> = spans.iter().map(|s| s.trace_id).collect();
        ids.sort();
        ids.dedup();
        let mut wanted: Vec<TraceId> = ids.iter().step_by(7).copied().collect();
        wanted.push(TraceId([0xff; 16])); // not in the part
        wanted.sort();
        let key = |s: &crate::model::Span| (s.trace_id, s.span_id);
        let mut expected: Vec<_> = spans
            .iter()
            .filter(|s| wanted.contains(&s.trace_id))
            .cloned()
            .collect();
        expected.sort_by_key(key);

        let mut got: Vec<_> = read_traces(&part, &wanted, None, usize::MAX)
            .unwrap()
            .iter()
            .flat_map(|b| crate::schema::spans_from_batch(b).unwrap())
            .collect();
        got.sort_by_key(key);
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "the traces' spans, whole");

        let columns = ["span_id", "name"];
        let rows: usize = read_traces(&part, &wanted, Some(&columns), usize::MAX)
            .unwrap()
            .iter()
            .map(|b| {
                assert_eq!(b.num_columns(), 3, "trace_id, span_id and name");
                b.num_rows()
            })
            .sum();
        assert_eq!(rows, expected.len());
        let none = read_traces(&part, &[TraceId([0xff; 16])], None, usize::MAX).unwrap();
        assert!(none.is_empty());
    }
}
