-- A multi-tenant task tracker: tenants own projects, users are members of
-- projects, projects have tasks. Load it with: psql "$PG" -f schema.sql
CREATE TABLE projects (
  id      int PRIMARY KEY,
  tenant  text NOT NULL,
  name    text NOT NULL
);
CREATE TABLE memberships (
  user_id    text NOT NULL,
  project_id int  NOT NULL REFERENCES projects,
  role       text NOT NULL DEFAULT 'member',
  PRIMARY KEY (user_id, project_id)
);
CREATE TABLE tasks (
  id          serial PRIMARY KEY,
  tenant      text NOT NULL,
  project_id  int  NOT NULL REFERENCES projects,
  title       text NOT NULL,
  assignee    text,
  priority    int  NOT NULL DEFAULT 2,
  done        bool NOT NULL DEFAULT false
);

INSERT INTO projects VALUES
  (1, 'acme',   'Website relaunch'),
  (2, 'acme',   'Billing'),
  (3, 'globex', 'Warehouse'),
  (4, 'globex', 'Hiring');
INSERT INTO memberships VALUES
  ('alice', 1, 'owner'), ('alice', 2, 'member'),
  ('bob',   2, 'owner'),
  ('carol', 3, 'owner'), ('carol', 4, 'member');
INSERT INTO tasks (tenant, project_id, title, assignee, priority, done) VALUES
  ('acme',   1, 'Draft the new landing page', 'alice', 1, false),
  ('acme',   1, 'Pick a font',                'alice', 3, true),
  ('acme',   2, 'Send the March invoices',    'bob',   1, false),
  ('acme',   2, 'Reconcile refunds',          'bob',   2, false),
  ('globex', 3, 'Count the pallets',          'carol', 2, false),
  ('globex', 4, 'Interview a forklift driver','carol', 1, false);
