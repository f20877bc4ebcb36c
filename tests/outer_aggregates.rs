//! Aggregates that belong to an enclosing query: a call in a subquery whose
//! arguments read only an enclosing query's columns is computed there, over
//! that query's rows (one row without GROUP BY, one per group with it), as
//! Postgres places it. Every view is compared with Postgres running its SQL,
//! from the snapshot and after inserts, updates and deletes, down to empty
//! tables and back; then the shapes Postgres refuses are refused with its
//! message.

use crate::support::{check_views, TestDb, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outer_level_aggregates_equal_postgres() {
    let db = TestDb::new("outer_aggregates").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, g int, x int, s text);
         CREATE TABLE u (id int PRIMARY KEY, v int);
         INSERT INTO t VALUES (1, 1, 10, 'a'), (2, 1, 20, 'b'), (3, 2, 5, 'c'), (4, 2, NULL, 'd'),
                              (5, 3, 7, NULL);
         INSERT INTO u VALUES (1, 100), (2, 200), (3, NULL);",
    )
    .await;
    let views: Vec<(&str, &str)> = vec![
        // PostgreSQL's subselect.sql shape: the argument is a subquery that
        // reads the outer row; the max is over the whole table, one row.
        (
            "max_of_subquery",
            "SELECT (SELECT max((SELECT i.x FROM t i WHERE i.id = o.id))) AS m FROM t o",
        ),
        ("max_outer", "SELECT (SELECT max(o.x)) AS m FROM t o"),
        (
            "count_per_group",
            "SELECT o.g, (SELECT count(o.x) FROM u LIMIT 1) AS c FROM t o GROUP BY o.g",
        ),
        // sum(o.x) is the outer query's, count(*) the subquery's.
        (
            "mixed",
            "SELECT (SELECT sum(o.x) + count(*) FROM u) AS s FROM t o",
        ),
        (
            "grouped_having",
            "SELECT o.g, (SELECT max(o.x) - min(o.x)) AS spread,
                    (SELECT string_agg(o.s, ',' ORDER BY o.s DESC)) AS names
             FROM t o GROUP BY o.g HAVING (SELECT count(o.id)) > 1",
        ),
        // Two levels out: sum(o.x) belongs to the outermost query.
        (
            "two_levels",
            "SELECT o.g, (SELECT (SELECT sum(o.x) + count(*) FROM u) FROM u u2 WHERE u2.id = 1) AS s
             FROM t o GROUP BY o.g",
        ),
        (
            "two_levels_where",
            "SELECT o.g, (SELECT count(*) FROM u WHERE u.v > (SELECT avg(o.x) * 10)) AS c
             FROM t o GROUP BY o.g",
        ),
        // The argument also reads the middle query: the middle query's.
        (
            "middle_level",
            "SELECT o.id, (SELECT (SELECT max(u.v + o.x)) FROM u WHERE u.v > 100) AS m FROM t o",
        ),
        // An outer aggregate inside the subquery's own aggregate.
        (
            "inside_inner_aggregate",
            "SELECT (SELECT sum(u.v + (SELECT max(o.x))) FROM u) AS s FROM t o",
        ),
        (
            "filter_reads_outer",
            "SELECT (SELECT count(*) FILTER (WHERE o.x > 8)) AS c, (SELECT count(*)) AS one FROM t o",
        ),
        // The enclosing query is itself a correlated subquery: one row per
        // u, also where no t row matches.
        (
            "correlated_enclosing",
            "SELECT u.id, (SELECT (SELECT max(o.x)) FROM t o WHERE o.g = u.id) AS m FROM u",
        ),
        (
            "in_order_by_limit",
            "SELECT o.g FROM t o GROUP BY o.g ORDER BY (SELECT sum(o.x)) DESC NULLS LAST, o.g LIMIT 2",
        ),
    ];
    let server = TestServer::start(&db, &views).await;
    let mut followers = server.follow_all(&views).await;
    check_views(&db, &mut followers, &views).await;

    db.exec(
        "INSERT INTO t VALUES (6, 3, 30, 'e'), (7, 4, NULL, NULL);
         UPDATE t SET x = x + 100 WHERE id = 1;
         UPDATE t SET g = 2 WHERE id = 5;
         UPDATE u SET v = 150 WHERE id = 3;
         DELETE FROM u WHERE id = 1;",
    )
    .await;
    check_views(&db, &mut followers, &views).await;

    db.exec("DELETE FROM t WHERE g = 2; DELETE FROM u;").await;
    check_views(&db, &mut followers, &views).await;

    db.exec("DELETE FROM t;").await;
    check_views(&db, &mut followers, &views).await;

    db.exec(
        "INSERT INTO t VALUES (1, 1, 1, 'z'), (2, 2, 2, 'y');
         INSERT INTO u VALUES (1, 1), (2, 2);",
    )
    .await;
    check_views(&db, &mut followers, &views).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outer_level_aggregates_refused_as_postgres_refuses_them() {
    let db = TestDb::new("outer_aggregates_refused").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, g int, x int);
         CREATE TABLE u (id int PRIMARY KEY, v int);",
    )
    .await;
    let cases = [
        (
            "ungrouped",
            "SELECT o.x, (SELECT max(o.x)) FROM t o",
            "column \"o.x\" must appear in the GROUP BY clause",
        ),
        (
            "in_where",
            "SELECT o.id FROM t o WHERE o.x = (SELECT max(o.x))",
            "aggregate functions are not allowed in WHERE",
        ),
        (
            "in_group_by",
            "SELECT o.g FROM t o GROUP BY (SELECT max(o.x))",
            "aggregate functions are not allowed in GROUP BY",
        ),
        (
            "nested_inner",
            "SELECT (SELECT max(o.x + count(*)) FROM u) FROM t o",
            "aggregate function calls cannot be nested",
        ),
        (
            "nested_outer",
            "SELECT sum((SELECT max(o.x))) FROM t o",
            "aggregate function calls cannot be nested",
        ),
        (
            "lateral",
            "SELECT * FROM t o, LATERAL (SELECT max(o.x)) d",
            "aggregate functions are not allowed",
        ),
    ];
    let views: Vec<(&str, &str)> = cases.iter().map(|(n, sql, _)| (*n, *sql)).collect();
    let server = TestServer::start_unwaited(&db, &views).await;
    server.wait_healthy().await;
    for (name, sql, want) in cases {
        // Postgres refuses it with the same words.
        let pg = db.json_rows(sql, 1).await;
        assert!(
            pg.as_ref().is_err_and(|e| e.contains(want)),
            "{name}: Postgres gives {pg:?}"
        );
        let (status, body) = server.get(&format!("/views/{name}")).await;
        let msg = body["error"].as_str().unwrap_or_default().to_string();
        assert!(
            status == 422 && msg.contains(want),
            "{name}: {status} {body}"
        );
    }
    server.stop().await;
}
