-- The open tasks of one project ($project_id, given by the subscriber), only
-- if the caller belongs to it and only within the caller's tenant (both from
-- the verified token: a client cannot choose them).
SELECT t.id, t.title, t.assignee, t.priority
FROM tasks t
WHERE t.project_id = $project_id
  AND NOT t.done
  AND t.tenant = auth.jwt() ->> 'tenant'
  AND t.project_id IN (SELECT m.project_id FROM memberships m WHERE m.user_id = auth.uid())
