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
//! viewcast spends is taken from Postgres and pgbench, so it also prints
//! each consumer's CPU time per committed transaction (from `/proc`), a
//! steadier figure than TPS on a noisy VM. `BENCH_PGBENCH_RATE` (0: full
//! speed) runs pgbench at that many transactions a second in all, so the
//! consumers' CPU is compared at the same load.
//!
//! `cargo bench --bench pgbench`

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{caught_up, connect, cpu_seconds, env, lsn, Server};

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

/// What one pgbench run did.
struct Run {
    tps: f64,
    transactions: f64,
}

/// A pgbench run with a consumer attached, and the CPU seconds the
/// consumer used over it.
struct Attached {
    run: Run,
    cpu: f64,
}

impl Attached {
    /// The consumer's CPU microseconds per committed transaction.
    fn cpu_per_transaction(&self) -> f64 {
        self.cpu * 1e6 / self.run.transactions.max(1.0)
    }
}

/// Runs pgbench for `secs` (at `rate` transactions a second in all, if
/// not 0) and returns its TPS and how many transactions it committed.
fn pgbench(conninfo: &str, clients: u64, secs: u64, rate: u64) -> Run {
    let out = Command::new(bin("pgbench"))
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(2).to_string(),
        ])
        .args(["-T", &secs.to_string(), conninfo])
        .args(
            (rate > 0)
                .then(|| ["-R".to_string(), rate.to_string()])
                .into_iter()
                .flatten(),
        )
        .stderr(Stdio::null())
        .output()
        .expect("run pgbench");
    assert!(out.status.success(), "pgbench failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let find = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(prefix)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {prefix:?} in pgbench's output:\n{text}"))
    };
    Run {
        tps: find("tps = "),
        transactions: find("number of transactions actually processed: "),
    }
}

#[tokio::main]
async fn main() {
    let scale = env("BENCH_PGBENCH_SCALE", 10);
    let clients = env("BENCH_PGBENCH_CLIENTS", 4);
    let secs = env("BENCH_PGBENCH_SECS", 30);
    let rate = env("BENCH_PGBENCH_RATE", 0);
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
    let load = Load {
        conninfo: &conninfo,
        clients,
        secs,
        rate,
    };

    // 1. Nothing attached.
    settle(&client).await;
    let alone = load.run();

    // 2 and 3, in the order recv, viewcast, viewcast, recv.
    let recv_first = with_recvlogical(&client, &load).await;
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
        let cpu = server.cpu_seconds();
        let run = load.run();
        let end = lsn(&client).await;
        let t = Instant::now();
        caught_up(&server.addr, end).await;
        lags.push(t.elapsed().as_secs_f64());
        viewcast_runs.push(Attached {
            run,
            cpu: server.cpu_seconds() - cpu,
        });
    }
    let rss = server.rss_mib();
    server.stop();
    let _ = std::fs::remove_dir_all(&queries);
    let recv_last = with_recvlogical(&client, &load).await;

    let recv = [recv_first, recv_last];
    let tps = |runs: &[Attached]| runs.iter().map(|a| a.run.tps).sum::<f64>() / runs.len() as f64;
    // CPU microseconds per committed transaction over both runs.
    let cpu = |runs: &[Attached]| {
        let txns: f64 = runs.iter().map(|a| a.run.transactions).sum();
        runs.iter().map(|a| a.cpu).sum::<f64>() * 1e6 / txns.max(1.0)
    };
    let each = |runs: &[Attached], f: &dyn Fn(&Attached) -> f64| {
        runs.iter()
            .map(|a| format!("{:.0}", f(a)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let lag = lags.iter().copied().fold(0.0, f64::max);
    let at = if rate > 0 {
        format!(" -R {rate}")
    } else {
        String::new()
    };
    println!(
        "pgbench -c {clients} -T {secs}{at}, scale {scale}, 3 views ({ready_secs:.1} s to ready)"
    );
    println!("  TPS, nothing attached                 {:>9.0}", alone.tps);
    println!(
        "  TPS, pg_recvlogical attached          {:>9.0}   (runs: {})",
        tps(&recv),
        each(&recv, &|a| a.run.tps)
    );
    println!(
        "  TPS, viewcast attached                {:>9.0}   (runs: {})",
        tps(&viewcast_runs),
        each(&viewcast_runs, &|a| a.run.tps)
    );
    println!(
        "  ratio viewcast / pg_recvlogical       {:>9.2}",
        tps(&viewcast_runs) / tps(&recv)
    );
    println!(
        "  CPU per transaction, pg_recvlogical   {:>9.1} µs   (runs: {})",
        cpu(&recv),
        each(&recv, &Attached::cpu_per_transaction)
    );
    println!(
        "  CPU per transaction, viewcast         {:>9.1} µs   (runs: {})",
        cpu(&viewcast_runs),
        each(&viewcast_runs, &Attached::cpu_per_transaction)
    );
    println!(
        "  CPU ratio viewcast / pg_recvlogical   {:>9.1}×",
        cpu(&viewcast_runs) / cpu(&recv).max(f64::MIN_POSITIVE)
    );
    println!("  viewcast behind when pgbench stops    {lag:>9.2} s (the longer of its two runs)");
    println!("  viewcast RSS at the end               {rss:>9.0} MiB");
}

/// How pgbench is run each time.
struct Load<'a> {
    conninfo: &'a str,
    clients: u64,
    secs: u64,
    rate: u64,
}

impl Load<'_> {
    fn run(&self) -> Run {
        pgbench(self.conninfo, self.clients, self.secs, self.rate)
    }
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
/// slot of its own, and the CPU seconds `pg_recvlogical` used over it; the
/// slot is dropped after.
async fn with_recvlogical(client: &tokio_postgres::Client, load: &Load<'_>) -> Attached {
    client
        .batch_execute("SELECT pg_create_logical_replication_slot('recv', 'pgoutput')")
        .await
        .expect("slot");
    let mut recv = Command::new(bin("pg_recvlogical"))
        .args(["-d", load.conninfo, "--slot", "recv", "--start"])
        .args(["-o", "proto_version=1", "-o", "publication_names=viewcast"])
        .args(["-f", "/dev/null"])
        .stderr(Stdio::null())
        .spawn()
        .expect("pg_recvlogical");
    tokio::time::sleep(Duration::from_secs(1)).await;
    settle(client).await;
    let cpu = cpu_seconds(recv.id());
    let run = load.run();
    // What was committed last reaches it within moments.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cpu = cpu_seconds(recv.id()) - cpu;
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
    Attached { run, cpu }
}
