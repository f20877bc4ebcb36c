//! The live page in a real browser (Debian's `chromium`, headless, driven
//! over the DevTools protocol because the page fills in from SSE after it has
//! loaded): row values, a column name, a view name and an error message that
//! hold HTML and script are shown as text, and none of it runs.
//!
//! `VIEWCAST_CHROMIUM` names the browser binary; otherwise `chromium` (or
//! `chromium-browser`, `google-chrome`) is looked up on PATH and, as root
//! with apt-get, installed. Only if that fails is the test skipped, saying why.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TestDb, TestServer};

/// What an injected handler would do: any of these showing up means data ran.
const MARKER: &str = "document.title='pwned';window.pwned=true";

fn evil_img() -> String {
    format!("<img src=x onerror=\"{MARKER}\">")
}

fn evil_script() -> String {
    format!("</script><script>{MARKER}</script>")
}

fn evil_svg() -> String {
    format!("<svg onload=\"{MARKER}\"><b>bold</b></svg>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_html_in_data_as_text() {
    let chromium = match find_chromium() {
        Ok(path) => path,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let db = TestDb::new("page_xss").await;
    db.exec(&format!(
        "CREATE TABLE notes (id int PRIMARY KEY, body text);
         INSERT INTO notes VALUES (1, $q${}$q$), (2, $q${}$q$), (3, $q${}$q$);",
        evil_img(),
        evil_script(),
        evil_svg()
    ))
    .await;
    // A view name and a column name with markup (a view name is a file
    // stem, so it has no '/'), and a view that fails with a row's text in its
    // error message.
    let view_name = "<img src=x onerror=document.title='pwned'>";
    let column = "<i onmouseover=document.title='pwned'>col</i>";
    let views = [
        (
            view_name,
            format!("SELECT id, body AS \"{column}\" FROM notes"),
        ),
        (
            "failing",
            "SELECT id, body::int AS n FROM notes".to_string(),
        ),
    ];
    let named: Vec<(&str, &str)> = views.iter().map(|(n, s)| (*n, s.as_str())).collect();
    let server = TestServer::start(&db, &named).await;

    let browser = Browser::start(&chromium, &format!("http://{}/", server.addr)).await;
    let mut page = browser.page().await;

    // The snapshot, then a row that arrives as a diff.
    assert!(
        wait_for_cell(&mut page, &evil_svg()).await,
        "the snapshot's rows never showed: {}",
        page.eval("document.body.innerText").await
    );
    let late = format!("<iframe srcdoc=\"<script>parent.{MARKER}</script>\"></iframe>");
    db.exec(&format!("INSERT INTO notes VALUES (4, $q${late}$q$)"))
        .await;
    assert!(
        wait_for_cell(&mut page, &late).await,
        "the diff's row never showed"
    );
    // Give any injected handler time to fire (it would already have, for an
    // image that fails to load).
    tokio::time::sleep(Duration::from_millis(500)).await;

    let report = page
        .eval(
            "JSON.stringify({
               title: document.title,
               pwned: window.pwned === true,
               injected: document.querySelectorAll('img, svg, iframe, b, i').length,
               scripts: document.querySelectorAll('script').length,
               cells: [...document.querySelectorAll('td')].map(e => e.textContent),
               headers: [...document.querySelectorAll('th')].map(e => e.textContent),
               names: [...document.querySelectorAll('h2')].map(e => e.firstChild.textContent),
               errors: [...document.querySelectorAll('.error')].map(e => e.textContent),
               html: document.documentElement.outerHTML,
             })",
        )
        .await;
    let report: Value = serde_json::from_str(report.as_str().expect("a string")).expect("json");
    let html = report["html"].as_str().unwrap_or_default();
    assert_eq!(report["title"], "viewcast", "data ran: {html}");
    assert_eq!(report["pwned"], false, "data ran: {html}");
    assert_eq!(report["injected"], 0, "data became elements: {html}");
    assert_eq!(report["scripts"], 1, "data became a script element: {html}");
    let texts = |key: &str| -> Vec<String> {
        report[key]
            .as_array()
            .expect(key)
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect()
    };
    let cells = texts("cells");
    for want in [evil_img(), evil_script(), evil_svg(), late.clone()] {
        assert!(
            cells.contains(&want),
            "{want} is not shown as text: {cells:?}"
        );
    }
    let headers = texts("headers");
    assert!(
        headers.iter().any(|h| h.starts_with(column)),
        "{column} is not shown as text: {headers:?}"
    );
    let names = texts("names");
    assert!(
        names.iter().any(|n| n.trim() == view_name),
        "{view_name} is not shown as text: {names:?}"
    );
    let errors = texts("errors");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("invalid input syntax") && e.contains(MARKER)),
        "the failing view's error does not show its text: {errors:?}"
    );
    // Serialised, the markup is escaped text.
    assert!(html.contains("&lt;img src=x onerror="), "{html}");
    assert!(html.contains("&lt;/script&gt;&lt;script&gt;"), "{html}");

    // The policy that stops inline script if anything ever slips through.
    let mut conn = TcpStream::connect(&server.addr).await.expect("connect");
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut response = String::new();
    conn.read_to_string(&mut response).await.expect("response");
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    drop(page);
    browser.stop();
    server.stop().await;
}

