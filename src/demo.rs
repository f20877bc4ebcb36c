//! `viewcast demo`: a throwaway PostgreSQL with a small shop schema, a writer
//! committing a steady trickle of realistic transactions, and the server
//! following the views in `queries/`.

use std::path::PathBuf;
use std::time::Duration;

use tracing::{info, warn};

use crate::config::Config;
use crate::pg::embedded::EmbeddedPostgres;

/// The example schema and data (also used by docker-compose.yml).
pub const SCHEMA: &str = include_str!("../examples/shop_schema.sql");

/// A small deterministic generator, so demo runs are repeatable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
            | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Commits one realistic transaction: a new order with items, a status change,
/// or the removal of an old shipped order.
pub async fn write_one(
    client: &mut tokio_postgres::Client,
    rng: &mut Rng,
    next_order: &mut i64,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    match rng.below(10) {
        0..=3 => {
            let id = *next_order;
            *next_order += 1;
            let customer = 1 + rng.below(40) as i32;
            tx.execute(
                "INSERT INTO orders (id, customer_id, status) VALUES ($1, $2, 'new')",
                &[&id, &customer],
            )
            .await?;
            let first = rng.below(15) as i32;
            for k in 0..(1 + rng.below(3) as i32) {
                let product = 1 + (first + k) % 15;
                let qty = 1 + rng.below(4) as i32;
                tx.execute(
                    "INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, $3)",
                    &[&id, &product, &qty],
                )
                .await?;
            }
        }
        4..=7 => {
            tx.execute(
                "UPDATE orders SET status = CASE status WHEN 'new' THEN 'paid' WHEN 'paid' THEN 'shipped' ELSE status END
                 WHERE id = (SELECT id FROM orders WHERE status IN ('new', 'paid') ORDER BY id OFFSET $1 LIMIT 1)",
                &[&(rng.below(5) as i64)],
            )
            .await?;
        }
        8 => {
            tx.execute("UPDATE orders SET status = 'cancelled' WHERE id = (SELECT id FROM orders WHERE status = 'new' ORDER BY random() LIMIT 1)", &[])
                .await?;
        }
        _ => {
            tx.execute("DELETE FROM orders WHERE id = (SELECT min(id) FROM orders WHERE status = 'shipped')", &[]).await?;
        }
    }
    tx.commit().await
}

pub async fn run(queries: PathBuf, listen: String, workers: usize) -> anyhow::Result<()> {
    info!("starting a throwaway PostgreSQL");
    let pg = tokio::task::spawn_blocking(EmbeddedPostgres::start)
        .await?
        .map_err(anyhow::Error::msg)?;
    let conninfo = pg.conninfo("postgres");
    let (mut client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client.batch_execute(SCHEMA).await?;
    let config = Config {
        pg: conninfo,
        queries,
        listen,
        workers,
        publication: crate::config::DEFAULT_PUBLICATION.into(),
        timeouts: Default::default(),
        // No tokens yet; `demo` could take --jwt-secret / --jwt-public-key
        // as `serve` does (see main.rs) when a demo page learns to send one.
        auth: None,
    };
    let running = crate::server::start(config).await?;
    println!(
        "viewcast demo: open http://{}/ (Ctrl-C to stop)",
        running.addr
    );
    let mut rng = Rng::new(42);
    let mut next_order = 1000i64;
    let ctrl_c = crate::server::shutdown_signal();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = tokio::time::sleep(Duration::from_millis(300 + rng.below(700))) => {
                if let Err(e) = write_one(&mut client, &mut rng, &mut next_order).await {
                    warn!(error = %e, "demo writer transaction failed");
                }
            }
        }
    }
    info!("stopping");
    running.stop().await;
    drop(client);
    tokio::task::spawn_blocking(move || drop(pg)).await?;
    Ok(())
}
