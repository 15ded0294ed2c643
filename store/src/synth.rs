//! A realistic synthetic span generator, shared by benchmarks, tests and the demo.
//!
//! Traces of 5–40 spans cross a small shop of services (frontend, checkout, cart, payments,
//! inventory, shipping) with database, cache and gRPC client calls. Every span carries the
//! resource's 10 attributes and about 10 attributes of the HTTP, database or RPC semantic
//! conventions; about one span in ten records an exception event with a stack trace.
//! Deterministic for a seed. [`SpanGenerator::with_common_values`] makes the values searches
//! meet common, as in production, instead of spread evenly.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::model::{
    AttrValue, Attributes, KeyValue, Resource, Scope, Span, SpanEvent, SpanId, SpanKind,
    StatusCode, TraceId,
};

/// The services of the synthetic shop.
pub const SERVICES: [&str; 6] = [
    "frontend",
    "checkout",
    "cart",
    "payments",
    "inventory",
    "shipping",
];
const ROUTES: [&str; 8] = [
    "/api/cart",
    "/api/checkout",
    "/api/products/{id}",
    "/api/orders/{id}",
    "/api/shipping/quote",
    "/api/payments/charge",
    "/api/inventory/reserve",
    "/health",
];
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const TABLES: [&str; 5] = ["orders", "carts", "products", "payments", "shipments"];
const OPERATIONS: [&str; 4] = ["SELECT", "INSERT", "UPDATE", "DELETE"];
const RPCS: [(&str, &str); 5] = [
    ("CartService", "GetCart"),
    ("CartService", "AddItem"),
    ("PaymentService", "Charge"),
    ("InventoryService", "Reserve"),
    ("ShippingService", "Quote"),
];
const EXCEPTIONS: [(&str, &str); 4] = [
    (
        "TimeoutError",
        "deadline exceeded after 2000ms calling payments",
    ),
    (
        "ConnectionResetError",
        "connection reset by peer while reading response",
    ),
    ("ValueError", "invalid quantity for product sku-4411: -1"),
    (
        "DatabaseError",
        "could not serialize access due to concurrent update",
    ),
];

/// Generates traces; see the module doc for their shape.
pub struct SpanGenerator {
    rng: StdRng,
    resources: Vec<Arc<Resource>>,
    scope: Arc<Scope>,
    now_unix_nano: u64,
    trace_interval_nano: u64,
    common: bool,
}

fn kv(key: &str, value: AttrValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value,
    }
}

fn s(v: impl Into<String>) -> AttrValue {
    AttrValue::Str(v.into())
}

impl SpanGenerator {
    /// Traces start at `start_unix_nano` and move forward 1 ms per trace (see
    /// [`SpanGenerator::with_trace_interval`]).
    pub fn new(seed: u64, start_unix_nano: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut resources = Vec::new();
        for service in SERVICES {
            for instance in 0..3 {
                let pod = format!("{service}-{:08x}-{instance}", rng.random::<u32>());
                resources.push(Arc::new(Resource {
                    attributes: Attributes::new(vec![
                        kv("service.name", s(service)),
                        kv("service.version", s("1.4.2")),
                        kv("service.namespace", s("shop")),
                        kv(
                            "service.instance.id",
                            s(format!("{pod}-{:016x}", rng.random::<u64>())),
                        ),
                        kv("deployment.environment.name", s("production")),
                        kv("host.name", s(pod.clone())),
                        kv("k8s.pod.name", s(pod)),
                        kv("k8s.namespace.name", s("shop")),
                        kv("telemetry.sdk.language", s("rust")),
                        kv("telemetry.sdk.version", s("0.31.0")),
                    ]),
                    dropped_attributes_count: 0,
                    schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                }));
            }
        }
        let scope = Arc::new(Scope {
            name: "spyglass-synth".into(),
            version: "1.0.0".into(),
            ..Scope::default()
        });
        Self {
            rng,
            resources,
            scope,
            now_unix_nano: start_unix_nano,
            trace_interval_nano: 1_000_000,
            common: false,
        }
    }

    /// Values as common as production's: most spans in a few services (a call goes to
    /// checkout four times in ten and to cart three times), `http.route` one of five values,
    /// a `shop.tenant` of five on every span of a trace (each value on a fifth of all spans),
    /// and traces of 3–12 spans lasting 1–30 ms.
    pub fn with_common_values(mut self) -> Self {
        self.common = true;
        self
    }

    /// Spaces trace starts `nanos` apart instead of 1 ms (to spread a data set over hours).
    pub fn with_trace_interval(mut self, nanos: u64) -> Self {
        self.trace_interval_nano = nanos;
        self
    }

    fn resource(&mut self, service: usize) -> Arc<Resource> {
        let instance = self.rng.random_range(0..3);
        self.resources[service * 3 + instance].clone()
    }

    fn id<const N: usize>(&mut self) -> [u8; N] {
        let mut id = [0u8; N];
        self.rng.fill(&mut id[..]);
        id[0] |= 1; // never all zeros
        id
    }

