//! `ExportTraceServiceRequest` → spans.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use spyglass_store::model::{
    Resource, Scope, Span, SpanEvent, SpanId, SpanKind, SpanLink, StatusCode,
};

use super::{Converted, attributes, optional_id, resource, scope, span_id, trace_id};

pub fn spans(request: &ExportTraceServiceRequest) -> Converted<Span> {
    let mut out = Converted::new();
    for (r, rs) in request.resource_spans.iter().enumerate() {
        let res = resource(rs.resource.as_ref(), &rs.schema_url);
        for ss in &rs.scope_spans {
            let scp = scope(ss.scope.as_ref(), &ss.schema_url);
            for (i, s) in ss.spans.iter().enumerate() {
                match span(s, &res, &scp) {
                    Ok(span) => out.items.push(span),
                    Err(why) => {
                        out.reject(|| format!("resource_spans[{r}] span {i} ({:?}): {why}", s.name))
                    }
                }
            }
        }
    }
    out
}

fn kind(value: i32) -> Result<SpanKind, String> {
    usize::try_from(value)
        .ok()
        .and_then(|i| SpanKind::ALL.get(i).copied())
        .ok_or_else(|| format!("kind {value} is not a SpanKind"))
}

fn status(value: i32) -> Result<StatusCode, String> {
    usize::try_from(value)
        .ok()
        .and_then(|i| StatusCode::ALL.get(i).copied())
        .ok_or_else(|| format!("status code {value} is not a StatusCode"))
}

fn span(
    s: &OtlpSpan,
    resource: &std::sync::Arc<Resource>,
    scope: &std::sync::Arc<Scope>,
) -> Result<Span, String> {
    let links = s
        .links
        .iter()
        .map(|l| {
            Ok(SpanLink {
                trace_id: trace_id(&l.trace_id).map_err(|e| format!("link {e}"))?,
                span_id: span_id(&l.span_id).map_err(|e| format!("link {e}"))?,
                trace_state: l.trace_state.clone(),
                flags: l.flags,
                attributes: attributes(&l.attributes),
                dropped_attributes_count: l.dropped_attributes_count,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let (status_code, status_message) = match &s.status {
        Some(st) => (status(st.code)?, st.message.clone()),
        None => (StatusCode::Unset, String::new()),
    };
    Ok(Span {
        trace_id: trace_id(&s.trace_id)?,
        span_id: span_id(&s.span_id)?,
        parent_span_id: optional_id::<8>(&s.parent_span_id, "parent_span_id")?.map(SpanId),
        trace_state: s.trace_state.clone(),
        flags: s.flags,
        name: s.name.clone(),
        kind: kind(s.kind)?,
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        status_code,
        status_message,
        attributes: attributes(&s.attributes),
        dropped_attributes_count: s.dropped_attributes_count,
        events: s
            .events
            .iter()
            .map(|e| SpanEvent {
                time_unix_nano: e.time_unix_nano,
                name: e.name.clone(),
                attributes: attributes(&e.attributes),
                dropped_attributes_count: e.dropped_attributes_count,
            })
            .collect(),
        dropped_events_count: s.dropped_events_count,
        links,
        dropped_links_count: s.dropped_links_count,
        resource: resource.clone(),
        scope: scope.clone(),
    })
}
