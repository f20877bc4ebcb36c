-- Units sold per product, including products nobody has ordered yet.
SELECT p.name, p.category, count(oi.order_id) AS orders, sum(oi.quantity) AS units
FROM products p LEFT JOIN order_items oi ON oi.product_id = p.id
GROUP BY p.name, p.category
