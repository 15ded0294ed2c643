-- One row per data point; Prometheus names next to the OTLP names.
SELECT metric_name, prometheus_name, metric_type, unit, temporality, is_monotonic,
       service_name, value, value_int, time_unix_nano - 1795000000000000000 AS ns_after_t0
FROM metrics
WHERE metric_type <> 'histogram'
ORDER BY metric_name, time_unix_nano
