//! Parquet parts: how rows are partitioned by hour, sorted, written and read back.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, FixedSizeBinaryArray, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::DataType;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, PageIndexPolicy};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
#[cfg(test)]
use crate::gather::gather_batch;
use crate::manifest::Part;
use crate::model::Signal;
use crate::rollup::{ROLLUP_KEY, Rollup};
use crate::schema::{SCHEMA_VERSION, schema_for, time_column};

mod footers;

pub(crate) use footers::Footers;
mod merge;
mod traces;

pub(crate) use merge::{MERGE_BATCH_ROWS, Merge};

pub(crate) use traces::read_traces;

pub(crate) const NANOS_PER_HOUR: u64 = 3_600_000_000_000;
/// Rows per data page (at most; pages also end at the writer's byte limit). Small pages let a
/// trace lookup decode a few thousand rows per column instead of a whole row group.
const DATA_PAGE_ROWS: usize = 4096;
/// Rows per sorted chunk of a part (a chunk ends at a trace boundary, so may be longer). A
/// flush holds a few chunks at a time; smaller chunks cost more, since each chunk's gather
/// looks at every source batch once per column.
const CHUNK_ROWS: usize = 32 * 1024;

fn u64_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a [u64]> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
        .map(|a| a.values().as_ref())
        .ok_or_else(|| Error::Corrupt(format!("batch lacks {name}")))
}

/// Sort key of one row: hour first, then the signal's order, then where the row is.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct RowKey {
    hour: u64,
    /// Trace id (spans), big endian so that it orders like the bytes; 0 otherwise.
    trace: u128,
    /// Place of the metric name in byte order among the flush's names (metrics); 0 otherwise.
    group: u32,
    /// Series id (metrics); 0 otherwise.
    series: u64,
    time: u64,
    at: (usize, usize),
}

enum Groups<'a> {
    TraceIds(&'a FixedSizeBinaryArray),
    Names(&'a StringArray),
    None,
}

impl<'a> Groups<'a> {
    fn trace(&self, row: usize) -> u128 {
        match self {
            Groups::TraceIds(ids) => {
                u128::from_be_bytes(ids.value(row).try_into().expect("trace ids are 16 bytes"))
            }
            _ => 0,
        }
    }

    fn name(&self, row: usize) -> &'a str {
        match self {
            Groups::Names(names) => names.value(row),
            _ => "",
        }
    }
}

/// Each distinct metric name's place in byte order, so that rows sort by a number instead of
/// comparing names. Points of one metric come in runs, so most rows skip the lookup.
fn name_ranks<'a>(groups: &[Groups<'a>]) -> HashMap<&'a str, u32> {
    let mut names: Vec<&'a str> = Vec::new();
    for g in groups {
        if let Groups::Names(column) = g {
            let mut last = None;
            for name in column.iter().flatten() {
                if last != Some(name) {
                    names.push(name);
                    last = Some(name);
                }
            }
        }
    }
    names.sort_unstable();
    names.dedup();
    names.into_iter().zip(0..).collect()
}

/// The column that groups a batch's rows in a part: trace ids, metric names, or none.
fn batch_groups(signal: Signal, batch: &RecordBatch) -> Result<Groups<'_>> {
    Ok(match signal {
        Signal::Spans => Groups::TraceIds(
            batch
                .column_by_name("trace_id")
                .and_then(|c| c.as_any().downcast_ref::<FixedSizeBinaryArray>())
                .ok_or_else(|| Error::Corrupt("spans batch lacks trace_id".into()))?,
        ),
        Signal::Metrics => Groups::Names(
            batch
                .column_by_name("metric_name")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| Error::Corrupt("metrics batch lacks metric_name".into()))?,
        ),
        Signal::Logs => Groups::None,
    })
}

