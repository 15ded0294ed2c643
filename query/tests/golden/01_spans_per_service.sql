-- Spans and errors per service, over parts and memtable together.
SELECT service_name,
       count(*) AS spans,
       sum(CASE WHEN status_code = 'error' THEN 1 ELSE 0 END) AS errors
FROM spans
GROUP BY service_name
ORDER BY service_name
