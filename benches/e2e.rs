//! End-to-end benchmark: `cargo bench --bench e2e`.
//!
//! In a throwaway PostgreSQL, builds a WAL backlog of many small transactions
//! and a few bulk ones against two tables read by a join+aggregate view, and
//! prints side by side:
//!
//! 1. rows/s that `pg_recvlogical` (pgoutput, same publication) drains from a
//!    slot holding that backlog;
//! 2. rows/s that viewcast ingests and applies to its views for the same
//!    workload (viewcast runs while the backlog is written; the bulk
//!    transactions reach it whole at commit, so it drains them as a backlog);
//! 3. commit → SSE receipt latency (p50/p99) at a steady write rate.
//!
//! Sizes: `BENCH_SMALL_TXNS` (default 5000), `BENCH_BULK_ROWS` (default 50000,
//! three bulk transactions), `BENCH_RATE` (default 200 tx/s for 10 s),
//! `BENCH_WORKERS` (default 2).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use viewcast::client::SseClient;
use viewcast::config::Config;

mod common;
use common::{connect, lsn, percentile, recvlogical_drain};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes the backlog; returns the number of row changes written.
async fn write_backlog(
    client: &tokio_postgres::Client,
    first_id: i64,
    small: u64,
    bulk_rows: u64,
) -> u64 {
    let mut rows = 0;
    let insert = client
        .prepare("INSERT INTO orders VALUES ($1, $2, $3::float8)")
        .await
        .expect("prepare");
    for i in 0..small as i64 {
        let id = first_id + i;
        let amount = format!("{}.{:02}", id % 500, id % 100);
        client.execute("BEGIN", &[]).await.expect("begin");
        client
            .execute(
                &insert,
                &[
                    &id,
                    &((id % 100) as i32 + 1),
                    &amount.parse::<f64>().unwrap_or(0.0),
                ],
            )
            .await
            .expect("insert");
        client.execute("COMMIT", &[]).await.expect("commit");
        rows += 1;
    }
    for b in 0..3i64 {
        let start = first_id + small as i64 + b * bulk_rows as i64;
        client
            .batch_execute(&format!(
                "INSERT INTO orders SELECT i, 1 + i % 100, (i % 500) + (i % 100) / 100.0 FROM generate_series({start}, {}) i",
                start + bulk_rows as i64 - 1
            ))
            .await
            .expect("bulk insert");
        rows += bulk_rows;
    }
    rows
}

