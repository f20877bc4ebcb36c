//! Schema changes and view files while viewcast streams: ALTER TABLE (add,
//! drop, rename, retype a column), DROP and CREATE TABLE, partitions attached
//! and detached, privileges revoked and granted again, view files added,
//! edited and removed. Views the change does not touch go on without an
//! event; views it breaks fail with the reason and come back by themselves.

use std::time::{Duration, Instant};

use serde_json::Value;
use viewcast::pg::source::Timeouts;

use crate::support::{assert_same, Follower, TestDb, TestServer};

/// A quick catalog poll, so DDL the replication stream does not announce
/// shows within a second or two.
fn quick() -> Timeouts {
    Timeouts {
        schema_poll: Duration::from_millis(500),
        ..Timeouts::default()
    }
}

async fn start(db: &TestDb, views: &[(&str, &str)]) -> TestServer {
    let server = TestServer::start_with(&db.conninfo, views, quick()).await;
    server.wait_healthy().await;
    server
}

/// Reads events until the follower's contents equal Postgres's answer to
/// `sql` (without an error), or fails after `limit`.
async fn converge(db: &TestDb, f: &mut Follower, name: &str, sql: &str) {
    let want = db.oracle(sql).await;
    let start = Instant::now();
    while f.error.is_some() || f.rows != want {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{name} did not converge: error {:?}",
            f.error
        );
        let next = tokio::time::timeout(Duration::from_secs(5), f.try_next()).await;
        if let Ok(r) = next {
            assert!(r.expect("stream").is_some(), "{name}: stream ended");
        }
    }
    assert_same(name, f.lsn, &f.rows, &want);
}

/// Reads events until an error event arrives; returns its message.
async fn failure(f: &mut Follower, name: &str) -> String {
    let start = Instant::now();
    while f.error.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{name} did not fail"
        );
        let _ = tokio::time::timeout(Duration::from_secs(5), f.try_next()).await;
    }
    f.error.clone().unwrap()
}

