//! The registry of views: each view's definition, its current contents (the
//! multiset a new subscriber starts from), and a broadcast channel of encoded
//! events. Every diff batch is encoded to SSE bytes once and the bytes are
//! shared by all of the view's subscribers.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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
    Error,
}

/// One encoded SSE event.
#[derive(Debug)]
pub struct Event {
    pub kind: EventKind,
    pub lsn: Lsn,
    pub sse: Bytes,
}

pub struct ViewDef {
    pub name: String,
    pub sql: String,
    pub columns: Vec<Column>,
    /// The plan as text (`GET /views/{name}/plan`).
    pub plan: String,
}

struct ViewState {
    rows: HashMap<Row, i64>,
    lsn: Lsn,
    /// The latest diff events, for subscribers resuming after a reconnect.
    history: VecDeque<Arc<Event>>,
    /// Every diff after this LSN is still in `history` (`None` before the first
    /// diff of this server's life: nothing before it can be resumed).
    history_floor: Option<Lsn>,
    /// Last progress LSN broadcast to subscribers.
    announced: Lsn,
    /// A failure for good: replication stopped, a table changed shape.
    fatal: Option<String>,
    /// Evaluation errors the current rows cause (overflow, division by zero,
    /// ...), with their counts: the view is in error while there are any, as
    /// Postgres would fail the query on the same rows.
    eval_errors: HashMap<String, i64>,
}

impl ViewState {
    fn error(&self) -> Option<String> {
        self.fatal
            .clone()
            .or_else(|| self.eval_errors.keys().min().cloned())
    }
}

pub struct View {
    pub def: ViewDef,
    state: Mutex<ViewState>,
    tx: broadcast::Sender<Arc<Event>>,
    /// Diff events sent since startup.
    diffs: std::sync::atomic::AtomicU64,
}

/// A view that was refused at compile time.
pub struct Refused {
    pub name: String,
    pub sql: String,
    /// One line: what is wrong and where.
    pub error: String,
    /// The error with the offending line and a caret under the spot.
    pub detail: String,
}

/// A resumed subscription: the diffs missed since the client's LSN, then the live receiver.
pub struct Resumed {
    pub missed: Vec<Arc<Event>>,
    pub rx: broadcast::Receiver<Arc<Event>>,
}

/// What a subscriber starts from.
pub struct Snapshot {
    pub lsn: Lsn,
    pub rows: Vec<Row>,
    pub error: Option<String>,
}

pub struct Registry {
    views: Vec<View>,
    by_name: HashMap<String, usize>,
    pub refused: Vec<Refused>,
    /// Which views read each table, to fail them when the table fails.
    readers: Vec<Vec<usize>>,
    streaming: AtomicBool,
    /// The snapshot's LSN: healthy once progress has reached it while streaming.
    ready_at: Mutex<Lsn>,
    progress: Mutex<Lsn>,
    /// Turns true when the server stops, ending every subscriber's stream.
    closed: tokio::sync::watch::Sender<bool>,
    /// Turns true once the views first hold the initial snapshot; stays true
    /// while reconnecting (the contents stay valid as of their LSN).
    loaded: tokio::sync::watch::Sender<bool>,
    /// Rows between the source and the view outputs (for metrics).
    in_flight: Arc<InFlight>,
}

fn columns_json(columns: &[Column]) -> String {
    serde_json::to_string(columns).unwrap_or_else(|_| "[]".into())
}

impl Registry {
    pub fn new(
        defs: Vec<(ViewDef, Vec<usize>)>,
        refused: Vec<Refused>,
        num_tables: usize,
        in_flight: Arc<InFlight>,
    ) -> Registry {
        let mut readers = vec![Vec::new(); num_tables];
        let mut views = Vec::new();
        let mut by_name = HashMap::new();
        for (i, (def, tables)) in defs.into_iter().enumerate() {
            for t in tables {
                if !readers[t].contains(&i) {
                    readers[t].push(i);
                }
            }
            by_name.insert(def.name.clone(), i);
            let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
            views.push(View {
                def,
                state: Mutex::new(ViewState {
                    rows: HashMap::new(),
                    lsn: Lsn(0),
                    history: VecDeque::new(),
                    history_floor: None,
                    announced: Lsn(0),
                    fatal: None,
                    eval_errors: HashMap::new(),
                }),
                tx,
                diffs: std::sync::atomic::AtomicU64::new(0),
            });
        }
        Registry {
            views,
            by_name,
            refused,
            readers,
            streaming: AtomicBool::new(false),
            ready_at: Mutex::new(Lsn(u64::MAX)),
            progress: Mutex::new(Lsn(0)),
            closed: tokio::sync::watch::channel(false).0,
            loaded: tokio::sync::watch::channel(false).0,
            in_flight,
        }
    }