#[tokio::main]
async fn main() {
    let small = env("BENCH_SMALL_TXNS", 5000);
    let bulk = env("BENCH_BULK_ROWS", 50_000);
    let rate = env("BENCH_RATE", 200);
    let (pg, conninfo) = common::start_postgres().await;
    let client = connect(&conninfo).await;
    client
        .batch_execute(
            "CREATE TABLE customers (id int PRIMARY KEY, region text NOT NULL);
             CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, amount numeric(10,2) NOT NULL);
             INSERT INTO customers SELECT i, 'region ' || (i % 7) FROM generate_series(1, 100) i;
             CREATE PUBLICATION viewcast FOR TABLE customers, orders;",
        )
        .await
        .expect("schema");

    // 1. pg_recvlogical drains a backlog from a slot created before it was written.
    client
        .batch_execute("SELECT pg_create_logical_replication_slot('recv', 'pgoutput')")
        .await
        .expect("slot");
    let t = Instant::now();
    let rows = write_backlog(&client, 1, small, bulk).await;
    let write_secs = t.elapsed().as_secs_f64();
    let end = lsn(&client).await;
    let recv_secs = recvlogical_drain(&conninfo, "recv", end).as_secs_f64();
    client
        .batch_execute("SELECT pg_drop_replication_slot('recv')")
        .await
        .expect("drop slot");

    // 2. viewcast follows the same workload written again.
    let dir = std::env::temp_dir().join(format!("viewcast-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("revenue.sql"),
        "SELECT c.region, count(*) AS orders, sum(o.amount) AS revenue FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.region",
    )
    .unwrap();
    std::fs::write(
        dir.join("probe.sql"),
        "SELECT id FROM orders WHERE id >= 100000000",
    )
    .unwrap();
    let config = Config {
        pg: conninfo.clone(),
        queries: dir.clone(),
        listen: "127.0.0.1:0".into(),
        workers: env("BENCH_WORKERS", 2) as usize,
        view_groups: common::view_groups(env("BENCH_WORKERS", 2) as usize),
        publication: "viewcast".into(),
        timeouts: Default::default(),
        auth: None,
        cluster: None,
        merge_after: viewcast::config::DEFAULT_MERGE_AFTER,
        linger: std::time::Duration::ZERO,
    };
    let running = viewcast::server::start(config)
        .await
        .expect("viewcast starts");
    let addr = running.addr.to_string();
    while !running.registry.is_streaming() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = Instant::now();
    let rows2 = write_backlog(&client, 10_000_000, small, bulk).await;
    let write2_secs = t.elapsed().as_secs_f64();
    let end2 = lsn(&client).await;
    let after_write = Instant::now();
    while running.registry.progress() < end2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let vc_secs = t.elapsed().as_secs_f64();
    let vc_lag = after_write.elapsed().as_secs_f64();

    // 3. Latency at a steady rate: commit acknowledged → diff received over SSE.
    let mut sse = SseClient::connect(&addr, "/views/probe/sse")
        .await
        .expect("subscribe");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(i64, Instant)>();
    let reader = tokio::spawn(async move {
        while let Ok(Some(ev)) = sse.next_event().await {
            if ev.event != "diff" {
                continue;
            }
            let now = Instant::now();
            let v: serde_json::Value = serde_json::from_str(&ev.data).expect("json");
            for ch in v["changes"].as_array().into_iter().flatten() {
                if let Some(id) = ch["row"][0].as_i64() {
                    let _ = tx.send((id, now));
                }
            }
        }
    });
    let mut committed: HashMap<i64, Instant> = HashMap::new();
    let total = rate * 10;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(interval);
    for i in 0..total as i64 {
        tick.tick().await;
        let id = 100_000_000 + i;
        client
            .execute("INSERT INTO orders VALUES ($1, 1, 1)", &[&id])
            .await
            .expect("insert");
        committed.insert(id, Instant::now());
    }
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while latencies.len() < total as usize && Instant::now() < deadline {
        if let Ok(Some((id, at))) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            if let Some(c) = committed.get(&id) {
                latencies.push(at.saturating_duration_since(*c));
            }
        }
    }
    reader.abort();
    latencies.sort();

    println!();
    println!("viewcast end-to-end benchmark ({} workers; {small} single-row transactions + 3 bulk transactions of {bulk} rows)", env("BENCH_WORKERS", 2));
    println!("{:<44} {:>12} {:>12}", "", "seconds", "rows/s");
    println!(
        "{:<44} {:>12.2} {:>12.0}",
        "write the backlog (reference writer)",
        write_secs,
        rows as f64 / write_secs
    );
    println!(
        "{:<44} {:>12.2} {:>12.0}",
        "pg_recvlogical drains it (pgoutput)",
        recv_secs,
        rows as f64 / recv_secs
    );
    println!(
        "{:<44} {:>12.2} {:>12.0}",
        "write it again while viewcast follows",
        write2_secs,
        rows2 as f64 / write2_secs
    );
    println!(
        "{:<44} {:>12.2} {:>12.0}",
        "viewcast: first write to views caught up",
        vc_secs,
        rows2 as f64 / vc_secs
    );
    println!(
        "{:<44} {:>12.2}",
        "viewcast: lag after the writer finished", vc_lag
    );
    println!(
        "ratio: viewcast end-to-end rows/s ÷ pg_recvlogical drain rows/s = {:.2}",
        (rows2 as f64 / vc_secs) / (rows as f64 / recv_secs)
    );
    println!(
        "latency at {rate} tx/s, commit ack → SSE diff received ({} of {total} seen): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    running.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}
