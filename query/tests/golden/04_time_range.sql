-- A time range that holds only the second trace (T0 + 1 s .. T0 + 1.5 s).
SELECT count(*) AS spans, count(DISTINCT trace_id) AS traces
FROM spans
WHERE start_time_unix_nano >= 1795000001000000000
  AND start_time_unix_nano < 1795000001500000000
