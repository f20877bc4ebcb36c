//! One client connection's subscriptions, moving together: after every batch
//! the connection sends, each of its subscriptions equals its query at the
//! batch's LSN.
//!
//! Events reach each subscription on its tuple's channel; the registry sends
//! a transaction's events to every channel before it records progress past
//! that transaction, so once the connection sees progress at `P` it holds
//! every event up to `P`. A batch takes, for every subscription, what
//! happened up to `P` and leaves the rest for the next one. Between batches
//! changes are merged into a net change per row, so a client that falls
//! behind gets one batch with the net change since what it holds, not every
//! transaction it missed; its memory is bounded by the contents of what it
//! subscribed to, not by how long it lags.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::broadcast::{self, error::TryRecvError};

use super::{
    columns_json, expanded, write_changes_json, write_rows_json, Event, EventKind, Registry,
    TupleGuard,
};
use crate::pg::Lsn;
use crate::repr::{write_json_string, Row};
use crate::sql::Column;

/// What a subscription has for the next batch.
enum Pending {
    /// Nothing sent yet or the client's rows must be replaced: the whole
    /// contents at `lsn` (events after it already applied).
    Snapshot {
        lsn: Lsn,
        columns: Vec<Column>,
        rows: HashMap<Row, i64>,
    },
    /// The net change since the last batch, and how many events it came
    /// from; while that is one, the event (its encoded changes are reused
    /// as they are).
    Changes {
        net: HashMap<Row, i64>,
        events: usize,
        only: Option<Arc<Event>>,
        /// About how many bytes `net` takes encoded: what a client that
        /// lags behind costs, however many transactions it missed.
        bytes: usize,
    },
    /// The view fails; nothing until it recovers (with a snapshot).
    Failing,
}

impl Pending {
    fn changes() -> Pending {
        Pending::Changes {
            net: HashMap::new(),
            events: 0,
            only: None,
            bytes: 0,
        }
    }
}

pub struct Subscription {
    pub id: String,
    guard: TupleGuard,
    rx: Option<broadcast::Receiver<Arc<Event>>>,
    /// The tuple's event count, and the count when the channel was last
    /// drained: polling thousands of quiet subscriptions is one atomic load
    /// each.
    seq: Option<Arc<AtomicU64>>,
    seen: u64,
    /// Events received but later than the batch being built.
    later: VecDeque<Arc<Event>>,
    pending: Pending,
    /// The subscription must take a fresh snapshot (a reset, or it lagged).
    resubscribe: bool,
    /// The view's file was removed: the subscription ends.
    pub ended: Option<String>,
    /// Error messages to send (the view failed).
    pub errors: Vec<String>,
}

impl Subscription {
    /// A new subscription to an open tuple: it takes its snapshot as soon as
    /// the tuple's rows are complete.
    pub fn new(id: String, guard: TupleGuard) -> Subscription {
        Subscription {
            id,
            guard,
            rx: None,
            seq: None,
            seen: 0,
            later: VecDeque::new(),
            pending: Pending::Failing,
            resubscribe: true,
            ended: None,
            errors: Vec::new(),
        }
    }

    /// A subscription whose client holds the contents at `from`: it gets
    /// only the changes since, if the tuple's history reaches back that far.
    pub fn resume(reg: &Registry, id: String, guard: TupleGuard, from: Lsn) -> Subscription {
        let mut sub = Subscription::new(id, guard);
        if let Some(r) = reg.resume(&sub.guard, from) {
            sub.rx = Some(r.rx);
            sub.seen = r.seq.load(Ordering::Acquire);
            sub.seq = Some(r.seq);
            sub.later.extend(r.missed);
            sub.pending = Pending::changes();
            sub.resubscribe = false;
        }
        sub
    }

    pub fn view_name(&self) -> &str {
        &self.guard.view().name
    }

