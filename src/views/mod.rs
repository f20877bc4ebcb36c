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
//! snapshot of the current rows.
//!
//! A parameterized view's contents are kept per parameter tuple: its output
//! rows start with the tuple, and each tuple has its own rows, history and
//! broadcast channel, so subscribers of one tuple never see another's rows.
//! A view without parameters has the one empty tuple. Tuples come and go
//! with their subscribers ([`Registry::open`]); a tuple nobody holds lingers
//! a while, then the controller retracts it from the dataflow. A rebuilt view (its file edited, a table's
//! columns changed) replaces its contents at once: subscribers get one diff
//! when the columns stayed the same, or a snapshot with the new columns.

pub mod mirror;
pub mod params;
pub mod subscription;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::dataflow::memory::{Owner, Usage};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::dataflow::InFlight;
use crate::pg::Lsn;
use crate::repr::{write_json_string, write_row_json, Row};
use crate::sql::{Column, ViewParam};

/// Events a slow subscriber may fall behind by before it is sent a fresh
/// snapshot (marked as a reset) instead of the diffs it missed.
const CHANNEL_CAPACITY: usize = 4096;
/// The same for one parameter tuple of a parameterized view. A channel's
/// slots are allocated when it is made (~40 bytes each), and a view may have
/// tens of thousands of tuples: 4096 slots each would be 160 kB per
/// subscriber. Falling behind costs a snapshot of the tuple's own rows, and
/// a websocket connection drains its channels on every progress step.
const TUPLE_CHANNEL_CAPACITY: usize = 64;
/// Parameter tuples one view may hold by default: tens of thousands of
/// subscribers' values, with a ceiling that a flood of distinct values cannot
/// push the server's memory through.
pub const DEFAULT_MAX_TUPLES_PER_VIEW: usize = 100_000;
/// Bytes of diff events one tuple (a plain view's only one) keeps so a
/// reconnecting subscriber can resume from the LSN it reached: seconds of a
/// busy view, hours of a quiet one; a diff larger than this (a bulk load)
/// is not kept, and resuming from before it takes a snapshot.
pub const HISTORY_BYTES_PER_TUPLE: usize = 8 << 20;
/// Bytes of diff events all views and tuples keep together. When a diff
/// would pass it, the tuple it is for gives up its oldest events first.
pub const HISTORY_BYTES_TOTAL: usize = 256 << 20;

/// The bytes of resumable history kept by every tuple of a registry.
#[derive(Debug)]
struct HistoryBudget {
    used: AtomicU64,
    max: usize,
}

impl HistoryBudget {
    fn over(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.max as u64
    }
}

/// What keeping `event` in a history costs, about: its encoded forms and
/// its rows (counted at their JSON size again, a rough but proportional
/// measure of `Row`s).
fn history_cost(event: &Event) -> usize {
    let changes = event.changes.as_ref().map_or(0, |c| c.len());
    let rows = if event.rows.is_some() {
        event.sse.len()
    } else {
        0
    };
    event.sse.len() + changes + rows + 64
}

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

/// One encoded event: the SSE bytes, and for a diff the JSON array of its
/// changes (what a websocket batch embeds) and the changes themselves (what
/// a websocket merges when a client has fallen behind).
#[derive(Debug)]
pub struct Event {
    pub kind: EventKind,
    pub lsn: Lsn,
    pub sse: Bytes,
    pub changes: Option<Bytes>,
    pub rows: Option<Arc<Vec<(Row, isize)>>>,
}

#[derive(Debug, Clone)]
pub struct ViewDef {
    pub sql: String,
    pub columns: Vec<Column>,
    /// The plan as text (`GET /views/{name}/plan`).
    pub plan: String,
    /// The parameters, in tuple order (empty for most views).
    pub params: Vec<ViewParam>,
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
    /// Contents by parameter tuple (the empty tuple for a view without
    /// parameters).
    tuples: HashMap<Row, Tuple>,
    /// Contents being built by a new dataflow, by tuple (replacing the
    /// tuples' rows when ready).
    loading: HashMap<Row, HashMap<Row, i64>>,
    loading_errors: HashMap<String, i64>,
    /// The definition the loading dataflow computes.
    loading_def: Option<ViewDef>,
    lsn: Lsn,
    /// Last progress LSN broadcast to subscribers.
    announced: Lsn,
    faults: BTreeMap<Fault, String>,
    /// Evaluation errors the current rows cause (overflow, division by zero,
    /// ...), with their counts: the view is in error while there are any, as
    /// Postgres would fail the query on the same rows.
    eval_errors: HashMap<String, i64>,
    /// Subscribers were told the view fails: they get a snapshot when it recovers.
    told_failing: bool,
    /// Tuples sent to the dataflow, by request ticket, until it applies them.
    requested: HashMap<u64, Vec<Row>>,
    /// Tuples applied at a time progress has not passed yet.
    waiting: HashSet<Row>,
}

