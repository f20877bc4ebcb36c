-- The caller's region's orders in one status, with their units: `$status`
-- comes from the subscriber (new, paid, shipped, cancelled), the region
-- from the caller's token.
SELECT o.id, c.name AS customer, sum(oi.quantity) AS units
FROM orders o
JOIN customers c ON c.id = o.customer_id
JOIN order_items oi ON oi.order_id = o.id
WHERE c.region = auth.jwt() ->> 'region' AND o.status = $status
GROUP BY o.id, c.name
