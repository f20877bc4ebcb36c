//! A writer, subscribers and faults around one viewcast server, for the
//! fault tests (tests/faults.rs) and the soak benchmark (benches/soak.rs).
//!
//! The writer commits small random transactions against its own cluster and
//! records, after each, the views' contents as Postgres computes them. A
//! watcher follows a view over SSE and records its contents after every
//! event. [`verify`] then checks that every observed state is the contents
//! after some prefix of the writer's transactions, that the prefix never
//! shrinks (no duplicate, no hole, no half transaction) and that the last
//! state is the final one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use viewcast::pg::embedded::EmbeddedPostgres;
use viewcast::pg::source::Timeouts;
use viewcast::pg::Lsn;

use super::{connect, Follower, TestDb, TestServer};

pub const VIEWS: [(&str, &str); 2] = [
    (
        "groups",
        "SELECT grp, count(*) AS c, sum(n) AS s FROM t GROUP BY grp",
    ),
    (
        "labelled",
        "SELECT t.id, l.label, t.n FROM t JOIN labels l ON l.grp = t.grp WHERE t.n % 3 <> 0",
    ),
];

pub type State = BTreeMap<String, i64>;

/// The views' contents after one of the writer's transactions, and the WAL
/// position read right after its commit (≥ the commit's end LSN, < the next's).
pub struct Step {
    pub after: Lsn,
    pub states: Vec<State>,
}

/// What a subscriber held after one event.
pub struct Observed {
    pub event: String,
    pub lsn: Lsn,
    pub state: State,
}

pub struct Writer {
    log: Arc<Mutex<Vec<Step>>>,
    stop: watch::Sender<bool>,
    /// While true the writer holds no connection (a smart shutdown waits for it).
    pub pause: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    commits: Arc<AtomicU64>,
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
    pub async fn start(conninfo: String, seed: u64, pace: Duration) -> Writer {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stop_rx) = watch::channel(false);
        let (pause, mut pause_rx) = watch::channel(false);
        let commits = Arc::new(AtomicU64::new(0));
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
                    tokio::time::sleep(pace).await;
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

    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Waits until the writer has committed `n` more transactions.
    pub async fn wait_commits(&self, n: u64) {
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

    pub async fn finish(self) -> Vec<Step> {
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
pub struct Watcher {
    seen: Arc<Mutex<Vec<Observed>>>,
    /// Error events (a transient fault must cause none) and how the stream ended.
    trouble: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    pub async fn start(addr: &str, view: &str) -> Watcher {
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

    /// Snapshot and diff events received so far.
    pub fn events(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Waits until the view shows `last`, then returns everything it saw.
    pub async fn finish(self, name: &str, last: &State) -> Vec<Observed> {
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

/// What [`verify`] found in one watcher's events.
#[derive(Debug, Default)]
pub struct Verdict {
    pub events: usize,
    /// Events whose contents were no prefix of the transactions, or an
    /// earlier prefix than an event before them (a duplicate or a hole).
    pub inconsistent: usize,
    pub first_problem: Option<String>,
    /// The last state equals Postgres's final contents.
    pub final_ok: bool,
}

/// Every observed state must be the writer's state after some transaction,
/// later events never go back to an earlier one, an event at LSN `l` shows
/// no transaction that committed after `l`, and the last state is the final
/// one.
pub fn verify(view: usize, name: &str, steps: &[Step], seen: &[Observed]) -> Verdict {
    let mut verdict = Verdict {
        events: seen.len(),
        ..Verdict::default()
    };
    let mut floor = 0usize;
    for (i, o) in seen.iter().enumerate() {
        let found = (floor..steps.len())
            .find(|&k| steps[k].states[view] == o.state && (k == 0 || o.lsn > steps[k - 1].after));
        let Some(k) = found else {
            verdict.inconsistent += 1;
            if verdict.first_problem.is_none() {
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
                verdict.first_problem = Some(report);
            }
            continue;
        };
        floor = k;
    }
    verdict.final_ok = seen
        .last()
        .is_some_and(|last| last.state == steps.last().unwrap().states[view]);
    verdict
}

/// [`verify`], failing the test on any problem.
pub fn assert_consistent(view: usize, name: &str, steps: &[Step], seen: &[Observed]) {
    let v = verify(view, name, steps, seen);
    if let Some(p) = v.first_problem {
        panic!("{p}");
    }
    assert!(v.final_ok, "{name}: the final contents equal Postgres's");
}

/// The tables the writer changes and [`VIEWS`] read.
pub async fn create_tables(conninfo: &str) {
    let db = TestDb::on(conninfo).await;
    db.exec(
        "CREATE TABLE labels (grp text PRIMARY KEY, label text);
         INSERT INTO labels VALUES ('a', 'alpha'), ('b', 'beta'), ('c', 'gamma');
         CREATE TABLE t (id int PRIMARY KEY, grp text, n int);
         INSERT INTO t SELECT i, (ARRAY['a','b','c','d'])[1 + i % 4], i FROM generate_series(1, 40) i;",
    )
    .await;
}

pub struct Rig {
    pub pg: Option<EmbeddedPostgres>,
    /// Between viewcast and Postgres, when the test cuts the path.
    pub proxy: Option<Proxy>,
    pub conninfo: String,
    pub server: TestServer,
    pub writer: Option<Writer>,
    pub watchers: Vec<Watcher>,
}

impl Rig {
    /// A cluster of its own (the test stops it), the tables, a server that
    /// reaches Postgres directly or through a proxy, a writer and a watcher
    /// per view.
    pub async fn start(name: &str, timeouts: Timeouts, through_proxy: bool) -> Rig {
        Self::start_paced(name, timeouts, through_proxy, Duration::from_millis(15), 1).await
    }

    /// As [`Rig::start`], the writer pausing `pace` between transactions and
    /// `watchers` subscribers per view.
    pub async fn start_paced(
        name: &str,
        timeouts: Timeouts,
        through_proxy: bool,
        pace: Duration,
        watchers_per_view: usize,
    ) -> Rig {
        let pg = tokio::task::spawn_blocking(EmbeddedPostgres::start)
            .await
            .unwrap()
            .expect("own cluster");
        let conninfo = pg.conninfo("postgres");
        create_tables(&conninfo).await;
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
        let writer = Writer::start(conninfo.clone(), name.len() as u64 * 7919, pace).await;
        let mut watchers = Vec::new();
        for _ in 0..watchers_per_view.max(1) {
            for (view, _) in VIEWS {
                watchers.push(Watcher::start(&server.addr, view).await);
            }
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

    pub async fn pg<R: Send + 'static>(
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

    pub async fn reconnects(&self) -> u64 {
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
    pub async fn recovered(&self, before: u64) {
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
    pub async fn finish(mut self) {
        let steps = self.writer.take().unwrap().finish().await;
        let end = steps.last().unwrap().after;
        assert!(
            self.server.reaches(end, Duration::from_secs(90)).await,
            "viewcast catches up with the last commit"
        );
        for (i, w) in std::mem::take(&mut self.watchers).into_iter().enumerate() {
            let view = i % VIEWS.len();
            let final_state = &steps.last().unwrap().states[view];
            let seen = w.finish(VIEWS[view].0, final_state).await;
            assert_consistent(view, VIEWS[view].0, &steps, &seen);
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

/// A TCP proxy that can stop forwarding without closing anything, as a
/// broken network path or a dead host does.
pub struct Proxy {
    pub port: u16,
    pub black_hole: Arc<AtomicBool>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Proxy {
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
