//! Which event times a request may carry, and which metric names.
//!
//! Metric names starting with `spyglass.` are Spyglass's own (span metrics and the service
//! graph, which the health pages, the map and the built-in alert rules read): a point a client
//! sends under one is rejected, so that no client can falsify them.
//!
//! The store keeps one part per signal and hour, and retention deletes whole hours. An item
//! stamped at time 0 or years ahead would be acknowledged and then deleted, and one request
//! whose items are spread over a million hours would make a million parts. So each item's time
//! must lie in the window `[now - past, now + future]`, where `past` is
//! `[ingest] accept_past_hours` but never more than the signal's retention, and `future` is
//! `[ingest] accept_future_minutes`; a span must not end before it starts; and one request may
//! touch at most `[ingest] max_hours_per_request` distinct hours. Items that break these rules
//! are rejected through partial success with the reason; the rest is stored.
//!
//! The window is checked when a request arrives, never on WAL replay: what was acknowledged
//! stays acknowledged, however long the process was down.

use std::collections::HashSet;

use arrow::array::{Array, RecordBatch, UInt64Array};
use spyglass_store::Signal;
use spyglass_store::model::{LogRecord, MetricPoint, Span};
use spyglass_store::spanmetrics::RESERVED_PREFIX;

use crate::convert::Converted;

const NANOS_PER_MINUTE: u64 = 60_000_000_000;

const NANOS_PER_HOUR: u64 = 60 * NANOS_PER_MINUTE;

/// The accepted event times of one request.
#[derive(Clone, Debug)]
pub struct TimeWindow {
    signal: Signal,
    now: u64,
    past_hours: u64,
    /// `past_hours` comes from the retention, not from `accept_past_hours`.
    past_is_retention: bool,
    future_minutes: u64,
    max_hours: usize,
}

impl TimeWindow {
    /// The window for `signal` at `now` (Unix nanoseconds).
    pub fn new(
        signal: Signal,
        now: u64,
        config: &crate::IngestConfig,
        retention_hours: u64,
    ) -> Self {
        let past_is_retention = retention_hours > 0 && retention_hours < config.accept_past_hours;
        Self {
            signal,
            now,
            past_hours: if past_is_retention {
                retention_hours
            } else {
                config.accept_past_hours
            },
            past_is_retention,
            future_minutes: config.accept_future_minutes,
            max_hours: config.max_hours_per_request,
        }
    }

    fn earliest(&self) -> u64 {
        self.now
            .saturating_sub(self.past_hours.saturating_mul(NANOS_PER_HOUR))
    }

    fn latest(&self) -> u64 {
        self.now
            .saturating_add(self.future_minutes.saturating_mul(NANOS_PER_MINUTE))
    }

    /// Why an item at `time` (ending at `end`, for spans) is refused, if it is.
    fn check(&self, time: u64, end: u64) -> Result<(), String> {
        if end < time {
            return Err(format!(
                "end_time_unix_nano {end} is before start_time_unix_nano {time}"
            ));
        }
        if time < self.earliest() {
            let ago = (self.now - time) / NANOS_PER_HOUR;
            let limit = if self.past_is_retention {
                format!("the {} retention", self.signal)
            } else {
                "[ingest] accept_past_hours".to_owned()
            };
            return Err(format!(
                "time {time} is {ago} h in the past; at most {} h is accepted ({limit})",
                self.past_hours
            ));
        }
        if time > self.latest() {
            let ahead = (time - self.now) / NANOS_PER_MINUTE;
            return Err(format!(
                "time {time} is {ahead} min in the future; at most {} min is accepted \
                 ([ingest] accept_future_minutes)",
                self.future_minutes
            ));
        }
        Ok(())
    }

