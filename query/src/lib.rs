//! `spyglass-query`: answers questions over store snapshots.
//!
//! It owns the DataFusion session and the table providers over [`spyglass_store::Snapshot`]s
//! (`spans`, `metrics`, `logs`, and tables other crates supply, such as `alerts`), read-only SQL with limits, trace assembly, trace search,
//! service health and the dependency graph. It must not know OTLP, HTTP or how the store lays out
//! its files beyond what a snapshot exposes; DataFusion types do not leave this crate.
//!
//! ```text
//!  question ─▶ QueryEngine ─▶ Snapshot (manifest version + memtables)
//!                 │  trace by id ─▶ trace index (no time range) ─▶ parts + memtable ─▶ tree
//!                 │  search ──────▶ trace index candidates + memtable scan ─▶ span check ─▶ summaries
//!                 │  SQL ─────────▶ DataFusion over pruned Parquet parts ∪ memtable batches
//!                 └  health, graph ─▶ span-metrics series in the metrics table
//! ```

mod bounded;
mod config;
mod error;
mod graph;
mod health;
mod logs;
mod metrics;
mod pool;
pub mod promql;
mod rollup;
mod search;
mod sql;
mod stats;
mod supplied;
mod tables;
mod trace;

use std::sync::Arc;

use spyglass_store::{Snapshot, Store};

/// The store's plain data types (spans, ids, attribute values), for the API layer.
pub use spyglass_store::model;

pub use config::QueryConfig;
pub use error::{Error, ErrorKind, Result};
pub use graph::{Dependencies, Edge, Node};
pub use health::{Health, OperationHealth, ServiceHealth, Stepped};
pub use logs::{LogCursor, LogPage, LogSearch};
pub use metrics::{Aggregation, MetricInfo, SeriesQuery, SeriesResult};
pub use search::{Cursor, SamplePoint, SearchPage, TraceSample, TraceSearch, TraceSummary};
pub use sql::{SqlOutput, check_read_only_sql};
pub use stats::{QueryKind, QueryStats};
pub use supplied::BatchSource;
pub use trace::{Trace, TraceSpan};

/// Tables other crates supply, by name.
type SuppliedTables = Vec<(String, Arc<dyn BatchSource>)>;

/// The query side of Spyglass: cheap to clone, shared by the HTTP API and alerting.
#[derive(Clone)]
pub struct QueryEngine {
    store: Store,
    config: Arc<QueryConfig>,
    /// Shared by every query: the memory pool (`sql_memory_limit_bytes`) and the cache of
    /// Parquet footers, so a part's footer is parsed once, not once per query.
    runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
    stats: Arc<QueryStats>,
    /// The key columns of each span-metric and service-graph series seen, by series id.
    series_keys: Arc<health::SeriesKeys>,
    /// What each stored metric series exposes to PromQL, by series id.
    exposed: Arc<promql::ExposedCache>,
    /// The span-metric and service-graph points of parts already read, by part.
    points: Arc<health::PointCache>,
    /// Tables other crates supply (`alerts`), by name.
    supplied: Arc<std::sync::RwLock<SuppliedTables>>,
    /// Permits for queries from the API (`max_concurrent`); see [`QueryEngine::try_admit`].
    admission: Arc<tokio::sync::Semaphore>,
    /// The caches' standing share of the store's memory budget.
    _caches: Arc<spyglass_store::Reserved>,
}

impl QueryEngine {
    pub fn new(store: Store, config: QueryConfig) -> Self {
        let memory = store.memory();
        let caches = memory.hold(spyglass_store::Share::Caches, config.cache_bytes());
        let pool = pool::BudgetPool::new(config.sql_memory_limit_bytes, memory);
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(pool))
            .build_arc()
            .expect("a runtime of a memory pool and a lazily created spill directory builds");
        let admission = Arc::new(tokio::sync::Semaphore::new(config.max_concurrent.max(1)));
        Self {
            store,
            points: Arc::new(health::PointCache::new(config.span_metrics_cache_bytes)),
            config: Arc::new(config),
            runtime,
            stats: Arc::default(),
            series_keys: Arc::default(),
            exposed: Arc::default(),
            supplied: Arc::default(),
            admission,
            _caches: Arc::new(caches),
        }
    }

    /// A permit for one query from the API, held while it runs; `None` when `max_concurrent`
    /// queries run already (the caller answers 429). Alert evaluation does not take one: it
    /// must not be turned away by readers.
    pub fn try_admit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.admission.clone().try_acquire_owned().ok()
    }

    /// Makes `source` queryable with SQL as the table `name`, in this engine and its clones.
    pub fn supply_table(&self, name: &str, source: Arc<dyn BatchSource>) {
        let mut supplied = self.supplied.write().unwrap_or_else(|e| e.into_inner());
        supplied.retain(|(n, _)| n != name);
        supplied.push((name.to_owned(), source));
    }

    pub fn config(&self) -> &QueryConfig {
        &self.config
    }

    /// Latency per kind of query, for `/metrics`.
    pub fn stats(&self) -> &QueryStats {
        &self.stats
    }

    /// Bytes of decoded span-metric points kept for health and graph queries, for `/metrics`.
    pub fn span_metrics_cache_bytes(&self) -> usize {
        self.points.bytes()
    }

    /// What the PromQL series cache holds (`promql_series_cache_bytes`), estimated.
    pub fn promql_series_cache_bytes(&self) -> usize {
        self.exposed.bytes()
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        self.store.snapshot()
    }
}
