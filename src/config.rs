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
    /// Independent groups the workers are split into (`--view-groups`):
    /// each group keeps its own copy of every table and runs a share of
    /// the views, so a transaction's views move in parallel and each view's
    /// progress is tracked by its group's workers alone. 1 runs every view
    /// on every worker. A cluster runs one group.
    pub view_groups: usize,
    /// Publication to create or extend with the tables the views read.
    pub publication: String,
    /// When a connection to Postgres is given up.
    pub timeouts: crate::pg::source::Timeouts,
    /// The key view endpoints check bearer tokens against (see
    /// `crate::auth`). Default `None`: no token is asked for, as before
    /// authentication existed; set it whenever the listen address is
    /// reachable by anyone who should not read every view.
    pub auth: Option<crate::auth::AuthConfig>,
    /// Run as one process of a cluster (`--cluster`, `--process`); `None`:
    /// the whole dataflow in this process.
    pub cluster: Option<crate::cluster::Cluster>,
    /// When more than this many transactions wait for a busy dataflow, they
    /// go in merged, as one time (`--merge-after`, see
    /// [`DEFAULT_MERGE_AFTER`]).
    pub merge_after: usize,
    /// How long after handing transactions to the dataflow the next ones
    /// wait, gathering others to go in with them (`--linger-us`; zero: a
    /// transaction that finds the dataflow idle goes in at once).
    pub linger: std::time::Duration,
}

/// Default for `--merge-after`: a burst of up to 16 transactions that find
/// the dataflow busy still reaches subscribers as one diff per transaction.
/// 1 merges whenever two or more wait, which halves the latency of a
/// sustained stream that keeps the dataflow busy (docs/protocol.md,
/// "Transactions that arrive together").
pub const DEFAULT_MERGE_AFTER: usize = 16;

/// Default worker count: the machine's cores.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Default `--view-groups`: one per worker, at most four. Each group
/// arranges every table again (handles to the same rows, about 28 bytes a
/// row each), so past a few groups the copies cost more memory than the
/// parallel views save time; more workers than groups share each group's
/// views by key.
pub const MAX_DEFAULT_VIEW_GROUPS: usize = 4;

pub fn default_view_groups(workers: usize) -> usize {
    workers.clamp(1, MAX_DEFAULT_VIEW_GROUPS)
}

/// Default cap on open HTTP connections. Each is a task, a socket and its
/// buffers (tens of KiB), and most are long-lived SSE subscribers: 10 000 fit
/// in a few hundred MiB, and past that many subscribers one process is the
/// wrong shape anyway. Keep it under the process's open-file limit
/// (`ulimit -n`), or accepting fails first (the server then pauses and
/// retries, as it does at the cap).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Default time a client has to send a whole request head, counted from the
/// moment the server waits for one (a new connection, or the end of the
/// previous response on a kept-alive one). A browser sends its head in one
/// packet; 10 s tolerates a very poor link, while a client that trickles its
/// head byte by byte (slowloris) holds a connection slot for at most that
/// long. It is also how long an idle kept-alive connection is kept. An SSE
/// response in progress is not waiting for a head, so it is never cut.
pub const DEFAULT_HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Default cap on a request's head (request line and headers). Browsers send
/// well under 2 KiB here, large cookies included under 8 KiB; views have
/// short names and the API takes no large query strings. A longer head is
/// answered 431.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;

/// Default time a connection may have bytes waiting that its peer does not
/// accept. A subscriber that stops reading (or vanished without a FIN) would
/// otherwise hold its connection, and TCP's zero-window probes can keep that
/// going forever; an SSE stream with nothing to send is not affected.
pub const DEFAULT_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What an HTTP client may cost the server (see `http::serve`). No request
/// takes a body: one that declares a body is answered 413.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Open connections at most; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// See [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: std::time::Duration,
    /// See [`DEFAULT_MAX_HEADER_BYTES`].
    pub max_header_bytes: usize,
    /// See [`DEFAULT_WRITE_TIMEOUT`].
    pub write_timeout: std::time::Duration,
    /// What one websocket connection may hold.
    pub ws: WsLimits,
    /// Distinct parameter tuples one parameterized view keeps at once; a
    /// subscription to a further one is refused until others are released.
    pub max_tuples_per_view: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            ws: WsLimits::default(),
            max_tuples_per_view: crate::views::DEFAULT_MAX_TUPLES_PER_VIEW,
        }
    }
}

/// Limits of one websocket connection.
#[derive(Clone, Debug)]
pub struct WsLimits {
    /// Subscriptions one connection may hold: enough for any page, few enough
    /// that one client cannot make the server hold thousands of tuples.
    pub max_subscriptions: usize,
    /// Largest frame a client may send: subscribe messages are small.
    pub max_frame_bytes: usize,
    /// Bytes of changes a connection may hold back for a client that does
    /// not read (merged into one net change per subscription) before it is
    /// closed with 4008.
    pub max_pending_bytes: usize,
}

/// Default subscriptions per connection.
pub const DEFAULT_WS_MAX_SUBSCRIPTIONS: usize = 100;
/// Default largest client frame: 64 KiB.
pub const DEFAULT_WS_MAX_FRAME_BYTES: usize = 64 * 1024;
/// Default bytes of changes held for a slow client: 64 MiB.
pub const DEFAULT_WS_MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;

impl Default for WsLimits {
    fn default() -> Self {
        WsLimits {
            max_subscriptions: DEFAULT_WS_MAX_SUBSCRIPTIONS,
            max_frame_bytes: DEFAULT_WS_MAX_FRAME_BYTES,
            max_pending_bytes: DEFAULT_WS_MAX_PENDING_BYTES,
        }
    }
}
