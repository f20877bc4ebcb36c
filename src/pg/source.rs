//! The replication source: snapshot, then stream, as one ordered sequence of
//! transactions for the dataflow.
//!
//! ```text
//! create temporary slot (exported snapshot S, consistent point C)
//!   └─ COPY every table in a REPEATABLE READ transaction using S ─▶ one transaction at C
//! START_REPLICATION from C
//!   └─ Begin … Insert/Update/Delete/Truncate … Commit(end_lsn) ─▶ one transaction at end_lsn
//!   └─ keepalive(wal_end) outside a transaction ─▶ progress to wal_end
//! ```
//! The source keeps every table's current rows by key. That is how it supplies
//! the full old row for updates and deletes under REPLICA IDENTITY DEFAULT, fills
//! unchanged TOASTed values, and, after a lost connection, turns a fresh snapshot
//! into a diff against what the views already hold, so nothing is lost or doubled.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::catalog::TableInfo;
use super::lsn::Lsn;
use super::pgoutput::{LogicalMessage, OldTuple, Relation, Tuple, TupleValue};
use super::replication::{ReplicationConnection, ReplicationError, StreamMessage};
use super::snapshot::{copy_table, SnapshotError};
use crate::dataflow::{InFlight, Updates};
use crate::repr::{Datum, Row};

/// How often the applied position is reported to Postgres when nothing else
/// prompts it: often enough that WAL is released promptly under a steady
/// stream of commits, and far inside the default `wal_sender_timeout` of 60 s.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

static SLOT_COUNTER: AtomicU64 = AtomicU64::new(0);

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
}

impl SourceError {
    /// Transient errors are retried after reconnecting; the rest stop the source.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Replication(e) => e.is_transient(),
            SourceError::Connect(e) => e.is_transient(),
            SourceError::Postgres(e)
            | SourceError::Snapshot(SnapshotError::Postgres { source: e, .. }) => match e.code() {
                None => true,
                Some(code) => {
                    let c = code.code();
                    c.starts_with("57P") || c.starts_with("08") || c.starts_with("53")
                }
            },
            _ => false,
        }
    }
}

/// Where the source delivers what it reads.
pub trait Sink: Send {
    /// One committed transaction (or the snapshot) at `lsn`.
    fn transaction(&mut self, lsn: Lsn, updates: Updates);
    /// Everything up to `lsn` has been delivered.
    fn progress(&mut self, lsn: Lsn);
    /// The source is (or is no longer) streaming after a snapshot at `snapshot_lsn`.
    fn streaming(&mut self, up: bool, snapshot_lsn: Lsn);
    /// A table can no longer be followed (its shape changed, a value did not decode).
    fn table_failed(&mut self, table: usize, message: String);
    /// The source stopped for good.
    fn failed(&mut self, message: String);
}

pub struct SourceConfig {
    pub conninfo: String,
    pub publication: String,
    pub tables: Vec<Arc<TableInfo>>,
    /// Credit for rows handed over but not yet through the dataflow.
    pub in_flight: Arc<InFlight>,
}

/// Current rows of one table: identity key → (row, multiplicity). The key is
/// the primary key (or replica identity index) columns, or the whole row.
/// A state entry as it was before a change: (table, key, previous row and multiplicity).
type UndoEntry = (usize, Row, Option<(Row, isize)>);

#[derive(Default)]
struct TableState {
    rows: HashMap<Row, (Row, isize)>,
    failed: bool,
}

pub struct Source {
    config: SourceConfig,
    pg_config: super::PgConfig,
    state: Vec<TableState>,
    /// pgoutput relation id → table index.
    relations: HashMap<u32, usize>,
    /// State entries as they were before the changes of the transaction being
    /// received, so a connection lost before its Commit can be undone.
    undo: Vec<UndoEntry>,
}

fn key_of(info: &TableInfo, row: &Row) -> Row {
    match &info.key {
        Some(cols) => cols.iter().map(|c| row[*c].key_form()).collect(),
        None => row.clone(),
    }
}

/// Session settings that fix the text formats values are decoded from.
pub const SESSION_SETTINGS: &str =
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET extra_float_digits = 1; \
     SET bytea_output = 'hex'; SET IntervalStyle = 'postgres'";

