//! Span metrics and the service graph, generated at ingest (as Tempo's metrics-generator and
//! Jaeger's SPM do), so health pages and alert rules read small pre-aggregated series instead of
//! scanning spans.
//!
//! Series written into the `metrics` table (cumulative, resource `service.name` = the service):
//!
//! | metric | type | attributes |
//! |---|---|---|
//! | `spyglass.span.calls` | monotonic sum | `span.name`, `span.kind`, `status.code` |
//! | `spyglass.span.errors` | monotonic sum | `span.name`, `span.kind` |
//! | `spyglass.span.duration` | histogram, seconds | `span.name`, `span.kind`, `status.code` |
//! | `spyglass.service_graph.calls` | monotonic sum | `client`, `server`, `connection_type` |
//! | `spyglass.service_graph.failures` | monotonic sum | `client`, `server`, `connection_type` |
//! | `spyglass.service_graph.duration` | histogram, seconds | `client`, `server`, `connection_type` |
//!
//! Each duration point names up to `histogram::EXEMPLARS_PER_SERIES` (2) spans counted since the previous
//! point as exemplars (trace and span id, end time, seconds): failed ones first, then the
//! slowest, so a chart's outliers lead to their traces.
//!
//! An edge is a CLIENT or PRODUCER span and its SERVER or CONSUMER child in another service,
//! paired within `edge_wait`; its duration is the client's, and it failed when either side has an
//! error status. A client span left unanswered past the wait becomes an edge to a virtual node
//! named by `peer.service`, `db.system.name`/`db.system`, `messaging.system` or
//! `server.address`/`net.peer.name` (`connection_type` = `database`, `messaging_system` or `virtual_node`).
//! Waiting spans are bounded by `max_pending_edges`; beyond it the oldest are dropped and
//! counted.
//!
//! Series are bounded too, as Tempo bounds its generator's: past `max_series` operations (one
//! per service and span name) a new operation is counted under the span name `__overflow__`
//! of its service (or of the service `__overflow__` when the service is new as well), and past
//! `max_series` edges a new edge under `__overflow__` → `__overflow__`. Spans counted so are
//! counted in [`SpanMetrics::overflowed`]. The names `spyglass.*` are Spyglass's own: ingest
//! refuses them from clients.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, FixedSizeBinaryArray, RecordBatch, StringArray, UInt64Array};
use spyglass_store::model::{
    AttrValue, Attributes, KeyValue, MetricPoint, MetricType, NumberValue, PointValue, Resource,
    Scope, Span, SpanId, SpanKind, StatusCode, Temporality, TraceId,
};
use spyglass_store::spanmetrics as names;

/// The generator's maps, looked up several times per span: foldhash (seeded per process)
/// instead of SipHash, which cost more than the lookups themselves.
type Map<K, V> = HashMap<K, V, foldhash::quality::RandomState>;

/// The name an operation or edge is counted under past the series limit.
pub const OVERFLOW: &str = "__overflow__";

/// Series the generator keeps by default: operations, and edges.
pub const DEFAULT_MAX_SERIES: usize = 10_000;

/// Totals per `(span kind, status)` of one operation.
type ByKindStatus = BTreeMap<(&'static str, &'static str), Totals>;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct EdgeKey {
    client: String,
    server: String,
    connection_type: &'static str,
}

#[derive(Clone, Debug, Default)]
struct Totals {
    calls: u64,
    errors: u64,
    duration: Histogram,
}

/// What the generator keeps of a span waiting for the other end of its edge.
#[derive(Clone, Debug)]
struct Observation {
    service: String,
    error: bool,
    seconds: f64,
    trace: TraceId,
    span: SpanId,
    time: u64,
    /// Where an unanswered client call went, and what kind of node that is.
    peer: Option<(String, &'static str)>,
}

impl Observation {
    /// What to keep of row `row`, whose edge end `end` is already known.
    fn of(spans: &SpanColumns<'_>, row: usize, kind: SpanKind, end: EdgeEnd<'_>) -> Self {
        Self {
            service: end.service.to_owned(),
            error: end.error,
            seconds: end.seconds,
            trace: end.trace,
            span: end.span,
            time: end.time,
            peer: matches!(kind, SpanKind::Client | SpanKind::Producer)
                .then(|| spans.peer(row))
                .flatten(),
        }
    }

    fn end(&self) -> EdgeEnd<'_> {
        EdgeEnd {
            service: &self.service,
            error: self.error,
            seconds: self.seconds,
            trace: self.trace,
            span: self.span,
            time: self.time,
        }
    }
}

