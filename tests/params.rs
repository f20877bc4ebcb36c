//! Parameterized views over SSE: each subscriber's parameter values give it
//! its own rows, computed in the one shared dataflow, equal to Postgres
//! running the view with those values; bad values are refused for that
//! subscriber alone.

use crate::support::{assert_same, Follower, TestDb, TestServer};

const TASKS: &str = "SELECT t.id, t.title, t.done FROM tasks t WHERE t.project_id = $project_id";
const COUNTS: &str = "SELECT count(*) AS n, sum(t.points) AS points FROM tasks t
     WHERE t.project_id = $project_id AND t.done = $done";
const MEMBER: &str =
    "SELECT t.id, m.role FROM tasks t JOIN memberships m ON m.project_id = t.project_id
     WHERE m.user_id = $user AND t.points >= $min_points";

/// The view's SQL with the values written in, for Postgres.
fn substituted(sql: &str, values: &[(&str, &str)]) -> String {
    let mut out = sql.to_string();
    // Longest names first, so $project_id is not read as $project + "_id".
    let mut values = values.to_vec();
    values.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    for (name, literal) in values {
        out = out.replace(&format!("${name}"), literal);
    }
    out
}

/// Every follower, once at the current WAL position, equals Postgres.
async fn check(db: &TestDb, followers: &mut [(String, String, Follower)]) {
    let lsn = db.lsn().await;
    for (name, sql, f) in followers.iter_mut() {
        f.wait_for(lsn).await;
        assert_same(name, lsn, &f.rows, &db.oracle(sql).await);
    }
}

