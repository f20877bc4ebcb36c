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
//!    printed, and their ratio.
//! 3. **Latency.** Single-row transactions at `SCALE_RATE` per second (default
//!    1000) for 10 s from one connection, with an SSE subscriber on the join
//!    view: commit acknowledged → the diff received.
//!
//! `BENCH_WORKERS` (default 2) sets viewcast's worker threads.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{caught_up, connect, env, lsn, percentile, recvlogical_drain, rss};
use viewcast::client::SseClient;
use viewcast::pg::embedded::EmbeddedPostgres;
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

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(conninfo: &str, queries: &std::path::Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_viewcast"))
            .args(["serve", "--pg", conninfo, "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--queries")
            .arg(queries)
            .args(["--workers", &env("BENCH_WORKERS", 2).to_string()])
            // Paused for the backlog: it must not give the stream up as
            // silent when it resumes.
            .args(["--replication-timeout", "3600"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("start viewcast serve");
        Server {
            child,
            addr: format!("127.0.0.1:{port}"),
        }
    }

    /// Waits until every view answers with its contents.
    async fn ready(&self) {
        for (name, _) in VIEWS {
            loop {
                match viewcast::client::get(&self.addr, &format!("/views/{name}")).await {
                    Ok((200, _)) => break,
                    Ok((503, _)) | Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    Ok((status, body)) => panic!("view {name}: {status} {body}"),
                }
            }
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill {sig} viewcast");
    }

    fn rss_mib(&self) -> f64 {
        rss(self.child.id()) as f64 / (1024.0 * 1024.0)
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n_orders = env("SCALE_ORDERS", 1_000_000) as i64;
    let small = env("SCALE_SMALL", 20_000) as i64;
    let bulk = env("SCALE_BULK", 200_000) as i64;
    let rate = env("SCALE_RATE", 1000);
    let pg = tokio::task::spawn_blocking(EmbeddedPostgres::start)
        .await
        .unwrap()
        .expect("start PostgreSQL");
    let conninfo = pg.conninfo("postgres");
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
    server.ready().await;
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
    server.ready().await;
    let ready_secs = t.elapsed().as_secs_f64();
    // Steady state: after the load's transient memory is given back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let loaded_mib = server.rss_mib();

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
    server.signal("-CONT");
    caught_up(&server.addr, end).await;
    let vc_secs = t.elapsed().as_secs_f64();
    let after_backlog_mib = server.rss_mib();
    let recv_secs = recvlogical_drain(&conninfo, "recv", end).as_secs_f64();
    client
        .batch_execute("SELECT pg_drop_replication_slot('recv')")
        .await
        .expect("drop slot");

    // 3. Latency of single-row transactions at a steady rate.
    let mut sse = SseClient::connect(&server.addr, "/views/region_category/sse")
        .await
        .expect("subscribe");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Lsn, Instant)>();
    let reader = tokio::spawn(async move {
        while let Ok(Some(ev)) = sse.next_event().await {
            if ev.event != "diff" {
                continue;
            }
            let now = Instant::now();
            let v: serde_json::Value = serde_json::from_str(&ev.data).expect("json");
            if let Some(l) = v["lsn"].as_str().and_then(|s| s.parse::<Lsn>().ok()) {
                let _ = tx.send((l, now));
            }
        }
    });
    // The insert's own WAL position is before its commit and after the
    // previous commit: the first diff past it carries this transaction.
    let paced = client
        .prepare(
            "INSERT INTO orders SELECT i, 1 + i % 10000, 1 + i % 1000, 5.00, 'paid', now() \
             FROM (SELECT $1::int8 AS i) s RETURNING pg_current_wal_insert_lsn()::text",
        )
        .await
        .expect("prepare");
    let total = rate * 10;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut commits: Vec<(Lsn, Instant)> = Vec::with_capacity(total as usize);
    let base = first + small + 3 * bulk;
    let t = Instant::now();
    for i in 0..total as i64 {
        tick.tick().await;
        let row = client
            .query_one(&paced, &[&(base + i)])
            .await
            .expect("insert");
        let at: Lsn = row.get::<_, String>(0).parse().expect("lsn");
        commits.push((at, Instant::now()));
    }
    let achieved = total as f64 / t.elapsed().as_secs_f64();
    let mut latencies = Vec::with_capacity(commits.len());
    let mut pending = commits.iter().peekable();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pending.peek().is_some() && Instant::now() < deadline {
        let Ok(Some((l, seen))) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await
        else {
            break;
        };
        while let Some((at, committed)) = pending.peek() {
            if *at >= l {
                break;
            }
            latencies.push(seen.saturating_duration_since(*committed));
            pending.next();
        }
    }
    reader.abort();
    latencies.sort();
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
    println!(
        "  viewcast RSS after the backlog ({} orders)  {after_backlog_mib:>9.1} MiB",
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
    println!();
    println!(
        "latency: {total} single-row transactions at {rate}/s (achieved {achieved:.0}/s), commit → SSE diff of region_category"
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
    let _ = std::fs::remove_dir_all(&queries);
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}
