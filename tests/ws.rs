//! The websocket (`GET /ws`) with tokens: several clients, each with a token
//! for a tenant and several parameterized subscriptions on one connection,
//! under a seeded random writer. After every transaction each subscription
//! equals Postgres running the view with the token's claims and the
//! subscription's values written in, all of a connection's subscriptions
//! move in the same batches, and no client ever receives another tenant's
//! row. Then everything a client or a token can do wrong.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use viewcast::auth::AuthConfig;
use viewcast::config::{HttpLimits, WsLimits};

use crate::support::ws::WsClient;
use crate::support::{assert_same, TestDb, TestServer};

const SECRET: &str = "a test secret of thirty-two bytes or more, for HS256";

/// Tasks of the caller's tenant in one project.
const TASKS: &str = "SELECT t.id, t.tenant, t.project_id, t.title, t.points FROM tasks t
     WHERE t.tenant = auth.jwt() ->> 'tenant' AND t.project_id = $project_id";
/// The caller's projects (by membership), with a correlated count.
const PROJECTS: &str = "SELECT p.id, p.tenant, p.name,
            (SELECT count(*) FROM tasks t WHERE t.project_id = p.id AND t.tenant = p.tenant) AS tasks
     FROM projects p
     WHERE p.tenant = auth.jwt() ->> 'tenant'
       AND p.id IN (SELECT m.project_id FROM memberships m WHERE m.user_id = auth.uid())";
/// Per-tenant totals over a threshold, with HAVING.
const TOTALS: &str = "SELECT t.tenant, t.done, count(*) AS n, sum(t.points) AS points
     FROM tasks t
     WHERE t.tenant = auth.jwt() ->> 'tenant' AND t.points >= $min_points
     GROUP BY t.tenant, t.done HAVING count(*) > 1";

const VIEWS: [(&str, &str); 3] = [
    ("my_tasks", TASKS),
    ("my_projects", PROJECTS),
    ("my_totals", TOTALS),
];

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .expect("sign")
}

fn token(sub: &str, tenant: &str) -> String {
    sign(&json!({"sub": sub, "tenant": tenant, "exp": now() + 3600}))
}

/// The view's SQL as Postgres runs it for `sub` of `tenant` with `params`.
fn substituted(sql: &str, sub: &str, tenant: &str, params: &Value) -> String {
    let mut out = sql
        .replace("auth.jwt() ->> 'tenant'", &format!("'{tenant}'"))
        .replace("auth.uid()", &format!("'{sub}'"));
    for (name, v) in params.as_object().unwrap() {
        // A string is the value's text form: an untyped literal to Postgres.
        let literal = match v {
            Value::String(text) => format!("'{text}'"),
            other => other.to_string(),
        };
        out = out.replace(&format!("${name}"), &literal);
    }
    out
}

fn view_sql(view: &str) -> &'static str {
    VIEWS.iter().find(|(n, _)| *n == view).unwrap().1
}

async fn schema(db: &TestDb) {
    db.exec(
        "CREATE TABLE projects (id int PRIMARY KEY, tenant text NOT NULL, name text);
         CREATE TABLE tasks (id int PRIMARY KEY, tenant text NOT NULL, project_id int, title text,
                             points int, done bool);
         CREATE TABLE memberships (user_id text, project_id int, PRIMARY KEY (user_id, project_id));
         INSERT INTO projects SELECT i, 't' || (i % 3), 'project ' || i FROM generate_series(1, 9) i;
         INSERT INTO tasks SELECT i, 't' || (i % 3), 1 + i % 9, 'task ' || i, i % 7, i % 2 = 0
           FROM generate_series(1, 90) i;
         INSERT INTO memberships VALUES ('ann', 3), ('ann', 6), ('bob', 1), ('bob', 4), ('bob', 7),
           ('cid', 2), ('cid', 5), ('dan', 3);",
    )
    .await;
}

