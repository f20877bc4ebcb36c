//! Time-based views: rows enter and leave as the clock passes, with no
//! write, checked against Postgres answering the same SQL at the same
//! moment, in a database whose TimeZone is not UTC (current_date is the
//! date there).

use std::time::{Duration, Instant};

use viewcast::pg::embedded::EmbeddedPostgres;

use crate::support::{sorted_rows, TestDb, TestServer};

async fn pg_rows(db: &TestDb, sql: &str) -> Vec<String> {
    db.json_rows(sql, 1).await.expect("postgres answers")
}

async fn view_rows(server: &TestServer, name: &str) -> Vec<String> {
    let (status, body) = server.get(&format!("/views/{name}")).await;
    assert_eq!(status, 200, "{name}: {body}");
    sorted_rows(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_age_out_and_in_as_the_clock_passes() {
    let db = TestDb::zoned("temporal").await;
    // Row i leaves `at > now() - 5 s` 2i seconds after the insert and
    // enters `at <= now() - 3 s` 2i - 2 seconds after it: every change falls
    // on an even second.
    db.exec(
        "CREATE TABLE ev (id int PRIMARY KEY, at timestamptz, due date);
         INSERT INTO ev SELECT i, now() - interval '5 seconds' + i * interval '2 seconds',
                               current_date + (i % 3 - 1)
           FROM generate_series(1, 4) i;
         INSERT INTO ev VALUES (5, NULL, NULL);",
    )
    .await;
    let recent = "SELECT id FROM ev WHERE at > now() - interval '5 seconds'";
    let old = "SELECT id FROM ev WHERE at <= current_timestamp - interval '3 seconds'";
    let overdue = "SELECT id FROM ev WHERE due < current_date";
    let today = "SELECT id FROM ev WHERE due = current_date";
    let server = TestServer::start(
        &db,
        &[
            ("recent", recent),
            ("old", old),
            ("overdue", overdue),
            ("today", today),
        ],
    )
    .await;
    // The insert, as an instant of this process.
    let since: f64 = db
        .client
        .query_one(
            "SELECT extract(epoch FROM now() - (SELECT at + interval '3 seconds' FROM ev WHERE id = 1))::float8",
            &[],
        )
        .await
        .expect("now")
        .get(0);
    let insert = Instant::now() - Duration::from_secs_f64(since.max(0.0));
    let mut follower = server.follow("recent").await;

    // The answers change on even seconds after the insert, with no write.
    // From just after each change, the views are polled until all of them
    // equal Postgres's answers at that moment: the time that takes is how
    // late the clock moved them (Postgres's answer stays put until the next
    // change, two seconds on).
    let mut late = Vec::new();
    for i in 1..=4u64 {
        let change = insert + Duration::from_secs(2 * i);
        // Not early: a quarter second before the change they still agree.
        let before = change - Duration::from_millis(250);
        let now = Instant::now();
        if before > now {
            tokio::time::sleep(before - now).await;
        }
        for (name, sql) in [
            ("recent", recent),
            ("old", old),
            ("overdue", overdue),
            ("today", today),
        ] {
            let want = pg_rows(&db, sql).await;
            let got = view_rows(&server, name).await;
            assert_eq!(
                got,
                want,
                "{name}, just before the change {} s after the insert",
                2 * i
            );
        }
        let now = Instant::now();
        if change + Duration::from_millis(50) > now {
            tokio::time::sleep(change + Duration::from_millis(50) - now).await;
        }
        loop {
            let mut equal = true;
            let mut seen = Vec::new();
            for (name, sql) in [
                ("recent", recent),
                ("old", old),
                ("overdue", overdue),
                ("today", today),
            ] {
                let want = pg_rows(&db, sql).await;
                let got = view_rows(&server, name).await;
                equal &= got == want;
                seen.push((name, got, want));
            }
            let after = change.elapsed();
            if equal {
                late.push(after);
                break;
            }
            assert!(
                after < Duration::from_millis(1500),
                "{} s after the insert the views still differ from Postgres: {seen:?}",
                2 * i
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    eprintln!("rows moved this long after Postgres's answer changed: {late:?}");
    assert!(pg_rows(&db, recent).await.is_empty(), "every row aged out");
    assert_eq!(pg_rows(&db, old).await.len(), 4, "every dated row is old");

    // The SSE subscriber saw each row leave, within the bound, in events
    // whose LSNs never go back.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !follower.rows.is_empty() && Instant::now() < deadline {
        follower.next().await;
    }
    assert!(follower.rows.is_empty(), "{:?}", follower.rows);
    let lsns: Vec<_> = follower.events.iter().filter_map(|e| e.lsn).collect();
    assert!(lsns.windows(2).all(|w| w[0] <= w[1]), "{lsns:?}");
    server.stop().await;
}

/// In a database nobody writes to, no WAL moves, so the stream brings no new
/// LSN on its own: the server must still move the clock. The row leaves
/// 30 s after the insert, well past the steps the clock may take between two
/// LSNs (12 s) and the standby snapshot Postgres logs once after activity,
/// with no write from the test, in a cluster of its own (the shared one's
/// WAL moves with every other test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clock_moves_in_an_idle_database() {
    let pg = tokio::task::spawn_blocking(EmbeddedPostgres::start)
        .await
        .unwrap()
        .expect("own cluster");
    let db = TestDb::on(&pg.conninfo("postgres")).await;
    db.exec(
        "CREATE TABLE ev (id int PRIMARY KEY, at timestamptz);
         INSERT INTO ev VALUES (1, now() - interval '5 seconds' + interval '30 seconds'), (2, NULL);",
    )
    .await;
    let recent = "SELECT id FROM ev WHERE at > now() - interval '5 seconds'";
    let server = TestServer::start(&db, &[("recent", recent)]).await;
    let since: f64 = db
        .client
        .query_one(
            "SELECT extract(epoch FROM now() - (SELECT at - interval '25 seconds' FROM ev WHERE id = 1))::float8",
            &[],
        )
        .await
        .expect("now")
        .get(0);
    let change = Instant::now() - Duration::from_secs_f64(since.max(0.0)) + Duration::from_secs(30);
    assert_eq!(view_rows(&server, "recent").await, vec!["[1]"]);
    tokio::time::sleep(change.saturating_duration_since(Instant::now())).await;
    loop {
        let want = pg_rows(&db, recent).await;
        let got = view_rows(&server, "recent").await;
        if got == want && want.is_empty() {
            break;
        }
        assert!(
            change.elapsed() < Duration::from_millis(1500),
            "the row has not left {:?} after Postgres's answer changed: {got:?}, Postgres {want:?}",
            change.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
    drop(db);
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}
