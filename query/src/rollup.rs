//! Counts from part rollups (ARCHITECTURE.md, "Counts from rollups"): a logical optimizer rule
//! that answers `count(*)` grouped by rollup columns from the counts every part keeps in its
//! footer, scanning only the parts it cannot answer for and the memtable.
//!
//! ```text
//! Aggregate [g…] [count(*)]               Projection [g…, coalesce(sum(rows), 0) AS count(*)]
//!   (Filter time bounds)          ─▶        Aggregate [g…] [sum(rows)]
//!     TableScan spans                         Union
//!                                               TableScan rollups (parts inside the bounds)
//!                                               Aggregate [g…] [count(*) AS rows]
//!                                                 (Filter time bounds)
//!                                                   TableScan spans (the other parts, memtable)
//! ```

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result as DfResult};
use datafusion::datasource::MemTable;
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::functions::expr_fn::coalesce;
use datafusion::functions_aggregate::count::Count;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, TableScan, cast, col, lit,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use spyglass_store::schema::time_column;
use spyglass_store::{Part, ROWS_COLUMN, rollup_columns};

use crate::tables::{SnapshotTable, TimeBounds, conform};

/// Rewrites counts over a snapshot table into sums of part rollups where they answer them.
#[derive(Debug, Default)]
pub(crate) struct CountFromRollups;

impl OptimizerRule for CountFromRollups {
    fn name(&self) -> &str {
        "spyglass_count_from_rollups"
    }

