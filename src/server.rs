//! Wires the parts together: start the dataflow and the controller, follow
//! Postgres, watch the queries directory, serve HTTP. No processing happens
//! here.
//!
//! ```text
//! queries/*.sql ──(notify, SIGHUP)──▶ controller ◀──SourceEvent── pg::source::Source
//!                                         │ ▲
//!                              Command ▼  │ Output
//!                                     dataflow::Dataflow (timely workers)
//!                                         │
//!                                   views::Registry ──▶ http
//! ```
//!
//! Startup fails only for what an operator must fix before anything can work
//! (an unreadable queries directory, a taken port, a bad conninfo, a wrong
//! password, a certificate that does not verify, `wal_level`). A Postgres
//! that is down or restarting is waited for, with `/healthz` answering 503.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::cluster::Cluster;
use crate::config::{Config, HttpLimits};
use crate::controller::{Controller, ControllerConfig, ControllerInputs, TestHook};
use crate::dataflow::{Dataflow, InFlight, Output, DEFAULT_MAX_IN_FLIGHT_ROWS};
use crate::pg::catalog::{load_relation, resolve_all, CatalogError, Relation};
use crate::pg::source::{Source, SourceConfig, SESSION_SETTINGS};
use crate::pg::{ConnectError, PgConfig};
use crate::sql::{self, Catalog};
use crate::views::{Refused, Registry};

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
    #[error("{0}")]
    Setup(String),
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("dataflow: {0}")]
    Dataflow(String),
    #[error("authentication: {0}")]
    Auth(#[from] crate::auth::AuthError),
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Dropping it stops watching the queries directory.
    _watcher: Option<notify::RecommendedWatcher>,
    test_hooks: mpsc::UnboundedSender<TestHook>,
    /// Turns true when the server stops of its own accord (a follower
    /// whose leader stopped).
    finished: watch::Receiver<bool>,
}

impl Running {
    /// Makes a dataflow worker panic, as a bug would: for tests of what the
    /// server does then (it rebuilds the dataflow from a fresh snapshot).
    #[doc(hidden)]
    pub fn crash_a_worker(&self) {
        let _ = self.test_hooks.send(TestHook::CrashWorker);
    }

    /// Completes when the server stops of its own accord: a process of a
    /// cluster whose process 0 stopped.
    pub async fn finished(&self) {
        let mut f = self.finished.clone();
        // A closed channel (a server that never stops by itself): never.
        if f.wait_for(|done| *done).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Stops the source, the HTTP server, the controller and the workers.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        self.registry.close();
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
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
            .filter(|s| !s.starts_with('.'))
            .map(str::to_string)
        else {
            continue;
        };
        // A file removed between listing and reading is simply not there.
        let sql = match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(err(e)),
        };
        out.push((name, sql));
    }
    out.sort();
    Ok(out)
}

fn parse_conninfo(pg: &str) -> Result<PgConfig, ServerError> {
    PgConfig::parse(pg).map_err(|e| ServerError::Conninfo(e.to_string()))
}

/// Connects once, for startup checks and `check`.
async fn connect(pg: &PgConfig) -> Result<tokio_postgres::Client, ConnectError> {
    let mut pg = pg.clone();
    if pg.pg.get_connect_timeout().is_none() {
        pg.pg
            .connect_timeout(crate::pg::source::DEFAULT_CONNECT_TIMEOUT);
    }
    let client = crate::pg::connect_sql(&pg).await?;
    client.batch_execute(SESSION_SETTINGS).await?;
    Ok(client)
}

/// Fails startup for settings an operator must fix; a server that is merely
/// down is waited for.
async fn startup_check(pg: &PgConfig) -> Result<(), ServerError> {
    match connect(pg).await {
        Ok(client) => {
            let level: String = client
                .query_one("SHOW wal_level", &[])
                .await
                .map_err(|e| ServerError::Connect(e.into()))?
                .get(0);
            if level != "logical" {
                return Err(ServerError::Setup(format!(
                    "PostgreSQL runs with wal_level = {level}; viewcast needs wal_level = logical \
                     (set it in postgresql.conf and restart PostgreSQL)"
                )));
            }
            Ok(())
        }
        Err(e) if !e.is_transient() => Err(ServerError::Connect(e)),
        Err(e) => {
            warn!(error = %e, "postgres not reachable yet; serving and retrying");
            Ok(())
        }
    }
}

