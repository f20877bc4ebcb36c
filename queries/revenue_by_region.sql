-- Revenue and item count per customer region, over orders that were not cancelled.
SELECT c.region, count(*) AS items, sum(oi.quantity * p.price) AS revenue
FROM orders o
JOIN customers c ON c.id = o.customer_id
JOIN order_items oi ON oi.order_id = o.id
JOIN products p ON p.id = oi.product_id
WHERE o.status <> 'cancelled'
GROUP BY c.region
