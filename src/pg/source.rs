//! The replication source: snapshot, then stream, as one ordered sequence of
//! events for the controller, across every fault Postgres or the network can
//! throw at it.
//!
//! ```text
//! publication covers the wanted tables (created or extended first)
//! create temporary slot (exported snapshot S, consistent point C)
//!   └─ catalog + COPY of every table at S ─▶ Resync at C (a diff against what
//!                                            the views hold: all of it the first time)
//! START_REPLICATION from C
//!   └─ Begin … Insert/Update/Delete/Truncate … Commit ─▶ Transaction at end_lsn
//!   └─ keepalive outside a transaction ─▶ Progress
//!   └─ a table's shape changed (Relation), the catalog poll saw DDL, the views
//!      want another table, a failed table's retry is due:
//!        temporary slot #2 (S2, C2) ─ catalog + COPY of just those tables at S2
//!        stream transactions before C2 are held back ─▶ one Resync at C2
//! ```
//!
//! The source keeps every followed table's current rows, found by key
//! (`table_rows.rs`). That is how it supplies the full old row for updates
//! and deletes under REPLICA IDENTITY DEFAULT, fills unchanged TOASTed
//! values, and after a lost connection turns a fresh snapshot into a diff
//! against what the views already hold: a subscriber sees one transaction
//! that brings it up to date, never a gap or a duplicate. A dataflow group
//! that begins to hold a table gets its rows from this state too
//! ([`SourceControl::Rows`]), sent between transactions.
//!
//! Faults (see [`super::errors`]): a transient one ends the session and the
//! source reconnects with backoff; a definite one is reported
//! ([`SourceStatus::Failed`]) and retried slowly. A failure confined to one
//! table (its snapshot, a value that does not decode) fails that table alone
//! and is retried. The slot is temporary, so it goes with the connection and
//! never holds WAL for a viewcast that is gone; the price is a fresh snapshot
//! after every reconnect.
//!
//! Keepalives and liveness: the source reports the LSN the views reflect (not
//! what it handed to the workers) every [`STATUS_INTERVAL`]; when nothing has
//! arrived for a third of the silence timeout it asks the server for a reply,
//! and a connection silent for the whole timeout is presumed half-open and
//! dropped (PostgreSQL docs, "Streaming Replication Protocol").

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::catalog::{Relation as CatalogRelation, Resolution, TableInfo};
use super::errors::{Backoff, Class, DEFINITE_RETRY};
use super::lsn::Lsn;
use super::pgoutput::{LogicalMessage, OldTuple, Relation, Tuple, TupleValue};
use super::replication::{
    ReplicationConnection, ReplicationError, ReplicationStream, StreamMessage,
};
use super::snapshot::{read_tables, SnapshotError, TablesRead};
use super::table_rows::{packed_key, TableRows};
use crate::dataflow::{InFlight, Updates};
use crate::repr::{Datum, PackedRow, Row};

/// How often the applied position is reported to Postgres: often enough that
/// WAL is released promptly and a shutting-down server hears our position
/// quickly, and far inside the default `wal_sender_timeout` of 60 s.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

static SLOT_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Timeouts that decide when a connection is given up.
#[derive(Clone, Debug)]
pub struct Timeouts {
    /// Opening a connection (TCP, TLS, authentication).
    pub connect: Duration,
    /// The replication stream may be silent this long before it is presumed
    /// dead; after a third of it the source asks the server for a reply.
    pub silence: Duration,
    /// How often the catalog is checked for DDL the stream does not carry
    /// (dropped or created tables, partitions attached, privileges).
    pub schema_poll: Duration,
}

/// Default connect timeout: a server that has not accepted a connection in
/// this long is down or unreachable.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default silence timeout: three unanswered keepalive requests, 10 s apart.
pub const DEFAULT_SILENCE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default schema poll: DDL the stream does not announce shows within seconds.
pub const DEFAULT_SCHEMA_POLL: Duration = Duration::from_secs(5);

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: DEFAULT_CONNECT_TIMEOUT,
            silence: DEFAULT_SILENCE_TIMEOUT,
            schema_poll: DEFAULT_SCHEMA_POLL,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    #[error("postgres: {}", super::error_text(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Connect(#[from] super::ConnectError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("{0}")]
    Decode(String),
    /// Something the user must set up (permissions, publication).
    #[error("{0}")]
    Setup(String),
    #[error("{what} timed out after {after:?}")]
    Timeout { what: &'static str, after: Duration },
    /// The dataflow was replaced: everything must be read again.
    #[error("the dataflow was rebuilt; reading every table again")]
    Reload,
}

impl SourceError {
    pub fn class(&self) -> Class {
        match self {
            SourceError::Replication(e) => e.class(),
            SourceError::Postgres(e) => super::errors::classify_pg(e),
            SourceError::Connect(e) if e.is_transient() => Class::Transient,
            SourceError::Connect(_) => Class::Definite,
            SourceError::Snapshot(e) => e.class(),
            SourceError::Decode(_) | SourceError::Timeout { .. } | SourceError::Reload => {
                Class::Transient
            }
            SourceError::Setup(_) => Class::Definite,
        }
    }
}

