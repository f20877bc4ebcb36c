//! Faults between viewcast and Postgres, each while a writer commits and SSE
//! subscribers follow two views: the walsender terminated, Postgres restarted
//! fast, smart and immediately, Postgres down for 20 s, and the TCP
//! connection black-holed by a proxy. Subscribers keep their streams open
//! and, at every event, hold exactly the views' contents after some prefix
//! of the writer's transactions, that prefix never shrinking (no duplicate,
//! no hole, no half transaction), and end equal to Postgres.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use viewcast::pg::embedded::{EmbeddedPostgres, ShutdownMode};
use viewcast::pg::source::Timeouts;
use viewcast::pg::Lsn;

use crate::support::{connect, Follower, TestDb, TestServer};

const VIEWS: [(&str, &str); 2] = [
    (
        "groups",
        "SELECT grp, count(*) AS c, sum(n) AS s FROM t GROUP BY grp",
    ),
    (
        "labelled",
        "SELECT t.id, l.label, t.n FROM t JOIN labels l ON l.grp = t.grp WHERE t.n % 3 <> 0",
    ),
];

type State = BTreeMap<String, i64>;

/// The views' contents after one of the writer's transactions, and the WAL
/// position read right after its commit (≥ the commit's end LSN, < the next's).
struct Step {
    after: Lsn,
    states: Vec<State>,
}

/// What a subscriber held after one event.
struct Observed {
    event: String,
    lsn: Lsn,
    state: State,
}

struct Writer {
    log: Arc<Mutex<Vec<Step>>>,
    stop: watch::Sender<bool>,
    /// While true the writer holds no connection (a smart shutdown waits for it).
    pause: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    commits: Arc<std::sync::atomic::AtomicU64>,
}

async fn record(client: &tokio_postgres::Client) -> Result<Step, tokio_postgres::Error> {
    let mut states = Vec::new();
    for (_, sql) in VIEWS {
        let rows = client
            .query(&format!("SELECT to_json(q)::text FROM ({sql}) q"), &[])
            .await?;
        let mut state = State::new();
        for r in rows {
            let v: serde_json::Value = serde_json::from_str(&r.get::<_, String>(0)).unwrap();
            *state.entry(v.to_string()).or_insert(0) += 1;
        }
        states.push(state);
    }
    let lsn: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    Ok(Step {
        after: lsn.parse().unwrap(),
        states,
    })
}

