//! Views over Postgres views (`CREATE VIEW`): a name in FROM that is a view
//! reads its definition, as Postgres does, over the tables the definition
//! reads, which viewcast follows and publishes although no view file names
//! them. Each view equals Postgres's answer while the tables change and when
//! a view is redefined; a materialized view is refused with the reason.

use std::time::{Duration, Instant};

use viewcast::pg::source::Timeouts;

use crate::support::{assert_same, check_views, Follower, TestDb, TestServer};

const SETUP: &str = "
    CREATE TABLE customers (id int PRIMARY KEY, name text, region text);
    CREATE TABLE orders (id int PRIMARY KEY, customer_id int, amount numeric(10,2),
                         status text, note varchar(20));
    INSERT INTO customers SELECT i, 'c' || i, (ARRAY['eu','us','ap'])[i % 3 + 1]
      FROM generate_series(1, 30) i;
    INSERT INTO orders SELECT i, i % 30 + 1, i * 1.5, (ARRAY['open','paid','void'])[i % 3 + 1],
                              CASE WHEN i % 7 = 0 THEN 'Rush' END
      FROM generate_series(1, 200) i;
    CREATE SCHEMA rpt;
    -- BETWEEN, IN and LIKE come back from pg_get_viewdef as >= AND <=, = ANY (ARRAY[..]) and ~~.
    CREATE VIEW open_orders AS
      SELECT id, customer_id, amount FROM orders
      WHERE status IN ('open', 'paid') AND amount BETWEEN 10 AND 250 AND coalesce(note, '') NOT LIKE 'R%';
    -- A view over a view, in another schema, with its own column names.
    CREATE VIEW rpt.by_region (region, n, total) AS
      SELECT c.region, count(*), sum(o.amount)
      FROM customers c JOIN open_orders o ON o.customer_id = c.id GROUP BY c.region;
    -- Its own CTE, named like nothing else.
    CREATE VIEW best AS
      WITH m AS (SELECT customer_id, max(amount) AS top FROM orders GROUP BY 1)
      SELECT c.name, m.top FROM m JOIN customers c ON c.id = m.customer_id WHERE m.top > 250;
    CREATE VIEW top3 AS SELECT id, amount FROM orders ORDER BY amount DESC, id LIMIT 3;
    CREATE MATERIALIZED VIEW order_count AS SELECT count(*) FROM orders;
    -- Rules that write other tables: those are not read by any view, and
    -- must stay out of the publication (Postgres would refuse their deletes,
    -- as they have no replica identity).
    CREATE TABLE audit (id int, amount numeric);
    CREATE RULE orders_audit AS ON UPDATE TO orders DO ALSO INSERT INTO audit VALUES (new.id, new.amount);
    CREATE TABLE sink (id int);
    CREATE RULE into_sink AS ON INSERT TO open_orders DO INSTEAD INSERT INTO sink VALUES (new.id);
";

/// The server's views: each reads Postgres views. `customers` is also a
/// viewcast view (of no rows): it shadows the table for other view files, but
/// not inside the Postgres views' definitions, which read the table.
const VIEWS: &[(&str, &str)] = &[
    ("customers", "SELECT id, name, region FROM customers WHERE false"),
    ("open_rows", "SELECT * FROM open_orders"),
    ("regions", "SELECT region, n, total FROM rpt.by_region"),
    (
        "regions_cte",
        "WITH open_orders AS (SELECT 1 AS id) SELECT r.region, r.n, o.id FROM rpt.by_region r, open_orders o",
    ),
    ("best", "SELECT b.name, b.top FROM best b WHERE b.top < 290"),
    ("top3", "SELECT * FROM top3"),
    (
        "joined",
        "SELECT t.id, o.amount FROM top3 t LEFT JOIN open_orders o USING (id)",
    ),
];

fn quick() -> Timeouts {
    Timeouts {
        schema_poll: Duration::from_millis(500),
        ..Timeouts::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_over_postgres_views_follow_their_tables() {
    let db = TestDb::new("pg_views").await;
    db.exec(SETUP).await;
    let server = TestServer::start_with(&db.conninfo, VIEWS, quick()).await;
    server.wait_healthy().await;
    let mut followers = server.follow_all(VIEWS).await;
    // Postgres binds a view's names when it is created, so the same SQL is
    // the oracle: the `customers` file and the CTE do not reach into them.
    let views = VIEWS;
    check_views(&db, &mut followers, views).await;

    // The publication covers the tables under the views, which no view file names.
    let published = db
        .json_rows(
            "SELECT tablename FROM pg_publication_tables ORDER BY tablename",
            1,
        )
        .await
        .expect("publication tables");
    assert_eq!(published, vec!["[\"customers\"]", "[\"orders\"]"]);

    for step in [
        "INSERT INTO orders VALUES (500, 3, 120, 'open', NULL), (501, 4, 999, 'paid', NULL)",
        "UPDATE orders SET amount = amount + 100 WHERE id % 5 = 0",
        "UPDATE customers SET region = 'eu' WHERE id % 4 = 0",
        "DELETE FROM orders WHERE id % 3 = 0",
        "UPDATE orders SET note = 'Rush' WHERE id % 11 = 0",
        "INSERT INTO open_orders VALUES (700, 1, 1); DELETE FROM audit WHERE id % 2 = 0; DELETE FROM sink",
    ] {
        db.exec(step).await;
        check_views(&db, &mut followers, views).await;
    }

    // Redefining a view (no WAL message announces it) moves the views over
    // it to the new definition.
    db.exec(
        "CREATE OR REPLACE VIEW open_orders AS
           SELECT id, customer_id, amount FROM orders WHERE status = 'void'",
    )
    .await;
    for (f, (name, sql)) in followers.iter_mut().zip(views) {
        converge(&db, f, name, sql).await;
    }
    db.exec("INSERT INTO orders VALUES (600, 5, 42, 'void', NULL)")
        .await;
    check_views(&db, &mut followers, views).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materialized_views_are_refused_with_the_reason() {
    let db = TestDb::new("pg_matview").await;
    db.exec(SETUP).await;
    let server = TestServer::start_with(
        &db.conninfo,
        &[
            ("counted", "SELECT * FROM order_count"),
            ("fine", "SELECT count(*) FROM open_orders"),
        ],
        quick(),
    )
    .await;
    server.wait_healthy().await;
    let (status, body) = server.get("/views/counted").await;
    assert_eq!(status, 422, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("public.order_count is a materialized view")
            && error.contains("write its query as a viewcast view"),
        "{error}"
    );
    let (status, body) = server.get("/views/fine").await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

/// Reads events until the follower equals Postgres's answer to `sql`.
async fn converge(db: &TestDb, f: &mut Follower, name: &str, sql: &str) {
    let start = Instant::now();
    loop {
        let want = db.oracle(sql).await;
        if f.error.is_none() && f.rows == want {
            assert_same(name, f.lsn, &f.rows, &want);
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{name} did not converge: error {:?}",
            f.error
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), f.try_next()).await;
    }
}
