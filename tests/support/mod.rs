//! Test support: one throwaway PostgreSQL per test binary (or the server named
//! by `VIEWCAST_TEST_PG`), a database per test, a viewcast server per test, and
//! an SSE follower that builds a view's state the way a subscriber would.

#![allow(dead_code)]

pub mod chaos;
pub mod ws;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use viewcast::client::SseClient;
use viewcast::config::Config;
use viewcast::pg::embedded::{EmbeddedPostgres, Options};
use viewcast::pg::Lsn;
use viewcast::server::Running;

/// Whether the shared cluster asks scram_u and md5_u for passwords.
pub static HBA_WRITTEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Base conninfo (without dbname) of the shared cluster.
pub fn base_conninfo() -> &'static str {
    cluster()
}

fn cluster() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| {
        init_logging();
        if let Ok(conninfo) = std::env::var("VIEWCAST_TEST_PG") {
            return conninfo;
        }
        let pg = EmbeddedPostgres::start()
            .expect("start a throwaway PostgreSQL (are the server binaries installed?)");
        let base = format!("host=127.0.0.1 port={} user=postgres", pg.port);
        // The users scram_u and md5_u must authenticate with that method (see tests/auth.rs).
        let hba = pg.dir().join("data").join("pg_hba.conf");
        let original = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        let ours = "host all,replication scram_u 127.0.0.1/32 scram-sha-256\nhost all,replication md5_u 127.0.0.1/32 md5\n";
        std::fs::write(&hba, format!("{ours}{original}")).expect("write pg_hba.conf");
        HBA_WRITTEN.store(true, std::sync::atomic::Ordering::SeqCst);
        pg.stop_when_process_exits().expect("cleanup watchdog");
        base
    })
}

/// `RUST_LOG=viewcast=debug` shows the server's log beside a failing test.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub struct TestDb {
    pub conninfo: String,
    pub client: tokio_postgres::Client,
}

/// Makes `copy` (dropped first if it exists) a copy of `template`, which
/// must have no sessions.
pub async fn copy_database(admin: &tokio_postgres::Client, copy: &str, template: &str) {
    for sql in [
        format!("DROP DATABASE IF EXISTS {copy} WITH (FORCE)"),
        format!("CREATE DATABASE {copy} TEMPLATE {template}"),
    ] {
        admin
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", viewcast::pg::error_text(&e)));
    }
}

pub async fn connect(conninfo: &str) -> tokio_postgres::Client {
    connect_in(conninfo, Some("UTC")).await
}

/// A connection whose session is in `timezone`; with `None` it keeps the
/// database's and role's own TimeZone and DateStyle, as the oracle for views
/// that viewcast evaluates in the role's session must.
pub async fn connect_in(conninfo: &str, timezone: Option<&str>) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let zone = timezone
        .map(|z| format!("SET TimeZone = '{z}'; "))
        .unwrap_or_default();
    client
        .batch_execute(&format!("{zone}SET extra_float_digits = 1"))
        .await
        .expect("session settings");
    client
}

/// The session the zoned oracle runs in: a cluster whose default TimeZone is
/// America/New_York, DateStyle `SQL, DMY`, and whose default collation is
/// ICU's en-US (no libc locale but C exists on the test machines).
pub const ZONED_TIMEZONE: &str = "America/New_York";
pub const ZONED_DATESTYLE: &str = "SQL, DMY";
pub const ZONED_ICU_LOCALE: &str = "en-US";

/// Base conninfo of the zoned cluster, or `None` under `VIEWCAST_TEST_PG`
/// (then the database itself carries the settings, see [`TestDb::zoned`]).
fn zoned_cluster() -> Option<&'static str> {
    static BASE: OnceLock<Option<String>> = OnceLock::new();
    BASE.get_or_init(|| {
        init_logging();
        if std::env::var("VIEWCAST_TEST_PG").is_ok() {
            return None;
        }
        let pg = EmbeddedPostgres::start_with(Options {
            timezone: ZONED_TIMEZONE.into(),
            datestyle: Some(ZONED_DATESTYLE.into()),
            icu_locale: Some(ZONED_ICU_LOCALE.into()),
            ..Options::default()
        })
        .expect("start a PostgreSQL in America/New_York with an ICU collation");
        let base = format!("host=127.0.0.1 port={} user=postgres", pg.port);
        pg.stop_when_process_exits().expect("cleanup watchdog");
        Some(base)
    })
    .as_deref()
}