/// What an edge takes from each of its two spans.
#[derive(Clone, Copy)]
struct EdgeEnd<'a> {
    service: &'a str,
    error: bool,
    seconds: f64,
    trace: TraceId,
    span: SpanId,
    /// When the span ended, Unix nanoseconds.
    time: u64,
}

impl EdgeEnd<'_> {
    fn example(&self) -> Example {
        Example {
            trace: self.trace,
            span: self.span,
            time: self.time,
            seconds: self.seconds,
            error: self.error,
        }
    }
}

/// The columns of an appended `spans` batch that the generator reads.
struct SpanColumns<'a> {
    trace_id: &'a FixedSizeBinaryArray,
    span_id: &'a FixedSizeBinaryArray,
    parent_span_id: &'a FixedSizeBinaryArray,
    service: &'a StringArray,
    name: &'a StringArray,
    kind: &'a StringArray,
    status: &'a StringArray,
    start: &'a UInt64Array,
    duration: &'a UInt64Array,
    /// Promoted columns naming an unanswered client's peer, in order of preference, with the
    /// kind of node each names.
    peers: Vec<(&'a StringArray, &'static str)>,
}

impl<'a> SpanColumns<'a> {
    fn new(batch: &'a RecordBatch) -> Option<Self> {
        fn get<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Option<&'a T> {
            batch.column_by_name(name)?.as_any().downcast_ref()
        }
        let peers = [
            ("peer_service", names::VIRTUAL_NODE),
            ("db_system", names::DATABASE),
            ("messaging_system", names::MESSAGING_SYSTEM),
            ("server_address", names::VIRTUAL_NODE),
        ];
        Some(Self {
            trace_id: get(batch, "trace_id")?,
            span_id: get(batch, "span_id")?,
            parent_span_id: get(batch, "parent_span_id")?,
            service: get(batch, "service_name")?,
            name: get(batch, "name")?,
            kind: get(batch, "kind")?,
            status: get(batch, "status_code")?,
            start: get(batch, "start_time_unix_nano")?,
            duration: get(batch, "duration_nano")?,
            peers: (peers.iter())
                .map(|(column, node)| Some((get(batch, column)?, *node)))
                .collect::<Option<_>>()?,
        })
    }

    fn end(&self, row: usize) -> EdgeEnd<'a> {
        let duration = self.duration.value(row);
        EdgeEnd {
            service: self.service.value(row),
            error: self.status.value(row) == StatusCode::Error.as_str(),
            seconds: duration as f64 / 1e9,
            trace: self.trace_id(row),
            span: self.span_id(row),
            time: self.start.value(row).saturating_add(duration),
        }
    }

    fn trace_id(&self, row: usize) -> TraceId {
        TraceId(
            self.trace_id
                .value(row)
                .try_into()
                .expect("16-byte trace ids"),
        )
    }

    fn span_id(&self, row: usize) -> SpanId {
        SpanId(self.span_id.value(row).try_into().expect("8-byte span ids"))
    }

    fn parent_span_id(&self, row: usize) -> Option<SpanId> {
        (!self.parent_span_id.is_null(row))
            .then(|| SpanId((self.parent_span_id.value(row).try_into()).expect("8-byte span ids")))
    }

    /// The first non-empty peer column of `row`: `peer.service`, `db.system.name` (or
    /// `db.system`), `messaging.system`, `server.address` (or `net.peer.name`).
    fn peer(&self, row: usize) -> Option<(String, &'static str)> {
        self.peers.iter().find_map(|(column, node)| {
            (!column.is_null(row) && !column.value(row).is_empty())
                .then(|| (column.value(row).to_owned(), *node))
        })
    }
}

/// A span waiting for the other end of its edge, in arrival order.
struct Waiting {
    is_client: bool,
    key: (TraceId, SpanId),
    since: Instant,
    /// Taken when the span is paired or a retried export supersedes it.
    obs: Option<Observation>,
}

/// Waiting spans, in arrival order, numbered from `first`.
#[derive(Default)]
struct Queue {
    spans: VecDeque<Waiting>,
    first: u64,
}

impl Queue {
    fn push(&mut self, waiting: Waiting) -> u64 {
        self.spans.push_back(waiting);
        self.first + self.spans.len() as u64 - 1
    }

    /// The observation of waiting span `seq`, taken.
    fn take(&mut self, seq: u64) -> Option<Observation> {
        let at = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.spans.get_mut(at)?.obs.take()
    }

