//! One typed configuration for the server, filled from flags and environment
//! variables by `main.rs` (flags win).

use std::path::PathBuf;

/// Default publication name; one per database is enough for any number of views.
pub const DEFAULT_PUBLICATION: &str = "viewcast";
/// Default listen address: loopback, so a fresh install exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(Debug, Clone)]
pub struct Config {
    /// libpq-style conninfo or URL of the database to follow.
    pub pg: String,
    /// Directory of `NAME.sql` files, one view each.
    pub queries: PathBuf,
    /// `host:port` to serve HTTP on; a host name is resolved.
    pub listen: String,
    /// Timely worker threads.
    pub workers: usize,
    /// Publication to create or extend with the tables the views read.
    pub publication: String,
    /// When a connection to Postgres is given up.
    pub timeouts: crate::pg::source::Timeouts,
}

/// Default worker count: the machine's cores.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