/// One parameter tuple of a view: its rows and its subscribers' channel.
struct Tuple {
    rows: HashMap<Row, i64>,
    /// The latest diff events, for subscribers resuming after a reconnect.
    history: VecDeque<Arc<Event>>,
    /// Every diff after this LSN is still in `history` (`None` before the
    /// tuple's first diff in this server's life: nothing before it can be resumed).
    history_floor: Option<Lsn>,
    /// What `history` costs ([`history_cost`]), counted in `budget` too.
    history_bytes: usize,
    budget: Arc<HistoryBudget>,
    tx: broadcast::Sender<Arc<Event>>,
    /// Events sent on `tx`, counted after each send: a websocket connection
    /// with thousands of subscriptions looks at this number instead of
    /// polling every channel. Progress is not sent per tuple (see
    /// [`View::progress`]), so a quiet tuple's channel stays empty.
    seq: Arc<AtomicU64>,
    /// Holders ([`TupleGuard`]s): subscriptions and requests being answered.
    holders: usize,
    /// When the last holder let go.
    idle_since: Option<std::time::Instant>,
    /// Its rows are complete (a new tuple's are once the dataflow has
    /// passed the time it was added at).
    ready: bool,
    /// The request that added it to the dataflow, then the time it was
    /// added at.
    ticket: Option<u64>,
    ready_at: Option<Lsn>,
    /// This process has asked the controller for it and not let it go.
    asked: bool,
}

impl Tuple {
    /// A tuple's state; `parameterized` when it is one of many tuples (see
    /// [`TUPLE_CHANNEL_CAPACITY`]), not a plain view's only one.
    fn new(ready: bool, parameterized: bool, budget: Arc<HistoryBudget>) -> Tuple {
        let capacity = if parameterized {
            TUPLE_CHANNEL_CAPACITY
        } else {
            CHANNEL_CAPACITY
        };
        Tuple {
            rows: HashMap::new(),
            history: VecDeque::new(),
            history_floor: None,
            history_bytes: 0,
            budget,
            tx: broadcast::channel(capacity).0,
            seq: Arc::new(AtomicU64::new(0)),
            holders: 0,
            idle_since: Some(std::time::Instant::now()),
            ready,
            ticket: None,
            ready_at: None,
            asked: false,
        }
    }

    /// Broadcasts a diff and keeps it for resuming subscribers (unless the
    /// tuple has no resumable position yet: then it starts one).
    fn send_diff(&mut self, event: Arc<Event>) {
        match self.history_floor {
            None => self.history_floor = Some(event.lsn),
            Some(_) => {
                let cost = history_cost(&event);
                self.history.push_back(event.clone());
                self.history_bytes += cost;
                self.budget.used.fetch_add(cost as u64, Ordering::Relaxed);
                while self.history_bytes > HISTORY_BYTES_PER_TUPLE || self.budget.over() {
                    let Some(old) = self.history.pop_front() else {
                        break;
                    };
                    self.forget(history_cost(&old));
                    self.history_floor = Some(old.lsn);
                }
            }
        }
        self.send(event);
    }

    fn forget(&mut self, cost: usize) {
        self.history_bytes -= cost;
        self.budget.used.fetch_sub(cost as u64, Ordering::Relaxed);
    }

    /// Drops the whole history (what comes next starts a new one).
    fn clear_history(&mut self) {
        self.history.clear();
        let bytes = std::mem::take(&mut self.history_bytes);
        self.budget.used.fetch_sub(bytes as u64, Ordering::Relaxed);
    }

    /// Sends `event` to the tuple's subscribers and counts it.
    fn send(&self, event: Arc<Event>) {
        let _ = self.tx.send(event);
        self.seq.fetch_add(1, Ordering::Release);
    }

    fn total(&self) -> i64 {
        self.rows.values().sum()
    }
}

impl Drop for Tuple {
    fn drop(&mut self) {
        self.clear_history();
    }
}

impl ViewState {
    /// The number of parameters of the definition being served or built.
    fn arity(&self) -> usize {
        self.loading_def
            .as_ref()
            .or(self.def.as_ref())
            .map(|d| d.params.len())
            .unwrap_or(0)
    }

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
    /// Progress events of the view, for every tuple's SSE subscribers at
    /// once (a subscriber sends one only while its tuple is ready, after the
    /// diffs before it, which its tuple's channel already holds).
    progress: broadcast::Sender<Arc<Event>>,
    /// Diff events sent since startup.
    diffs: AtomicU64,
    /// The registry's bound on resumable history.
    budget: Arc<HistoryBudget>,
}

/// A resumed subscription: the diffs missed since the client's LSN, then the live receiver.
pub struct Resumed {
    pub missed: Vec<Arc<Event>>,
    pub rx: broadcast::Receiver<Arc<Event>>,
    /// The tuple's event count (see [`Subscribed::seq`]).
    pub seq: Arc<AtomicU64>,
}

