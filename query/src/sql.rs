//! Read-only SQL over the `spans`, `metrics` and `logs` tables, with a row limit, a time limit
//! and a memory limit, and the answer encoded as JSON, CSV or Arrow IPC.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use spyglass_store::{Signal, Snapshot};

use crate::QueryEngine;
use crate::error::{Error, Result};
use crate::rollup::CountFromRollups;
use crate::tables::SnapshotTable;

/// A SQL answer: at most `sql_max_rows` rows, `truncated` when the query had more.
#[derive(Debug)]
pub struct SqlOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    pub truncated: bool,
}

impl QueryEngine {
    /// A DataFusion session whose tables read `snapshot`, in this engine's runtime (memory
    /// pool, footer cache).
    pub(crate) fn session(&self, snapshot: &Snapshot) -> Result<SessionContext> {
        self.session_with(snapshot, false)
    }

    /// A session; with `pushdown`, Parquet scans evaluate the filters while decoding, so the
    /// other columns are decoded only for matching rows (the engine's own queries, which read
    /// wide list columns under narrow filters).
    pub(crate) fn session_with(
        &self,
        snapshot: &Snapshot,
        pushdown: bool,
    ) -> Result<SessionContext> {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("spyglass", "public");
        config.options_mut().execution.parquet.pushdown_filters = pushdown;
        let ctx = SessionContext::new_with_config_rt(config, self.runtime.clone());
        ctx.add_optimizer_rule(Arc::new(CountFromRollups));
        crate::bounded::register(
            &ctx,
            crate::bounded::Limits {
                max_value_bytes: self.config.sql_max_value_bytes,
                max_call_bytes: self.config.sql_max_bytes,
            },
        );
        for signal in Signal::ALL {
            ctx.register_table(
                signal.as_str(),
                Arc::new(SnapshotTable::new(signal, snapshot.clone())),
            )?;
        }
        let supplied = self.supplied.read().unwrap_or_else(|e| e.into_inner());
        for (name, source) in supplied.iter() {
            ctx.register_table(
                name.as_str(),
                Arc::new(crate::supplied::SuppliedTable(source.clone())),
            )?;
        }
        Ok(ctx)
    }

    /// Runs one read-only statement (`SELECT`, `WITH`, `EXPLAIN`, `SHOW`) over a fresh snapshot.
    pub async fn sql(&self, query: &str) -> Result<SqlOutput> {
        let _timer = self.stats.time(crate::QueryKind::Sql);
        let snapshot = self.snapshot();
        let ctx = self.session(&snapshot)?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let (max_rows, max_bytes) = (self.config.sql_max_rows, self.config.sql_max_bytes);
        let timeout = self.config.query_timeout();
        let run = async {
            let frame = ctx.sql_with_options(query, options).await?;
            let stream = frame.execute_stream().await?;
            collect_limited(stream, max_rows, max_bytes).await
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(Err(Error::Sql(message))) if is_refused_statement(&message) => {
                Err(Error::Sql(format!(
                    "only read-only queries (SELECT, WITH, EXPLAIN, SHOW) are allowed: {message}"
                )))
            }
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }
}

/// Checks, without running it, that `query` is one read-only statement (`SELECT`, `WITH`,
/// `EXPLAIN` of one); the error says why not. Alert rules are checked with it when loaded.
pub fn check_read_only_sql(query: &str) -> Result<()> {
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let statements =
        Parser::parse_sql(&GenericDialect {}, query).map_err(|e| Error::Sql(e.to_string()))?;
    let read_only = |s: &Statement| matches!(s, Statement::Query(_));
    match statements.as_slice() {
        [statement] if read_only(statement) => Ok(()),
        [Statement::Explain { statement, .. }] if read_only(statement) => Ok(()),
        [] => Err(Error::Sql("the query is empty".into())),
        [_] => Err(Error::Sql(
            "only a read-only query (SELECT or WITH) is allowed".into(),
        )),
        _ => Err(Error::Sql("only one statement is allowed".into())),
    }
}

fn is_refused_statement(message: &str) -> bool {
    [
        "DDL not supported",
        "DML not supported",
        "Statement not supported",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// Collects the answer up to `max_rows` rows and `max_bytes` bytes (as Arrow in memory; a
/// batch that would pass it is cut to the rows that fit).
async fn collect_limited(
    mut stream: SendableRecordBatchStream,
    max_rows: usize,
    max_bytes: u64,
) -> Result<SqlOutput> {
    let schema = stream.schema();
    let mut batches = Vec::new();
    let mut rows = 0;
    let mut bytes = 0u64;
    let mut truncated = false;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let size = batch.get_array_memory_size() as u64;
        if bytes + size > max_bytes && batch.num_rows() > 0 {
            // Rows that fit, at this batch's average row size.
            let per_row = (size / batch.num_rows() as u64).max(1);
            let fit = (max_bytes.saturating_sub(bytes) / per_row) as usize;
            let keep = fit.min(batch.num_rows()).min(max_rows - rows);
            if keep > 0 {
                batches.push(batch.slice(0, keep));
            }
            rows += keep;
            truncated = true;
            break;
        }
        bytes += size;
        if rows + batch.num_rows() > max_rows {
            let keep = max_rows - rows;
            if keep > 0 {
                batches.push(batch.slice(0, keep));
            }
            rows = max_rows;
            truncated = true;
            break;
        }
        rows += batch.num_rows();
        if batch.num_rows() > 0 {
            batches.push(batch);
        }
    }
    Ok(SqlOutput {
        schema,
        batches,
        rows,
        truncated,
    })
}

impl SqlOutput {
    /// `{"columns": [{"name", "type"}], "rows": [{column: value}], "row_count", "truncated"}`;
    /// binary values (ids) as hex, maps as objects.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let columns: Vec<serde_json::Value> = self
            .schema
            .fields()
            .iter()
            .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
            .collect();
        let mut out = Vec::new();
        out.extend_from_slice(b"{\"columns\":");
        serde_json::to_writer(&mut out, &columns).map_err(internal)?;
        out.extend_from_slice(b",\"rows\":");
        if self.rows == 0 {
            out.extend_from_slice(b"[]");
        } else {
            let mut writer = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::JsonArray>(&mut out);
            for batch in &self.batches {
                writer.write(batch).map_err(internal)?;
            }
            writer.finish().map_err(internal)?;
        }
        out.extend_from_slice(
            format!(
                ",\"row_count\":{},\"truncated\":{}}}",
                self.rows, self.truncated
            )
            .as_bytes(),
        );
        Ok(out)
    }

    /// CSV with a header line (nested values are not representable in CSV and are refused).
    pub fn to_csv(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for batch in &self.batches {
                writer
                    .write(batch)
                    .map_err(|e| Error::Sql(format!("cannot write this result as CSV: {e}")))?;
            }
        }
        Ok(out)
    }

