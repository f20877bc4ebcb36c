//! The `viewcast` command: `serve`, `demo`, `check`, `tail`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::time::Duration;

use viewcast::auth::AuthConfig;
use viewcast::cluster::Cluster;
use viewcast::config::{
    default_view_groups, default_workers, Config, HttpLimits, WsLimits, DEFAULT_LISTEN,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MERGE_AFTER, DEFAULT_PUBLICATION, DEFAULT_WS_MAX_FRAME_BYTES,
    DEFAULT_WS_MAX_PENDING_BYTES, DEFAULT_WS_MAX_SUBSCRIPTIONS,
};
use viewcast::pg::source::{Timeouts, DEFAULT_SCHEMA_POLL, DEFAULT_SILENCE_TIMEOUT};

/// mimalloc rather than glibc's malloc: the dataflow allocates and frees
/// short-lived rows and batches on every step from several threads, and
/// glibc's malloc and free took a fifth of its CPU (see
/// [`viewcast::alloc::configure`]).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "viewcast",
    version,
    about = "Live SQL views over PostgreSQL logical replication"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at startup: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Follow a database and serve the views in a directory of .sql files.
    Serve {
        /// Database to follow (conninfo or postgres:// URL); needs wal_level=logical.
        /// Not needed by a process of a cluster other than 0.
        #[arg(long, env = "VIEWCAST_PG")]
        pg: Option<String>,
        /// Directory of NAME.sql files, one view each.
        #[arg(long, env = "VIEWCAST_QUERIES", default_value = "queries")]
        queries: PathBuf,
        /// Address to serve HTTP on.
        #[arg(long, env = "VIEWCAST_LISTEN", default_value = DEFAULT_LISTEN)]
        listen: String,
        /// Dataflow worker threads (default: the number of cores).
        #[arg(long, env = "VIEWCAST_WORKERS")]
        workers: Option<usize>,
        /// Split the workers into this many groups, each with its own copy
        /// of the tables and a share of the views: a transaction's views
        /// then move in parallel, each on fewer workers (default: one group
        /// per worker, at most 4; 1: every view on every worker). Not with
        /// --cluster.
        #[arg(long, env = "VIEWCAST_VIEW_GROUPS", value_parser = clap::value_parser!(u64).range(1..))]
        view_groups: Option<u64>,
        /// Publication to create or extend with the tables the views read.
        #[arg(long, env = "VIEWCAST_PUBLICATION", default_value = DEFAULT_PUBLICATION)]
        publication: String,
        /// Seconds the replication stream may stay silent (keepalive requests
        /// unanswered) before the connection is presumed dead and reopened.
        #[arg(long, env = "VIEWCAST_REPLICATION_TIMEOUT", default_value_t = DEFAULT_SILENCE_TIMEOUT.as_secs())]
        replication_timeout: u64,
        /// Seconds between checks of the catalog for DDL the replication
        /// stream does not announce (dropped or created tables, partitions).
        #[arg(long, env = "VIEWCAST_SCHEMA_POLL", default_value_t = DEFAULT_SCHEMA_POLL.as_secs())]
        schema_poll: u64,
        /// When more than this many transactions wait for the dataflow (it
        /// is still applying earlier ones), they are applied as one step and
        /// subscribers get one diff for all of them. Lower: lower latency
        /// under a sustained stream; 1 merges whenever two or more wait.
        #[arg(long, env = "VIEWCAST_MERGE_AFTER", default_value_t = DEFAULT_MERGE_AFTER)]
        merge_after: usize,
        /// Microseconds transactions wait after the last ones went into the
        /// dataflow, so that those arriving meanwhile go in with them (each
        /// still its own diff, at its own LSN). Higher: less CPU per
        /// transaction under a fast stream, up to this much added latency;
        /// 0 (the default): a transaction that finds the dataflow idle goes
        /// in at once.
        #[arg(long, env = "VIEWCAST_LINGER_US", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
        linger_us: u64,
        /// Open HTTP connections at most (SSE subscribers included); further
        /// clients wait until one closes. Keep it under `ulimit -n`.
        #[arg(long, env = "VIEWCAST_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
        /// Distinct parameter tuples one parameterized view keeps at once;
        /// a subscription to another one is refused (429, or a websocket
        /// error) until some are released.
        #[arg(long, env = "VIEWCAST_MAX_TUPLES_PER_VIEW", default_value_t = viewcast::views::DEFAULT_MAX_TUPLES_PER_VIEW)]
        max_tuples_per_view: usize,
        /// Subscriptions one websocket connection may hold (more: close 4429).
        #[arg(long, env = "VIEWCAST_WS_MAX_SUBSCRIPTIONS", default_value_t = DEFAULT_WS_MAX_SUBSCRIPTIONS)]
        ws_max_subscriptions: usize,
        /// Largest frame a websocket client may send, in bytes.
        #[arg(long, env = "VIEWCAST_WS_MAX_FRAME_BYTES", default_value_t = DEFAULT_WS_MAX_FRAME_BYTES)]
        ws_max_frame_bytes: usize,
        /// Bytes of changes held for a websocket client that does not read
        /// before it is closed with 4008 (below that it gets the net change).
        #[arg(long, env = "VIEWCAST_WS_MAX_PENDING_BYTES", default_value_t = DEFAULT_WS_MAX_PENDING_BYTES)]
        ws_max_pending_bytes: usize,
        /// Ask for a bearer token (JWT) on the view endpoints, signed HS256
        /// with this secret. Prefer the environment variable: a flag shows
        /// in `ps`.
        #[arg(long, env = "VIEWCAST_JWT_SECRET", hide_env_values = true)]
        jwt_secret: Option<String>,
        /// Ask for a bearer token (JWT) on the view endpoints, signed with
        /// the private half of the public key in this PEM file: RS256 for an
        /// RSA key, ES256 for an EC P-256 key. Not with --jwt-secret.
        #[arg(long, env = "VIEWCAST_JWT_PUBLIC_KEY")]
        jwt_public_key: Option<PathBuf>,
        /// Run one dataflow across several processes: a file listing each
        /// process's host:port for the dataflow's own communication, one
        /// per line, in process order (all processes use the same file).
        /// Process 0 follows Postgres; every process serves HTTP.
        #[arg(long, env = "VIEWCAST_CLUSTER", requires = "process")]
        cluster: Option<PathBuf>,
        /// This process's index in the --cluster file (0 follows Postgres).
        #[arg(long, env = "VIEWCAST_PROCESS", requires = "cluster")]
        process: Option<usize>,
    },
    /// Start a throwaway PostgreSQL with example data and a writer, and serve queries/.
    // Verifies tokens with a secret of its own and issues them for its demo
    // users (GET /demo/token, see demo.rs); no key options.
    Demo {
        #[arg(long, default_value = "queries")]
        queries: PathBuf,
        #[arg(long, default_value = DEFAULT_LISTEN)]
        listen: String,
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Compile the views in a directory against a database and print each plan
    /// or why it is refused; exits with status 1 if any view is refused.
    Check {
        #[arg(default_value = "queries")]
        queries: PathBuf,
        #[arg(long, env = "VIEWCAST_PG")]
        pg: String,
    },
    /// Print a view's events as they arrive: `viewcast tail 127.0.0.1:8080 orders`.
    Tail {
        addr: String,
        view: String,
        /// Bearer token (JWT) for a server that asks for one.
        #[arg(long, env = "VIEWCAST_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    viewcast::alloc::configure();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            pg,
            queries,
            listen,
            workers,
            view_groups,
            publication,
            replication_timeout,
            schema_poll,
            merge_after,
            linger_us,
            max_connections,
            max_tuples_per_view,
            ws_max_subscriptions,
            ws_max_frame_bytes,
            ws_max_pending_bytes,
            jwt_secret,
            jwt_public_key,
            cluster,
            process,
        } => {
            let auth =
                AuthConfig::from_options(jwt_secret, jwt_public_key).context("viewcast serve")?;
            let cluster = match (cluster, process) {
                (Some(file), Some(process)) => Some(
                    Cluster::from_file(&file, process)
                        .map_err(anyhow::Error::msg)
                        .context("viewcast serve --cluster")?,
                ),
                _ => None,
            };
            let workers = workers.unwrap_or_else(default_workers).max(1);
            let view_groups = match (view_groups, &cluster) {
                (Some(g), Some(_)) if g > 1 => anyhow::bail!(
                    "viewcast serve: --view-groups {g} with --cluster: a cluster runs every view on every worker (one group)"
                ),
                (Some(g), _) if g as usize > workers => anyhow::bail!(
                    "viewcast serve: --view-groups {g} is more than the {workers} workers: each group needs a worker of its own"
                ),
                (Some(g), _) => g as usize,
                (None, Some(_)) => 1,
                (None, None) => default_view_groups(workers),
            };
            let follower = cluster.as_ref().is_some_and(|c| !c.is_leader());
            let pg = match pg {
                Some(pg) => pg,
                None if follower => String::new(),
                None => anyhow::bail!(
                    "viewcast serve: --pg (or VIEWCAST_PG) is required: the database to follow"
                ),
            };
            let config = Config {
                pg,
                queries,
                listen,
                workers,
                view_groups,
                publication,
                timeouts: Timeouts {
                    silence: Duration::from_secs(replication_timeout.max(3)),
                    schema_poll: Duration::from_secs(schema_poll.max(1)),
                    ..Timeouts::default()
                },
                auth,
                cluster,
                merge_after,
                linger: Duration::from_micros(linger_us),
            };
            let http = HttpLimits {
                max_connections: max_connections.max(1),
                max_tuples_per_view: max_tuples_per_view.max(1),
                ws: WsLimits {
                    max_subscriptions: ws_max_subscriptions.max(1),
                    max_frame_bytes: ws_max_frame_bytes.max(1024),
                    max_pending_bytes: ws_max_pending_bytes.max(1024),
                },
                ..HttpLimits::default()
            };
            viewcast::server::run(config, http, viewcast::server::shutdown_signal())
                .await
                .context("viewcast serve")?;
        }
        Command::Demo {
            queries,
            listen,
            workers,
        } => {
            viewcast::demo::run(queries, listen, workers.unwrap_or_else(default_workers)).await?;
        }
        Command::Check { queries, pg } => {
            let (report, ok) = viewcast::server::check(&pg, &queries)
                .await
                .context("viewcast check")?;
            print!("{report}");
            if !ok {
                std::process::exit(1);
            }
        }
        Command::Tail { addr, view, token } => {
            // In the query, as a browser's EventSource sends it.
            let query = token
                .map(|t| format!("?access_token={t}"))
                .unwrap_or_default();
            let mut c =
                viewcast::client::SseClient::connect(&addr, &format!("/views/{view}/sse{query}"))
                    .await?;
            while let Some(ev) = c.next_event().await? {
                println!("{} {} {}", ev.event, ev.id.unwrap_or_default(), ev.data);
            }
        }
    }
    Ok(())
}