impl TestDb {
    /// A fresh database named after the test.
    pub async fn new(name: &str) -> TestDb {
        let base = cluster().to_string();
        let admin = connect(&format!("{base} dbname=postgres")).await;
        let db = format!("t_{name}");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await
            .expect("drop db");
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .expect("create db");
        let conninfo = format!("{base} dbname={db}");
        let client = connect(&conninfo).await;
        TestDb { conninfo, client }
    }

    /// A fresh database `t_{name}` copied from the database `tmpl_{template}`,
    /// which the first caller in this process makes by running `setup_sql`
    /// (once: tests that share a template run concurrently). Copying a loaded
    /// database is much faster than loading it again for every test.
    pub async fn from_template(name: &str, template: &str, setup_sql: &str) -> TestDb {
        type Cells = BTreeMap<String, std::sync::Arc<tokio::sync::OnceCell<()>>>;
        static TEMPLATES: OnceLock<std::sync::Mutex<Cells>> = OnceLock::new();
        let cell = TEMPLATES
            .get_or_init(Default::default)
            .lock()
            .expect("templates")
            .entry(template.to_string())
            .or_default()
            .clone();
        let base = cluster().to_string();
        let tmpl = format!("tmpl_{template}");
        let admin = connect(&format!("{base} dbname=postgres")).await;
        cell.get_or_init(|| async {
            for sql in [
                format!("DROP DATABASE IF EXISTS {tmpl} WITH (FORCE)"),
                format!("CREATE DATABASE {tmpl}"),
            ] {
                admin.batch_execute(&sql).await.expect("create template db");
            }
            let (client, conn) =
                tokio_postgres::connect(&format!("{base} dbname={tmpl}"), tokio_postgres::NoTls)
                    .await
                    .expect("connect to template db");
            let conn = tokio::spawn(conn);
            client
                .batch_execute(setup_sql)
                .await
                .unwrap_or_else(|e| panic!("load {tmpl}: {}", viewcast::pg::error_text(&e)));
            // CREATE DATABASE ... TEMPLATE needs the template without sessions.
            drop(client);
            let _ = conn.await;
        })
        .await;
        let db = format!("t_{name}");
        copy_database(&admin, &db, &tmpl).await;
        let conninfo = format!("{base} dbname={db}");
        let client = connect(&conninfo).await;
        TestDb { conninfo, client }
    }

    /// A fresh database whose sessions default to TimeZone America/New_York,
    /// DateStyle `SQL, DMY` and an ICU en-US collation; its client keeps
    /// those settings, so [`TestDb::oracle`] answers as such a session does.
    pub async fn zoned(name: &str) -> TestDb {
        let db = format!("t_{name}");
        let base = match zoned_cluster() {
            Some(base) => base.to_string(),
            None => cluster().to_string(),
        };
        let admin = connect(&format!("{base} dbname=postgres")).await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await
            .expect("drop db");
        let create = if zoned_cluster().is_some() {
            format!("CREATE DATABASE {db}")
        } else {
            format!(
                "CREATE DATABASE {db} LOCALE_PROVIDER icu ICU_LOCALE '{ZONED_ICU_LOCALE}' TEMPLATE template0;
                 ALTER DATABASE {db} SET TimeZone = '{ZONED_TIMEZONE}';
                 ALTER DATABASE {db} SET DateStyle = '{ZONED_DATESTYLE}'"
            )
        };
        // One statement at a time: several in one batch run as one
        // transaction, which CREATE DATABASE refuses.
        for statement in create.split(';') {
            admin.batch_execute(statement).await.expect("create db");
        }
        let conninfo = format!("{base} dbname={db}");
        let client = connect_in(&conninfo, None).await;
        TestDb { conninfo, client }
    }

    /// A database on another server (e.g. a cluster a test restarts).
    pub async fn on(conninfo: &str) -> TestDb {
        TestDb {
            conninfo: conninfo.to_string(),
            client: connect(conninfo).await,
        }
    }

    pub async fn exec(&self, sql: &str) {
        self.client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", viewcast::pg::error_text(&e)));
    }

    /// The WAL position now; after a commit, the view must reach it.
    /// Postgres's answer to `sql` (`arity` columns) as a view would hold it:
    /// each row as the JSON array of its `to_json` values, sorted; or the
    /// error Postgres gives.
    pub async fn json_rows(&self, sql: &str, arity: usize) -> Result<Vec<String>, String> {
        let cols: Vec<String> = (1..=arity).map(|i| format!("c{i}")).collect();
        let q = format!(
            "SELECT json_build_array({})::text FROM ({}) AS q({})",
            cols.join(", "),
            sql.trim().trim_end_matches(';'),
            cols.join(", ")
        );
        let rows = self
            .client
            .query(&q, &[])
            .await
            .map_err(|e| viewcast::pg::error_text(&e))?;
        let mut out: Vec<String> = rows
            .iter()
            .map(|r| {
                let text: String = r.get(0);
                let v: Value = serde_json::from_str(&text).expect("json_build_array output");
                v.to_string()
            })
            .collect();
        out.sort();
        Ok(out)
    }