/// A deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One random transaction over the three tables.
fn random_transaction(rng: &mut Rng, step: u64) -> String {
    let mut sql = String::from("BEGIN;");
    for _ in 0..1 + rng.below(3) {
        let id = 1 + rng.below(120);
        let tenant = format!("t{}", rng.below(3));
        let project = 1 + rng.below(9);
        let points = rng.below(8);
        sql.push_str(&match rng.below(6) {
            0 | 1 => format!(
                "INSERT INTO tasks VALUES ({id}, '{tenant}', {project}, 'new {step}', {points}, false)
                 ON CONFLICT (id) DO UPDATE SET points = EXCLUDED.points, title = EXCLUDED.title;"
            ),
            2 => format!("UPDATE tasks SET done = NOT done, points = {points} WHERE id = {id};"),
            3 => format!("UPDATE tasks SET tenant = '{tenant}', project_id = {project} WHERE id = {id};"),
            4 => format!("DELETE FROM tasks WHERE id = {id};"),
            _ => {
                let user = ["ann", "bob", "cid", "dan"][rng.below(4) as usize];
                if rng.below(2) == 0 {
                    format!("INSERT INTO memberships VALUES ('{user}', {project}) ON CONFLICT DO NOTHING;")
                } else {
                    format!("DELETE FROM memberships WHERE user_id = '{user}' AND project_id = {project};")
                }
            }
        });
    }
    sql.push_str("COMMIT;");
    sql
}

/// A client: who it is and what it subscribed to.
struct Tenant {
    sub: &'static str,
    tenant: &'static str,
    client: WsClient,
    /// (id, view, params)
    subs: Vec<(String, &'static str, Value)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_connection_sees_its_tenant_at_one_lsn() {
    let db = TestDb::new("ws_tenants").await;
    schema(&db).await;
    let server = TestServer::start_with_auth(&db, &VIEWS, AuthConfig::Secret(SECRET.into())).await;

    // GET /views says which parameters come from the token.
    let (status, list) = server
        .get(&format!("/views?access_token={}", token("ann", "t0")))
        .await;
    assert_eq!(status, 200, "{list}");
    let tasks = list
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "my_tasks")
        .unwrap();
    let params = tasks["params"].as_array().unwrap();
    assert!(params
        .iter()
        .any(|p| p["from"] == "token" && p["type"] == "text"));
    assert!(params
        .iter()
        .any(|p| p["name"] == "project_id" && p["from"] == "request" && p["type"] == "int4"));

    /// (sub, tenant, subscriptions as (view, params))
    type Client<'a> = (&'a str, &'a str, Vec<(&'a str, Value)>);
    let who: [Client; 4] = [
        (
            "ann",
            "t0",
            vec![
                ("my_tasks", json!({"project_id": 3})),
                ("my_tasks", json!({"project_id": "6"})),
                ("my_projects", json!({})),
                ("my_totals", json!({"min_points": 2})),
            ],
        ),
        (
            "bob",
            "t1",
            vec![
                ("my_tasks", json!({"project_id": 1})),
                ("my_tasks", json!({"project_id": 4})),
                ("my_projects", json!({})),
                ("my_totals", json!({"min_points": "0"})),
            ],
        ),
        (
            "cid",
            "t2",
            vec![
                ("my_tasks", json!({"project_id": 2})),
                ("my_projects", json!(null)),
                ("my_totals", json!({"min_points": 5})),
            ],
        ),
        // The same tenant and parameters as ann, another user: shares
        // tuples where the sub does not matter.
        (
            "dan",
            "t0",
            vec![
                ("my_tasks", json!({"project_id": 3})),
                ("my_projects", json!({})),
            ],
        ),
    ];
    let mut clients = Vec::new();
    for (sub, tenant, subs) in who {
        let (mut client, _) = WsClient::hello(&server.addr, Some(&token(sub, tenant))).await;
        let mut mine = Vec::new();
        for (i, (view, params)) in subs.into_iter().enumerate() {
            let id = format!("{view}-{i}");
            client.subscribe(&id, view, params.clone()).await;
            mine.push((id, view, params));
        }
        clients.push(Tenant {
            sub,
            tenant,
            client,
            subs: mine,
        });
    }

    let mut rng = Rng(0x5eed_cafe);
    for step in 0..30 {
        if step > 0 {
            db.exec(&random_transaction(&mut rng, step)).await;
        }
        let lsn = db.lsn().await;
        for t in clients.iter_mut() {
            t.client.wait_for(lsn).await;
            assert!(
                t.client.errors.is_empty(),
                "{}: {:?}",
                t.sub,
                t.client.errors
            );
            for (id, view, params) in &t.subs {
                let params = if params.is_null() {
                    json!({})
                } else {
                    params.clone()
                };
                let want = db
                    .oracle(&substituted(view_sql(view), t.sub, t.tenant, &params))
                    .await;
                let held = &t.client.held[id];
                assert_same(
                    &format!("{} {id} at step {step}", t.sub),
                    lsn,
                    &held.rows,
                    &want,
                );
            }
        }
    }

    for t in &clients {
        // No row of another tenant, ever, in any batch.
        for (id, _, _) in &t.subs {
            for row in t.client.rows_received(id) {
                assert_eq!(
                    row["tenant"],
                    json!(t.tenant),
                    "{} received another tenant's row in {id}: {row:?}",
                    t.sub
                );
            }
        }
        // Every batch carries the whole connection to its LSN: a
        // subscription that changed at L appears in L's batch, and the
        // client's LSN only grows (checked as batches were applied).
        assert!(!t.client.batches.is_empty());
    }
    server.stop().await;
}

