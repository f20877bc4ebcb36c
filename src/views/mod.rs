//! The registry of views: each view's definition, its current contents (the
//! multiset a new subscriber starts from), and a broadcast channel of encoded
//! events. Every diff batch is encoded to SSE bytes once and the bytes are
//! shared by all of the view's subscribers.
//!
//! A view's life, as its subscribers see it (their streams stay open through
//! all of it; only removing the view ends them):
//!
//! ```text
//!  refused ──(schema now binds)──▶ loading ──ready──▶ live ──diff/progress──▶ live
//!                                    ▲                 │
//!        (file edited, table changed)┘                 ├─(error: eval, table, schema, server)─▶ failing
//!                                                      │        └──(cause gone)─▶ snapshot, reset ─▶ live
//!                                                      └─(file removed)─▶ error, stream ends
//! ```
//! Contents are kept up to date while a view fails, so recovery is a fresh
//! snapshot of the current rows. A rebuilt view (its file edited, a table's
//! columns changed) replaces its contents at once: subscribers get one diff
//! when the columns stayed the same, or a snapshot with the new columns.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::dataflow::InFlight;
use crate::pg::Lsn;
use crate::repr::{write_json_string, write_row_json, Row};
use crate::sql::Column;

/// Events a slow subscriber may fall behind by before it is sent a fresh
/// snapshot (marked as a reset) instead of the diffs it missed.
const CHANNEL_CAPACITY: usize = 4096;
/// Diff events kept per view so a reconnecting subscriber can resume from the
/// LSN it reached (a few seconds of a busy view, minutes of a quiet one).
const HISTORY_LEN: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Diff,
    Progress,
    /// The view fails; the stream stays open and a snapshot follows when it
    /// recovers.
    Error,
    /// New contents replacing what the subscriber holds (recovery, a rebuilt
    /// view with other columns).
    Snapshot,
    /// The view is gone; the stream ends after this event.
    End,
}

/// One encoded SSE event.
#[derive(Debug)]
pub struct Event {
    pub kind: EventKind,
    pub lsn: Lsn,
    pub sse: Bytes,
}

#[derive(Debug, Clone)]
pub struct ViewDef {
    pub sql: String,
    pub columns: Vec<Column>,
    /// The plan as text (`GET /views/{name}/plan`).
    pub plan: String,
}

/// A view that does not compile.
#[derive(Debug, Clone)]
pub struct Refused {
    pub name: String,
    pub sql: String,
    /// One line: what is wrong and where.
    pub error: String,
    /// The error with the offending line and a caret under the spot.
    pub detail: String,
}

/// Why a view fails for good (until the cause is fixed), apart from
/// evaluation errors of its rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// The server cannot read from Postgres (a definite source failure).
    Server,
    /// A table the view reads cannot be read or followed.
    Table,
    /// The view's SQL no longer binds against the current schema.
    Schema,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Being built; its contents are not valid yet.
    Loading,
    Live,
}

struct ViewState {
    /// The served definition; `None` while the view has never compiled.
    def: Option<ViewDef>,
    /// Why the current SQL does not compile.
    refused: Option<Refused>,
    phase: Phase,
    /// Dataflow id of the view's current dataflow, if any.
    dataflow: Option<usize>,
    rows: HashMap<Row, i64>,
    /// Contents being built by a new dataflow (replacing `rows` when ready).
    loading: HashMap<Row, i64>,
    loading_errors: HashMap<String, i64>,
    /// The definition the loading dataflow computes.
    loading_def: Option<ViewDef>,
    lsn: Lsn,
    /// The latest diff events, for subscribers resuming after a reconnect.
    history: VecDeque<Arc<Event>>,
    /// Every diff after this LSN is still in `history` (`None` before the
    /// view's first diff in this server's life: nothing before it can be resumed).
    history_floor: Option<Lsn>,
    /// Last progress LSN broadcast to subscribers.
    announced: Lsn,
    faults: BTreeMap<Fault, String>,
    /// Evaluation errors the current rows cause (overflow, division by zero,
    /// ...), with their counts: the view is in error while there are any, as
    /// Postgres would fail the query on the same rows.
    eval_errors: HashMap<String, i64>,
    /// Subscribers were told the view fails: they get a snapshot when it recovers.
    told_failing: bool,
}

