//! Part rollups: a part's row count per distinct combination of its signal's low-cardinality
//! columns (ARCHITECTURE.md, "Part rollups"), kept in its Parquet footer so that counting rows
//! per service, operation or severity needs no row of the part.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Signal;
use crate::part::parquet_err;

/// The footer key holding a part's rollup.
pub(crate) const ROLLUP_KEY: &str = "spyglass.rollup";
/// The rollup batch's count column.
pub const ROWS_COLUMN: &str = "rows";
/// Combinations a rollup may hold; past it the second column is dropped, then the rollup.
const MAX_GROUPS: usize = 4096;

/// The columns a signal's parts roll up, most general first.
pub fn rollup_columns(signal: Signal) -> &'static [&'static str] {
    match signal {
        Signal::Spans => &["service_name", "name", "kind", "status_code"],
        Signal::Metrics => &["service_name", "metric_name", "metric_type"],
        Signal::Logs => &["service_name", "severity_text", "event_name"],
    }
}

/// Row counts per distinct combination of some string columns of one part.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollup {
    /// The rolled-up columns, then [`ROWS_COLUMN`] (`UInt64`); one row per combination.
    batch: RecordBatch,
}

/// The footer's JSON form.
#[derive(Serialize, Deserialize)]
struct RollupJson {
    columns: Vec<String>,
    /// Each combination's values, then its row count.
    groups: Vec<(Vec<String>, u64)>,
}

impl Rollup {
    /// Counts the rows of `batches` (a signal's table schema) per combination of the signal's
    /// rollup columns; with too many combinations, of all but the second; else none.
    pub fn count(signal: Signal, batches: &[RecordBatch]) -> Result<Option<Rollup>> {
        let mut counter = RollupCounter::new(signal);
        for batch in batches {
            counter.add(batch)?;
        }
        counter.finish()
    }

    fn from_groups<S: AsRef<str>>(columns: &[S], groups: Vec<(Vec<S>, u64)>) -> Result<Rollup> {
        let mut fields: Vec<Field> = columns
            .iter()
            .map(|c| Field::new(c.as_ref(), DataType::Utf8, false))
            .collect();
        fields.push(Field::new(ROWS_COLUMN, DataType::UInt64, false));
        let mut arrays: Vec<ArrayRef> = (0..columns.len())
            .map(|c| {
                let values = groups.iter().map(|(row, _)| row[c].as_ref());
                Arc::new(StringArray::from_iter_values(values)) as ArrayRef
            })
            .collect();
        arrays.push(Arc::new(UInt64Array::from_iter_values(
            groups.iter().map(|(_, n)| *n),
        )));
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
        Ok(Rollup { batch })
    }

    /// The rolled-up columns.
    pub fn columns(&self) -> Vec<&str> {
        let fields = self.batch.schema_ref().fields();
        fields[..fields.len() - 1]
            .iter()
            .map(|f| f.name().as_str())
            .collect()
    }

    /// Whether every one of `columns` is rolled up.
    pub fn holds(&self, columns: &[&str]) -> bool {
        let mine = self.columns();
        columns.iter().all(|c| mine.contains(c))
    }