    fn apply_order(&self) -> Option<datafusion::optimizer::ApplyOrder> {
        Some(datafusion::optimizer::ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = &plan else {
            return Ok(Transformed::no(plan));
        };
        match rewrite_count(aggregate)? {
            Some(rewritten) => Ok(Transformed::yes(rewritten)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// What a count over one scan looks like once recognised.
struct CountScan {
    /// Grouped column names, in the aggregate's order.
    groups: Vec<String>,
    /// Filters bounding the time column.
    bounds: Vec<Expr>,
    /// Filters over rollup columns only, evaluated on the rollups' combinations.
    on_columns: Vec<Expr>,
    /// The rollup columns the groups and `on_columns` need, groups first.
    needed: Vec<String>,
}

fn rewrite_count(aggregate: &Aggregate) -> DfResult<Option<LogicalPlan>> {
    let Some(scan) = scan_under(&aggregate.input) else {
        return Ok(None);
    };
    let provider = source_as_provider(&scan.source).ok();
    let Some(table) = provider
        .as_deref()
        .and_then(|p| p.downcast_ref::<SnapshotTable>())
    else {
        return Ok(None);
    };
    let Some(CountScan {
        groups,
        bounds,
        on_columns,
        needed,
    }) = recognise(aggregate, table, scan)
    else {
        return Ok(None);
    };

    // A part wholly inside the time bounds passes them on every row; the other filters hold or
    // not for all rows of one combination alike. So such a part's rollup, filtered, counts
    // exactly its rows that the query counts.
    let bounds = TimeBounds::from_filters(time_column(table.signal), &bounds);
    let wanted: Vec<&str> = needed.iter().map(String::as_str).collect();
    let (answered, rest): (Vec<Arc<Part>>, Vec<Arc<Part>>) = table
        .snapshot
        .parts(table.signal)
        .into_iter()
        .partition(|p| {
            let meta = p.meta();
            p.rollup().is_some_and(|r| r.holds(&wanted))
                && bounds.min <= meta.min_time_unix_nano
                && meta.max_time_unix_nano <= bounds.max
        });
    if answered.is_empty() {
        return Ok(None);
    }

    // The rollups' combinations, in the table's column types, counts as Int64 like count(*).
    let table_schema = table.schema();
    let mut fields: Vec<Field> = Vec::new();
    for name in &needed {
        fields.push(table_schema.field_with_name(name)?.clone());
    }
    fields.push(Field::new(ROWS_COLUMN, DataType::Int64, false));
    let schema = Arc::new(Schema::new(fields));
    let mut batches = Vec::with_capacity(answered.len());
    for part in &answered {
        let rollup = part.rollup().expect("partitioned on having a rollup");
        let projected = rollup
            .project(&wanted)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        batches.push(conform(&projected, &schema)?);
    }
    let rollups = MemTable::try_new(schema, vec![batches])?;
    let mut from_rollups = LogicalPlanBuilder::scan(
        scan.table_name.clone(),
        provider_as_source(Arc::new(rollups)),
        None,
    )?;
    if let Some(predicate) = conjunction(on_columns) {
        from_rollups = from_rollups.filter(predicate)?;
    }
    let kept: Vec<Expr> = groups
        .iter()
        .map(String::as_str)
        .chain([ROWS_COLUMN])
        .map(|c| col(Column::new(Some(scan.table_name.clone()), c)))
        .collect();
    let from_rollups = from_rollups.project(kept)?.build()?;

    // The same count over the other parts and the memtable.
    let remainder = Arc::new(table.restricted_to(rest));
    let remainder_input = Arc::unwrap_or_clone(aggregate.input.clone())
        .transform_up(|node| match node {
            LogicalPlan::TableScan(mut s) if s.table_name == scan.table_name => {
                s.source = provider_as_source(remainder.clone());
                Ok(Transformed::yes(LogicalPlan::TableScan(s)))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data;
    let from_rows = LogicalPlanBuilder::from(remainder_input)
        .aggregate(
            aggregate.group_expr.clone(),
            [count(lit(1i64)).alias(ROWS_COLUMN)],
        )?
        .build()?;

    let union = LogicalPlanBuilder::from(from_rollups)
        .union(from_rows)?
        .build()?;
    let union_columns: Vec<Expr> = union
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    let (group_columns, rows) = union_columns.split_at(groups.len());
    let summed = LogicalPlanBuilder::from(union)
        .aggregate(
            group_columns.to_vec(),
            [sum(rows[0].clone()).alias(ROWS_COLUMN)],
        )?
        .build()?;

    // The original aggregate's output: its names and qualifiers, every count the sum.
    let summed_columns = summed.schema().columns();
    let total = cast(
        coalesce(vec![
            Expr::Column(summed_columns[groups.len()].clone()),
            lit(0i64),
        ]),
        DataType::Int64,
    );
    let output: Vec<Expr> = aggregate
        .schema
        .iter()
        .enumerate()
        .map(|(i, (qualifier, field))| {
            let value = match summed_columns.get(i) {
                Some(c) if i < groups.len() => Expr::Column(c.clone()),
                _ => total.clone(),
            };
            value.alias_qualified(qualifier.cloned(), field.name())
        })
        .collect();
    Ok(Some(
        LogicalPlanBuilder::from(summed).project(output)?.build()?,
    ))
}

/// The table scan an aggregate reads through at most a filter and plain column projections.
fn scan_under(input: &LogicalPlan) -> Option<&TableScan> {
    match input {
        LogicalPlan::TableScan(scan) => Some(scan),
        LogicalPlan::Filter(filter) => scan_under(&filter.input),
        LogicalPlan::Projection(projection)
            if projection.expr.iter().all(|e| matches!(e, Expr::Column(_))) =>
        {
            scan_under(&projection.input)
        }
        _ => None,
    }
}

/// Every filter between an aggregate and its scan, and the scan's own.
fn filters_of(input: &LogicalPlan, scan: &TableScan) -> Vec<Expr> {
    let mut filters: Vec<Expr> = scan.filters.clone();
    let mut node = input;
    loop {
        match node {
            LogicalPlan::Filter(filter) => {
                filters.extend(split_conjunction(&filter.predicate).into_iter().cloned());
                node = &filter.input;
            }
            LogicalPlan::Projection(projection) => node = &projection.input,
            _ => return filters,
        }
    }
}

/// The aggregate as a count over `table` that rollups can answer: only `count` of a literal
/// (`count(*)`), no `DISTINCT` or `FILTER`; grouped by nothing or by rollup columns; filters
/// that bound the time column or name rollup columns only (and are not volatile).
fn recognise(aggregate: &Aggregate, table: &SnapshotTable, scan: &TableScan) -> Option<CountScan> {
    if !table.rollups_allowed() || scan.fetch.is_some() || aggregate.aggr_expr.is_empty() {
        return None;
    }
    let rollup = rollup_columns(table.signal);
    let mut groups = Vec::with_capacity(aggregate.group_expr.len());
    for expr in &aggregate.group_expr {
        match expr {
            Expr::Column(Column { name, .. })
                if rollup.contains(&name.as_str()) && !groups.contains(name) =>
            {
                groups.push(name.clone())
            }
            _ => return None,
        }
    }
    if !aggregate.aggr_expr.iter().all(is_count_star) {
        return None;
    }
    // Each filter either bounds the time column or names rollup columns only.
    let time = time_column(table.signal);
    let (mut bounds, mut on_columns) = (Vec::new(), Vec::new());
    let mut needed = groups.clone();
    for filter in filters_of(&aggregate.input, scan) {
        if bounds.contains(&filter) || on_columns.contains(&filter) {
            continue;
        }
        if TimeBounds::only_bounds(time, std::slice::from_ref(&filter)) {
            bounds.push(filter);
            continue;
        }
        let columns = filter.column_refs();
        if filter.is_volatile() || !columns.iter().all(|c| rollup.contains(&c.name.as_str())) {
            return None;
        }
        for c in columns {
            if !needed.contains(&c.name) {
                needed.push(c.name.clone());
            }
        }
        on_columns.push(filter);
    }
    Some(CountScan {
        groups,
        bounds,
        on_columns,
        needed,
    })
}

fn is_count_star(expr: &Expr) -> bool {
    let expr = match expr {
        Expr::Alias(alias) => alias.expr.as_ref(),
        other => other,
    };
    let Expr::AggregateFunction(AggregateFunction { func, params }) = expr else {
        return false;
    };
    func.inner().is::<Count>()
        && !params.distinct
        && params.filter.is_none()
        && params.order_by.is_empty()
        && matches!(params.args.as_slice(), [Expr::Literal(v, _)] if !v.is_null())
}
