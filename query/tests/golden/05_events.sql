-- Exception events of failing spans.
SELECT service_name, name,
       events[1]['name'] AS event,
       events[1]['attributes']['exception.type'] AS exception_type,
       events[1]['attributes']['exception.message'] AS exception_message
FROM spans
WHERE status_code = 'error' AND array_length(events) > 0
