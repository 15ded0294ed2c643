//! The `[query]` section of the configuration file.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Most rows a SQL query returns; the answer says `truncated` when there were more.
    pub sql_max_rows: usize,
    /// Most bytes (in memory, as Arrow) a SQL answer holds; the answer is cut there and says
    /// `truncated`. Also the most one call of a growing function (`repeat`, `lpad`, `range`, …)
    /// may make.
    pub sql_max_bytes: u64,
    /// Most bytes one value made by a growing function may take; past it the query is refused.
    pub sql_max_value_bytes: u64,
    /// Queries (SQL, searches, trace lookups, health and graph queries) running at once; one
    /// more is answered 429 with a retry delay.
    pub max_concurrent: usize,
    /// Threads of the runtime queries, the API and alert evaluation run on, apart from the
    /// receivers' (0: one per core).
    pub threads: usize,
    /// Time limit of one SQL query or search, in seconds; past it the query is cancelled (504).
    pub query_timeout_secs: u64,
    /// Memory SQL queries may use together for sorts, joins and aggregations, in bytes (taken
    /// from `[store] memory_budget_bytes` as they grow); past it, or when the budget is taken,
    /// they spill to temporary files, and fail with the engine's "resources exhausted" message
    /// when they cannot.
    pub sql_memory_limit_bytes: usize,
    /// Most spans a trace view returns; a bigger trace is cut (earliest spans kept) and marked
    /// `truncated`.
    pub trace_max_spans: usize,
    /// Most traces one search page may ask for (`limit`).
    pub search_max_limit: usize,
    /// Decoded span-metric and service-graph points of Parquet parts kept between queries
    /// (service health, the dependency graph), in bytes; the least recently used parts are
    /// dropped first. 0 keeps none.
    pub span_metrics_cache_bytes: usize,
    /// Most series one PromQL query may read; past it the query fails (`execution`).
    pub promql_max_series: usize,
    /// Most points one PromQL query may hold, read and computed; past it the query fails.
    pub promql_max_samples: usize,
    /// What each stored metric series exposes to PromQL (its labels), kept between queries so
    /// that a query reads only the value columns of series seen before; in bytes, 0 keeps
    /// none. Emptied when full.
    pub promql_series_cache_bytes: usize,
    /// How far back a PromQL instant selector looks for a series' newest sample, in seconds.
    pub promql_lookback_delta_secs: u64,
    /// Resource attributes that become labels of every metric series (as Prometheus's
    /// `promote_resource_attributes`); `service.name`, `service.namespace` and
    /// `service.instance.id` always become `job` and `instance`.
    pub promote_resource_attributes: Vec<String>,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            sql_max_rows: 10_000,
            sql_max_bytes: 64 << 20,
            sql_max_value_bytes: 16 << 20,
            max_concurrent: 16,
            threads: 0,
            query_timeout_secs: 30,
            sql_memory_limit_bytes: 512 << 20,
            trace_max_spans: 50_000,
            search_max_limit: 1_000,
            span_metrics_cache_bytes: 64 << 20,
            promql_max_series: 50_000,
            promql_max_samples: 5_000_000,
            promql_series_cache_bytes: 64 << 20,
            promql_lookback_delta_secs: 300,
            promote_resource_attributes: Vec::new(),
        }
    }
}

impl QueryConfig {
    pub fn query_timeout(&self) -> Duration {
        Duration::from_secs(self.query_timeout_secs)
    }

    /// The query caches' standing share of the memory budget.
    pub fn cache_bytes(&self) -> u64 {
        (self.span_metrics_cache_bytes as u64).saturating_add(self.promql_series_cache_bytes as u64)
    }

    /// What one PromQL query may use.
    pub fn promql_limits(&self) -> crate::promql::Limits {
        crate::promql::Limits {
            max_series: self.promql_max_series,
            max_samples: self.promql_max_samples,
            timeout: self.query_timeout(),
            lookback: Duration::from_secs(self.promql_lookback_delta_secs),
            ..crate::promql::Limits::default()
        }
    }
}