/// Waits until `GET /views/{name}` answers 200.
async fn served(server: &TestServer, name: &str) {
    let start_at = Instant::now();
    while server.get(&format!("/views/{name}")).await.0 != 200 {
        assert!(
            start_at.elapsed() < Duration::from_secs(20),
            "{name} not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn kinds(f: &Follower, from: usize) -> Vec<String> {
    f.events[from..].iter().map(|e| e.event.clone()).collect()
}

async fn metric(server: &TestServer, name: &str) -> u64 {
    let (_, text) = viewcast::client::get(&server.addr, "/metrics")
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_table_while_streaming() {
    let db = TestDb::new("alter_table").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text, n int);
         INSERT INTO t SELECT i, 'v' || i, i FROM generate_series(1, 5) i;",
    )
    .await;
    let views = [
        ("reads_v", "SELECT id, v FROM t"),
        ("star", "SELECT * FROM t"),
        ("uses_n", "SELECT id, n FROM t WHERE n > 1"),
    ];
    let server = start(&db, &views).await;
    let mut reads_v = server.follow("reads_v").await;
    let mut star = server.follow("star").await;
    let mut uses_n = server.follow("uses_n").await;

    // A new column: views that do not read it go on with no event of their
    // own; SELECT * gets a snapshot with the new columns.
    let mark = reads_v.events.len();
    db.exec("ALTER TABLE t ADD COLUMN extra int DEFAULT 7; INSERT INTO t VALUES (6, 'v6', 6, 8);")
        .await;
    converge(&db, &mut reads_v, "reads_v", views[0].1).await;
    assert!(
        kinds(&reads_v, mark)
            .iter()
            .all(|k| k == "diff" || k == "progress"),
        "reads_v saw {:?}",
        kinds(&reads_v, mark)
    );
    converge(&db, &mut star, "star", views[1].1).await;
    assert_eq!(star.columns, ["id", "v", "n", "extra"]);
    converge(&db, &mut uses_n, "uses_n", views[2].1).await;

    // A column a view reads is dropped: that view fails, naming it.
    db.exec("ALTER TABLE t DROP COLUMN n; INSERT INTO t VALUES (7, 'v7', 9);")
        .await;
    let message = failure(&mut uses_n, "uses_n").await;
    assert!(message.contains("\"n\""), "{message}");
    let (status, body) = server.get("/views/uses_n").await;
    assert_eq!(status, 500, "{body}");
    converge(&db, &mut reads_v, "reads_v", views[0].1).await;
    converge(&db, &mut star, "star", views[1].1).await;
    assert_eq!(star.columns, ["id", "v", "extra"]);

    // It comes back by itself once the schema lets it.
    db.exec("ALTER TABLE t ADD COLUMN n int; UPDATE t SET n = id;")
        .await;
    converge(&db, &mut uses_n, "uses_n", views[2].1).await;
    assert_eq!(uses_n.events.last().unwrap().event, "snapshot");

    // A rename breaks the view that names the column, until renamed back.
    db.exec("ALTER TABLE t RENAME COLUMN v TO w").await;
    db.exec("UPDATE t SET w = w || '!' WHERE id = 1").await;
    let message = failure(&mut reads_v, "reads_v").await;
    assert!(message.contains("\"v\""), "{message}");
    db.exec("ALTER TABLE t RENAME COLUMN w TO v; UPDATE t SET v = 'back' WHERE id = 2;")
        .await;
    converge(&db, &mut reads_v, "reads_v", views[0].1).await;

    // A new type: the view's column type changes with it.
    db.exec(
        "ALTER TABLE t ALTER COLUMN n TYPE bigint; UPDATE t SET n = n * 1000000000 WHERE id = 3;",
    )
    .await;
    converge(&db, &mut uses_n, "uses_n", views[2].1).await;
    let (_, list) = server.get("/views").await;
    let cols = list
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "uses_n")
        .unwrap()["columns"]
        .clone();
    assert_eq!(cols[1]["type"], "int8", "{cols}");

    // TRUNCATE empties every view.
    db.exec("TRUNCATE t").await;
    for (f, (name, sql)) in [&mut reads_v, &mut star, &mut uses_n]
        .into_iter()
        .zip(views)
    {
        converge(&db, f, name, sql).await;
        assert!(f.rows.is_empty());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_dropped_and_created_while_streaming() {
    let db = TestDb::new("drop_create").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, g text); INSERT INTO t VALUES (1, 'a'), (2, 'b');",
    )
    .await;
    let views = [
        ("on_t", "SELECT g, count(*) AS c FROM t GROUP BY g"),
        ("on_u", "SELECT id, x FROM u"),
    ];
    let server = start(&db, &views).await;
    // A table that does not exist yet: refused, with the reason.
    let (status, body) = server.get("/views/on_u").await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("\"u\""), "{body}");

    // Created later: the view is served without a restart.
    db.exec("CREATE TABLE u (id int PRIMARY KEY, x text); INSERT INTO u VALUES (1, 'x');")
        .await;
    let start_at = Instant::now();
    loop {
        let (status, body) = server.get("/views/on_u").await;
        if status == 200 {
            assert_eq!(crate::support::sorted_rows(&body), ["[1,\"x\"]"]);
            break;
        }
        assert!(
            start_at.elapsed() < Duration::from_secs(30),
            "on_u not served: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut on_u = server.follow("on_u").await;
    db.exec("INSERT INTO u VALUES (2, 'y')").await;
    converge(&db, &mut on_u, "on_u", views[1].1).await;

    // Dropped: its views fail with the reason; the others go on.
    let mut on_t = server.follow("on_t").await;
    db.exec("DROP TABLE t").await;
    let message = failure(&mut on_t, "on_t").await;
    assert!(message.contains("\"t\" does not exist"), "{message}");
    db.exec("INSERT INTO u VALUES (3, 'z')").await;
    converge(&db, &mut on_u, "on_u", views[1].1).await;

    // Created again: back, with a snapshot of the new table's rows.
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, g text); INSERT INTO t VALUES (5, 'e'), (6, 'e');",
    )
    .await;
    converge(&db, &mut on_t, "on_t", views[0].1).await;
    db.exec("INSERT INTO t VALUES (7, 'f')").await;
    converge(&db, &mut on_t, "on_t", views[0].1).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_files_added_edited_and_removed() {
    let db = TestDb::new("view_files").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, g text, n int);
         CREATE TABLE other (id int PRIMARY KEY, label text);
         INSERT INTO t SELECT i, (ARRAY['a','b'])[1 + i % 2], i FROM generate_series(1, 10) i;
         INSERT INTO other VALUES (1, 'one');",
    )
    .await;
    let server = start(&db, &[("a", "SELECT g, count(*) AS c FROM t GROUP BY g")]).await;
    let mut a = server.follow("a").await;
    let copied = metric(&server, "viewcast_tables_copied_total").await;

    // A new file over a table viewcast already follows: served from the
    // state it keeps, without copying anything from Postgres.
    server.write_view("b", "SELECT id, n FROM t WHERE n > 5");
    served(&server, "b").await;
    assert_eq!(
        metric(&server, "viewcast_tables_copied_total").await,
        copied,
        "a view over followed tables needs no COPY"
    );
    let mut b = server.follow("b").await;
    db.exec("UPDATE t SET n = n + 10 WHERE id < 3").await;
    converge(&db, &mut b, "b", "SELECT id, n FROM t WHERE n > 5").await;

    // Edited: its subscribers get a snapshot with the new columns.
    let mark = a.events.len();
    let edited = "SELECT g, count(*) AS c, sum(n) AS total FROM t GROUP BY g";
    server.write_view("a", edited);
    converge(&db, &mut a, "a", edited).await;
    assert_eq!(a.columns, ["g", "c", "total"]);
    assert!(kinds(&a, mark).contains(&"snapshot".to_string()));

    // An edit that does not compile is refused; the old version runs on.
    server.write_view("a", "SELECT g, count(*) FROM t GROUP BY nope");
    tokio::time::sleep(Duration::from_secs(2)).await;
    db.exec("INSERT INTO t VALUES (50, 'a', 1)").await;
    converge(&db, &mut a, "a", edited).await;
    let (status, _) = server.get("/views/a").await;
    assert_eq!(status, 200);

    // A new file over a table not followed yet: that table alone is copied.
    server.write_view("c", "SELECT id, label FROM other");
    served(&server, "c").await;
    assert_eq!(
        metric(&server, "viewcast_tables_copied_total").await,
        copied + 1,
        "only the new table is copied"
    );
    let mut c = server.follow("c").await;
    db.exec("INSERT INTO other VALUES (2, 'two')").await;
    converge(&db, &mut c, "c", "SELECT id, label FROM other").await;

    // Removed: its subscribers hear so and their stream ends.
    server.remove_view("b");
    let start_at = Instant::now();
    loop {
        let r = tokio::time::timeout(Duration::from_secs(5), b.try_next()).await;
        if let Ok(Ok(None)) = r {
            break;
        }
        assert!(
            start_at.elapsed() < Duration::from_secs(20),
            "b's stream did not end"
        );
    }
    assert!(
        b.error.as_deref().unwrap_or("").contains("removed"),
        "{:?}",
        b.error
    );
    assert_eq!(server.get("/views/b").await.0, 404);
    // The others saw nothing of it.
    db.exec("INSERT INTO t VALUES (51, 'b', 2)").await;
    converge(&db, &mut a, "a", edited).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_tables_follow_rows_across_partitions() {
    let db = TestDb::new("partitions").await;
    db.exec(
        "CREATE TABLE m (id int, region text, amount int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
         CREATE TABLE m_east PARTITION OF m FOR VALUES IN ('east');
         CREATE TABLE m_west PARTITION OF m FOR VALUES IN ('west');
         INSERT INTO m SELECT i, (ARRAY['east','west'])[1 + i % 2], i FROM generate_series(1, 20) i;
         CREATE TABLE parent (id int PRIMARY KEY, v int);
         CREATE TABLE child () INHERITS (parent);",
    )
    .await;
    let sql = "SELECT region, count(*) AS c, sum(amount) AS s FROM m GROUP BY region";
    let views = [
        ("by_region", sql),
        ("leaf", "SELECT id FROM m_east"),
        ("inherited", "SELECT id FROM parent"),
    ];
    let server = start(&db, &views).await;
    for (name, needle) in [("leaf", "partition"), ("inherited", "inheritance")] {
        let (status, body) = server.get(&format!("/views/{name}")).await;
        assert_eq!(status, 422, "{name}: {body}");
        assert!(body["error"].as_str().unwrap().contains(needle), "{body}");
    }
    let mut f = server.follow("by_region").await;
    db.exec("INSERT INTO m VALUES (100, 'east', 5), (101, 'west', 6)")
        .await;
    converge(&db, &mut f, "by_region", sql).await;
    // An update that moves rows to another partition.
    db.exec("UPDATE m SET region = 'west' WHERE id < 6 AND region = 'east'")
        .await;
    converge(&db, &mut f, "by_region", sql).await;
    db.exec("DELETE FROM m WHERE id > 15").await;
    converge(&db, &mut f, "by_region", sql).await;
    // Attaching a table with rows adds them; detaching takes them away
    // (Postgres publishes neither: the catalog poll sees it).
    db.exec(
        "CREATE TABLE m_north (id int, region text, amount int, PRIMARY KEY (id, region));
         INSERT INTO m_north VALUES (200, 'north', 1), (201, 'north', 2);
         ALTER TABLE m ATTACH PARTITION m_north FOR VALUES IN ('north');",
    )
    .await;
    converge(&db, &mut f, "by_region", sql).await;
    db.exec("ALTER TABLE m DETACH PARTITION m_east").await;
    converge(&db, &mut f, "by_region", sql).await;
    db.exec("INSERT INTO m VALUES (300, 'north', 3)").await;
    converge(&db, &mut f, "by_region", sql).await;
    server.stop().await;

    // A table that gains an inheritance child while followed: its views fail
    // rather than miss the child's rows.
    db.exec("CREATE TABLE base (id int PRIMARY KEY); INSERT INTO base VALUES (1);")
        .await;
    let server = start(&db, &[("on_base", "SELECT id FROM base")]).await;
    let mut on_base = server.follow("on_base").await;
    db.exec("CREATE TABLE base_child () INHERITS (base); INSERT INTO base_child VALUES (2);")
        .await;
    let message = failure(&mut on_base, "on_base").await;
    assert!(message.contains("inheritance"), "{message}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_zero_column_and_index_identity_tables() {
    let db = TestDb::new("odd_tables").await;
    db.exec(
        "CREATE TABLE history (tid int, delta int, mtime timestamptz DEFAULT now());
         INSERT INTO history VALUES (1, 5), (1, 5), (2, -3);
         CREATE TABLE onerow ();
         INSERT INTO onerow DEFAULT VALUES;
         CREATE TABLE idx (a int NOT NULL, b int NOT NULL, v text);
         CREATE UNIQUE INDEX idx_ab ON idx (a, b);
         ALTER TABLE idx REPLICA IDENTITY USING INDEX idx_ab;
         INSERT INTO idx VALUES (1, 1, 'x'), (1, 2, 'y');",
    )
    .await;
    let views = [
        (
            "history_totals",
            "SELECT tid, count(*) AS n, sum(delta) AS d FROM history GROUP BY tid",
        ),
        ("rows_of_onerow", "SELECT count(*) AS n FROM onerow"),
        ("crossed", "SELECT h.tid FROM history h, onerow"),
        ("by_index", "SELECT a, b, v FROM idx"),
    ];
    let server = start(&db, &views).await;
    let mut fs = Vec::new();
    for (name, _) in views {
        fs.push(server.follow(name).await);
    }
    db.exec(
        "INSERT INTO history VALUES (1, 5), (3, 1);
         INSERT INTO onerow DEFAULT VALUES;
         UPDATE idx SET v = 'z' WHERE a = 1 AND b = 2;
         UPDATE idx SET b = 3 WHERE a = 1 AND b = 1;
         DELETE FROM idx WHERE b = 2;",
    )
    .await;
    for (f, (name, sql)) in fs.iter_mut().zip(views) {
        converge(&db, f, name, sql).await;
    }
    // Postgres refuses to update a published table without a replica identity.
    let refused = db
        .client
        .batch_execute("UPDATE history SET delta = 0")
        .await
        .expect_err("Postgres refuses it");
    assert!(viewcast::pg::error_text(&refused).contains("replica identity"));
    db.exec("TRUNCATE history, onerow").await;
    for (f, (name, sql)) in fs.iter_mut().zip(views) {
        converge(&db, f, name, sql).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_that_cannot_be_read_fails_only_its_views() {
    let db = TestDb::new("revoked").await;
    let role = "viewcast_revoked";
    db.exec(&format!(
        "DROP ROLE IF EXISTS {role};
         CREATE ROLE {role} LOGIN REPLICATION;
         CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY);
         INSERT INTO a VALUES (1); INSERT INTO b VALUES (1);
         GRANT SELECT ON a, b TO {role};
         CREATE PUBLICATION viewcast FOR TABLE a, b;"
    ))
    .await;
    let conninfo = db
        .conninfo
        .replace("user=postgres", &format!("user={role}"));
    let views = [("on_a", "SELECT id FROM a"), ("on_b", "SELECT id FROM b")];
    let server = TestServer::start_with(&conninfo, &views, quick()).await;
    server.wait_healthy().await;
    let mut on_a = server.follow("on_a").await;
    let mut on_b = server.follow("on_b").await;
    db.exec(&format!("REVOKE SELECT ON b FROM {role}")).await;
    let message = failure(&mut on_b, "on_b").await;
    assert!(message.contains("permission denied"), "{message}");
    let (status, health) = server.get("/healthz").await;
    assert_eq!(
        status, 200,
        "one table failing is not the server failing: {health}"
    );
    db.exec("INSERT INTO a VALUES (2); INSERT INTO b VALUES (2);")
        .await;
    converge(&db, &mut on_a, "on_a", views[0].1).await;
    db.exec(&format!("GRANT SELECT ON b TO {role}")).await;
    converge(&db, &mut on_b, "on_b", views[1].1).await;
    let body: Value = server.get("/views/on_b").await.1;
    assert_eq!(crate::support::sorted_rows(&body), ["[1]", "[2]"]);
    server.stop().await;
}