impl ViewState {
    fn error(&self) -> Option<String> {
        self.faults
            .values()
            .next()
            .cloned()
            .or_else(|| self.eval_errors.keys().min().cloned())
    }

    fn served(&self) -> bool {
        self.def.is_some()
    }
}

pub struct View {
    pub name: String,
    state: Mutex<ViewState>,
    tx: broadcast::Sender<Arc<Event>>,
    /// Diff events sent since startup.
    diffs: AtomicU64,
}

/// A resumed subscription: the diffs missed since the client's LSN, then the live receiver.
pub struct Resumed {
    pub missed: Vec<Arc<Event>>,
    pub rx: broadcast::Receiver<Arc<Event>>,
}

/// What a subscriber starts from.
pub struct Snapshot {
    pub lsn: Lsn,
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    pub error: Option<String>,
}

/// What a request for a view finds.
pub enum Lookup {
    Live(Arc<View>),
    /// Still building its first contents.
    Loading(Arc<View>),
    Refused(Refused),
    NotFound,
}

/// The server's connection to Postgres, as `/healthz` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Starting,
    /// Streaming from a snapshot at `snapshot_lsn` (healthy once the views
    /// reflect it).
    Streaming {
        snapshot_lsn: Lsn,
    },
    Reconnecting {
        reason: String,
    },
    Failed {
        reason: String,
    },
}

pub struct Registry {
    views: RwLock<BTreeMap<String, Arc<View>>>,
    by_dataflow: RwLock<HashMap<usize, Arc<View>>>,
    health: Mutex<Health>,
    progress: Mutex<Lsn>,
    /// Turns true when the server stops, ending every subscriber's stream.
    closed: tokio::sync::watch::Sender<bool>,
    /// Bumped whenever a view changes phase (waiters re-check their view).
    changed: tokio::sync::watch::Sender<u64>,
    /// Rows between the source and the view outputs (for metrics).
    in_flight: Arc<InFlight>,
    /// Dataflows replaced after a worker died.
    pub dataflow_restarts: AtomicU64,
    /// Times the source lost its connection and reconnected.
    pub reconnects: AtomicU64,
    /// The views declared at startup have all loaded (or been refused).
    started: std::sync::atomic::AtomicBool,
    /// Times tables were read at a new snapshot, and tables copied then.
    pub resyncs: AtomicU64,
    pub tables_copied: AtomicU64,
}

fn columns_json(columns: &[Column]) -> String {
    serde_json::to_string(columns).unwrap_or_else(|_| "[]".into())
}

fn error_event(lsn: Lsn, message: &str, kind: EventKind) -> Arc<Event> {
    let mut data = String::from("{\"message\":");
    write_json_string(message, &mut data);
    data.push('}');
    Arc::new(Event {
        kind,
        lsn,
        sse: sse_bytes("error", None, &data),
    })
}

fn apply_counts<K: Clone + Eq + std::hash::Hash>(
    map: &mut HashMap<K, i64>,
    changes: &[(K, isize)],
) {
    for (k, diff) in changes {
        let n = map.entry(k.clone()).or_insert(0);
        *n += *diff as i64;
        if *n == 0 {
            map.remove(k);
        }
    }
}

