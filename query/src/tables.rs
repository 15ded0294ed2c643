//! The `spans`, `metrics` and `logs` tables: DataFusion table providers over one store snapshot.
//!
//! A scan is the union of the snapshot's Parquet parts (pruned by their time bounds, then by
//! row-group statistics, page index and the `trace_id` bloom filter through the pushed-down
//! predicate) and its memtable batches. Spans parts do not store `duration_nano`
//! (ARCHITECTURE.md, "Derived column not stored"): the scan computes it from the two times.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Operator, TableProviderFilterPushDown, col, lit, when,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use spyglass_store::schema::{schema_for, time_column};
use spyglass_store::{Part, Signal, Snapshot};

/// The column spans parts leave out and the scan derives.
const DURATION: &str = "duration_nano";

/// One signal's table over a snapshot.
pub(crate) struct SnapshotTable {
    pub(crate) signal: Signal,
    pub(crate) snapshot: Snapshot,
    schema: SchemaRef,
    /// The parts to read instead of the snapshot's (the rest of a count answered partly from
    /// rollups, which must not be answered from rollups again).
    only: Option<Vec<Arc<Part>>>,
    /// Whether the snapshot's memtable is read too.
    memtable: bool,
}

impl std::fmt::Debug for SnapshotTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotTable")
            .field("signal", &self.signal)
            .field("generation", &self.snapshot.manifest().generation)
            .finish()
    }
}

impl SnapshotTable {
    pub(crate) fn new(signal: Signal, snapshot: Snapshot) -> Self {
        let schema = match signal {
            Signal::Spans => string_views(&schema_for(signal)),
            Signal::Metrics | Signal::Logs => schema_for(signal),
        };
        Self {
            signal,
            snapshot,
            schema,
            only: None,
            memtable: true,
        }
    }

    /// The same table reading only `parts` of the snapshot (and its memtable).
    pub(crate) fn restricted_to(&self, parts: Vec<Arc<Part>>) -> Self {
        Self {
            signal: self.signal,
            snapshot: self.snapshot.clone(),
            schema: self.schema.clone(),
            only: Some(parts),
            memtable: self.memtable,
        }
    }

    /// The same table without the memtable: only the snapshot's Parquet parts.
    pub(crate) fn without_memtable(mut self) -> Self {
        self.memtable = false;
        self
    }

    /// Whether counts over this table may come from part rollups.
    pub(crate) fn rollups_allowed(&self) -> bool {
        self.only.is_none()
    }

    /// The schema of the signal's Parquet parts: the table's, less derived columns.
    fn part_schema(&self) -> SchemaRef {
        match self.signal {
            Signal::Spans => {
                let fields: Vec<_> = self
                    .schema
                    .fields()
                    .iter()
                    .filter(|f| f.name() != DURATION)
                    .cloned()
                    .collect();
                Arc::new(Schema::new_with_metadata(
                    fields,
                    self.schema.metadata().clone(),
                ))
            }
            Signal::Metrics | Signal::Logs => self.schema.clone(),
        }
    }

    /// Parts whose time bounds can hold rows the filters accept.
    fn pruned_parts(&self, filters: &[Expr]) -> Vec<Arc<Part>> {
        let bounds = TimeBounds::from_filters(time_column(self.signal), filters);
        let parts = match &self.only {
            Some(parts) => parts.clone(),
            None => self.snapshot.parts(self.signal),
        };
        parts
            .into_iter()
            .filter(|p| p.meta().overlaps(bounds.min, bounds.max))
            .collect()
    }