/// A subscription's start: the contents, a receiver for every event after
/// them, and the tuple's event counter, which moves after each event sent
/// on the receiver's channel (so an unchanged count means nothing new).
pub struct Subscribed {
    pub snapshot: Snapshot,
    pub rx: broadcast::Receiver<Arc<Event>>,
    pub seq: Arc<AtomicU64>,
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

pub use crate::dataflow::TupleRequest;

pub struct Registry {
    views: RwLock<BTreeMap<String, Arc<View>>>,
    by_dataflow: RwLock<HashMap<usize, Arc<View>>>,
    health: Mutex<Health>,
    progress: Mutex<Lsn>,
    /// Turns true when the server stops, ending every subscriber's stream.
    closed: tokio::sync::watch::Sender<bool>,
    /// Bumped whenever a view or tuple changes phase (waiters re-check).
    changed: tokio::sync::watch::Sender<u64>,
    /// Where new and idle tuples go (the controller).
    tuples_tx: Mutex<Option<tokio::sync::mpsc::UnboundedSender<TupleRequest>>>,
    /// Parameter tuples one view may hold at once.
    max_tuples: std::sync::atomic::AtomicUsize,
    /// Rows between the source and the view outputs (for metrics).
    in_flight: Arc<InFlight>,
    /// Dataflows replaced after a worker died.
    pub dataflow_restarts: AtomicU64,
    /// Times the source lost its connection and reconnected.
    pub reconnects: AtomicU64,
    /// The views declared at startup have all loaded (or been refused).
    started: std::sync::atomic::AtomicBool,
    /// Part of a cluster: the registry keeps every tuple in the dataflow,
    /// whichever process asked for it, until process 0 retracts it (so a
    /// subscriber here to a tuple held elsewhere finds its rows).
    shared_tuples: std::sync::atomic::AtomicBool,
    /// Times tables were read at a new snapshot, and tables copied then.
    pub resyncs: AtomicU64,
    pub tables_copied: AtomicU64,
    /// Transactions handed to the dataflow, and the batches they went in.
    pub transactions: AtomicU64,
    pub batches: AtomicU64,
    /// What the running dataflow's arrangements hold.
    sizes: Mutex<Arc<crate::dataflow::memory::Sizes>>,
    /// Resumable history kept by every view's tuples.
    history: Arc<HistoryBudget>,
}

/// Holds a tuple of a view open: while any guard exists the tuple stays in
/// the dataflow; after the last is dropped it lingers, then is retracted.
pub struct TupleGuard {
    view: Arc<View>,
    tuple: Row,
}

impl TupleGuard {
    pub fn view(&self) -> &Arc<View> {
        &self.view
    }

    pub fn tuple(&self) -> &Row {
        &self.tuple
    }

