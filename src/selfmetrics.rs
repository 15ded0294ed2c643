//! `/metrics`: the process's own metrics in the OpenMetrics text format, read from each
//! component's counters at scrape time (the components keep plain atomics and know nothing of
//! Prometheus).

use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use spyglass_ingest::{Ingest, Protocol};
use spyglass_query::{QueryEngine, QueryKind};
use spyglass_store::stats::Histogram;
use spyglass_store::{Signal, Store};
use spyglass_ui::Exposition;

/// What `/metrics` reads.
pub struct Sources {
    pub store: Store,
    /// Its counters and its span-metrics generator.
    pub ingest: Ingest,
    pub query: QueryEngine,
    pub alerting: spyglass_alerting::Alerting,
}

/// The sources, once the store is open (until then `/metrics` is empty).
struct Late(Arc<OnceLock<Sources>>);

impl std::fmt::Debug for Late {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("spyglass components")
    }
}

pub fn exposition(sources: Arc<OnceLock<Sources>>) -> Exposition {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Late(sources)));
    let registry = Arc::new(registry);
    Arc::new(move || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    })
}

const PROTOCOLS: [(Protocol, &str); 2] = [(Protocol::Grpc, "grpc"), (Protocol::Http, "http")];

type Labels = Vec<(&'static str, &'static str)>;

/// Encodes each labelled value; a single value without labels is written bare (`name 3`, not
/// `name{} 3`).
fn each<T>(
    mut metric: MetricEncoder,
    values: &[(Labels, T)],
    encode: impl Fn(MetricEncoder, &T) -> std::fmt::Result,
) -> std::fmt::Result {
    if let [(labels, value)] = values
        && labels.is_empty()
    {
        return encode(metric, value);
    }
    for (labels, value) in values {
        encode(metric.encode_family(labels)?, value)?;
    }
    Ok(())
}

fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Labels, u64)],
) -> std::fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    each(metric, values, |m, v| ConstCounter::new(*v).encode(m))
}

fn gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Labels, i64)],
) -> std::fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    each(metric, values, |m, v| ConstGauge::new(*v).encode(m))
}

fn histograms(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Labels, &Histogram)],
) -> std::fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    each(metric, values, |mut m, h| {
        let s = h.snapshot();
        m.encode_histogram::<NoLabelSet>(s.sum_seconds, s.count, &s.cumulative, None)
    })
}

impl Collector for Late {
    fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
        match self.0.get() {
            Some(sources) => sources.encode(encoder),
            None => Ok(()),
        }
    }
}

