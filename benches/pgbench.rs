//! What following a busy database costs it: pgbench's TPC-B-like load
//! (scale `BENCH_PGBENCH_SCALE`, 10; `BENCH_PGBENCH_CLIENTS`, 4, clients at
//! full speed for `BENCH_PGBENCH_SECS`, 30 s) on one throwaway Postgres:
//!
//! 1. with nothing attached (the machine's own figure);
//! 2. with `pg_recvlogical` streaming the same publication (pgoutput) to
//!    /dev/null: the cheapest possible consumer, the reference;
//! 3. with viewcast following the same publication with three views over
//!    pgbench's tables (a join + GROUP BY, an aggregate over the history,
//!    a filter over the accounts).
//!
//! The tables grow and bloat from run to run, so a later run is slower for
//! that alone: the attached runs go in the order pg_recvlogical, viewcast,
//! viewcast, pg_recvlogical, each after a VACUUM and a CHECKPOINT, and each
//! consumer's figure is the mean of its two runs.
//!
//! It prints each run's TPS, the ratio viewcast / pg_recvlogical, and how far
//! behind viewcast is when pgbench stops (the time from pgbench's end until
//! every view reflects its last commit). On a small machine every CPU second
//! viewcast spends is taken from Postgres and pgbench.
//!
//! `cargo bench --bench pgbench`

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{caught_up, connect, env, lsn, Server};

const VIEWS: &[(&str, &str)] = &[
    (
        "branch_totals",
        "SELECT b.bid, b.bbalance, count(*) AS tellers, sum(t.tbalance) AS teller_total \
         FROM pgbench_branches b JOIN pgbench_tellers t ON t.bid = b.bid GROUP BY b.bid, b.bbalance",
    ),
    (
        "history_by_branch",
        "SELECT bid, count(*) AS n, sum(delta) AS total FROM pgbench_history GROUP BY bid",
    ),
    (
        "rich_accounts",
        "SELECT aid, bid, abalance FROM pgbench_accounts WHERE abalance > 20000",
    ),
];

fn bin(name: &str) -> std::path::PathBuf {
    viewcast::pg::embedded::find_bin_dir()
        .expect("PostgreSQL's bin directory")
        .join(name)
}

/// Runs pgbench for `secs` and returns its TPS.
fn pgbench(conninfo: &str, clients: u64, secs: u64) -> f64 {
    let out = Command::new(bin("pgbench"))
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(2).to_string(),
        ])
        .args(["-T", &secs.to_string(), conninfo])
        .stderr(Stdio::null())
        .output()
        .expect("run pgbench");
    assert!(out.status.success(), "pgbench failed");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix("tps = ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no tps in pgbench's output:\n{text}"))
}

#[tokio::main]
async fn main() {
    let scale = env("BENCH_PGBENCH_SCALE", 10);
    let clients = env("BENCH_PGBENCH_CLIENTS", 4);
    let secs = env("BENCH_PGBENCH_SECS", 30);
    let (_pg, conninfo) = common::start_postgres().await;
    let client = connect(&conninfo).await;
    let status = Command::new(bin("pgbench"))
        .args(["-i", "-q", "-s", &scale.to_string(), &conninfo])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("pgbench -i");
    assert!(status.success(), "pgbench -i failed");
    client
        .batch_execute(
            "CREATE PUBLICATION viewcast FOR TABLE pgbench_accounts, pgbench_branches, \
             pgbench_tellers, pgbench_history; CHECKPOINT",
        )
        .await
        .expect("publication");

    // 1. Nothing attached.
    settle(&client).await;
    let alone = pgbench(&conninfo, clients, secs);

    // 2 and 3, in the order recv, viewcast, viewcast, recv.
    let recv_first = with_recvlogical(&client, &conninfo, clients, secs).await;
    let queries = std::env::temp_dir().join(format!("viewcast-pgbench-{}", std::process::id()));
    std::fs::create_dir_all(&queries).expect("queries dir");
    for (name, sql) in VIEWS {
        std::fs::write(queries.join(format!("{name}.sql")), sql).expect("view");
    }
    let t = Instant::now();
    let server = Server::start(&conninfo, &queries);
    server
        .ready(&VIEWS.iter().map(|(n, _)| *n).collect::<Vec<_>>())
        .await;
    let ready_secs = t.elapsed().as_secs_f64();
    let mut viewcast_runs = Vec::new();
    let mut lags = Vec::new();
    for _ in 0..2 {
        settle(&client).await;
        viewcast_runs.push(pgbench(&conninfo, clients, secs));
        let end = lsn(&client).await;
        let t = Instant::now();
        caught_up(&server.addr, end).await;
        lags.push(t.elapsed().as_secs_f64());
    }
    let rss = server.rss_mib();
    server.stop();
    let _ = std::fs::remove_dir_all(&queries);
    let recv_last = with_recvlogical(&client, &conninfo, clients, secs).await;

    let with_recv = (recv_first + recv_last) / 2.0;
    let with_viewcast = viewcast_runs.iter().sum::<f64>() / viewcast_runs.len() as f64;
    let lag = lags.iter().copied().fold(0.0, f64::max);
    println!("pgbench -c {clients} -T {secs}, scale {scale}, 3 views ({ready_secs:.1} s to ready)");
    println!("  TPS, nothing attached                 {alone:>9.0}");
    println!(
        "  TPS, pg_recvlogical attached          {with_recv:>9.0}   (runs: {recv_first:.0}, {recv_last:.0})"
    );
    println!(
        "  TPS, viewcast attached                {with_viewcast:>9.0}   (runs: {:.0}, {:.0})",
        viewcast_runs[0], viewcast_runs[1]
    );
    println!(
        "  ratio viewcast / pg_recvlogical       {:>9.2}",
        with_viewcast / with_recv
    );
    println!("  viewcast behind when pgbench stops    {lag:>9.2} s (the longer of its two runs)");
    println!("  viewcast RSS at the end               {rss:>9.0} MiB");
}

/// Vacuums what pgbench updates and checkpoints, so each run starts alike.
async fn settle(client: &tokio_postgres::Client) {
    // One statement each: several in one call are one transaction block,
    // which VACUUM refuses.
    for sql in [
        "VACUUM pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history",
        "CHECKPOINT",
    ] {
        client.batch_execute(sql).await.expect(sql);
    }
}

/// One pgbench run with `pg_recvlogical` streaming the publication from a
/// slot of its own; the slot is dropped after.
async fn with_recvlogical(
    client: &tokio_postgres::Client,
    conninfo: &str,
    clients: u64,
    secs: u64,
) -> f64 {
    client
        .batch_execute("SELECT pg_create_logical_replication_slot('recv', 'pgoutput')")
        .await
        .expect("slot");
    let mut recv = Command::new(bin("pg_recvlogical"))
        .args(["-d", conninfo, "--slot", "recv", "--start"])
        .args(["-o", "proto_version=1", "-o", "publication_names=viewcast"])
        .args(["-f", "/dev/null"])
        .stderr(Stdio::null())
        .spawn()
        .expect("pg_recvlogical");
    tokio::time::sleep(Duration::from_secs(1)).await;
    settle(client).await;
    let tps = pgbench(conninfo, clients, secs);
    let _ = recv.kill();
    let _ = recv.wait();
    // The walsender may hold the slot a moment after its client is gone.
    let mut tries = 0;
    while let Err(e) = client
        .batch_execute("SELECT pg_drop_replication_slot('recv')")
        .await
    {
        tries += 1;
        assert!(tries < 100, "drop slot: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tps
}
