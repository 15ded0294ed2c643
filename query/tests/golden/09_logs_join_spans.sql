-- Each log with the span it was written in.
SELECT l.body, s.service_name, s.name, s.status_code
FROM logs l
JOIN spans s ON l.trace_id = s.trace_id AND l.span_id = s.span_id
ORDER BY l.time_unix_nano