impl Source {
    pub fn new(config: SourceConfig) -> Result<Source, String> {
        let pg_config = super::PgConfig::parse(&config.conninfo)
            .map_err(|e| format!("invalid --pg conninfo: {e}"))?;
        let state = config
            .tables
            .iter()
            .map(|_| TableState::default())
            .collect();
        Ok(Source {
            config,
            pg_config,
            state,
            relations: HashMap::new(),
            undo: Vec::new(),
        })
    }

    /// Runs until `shutdown` turns true or a definite error. Transient errors
    /// (Postgres restarting, a dropped connection) reconnect with backoff and
    /// resynchronise from a new snapshot.
    pub async fn run(mut self, sink: &mut dyn Sink, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let result = tokio::select! {
                r = self.session(sink) => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            sink.streaming(false, Lsn(0));
            match result {
                Ok(()) => return,
                Err(e) if e.is_transient() => {
                    warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "replication interrupted; reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    sink.failed(e.to_string());
                    return;
                }
            }
        }
    }

    async fn session(&mut self, sink: &mut dyn Sink) -> Result<(), SourceError> {
        // The connection's task ends when the client is dropped.
        let mut client = super::connect_sql(&self.pg_config).await?;
        self.session_with(&mut client, sink).await
    }

    async fn session_with(
        &mut self,
        client: &mut tokio_postgres::Client,
        sink: &mut dyn Sink,
    ) -> Result<(), SourceError> {
        self.rollback_uncommitted();
        client.batch_execute(SESSION_SETTINGS).await?;
        self.ensure_publication(client).await?;

        let mut repl = ReplicationConnection::connect(&self.pg_config).await?;
        let slot_name = format!(
            "viewcast_{}_{}",
            std::process::id(),
            SLOT_COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let slot = repl.create_slot(&slot_name).await?;
        info!(slot = %slot.name, consistent_point = %slot.consistent_point, "replication slot created");

        // Read every table at the slot's snapshot and hand the difference to what
        // the views already hold (everything, the first time) over as one transaction.
        let tx = client.transaction().await?;
        tx.batch_execute(&format!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT '{}'", slot.snapshot_name))
            .await?;
        // Read everything first: if the connection drops halfway, the state
        // still matches what the dataflow holds.
        let mut fresh = Vec::with_capacity(self.config.tables.len());
        for info in &self.config.tables {
            fresh.push(copy_table(&tx, info).await?);
        }
        tx.commit().await?;
        let mut updates: Updates = Vec::new();
        let mut loaded = 0usize;
        for (i, rows) in fresh.into_iter().enumerate() {
            let info = &self.config.tables[i];
            loaded += rows.len();
            let state = &mut self.state[i];
            for (_, (row, n)) in state.rows.drain() {
                updates.push((i, row, -n));
            }
            for row in rows {
                let key = key_of(info, &row);
                updates.push((i, row.clone(), 1));
                state.rows.entry(key).or_insert_with(|| (row, 0)).1 += 1;
            }
            state.failed = false;
        }
        info!(tables = self.config.tables.len(), rows = loaded, lsn = %slot.consistent_point, "snapshot loaded");
        self.config
            .in_flight
            .reserve(slot.consistent_point.0, updates.len())
            .await;
        sink.transaction(slot.consistent_point, updates);

        let mut stream = repl
            .start_replication(
                &slot.name,
                &self.config.publication,
                slot.consistent_point,
                1,
            )
            .await?;
        sink.streaming(true, slot.consistent_point);
        self.relations.clear();
        let mut applied = slot.consistent_point;
        let mut in_tx: Option<Updates> = None;
        let mut status = tokio::time::interval(STATUS_INTERVAL);
        loop {
            tokio::select! {
                msg = stream.next() => match msg? {
                    StreamMessage::XLogData { data, .. } => {
                        let msg = LogicalMessage::parse(data).map_err(|e| SourceError::Decode(e.to_string()))?;
                        match msg {
                            LogicalMessage::Begin(_) => in_tx = Some(Vec::new()),
                            LogicalMessage::Commit(c) => {
                                self.undo.clear();
                                let updates = in_tx.take().unwrap_or_default();
                                // Wait for credit; the server hears from us meanwhile,
                                // so a long wait is not taken for a dead connection.
                                let reserve = self.config.in_flight.reserve(c.end_lsn.0, updates.len());
                                tokio::pin!(reserve);
                                loop {
                                    tokio::select! {
                                        _ = &mut reserve => break,
                                        _ = status.tick() => stream.send_status(applied, false).await?,
                                    }
                                }
                                sink.transaction(c.end_lsn, updates);
                                applied = c.end_lsn;
                            }
                            LogicalMessage::Relation(r) => self.relation(r, sink),
                            other => {
                                let buf = in_tx.get_or_insert_with(Vec::new);
                                self.change(other, buf, sink);
                            }
                        }
                    }
                    StreamMessage::Keepalive { wal_end, reply_requested } => {
                        if in_tx.is_none() && wal_end > applied {
                            applied = wal_end;
                            sink.progress(wal_end);
                            // Idle: say at once that everything sent so far is done.
                            stream.send_status(applied, false).await?;
                        } else if reply_requested {
                            stream.send_status(applied, false).await?;
                        }
                    }
                },
                _ = status.tick() => stream.send_status(applied, false).await?,
            }
        }
    }

    async fn ensure_publication(&self, client: &tokio_postgres::Client) -> Result<(), SourceError> {
        let name = &self.config.publication;
        let quoted = super::replication::quote_ident(name);
        let row = client
            .query_opt(
                "SELECT puballtables FROM pg_publication WHERE pubname = $1",
                &[name],
            )
            .await?;
        let wanted: Vec<String> = self
            .config
            .tables
            .iter()
            .map(|t| t.qualified_name())
            .collect();
        match row {
            None => {
                let sql = if wanted.is_empty() {
                    format!("CREATE PUBLICATION {quoted}")
                } else {
                    format!(
                        "CREATE PUBLICATION {quoted} FOR TABLE {}",
                        wanted.join(", ")
                    )
                };
                if let Err(e) = client.batch_execute(&sql).await {
                    return Err(SourceError::Setup(format!(
                        "cannot create publication {quoted}: {}; create it as the tables' owner with: {sql}",
                        super::error_text(&e)
                    )));
                }
                info!(publication = %name, tables = wanted.len(), "publication created");
            }
            Some(r) if r.get::<_, bool>(0) => {}
            Some(_) => {
                let have = client.query("SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1", &[name]).await?;
                let have: Vec<(String, String)> =
                    have.iter().map(|r| (r.get(0), r.get(1))).collect();
                let missing: Vec<String> = self
                    .config
                    .tables
                    .iter()
                    .filter(|t| !have.iter().any(|(s, n)| *s == t.schema && *n == t.name))
                    .map(|t| t.qualified_name())
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

    /// Restores the state to the last committed transaction: the changes of a
    /// transaction whose Commit never arrived were never handed to the dataflow.
    fn rollback_uncommitted(&mut self) {
        while let Some((i, key, previous)) = self.undo.pop() {
            match previous {
                Some(entry) => {
                    self.state[i].rows.insert(key, entry);
                }
                None => {
                    self.state[i].rows.remove(&key);
                }
            }
        }
    }

    fn relation(&mut self, r: Relation, sink: &mut dyn Sink) {
        let Some(i) = self
            .config
            .tables
            .iter()
            .position(|t| t.schema == r.namespace && t.name == r.name)
        else {
            return;
        };
        self.relations.insert(r.id, i);
        let info = &self.config.tables[i];
        let same = r.columns.len() == info.columns.len()
            && r.columns
                .iter()
                .zip(&info.columns)
                .all(|(a, b)| a.name == b.name && a.type_oid == b.type_oid);
        if !same && !self.state[i].failed {
            self.state[i].failed = true;
            sink.table_failed(
                i,
                format!("the columns of table {} changed since viewcast started; restart viewcast to follow the new definition", info.qualified_name()),
            );
        }
    }

    fn change(&mut self, msg: LogicalMessage, out: &mut Updates, sink: &mut dyn Sink) {
        let (rel, result) = match msg {
            LogicalMessage::Insert(m) => (
                m.relation_id,
                self.apply(m.relation_id, None, Some(&m.new), out),
            ),
            LogicalMessage::Update(m) => (
                m.relation_id,
                self.apply(m.relation_id, Some(m.old.as_ref()), Some(&m.new), out),
            ),
            LogicalMessage::Delete(m) => (
                m.relation_id,
                self.apply(m.relation_id, Some(Some(&m.old)), None, out),
            ),
            LogicalMessage::Truncate(t) => {
                for id in t.relation_ids {
                    if let Some(&i) = self.relations.get(&id) {
                        for (key, (row, n)) in self.state[i].rows.drain() {
                            out.push((i, row.clone(), -n));
                            self.undo.push((i, key, Some((row, n))));
                        }
                    }
                }
                return;
            }
            _ => return,
        };
        if let Err(message) = result {
            if let Some(&i) = self.relations.get(&rel) {
                if !self.state[i].failed {
                    self.state[i].failed = true;
                    sink.table_failed(i, message);
                }
            }
        }
    }

    /// Applies one row change to the table state and emits its updates. `old` is
    /// `Some(None)` for an update that sent no old tuple (key unchanged).
    fn apply(
        &mut self,
        rel: u32,
        old: Option<Option<&OldTuple>>,
        new: Option<&Tuple>,
        out: &mut Updates,
    ) -> Result<(), String> {
        let Some(&i) = self.relations.get(&rel) else {
            return Ok(());
        };
        if self.state[i].failed {
            return Ok(());
        }
        let info = self.config.tables[i].clone();
        // Find the old row: by the key the message carries, or the new row's key.
        let old_row = match old {
            None => None,
            Some(old_tuple) => {
                // Only the key columns are needed (and only they are sure to be
                // present: others may be NULL in a key tuple or unchanged TOAST).
                let tuple = match old_tuple {
                    Some(OldTuple::Key(t)) | Some(OldTuple::Full(t)) => t,
                    None => new.ok_or("update without a new tuple")?,
                };
                let key: Row = match &info.key {
                    Some(cols) => {
                        let partial = decode_partial(&info, tuple);
                        cols.iter()
                            .map(|c| match partial.get(*c) {
                                Some(Some(d)) => Ok(d.key_form()),
                                _ => Err(format!(
                                    "{}: key column {} missing from the change",
                                    info.qualified_name(),
                                    info.columns[*c].name
                                )),
                            })
                            .collect::<Result<_, _>>()?
                    }
                    None if old_tuple.is_some() => decode(&info, tuple, None)?,
                    None => {
                        return Err(format!(
                            "update of {} without an old row",
                            info.qualified_name()
                        ))
                    }
                };
                let state = &mut self.state[i].rows;
                self.undo.push((i, key.clone(), state.get(&key).cloned()));
                let Some(entry) = state.get_mut(&key) else {
                    return Err(format!(
                        "{}: change to a row viewcast does not know (key {key:?})",
                        info.qualified_name()
                    ));
                };
                entry.1 -= 1;
                let row = entry.0.clone();
                if entry.1 == 0 {
                    state.remove(&key);
                }
                out.push((i, row.clone(), -1));
                Some(row)
            }
        };
        if let Some(t) = new {
            let row = decode(&info, t, old_row.as_ref())?;
            let key = key_of(&info, &row);
            let rows = &mut self.state[i].rows;
            self.undo.push((i, key.clone(), rows.get(&key).cloned()));
            rows.entry(key).or_insert_with(|| (row.clone(), 0)).1 += 1;
            out.push((i, row, 1));
        }
        Ok(())
    }
}

/// Decodes a tuple's text values; unchanged TOAST values come from `old`.
fn decode(info: &TableInfo, t: &Tuple, old: Option<&Row>) -> Result<Row, String> {
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
            TupleValue::UnchangedToast => old.and_then(|o| o.get(i).cloned()).ok_or_else(|| {
                format!(
                    "column {} of {}: unchanged TOAST value without a known old row",
                    col.name,
                    info.qualified_name()
                )
            }),
            TupleValue::Binary(_) => Err(format!(
                "column {}: binary values were not requested",
                col.name
            )),
        })
        .collect()
}

/// Decodes what can be decoded without an old row (for finding the key).
fn decode_partial(info: &TableInfo, t: &Tuple) -> Vec<Option<Datum>> {
    t.iter()
        .zip(&info.columns)
        .map(|(v, col)| match v {
            TupleValue::Null => Some(Datum::Null),
            TupleValue::Text(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| Datum::from_text(&col.ty, s).ok()),
            _ => None,
        })
        .collect()
}