    /// Whether every row of a batch a fast path read is accepted. When one is not, the caller
    /// takes the general path, which rejects exactly those rows with their reasons.
    pub(crate) fn admits_batch(&self, batch: &RecordBatch) -> bool {
        let column = |name| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
        };
        let time_name = spyglass_store::schema::time_column(self.signal);
        let Some(times) = column(time_name) else {
            return false;
        };
        let ends = match self.signal {
            Signal::Spans => match column("end_time_unix_nano") {
                Some(ends) => Some(ends),
                None => return false,
            },
            _ => None,
        };
        if self.signal == Signal::Metrics {
            let names = batch
                .column_by_name("metric_name")
                .and_then(|c| c.as_any().downcast_ref::<arrow::array::StringArray>());
            match names {
                Some(names)
                    if !names
                        .iter()
                        .flatten()
                        .any(|n| n.starts_with(RESERVED_PREFIX)) => {}
                _ => return false,
            }
        }
        let mut hours = Hours::new(self.max_hours);
        (0..times.len()).all(|i| {
            let time = times.value(i);
            let end = ends.map_or(time, |e| e.value(i));
            self.check(time, end).is_ok() && hours.admit(time).is_ok()
        })
    }

    /// Drops (and counts, with the first reason) the items outside the window, past the
    /// request's hour limit, or ending before they start.
    fn retain<T>(
        &self,
        converted: &mut Converted<T>,
        times: impl Fn(&T) -> (u64, u64),
        describe: impl Fn(&T) -> String,
    ) {
        let mut hours = Hours::new(self.max_hours);
        let items = std::mem::take(&mut converted.items);
        converted.items.reserve(items.len());
        for item in items {
            let (time, end) = times(&item);
            match self.check(time, end).and_then(|()| hours.admit(time)) {
                Ok(()) => converted.items.push(item),
                Err(why) => converted.reject(|| format!("{}: {why}", describe(&item))),
            }
        }
    }

    pub(crate) fn retain_spans(&self, converted: &mut Converted<Span>) {
        self.retain(
            converted,
            |s| (s.start_time_unix_nano, s.end_time_unix_nano),
            |s| format!("span {:?} (trace {})", s.name, s.trace_id.to_hex()),
        );
    }

    pub(crate) fn retain_points(&self, converted: &mut Converted<MetricPoint>) {
        let items = std::mem::take(&mut converted.items);
        for point in items {
            if point.metric_name.starts_with(RESERVED_PREFIX) {
                let name = point.metric_name;
                converted.reject(|| {
                    format!(
                        "metric {name:?}: names starting with {RESERVED_PREFIX:?} are Spyglass's \
                         own (span metrics, service graph)"
                    )
                });
            } else {
                converted.items.push(point);
            }
        }
        self.retain(
            converted,
            |p| (p.time_unix_nano, p.time_unix_nano),
            |p| format!("metric {:?} point", p.metric_name),
        );
    }

    /// Log records without a time of their own are placed at their observed time, or at the
    /// time they were received when they have neither (the OTLP data model makes both
    /// optional); then the window applies.
    pub(crate) fn retain_logs(&self, converted: &mut Converted<LogRecord>) {
        for log in &mut converted.items {
            if log.time_unix_nano == 0 {
                log.time_unix_nano = match log.observed_time_unix_nano {
                    0 => self.now,
                    observed => observed,
                };
            }
        }
        self.retain(
            converted,
            |l| (l.time_unix_nano, l.time_unix_nano),
            |l| format!("log record {:?}", l.severity_text),
        );
    }
}

/// The distinct hours a request has touched so far.
struct Hours {
    seen: HashSet<u64>,
    max: usize,
}

impl Hours {
    fn new(max: usize) -> Self {
        Self {
            seen: HashSet::new(),
            max,
        }
    }

    fn admit(&mut self, time: u64) -> Result<(), String> {
        let hour = time / NANOS_PER_HOUR;
        if self.seen.contains(&hour) {
            return Ok(());
        }
        if self.seen.len() >= self.max {
            return Err(format!(
                "the request already holds items in {} distinct hours, the most one request may \
                 touch ([ingest] max_hours_per_request)",
                self.max
            ));
        }
        self.seen.insert(hour);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use spyglass_store::model::{Resource, SpanId, TraceId};

    use super::*;
    use crate::IngestConfig;

    const NOW: u64 = 1_795_737_600_000_000_000;

    fn span(start: u64, end: u64) -> Span {
        Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([2; 8]),
            name: "GET /".into(),
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            resource: Arc::new(Resource::default()),
            ..Span::default()
        }
    }

    fn converted(spans: Vec<Span>) -> Converted<Span> {
        Converted {
            items: spans,
            rejected: 0,
            first_error: None,
        }
    }

    fn window(retention_hours: u64) -> TimeWindow {
        TimeWindow::new(
            Signal::Spans,
            NOW,
            &IngestConfig::default(),
            retention_hours,
        )
    }

