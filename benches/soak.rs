//! Soak benchmark: `cargo bench --bench soak`.
//!
//! Runs `viewcast serve` (the release binary, as a process of its own so its
//! memory is its own) against a throwaway PostgreSQL reached through a TCP
//! proxy, while a writer commits small transactions at a steady pace and SSE
//! subscribers follow two views (a GROUP BY and a join). Every minute it
//! injects a fault, in turn: the walsender terminated, a fast restart, the
//! network path black-holed for 12 s, an immediate restart, a smart restart,
//! Postgres down for 20 s. Every 10 s it prints the server's RSS, the slot
//! lag (`pg_current_wal_lsn() - confirmed_flush_lsn` of viewcast's slot), the
//! commits, the events delivered and the reconnects. At the end every
//! subscriber's events are checked against the writer's transactions: each
//! must show the views after some prefix of them, never an earlier one than
//! before (a duplicate) and never one with a transaction missing (a hole);
//! the lost or duplicated count must be 0.
//!
//! `SOAK_MINUTES` (default 6: each fault once), `SOAK_PACE_MS` (pause between
//! transactions, default 20), `SOAK_SUBSCRIBERS` (per view, default 3).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::env;
use support::chaos::{create_tables, verify, Proxy, Watcher, Writer, VIEWS};
use viewcast::pg::embedded::ShutdownMode;

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    common::rss(pid) as f64 / (1024.0 * 1024.0)
}

async fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    viewcast::client::get(addr, path).await.ok()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Bytes of WAL viewcast's slot holds back, as Postgres reports them.
async fn slot_lag(conninfo: &str) -> Option<i64> {
    let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT COALESCE(max(pg_current_wal_lsn() - confirmed_flush_lsn), 0)::int8
             FROM pg_replication_slots WHERE slot_name LIKE 'viewcast%' AND active",
            &[],
        )
        .await
        .ok()?;
    Some(row.get(0))
}

