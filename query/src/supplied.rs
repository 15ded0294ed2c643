//! Tables that other crates supply as Arrow batches, queryable with SQL beside the store's
//! tables: alerting's `alerts` (every alert state change). The batches are asked for only when
//! a query reads the table.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemTable;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

/// A table's rows, supplied by another crate.
pub trait BatchSource: Send + Sync {
    fn schema(&self) -> SchemaRef;
    /// The rows as they are now.
    fn batches(&self) -> Vec<RecordBatch>;
}

/// A [`BatchSource`] as a DataFusion table.
#[derive(Clone)]
pub(crate) struct SuppliedTable(pub(crate) Arc<dyn BatchSource>);

impl std::fmt::Debug for SuppliedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("supplied table")
    }
}

#[async_trait]
impl TableProvider for SuppliedTable {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let table = MemTable::try_new(self.0.schema(), vec![self.0.batches()])?;
        table.scan(state, projection, filters, limit).await
    }
}
