//! One behaviour per test: upstream transactions interleaved with what a
//! subscriber must see.

use crate::support::{assert_same, check_view, check_views, Seen, TestDb, TestServer};
use viewcast::pg::Lsn;

const ORDERS: &str =
    "CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric(10,2), note text);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statement_transaction_arrives_as_one_diff() {
    let db = TestDb::new("multi_stmt").await;
    db.exec(ORDERS).await;
    db.exec("INSERT INTO orders VALUES (1, 'ann', 10, 'x')")
        .await;
    let server = TestServer::start(
        &db,
        &[("all_orders", "SELECT id, customer, amount FROM orders")],
    )
    .await;
    let mut f = server.follow("all_orders").await;
    let before = f.events.len();
    db.exec("BEGIN; INSERT INTO orders VALUES (2, 'bob', 20, 'y'); INSERT INTO orders VALUES (3, 'cy', 30, 'z'); UPDATE orders SET amount = 11 WHERE id = 1; DELETE FROM orders WHERE id = 3; COMMIT;").await;
    let lsn = db.lsn().await;
    f.wait_for(lsn).await;
    let diffs = f.diffs_since(before);
    assert_eq!(diffs.len(), 1, "one transaction, one diff: {diffs:?}");
    let changes = diffs[0].data["changes"].as_array().unwrap();
    // +bob, -ann(10.00), +ann(11.00); cy was inserted and deleted inside the transaction.
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert_same(
        "all_orders",
        lsn,
        &f.rows,
        &db.oracle("SELECT id, customer, amount FROM orders").await,
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_transaction_never_appears() {
    let db = TestDb::new("rollback").await;
    db.exec(ORDERS).await;
    let server = TestServer::start(&db, &[("all_orders", "SELECT id, customer FROM orders")]).await;
    let mut f = server.follow("all_orders").await;
    db.exec("BEGIN; INSERT INTO orders VALUES (1, 'ghost', 1, ''); ROLLBACK;")
        .await;
    db.exec("INSERT INTO orders VALUES (2, 'real', 2, '')")
        .await;
    let lsn = db.lsn().await;
    f.wait_for(lsn).await;
    assert!(
        !f.events
            .iter()
            .any(|e| e.data.to_string().contains("ghost")),
        "rolled back row was seen: {:?}",
        f.events
    );
    assert_same(
        "all_orders",
        lsn,
        &f.rows,
        &db.oracle("SELECT id, customer FROM orders").await,
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_of_key_and_delete_with_default_replica_identity() {
    let db = TestDb::new("key_update").await;
    db.exec(ORDERS).await;
    db.exec("INSERT INTO orders SELECT i, 'c' || i, i * 1.5, 'n' FROM generate_series(1, 5) i")
        .await;
    // The view projects non-key columns only: the server must know the old rows itself.
    let sql = "SELECT customer, amount FROM orders WHERE amount > 2";
    let server = TestServer::start(&db, &[("v", sql)]).await;
    let mut f = server.follow("v").await;
    for stmt in [
        "UPDATE orders SET id = 10 WHERE id = 1",
        "UPDATE orders SET id = 11, amount = 100 WHERE id = 2",
        "DELETE FROM orders WHERE id = 3",
        "UPDATE orders SET customer = 'renamed' WHERE id = 4",
        "DELETE FROM orders WHERE id = 11",
    ] {
        db.exec(stmt).await;
        check_view(&db, &mut f, "v", sql).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_swapping_a_deferrable_key_inside_a_transaction() {
    // Under a deferrable primary key two rows may hold one key until the
    // transaction ends: the second update's old row is the one that had the
    // key before, not the one the first update just wrote. (Postgres takes
    // no deferrable key as replica identity, so such a table is FULL.)
    let db = TestDb::new("deferred_swap").await;
    db.exec(
        "CREATE TABLE slots (id int, name text, CONSTRAINT slots_pk PRIMARY KEY (id) DEFERRABLE INITIALLY DEFERRED);
         ALTER TABLE slots REPLICA IDENTITY FULL;
         INSERT INTO slots VALUES (1, 'a'), (2, 'b'), (3, 'c');",
    )
    .await;
    let sql = "SELECT id, name FROM slots";
    let server = TestServer::start(&db, &[("v", sql)]).await;
    let mut f = server.follow("v").await;
    for stmt in [
        "UPDATE slots SET id = 3 - id WHERE id IN (1, 2)",
        "UPDATE slots SET name = name || '!' WHERE id = 1",
        "UPDATE slots SET name = name || '?' WHERE id = 2",
        "BEGIN; UPDATE slots SET id = id + 1; UPDATE slots SET name = upper(name) WHERE id = 3; COMMIT;",
        "DELETE FROM slots WHERE id = 2",
        "DELETE FROM slots",
    ] {
        db.exec(stmt).await;
        check_view(&db, &mut f, "v", sql).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_toasted_value_is_filled_in() {
    let db = TestDb::new("toast").await;
    // The TOASTed column sits between others, so it is filled in by its
    // position in the old row, not as its last value.
    db.exec("CREATE TABLE docs (id int PRIMARY KEY, body text, title text)")
        .await;
    // ~40 kB of poorly compressible text is stored out of line (TOASTed).
    db.exec("INSERT INTO docs SELECT 1, string_agg(md5(i::text), ''), 'first' FROM generate_series(1, 1250) i").await;
    let sql = "SELECT id, title, body FROM docs";
    let server = TestServer::start(&db, &[("docs_view", sql)]).await;
    let mut f = server.follow("docs_view").await;
    // The body is unchanged: the key stays, then the key moves (the old row
    // is found by the old key the change carries).
    for (stmt, title) in [
        ("UPDATE docs SET title = 'second' WHERE id = 1", "second"),
        (
            "UPDATE docs SET id = 2, title = 'third' WHERE id = 1",
            "third",
        ),
    ] {
        db.exec(stmt).await;
        check_view(&db, &mut f, "docs_view", sql).await;
        let row = f.rows.keys().next().expect("one row");
        assert!(
            row.len() > 40_000 && row.contains(title),
            "body kept, title updated: {stmt}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nulls_in_join_keys_and_aggregates() {
    let db = TestDb::new("nulls").await;
    db.exec(
        "CREATE TABLE c (id int PRIMARY KEY, name text);
         CREATE TABLE o (id int PRIMARY KEY, cid int, amount int);
         INSERT INTO c VALUES (1, 'a'), (2, NULL), (3, 'c');
         INSERT INTO o VALUES (1, 1, 10), (2, NULL, 5), (3, 1, NULL), (4, 2, 7);",
    )
    .await;
    let views = [
        ("joined", "SELECT c.name, o.amount FROM o JOIN c ON c.id = o.cid"),
        ("left_joined", "SELECT o.id, c.name FROM o LEFT JOIN c ON c.id = o.cid"),
        ("per_customer", "SELECT cid, count(*) AS n, count(amount) AS with_amount, sum(amount) AS total, avg(amount) AS mean, min(amount), max(amount) FROM o GROUP BY cid"),
        ("overall", "SELECT count(*), sum(amount), avg(amount) FROM o WHERE amount > 1000"),
        ("by_name", "SELECT c.name, count(o.id) AS orders FROM c LEFT JOIN o ON o.cid = c.id GROUP BY c.name"),
    ];
    let server = TestServer::start(&db, &views).await;
    let mut followers = server.follow_all(&views).await;
    for stmt in [
        "SELECT 1",
        "INSERT INTO o VALUES (5, NULL, NULL)",
        "UPDATE o SET cid = 3 WHERE id = 2",
        "UPDATE c SET name = NULL WHERE id = 1",
        "INSERT INTO o VALUES (6, 3, 2000)",
        "DELETE FROM o WHERE amount IS NULL",
        "DELETE FROM o",
    ] {
        db.exec(stmt).await;
        check_views(&db, &mut followers, &views).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reaches_the_current_wal_position_without_changes() {
    let db = TestDb::new("progress").await;
    db.exec("CREATE TABLE watched (id int PRIMARY KEY); CREATE TABLE other (id int PRIMARY KEY);")
        .await;
    let server = TestServer::start(&db, &[("w", "SELECT id FROM watched")]).await;
    let mut f = server.follow("w").await;
    db.exec("INSERT INTO other VALUES (1)").await;
    let lsn = db.lsn().await;
    f.wait_for(lsn).await;
    assert!(
        f.events.iter().any(|e| e.event == "progress"),
        "progress events arrive"
    );
    assert!(f.rows.is_empty());
    let (status, body) = server.get("/views/w").await;
    assert_eq!(status, 200);
    assert!(
        body["lsn"]
            .as_str()
            .unwrap()
            .parse::<viewcast::pg::Lsn>()
            .unwrap()
            >= lsn
    );
    // What the views have applied is acknowledged to Postgres, so the slot
    // does not hold WAL back (the slot belongs to this test's database).
    let mut confirmed = viewcast::pg::Lsn(0);
    for _ in 0..100 {
        let row = db
            .client
            .query_one("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE database = current_database()", &[])
            .await
            .expect("one slot for this database");
        confirmed = row.get::<_, String>(0).parse().unwrap();
        if confirmed >= lsn {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        confirmed >= lsn,
        "slot confirmed {confirmed}, views reached {lsn}"
    );
    let (status, metrics) = viewcast::client::get(&server.addr, "/metrics")
        .await
        .unwrap();
    assert_eq!(status, 200);
    for line in [
        "viewcast_streaming 1",
        "viewcast_view_rows{view=\"w\"} 0",
        "viewcast_view_subscribers{view=\"w\"} 1",
        "viewcast_view_failed{view=\"w\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in:\n{metrics}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_empties_views_and_snapshot_endpoint_matches() {
    let db = TestDb::new("truncate").await;
    db.exec(ORDERS).await;
    db.exec("INSERT INTO orders SELECT i, 'c', i, '' FROM generate_series(1, 50) i")
        .await;
    let sql = "SELECT customer, count(*) AS n, sum(amount) AS s FROM orders GROUP BY customer";
    let server = TestServer::start(&db, &[("agg", sql)]).await;
    let mut f = server.follow("agg").await;
    let (status, body) = server.get("/views/agg").await;
    assert_eq!(status, 200);
    assert_eq!(body["rows"].as_array().unwrap().len(), 1);
    assert_eq!(body["columns"][2]["type"], "numeric");
    db.exec("TRUNCATE orders").await;
    check_view(&db, &mut f, "agg", sql).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_subscriber_resumes_with_the_diffs_it_missed() {
    let db = TestDb::new("resume").await;
    db.exec(ORDERS).await;
    db.exec("INSERT INTO orders SELECT i, 'c' || (i % 3), i, '' FROM generate_series(1, 9) i")
        .await;
    let sql = "SELECT customer, count(*) AS n FROM orders GROUP BY customer";
    let server = TestServer::start(&db, &[("per_customer", sql)]).await;
    let mut f = server.follow("per_customer").await;
    db.exec("INSERT INTO orders VALUES (10, 'c1', 1, '')").await;
    f.wait_for(db.lsn().await).await;
    // A second subscriber stays connected throughout: what it receives live
    // is what the first must get from the history.
    let mut witness = server.follow("per_customer").await;

    // The subscriber goes away (its connection closes); three transactions
    // commit meanwhile, each with its own diff.
    let (seen_lsn, seen_rows) = (f.lsn, f.rows.clone());
    drop(f);
    let mut commits = Vec::new();
    for stmt in [
        "DELETE FROM orders WHERE id = 1",
        "INSERT INTO orders VALUES (11, 'c9', 1, '')",
        "UPDATE orders SET customer = 'c0' WHERE id = 2",
    ] {
        db.exec(stmt).await;
        commits.push(db.lsn().await);
    }
    let lsn = db.lsn().await;
    witness.wait_for(lsn).await;
    let live: Vec<Seen> = witness.diffs_since(0).into_iter().cloned().collect();
    assert_one_diff_each(&live, seen_lsn, &commits);

    // It comes back with the id of the last event it saw: the first events
    // are exactly those three diffs, from the view's history (they all
    // happened before this connection was opened), with their LSNs; no
    // snapshot.
    let mut f = server.follow("per_customer").await;
    (f.lsn, f.rows) = (seen_lsn, seen_rows);
    let mut f = f.reconnect(&server.addr, "per_customer").await;
    let mut resumed = Vec::new();
    while resumed.len() < live.len() {
        let ev = f.next().await.expect("an event");
        assert_ne!(
            ev.event, "snapshot",
            "resumed with a snapshot, not the history: {ev:?}"
        );
        if ev.event != "progress" {
            resumed.push(ev);
        }
    }
    for (got, want) in resumed.iter().zip(&live) {
        assert_eq!(
            (&got.event, got.lsn, &got.data),
            (&want.event, want.lsn, &want.data),
            "resumed {resumed:?}\nlive {live:?}"
        );
    }
    assert_same("per_customer", lsn, &f.rows, &db.oracle(sql).await);

    // Then the same connection carries what happens next, live.
    let seen = f.events.len();
    db.exec("INSERT INTO orders VALUES (12, 'c9', 1, '')").await;
    let next = db.lsn().await;
    f.wait_for(next).await;
    let diffs = f.diffs_since(seen);
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert!(diffs[0].lsn.expect("lsn") > lsn);
    assert!(
        f.events.iter().all(|e| e.event != "snapshot"),
        "resumed without a snapshot: {:?}",
        f.events
    );
    assert_same("per_customer", next, &f.rows, &db.oracle(sql).await);

    // A position the server cannot vouch for gets a snapshot marked as a reset.
    let mut stale = server.follow("per_customer").await;
    stale.lsn = viewcast::pg::Lsn(1);
    let mut stale = stale.reconnect(&server.addr, "per_customer").await;
    let ev = stale.next().await.expect("an event");
    assert_eq!(ev.event, "snapshot");
    assert_eq!(ev.data["reset"], true);
    assert_same("per_customer", next, &stale.rows, &db.oracle(sql).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_identity_full_with_and_without_a_key() {
    let db = TestDb::new("identity_full").await;
    db.exec(
        "CREATE TABLE keyed (id int PRIMARY KEY, tag text, body text);
         ALTER TABLE keyed REPLICA IDENTITY FULL;
         INSERT INTO keyed SELECT 1, 'a', string_agg(md5(i::text), '') FROM generate_series(1, 1250) i;
         CREATE TABLE bag (v int, w text);
         ALTER TABLE bag REPLICA IDENTITY FULL;
         INSERT INTO bag VALUES (1, 'x'), (1, 'x'), (2, NULL);",
    )
    .await;
    let views = [
        ("keyed_view", "SELECT id, tag, body FROM keyed"),
        ("bag_view", "SELECT v, w FROM bag"),
    ];
    let server = TestServer::start(&db, &views).await;
    let mut followers = [
        server.follow(views[0].0).await,
        server.follow(views[1].0).await,
    ];
    for stmt in [
        "UPDATE keyed SET tag = 'b' WHERE id = 1",
        "DELETE FROM bag WHERE ctid = (SELECT min(ctid) FROM bag WHERE v = 1)",
        "UPDATE bag SET w = 'y' WHERE v = 2",
        "INSERT INTO bag VALUES (2, 'y')",
        "DELETE FROM keyed",
    ] {
        db.exec(stmt).await;
        check_views(&db, &mut followers, &views).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_sees_a_half_loaded_view() {
    let db = TestDb::new("loading").await;
    db.exec("CREATE TABLE big (id int PRIMARY KEY, g int); INSERT INTO big SELECT i, i % 10 FROM generate_series(1, 100000) i;").await;
    let server = TestServer::start_unwaited(&db, &[("all_big", "SELECT id, g FROM big")]).await;
    // Right away: either "not ready" or everything, never part of it.
    let (status, body) = server.get("/views/all_big").await;
    match status {
        503 => assert!(body["error"].as_str().unwrap().contains("loading")),
        200 => assert_eq!(body["rows"].as_array().unwrap().len(), 100_000),
        other => panic!("unexpected status {other}: {body}"),
    }
    let f = server.follow("all_big").await;
    assert_eq!(
        f.rows.len(),
        100_000,
        "the first snapshot holds the whole table"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quoted_identifiers_and_other_schemas() {
    let db = TestDb::new("identifiers").await;
    db.exec(
        r#"CREATE SCHEMA shop;
           CREATE TABLE "User" ("Id" int PRIMARY KEY, "Full Name" text);
           CREATE TABLE shop.items (id int PRIMARY KEY, "ownerId" int, price numeric);
           INSERT INTO "User" VALUES (1, 'Ann'), (2, 'Bob');
           INSERT INTO shop.items VALUES (10, 1, 2.50), (11, 1, 1), (12, 3, 7);"#,
    )
    .await;
    let views = [(
        "owners",
        r#"SELECT u."Full Name", sum(i.price) AS "Total" FROM "User" u LEFT JOIN shop.items i ON i."ownerId" = u."Id" GROUP BY u."Full Name""#,
    )];
    let server = TestServer::start(&db, &views).await;
    let mut followers = [server.follow("owners").await];
    check_views(&db, &mut followers, &views).await;
    db.exec(r#"UPDATE "User" SET "Full Name" = 'Bobby' WHERE "Id" = 2; INSERT INTO shop.items VALUES (13, 2, 4.25);"#).await;
    check_views(&db, &mut followers, &views).await;
    let (_, list) = server.get("/views").await;
    assert_eq!(list[0]["columns"][0]["name"], "Full Name");
    assert_eq!(list[0]["columns"][1]["name"], "Total");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursive_queries_follow_a_changing_graph() {
    let db = TestDb::new("recursive").await;
    db.exec(
        "CREATE TABLE edges (src int, dst int, PRIMARY KEY (src, dst));
         INSERT INTO edges VALUES (1, 2), (2, 3), (3, 4), (5, 6);",
    )
    .await;
    let views = [
        (
            "reach",
            "WITH RECURSIVE reach(src, dst) AS (
                 SELECT src, dst FROM edges
                 UNION
                 SELECT r.src, e.dst FROM reach r JOIN edges e ON e.src = r.dst)
             SELECT src, dst FROM reach",
        ),
        (
            "walks",
            "WITH RECURSIVE walk(node, depth) AS (
                 SELECT 1, 0
                 UNION ALL
                 SELECT e.dst, w.depth + 1 FROM walk w JOIN edges e ON e.src = w.node WHERE w.depth < 5)
             SELECT node, depth, count(*) AS paths FROM walk GROUP BY node, depth",
        ),
        (
            "endless",
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) AS c FROM n",
        ),
    ];
    let server = TestServer::start(&db, &views[..2]).await;
    let mut followers = vec![server.follow("reach").await, server.follow("walks").await];
    check_views(&db, &mut followers, &views[..2]).await;
    let mut rng = viewcast::demo::Rng::new(11);
    for _ in 0..40 {
        let (a, b) = (1 + rng.below(7), 1 + rng.below(7));
        let sql = if rng.below(3) == 0 {
            format!("DELETE FROM edges WHERE src = {a}")
        } else {
            // Cycles included: a fixed point still exists for UNION.
            format!("INSERT INTO edges VALUES ({a}, {b}) ON CONFLICT DO NOTHING")
        };
        db.exec(&sql).await;
        check_views(&db, &mut followers, &views[..2]).await;
    }
    server.stop().await;

    // A query with no fixed point fails its view, not the server.
    let server = TestServer::start(&db, &views).await;
    let (status, body) = server.get("/views/endless").await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("fixed point"),
        "{body}"
    );
    let mut reach = server.follow("reach").await;
    db.exec("INSERT INTO edges VALUES (6, 7) ON CONFLICT DO NOTHING")
        .await;
    check_view(&db, &mut reach, "reach", views[0].1).await;
    server.stop().await;

    // UNION ALL around a cycle never ends; without the cycle it does, and
    // the view serves again.
    db.exec("DELETE FROM edges; INSERT INTO edges VALUES (1, 2), (2, 3), (3, 1);")
        .await;
    let cyclic = [(
        "paths",
        "WITH RECURSIVE walk(node) AS (SELECT 1 UNION ALL SELECT e.dst FROM walk w JOIN edges e ON e.src = w.node)
         SELECT node, count(*) AS n FROM walk GROUP BY node",
    )];
    let server = TestServer::start(&db, &cyclic).await;
    let (status, body) = server.get("/views/paths").await;
    assert_eq!(status, 500, "{body}");
    db.exec("DELETE FROM edges WHERE src = 3").await;
    let lsn = db.lsn().await;
    let mut recovered = false;
    // Generous: the failing state is 10 000 iterations of a debug build.
    for _ in 0..2400 {
        let (status, body) = server.get("/views/paths").await;
        let (_, health) = server.get("/healthz").await;
        let at: viewcast::pg::Lsn = health["lsn"].as_str().unwrap_or("0/0").parse().unwrap();
        if status == 200 && at >= lsn {
            assert_eq!(
                crate::support::sorted_rows(&body),
                ["[1,1]", "[2,1]", "[3,1]"]
            );
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(recovered, "the view serves again once the cycle is gone");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_matches_postgres() {
    let db = TestDb::new("json_access").await;
    db.exec(
        r#"CREATE TABLE docs (id int PRIMARY KEY, b jsonb, j json);
           INSERT INTO docs VALUES
             (1, '{"name": "a\"b", "tags": ["x", "y"], "n": 1.50, "deep": {"k": [1, {"z": null}]}}', '{ "name" : "spaced",  "n":2 }'),
             (2, '[1, "two", {"three": 3}]', '[true, false]'),
             (3, NULL, 'null');"#,
    )
    .await;
    let views = [(
        "access",
        "SELECT id, b -> 'name' AS name_json, b ->> 'name' AS name, b -> 'tags' -> 1 AS tag,
                b ->> 'n' AS n, b #> '{deep,k,1}' AS deep, b #>> '{deep,k,1,z}' AS z, b -> -1 AS last,
                b -> 2 ->> 'three' AS three, j -> 'name' AS jname, j ->> 0 AS first_bool, b ->> 'missing' AS missing
         FROM docs",
    )];
    let server = TestServer::start(&db, &views).await;
    let mut f = server.follow("access").await;
    check_views(&db, std::slice::from_mut(&mut f), &views).await;
    db.exec(r#"UPDATE docs SET b = '{"name": "changed", "tags": []}' WHERE id = 1"#)
        .await;
    check_views(&db, std::slice::from_mut(&mut f), &views).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intervals_and_date_arithmetic_match_postgres() {
    let db = TestDb::new("intervals").await;
    db.exec(
        "CREATE TABLE ev (id int PRIMARY KEY, at timestamptz, day date, took interval);
         INSERT INTO ev VALUES
           (1, '2024-01-31 10:00:00+00', '2024-01-31', '1 year 2 mons 3 days 04:05:06.5'),
           (2, '2024-02-29 23:30:00+00', '2024-02-29', '-1 days +02:00:00'),
           (3, '2023-12-31 00:00:00+00', '2023-12-31', '90 days'),
           (4, NULL, NULL, NULL);",
    )
    .await;
    let views = [(
        "times",
        "SELECT id, took, at + took AS ends, at - interval '1 month' AS month_before,
                day + interval '90' day AS later, day - interval '1 year' AS year_before,
                took * 2 AS twice, took / 4 AS quarter, -took AS neg, took + interval '1 hour 30 minutes' AS longer,
                at - timestamptz '2024-01-01 00:00:00+00' AS since_new_year,
                took > interval '30 days' AS long, date_trunc('month', at) AS month, extract(dow FROM day) AS dow
         FROM ev",
    ), (
        "longest",
        "SELECT max(took) AS longest, min(took) AS shortest, count(*) FILTER (WHERE took < interval '1 day') AS short FROM ev",
    )];
    let server = TestServer::start(&db, &views).await;
    let mut followers = vec![server.follow("times").await, server.follow("longest").await];
    check_views(&db, &mut followers, &views).await;
    db.exec("INSERT INTO ev VALUES (5, '2024-03-31 12:00:00+00', '2024-03-31', '1 mon -00:00:01'); UPDATE ev SET took = took * 3 WHERE id = 3;")
        .await;
    check_views(&db, &mut followers, &views).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_k_with_ties_is_a_valid_answer() {
    // ORDER BY score LIMIT 3 is ambiguous when scores tie: the view must be
    // the rows of *some* order Postgres may produce.
    let db = TestDb::new("topk_ties").await;
    db.exec(
        "CREATE TABLE scores (id int PRIMARY KEY, score int);
         INSERT INTO scores SELECT i, i % 4 FROM generate_series(1, 12) i;",
    )
    .await;
    let sql = "SELECT id, score FROM scores ORDER BY score DESC NULLS LAST LIMIT 3";
    let server = TestServer::start(&db, &[("top3", sql)]).await;
    let mut f = server.follow("top3").await;
    let mut rng = viewcast::demo::Rng::new(5);
    for step in 0..30 {
        let lsn = db.lsn().await;
        f.wait_for(lsn).await;
        let all = db
            .oracle("SELECT id, score FROM scores ORDER BY score DESC NULLS LAST")
            .await;
        let score_of = |row: &str| -> Option<i64> {
            serde_json::from_str::<serde_json::Value>(row).unwrap()["score"].as_i64()
        };
        // Postgres's scores in order, and the third one: the boundary.
        let mut scores: Vec<Option<i64>> = db
            .client
            .query(
                "SELECT score::int8 FROM scores ORDER BY score DESC NULLS LAST LIMIT 3",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut got: Vec<Option<i64>> = f
            .rows
            .iter()
            .flat_map(|(r, n)| std::iter::repeat_n(score_of(r), *n as usize))
            .collect();
        scores.sort();
        got.sort();
        assert_eq!(
            got, scores,
            "step {step}: the view's scores are the top three"
        );
        for row in f.rows.keys() {
            assert!(
                all.contains_key(row),
                "step {step}: {row} is a row of the table"
            );
        }
        let boundary = scores.first().copied().flatten();
        for row in all.keys() {
            let s = score_of(row);
            if s.is_some() && (boundary.is_none() || s > boundary) {
                assert!(
                    f.rows.contains_key(row),
                    "step {step}: {row} beats the boundary"
                );
            }
        }
        let id = 1 + rng.below(14);
        let score = match rng.below(6) {
            0 => "NULL".to_string(),
            n => (n - 1).to_string(),
        };
        db.exec(&format!(
            "INSERT INTO scores VALUES ({id}, {score}) ON CONFLICT (id) DO UPDATE SET score = EXCLUDED.score"
        ))
        .await;
    }
    server.stop().await;
}

/// Transactions from several connections at once: those that commit while
/// the dataflow is busy are applied together, but never split. Every
/// transaction moves a pair of rows, so a view of the count is even after
/// every diff, and the view ends equal to Postgres. `/metrics` and
/// `GET /views` report the arrangements each view holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transactions_arrive_whole_and_memory_is_reported() {
    let db = TestDb::new("concurrent_whole").await;
    db.exec(ORDERS).await;
    db.exec("INSERT INTO orders SELECT i, 'c' || (i % 7), i, '' FROM generate_series(1, 1000) i")
        .await;
    let views = [
        ("pairs", "SELECT count(*) AS n FROM orders"),
        (
            "per_customer",
            "SELECT customer, count(*) AS n, max(amount) AS top FROM orders GROUP BY customer",
        ),
        ("big", "SELECT id FROM orders WHERE amount > 990"),
    ];
    let server = TestServer::start(&db, &views).await;
    let mut followers = server.follow_all(&views).await;
    let before = followers[0].events.len();
    let mut writers = Vec::new();
    for w in 0..4i32 {
        let conninfo = db.conninfo.clone();
        writers.push(tokio::spawn(async move {
            let client = crate::support::connect(&conninfo).await;
            for i in 0..50i32 {
                let id = 10_000 + w * 1000 + i * 2;
                client
                    .batch_execute(&format!(
                        "BEGIN; INSERT INTO orders VALUES ({id}, 'c{w}', {i}, ''); \
                         INSERT INTO orders VALUES ({}, 'c{w}', 995, ''); COMMIT;",
                        id + 1
                    ))
                    .await
                    .expect("pair");
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    check_views(&db, &mut followers, &views).await;
    for seen in followers[0].diffs_since(before) {
        for ch in seen.data["changes"].as_array().unwrap() {
            if ch["diff"].as_i64() == Some(1) {
                let n = ch["row"][0].as_i64().expect("count");
                assert_eq!(n % 2, 0, "a transaction was split: count {n} at {seen:?}");
            }
        }
    }

    let (_, metrics) = viewcast::client::get(&server.addr, "/metrics")
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
    };
    let transactions = value("viewcast_transactions_total ");
    let batches = value("viewcast_transaction_batches_total ");
    assert!(transactions >= 200.0, "{transactions} transactions");
    assert!(
        batches >= 1.0 && batches <= transactions,
        "{batches} batches"
    );
    // The tables' arrangement holds every row, on some worker.
    assert!(value("viewcast_tables_arranged_records ") >= 1200.0);
    // A filter keeps no state of its own.
    assert_eq!(value("viewcast_view_arranged_records{view=\"big\"} "), 0.0);
    // Bytes (and the entries of state kept outside arrangements) are
    // measured about once a second: wait for a measurement that has every
    // arrangement built.
    let mut metrics = metrics;
    for _ in 0..50 {
        let has = |name: &str| {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
        };
        if has("viewcast_view_arranged_bytes{view=\"per_customer\"} ")
            && has("viewcast_view_arranged_bytes{view=\"pairs\"} ")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        metrics = viewcast::client::get(&server.addr, "/metrics")
            .await
            .unwrap()
            .1;
    }
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
    };
    // Every row's bytes (each at least 10: an id, a customer, an amount).
    assert!(value("viewcast_tables_arranged_bytes ") >= 1200.0 * 10.0);
    // A min/max aggregate keeps each customer's distinct amounts (the 1000
    // loaded, at least), at 8 bytes or more each.
    assert!(value("viewcast_view_arranged_records{view=\"per_customer\"} ") >= 1000.0);
    assert!(value("viewcast_view_arranged_bytes{view=\"per_customer\"} ") >= 1000.0 * 8.0);
    // One group's accumulated count.
    assert!(value("viewcast_view_arranged_bytes{view=\"pairs\"} ") > 0.0);
    assert_eq!(value("viewcast_view_arranged_bytes{view=\"big\"} "), 0.0);
    let (status, list) = server.get("/views").await;
    assert_eq!(status, 200);
    let memory = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .map(|v| v["memory"].clone())
            .expect("listed")
    };
    let m = memory("per_customer");
    assert!(m["records"].as_i64().unwrap() >= 1000, "{m}");
    assert!(m["buffered_bytes"].as_i64().unwrap() >= 0, "{m}");
    assert!(m["bytes"].as_i64().unwrap() >= 1000 * 8, "{m}");
    // The count is accumulated in an arrangement: its batches show.
    let m = memory("pairs");
    assert!(m["records"].as_i64().unwrap() >= 1, "{m}");
    assert!(m["batches"].as_i64().unwrap() >= 1, "{m}");
    assert_eq!(memory("big")["records"], 0);
    assert_eq!(memory("big")["bytes"], 0);
    server.stop().await;
}

/// DISTINCT and the set operations compare rows as Postgres's `=` does:
/// `-0` is `0` and `1.5` is `1.50`, so each pair is one row (counted here,
/// as which of the two forms Postgres shows depends on its plan); a row of
/// one form shows as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_and_set_operations_use_sql_equality() {
    let db = TestDb::new("distinct_equality").await;
    db.exec(
        "CREATE TABLE f (id int PRIMARY KEY, x float8, n numeric);
         INSERT INTO f VALUES (1, 0, 1.5), (2, 2, 2), (11, 2, 2.0);",
    )
    .await;
    let views = [
        ("floats", "SELECT count(*) AS n FROM (SELECT DISTINCT x FROM f) d"),
        ("numerics", "SELECT count(*) AS n FROM (SELECT DISTINCT n FROM f) d"),
        ("unioned", "SELECT count(*) AS n FROM (SELECT x, n FROM f WHERE id < 10 UNION SELECT x, n FROM f WHERE id >= 10) u"),
        ("intersected", "SELECT count(*) AS n FROM (SELECT x, n FROM f WHERE id < 10 INTERSECT SELECT x, n FROM f WHERE id >= 10) i"),
        ("excepted", "SELECT count(*) AS n FROM (SELECT x, n FROM f WHERE id < 10 EXCEPT ALL SELECT x, n FROM f WHERE id >= 10) e"),
        ("own_form", "SELECT DISTINCT x, n FROM f WHERE id = 12"),
    ];
    let server = TestServer::start(&db, &views).await;
    let mut followers = server.follow_all(&views).await;
    check_views(&db, &mut followers, &views).await;
    for stmt in [
        "INSERT INTO f VALUES (12, '-0', 1.50)",
        "UPDATE f SET x = '-0' WHERE id = 1",
        "INSERT INTO f VALUES (3, 'NaN', 7), (13, 'NaN', 7.000)",
        "DELETE FROM f WHERE id = 12",
        "UPDATE f SET n = 1.500 WHERE id = 1",
    ] {
        db.exec(stmt).await;
        check_views(&db, &mut followers, &views).await;
    }
    server.stop().await;
}

/// GROUP BY groups rows as Postgres's `=` does: `1.5` and `1.50` (and `-0`
/// and `0`) are one group, counted here as which form Postgres shows for a
/// mixed group depends on the row it met first. A group whose rows all have
/// one form shows that form, in the accumulated aggregates (count, sum) and
/// the hierarchical ones (max) alike, and a group's shown form follows its
/// rows as they change. DISTINCT ON partitions the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_by_uses_sql_equality() {
    let db = TestDb::new("group_equality").await;
    db.exec(
        "CREATE TABLE h (id int PRIMARY KEY, x float8, n numeric);
         INSERT INTO h VALUES (1, 0, 1.5), (2, 2, 2), (11, 2, 2.0), (12, '-0', 3.10);",
    )
    .await;
    let views = [
        ("counted", "SELECT count(*) AS groups, sum(c) AS total FROM (SELECT n, count(*) AS c FROM h GROUP BY n) g"),
        ("maxed", "SELECT count(*) AS groups FROM (SELECT x, max(id) AS m FROM h GROUP BY x) g"),
        ("both", "SELECT count(*) AS groups FROM (SELECT x, n, sum(id) AS s, min(id) AS m FROM h GROUP BY x, n) g"),
        ("one_form_counted", "SELECT n, count(*) AS c, sum(id) AS s FROM h WHERE id >= 10 GROUP BY n"),
        ("one_form_maxed", "SELECT x, n, max(id) AS m FROM h WHERE id >= 10 GROUP BY x, n"),
        ("distinct_on", "SELECT count(*) AS groups FROM (SELECT DISTINCT ON (n) id FROM h ORDER BY n, id) d"),
        ("top_per_x", "SELECT count(*) AS kept FROM (SELECT DISTINCT ON (x) x, id FROM h ORDER BY x, id DESC) d"),
    ];
    let server = TestServer::start(&db, &views).await;
    let mut followers = server.follow_all(&views).await;
    check_views(&db, &mut followers, &views).await;
    for stmt in [
        "INSERT INTO h VALUES (3, '-0', 1.50), (4, 1, 3.1)",
        "UPDATE h SET x = 0 WHERE id = 12",
        "UPDATE h SET x = '-0', n = 2.00 WHERE id = 11",
        "DELETE FROM h WHERE id IN (1, 2)",
        "INSERT INTO h VALUES (13, 'NaN', 7), (5, 'NaN', 7.000)",
        "UPDATE h SET n = 7.0 WHERE id = 13",
        "DELETE FROM h WHERE id = 5",
    ] {
        db.exec(stmt).await;
        check_views(&db, &mut followers, &views).await;
    }
    server.stop().await;
}

/// A change to how a value prints (`0` to `-0`, `1.5` to `1.50`) is a change
/// subscribers see, as Postgres shows it; where SQL compares values (DISTINCT
/// aggregates, window partitions) the two forms are one value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_form_reaches_subscribers() {
    let db = TestDb::new("form_changes").await;
    db.exec(
        "CREATE TABLE g (id int PRIMARY KEY, x float8, n numeric);
         INSERT INTO g VALUES (1, 0, 1.5), (2, 1, 2), (3, 0, 1.50);",
    )
    .await;
    let views = [
        ("rows", "SELECT id, x, n FROM g"),
        ("joined", "SELECT a.id, b.x, b.n FROM g a JOIN g b ON a.id = b.id"),
        ("distinct_counts", "SELECT count(DISTINCT x) AS xs, count(DISTINCT n) AS ns FROM g"),
        ("partitions", "SELECT id, count(*) OVER (PARTITION BY x) AS c, count(*) OVER (PARTITION BY n) AS d FROM g"),
    ];
    let server = TestServer::start(&db, &views).await;
    let mut followers = server.follow_all(&views).await;
    check_views(&db, &mut followers, &views).await;
    for stmt in [
        "UPDATE g SET x = '-0' WHERE id = 1",
        "UPDATE g SET n = 1.50 WHERE id = 1",
        "UPDATE g SET x = 0, n = 1.500 WHERE id = 1",
        "UPDATE g SET x = '-0' WHERE id IN (1, 3)",
    ] {
        db.exec(stmt).await;
        check_views(&db, &mut followers, &views).await;
    }
    server.stop().await;
}

/// With `--linger-us`, transactions that come within the linger of the last
/// ones handed to the dataflow wait for it to pass, then go in together:
/// each is still its own diff at its own LSN, nothing is lost or merged, and
/// the view equals Postgres.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lingering_transactions_still_arrive_one_diff_each() {
    use std::time::{Duration, Instant};
    let db = TestDb::new("linger").await;
    db.exec(ORDERS).await;
    let sql = "SELECT customer, count(*) AS n, sum(amount) AS total FROM orders GROUP BY customer";
    let linger = Duration::from_millis(500);
    let server = TestServer::start_lingering(&db, &[("per_customer", sql)], linger).await;
    let mut f = server.follow("per_customer").await;

    // A first transaction, then five more right after it.
    db.exec("INSERT INTO orders VALUES (1, 'a', 1, '')").await;
    let first = db.lsn().await;
    f.wait_for(first).await;
    let first_seen = Instant::now();
    let mut commits = Vec::new();
    for i in 2..=6 {
        db.exec(&format!(
            "INSERT INTO orders VALUES ({i}, '{}', {i}, '')",
            ["a", "b"][i % 2]
        ))
        .await;
        commits.push(db.lsn().await);
    }
    let from = f.events.len();
    f.wait_for(*commits.last().unwrap()).await;
    // They waited for the linger after the first went in (which was before
    // its diff was seen), less what delivering that diff took.
    assert!(
        first_seen.elapsed() >= linger / 2,
        "the next transactions went in {:?} after the first was seen, within the linger",
        first_seen.elapsed()
    );
    let diffs: Vec<Seen> = f.diffs_since(from).into_iter().cloned().collect();
    assert_one_diff_each(&diffs, first, &commits);
    check_view(&db, &mut f, "per_customer", sql).await;
    server.stop().await;
}

/// `diffs` are one per transaction committed after `after`, in order: the
/// n-th at an LSN past the (n-1)-th commit and not past the n-th.
fn assert_one_diff_each(diffs: &[Seen], after: Lsn, commits: &[Lsn]) {
    assert_eq!(
        diffs.len(),
        commits.len(),
        "one diff per transaction: {diffs:?}"
    );
    let mut after = after;
    for (diff, commit) in diffs.iter().zip(commits) {
        let at = diff.lsn.expect("a diff has an LSN");
        assert!(
            after < at && at <= *commit,
            "diff at {at} is not the transaction committed in ({after}, {commit}]"
        );
        after = *commit;
    }
}