    /// At least `n` spans, in whole traces.
    pub fn spans(&mut self, n: usize) -> Vec<Span> {
        let mut out = Vec::with_capacity(n + 40);
        while out.len() < n {
            out.extend(self.trace());
        }
        out
    }

    /// One trace of 5–40 spans (3–12 with common values).
    pub fn trace(&mut self) -> Vec<Span> {
        let trace_id = TraceId(self.id());
        let count = match self.common {
            true => self.rng.random_range(3..=12),
            false => self.rng.random_range(5..=40),
        };
        self.now_unix_nano += self.trace_interval_nano;
        let start = self.now_unix_nano;
        let mut spans: Vec<Span> = Vec::with_capacity(count);
        let root_duration = match self.common {
            true => self.rng.random_range(1_000_000..=30_000_000u64),
            false => self.rng.random_range(5_000_000..400_000_000u64),
        };
        spans.push(self.http_server_span(trace_id, None, 0, start, root_duration));
        while spans.len() < count {
            let parent = &spans[self.rng.random_range(0..spans.len())];
            let (parent_id, parent_start, parent_end) = (
                parent.span_id,
                parent.start_time_unix_nano,
                parent.end_time_unix_nano,
            );
            let parent_service = SERVICES
                .iter()
                .position(|s| *s == parent.service_name())
                .unwrap_or(0);
            let span_start =
                parent_start + self.rng.random_range(0..=(parent_end - parent_start) / 2);
            let duration = self.rng.random_range(1..=(parent_end - span_start).max(2));
            let span = match self.rng.random_range(0..10) {
                0..=3 => self.db_span(trace_id, parent_id, parent_service, span_start, duration),
                4..=6 => {
                    self.rpc_client_span(trace_id, parent_id, parent_service, span_start, duration)
                }
                _ => {
                    let callee = match self.common {
                        true => [1, 1, 1, 1, 2, 2, 2, 3, 4, 5][self.rng.random_range(0..10)],
                        false => self.rng.random_range(1..SERVICES.len()),
                    };
                    self.http_server_span(trace_id, Some(parent_id), callee, span_start, duration)
                }
            };
            spans.push(span);
        }
        if self.common {
            let tenant = s(format!("tenant-{}", self.rng.random_range(0..5)));
            for span in &mut spans {
                let mut kvs: Vec<KeyValue> = span.attributes.iter().cloned().collect();
                kvs.push(kv("shop.tenant", tenant.clone()));
                span.attributes = Attributes::new(kvs);
            }
        }
        spans
    }

    fn base(
        &mut self,
        trace_id: TraceId,
        parent: Option<SpanId>,
        service: usize,
        start: u64,
        duration: u64,
    ) -> Span {
        let mut span = Span {
            trace_id,
            span_id: SpanId(self.id()),
            parent_span_id: parent,
            flags: 1,
            start_time_unix_nano: start,
            end_time_unix_nano: start + duration,
            resource: self.resource(service),
            scope: self.scope.clone(),
            ..Span::default()
        };
        if self.rng.random_range(0..10) == 0 {
            let (ty, message) = EXCEPTIONS[self.rng.random_range(0..EXCEPTIONS.len())];
            let line = self.rng.random_range(10..900);
            span.status_code = StatusCode::Error;
            span.status_message = message.to_owned();
            span.events.push(SpanEvent {
                time_unix_nano: start + duration / 2,
                name: "exception".into(),
                attributes: Attributes::new(vec![
                    kv("exception.type", s(ty)),
                    kv("exception.message", s(message)),
                    kv("exception.stacktrace", s(format!("{ty}: {message}\n    at shop::{}::handle (src/handler.rs:{line})\n    at shop::server::dispatch (src/server.rs:212)\n    at tokio::runtime::task::poll (task.rs:480)", SERVICES[service]))),
                ]),
                dropped_attributes_count: 0,
            });
        }
        span
    }

    fn http_server_span(
        &mut self,
        trace_id: TraceId,
        parent: Option<SpanId>,
        service: usize,
        start: u64,
        duration: u64,
    ) -> Span {
        let mut span = self.base(trace_id, parent, service, start, duration);
        let routes = if self.common { 5 } else { ROUTES.len() };
        let route = ROUTES[self.rng.random_range(0..routes)];
        let method = METHODS[self.rng.random_range(0..METHODS.len())];
        let status = if span.status_code == StatusCode::Error {
            500
        } else {
            [200, 200, 200, 201, 404][self.rng.random_range(0..5)]
        };
        let path = route.replace("{id}", &self.rng.random_range(1000..99999).to_string());
        span.name = format!("{method} {route}");
        span.kind = SpanKind::Server;
        span.attributes = Attributes::new(vec![
            kv("http.request.method", s(method)),
            kv("http.route", s(route)),
            kv("url.path", s(path)),
            kv("url.scheme", s("http")),
            kv("http.response.status_code", AttrValue::Int(status)),
            kv(
                "server.address",
                s(format!("{}.shop.svc", SERVICES[service])),
            ),
            kv("server.port", AttrValue::Int(8080)),
            kv("network.protocol.version", s("1.1")),
            kv(
                "client.address",
                s(format!(
                    "10.0.{}.{}",
                    self.rng.random_range(0..4),
                    self.rng.random_range(1..255)
                )),
            ),
            kv(
                "user_agent.original",
                s("Mozilla/5.0 (X11; Linux x86_64) shop-web/2.3"),
            ),
        ]);
        span
    }