    fn pop(&mut self) -> Option<Waiting> {
        let front = self.spans.pop_front()?;
        self.first += 1;
        Some(front)
    }
}

#[derive(Default)]
struct State {
    /// Service → operation → totals; looked up by `&str`, so a known series costs no allocation.
    red: Map<String, Map<String, ByKindStatus>>,
    edges: BTreeMap<EdgeKey, Totals>,
    /// Operations in `red`, all services together.
    operations: usize,
    /// Client spans waiting for their server child: `(trace, client span id)` → place in
    /// `waiting`.
    clients: Map<(TraceId, SpanId), u64>,
    /// Server spans waiting for their client parent: `(trace, parent span id)` → place in
    /// `waiting`.
    servers: Map<(TraceId, SpanId), u64>,
    /// The waiting spans themselves. The maps stay small (32 bytes an entry), since a hundred
    /// thousand waiting spans are looked up at random, and the spans are only ever pushed and
    /// popped.
    waiting: Queue,
}

impl State {
    /// Makes a span wait under `key`, superseding one already waiting there (a retried export).
    fn wait(&mut self, is_client: bool, key: (TraceId, SpanId), since: Instant, obs: Observation) {
        let seq = self.waiting.push(Waiting {
            is_client,
            key,
            since,
            obs: Some(obs),
        });
        let map = if is_client {
            &mut self.clients
        } else {
            &mut self.servers
        };
        if let Some(old) = map.insert(key, seq) {
            self.waiting.take(old);
        }
    }
}

/// The generator. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct SpanMetrics {
    state: Arc<Mutex<State>>,
    edge_wait: Duration,
    max_pending: usize,
    started_unix_nano: u64,
    dropped_pending: Arc<AtomicU64>,
    max_series: usize,
    overflowed: Arc<AtomicU64>,
    /// Told when a new service, operation or edge appears, so that the writer writes it at
    /// once instead of at its next interval: a first span's service is listed in a moment.
    new_series: Arc<tokio::sync::Notify>,
}

impl SpanMetrics {
    pub fn new(edge_wait: Duration, max_pending: usize, started_unix_nano: u64) -> Self {
        Self {
            state: Arc::default(),
            edge_wait,
            max_pending,
            started_unix_nano,
            dropped_pending: Arc::default(),
            max_series: DEFAULT_MAX_SERIES,
            overflowed: Arc::default(),
            new_series: Arc::default(),
        }
    }

    /// Notified when a new service, operation or edge appears (see [`SpanMetricsWriter`]).
    pub fn new_series(&self) -> &tokio::sync::Notify {
        &self.new_series
    }

    /// Keeps at most `max_series` operations and as many edges (see the module's docs).
    pub fn with_max_series(mut self, max_series: usize) -> Self {
        self.max_series = max_series.max(1);
        self
    }

    /// The series limit, for `/metrics`.
    pub fn max_series(&self) -> usize {
        self.max_series
    }

    /// Operations and edges kept now.
    pub fn series(&self) -> usize {
        let state = self.state.lock().expect("span metrics lock");
        state.operations + state.edges.len()
    }

    /// Spans counted under an overflow series because the limit was reached.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Waiting spans dropped because the bound was reached.
    pub fn dropped_pending(&self) -> u64 {
        self.dropped_pending.load(Ordering::Relaxed)
    }

    /// Client and server spans now waiting for their other side.
    pub fn waiting(&self) -> usize {
        let state = self.state.lock().expect("span metrics lock");
        state.clients.len() + state.servers.len()
    }

    /// Counts model spans (see [`SpanMetrics::record_batch`]).
    pub fn record(&self, spans: &[Span], now: Instant) {
        let batch = spyglass_store::schema::spans_to_batch(spans).expect("spans make a batch");
        self.record_batch(&batch, now);
    }

