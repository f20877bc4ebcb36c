//! Parameterized-view benchmark: `cargo bench --bench params`.
//!
//! The team's question: is one live view with 10 000 subscribed parameter
//! values cheaper than the database re-running the batched query every
//! second, as Hasura-style polling does? In a throwaway PostgreSQL it loads
//! `tasks` (1 000 000 rows over 10 000 `project_id` values, indexed on
//! `project_id`), serves
//!
//! ```sql
//! -- project_tasks.sql
//! SELECT t.id, t.title, t.points FROM tasks t WHERE t.project_id = $project_id
//! ```
//!
//! with `viewcast serve` (the release binary, a process of its own so its
//! RSS and CPU are its own), and measures, in this order:
//!
//! 1. the time from opening the first of 100 websockets until each of the
//!    10 000 subscriptions (100 per connection, one per `project_id`) has
//!    its snapshot, and the server's RSS before and after: bytes per
//!    subscription;
//! 2. a steady writer (single-row `UPDATE`s of random tasks, autocommit):
//!    commit acknowledged → the batch holding the change received by the
//!    client subscribed to that task's project (p50/p99/max), and CPU
//!    seconds per second of the viewcast process and of its walsender;
//! 3. idle CPU (no writes), then 10 000 more subscriptions to values that
//!    match no row: RSS per subscription without rows;
//! 4. viewcast stopped, the same writer, and one connection re-running every
//!    second the batched query for the same 10 000 values, in Hasura's form
//!    (`unnest` of the values, `LATERAL` `json_agg` per value, as text) and as
//!    a plain `= ANY($1)` fetching every row: CPU seconds per second of that
//!    Postgres backend (the client's decoding is not counted).
//!
//! It prints viewcast beside polling with the targets: viewcast under 5 % of
//! the polling CPU, p99 under 50 ms, under 4 KiB per idle subscription.
//! What is counted: viewcast's CPU is its process (every thread) plus its
//! walsender; the writer's backend is left out on both sides. A poll that
//! takes longer than a second cannot run every second, so the polling cost
//! compared is the larger of the measured CPU/s and the CPU of one poll. RSS
//! per subscription is the server's growth divided by the subscriptions
//! (allocator slack included); the client runs in this process, the server
//! does not, so neither figure includes the client.
//!
//! Sizes: `VIEWCAST_BENCH_ROWS` (1 000 000), `VIEWCAST_BENCH_VALUES`
//! (10 000), `VIEWCAST_BENCH_SECONDS` (30, per measured phase),
//! `VIEWCAST_BENCH_RATE` (150 transactions/s), `VIEWCAST_BENCH_PER_CONN`
//! (100 subscriptions per websocket). A quick run:
//! `VIEWCAST_BENCH_ROWS=20000 VIEWCAST_BENCH_VALUES=200 VIEWCAST_BENCH_SECONDS=5 cargo bench --bench params`.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{connect, env, lsn, percentile, rss};

const VIEW: &str = "project_tasks";

/// User plus system CPU seconds a process has used (all its threads).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which may hold spaces: state is the
    // third field of the line, utime the 14th and stime the 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU seconds per wall second of some processes between two instants.
struct CpuMeter {
    pids: Vec<u32>,
    at: Instant,
    used: Vec<f64>,
}

impl CpuMeter {
    fn start(pids: &[u32]) -> CpuMeter {
        CpuMeter {
            pids: pids.to_vec(),
            at: Instant::now(),
            used: pids.iter().map(|p| cpu_secs(*p)).collect(),
        }
    }