impl View {
    fn new(name: &str) -> View {
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        View {
            name: name.to_string(),
            state: Mutex::new(ViewState {
                def: None,
                refused: None,
                phase: Phase::Loading,
                dataflow: None,
                rows: HashMap::new(),
                loading: HashMap::new(),
                loading_errors: HashMap::new(),
                loading_def: None,
                lsn: Lsn(0),
                history: VecDeque::new(),
                history_floor: None,
                announced: Lsn(0),
                faults: BTreeMap::new(),
                eval_errors: HashMap::new(),
                told_failing: false,
            }),
            tx,
            diffs: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ViewState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The served definition, if the view has compiled.
    pub fn def(&self) -> Option<ViewDef> {
        self.lock().def.clone()
    }

    fn send(&self, event: Arc<Event>) {
        let _ = self.tx.send(event);
    }

    /// Broadcasts a diff and keeps it for resuming subscribers (unless the
    /// view has no resumable position yet).
    fn send_diff(&self, st: &mut ViewState, event: Arc<Event>) {
        if st.history_floor.is_some() {
            st.history.push_back(event.clone());
            if st.history.len() > HISTORY_LEN {
                if let Some(old) = st.history.pop_front() {
                    st.history_floor = Some(old.lsn);
                }
            }
        }
        self.diffs.fetch_add(1, Ordering::Relaxed);
        self.send(event);
    }

    /// Tells subscribers the view fails, once per failure.
    fn announce_failure(&self, st: &mut ViewState) {
        if st.told_failing || st.phase != Phase::Live {
            return;
        }
        let Some(message) = st.error() else {
            return;
        };
        tracing::warn!(view = %self.name, error = %message, "view failed");
        st.told_failing = true;
        st.history.clear();
        st.history_floor = None;
        self.send(error_event(st.lsn, &message, EventKind::Error));
    }

    /// After a failure is gone: subscribers start over from a snapshot.
    fn announce_recovery(&self, st: &mut ViewState) {
        if !st.told_failing || st.error().is_some() || st.phase != Phase::Live {
            return;
        }
        tracing::info!(view = %self.name, "view recovered");
        st.told_failing = false;
        self.send_snapshot(st);
    }

    /// Broadcasts the current contents as a reset snapshot; nothing before it
    /// can be resumed.
    fn send_snapshot(&self, st: &mut ViewState) {
        st.history.clear();
        st.history_floor = Some(st.lsn);
        st.announced = st.lsn;
        let Some(def) = &st.def else {
            return;
        };
        let snap = Snapshot {
            lsn: st.lsn,
            columns: def.columns.clone(),
            rows: expand(&st.rows),
            error: None,
        };
        let event = Arc::new(Event {
            kind: EventKind::Snapshot,
            lsn: st.lsn,
            sse: sse_bytes("snapshot", Some(st.lsn), &snapshot_json(&snap, true)),
        });
        self.send(event);
    }
}

impl Registry {
    pub fn new(in_flight: Arc<InFlight>) -> Registry {
        Registry {
            views: RwLock::new(BTreeMap::new()),
            by_dataflow: RwLock::new(HashMap::new()),
            health: Mutex::new(Health::Starting),
            progress: Mutex::new(Lsn(0)),
            closed: tokio::sync::watch::channel(false).0,
            changed: tokio::sync::watch::channel(0).0,
            in_flight,
            dataflow_restarts: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            started: std::sync::atomic::AtomicBool::new(false),
            resyncs: AtomicU64::new(0),
            tables_copied: AtomicU64::new(0),
        }
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Ends all subscriber streams (server shutdown).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    pub fn closed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// Every view, served or refused, by name.
    pub fn all(&self) -> Vec<Arc<View>> {
        self.views
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn view(&self, name: &str) -> Option<Arc<View>> {
        self.views
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    fn view_or_new(&self, name: &str) -> Arc<View> {
        if let Some(v) = self.view(name) {
            return v;
        }
        self.views
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(View::new(name)))
            .clone()
    }

    /// What a request for `name` finds.
    pub fn lookup(&self, name: &str) -> Lookup {
        let Some(v) = self.view(name) else {
            return Lookup::NotFound;
        };
        let st = v.lock();
        if !st.served() {
            return match &st.refused {
                Some(r) => Lookup::Refused(r.clone()),
                None => Lookup::Loading(v.clone()),
            };
        }
        // A view rebuilt after a failure has nothing valid to show until
        // its new contents are ready.
        let loading = st.phase == Phase::Loading || (st.loading_def.is_some() && st.told_failing);
        drop(st);
        if loading {
            Lookup::Loading(v)
        } else {
            Lookup::Live(v)
        }
    }

    /// Waits until `view` is live or failing, not loading (or the server stops).
    pub async fn wait_ready(&self, view: &View) {
        let mut changed = self.changed.subscribe();
        let mut closed = self.closed.subscribe();
        loop {
            {
                let st = view.lock();
                let ready = match (st.served(), &st.refused) {
                    // Refused: the answer is a 422.
                    (false, Some(_)) => true,
                    // Declared or building its first contents.
                    (false, None) => false,
                    (true, _) => {
                        let rebuilding_after_failure = st.loading_def.is_some() && st.told_failing;
                        (st.phase == Phase::Live && !rebuilding_after_failure)
                            || st.dataflow.is_none()
                    }
                };
                if ready {
                    return;
                }
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = closed.wait_for(|c| *c) => return,
            }
        }
    }

    /// Makes `name` known before it is compiled: requests for it wait
    /// (SSE) or answer 503 until it is built or refused.
    pub fn declare(&self, name: &str) {
        self.view_or_new(name);
        self.bump();
    }

    /// A view's SQL does not compile. A view never served is refused; a
    /// served one keeps its last contents and fails until it compiles again.
    pub fn refuse(&self, refused: Refused) {
        let v = self.view_or_new(&refused.name);
        let mut st = v.lock();
        if st.served() {
            st.faults.insert(Fault::Schema, refused.error.clone());
            if let Some(df) = st.dataflow.take() {
                self.by_dataflow
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&df);
            }
            st.phase = Phase::Live;
            v.announce_failure(&mut st);
        }
        st.refused = Some(refused);
        drop(st);
        self.bump();
    }

    /// The view `name` will be computed by dataflow `dataflow` with `def`;
    /// its outputs until [`Registry::ready`] are its new contents.
    pub fn attach(&self, name: &str, def: ViewDef, dataflow: usize) {
        let v = self.view_or_new(name);
        let mut st = v.lock();
        if let Some(old) = st.dataflow.replace(dataflow) {
            self.by_dataflow
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&old);
        }
        st.refused = None;
        st.faults.remove(&Fault::Schema);
        st.loading.clear();
        st.loading_errors.clear();
        st.loading_def = Some(def);
        if !st.served() {
            st.phase = Phase::Loading;
        }
        drop(st);
        self.by_dataflow
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dataflow, v);
        self.bump();
    }

    /// The dataflow of a view was dropped (its outputs are ignored from now).
    pub fn detach(&self, dataflow: usize) {
        let v = self
            .by_dataflow
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&dataflow);
        if let Some(v) = v {
            let mut st = v.lock();
            if st.dataflow == Some(dataflow) {
                st.dataflow = None;
            }
        }
    }