    #[test]
    fn times_outside_the_window_and_backwards_spans_are_rejected_with_the_reason() {
        let w = window(0);
        let ok = span(NOW - 5 * NANOS_PER_HOUR, NOW - 5 * NANOS_PER_HOUR + 1000);
        let mut c = converted(vec![
            ok.clone(),
            span(0, 10),
            span(NOW + 60 * NANOS_PER_MINUTE, NOW + 61 * NANOS_PER_MINUTE),
            span(NOW, NOW - 1),
            span(NOW + 9 * NANOS_PER_MINUTE, NOW + 9 * NANOS_PER_MINUTE),
        ]);
        w.retain_spans(&mut c);
        assert_eq!(c.items.len(), 2);
        assert_eq!(c.rejected, 3);
        let message = c.error_message();
        assert!(message.contains("span \"GET /\""), "{message}");
        assert!(
            message
                .contains("h in the past; at most 720 h is accepted ([ingest] accept_past_hours)"),
            "{message}"
        );
        assert!(message.contains("(and 2 more rejected)"), "{message}");

        let mut future = converted(vec![span(NOW + NANOS_PER_HOUR, NOW + NANOS_PER_HOUR)]);
        w.retain_spans(&mut future);
        assert!(
            future
                .error_message()
                .contains("60 min in the future; at most 10 min"),
            "{}",
            future.error_message()
        );
        let mut backwards = converted(vec![span(NOW, NOW - 1)]);
        w.retain_spans(&mut backwards);
        assert!(
            backwards
                .error_message()
                .contains("is before start_time_unix_nano"),
            "{}",
            backwards.error_message()
        );
    }

    #[test]
    fn the_window_is_never_wider_than_the_retention() {
        let mut c = converted(vec![span(NOW - 200 * NANOS_PER_HOUR, NOW)]);
        window(168).retain_spans(&mut c);
        assert!(
            c.error_message()
                .contains("at most 168 h is accepted (the spans retention)"),
            "{}",
            c.error_message()
        );
        let mut c = converted(vec![span(NOW - 200 * NANOS_PER_HOUR, NOW)]);
        window(0).retain_spans(&mut c);
        assert_eq!(c.rejected, 0, "no retention: accept_past_hours alone");
    }

    #[test]
    fn one_request_touches_at_most_the_hour_limit() {
        let w = window(0);
        let spans: Vec<_> = (0..100)
            .map(|h| {
                let t = NOW - h * NANOS_PER_HOUR;
                span(t, t)
            })
            .collect();
        let mut c = converted(spans);
        w.retain_spans(&mut c);
        let max = IngestConfig::default().max_hours_per_request;
        assert_eq!(c.items.len(), max);
        assert_eq!(c.rejected as usize, 100 - max);
        assert!(c.error_message().contains("max_hours_per_request"));
    }

    #[test]
    fn spyglass_metric_names_are_refused_from_clients() {
        use spyglass_store::model::{NumberValue, PointValue};
        let point = |name: &str| MetricPoint {
            metric_name: name.into(),
            description: String::new(),
            unit: String::new(),
            metric_type: Default::default(),
            temporality: Default::default(),
            is_monotonic: false,
            attributes: Default::default(),
            time_unix_nano: NOW,
            start_time_unix_nano: 0,
            flags: 0,
            value: PointValue::Number(NumberValue::Double(1.0)),
            exemplars: Vec::new(),
            resource: Arc::new(Resource::default()),
            scope: Arc::default(),
        };
        let mut c = Converted {
            items: vec![
                point("spyglass.span.calls"),
                point("http.server.duration"),
                point("spyglass.service_graph.failures"),
            ],
            rejected: 0,
            first_error: None,
        };
        TimeWindow::new(Signal::Metrics, NOW, &IngestConfig::default(), 0).retain_points(&mut c);
        assert_eq!(c.items.len(), 1);
        assert_eq!(c.items[0].metric_name, "http.server.duration");
        assert_eq!(c.rejected, 2);
        assert!(
            c.error_message().contains("are Spyglass's own"),
            "{}",
            c.error_message()
        );
    }

    #[test]
    fn logs_without_a_time_take_their_observed_or_received_time() {
        let log = |time, observed| LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: observed,
            resource: Arc::new(Resource::default()),
            ..LogRecord::default()
        };
        let mut c = Converted {
            items: vec![log(0, NOW - 1000), log(0, 0), log(NOW - 5, NOW)],
            rejected: 0,
            first_error: None,
        };
        TimeWindow::new(Signal::Logs, NOW, &IngestConfig::default(), 0).retain_logs(&mut c);
        let times: Vec<_> = c.items.iter().map(|l| l.time_unix_nano).collect();
        assert_eq!(times, [NOW - 1000, NOW, NOW - 5]);
    }
}