/// `viewcast check`: compiles the views against a database's catalog.
pub async fn compile_views(
    client: &tokio_postgres::Client,
    queries: &[(String, String)],
) -> Result<(Vec<(String, sql::CompiledView)>, Vec<Refused>), ServerError> {
    let mut catalog = Catalog::default();
    catalog.settings = crate::pg::catalog::session_settings(client)
        .await
        .map_err(|e| ServerError::Catalog(CatalogError::Postgres(e)))?;
    let names = resolve_all(&sql::table_names(queries), |parts| async move {
        match load_relation(client, &parts).await {
            Ok(relation) => Ok(Ok(relation)),
            Err(CatalogError::Postgres(e)) => Err(ServerError::Catalog(CatalogError::Postgres(e))),
            Err(e) => Ok(Err(e.to_string())),
        }
    })
    .await?;
    for (parts, resolved) in names {
        match resolved {
            Ok(Relation::Table(mut info)) => {
                let id = match catalog.tables.iter().find(|t| t.oid == info.oid) {
                    Some(t) => t.id,
                    None => {
                        info.id = catalog.tables.len();
                        catalog.tables.push(Arc::new(info));
                        catalog.tables.len() - 1
                    }
                };
                catalog.resolved.push((parts, id));
            }
            Ok(Relation::View(view)) => catalog.pg_views.push((parts, Arc::new(view))),
            Err(reason) => catalog.refused.push((parts, reason)),
        }
    }
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    let results = sql::compile_all(queries, &catalog);
    for ((name, text), result) in queries.iter().zip(results) {
        match result {
            Ok(v) => ok.push((name.clone(), v)),
            Err(e) => refused.push(Refused {
                name: name.clone(),
                sql: text.clone(),
                error: e.to_string(),
                detail: e.render(text),
            }),
        }
    }
    Ok((ok, refused))
}

/// Watches the queries directory; every event (and SIGHUP) asks the
/// controller to read it again. Returns the watcher, which must be kept.
fn watch_queries(
    dir: &Path,
    reload: mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let tx = reload.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Reading the files (as the reload itself does) is not a change.
        if res.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
            let _ = tx.send(());
        }
    });
    let watcher = match watcher.and_then(|mut w| {
        w.watch(dir, notify::RecursiveMode::NonRecursive)?;
        Ok(w)
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(error = %e, dir = %dir.display(), "cannot watch the queries directory; send SIGHUP to reload it");
            None
        }
    };
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            info!("SIGHUP: reading the queries directory again");
            if reload.send(()).is_err() {
                return;
            }
        }
    });
    watcher
}

/// Starts everything with the default HTTP limits; see [`start_with`].
pub async fn start(config: Config) -> Result<Running, ServerError> {
    start_with(config, HttpLimits::default()).await
}

/// Starts everything and returns once the HTTP listener is bound.
pub async fn start_with(config: Config, http: HttpLimits) -> Result<Running, ServerError> {
    start_with_routes(config, http, axum::Router::new()).await
}