    /// Counts the spans of a stored `spans` batch and pairs client and server spans into
    /// edges. Known series are found by `&str` and a span is copied only while it waits for
    /// its other end. A batch in another schema is ignored.
    pub fn record_batch(&self, batch: &RecordBatch, now: Instant) {
        let Some(spans) = SpanColumns::new(batch) else {
            tracing::error!("span metrics were given a batch that is not in the spans schema");
            return;
        };
        let mut state = self.state.lock().expect("span metrics lock");
        let series_before = (state.operations, state.edges.len());
        for row in 0..batch.num_rows() {
            let end = spans.end(row);
            let Some(kind) = SpanKind::parse(spans.kind.value(row)) else {
                continue;
            };
            let name = spans.name.value(row);
            let by_op = self.operation(&mut state, end.service, name);
            let status = if end.error { "error" } else { "ok" };
            let totals = by_op.entry((kind.as_str(), status)).or_default();
            totals.calls += 1;
            totals.errors += u64::from(end.error);
            totals.duration.record(end.example());
            match kind {
                SpanKind::Client | SpanKind::Producer => {
                    let id = (spans.trace_id(row), spans.span_id(row));
                    let server = (state.servers.remove(&id)).and_then(|s| state.waiting.take(s));
                    match server {
                        Some(server) => self.add_edge(&mut state, end, server.end()),
                        None => state.wait(true, id, now, Observation::of(&spans, row, kind, end)),
                    }
                }
                SpanKind::Server | SpanKind::Consumer => {
                    let Some(parent) = spans.parent_span_id(row) else {
                        continue;
                    };
                    let id = (spans.trace_id(row), parent);
                    let client = (state.clients.remove(&id)).and_then(|c| state.waiting.take(c));
                    match client {
                        Some(client) => self.add_edge(&mut state, client.end(), end),
                        None => state.wait(false, id, now, Observation::of(&spans, row, kind, end)),
                    }
                }
                SpanKind::Internal | SpanKind::Unspecified => {}
            }
        }
        self.expire(&mut state, now);
        if (state.operations, state.edges.len()) != series_before {
            self.new_series.notify_one();
        }
    }

