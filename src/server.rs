//! Wires the parts together: compile the views, start the dataflow, follow
//! Postgres, serve HTTP. No processing happens here.
//!
//! ```text
//! queries/*.sql ─ sql::compile ─▶ plans ─▶ dataflow::Dataflow (timely workers)
//! pg::source::Source ─Sink─▶ Dataflow::apply/advance ─Output─▶ views::Registry ─▶ http
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::dataflow::{Dataflow, InFlight, Output, Updates, DEFAULT_MAX_IN_FLIGHT_ROWS};
use crate::pg::catalog::{load_table, CatalogError};
use crate::pg::source::{Sink, Source, SourceConfig, SESSION_SETTINGS};
use crate::pg::Lsn;
use crate::sql::{self, Catalog};
use crate::views::{Refused, Registry, ViewDef};

/// How often progress events go out at most.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// A progress heartbeat goes out at least this often, even when nothing moved.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// How long startup waits for Postgres to accept connections.
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot read the queries directory {path}: {source}")]
    Queries {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid --pg conninfo: {0}")]
    Conninfo(String),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(crate::pg::ConnectError),
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("dataflow: {0}")]
    Dataflow(String),
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    dataflow: Option<Arc<Dataflow>>,
}

impl Running {
    /// Stops the source, the HTTP server and the workers.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        self.registry.close();
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        if let Some(df) = self.dataflow.take() {
            // Joining the workers blocks; do it off the async threads.
            let _ = tokio::task::spawn_blocking(move || drop(df)).await;
        }
    }
}

/// Reads `dir/*.sql`, sorted by name: one view per file, named by the file stem.
pub fn read_queries(dir: &Path) -> Result<Vec<(String, String)>, ServerError> {
    let err = |source| ServerError::Queries {
        path: dir.display().to_string(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") {
            continue;
        }
        let Some(name) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        let sql = std::fs::read_to_string(&path).map_err(err)?;
        out.push((name, sql));
    }
    out.sort();
    Ok(out)
}

async fn connect_with_patience(
    pg: &crate::pg::PgConfig,
) -> Result<tokio_postgres::Client, ServerError> {
    let start = std::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match crate::pg::connect_sql(pg).await {
            Ok(client) => return Ok(client),
            Err(e) if e.is_transient() && start.elapsed() < CONNECT_PATIENCE => {
                warn!(error = %e, "postgres not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(3));
            }
            Err(e) => return Err(ServerError::Connect(e)),
        }
    }
}

type Compiled = (
    Catalog,
    Vec<(String, String, sql::CompiledView)>,
    Vec<Refused>,
);

/// Connects to `pg` (waiting for it to come up) and compiles every view.
async fn connect_and_compile(
    pg: &str,
    queries: &[(String, String)],
) -> Result<Compiled, ServerError> {
    let pg = crate::pg::PgConfig::parse(pg).map_err(|e| ServerError::Conninfo(e.to_string()))?;
    let client = connect_with_patience(&pg).await?;
    client
        .batch_execute(SESSION_SETTINGS)
        .await
        .map_err(|e| ServerError::Connect(e.into()))?;
    compile_views(&client, queries).await
}

/// Compiles every view against the catalog. Refused views are returned with
/// their error and never reach the dataflow.
pub async fn compile_views(
    client: &tokio_postgres::Client,
    queries: &[(String, String)],
) -> Result<Compiled, ServerError> {
    let mut catalog = Catalog::default();
    let mut wanted: Vec<Vec<String>> = Vec::new();
    let is_view =
        |parts: &[String]| matches!(parts, [single] if queries.iter().any(|(n, _)| n == single));
    for (_, text) in queries {
        if let Ok(q) = sql::parse(text) {
            for r in sql::table_refs(&q) {
                if !wanted.contains(&r) && !is_view(&r) {
                    wanted.push(r);
                }
            }
        }
    }
    for parts in wanted {
        match load_table(client, &parts).await {
            Ok(info) => {
                if !catalog.tables.iter().any(|t| t.oid == info.oid) {
                    catalog.tables.push(Arc::new(info));
                }
            }
            Err(CatalogError::Postgres(e)) => {
                return Err(ServerError::Catalog(CatalogError::Postgres(e)))
            }
            Err(e) => catalog.refused.push((parts, e.to_string())),
        }
    }
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    let results = sql::compile_all(queries, &catalog);
    for ((name, text), result) in queries.iter().zip(results) {
        match result {
            Ok(v) => ok.push((name.clone(), text.clone(), v)),
            Err(e) => {
                let rendered = e.render(text);
                error!(view = %name, "view refused: {rendered}");
                refused.push(Refused {
                    name: name.clone(),
                    sql: text.clone(),
                    error: e.to_string(),
                    detail: rendered,
                });
            }
        }
    }
    Ok((catalog, ok, refused))
}

struct DataflowSink {
    dataflow: Arc<Dataflow>,
    registry: Arc<Registry>,
}