impl Writer {
    /// Commits small random transactions against `conninfo` until stopped,
    /// reconnecting whenever Postgres goes away, and records the views'
    /// contents after each.
    async fn start(conninfo: String, seed: u64) -> Writer {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stop_rx) = watch::channel(false);
        let (pause, mut pause_rx) = watch::channel(false);
        let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let first = connect(&conninfo).await;
        let step = record(&first).await.unwrap();
        log.lock().unwrap().push(step);
        drop(first);
        let task = {
            let log = log.clone();
            let commits = commits.clone();
            tokio::spawn(async move {
                let mut rng = viewcast::demo::Rng::new(seed);
                let mut client: Option<tokio_postgres::Client> = None;
                // A connection lost mid-commit leaves its outcome unknown: the
                // state is recorded again once reconnected.
                let mut unsure = false;
                loop {
                    if *stop_rx.borrow() {
                        return;
                    }
                    if *pause_rx.borrow() {
                        client = None;
                        tokio::select! {
                            _ = pause_rx.wait_for(|p| !*p) => {}
                            _ = stop_rx.wait_for(|s| *s) => return,
                        }
                        continue;
                    }
                    let c = match &client {
                        Some(c) => c,
                        None => {
                            match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
                                Ok((c, conn)) => {
                                    tokio::spawn(async move {
                                        let _ = conn.await;
                                    });
                                    client = Some(c);
                                    if unsure {
                                        if let Ok(step) = record(client.as_ref().unwrap()).await {
                                            log.lock().unwrap().push(step);
                                            unsure = false;
                                        } else {
                                            client = None;
                                        }
                                    }
                                }
                                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                            }
                            continue;
                        }
                    };
                    let mut sql = String::from("BEGIN;");
                    for _ in 0..1 + rng.below(3) {
                        let id = 1 + rng.below(60);
                        let grp = ["a", "b", "c", "d"][rng.below(4) as usize];
                        sql.push_str(&match rng.below(4) {
                            0 => format!("DELETE FROM t WHERE id = {id};"),
                            1 => format!("UPDATE t SET n = n + 1, grp = '{grp}' WHERE id = {id};"),
                            _ => format!(
                                "INSERT INTO t VALUES ({id}, '{grp}', {}) ON CONFLICT (id) DO UPDATE SET n = excluded.n;",
                                rng.below(100)
                            ),
                        });
                    }
                    sql.push_str("COMMIT;");
                    match c.batch_execute(&sql).await {
                        Ok(()) => match record(c).await {
                            Ok(step) => {
                                log.lock().unwrap().push(step);
                                commits.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => {
                                client = None;
                                unsure = true;
                            }
                        },
                        Err(_) => {
                            client = None;
                            unsure = true;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            })
        };
        Writer {
            log,
            stop,
            pause,
            task,
            commits,
        }
    }

    fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Waits until the writer has committed `n` more transactions.
    async fn wait_commits(&self, n: u64) {
        let target = self.commits() + n;
        let start = Instant::now();
        while self.commits() < target {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the writer could not commit"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> Vec<Step> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        Arc::try_unwrap(self.log)
            .ok()
            .expect("writer done")
            .into_inner()
            .unwrap()
    }
}

/// Follows a view and records its contents after every snapshot and diff.
struct Watcher {
    seen: Arc<Mutex<Vec<Observed>>>,
    /// Error events (a transient fault must cause none) and how the stream ended.
    trouble: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    async fn start(addr: &str, view: &str) -> Watcher {
        let mut f = Follower::new(addr, view).await;
        let seen = Arc::new(Mutex::new(vec![Observed {
            event: "snapshot".into(),
            lsn: f.lsn,
            state: f.rows.clone(),
        }]));
        let trouble = Arc::new(Mutex::new(Vec::new()));
        let (seen2, trouble2) = (seen.clone(), trouble.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok(Some(ev)) = f.try_next().await else {
                    trouble2.lock().unwrap().push("the stream ended".into());
                    return;
                };
                if let Some(e) = f.error.take() {
                    trouble2.lock().unwrap().push(format!("error event: {e}"));
                }
                if ev.event == "snapshot" || ev.event == "diff" {
                    seen2.lock().unwrap().push(Observed {
                        event: ev.event,
                        lsn: f.lsn,
                        state: f.rows.clone(),
                    });
                }
            }
        });
        Watcher {
            seen,
            trouble,
            task,
        }
    }

    /// Waits until the view shows `last`, then returns everything it saw.
    async fn finish(self, name: &str, last: &State) -> Vec<Observed> {
        let start = Instant::now();
        loop {
            let done = self
                .seen
                .lock()
                .unwrap()
                .last()
                .is_some_and(|o| &o.state == last);
            if done || !self.trouble.lock().unwrap().is_empty() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "{name}: the subscriber does not reach the final contents"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.task.abort();
        let trouble = self.trouble.lock().unwrap().clone();
        assert!(trouble.is_empty(), "{name}: {trouble:?}");
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// Every observed state is the writer's state after some transaction, later
/// events never go back to an earlier one, an event at LSN `l` shows no
/// transaction that committed after `l`, and the last state is the final one.
fn verify(view: usize, name: &str, steps: &[Step], seen: &[Observed]) {
    let mut floor = 0usize;
    for (i, o) in seen.iter().enumerate() {
        let found = (floor..steps.len())
            .find(|&k| steps[k].states[view] == o.state && (k == 0 || o.lsn > steps[k - 1].after));
        let Some(k) = found else {
            let mut report = format!(
                "{name}: event {i} ({} at {}) shows contents no prefix of the transactions had (from step {floor} of {}):\n",
                o.event,
                o.lsn,
                steps.len()
            );
            let want = &steps[floor.min(steps.len() - 1)].states[view];
            for (row, n) in &o.state {
                if want.get(row) != Some(n) {
                    report.push_str(&format!("  viewcast {n} × {row}\n"));
                }
            }
            for (row, n) in want {
                if o.state.get(row) != Some(n) {
                    report.push_str(&format!("  step {floor}: {n} × {row}\n"));
                }
            }
            panic!("{report}");
        };
        floor = k;
    }
    let last = seen.last().expect("at least the snapshot");
    assert_eq!(
        &last.state,
        &steps.last().unwrap().states[view],
        "{name}: the final contents equal Postgres's"
    );
}

struct Rig {
    pg: Option<EmbeddedPostgres>,
    /// Between viewcast and Postgres, when the test cuts the path.
    proxy: Option<Proxy>,
    conninfo: String,
    server: TestServer,
    writer: Option<Writer>,
    watchers: Vec<Watcher>,
}

impl Rig {
    /// A cluster of its own (the test stops it), the tables, a server that
    /// reaches Postgres directly or through a proxy, a writer and a watcher
    /// per view.
    async fn start(name: &str, timeouts: Timeouts, through_proxy: bool) -> Rig {
        let pg = tokio::task::spawn_blocking(EmbeddedPostgres::start)
            .await
            .unwrap()
            .expect("own cluster");
        let conninfo = pg.conninfo("postgres");
        let db = TestDb::on(&conninfo).await;
        db.exec(
            "CREATE TABLE labels (grp text PRIMARY KEY, label text);
             INSERT INTO labels VALUES ('a', 'alpha'), ('b', 'beta'), ('c', 'gamma');
             CREATE TABLE t (id int PRIMARY KEY, grp text, n int);
             INSERT INTO t SELECT i, (ARRAY['a','b','c','d'])[1 + i % 4], i FROM generate_series(1, 40) i;",
        )
        .await;
        let proxy = if through_proxy {
            Some(Proxy::start(pg.port).await)
        } else {
            None
        };
        let server_conninfo = match &proxy {
            Some(p) => format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres",
                p.port
            ),
            None => conninfo.clone(),
        };
        let server = TestServer::start_with(&server_conninfo, &VIEWS, timeouts).await;
        server.wait_healthy_within(Duration::from_secs(30)).await;
        let writer = Writer::start(conninfo.clone(), name.len() as u64 * 7919).await;
        let mut watchers = Vec::new();
        for (view, _) in VIEWS {
            watchers.push(Watcher::start(&server.addr, view).await);
        }
        writer.wait_commits(10).await;
        Rig {
            pg: Some(pg),
            proxy,
            conninfo,
            server,
            writer: Some(writer),
            watchers,
        }
    }

    async fn pg<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut EmbeddedPostgres) -> R + Send + 'static,
    ) -> R {
        let mut pg = self.pg.take().expect("cluster");
        let (pg, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut pg);
            (pg, r)
        })
        .await
        .unwrap();
        self.pg = Some(pg);
        r
    }

    async fn reconnects(&self) -> u64 {
        let (_, metrics) = viewcast::client::get(&self.server.addr, "/metrics")
            .await
            .unwrap();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("viewcast_reconnects_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    }

    /// Waits until viewcast has noticed a fault after `before` reconnects,
    /// then until it is healthy again and the writer has gone on.
    async fn recovered(&self, before: u64) {
        let start = Instant::now();
        while self.reconnects().await <= before {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "viewcast did not notice the fault"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.server
            .wait_healthy_within(Duration::from_secs(60))
            .await;
        self.writer.as_ref().unwrap().wait_commits(10).await;
    }

    /// Stops the writer, waits for the subscribers to reach its last commit,
    /// and checks everything they saw.
    async fn finish(mut self) {
        let steps = self.writer.take().unwrap().finish().await;
        let end = steps.last().unwrap().after;
        assert!(
            self.server.reaches(end, Duration::from_secs(90)).await,
            "viewcast catches up with the last commit"
        );
        for (i, w) in std::mem::take(&mut self.watchers).into_iter().enumerate() {
            let final_state = &steps.last().unwrap().states[i];
            let seen = w.finish(VIEWS[i].0, final_state).await;
            verify(i, VIEWS[i].0, &steps, &seen);
        }
        let (_, metrics) = viewcast::client::get(&self.server.addr, "/metrics")
            .await
            .unwrap();
        assert!(metrics.contains("viewcast_reconnects_total"), "{metrics}");
        self.server.stop().await;
        let pg = self.pg.take();
        tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
    }
}

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

/// A TCP proxy that can stop forwarding without closing anything, as a
/// broken network path or a dead host does.
struct Proxy {
    port: u16,
    black_hole: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let black_hole = Arc::new(AtomicBool::new(false));
        let hole = black_hole.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let hole = hole.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let a = tokio::spawn(pump(cr, sw, hole.clone()));
                    let b = tokio::spawn(pump(sr, cw, hole));
                    let _ = tokio::join!(a, b);
                });
            }
        });
        Proxy { port, black_hole }
    }
}

/// Copies bytes one way; while the black hole is on, what arrives is dropped.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    hole: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if hole.load(Ordering::Relaxed) {
            // Swallowed: the peer never hears of it, and nothing is closed.
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
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
