//! Postgres restarting under a running server: the server reconnects, takes a
//! fresh snapshot, sends subscribers the difference, and loses nothing.

use std::time::Duration;

use viewcast::pg::embedded::EmbeddedPostgres;

use crate::support::{check_view, TestDb, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_resumes_without_gaps() {
    let mut pg = tokio::task::spawn_blocking(EmbeddedPostgres::start)
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
    f.wait_for(db.lsn().await).await;

    pg = tokio::task::spawn_blocking(move || {
        pg.restart().expect("restart");
        pg
    })
    .await
    .unwrap();
    // Changes made before viewcast has reconnected arrive through the new snapshot,
    // the rest through the new stream.
    let db = TestDb::on(&conninfo).await;
    db.exec("DELETE FROM t WHERE id % 5 = 0; INSERT INTO t VALUES (100, 'new', 1);")
        .await;
    let (status, _) = server.get("/healthz").await;
    assert!(status == 200 || status == 503);
    server.wait_healthy().await;
    db.exec("UPDATE t SET grp = 'moved' WHERE id = 1").await;
    check_view(&db, &mut f, "groups", sql).await;
    // The stream stayed open and consistent: no error event, LSNs only moved forward.
    assert!(f.error.is_none());
    tokio::time::sleep(Duration::from_millis(10)).await;
    server.stop().await;
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}