    /// Parquet scan of `parts` producing the table columns `wanted` (indices into the table
    /// schema), with the filters that only name stored columns pushed down as a predicate.
    fn parts_plan(
        &self,
        state: &dyn Session,
        parts: &[Arc<Part>],
        wanted: &[usize],
        filters: &[Expr],
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let part_schema = self.part_schema();
        // Stored columns to read: the wanted ones, with both times in place of the duration.
        let mut read: Vec<usize> = Vec::new();
        for &i in wanted {
            let name = self.schema.field(i).name();
            let needs: Vec<&str> = if name == DURATION {
                vec!["start_time_unix_nano", "end_time_unix_nano"]
            } else {
                vec![name.as_str()]
            };
            for n in needs {
                let j = part_schema.index_of(n)?;
                if !read.contains(&j) {
                    read.push(j);
                }
            }
        }
        if read.is_empty() {
            // `count(*)` wants no column; read the smallest one to count rows.
            read.push(part_schema.index_of(time_column(self.signal))?);
        }

        let stored_filters: Vec<Expr> = filters
            .iter()
            .filter(|f| {
                f.column_refs()
                    .iter()
                    .all(|c| part_schema.index_of(c.name()).is_ok())
            })
            .cloned()
            .collect();
        let mut source = ParquetSource::new(part_schema.clone())
            .with_pushdown_filters(state.config_options().execution.parquet.pushdown_filters);
        if let Some(predicate) = conjunction(stored_filters) {
            let df_schema = DFSchema::try_from(part_schema.clone())?;
            source = source.with_predicate(state.create_physical_expr(predicate, &df_schema)?);
        }

        let groups = file_groups(parts, state.config().target_partitions())?;
        let config =
            FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
                .with_file_groups(groups)
                .with_projection_indices(Some(read.clone()))?
                .build();
        let scan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);

        // Put the read columns into the wanted order, deriving the duration.
        let scan_schema = scan.schema();
        let df_schema = DFSchema::try_from(scan_schema.clone())?;
        let mut exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::new();
        for &i in wanted {
            let name = self.schema.field(i).name();
            let expr = if name == DURATION {
                let (start, end) = (col("start_time_unix_nano"), col("end_time_unix_nano"));
                when(end.clone().gt_eq(start.clone()), end - start).otherwise(lit(0u64))?
            } else {
                col(name.as_str())
            };
            exprs.push((state.create_physical_expr(expr, &df_schema)?, name.clone()));
        }
        // With no wanted column (`count(*)`) this projects to zero columns, keeping row counts.
        Ok(Arc::new(ProjectionExec::try_new(exprs, scan)?))
    }
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Filters prune parts and row groups; DataFusion still applies them to every row.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let projected = Arc::new(self.schema.project(&wanted)?);

        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        let parts = self.pruned_parts(filters);
        if !parts.is_empty() {
            let plan = self.parts_plan(state, &parts, &wanted, filters)?;
            inputs.push(plan);
        }
        // The wanted columns of the memtable, in the table's types.
        let memtable = match self.memtable {
            true => self.snapshot.memtable_batches(self.signal),
            false => Vec::new(),
        };
        let memtable = memtable
            .iter()
            .map(|b| conform(&b.project(&wanted)?, &projected))
            .collect::<DfResult<Vec<_>>>()?;
        if !memtable.is_empty() {
            inputs.push(MemorySourceConfig::try_new_exec(
                &[memtable],
                projected.clone(),
                None,
            )?);
        }
        match inputs.len() {
            0 => Ok(Arc::new(EmptyExec::new(projected))),
            _ => UnionExec::try_new(inputs),
        }
    }
}

/// The schema with its top-level strings as string views. The spans table reads its string
/// columns as views: Parquet's dictionary pages decode into views without copying short
/// strings, and DataFusion groups and compares views faster (its own default for Parquet).
fn string_views(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8View)),
            _ => f.clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// A batch in the table's types (string columns cast to views where it has them): memtable
/// batches, rollup combinations.
pub(crate) fn conform(batch: &RecordBatch, schema: &SchemaRef) -> DfResult<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Parts spread over at most `partitions` groups of similar byte size, so that a scan uses
/// every core.
fn file_groups(parts: &[Arc<Part>], partitions: usize) -> DfResult<Vec<FileGroup>> {
    let n = partitions.clamp(1, parts.len().max(1));
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> = (0..n).map(|_| (0, Vec::new())).collect();
    let mut by_size: Vec<&Arc<Part>> = parts.iter().collect();
    by_size.sort_by_key(|p| std::cmp::Reverse(p.meta().bytes));
    for part in by_size {
        let path = absolute(part.path())?;
        let location = path.to_string_lossy().trim_start_matches('/').to_string();
        let smallest = groups
            .iter_mut()
            .min_by_key(|(bytes, _)| *bytes)
            .expect("at least one group");
        smallest.0 += part.meta().bytes;
        smallest
            .1
            .push(PartitionedFile::new(location, part.meta().bytes));
    }
    Ok(groups
        .into_iter()
        .filter(|(_, files)| !files.is_empty())
        .map(|(_, files)| FileGroup::new(files))
        .collect())
}