async fn follow(server: &TestServer, view: &str, query: &str) -> Follower {
    Follower::at(&server.addr, &format!("/views/{view}/sse?{query}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_subscriber_gets_the_rows_of_its_parameters() {
    let db = TestDb::new("params").await;
    db.exec(
        "CREATE TABLE tasks (id int PRIMARY KEY, project_id int, title text, done bool, points int);
         CREATE TABLE memberships (user_id text, project_id int, role text, PRIMARY KEY (user_id, project_id));
         INSERT INTO tasks SELECT i, 1 + i % 3, 'task ' || i, i % 2 = 0, i % 7 FROM generate_series(1, 30) i;
         INSERT INTO memberships VALUES ('ann', 1, 'owner'), ('ann', 2, 'viewer'), ('bob', 3, 'owner');",
    )
    .await;
    let server = TestServer::start(
        &db,
        &[
            ("project_tasks", TASKS),
            ("counts", COUNTS),
            ("member", MEMBER),
        ],
    )
    .await;

    // GET /views lists the parameters with the types they took from use.
    let (_, list) = server.get("/views").await;
    let counts = list
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "counts")
        .unwrap();
    assert_eq!(
        counts["params"],
        serde_json::json!([
            {"name": "project_id", "type": "int4", "from": "request"},
            {"name": "done", "type": "bool", "from": "request"}
        ])
    );

    /// (view, query string, the values as SQL literals)
    type Sub<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
    let subs: Vec<Sub> = vec![
        ("project_tasks", "project_id=1", vec![("project_id", "1")]),
        ("project_tasks", "project_id=2", vec![("project_id", "2")]),
        ("project_tasks", "project_id=99", vec![("project_id", "99")]),
        (
            "counts",
            "project_id=1&done=true",
            vec![("project_id", "1"), ("done", "true")],
        ),
        (
            "counts",
            "project_id=3&done=false",
            vec![("project_id", "3"), ("done", "false")],
        ),
        // No row matches: still one row, as Postgres gives for a global aggregate.
        (
            "counts",
            "project_id=42&done=true",
            vec![("project_id", "42"), ("done", "true")],
        ),
        (
            "member",
            "user=ann&min_points=3",
            vec![("user", "'ann'"), ("min_points", "3")],
        ),
        (
            "member",
            "user=bob&min_points=0",
            vec![("user", "'bob'"), ("min_points", "0")],
        ),
    ];
    let views = [
        ("project_tasks", TASKS),
        ("counts", COUNTS),
        ("member", MEMBER),
    ];
    let mut followers = Vec::new();
    for (view, query, values) in &subs {
        let sql = views.iter().find(|(n, _)| n == view).unwrap().1;
        followers.push((
            format!("{view}?{query}"),
            substituted(sql, values),
            follow(&server, view, query).await,
        ));
    }
    check(&db, &mut followers).await;
    let mut rng = viewcast::demo::Rng::new(5);
    for _ in 0..25 {
        let id = 1 + rng.below(40);
        let sql = match rng.below(5) {
            0 => format!("DELETE FROM tasks WHERE id = {id}"),
            1 => format!(
                "UPDATE tasks SET project_id = {}, done = NOT done WHERE id = {id}",
                1 + rng.below(3)
            ),
            2 => format!(
                "INSERT INTO memberships VALUES ('bob', {}, 'member') ON CONFLICT DO NOTHING",
                1 + rng.below(3)
            ),
            _ => format!(
                "INSERT INTO tasks VALUES ({id}, {}, 'new', {}, {}) ON CONFLICT (id) DO UPDATE SET points = excluded.points",
                1 + rng.below(3),
                rng.below(2) == 0,
                rng.below(9)
            ),
        };
        db.exec(&sql).await;
        check(&db, &mut followers).await;
    }
    // A second subscriber of a tuple already computed starts from its rows.
    let mut late = follow(&server, "project_tasks", "project_id=2").await;
    let lsn = db.lsn().await;
    late.wait_for(lsn).await;
    assert_same(
        "late",
        lsn,
        &late.rows,
        &db.oracle(&substituted(TASKS, &[("project_id", "2")])).await,
    );
    // GET answers for one tuple too.
    let (status, body) = server.get("/views/project_tasks?project_id=1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        crate::support::sorted_rows(&body).len(),
        db.oracle(&substituted(TASKS, &[("project_id", "1")]))
            .await
            .values()
            .sum::<i64>() as usize
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_refused_for_that_subscriber_alone() {
    let db = TestDb::new("bad_params").await;
    db.exec(
        "CREATE TABLE tasks (id int PRIMARY KEY, project_id int, title text, done bool, points int);
         INSERT INTO tasks VALUES (1, 1, 'a', false, 1);",
    )
    .await;
    let server = TestServer::start(&db, &[("project_tasks", TASKS)]).await;
    let mut good = follow(&server, "project_tasks", "project_id=1").await;
    for (query, needle) in [
        ("project_id=one", "invalid input syntax"),
        ("project_id=99999999999", "out of range"),
        ("", "missing parameter \\\"project_id\\\""),
        ("project_id=1&extra=2", "unknown parameter \\\"extra\\\""),
    ] {
        for path in [
            format!("/views/project_tasks/sse?{query}"),
            format!("/views/project_tasks?{query}"),
        ] {
            let (status, body) = viewcast::client::get(&server.addr, &path).await.unwrap();
            assert_eq!(status, 400, "{path}: {body}");
            assert!(body.contains(needle), "{path}: {body}");
        }
    }
    db.exec("INSERT INTO tasks VALUES (2, 1, 'b', true, 2), (3, 2, 'c', true, 3)")
        .await;
    let lsn = db.lsn().await;
    good.wait_for(lsn).await;
    assert_eq!(good.rows.len(), 2, "the good subscriber goes on");
    server.stop().await;
}

/// Parameters wherever a correlated column may stand: the select list, ON,
/// HAVING, a scalar subquery, a NOT EXISTS, an outer join's condition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_go_wherever_a_correlated_column_could() {
    let db = TestDb::new("params_anywhere").await;
    db.exec(
        "CREATE TABLE tasks (id int PRIMARY KEY, project_id int, title text, done bool, points int);
         CREATE TABLE memberships (user_id text, project_id int, role text, PRIMARY KEY (user_id, project_id));
         INSERT INTO tasks SELECT i, 1 + i % 4, 'task ' || i, i % 3 = 0, i % 6 FROM generate_series(1, 40) i;
         INSERT INTO memberships VALUES ('ann', 1, 'owner'), ('ann', 3, 'viewer'), ('bob', 2, 'owner');",
    )
    .await;
    let views: [(&str, &str); 5] = [
        (
            "scaled",
            "SELECT t.id, t.points * $factor AS scaled, $label AS label FROM tasks t WHERE t.points > 2",
        ),
        (
            "joined_on",
            "SELECT t.id, m.role FROM tasks t JOIN memberships m
               ON m.project_id = t.project_id AND m.user_id = $user",
        ),
        (
            "having",
            "SELECT t.project_id, sum(t.points) AS total FROM tasks t
             GROUP BY t.project_id HAVING sum(t.points) > $min_total",
        ),
        (
            "scalar_sub",
            "SELECT m.project_id, (SELECT count(*) FROM tasks t
                WHERE t.project_id = m.project_id AND t.points >= $min_points) AS n
             FROM memberships m WHERE m.user_id = $user",
        ),
        (
            "left_outer",
            "SELECT t.id, m.role FROM tasks t LEFT JOIN memberships m
               ON m.project_id = t.project_id AND m.user_id = $user
             WHERE NOT EXISTS (SELECT 1 FROM memberships x WHERE x.project_id = t.project_id AND x.role = $role)",
        ),
    ];
    let server = TestServer::start(&db, &views).await;
    type Sub<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
    let subs: Vec<Sub> = vec![
        (
            "scaled",
            "factor=3&label=x",
            vec![("factor", "3"), ("label", "'x'")],
        ),
        (
            "scaled",
            "factor=-1&label=",
            vec![("factor", "-1"), ("label", "''")],
        ),
        ("joined_on", "user=ann", vec![("user", "'ann'")]),
        ("having", "min_total=20", vec![("min_total", "20")]),
        ("having", "min_total=0", vec![("min_total", "0")]),
        (
            "scalar_sub",
            "user=ann&min_points=4",
            vec![("user", "'ann'"), ("min_points", "4")],
        ),
        (
            "left_outer",
            "user=bob&role=viewer",
            vec![("user", "'bob'"), ("role", "'viewer'")],
        ),
    ];
    let mut followers = Vec::new();
    for (view, query, values) in &subs {
        let sql = views.iter().find(|(n, _)| n == view).unwrap().1;
        followers.push((
            format!("{view}?{query}"),
            substituted(sql, values),
            follow(&server, view, query).await,
        ));
    }
    check(&db, &mut followers).await;
    for sql in [
        "UPDATE tasks SET points = points + 3 WHERE id % 5 = 0",
        "INSERT INTO memberships VALUES ('ann', 2, 'viewer'), ('bob', 4, 'viewer')",
        "DELETE FROM tasks WHERE project_id = 3 AND points < 3",
        "UPDATE memberships SET role = 'owner' WHERE user_id = 'ann' AND project_id = 3",
    ] {
        db.exec(sql).await;
        check(&db, &mut followers).await;
    }
    server.stop().await;
}

/// A view file named like the table it reads (`queries/tasks.sql` over
/// `tasks`) reads the table: a view cannot read itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_named_like_its_table_reads_the_table() {
    let db = TestDb::new("params_own_name").await;
    db.exec(
        "CREATE TABLE tasks (id int PRIMARY KEY, project_id int, title text, done bool, points int);
         INSERT INTO tasks VALUES (1, 1, 'a', false, 1), (2, 2, 'b', true, 2);",
    )
    .await;
    let server = TestServer::start(&db, &[("tasks", TASKS)]).await;
    let mut f = follow(&server, "tasks", "project_id=1").await;
    db.exec("INSERT INTO tasks VALUES (3, 1, 'c', false, 3)")
        .await;
    let lsn = db.lsn().await;
    f.wait_for(lsn).await;
    assert_same(
        "tasks",
        lsn,
        &f.rows,
        &db.oracle(&substituted(TASKS, &[("project_id", "1")])).await,
    );
    server.stop().await;
}