    /// Removes a view: its subscribers get an error event and their streams end.
    pub fn remove(&self, name: &str, message: &str) {
        let v = self
            .views
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if let Some(v) = v {
            let mut st = v.lock();
            if let Some(df) = st.dataflow.take() {
                self.by_dataflow
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&df);
            }
            tracing::info!(view = %name, "view removed");
            v.send(error_event(st.lsn, message, EventKind::End));
            st.def = None;
        }
        self.bump();
    }

    fn by_dataflow(&self, dataflow: usize) -> Option<Arc<View>> {
        self.by_dataflow
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&dataflow)
            .cloned()
    }

    /// Applies one transaction's changes to a view and broadcasts them as one
    /// diff event. While a view is being (re)built its outputs are collected as
    /// its new contents. A view whose rows cause evaluation errors fails (its
    /// subscribers get an error event); it keeps its contents up to date and
    /// serves again once those rows are gone.
    pub fn apply(
        &self,
        dataflow: usize,
        lsn: Lsn,
        changes: &[(Row, isize)],
        errors: &[(String, isize)],
    ) {
        let Some(v) = self.by_dataflow(dataflow) else {
            return;
        };
        let mut st = v.lock();
        if st.dataflow != Some(dataflow) {
            return;
        }
        if st.loading_def.is_some() {
            apply_counts(&mut st.loading, changes);
            apply_counts(&mut st.loading_errors, errors);
            return;
        }
        apply_counts(&mut st.rows, changes);
        apply_counts(&mut st.eval_errors, errors);
        st.lsn = st.lsn.max(lsn);
        st.announced = st.lsn;
        if st.error().is_some() {
            v.announce_failure(&mut st);
            return;
        }
        if st.told_failing {
            v.announce_recovery(&mut st);
            return;
        }
        if changes.is_empty() {
            return;
        }
        if st.history_floor.is_none() {
            // The first diff takes the view from empty: resuming needs a later position.
            st.history_floor = Some(lsn);
        }
        v.send_diff(&mut st, diff_event(lsn, changes));
    }

    /// A (re)built view's dataflow holds its contents as of `lsn`: they
    /// replace what the view held. Subscribers get the
    /// difference as one diff when the columns stayed the same, else a
    /// snapshot with the new columns.
    pub fn ready(&self, dataflow: usize, lsn: Lsn, reset: bool) {
        let Some(v) = self.by_dataflow(dataflow) else {
            return;
        };
        let mut st = v.lock();
        if st.dataflow != Some(dataflow) {
            return;
        }
        let Some(def) = st.loading_def.take() else {
            return;
        };
        let fresh = std::mem::take(&mut st.loading);
        st.eval_errors = std::mem::take(&mut st.loading_errors);
        st.lsn = st.lsn.max(lsn);
        let first = st.def.is_none();
        let same_columns = st.def.as_ref().is_some_and(|d| d.columns == def.columns);
        let was_told = st.told_failing;
        let old = std::mem::replace(&mut st.rows, fresh);
        st.def = Some(def);
        st.phase = Phase::Live;
        tracing::info!(view = %v.name, rows = st.rows.values().sum::<i64>(), "view ready");
        if first {
            // Subscribers only connect to a loaded view: nobody to tell yet,
            // and whoever connects hears of a failure in its first events.
            st.history_floor = None;
            st.told_failing = st.error().is_some();
        } else if st.error().is_some() {
            v.announce_failure(&mut st);
        } else if was_told || reset || !same_columns {
            st.told_failing = false;
            v.send_snapshot(&mut st);
        } else {
            let mut changes: Vec<(Row, isize)> = Vec::new();
            for (row, n) in &st.rows {
                let d = n - old.get(row).copied().unwrap_or(0);
                if d != 0 {
                    changes.push((row.clone(), d as isize));
                }
            }
            for (row, n) in &old {
                if !st.rows.contains_key(row) {
                    changes.push((row.clone(), -*n as isize));
                }
            }
            if !changes.is_empty() {
                let event = diff_event(st.lsn, &changes);
                v.send_diff(&mut st, event);
            }
        }
        drop(st);
        self.bump();
    }

    /// Sets or clears a fault of one view; subscribers hear of the failure and
    /// of the recovery.
    pub fn set_fault(&self, name: &str, fault: Fault, message: Option<String>) {
        let Some(v) = self.view(name) else {
            return;
        };
        let mut st = v.lock();
        let changed = match message {
            Some(m) => st.faults.insert(fault, m.clone()).as_ref() != Some(&m),
            None => st.faults.remove(&fault).is_some(),
        };
        if !changed {
            return;
        }
        if st.error().is_some() {
            v.announce_failure(&mut st);
        } else {
            v.announce_recovery(&mut st);
        }
        drop(st);
        self.bump();
    }

    /// Records the source's state; a definite failure fails every view with
    /// its reason until the source streams again.
    pub fn set_health(&self, health: Health) {
        let fault = match &health {
            Health::Failed { reason } => Some(Some(format!("replication failed: {reason}"))),
            Health::Streaming { .. } => Some(None),
            _ => None,
        };
        let previous = std::mem::replace(
            &mut *self.health.lock().unwrap_or_else(|p| p.into_inner()),
            health.clone(),
        );
        // An interruption counts once, however many attempts it takes.
        if matches!(health, Health::Reconnecting { .. })
            && matches!(previous, Health::Streaming { .. })
        {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(message) = fault {
            for v in self.all() {
                self.set_fault(&v.name, Fault::Server, message.clone());
            }
        }
        self.bump();
    }

    pub fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Streaming and the views reflect the snapshot; at startup, also no
    /// view still computing its first contents (a view added later does not
    /// make a running server unhealthy).
    pub fn is_streaming(&self) -> bool {
        match self.health() {
            Health::Streaming { snapshot_lsn } => {
                if self.progress() < snapshot_lsn {
                    return false;
                }
                if self.started.load(Ordering::Relaxed) {
                    return true;
                }
                let loading = self.all().iter().any(|v| {
                    let st = v.lock();
                    st.phase == Phase::Loading && st.dataflow.is_some()
                });
                if !loading {
                    self.started.store(true, Ordering::Relaxed);
                }
                !loading
            }
            _ => false,
        }
    }

    pub fn progress(&self) -> Lsn {
        *self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that every view is complete up to `lsn`.
    pub fn advance(&self, lsn: Lsn) {
        {
            let mut p = self.progress.lock().unwrap_or_else(|p| p.into_inner());
            if lsn <= *p {
                return;
            }
            *p = lsn;
        }
        for v in self.all() {
            let mut st = v.lock();
            if st.phase == Phase::Live && st.loading_def.is_none() && lsn > st.lsn {
                st.lsn = lsn;
            }
        }
        self.bump();
    }

    /// Broadcasts a progress event to views whose LSN moved since the last one
    /// (or to all of them when `heartbeat`).
    pub fn announce_progress(&self, heartbeat: bool) {
        for v in self.all() {
            let mut st = v.lock();
            if st.phase != Phase::Live
                || st.loading_def.is_some()
                || st.error().is_some()
                || (!heartbeat && st.lsn <= st.announced)
            {
                continue;
            }
            st.announced = st.lsn;
            let lsn = st.lsn;
            let data = format!("{{\"lsn\":\"{lsn}\"}}");
            v.send(Arc::new(Event {
                kind: EventKind::Progress,
                lsn,
                sse: sse_bytes("progress", None, &data),
            }));
        }
    }

    /// For a subscriber that has the view's contents at `from`: the diff events
    /// after `from` and a receiver for everything after them, or `None` when
    /// the server no longer has every diff since `from` (it then needs a snapshot).
    pub fn resume(&self, view: &View, from: Lsn) -> Option<Resumed> {
        let st = view.lock();
        let floor = st.history_floor?;
        if st.error().is_some() || st.phase != Phase::Live || from < floor || from > st.lsn {
            return None;
        }
        let missed = st
            .history
            .iter()
            .filter(|e| e.lsn > from)
            .cloned()
            .collect();
        Some(Resumed {
            missed,
            rx: view.tx.subscribe(),
        })
    }

    /// The current contents and a receiver for everything after them, taken
    /// atomically so no event falls between the two.
    pub fn subscribe(&self, view: &View) -> (Snapshot, broadcast::Receiver<Arc<Event>>) {
        let st = view.lock();
        let rx = view.tx.subscribe();
        (
            Snapshot {
                lsn: st.lsn,
                columns: st
                    .def
                    .as_ref()
                    .map(|d| d.columns.clone())
                    .unwrap_or_default(),
                rows: expand(&st.rows),
                error: st.error(),
            },
            rx,
        )
    }

    pub fn snapshot(&self, view: &View) -> Snapshot {
        self.subscribe(view).0
    }

    /// Prometheus text exposition of the server's and each view's state.
    pub fn metrics(&self) -> String {
        let in_flight_rows = self.in_flight.rows();
        let mut m = String::new();
        let mut gauge = |name: &str, help: &str, kind: &str, samples: Vec<(Option<&str>, f64)>| {
            let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (view, value) in samples {
                match view {
                    Some(v) => {
                        let _ = writeln!(
                            m,
                            "{name}{{view=\"{}\"}} {value}",
                            v.replace('\\', "\\\\")
                                .replace('"', "\\\"")
                                .replace('\n', "\\n")
                        );
                    }
                    None => {
                        let _ = writeln!(m, "{name} {value}");
                    }
                }
            }
        };
        let health = self.health();
        gauge(
            "viewcast_progress_lsn",
            "LSN every view is complete up to.",
            "gauge",
            vec![(None, self.progress().0 as f64)],
        );
        gauge(
            "viewcast_streaming",
            "1 while replication streams with the snapshot loaded.",
            "gauge",
            vec![(None, f64::from(u8::from(self.is_streaming())))],
        );
        gauge(
            "viewcast_source_failed",
            "1 while replication fails with an error someone must fix (see /healthz).",
            "gauge",
            vec![(
                None,
                f64::from(u8::from(matches!(health, Health::Failed { .. }))),
            )],
        );
        gauge(
            "viewcast_reconnects_total",
            "Times streaming replication was interrupted (each outage once, however many attempts it took).",
            "counter",
            vec![(None, self.reconnects.load(Ordering::Relaxed) as f64)],
        );
        gauge(
            "viewcast_dataflow_restarts_total",
            "Times the dataflow was rebuilt after a worker died.",
            "counter",
            vec![(None, self.dataflow_restarts.load(Ordering::Relaxed) as f64)],
        );
        gauge(
            "viewcast_resyncs_total",
            "Times tables were read at a new snapshot (connections, schema changes, new tables).",
            "counter",
            vec![(None, self.resyncs.load(Ordering::Relaxed) as f64)],
        );
        gauge(
            "viewcast_tables_copied_total",
            "Tables copied from Postgres at those snapshots.",
            "counter",
            vec![(None, self.tables_copied.load(Ordering::Relaxed) as f64)],
        );
        gauge(
            "viewcast_in_flight_rows",
            "Rows handed to the workers and not yet in view output.",
            "gauge",
            vec![(None, in_flight_rows as f64)],
        );
        let views = self.all();
        let refused = views.iter().filter(|v| !v.lock().served()).count();
        gauge(
            "viewcast_views_refused",
            "Views whose SQL does not compile.",
            "gauge",
            vec![(None, refused as f64)],
        );
        let mut rows = Vec::new();
        let mut subscribers = Vec::new();
        let mut diffs = Vec::new();
        let mut failed = Vec::new();
        for v in &views {
            let name = Some(v.name.as_str());
            let st = v.lock();
            if !st.served() {
                continue;
            }
            rows.push((name, st.rows.values().sum::<i64>() as f64));
            failed.push((name, f64::from(u8::from(st.error().is_some()))));
            drop(st);
            subscribers.push((name, v.tx.receiver_count() as f64));
            diffs.push((name, v.diffs.load(Ordering::Relaxed) as f64));
        }
        gauge("viewcast_view_rows", "Rows in the view.", "gauge", rows);
        gauge(
            "viewcast_view_subscribers",
            "Open SSE subscriptions to the view.",
            "gauge",
            subscribers,
        );
        gauge(
            "viewcast_view_diffs_total",
            "Diff events the view has sent.",
            "counter",
            diffs,
        );
        gauge(
            "viewcast_view_failed",
            "1 if the view is in an error state.",
            "gauge",
            failed,
        );
        m
    }
}

fn diff_event(lsn: Lsn, changes: &[(Row, isize)]) -> Arc<Event> {
    let mut data = String::with_capacity(64 + changes.len() * 32);
    let _ = write!(data, "{{\"lsn\":\"{lsn}\",\"changes\":[");
    for (i, (row, diff)) in changes.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        data.push_str("{\"row\":");
        write_row_json(row, &mut data);
        let _ = write!(data, ",\"diff\":{diff}}}");
    }
    data.push_str("]}");
    Arc::new(Event {
        kind: EventKind::Diff,
        lsn,
        sse: sse_bytes("diff", Some(lsn), &data),
    })
}