    fn db_span(
        &mut self,
        trace_id: TraceId,
        parent: SpanId,
        service: usize,
        start: u64,
        duration: u64,
    ) -> Span {
        let mut span = self.base(trace_id, Some(parent), service, start, duration);
        let table = TABLES[self.rng.random_range(0..TABLES.len())];
        let op = OPERATIONS[self.rng.random_range(0..OPERATIONS.len())];
        let cache = self.rng.random_bool(0.3);
        span.kind = SpanKind::Client;
        if cache {
            span.name = "GET".into();
            span.attributes = Attributes::new(vec![
                kv("db.system.name", s("redis")),
                kv("db.operation.name", s("GET")),
                kv("db.namespace", s("0")),
                kv("db.query.text", s(format!("GET {table}:{{id}}"))),
                kv("server.address", s("cache.shop.svc")),
                kv("server.port", AttrValue::Int(6379)),
                kv("network.peer.address", s("10.0.9.12")),
                kv("network.transport", s("tcp")),
                kv(
                    "db.response.returned_rows",
                    AttrValue::Int(self.rng.random_range(0..2)),
                ),
                kv("cache.hit", AttrValue::Bool(self.rng.random_bool(0.8))),
            ]);
        } else {
            span.name = format!("{op} shop.{table}");
            span.attributes = Attributes::new(vec![
                kv("db.system.name", s("postgresql")),
                kv("db.operation.name", s(op)),
                kv("db.namespace", s("shop")),
                kv("db.collection.name", s(table)),
                kv(
                    "db.query.text",
                    s(format!("{op} * FROM {table} WHERE id = $1")),
                ),
                kv("server.address", s("postgres.shop.svc")),
                kv("server.port", AttrValue::Int(5432)),
                kv("network.peer.address", s("10.0.9.5")),
                kv("network.transport", s("tcp")),
                kv(
                    "db.response.returned_rows",
                    AttrValue::Int(self.rng.random_range(0..50)),
                ),
            ]);
        }
        span
    }

    fn rpc_client_span(
        &mut self,
        trace_id: TraceId,
        parent: SpanId,
        service: usize,
        start: u64,
        duration: u64,
    ) -> Span {
        let mut span = self.base(trace_id, Some(parent), service, start, duration);
        let (svc, method) = RPCS[self.rng.random_range(0..RPCS.len())];
        span.name = format!("shop.{svc}/{method}");
        span.kind = SpanKind::Client;
        span.attributes = Attributes::new(vec![
            kv("rpc.system", s("grpc")),
            kv("rpc.service", s(format!("shop.{svc}"))),
            kv("rpc.method", s(method)),
            kv(
                "rpc.grpc.status_code",
                AttrValue::Int(if span.status_code == StatusCode::Error {
                    14
                } else {
                    0
                }),
            ),
            kv(
                "server.address",
                s(format!(
                    "{}.shop.svc",
                    svc.trim_end_matches("Service").to_lowercase()
                )),
            ),
            kv("server.port", AttrValue::Int(50051)),
            kv(
                "network.peer.address",
                s(format!("10.0.3.{}", self.rng.random_range(1..255))),
            ),
            kv("network.transport", s("tcp")),
            kv("network.type", s("ipv4")),
            kv(
                "peer.service",
                s(svc.trim_end_matches("Service").to_lowercase()),
            ),
        ]);
        span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_have_the_documented_shape() {
        let mut generator = SpanGenerator::new(7, 1_700_000_000_000_000_000);
        let spans = generator.spans(10_000);
        let errors =
            spans.iter().filter(|s| !s.events.is_empty()).count() as f64 / spans.len() as f64;
        assert!((0.07..0.13).contains(&errors), "exception share {errors}");
        assert!(
            spans
                .iter()
                .all(|s| s.resource.attributes.len() == 10 && s.attributes.len() == 10)
        );
        let mut by_trace = std::collections::HashMap::<TraceId, usize>::new();
        for span in &spans {
            *by_trace.entry(span.trace_id).or_default() += 1;
            assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
        }
        assert!(by_trace.values().all(|n| (5..=40).contains(n)));
        assert_eq!(
            SpanGenerator::new(7, 1_700_000_000_000_000_000).spans(100)[..],
            spans[..SpanGenerator::new(7, 1_700_000_000_000_000_000)
                .spans(100)
                .len()]
        );
    }
}