    /// The combinations with only `columns` (in that order, `Utf8`, each held) and their row
    /// counts ([`ROWS_COLUMN`]); combinations differing only in the other columns stay apart.
    pub fn project(&self, columns: &[&str]) -> Result<RecordBatch> {
        let schema = self.batch.schema();
        let indices = columns
            .iter()
            .chain([&ROWS_COLUMN])
            .map(|c| {
                schema
                    .index_of(c)
                    .map_err(|_| Error::Corrupt(format!("the rollup has no column {c}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self.batch.project(&indices)?)
    }

    /// Rows counted.
    pub fn rows(&self) -> u64 {
        let counts = self
            .batch
            .column(self.batch.num_columns() - 1)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .expect("the last rollup column is the UInt64 count");
        counts.values().iter().sum()
    }

    pub(crate) fn to_json(&self) -> String {
        let columns: Vec<String> = self.columns().into_iter().map(str::to_owned).collect();
        let strings: Vec<&StringArray> = (0..columns.len())
            .map(|c| {
                self.batch
                    .column(c)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("rollup columns are Utf8")
            })
            .collect();
        let counts = self
            .batch
            .column(columns.len())
            .as_any()
            .downcast_ref::<UInt64Array>()
            .expect("the last rollup column is the UInt64 count");
        let groups = (0..self.batch.num_rows())
            .map(|row| {
                let values = strings.iter().map(|s| s.value(row).to_owned()).collect();
                (values, counts.value(row))
            })
            .collect();
        serde_json::to_string(&RollupJson { columns, groups })
            .expect("strings and integers always serialise")
    }

    pub(crate) fn from_json(text: &str) -> Result<Rollup> {
        let json: RollupJson = serde_json::from_str(text)
            .map_err(|e| Error::Corrupt(format!("unreadable part rollup: {e}")))?;
        if let Some((row, _)) = json
            .groups
            .iter()
            .find(|(r, _)| r.len() != json.columns.len())
        {
            return Err(Error::Corrupt(format!(
                "a part rollup group has {} values for {} columns",
                row.len(),
                json.columns.len()
            )));
        }
        Self::from_groups(&json.columns, json.groups)
    }
}

/// A part's rollup: the one in its footer, else (a part written before rollups) counted from
/// its rollup columns. `None` when it has too many combinations.
pub(crate) fn load(
    signal: Signal,
    path: &Path,
    metadata: &ArrowReaderMetadata,
) -> Result<Option<Rollup>> {
    let stored = metadata
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == ROLLUP_KEY))
        .and_then(|kv| kv.value.as_deref());
    if let Some(json) = stored {
        match Rollup::from_json(json) {
            Ok(rollup) => return Ok(Some(rollup)),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "counting the part again"),
        }
    }
    let file = File::open(path).map_err(Error::io("open part", path))?;
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata.clone());
    let columns = rollup_columns(signal);
    let roots: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| columns.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let batches = builder
        .with_projection(mask)
        .build()
        .map_err(parquet_err(path, "read"))?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Rollup::count(signal, &batches)
}

/// A multiply-rotate hasher (the Fx hash's scheme) for the rollup's short keys: the default
/// SipHash made counting 3% of a flush.
#[derive(Clone, Copy, Default)]
struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.write_u64(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(last));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// [`Rollup::count`] fed one batch at a time, so that a part's rows need not all be in memory:
/// both column sets are counted as the rows go by, and the first that stays within
/// `MAX_GROUPS` combinations wins.
pub(crate) struct RollupCounter {
    attempts: Vec<Counter>,
}

impl RollupCounter {
    pub(crate) fn new(signal: Signal) -> Self {
        let all = rollup_columns(signal);
        let fewer = (all.iter().enumerate())
            .filter(|(i, _)| *i != 1)
            .map(|(_, c)| *c)
            .collect();
        Self {
            attempts: vec![Counter::new(all.to_vec()), Counter::new(fewer)],
        }
    }

    pub(crate) fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        for attempt in self.attempts.iter_mut().filter(|a| !a.overflowed) {
            attempt.add(batch)?;
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<Option<Rollup>> {
        match self.attempts.into_iter().find(|a| !a.overflowed) {
            Some(counter) => counter.finish().map(Some),
            None => Ok(None),
        }
    }
}

/// Row counts per combination of some columns. Each column's values are interned to small
/// ids (at most `MAX_GROUPS + 1` before giving up, so 16 bits each); a combination is its ids
/// packed into one u64.
struct Counter {
    columns: Vec<&'static str>,
    interned: Vec<HashMap<String, u64, Fast>>,
    values: Vec<Vec<String>>,
    counts: HashMap<u64, u64, Fast>,
    overflowed: bool,
}

impl Counter {
    fn new(columns: Vec<&'static str>) -> Self {
        debug_assert!(columns.len() <= 4, "a combination packs four 16-bit ids");
        Self {
            interned: vec![HashMap::default(); columns.len()],
            values: vec![Vec::new(); columns.len()],
            columns,
            counts: HashMap::default(),
            overflowed: false,
        }
    }

    fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let arrays = (self.columns.iter())
            .map(|c| string_column(batch, c))
            .collect::<Result<Vec<_>>>()?;
        let mut ids = vec![0u64; self.columns.len()];
        // Rows arrive in runs (a trace's spans, a series' points): a value equal to the row
        // above's keeps its id without a lookup.
        let mut previous: Vec<Option<&str>> = vec![None; self.columns.len()];
        for row in 0..batch.num_rows() {
            let mut key = 0u64;
            for (c, array) in arrays.iter().enumerate() {
                let value = array.value(row);
                if previous[c] != Some(value) {
                    previous[c] = Some(value);
                    ids[c] = match self.interned[c].get(value) {
                        Some(id) => *id,
                        None => {
                            let id = self.values[c].len() as u64;
                            self.values[c].push(value.to_owned());
                            self.interned[c].insert(value.to_owned(), id);
                            id
                        }
                    };
                }
                key |= ids[c] << (16 * c);
            }
            match self.counts.get_mut(&key) {
                Some(n) => *n += 1,
                None => {
                    if self.counts.len() == MAX_GROUPS {
                        self.overflowed = true;
                        return Ok(());
                    }
                    self.counts.insert(key, 1);
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Rollup> {
        let mut groups: Vec<(Vec<&str>, u64)> = (self.counts.iter())
            .map(|(key, n)| {
                let row = (0..self.columns.len())
                    .map(|c| self.values[c][((key >> (16 * c)) & 0xffff) as usize].as_str())
                    .collect();
                (row, *n)
            })
            .collect();
        groups.sort_unstable();
        Rollup::from_groups(&self.columns, groups)
    }
}

type Fast = std::hash::BuildHasherDefault<FastHasher>;

fn string_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| Error::Corrupt(format!("batch lacks the string column {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(columns: &[(&str, Vec<&str>)]) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, _)| Field::new(*n, DataType::Utf8, false))
            .collect();
        let arrays: Vec<ArrayRef> = columns
            .iter()
            .map(|(_, v)| Arc::new(StringArray::from(v.clone())) as ArrayRef)
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
    }

    fn logs(services: Vec<&str>, severities: Vec<&str>) -> RecordBatch {
        let events = vec![""; services.len()];
        batch(&[
            ("service_name", services),
            ("severity_text", severities),
            ("event_name", events),
        ])
    }

    #[test]
    fn counts_rows_per_combination_across_batches_and_round_trips_through_json() {
        let batches = [
            logs(vec!["a", "a", "b"], vec!["INFO", "ERROR", "INFO"]),
            logs(vec!["a", "b", "b"], vec!["INFO", "INFO", "INFO"]),
        ];
        let rollup = Rollup::count(Signal::Logs, &batches).unwrap().unwrap();
        assert_eq!(
            rollup.columns(),
            ["service_name", "severity_text", "event_name"]
        );
        assert_eq!(rollup.rows(), 6);
        let by_service = rollup.project(&["service_name"]).unwrap();
        let services = by_service.column(0).as_any().downcast_ref::<StringArray>();
        let counts = by_service.column(1).as_any().downcast_ref::<UInt64Array>();
        let pairs: Vec<(&str, u64)> = services
            .unwrap()
            .iter()
            .zip(counts.unwrap().iter())
            .map(|(s, n)| (s.unwrap(), n.unwrap()))
            .collect();
        // Sorted combinations: (a, ERROR), (a, INFO), (b, INFO).
        assert_eq!(pairs, [("a", 1), ("a", 2), ("b", 3)]);
        assert_eq!(Rollup::from_json(&rollup.to_json()).unwrap(), rollup);
    }

    #[test]
    fn too_many_combinations_drop_the_second_column_then_the_rollup() {
        let names: Vec<String> = (0..=MAX_GROUPS).map(|i| format!("op {i}")).collect();
        let services: Vec<String> = (0..=MAX_GROUPS).map(|i| format!("svc {}", i % 7)).collect();
        let severities = vec!["INFO"; names.len()];
        let many_names = logs(
            services.iter().map(String::as_str).collect(),
            names.iter().map(String::as_str).collect(),
        );
        let rollup = Rollup::count(Signal::Logs, &[many_names]).unwrap().unwrap();
        assert_eq!(rollup.columns(), ["service_name", "event_name"]);
        assert!(rollup.holds(&["service_name"]) && !rollup.holds(&["severity_text"]));
        assert_eq!(rollup.rows(), names.len() as u64);

        let many_services = logs(names.iter().map(String::as_str).collect(), severities);
        assert_eq!(Rollup::count(Signal::Logs, &[many_services]).unwrap(), None);
    }

    #[test]
    fn a_part_without_a_rollup_in_its_footer_is_counted_from_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let spans = crate::synth::SpanGenerator::new(3, 1_795_000_000_000_000_000).spans(500);
        let batch = crate::schema::spans_to_batch(&spans).unwrap();
        let expected = Rollup::count(Signal::Spans, std::slice::from_ref(&batch))
            .unwrap()
            .unwrap();
        assert_eq!(expected.rows(), spans.len() as u64);

        // Written by this version: the footer holds the rollup.
        let written = dir.path().join("new.parquet");
        let count = || Rollup::count(Signal::Spans, std::slice::from_ref(&batch));
        crate::part::write_part(
            &written,
            Signal::Spans,
            std::slice::from_ref(&batch),
            3,
            1 << 20,
            count,
        )
        .unwrap();
        let metadata = crate::part::load_reader_metadata(&written).unwrap();
        let in_footer = metadata
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .any(|kv| kv.key == ROLLUP_KEY);
        assert!(in_footer);
        let loaded = load(Signal::Spans, &written, &metadata).unwrap();
        assert_eq!(loaded.as_ref(), Some(&expected));

        // Written before rollups: no key, counted from the rows.
        let old = dir.path().join("old.parquet");
        let stored = crate::part::to_stored(Signal::Spans, &batch).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(
            File::create(&old).unwrap(),
            stored.schema(),
            None,
        )
        .unwrap();
        writer.write(&stored).unwrap();
        writer.close().unwrap();
        let metadata = crate::part::load_reader_metadata(&old).unwrap();
        let loaded = load(Signal::Spans, &old, &metadata).unwrap();
        assert_eq!(loaded, Some(expected));
    }

    #[test]
    fn a_damaged_footer_value_is_an_error() {
        assert!(Rollup::from_json("{\"columns\":[\"a\"],\"groups\":[[[],1]]}").is_err());
        assert!(Rollup::from_json("not json").is_err());
    }
}
