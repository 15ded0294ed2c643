-- Attribute maps by type, and resource attributes.
SELECT name,
       attributes['rpc.method'] AS rpc_method,
       attributes_int['cart.items'] AS items,
       attributes_bool['cart.premium'] AS premium,
       attributes_double['cart.total'] AS total,
       resource_attributes['deployment.environment.name'] AS env
FROM spans
WHERE service_name = 'cart'
