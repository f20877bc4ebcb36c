//! TPC-H benchmark: `cargo bench --bench tpch`.
//!
//! In a throwaway PostgreSQL, loads TPC-H at `BENCH_TPCH_SF` (default 0.1)
//! and serves all 22 queries as views. For each refresh batch (orders with
//! their lineitems inserted or deleted, one transaction each) it prints side
//! by side how long viewcast takes from the commit until all 22 views reflect
//! it, and how long Postgres takes to re-run the 22 queries, which is what a
//! polling engine pays for the same freshness. Also: time to the first
//! complete views and the server process's resident memory. Then a stream
//! of small refresh transactions (an order with its lineitems, a customer's
//! or a part's update): `BENCH_TPCH_SMALL` (500) one at a time, then
//! `BENCH_TPCH_RATE` (500) per second for 10 s from 4 connections, each
//! timed from its commit until all 22 views have it, and for the one at a
//! time stream also by kind of transaction (0 skips either stream). `BENCH_TPCH_BATCHES` (4) limits
//! the refresh batches (0 skips them and Postgres's re-runs);
//! `BENCH_TPCH_QUERIES` (e.g. `q03,q18`) serves only those queries, to see
//! what a view costs a transaction.
//! `BENCH_WORKERS` (default 2) sets viewcast's worker threads and
//! `VIEWCAST_MERGE_AFTER` its `--merge-after` (default 16). The server
//! runs in this process, on the binary's allocator and settings (mimalloc),
//! and logs to stderr as `RUST_LOG` says.

use std::time::{Duration, Instant};

use viewcast::config::Config;

/// The `viewcast` binary's allocator, so that memory and time are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/tpch_data.rs"]
mod tpch_data;

mod common;
use common::{arranged_records, caught_up, connect, lsn};

/// This process's resident memory, in MiB.
fn rss_mb() -> f64 {
    common::rss(std::process::id()) as f64 / (1024.0 * 1024.0)
}

async fn postgres_rerun(client: &tokio_postgres::Client, queries: &[(String, String)]) -> Duration {
    let t = Instant::now();
    for (_, sql) in queries {
        client.query(sql.as_str(), &[]).await.expect("query runs");
    }
    t.elapsed()
}

/// The kinds of small refresh transaction, by `i % 4`.
const KINDS: [&str; 4] = ["an order", "an order", "a customer", "a part"];

/// Small refresh transaction number `i`: a copy of an existing order with
/// its lineitems under a new key, or an update of a customer's balance or a
/// part's price ([`KINDS`]).
async fn small_transaction(client: &tokio_postgres::Client, i: usize) {
    let sql = match i % 4 {
        0 | 1 => {
            // Order keys of TPC-H are below 6M × SF × 4; new ones start far above.
            let new = 100_000_000 + i as i64;
            let from = 1 + (i as i64 * 7919) % 1000;
            format!(
                "BEGIN;
                 INSERT INTO orders SELECT {new}, o_custkey, o_orderstatus, o_totalprice, o_orderdate, o_orderpriority, o_clerk, o_shippriority, o_comment
                   FROM orders WHERE o_orderkey = (SELECT min(o_orderkey) FROM orders WHERE o_orderkey >= {from});
                 INSERT INTO lineitem SELECT {new}, l_partkey, l_suppkey, l_linenumber, l_quantity, l_extendedprice, l_discount, l_tax, l_returnflag, l_linestatus, l_shipdate, l_commitdate, l_receiptdate, l_shipinstruct, l_shipmode, l_comment
                   FROM lineitem WHERE l_orderkey = (SELECT min(o_orderkey) FROM orders WHERE o_orderkey >= {from});
                 COMMIT;"
            )
        }
        2 => format!(
            "UPDATE customer SET c_acctbal = c_acctbal + 1 WHERE c_custkey = {}",
            1 + (i * 31) % 1000
        ),
        _ => format!(
            "UPDATE part SET p_retailprice = p_retailprice + 0.01 WHERE p_partkey = {}",
            1 + (i * 17) % 1000
        ),
    };
    client.batch_execute(&sql).await.expect("small transaction");
}

