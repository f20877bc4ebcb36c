//! Scale benchmark: `cargo bench --bench scale`.
//!
//! What a user sizing a server asks, measured side by side in one run against
//! a throwaway PostgreSQL, with `viewcast serve` (the release binary) as a
//! process of its own so its memory is its own. The tables: `orders`
//! (`SCALE_ORDERS`, default 1 000 000 rows), 10 000 customers, 1 000
//! products; three views over them: a 3-way join + GROUP BY, a filter, and a
//! per-customer count/max.
//!
//! 1. **Memory.** viewcast's resident memory once the views are ready, less
//!    what it holds serving the same views over empty tables, divided by
//!    `pg_total_relation_size` of the three tables (heap, indexes, TOAST).
//!    Also the time from start to every view ready.
//! 2. **Backlog ingest.** A slot for `pg_recvlogical` is created, viewcast is
//!    paused (SIGSTOP), and a backlog is written: `SCALE_SMALL` (20 000)
//!    single-row transactions, then three transactions of `SCALE_BULK`
//!    (200 000) rows. viewcast is resumed and timed until its views reflect
//!    the last commit; then `pg_recvlogical` (pgoutput, the same
//!    publication) drains the same backlog from its slot. Both rates are
//!    printed, and their ratio, and the CPU time viewcast used to drain it
//!    (from `/proc`: on this noisy a machine a steadier figure than time).
//! 3. **Latency.** Single-row transactions at `SCALE_RATE` per second (default
//!    5000) for 10 s from `SCALE_WRITERS` (4) connections, with SSE
//!    subscribers on the join view and the filter: commit acknowledged → the
//!    join view's diff for that commit received. The filter's diff carries
//!    each row's id, which gives its commit LSN. Also the p50/p99 of each
//!    second of the stream (a steady queue and a few stalls give the same
//!    p99 but different timelines), and viewcast's CPU time per transaction
//!    over the stream.
//!
//! `BENCH_WORKERS` (default 2) sets viewcast's worker threads; the server inherits
//! the environment, so `VIEWCAST_MERGE_AFTER` sets its `--merge-after`.
//! `VIEWCAST_BIN` runs another build of viewcast (a baseline) instead.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{
    arranged_records, caught_up, connect, env, lsn, percentile, recvlogical_drain, Server,
};
use viewcast::client::SseClient;
use viewcast::pg::Lsn;

const VIEWS: [(&str, &str); 3] = [
    (
        "region_category",
        "SELECT c.region, p.category, count(*) AS orders, sum(o.amount) AS revenue \
         FROM orders o JOIN customers c ON c.id = o.customer_id JOIN products p ON p.id = o.product_id \
         GROUP BY c.region, p.category",
    ),
    (
        "open_large",
        "SELECT id, customer_id, amount FROM orders WHERE status = 'open' AND amount > 900",
    ),
    (
        "per_customer",
        "SELECT customer_id, count(*) AS orders, max(amount) AS largest FROM orders GROUP BY customer_id",
    ),
];

const SCHEMA: &str = "
    CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, region text NOT NULL);
    CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, category text NOT NULL);
    CREATE TABLE orders (
        id bigint PRIMARY KEY,
        customer_id int NOT NULL,
        product_id int NOT NULL,
        amount numeric(10,2) NOT NULL,
        status text NOT NULL,
        created_at timestamptz NOT NULL
    );
    CREATE PUBLICATION viewcast FOR TABLE customers, products, orders;";

/// `INSERT ... SELECT` of orders `first..=last`, deterministic in the id.
fn orders_sql(first: i64, last: i64) -> String {
    format!(
        "INSERT INTO orders SELECT i, 1 + (i * 7919) % 10000, 1 + (i * 104729) % 1000, \
         ((i * 31) % 100000) / 100.0, \
         (ARRAY['open','paid','shipped','delivered'])[1 + i % 4], \
         timestamptz '2026-01-01' + i * interval '1 second' \
         FROM generate_series({first}::int8, {last}) i"
    )
}