/// [`start_with`], also serving `routes` (open to anyone, beside the API):
/// how an embedding program adds endpoints of its own without the server
/// knowing about them (the demo's token issuer, `crate::demo::routes`).
pub async fn start_with_routes(
    config: Config,
    http: HttpLimits,
    routes: axum::Router,
) -> Result<Running, ServerError> {
    // A key that cannot be used fails before anything starts.
    let auth = match &config.auth {
        Some(auth) => {
            let auth = crate::auth::Auth::from_config(auth)?;
            info!(
                algorithm = auth.algorithm(),
                "view endpoints need a bearer token"
            );
            Some(Arc::new(auth))
        }
        None => None,
    };
    // Bind first: a taken port should fail before anything is started.
    let listener = tokio::net::TcpListener::bind(config.listen.as_str())
        .await
        .map_err(|source| ServerError::Listen {
            addr: config.listen.clone(),
            source,
        })?;
    if let Some(cluster) = config.cluster.clone().filter(|c| !c.is_leader()) {
        return start_follower(config, cluster, http, routes, auth, listener).await;
    }
    let files = read_queries(&config.queries)?;
    let pg = parse_conninfo(&config.pg)?;
    startup_check(&pg).await?;

    let in_flight = Arc::new(InFlight::new(DEFAULT_MAX_IN_FLIGHT_ROWS));
    let registry = Arc::new(Registry::new(in_flight.clone()));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (wanted_tx, wanted_rx) = watch::channel(Vec::new());
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (reload_tx, reload_rx) = mpsc::unbounded_channel();
    let (hooks_tx, hooks_rx) = mpsc::unbounded_channel();
    let (tuples_tx, tuples_rx) = mpsc::unbounded_channel();
    registry.set_tuple_sink(tuples_tx);
    registry.set_max_tuples(http.max_tuples_per_view);
    if config.cluster.is_some() {
        registry.share_tuples();
    }

    let views = files.len();
    let dataflow = start_dataflow(
        (config.workers, config.view_groups),
        config.cluster.clone(),
        out_tx.clone(),
    )
    .await?;
    let controller = Controller::new(
        ControllerConfig {
            auth: auth.is_some(),
            dataflow,
            clustered: config.cluster.is_some(),
            queries_dir: config.queries.clone(),
            files,
            workers: (config.workers, config.view_groups),
            merge_after: config.merge_after,
            linger: config.linger,
            registry: registry.clone(),
            in_flight: in_flight.clone(),
            wanted: wanted_tx,
            source_control: control_tx,
        },
        out_tx,
    );
    let source = Source::new(
        SourceConfig {
            conninfo: config.pg.clone(),
            publication: config.publication.clone(),
            in_flight,
            wanted: wanted_rx,
            timeouts: config.timeouts.clone(),
        },
        events_tx,
        control_rx,
    )
    .map_err(ServerError::Conninfo)?;
    let watcher = watch_queries(&config.queries, reload_tx);

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(controller.run(ControllerInputs {
        source: events_rx,
        outputs: out_rx,
        reload: reload_rx,
        test_hooks: hooks_rx,
        tuples: tuples_rx,
        shutdown: shutdown_rx.clone(),
    })));
    tasks.push(tokio::spawn(source.run(shutdown_rx.clone())));
    let (addr, serving) = serve_http(
        listener,
        &config.listen,
        registry.clone(),
        auth,
        http,
        routes,
        shutdown_rx,
    )?;
    tasks.push(serving);
    info!(%addr, views, "serving");
    Ok(Running {
        addr,
        registry,
        shutdown,
        tasks,
        _watcher: watcher,
        test_hooks: hooks_tx,
        finished: watch::channel(false).1,
    })
}

/// Serves the API (and `routes`) on `listener` from `registry`; the
/// address it listens on and the task serving it.
fn serve_http(
    listener: tokio::net::TcpListener,
    listen: &str,
    registry: Arc<Registry>,
    auth: Option<Arc<crate::auth::Auth>>,
    http: HttpLimits,
    routes: axum::Router,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), ServerError> {
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: listen.to_string(),
            source,
        })?;
    let app = crate::http::router(
        crate::http::AppState {
            registry,
            auth,
            ws: http.ws.clone(),
            ws_open: Default::default(),
        },
        routes,
    );
    let task = tokio::spawn(crate::http::serve(listener, app, http, shutdown));
    Ok((addr, task))
}

/// Starts the dataflow's workers; in cluster mode, once every process of
/// the cluster has connected (which may take as long as they take to start).
async fn start_dataflow(
    (workers, groups): (usize, usize),
    cluster: Option<Cluster>,
    out: mpsc::UnboundedSender<Output>,
) -> Result<Dataflow, ServerError> {
    if let Some(c) = &cluster {
        info!(
            process = c.process,
            processes = c.processes(),
            "connecting to the cluster's other processes"
        );
    }
    let dataflow = tokio::task::spawn_blocking(move || {
        Dataflow::start(workers, groups, cluster.as_ref(), out)
    })
    .await
    .map_err(|e| ServerError::Dataflow(e.to_string()))?
    .map_err(ServerError::Dataflow)?;
    Ok(dataflow)
}