/// A multiset as a list with each row repeated by its multiplicity.
fn expand(rows: &HashMap<Row, i64>) -> Vec<Row> {
    let mut out = Vec::with_capacity(rows.len());
    for (row, n) in rows {
        for _ in 0..(*n).max(0) {
            out.push(row.clone());
        }
    }
    out
}

/// Encodes one SSE event.
pub fn sse_bytes(event: &str, id: Option<Lsn>, data: &str) -> Bytes {
    let mut s = String::with_capacity(data.len() + 48);
    let _ = writeln!(s, "event: {event}");
    if let Some(id) = id {
        let _ = writeln!(s, "id: {id}");
    }
    let _ = write!(s, "data: {data}\n\n");
    Bytes::from(s)
}

/// The JSON of a snapshot: `{"lsn", "columns", "rows"}` (plus `"reset": true`
/// when it replaces what a subscriber held).
pub fn snapshot_json(snap: &Snapshot, reset: bool) -> String {
    let mut s = String::with_capacity(64 + snap.rows.len() * 32);
    let _ = write!(
        s,
        "{{\"lsn\":\"{}\",\"columns\":{},\"rows\":[",
        snap.lsn,
        columns_json(&snap.columns)
    );
    for (i, row) in snap.rows.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        write_row_json(row, &mut s);
    }
    s.push(']');
    if reset {
        s.push_str(",\"reset\":true");
    }
    s.push('}');
    s
}