/// What a subscriber to a view collected from its diffs, taken when done.
struct Followed<T> {
    got: std::sync::Arc<std::sync::Mutex<Vec<T>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl<T> Followed<T> {
    fn take(self) -> Vec<T> {
        self.reader.abort();
        std::mem::take(&mut *self.got.lock().unwrap())
    }
}

/// Subscribes to a view's SSE stream and hands each diff's JSON to `each`.
async fn follow<T: Send + 'static>(
    addr: &str,
    view: &str,
    each: impl Fn(&serde_json::Value, &mut Vec<T>) + Send + 'static,
) -> Followed<T> {
    let mut sse = SseClient::connect(addr, &format!("/views/{view}/sse"))
        .await
        .expect("subscribe");
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = got.clone();
    let reader = tokio::spawn(async move {
        while let Ok(Some(ev)) = sse.next_event().await {
            if ev.event == "diff" {
                let v: serde_json::Value = serde_json::from_str(&ev.data).expect("json");
                each(&v, &mut into.lock().unwrap());
            }
        }
    });
    Followed { got, reader }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n_orders = env("SCALE_ORDERS", 1_000_000) as i64;
    let small = env("SCALE_SMALL", 20_000) as i64;
    let bulk = env("SCALE_BULK", 200_000) as i64;
    let rate = env("SCALE_RATE", 5000);
    let writers = env("SCALE_WRITERS", 4).max(1);
    let (pg, conninfo) = common::start_postgres().await;
    let client = connect(&conninfo).await;
    // viewcast is paused while the backlog is written: the walsender must
    // wait for it rather than end the connection.
    for sql in [
        "ALTER SYSTEM SET wal_sender_timeout = 0",
        "SELECT pg_reload_conf()",
    ] {
        client.batch_execute(sql).await.expect("settings");
    }
    client.batch_execute(SCHEMA).await.expect("schema");
    let queries = std::env::temp_dir().join(format!("viewcast-scale-{}", std::process::id()));
    std::fs::create_dir_all(&queries).unwrap();
    for (name, sql) in VIEWS {
        std::fs::write(queries.join(format!("{name}.sql")), sql).unwrap();
    }

    // 1. Memory: the same views over empty tables, then over the data.
    let server = Server::start(&conninfo, &queries);
    server
        .ready(&VIEWS.iter().map(|(n, _)| *n).collect::<Vec<_>>())
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let empty_mib = server.rss_mib();
    server.stop();
    let t = Instant::now();
    client
        .batch_execute(&format!(
            "INSERT INTO customers SELECT i, 'customer ' || i, 'region ' || (i % 12) FROM generate_series(1, 10000) i;
             INSERT INTO products SELECT i, 'product ' || i, 'category ' || (i % 40) FROM generate_series(1, 1000) i;
             {};",
            orders_sql(1, n_orders)
        ))
        .await
        .expect("load");
    client
        .batch_execute("VACUUM ANALYZE customers, products, orders")
        .await
        .expect("vacuum");
    let load_secs = t.elapsed().as_secs_f64();
    let table_bytes: i64 = client
        .query_one(
            "SELECT (pg_total_relation_size('orders') + pg_total_relation_size('customers') \
             + pg_total_relation_size('products'))::int8",
            &[],
        )
        .await
        .expect("table size")
        .get(0);
    let table_mib = table_bytes as f64 / (1024.0 * 1024.0);
    let t = Instant::now();
    let server = Server::start(&conninfo, &queries);
    server
        .ready(&VIEWS.iter().map(|(n, _)| *n).collect::<Vec<_>>())
        .await;
    let ready_secs = t.elapsed().as_secs_f64();
    // Steady state: after the load's transient memory is given back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let loaded_mib = server.rss_mib();
    let arranged = arranged_records(&server.addr).await;

    // 2. Backlog ingest: written while viewcast is paused, then drained by
    //    viewcast and by pg_recvlogical.
    client
        .batch_execute("SELECT pg_create_logical_replication_slot('recv', 'pgoutput')")
        .await
        .expect("slot");
    server.signal("-STOP");
    let t = Instant::now();
    let insert = client
        .prepare(
            "INSERT INTO orders SELECT i, 1 + i % 10000, 1 + i % 1000, (i % 100000) / 100.0, 'open', now() \
             FROM (SELECT $1::int8 AS i) s",
        )
        .await
        .expect("prepare");
    let first = n_orders + 1;
    for id in first..first + small {
        client.execute(&insert, &[&id]).await.expect("insert");
    }
    for b in 0..3 {
        let start = first + small + b * bulk;
        client
            .batch_execute(&orders_sql(start, start + bulk - 1))
            .await
            .expect("bulk insert");
    }
    let backlog_rows = (small + 3 * bulk) as f64;
    let write_secs = t.elapsed().as_secs_f64();
    let end = lsn(&client).await;
    let t = Instant::now();
    let cpu_before = server.cpu_seconds();
    server.signal("-CONT");
    caught_up(&server.addr, end).await;
    let vc_secs = t.elapsed().as_secs_f64();
    let backlog_cpu = server.cpu_seconds() - cpu_before;
    let after_backlog_mib = server.rss_mib();
    // viewcast gives freed pages back once the ingest has gone through.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let settled_mib = server.rss_mib();
    let recv_secs = recvlogical_drain(&conninfo, "recv", end).as_secs_f64();
    client
        .batch_execute("SELECT pg_drop_replication_slot('recv')")
        .await
        .expect("drop slot");

    // 3. Latency of single-row transactions at a steady rate, from several
    //    connections. Each row also enters `open_large`, whose diff names its
    //    id: that gives the transaction's commit LSN, and the time is when
    //    `region_category`'s diff at that LSN arrives.
    let id_lsns = follow(
        &server.addr,
        "open_large",
        |v, out: &mut Vec<(i64, Lsn)>| {
            let Some(l) = v["lsn"].as_str().and_then(|s| s.parse::<Lsn>().ok()) else {
                return;
            };
            for c in v["changes"].as_array().into_iter().flatten() {
                if let Some(id) = c["row"][0]
                    .as_i64()
                    .or_else(|| c["row"][0].as_str()?.parse().ok())
                {
                    out.push((id, l));
                }
            }
        },
    )
    .await;
    let lsn_seen = follow(
        &server.addr,
        "region_category",
        |v, out: &mut Vec<(Lsn, Instant)>| {
            if let Some(l) = v["lsn"].as_str().and_then(|s| s.parse::<Lsn>().ok()) {
                out.push((l, Instant::now()));
            }
        },
    )
    .await;
    let total = rate * 10;
    let base = first + small + 3 * bulk;
    let t = Instant::now();
    let cpu_before = server.cpu_seconds();
    let mut tasks = Vec::new();
    for w in 0..writers as i64 {
        let conninfo = conninfo.clone();
        tasks.push(tokio::spawn(async move {
            let client = connect(&conninfo).await;
            let paced = client
                .prepare(
                    "INSERT INTO orders SELECT i, 1 + i % 10000, 1 + i % 1000, 950.00, 'open', now() \
                     FROM (SELECT $1::int8 AS i) s",
                )
                .await
                .expect("prepare");
            let period = Duration::from_secs_f64(writers as f64 / rate as f64);
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut commits = Vec::new();
            let mut id = base + w;
            while id < base + total as i64 {
                tick.tick().await;
                client.execute(&paced, &[&id]).await.expect("insert");
                commits.push((id, Instant::now()));
                id += writers as i64;
            }
            commits
        }));
    }
    let mut commits: Vec<(i64, Instant)> = Vec::with_capacity(total as usize);
    for task in tasks {
        commits.extend(task.await.expect("writer"));
    }
    let achieved = total as f64 / t.elapsed().as_secs_f64();
    caught_up(&server.addr, lsn(&client).await).await;
    let stream_cpu = server.cpu_seconds() - cpu_before;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id_lsns: HashMap<i64, Lsn> = id_lsns.take().into_iter().collect();
    let lsn_seen: HashMap<Lsn, Instant> = lsn_seen.take().into_iter().rev().collect();
    // Per second of the stream (by commit), its latencies: whether a p99
    // comes from a steady queue or from a few stalls.
    let mut by_second: Vec<Vec<Duration>> = Vec::new();
    for (id, committed) in &commits {
        let Some(seen) = id_lsns.get(id).and_then(|l| lsn_seen.get(l)) else {
            continue;
        };
        let second = committed.saturating_duration_since(t).as_secs() as usize;
        if by_second.len() <= second {
            by_second.resize(second + 1, Vec::new());
        }
        by_second[second].push(seen.saturating_duration_since(*committed));
    }
    let mut latencies: Vec<Duration> = by_second.iter().flatten().copied().collect();
    latencies.sort();
    let timeline: Vec<String> = by_second
        .iter_mut()
        .map(|l| {
            l.sort();
            format!(
                "{:.0}/{:.0}",
                percentile(l, 0.5).as_secs_f64() * 1e3,
                percentile(l, 0.99).as_secs_f64() * 1e3
            )
        })
        .collect();
    server.stop();

    println!();
    println!(
        "viewcast scale benchmark: {n_orders} orders, 10000 customers, 1000 products; {} workers",
        env("BENCH_WORKERS", 2)
    );
    println!("views: {}", VIEWS.map(|(n, _)| n).join(", "));
    println!("loaded in Postgres in {load_secs:.1} s");
    println!();
    println!("memory");
    println!("  pg_total_relation_size of the three tables   {table_mib:>9.1} MiB");
    println!("  viewcast RSS, same views over empty tables   {empty_mib:>9.1} MiB");
    println!("  viewcast RSS, views ready                    {loaded_mib:>9.1} MiB");
    println!(
        "  RSS growth / table size                      {:>9.2}×",
        (loaded_mib - empty_mib) / table_mib
    );
    println!("  time from start to every view ready          {ready_secs:>9.1} s");
    println!("  held in arrangements (GET /views, /metrics):  records   MiB");
    for (owner, records, bytes) in &arranged {
        println!(
            "    {owner:<42} {records:>10} {:>5.1}",
            *bytes as f64 / (1024.0 * 1024.0)
        );
    }
    let held: i64 = arranged.iter().map(|(_, _, b)| b).sum();
    println!(
        "  arrangements' bytes / RSS growth              {:>9.2}",
        held as f64 / (1024.0 * 1024.0) / (loaded_mib - empty_mib)
    );
    println!(
        "  viewcast RSS after the backlog ({} orders)  {after_backlog_mib:>9.1} MiB, 5 s later {settled_mib:.1} MiB",
        n_orders + small + 3 * bulk
    );
    println!();
    println!(
        "backlog ingest: {small} single-row transactions + 3 × {bulk} rows, written in {write_secs:.1} s"
    );
    println!(
        "  {:<40} {:>8.2} s {:>10.0} rows/s",
        "pg_recvlogical drains it (pgoutput)",
        recv_secs,
        backlog_rows / recv_secs
    );
    println!(
        "  {:<40} {:>8.2} s {:>10.0} rows/s",
        "viewcast drains it into its 3 views",
        vc_secs,
        backlog_rows / vc_secs
    );
    println!(
        "  ratio viewcast / pg_recvlogical              {:>9.2}",
        recv_secs / vc_secs
    );
    println!(
        "  viewcast CPU while draining                  {backlog_cpu:>9.2} s ({:.1} µs per row)",
        backlog_cpu * 1e6 / backlog_rows
    );
    println!();
    println!(
        "latency: {total} single-row transactions at {rate}/s from {writers} connections (achieved {achieved:.0}/s), commit → SSE diff of region_category"
    );
    println!(
        "  seen {} of {total}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies
            .last()
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(0.0)
    );
    println!(
        "  p50/p99 ms per second of the stream: {}",
        timeline.join(" ")
    );
    println!(
        "  viewcast CPU over the stream                 {stream_cpu:>9.2} s ({:.0} µs per transaction)",
        stream_cpu * 1e6 / total as f64
    );
    let _ = std::fs::remove_dir_all(&queries);
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}