    /// Per process: (CPU seconds used, CPU seconds per second).
    fn stop(&self) -> Vec<(f64, f64)> {
        let wall = self.at.elapsed().as_secs_f64();
        self.pids
            .iter()
            .zip(&self.used)
            .map(|(p, before)| {
                let used = cpu_secs(*p) - before;
                (used, used / wall)
            })
            .collect()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn start_server(conninfo: &str, queries: &std::path::Path, port: u16, per_conn: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_viewcast"))
        .args(["serve", "--pg", conninfo, "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--queries")
        .arg(queries)
        .args(["--workers", "2", "--ws-max-subscriptions"])
        .arg(per_conn.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("start viewcast serve")
}

async fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    viewcast::client::get(addr, path).await.ok()
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// What the websocket clients saw, shared by their tasks.
#[derive(Default)]
struct Seen {
    /// Subscriptions that have their snapshot.
    snapshots: AtomicUsize,
    /// Rows and bytes of JSON text in those snapshots.
    snapshot_rows: AtomicUsize,
    snapshot_bytes: AtomicUsize,
    /// `error` messages and closed connections.
    errors: AtomicUsize,
    closed: AtomicUsize,
    /// Batches after the snapshots.
    batches: AtomicUsize,
    /// The server is being stopped: closed websockets are expected.
    stopping: std::sync::atomic::AtomicBool,
}

/// One websocket: hello, `values` subscriptions, then reads for ever,
/// reporting each written title (`w<seq>`) it receives with its arrival.
async fn client(
    addr: String,
    values: Vec<i64>,
    seen: Arc<Seen>,
    done: mpsc::UnboundedSender<Instant>,
    writes: mpsc::UnboundedSender<(u64, Instant)>,
) {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("websocket handshake");
    let send = |v: Value| Message::Text(v.to_string().into());
    socket
        .send(send(json!({"type": "hello"})))
        .await
        .expect("hello");
    for v in &values {
        let msg = json!({"type": "subscribe", "id": format!("p{v}"), "view": VIEW, "params": {"project_id": v}});
        socket.feed(send(msg)).await.expect("subscribe");
    }
    socket.flush().await.expect("subscribe");
    let mut waiting = values.len();
    while let Some(frame) = socket.next().await {
        let at = Instant::now();
        let text = match frame {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(_)) | Err(_) if seen.stopping.load(Ordering::Relaxed) => return,
            Ok(Message::Close(c)) => {
                seen.closed.fetch_add(1, Ordering::Relaxed);
                eprintln!("params bench: a websocket was closed: {c:?}");
                return;
            }
            Ok(_) => continue,
            Err(e) => {
                seen.closed.fetch_add(1, Ordering::Relaxed);
                eprintln!("params bench: a websocket failed: {e}");
                return;
            }
        };
        let v: Value = serde_json::from_str(&text).expect("every message is JSON");
        match v["type"].as_str() {
            Some("batch") => {
                let mut snapshot_in_batch = false;
                for entry in v["subs"].as_object().into_iter().flat_map(|m| m.values()) {
                    if entry["snapshot"] == true {
                        snapshot_in_batch = true;
                        let rows = entry["rows"].as_array().map(Vec::len).unwrap_or(0);
                        seen.snapshot_rows.fetch_add(rows, Ordering::Relaxed);
                        seen.snapshot_bytes
                            .fetch_add(entry["rows"].to_string().len(), Ordering::Relaxed);
                        seen.snapshots.fetch_add(1, Ordering::Relaxed);
                        waiting = waiting.saturating_sub(1);
                        if waiting == 0 {
                            let _ = done.send(at);
                        }
                    }
                    for ch in entry["changes"].as_array().into_iter().flatten() {
                        if ch["diff"].as_i64() != Some(1) {
                            continue;
                        }
                        let seq = ch["row"][1]
                            .as_str()
                            .and_then(|t| t.strip_prefix('w'))
                            .and_then(|s| s.parse().ok());
                        if let Some(seq) = seq {
                            let _ = writes.send((seq, at));
                        }
                    }
                }
                if !snapshot_in_batch {
                    seen.batches.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some("error") => {
                // The first few are printed; all are counted.
                let before = seen.errors.fetch_add(1, Ordering::Relaxed);
                if before < 5 {
                    eprintln!("params bench: server error: {v}");
                }
            }
            _ => {}
        }
    }
    seen.closed.fetch_add(1, Ordering::Relaxed);
}

/// Opens `values.len() / per_conn` websockets subscribing to `values`;
/// returns once every subscription has its snapshot (or after `patience`):
/// the seconds it took from opening the first websocket.
async fn subscribe_all(
    addr: &str,
    values: &[i64],
    per_conn: usize,
    seen: &Arc<Seen>,
    writes: &mpsc::UnboundedSender<(u64, Instant)>,
    patience: Duration,
) -> (f64, usize) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let conns = values.chunks(per_conn).count();
    for chunk in values.chunks(per_conn) {
        tokio::spawn(client(
            addr.to_string(),
            chunk.to_vec(),
            seen.clone(),
            done_tx.clone(),
            writes.clone(),
        ));
    }
    drop(done_tx);
    let mut complete = 0;
    let mut last = started;
    let deadline = tokio::time::Instant::now() + patience;
    while complete < conns {
        match tokio::time::timeout_at(deadline, done_rx.recv()).await {
            Ok(Some(at)) => {
                complete += 1;
                last = last.max(at);
            }
            _ => break,
        }
    }
    (last.duration_since(started).as_secs_f64(), complete)
}

/// Commits single-row updates of random tasks at `rate` per second for
/// `seconds`, each setting the title to `w<seq>`; returns when each was
/// acknowledged.
async fn write_steadily(
    client: &tokio_postgres::Client,
    load: &Load,
    first_seq: u64,
) -> HashMap<u64, Instant> {
    let Load {
        rows,
        rate,
        seconds,
    } = *load;
    let update = client
        .prepare("UPDATE tasks SET title = $1, updated_at = now() WHERE id = $2")
        .await
        .expect("prepare");
    let mut rng = 0x2545_f491_4f6c_dd1du64 ^ first_seq;
    let mut committed = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut seq = first_seq;
    while Instant::now() < until {
        tick.tick().await;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let id = (rng % rows) as i32 + 1;
        client
            .execute(&update, &[&format!("w{seq}"), &id])
            .await
            .expect("update");
        committed.insert(seq, Instant::now());
        seq += 1;
    }
    committed
}

/// The table's size and the writer's pace.
#[derive(Clone, Copy)]
struct Load {
    rows: u64,
    rate: u64,
    seconds: u64,
}

/// One way of polling: its SQL, and per run the Postgres backend's CPU.
struct Polled {
    name: &'static str,
    polls: usize,
    rows: usize,
    bytes: usize,
    /// CPU seconds of the backend over the phase, per second.
    backend_cpu: (f64, f64),
    /// Mean wall time of one poll.
    mean_poll: Duration,
    max_poll: Duration,
}

/// Re-runs `sql` with the values every second for `seconds` while the writer
/// writes; measures the backend that runs it.
async fn poll(
    conninfo: &str,
    writer: &tokio_postgres::Client,
    name: &'static str,
    sql: &str,
    values: &[i32],
    load: &Load,
) -> Polled {
    let poller = connect(conninfo).await;
    let backend: i32 = poller
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("backend pid")
        .get(0);
    let stmt = poller.prepare(sql).await.expect("prepare the poll");
    // Warm: plan cached, pages in shared buffers, as in a running app.
    poller.query(&stmt, &[&values]).await.expect("poll");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let values = values.to_vec();
    let meter = CpuMeter::start(&[backend as u32]);
    let polling = async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut polls, mut nrows, mut bytes) = (0, 0, 0);
        let mut times = Vec::new();
        while !stop2.load(Ordering::Relaxed) {
            tick.tick().await;
            let t = Instant::now();
            let result = poller.query(&stmt, &[&values]).await.expect("poll");
            times.push(t.elapsed());
            polls += 1;
            nrows += result.len();
            // What Hasura compares with the last result: the text.
            for r in &result {
                if let Ok(s) = r.try_get::<_, &str>(1) {
                    bytes += s.len();
                }
            }
        }
        (polls, nrows, bytes, times)
    };
    let polling = tokio::spawn(polling);
    write_steadily(writer, load, 1 << 40).await;
    stop.store(true, Ordering::Relaxed);
    let (polls, nrows, bytes, times) = polling.await.expect("poller");
    let backend_cpu = meter.stop()[0];
    let total: Duration = times.iter().sum();
    Polled {
        name,
        polls,
        rows: nrows,
        bytes,
        backend_cpu,
        mean_poll: total / polls.max(1) as u32,
        max_poll: times.iter().max().copied().unwrap_or_default(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows = env("VIEWCAST_BENCH_ROWS", 1_000_000);
    let nvalues = env("VIEWCAST_BENCH_VALUES", 10_000);
    let seconds = env("VIEWCAST_BENCH_SECONDS", 30);
    let rate = env("VIEWCAST_BENCH_RATE", 150);
    let per_conn = env("VIEWCAST_BENCH_PER_CONN", 100);
    let load = Load {
        rows,
        rate,
        seconds,
    };
    let began = Instant::now();

    let (pg, conninfo) = common::start_postgres().await;
    let db = connect(&conninfo).await;
    db.batch_execute(&format!(
        "CREATE TABLE tasks (id int PRIMARY KEY, project_id int NOT NULL, title text NOT NULL,
                             points int NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO tasks SELECT i, 1 + i % {nvalues}, 'task ' || i, i % 13, now()
           FROM generate_series(1, {rows}) i;
         CREATE INDEX tasks_project_id ON tasks (project_id);
         CREATE PUBLICATION viewcast FOR TABLE tasks;"
    ))
    .await
    .expect("schema and data");
    db.batch_execute("VACUUM ANALYZE tasks")
        .await
        .expect("vacuum");
    let loaded = began.elapsed().as_secs_f64();

    let queries = std::env::temp_dir().join(format!("viewcast-params-{}", std::process::id()));
    std::fs::create_dir_all(&queries).unwrap();
    std::fs::write(
        queries.join(format!("{VIEW}.sql")),
        "SELECT t.id, t.title, t.points FROM tasks t WHERE t.project_id = $project_id",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = start_server(&conninfo, &queries, port, per_conn);
    let server_pid = server.id();
    let t = Instant::now();
    loop {
        let health = get(&addr, "/healthz").await.map(|r| r.0);
        let view = get(&addr, &format!("/views/{VIEW}?project_id=1"))
            .await
            .map(|r| r.0);
        if health == Some(200) && view == Some(200) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "viewcast did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let startup = t.elapsed().as_secs_f64();
    let walsender: Option<i32> = db
        .query_opt(
            "SELECT pid FROM pg_stat_replication WHERE application_name = 'viewcast' LIMIT 1",
            &[],
        )
        .await
        .expect("walsender")
        .map(|r| r.get(0));
    // Let the tuple of the probe above be retracted? It lingers 30 s; it is
    // project 1, which is subscribed below anyway.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = rss(server_pid);

    // 1. Subscribe to every value.
    let seen = Arc::new(Seen::default());
    let (writes_tx, mut writes_rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    let values: Vec<i64> = (1..=nvalues as i64).collect();
    let (snapshot_secs, conns_done) = subscribe_all(
        &addr,
        &values,
        per_conn as usize,
        &seen,
        &writes_tx,
        Duration::from_secs(600),
    )
    .await;
    let subscribed = seen.snapshots.load(Ordering::Relaxed);
    let snapshot_rows = seen.snapshot_rows.load(Ordering::Relaxed);
    let snapshot_bytes = seen.snapshot_bytes.load(Ordering::Relaxed);
    let rss_peak_snap = rss(server_pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_subscribed = rss(server_pid);

    // 2. Steady writes while everyone is subscribed.
    let mut pids = vec![server_pid];
    pids.extend(walsender.map(|p| p as u32));
    let batches_before = seen.batches.load(Ordering::Relaxed);
    let meter = CpuMeter::start(&pids);
    let committed = write_steadily(&db, &load, 0).await;
    let steady_cpu = meter.stop();
    let end = lsn(&db).await;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        let progress = get(&addr, "/metrics")
            .await
            .and_then(|(_, m)| metric(&m, "viewcast_progress_lsn"));
        if progress.is_some_and(|p| p >= end.0 as f64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut latencies = Vec::new();
    while let Ok((seq, at)) = writes_rx.try_recv() {
        if let Some(c) = committed.get(&seq) {
            latencies.push(at.saturating_duration_since(*c));
        }
    }
    latencies.sort();
    let steady_batches = seen.batches.load(Ordering::Relaxed) - batches_before;

    // 3. Idle CPU, then subscriptions without rows.
    let idle_secs = seconds.clamp(1, 10);
    let meter = CpuMeter::start(&pids);
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let idle_cpu = meter.stop();
    let rss_idle = rss(server_pid);
    let empty: Vec<i64> = (0..nvalues as i64).map(|i| 1_000_000_000 + i).collect();
    let (empty_secs, _) = subscribe_all(
        &addr,
        &empty,
        per_conn as usize,
        &seen,
        &writes_tx,
        Duration::from_secs(600),
    )
    .await;
    let empty_subscribed = seen.snapshots.load(Ordering::Relaxed) - subscribed;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_empty = rss(server_pid);
    let metrics = get(&addr, "/metrics")
        .await
        .map(|r| r.1)
        .unwrap_or_default();
    let closed_early = seen.closed.load(Ordering::Relaxed);
    let errors = seen.errors.load(Ordering::Relaxed);
    seen.stopping.store(true, Ordering::Relaxed);
    let _ = server.kill();
    let _ = server.wait();

    // 4. Polling, with viewcast stopped, under the same writes.
    let ids: Vec<i32> = values.iter().map(|v| *v as i32).collect();
    let hasura = poll(
        &conninfo,
        &db,
        "polling, Hasura form (unnest + LATERAL json_agg)",
        "SELECT s.project_id, r.result::text
         FROM unnest($1::int4[]) AS s(project_id)
         LEFT JOIN LATERAL (
           SELECT coalesce(json_agg(json_build_object('id', t.id, 'title', t.title, 'points', t.points)), '[]') AS result
           FROM tasks t WHERE t.project_id = s.project_id
         ) r ON true",
        &ids,
        &load,
    )
    .await;
    let plain = poll(
        &conninfo,
        &db,
        "polling, plain rows (project_id = ANY($1))",
        "SELECT t.project_id, t.id, t.title, t.points FROM tasks t WHERE t.project_id = ANY($1)",
        &ids,
        &load,
    )
    .await;

    let vc_process = steady_cpu[0].1;
    let vc_walsender = steady_cpu.get(1).map(|c| c.1).unwrap_or(0.0);
    let vc_total = vc_process + vc_walsender;
    let kib = |b: f64| b / 1024.0;
    let per_sub =
        |after: u64, before: u64, n: usize| (after as f64 - before as f64) / n.max(1) as f64;
    println!();
    println!(
        "viewcast parameterized-view benchmark: {rows} tasks over {nvalues} project_id values, \
         {} websockets × {per_conn} subscriptions, {rate} single-row UPDATEs/s for {seconds} s per phase",
        values.len().div_ceil(per_conn as usize)
    );
    println!(
        "setup: load + index {loaded:.1} s; viewcast serving the view (healthz 200 and GET 200) {startup:.1} s; \
         server RSS then {:.1} MiB",
        rss_before as f64 / 1048576.0
    );
    println!();
    println!(
        "{:<56} {:>12} {:>10} {:>12}",
        "CPU during the steady writes", "CPU s/s", "per poll", "viewcast ÷"
    );
    println!(
        "{:<56} {:>12.4}",
        "viewcast serve process (all threads)", vc_process
    );
    println!(
        "{:<56} {:>12.4}",
        "its walsender (Postgres decoding for viewcast)", vc_walsender
    );
    println!("{:<56} {:>12.4}", "viewcast total", vc_total);
    for p in [&hasura, &plain] {
        let per_poll = p.backend_cpu.0 / p.polls.max(1) as f64;
        // If a poll takes longer than a second the measured rate is capped:
        // the cost of polling every second is the cost of one poll.
        let per_second = per_poll.max(p.backend_cpu.1);
        println!(
            "{:<56} {:>12.4} {:>9.3}s {:>11.2}%",
            p.name,
            p.backend_cpu.1,
            per_poll,
            100.0 * vc_total / per_second
        );
    }
    println!(
        "{:<56} {:>12.4}",
        "viewcast total, idle (no writes, all subscribed)",
        idle_cpu.iter().map(|c| c.1).sum::<f64>()
    );
    println!();
    for p in [&hasura, &plain] {
        let text = if p.bytes > 0 {
            format!(
                ", {:.1} MiB of JSON text/poll",
                p.bytes as f64 / p.polls.max(1) as f64 / 1048576.0
            )
        } else {
            String::new()
        };
        println!(
            "{}: {} polls, mean {:.0} ms, max {:.0} ms, {} rows/poll{text}",
            p.name,
            p.polls,
            ms(p.mean_poll),
            ms(p.max_poll),
            p.rows / p.polls.max(1),
        );
    }
    println!();
    println!(
        "snapshots: {subscribed} of {} subscriptions ({conns_done} websockets complete) in {snapshot_secs:.2} s \
         from opening the first websocket; {snapshot_rows} rows, {:.1} MiB of rows as JSON",
        values.len(),
        snapshot_bytes as f64 / 1048576.0
    );
    println!(
        "memory (server RSS): before {:.1} MiB, right after the snapshots {:.1} MiB, 3 s later {:.1} MiB, \
         after the writes and idle {:.1} MiB",
        rss_before as f64 / 1048576.0,
        rss_peak_snap as f64 / 1048576.0,
        rss_subscribed as f64 / 1048576.0,
        rss_idle as f64 / 1048576.0,
    );
    println!(
        "  per subscription with its {} rows (idle, 3 s after): {:.2} KiB (rows as JSON: {:.2} KiB)",
        snapshot_rows / subscribed.max(1),
        kib(per_sub(rss_subscribed, rss_before, subscribed)),
        kib(snapshot_bytes as f64 / subscribed.max(1) as f64)
    );
    println!(
        "  per subscription matching no row ({empty_subscribed} more, snapshots in {empty_secs:.2} s): {:.2} KiB",
        kib(per_sub(rss_empty, rss_idle, empty_subscribed))
    );
    println!(
        "latency at {rate} tx/s, commit ack → batch received by the project's client ({} of {} seen, {steady_batches} batches): \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        committed.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!(
        "errors from the server: {errors}, websockets closed before viewcast was stopped: {closed_early}; at the end: {}, {}",
        metrics
            .lines()
            .find(|l| l.starts_with("viewcast_view_rows"))
            .unwrap_or("-"),
        metrics
            .lines()
            .find(|l| l.starts_with("viewcast_view_tuples"))
            .unwrap_or("-")
    );
    let best_polling = [&hasura, &plain]
        .iter()
        .map(|p| (p.backend_cpu.0 / p.polls.max(1) as f64).max(p.backend_cpu.1))
        .fold(f64::INFINITY, f64::min);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!();
    println!(
        "targets: CPU under 5% of polling (cheaper form): {:.2}% {}; p99 under 50 ms: {:.1} ms {}; \
         under 4 KiB per idle subscription (no rows): {:.2} KiB {}, with rows {:.2} KiB {}",
        100.0 * vc_total / best_polling,
        verdict(vc_total / best_polling < 0.05),
        ms(percentile(&latencies, 0.99)),
        verdict(percentile(&latencies, 0.99) < Duration::from_millis(50)),
        kib(per_sub(rss_empty, rss_idle, empty_subscribed)),
        verdict(per_sub(rss_empty, rss_idle, empty_subscribed) < 4096.0),
        kib(per_sub(rss_subscribed, rss_before, subscribed)),
        verdict(per_sub(rss_subscribed, rss_before, subscribed) < 4096.0),
    );
    println!("total run {:.0} s", began.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&queries);
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}