/// The demo's page with tokens: it offers the demo users, shows each user
/// only their region's rows of the tenant-scoped views in queries/ (over the
/// websocket, through /client.js), follows a writer's commits, and takes a
/// view's `$status` from a field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_shows_each_user_their_region_only() {
    let chromium = match find_chromium() {
        Ok(path) => path,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let db = TestDb::new("page_demo").await;
    db.exec(viewcast::demo::SCHEMA).await;
    let file = |name: &str| {
        let path = format!("{}/queries/{name}.sql", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let sql: Vec<(&str, String)> = ["region_orders", "region_orders_by_status", "order_status"]
        .into_iter()
        .map(|name| (name, file(name)))
        .collect();
    let views: Vec<(&str, &str)> = sql.iter().map(|(n, s)| (*n, s.as_str())).collect();
    let secret = viewcast::demo::random_secret();
    let server = TestServer::start_with_auth_and_routes(
        &db,
        &views,
        viewcast::auth::AuthConfig::Secret(secret.clone()),
        viewcast::demo::routes(secret),
    )
    .await;
    // Without a token the views are closed; the demo's routes are open.
    assert_eq!(server.get("/views").await.0, 401);
    assert_eq!(server.get("/demo/token?user=ann").await.0, 200);
    assert_eq!(server.get("/demo/token?user=mallory").await.0, 404);

    let browser = Browser::start(&chromium, &format!("http://{}/", server.addr)).await;
    let mut page = browser.page().await;
    let mut next_order = 5000i64;
    for (user, region) in [("ann", "north"), ("bob", "south"), ("ann", "north")] {
        let switched = page
            .eval(&format!(
                "new Promise(done => {{
                   const start = Date.now();
                   (function poll() {{
                     const pick = document.getElementById('who');
                     if (pick) {{ pick.value = {user}; pick.dispatchEvent(new Event('change')); return done(true); }}
                     if (Date.now() - start > 30000) return done(false);
                     setTimeout(poll, 50);
                   }})();
                 }})",
                user = json!(user)
            ))
            .await;
        assert_eq!(switched, json!(true), "no user switcher on the page");
        let orders = |region: &'static str| {
            let db = &db;
            async move {
                db.json_rows(
                    &format!(
                        "SELECT o.id::text, c.name, c.region, o.status FROM orders o
                         JOIN customers c ON c.id = o.customer_id WHERE c.region = '{region}'"
                    ),
                    4,
                )
                .await
                .expect("orders")
            }
        };
        let want = orders(region).await;
        assert!(!want.is_empty(), "the example data has orders in {region}");
        wait_for_rows(&mut page, "region_orders", &want, &format!("{user}'s rows")).await;

        // A commit in the user's region shows up; one in another does not.
        let other = if region == "north" { "south" } else { "north" };
        for r in [region, other] {
            db.exec(&format!(
                "INSERT INTO orders (id, customer_id, status)
                   SELECT {next_order}, min(id), 'new' FROM customers WHERE region = '{r}';
                 INSERT INTO order_items VALUES ({next_order}, 1, 2);"
            ))
            .await;
            next_order += 1;
        }
        let want = orders(region).await;
        wait_for_rows(&mut page, "region_orders", &want, "the new order").await;

        // The view with a parameter, once the field has a value.
        page.eval(
            "(() => { const f = document.querySelector('section[data-view=\"region_orders_by_status\"] input[name=status]');
                      f.value = 'new'; f.dispatchEvent(new Event('change')); })()",
        )
        .await;
        let by_status = db
            .json_rows(
                &format!(
                    "SELECT o.id::text, c.name, sum(oi.quantity)::text FROM orders o
                     JOIN customers c ON c.id = o.customer_id JOIN order_items oi ON oi.order_id = o.id
                     WHERE c.region = '{region}' AND o.status = 'new' GROUP BY o.id, c.name"
                ),
                3,
            )
            .await
            .expect("orders by status");
        wait_for_rows(
            &mut page,
            "region_orders_by_status",
            &by_status,
            "new orders",
        )
        .await;
    }
    drop(page);
    browser.stop();
    server.stop().await;
}