    /// An Arrow IPC stream (`application/vnd.apache.arrow.stream`).
    pub fn to_arrow_ipc(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        {
            let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, &self.schema)
                .map_err(internal)?;
            for batch in &self.batches {
                writer.write(batch).map_err(internal)?;
            }
            writer.finish().map_err(internal)?;
        }
        Ok(out)
    }

    /// A text table, as a terminal shows it.
    pub fn to_table(&self) -> Result<String> {
        Ok(arrow::util::pretty::pretty_format_batches(&self.batches)
            .map_err(internal)?
            .to_string())
    }
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

impl QueryEngine {
    /// Runs a read-only query to its end, without the row limit, and counts its rows: the
    /// baseline benchmarks measure a query against.
    pub async fn scan_rows(&self, sql: &str) -> Result<usize> {
        check_read_only_sql(sql)?;
        Ok(self
            .internal_sql(sql)
            .await?
            .iter()
            .map(|b| b.num_rows())
            .sum())
    }

    /// Runs SQL the engine wrote itself, without the user-facing row limit.
    pub(crate) async fn internal_sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let snapshot = self.snapshot();
        let ctx = self.session_with(&snapshot, true)?;
        self.run_internal(ctx, sql).await
    }

    /// [`QueryEngine::internal_sql`] with `table` standing for its signal's table.
    pub(crate) async fn internal_sql_over(
        &self,
        snapshot: &Snapshot,
        table: SnapshotTable,
        sql: &str,
    ) -> Result<Vec<RecordBatch>> {
        let ctx = self.session_with(snapshot, true)?;
        ctx.deregister_table(table.signal.as_str())?;
        ctx.register_table(table.signal.as_str(), Arc::new(table))?;
        self.run_internal(ctx, sql).await
    }

    async fn run_internal(&self, ctx: SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
        let timeout = self.config.query_timeout();
        let run = async { Ok::<_, Error>(ctx.sql(sql).await?.collect().await?) };
        match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_read_only_sql;

    #[test]
    fn only_one_read_only_statement_passes_the_check() {
        for good in [
            "SELECT 1",
            "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
            "EXPLAIN SELECT * FROM spans",
        ] {
            assert!(check_read_only_sql(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "SELEC 1",
            "DROP TABLE spans",
            "INSERT INTO spans VALUES (1)",
            "CREATE TABLE x (a INT)",
            "SELECT 1; SELECT 2",
            "EXPLAIN DELETE FROM spans",
        ] {
            assert!(check_read_only_sql(bad).is_err(), "{bad}");
        }
    }
}
