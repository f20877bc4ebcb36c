//! The JavaScript client (clients/js/viewcast.js) against a real server: this
//! test starts PostgreSQL and a viewcast that verifies HS256 tokens, then
//! runs the client's Node tests (`node --test clients/js/test/`) against it.
//!
//! The Node tests sign their own tokens with the secret and change the
//! database through a small helper here (`VIEWCAST_SQL_URL`): each POST's
//! body is run as one transaction and answered once it committed, so a test
//! writes, then waits for its rows to converge to what it wrote.
//!
//! Node 20 has no WebSocket unless started with `--experimental-websocket`
//! (Node 22 has one); the tests then use Node's own, else a minimal one of
//! their own (clients/js/test-helpers.mjs). Without `node` the test is
//! skipped, saying so, except under `CI=true`, where it fails (.ci/run
//! installs nodejs).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{connect, TestDb, TestServer};

/// The tests' table: each Node test keeps to a tenant of its own.
const SCHEMA: &str = "CREATE TABLE items (id int PRIMARY KEY, tenant text NOT NULL, label text NOT NULL, n int NOT NULL DEFAULT 0)";

/// The views the Node tests subscribe to: rows of the token's tenant.
const VIEWS: [(&str, &str); 3] = [
    (
        "tenant_items",
        "SELECT id, label, n FROM items WHERE tenant = auth.jwt() ->> 'tenant'",
    ),
    (
        "tenant_labels",
        "SELECT label FROM items WHERE tenant = auth.jwt() ->> 'tenant'",
    ),
    (
        "tenant_items_from",
        "SELECT id, label FROM items WHERE tenant = auth.jwt() ->> 'tenant' AND id >= $min_id",
    ),
];

const SECRET: &str = "js-client-tests-secret-of-at-least-32-bytes";

/// How long the whole Node run may take.
const NODE_LIMIT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_client_passes_its_node_tests() {
    let Some(node) = node_or_skip() else {
        return;
    };
    let db = TestDb::new("js_client").await;
    db.exec(SCHEMA).await;
    let server = TestServer::start_with_auth(
        &db,
        &VIEWS,
        viewcast::auth::AuthConfig::Secret(SECRET.into()),
    )
    .await;
    let sql_url = sql_helper(db.conninfo.clone()).await;

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let base = format!("http://{}", server.addr);
    let flag = websocket_flag(&node);
    if let Some(secs) = std::env::var("VIEWCAST_JS_HOLD")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        // For running the Node tests by hand against this server.
        println!(
            "holding the server for {secs} s; run:\n  {}VIEWCAST_URL={base} VIEWCAST_JWT_SECRET={SECRET} VIEWCAST_SQL_URL={sql_url} node --test clients/js/test/",
            flag.map(|f| format!("NODE_OPTIONS={f} ")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    let mut cmd = tokio::process::Command::new(&node);
    cmd.arg("--test")
        .arg(root.join("clients/js/test"))
        .current_dir(root)
        .env("VIEWCAST_URL", &base)
        .env("VIEWCAST_JWT_SECRET", SECRET)
        .env("VIEWCAST_SQL_URL", &sql_url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(flag) = flag {
        cmd.env("NODE_OPTIONS", flag);
    }
    let mut child = cmd.spawn().expect("run node");
    // Echoed as it comes, so a run that hangs still shows how far it got.
    let stdout = tokio::spawn(echo(child.stdout.take().expect("stdout")));
    let stderr = tokio::spawn(echo(child.stderr.take().expect("stderr")));
    let status = match tokio::time::timeout(NODE_LIMIT, child.wait()).await {
        Ok(status) => status.expect("wait for node"),
        Err(_) => {
            let _ = child.kill().await;
            panic!("node --test did not finish within {NODE_LIMIT:?}; its output is above");
        }
    };
    let stdout = stdout.await.expect("stdout");
    let _ = stderr.await;
    assert!(
        status.success(),
        "the Node tests failed ({status}); their output is above"
    );
    // The runner ran every file (and a file that fails to load fails).
    assert!(stdout.contains("# fail 0"), "{stdout}");
    server.stop().await;
}

/// Prints each line of `from` as it arrives; returns all of it.
async fn echo(from: impl tokio::io::AsyncRead + Unpin) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(from).lines();
    let mut all = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        println!("{line}");
        all.push_str(&line);
        all.push('\n');
    }
    all
}

/// The `node` binary (`VIEWCAST_NODE`, else on PATH), or `None` after
/// saying the test is skipped; under CI a missing node fails the test.
fn node_or_skip() -> Option<PathBuf> {
    let found = std::env::var_os("VIEWCAST_NODE")
        .map(PathBuf::from)
        .or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|dir| dir.join("node"))
                .find(|p| p.is_file())
        });
    match found {
        Some(node) => Some(node),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("no `node` on PATH (or VIEWCAST_NODE): the JavaScript client's tests need Node 18 or later; .ci/run installs it with apt-get install nodejs")
        }
        None => {
            println!("skipped: no `node` on PATH (or VIEWCAST_NODE); install Node 18+ to run the JavaScript client's tests");
            None
        }
    }
}

/// `--experimental-websocket` when this node has a WebSocket only with it.
fn websocket_flag(node: &Path) -> Option<&'static str> {
    let has = |flag: Option<&str>| {
        let mut cmd = std::process::Command::new(node);
        cmd.args(flag)
            .args([
                "-e",
                "process.exit(typeof WebSocket === 'function' ? 0 : 1)",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.status().map(|s| s.success()).unwrap_or(false)
    };
    let flag = "--experimental-websocket";
    (!has(None) && has(Some(flag))).then_some(flag)
}

/// Serves `POST /` on a free port: the body is run on `conninfo` as one
/// transaction; 200 once it committed, 500 with Postgres's message if not.
/// Returns the URL.
async fn sql_helper(conninfo: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let client = std::sync::Arc::new(connect(&conninfo).await);
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let client = client.clone();
            tokio::spawn(async move {
                let Some(body) = read_request(&mut conn).await else {
                    return;
                };
                let (status, text) = match client.batch_execute(&body).await {
                    Ok(()) => ("200 OK", String::new()),
                    Err(e) => ("500 Internal Server Error", viewcast::pg::error_text(&e)),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });
    url
}

/// A request's body (by its Content-Length).
async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = conn.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned());
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The server side the client relies on: a `hello` that comes a while after
/// the upgrade is answered (the server once queued `welcome` and its first
/// `progress` in one go and then waited forever on its own send queue),
/// and messages arrive in the order they were made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_hello_is_welcomed_and_answered_in_order() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let db = TestDb::new("js_late_hello").await;
    db.exec(SCHEMA).await;
    let server = TestServer::start(&db, &[("all_items", "SELECT id, label FROM items")]).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr))
        .await
        .expect("upgrade");
    // Past the 250 ms after which an idle connection is owed a progress.
    tokio::time::sleep(Duration::from_millis(600)).await;
    ws.send(Message::text(r#"{"type":"hello"}"#))
        .await
        .expect("hello");
    let mut next = async || -> serde_json::Value {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("an answer within 10 s")
                .expect("open")
                .expect("a frame");
            if let Message::Text(t) = m {
                return serde_json::from_str(t.as_str()).expect("JSON");
            }
        }
    };
    assert_eq!(next().await["type"], "welcome");
    assert_eq!(next().await["type"], "progress");
    server.stop().await;
}