    /// Nothing to send and nothing to wait for: a poll that finds no new
    /// event leaves it so, and a batch can skip it.
    pub fn is_settled(&self) -> bool {
        !self.resubscribe
            && self.later.is_empty()
            && self.errors.is_empty()
            && self.ended.is_none()
            && match &self.pending {
                Pending::Changes { events, .. } => *events == 0,
                Pending::Failing => true,
                Pending::Snapshot { .. } => false,
            }
    }

    /// Takes everything on the channel; snapshots are taken once the tuple's
    /// rows are complete.
    pub fn poll(&mut self, reg: &Registry) {
        if self.resubscribe && self.guard.is_ready() {
            let subscribed = reg.subscribe(&self.guard);
            let snap = subscribed.snapshot;
            self.rx = Some(subscribed.rx);
            self.seen = subscribed.seq.load(Ordering::Acquire);
            self.seq = Some(subscribed.seq);
            self.later.clear();
            self.resubscribe = false;
            self.pending = if snap.error.is_some() {
                if let Some(e) = snap.error {
                    self.errors.push(e);
                }
                Pending::Failing
            } else {
                let mut rows = HashMap::new();
                for r in snap.rows {
                    *rows.entry(r).or_insert(0) += 1;
                }
                Pending::Snapshot {
                    lsn: snap.lsn,
                    columns: snap.columns,
                    rows,
                }
            };
        }
        let Some(rx) = self.rx.as_mut() else {
            return;
        };
        // Counted after each send, and progress is read before this poll:
        // every event up to that progress is counted in what is loaded here.
        if let Some(seq) = &self.seq {
            let now = seq.load(Ordering::Acquire);
            if now == self.seen {
                return;
            }
            self.seen = now;
        }
        loop {
            match rx.try_recv() {
                Ok(e) => self.later.push_back(e),
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
                Err(TryRecvError::Lagged(_)) => {
                    // Too far behind for the channel: start over from a snapshot.
                    self.resubscribe = true;
                    self.rx = None;
                    self.later.clear();
                    return;
                }
            }
        }
    }

    /// Merges the events up to `upto` into what is pending (also while the
    /// client has not taken the last batch: it then holds the net change,
    /// not the events).
    pub fn absorb(&mut self, upto: Lsn) {
        while let Some(e) = self.later.front() {
            if e.lsn > upto && e.kind != EventKind::Error && e.kind != EventKind::End {
                break;
            }
            let e = self.later.pop_front().expect("front exists");
            match e.kind {
                EventKind::Progress => {}
                EventKind::Diff => {
                    let rows = e.rows.clone().unwrap_or_default();
                    match &mut self.pending {
                        Pending::Snapshot { lsn, rows: all, .. } => {
                            if e.lsn > *lsn {
                                for (r, d) in rows.iter() {
                                    add(all, r, *d as i64);
                                }
                            }
                        }
                        Pending::Changes {
                            net,
                            events,
                            only,
                            bytes,
                        } => {
                            for (r, d) in rows.iter() {
                                match add(net, r, *d as i64) {
                                    Entry::Added => *bytes += row_bytes(r),
                                    Entry::Removed => *bytes -= row_bytes(r).min(*bytes),
                                    Entry::Changed => {}
                                }
                            }
                            *events += 1;
                            *only = if *events == 1 { Some(e) } else { None };
                        }
                        Pending::Failing => {}
                    }
                }
                EventKind::Snapshot => {
                    self.resubscribe = true;
                    self.rx = None;
                    self.later.clear();
                    self.pending = Pending::Failing;
                    return;
                }
                EventKind::Error => {
                    if let Some(m) = error_message(&e) {
                        self.errors.push(m);
                    }
                    self.pending = Pending::Failing;
                }
                EventKind::End => {
                    self.ended = Some(error_message(&e).unwrap_or_else(|| "view removed".into()));
                    self.pending = Pending::Failing;
                    self.later.clear();
                    return;
                }
            }
        }
    }