    /// The tuple's rows are complete.
    pub fn is_ready(&self) -> bool {
        let st = self.view.lock();
        st.tuples.get(&self.tuple).is_some_and(|t| t.ready)
    }
}

impl Drop for TupleGuard {
    fn drop(&mut self) {
        let mut st = self.view.lock();
        if let Some(t) = st.tuples.get_mut(&self.tuple) {
            t.holders = t.holders.saturating_sub(1);
            if t.holders == 0 {
                t.idle_since = Some(std::time::Instant::now());
            }
        }
    }
}

pub(crate) fn columns_json(columns: &[Column]) -> String {
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
        changes: None,
        rows: None,
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

/// Splits output rows into their parameter tuple (the first `k` values) and
/// the view's row.
fn by_tuple(k: usize, changes: &[(Row, isize)]) -> HashMap<Row, Vec<(Row, isize)>> {
    let mut out: HashMap<Row, Vec<(Row, isize)>> = HashMap::new();
    for (row, diff) in changes {
        let k = k.min(row.len());
        out.entry(row[..k].to_vec())
            .or_default()
            .push((row[k..].to_vec(), *diff));
    }
    out
}

impl View {
    fn new(name: &str, budget: Arc<HistoryBudget>) -> View {
        let mut tuples = HashMap::new();
        tuples.insert(Vec::new(), Tuple::new(false, false, budget.clone()));
        View {
            name: name.to_string(),
            state: Mutex::new(ViewState {
                def: None,
                refused: None,
                phase: Phase::Loading,
                dataflow: None,
                tuples,
                loading: HashMap::new(),
                loading_errors: HashMap::new(),
                loading_def: None,
                lsn: Lsn(0),
                announced: Lsn(0),
                faults: BTreeMap::new(),
                eval_errors: HashMap::new(),
                told_failing: false,
                requested: HashMap::new(),
                waiting: HashSet::new(),
            }),
            diffs: AtomicU64::new(0),
            progress: broadcast::channel(16).0,
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ViewState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The served definition, if the view has compiled.
    pub fn def(&self) -> Option<ViewDef> {
        self.lock().def.clone()
    }

    /// Sends `event` to every tuple's subscribers.
    fn send_all(st: &ViewState, event: &Arc<Event>) {
        for t in st.tuples.values() {
            t.send(event.clone());
        }
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
        for t in st.tuples.values_mut() {
            t.clear_history();
            t.history_floor = None;
        }
        Self::send_all(st, &error_event(st.lsn, &message, EventKind::Error));
    }

    /// After a failure is gone: subscribers start over from a snapshot.
    fn announce_recovery(&self, st: &mut ViewState) {
        if !st.told_failing || st.error().is_some() || st.phase != Phase::Live {
            return;
        }
        tracing::info!(view = %self.name, "view recovered");
        st.told_failing = false;
        self.send_snapshots(st);
    }

    /// Broadcasts every tuple's current contents as a reset snapshot;
    /// nothing before it can be resumed.
    fn send_snapshots(&self, st: &mut ViewState) {
        st.announced = st.lsn;
        let Some(def) = &st.def else {
            return;
        };
        let columns = def.columns.clone();
        let lsn = st.lsn;
        for t in st.tuples.values_mut() {
            t.clear_history();
            t.history_floor = Some(lsn);
            if !t.ready {
                continue;
            }
            let snap = Snapshot {
                lsn,
                columns: columns.clone(),
                rows: expand(&t.rows),
                error: None,
            };
            t.send(Arc::new(Event {
                kind: EventKind::Snapshot,
                lsn,
                sse: sse_bytes("snapshot", Some(lsn), &snapshot_json(&snap, true)),
                changes: None,
                rows: None,
            }));
        }
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
            tuples_tx: Mutex::new(None),
            max_tuples: std::sync::atomic::AtomicUsize::new(DEFAULT_MAX_TUPLES_PER_VIEW),
            in_flight,
            dataflow_restarts: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            started: std::sync::atomic::AtomicBool::new(false),
            shared_tuples: std::sync::atomic::AtomicBool::new(false),
            resyncs: AtomicU64::new(0),
            tables_copied: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            sizes: Mutex::new(Arc::default()),
            history: Arc::new(HistoryBudget {
                used: AtomicU64::new(0),
                max: HISTORY_BYTES_TOTAL,
            }),
        }
    }

    /// Keeps every tuple the dataflow holds (cluster mode), not only those
    /// this process's subscribers opened.
    pub fn share_tuples(&self) {
        self.shared_tuples.store(true, Ordering::Relaxed);
    }

    fn shares_tuples(&self) -> bool {
        self.shared_tuples.load(Ordering::Relaxed)
    }

    /// Where requests to add and retract tuples go.
    pub fn set_tuple_sink(&self, tx: tokio::sync::mpsc::UnboundedSender<TupleRequest>) {
        *self.tuples_tx.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
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
    /// Where arrangement sizes are read from (each new dataflow has its own).
    pub fn set_sizes(&self, sizes: Arc<crate::dataflow::memory::Sizes>) {
        *self.sizes.lock().unwrap_or_else(|p| p.into_inner()) = sizes;
    }

    fn sizes(&self) -> Arc<crate::dataflow::memory::Sizes> {
        self.sizes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What the arrangements of the view's dataflow hold (nothing while it
    /// has none). The tables' arrangements it reads are shared, and counted
    /// with the tables.
    pub fn memory_of(&self, view: &View) -> Usage {
        match view.lock().dataflow {
            Some(df) => self.sizes().of(Owner::View(df)),
            None => Usage::default(),
        }
    }

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
            .or_insert_with(|| Arc::new(View::new(name, self.history.clone())))
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

    /// Holds the tuple `tuple` of `view` open (adding it to the dataflow if
    /// it is new). The view must be served; `tuple` must match its parameters.
    pub fn open(&self, view: &Arc<View>, tuple: Row) -> TupleGuard {
        let mut st = view.lock();
        let t = st
            .tuples
            .entry(tuple.clone())
            .or_insert_with(|| Tuple::new(false, !tuple.is_empty(), view.budget.clone()));
        t.holders += 1;
        t.idle_since = None;
        // New here, or kept (in a cluster) after this process let it go.
        let ask = !t.asked;
        t.asked = true;
        drop(st);
        if ask {
            if let Some(tx) = self
                .tuples_tx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            {
                let _ = tx.send(TupleRequest {
                    view: view.name.clone(),
                    tuple: tuple.clone(),
                    add: true,
                });
            }
        }
        TupleGuard {
            view: view.clone(),
            tuple,
        }
    }

    /// Sets how many parameter tuples one view may hold.
    pub fn set_max_tuples(&self, max: usize) {
        self.max_tuples.store(max.max(1), Ordering::Relaxed);
    }

    pub fn max_tuples(&self) -> usize {
        self.max_tuples.load(Ordering::Relaxed)
    }

    /// [`Registry::open`], refusing a new tuple past the view's limit.
    pub fn open_limited(&self, view: &Arc<View>, tuple: Row) -> Result<TupleGuard, String> {
        {
            let st = view.lock();
            let max = self.max_tuples();
            if !st.tuples.contains_key(&tuple) && st.tuples.len() >= max {
                return Err(format!(
                    "view \"{}\" already holds {max} parameter tuples, its limit",
                    view.name
                ));
            }
        }
        Ok(self.open(view, tuple))
    }

    /// Fires whenever progress moves or a view or tuple changes state.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Waits until the tuple's rows are complete (or the view fails, or the
    /// server stops).
    pub async fn wait_tuple(&self, guard: &TupleGuard) {
        let mut changed = self.changed.subscribe();
        let mut closed = self.closed.subscribe();
        loop {
            {
                let st = guard.view.lock();
                let ready = st.tuples.get(&guard.tuple).is_none_or(|t| t.ready)
                    || st.dataflow.is_none()
                    || st.phase != Phase::Live;
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

    /// The tuples of `view` that exist now (to add to a rebuilt dataflow).
    pub fn tuples_of(&self, view: &str) -> Vec<Row> {
        let Some(v) = self.view(view) else {
            return Vec::new();
        };
        let st = v.lock();
        st.tuples
            .keys()
            .filter(|t| !t.is_empty())
            .cloned()
            .collect()
    }

    /// The controller added `tuples` of `view` to the dataflow with request
    /// `ticket`.
    pub fn tuples_requested(&self, view: &str, tuples: &[Row], ticket: u64) {
        let Some(v) = self.view(view) else {
            return;
        };
        let mut st = v.lock();
        if self.shares_tuples() && st.arity() > 0 {
            for tuple in tuples {
                if tuple.len() == st.arity() && !st.tuples.contains_key(tuple) {
                    st.tuples
                        .insert(tuple.clone(), Tuple::new(false, true, v.budget.clone()));
                }
            }
        }
        let mut asked = Vec::new();
        for tuple in tuples {
            if let Some(t) = st.tuples.get_mut(tuple) {
                if !t.ready {
                    t.ticket = Some(ticket);
                    asked.push(tuple.clone());
                }
            }
        }
        if !asked.is_empty() {
            st.requested.insert(ticket, asked);
        }
    }

    /// The dataflow applied request `ticket` at `time`: those tuples are
    /// complete once progress passes it.
    pub fn tuples_applied(&self, ticket: u64, time: Lsn) {
        for v in self.all() {
            let mut st = v.lock();
            let Some(asked) = st.requested.remove(&ticket) else {
                continue;
            };
            for tuple in asked {
                if let Some(t) = st.tuples.get_mut(&tuple) {
                    if t.ticket == Some(ticket) {
                        t.ticket = None;
                        t.ready_at = Some(time);
                        st.waiting.insert(tuple);
                    }
                }
            }
        }
    }

    /// Tuples nobody has held for `linger`: forgotten here, and returned so
    /// the controller retracts them from the dataflow. In a cluster they
    /// stay until process 0 retracts them (another process may hold them).
    pub fn expire_idle(&self, linger: std::time::Duration) -> Vec<TupleRequest> {
        let shared = self.shares_tuples();
        let mut out = Vec::new();
        for v in self.all() {
            let mut st = v.lock();
            let expired: Vec<Row> = st
                .tuples
                .iter()
                .filter(|(tuple, t)| {
                    !tuple.is_empty()
                        && t.asked
                        && t.holders == 0
                        && t.idle_since.is_some_and(|s| s.elapsed() >= linger)
                })
                .map(|(tuple, _)| tuple.clone())
                .collect();
            for tuple in expired {
                if shared {
                    if let Some(t) = st.tuples.get_mut(&tuple) {
                        t.asked = false;
                    }
                } else {
                    st.tuples.remove(&tuple);
                    st.loading.remove(&tuple);
                }
                out.push(TupleRequest {
                    view: v.name.clone(),
                    tuple,
                    add: false,
                });
            }
        }
        out
    }

    /// Process 0 took `tuples` of `view` out of the dataflow (no process
    /// holds them): forgotten, unless a subscriber here opened one again
    /// meanwhile (its request re-adds it).
    pub fn tuples_retracted(&self, view: &str, tuples: &[Row]) {
        let Some(v) = self.view(view) else {
            return;
        };
        let mut st = v.lock();
        for tuple in tuples {
            if st.tuples.get(tuple).is_some_and(|t| !t.asked) {
                st.tuples.remove(tuple);
                st.loading.remove(tuple);
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
        if def.params.is_empty() {
            // Only the empty tuple; a view that lost its parameters drops the others.
            st.tuples.retain(|t, _| t.is_empty());
            st.tuples
                .entry(Vec::new())
                .or_insert_with(|| Tuple::new(false, false, v.budget.clone()));
        } else {
            st.tuples.remove(&Vec::new());
            let arity = def.params.len();
            st.tuples.retain(|t, _| t.len() == arity);
        }
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
            View::send_all(&st, &error_event(st.lsn, message, EventKind::End));
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
    /// diff event per tuple that changed. While a view is being (re)built
    /// its outputs are collected as its new contents. A view whose rows
    /// cause evaluation errors fails (its subscribers get an error event); it
    /// keeps its contents up to date and serves again once those rows are gone.
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
        let k = st.arity();
        if st.loading_def.is_some() {
            for (tuple, rows) in by_tuple(k, changes) {
                if st.tuples.contains_key(&tuple) {
                    apply_counts(st.loading.entry(tuple).or_default(), &rows);
                }
            }
            apply_counts(&mut st.loading_errors, errors);
            return;
        }
        let split = by_tuple(k, changes);
        for (tuple, rows) in &split {
            if let Some(t) = st.tuples.get_mut(tuple) {
                apply_counts(&mut t.rows, rows);
            }
        }
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
        let mut sent = false;
        for (tuple, rows) in split {
            let Some(t) = st.tuples.get_mut(&tuple) else {
                continue;
            };
            if !t.ready || rows.is_empty() {
                continue;
            }
            t.send_diff(diff_event(lsn, &rows));
            sent = true;
        }
        if sent {
            v.diffs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A (re)built view's dataflow holds its contents as of `lsn`: they
    /// replace what the view held. Subscribers get the difference as one
    /// diff when the columns stayed the same, else a snapshot with the new
    /// columns.
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
        let mut fresh = std::mem::take(&mut st.loading);
        st.eval_errors = std::mem::take(&mut st.loading_errors);
        st.lsn = st.lsn.max(lsn);
        let first = st.def.is_none();
        let same_columns = st.def.as_ref().is_some_and(|d| d.columns == def.columns);
        let was_told = st.told_failing;
        let mut olds = HashMap::new();
        for (tuple, t) in st.tuples.iter_mut() {
            let rows = fresh.remove(tuple).unwrap_or_default();
            olds.insert(
                tuple.clone(),
                (std::mem::replace(&mut t.rows, rows), t.ready),
            );
            // Every tuple that existed when the dataflow was built is in it.
            t.ready = true;
            t.ticket = None;
            t.ready_at = None;
        }
        st.requested.clear();
        st.waiting.clear();
        st.def = Some(def);
        st.phase = Phase::Live;
        let total: i64 = st.tuples.values().map(Tuple::total).sum();
        tracing::info!(view = %v.name, rows = total, tuples = st.tuples.len(), "view ready");
        if first {
            // Subscribers only connect to a loaded view: nobody to tell yet,
            // and whoever connects hears of a failure in its first events.
            for t in st.tuples.values_mut() {
                t.history_floor = None;
            }
            st.told_failing = st.error().is_some();
        } else if st.error().is_some() {
            v.announce_failure(&mut st);
        } else if was_told || reset || !same_columns {
            st.told_failing = false;
            v.send_snapshots(&mut st);
        } else {
            let lsn = st.lsn;
            let mut sent = false;
            for (tuple, t) in st.tuples.iter_mut() {
                let Some((old, was_ready)) = olds.remove(tuple) else {
                    continue;
                };
                if !was_ready {
                    continue;
                }
                let mut changes: Vec<(Row, isize)> = Vec::new();
                for (row, n) in &t.rows {
                    let d = n - old.get(row).copied().unwrap_or(0);
                    if d != 0 {
                        changes.push((row.clone(), d as isize));
                    }
                }
                for (row, n) in &old {
                    if !t.rows.contains_key(row) {
                        changes.push((row.clone(), -*n as isize));
                    }
                }
                if !changes.is_empty() {
                    t.send_diff(diff_event(lsn, &changes));
                    sent = true;
                }
            }
            if sent {
                v.diffs.fetch_add(1, Ordering::Relaxed);
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

    /// Records that every view is complete up to `lsn`; new tuples whose
    /// time it has passed are complete.
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
            let live = st.loading_def.is_none();
            if !live || st.waiting.is_empty() {
                continue;
            }
            let at = st.lsn;
            let waiting = std::mem::take(&mut st.waiting);
            for tuple in waiting {
                let Some(t) = st.tuples.get_mut(&tuple) else {
                    continue;
                };
                match t.ready_at {
                    Some(ready) if ready <= lsn => {
                        t.ready_at = None;
                        t.ready = true;
                        // Its rows are complete at `at`: a subscriber that
                        // took them can resume from there.
                        t.clear_history();
                        t.history_floor = Some(at);
                    }
                    Some(_) => {
                        st.waiting.insert(tuple);
                    }
                    None => {}
                }
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
            let event = Arc::new(Event {
                kind: EventKind::Progress,
                lsn,
                sse: sse_bytes("progress", None, &data),
                changes: None,
                rows: None,
            });
            let _ = v.progress.send(event);
        }
    }

    /// For a subscriber that has the tuple's contents at `from`: the diff
    /// events after `from` and a receiver for everything after them, or
    /// `None` when the server no longer has every diff since `from` (it then
    /// needs a snapshot).
    pub fn resume(&self, guard: &TupleGuard, from: Lsn) -> Option<Resumed> {
        let st = guard.view.lock();
        let t = st.tuples.get(&guard.tuple)?;
        let floor = t.history_floor?;
        if st.error().is_some()
            || st.phase != Phase::Live
            || !t.ready
            || from < floor
            || from > st.lsn
        {
            return None;
        }
        let missed = t.history.iter().filter(|e| e.lsn > from).cloned().collect();
        Some(Resumed {
            missed,
            rx: t.tx.subscribe(),
            seq: t.seq.clone(),
        })
    }

    /// The tuple's current contents and a receiver for everything after
    /// them, taken atomically so no event falls between the two.
    pub fn subscribe(&self, guard: &TupleGuard) -> Subscribed {
        let mut st = guard.view.lock();
        let lsn = st.lsn;
        let columns = st
            .def
            .as_ref()
            .map(|d| d.columns.clone())
            .unwrap_or_default();
        let error = st.error();
        let t = st.tuples.entry(guard.tuple.clone()).or_insert_with(|| {
            Tuple::new(false, !guard.tuple.is_empty(), guard.view.budget.clone())
        });
        Subscribed {
            rx: t.tx.subscribe(),
            seq: t.seq.clone(),
            snapshot: Snapshot {
                lsn,
                columns,
                rows: expand(&t.rows),
                error,
            },
        }
    }

    pub fn snapshot(&self, guard: &TupleGuard) -> Snapshot {
        self.subscribe(guard).snapshot
    }

    /// The view's progress events (see [`View::progress`]).
    pub fn progress_events(&self, view: &View) -> broadcast::Receiver<Arc<Event>> {
        view.progress.subscribe()
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
            "viewcast_transactions_total",
            "Transactions from Postgres handed to the dataflow.",
            "counter",
            vec![(None, self.transactions.load(Ordering::Relaxed) as f64)],
        );
        gauge(
            "viewcast_transaction_batches_total",
            "Dataflow times those transactions went in: transactions that arrive while the dataflow is busy go in together.",
            "counter",
            vec![(None, self.batches.load(Ordering::Relaxed) as f64)],
        );
        gauge(
            "viewcast_in_flight_rows",
            "Rows handed to the workers and not yet in view output.",
            "gauge",
            vec![(None, in_flight_rows as f64)],
        );
        gauge(
            "viewcast_history_bytes",
            "Bytes of diff events kept for resuming subscribers, all views together (bounded by 256 MiB, and 8 MiB per view or parameter tuple).",
            "gauge",
            vec![(None, self.history.used.load(Ordering::Relaxed) as f64)],
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
        let mut tuples = Vec::new();
        let mut subscribers = Vec::new();
        let mut diffs = Vec::new();
        let mut failed = Vec::new();
        let mut records = Vec::new();
        let mut batches = Vec::new();
        let mut bytes = Vec::new();
        let mut buffered = Vec::new();
        let sizes = self.sizes();
        for v in &views {
            let name = Some(v.name.as_str());
            let st = v.lock();
            if !st.served() {
                continue;
            }
            let usage = st
                .dataflow
                .map(|df| sizes.of(Owner::View(df)))
                .unwrap_or_default();
            records.push((name, usage.records as f64));
            batches.push((name, usage.batches as f64));
            bytes.push((name, usage.bytes as f64));
            buffered.push((name, usage.buffered_bytes as f64));
            rows.push((
                name,
                st.tuples.values().map(Tuple::total).sum::<i64>() as f64,
            ));
            failed.push((name, f64::from(u8::from(st.error().is_some()))));
            tuples.push((name, st.tuples.len() as f64));
            subscribers.push((
                name,
                st.tuples
                    .values()
                    .map(|t| t.tx.receiver_count())
                    .sum::<usize>() as f64,
            ));
            drop(st);
            diffs.push((name, v.diffs.load(Ordering::Relaxed) as f64));
        }
        gauge(
            "viewcast_view_rows",
            "Rows in the view (all parameter tuples).",
            "gauge",
            rows,
        );
        gauge(
            "viewcast_view_tuples",
            "Parameter tuples of the view in the dataflow (1 for a view without parameters).",
            "gauge",
            tuples,
        );
        gauge(
            "viewcast_view_subscribers",
            "Open subscriptions to the view.",
            "gauge",
            subscribers,
        );
        gauge(
            "viewcast_view_diffs_total",
            "Transactions that changed the view.",
            "counter",
            diffs,
        );
        gauge(
            "viewcast_view_failed",
            "1 if the view is in an error state.",
            "gauge",
            failed,
        );
        gauge(
            "viewcast_view_arranged_records",
            "Updates held in the view's own arrangements (joins, aggregates, ...), summed over workers; the tables it reads are counted once, in viewcast_tables_arranged_records.",
            "gauge",
            records,
        );
        gauge(
            "viewcast_view_arrangement_batches",
            "Batches those updates are in.",
            "gauge",
            batches,
        );
        gauge(
            "viewcast_view_arranged_bytes",
            "Bytes the batches of the view's own arrangements hold (keys, values, times, counts, offsets), summed over workers, measured about once a second.",
            "gauge",
            bytes,
        );
        gauge(
            "viewcast_view_buffered_bytes",
            "Bytes of updates the view's arrangements received and have not yet formed into batches.",
            "gauge",
            buffered,
        );
        let tables = sizes.tables();
        gauge(
            "viewcast_tables_arranged_records",
            "Updates held in the tables' shared arrangements (base tables and parameter tables), summed over workers.",
            "gauge",
            vec![(None, tables.records as f64)],
        );
        gauge(
            "viewcast_tables_arrangement_batches",
            "Batches those updates are in.",
            "gauge",
            vec![(None, tables.batches as f64)],
        );
        gauge(
            "viewcast_tables_arranged_bytes",
            "Bytes the batches of the tables' shared arrangements hold, rows included (a row's bytes are shared with the replication source's state), measured about once a second.",
            "gauge",
            vec![(None, tables.bytes as f64)],
        );
        m
    }
}

fn diff_event(lsn: Lsn, rows: &[(Row, isize)]) -> Arc<Event> {
    let mut data = String::with_capacity(64 + rows.len() * 32);
    let _ = write!(data, "{{\"lsn\":\"{lsn}\",\"changes\":");
    write_changes_json(
        rows.iter().map(|(row, diff)| (row, *diff as i64)),
        &mut data,
    );
    data.push('}');
    let changes =
        Bytes::copy_from_slice(&data.as_bytes()[data.find('[').unwrap_or(0)..data.len() - 1]);
    Arc::new(Event {
        kind: EventKind::Diff,
        lsn,
        sse: sse_bytes("diff", Some(lsn), &data),
        changes: Some(changes),
        rows: Some(Arc::new(rows.to_vec())),
    })
}

/// `[{"row":[...],"diff":n},...]`: a list of changes as every stream
/// encodes it.
pub(crate) fn write_changes_json<'a>(
    changes: impl IntoIterator<Item = (&'a Row, i64)>,
    out: &mut String,
) {
    out.push('[');
    for (i, (row, diff)) in changes.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"row\":");
        write_row_json(row, out);
        let _ = write!(out, ",\"diff\":{diff}}}");
    }
    out.push(']');
}

/// `[[...],...]`: rows as a JSON list.
pub(crate) fn write_rows_json<'a>(rows: impl IntoIterator<Item = &'a Row>, out: &mut String) {
    out.push('[');
    for (i, row) in rows.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_row_json(row, out);
    }
    out.push(']');
}

/// A multiset's rows, each repeated by its multiplicity.
pub(crate) fn expanded(rows: &HashMap<Row, i64>) -> impl Iterator<Item = &Row> {
    rows.iter()
        .flat_map(|(row, n)| std::iter::repeat_n(row, (*n).max(0) as usize))
}

/// A multiset as a list with each row repeated by its multiplicity.
fn expand(rows: &HashMap<Row, i64>) -> Vec<Row> {
    expanded(rows).cloned().collect()
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
        "{{\"lsn\":\"{}\",\"columns\":{},\"rows\":",
        snap.lsn,
        columns_json(&snap.columns)
    );
    write_rows_json(&snap.rows, &mut s);
    if reset {
        s.push_str(",\"reset\":true");
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repr::{Datum, Type};
    use crate::sql::Column;

    fn live_view(registry: &Registry) -> (Arc<View>, TupleGuard) {
        let def = ViewDef {
            sql: String::new(),
            columns: vec![Column {
                name: "t".into(),
                ty: Type::Text,
            }],
            plan: String::new(),
            params: Vec::new(),
        };
        registry.attach("v", def, 0);
        registry.ready(0, Lsn(1), false);
        let view = registry.view("v").expect("attached");
        let guard = registry.open(&view, Vec::new());
        (view, guard)
    }

    fn row(bytes: usize, n: u64) -> Vec<(Row, isize)> {
        vec![(vec![Datum::Text(format!("{n}{}", "x".repeat(bytes)))], 1)]
    }

    #[test]
    fn history_is_bounded_in_bytes_and_resumes_within_it() {
        let registry = Registry::new(Arc::new(InFlight::new(10)));
        let (_view, guard) = live_view(&registry);
        // The first diff starts the history; small ones are all kept.
        for n in 2..100 {
            registry.apply(0, Lsn(n), &row(100, n), &[]);
        }
        let resumed = registry.resume(&guard, Lsn(2)).expect("within history");
        assert_eq!(resumed.missed.len(), 97);
        // Diffs of 1 MiB: the tuple keeps at most 8 MiB of them.
        for n in 100..120 {
            registry.apply(0, Lsn(n), &row(1 << 20, n), &[]);
        }
        let used = registry.history.used.load(Ordering::Relaxed) as usize;
        assert!(used <= HISTORY_BYTES_PER_TUPLE, "{used} bytes kept");
        assert!(used > HISTORY_BYTES_PER_TUPLE / 2, "{used} bytes kept");
        assert!(
            registry.resume(&guard, Lsn(50)).is_none(),
            "dropped: snapshot"
        );
        let resumed = registry.resume(&guard, Lsn(117)).expect("recent");
        assert_eq!(resumed.missed.len(), 2);
        // A diff larger than the bound is not kept at all.
        registry.apply(0, Lsn(200), &row(9 << 20, 200), &[]);
        assert!(registry.resume(&guard, Lsn(119)).is_none());
        assert!(registry.resume(&guard, Lsn(200)).is_some());
        // What a removed view kept is given back.
        registry.remove("v", "gone");
        drop(guard);
        drop(_view);
        assert_eq!(registry.history.used.load(Ordering::Relaxed), 0);
    }
}
