-- How many orders are in each status.
SELECT status, count(*) AS orders
FROM orders
GROUP BY status