fn absolute(path: PathBuf) -> DfResult<PathBuf> {
    Ok(std::path::absolute(path)?)
}

/// Bounds on the event-time column implied by a conjunction of filters (inclusive).
#[derive(Debug, PartialEq)]
pub(crate) struct TimeBounds {
    pub(crate) min: u64,
    pub(crate) max: u64,
}

impl TimeBounds {
    pub(crate) fn from_filters(column: &str, filters: &[Expr]) -> Self {
        let mut bounds = TimeBounds {
            min: 0,
            max: u64::MAX,
        };
        for filter in filters {
            bounds.narrow(column, filter);
        }
        bounds
    }

    /// Whether every filter is a bound on `column` that [`TimeBounds::from_filters`] reads, so
    /// that a part whose rows all lie inside the bounds passes them all.
    pub(crate) fn only_bounds(column: &str, filters: &[Expr]) -> bool {
        let mut bounds = TimeBounds::from_filters(column, &[]);
        filters.iter().all(|f| bounds.narrow(column, f))
    }

    /// Narrows the bounds by `expr`; false when `expr` is not (wholly) a bound on `column`.
    fn narrow(&mut self, column: &str, expr: &Expr) -> bool {
        match expr {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if *op == Operator::And {
                    let left = self.narrow(column, left);
                    return self.narrow(column, right) && left;
                }
                let (op, value) = match (left.as_ref(), right.as_ref()) {
                    (Expr::Column(c), Expr::Literal(v, _)) if c.name == column => (*op, v),
                    (Expr::Literal(v, _), Expr::Column(c)) if c.name == column => match op.swap() {
                        Some(op) => (op, v),
                        None => return false,
                    },
                    _ => return false,
                };
                let Some(v) = as_u64(value) else { return false };
                match op {
                    Operator::Eq => {
                        self.min = self.min.max(v);
                        self.max = self.max.min(v);
                    }
                    Operator::Gt => self.min = self.min.max(v.saturating_add(1)),
                    Operator::GtEq => self.min = self.min.max(v),
                    Operator::Lt => self.max = self.max.min(v.saturating_sub(1)),
                    Operator::LtEq => self.max = self.max.min(v),
                    _ => return false,
                }
                true
            }
            Expr::Between(b) if !b.negated => {
                if let (Expr::Column(c), Expr::Literal(lo, _), Expr::Literal(hi, _)) =
                    (b.expr.as_ref(), b.low.as_ref(), b.high.as_ref())
                    && c.name == column
                    && let (Some(lo), Some(hi)) = (as_u64(lo), as_u64(hi))
                {
                    self.min = self.min.max(lo);
                    self.max = self.max.min(hi);
                    return true;
                }
                false
            }
            _ => false,
        }
    }
}

fn as_u64(value: &ScalarValue) -> Option<u64> {
    match value {
        ScalarValue::UInt64(Some(v)) => Some(*v),
        ScalarValue::Int64(Some(v)) => u64::try_from(*v).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_from_comparisons_ranges_and_conjunctions() {
        let t = "start_time_unix_nano";
        let bounds = |filters: Vec<Expr>| TimeBounds::from_filters(t, &filters);
        assert_eq!(
            bounds(vec![col(t).gt_eq(lit(10u64)), col(t).lt(lit(20i64))]),
            TimeBounds { min: 10, max: 19 }
        );
        assert_eq!(
            bounds(vec![col(t).gt(lit(10u64)).and(col(t).lt_eq(lit(30u64)))]),
            TimeBounds { min: 11, max: 30 }
        );
        assert_eq!(
            bounds(vec![
                lit(5u64).lt(col(t)),
                col(t).between(lit(0u64), lit(100u64))
            ]),
            TimeBounds { min: 6, max: 100 }
        );
        // Disjunctions and other columns do not narrow.
        assert_eq!(
            bounds(vec![
                col(t).gt(lit(10u64)).or(col(t).lt(lit(3u64))),
                col("end_time_unix_nano").gt(lit(50u64))
            ]),
            TimeBounds {
                min: 0,
                max: u64::MAX
            }
        );
    }
}