/// Splits rows by hour and sorts each hour's rows for its part: spans by trace id then start
/// time (a trace's spans sit together, and trace-id statistics prune row groups), metric points
/// by name, series and time, log records by time. Rows are gathered straight from the input
/// batches into one batch per hour (no intermediate copy).
pub(crate) fn sort_plan(signal: Signal, batches: &[RecordBatch]) -> Result<Vec<HourPlan>> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut keys: Vec<RowKey> = Vec::with_capacity(rows);
    let groups = batches
        .iter()
        .map(|batch| batch_groups(signal, batch))
        .collect::<Result<Vec<_>>>()?;
    let ranks = name_ranks(&groups);
    for (b, (batch, groups)) in batches.iter().zip(&groups).enumerate() {
        let times = u64_column(batch, time_column(signal))?;
        let series = match signal {
            Signal::Metrics => Some(u64_column(batch, "series_id")?),
            _ => None,
        };
        // Spans and logs have no names: every row is "", rank 0, found once.
        let mut last: Option<(&str, u32)> = None;
        for (r, &time) in times.iter().enumerate() {
            let name = groups.name(r);
            let group = match last {
                Some((previous, rank)) if previous == name => rank,
                _ => {
                    let rank = ranks.get(name).copied().unwrap_or_default();
                    last = Some((name, rank));
                    rank
                }
            };
            keys.push(RowKey {
                hour: time / NANOS_PER_HOUR,
                trace: groups.trace(r),
                group,
                series: series.map_or(0, |s| s[r]),
                time,
                at: (b, r),
            });
        }
    }
    keys.sort_unstable();
    // Cut each hour into chunks of about `CHUNK_ROWS` rows, never inside a trace.
    let mut hours: Vec<HourPlan> = Vec::new();
    for hour in keys.chunk_by(|a, b| a.hour == b.hour) {
        let mut chunks = Vec::new();
        let mut rest = hour;
        while !rest.is_empty() {
            let mut end = rest.len().min(CHUNK_ROWS);
            while end < rest.len() && rest[end].trace == rest[end - 1].trace && rest[end].trace != 0
            {
                end += 1;
            }
            chunks.push(rest[..end].iter().map(|k| k.at).collect());
            rest = &rest[end..];
        }
        hours.push(HourPlan {
            hour: hour[0].hour,
            rows: hour.len(),
            chunks,
        });
    }
    Ok(hours)
}

/// One hour's rows of a flush, sorted, as chunks of `(batch, row)` positions to gather.
pub(crate) struct HourPlan {
    pub(crate) hour: u64,
    pub(crate) rows: usize,
    pub(crate) chunks: Vec<Vec<(usize, usize)>>,
}

/// [`sort_plan`], every chunk gathered (on two threads): one list of sorted batches per hour.
#[cfg(test)]
pub(crate) fn partition_and_sort(
    signal: Signal,
    batches: &[RecordBatch],
) -> Result<Vec<(u64, Vec<RecordBatch>)>> {
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    sort_plan(signal, batches)?
        .into_iter()
        .map(|plan| {
            let gather = |chunk: &Vec<(usize, usize)>| gather_batch(&refs, chunk);
            let (odd, even): (Vec<_>, Vec<_>) = std::thread::scope(|scope| {
                let helper =
                    scope.spawn(|| plan.chunks.iter().skip(1).step_by(2).map(gather).collect());
                let mine = plan.chunks.iter().step_by(2).map(gather).collect();
                (helper.join().expect("gather thread does not panic"), mine)
            });
            let (mut odd, mut even) = (odd.into_iter(), even.into_iter());
            let chunks = (0..plan.chunks.len())
                .map(|i| if i % 2 == 0 { even.next() } else { odd.next() })
                .map(|next| next.expect("one result per chunk"))
                .collect::<Result<Vec<_>>>()?;
            Ok((plan.hour, chunks))
        })
        .collect()
}

/// Columns derived from others are not written: `duration_nano` of spans is always
/// `end_time_unix_nano - start_time_unix_nano` (saturating), and storing it costs ~3.7 bytes per
/// span. Readers get it back through [`from_stored`].
const DERIVED_SPAN_COLUMN: &str = "duration_nano";

