//! Parquet parts: how rows are partitioned by hour, sorted, written and read back.

use std::fs::File;
use std::path::Path;

use arrow::array::{
    Array, FixedSizeBinaryArray, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow::compute::{interleave_record_batch, take_record_batch};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::statistics::Statistics;
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
use crate::model::{Signal, TraceId};
use crate::schema::{SCHEMA_VERSION, schema_for, time_column};

pub(crate) const NANOS_PER_HOUR: u64 = 3_600_000_000_000;

fn u64_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a [u64]> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
        .map(|a| a.values().as_ref())
        .ok_or_else(|| Error::Corrupt(format!("batch lacks {name}")))
}

/// Sort key of one row: hour first, then the signal's order, then where the row is.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct RowKey<'a> {
    hour: u64,
    /// Trace id (spans) or metric name (metrics); empty for logs.
    group: &'a [u8],
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
    fn get(&self, row: usize) -> &'a [u8] {
        match self {
            Groups::TraceIds(ids) => ids.value(row),
            Groups::Names(names) => names.value(row).as_bytes(),
            Groups::None => &[],
        }
    }
}

/// Splits rows by hour and sorts each hour's rows for its part: spans by trace id then start
/// time (a trace's spans sit together, and trace-id statistics prune row groups), metric points
/// by name, series and time, log records by time. Rows are gathered straight from the input
/// batches into one batch per hour (no intermediate copy).
pub(crate) fn partition_and_sort(
    signal: Signal,
    batches: &[RecordBatch],
) -> Result<Vec<(u64, RecordBatch)>> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut keys: Vec<RowKey<'_>> = Vec::with_capacity(rows);
    for (b, batch) in batches.iter().enumerate() {
        let times = u64_column(batch, time_column(signal))?;
        let groups = match signal {
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
        };
        let series = match signal {
            Signal::Metrics => Some(u64_column(batch, "series_id")?),
            _ => None,
        };
        for (r, &time) in times.iter().enumerate() {
            keys.push(RowKey {
                hour: time / NANOS_PER_HOUR,
                group: groups.get(r),
                series: series.map_or(0, |s| s[r]),
                time,
                at: (b, r),
            });
        }
    }
    keys.sort_unstable();
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let mut out = Vec::new();
    for chunk in keys.chunk_by(|a, b| a.hour == b.hour) {
        let indices: Vec<(usize, usize)> = chunk.iter().map(|k| k.at).collect();
        out.push((chunk[0].hour, interleave_record_batch(&refs, &indices)?));
    }
    Ok(out)
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
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_key_value_metadata(Some(vec![
            KeyValue::new("spyglass.signal".into(), signal.as_str().to_owned()),
            KeyValue::new("spyglass.schema_version".into(), SCHEMA_VERSION.to_string()),
        ]));
    for column in [
        "start_time_unix_nano",
        "end_time_unix_nano",
        "time_unix_nano",
        "observed_time_unix_nano",
        "duration_nano",
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

/// Writes one part file and makes it durable. Returns its size in bytes.
pub(crate) fn write_part(
    path: &Path,
    signal: Signal,
    batch: &RecordBatch,
    zstd_level: i32,
    row_group_rows: usize,
) -> Result<u64> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io("create part directory", dir))?;
    }
    let file = File::create(path).map_err(Error::io("create part", path))?;
    let props = writer_properties(signal, batch.num_rows(), zstd_level, row_group_rows)?;
    let mut writer = ArrowWriter::try_new(file, schema_for(signal), Some(props))
        .map_err(parquet_err(path, "open"))?;
    writer.write(batch).map_err(parquet_err(path, "write"))?;
    let file = writer.into_inner().map_err(parquet_err(path, "finish"))?;
    file.sync_all().map_err(Error::io("sync part", path))?;
    Ok(file.metadata().map_err(Error::io("stat part", path))?.len())
}

fn parquet_err(
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

fn open_reader(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).map_err(Error::io("open part", path))?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_err(path, "open"))
}

/// Reads a whole part.
pub(crate) fn read_part(path: &Path) -> Result<Vec<RecordBatch>> {
    let reader = open_reader(path)?
        .build()
        .map_err(parquet_err(path, "read"))?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::Arrow)
}

/// Reads the rows of one trace from a part, skipping row groups whose trace-id statistics rule
/// it out (parts are sorted by trace id, so usually one row group is read).
pub(crate) fn read_trace(path: &Path, trace_id: &TraceId) -> Result<Vec<RecordBatch>> {
    let builder = open_reader(path)?;
    let column = builder
        .parquet_schema()
        .columns()
        .iter()
        .position(|c| c.name() == "trace_id")
        .ok_or_else(|| Error::Corrupt(format!("part {} has no trace_id column", path.display())))?;
    let wanted = &trace_id.0[..];
    let row_groups: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, rg)| match rg.column(column).statistics() {
            Some(Statistics::FixedLenByteArray(s)) => match (s.min_opt(), s.max_opt()) {
                (Some(min), Some(max)) => min.data() <= wanted && wanted <= max.data(),
                _ => true,
            },
            _ => true,
        })
        .map(|(i, _)| i)
        .collect();
    let reader = builder
        .with_row_groups(row_groups)
        .build()
        .map_err(parquet_err(path, "read"))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
        let ids = batch
            .column_by_name("trace_id")
            .and_then(|c| c.as_any().downcast_ref::<FixedSizeBinaryArray>())
            .ok_or_else(|| Error::Corrupt("trace_id column has the wrong type".into()))?;
        let rows: Vec<u32> = (0..ids.len() as u32)
            .filter(|&i| ids.value(i as usize) == wanted)
            .collect();
        if !rows.is_empty() {
            out.push(take_record_batch(&batch, &UInt32Array::from(rows))?);
        }
    }
    Ok(out)
}

/// `YYYY-MM-DDTHH` of an hour since the epoch, the folder name of a partition.
pub(crate) fn hour_folder(hour: u64) -> String {
    let days = (hour / 24) as i64;
    // Civil-from-days (proleptic Gregorian), after Howard Hinnant's public-domain algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}", hour % 24)
}

/// The smallest and largest event time in a sorted-or-not batch.
pub(crate) fn time_range(signal: Signal, batch: &RecordBatch) -> (u64, u64) {
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
}
