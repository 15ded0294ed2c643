-- Ids as hex, kinds and statuses as names, the derived duration, promoted columns.
SELECT encode(trace_id, 'hex') AS trace_id,
       encode(span_id, 'hex') AS span_id,
       encode(parent_span_id, 'hex') AS parent,
       name, kind, status_code, status_message,
       duration_nano / 1000000 AS duration_ms,
       http_route, http_response_status_code, db_system, peer_service
FROM spans
ORDER BY start_time_unix_nano