/// Waits (in the page) until the table of `view` shows exactly `want` (each
/// row a JSON array of the cells' texts, sorted, as `TestDb::json_rows`).
async fn wait_for_rows(page: &mut Cdp, view: &str, want: &[String], what: &str) {
    let want: Vec<Value> = want
        .iter()
        .map(|r| serde_json::from_str(r).expect("JSON row"))
        .collect();
    let expr = format!(
        "new Promise(done => {{
           const want = JSON.stringify({want});
           const start = Date.now();
           (function poll() {{
             const rows = [...document.querySelectorAll('section[data-view={view}] tbody tr')]
               .map(tr => JSON.stringify([...tr.cells].map(td => td.textContent))).sort();
             const got = '[' + rows.join(',') + ']';
             if (got === want) return done('');
             if (Date.now() - start > 30000) return done(got + ' -- page text: ' + document.body.innerText);
             setTimeout(poll, 50);
           }})();
         }})",
        want = json!(want),
        view = json!(view),
    );
    let failed = page.eval(&expr).await;
    assert_eq!(
        failed,
        json!(""),
        "{what}: {view} never showed {want:?}; it shows:",
        want = want
    );
}

/// Waits (in the page) until a table cell's text is `text`; false after 30 s.
async fn wait_for_cell(page: &mut Cdp, text: &str) -> bool {
    let expr = format!(
        "new Promise(done => {{
           const want = {want};
           const start = Date.now();
           (function poll() {{
             const cells = [...document.querySelectorAll('td')].map(e => e.textContent);
             if (cells.includes(want)) return done(true);
             if (Date.now() - start > 30000) return done(false);
             setTimeout(poll, 50);
           }})();
         }})",
        want = json!(text)
    );
    page.eval(&expr).await == json!(true)
}

/// The browser binary, installing Debian's `chromium` if there is none.
fn find_chromium() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("VIEWCAST_CHROMIUM") {
        return Ok(PathBuf::from(path));
    }
    let on_path = || {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).find_map(|dir| {
            ["chromium", "chromium-browser", "google-chrome"]
                .iter()
                .map(|name| dir.join(name))
                .find(|p| p.is_file())
        })
    };
    if let Some(found) = on_path() {
        return Ok(found);
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        return Err("no chromium on PATH, and not root to install it".into());
    }
    println!("installing chromium (apt-get) for the page test");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !apt(&["install", "-y", "-qq", "chromium"]) {
        apt(&["update", "-qq"]);
        apt(&["install", "-y", "-qq", "chromium"]);
    }
    on_path().ok_or_else(|| "no chromium on PATH and `apt-get install chromium` failed".into())
}