    /// The totals of `service`'s operation `name`, or of an overflow operation when a new one
    /// would pass the series limit.
    fn operation<'s>(
        &self,
        state: &'s mut State,
        service: &str,
        name: &str,
    ) -> &'s mut ByKindStatus {
        let known = state
            .red
            .get(service)
            .is_some_and(|ops| ops.contains_key(name));
        let (service, name) = if known || state.operations < self.max_series {
            (service, name)
        } else {
            self.overflowed.fetch_add(1, Ordering::Relaxed);
            match state.red.get(service) {
                Some(_) => (service, OVERFLOW),
                None => (OVERFLOW, OVERFLOW),
            }
        };
        let State {
            red, operations, ..
        } = state;
        let by_service = match red.get_mut(service) {
            Some(_) => red.get_mut(service).expect("just found"),
            None => red.entry(service.to_owned()).or_default(),
        };
        if !by_service.contains_key(name) {
            *operations += 1;
            by_service.insert(name.to_owned(), ByKindStatus::default());
        }
        by_service.get_mut(name).expect("just inserted")
    }

    /// The totals of edge `key`, or of the overflow edge when a new one would pass the limit.
    fn edge<'s>(&self, state: &'s mut State, key: EdgeKey) -> &'s mut Totals {
        let key = if state.edges.len() < self.max_series || state.edges.contains_key(&key) {
            key
        } else {
            self.overflowed.fetch_add(1, Ordering::Relaxed);
            EdgeKey {
                client: OVERFLOW.into(),
                server: OVERFLOW.into(),
                connection_type: "",
            }
        };
        state.edges.entry(key).or_default()
    }

    fn add_edge(&self, state: &mut State, client: EdgeEnd<'_>, server: EdgeEnd<'_>) {
        if client.service == server.service {
            return;
        }
        let key = EdgeKey {
            client: client.service.to_owned(),
            server: server.service.to_owned(),
            connection_type: "",
        };
        let totals = self.edge(state, key);
        totals.calls += 1;
        totals.errors += u64::from(client.error || server.error);
        // The edge's example is its failing end when one failed, else the client's span.
        let example = if server.error && !client.error {
            Example {
                error: true,
                seconds: client.seconds,
                ..server.example()
            }
        } else {
            client.example()
        };
        totals.duration.record(example);
    }

    /// Settles waiting spans older than the wait (and the oldest beyond the bound).
    fn expire(&self, state: &mut State, now: Instant) {
        while let Some(front) = state.waiting.spans.front() {
            if front.obs.is_none() {
                state.waiting.pop(); // paired or superseded: nothing to settle
                continue;
            }
            let waiting = state.clients.len() + state.servers.len();
            let old = now.duration_since(front.since) >= self.edge_wait;
            if !old && waiting <= self.max_pending {
                break;
            }
            let Some(Waiting {
                is_client,
                key,
                obs: Some(obs),
                ..
            }) = state.waiting.pop()
            else {
                continue;
            };
            if is_client {
                state.clients.remove(&key);
            } else {
                state.servers.remove(&key);
            }
            if !old {
                self.dropped_pending.fetch_add(1, Ordering::Relaxed);
            } else if let Some((peer, connection_type)) = obs.peer.clone().filter(|_| is_client) {
                let example = obs.end().example();
                let key = EdgeKey {
                    client: obs.service,
                    server: peer,
                    connection_type,
                };
                let totals = self.edge(state, key);
                totals.calls += 1;
                totals.errors += u64::from(obs.error);
                totals.duration.record(example);
            }
        }
    }

    /// The cumulative series as metric points at `now_unix_nano`, after settling what waited
    /// long enough.
    pub fn points(&self, now: Instant, now_unix_nano: u64) -> Vec<MetricPoint> {
        let mut state = self.state.lock().expect("span metrics lock");
        self.expire(&mut state, now);
        let scope = Arc::new(Scope {
            name: names::SCOPE.into(),
            ..Scope::default()
        });
        let mut resources: HashMap<String, Arc<Resource>> = HashMap::new();
        let mut resource = |service: &str| {
            resources
                .entry(service.to_owned())
                .or_insert_with(|| {
                    Arc::new(Resource {
                        attributes: Attributes::new(vec![kv("service.name", service)]),
                        ..Resource::default()
                    })
                })
                .clone()
        };
        let mut out = Vec::new();
        let point = |name: &str,
                     attributes: Attributes,
                     resource: Arc<Resource>,
                     value: PointValue| MetricPoint {
            metric_name: name.to_owned(),
            description: String::new(),
            unit: if matches!(value, PointValue::Histogram { .. }) {
                "s".into()
            } else {
                "{call}".into()
            },
            metric_type: if matches!(value, PointValue::Histogram { .. }) {
                MetricType::Histogram
            } else {
                MetricType::Sum
            },
            temporality: Temporality::Cumulative,
            is_monotonic: !matches!(value, PointValue::Histogram { .. }),
            attributes,
            time_unix_nano: now_unix_nano,
            start_time_unix_nano: self.started_unix_nano,
            flags: 0,
            value,
            exemplars: Vec::new(),
            resource,
            scope: scope.clone(),
        };
        let State { red, edges, .. } = &mut *state;
        let red = red.iter_mut().flat_map(|(service, ops)| {
            ops.iter_mut().flat_map(move |(operation, slots)| {
                slots.iter_mut().map(move |(&(kind, status), totals)| {
                    (service, operation, kind, status, totals)
                })
            })
        });
        for (service, operation, kind, status, totals) in red {
            let labels = |with_status: bool| {
                let mut l = vec![kv(names::SPAN_NAME, operation), kv(names::SPAN_KIND, kind)];
                if with_status {
                    l.push(kv(names::STATUS_CODE, status));
                }
                Attributes::new(l)
            };
            let r = resource(service);
            out.push(point(
                names::SPAN_CALLS,
                labels(true),
                r.clone(),
                counter(totals.calls),
            ));
            if status == "error" {
                out.push(point(
                    names::SPAN_ERRORS,
                    labels(false),
                    r.clone(),
                    counter(totals.errors),
                ));
            }
            let mut duration = point(
                names::SPAN_DURATION,
                labels(true),
                r,
                histogram(&totals.duration),
            );
            duration.exemplars = totals.duration.take_exemplars();
            out.push(duration);
        }
        for (key, totals) in edges.iter_mut() {
            let labels = Attributes::new(vec![
                kv(names::CLIENT, &key.client),
                kv(names::SERVER, &key.server),
                kv(names::CONNECTION_TYPE, key.connection_type),
            ]);
            let r = resource(&key.client);
            out.push(point(
                names::GRAPH_CALLS,
                labels.clone(),
                r.clone(),
                counter(totals.calls),
            ));
            out.push(point(
                names::GRAPH_FAILURES,
                labels.clone(),
                r.clone(),
                counter(totals.errors),
            ));
            let mut duration = point(
                names::GRAPH_DURATION,
                labels,
                r,
                histogram(&totals.duration),
            );
            duration.exemplars = totals.duration.take_exemplars();
            out.push(duration);
        }
        out
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: AttrValue::Str(value.to_owned()),
    }
}

fn counter(n: u64) -> PointValue {
    PointValue::Number(NumberValue::Int(n as i64))
}

mod histogram;
#[cfg(test)]
mod tests;
mod writer;

pub use histogram::DURATION_BOUNDS;
use histogram::{Example, Histogram, histogram};
pub use writer::SpanMetricsWriter;