    /// Ends all subscriber streams (server shutdown).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    pub fn closed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closed.subscribe()
    }

    pub fn views(&self) -> &[View] {
        &self.views
    }

    pub fn get(&self, name: &str) -> Option<(usize, &View)> {
        self.by_name.get(name).map(|i| (*i, &self.views[*i]))
    }

    pub fn refused(&self, name: &str) -> Option<&Refused> {
        self.refused.iter().find(|r| r.name == name)
    }

    /// The source is streaming after a snapshot taken at `snapshot_lsn`.
    pub fn set_streaming(&self, up: bool, snapshot_lsn: Lsn) {
        if up {
            *self.ready_at.lock().expect("ready lock") = snapshot_lsn;
            if self.progress() >= snapshot_lsn {
                self.loaded.send_replace(true);
            }
        }
        self.streaming.store(up, Ordering::SeqCst);
    }

    /// Streaming, and the views reflect the snapshot.
    pub fn is_streaming(&self) -> bool {
        self.streaming.load(Ordering::SeqCst)
            && self.progress() >= *self.ready_at.lock().expect("ready lock")
    }

    pub fn progress(&self) -> Lsn {
        *self.progress.lock().expect("progress lock")
    }

    /// Applies one transaction's changes to a view and broadcasts them as one
    /// diff event. A view whose rows cause evaluation errors fails (its
    /// subscribers get an error event); it keeps its contents up to date and
    /// serves again once those rows are gone.
    pub fn apply(
        &self,
        view: usize,
        lsn: Lsn,
        changes: &[(Row, isize)],
        errors: &[(String, isize)],
    ) {
        let v = &self.views[view];
        let mut st = v.state.lock().expect("view lock");
        if st.fatal.is_some() {
            return;
        }
        let was_failing = !st.eval_errors.is_empty();
        for (row, diff) in changes {
            let n = st.rows.entry(row.clone()).or_insert(0);
            *n += *diff as i64;
            if *n == 0 {
                st.rows.remove(row);
            }
        }
        for (e, diff) in errors {
            let n = st.eval_errors.entry(e.clone()).or_insert(0);
            *n += *diff as i64;
            if *n == 0 {
                st.eval_errors.remove(e);
            }
        }
        st.lsn = lsn;
        st.announced = lsn;
        let failing = !st.eval_errors.is_empty();
        if failing {
            if !was_failing {
                let message = st.error().unwrap_or_default();
                tracing::warn!(view = %v.def.name, error = %message, "view failed");
                Self::send_error(v, lsn, &message);
            }
            return;
        }
        if was_failing {
            // Recovered: subscribers start over from a snapshot; nothing
            // before this point can be resumed.
            tracing::info!(view = %v.def.name, "view recovered");
            st.history.clear();
            st.history_floor = Some(lsn);
            return;
        }
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
        let event = Arc::new(Event {
            kind: EventKind::Diff,
            lsn,
            sse: sse_bytes("diff", Some(lsn), &data),
        });
        if st.history_floor.is_none() {
            // The first diff takes the view from empty: resuming needs a later position.
            st.history_floor = Some(lsn);
        } else {
            st.history.push_back(event.clone());
            if st.history.len() > HISTORY_LEN {
                if let Some(old) = st.history.pop_front() {
                    st.history_floor = Some(old.lsn);
                }
            }
        }
        v.diffs.fetch_add(1, Ordering::Relaxed);
        let _ = v.tx.send(event);
    }

    /// Records that every view is complete up to `lsn`.
    pub fn advance(&self, lsn: Lsn) {
        let mut p = self.progress.lock().expect("progress lock");
        if lsn > *p {
            *p = lsn;
        }
        drop(p);
        for v in &self.views {
            let mut st = v.state.lock().expect("view lock");
            if lsn > st.lsn {
                st.lsn = lsn;
            }
        }
        if !*self.loaded.borrow() && lsn >= *self.ready_at.lock().expect("ready lock") {
            self.loaded.send_replace(true);
        }
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
                            v.replace('\\', "\\\\").replace('"', "\\\"")
                        );
                    }
                    None => {
                        let _ = writeln!(m, "{name} {value}");
                    }
                }
            }
        };
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
            "viewcast_in_flight_rows",
            "Rows handed to the workers and not yet in view output.",
            "gauge",
            vec![(None, in_flight_rows as f64)],
        );
        gauge(
            "viewcast_views_refused",
            "Views refused at startup.",
            "gauge",
            vec![(None, self.refused.len() as f64)],
        );
        let mut rows = Vec::new();
        let mut subscribers = Vec::new();
        let mut diffs = Vec::new();
        let mut failed = Vec::new();
        for v in &self.views {
            let name = Some(v.def.name.as_str());
            let st = v.state.lock().expect("view lock");
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

    /// Whether the views hold the initial snapshot yet.
    pub fn is_loaded(&self) -> bool {
        *self.loaded.borrow()
    }

    /// Waits until the views hold the initial snapshot (or the server stops).
    pub async fn wait_loaded(&self) {
        let mut loaded = self.loaded.subscribe();
        let mut closed = self.closed.subscribe();
        tokio::select! {
            _ = loaded.wait_for(|l| *l) => {}
            _ = closed.wait_for(|c| *c) => {}
        }
    }

    /// Broadcasts a progress event to views whose LSN moved since the last one
    /// (or to all of them when `heartbeat`).
    pub fn announce_progress(&self, heartbeat: bool) {
        for v in &self.views {
            let mut st = v.state.lock().expect("view lock");
            if st.error().is_some() || (!heartbeat && st.lsn <= st.announced) {
                continue;
            }
            st.announced = st.lsn;
            let lsn = st.lsn;
            let data = format!("{{\"lsn\":\"{lsn}\"}}");
            let _ = v.tx.send(Arc::new(Event {
                kind: EventKind::Progress,
                lsn,
                sse: sse_bytes("progress", None, &data),
            }));
        }
    }

    /// Puts a view into the error state for good and tells its subscribers.
    pub fn fail(&self, view: usize, message: &str) {
        let v = &self.views[view];
        let mut st = v.state.lock().expect("view lock");
        if st.fatal.is_some() {
            return;
        }
        tracing::error!(view = %v.def.name, error = %message, "view failed");
        let was_failing = st.error().is_some();
        st.fatal = Some(message.to_string());
        if !was_failing {
            Self::send_error(v, st.lsn, message);
        }
    }

    fn send_error(v: &View, lsn: Lsn, message: &str) {
        let mut data = String::from("{\"message\":");
        write_json_string(message, &mut data);
        data.push('}');
        let _ = v.tx.send(Arc::new(Event {
            kind: EventKind::Error,
            lsn,
            sse: sse_bytes("error", None, &data),
        }));
    }

    pub fn fail_table(&self, table: usize, message: &str) {
        for &v in self.readers.get(table).map(Vec::as_slice).unwrap_or(&[]) {
            self.fail(v, message);
        }
    }

    pub fn fail_all(&self, message: &str) {
        for i in 0..self.views.len() {
            self.fail(i, message);
        }
        // Nothing more will load: let waiting subscribers see the error.
        self.loaded.send_replace(true);
    }

    /// For a subscriber that has the view's contents at `from`: the diff events
    /// after `from` and a receiver for everything after them, or `None` when
    /// the server no longer has every diff since `from` (it then needs a snapshot).
    pub fn resume(&self, view: usize, from: Lsn) -> Option<Resumed> {
        let v = &self.views[view];
        let st = v.state.lock().expect("view lock");
        let floor = st.history_floor?;
        if st.error().is_some() || from < floor || from > st.lsn {
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
            rx: v.tx.subscribe(),
        })
    }

    /// The current contents and a receiver for everything after them, taken
    /// atomically so no event falls between the two.
    pub fn subscribe(&self, view: usize) -> (Snapshot, broadcast::Receiver<Arc<Event>>) {
        let v = &self.views[view];
        let st = v.state.lock().expect("view lock");
        let rx = v.tx.subscribe();
        (
            Snapshot {
                lsn: st.lsn,
                rows: expand(&st.rows),
                error: st.error(),
            },
            rx,
        )
    }

    pub fn snapshot(&self, view: usize) -> Snapshot {
        self.subscribe(view).0
    }
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
/// when it replaces diffs a subscriber fell too far behind to receive).
pub fn snapshot_json(columns: &[Column], snap: &Snapshot, reset: bool) -> String {
    let mut s = String::with_capacity(64 + snap.rows.len() * 32);
    let _ = write!(
        s,
        "{{\"lsn\":\"{}\",\"columns\":{},\"rows\":[",
        snap.lsn,
        columns_json(columns)
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