pub(crate) fn to_stored(signal: Signal, batch: &RecordBatch) -> Result<RecordBatch> {
    if signal != Signal::Spans {
        return Ok(batch.clone());
    }
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| batch.schema().field(i).name() != DERIVED_SPAN_COLUMN)
        .collect();
    Ok(batch.project(&keep)?)
}

/// Restores derived columns to a batch read from a part, in the table's schema.
fn from_stored(batch: RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    let is_stored_spans = schema.column_with_name(DERIVED_SPAN_COLUMN).is_none()
        && schema.column_with_name("end_time_unix_nano").is_some();
    if !is_stored_spans {
        return Ok(batch);
    }
    let start = u64_column(&batch, "start_time_unix_nano")?;
    let end = u64_column(&batch, "end_time_unix_nano")?;
    let duration: ArrayRef = Arc::new(UInt64Array::from_iter_values(
        start.iter().zip(end).map(|(s, e)| e.saturating_sub(*s)),
    ));
    let table = schema_for(Signal::Spans);
    let columns = table
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            DERIVED_SPAN_COLUMN => Ok(duration.clone()),
            name => batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| Error::Corrupt(format!("spans part lacks {name}"))),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(table, columns)?)
}

/// Writer settings of every part: zstd, dictionaries, page-level statistics and the page
/// index, delta encoding for times, a bloom filter on `trace_id`.
fn writer_properties(
    signal: Signal,
    rows: usize,
    zstd_level: i32,
    row_group_rows: usize,
) -> Result<WriterProperties> {
    let level = ZstdLevel::try_new(zstd_level)
        .map_err(|e| Error::Config(format!("parquet_zstd_level: {e}")))?;
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_dictionary_enabled(true)
        // Statistics (and so the page index) where pruning uses them: top-level columns. The
        // leaves of attribute maps, events and links would cost encoding time for nothing.
        .set_statistics_enabled(EnabledStatistics::None)
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_data_page_row_count_limit(DATA_PAGE_ROWS)
        .set_key_value_metadata(Some(vec![
            KeyValue::new("spyglass.signal".into(), signal.as_str().to_owned()),
            KeyValue::new("spyglass.schema_version".into(), SCHEMA_VERSION.to_string()),
        ]));
    for field in schema_for(signal).fields() {
        // Spans are sorted by trace: a page of them holds every service, name and status, so
        // only `trace_id` among their strings prunes; the others' bounds cost a comparison of
        // every value (measured ~9% of a merge's CPU) for nothing.
        let unordered_text = signal == Signal::Spans
            && field.name() != "trace_id"
            && matches!(
                field.data_type(),
                DataType::Utf8 | DataType::FixedSizeBinary(_)
            );
        if !field.data_type().is_nested() && !unordered_text {
            builder = builder.set_column_statistics_enabled(
                ColumnPath::from(field.name().as_str()),
                EnabledStatistics::Page,
            );
        }
    }
    // Random ids: a dictionary would be tried and thrown away for every page.
    for column in ["span_id", "parent_span_id"] {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    for column in [
        "start_time_unix_nano",
        "end_time_unix_nano",
        "time_unix_nano",
        "observed_time_unix_nano",
    ] {
        let path = ColumnPath::from(column);
        builder = builder
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
    }
    if signal == Signal::Spans {
        let path = ColumnPath::from("trace_id");
        // A trace has several spans; sizing the filter by rows over-provisions it a little.
        builder = builder
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), 0.01)
            .set_column_bloom_filter_max_ndv(path, rows.max(1) as u64);
    }
    Ok(builder.build())
}

/// Writes one part file and makes it durable. Returns its size in bytes. `rollup` gives the
/// part's rollup for the footer once the rows are written (so it can be counted meanwhile on
/// another thread).
#[cfg(test)]
pub(crate) fn write_part(
    path: &Path,
    signal: Signal,
    batches: &[RecordBatch],
    zstd_level: i32,
    row_group_rows: usize,
    rollup: impl FnOnce() -> Result<Option<Rollup>>,
) -> Result<u64> {
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    let batches = batches.iter().cloned().map(Ok);
    write_part_stream(
        path,
        signal,
        rows,
        batches,
        zstd_level,
        row_group_rows,
        rollup,
    )
}

