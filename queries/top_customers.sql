-- The five customers who spent most, with their latest order: a maintained
-- top-k over an aggregate, with a correlated subquery.
SELECT c.name, c.region, sum(oi.quantity * p.price) AS spent,
       (SELECT max(o2.created_at) FROM orders o2 WHERE o2.customer_id = c.id) AS last_order
FROM customers c
JOIN orders o ON o.customer_id = c.id
JOIN order_items oi ON oi.order_id = o.id
JOIN products p ON p.id = oi.product_id
GROUP BY c.id, c.name, c.region
ORDER BY spent DESC, c.name
LIMIT 5
