SELECT metric_name, attributes['http.route'] AS route, count, sum, min, max,
       bucket_counts, explicit_bounds
FROM metrics
WHERE metric_type = 'histogram'
