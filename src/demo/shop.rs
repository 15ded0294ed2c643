//! The simulated shop: six services instrumented with the OpenTelemetry SDK, each with its own
//! tracer, meter and logger provider exporting over OTLP/gRPC, and the requests they serve.
//!
//! Requests are simulated, not served: each one is a tree of spans whose timings are drawn
//! from the current phase of the timeline and written with explicit timestamps, so the shop
//! produces realistic traces at any rate without waiting for them.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _, UpDownCounter};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::acks::{Acks, CountingExporter};
use super::timeline::Phase;
use crate::otel::Target;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Svc {
    Frontend,
    Checkout,
    Cart,
    Payments,
    Inventory,
    Shipping,
}

const SERVICES: [Svc; 6] = [
    Svc::Frontend,
    Svc::Checkout,
    Svc::Cart,
    Svc::Payments,
    Svc::Inventory,
    Svc::Shipping,
];

impl Svc {
    fn name(self) -> &'static str {
        match self {
            Svc::Frontend => "frontend",
            Svc::Checkout => "checkout",
            Svc::Cart => "cart",
            Svc::Payments => "payments",
            Svc::Inventory => "inventory",
            Svc::Shipping => "shipping",
        }
    }
}

struct Service {
    tracer: SdkTracer,
    logger: SdkLogger,
    tracers: SdkTracerProvider,
    loggers: SdkLoggerProvider,
    meters: SdkMeterProvider,
}

/// The business metrics (on the services that own them).
struct Instruments {
    request_duration: Histogram<f64>,
    orders: Counter<u64>,
    revenue: Counter<f64>,
    cart_items: UpDownCounter<i64>,
}

/// How a simulated call ended.
struct Outcome {
    end: SystemTime,
    error: Option<String>,
}

/// What one request did, for the status line.
pub struct Served {
    pub failed: bool,
}

pub struct Shop {
    services: Vec<Service>,
    instruments: Instruments,
    rng: StdRng,
    next_order: u64,
}

