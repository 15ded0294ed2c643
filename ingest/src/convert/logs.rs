//! `ExportLogsServiceRequest` → log records.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use spyglass_store::model::{LogRecord, SpanId, TraceId};

use super::{Converted, attributes_owned, optional_id, resource, scope, value_owned};

/// Takes the request by value: strings and attributes move into the records.
pub fn logs(request: ExportLogsServiceRequest) -> Converted<LogRecord> {
    let count = (request.resource_logs.iter())
        .flat_map(|rl| &rl.scope_logs)
        .map(|sl| sl.log_records.len())
        .sum();
    let mut out = Converted::with_capacity(count);
    for (r, rl) in request.resource_logs.into_iter().enumerate() {
        let res = resource(rl.resource.as_ref(), &rl.schema_url);
        for sl in rl.scope_logs {
            let scp = scope(sl.scope.as_ref(), &sl.schema_url);
            for (i, l) in sl.log_records.into_iter().enumerate() {
                let ids = optional_id::<16>(&l.trace_id, "trace_id")
                    .and_then(|t| Ok((t, optional_id::<8>(&l.span_id, "span_id")?)));
                let (trace, span) = match ids {
                    Ok(ids) => ids,
                    Err(why) => {
                        out.reject(|| format!("resource_logs[{r}] log record {i}: {why}"));
                        continue;
                    }
                };
                if !(0..=24).contains(&l.severity_number) {
                    let n = l.severity_number;
                    out.reject(|| {
                        format!(
                            "resource_logs[{r}] log record {i}: severity_number {n} is not 0-24"
                        )
                    });
                    continue;
                }
                out.items.push(LogRecord {
                    time_unix_nano: l.time_unix_nano,
                    observed_time_unix_nano: l.observed_time_unix_nano,
                    severity_number: l.severity_number,
                    severity_text: l.severity_text,
                    body: l.body.map(value_owned),
                    event_name: l.event_name,
                    attributes: attributes_owned(l.attributes),
                    dropped_attributes_count: l.dropped_attributes_count,
                    flags: l.flags,
                    trace_id: trace.map(TraceId),
                    span_id: span.map(SpanId),
                    resource: res.clone(),
                    scope: scp.clone(),
                });
            }
        }
    }
    out
}
