-- Increase of a cumulative counter over the window.
WITH points AS (
  SELECT series_id, value_int FROM metrics WHERE metric_name = 'orders.placed'
)
SELECT series_id = (SELECT min(series_id) FROM points) AS one_series,
       max(value_int) - min(value_int) AS increase
FROM points
GROUP BY 1