    pub async fn lsn(&self) -> Lsn {
        let s: String = self
            .client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .expect("lsn")
            .get(0);
        s.parse().expect("lsn text")
    }

    /// Rows of `sql` as Postgres renders them with to_json, one object per row, as a multiset.
    pub async fn oracle(&self, sql: &str) -> BTreeMap<String, i64> {
        let q = format!(
            "SELECT to_json(t)::text FROM ({}) t",
            sql.trim().trim_end_matches(';')
        );
        let rows = self
            .client
            .query(&q, &[])
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        let mut out = BTreeMap::new();
        for r in rows {
            let text: String = r.get(0);
            let v: Value = serde_json::from_str(&text).expect("to_json output");
            *out.entry(v.to_string()).or_insert(0) += 1;
        }
        out
    }
}

/// A `GET /views/{name}` body's rows, each as its JSON array text, sorted:
/// comparable with [`TestDb::json_rows`].
pub fn sorted_rows(body: &Value) -> Vec<String> {
    let mut rows: Vec<String> = body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r.to_string())
        .collect();
    rows.sort();
    rows
}

pub struct TestServer {
    pub running: Running,
    pub addr: String,
    dir: PathBuf,
}

impl TestServer {
    /// Starts viewcast on `db` with the given views and waits until it is healthy.
    pub async fn start(db: &TestDb, views: &[(&str, &str)]) -> TestServer {
        let server = Self::start_unwaited(db, views).await;
        server.wait_healthy().await;
        server
    }

    /// Starts viewcast without waiting for the initial snapshot.
    pub async fn start_unwaited(db: &TestDb, views: &[(&str, &str)]) -> TestServer {
        Self::start_with(&db.conninfo, views, Default::default()).await
    }

    /// Starts viewcast on `db` with view endpoints that need a token
    /// checked against `auth`, and waits until it is healthy.
    pub async fn start_with_auth(
        db: &TestDb,
        views: &[(&str, &str)],
        auth: viewcast::auth::AuthConfig,
    ) -> TestServer {
        Self::start_limited(db, views, Some(auth), Default::default()).await
    }

    /// Starts viewcast on `db` with `auth` (if any) and the given HTTP and
    /// websocket limits, and waits until it is healthy.
    pub async fn start_limited(
        db: &TestDb,
        views: &[(&str, &str)],
        auth: Option<viewcast::auth::AuthConfig>,
        http: viewcast::config::HttpLimits,
    ) -> TestServer {
        let server = Self::start_configured(
            &db.conninfo,
            views,
            Default::default(),
            auth,
            http,
            axum::Router::new(),
            Duration::ZERO,
        )
        .await;
        server.wait_healthy().await;
        server
    }

    /// [`TestServer::start_with_auth`], also serving `routes` beside the API
    /// (as the demo serves its token issuer).
    pub async fn start_with_auth_and_routes(
        db: &TestDb,
        views: &[(&str, &str)],
        auth: viewcast::auth::AuthConfig,
        routes: axum::Router,
    ) -> TestServer {
        let server = Self::start_configured(
            &db.conninfo,
            views,
            Default::default(),
            Some(auth),
            Default::default(),
            routes,
            Duration::ZERO,
        )
        .await;
        server.wait_healthy().await;
        server
    }

    /// Starts viewcast on `conninfo` with the given timeouts, without waiting.
    pub async fn start_with(
        conninfo: &str,
        views: &[(&str, &str)],
        timeouts: viewcast::pg::source::Timeouts,
    ) -> TestServer {
        Self::start_configured(
            conninfo,
            views,
            timeouts,
            None,
            Default::default(),
            axum::Router::new(),
            Duration::ZERO,
        )
        .await
    }

    /// Starts viewcast on `db` with `--linger-us` at `linger`, and waits
    /// until it is healthy.
    pub async fn start_lingering(
        db: &TestDb,
        views: &[(&str, &str)],
        linger: Duration,
    ) -> TestServer {
        let server = Self::start_configured(
            &db.conninfo,
            views,
            Default::default(),
            None,
            Default::default(),
            axum::Router::new(),
            linger,
        )
        .await;
        server.wait_healthy().await;
        server
    }

