//! Postgres restarting under a running server: the server says it is
//! reconnecting, takes a fresh snapshot once it is back, sends subscribers the
//! difference, and loses nothing, including what was written while it could
//! not connect.

use viewcast::pg::embedded::{EmbeddedPostgres, ShutdownMode};

use crate::support::{check_view, TestDb, TestServer};

/// Runs `f` on the cluster off the async threads (pg_ctl blocks).
async fn with_pg(
    mut pg: EmbeddedPostgres,
    f: impl FnOnce(&mut EmbeddedPostgres) -> Result<(), String> + Send + 'static,
) -> EmbeddedPostgres {
    tokio::task::spawn_blocking(move || {
        f(&mut pg).expect("pg_ctl");
        pg
    })
    .await
    .expect("pg_ctl task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_resumes_without_gaps() {
    let pg = tokio::task::spawn_blocking(EmbeddedPostgres::start)
        .await
        .unwrap()
        .expect("own cluster");
    let conninfo = pg.conninfo("postgres");
    let db = TestDb::on(&conninfo).await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY, grp text, n int); INSERT INTO t SELECT i, 'g' || (i % 3), i FROM generate_series(1, 30) i;").await;
    let sql = "SELECT grp, count(*) AS rows, sum(n) AS total FROM t GROUP BY grp";
    let server = TestServer::start(&db, &[("groups", sql)]).await;
    let mut f = server.follow("groups").await;
    db.exec("UPDATE t SET n = n * 2 WHERE id < 10").await;
    check_view(&db, &mut f, "groups", sql).await;
    drop(db);

    // Postgres goes away: viewcast must say so.
    let pg = with_pg(pg, EmbeddedPostgres::stop).await;
    let start = std::time::Instant::now();
    loop {
        let (status, body) = server.get("/healthz").await;
        if status == 503 && body["status"] == "reconnecting" {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "30 s after Postgres stopped, /healthz says {status} {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Postgres comes back reachable on its Unix socket only, so viewcast
    // (which dials 127.0.0.1) is still reconnecting while these commit.
    let pg = with_pg(pg, |pg| {
        pg.append_conf("listen_addresses = ''")?;
        pg.start_again()
    })
    .await;
    let local = TestDb::on(&format!(
        "host={} port={} user=postgres dbname=postgres",
        pg.dir().display(),
        pg.port
    ))
    .await;
    local.exec("DELETE FROM t WHERE id % 5 = 0").await;
    local.exec("INSERT INTO t VALUES (100, 'new', 1)").await;
    local
        .exec("UPDATE t SET n = n + 1000 WHERE grp = 'g1'")
        .await;
    let (status, body) = server.get("/healthz").await;
    assert_eq!(status, 503, "viewcast cannot have reconnected: {body}");
    assert_ne!(body["status"], "streaming", "{body}");
    drop(local);

    // Reachable again: viewcast reconnects, and the subscriber, whose stream
    // stayed open, gets what was written meanwhile, then what follows.
    let before = f.events.len();
    let pg = with_pg(pg, |pg| {
        pg.append_conf("listen_addresses = '127.0.0.1'")?;
        pg.restart_with(ShutdownMode::Fast)
    })
    .await;
    server.wait_healthy().await;
    let db = TestDb::on(&conninfo).await;
    db.exec("UPDATE t SET grp = 'moved' WHERE id = 1").await;
    check_view(&db, &mut f, "groups", sql).await;
    assert!(
        f.rows.keys().any(|r| r.contains("\"grp\":\"new\"")),
        "the row inserted while viewcast was away is missing: {:?}",
        f.rows
    );
    assert!(
        f.rows.keys().any(|r| r.contains("\"grp\":\"moved\"")),
        "the row moved after the reconnect is missing: {:?}",
        f.rows
    );
    let since: Vec<&str> = f.events[before..]
        .iter()
        .map(|e| e.event.as_str())
        .collect();
    // The fresh snapshot reaches the subscriber as a diff against what it
    // holds, not as a reset.
    assert!(
        since.iter().all(|e| matches!(*e, "diff" | "progress")),
        "{since:?}"
    );
    assert!(f.error.is_none(), "{:?}", f.error);
    server.stop().await;
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}
