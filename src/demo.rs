//! `viewcast demo`: a throwaway PostgreSQL with a small shop schema, a writer
//! committing a steady trickle of realistic transactions, and the server
//! following the views in `queries/`.
//!
//! The demo also shows tenant scoping. It verifies tokens (HS256 with a
//! secret made at startup) and issues them itself, for a few demo users,
//! each belonging to one customer region ([`USERS`]): `GET /demo/users`
//! lists them and `GET /demo/token?user=ann` signs a token whose `region`
//! claim a view can filter by (`queries/region_orders.sql`:
//! `WHERE c.region = auth.jwt() ->> 'region'`). These routes exist only in
//! the demo ([`routes`], handed to `server::start_with_routes`): a real
//! deployment's tokens come from its own login, never from viewcast.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
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

/// The demo's users: a name and the customer region (`customers.region` in
/// examples/shop_schema.sql) whose rows they may see.
pub const USERS: [(&str, &str); 4] = [
    ("ann", "north"),
    ("bob", "south"),
    ("cho", "east"),
    ("dev", "west"),
];

/// How long a demo token lives: short enough that the page's client is
/// seen refreshing it (through `getToken`) in a demo session.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// A fresh HS256 secret: 32 bytes from the OS's randomness, as hex. It
/// lives only as long as the demo, so tokens die with it.
pub fn random_secret() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::io::Read;
    let mut bytes = [0u8; 32];
    let from_os = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if from_os.is_err() {
        // Without /dev/urandom: std's hasher keys, which the OS seeds.
        for chunk in bytes.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos(),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A token for demo user `user`, signed with `secret`; `None` for someone
/// who is not a demo user.
pub fn token_for(secret: &str, user: &str) -> Option<String> {
    let (name, region) = USERS.iter().find(|(name, _)| *name == user)?;
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(TOKEN_LIFETIME)
        .as_secs();
    let claims = json!({ "sub": name, "region": region, "exp": exp });
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).ok()?;
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::encode(&header, &claims, &key).ok()
}

/// The demo's own routes: `GET /demo/users` and `GET /demo/token?user=NAME`.
pub fn routes(secret: String) -> Router {
    let users = get(|| async {
        let list: Vec<_> = USERS
            .iter()
            .map(|(name, region)| json!({ "name": name, "region": region }))
            .collect();
        Json(list)
    });
    let token = get(
        move |Query(q): Query<std::collections::BTreeMap<String, String>>| async move {
            let user = q.get("user").map(String::as_str).unwrap_or_default();
            match token_for(&secret, user) {
                Some(token) => Json(json!({ "token": token })).into_response(),
                None => {
                    let names: Vec<&str> = USERS.iter().map(|(n, _)| *n).collect();
                    let error = format!("no demo user {user:?}; the demo users are {names:?}");
                    let body = Json(json!({ "error": error }));
                    (StatusCode::NOT_FOUND, body).into_response()
                }
            }
        },
    );
    Router::new()
        .route("/demo/users", users)
        .route("/demo/token", token)
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
    let secret = random_secret();
    let config = Config {
        pg: conninfo,
        queries,
        listen,
        workers,
        view_groups: crate::config::default_view_groups(workers),
        publication: crate::config::DEFAULT_PUBLICATION.into(),
        timeouts: Default::default(),
        // Tokens the demo issues itself (see the module docs).
        auth: Some(crate::auth::AuthConfig::Secret(secret.clone())),
        cluster: None,
        merge_after: crate::config::DEFAULT_MERGE_AFTER,
        linger: std::time::Duration::ZERO,
    };
    let running =
        crate::server::start_with_routes(config, Default::default(), routes(secret)).await?;
    println!(
        "viewcast demo: open http://{}/ and pick a user (Ctrl-C to stop)",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_tokens_verify_and_carry_the_users_region() {
        let secret = random_secret();
        assert_eq!(secret.len(), 64);
        assert_ne!(secret, random_secret());
        let auth = crate::auth::Auth::hs256(secret.as_bytes()).expect("key");
        for (name, region) in USERS {
            let claims = auth
                .verify(&token_for(&secret, name).expect("a token"))
                .expect("verifies");
            assert_eq!(claims.sub(), Some(name));
            assert_eq!(claims.get("region"), Some(&json!(region)));
        }
        assert!(token_for(&secret, "mallory").is_none());
        let other = crate::auth::Auth::hs256(random_secret().as_bytes()).expect("key");
        assert!(other.verify(&token_for(&secret, "ann").unwrap()).is_err());
    }
}
