-- No column wanted: rows counted over parts and memtable alike.
SELECT (SELECT count(*) FROM spans) AS spans, (SELECT count(*) FROM metrics) AS points, (SELECT count(*) FROM logs) AS logs