    async fn start_configured(
        conninfo: &str,
        views: &[(&str, &str)],
        timeouts: viewcast::pg::source::Timeouts,
        auth: Option<viewcast::auth::AuthConfig>,
        http: viewcast::config::HttpLimits,
        routes: axum::Router,
        linger: Duration,
    ) -> TestServer {
        init_logging();
        let dir = std::env::temp_dir().join(format!(
            "viewcast-queries-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("queries dir");
        for (name, sql) in views {
            std::fs::write(dir.join(format!("{name}.sql")), sql).expect("write view");
        }
        let config = Config {
            pg: conninfo.to_string(),
            queries: dir.clone(),
            listen: "127.0.0.1:0".into(),
            workers: 2,
            view_groups: viewcast::config::default_view_groups(2),
            publication: "viewcast".into(),
            timeouts,
            auth,
            cluster: None,
            merge_after: viewcast::config::DEFAULT_MERGE_AFTER,
            linger,
        };
        let running = viewcast::server::start_with_routes(config, http, routes)
            .await
            .expect("server starts");
        let addr = running.addr.to_string();
        TestServer { running, addr, dir }
    }

    pub async fn wait_healthy(&self) {
        self.wait_healthy_within(Duration::from_secs(120)).await;
    }

    pub async fn wait_healthy_within(&self, limit: Duration) {
        if let Err(last) = wait_healthy_at(&self.addr, limit).await {
            panic!("server did not become healthy within {limit:?}: {last}");
        }
    }

    /// Writes (or replaces) the view file `name.sql` in the server's queries directory.
    pub fn write_view(&self, name: &str, sql: &str) {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, sql).expect("write view");
        std::fs::rename(&tmp, self.dir.join(format!("{name}.sql"))).expect("rename view");
    }

    /// Removes the view file `name.sql`.
    pub fn remove_view(&self, name: &str) {
        std::fs::remove_file(self.dir.join(format!("{name}.sql"))).expect("remove view");
    }

    /// Waits until the server is healthy with progress at `target`; false if
    /// that takes longer than `limit`.
    pub async fn reaches(&self, target: Lsn, limit: Duration) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            let (status, body) = self.get("/healthz").await;
            let lsn: Lsn = body["lsn"].as_str().unwrap_or("0/0").parse().unwrap();
            if status == 200 && lsn >= target {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (status, body) = viewcast::client::get(&self.addr, path).await.expect("GET");
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    pub async fn follow(&self, view: &str) -> Follower {
        Follower::new(&self.addr, view).await
    }

    /// A follower of each of `views` (name, SQL), in order, as
    /// [`check_views`] takes them.
    pub async fn follow_all(&self, views: &[(&str, &str)]) -> Vec<Follower> {
        let mut followers = Vec::with_capacity(views.len());
        for (name, _) in views {
            followers.push(self.follow(name).await);
        }
        followers
    }

    pub async fn stop(self) {
        self.running.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until the server at `addr` answers `/healthz` with 200; the last
/// answer (or error) if that takes longer than `limit`.
pub async fn wait_healthy_at(addr: &str, limit: Duration) -> Result<(), String> {
    let start = std::time::Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        match viewcast::client::get(addr, "/healthz").await {
            Ok((200, _)) => return Ok(()),
            Ok((_, body)) => last = body,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// One event as the follower saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub event: String,
    pub lsn: Option<Lsn>,
    pub data: Value,
}

/// Follows a view's SSE stream and keeps the multiset a subscriber would show.
pub struct Follower {
    client: SseClient,
    pub columns: Vec<String>,
    pub rows: BTreeMap<String, i64>,
    pub lsn: Lsn,
    pub events: Vec<Seen>,
    pub error: Option<String>,
}

pub fn row_key(columns: &[String], row: &Value) -> String {
    let values = row.as_array().expect("row is an array");
    assert_eq!(values.len(), columns.len(), "row width matches columns");
    let mut obj = serde_json::Map::new();
    for (c, v) in columns.iter().zip(values) {
        obj.insert(c.clone(), v.clone());
    }
    Value::Object(obj).to_string()
}

impl Follower {
    /// Reconnects `self`'s view with `Last-Event-ID`, keeping the state built so
    /// far, as a browser's EventSource does; nothing is read yet.
    pub async fn reconnect(self, addr: &str, view: &str) -> Follower {
        let id = self.lsn.to_string();
        let client = SseClient::connect_from(addr, &format!("/views/{view}/sse"), Some(&id))
            .await
            .expect("resume");
        Follower {
            client,
            events: vec![],
            ..self
        }
    }

    pub async fn new(addr: &str, view: &str) -> Follower {
        Self::at(addr, &format!("/views/{view}/sse")).await
    }

    /// Follows the SSE stream at `path` (e.g. `/views/v/sse?project_id=7`).
    pub async fn at(addr: &str, path: &str) -> Follower {
        let client = SseClient::connect(addr, path).await.expect("subscribe");
        let mut f = Follower {
            client,
            columns: vec![],
            rows: BTreeMap::new(),
            lsn: Lsn(0),
            events: vec![],
            error: None,
        };
        f.next().await.expect("snapshot event");
        f
    }

    /// Reads and applies one event.
    pub async fn next(&mut self) -> Option<Seen> {
        tokio::time::timeout(Duration::from_secs(30), self.try_next())
            .await
            .expect("event within 30 s")
            .expect("stream")
    }

    /// Reads and applies one event, however long it takes; `Err` if the
    /// connection fails.
    pub async fn try_next(&mut self) -> Result<Option<Seen>, String> {
        let Some(ev) = self.client.next_event().await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let data: Value = serde_json::from_str(&ev.data).expect("event data is JSON");
        let lsn = data
            .get("lsn")
            .and_then(|l| l.as_str())
            .map(|l| l.parse::<Lsn>().expect("lsn"));
        match ev.event.as_str() {
            "snapshot" => {
                self.error = None;
                self.columns = data["columns"]
                    .as_array()
                    .expect("columns")
                    .iter()
                    .map(|c| c["name"].as_str().unwrap_or("").to_string())
                    .collect();
                self.rows.clear();
                for row in data["rows"].as_array().expect("rows") {
                    *self.rows.entry(row_key(&self.columns, row)).or_insert(0) += 1;
                }
            }
            "diff" => {
                for ch in data["changes"].as_array().expect("changes") {
                    let k = row_key(&self.columns, &ch["row"]);
                    let n = self.rows.entry(k.clone()).or_insert(0);
                    *n += ch["diff"].as_i64().expect("diff");
                    if *n == 0 {
                        self.rows.remove(&k);
                    }
                }
            }
            "progress" => {}
            "error" => self.error = Some(data["message"].as_str().unwrap_or("").to_string()),
            other => panic!("unexpected event {other}"),
        }
        if let Some(l) = lsn {
            assert!(l >= self.lsn, "LSNs never go back: {l} after {}", self.lsn);
            self.lsn = l;
        }
        let seen = Seen {
            event: ev.event,
            lsn,
            data,
        };
        self.events.push(seen.clone());
        Ok(Some(seen))
    }

    /// Reads events until `done` holds; panics if the stream ends first.
    pub async fn wait_until(&mut self, what: &str, mut done: impl FnMut(&Follower) -> bool) {
        while !done(self) {
            if self.next().await.is_none() {
                panic!("stream ended before {what}");
            }
        }
    }

    /// Reads events until the view has reached `lsn`.
    pub async fn wait_for(&mut self, lsn: Lsn) {
        while self.lsn < lsn {
            if self.next().await.is_none() {
                panic!("stream ended before {lsn}");
            }
            if let Some(e) = &self.error {
                panic!("view failed: {e}");
            }
        }
    }

    /// Events from index `from` on that were diffs.
    pub fn diffs_since(&self, from: usize) -> Vec<&Seen> {
        self.events[from..]
            .iter()
            .filter(|e| e.event == "diff")
            .collect()
    }
}

/// Asserts two multisets are equal, printing the differing rows first.
pub fn assert_same(view: &str, at: Lsn, got: &BTreeMap<String, i64>, want: &BTreeMap<String, i64>) {
    if got == want {
        return;
    }
    let mut report = format!("view {view} differs from Postgres at {at}:\n");
    for (k, n) in want {
        let g = got.get(k).copied().unwrap_or(0);
        if g != *n {
            report.push_str(&format!("  postgres {n} × viewcast {g} × {k}\n"));
        }
    }
    for (k, g) in got {
        if !want.contains_key(k) {
            report.push_str(&format!("  postgres 0 × viewcast {g} × {k}\n"));
        }
    }
    panic!("{report}");
}

/// Waits until every follower has reached the current WAL position, then
/// compares each with Postgres running its view's SQL. Returns that LSN.
pub async fn check_views(db: &TestDb, followers: &mut [Follower], views: &[(&str, &str)]) -> Lsn {
    let lsn = db.lsn().await;
    for (f, (name, sql)) in followers.iter_mut().zip(views) {
        f.wait_for(lsn).await;
        assert_same(name, lsn, &f.rows, &db.oracle(sql).await);
    }
    lsn
}

/// [`check_views`] for one view.
pub async fn check_view(db: &TestDb, f: &mut Follower, name: &str, sql: &str) -> Lsn {
    check_views(db, std::slice::from_mut(f), &[(name, sql)]).await
}