/// A headless chromium with its DevTools endpoint on a free port.
struct Browser {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Browser {
    async fn start(binary: &Path, url: &str) -> Browser {
        // A profile of its own: the tests in this file run side by side.
        static BROWSERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = BROWSERS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("viewcast-chromium-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("profile dir");
        let child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", dir.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let mut browser = Browser {
            child,
            dir,
            port: 0,
        };
        // Chromium writes the port it took into the profile directory.
        let start = Instant::now();
        let file = browser.dir.join("DevToolsActivePort");
        browser.port = loop {
            if let Some(port) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|s| s.lines().next()?.trim().parse().ok())
            {
                break port;
            }
            if let Ok(Some(status)) = browser.child.try_wait() {
                panic!("chromium exited at startup: {status}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "chromium did not open its DevTools port"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        browser
    }

    /// A DevTools session on the page chromium opened.
    async fn page(&self) -> Cdp {
        let addr = format!("127.0.0.1:{}", self.port);
        let start = Instant::now();
        let ws = loop {
            let targets = get_json(&addr, "/json/list").await;
            let page = targets.as_array().and_then(|ts| {
                ts.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                    .map(str::to_string)
            });
            if let Some(ws) = page {
                break ws;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "no page target");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        Cdp::connect(&ws).await
    }

    fn stop(mut self) {
        // SIGTERM first, so chromium takes its helper processes down with it.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `GET path` from chromium's DevTools HTTP endpoint, which keeps the
/// connection open: the body is read by its Content-Length.
async fn get_json(addr: &str, path: &str) -> Value {
    let mut stream = TcpStream::connect(addr).await.expect("connect to DevTools");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.expect("response head"));
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length: {head}"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.expect("response body");
    serde_json::from_slice(&body).expect("JSON")
}

/// The DevTools protocol over a minimal WebSocket client (RFC 6455: masked
/// text frames out, unmasked frames in): enough for `Runtime.evaluate`.
struct Cdp {
    stream: TcpStream,
    next_id: u64,
}

impl Cdp {
    async fn connect(url: &str) -> Cdp {
        let rest = url.strip_prefix("ws://").expect("a ws:// URL");
        let (host, path) = rest.split_once('/').expect("a path");
        let mut stream = TcpStream::connect(host).await.expect("connect to DevTools");
        let request = format!(
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dmlld2Nhc3QtdGVzdC1rZXk=\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("upgrade");
        // Byte by byte, so no frame is read along with the response head.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(stream.read_u8().await.expect("upgrade response"));
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        Cdp { stream, next_id: 1 }
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) {
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x5a, 0x17, 0xc3, 0x88];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await.expect("send frame");
    }

    /// The next whole text message; answers pings on the way.
    async fn message(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let b0 = self.stream.read_u8().await.expect("frame");
            let b1 = self.stream.read_u8().await.expect("frame");
            let len = match b1 & 0x7f {
                126 => self.stream.read_u16().await.expect("length") as usize,
                127 => self.stream.read_u64().await.expect("length") as usize,
                n => n as usize,
            };
            let mask = if b1 & 0x80 != 0 {
                let mut m = [0u8; 4];
                self.stream.read_exact(&mut m).await.expect("mask");
                Some(m)
            } else {
                None
            };
            let mut payload = vec![0u8; len];
            self.stream.read_exact(&mut payload).await.expect("payload");
            if let Some(m) = mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= m[i % 4];
                }
            }
            match b0 & 0x0f {
                0x0 | 0x1 => {
                    message.extend_from_slice(&payload);
                    if b0 & 0x80 != 0 {
                        return String::from_utf8(message).expect("text message");
                    }
                }
                0x8 => panic!("DevTools closed the connection"),
                0x9 => self.send(0xA, &payload).await,
                _ => {}
            }
        }
    }

    /// Calls `method`; its result, or the error it answered with.
    async fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({ "id": id, "method": method, "params": params }).to_string();
        self.send(0x1, request.as_bytes()).await;
        loop {
            let reply: Value = serde_json::from_str(&self.message().await).expect("JSON");
            if reply["id"] == id {
                return match reply.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(reply["result"].clone()),
                };
            }
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns
    /// its value. Evaluated again if the page was still navigating (from the
    /// blank page chromium starts with to ours).
    async fn eval(&mut self, expression: &str) -> Value {
        let params =
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true });
        let start = Instant::now();
        let result = loop {
            let answer = tokio::time::timeout(
                Duration::from_secs(60),
                self.call("Runtime.evaluate", params.clone()),
            )
            .await
            .expect("the page answers within 60 s");
            match answer {
                Ok(result) => break result,
                Err(_) if start.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{expression}: {e}"),
            }
        };
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }
}