/// Runs `total` small transactions from `writers` connections, paced at
/// `rate` per second (or each after the last is in the views), and returns
/// each one's time from its commit until the views' progress passed it,
/// sorted, with its kind ([`KINDS`]).
async fn small_stream(
    conninfo: &str,
    registry: &std::sync::Arc<viewcast::views::Registry>,
    total: usize,
    rate: Option<u64>,
    writers: usize,
    base: usize,
) -> Vec<(Duration, &'static str)> {
    // Progress as seen every millisecond, by time.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(
        Vec::<(Instant, viewcast::pg::Lsn)>::new(),
    ));
    let watcher = {
        let (seen, registry) = (seen.clone(), registry.clone());
        tokio::spawn(async move {
            let mut last = viewcast::pg::Lsn(0);
            loop {
                let p = registry.progress();
                if p != last {
                    last = p;
                    seen.lock().unwrap().push((Instant::now(), p));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    for w in 0..writers {
        let conninfo = conninfo.to_string();
        let registry = registry.clone();
        tasks.push(tokio::spawn(async move {
            let client = connect(&conninfo).await;
            let mut tick = rate.map(|r| {
                let mut t =
                    tokio::time::interval(Duration::from_secs_f64(writers as f64 / r as f64));
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                t
            });
            let mut commits = Vec::new();
            let mut i = base + 1_000_000 * w;
            while commits.len() < total / writers {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                small_transaction(&client, i).await;
                let committed = Instant::now();
                let at = lsn(&client).await;
                commits.push((at, committed, KINDS[i % 4]));
                if rate.is_none() {
                    while registry.progress() < at {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                i += 1;
            }
            commits
        }));
    }
    let mut commits = Vec::new();
    for t in tasks {
        commits.extend(t.await.expect("writer"));
    }
    let end = commits
        .iter()
        .map(|(l, _, _)| *l)
        .max()
        .unwrap_or(viewcast::pg::Lsn(0));
    while registry.progress() < end {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    watcher.abort();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let mut latencies: Vec<(Duration, &'static str)> = commits
        .iter()
        .filter_map(|(at, committed, kind)| {
            let (when, _) = seen.iter().find(|(_, p)| p >= at)?;
            Some((when.saturating_duration_since(*committed), *kind))
        })
        .collect();
    latencies.sort();
    latencies
}

fn report(what: &str, latencies: &[(Duration, &str)]) {
    let latencies: Vec<Duration> = latencies.iter().map(|(d, _)| *d).collect();
    let latencies = &latencies[..];
    let ms = |p| common::percentile(latencies, p).as_secs_f64() * 1e3;
    println!(
        "  {what:<32} {:>6} transactions: p50 {:>6.1} ms, p99 {:>6.1} ms, max {:>6.1} ms",
        latencies.len(),
        ms(0.5),
        ms(0.99),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
}

#[tokio::main]
async fn main() {
    viewcast::alloc::configure();
    // The server's own log, when asked for (`RUST_LOG=viewcast=debug` shows
    // how many operators each view's dataflow has).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let sf: f64 = std::env::var("BENCH_TPCH_SF")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.1);
    let workers: usize = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let view_groups = common::view_groups(workers);
    let merge_after = common::env(
        "VIEWCAST_MERGE_AFTER",
        viewcast::config::DEFAULT_MERGE_AFTER as u64,
    ) as usize;
    let (pg, conninfo) = common::start_postgres().await;
    let mut loader = connect(&conninfo).await;
    let t = Instant::now();
    tpch_data::create_and_load(&mut loader, sf).await;
    println!(
        "TPC-H scale factor {sf}: loaded in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let only = std::env::var("BENCH_TPCH_QUERIES").unwrap_or_default();
    let queries: Vec<(String, String)> = tpch_data::queries()
        .into_iter()
        .filter(|(name, _)| only.is_empty() || only.split(',').any(|q| q.trim() == name))
        .collect();
    let views = queries.len();
    let reader = connect(&conninfo).await;
    let batches = common::env("BENCH_TPCH_BATCHES", 4) as usize;
    if batches > 0 {
        postgres_rerun(&reader, &queries).await; // warm the cache
        let rerun = postgres_rerun(&reader, &queries).await;
        println!(
            "Postgres runs all {views} queries in {:.0} ms",
            rerun.as_secs_f64() * 1e3
        );
    }

    let dir = std::env::temp_dir().join(format!("viewcast-bench-tpch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("queries dir");
    for (name, sql) in &queries {
        std::fs::write(dir.join(format!("{name}.sql")), sql).expect("write query");
    }
    let before = rss_mb();
    let t = Instant::now();
    let running = viewcast::server::start(Config {
        pg: conninfo.clone(),
        queries: dir.clone(),
        listen: "127.0.0.1:0".into(),
        workers,
        view_groups,
        publication: "viewcast".into(),
        timeouts: Default::default(),
        auth: None,
        cluster: None,
        merge_after,
        linger: Duration::ZERO,
    })
    .await
    .expect("viewcast starts");
    let addr = running.addr.to_string();
    while !running.registry.is_streaming() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "viewcast: {views} views complete {:.1} s after start ({workers} workers in {view_groups} groups, --merge-after {merge_after}); resident memory {:.0} MB (+{:.0} MB)",
        t.elapsed().as_secs_f64(),
        rss_mb(),
        rss_mb() - before
    );
    // Bytes are measured about once a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let arranged = arranged_records(&addr).await;
    let per_view: Vec<String> = arranged
        .iter()
        .map(|(w, n, b)| format!("{w} {n} ({:.1} MB)", *b as f64 / 1e6))
        .collect();
    println!("records held in arrangements: {}", per_view.join(", "));
    let held: i64 = arranged.iter().map(|(_, _, b)| b).sum();
    println!(
        "bytes of all arrangements' batches: {:.0} MB",
        held as f64 / 1e6
    );
    println!();
    println!(
        "{:<18} {:>9} {:>14} {:>16} {:>8}",
        "batch", "rows", "viewcast (ms)", "PG re-run (ms)", "ratio"
    );
    for (what, k, insert) in tpch_data::batches().into_iter().take(batches) {
        let rows = tpch_data::apply_batch(&mut loader, sf, k, insert).await;
        let t = Instant::now();
        caught_up(&addr, lsn(&reader).await).await;
        let ours = t.elapsed();
        let theirs = postgres_rerun(&reader, &queries).await;
        println!(
            "{:<18} {:>9} {:>14.0} {:>16.0} {:>8.2}",
            what,
            rows,
            ours.as_secs_f64() * 1e3,
            theirs.as_secs_f64() * 1e3,
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
    }
    println!(
        "\nratio = Postgres re-running the {views} queries / viewcast updating its {views} views (higher is better for viewcast); memory now {:.0} MB",
        rss_mb()
    );

    // Small refresh transactions: one at a time, then at a steady rate.
    let small = common::env("BENCH_TPCH_SMALL", 500) as usize;
    let rate = common::env("BENCH_TPCH_RATE", 500);
    println!();
    println!("small refresh transactions (a new order with its lineitems, a customer's or a part's update): commit → all {views} views updated");
    // 0 skips either stream (to time only the load, say).
    if small > 0 {
        let one = small_stream(&conninfo, &running.registry, small, None, 1, 0).await;
        report("one at a time", &one);
        for kind in ["an order", "a customer", "a part"] {
            let of_kind: Vec<_> = one.iter().filter(|(_, k)| *k == kind).copied().collect();
            report(&format!("  of which {kind}"), &of_kind);
        }
    }
    if rate > 0 {
        let paced = small_stream(
            &conninfo,
            &running.registry,
            rate as usize * 10,
            Some(rate),
            4,
            10_000_000,
        )
        .await;
        report(&format!("at {rate}/s from 4 connections"), &paced);
    }
    println!("(views' progress is polled every millisecond)");
    running.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    drop(pg);
}
