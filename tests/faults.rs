//! Faults between viewcast and Postgres, each while a writer commits and SSE
//! subscribers follow two views: the walsender terminated, Postgres restarted
//! fast, smart and immediately, Postgres down for 20 s, the TCP connection
//! black-holed by a proxy, and a dataflow worker that dies. Subscribers keep
//! their streams open and, at every event, hold exactly the views' contents
//! after some prefix of the writer's transactions, that prefix never
//! shrinking (no duplicate, no hole, no half transaction), and end equal to
//! Postgres (see tests/support/chaos.rs).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use viewcast::pg::embedded::ShutdownMode;
use viewcast::pg::source::Timeouts;

use crate::support::chaos::Rig;
use crate::support::{connect, TestDb, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walsender_terminated_and_every_kind_of_restart() {
    let mut rig = Rig::start("restarts", Timeouts::default(), false).await;
    let conninfo = rig.conninfo.clone();

    // The walsender is terminated (an operator, a failover tool).
    let before = rig.reconnects().await;
    let admin = connect(&conninfo).await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_replication WHERE application_name = 'viewcast'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 1, "a walsender to terminate");
    drop(admin);
    rig.recovered(before).await;

    // Postgres restarts fast (systemctl restart, a minor upgrade) and
    // immediately (a crash); the writer keeps writing before viewcast is back.
    for mode in [ShutdownMode::Fast, ShutdownMode::Immediate] {
        let before = rig.reconnects().await;
        rig.pg(move |pg| pg.restart_with(mode))
            .await
            .expect("restart");
        rig.recovered(before).await;
    }

    // A smart shutdown waits for every client session: viewcast must not hold
    // one while it streams. (The writer lets go of its own meanwhile.)
    let before = rig.reconnects().await;
    let _ = rig.writer.as_ref().unwrap().pause.send(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    rig.pg(|pg| pg.restart_with(ShutdownMode::Smart))
        .await
        .expect("a smart shutdown completes while viewcast is connected");
    assert!(started.elapsed() < Duration::from_secs(60));
    let _ = rig.writer.as_ref().unwrap().pause.send(false);
    rig.recovered(before).await;
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_for_twenty_seconds() {
    let mut rig = Rig::start("down", Timeouts::default(), false).await;
    rig.pg(|pg| pg.stop_with(ShutdownMode::Fast))
        .await
        .expect("stop");
    // Meanwhile the server says why it is not healthy, and keeps serving.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, body) = rig.server.get("/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "reconnecting", "{body}");
    let (status, _) = rig.server.get("/views/groups").await;
    assert_eq!(status, 200, "the last contents stay readable");
    tokio::time::sleep(Duration::from_secs(18)).await;
    rig.pg(|pg| pg.start_again()).await.expect("start");
    rig.server
        .wait_healthy_within(Duration::from_secs(30))
        .await;
    rig.writer.as_ref().unwrap().wait_commits(20).await;
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holed_connection_is_detected_and_replaced() {
    let timeouts = Timeouts {
        silence: Duration::from_secs(4),
        connect: Duration::from_secs(2),
        ..Timeouts::default()
    };
    let rig = Rig::start("black hole", timeouts, true).await;
    let hole = rig.proxy.as_ref().unwrap().black_hole.clone();
    let before = rig.reconnects().await;
    hole.store(true, Ordering::Relaxed);
    // Longer than the silence timeout: viewcast gives the connection up and
    // its new ones go nowhere either until the path heals.
    rig.writer.as_ref().unwrap().wait_commits(20).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (status, body) = rig.server.get("/healthz").await;
    assert_eq!(status, 503, "a black-holed server is not healthy: {body}");
    hole.store(false, Ordering::Relaxed);
    rig.recovered(before).await;
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_worker_is_replaced_and_subscribers_reset() {
    let db = TestDb::new("dead_worker").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, grp text, n int);
         INSERT INTO t SELECT i, 'g' || (i % 3), i FROM generate_series(1, 30) i;",
    )
    .await;
    let sql = "SELECT grp, count(*) AS c, sum(n) AS s FROM t GROUP BY grp";
    let server = TestServer::start(&db, &[("groups", sql)]).await;
    let mut f = server.follow("groups").await;
    db.exec("UPDATE t SET n = n + 1 WHERE id < 5").await;
    crate::support::check_view(&db, &mut f, "groups", sql).await;
    let mark = f.events.len();
    server.running.crash_a_worker();
    // The server says it is not healthy until it streams again...
    let start = Instant::now();
    let mut saw_unhealthy = false;
    loop {
        let (status, _) = server.get("/healthz").await;
        saw_unhealthy |= status == 503;
        let (_, metrics) = viewcast::client::get(&server.addr, "/metrics")
            .await
            .unwrap();
        if saw_unhealthy && status == 200 && metrics.contains("viewcast_dataflow_restarts_total 1")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no rebuild: {status} {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ...and subscribers start over from a reset snapshot, then follow on.
    db.exec("DELETE FROM t WHERE id % 4 = 0").await;
    crate::support::check_view(&db, &mut f, "groups", sql).await;
    let reset = f.events[mark..]
        .iter()
        .any(|e| e.event == "snapshot" && e.data["reset"] == true);
    assert!(
        reset,
        "a reset snapshot after the rebuild: {:?}",
        &f.events[mark..]
    );
    assert!(f.error.is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definite_failure_is_reported_and_heals_when_fixed() {
    let db = TestDb::new("definite").await;
    let role = "viewcast_definite";
    db.exec(&format!(
        "DROP ROLE IF EXISTS {role};
         CREATE ROLE {role} LOGIN REPLICATION;
         CREATE TABLE t (id int PRIMARY KEY, n int);
         INSERT INTO t VALUES (1, 1), (2, 2);
         GRANT SELECT ON t TO {role};
         CREATE PUBLICATION viewcast FOR TABLE t;"
    ))
    .await;
    let conninfo = db
        .conninfo
        .replace("user=postgres", &format!("user={role}"));
    let sql = "SELECT sum(n) AS total FROM t";
    let server = TestServer::start_with(&conninfo, &[("total", sql)], Timeouts::default()).await;
    server.wait_healthy().await;
    let mut f = server.follow("total").await;

    // The role loses its replication privilege and its walsender goes: the
    // reconnection is refused for good, until someone fixes it.
    db.exec(&format!(
        "ALTER ROLE {role} NOREPLICATION;
         SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE usename = '{role}';"
    ))
    .await;
    let start = Instant::now();
    while f.error.is_none() {
        assert!(start.elapsed() < Duration::from_secs(60), "no error event");
        let _ = tokio::time::timeout(Duration::from_secs(5), f.try_next()).await;
    }
    let message = f.error.clone().unwrap();
    assert!(message.contains("replication"), "{message}");
    let (status, health) = server.get("/healthz").await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "failed", "{health}");
    assert!(
        health["reason"].as_str().unwrap().contains("replication"),
        "{health}"
    );
    let (_, metrics) = viewcast::client::get(&server.addr, "/metrics")
        .await
        .unwrap();
    assert!(metrics.contains("viewcast_source_failed 1"), "{metrics}");

    // Fixed: within the slow retry the server heals by itself, and the
    // subscriber gets a reset snapshot with what changed meanwhile.
    db.exec(&format!(
        "INSERT INTO t VALUES (3, 30); ALTER ROLE {role} REPLICATION;"
    ))
    .await;
    crate::support::check_view(&db, &mut f, "total", sql).await;
    assert!(f.error.is_none());
    let last_snapshot = f
        .events
        .iter()
        .rev()
        .find(|e| e.event == "snapshot")
        .unwrap();
    assert_eq!(last_snapshot.data["reset"], true);
    server.wait_healthy().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_and_view_files_under_a_running_writer() {
    let rig = Rig::start("schema under load", Timeouts::default(), false).await;
    let admin = connect(&rig.conninfo).await;
    // A column the views do not read, then one they do not read either but
    // with a rewrite of the table: their subscribers see only the writer's
    // transactions, each whole.
    admin
        .batch_execute("ALTER TABLE t ADD COLUMN note text DEFAULT 'x'")
        .await
        .unwrap();
    rig.writer.as_ref().unwrap().wait_commits(20).await;
    admin
        .batch_execute("ALTER TABLE t ADD COLUMN created timestamptz DEFAULT clock_timestamp()")
        .await
        .unwrap();
    rig.writer.as_ref().unwrap().wait_commits(20).await;
    // Another view comes, changes and goes while the writer writes.
    rig.server
        .write_view("extra", "SELECT grp, max(n) AS top FROM t GROUP BY grp");
    rig.writer.as_ref().unwrap().wait_commits(20).await;
    rig.server.write_view(
        "extra",
        "SELECT grp, min(n) AS bottom, note FROM t GROUP BY grp, note",
    );
    rig.writer.as_ref().unwrap().wait_commits(20).await;
    let (status, body) = rig.server.get("/views/extra").await;
    assert_eq!(status, 200, "{body}");
    rig.server.remove_view("extra");
    rig.writer.as_ref().unwrap().wait_commits(20).await;
    drop(admin);
    rig.finish().await;
}
