-- The caller's projects with their open and done task counts.
SELECT p.id, p.name, m.role,
       count(t.id) FILTER (WHERE NOT t.done) AS open,
       count(t.id) FILTER (WHERE t.done) AS done
FROM memberships m
JOIN projects p ON p.id = m.project_id
LEFT JOIN tasks t ON t.project_id = p.id
WHERE m.user_id = auth.uid()
  AND p.tenant = auth.jwt() ->> 'tenant'
GROUP BY p.id, p.name, m.role