impl Sink for DataflowSink {
    fn transaction(&mut self, lsn: Lsn, updates: Updates) {
        self.dataflow.apply(lsn.0, updates);
    }
    fn progress(&mut self, lsn: Lsn) {
        self.dataflow.advance(lsn.0);
    }
    fn streaming(&mut self, up: bool, snapshot_lsn: Lsn) {
        self.registry.set_streaming(up, snapshot_lsn);
    }
    fn table_failed(&mut self, table: usize, message: String) {
        self.registry.fail_table(table, &message);
    }
    fn failed(&mut self, message: String) {
        error!(error = %message, "replication stopped");
        self.registry
            .fail_all(&format!("replication stopped: {message}"));
    }
}

/// Starts everything and returns once the HTTP listener is bound.
pub async fn start(config: Config) -> Result<Running, ServerError> {
    // Bind first: a taken port should fail before anything is started.
    let listener = tokio::net::TcpListener::bind(config.listen.as_str())
        .await
        .map_err(|source| ServerError::Listen {
            addr: config.listen.clone(),
            source,
        })?;
    let queries = read_queries(&config.queries)?;
    let (catalog, compiled, refused) = connect_and_compile(&config.pg, &queries).await?;
    info!(
        views = compiled.len(),
        refused = refused.len(),
        tables = catalog.tables.len(),
        "views compiled"
    );

    let mut defs = Vec::new();
    let mut plans = Vec::new();
    for (name, text, view) in compiled {
        let mut tables = Vec::new();
        view.plan.tables(&mut tables);
        defs.push((
            ViewDef {
                name,
                sql: text,
                plan: view.plan.to_string(),
                columns: view.columns,
            },
            tables,
        ));
        plans.push(view.plan);
    }
    let in_flight = Arc::new(InFlight::new(DEFAULT_MAX_IN_FLIGHT_ROWS));
    let registry = Arc::new(Registry::new(
        defs,
        refused,
        catalog.tables.len(),
        in_flight.clone(),
    ));

    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel();
    let dataflow = Arc::new(
        Dataflow::start(config.workers, catalog.tables.len(), plans, out_tx)
            .map_err(ServerError::Dataflow)?,
    );
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let in_flight_pump = in_flight.clone();
    let reg = registry.clone();
    let mut stop = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            let out = tokio::select! {
                out = out_rx.recv() => match out {
                    Some(out) => out,
                    None => return,
                },
                _ = stop.wait_for(|s| *s) => return,
            };
            match out {
                Output::Progress { lsn } => {
                    reg.advance(Lsn(lsn));
                    in_flight_pump.release_through(lsn);
                }
                Output::Batch { lsn, views } => {
                    for v in views {
                        reg.apply(v.view, Lsn(lsn), &v.rows, &v.errors);
                    }
                }
            }
        }
    }));

    let reg = registry.clone();
    let mut stop = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
        let mut last_heartbeat = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let heartbeat = last_heartbeat.elapsed() >= HEARTBEAT_INTERVAL;
                    if heartbeat {
                        last_heartbeat = std::time::Instant::now();
                    }
                    reg.announce_progress(heartbeat);
                }
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }));

    let source = Source::new(SourceConfig {
        conninfo: config.pg.clone(),
        publication: config.publication.clone(),
        tables: catalog.tables.clone(),
        in_flight,
    })
    .map_err(ServerError::Conninfo)?;
    let mut sink = DataflowSink {
        dataflow: dataflow.clone(),
        registry: registry.clone(),
    };
    let stop = shutdown_rx.clone();
    tasks.push(tokio::spawn(
        async move { source.run(&mut sink, stop).await },
    ));

    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: config.listen.clone(),
            source,
        })?;
    let app = crate::http::router(registry.clone());
    let mut stop = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        if let Err(e) = serve.await {
            error!(error = %e, "http server stopped");
        }
    }));
    info!(%addr, "serving");
    Ok(Running {
        addr,
        registry,
        shutdown,
        tasks,
        dataflow: Some(dataflow),
    })
}

/// `viewcast check`: compiles every view in `queries` against the database's
/// catalog and describes each one (columns and plan, or why it is refused).
/// Returns the report and whether every view compiled.
pub async fn check(pg: &str, queries: &Path) -> Result<(String, bool), ServerError> {
    let views = read_queries(queries)?;
    let (_, compiled, refused) = connect_and_compile(pg, &views).await?;
    let mut report = String::new();
    for (name, _) in &views {
        if let Some((_, _, view)) = compiled.iter().find(|(n, _, _)| n == name) {
            let cols: Vec<String> = view
                .columns
                .iter()
                .map(|c| format!("{} {}", c.name, c.ty.name()))
                .collect();
            report.push_str(&format!(
                "{name}: ok ({})\n{}\n",
                cols.join(", "),
                view.plan
            ));
        } else if let Some(r) = refused.iter().find(|r| &r.name == name) {
            report.push_str(&format!(
                "{name}: refused\n  {}\n\n",
                r.detail.replace('\n', "\n  ")
            ));
        }
    }
    Ok((report, refused.is_empty()))
}

/// Runs the server until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let running = start(config).await?;
    shutdown.await;
    info!("shutting down");
    running.stop().await;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM (what `docker stop` sends).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