    /// This subscription's entry in a batch at `lsn` (`None` if it has
    /// nothing to say, or its snapshot is newer than `lsn`).
    pub fn take(&mut self, lsn: Lsn) -> Option<String> {
        self.absorb(lsn);
        match &mut self.pending {
            Pending::Failing => None,
            Pending::Snapshot {
                lsn: at,
                columns,
                rows,
            } => {
                if *at > lsn {
                    return None;
                }
                let mut s = String::from("{\"snapshot\":true,\"columns\":");
                s.push_str(&columns_json(columns));
                s.push_str(",\"rows\":");
                write_rows_json(expanded(rows), &mut s);
                s.push('}');
                self.pending = Pending::changes();
                Some(s)
            }
            Pending::Changes {
                net,
                events,
                only,
                bytes,
            } => {
                if *events == 0 {
                    return None;
                }
                let out = if let Some(e) = only.take() {
                    // One transaction: its changes as encoded once for everyone.
                    let bytes: Bytes = e.changes.clone().unwrap_or_default();
                    format!("{{\"changes\":{}}}", String::from_utf8_lossy(&bytes))
                } else {
                    let mut s = String::from("{\"changes\":");
                    write_changes_json(
                        net.iter().filter(|(_, d)| **d != 0).map(|(r, d)| (r, *d)),
                        &mut s,
                    );
                    s.push('}');
                    s
                };
                net.clear();
                *events = 0;
                *bytes = 0;
                if out == "{\"changes\":[]}" {
                    return None;
                }
                Some(out)
            }
        }
    }

    /// The client does not hold this subscription's rows yet.
    pub fn awaiting_snapshot(&self) -> bool {
        self.resubscribe || matches!(self.pending, Pending::Snapshot { .. })
    }

    /// About how many bytes of changes are held for the next batch (to
    /// bound a slow client): the net change since the client took its last
    /// batch. Events past the registry's progress are not counted: they are
    /// shared with every subscriber and merged as soon as progress passes
    /// them. A snapshot the client asked for is not counted either; it is
    /// the contents it subscribed to.
    pub fn pending_bytes(&self) -> usize {
        match &self.pending {
            Pending::Changes { bytes, .. } => *bytes,
            Pending::Snapshot { .. } | Pending::Failing => 0,
        }
    }
}

/// What [`add`] did to the map's entries.
enum Entry {
    Added,
    Removed,
    Changed,
}

fn add(map: &mut HashMap<Row, i64>, row: &Row, d: i64) -> Entry {
    if d == 0 {
        return Entry::Changed;
    }
    match map.get_mut(row) {
        Some(n) => {
            *n += d;
            if *n == 0 {
                map.remove(row);
                Entry::Removed
            } else {
                Entry::Changed
            }
        }
        None => {
            map.insert(row.clone(), d);
            Entry::Added
        }
    }
}

/// About how many bytes `row` takes as a JSON change (`{"row":[...],"diff":n}`).
fn row_bytes(row: &Row) -> usize {
    use crate::repr::Datum;
    let values: usize = row
        .iter()
        .map(|d| match d {
            Datum::Text(s) | Datum::Json(s) => s.len() + 3,
            Datum::Bytes(b) => 2 * b.len() + 5,
            Datum::Numeric(_) => 24,
            _ => 12,
        })
        .sum();
    values + 24
}

/// The message of an error event (its JSON data: `{"message": ...}`).
fn error_message(e: &Event) -> Option<String> {
    let text = std::str::from_utf8(&e.sse).ok()?;
    let data = text.lines().find_map(|l| l.strip_prefix("data: "))?;
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    v["message"].as_str().map(str::to_string)
}

/// A batch message: `{"type":"batch","lsn":...,"subs":{id: entry, ...}}`.
pub fn batch_json(lsn: Lsn, entries: &[(String, String)]) -> String {
    let mut s = format!("{{\"type\":\"batch\",\"lsn\":\"{lsn}\",\"subs\":{{");
    for (i, (id, entry)) in entries.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        write_json_string(id, &mut s);
        s.push(':');
        s.push_str(entry);
    }
    s.push_str("}}");
    s
}