/// [`write_part`] from `rows` rows in batches as they come (a flush gathers them chunk by
/// chunk); an `Err` batch stops the write with that error.
pub(crate) fn write_part_stream(
    path: &Path,
    signal: Signal,
    rows: usize,
    batches: impl IntoIterator<Item = Result<RecordBatch>>,
    zstd_level: i32,
    row_group_rows: usize,
    rollup: impl FnOnce() -> Result<Option<Rollup>>,
) -> Result<u64> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io("create part directory", dir))?;
    }
    let file = File::create(path).map_err(Error::io("create part", path))?;
    let props = writer_properties(signal, rows, zstd_level, row_group_rows)?;
    let mut writer: Option<ArrowWriter<File>> = None;
    let mut file = Some(file);
    for batch in batches {
        let stored = to_stored(signal, &batch?)?;
        if writer.is_none() {
            let file = file.take().expect("the file is taken once");
            writer = Some(
                ArrowWriter::try_new(file, stored.schema(), Some(props.clone()))
                    .map_err(parquet_err(path, "open"))?,
            );
        }
        let w = writer.as_mut().expect("opened above");
        w.write(&stored).map_err(parquet_err(path, "write"))?;
    }
    let Some(mut writer) = writer else {
        return Err(Error::Corrupt(format!(
            "no rows to write to {}",
            path.display()
        )));
    };
    if let Some(rollup) = rollup()? {
        writer.append_key_value_metadata(KeyValue::new(ROLLUP_KEY.into(), rollup.to_json()));
    }
    let file = writer.into_inner().map_err(parquet_err(path, "finish"))?;
    file.sync_all().map_err(Error::io("sync part", path))?;
    Ok(file.metadata().map_err(Error::io("stat part", path))?.len())
}

pub(crate) fn parquet_err(
    path: &Path,
    action: &'static str,
) -> impl FnOnce(parquet::errors::ParquetError) -> Error + use<> {
    let path = path.to_owned();
    move |source| Error::Parquet {
        action,
        path,
        source,
    }
}

/// A reader of a part that uses its footer as already parsed and kept with it.
pub(crate) fn open_part(part: &Part) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let path = &part.path();
    let file = File::open(path).map_err(Error::io("open part", path))?;
    Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(
        file,
        part.reader_metadata()?,
    ))
}

fn open_reader(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).map_err(Error::io("open part", path))?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_err(path, "open"))
}

/// A part's footer with its page index, read once per part and kept with it.
pub(crate) fn load_reader_metadata(path: &Path) -> Result<ArrowReaderMetadata> {
    let file = File::open(path).map_err(Error::io("open part", path))?;
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    ArrowReaderMetadata::load(&file, options).map_err(parquet_err(path, "read the footer of"))
}

/// Reads a whole part.
pub(crate) fn read_part(path: &Path) -> Result<Vec<RecordBatch>> {
    part_batches(path)?.collect()
}

/// The batches of a part, read as they are asked for.
pub(crate) fn part_batches(
    path: &Path,
) -> Result<impl Iterator<Item = Result<RecordBatch>> + use<>> {
    part_batches_of(path, 1024)
}

/// [`part_batches`] in batches of `rows` rows.
pub(crate) fn part_batches_of(
    path: &Path,
    rows: usize,
) -> Result<impl Iterator<Item = Result<RecordBatch>> + use<>> {
    let reader = open_reader(path)?
        .with_batch_size(rows)
        .build()
        .map_err(parquet_err(path, "read"))?;
    Ok(reader.map(|b| from_stored(b?)))
}