/// A process of a cluster other than process 0: its workers carry out the
/// commands process 0 sends, and it serves HTTP subscribers the views'
/// outputs as they reach it. It reads no queries and does not connect to
/// Postgres: the views, their definitions and the source's health come
/// from process 0.
async fn start_follower(
    config: Config,
    cluster: Cluster,
    http: HttpLimits,
    routes: axum::Router,
    auth: Option<Arc<crate::auth::Auth>>,
    listener: tokio::net::TcpListener,
) -> Result<Running, ServerError> {
    let in_flight = Arc::new(InFlight::new(DEFAULT_MAX_IN_FLIGHT_ROWS));
    let registry = Arc::new(Registry::new(in_flight.clone()));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (finished_tx, finished) = watch::channel(false);
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (tuples_tx, tuples_rx) = mpsc::unbounded_channel();
    let (hooks_tx, _) = mpsc::unbounded_channel();
    registry.set_tuple_sink(tuples_tx);
    registry.set_max_tuples(http.max_tuples_per_view);
    if config.cluster.is_some() {
        registry.share_tuples();
    }
    let process = cluster.process;
    let dataflow = start_dataflow((config.workers, 1), Some(cluster), out_tx).await?;
    registry.set_sizes(dataflow.sizes());
    let mut tasks = vec![tokio::spawn(crate::controller::follow(
        crate::controller::Following {
            registry: registry.clone(),
            in_flight,
            dataflow,
            outputs: out_rx,
            tuples: tuples_rx,
            finished: finished_tx,
        },
        shutdown_rx.clone(),
    ))];
    let (addr, serving) = serve_http(
        listener,
        &config.listen,
        registry.clone(),
        auth,
        http,
        routes,
        shutdown_rx,
    )?;
    tasks.push(serving);
    info!(%addr, process, "serving the views of process 0");
    Ok(Running {
        addr,
        registry,
        shutdown,
        tasks,
        _watcher: None,
        test_hooks: hooks_tx,
        finished,
    })
}

/// `viewcast check`: compiles every view in `queries` against the database's
/// catalog and describes each one (columns and plan, or why it is refused).
/// Returns the report and whether every view compiled.
pub async fn check(pg: &str, queries: &Path) -> Result<(String, bool), ServerError> {
    let views = read_queries(queries)?;
    let client = connect(&parse_conninfo(pg)?)
        .await
        .map_err(ServerError::Connect)?;
    let (compiled, refused) = compile_views(&client, &views).await?;
    let mut report = String::new();
    for (name, _) in &views {
        if let Some((_, view)) = compiled.iter().find(|(n, _)| n == name) {
            let cols: Vec<String> = view
                .columns
                .iter()
                .map(|c| format!("{} {}", c.name, c.ty.name()))
                .collect();
            report.push_str(&format!("{name}: ok ({})\n", cols.join(", ")));
            if !view.params.is_empty() {
                let params: Vec<String> = view
                    .params
                    .iter()
                    .map(|p| format!("{} {}", p.key(), p.ty.name()))
                    .collect();
                report.push_str(&format!("  parameters: {}\n", params.join(", ")));
                if view
                    .params
                    .iter()
                    .any(|p| p.from == crate::sql::ParamFrom::Token)
                {
                    report.push_str(
                        "  reads the caller's token: serve it with --jwt-secret or --jwt-public-key\n",
                    );
                }
            }
            report.push_str(&format!("{}\n", view.plan));
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
pub async fn run(
    config: Config,
    http: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let running = start_with(config, http).await?;
    tokio::select! {
        _ = shutdown => info!("shutting down"),
        _ = running.finished() => info!("process 0 of the cluster stopped; shutting down"),
    }
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
