SELECT severity_number, severity_text, body, service_name,
       encode(trace_id, 'hex') AS trace_id, attributes['card.brand'] AS card
FROM logs
ORDER BY time_unix_nano
