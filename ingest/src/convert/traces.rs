//! `ExportTraceServiceRequest` → spans.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use spyglass_store::model::{
    Resource, Scope, Span, SpanEvent, SpanId, SpanKind, SpanLink, StatusCode,
};

use super::{Converted, attributes_owned, optional_id, resource, scope, span_id, trace_id};

/// Converts a request, moving its strings into the spans (no copy per attribute).
pub fn spans(request: ExportTraceServiceRequest) -> Converted<Span> {
    let count = (request.resource_spans.iter())
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum();
    let mut out = Converted::with_capacity(count);
    for (r, rs) in request.resource_spans.into_iter().enumerate() {
        let res = resource(rs.resource.as_ref(), &rs.schema_url);
        for ss in rs.scope_spans {
            let scp = scope(ss.scope.as_ref(), &ss.schema_url);
            for (i, s) in ss.spans.into_iter().enumerate() {
                match span(s, &res, &scp) {
                    Ok(span) => out.items.push(span),
                    Err((name, why)) => {
                        out.reject(|| format!("resource_spans[{r}] span {i} ({name:?}): {why}"))
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
    s: OtlpSpan,
    resource: &std::sync::Arc<Resource>,
    scope: &std::sync::Arc<Scope>,
) -> Result<Span, (String, String)> {
    // Validate everything before moving anything out of the span.
    let checked = (|| {
        let links = s
            .links
            .iter()
            .map(|l| {
                Ok((
                    trace_id(&l.trace_id).map_err(|e| format!("link {e}"))?,
                    span_id(&l.span_id).map_err(|e| format!("link {e}"))?,
                ))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let status_code = match &s.status {
            Some(st) => status(st.code)?,
            None => StatusCode::Unset,
        };
        Ok::<_, String>((
            trace_id(&s.trace_id)?,
            span_id(&s.span_id)?,
            optional_id::<8>(&s.parent_span_id, "parent_span_id")?.map(SpanId),
            kind(s.kind)?,
            status_code,
            links,
        ))
    })();
    let (trace, id, parent, kind, status_code, link_ids) = match checked {
        Ok(checked) => checked,
        Err(why) => return Err((s.name, why)),
    };
    Ok(Span {
        trace_id: trace,
        span_id: id,
        parent_span_id: parent,
        trace_state: s.trace_state,
        flags: s.flags,
        name: s.name,
        kind,
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        status_code,
        status_message: s.status.map(|st| st.message).unwrap_or_default(),
        attributes: attributes_owned(s.attributes),
        dropped_attributes_count: s.dropped_attributes_count,
        events: s
            .events
            .into_iter()
            .map(|e| SpanEvent {
                time_unix_nano: e.time_unix_nano,
                name: e.name,
                attributes: attributes_owned(e.attributes),
                dropped_attributes_count: e.dropped_attributes_count,
            })
            .collect(),
        dropped_events_count: s.dropped_events_count,
        links: s
            .links
            .into_iter()
            .zip(link_ids)
            .map(|(l, (trace_id, span_id))| SpanLink {
                trace_id,
                span_id,
                trace_state: l.trace_state,
                flags: l.flags,
                attributes: attributes_owned(l.attributes),
                dropped_attributes_count: l.dropped_attributes_count,
            })
            .collect(),
        dropped_links_count: s.dropped_links_count,
        resource: resource.clone(),
        scope: scope.clone(),
    })
}
