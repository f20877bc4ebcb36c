-- Open tasks per assignee across the caller's tenant, above a priority cut.
SELECT t.assignee, count(*) AS open, min(t.priority) AS most_urgent
FROM tasks t
WHERE t.tenant = auth.jwt() ->> 'tenant'
  AND NOT t.done
  AND t.priority <= $max_priority
GROUP BY t.assignee