impl Shop {
    /// Builds the six services' providers; must run inside the Tokio runtime (the exporters'
    /// gRPC channels live there).
    pub fn new(target: &Target, acks: Arc<Acks>) -> anyhow::Result<Self> {
        let mut services = Vec::new();
        for svc in SERVICES {
            let resource = Resource::builder()
                .with_service_name(svc.name())
                .with_attributes([
                    KeyValue::new("service.namespace", "shop"),
                    KeyValue::new("service.version", "1.4.2"),
                    KeyValue::new("deployment.environment.name", "demo"),
                ])
                .build();
            let spans = BatchSpanProcessor::builder(CountingExporter {
                inner: target.span_exporter()?,
                acks: acks.clone(),
            })
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(Duration::from_millis(500))
                    .with_max_queue_size(20_000)
                    .build(),
            )
            .build();
            let tracers = SdkTracerProvider::builder()
                .with_span_processor(spans)
                .with_resource(resource.clone())
                .build();
            let loggers = SdkLoggerProvider::builder()
                .with_batch_exporter(target.log_exporter()?)
                .with_resource(resource.clone())
                .build();
            let meters = SdkMeterProvider::builder()
                .with_reader(
                    PeriodicReader::builder(target.metric_exporter()?)
                        .with_interval(Duration::from_secs(5))
                        .build(),
                )
                .with_resource(resource)
                .build();
            services.push(Service {
                tracer: tracers.tracer("spyglass-demo"),
                logger: loggers.logger("spyglass-demo"),
                tracers,
                loggers,
                meters,
            });
        }
        let meter = |svc: Svc| services[svc as usize].meters.meter("spyglass-demo");
        let instruments = Instruments {
            request_duration: meter(Svc::Frontend)
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP server requests.")
                .with_boundaries(vec![
                    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                ])
                .build(),
            orders: meter(Svc::Checkout)
                .u64_counter("shop.orders")
                .with_unit("{order}")
                .with_description("Orders by outcome.")
                .build(),
            revenue: meter(Svc::Payments)
                .f64_counter("shop.revenue")
                .with_unit("USD")
                .with_description("Amount charged.")
                .build(),
            cart_items: meter(Svc::Cart)
                .i64_up_down_counter("shop.cart.items")
                .with_unit("{item}")
                .with_description("Items in open carts.")
                .build(),
        };
        Ok(Self {
            services,
            instruments,
            rng: StdRng::from_os_rng(),
            next_order: 1000,
        })
    }

    /// Flushes and stops every provider (blocking: call from a blocking thread).
    pub fn shutdown(self) {
        for service in self.services {
            let _ = service.tracers.shutdown();
            let _ = service.loggers.shutdown();
            let _ = service.meters.shutdown();
        }
    }

    /// One request from a user, starting now.
    pub fn serve_one(&mut self, phase: Phase) -> Served {
        let start = SystemTime::now();
        let pick: f64 = self.rng.random();
        let (method, route) = if pick < 0.5 {
            ("GET", "/product/{id}")
        } else if pick < 0.8 {
            ("GET", "/cart")
        } else {
            ("POST", "/checkout")
        };
        let root = self.start(
            Svc::Frontend,
            &format!("{method} {route}"),
            SpanKind::Server,
            start,
            &Context::new(),
            vec![
                KeyValue::new("http.request.method", method),
                KeyValue::new("http.route", route),
                KeyValue::new("user_agent.original", "Mozilla/5.0 (demo)"),
            ],
        );
        let at = start + self.latency(0.4);
        let outcome = match route {
            "/product/{id}" => {
                let product = self.rng.random_range(1..500);
                self.call(
                    Svc::Frontend,
                    Svc::Inventory,
                    "GET",
                    "/stock/{id}",
                    at,
                    &root,
                    phase,
                    |shop, cx, at| shop.stock(cx, at, product, phase),
                )
            }
            "/cart" => self.call(
                Svc::Frontend,
                Svc::Cart,
                "GET",
                "/cart",
                at,
                &root,
                phase,
                |shop, cx, at| shop.cart(cx, at),
            ),
            _ => self.call(
                Svc::Frontend,
                Svc::Checkout,
                "POST",
                "/checkout",
                at,
                &root,
                phase,
                |shop, cx, at| shop.checkout(cx, at, phase),
            ),
        };
        let end = outcome.end + self.latency(0.3);
        let status: i64 = if outcome.error.is_some() { 500 } else { 200 };
        root.span()
            .set_attribute(KeyValue::new("http.response.status_code", status));
        finish(&root, end, outcome.error.as_deref());
        self.instruments.request_duration.record(
            end.duration_since(start).unwrap_or_default().as_secs_f64(),
            &[
                KeyValue::new("http.route", route),
                KeyValue::new("http.response.status_code", status),
            ],
        );
        Served {
            failed: outcome.error.is_some(),
        }
    }

    fn stock(&mut self, cx: &Context, at: SystemTime, product: u32, phase: Phase) -> Outcome {
        let key = format!("GET stock:{product}");
        let mut at = self.db(Svc::Inventory, "redis", &key, at, cx, 0.6);
        if self.rng.random::<f64>() < 0.3 {
            at = self.postgres(
                Svc::Inventory,
                "SELECT products",
                "SELECT id, name, stock FROM products WHERE id = $1",
                at,
                cx,
                phase,
            );
        }
        Outcome {
            end: at + self.latency(0.5),
            error: None,
        }
    }

    fn cart(&mut self, cx: &Context, at: SystemTime) -> Outcome {
        let user = self.rng.random_range(1..2000);
        let at = self.db(
            Svc::Cart,
            "redis",
            &format!("HGETALL cart:{user}"),
            at,
            cx,
            0.8,
        );
        let change = self.rng.random_range(-1..=2);
        self.instruments.cart_items.add(change, &[]);
        Outcome {
            end: at + self.latency(0.4),
            error: None,
        }
    }

    fn checkout(&mut self, cx: &Context, at: SystemTime, phase: Phase) -> Outcome {
        self.next_order += 1;
        let order = self.next_order;
        cx.span()
            .set_attribute(KeyValue::new("shop.order.id", order as i64));
        let items = self.rng.random_range(1..6_i64);
        let at = self
            .call(
                Svc::Checkout,
                Svc::Cart,
                "GET",
                "/cart",
                at,
                cx,
                phase,
                |shop, cx, at| shop.cart(cx, at),
            )
            .end;
        let at = self
            .call(
                Svc::Checkout,
                Svc::Inventory,
                "POST",
                "/reserve",
                at,
                cx,
                phase,
                |shop, cx, at| {
                    let at = shop.postgres(
                        Svc::Inventory,
                        "UPDATE stock",
                        "UPDATE products SET stock = stock - $2 WHERE id = $1",
                        at,
                        cx,
                        phase,
                    );
                    Outcome {
                        end: at + shop.latency(0.5),
                        error: None,
                    }
                },
            )
            .end;
        let amount = (items as f64 * self.rng.random_range(9.0..60.0) * 100.0).round() / 100.0;
        let paid = self.call(
            Svc::Checkout,
            Svc::Payments,
            "POST",
            "/charge",
            at,
            cx,
            phase,
            |shop, cx, at| shop.charge(cx, at, amount, phase),
        );
        if let Some(error) = paid.error {
            self.instruments
                .orders
                .add(1, &[KeyValue::new("outcome", "payment_failed")]);
            self.log(
                Svc::Checkout,
                cx,
                paid.end,
                Severity::Error,
                format!("order {order} failed: payment declined ({error})"),
            );
            return Outcome {
                end: paid.end + self.latency(0.5),
                error: Some("payment failed".into()),
            };
        }
        let shipped = self.call(
            Svc::Checkout,
            Svc::Shipping,
            "POST",
            "/shipments",
            paid.end,
            cx,
            phase,
            |shop, cx, at| {
                let quote = shop.start(
                    Svc::Shipping,
                    "quote rates",
                    SpanKind::Internal,
                    at,
                    cx,
                    vec![KeyValue::new("shop.carrier", "parcelco")],
                );
                let end = at + shop.latency(6.0);
                finish(&quote, end, None);
                shop.log(
                    Svc::Shipping,
                    cx,
                    end,
                    Severity::Info,
                    format!("shipment created for order {order}"),
                );
                Outcome {
                    end: end + shop.latency(0.5),
                    error: None,
                }
            },
        );
        if shipped.error.is_some() {
            self.log(
                Svc::Checkout,
                cx,
                shipped.end,
                Severity::Warn,
                format!("order {order}: shipping did not answer, shipment queued for retry"),
            );
        }
        self.instruments
            .orders
            .add(1, &[KeyValue::new("outcome", "placed")]);
        self.log(
            Svc::Checkout,
            cx,
            shipped.end,
            Severity::Info,
            format!("order {order} placed: {items} items, {amount:.2} USD"),
        );
        Outcome {
            end: shipped.end + self.latency(0.8),
            error: None,
        }
    }

    fn charge(&mut self, cx: &Context, at: SystemTime, amount: f64, phase: Phase) -> Outcome {
        cx.span()
            .set_attribute(KeyValue::new("shop.payment.amount", amount));
        let at = self.postgres(
            Svc::Payments,
            "INSERT payments",
            "INSERT INTO payments (order_id, amount) VALUES ($1, $2)",
            at,
            cx,
            phase,
        );
        let failure_rate = if phase == Phase::PaymentsErrors {
            0.5
        } else {
            0.005
        };
        let end = at + self.latency(3.0);
        if self.rng.random::<f64>() < failure_rate {
            let (kind, message) = if phase == Phase::PaymentsErrors {
                (
                    "PaymentGatewayError",
                    "payment gateway returned 503 Service Unavailable",
                )
            } else {
                ("CardDeclined", "card declined: insufficient funds")
            };
            cx.span().add_event_with_timestamp(
                Cow::Borrowed("exception"),
                end,
                vec![
                    KeyValue::new("exception.type", kind),
                    KeyValue::new("exception.message", message),
                    KeyValue::new(
                        "exception.stacktrace",
                        format!(
                            "{kind}: {message}\n  at payments::gateway::charge (src/gateway.rs:88)\n  at payments::api::post_charge (src/api.rs:41)"
                        ),
                    ),
                ],
            );
            self.log(
                Svc::Payments,
                cx,
                end,
                Severity::Error,
                format!("charge of {amount:.2} USD failed: {message}"),
            );
            return Outcome {
                end,
                error: Some(message.into()),
            };
        }
        self.instruments
            .revenue
            .add(amount, &[KeyValue::new("currency", "USD")]);
        Outcome { end, error: None }
    }

    /// `from` calls `to` over HTTP: a client span in `from`, a server span in `to` with `body`
    /// inside it. A silent shipping answers nothing: the client span times out.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        from: Svc,
        to: Svc,
        method: &str,
        route: &str,
        at: SystemTime,
        parent: &Context,
        phase: Phase,
        body: impl FnOnce(&mut Self, &Context, SystemTime) -> Outcome,
    ) -> Outcome {
        let client = self.start(
            from,
            &format!("{method} {route}"),
            SpanKind::Client,
            at,
            parent,
            vec![
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("peer.service", to.name()),
                KeyValue::new("server.address", to.name()),
                KeyValue::new("server.port", 8080_i64),
            ],
        );
        if to == Svc::Shipping && phase == Phase::ShippingSilent {
            let end = at + Duration::from_millis(250);
            let error = "deadline exceeded after 250ms";
            client
                .span()
                .add_event_with_timestamp(Cow::Borrowed("timeout"), end, vec![]);
            finish(&client, end, Some(error));
            return Outcome {
                end,
                error: Some(error.into()),
            };
        }
        let server_start = at + self.latency(0.3);
        let server = self.start(
            to,
            &format!("{method} {route}"),
            SpanKind::Server,
            server_start,
            &client,
            vec![
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("http.route", route.to_owned()),
            ],
        );
        let body_start = server_start + self.latency(0.2);
        let inner = body(self, &server, body_start);
        let status: i64 = if inner.error.is_some() { 500 } else { 200 };
        for cx in [&server, &client] {
            cx.span()
                .set_attribute(KeyValue::new("http.response.status_code", status));
        }
        finish(&server, inner.end, inner.error.as_deref());
        let end = inner.end + self.latency(0.3);
        finish(&client, end, inner.error.as_deref());
        Outcome {
            end,
            error: inner.error,
        }
    }

    fn postgres(
        &mut self,
        from: Svc,
        name: &str,
        statement: &str,
        at: SystemTime,
        parent: &Context,
        phase: Phase,
    ) -> SystemTime {
        let typical_ms = if phase == Phase::DatabaseSlow {
            60.0
        } else {
            4.0
        };
        let cx = self.start(
            from,
            name,
            SpanKind::Client,
            at,
            parent,
            vec![
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.namespace", "shop"),
                KeyValue::new("db.query.text", statement.to_owned()),
                KeyValue::new("server.address", "postgres.shop.internal"),
            ],
        );
        let end = at + self.latency(typical_ms);
        finish(&cx, end, None);
        end
    }

    fn db(
        &mut self,
        from: Svc,
        system: &'static str,
        command: &str,
        at: SystemTime,
        parent: &Context,
        typical_ms: f64,
    ) -> SystemTime {
        let cx = self.start(
            from,
            command.split(' ').next().unwrap_or(command),
            SpanKind::Client,
            at,
            parent,
            vec![
                KeyValue::new("db.system.name", system),
                KeyValue::new("db.query.text", command.to_owned()),
            ],
        );
        let end = at + self.latency(typical_ms);
        finish(&cx, end, None);
        end
    }

    /// A span of `svc` from `at`, child of `parent`, in a context of its own.
    fn start(
        &self,
        svc: Svc,
        name: &str,
        kind: SpanKind,
        at: SystemTime,
        parent: &Context,
        attributes: Vec<KeyValue>,
    ) -> Context {
        let tracer = &self.services[svc as usize].tracer;
        let span = tracer
            .span_builder(name.to_owned())
            .with_kind(kind)
            .with_start_time(at)
            .with_attributes(attributes)
            .start_with_context(tracer, parent);
        parent.with_span(span)
    }

    fn log(&self, svc: Svc, cx: &Context, at: SystemTime, severity: Severity, message: String) {
        let logger = &self.services[svc as usize].logger;
        let mut record = logger.create_log_record();
        record.set_timestamp(at);
        record.set_severity_number(severity);
        record.set_severity_text(match severity {
            Severity::Error => "ERROR",
            Severity::Warn => "WARN",
            _ => "INFO",
        });
        record.set_body(AnyValue::from(message));
        let span = cx.span();
        let context = span.span_context();
        record.set_trace_context(
            context.trace_id(),
            context.span_id(),
            Some(context.trace_flags()),
        );
        logger.emit(record);
    }

    /// A duration around `typical_ms`: mostly within ±40%, one call in fifty four times longer.
    fn latency(&mut self, typical_ms: f64) -> Duration {
        let mut ms = typical_ms * self.rng.random_range(0.6..1.4);
        if self.rng.random::<f64>() < 0.02 {
            ms *= 4.0;
        }
        Duration::from_secs_f64(ms / 1e3)
    }
}

fn finish(cx: &Context, end: SystemTime, error: Option<&str>) {
    let span = cx.span();
    if let Some(message) = error {
        span.set_status(Status::error(message.to_owned()));
    }
    span.end_with_timestamp(end);
}
