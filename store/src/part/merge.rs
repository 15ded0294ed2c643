//! The rows of several parts of one hour, merged in part order as they are read.
//!
//! Every part's rows are sorted as a flush sorts them (spans by trace id then start time,
//! metric points by name, series and time, log records by time). A compaction reads each input
//! a batch at a time and takes, row by row, the least of the inputs' next rows, so it holds one
//! batch per input and the chunk being built, never the inputs whole. Chunks end after
//! `CHUNK_ROWS` rows or about [`CHUNK_BYTES`] bytes, at a trace boundary for spans, as a
//! flush's chunks do.

use arrow::array::{FixedSizeBinaryArray, RecordBatch, StringArray, UInt64Array};

use super::CHUNK_ROWS;
use crate::error::{Error, Result};
use crate::gather::gather_batch;
use crate::model::Signal;
use crate::schema::time_column;

type Batches = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// Bytes a chunk of wide rows holds at most, about (a span of large attributes can be kilobytes).
const CHUNK_BYTES: u64 = 8 << 20;

/// Rows an input is read by: a merge holds one such batch per input.
pub(crate) const MERGE_BATCH_ROWS: usize = 256;

/// A batch and the columns that order its rows.
struct Cols {
    batch: RecordBatch,
    /// Bytes of the batch per row, about.
    row_bytes: u64,
    traces: Option<FixedSizeBinaryArray>,
    names: Option<StringArray>,
    series: Option<UInt64Array>,
    times: UInt64Array,
}

impl Cols {
    fn new(signal: Signal, batch: RecordBatch) -> Result<Self> {
        let u64s = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
                .cloned()
                .ok_or_else(|| Error::Corrupt(format!("batch lacks {name}")))
        };
        let times = u64s(time_column(signal))?;
        let (mut traces, mut names, mut series) = (None, None, None);
        match signal {
            Signal::Spans => {
                traces = Some(
                    batch
                        .column_by_name("trace_id")
                        .and_then(|c| c.as_any().downcast_ref::<FixedSizeBinaryArray>())
                        .cloned()
                        .ok_or_else(|| Error::Corrupt("spans batch lacks trace_id".into()))?,
                );
            }
            Signal::Metrics => {
                names = Some(
                    batch
                        .column_by_name("metric_name")
                        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                        .cloned()
                        .ok_or_else(|| Error::Corrupt("metrics batch lacks metric_name".into()))?,
                );
                series = Some(u64s("series_id")?);
            }
            Signal::Logs => {}
        }
        let row_bytes = batch.get_array_memory_size() as u64 / batch.num_rows().max(1) as u64;
        Ok(Self {
            row_bytes,
            batch,
            traces,
            names,
            series,
            times,
        })
    }

    fn trace(&self, row: usize) -> u128 {
        self.traces.as_ref().map_or(0, |ids| {
            u128::from_be_bytes(ids.value(row).try_into().expect("trace ids are 16 bytes"))
        })
    }

    fn key(&self, row: usize) -> Key<'_> {
        Key {
            trace: self.trace(row),
            name: self.names.as_ref().map_or("", |n| n.value(row)),
            series: self.series.as_ref().map_or(0, |s| s.value(row)),
            time: self.times.value(row),
        }
    }
}

/// One input: its batches still to read and where it is in the current one.
struct Input {
    rest: Batches,
    cols: Option<Cols>,
    row: usize,
    /// Index of the current batch among the sources of the chunk being built.
    source: usize,
}

/// A row's place in the order of a part.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Key<'a> {
    trace: u128,
    name: &'a str,
    series: u64,
    time: u64,
}

/// The merged rows as chunks of sorted batches.
pub(crate) struct Merge {
    signal: Signal,
    inputs: Vec<Input>,
    /// The batches the chunk being built takes rows from.
    sources: Vec<RecordBatch>,
    /// `(source, row)` of each row of the chunk, in order.
    rows: Vec<(usize, usize)>,
    /// The trace of the chunk's last row (spans).
    last_trace: u128,
    /// Bytes of the chunk's rows, about.
    bytes: u64,
    failed: bool,
}

impl Merge {
    pub(crate) fn new(signal: Signal, inputs: Vec<Batches>) -> Result<Self> {
        let mut merge = Self {
            signal,
            inputs: Vec::with_capacity(inputs.len()),
            sources: Vec::new(),
            rows: Vec::new(),
            last_trace: 0,
            bytes: 0,
            failed: false,
        };
        for rest in inputs {
            let mut input = Input {
                rest,
                cols: None,
                row: 0,
                source: 0,
            };
            merge.advance(&mut input)?;
            merge.inputs.push(input);
        }
        Ok(merge)
    }

    /// Moves `input` to its next non-empty batch (none at its end), making it a source.
    fn advance(&mut self, input: &mut Input) -> Result<()> {
        input.cols = None;
        input.row = 0;
        for batch in input.rest.by_ref() {
            let batch = batch?;
            if batch.num_rows() > 0 {
                input.source = self.sources.len();
                self.sources.push(batch.clone());
                input.cols = Some(Cols::new(self.signal, batch)?);
                break;
            }
        }
        Ok(())
    }

    /// The input whose next row comes first.
    fn least(&self) -> Option<usize> {
        let mut best: Option<(usize, Key<'_>)> = None;
        for (i, input) in self.inputs.iter().enumerate() {
            let Some(cols) = &input.cols else { continue };
            let key = cols.key(input.row);
            if best.as_ref().is_none_or(|(_, b)| key < *b) {
                best = Some((i, key));
            }
        }
        best.map(|(i, _)| i)
    }

    /// The next chunk, or `None` at the end.
    fn next_chunk(&mut self) -> Result<Option<RecordBatch>> {
        while let Some(i) = self.least() {
            let input = &self.inputs[i];
            let cols = input.cols.as_ref().expect("the least input has a row");
            let trace = cols.trace(input.row);
            // Never inside a trace: a part's trace sits in one chunk, as a flush writes it.
            let full = self.rows.len() >= CHUNK_ROWS || self.bytes >= CHUNK_BYTES;
            if full && !(self.signal == Signal::Spans && trace == self.last_trace) {
                break;
            }
            self.bytes += cols.row_bytes;
            self.rows.push((input.source, input.row));
            self.last_trace = trace;
            let mut input = std::mem::replace(
                &mut self.inputs[i],
                Input {
                    rest: Box::new(std::iter::empty()),
                    cols: None,
                    row: 0,
                    source: 0,
                },
            );
            input.row += 1;
            if input
                .cols
                .as_ref()
                .is_some_and(|c| input.row >= c.batch.num_rows())
            {
                self.advance(&mut input)?;
            }
            self.inputs[i] = input;
        }
        if self.rows.is_empty() {
            return Ok(None);
        }
        let sources: Vec<&RecordBatch> = self.sources.iter().collect();
        let chunk = gather_batch(&sources, &self.rows)?;
        // The next chunk starts from the inputs' current batches only.
        self.rows.clear();
        self.bytes = 0;
        self.sources.clear();
        for input in &mut self.inputs {
            if let Some(cols) = &input.cols {
                input.source = self.sources.len();
                self.sources.push(cols.batch.clone());
            }
        }
        Ok(Some(chunk))
    }
}

impl Iterator for Merge {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_chunk() {
            Ok(chunk) => chunk.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