fn start_server(conninfo: &str, queries: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_viewcast"))
        .args(["serve", "--pg", conninfo, "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--queries")
        .arg(queries)
        .args(["--replication-timeout", "6", "--workers", "2"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("start viewcast serve")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let minutes = env("SOAK_MINUTES", 6);
    let pace = Duration::from_millis(env("SOAK_PACE_MS", 20));
    let subscribers = env("SOAK_SUBSCRIBERS", 3) as usize;

    let (pg, conninfo) = common::start_postgres().await;
    let mut pg = Some(pg);
    create_tables(&conninfo).await;
    let proxy = Proxy::start(pg.as_ref().unwrap().port).await;
    let queries = std::env::temp_dir().join(format!("viewcast-soak-{}", std::process::id()));
    std::fs::create_dir_all(&queries).unwrap();
    for (name, sql) in VIEWS {
        std::fs::write(queries.join(format!("{name}.sql")), sql).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = start_server(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            proxy.port
        ),
        &queries,
        port,
    );
    let start = Instant::now();
    while get(&addr, "/healthz").await.map(|r| r.0) != Some(200) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "viewcast did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let writer = Writer::start(conninfo.clone(), 4242, pace).await;
    let mut watchers = Vec::new();
    for _ in 0..subscribers.max(1) {
        for (view, _) in VIEWS {
            watchers.push(Watcher::start(&addr, view).await);
        }
    }
    println!(
        "soak: {minutes} min, a transaction every ~{} ms, {} subscribers, a fault every minute",
        pace.as_millis(),
        watchers.len()
    );
    println!(
        "{:>6} {:>9} {:>12} {:>8} {:>8} {:>10}  fault",
        "t (s)", "RSS MiB", "slot lag B", "commits", "events", "reconnects"
    );

    let faults = [
        "walsender terminated",
        "fast restart",
        "network black-holed 12 s",
        "immediate restart",
        "smart restart",
        "down 20 s",
    ];
    let began = Instant::now();
    let mut next_report = Duration::ZERO;
    let mut next_fault = Duration::from_secs(30);
    let mut fault_no = 0usize;
    let mut max_rss = 0.0f64;
    let mut max_lag = 0i64;
    let mut last_fault = "";
    while began.elapsed() < Duration::from_secs(minutes * 60) {
        let now = began.elapsed();
        if now >= next_report {
            next_report += Duration::from_secs(10);
            let rss = rss_mib(server.id());
            max_rss = max_rss.max(rss);
            let lag = slot_lag(&conninfo).await;
            max_lag = max_lag.max(lag.unwrap_or(0));
            let metrics = get(&addr, "/metrics")
                .await
                .map(|r| r.1)
                .unwrap_or_default();
            let events: usize = watchers.iter().map(Watcher::events).sum();
            println!(
                "{:>6} {:>9.1} {:>12} {:>8} {:>8} {:>10}  {}",
                now.as_secs(),
                rss,
                lag.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
                writer.commits(),
                events,
                metric(&metrics, "viewcast_reconnects_total"),
                std::mem::take(&mut last_fault)
            );
        }
        if now >= next_fault {
            next_fault += Duration::from_secs(60);
            let fault = faults[fault_no % faults.len()];
            fault_no += 1;
            last_fault = fault;
            let mut cluster = pg.take().unwrap();
            match fault {
                "walsender terminated" => {
                    let admin = support::connect(&conninfo).await;
                    let _ = admin
                        .query(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = 'viewcast'",
                            &[],
                        )
                        .await;
                }
                "network black-holed 12 s" => {
                    proxy
                        .black_hole
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(12)).await;
                    proxy
                        .black_hole
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                }
                "smart restart" => {
                    let _ = writer.pause.send(true);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    cluster = tokio::task::spawn_blocking(move || {
                        cluster
                            .restart_with(ShutdownMode::Smart)
                            .expect("smart restart");
                        cluster
                    })
                    .await
                    .unwrap();
                    let _ = writer.pause.send(false);
                }
                "down 20 s" => {
                    cluster = tokio::task::spawn_blocking(move || {
                        cluster.stop_with(ShutdownMode::Fast).expect("stop");
                        std::thread::sleep(Duration::from_secs(20));
                        cluster.start_again().expect("start");
                        cluster
                    })
                    .await
                    .unwrap();
                }
                restart => {
                    let mode = if restart == "fast restart" {
                        ShutdownMode::Fast
                    } else {
                        ShutdownMode::Immediate
                    };
                    cluster = tokio::task::spawn_blocking(move || {
                        cluster.restart_with(mode).expect("restart");
                        cluster
                    })
                    .await
                    .unwrap();
                }
            }
            pg = Some(cluster);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let steps = writer.finish().await;
    let mut lost_or_duplicated = 0usize;
    let mut events = 0usize;
    let mut all_final = true;
    for (i, w) in watchers.into_iter().enumerate() {
        let view = i % VIEWS.len();
        let last = steps.last().unwrap().states[view].clone();
        let seen = w.finish(VIEWS[view].0, &last).await;
        let verdict = verify(view, VIEWS[view].0, &steps, &seen);
        events += verdict.events;
        lost_or_duplicated += verdict.inconsistent;
        all_final &= verdict.final_ok;
        if let Some(p) = verdict.first_problem {
            eprintln!("{p}");
        }
    }
    let metrics = get(&addr, "/metrics")
        .await
        .map(|r| r.1)
        .unwrap_or_default();
    println!(
        "soak done: {} transactions, {} faults, {} reconnects, {events} events checked, lost or duplicated {lost_or_duplicated}, final contents {}, max RSS {max_rss:.1} MiB, max slot lag {max_lag} B",
        steps.len() - 1,
        fault_no,
        metric(&metrics, "viewcast_reconnects_total"),
        if all_final { "equal to Postgres" } else { "DIFFERENT from Postgres" },
    );
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&queries);
    drop(pg);
    if lost_or_duplicated > 0 || !all_final {
        std::process::exit(1);
    }
}
