-- How many orders are in each status, and their average item count.
SELECT status, count(*) AS orders
FROM orders
GROUP BY status
