//! The `viewcast` command: `serve`, `demo`, `check`, `tail`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::time::Duration;

use viewcast::config::{
    default_workers, Config, HttpLimits, DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_PUBLICATION,
};
use viewcast::pg::source::{Timeouts, DEFAULT_SCHEMA_POLL, DEFAULT_SILENCE_TIMEOUT};

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

#[derive(Subcommand)]
enum Command {
    /// Follow a database and serve the views in a directory of .sql files.
    Serve {
        /// Database to follow (conninfo or postgres:// URL); needs wal_level=logical.
        #[arg(long, env = "VIEWCAST_PG")]
        pg: String,
        /// Directory of NAME.sql files, one view each.
        #[arg(long, env = "VIEWCAST_QUERIES", default_value = "queries")]
        queries: PathBuf,
        /// Address to serve HTTP on.
        #[arg(long, env = "VIEWCAST_LISTEN", default_value = DEFAULT_LISTEN)]
        listen: String,
        /// Dataflow worker threads (default: the number of cores).
        #[arg(long, env = "VIEWCAST_WORKERS")]
        workers: Option<usize>,
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
        /// Open HTTP connections at most (SSE subscribers included); further
        /// clients wait until one closes. Keep it under `ulimit -n`.
        #[arg(long, env = "VIEWCAST_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
    },
    /// Start a throwaway PostgreSQL with example data and a writer, and serve queries/.
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
    Tail { addr: String, view: String },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
            publication,
            replication_timeout,
            schema_poll,
            max_connections,
        } => {
            let config = Config {
                pg,
                queries,
                listen,
                workers: workers.unwrap_or_else(default_workers),
                publication,
                timeouts: Timeouts {
                    silence: Duration::from_secs(replication_timeout.max(3)),
                    schema_poll: Duration::from_secs(schema_poll.max(1)),
                    ..Timeouts::default()
                },
            };
            let http = HttpLimits {
                max_connections: max_connections.max(1),
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
        Command::Tail { addr, view } => {
            let mut c =
                viewcast::client::SseClient::connect(&addr, &format!("/views/{view}/sse")).await?;
            while let Some(ev) = c.next_event().await? {
                println!("{} {} {}", ev.event, ev.id.unwrap_or_default(), ev.data);
            }
        }
    }
    Ok(())
}
