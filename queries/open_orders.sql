-- Orders still to be fulfilled, with their customer.
SELECT o.id, c.name AS customer, o.status, o.created_at
FROM orders o JOIN customers c ON c.id = o.customer_id
WHERE o.status IN ('new', 'paid')
