//! The HTTP listener under hostile clients, over loopback with raw TCP:
//! oversized and slow request heads, more connections than the cap, garbage
//! and malformed requests, bodies, a subscriber that stops reading; and an SSE
//! stream that must outlive the header timeout. The limits are set small for
//! these tests (`HttpLimits`); the defaults are in `viewcast::config`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use viewcast::client::SseClient;
use viewcast::config::{Config, HttpLimits};
use viewcast::server::Running;

use crate::support::TestDb;

/// A viewcast with the given HTTP limits over `db`.
struct Limited {
    running: Running,
    addr: String,
    dir: PathBuf,
}

impl Limited {
    async fn start(db: &TestDb, views: &[(&str, &str)], limits: HttpLimits) -> Limited {
        crate::support::init_logging();
        let dir = std::env::temp_dir().join(format!(
            "viewcast-http-{}-{}",
            std::process::id(),
            db.conninfo.rsplit('=').next().unwrap_or("db")
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("queries dir");
        for (name, sql) in views {
            std::fs::write(dir.join(format!("{name}.sql")), sql).expect("write view");
        }
        let config = Config {
            pg: db.conninfo.clone(),
            queries: dir.clone(),
            listen: "127.0.0.1:0".into(),
            workers: 1,
            view_groups: 1,
            publication: "viewcast".into(),
            timeouts: Default::default(),
            auth: None,
            cluster: None,
            merge_after: viewcast::config::DEFAULT_MERGE_AFTER,
            linger: std::time::Duration::ZERO,
        };
        let running = viewcast::server::start_with(config, limits)
            .await
            .expect("server starts");
        let addr = running.addr.to_string();
        let server = Limited { running, addr, dir };
        server.wait_healthy().await;
        server
    }

    async fn wait_healthy(&self) {
        let start = Instant::now();
        loop {
            if let Ok((200, _)) = viewcast::client::get(&self.addr, "/healthz").await {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "server did not become healthy"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.running.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `request`, then reads until the server closes the connection or
/// `limit` passes. Returns the first response's status (if one came) and all
/// that was read.
async fn exchange(addr: &str, request: &[u8], limit: Duration) -> (Option<u16>, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before it has read everything.
    let _ = s.write_all(request).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = s.read(&mut chunk).await {
            got.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got).into_owned();
    (status_of(&text), text)
}

fn status_of(response: &str) -> Option<u16> {
    response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
}

/// `GET path` with extra header lines, closing after the response.
fn get(path: &str, headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n{headers}Connection: close\r\n\r\n").into_bytes()
}

fn small_limits() -> HttpLimits {
    HttpLimits {
        max_connections: 64,
        header_read_timeout: Duration::from_secs(1),
        max_header_bytes: 16 * 1024,
        write_timeout: Duration::from_secs(60),
        ..HttpLimits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_are_refused() {
    let db = TestDb::new("http_big_heads").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);")
        .await;
    let server = Limited::start(&db, &[("v", "SELECT id FROM t")], small_limits()).await;
    let long = Duration::from_secs(5);

    // Within the limit: an 8 KiB cookie is still a request.
    let cookie = format!("Cookie: c={}\r\n", "a".repeat(8 * 1024));
    let (status, text) = exchange(&server.addr, &get("/healthz", &cookie), long).await;
    assert_eq!(status, Some(200), "{text}");

    // One header past the limit, many headers, a path past the limit.
    let big = format!("X-Big: {}\r\n", "a".repeat(20 * 1024));
    let many: String = (0..200).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let long_path = format!("/views/{}", "v".repeat(20 * 1024));
    for (what, request) in [
        ("a 20 KiB header", get("/healthz", &big)),
        ("200 headers", get("/healthz", &many)),
        ("a 20 KiB path", get(&long_path, "")),
    ] {
        let (status, text) = exchange(&server.addr, &request, long).await;
        assert!(
            matches!(status, Some(431 | 414 | 400)),
            "{what}: {status:?} {text}"
        );
    }

    // A long name within the limit is simply not a view, and is not echoed whole.
    let name = "n".repeat(4000);
    let (status, text) = exchange(&server.addr, &get(&format!("/views/{name}"), ""), long).await;
    assert_eq!(status, Some(404), "{text}");
    assert!(text.len() < 1000, "the 404 echoes the whole name: {text}");
    let (status, text) =
        exchange(&server.addr, &get(&format!("/views/{name}/sse"), ""), long).await;
    assert_eq!(status, Some(404), "{text}");
    assert!(text.len() < 1000, "the 404 echoes the whole name: {text}");

    let (status, _) = exchange(&server.addr, &get("/healthz", ""), long).await;
    assert_eq!(status, Some(200));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_byte_by_byte_is_cut_off() {
    let db = TestDb::new("http_slowloris").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY);").await;
    let limits = small_limits();
    let timeout = limits.header_read_timeout;
    let server = Limited::start(&db, &[("v", "SELECT id FROM t")], limits).await;

    let started = Instant::now();
    let stream = TcpStream::connect(&server.addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    // One byte every 100 ms: it would take minutes to finish this head.
    let trickle = tokio::spawn(async move {
        let head = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: {}",
            "a".repeat(5000)
        );
        for b in head.bytes() {
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = [0u8; 1024];
    let mut answered = Vec::new();
    let closed = tokio::time::timeout(timeout * 5, async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answered.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let took = started.elapsed();
    trickle.abort();
    assert!(
        closed.is_ok(),
        "a client trickling its head still had its connection after {took:?}"
    );
    assert!(
        took >= timeout - Duration::from_millis(100) && took < timeout * 3,
        "closed after {took:?}, expected about {timeout:?}"
    );
    let answered = String::from_utf8_lossy(&answered);
    assert!(
        answered.is_empty() || matches!(status_of(&answered), Some(400..=499)),
        "{answered}"
    );

    // An idle connection that never sends a byte goes the same way.
    let started = Instant::now();
    let mut idle = TcpStream::connect(&server.addr).await.expect("connect");
    let r = tokio::time::timeout(timeout * 5, idle.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "an idle connection was kept: {r:?}"
    );
    assert!(started.elapsed() < timeout * 3);

    let (status, _) = exchange(&server.addr, &get("/healthz", ""), Duration::from_secs(5)).await;
    assert_eq!(status, Some(200));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_for_a_free_slot() {
    let db = TestDb::new("http_cap").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);")
        .await;
    let limits = HttpLimits {
        max_connections: 3,
        ..small_limits()
    };
    let server = Limited::start(&db, &[("v", "SELECT id FROM t")], limits).await;

    // Three subscribers hold every slot.
    let mut subscribers = Vec::new();
    for _ in 0..3 {
        let mut c = SseClient::connect(&server.addr, "/views/v/sse")
            .await
            .expect("subscribe");
        let ev = c.next_event().await.expect("read").expect("snapshot");
        assert_eq!(ev.event, "snapshot");
        subscribers.push(c);
    }
    // A fourth client connects (the kernel queues it) but is not served...
    let mut waiting = TcpStream::connect(&server.addr).await.expect("connect");
    waiting
        .write_all(&get("/healthz", ""))
        .await
        .expect("request");
    let mut buf = vec![0u8; 4096];
    let early = tokio::time::timeout(Duration::from_millis(1500), waiting.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a connection past the cap was answered: {early:?}"
    );
    // ... nor a burst of further ones, and the server does not fail.
    let mut burst = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(&server.addr).await.expect("connect");
        let _ = s.write_all(&get("/healthz", "")).await;
        burst.push(s);
    }
    // Once a subscriber leaves, the waiting client gets its answer.
    drop(subscribers.pop());
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        let mut got = Vec::new();
        while let Ok(n @ 1..) = waiting.read(&mut buf).await {
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    })
    .await
    .expect("the queued client is served once a slot frees");
    assert_eq!(status_of(&answer), Some(200), "{answer}");
    // The burst drains through the freed slots too, and the remaining
    // subscribers still stream.
    for mut s in burst {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(n @ 1..) = s.read(&mut buf).await {
                got.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        assert_eq!(
            status_of(&String::from_utf8_lossy(&got)),
            Some(200),
            "a queued client"
        );
    }
    db.exec("INSERT INTO t VALUES (2)").await;
    for c in &mut subscribers {
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(30), c.next_event())
                .await
                .expect("an event")
                .expect("read")
                .expect("open");
            if ev.event == "diff" {
                break;
            }
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_malformed_requests_get_4xx() {
    let db = TestDb::new("http_garbage").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);")
        .await;
    let server = Limited::start(&db, &[("v", "SELECT id FROM t")], small_limits()).await;
    let limit = Duration::from_secs(5);

    // Not HTTP at all: a 400 or a closed connection.
    let mut noise: Vec<u8> = Vec::new();
    let mut x: u32 = 0x9E37_79B9;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push(x as u8);
    }
    for (what, bytes) in [
        ("random bytes", noise.clone()),
        ("NULs", vec![0u8; 512]),
        (
            "an HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
        ("bare line ends", b"\r\n\r\n\r\n\r\n".to_vec()),
        (
            "raw 0xFF in the path",
            b"GET /views/\xff\xfe/sse HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "a header without a colon",
            b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n".to_vec(),
        ),
        (
            "a bad version",
            b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "a bad Content-Length",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
        ),
    ] {
        let (status, text) = exchange(&server.addr, &bytes, limit).await;
        assert!(
            status.is_none() || matches!(status, Some(400..=499)),
            "{what}: {status:?} {text}"
        );
    }

    // Well-formed but wrong: each a 4xx with a reason.
    for (what, request, want) in [
        (
            "percent-encoded bytes that are not UTF-8",
            get("/views/%FF%FE/sse", ""),
            400,
        ),
        ("the same for the contents", get("/views/%C3%28", ""), 400),
        ("the same for the plan", get("/views/%80/plan", ""), 400),
        (
            "a Last-Event-ID that is no LSN",
            get("/views/v/sse", "Last-Event-ID: <script>\r\n"),
            400,
        ),
        (
            "a huge Last-Event-ID",
            get(
                "/views/v/sse",
                &format!("Last-Event-ID: {}\r\n", "9".repeat(8000)),
            ),
            400,
        ),
        (
            "an LSN with a high half past 32 bits",
            get("/views/v/sse", "Last-Event-ID: 100000000/0\r\n"),
            400,
        ),
        ("an unknown route", get("/etc/passwd", ""), 404),
        ("a dot-dot path", get("/views/../../etc/passwd", ""), 404),
        (
            "an unknown method",
            b"BREW /views/v HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            405,
        ),
        (
            "DELETE",
            b"DELETE /views/v HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            405,
        ),
        (
            "a body on GET",
            b"GET /views/v HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
                .to_vec(),
            413,
        ),
        (
            "a declared large body, not sent",
            b"POST /views/v HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n".to_vec(),
            413,
        ),
        (
            "a chunked body",
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
            413,
        ),
    ] {
        let (status, text) = exchange(&server.addr, &request, limit).await;
        assert_eq!(status, Some(want), "{what}: {text}");
    }

    // A Last-Event-ID that is an LSN ahead of the view (as after a restart of
    // viewcast) is no error: the subscriber gets a snapshot marked as a reset.
    let mut c = SseClient::connect_from(&server.addr, "/views/v/sse", Some("FFFFFFFF/FFFFFFFF"))
        .await
        .expect("subscribe");
    let ev = c.next_event().await.expect("read").expect("snapshot");
    assert_eq!(ev.event, "snapshot");
    assert!(ev.data.contains("\"reset\":true"), "{}", ev.data);

    // Through all of it the server kept serving.
    let (status, text) = exchange(&server.addr, &get("/healthz", ""), limit).await;
    assert_eq!(status, Some(200), "{text}");
    let (status, text) = exchange(&server.addr, &get("/views/v", ""), limit).await;
    assert_eq!(status, Some(200), "{text}");
    assert!(text.contains("nosniff"), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_stream_outlives_the_header_timeout() {
    let db = TestDb::new("http_sse_long").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);")
        .await;
    let limits = small_limits();
    let timeout = limits.header_read_timeout;
    let server = Limited::start(&db, &[("v", "SELECT id FROM t")], limits).await;
    let mut c = SseClient::connect(&server.addr, "/views/v/sse")
        .await
        .expect("subscribe");
    let ev = c.next_event().await.expect("read").expect("snapshot");
    assert_eq!(ev.event, "snapshot");
    // Three header timeouts with nothing to send, then a change.
    tokio::time::sleep(timeout * 3).await;
    db.exec("INSERT INTO t VALUES (2)").await;
    let diff = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match c.next_event().await {
                Ok(Some(ev)) if ev.event == "diff" => return Ok(ev),
                Ok(Some(_)) => continue,
                Ok(None) => return Err("the stream ended".to_string()),
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .expect("a diff within 30 s")
    .expect("the stream stayed open");
    assert!(diff.data.contains("[2]"), "{}", diff.data);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_dropped() {
    let db = TestDb::new("http_stalled").await;
    // About 16 MB of snapshot: more than the socket buffers on both sides hold.
    db.exec(
        "CREATE TABLE big (id int PRIMARY KEY, body text);
         INSERT INTO big SELECT i, repeat(md5(i::text), 32) FROM generate_series(1, 16000) i;",
    )
    .await;
    let limits = HttpLimits {
        write_timeout: Duration::from_secs(1),
        ..small_limits()
    };
    let server = Limited::start(&db, &[("wide", "SELECT id, body FROM big")], limits).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small buffer");
    let mut s = socket
        .connect(server.addr.parse().expect("addr"))
        .await
        .expect("connect");
    s.write_all(&get("/views/wide/sse", ""))
        .await
        .expect("request");
    // Read nothing for a while: the server's writes stall.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(n @ 1..) = s.read(&mut buf).await {
            if total == 0 {
                head = String::from_utf8_lossy(&buf[..n.min(200)]).into_owned();
            }
            total += n;
        }
    })
    .await;
    assert_eq!(status_of(&head), Some(200), "{head}");
    assert!(
        ended.is_ok(),
        "a stalled subscriber kept its connection ({total} bytes read)"
    );
    assert!(
        total < 16_000 * 1024,
        "the whole snapshot arrived ({total} bytes): the stall went unnoticed"
    );
    // Others are served as usual.
    let (status, _) = exchange(&server.addr, &get("/healthz", ""), Duration::from_secs(5)).await;
    assert_eq!(status, Some(200));
    server.stop().await;
}