impl Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let per_signal_protocol = |read: &dyn Fn(Signal, Protocol) -> u64| {
            Signal::ALL
                .iter()
                .flat_map(|&signal| {
                    PROTOCOLS.iter().map(move |&(protocol, p)| {
                        (
                            vec![("signal", signal.as_str()), ("protocol", p)],
                            read(signal, protocol),
                        )
                    })
                })
                .collect::<Vec<_>>()
        };
        let ingest = self.ingest.stats();
        counters(
            &mut encoder,
            "spyglass_ingest_accepted",
            "Items (spans, data points, log records) stored.",
            &per_signal_protocol(&|s, p| ingest.accepted(s, p)),
        )?;
        counters(
            &mut encoder,
            "spyglass_ingest_rejected",
            "Items dropped as invalid and reported through partial success.",
            &per_signal_protocol(&|s, p| ingest.rejected(s, p)),
        )?;
        counters(
            &mut encoder,
            "spyglass_ingest_throttled",
            "Requests answered 429 / UNAVAILABLE: retry later.",
            &per_signal_protocol(&|s, p| ingest.throttled(s, p)),
        )?;
        counters(
            &mut encoder,
            "spyglass_ingest_refused",
            "Requests refused as undecodable, too large or unauthenticated.",
            &per_signal_protocol(&|s, p| ingest.refused(s, p)),
        )?;
        gauges(
            &mut encoder,
            "spyglass_service_graph_waiting_spans",
            "Client and server spans waiting for their other side to make a service-graph edge.",
            &[(vec![], self.ingest.span_metrics().waiting() as i64)],
        )?;
        let span_metrics = self.ingest.span_metrics();
        gauges(
            &mut encoder,
            "spyglass_span_metrics_series",
            "Span-metric operations and service-graph edges kept now.",
            &[(vec![], span_metrics.series() as i64)],
        )?;
        gauges(
            &mut encoder,
            "spyglass_span_metrics_series_limit",
            "The limit of span-metric operations, and of edges ([ingest] span_metrics_max_series).",
            &[(vec![], span_metrics.max_series() as i64)],
        )?;
        counters(
            &mut encoder,
            "spyglass_span_metrics_overflow_spans",
            "Spans counted under an __overflow__ operation or edge because the limit was reached.",
            &[(vec![], span_metrics.overflowed())],
        )?;
        counters(
            &mut encoder,
            "spyglass_service_graph_dropped_spans",
            "Waiting spans dropped unpaired because service_graph_max_pending were waiting; \
             their edges are not counted.",
            &[(vec![], self.ingest.span_metrics().dropped_pending())],
        )?;

        gauges(
            &mut encoder,
            "spyglass_wal_durability",
            "The WAL's durability mode in use ([store] durability), as a label; always 1.",
            &[(vec![("mode", self.store.config().durability.as_str())], 1)],
        )?;
        let wal = self.store.wal_stats();
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        counters(
            &mut encoder,
            "spyglass_wal_bytes_written",
            "Bytes appended to the write-ahead log.",
            &[(vec![], wal.bytes_written_total.load(relaxed))],
        )?;
        counters(
            &mut encoder,
            "spyglass_wal_write_failures",
            "Failed WAL writes or fsyncs (nothing of those groups was acknowledged).",
            &[(vec![], wal.write_failures_total.load(relaxed))],
        )?;
        histograms(
            &mut encoder,
            "spyglass_wal_fsync_seconds",
            "Time of each WAL fsync.",
            &[(vec![], &wal.fsync_seconds)],
        )?;
        gauges(
            &mut encoder,
            "spyglass_wal_segments",
            "WAL segment files on disk.",
            &[(vec![], self.store.wal_segments() as i64)],
        )?;
        gauges(
            &mut encoder,
            "spyglass_memtable_bytes",
            "Bytes held by the memtables (including one being flushed).",
            &[(vec![], self.store.memtable_bytes() as i64)],
        )?;
        gauges(
            &mut encoder,
            "spyglass_footer_cache_bytes",
            "Parsed Parquet footers kept for reuse (at most 64 MiB; least recently used dropped).",
            &[(vec![], self.store.footer_cache_bytes() as i64)],
        )?;
        let memory = self.store.memory();
        gauges(
            &mut encoder,
            "spyglass_memory_budget_bytes",
            "The process's memory budget ([store] memory_budget_bytes).",
            &[(vec![], memory.total() as i64)],
        )?;
        let shares =
            spyglass_store::Share::ALL.map(|share| (vec![("share", share.as_str())], share));
        gauges(
            &mut encoder,
            "spyglass_memory_reserved_bytes",
            "Bytes of the memory budget each share holds.",
            &shares
                .clone()
                .map(|(l, s)| (l, memory.reserved_by(s) as i64)),
        )?;
        counters(
            &mut encoder,
            "spyglass_memory_refused",
            "Reservations refused for lack of room in the memory budget (requests told to retry, \
             compactions deferred, SQL queries that could not grow).",
            &shares.map(|(l, s)| (l, memory.refused(s))),
        )?;
        let stats = self.store.stats();
        counters(
            &mut encoder,
            "spyglass_store_throttled",
            "Appends refused for lack of memtable room.",
            &[(vec![], stats.throttled_total.load(relaxed))],
        )?;
        histograms(
            &mut encoder,
            "spyglass_flush_seconds",
            "Time of each memtable flush to Parquet parts and their index.",
            &[(vec![], &stats.flush_seconds)],
        )?;
        histograms(
            &mut encoder,
            "spyglass_compaction_seconds",
            "Time of each compaction of an hour's small parts.",
            &[(vec![], &stats.compaction_seconds)],
        )?;
        let snapshot = self.store.snapshot();
        let parts: Vec<_> = Signal::ALL
            .iter()
            .map(|&signal| (signal, snapshot.parts(signal)))
            .collect();
        gauges(
            &mut encoder,
            "spyglass_parts",
            "Parquet parts in the manifest.",
            &parts
                .iter()
                .map(|(signal, parts)| (vec![("signal", signal.as_str())], parts.len() as i64))
                .collect::<Vec<_>>(),
        )?;
        gauges(
            &mut encoder,
            "spyglass_part_bytes",
            "Bytes of the parts in the manifest, their trace index included.",
            &parts
                .iter()
                .map(|(signal, parts)| {
                    let bytes: u64 = parts
                        .iter()
                        .map(|p| p.meta().bytes + p.meta().index_bytes)
                        .sum();
                    (vec![("signal", signal.as_str())], bytes as i64)
                })
                .collect::<Vec<_>>(),
        )?;
        gauges(
            &mut encoder,
            "spyglass_query_span_metrics_cache_bytes",
            "Decoded span-metric points of parts kept for health and graph queries.",
            &[(vec![], self.query.span_metrics_cache_bytes() as i64)],
        )?;
        gauges(
            &mut encoder,
            "spyglass_query_promql_series_cache_bytes",
            "Labels of metric series kept for PromQL queries (estimated).",
            &[(vec![], self.query.promql_series_cache_bytes() as i64)],
        )?;
        histograms(
            &mut encoder,
            "spyglass_query_seconds",
            "Time to answer a query, by kind (failed queries included).",
            &QueryKind::ALL
                .iter()
                .map(|&kind| {
                    (
                        vec![("kind", kind.as_str())],
                        self.query.stats().seconds(kind),
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        self.encode_alerting(&mut encoder)
    }

    fn encode_alerting(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        use spyglass_alerting::AlertState;
        let alerts = self.alerting.alerts(false);
        let count = |state: AlertState| alerts.iter().filter(|(_, _, a)| a.state == state).count();
        gauges(
            encoder,
            "spyglass_alerts",
            "Alert instances by state.",
            &[
                (
                    vec![("state", "pending")],
                    count(AlertState::Pending) as i64,
                ),
                (vec![("state", "firing")], count(AlertState::Firing) as i64),
            ],
        )?;
        let (evaluations, failures, reload_failures, reload_ok) = self.alerting.read(|s| {
            (
                s.evaluations_total,
                s.evaluation_failures_total,
                s.reloads_failed_total,
                s.reload_error.is_none(),
            )
        });
        counters(
            encoder,
            "spyglass_rule_evaluations",
            "Evaluation rounds of the alert rules.",
            &[(vec![], evaluations)],
        )?;
        counters(
            encoder,
            "spyglass_rule_evaluation_failures",
            "Rule evaluations that failed (the rule's last error is in the rules API).",
            &[(vec![], failures)],
        )?;
        counters(
            encoder,
            "spyglass_rules_reload_failures",
            "Reloads of the rule files refused for a mistake in them.",
            &[(vec![], reload_failures)],
        )?;
        gauges(
            encoder,
            "spyglass_rules_last_reload_successful",
            "1 when the last reload of the rule files loaded, 0 when it was refused.",
            &[(vec![], i64::from(reload_ok))],
        )
    }
}
