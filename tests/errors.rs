//! Bad views are refused with a clear error and never take the others down.

use crate::support::{TestDb, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_views_leave_the_others_running() {
    let db = TestDb::new("refusals").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY, amount int); CREATE TABLE nokey (a int, b text); INSERT INTO t VALUES (1, 5);").await;
    let views = [
        ("good", "SELECT id, amount FROM t"),
        ("syntax", "SELEC id FROM t"),
        ("unsupported", "SELECT id, now()\nFROM t"),
        ("unknown_column", "SELECT id, nope FROM t"),
        ("no_key", "SELECT a FROM nokey"),
        ("not_a_table", "SELECT * FROM missing_table"),
    ];
    let server = TestServer::start(&db, &views).await;

    let (status, list) = server.get("/views").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    // A table without a key is followed as a multiset of inserted rows.
    assert_eq!(names, ["good", "no_key"]);

    for (name, needle) in [
        ("syntax", "syntax error"),
        ("unsupported", "now() here"),
        (
            "unknown_column",
            "column \"nope\" does not exist at line 1, column 12",
        ),
        ("not_a_table", "relation \"missing_table\" does not exist"),
    ] {
        let (status, body) = server.get(&format!("/views/{name}")).await;
        assert_eq!(status, 422, "{name}: {body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{name}: {msg}");
        let (status, _) = server.get(&format!("/views/{name}/sse")).await;
        assert_eq!(status, 422);
    }
    // The SSE client reports the whole JSON error of a refused view.
    match viewcast::client::SseClient::connect(&server.addr, "/views/unsupported/sse").await {
        Err(viewcast::client::ClientError::Status { status, body }) => {
            assert_eq!(status, 422);
            let v: serde_json::Value = serde_json::from_str(&body).expect("a complete JSON body");
            assert!(
                v["error"].as_str().unwrap().contains("now() here"),
                "{body}"
            );
        }
        other => panic!("expected a 422, got {:?}", other.map(|_| ())),
    }
    let (status, _) = server.get("/views/nothing_here").await;
    assert_eq!(status, 404);
    // The plan endpoint shows how a view is maintained, or why it is refused.
    let (status, plan) = viewcast::client::get(&server.addr, "/views/good/plan")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        plan.starts_with("good: id int4, amount int4\n") && plan.contains("Get public.t"),
        "{plan}"
    );
    let (status, plan) = viewcast::client::get(&server.addr, "/views/unsupported/plan")
        .await
        .unwrap();
    assert_eq!(status, 422);
    assert!(plan.contains("now() here") && plan.contains('^'), "{plan}");
    let (status, _) = viewcast::client::get(&server.addr, "/views/nothing_here/plan")
        .await
        .unwrap();
    assert_eq!(status, 404);

    let mut f = server.follow("good").await;
    db.exec("INSERT INTO t VALUES (2, 6)").await;
    let lsn = db.lsn().await;
    f.wait_for(lsn).await;
    assert_eq!(f.rows.len(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_errors_fail_only_their_view() {
    let db = TestDb::new("runtime_errors").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY, amount int); INSERT INTO t VALUES (1, 5);")
        .await;
    let views = [
        ("ratio", "SELECT id, 100 / amount AS r FROM t"),
        ("plain", "SELECT id, amount FROM t"),
        ("overflow", "SELECT sum(amount * 1000000) FROM t"),
    ];
    let server = TestServer::start(&db, &views).await;
    let mut ratio = server.follow("ratio").await;
    let mut plain = server.follow("plain").await;
    let mut overflow = server.follow("overflow").await;
    db.exec("INSERT INTO t VALUES (2, 0)").await;
    db.exec("INSERT INTO t VALUES (3, 5000)").await;
    let lsn = db.lsn().await;
    plain.wait_for(lsn).await;
    assert_eq!(plain.rows.len(), 3);
    for (f, needle) in [
        (&mut ratio, "division by zero"),
        (&mut overflow, "integer out of range"),
    ] {
        while f.error.is_none() {
            f.next().await.expect("an error event");
        }
        assert!(
            f.error.as_deref().unwrap().contains(needle),
            "{:?}",
            f.error
        );
    }
    let (status, body) = server.get("/views/ratio").await;
    assert_eq!(status, 500);
    assert!(body["error"].as_str().unwrap().contains("division by zero"));

    // As in Postgres, the error belongs to the rows: once they are gone the
    // view serves again, with contents that kept up meanwhile.
    db.exec("UPDATE t SET amount = 4 WHERE id = 2; INSERT INTO t VALUES (4, 50);")
        .await;
    let lsn = db.lsn().await;
    plain.wait_for(lsn).await;
    let mut recovered = false;
    for _ in 0..200 {
        let (status, body) = server.get("/views/ratio").await;
        if status == 200 {
            assert_eq!(
                crate::support::sorted_rows(&body),
                ["[1,20]", "[2,25]", "[3,0]", "[4,2]"]
            );
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        recovered,
        "the view serves again once the failing row is gone"
    );
    let mut again = server.follow("ratio").await;
    again.wait_for(lsn).await;
    assert_eq!(again.rows.len(), 4);
    // The overflow is still there: that view still fails.
    let (status, _) = server.get("/views/overflow").await;
    assert_eq!(status, 500);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_plans_and_refusals() {
    let db = TestDb::new("check_cmd").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY, amount int); CREATE TABLE u (id int PRIMARY KEY, t_id int);").await;
    let dir = std::env::temp_dir().join(format!("viewcast-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("good.sql"),
        "SELECT t.id, count(*) FROM t JOIN u ON u.t_id = t.id GROUP BY t.id",
    )
    .unwrap();
    std::fs::write(
        dir.join("bad.sql"),
        "SELECT id\nFROM t\nWHERE amount > 1 ORDER BY id FETCH FIRST 3 ROWS WITH TIES",
    )
    .unwrap();
    let (report, ok) = viewcast::server::check(&db.conninfo, &dir)
        .await
        .expect("check runs");
    assert!(!ok, "a refused view makes check fail");
    assert!(
        report.contains("good: ok (id int4, count int8)"),
        "{report}"
    );
    assert!(
        report.contains("InnerJoin on (#0) = (#0)") && report.contains("Get public.u"),
        "{report}"
    );
    assert!(
        report.contains("bad: refused") && report.contains("FETCH") && report.contains('^'),
        "{report}"
    );
    std::fs::remove_file(dir.join("bad.sql")).unwrap();
    let (_, ok) = viewcast::server::check(&db.conninfo, &dir)
        .await
        .expect("check runs");
    assert!(ok);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_even_when_every_view_is_refused() {
    let db = TestDb::new("all_refused").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY)").await;
    // TestServer::start waits for /healthz to answer 200.
    let server = TestServer::start(&db, &[("bad", "SELECT nope FROM t")]).await;
    let (_, list) = server.get("/views").await;
    assert_eq!(list.as_array().unwrap().len(), 0);
    server.stop().await;
}

/// Errors raised in different parts of a join view (keying one input, the
/// filters of two others) each keep the view failing while their rows
/// exist, as Postgres fails the same query: the view serves again only when
/// the last of them is gone, with the rows Postgres returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_from_each_part_of_a_join_fail_the_view_until_all_are_gone() {
    let db = TestDb::new("join_errors").await;
    db.exec(
        "CREATE TABLE a (id int PRIMARY KEY, d int, k int);
         CREATE TABLE b (id int PRIMARY KEY, x int);
         CREATE TABLE c (id int PRIMARY KEY, y int);
         INSERT INTO a VALUES (1, 1, 1); INSERT INTO b VALUES (1, 1);
         INSERT INTO c VALUES (1, 1);",
    )
    .await;
    // Every a row is keyed by k / d, every b and c row is filtered by a
    // division: Postgres evaluates each for every row too, whatever its
    // plan. WHERE's conjuncts over one table go into it, whether the tables
    // are listed or joined with JOIN ... ON.
    let views = [
        (
            "commas",
            "SELECT a.id, b.x, c.y FROM a, b, c WHERE b.id = a.k / a.d \
             AND c.id = b.id AND 10 / c.y > 0 AND 100 / b.x > 0",
        ),
        (
            "joins",
            "SELECT a.id, b.x, c.y FROM a JOIN b ON b.id = a.k / a.d \
             JOIN c ON c.id = b.id WHERE 10 / c.y > 0 AND 100 / b.x > 0",
        ),
    ];
    let server = TestServer::start(&db, &views).await;
    let steps = [
        ("", true),
        ("INSERT INTO a VALUES (2, 0, 1)", false),
        (
            "INSERT INTO b VALUES (2, 1); INSERT INTO c VALUES (2, 0)",
            false,
        ),
        ("UPDATE a SET d = 1 WHERE id = 2", false),
        ("DELETE FROM c WHERE id = 2", true),
        ("UPDATE b SET x = 0 WHERE id = 2", false),
        ("DELETE FROM b WHERE id = 2", true),
    ];
    for (change, serves) in steps {
        if !change.is_empty() {
            db.exec(change).await;
        }
        let lsn = db.lsn().await;
        assert!(
            server
                .reaches(lsn, std::time::Duration::from_secs(30))
                .await,
            "progress after {change:?}"
        );
        for (view, sql) in views {
            let expected = db.json_rows(sql, 3).await;
            assert_eq!(
                expected.is_ok(),
                serves,
                "Postgres, {view}, after {change:?}"
            );
            // The view has the LSN; give the registry a moment to serve it.
            let mut last = (0, serde_json::Value::Null);
            for _ in 0..200 {
                last = server.get(&format!("/views/{view}")).await;
                let matches = match &expected {
                    Ok(rows) => last.0 == 200 && &crate::support::sorted_rows(&last.1) == rows,
                    Err(e) => {
                        e.contains("division by zero")
                            && last.0 == 500
                            && last.1["error"]
                                .as_str()
                                .is_some_and(|m| m.contains("division by zero"))
                    }
                };
                if matches {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            match &expected {
                Ok(rows) => {
                    assert_eq!(last.0, 200, "{view} after {change:?}: {}", last.1);
                    assert_eq!(
                        &crate::support::sorted_rows(&last.1),
                        rows,
                        "{view} after {change:?}"
                    );
                }
                Err(_) => {
                    assert_eq!(last.0, 500, "{view} after {change:?}: {}", last.1);
                    let message = last.1["error"].as_str().unwrap_or_default();
                    assert!(message.contains("division by zero"), "{message}");
                }
            }
        }
    }
    server.stop().await;
}