/// A token signed with a key other than the server's.
fn forged(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(b"not the server's secret, though just as long").unwrap(),
    )
    .unwrap()
}

/// An unsigned token (`alg: none`).
fn unsigned(claims: &Value) -> String {
    use base64::Engine as _;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    )
}

/// RS256, signed with a private key the server was never told about.
fn other_algorithm(claims: &Value) -> String {
    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/keys/rsa.key.pem"
    ))
    .expect("test key");
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_and_bad_clients_are_refused() {
    let db = TestDb::new("ws_adversarial").await;
    schema(&db).await;
    let http = HttpLimits {
        max_tuples_per_view: 4,
        ws: WsLimits {
            max_subscriptions: 5,
            max_frame_bytes: 4096,
            ..WsLimits::default()
        },
        ..HttpLimits::default()
    };
    let server =
        TestServer::start_limited(&db, &VIEWS, Some(AuthConfig::Secret(SECRET.into())), http).await;
    let addr = server.addr.clone();
    let claims = json!({"sub": "ann", "tenant": "t0", "exp": now() + 3600});
    let expired = sign(&json!({"sub": "ann", "tenant": "t0", "exp": now() - 60}));
    let bad_tokens = [
        ("forged", forged(&claims)),
        ("alg none", unsigned(&claims)),
        ("another algorithm", other_algorithm(&claims)),
        ("expired", expired.clone()),
        ("garbage", "not.a.token".to_string()),
        ("no exp", sign(&json!({"sub": "ann", "tenant": "t0"}))),
    ];

    // HTTP: health and metrics stay open, views need a valid token.
    assert_eq!(server.get("/healthz").await.0, 200);
    let (status, metrics) = server.get("/metrics").await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains("viewcast_limit_ws_subscriptions 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("viewcast_limit_tuples_per_view 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("viewcast_limit_ws_frame_bytes 4096"),
        "{metrics}"
    );
    for path in [
        "/views",
        "/views/my_tasks?project_id=3",
        "/views/my_tasks/sse?project_id=3",
    ] {
        assert_eq!(server.get(path).await.0, 401, "{path} without a token");
        for (what, t) in &bad_tokens {
            let sep = if path.contains('?') { '&' } else { '?' };
            let (status, body) = server.get(&format!("{path}{sep}access_token={t}")).await;
            assert_eq!(status, 401, "{path} with a {what} token: {body}");
        }
    }
    let good = sign(&claims);
    let (status, body) = server
        .get(&format!("/views/my_tasks?project_id=3&access_token={good}"))
        .await;
    assert_eq!(status, 200, "{body}");
    for row in body["rows"].as_array().unwrap() {
        assert_eq!(row[1], "t0", "only the token's tenant: {row}");
    }
    // A claim-bound parameter cannot be given by the client.
    for query in ["tenant=t1", "sub=bob"] {
        let (status, body) = server
            .get(&format!(
                "/views/my_tasks?project_id=3&{query}&access_token={good}"
            ))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
    }
    let (status, body) = server
        .get(&format!(
            "/views/my_tasks?project_id=abc&access_token={good}"
        ))
        .await;
    assert_eq!(status, 400, "{body}");

    // The websocket: every bad token ends the connection with 4401.
    for (what, t) in &bad_tokens {
        let mut c = WsClient::connect(&addr).await;
        c.send(json!({"type": "hello", "token": t})).await;
        let closed = c.closed().await;
        assert_eq!(closed.code, 4401, "hello with a {what} token: {closed:?}");
    }
    let mut c = WsClient::connect(&addr).await;
    c.send(json!({"type": "hello"})).await;
    assert_eq!(c.closed().await.code, 4401, "hello without a token");
    // The token may come in the upgrade's query instead (as for SSE).
    let mut c = WsClient::connect_at(&addr, &format!("/ws?access_token={}", sign(&claims))).await;
    c.send(json!({"type": "hello"})).await;
    assert_eq!(c.next().await.unwrap()["type"], "welcome");
    let mut c = WsClient::connect_at(&addr, &format!("/ws?access_token={}", forged(&claims))).await;
    c.send(json!({"type": "hello"})).await;
    assert_eq!(c.closed().await.code, 4401, "a forged token in the query");

    // Bad frames.
    for (what, frame) in [
        ("not JSON", "{nope".to_string()),
        ("no type", json!({"id": "x"}).to_string()),
        ("unknown type", json!({"type": "shout"}).to_string()),
        (
            "subscribe before hello",
            json!({"type": "subscribe", "id": "a", "view": "my_tasks", "params": {"project_id": 1}})
                .to_string(),
        ),
    ] {
        let mut c = WsClient::connect(&addr).await;
        c.send_text(frame).await;
        let closed = c.closed().await;
        assert_eq!(closed.code, 4400, "{what}: {closed:?}");
        assert!(!closed.reason.is_empty(), "{what}: a reason is given");
    }
    let mut c = WsClient::connect(&addr).await;
    c.send_binary(vec![1, 2, 3]).await;
    assert_eq!(c.closed().await.code, 4400, "binary frame");
    let mut c = WsClient::connect(&addr).await;
    c.send_text("x".repeat(10_000)).await;
    let closed = c.closed().await;
    assert_ne!(
        closed.code, 1000,
        "an oversized frame ends the connection: {closed:?}"
    );

    // Errors for one subscription leave the others alone.
    let (mut c, _) = WsClient::hello(&addr, Some(&good)).await;
    c.subscribe("ok", "my_tasks", json!({"project_id": 3}))
        .await;
    let bad_subs = [
        (
            "claim",
            "my_tasks",
            json!({"project_id": 3, "tenant": "t1"}),
        ),
        ("sub", "my_tasks", json!({"project_id": 3, "sub": "bob"})),
        ("type", "my_tasks", json!({"project_id": "three"})),
        ("float", "my_tasks", json!({"project_id": 3.5})),
        ("missing", "my_tasks", json!({})),
        (
            "unknown",
            "my_tasks",
            json!({"project_id": 3, "color": "red"}),
        ),
        ("noview", "nosuchview", json!({})),
        ("shape", "my_tasks", json!([3])),
    ];
    for (id, view, params) in &bad_subs {
        c.subscribe(id, view, params.clone()).await;
        let (got, message) = c.error().await;
        assert_eq!(got.as_deref(), Some(*id), "{message}");
        assert!(!message.is_empty());
    }
    let lsn = db.lsn().await;
    c.wait_for(lsn).await;
    db.exec("INSERT INTO tasks VALUES (500, 't0', 3, 'still live', 1, false), (501, 't1', 3, 'other tenant', 1, false)")
        .await;
    let lsn = db.lsn().await;
    c.wait_for(lsn).await;
    let want = db
        .oracle(&substituted(TASKS, "ann", "t0", &json!({"project_id": 3})))
        .await;
    assert_same("ok after the bad ones", lsn, &c.held["ok"].rows, &want);
    assert!(c.held["ok"].rows.keys().any(|k| k.contains("still live")));

    // Ping, unsubscribe, an unknown unsubscribe.
    c.send(json!({"type": "ping"})).await;
    loop {
        if c.next().await.unwrap()["type"] == "pong" {
            break;
        }
    }
    c.unsubscribe("ok").await;
    c.send(json!({"type": "unsubscribe", "id": "never"})).await;
    let (id, _) = c.error().await;
    assert_eq!(id.as_deref(), Some("never"));

    // Parameter tuples per view are limited (4, with "ok"'s lingering).
    for p in 10..13 {
        c.subscribe(&format!("p{p}"), "my_tasks", json!({"project_id": p}))
            .await;
    }
    c.subscribe("p13", "my_tasks", json!({"project_id": 13}))
        .await;
    let (id, message) = c.error().await;
    assert_eq!(id.as_deref(), Some("p13"), "{message}");
    assert!(message.contains("limit"), "{message}");

    // A duplicate id ends the connection with 4409.
    c.subscribe("p10", "my_tasks", json!({"project_id": 10}))
        .await;
    assert_eq!(c.closed().await.code, 4409);

    // A subscribe flood: past 5 subscriptions, 4429.
    let (mut c, _) = WsClient::hello(&addr, Some(&good)).await;
    for i in 0..6 {
        c.subscribe(&format!("f{i}"), "my_projects", json!({}))
            .await;
    }
    assert_eq!(c.closed().await.code, 4429);

    // A refreshed token must be for the same sub.
    let (mut c, _) = WsClient::hello(&addr, Some(&good)).await;
    c.send(json!({"type": "auth", "token": token("bob", "t0")}))
        .await;
    assert_eq!(c.closed().await.code, 4403);
    let (mut c, _) = WsClient::hello(&addr, Some(&good)).await;
    c.send(json!({"type": "auth", "token": forged(&claims)}))
        .await;
    assert_eq!(c.closed().await.code, 4401, "a bad refresh");

    // An SSE stream ends when its token does, with an error event.
    let short_sse = sign(&json!({"sub": "ann", "tenant": "t0", "exp": now() + 2}));
    let mut f = crate::support::Follower::at(
        &addr,
        &format!("/views/my_tasks/sse?project_id=3&access_token={short_sse}"),
    )
    .await;
    f.wait_until("the expiry error", |f| f.error.is_some())
        .await;
    assert!(f.error.as_deref().unwrap().contains("expired"));
    assert!(f.next().await.is_none(), "the stream ends");

    // A token that runs out closes the connection with 4401, unless refreshed.
    let short = |secs: u64| sign(&json!({"sub": "ann", "tenant": "t0", "exp": now() + secs}));
    let (mut expiring, _) = WsClient::hello(&addr, Some(&short(2))).await;
    let (mut refreshed, _) = WsClient::hello(&addr, Some(&short(2))).await;
    refreshed.subscribe("a", "my_projects", json!({})).await;
    refreshed
        .send(json!({"type": "auth", "token": short(3600)}))
        .await;
    let started = std::time::Instant::now();
    let closed = expiring.closed().await;
    assert_eq!(closed.code, 4401, "{closed:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(1)).await;
    db.exec("INSERT INTO memberships VALUES ('ann', 9)").await;
    let lsn = db.lsn().await;
    refreshed.wait_for(lsn).await;
    assert!(refreshed.errors.is_empty(), "{:?}", refreshed.errors);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_the_websocket_serves_plain_and_parameterized_views() {
    let db = TestDb::new("ws_plain").await;
    db.exec(
        "CREATE TABLE items (id int PRIMARY KEY, list int, label text);
         INSERT INTO items SELECT i, i % 4, 'item ' || i FROM generate_series(1, 40) i;",
    )
    .await;
    let server = TestServer::start(
        &db,
        &[
            ("all_items", "SELECT id, label FROM items"),
            (
                "list_items",
                "SELECT id, label FROM items WHERE list = $list",
            ),
            (
                "list_count",
                "SELECT count(*) AS n FROM items WHERE list = $list",
            ),
        ],
    )
    .await;
    let (mut c, welcome) = WsClient::hello(&server.addr, None).await;
    assert!(welcome.0 > 0);
    c.subscribe("all", "all_items", json!(null)).await;
    c.subscribe("l1", "list_items", json!({"list": 1})).await;
    c.subscribe("l1n", "list_count", json!({"list": "1"})).await;
    c.subscribe("none", "list_items", json!({"list": null}))
        .await;
    let lsn = db.lsn().await;
    c.wait_for(lsn).await;
    let check = |c: &WsClient, lsn| {
        let db = &db;
        let held: BTreeMap<String, BTreeMap<String, i64>> = c
            .held
            .iter()
            .map(|(k, v)| (k.clone(), v.rows.clone()))
            .collect();
        async move {
            for (id, sql) in [
                ("all", "SELECT id, label FROM items"),
                ("l1", "SELECT id, label FROM items WHERE list = 1"),
                ("l1n", "SELECT count(*) AS n FROM items WHERE list = 1"),
                ("none", "SELECT id, label FROM items WHERE list = NULL"),
            ] {
                assert_same(id, lsn, &held[id], &db.oracle(sql).await);
            }
        }
    };
    check(&c, lsn).await;

    // One transaction touching three subscriptions arrives as one batch.
    let before = c.batches.len();
    db.exec(
        "BEGIN; INSERT INTO items VALUES (100, 1, 'new'); UPDATE items SET label = 'moved' WHERE id = 5; COMMIT;",
    )
    .await;
    let lsn = db.lsn().await;
    c.wait_for(lsn).await;
    check(&c, lsn).await;
    let batches = &c.batches[before..];
    assert_eq!(batches.len(), 1, "one transaction, one batch: {batches:?}");
    let subs = batches[0]["subs"].as_object().unwrap();
    for id in ["all", "l1", "l1n"] {
        assert!(
            subs.contains_key(id),
            "{id} moves with the others: {subs:?}"
        );
    }
    assert!(!subs.contains_key("none"));

    // A new subscription's snapshot comes in a batch at the connection's LSN,
    // never behind it. Read only up to that batch: later progress messages
    // (other databases on the cluster write WAL too) move the connection on.
    let at = c.lsn;
    c.subscribe("l2", "list_items", json!({"list": 2})).await;
    while !c.held.contains_key("l2") {
        c.next().await.expect("the snapshot of l2");
    }
    assert_eq!(
        c.held["l2"].lsn, c.lsn,
        "the snapshot's batch is the last read"
    );
    assert!(c.lsn >= at, "the snapshot at {} is behind {at}", c.lsn);
    let lsn = db.lsn().await;
    c.wait_for(lsn).await;
    assert_same(
        "l2",
        lsn,
        &c.held["l2"].rows,
        &db.oracle("SELECT id, label FROM items WHERE list = 2")
            .await,
    );

    // Idle: progress keeps coming.
    let at = c.lsn;
    let mut progress = 0;
    let started = std::time::Instant::now();
    while progress == 0 && started.elapsed() < Duration::from_secs(10) {
        if c.next().await.unwrap()["type"] == "progress" {
            progress += 1;
        }
    }
    assert!(progress > 0 && c.lsn >= at);

    // Resume: a new connection continues from the LSN it had.
    let from = c.lsn;
    let kept = c.held["l1"].clone();
    drop(c);
    db.exec("INSERT INTO items VALUES (101, 1, 'while away')")
        .await;
    let mut r = WsClient::connect(&server.addr).await;
    r.held.insert("l1".into(), kept);
    r.subscribed.push("l1".into());
    r.send(json!({"type": "hello", "resume": {"lsn": from.to_string(),
        "subs": [{"id": "l1", "view": "list_items", "params": {"list": 1}}]}}))
        .await;
    let welcome = r.next().await.unwrap();
    assert_eq!(welcome["type"], "welcome");
    let first = loop {
        let m = r.next().await.unwrap();
        if m["type"] == "batch" {
            break m;
        }
    };
    let entry = &first["subs"]["l1"];
    assert!(
        entry.get("changes").is_some(),
        "resumed with changes: {first}"
    );
    assert!(
        entry.to_string().contains("while away"),
        "the missed change comes: {first}"
    );
    let lsn = db.lsn().await;
    r.wait_for(lsn).await;
    assert_same(
        "l1 resumed",
        lsn,
        &r.held["l1"].rows,
        &db.oracle("SELECT id, label FROM items WHERE list = 1")
            .await,
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_gets_the_net_change_or_is_closed_past_its_limit() {
    let db = TestDb::new("ws_slow").await;
    db.exec(
        "CREATE TABLE big (id int PRIMARY KEY, pad text);
         INSERT INTO big SELECT i, repeat('x', 2000) FROM generate_series(1, 50) i;",
    )
    .await;
    let http = HttpLimits {
        ws: WsLimits {
            max_pending_bytes: 2 * 1024 * 1024,
            ..WsLimits::default()
        },
        ..HttpLimits::default()
    };
    let old = "SELECT id, pad FROM big WHERE id <= 50";
    let new = "SELECT id, pad FROM big WHERE id > 1000";
    let count = "SELECT count(*) AS n FROM big";
    let server = TestServer::start_limited(
        &db,
        &[("big_old", old), ("big_new", new), ("big_count", count)],
        None,
        http,
    )
    .await;
    let lsn = db.lsn().await;
    let mut lagging = WsClient::hello(&server.addr, None).await.0;
    lagging.subscribe("old", "big_old", json!(null)).await;
    lagging.wait_for(lsn).await;
    let mut dropped = WsClient::hello(&server.addr, None).await.0;
    dropped.subscribe("new", "big_new", json!(null)).await;
    dropped.wait_for(lsn).await;
    // A client that keeps up, reading all along (a debug-build client
    // parsing every row of 15 MB of inserts might not: it follows the count).
    let (mut fast, _) = WsClient::hello(&server.addr, None).await;
    fast.subscribe("old", "big_old", json!(null)).await;
    fast.subscribe("count", "big_count", json!(null)).await;
    fast.wait_for(lsn).await;
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(viewcast::pg::Lsn(0));
    let reader = tokio::spawn(async move {
        let mut target = viewcast::pg::Lsn(0);
        loop {
            tokio::select! {
                m = fast.next() => { m.expect("the fast client stays connected"); }
                r = done_rx.changed() => {
                    if r.is_err() { break; }
                    target = *done_rx.borrow();
                }
            }
            if target.0 > 0 && fast.lsn >= target {
                break;
            }
        }
        fast
    });

    // 60 transactions of ~200 kB each: far more than the socket buffers
    // hold, while the lagging client's net change stays ~200 kB.
    for _ in 0..60 {
        db.exec("UPDATE big SET pad = repeat(md5(random()::text), 62) WHERE id <= 50")
            .await;
    }
    // ~15 MB of new rows: past the socket buffers (~4 MB), the other one's
    // net change outgrows 2 MB. How much the socket and the writer take
    // depends on how the transactions were batched (merged ones make larger
    // messages), so rows keep coming until the server has closed it, which
    // ends its subscription.
    let subscribed = |metrics: &str| {
        !metrics
            .lines()
            .any(|l| l == "viewcast_view_subscribers{view=\"big_new\"} 0")
    };
    for i in 0.. {
        db.exec(&format!(
            "INSERT INTO big SELECT 1000 + {i} * 50 + g, repeat(md5(random()::text), 62)
             FROM generate_series(1, 50) g"
        ))
        .await;
        if i >= 150 {
            let (_, metrics) = viewcast::client::get(&server.addr, "/metrics")
                .await
                .unwrap();
            if !subscribed(&metrics) {
                break;
            }
            assert!(i < 1000, "the client that reads nothing was never closed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Behind what its socket holds, the close frame waits for it to read.
    let closed = dropped.closed().await;
    assert_eq!(closed.code, 4008, "{closed:?}");
    let end = db.lsn().await;
    let _ = done_tx.send(end);
    let fast = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the fast client keeps up")
        .expect("the fast client stays connected");
    assert_same(
        "fast old",
        end,
        &fast.held["old"].rows,
        &db.oracle(old).await,
    );
    assert_same(
        "fast count",
        end,
        &fast.held["count"].rows,
        &db.oracle(count).await,
    );

    let before = lagging.batches.len();
    lagging.wait_for(end).await;
    assert_same(
        "lagging",
        end,
        &lagging.held["old"].rows,
        &db.oracle(old).await,
    );
    let batches = lagging.batches.len() - before;
    assert!(
        batches < 60,
        "a lagging client gets merged batches, not each of 60 transactions: {batches}"
    );
    server.stop().await;
}

/// examples/tasks as its README runs it: its schema, its views, tokens for
/// users of two tenants; every subscription equals Postgres before and after
/// writes, and each user sees only its own tenant and projects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tasks_example_serves_each_user_its_tenant() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tasks");
    let db = TestDb::new("ws_example").await;
    db.exec(&std::fs::read_to_string(dir.join("schema.sql")).unwrap())
        .await;
    let mut views = Vec::new();
    for entry in std::fs::read_dir(dir.join("queries")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        views.push((name, std::fs::read_to_string(&path).unwrap()));
    }
    views.sort();
    let named: Vec<(&str, &str)> = views
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_str()))
        .collect();
    let server = TestServer::start_with_auth(&db, &named, AuthConfig::Secret(SECRET.into())).await;
    let subs = [
        ("my_projects", json!({})),
        ("project_tasks", json!({"project_id": 1})),
        ("project_tasks", json!({"project_id": 2})),
        ("project_tasks", json!({"project_id": 3})),
        ("tenant_load", json!({"max_priority": 2})),
    ];
    let mut users = Vec::new();
    for (user, tenant) in [("alice", "acme"), ("bob", "acme"), ("carol", "globex")] {
        let (mut c, _) = WsClient::hello(&server.addr, Some(&token(user, tenant))).await;
        for (i, (view, params)) in subs.iter().enumerate() {
            c.subscribe(&format!("s{i}"), view, params.clone()).await;
        }
        users.push((user, tenant, c));
    }
    let sql = |view: &str| views.iter().find(|(n, _)| n == view).unwrap().1.clone();
    for step in 0..3 {
        match step {
            1 => {
                db.exec(
                    "INSERT INTO tasks (tenant, project_id, title, assignee, priority)
                     VALUES ('acme', 1, 'Fix the footer', 'bob', 1), ('globex', 3, 'Order tape', 'carol', 2);
                     UPDATE tasks SET done = true WHERE title = 'Send the March invoices';",
                )
                .await
            }
            2 => {
                db.exec("INSERT INTO memberships VALUES ('bob', 1, 'member'); DELETE FROM memberships WHERE user_id = 'alice' AND project_id = 2;")
                    .await
            }
            _ => {}
        }
        let lsn = db.lsn().await;
        for (user, tenant, c) in users.iter_mut() {
            c.wait_for(lsn).await;
            assert!(c.errors.is_empty(), "{user}: {:?}", c.errors);
            for (i, (view, params)) in subs.iter().enumerate() {
                let want = db
                    .oracle(&substituted(&sql(view), user, tenant, params))
                    .await;
                assert_same(
                    &format!("{user} {view} {params} step {step}"),
                    lsn,
                    &c.held[&format!("s{i}")].rows,
                    &want,
                );
            }
        }
    }
    // carol (globex) sees nothing of acme's projects, even asking by id.
    let carol = &users[2].2;
    assert!(carol.held["s1"].rows.is_empty());
    assert!(carol.held["s2"].rows.is_empty());
    assert!(!carol.held["s3"].rows.is_empty());
    server.stop().await;
}