/// `YYYY-MM-DDTHH` of an hour since the epoch, the folder name of a partition.
pub(crate) fn hour_folder(hour: u64) -> String {
    let (year, month, day) = crate::model::civil_from_days((hour / 24) as i64);
    format!("{year:04}-{month:02}-{day:02}T{:02}", hour % 24)
}

/// The smallest and largest event time in a sorted-or-not batch.
#[cfg(test)]
pub(crate) fn time_range(signal: Signal, batches: &[RecordBatch]) -> (u64, u64) {
    batches
        .iter()
        .map(|b| batch_time_range(signal, b))
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
        .unwrap_or((0, 0))
}

pub(crate) fn batch_time_range(signal: Signal, batch: &RecordBatch) -> (u64, u64) {
    let times = batch
        .column_by_name(time_column(signal))
        .and_then(|c| c.as_any().downcast_ref::<UInt64Array>());
    let Some(times) = times else { return (0, 0) };
    let min = times.values().iter().copied().min().unwrap_or(0);
    let max = match signal {
        Signal::Spans => batch
            .column_by_name("end_time_unix_nano")
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            .and_then(|e| e.values().iter().copied().max()),
        _ => times.values().iter().copied().max(),
    }
    .unwrap_or(0);
    (min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_folders_are_utc_calendar_hours() {
        assert_eq!(hour_folder(0), "1970-01-01T00");
        // 2026-11-27T01:00:00Z is 1795741200 s after the epoch.
        assert_eq!(hour_folder(1_795_741_200 / 3600), "2026-11-27T01");
        assert_eq!(hour_folder(951_782_400 / 3600 + 23), "2000-02-29T23");
    }

    #[test]
    fn metric_points_sort_by_name_then_series_then_time() {
        use crate::Records;
        use crate::model::{
            AttrValue, Attributes, MetricPoint, MetricType, NumberValue, PointValue, Temporality,
        };
        use arrow::array::AsArray;
        use arrow::datatypes::UInt64Type;
        let point = |name: &str, route: &str, time: u64| MetricPoint {
            metric_name: name.into(),
            description: String::new(),
            unit: String::new(),
            metric_type: MetricType::Gauge,
            temporality: Temporality::Unspecified,
            is_monotonic: false,
            attributes: Attributes::new(vec![crate::model::KeyValue {
                key: "route".into(),
                value: AttrValue::Str(route.into()),
            }]),
            time_unix_nano: time,
            start_time_unix_nano: 0,
            flags: 0,
            value: PointValue::Number(NumberValue::Int(1)),
            exemplars: Vec::new(),
            resource: Arc::default(),
            scope: Arc::default(),
        };
        // Names out of order within and across batches, and runs of one name.
        let first = [
            ("b", "/x", 3),
            ("b", "/y", 1),
            ("a", "/x", 2),
            ("c", "/x", 9),
        ];
        let second = [
            ("a", "/x", 1),
            ("b", "/x", 2),
            ("aa", "/z", 5),
            ("a", "/y", 7),
        ];
        let batch = |rows: &[(&str, &str, u64)]| {
            Records::Metrics(rows.iter().map(|&(n, r, t)| point(n, r, t)).collect())
                .to_batch()
                .unwrap()
        };
        let hours = partition_and_sort(Signal::Metrics, &[batch(&first), batch(&second)]).unwrap();
        assert_eq!(hours.len(), 1);
        let rows: Vec<(String, u64, u64)> = hours[0]
            .1
            .iter()
            .flat_map(|b| {
                let names = b.column_by_name("metric_name").unwrap().as_string::<i32>();
                let series = b
                    .column_by_name("series_id")
                    .unwrap()
                    .as_primitive::<UInt64Type>();
                let times = b
                    .column_by_name("time_unix_nano")
                    .unwrap()
                    .as_primitive::<UInt64Type>();
                (0..b.num_rows())
                    .map(|i| (names.value(i).to_owned(), series.value(i), times.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut expected = rows.clone();
        expected.sort();
        assert_eq!(rows, expected);
        let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(names, ["a", "a", "a", "aa", "b", "b", "b", "c"]);
    }
}
