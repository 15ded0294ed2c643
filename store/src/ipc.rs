//! WAL payloads: one Arrow IPC stream (schema + one batch, LZ4-compressed buffers) per record,
//! so replay rebuilds exactly the batch the memtable held.

use std::io::Cursor;

use arrow::ipc::CompressionType;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::model::Signal;
use crate::schema::schema_for;

pub(crate) fn encode(batch: &RecordBatch) -> Result<Vec<u8>> {
    let options =
        IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME))?;
    let mut writer = StreamWriter::try_new_with_options(Vec::new(), &batch.schema(), options)?;
    writer.write(batch)?;
    writer.finish()?;
    Ok(writer.into_inner()?)
}

pub(crate) fn decode(signal: Signal, payload: &[u8]) -> Result<RecordBatch> {
    let mut reader = StreamReader::try_new(Cursor::new(payload), None)?;
    let batch = reader
        .next()
        .ok_or_else(|| Error::Corrupt("wal record holds no batch".into()))??;
    if batch.schema().fields() != schema_for(signal).fields() {
        return Err(Error::Corrupt(format!(
            "wal record does not hold {signal} rows"
        )));
    }
    // Re-attach the shared schema so batches of one signal always compare equal.
    Ok(RecordBatch::try_new(
        schema_for(signal),
        batch.columns().to_vec(),
    )?)
}
