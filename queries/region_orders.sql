-- The orders of the caller's region: a tenant-scoped view. `region` is a
-- claim of the caller's token (the demo issues one per demo user), so each
-- user sees only their region's rows; the view is maintained once for every
-- region that someone watches. Needs a server that verifies tokens.
SELECT o.id, c.name AS customer, c.region, o.status
FROM orders o JOIN customers c ON c.id = o.customer_id
WHERE c.region = auth.jwt() ->> 'region'