/// What the source tells the controller, in stream order.
#[derive(Debug)]
pub enum SourceEvent {
    /// Tables were (re)read at a consistent point `lsn`; carries the changes of
    /// every followed table up to `lsn`.
    Resync(Box<Resync>),
    /// One committed transaction.
    Transaction {
        lsn: Lsn,
        updates: Updates,
    },
    /// Everything up to `lsn` has been delivered.
    Progress {
        lsn: Lsn,
    },
    Status(SourceStatus),
    /// A table can no longer be followed from the stream (a value did not
    /// decode, a change to a row viewcast does not know); it is retried.
    TableFailed {
        table: usize,
        message: String,
    },
    /// The current rows of a followed table, as [`SourceControl::Rows`]
    /// asked: its state after the last transaction or resync sent before
    /// this event, and nothing after (none if the table is not followed).
    Rows {
        table: usize,
        rows: Vec<PackedRow>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceStatus {
    /// Streaming from a snapshot taken at `snapshot_lsn`.
    Streaming { snapshot_lsn: Lsn },
    /// A transient failure; reconnecting.
    Reconnecting { reason: String },
    /// A definite failure someone must fix; retried slowly.
    Failed { reason: String },
}

/// A table that is new to the views, or a new version of one whose columns
/// changed (the views over the old version are rebuilt over the new one).
#[derive(Debug, Clone)]
pub struct AddedTable {
    pub id: usize,
    pub replaces: Option<usize>,
}

#[derive(Debug, Default)]
pub struct Resync {
    pub lsn: Lsn,
    /// Every table was read again (a new connection).
    pub full: bool,
    /// Each name the views use (and each name a Postgres view among them
    /// reads), and the table id or view it resolves to, or why not.
    pub names: Vec<(Vec<String>, Result<Resolution, String>)>,
    /// Every followed table, as of `lsn`.
    pub tables: Vec<Arc<TableInfo>>,
    pub added: Vec<AddedTable>,
    /// Tables no longer followed (dropped, renamed, no longer read).
    pub removed: Vec<usize>,
    /// Tables that could not be read; views over them fail until a retry works.
    pub failed: Vec<(usize, String)>,
    /// All rows of added tables, and the changes of the other tables.
    pub updates: Updates,
    /// Tables copied from Postgres for this resync.
    pub copied: usize,
    /// Tables read again successfully with their shape unchanged (a failed
    /// one among them has recovered).
    pub reread: Vec<usize>,
    /// The role's TimeZone, DateStyle and collation at `lsn`.
    pub settings: crate::sql::SessionSettings,
}

/// Requests from the controller.
#[derive(Debug)]
pub enum SourceControl {
    /// The dataflow was replaced by an empty one: read everything again.
    Reload,
    /// The controller needs a new LSN soon (its clock steps between LSNs
    /// are running out) although nothing it follows changes: the source
    /// writes a logical message of no content to the WAL, which the stream
    /// answers with a keepalive at a new position.
    NeedProgress,
    /// The current rows of these tables, for a dataflow group that starts
    /// holding them: answered with [`SourceEvent::Rows`] between
    /// transactions, once everything the state holds has been sent.
    Rows(Vec<usize>),
}

pub struct SourceConfig {
    pub conninfo: String,
    pub publication: String,
    /// Credit for rows handed over but not yet through the dataflow; also
    /// where the applied LSN (what Postgres may be told) comes from.
    pub in_flight: Arc<InFlight>,
    /// The table names the views read; a change is followed at the next
    /// transaction boundary.
    pub wanted: watch::Receiver<Vec<Vec<String>>>,
    pub timeouts: Timeouts,
}

/// A change to a table's state, as the undo log keeps it.
enum Undo {
    /// Table `.0` gained the row: undone by removing it.
    Inserted(usize, PackedRow),
    /// Table `.0` lost the row: undone by putting it back.
    Removed(usize, PackedRow),
}

/// One followed table: its definition and its current rows.
struct Followed {
    info: Arc<TableInfo>,
    rows: TableRows,
    /// Changes of transactions that commit before this LSN are already in the
    /// rows (they were read at a snapshot), or must wait for a re-read.
    skip_before: Lsn,
    /// Why the table is not followed now.
    failed: Option<String>,
}

pub struct Source {
    config: SourceConfig,
    pg_config: super::PgConfig,
    tables: BTreeMap<usize, Followed>,
    by_oid: HashMap<u32, usize>,
    names: Vec<(Vec<String>, Result<Resolution, String>)>,
    /// Catalog fingerprints of the names at the last read.
    fingerprints: HashMap<Vec<String>, String>,
    next_id: usize,
    /// What the transaction being received changed in the tables' state, in
    /// order, so a connection lost before its Commit can be undone.
    undo: Vec<Undo>,
    /// An installed resync not yet delivered.
    stash: Option<Stash>,
    events: mpsc::UnboundedSender<SourceEvent>,
    control: mpsc::UnboundedReceiver<SourceControl>,
    /// Tables whose rows the controller asked for and has not been sent.
    rows_wanted: Vec<usize>,
}

/// Session settings that fix the text formats values are decoded from.
pub const SESSION_SETTINGS: &str =
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET extra_float_digits = 1; \
     SET bytea_output = 'hex'; SET IntervalStyle = 'postgres'";

/// What the next resync must do.
#[derive(Default)]
struct WantResync {
    /// Resolve the names again (the views want other tables, or the poll saw DDL).
    names: bool,
    /// Tables to read again whatever their shape.
    oids: HashSet<u32>,
}

impl WantResync {
    fn is_set(&self) -> bool {
        self.names || !self.oids.is_empty()
    }
}

/// Tables read at a temporary slot's point `lsn`, installed in the source's
/// state, waiting for the stream to reach `lsn` so they can be delivered
/// together with the transactions held back until then.
struct Pending {
    resync: Resync,
}

/// What [`Source::install`] replaced, so a resync that is never delivered
/// (the connection failed first) can be taken back: the state must always be
/// what the views were handed, or the next diff against it would be wrong.
struct Stash {
    /// Length of the undo log when the tables were installed: changes after
    /// it apply to the new state, changes before it to the old.
    undo_mark: usize,
    /// What the install changed, in order.
    tables: Vec<Stashed>,
    names: Vec<(Vec<String>, Result<Resolution, String>)>,
    fingerprints: HashMap<Vec<String>, String>,
}

enum Stashed {
    /// The previous entry of a table id (`None`: it was added).
    Table(usize, Option<Followed>),
    /// A table's previous `skip_before` and `failed` (its rows unchanged).
    Meta(usize, Lsn, Option<String>),
}

/// One transaction being received.
struct Txn {
    final_lsn: Lsn,
    updates: Updates,
}

/// Where a fingerprint poll's result comes back.
type PollResult = (u64, Result<HashMap<Vec<String>, String>, String>);

impl Source {
    pub fn new(
        config: SourceConfig,
        events: mpsc::UnboundedSender<SourceEvent>,
        control: mpsc::UnboundedReceiver<SourceControl>,
    ) -> Result<Source, String> {
        let mut pg_config = super::PgConfig::parse(&config.conninfo)
            .map_err(|e| format!("invalid --pg conninfo: {e}"))?;
        if pg_config.pg.get_connect_timeout().is_none() {
            pg_config.pg.connect_timeout(config.timeouts.connect);
        }
        Ok(Source {
            config,
            pg_config,
            tables: BTreeMap::new(),
            by_oid: HashMap::new(),
            names: Vec::new(),
            fingerprints: HashMap::new(),
            next_id: 0,
            undo: Vec::new(),
            stash: None,
            events,
            control,
            rows_wanted: Vec::new(),
        })
    }

    fn emit(&self, event: SourceEvent) {
        let _ = self.events.send(event);
    }

    /// Runs until `shutdown` turns true. Never gives up: transient failures
    /// reconnect with backoff, definite ones are reported and retried slowly.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::default();
        loop {
            let mut streamed = false;
            let result = tokio::select! {
                r = self.session(&mut streamed) => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            if streamed {
                backoff.reset();
            }
            let e = match result {
                Ok(()) => return,
                Err(SourceError::Reload) => {
                    info!("reading every table again into a new dataflow");
                    self.forget_everything();
                    continue;
                }
                Err(e) => e,
            };
            let class = e.class();
            let reason = e.to_string();
            let wait = backoff.next(class);
            match class {
                Class::Transient => {
                    warn!(error = %reason, retry_in_ms = wait.as_millis() as u64, "replication interrupted; reconnecting");
                    self.emit(SourceEvent::Status(SourceStatus::Reconnecting { reason }));
                }
                Class::Definite => {
                    tracing::error!(error = %reason, retry_in_s = wait.as_secs(), "replication failed; retrying later");
                    self.emit(SourceEvent::Status(SourceStatus::Failed { reason }));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                c = self.control.recv() => match c {
                    Some(SourceControl::Reload) => self.forget_everything(),
                    // Answered once the stream runs again.
                    Some(SourceControl::Rows(tables)) => self.rows_wanted.extend(tables),
                    Some(SourceControl::NeedProgress) | None => {}
                },
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// After the dataflow was replaced: every table is new to it.
    fn forget_everything(&mut self) {
        // The requests were the old dataflow's.
        self.rows_wanted.clear();
        self.tables.clear();
        self.by_oid.clear();
        self.names.clear();
        self.fingerprints.clear();
        self.undo.clear();
        self.stash = None;
    }

    async fn connect_sql(&self) -> Result<tokio_postgres::Client, SourceError> {
        let client = tokio::time::timeout(
            self.config.timeouts.connect,
            super::connect_sql(&self.pg_config),
        )
        .await
        .map_err(|_| SourceError::Timeout {
            what: "connecting to PostgreSQL",
            after: self.config.timeouts.connect,
        })??;
        client.batch_execute(SESSION_SETTINGS).await?;
        Ok(client)
    }

    async fn connect_replication(&self) -> Result<ReplicationConnection, SourceError> {
        tokio::time::timeout(
            self.config.timeouts.connect,
            ReplicationConnection::connect(&self.pg_config),
        )
        .await
        .map_err(|_| SourceError::Timeout {
            what: "opening a replication connection",
            after: self.config.timeouts.connect,
        })?
        .map_err(SourceError::from)
    }

    fn slot_name() -> String {
        format!(
            "viewcast_{}_{}",
            std::process::id(),
            SLOT_COUNTER.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// One connection's life: snapshot, then stream until something fails.
    async fn session(&mut self, streamed: &mut bool) -> Result<(), SourceError> {
        self.rollback_uncommitted();
        let wanted = self.config.wanted.borrow_and_update().clone();
        self.prepare_publication(&wanted).await?;
        let mut repl = self.connect_replication().await?;
        let slot = repl.create_slot(&Self::slot_name()).await?;
        info!(slot = %slot.name, consistent_point = %slot.consistent_point, "replication slot created");
        let read = self.read_at(&slot.snapshot_name, &wanted, |_| true).await?;
        let mut resync = self.install(read, slot.consistent_point);
        resync.full = true;
        let lsn = resync.lsn;
        self.deliver(resync).await;
        let stream = repl
            .start_replication(&slot.name, &self.config.publication, lsn, 1)
            .await?;
        *streamed = true;
        self.emit(SourceEvent::Status(SourceStatus::Streaming {
            snapshot_lsn: lsn,
        }));
        self.stream(stream, lsn).await
    }

    /// Resolves the wanted names on a short connection and makes sure the
    /// publication covers them, and the tables the views among them read,
    /// before any slot is created: a table's changes are published only from
    /// the commit that adds it on.
    async fn prepare_publication(&self, wanted: &[Vec<String>]) -> Result<(), SourceError> {
        let client = self.connect_sql().await?;
        let texts: Vec<String> = wanted
            .iter()
            .map(|n| super::catalog::regclass_text(n))
            .collect();
        // A view's `_RETURN` rule (its query) depends on each relation the
        // query reads. Other rules (`DO ALSO`/`INSTEAD` actions) only write
        // their targets: publishing those would make Postgres refuse their
        // updates and deletes where they have no replica identity.
        let rows = client
            .query(
                "WITH RECURSIVE rel(oid) AS (
                     SELECT to_regclass(w.name)::oid FROM unnest($1::text[]) AS w(name)
                     UNION
                     SELECT d.refobjid FROM rel
                     JOIN pg_class v ON v.oid = rel.oid AND v.relkind = 'v'
                     JOIN pg_rewrite r ON r.ev_class = rel.oid AND r.rulename = '_RETURN'
                     JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                      AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> rel.oid
                 )
                 SELECT DISTINCT format('%I.%I', n.nspname, c.relname), c.relkind::text
                 FROM rel
                 JOIN pg_class c ON c.oid = rel.oid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
                &[&texts],
            )
            .await?;
        let tables: Vec<(String, bool)> = rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1) == "p"))
            .collect();
        self.ensure_publication(&client, &tables).await
    }

    /// Reads `names` at an exported snapshot on a connection of its own,
    /// closed again afterwards (an idle session would hold up a smart shutdown
    /// of the server). Tables `copy` rejects are resolved but not copied.
    async fn read_at(
        &self,
        snapshot: &str,
        names: &[Vec<String>],
        copy: impl FnMut(&TableInfo) -> bool,
    ) -> Result<TablesRead, SourceError> {
        let mut client = self.connect_sql().await?;
        let tx = client.transaction().await?;
        tx.batch_execute(&format!(
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
            snapshot.replace('\'', "''")
        ))
        .await?;
        let read = read_tables(&tx, names, &self.config.publication, copy).await?;
        tx.commit().await?;
        Ok(read)
    }

    /// Installs tables read at `lsn` into the state and describes the change
    /// for the views. Followed tables that were not copied are unchanged.
    /// What it replaced is kept in `self.stash` until the resync is delivered.
    fn install(&mut self, mut read: TablesRead, lsn: Lsn) -> Resync {
        let mut resync = Resync {
            lsn,
            copied: read.rows.len(),
            settings: read.settings.clone(),
            ..Default::default()
        };
        let mut stash = Stash {
            undo_mark: self.undo.len(),
            tables: Vec::new(),
            names: self.names.clone(),
            fingerprints: self.fingerprints.clone(),
        };
        let mut names = Vec::new();
        let mut seen: HashMap<u32, Result<usize, String>> = HashMap::new();
        for (name, resolved) in std::mem::take(&mut read.names) {
            let mut info = match resolved {
                Ok(CatalogRelation::Table(info)) => info,
                Ok(CatalogRelation::View(view)) => {
                    names.push((name, Ok(Resolution::View(Arc::new(view)))));
                    continue;
                }
                Err(reason) => {
                    names.push((name, Err(reason)));
                    continue;
                }
            };
            let oid = info.oid;
            if let Some(r) = seen.get(&oid) {
                names.push((name, r.clone().map(Resolution::Table)));
                continue;
            }
            let existing = self.by_oid.get(&oid).copied();
            let outcome = match read.rows.remove(&oid) {
                // Not copied: a followed table whose shape is unchanged.
                None => match existing {
                    Some(id) => Ok(id),
                    None => Err(format!("table {} was not read", info.qualified_name())),
                },
                Some(Err(reason)) => match existing {
                    Some(id) => {
                        let t = self.tables.get_mut(&id).expect("followed");
                        stash
                            .tables
                            .push(Stashed::Meta(id, t.skip_before, t.failed.clone()));
                        t.failed = Some(reason.clone());
                        t.skip_before = Lsn(u64::MAX);
                        resync.failed.push((id, reason));
                        Ok(id)
                    }
                    None => Err(reason),
                },
                Some(Ok(rows)) => match existing {
                    Some(id) if self.tables[&id].info.same_shape(&info) => {
                        let t = self.tables.get_mut(&id).expect("followed");
                        let fresh = TableRows::from_rows(&t.info, rows);
                        TableRows::diff_into(id, &t.rows, &fresh, &mut resync.updates);
                        let old_rows = std::mem::replace(&mut t.rows, fresh);
                        stash.tables.push(Stashed::Table(
                            id,
                            Some(Followed {
                                info: t.info.clone(),
                                rows: old_rows,
                                skip_before: t.skip_before,
                                failed: t.failed.clone(),
                            }),
                        ));
                        t.failed = None;
                        t.skip_before = lsn;
                        resync.reread.push(id);
                        Ok(id)
                    }
                    replaced => {
                        let id = self.next_id;
                        self.next_id += 1;
                        info.id = id;
                        let info = Arc::new(info);
                        if let Some(old) = replaced {
                            stash
                                .tables
                                .push(Stashed::Table(old, self.tables.remove(&old)));
                        }
                        stash.tables.push(Stashed::Table(id, None));
                        let state = TableRows::from_rows(&info, rows);
                        resync
                            .updates
                            .extend(state.iter().map(|row| (id, row.clone(), 1)));
                        self.tables.insert(
                            id,
                            Followed {
                                rows: state,
                                info,
                                skip_before: lsn,
                                failed: None,
                            },
                        );
                        self.by_oid.insert(oid, id);
                        resync.added.push(AddedTable {
                            id,
                            replaces: replaced,
                        });
                        Ok(id)
                    }
                },
            };
            seen.insert(oid, outcome.clone());
            names.push((name, outcome.map(Resolution::Table)));
        }
        // Followed tables no wanted name resolves to any more.
        let kept: HashSet<usize> = names
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok().and_then(Resolution::table))
            .collect();
        let gone: Vec<usize> = self
            .tables
            .keys()
            .copied()
            .filter(|id| !kept.contains(id))
            .collect();
        for id in gone {
            if let Some(t) = self.tables.remove(&id) {
                self.by_oid.remove(&t.info.oid);
                stash.tables.push(Stashed::Table(id, Some(t)));
            }
            if !resync.added.iter().any(|a| a.replaces == Some(id)) {
                resync.removed.push(id);
            }
        }
        self.names = names.clone();
        resync.names = names;
        resync.tables = self.tables.values().map(|t| t.info.clone()).collect();
        self.fingerprints.extend(read.fingerprints);
        self.stash = Some(stash);
        resync
    }

    /// Takes back an installed resync that was never delivered.
    fn unstash(&mut self) {
        let Some(stash) = self.stash.take() else {
            return;
        };
        self.undo_to(stash.undo_mark);
        for entry in stash.tables.into_iter().rev() {
            match entry {
                Stashed::Table(id, Some(t)) => {
                    self.tables.insert(id, t);
                }
                Stashed::Table(id, None) => {
                    self.tables.remove(&id);
                }
                Stashed::Meta(id, skip_before, failed) => {
                    if let Some(t) = self.tables.get_mut(&id) {
                        t.skip_before = skip_before;
                        t.failed = failed;
                    }
                }
            }
        }
        self.by_oid = self
            .tables
            .iter()
            .map(|(id, t)| (t.info.oid, *id))
            .collect();
        self.names = stash.names;
        self.fingerprints = stash.fingerprints;
    }

    /// Hands a resync to the controller once there is credit for its rows.
    async fn deliver(&mut self, resync: Resync) {
        info!(
            lsn = %resync.lsn,
            tables = resync.tables.len(),
            added = resync.added.len(),
            removed = resync.removed.len(),
            failed = resync.failed.len(),
            rows = resync.updates.len(),
            copied = resync.copied,
            full = resync.full,
            "tables read"
        );
        for (id, reason) in &resync.failed {
            warn!(table = id, error = %reason, "table cannot be read; its views fail until it can");
        }
        self.config
            .in_flight
            .reserve(resync.lsn.0, resync.updates.len())
            .await;
        self.emit(SourceEvent::Resync(Box::new(resync)));
        // Delivered: the state is what the views were handed.
        self.stash = None;
        self.undo.clear();
    }

    /// The position to acknowledge: what the views reflect, never more than
    /// what this session handed over.
    fn ack(&self, handed: Lsn) -> Lsn {
        Lsn(handed.0.min(self.config.in_flight.applied()))
    }

    async fn stream(
        &mut self,
        mut stream: ReplicationStream,
        start: Lsn,
    ) -> Result<(), SourceError> {
        let silence = self.config.timeouts.silence;
        let mut handed = start;
        let mut in_tx: Option<Txn> = None;
        // Transactions held back while tables are re-read.
        let mut hold: Option<Updates> = None;
        let mut pending: Option<Pending> = None;
        let mut want = WantResync::default();
        let mut status = tokio::time::interval(STATUS_INTERVAL);
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(self.config.timeouts.schema_poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry = tokio::time::interval(DEFINITE_RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        retry.tick().await;
        let (poll_tx, mut poll_rx) = mpsc::unbounded_channel::<PollResult>();
        let mut poll_seq = 0u64;
        let mut polling = false;
        let mut last_rx = Instant::now();
        let mut wanted = self.config.wanted.clone();
        loop {
            let mut poll_now = false;
            tokio::select! {
                msg = stream.next() => {
                    last_rx = Instant::now();
                    match msg? {
                        StreamMessage::XLogData { data, .. } => {
                            let msg = LogicalMessage::parse(data)
                                .map_err(|e| SourceError::Decode(e.to_string()))?;
                            match msg {
                                LogicalMessage::Begin(b) => {
                                    if pending.as_ref().is_some_and(|p| b.final_lsn >= p.resync.lsn) {
                                        let p = pending.take().expect("checked");
                                        handed = p.resync.lsn;
                                        self.deliver(p.resync).await;
                                        last_rx = Instant::now();
                                    }
                                    in_tx = Some(Txn { final_lsn: b.final_lsn, updates: Vec::new() });
                                }
                                LogicalMessage::Commit(c) => {
                                    let txn = in_tx.take().map(|t| t.updates).unwrap_or_default();
                                    if let Some(p) = pending.as_mut() {
                                        p.resync.updates.extend(txn);
                                    } else if let Some(h) = hold.as_mut() {
                                        h.extend(txn);
                                    } else {
                                        self.undo.clear();
                                        tracing::trace!(lsn = %c.end_lsn, rows = txn.len(), "commit");
                                        self.reserve(c.end_lsn, txn.len(), &mut stream, handed).await?;
                                        self.emit(SourceEvent::Transaction { lsn: c.end_lsn, updates: txn });
                                        handed = c.end_lsn;
                                        last_rx = Instant::now();
                                    }
                                }
                                LogicalMessage::Relation(r) => {
                                    if let Some(oid) = self.relation(&r) {
                                        // The rest of this transaction and all
                                        // until the re-read wait for it.
                                        want.oids.insert(oid);
                                        hold.get_or_insert_with(Vec::new);
                                    }
                                    poll_now = true;
                                }
                                other => {
                                    if let Some(txn) = in_tx.as_mut() {
                                        self.change(other, txn);
                                    }
                                }
                            }
                        }
                        StreamMessage::Keepalive { wal_end, reply_requested } => {
                            if in_tx.is_none() {
                                if pending.as_ref().is_some_and(|p| wal_end >= p.resync.lsn) {
                                    let p = pending.take().expect("checked");
                                    handed = p.resync.lsn;
                                    self.deliver(p.resync).await;
                                    last_rx = Instant::now();
                                }
                                if pending.is_none() && hold.is_none() && wal_end > handed {
                                    handed = wal_end;
                                    self.emit(SourceEvent::Progress { lsn: wal_end });
                                }
                            }
                            if reply_requested {
                                stream.send_status(self.ack(handed), false).await?;
                            }
                        }
                    }
                }
                _ = status.tick() => {
                    let quiet = last_rx.elapsed();
                    if quiet >= silence {
                        return Err(ReplicationError::Silent(quiet).into());
                    }
                    stream.send_status(self.ack(handed), quiet >= silence / 3).await?;
                }
                _ = poll.tick() => poll_now = true,
                Some((seq, result)) = poll_rx.recv() => {
                    polling = false;
                    match result {
                        Ok(fps) if seq == poll_seq => self.compare_fingerprints(&fps, &mut want),
                        Ok(_) => {}
                        Err(e) => debug!(error = %e, "schema poll failed"),
                    }
                }
                _ = retry.tick() => {
                    for t in self.tables.values() {
                        if t.failed.is_some() {
                            want.oids.insert(t.info.oid);
                        }
                    }
                }
                changed = wanted.changed() => {
                    if changed.is_ok() {
                        want.names = true;
                    }
                }
                c = self.control.recv() => match c {
                    Some(SourceControl::Reload) => return Err(SourceError::Reload),
                    Some(SourceControl::NeedProgress) => self.mark_wal(),
                    Some(SourceControl::Rows(tables)) => self.rows_wanted.extend(tables),
                    None => {}
                },
            }
            // The state is what was sent only between transactions, with no
            // resync installed ahead of the stream and none held back.
            if in_tx.is_none() && pending.is_none() && hold.is_none() {
                self.send_rows();
            }
            if poll_now && !polling {
                polling = true;
                let names: Vec<Vec<String>> = self.names.iter().map(|(n, _)| n.clone()).collect();
                let config = self.pg_config.clone();
                let publication = self.config.publication.clone();
                let tx = poll_tx.clone();
                let seq = poll_seq;
                let limit = self.config.timeouts.connect;
                tokio::spawn(async move {
                    let result = tokio::time::timeout(
                        limit * 2,
                        poll_fingerprints(config, names, publication),
                    )
                    .await
                    .unwrap_or_else(|_| Err("timed out".into()));
                    let _ = tx.send((seq, result));
                });
            }
            if in_tx.is_none() && pending.is_none() && want.is_set() {
                let w = std::mem::take(&mut want);
                let mut resync = self.reread(&mut stream, handed, w).await?;
                poll_seq += 1;
                last_rx = Instant::now();
                resync.updates.splice(0..0, hold.take().unwrap_or_default());
                pending = Some(Pending { resync });
            }
        }
    }

    /// Answers the controller's requests for tables' rows from the state.
    fn send_rows(&mut self) {
        let mut wanted = std::mem::take(&mut self.rows_wanted);
        wanted.sort_unstable();
        wanted.dedup();
        for table in wanted {
            let rows = self
                .tables
                .get(&table)
                .map(|t| t.rows.iter().cloned().collect())
                .unwrap_or_default();
            self.emit(SourceEvent::Rows { table, rows });
        }
    }

    /// Waits for credit for `rows` at `lsn`, keeping the server informed
    /// meanwhile so a long wait is not taken for a dead connection.
    async fn reserve(
        &self,
        lsn: Lsn,
        rows: usize,
        stream: &mut ReplicationStream,
        handed: Lsn,
    ) -> Result<(), SourceError> {
        let reserve = self.config.in_flight.reserve(lsn.0, rows);
        tokio::pin!(reserve);
        // Credit is there at once unless the dataflow is behind: only a wait
        // that lasts sends status updates (an interval's first tick is
        // immediate, and a status per commit is work for both ends).
        let first = tokio::time::Instant::now() + STATUS_INTERVAL;
        let mut status = tokio::time::interval_at(first, STATUS_INTERVAL);
        loop {
            tokio::select! {
                biased;
                _ = &mut reserve => return Ok(()),
                _ = status.tick() => stream.send_status(self.ack(handed), false).await?,
            }
        }
    }

    /// Reads tables again at a new temporary slot's snapshot while the main
    /// stream waits (it is kept alive with status updates). The result is
    /// installed at once; it is delivered when the stream reaches its LSN.
    async fn reread(
        &mut self,
        stream: &mut ReplicationStream,
        handed: Lsn,
        want: WantResync,
    ) -> Result<Resync, SourceError> {
        let wanted = self.config.wanted.borrow_and_update().clone();
        let force: HashSet<u32> = want.oids;
        let shapes: HashMap<u32, Arc<TableInfo>> = self
            .tables
            .values()
            .map(|t| (t.info.oid, t.info.clone()))
            .collect();
        let filter = {
            let force = force.clone();
            move |info: &TableInfo| match shapes.get(&info.oid) {
                Some(old) => force.contains(&info.oid) || !old.same_shape(info),
                None => true,
            }
        };
        let (read, lsn) = {
            let this = &*self;
            let work = async {
                this.prepare_publication(&wanted).await?;
                let mut repl = this.connect_replication().await?;
                let slot = repl.create_slot(&Self::slot_name()).await?;
                let read = this.read_at(&slot.snapshot_name, &wanted, filter).await?;
                drop(repl);
                Ok::<_, SourceError>((read, slot.consistent_point))
            };
            tokio::pin!(work);
            let mut status = tokio::time::interval(STATUS_INTERVAL);
            loop {
                tokio::select! {
                    r = &mut work => break r?,
                    _ = status.tick() => stream.send_status(this.ack(handed), false).await?,
                }
            }
        };
        debug!(%lsn, tables = force.len(), "tables re-read");
        Ok(self.install(read, lsn))
    }

    /// Writes a non-transactional logical message of no content (prefix
    /// `viewcast`; pgoutput does not send it without the `messages` option)
    /// on a short connection of its own. Decoding passes it, so the stream
    /// sends a keepalive at the new WAL position, which becomes progress.
    fn mark_wal(&self) {
        let config = self.pg_config.clone();
        let limit = self.config.timeouts.connect;
        tokio::spawn(async move {
            let work = async {
                let client = super::connect_sql(&config)
                    .await
                    .map_err(|e| e.to_string())?;
                client
                    .simple_query("SELECT pg_logical_emit_message(false, 'viewcast', '')")
                    .await
                    .map_err(|e| super::error_text(&e))
            };
            match tokio::time::timeout(limit * 2, work).await {
                Ok(Ok(_)) => debug!("WAL position marked for progress"),
                Ok(Err(e)) => warn!(
                    error = %e,
                    "cannot write a logical message to move past an idle WAL; \
                     time-based views wait for the next write"
                ),
                Err(_) => warn!("writing a logical message timed out"),
            }
        });
    }

    /// Compares a poll's fingerprints with those of the last read.
    fn compare_fingerprints(&self, fps: &HashMap<Vec<String>, String>, want: &mut WantResync) {
        for (name, fp) in fps {
            if self.fingerprints.get(name) == Some(fp) {
                continue;
            }
            debug!(name = %name.join("."), "catalog changed");
            want.names = true;
            if let Some((_, Ok(Resolution::Table(id)))) = self.names.iter().find(|(n, _)| n == name)
            {
                if let Some(t) = self.tables.get(id) {
                    want.oids.insert(t.info.oid);
                }
            }
        }
    }

    async fn ensure_publication(
        &self,
        client: &tokio_postgres::Client,
        tables: &[(String, bool)],
    ) -> Result<(), SourceError> {
        let name = &self.config.publication;
        let quoted = super::replication::quote_ident(name);
        let row = client
            .query_opt(
                "SELECT puballtables, pubviaroot FROM pg_publication WHERE pubname = $1",
                &[name],
            )
            .await?;
        let wanted: Vec<String> = tables.iter().map(|(t, _)| t.clone()).collect();
        let partitioned = tables.iter().any(|(_, p)| *p);
        match row {
            None => {
                let mut sql = if wanted.is_empty() {
                    format!("CREATE PUBLICATION {quoted}")
                } else {
                    format!(
                        "CREATE PUBLICATION {quoted} FOR TABLE {}",
                        wanted.join(", ")
                    )
                };
                // A partitioned table's changes arrive as the table's own,
                // whichever partition they touch, and partitions attached
                // later are covered.
                sql.push_str(" WITH (publish_via_partition_root = true)");
                if let Err(e) = client.batch_execute(&sql).await {
                    return Err(SourceError::Setup(format!(
                        "cannot create publication {quoted}: {}; create it as the tables' owner with: {sql}",
                        super::error_text(&e)
                    )));
                }
                info!(publication = %name, tables = wanted.len(), "publication created");
            }
            Some(r) => {
                let all: bool = r.get(0);
                let via_root: bool = r.get(1);
                if partitioned && !via_root {
                    let sql = format!(
                        "ALTER PUBLICATION {quoted} SET (publish_via_partition_root = true)"
                    );
                    if let Err(e) = client.batch_execute(&sql).await {
                        return Err(SourceError::Setup(format!(
                            "publication {quoted} must publish partitioned tables through their root: {}; run: {sql}",
                            super::error_text(&e)
                        )));
                    }
                    info!(publication = %name, "publication now publishes partitions through their root");
                }
                if all {
                    return Ok(());
                }
                let have = client
                    .query(
                        "SELECT format('%I.%I', schemaname, tablename) FROM pg_publication_tables WHERE pubname = $1",
                        &[name],
                    )
                    .await?;
                let have: HashSet<String> = have.iter().map(|r| r.get(0)).collect();
                let missing: Vec<String> = wanted
                    .iter()
                    .filter(|t| !have.contains(*t))
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    let sql = format!(
                        "ALTER PUBLICATION {quoted} ADD TABLE {}",
                        missing.join(", ")
                    );
                    if let Err(e) = client.batch_execute(&sql).await {
                        return Err(SourceError::Setup(format!(
                            "publication {quoted} lacks tables the views read and cannot be extended: {}; run: {sql}",
                            super::error_text(&e)
                        )));
                    }
                    info!(publication = %name, added = missing.len(), "publication extended");
                }
            }
        }
        Ok(())
    }

    /// Restores the state to what was last handed over: the changes of a
    /// transaction whose Commit never arrived, of transactions held back, and
    /// tables read but not yet delivered.
    fn rollback_uncommitted(&mut self) {
        self.unstash();
        self.undo_to(0);
    }

    fn undo_to(&mut self, mark: usize) {
        while self.undo.len() > mark {
            let Some(change) = self.undo.pop() else {
                break;
            };
            let (Undo::Inserted(i, _) | Undo::Removed(i, _)) = &change;
            let Some(t) = self.tables.get_mut(i) else {
                continue;
            };
            match change {
                Undo::Inserted(_, row) => {
                    t.rows.remove_row(&row);
                }
                Undo::Removed(_, row) => t.rows.insert(row),
            }
        }
    }

    /// Records which table a relation id is, and whether its shape differs
    /// from what the views were built on: if so, returns its OID, and its
    /// changes wait until it has been read again.
    fn relation(&mut self, r: &Relation) -> Option<u32> {
        let id = *self.by_oid.get(&r.id)?;
        let t = self.tables.get_mut(&id)?;
        let info = &t.info;
        let key_flags: Vec<usize> = r
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.flags & 1 == 1)
            .map(|(i, _)| i)
            .collect();
        let same = r.namespace == info.schema
            && r.name == info.name
            && r.columns.len() == info.columns.len()
            && r.columns
                .iter()
                .zip(&info.columns)
                .all(|(a, b)| a.name == b.name && a.type_oid == b.type_oid)
            && (info.key.is_none()
                || info.full_identity()
                || info.key.as_deref() == Some(key_flags.as_slice()));
        if same {
            return None;
        }
        info!(table = %info.qualified_name(), "table definition changed; reading it again");
        t.skip_before = Lsn(u64::MAX);
        Some(r.id)
    }

    fn change(&mut self, msg: LogicalMessage, txn: &mut Txn) {
        let at = txn.final_lsn;
        let (rel, result) = match msg {
            LogicalMessage::Insert(m) => (
                m.relation_id,
                self.apply(m.relation_id, at, None, Some(&m.new), &mut txn.updates),
            ),
            LogicalMessage::Update(m) => (
                m.relation_id,
                self.apply(
                    m.relation_id,
                    at,
                    Some(m.old.as_ref()),
                    Some(&m.new),
                    &mut txn.updates,
                ),
            ),
            LogicalMessage::Delete(m) => (
                m.relation_id,
                self.apply(
                    m.relation_id,
                    at,
                    Some(Some(&m.old)),
                    None,
                    &mut txn.updates,
                ),
            ),
            LogicalMessage::Truncate(t) => {
                for oid in t.relation_ids {
                    let Some(&i) = self.by_oid.get(&oid) else {
                        continue;
                    };
                    let Some(table) = self.tables.get_mut(&i) else {
                        continue;
                    };
                    if at < table.skip_before {
                        continue;
                    }
                    for row in table.rows.drain() {
                        txn.updates.push((i, row.clone(), -1));
                        self.undo.push(Undo::Removed(i, row));
                    }
                }
                return;
            }
            _ => return,
        };
        if let Err(message) = result {
            if let Some(&i) = self.by_oid.get(&rel) {
                if let Some(t) = self.tables.get_mut(&i) {
                    if t.failed.is_none() {
                        warn!(table = %t.info.qualified_name(), error = %message, "table failed");
                        t.failed = Some(message.clone());
                        t.skip_before = Lsn(u64::MAX);
                        self.emit(SourceEvent::TableFailed { table: i, message });
                    }
                }
            }
        }
    }

    /// Applies one row change to the table state and emits its updates. `old` is
    /// `Some(None)` for an update that sent no old tuple (key unchanged).
    fn apply(
        &mut self,
        rel: u32,
        at: Lsn,
        old: Option<Option<&OldTuple>>,
        new: Option<&Tuple>,
        out: &mut Updates,
    ) -> Result<(), String> {
        let Some(&i) = self.by_oid.get(&rel) else {
            return Ok(());
        };
        let Some(table) = self.tables.get(&i) else {
            return Ok(());
        };
        if at < table.skip_before {
            return Ok(());
        }
        let info = table.info.clone();
        // Find the old row: by the key the message carries, or the new row's key.
        let old_row = match old {
            None => None,
            Some(old_tuple) => {
                if info.key.is_none() && !info.full_identity() {
                    return Err(format!(
                        "{}: an update or delete arrived for a table without a key or replica identity; \
                         viewcast cannot tell which row changed (add a primary key or set REPLICA IDENTITY FULL)",
                        info.qualified_name()
                    ));
                }
                // Only the key columns are needed (and only they are sure to be
                // present: others may be NULL in a key tuple or unchanged TOAST).
                let tuple = match old_tuple {
                    Some(OldTuple::Key(t)) | Some(OldTuple::Full(t)) => t,
                    None => new.ok_or("update without a new tuple")?,
                };
                let key = match &info.key {
                    Some(cols) => {
                        let values = cols
                            .iter()
                            .map(|&c| {
                                decode_value(&info, tuple, c).ok_or_else(|| {
                                    format!(
                                        "{}: key column {} missing from the change",
                                        info.qualified_name(),
                                        info.columns[c].name
                                    )
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        packed_key(values.iter())
                    }
                    None if old_tuple.is_some() => PackedRow::pack(&decode(&info, tuple, None)?),
                    None => {
                        return Err(format!(
                            "update of {} without an old row",
                            info.qualified_name()
                        ))
                    }
                };
                let rows = &mut self.tables.get_mut(&i).expect("followed").rows;
                // Two rows share a key only inside a transaction under a
                // deferrable key (say, two rows swapping their ids): the one
                // changing now is the one that was there before, not the one
                // this transaction wrote.
                let undo = &self.undo;
                let written_now = |r: &PackedRow| {
                    undo.iter()
                        .any(|u| matches!(u, Undo::Inserted(t, w) if *t == i && w == r))
                };
                let Some(packed) = rows.remove(&key, |r| !written_now(r)) else {
                    return Err(format!(
                        "{}: change to a row viewcast does not know (key {key:?})",
                        info.qualified_name()
                    ));
                };
                self.undo.push(Undo::Removed(i, packed.clone()));
                out.push((i, packed.clone(), -1));
                Some(packed)
            }
        };
        if let Some(t) = new {
            let row = decode(&info, t, old_row.as_ref())?;
            let packed = PackedRow::pack(&row);
            let rows = &mut self.tables.get_mut(&i).expect("followed").rows;
            rows.insert_decoded(packed.clone(), &row);
            self.undo.push(Undo::Inserted(i, packed.clone()));
            out.push((i, packed, 1));
        }
        Ok(())
    }
}

/// The catalog fingerprints of `names` on a short connection of its own.
async fn poll_fingerprints(
    config: super::PgConfig,
    names: Vec<Vec<String>>,
    publication: String,
) -> Result<HashMap<Vec<String>, String>, String> {
    let client = super::connect_sql(&config)
        .await
        .map_err(|e| e.to_string())?;
    super::catalog::fingerprints(&client, &names, &publication)
        .await
        .map_err(|e| super::error_text(&e))
}

/// Decodes a tuple's text values; unchanged TOAST values come from `old`
/// (only those columns of it are decoded).
fn decode(info: &TableInfo, t: &Tuple, old: Option<&PackedRow>) -> Result<Row, String> {
    if t.len() != info.columns.len() {
        return Err(format!(
            "{}: tuple has {} columns, table has {}",
            info.qualified_name(),
            t.len(),
            info.columns.len()
        ));
    }
    t.iter()
        .zip(&info.columns)
        .enumerate()
        .map(|(i, (v, col))| match v {
            TupleValue::Null => Ok(Datum::Null),
            TupleValue::Text(b) => {
                let s = std::str::from_utf8(b)
                    .map_err(|_| format!("column {}: value is not UTF-8", col.name))?;
                Datum::from_text(&col.ty, s)
                    .map_err(|e| format!("column {} of {}: {e}", col.name, info.qualified_name()))
            }
            TupleValue::UnchangedToast => {
                old.and_then(|o| o.columns(&[i]).pop()).ok_or_else(|| {
                    format!(
                        "column {} of {}: unchanged TOAST value without a known old row",
                        col.name,
                        info.qualified_name()
                    )
                })
            }
            TupleValue::Binary(_) => Err(format!(
                "column {}: binary values were not requested",
                col.name
            )),
        })
        .collect()
}

/// Decodes column `c` of a tuple, if the tuple carries its value (a key
/// tuple's other columns are NULL, an unchanged TOAST value is not sent).
fn decode_value(info: &TableInfo, t: &Tuple, c: usize) -> Option<Datum> {
    match (t.get(c)?, &info.columns.get(c)?.ty) {
        (TupleValue::Null, _) => Some(Datum::Null),
        (TupleValue::Text(b), ty) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| Datum::from_text(ty, s).ok()),
        _ => None,
    }
}
