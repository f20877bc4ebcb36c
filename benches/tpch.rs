//! TPC-H benchmark: `cargo bench --bench tpch`.
//!
//! In a throwaway PostgreSQL, loads TPC-H at `BENCH_TPCH_SF` (default 0.1)
//! and serves all 22 queries as views. For each refresh batch (orders with
//! their lineitems inserted or deleted, one transaction each) it prints side
//! by side how long viewcast takes from the commit until all 22 views reflect
//! it, and how long Postgres takes to re-run the 22 queries, which is what a
//! polling engine pays for the same freshness. Also: time to the first
//! complete views and the server process's resident memory.
//! `BENCH_WORKERS` (default 2) sets viewcast's worker threads.

use std::time::{Duration, Instant};

use viewcast::config::Config;
use viewcast::pg::embedded::EmbeddedPostgres;

#[path = "../tests/tpch_data.rs"]
mod tpch_data;

mod common;
use common::{caught_up, connect, lsn};

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

#[tokio::main]
async fn main() {
    let sf: f64 = std::env::var("BENCH_TPCH_SF")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.1);
    let workers: usize = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let pg = tokio::task::spawn_blocking(EmbeddedPostgres::start)
        .await
        .unwrap()
        .expect("start PostgreSQL");
    let conninfo = pg.conninfo("postgres");
    let mut loader = connect(&conninfo).await;
    let t = Instant::now();
    tpch_data::create_and_load(&mut loader, sf).await;
    println!(
        "TPC-H scale factor {sf}: loaded in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let queries = tpch_data::queries();
    let reader = connect(&conninfo).await;
    postgres_rerun(&reader, &queries).await; // warm the cache
    let rerun = postgres_rerun(&reader, &queries).await;
    println!(
        "Postgres runs all 22 queries in {:.0} ms",
        rerun.as_secs_f64() * 1e3
    );

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
        publication: "viewcast".into(),
        timeouts: Default::default(),
        auth: None,
    })
    .await
    .expect("viewcast starts");
    let addr = running.addr.to_string();
    while !running.registry.is_streaming() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "viewcast: 22 views complete {:.1} s after start ({workers} workers); resident memory {:.0} MB (+{:.0} MB)",
        t.elapsed().as_secs_f64(),
        rss_mb(),
        rss_mb() - before
    );
    println!();
    println!(
        "{:<18} {:>9} {:>14} {:>16} {:>8}",
        "batch", "rows", "viewcast (ms)", "PG re-run (ms)", "ratio"
    );
    for (what, k, insert) in tpch_data::batches() {
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
        "\nratio = Postgres re-running the 22 queries / viewcast updating its 22 views (higher is better for viewcast); memory now {:.0} MB",
        rss_mb()
    );
    running.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    drop(pg);
}
