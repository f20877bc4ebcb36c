//! Timely workers hosting the base tables and every view, each in a dataflow
//! of its own so views and tables can come and go while the rest runs.
//!
//! ```text
//!  controller ─AddTable{id}──────▶ each worker: a dataflow with an input for
//!                                  the table, arranged once (its trace is shared)
//!             ─Load{table, rows}▶ the rows a table holds when a group begins
//!                                  to hold it, at a time of their own
//!             ─AddView{id, plan}─▶ a dataflow that imports the traces of the
//!                                  tables the plan reads and renders it
//!             ─Apply{lsn, rows}──▶ each worker: its share of the rows into the
//!                                  tables' inputs, at time lsn; only those
//!                                  tables, and the views reading them, move
//!             ─Advance{lsn}──────▶ lsn is complete (no input moves)
//!             ─DropView / DropTable
//!  registry   ◀─Output::Batch / Progress / ViewReady── worker 0: view outputs,
//!                                  exchanged to it and released once every
//!                                  dataflow's frontier has passed lsn
//! ```
//! Time is the commit LSN. A batch for time `t` leaves only when no worker can
//! produce more output at `t`, so a subscriber sees a transaction whole. A
//! view that a transaction does not touch does not move at all (`import.rs`).
//!
//! A view added later imports the tables' arrangements as of the inputs' current
//! time: its first output is its whole contents at that time (no copy from
//! Postgres is needed), after which it follows the same stream as the others.
//! Every worker receives the same commands in the same order, so all of them
//! build the same dataflows in the same order, as timely requires.
//!
//! The workers are split into groups (`--view-groups`), each a timely
//! instance of its own. A view is built in one group only, and a group
//! arranges a table the source follows only once a view built there reads
//! it: it is loaded with the rows the source holds then
//! ([`Dataflow::load`]) and follows the table's changes from there on (the
//! arrangements hold handles to the source's row allocations, so a second
//! group's copy costs handles, not rows). A transaction's views then move
//! in parallel, and each view's progress is tracked by its own group's
//! workers alone. Each group's first worker releases its own views' outputs
//! and reports its progress to [`JointProgress`]: the dataflow's progress
//! (what the source acknowledges) is the least of the groups'.

mod flat;
mod import;
pub mod memory;
mod operator_times;
pub mod render;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::operators::arrange::{ShutdownButton, TraceAgent};
use differential_dataflow::trace::implementations::KeySpine;
use differential_dataflow::trace::TraceReader;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::{Exchange, Probe};
use timely::progress::frontier::AntichainRef;
use timely::progress::Antichain;

use serde::{Deserialize, Serialize};
use timely::dataflow::operators::core::Map;
use timely::dataflow::operators::{Input as _, Inspect};
use timely::dataflow::InputHandle;

use crate::cluster::{Cluster, Mirror};
use crate::repr::{PackedRow, Row};
use crate::sql::{expr::Expr, Plan};

/// Updates of one transaction: (table id, row, +1/-1). The rows are the
/// source's own (a clone shares the bytes), so a table's arrangement holds
/// the same allocations as the source's state.
pub type Updates = Vec<(usize, PackedRow, isize)>;

/// A tuple added to or taken from a parameterized view's dataflow, as a
/// view's subscribers need it (`views::Registry::open`) or let it go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TupleRequest {
    pub view: String,
    pub tuple: Row,
    pub add: bool,
}

pub enum Command {
    /// A new base table (or a new version of one whose columns changed).
    /// `counts`: this group's arrangement is the one whose rows' bytes the
    /// memory report counts (the groups share the source's allocations).
    AddTable { id: usize, counts: bool },
    /// The rows a table held when the group began to hold it, at a time of
    /// their own between transactions (before the views that need them);
    /// every group takes the time, with no rows if it was not waiting.
    Load {
        table: usize,
        rows: Arc<Vec<PackedRow>>,
    },
    /// Forget a table; views still importing it keep their copy until dropped.
    DropTable { id: usize },
    /// Start maintaining a view; its contents as of now arrive first.
    AddView { id: usize, plan: Arc<Plan> },
    /// Stop maintaining a view.
    DropView { id: usize },
    /// Apply one transaction's changes at time `lsn`. `tables` are the
    /// tables they change, sorted: only those tables, and the views that
    /// read them, move (`import.rs`).
    Apply {
        lsn: u64,
        updates: Arc<Updates>,
        tables: Arc<Vec<usize>>,
    },
    /// Everything at or before `lsn` is known: nothing more will arrive for it.
    Advance { lsn: u64 },
    /// Adds or retracts parameter tuples of a parameterized view in its
    /// parameters table. They take effect at a time of their own between
    /// transactions (the last complete LSN + 1), which `ticket` reports.
    Tuples {
        table: usize,
        updates: Arc<Vec<(Row, isize)>>,
        ticket: u64,
    },
    /// Makes the last worker panic, so tests can check what a dying worker
    /// does to the server.
    Crash,
    /// A registry operation of the leader, for the other processes'
    /// registries (cluster mode; nothing to do in one process).
    Mirror(Mirror),
    /// Parameter tuples this process's subscribers need or let go (a
    /// follower sends them to process 0).
    Requests(Vec<TupleRequest>),
    /// The leader stops: the other processes' workers stop too.
    Stop,
}

/// A command as the leader's first worker forwards it to the workers of
/// the other processes. The rows of a transaction are not in it: they enter
/// at the leader's workers and reach their owners through the tables'
/// exchange.
#[derive(Clone, Serialize, Deserialize)]
enum Wire {
    AddTable { id: usize, counts: bool },
    Load { table: usize },
    DropTable { id: usize },
    AddView { id: usize, plan: Plan },
    DropView { id: usize },
    Apply { lsn: u64, tables: Vec<usize> },
    Advance { lsn: u64 },
    Tuples { ticket: u64, table: usize },
    Mirror(Mirror),
    Crash,
    Stop,
}

impl Wire {
    /// What the other processes need of `command`, if anything.
    fn of(command: &Command) -> Option<Wire> {
        Some(match command {
            Command::AddTable { id, counts } => Wire::AddTable {
                id: *id,
                counts: *counts,
            },
            Command::Load { table, .. } => Wire::Load { table: *table },
            Command::DropTable { id } => Wire::DropTable { id: *id },
            Command::AddView { id, plan } => Wire::AddView {
                id: *id,
                plan: Plan::clone(plan),
            },
            Command::DropView { id } => Wire::DropView { id: *id },
            Command::Apply { lsn, tables, .. } => Wire::Apply {
                lsn: *lsn,
                tables: tables.to_vec(),
            },
            Command::Advance { lsn } => Wire::Advance { lsn: *lsn },
            Command::Tuples { ticket, table, .. } => Wire::Tuples {
                ticket: *ticket,
                table: *table,
            },
            Command::Mirror(m) => Wire::Mirror(m.clone()),
            Command::Crash => Wire::Crash,
            Command::Stop => Wire::Stop,
            Command::Requests(_) => return None,
        })
    }

    /// The command a follower's worker carries out.
    fn into_command(self) -> Command {
        match self {
            Wire::AddTable { id, counts } => Command::AddTable { id, counts },
            Wire::Load { table } => Command::Load {
                table,
                rows: Arc::default(),
            },
            Wire::DropTable { id } => Command::DropTable { id },
            Wire::AddView { id, plan } => Command::AddView {
                id,
                plan: Arc::new(plan),
            },
            Wire::DropView { id } => Command::DropView { id },
            Wire::Apply { lsn, tables } => Command::Apply {
                lsn,
                updates: Arc::default(),
                tables: Arc::new(tables),
            },
            Wire::Advance { lsn } => Command::Advance { lsn },
            Wire::Tuples { ticket, table } => Command::Tuples {
                table,
                updates: Arc::default(),
                ticket,
            },
            Wire::Mirror(m) => Command::Mirror(m),
            Wire::Crash => Command::Crash,
            Wire::Stop => Command::Stop,
        }
    }
}

#[derive(Debug)]
pub enum Output {
    /// The consolidated changes of each view that changed at `lsn`.
    Batch { lsn: u64, views: Vec<ViewChanges> },
    /// All times up to and including `lsn` are complete.
    Progress { lsn: u64 },
    /// A view added with `AddView` has produced its whole initial contents:
    /// the batches sent for it so far, summed, are its contents at `lsn`.
    ViewReady { view: usize, lsn: u64 },
    /// The tuples of request `ticket` entered the dataflow at `lsn`: their
    /// rows are complete once progress reaches it.
    TuplesApplied { ticket: u64, lsn: u64 },
    /// A worker died (a panic). The dataflow can no longer be trusted: drop it
    /// and build a new one.
    WorkerFailed { message: String },
    /// A registry operation of the leader (followers only).
    Mirror(Mirror),
    /// Parameter tuples process `process`'s subscribers need or let go
    /// (the leader only).
    Requests {
        process: usize,
        requests: Vec<TupleRequest>,
    },
    /// The leader stopped the dataflow (followers only).
    LeaderStopped,
}

/// One view's changes at one time: rows, and evaluation errors (overflow,
/// division by zero, ...) that appear or, when their rows go, disappear.
#[derive(Debug, Default)]
pub struct ViewChanges {
    pub view: usize,
    pub rows: Vec<(Row, isize)>,
    pub errors: Vec<(String, isize)>,
}

pub type OutputSender = tokio::sync::mpsc::UnboundedSender<Output>;

/// Default bound on rows handed to the workers but not yet released as view
/// output: enough to keep the workers busy, small enough (a few hundred MB at
/// most) that a large backlog waits in Postgres's WAL instead of in memory.
pub const DEFAULT_MAX_IN_FLIGHT_ROWS: usize = 500_000;

/// Credit for rows in flight between the source and the view outputs. The
/// source reserves credit before it hands a transaction over and the credit
/// comes back when the workers' progress passes that transaction's LSN.
/// It also records that progress: the LSN the views reflect, which is what
/// the source may acknowledge to Postgres.
pub struct InFlight {
    credit: tokio::sync::Semaphore,
    max: usize,
    pending: Mutex<std::collections::VecDeque<(u64, u32)>>,
    applied: std::sync::atomic::AtomicU64,
}

impl InFlight {
    pub fn new(max_rows: usize) -> InFlight {
        let max = max_rows.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        InFlight {
            credit: tokio::sync::Semaphore::new(max),
            max,
            pending: Mutex::new(Default::default()),
            applied: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Waits until `rows` (at most the whole bound) may be handed over, and
    /// records them against `lsn`.
    pub async fn reserve(&self, lsn: u64, rows: usize) {
        let n = rows.clamp(1, self.max) as u32;
        if let Ok(permit) = self.credit.acquire_many(n).await {
            permit.forget();
        }
        self.pending
            .lock()
            .expect("in-flight lock")
            .push_back((lsn, n));
    }

    /// Returns the credit of every transaction at or before `lsn`: the views
    /// reflect everything up to `lsn`.
    pub fn release_through(&self, lsn: u64) {
        self.applied
            .fetch_max(lsn, std::sync::atomic::Ordering::SeqCst);
        let mut pending = self.pending.lock().expect("in-flight lock");
        while let Some(&(l, n)) = pending.front() {
            if l > lsn {
                break;
            }
            pending.pop_front();
            self.credit.add_permits(n as usize);
        }
    }

    /// Returns all outstanding credit: what was handed over will never come
    /// out (the dataflow was replaced).
    pub fn release_all(&self) {
        let mut pending = self.pending.lock().expect("in-flight lock");
        for (_, n) in pending.drain(..) {
            self.credit.add_permits(n as usize);
        }
    }

    /// The LSN every view reflects.
    pub fn applied(&self) -> u64 {
        self.applied.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Rows currently in flight.
    pub fn rows(&self) -> usize {
        self.max - self.credit.available_permits()
    }
}

/// Handle to the running workers. Dropping it stops them.
pub struct Dataflow {
    groups: Vec<Group>,
    /// Which group runs each view and holds each table.
    state: Mutex<State>,
    sizes: Arc<memory::Sizes>,
}

/// Which group runs each view, and which groups hold each source table.
struct State {
    placement: Placement,
    /// Each followed table's holding in each group. A group arranges a
    /// table only once a view built there reads it: a transaction then
    /// moves only the groups whose views read what it changes, and a
    /// table no view of a group reads costs that group nothing.
    tables: HashMap<usize, Vec<Hold>>,
    /// Views waiting for tables' rows before they are built, in the order
    /// they were added.
    waiting: Vec<Waiting>,
}

/// A followed table in one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    /// Not arranged there: its changes are not sent to the group.
    No,
    /// Arranged, waiting for the rows it holds now ([`Dataflow::load`]);
    /// its changes are not sent to the group, as the rows will have them.
    Waiting,
    /// Arranged and following every change.
    Filled,
}

/// A view placed in a group, waiting for the rows of `tables` there.
struct Waiting {
    id: usize,
    group: usize,
    plan: Arc<Plan>,
    tables: Vec<usize>,
}

/// One timely instance: its workers' command channels and threads.
struct Group {
    senders: Vec<Sender<Command>>,
    threads: Vec<Thread>,
    guards: Mutex<Option<timely::communication::WorkerGuards<()>>>,
}

/// Which group runs each view. A transaction moves the views that read the
/// tables it changes, so what should be even is each table's readers: a
/// group's load on a table is the plan nodes of its views that read it (a
/// stand-in for the operators whose progress it tracks when the table moves).
struct Placement {
    /// Each view's group, weight and tables.
    views: HashMap<usize, (usize, usize, Vec<usize>)>,
    /// Each group's load per table, and in all.
    loads: Vec<(HashMap<usize, usize>, usize)>,
}

impl Placement {
    fn new(groups: usize) -> Placement {
        Placement {
            views: HashMap::new(),
            loads: vec![Default::default(); groups],
        }
    }

    /// The view goes to the group with the least load on the tables it
    /// reads, then the least load in all, then the first.
    fn place(&mut self, view: usize, plan: &Plan) -> usize {
        let weight = plan_nodes(plan);
        let mut tables = Vec::new();
        plan.tables(&mut tables);
        tables.sort_unstable();
        tables.dedup();
        let group = (0..self.loads.len())
            .min_by_key(|g| {
                let (by_table, all) = &self.loads[*g];
                let on_tables: usize = tables.iter().filter_map(|t| by_table.get(t)).sum();
                (on_tables, *all)
            })
            .unwrap_or(0);
        let (by_table, all) = &mut self.loads[group];
        for t in &tables {
            *by_table.entry(*t).or_default() += weight;
        }
        *all += weight;
        self.views.insert(view, (group, weight, tables));
        group
    }

    fn remove(&mut self, view: usize) -> Option<usize> {
        let (group, weight, tables) = self.views.remove(&view)?;
        let (by_table, all) = &mut self.loads[group];
        for t in &tables {
            if let Some(load) = by_table.get_mut(t) {
                *load -= weight;
            }
        }
        *all -= weight;
        Some(group)
    }
}

fn plan_nodes(plan: &Plan) -> usize {
    1 + plan.inputs().into_iter().map(plan_nodes).sum::<usize>()
}

/// How long an idle worker parks before checking for commands again; sends
/// unpark it sooner, so this only bounds the cost of a missed wake-up.
const IDLE_PARK: Duration = Duration::from_millis(50);

impl Dataflow {
    /// Starts `workers` threads with no tables and no views yet, split into
    /// `groups` timely instances (at most one per worker; a cluster runs
    /// one); with a `cluster`, this process's share of a dataflow across
    /// its processes (it returns once every process is connected).
    pub fn start(
        workers: usize,
        groups: usize,
        cluster: Option<&Cluster>,
        out: OutputSender,
    ) -> Result<Dataflow, String> {
        let workers = workers.max(1);
        let groups = if cluster.is_some() {
            1
        } else {
            groups.clamp(1, workers)
        };
        let sizes = Arc::new(memory::Sizes::default());
        let joint = Arc::new(JointProgress::new(groups));
        let mut started = Vec::new();
        let mut first_worker = 0;
        for group in 0..groups {
            let threads = workers / groups + usize::from(group < workers % groups);
            let (config, place) = match cluster {
                None => (
                    timely::Config::process(threads),
                    Place::alone(threads, group, groups, first_worker),
                ),
                Some(c) => (
                    timely::Config {
                        communication: timely::CommunicationConfig::Cluster {
                            threads,
                            process: c.process,
                            addresses: c.hosts.clone(),
                            report: false,
                            zerocopy: false,
                        },
                        worker: timely::WorkerConfig::default(),
                    },
                    Place {
                        process: c.process,
                        processes: c.processes(),
                        threads,
                        group: 0,
                        groups: 1,
                        first_worker: 0,
                    },
                ),
            };
            let shared = Shared {
                out: out.clone(),
                sizes: sizes.clone(),
                joint: joint.clone(),
            };
            started.push(Group::start(config, place, shared)?);
            first_worker += threads;
        }
        Ok(Dataflow {
            state: Mutex::new(State {
                placement: Placement::new(groups),
                tables: HashMap::new(),
                waiting: Vec::new(),
            }),
            groups: started,
            sizes,
        })
    }

    /// What each table's and view's arrangements hold now.
    pub fn sizes(&self) -> Arc<memory::Sizes> {
        self.sizes.clone()
    }

    fn send(&self, make: impl Fn() -> Command) {
        for g in &self.groups {
            g.send(&make);
        }
    }

    /// A table of viewcast's own (a view's parameters, the clock): every
    /// group holds it from the start.
    pub fn add_table(&self, id: usize) {
        for (group, g) in self.groups.iter().enumerate() {
            g.send(&|| Command::AddTable {
                id,
                counts: group == 0,
            });
        }
    }

    /// A table the source follows: no group holds it until a view placed
    /// there reads it ([`Dataflow::add_view`]); its rows are then loaded
    /// from the source's state ([`Dataflow::load`]).
    pub fn follow_table(&self, id: usize) {
        let groups = self.groups.len();
        self.state()
            .tables
            .entry(id)
            .or_insert(vec![Hold::No; groups]);
    }

    pub fn drop_table(&self, id: usize) {
        match self.state().tables.remove(&id) {
            Some(holds) => {
                for (g, hold) in self.groups.iter().zip(holds) {
                    if hold != Hold::No {
                        g.send(&|| Command::DropTable { id });
                    }
                }
            }
            None => self.send(|| Command::DropTable { id }),
        }
    }

    /// Builds the view in one group, where the tables it reads have the
    /// fewest readers so far ([`Placement`]). A followed table the group
    /// does not hold yet is arranged there, and the view waits for its rows:
    /// the tables returned are those whose rows must be asked of the source
    /// (none asked already) and handed to [`Dataflow::load`].
    #[must_use]
    pub fn add_view(&self, id: usize, plan: Plan) -> Vec<usize> {
        let mut state = self.state();
        let group = state.placement.place(id, &plan);
        let mut tables = Vec::new();
        plan.tables(&mut tables);
        tables.sort_unstable();
        tables.dedup();
        let (mut missing, mut ask) = (Vec::new(), Vec::new());
        for table in tables {
            let Some(holds) = state.tables.get_mut(&table) else {
                continue;
            };
            match holds[group] {
                Hold::Filled => continue,
                Hold::Waiting => {}
                Hold::No => {
                    if !holds.contains(&Hold::Waiting) {
                        ask.push(table);
                    }
                    let counts = holds.iter().all(|h| *h == Hold::No);
                    holds[group] = Hold::Waiting;
                    self.groups[group].send(&|| Command::AddTable { id: table, counts });
                }
            }
            missing.push(table);
        }
        let plan = Arc::new(plan);
        if missing.is_empty() {
            self.groups[group].send(&|| Command::AddView {
                id,
                plan: plan.clone(),
            });
        } else {
            state.waiting.push(Waiting {
                id,
                group,
                plan,
                tables: missing,
            });
        }
        ask
    }

    /// The rows `table` holds now, as the source sent them between
    /// transactions: every group waiting for them gets them at a time of
    /// their own and follows the table's changes from now on; the views
    /// that waited only for them are built. Rows for a table no group waits
    /// for (asked twice, dropped since) are ignored.
    pub fn load(&self, table: usize, rows: Vec<PackedRow>) {
        let mut state = self.state();
        let Some(holds) = state.tables.get_mut(&table) else {
            return;
        };
        if !holds.contains(&Hold::Waiting) {
            return;
        }
        // The load takes a time of its own in every group, with no rows in
        // those not waiting, so the groups' clocks stay alike (a parameter
        // tuple's time, reported by the first group, is then every group's).
        let (rows, none) = (Arc::new(rows), Arc::new(Vec::new()));
        let mut filled = Vec::new();
        for (group, hold) in holds.iter_mut().enumerate() {
            let rows = if *hold == Hold::Waiting {
                *hold = Hold::Filled;
                filled.push(group);
                &rows
            } else {
                &none
            };
            self.groups[group].send(&|| Command::Load {
                table,
                rows: rows.clone(),
            });
        }
        let mut still = Vec::new();
        for mut w in std::mem::take(&mut state.waiting) {
            if filled.contains(&w.group) {
                w.tables.retain(|t| *t != table);
            }
            if w.tables.is_empty() {
                self.groups[w.group].send(&|| Command::AddView {
                    id: w.id,
                    plan: w.plan.clone(),
                });
            } else {
                still.push(w);
            }
        }
        state.waiting = still;
    }

    pub fn drop_view(&self, id: usize) {
        let mut state = self.state();
        state.waiting.retain(|w| w.id != id);
        match state.placement.remove(id) {
            Some(group) => self.groups[group].send(&|| Command::DropView { id }),
            None => self.send(|| Command::DropView { id }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One transaction (or several merged) at time `lsn`: each group gets
    /// the changes of the tables it holds filled, and a group that holds
    /// none of them only learns that `lsn` is complete.
    pub fn apply(&self, lsn: u64, updates: Updates) {
        let mut tables: Vec<usize> = updates.iter().map(|(t, _, _)| *t).collect();
        tables.sort_unstable();
        tables.dedup();
        let state = self.state();
        let follows = |group: usize, table: &usize| {
            state
                .tables
                .get(table)
                .is_none_or(|holds| holds[group] == Hold::Filled)
        };
        let (updates, all) = (Arc::new(updates), Arc::new(tables));
        for (group, g) in self.groups.iter().enumerate() {
            // Most transactions reach a group whole or not at all: only a
            // group that follows some of their tables gets a copy.
            let followed = all.iter().filter(|t| follows(group, t)).count();
            if followed == 0 {
                g.send(&|| Command::Advance { lsn });
                continue;
            }
            let (updates, tables) = if followed == all.len() {
                (updates.clone(), all.clone())
            } else {
                let tables: Vec<usize> =
                    all.iter().copied().filter(|t| follows(group, t)).collect();
                let mine: Updates = updates
                    .iter()
                    .filter(|(t, _, _)| tables.binary_search(t).is_ok())
                    .cloned()
                    .collect();
                (Arc::new(mine), Arc::new(tables))
            };
            g.send(&|| Command::Apply {
                lsn,
                updates: updates.clone(),
                tables: tables.clone(),
            });
        }
    }

    pub fn advance(&self, lsn: u64) {
        self.send(|| Command::Advance { lsn });
    }

    /// Adds (`+1`) or retracts (`-1`) parameter tuples of a view.
    pub fn tuples(&self, table: usize, updates: Vec<(Row, isize)>, ticket: u64) {
        let updates = Arc::new(updates);
        self.send(|| Command::Tuples {
            table,
            updates: updates.clone(),
            ticket,
        });
    }

    /// Tells the workers to stop (a leader's tell the other processes' too)
    /// and closes their command channels; later calls do nothing.
    fn disconnect(&mut self) {
        self.send(|| Command::Stop);
        for g in &mut self.groups {
            g.senders.clear();
            for t in &g.threads {
                t.unpark();
            }
        }
    }

    /// Sends `command` to this process's first worker only.
    fn send_first(&self, command: Command) {
        if let Some(g) = self.groups.first() {
            if let Some(s) = g.senders.first() {
                let _ = s.send(command);
                g.threads[0].unpark();
            }
        }
    }

    /// Records a registry operation for the other processes (cluster mode).
    pub fn mirror(&self, op: Mirror) {
        self.send_first(Command::Mirror(op));
    }

    /// Sends tuple requests of this process's subscribers to process 0
    /// (a follower's).
    pub fn request(&self, requests: Vec<TupleRequest>) {
        self.send_first(Command::Requests(requests));
    }

    /// Makes a worker panic (for tests of the recovery from one): the last
    /// worker of the last group.
    pub fn crash_a_worker(&self) {
        if let Some(g) = self.groups.last() {
            g.send(&|| Command::Crash);
        }
    }

    /// Stops the workers and waits for them, at most `patience`: a worker
    /// stuck after another one's panic is left behind rather than waited for.
    pub fn shutdown(mut self, patience: Duration) {
        self.disconnect();
        let guards: Vec<_> = self.groups.iter().filter_map(Group::take_guards).collect();
        if guards.is_empty() {
            return;
        }
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("dataflow-join".into())
            .spawn(move || {
                for g in guards {
                    let _ = g.join();
                }
                let _ = done_tx.send(());
            })
            .ok();
        let _ = done_rx.recv_timeout(patience);
    }
}

impl Drop for Dataflow {
    fn drop(&mut self) {
        self.disconnect();
        for g in self.groups.iter().filter_map(Group::take_guards) {
            let _ = g.join();
        }
    }
}

impl Group {
    /// Starts one timely instance of `place.threads` workers.
    fn start(config: timely::Config, place: Place, shared: Shared) -> Result<Group, String> {
        let workers = place.threads;
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..workers {
            let (tx, rx) = mpsc::channel::<Command>();
            senders.push(tx);
            receivers.push(Some(rx));
        }
        let receivers = Arc::new(Mutex::new(receivers));
        let (thread_tx, thread_rx) = mpsc::channel::<(usize, Thread)>();
        let thread_tx = Arc::new(Mutex::new(thread_tx));
        let shared = Arc::new(Mutex::new(shared));
        let guards = timely::execute(config, move |worker| {
            let index = worker.index() % place.threads;
            let rx = receivers
                .lock()
                .expect("receiver lock")
                .get_mut(index)
                .and_then(Option::take)
                .expect("one receiver per worker");
            let _ = thread_tx
                .lock()
                .expect("thread lock")
                .send((index, std::thread::current()));
            let shared = shared.lock().expect("output lock").clone();
            let out = shared.out.clone();
            // A panic must not leave the server looking healthy: report it,
            // and the controller replaces the whole dataflow.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_worker(worker, place, rx, shared)
            }));
            if let Err(panic) = result {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                let _ = out.send(Output::WorkerFailed {
                    message: format!(
                        "dataflow worker {} panicked: {message}",
                        place.describe(index)
                    ),
                });
            }
        })?;
        let mut threads: Vec<Option<Thread>> = vec![None; workers];
        for _ in 0..workers {
            let (i, t) = thread_rx
                .recv_timeout(Duration::from_secs(30))
                .map_err(|_| "dataflow workers did not start".to_string())?;
            threads[i] = Some(t);
        }
        Ok(Group {
            senders,
            threads: threads.into_iter().flatten().collect(),
            guards: Mutex::new(Some(guards)),
        })
    }

    fn send(&self, make: &dyn Fn() -> Command) {
        for (s, t) in self.senders.iter().zip(&self.threads) {
            let _ = s.send(make());
            t.unpark();
        }
    }

    fn take_guards(&self) -> Option<timely::communication::WorkerGuards<()>> {
        self.guards.lock().ok().and_then(|mut g| g.take())
    }
}

/// What every worker of every group shares: where outputs go, the
/// arrangements' sizes, and the groups' joint progress.
#[derive(Clone)]
struct Shared {
    out: OutputSender,
    sizes: Arc<memory::Sizes>,
    joint: Arc<JointProgress>,
}

/// The groups' progress, joined: an LSN is complete when every group has
/// passed it. Each group's first worker sends its batches before it reports
/// here, and the report is sent under the lock, so a batch never arrives
/// after the progress that passes it.
struct JointProgress {
    state: Mutex<(Vec<Option<u64>>, Option<u64>)>,
}

impl JointProgress {
    fn new(groups: usize) -> JointProgress {
        JointProgress {
            state: Mutex::new((vec![None; groups], None)),
        }
    }

    /// `group` has released everything through `lsn`.
    fn report(&self, group: usize, lsn: u64, out: &OutputSender) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (groups, sent) = &mut *state;
        groups[group] = Some(groups[group].map_or(lsn, |l| l.max(lsn)));
        let Some(joint) = groups.iter().copied().min().flatten() else {
            return;
        };
        if sent.is_none_or(|s| joint > s) {
            *sent = Some(joint);
            let _ = out.send(Output::Progress { lsn: joint });
        }
    }
}

/// Where this process's workers stand among all of the dataflow's workers.
#[derive(Clone, Copy, Debug)]
struct Place {
    process: usize,
    processes: usize,
    /// Workers per process (of this group).
    threads: usize,
    /// This group of one process's workers, among `groups`.
    group: usize,
    groups: usize,
    /// The group's first worker among all of the process's workers.
    first_worker: usize,
}

impl Place {
    fn alone(threads: usize, group: usize, groups: usize, first_worker: usize) -> Place {
        Place {
            process: 0,
            processes: 1,
            threads,
            group,
            groups,
            first_worker,
        }
    }

    fn describe(&self, local: usize) -> String {
        if self.processes > 1 {
            format!("{local} of process {}", self.process)
        } else if self.groups > 1 {
            format!("{local} of group {}", self.group)
        } else {
            local.to_string()
        }
    }
}

/// A command for a follower's worker: (target worker, sequence number, command).
type Forwarded = (u64, u64, Wire);
/// Tuple requests of one process's subscribers: (process, requests).
type Asked = (usize, Vec<TupleRequest>);
type ControlInput<D> = InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<D>>>;

/// The stream of commands from the leader's first worker to the other
/// processes' workers, and of tuple requests back. Built first on every
/// worker. Each command goes at a time of its own (its sequence number),
/// since only a new time pushes records through an exchange; nothing waits
/// on this dataflow's progress, and the receiver carries the commands out
/// in sequence order.
struct Control {
    commands: ControlInput<Forwarded>,
    requests: ControlInput<Asked>,
    /// Commands that reached this worker, by sequence number.
    received: Rc<RefCell<BTreeMap<u64, Wire>>>,
    /// Tuple requests that reached this worker (process 0's first).
    asked: Rc<RefCell<Vec<Asked>>>,
    /// The sequence number of the next command sent, and of the next to carry out.
    sent: u64,
    next: u64,
}

impl Control {
    fn build(worker: &mut timely::worker::Worker) -> Control {
        let received: Rc<RefCell<BTreeMap<u64, Wire>>> = Default::default();
        let asked: Rc<RefCell<Vec<Asked>>> = Default::default();
        let (into, back) = (received.clone(), asked.clone());
        let (commands, requests) = worker.dataflow_named::<u64, _, _>("control", |scope| {
            let (commands, stream) = scope.new_input::<Vec<Forwarded>>();
            stream
                .exchange(|(target, _, _)| *target)
                .inspect(move |(_, seq, wire)| {
                    into.borrow_mut().insert(*seq, wire.clone());
                });
            let (requests, stream) = scope.new_input::<Vec<Asked>>();
            stream
                .exchange(|_| 0)
                .inspect(move |r| back.borrow_mut().push(r.clone()));
            (commands, requests)
        });
        Control {
            commands,
            requests,
            received,
            asked,
            sent: 0,
            next: 0,
        }
    }

    /// The commands received, in order, as far as they are contiguous.
    fn take_received(&mut self) -> Vec<Wire> {
        let mut received = self.received.borrow_mut();
        let mut out = Vec::new();
        while let Some(w) = received.remove(&self.next) {
            out.push(w);
            self.next += 1;
        }
        out
    }
}

type TableTrace = TraceAgent<KeySpine<PackedRow, u64, isize>>;

/// One base table on one worker: its input, its shared arrangement, and a
/// probe on the arrangement (progress flows through it even with no views).
struct Table {
    input: InputSession<u64, PackedRow, isize>,
    trace: TableTrace,
    probe: ProbeHandle<u64>,
    /// The time the input was last advanced to: only a transaction that
    /// changes the table advances it.
    advanced: import::SharedTime,
    /// The bytes of the arrangement's batches.
    measure: memory::Measure,
}

/// One view on one worker.
struct View {
    /// Pressed to drop the view: its imports stop and the dataflow completes.
    buttons: Vec<ShutdownButton<import::Held>>,
    /// The times the view may still produce output at ([`deliver`]).
    progress: Progress,
    /// The view's first output is its contents as of this time.
    as_of: u64,
    ready: bool,
    /// The tables the view reads (without the unit table).
    tables: Vec<usize>,
    /// The time the view was last moved to ([`import`]), and its imports'
    /// activators.
    clock: import::SharedTime,
    wake: Vec<timely::scheduling::Activator>,
    /// The bytes of each of the view's own arrangements' batches, and
    /// what its operators keep outside arrangements.
    measures: Vec<memory::Measure>,
}

/// A view's output frontier, as its [`deliver`] operator last saw it.
type Progress = Rc<RefCell<Antichain<u64>>>;

/// Sends a view's rows and errors to the first worker of every process,
/// where one operator files them in the process's buffer by time and keeps
/// the view's frontier in `progress`. On one process the operator's inputs
/// exchange to the first worker themselves, and each error collection is an
/// input of its own: no operator besides this one per view.
fn deliver<'s>(
    id: usize,
    rows: render::Coll<'s, u64>,
    errs: render::ErrList<'s, u64>,
    (processes, threads): (usize, usize),
    buffer: Buffer,
    progress: Progress,
) {
    use timely::dataflow::channels::pact::Exchange as ExchangePact;
    use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
    use timely::progress::operate::FrontierInterest;
    fn to_servers<'s, D: timely::ExchangeData + Clone>(
        stream: timely::dataflow::Stream<'s, u64, Vec<(D, u64, isize)>>,
        processes: usize,
        threads: usize,
    ) -> timely::dataflow::Stream<'s, u64, Vec<(D, u64, isize)>> {
        stream
            .flat_map::<Vec<_>, _, _>(move |(data, time, diff)| {
                (0..processes).map(move |p| (((p * threads) as u64, data.clone()), time, diff))
            })
            .exchange(|((target, _), _, _)| *target)
            .map(|((_, data), time, diff)| (data, time, diff))
    }
    let scope = rows.inner.scope();
    let mut builder = OperatorBuilder::new(format!("deliver {id}"), scope);
    // On one process the inputs' own exchange sends everything to the
    // first worker; on several, `to_servers` has sent it to each process's
    // first worker already, and the inputs keep it where it is.
    let first = if processes == 1 {
        0
    } else {
        scope.index() as u64
    };
    let (rows, errs) = if processes == 1 {
        let errs = errs.into_vec().into_iter().map(|e| e.inner).collect();
        (rows.inner, errs)
    } else {
        let errs = errs.concatenated();
        let errs = errs.map(|e| to_servers(e.inner, processes, threads));
        (
            to_servers(rows.inner, processes, threads),
            errs.into_iter().collect::<Vec<_>>(),
        )
    };
    let mut rows_in =
        builder.new_input(rows, ExchangePact::new(move |_: &(Row, u64, isize)| first));
    let mut errs_in: Vec<_> = errs
        .into_iter()
        .map(|e| builder.new_input(e, ExchangePact::new(move |_: &(String, u64, isize)| first)))
        .collect();
    for input in 0..1 + errs_in.len() {
        builder.set_notify_for(input, FrontierInterest::Always);
    }
    builder.build(move |_| {
        move |frontiers| {
            let mut buffer = buffer.borrow_mut();
            rows_in.for_each(|_, data| {
                for (row, time, diff) in data.drain(..) {
                    buffer.entry(time).or_default().push(((id, Ok(row)), diff));
                }
            });
            for errs_in in errs_in.iter_mut() {
                errs_in.for_each(|_, data| {
                    for (e, time, diff) in data.drain(..) {
                        buffer.entry(time).or_default().push(((id, Err(e)), diff));
                    }
                });
            }
            let mut p = progress.borrow_mut();
            p.clear();
            for f in frontiers {
                for t in f.frontier().iter() {
                    p.insert(*t);
                }
            }
        }
    });
}

/// Outputs waiting for the frontier to pass their time, by time.
type Buffer = Rc<RefCell<BTreeMap<u64, Vec<((usize, Result<Row, String>), isize)>>>>;

/// The table every view imports to produce rows that depend on no table (a
/// global aggregate's row, constants): it holds one empty row forever.
const UNIT_TABLE: usize = usize::MAX;

struct Worker<'w> {
    worker: &'w mut timely::worker::Worker,
    place: Place,
    control: Control,
    /// The leader stopped (followers): leave the loop.
    stopped: bool,
    tables: HashMap<usize, Table>,
    views: HashMap<usize, View>,
    /// Views dropped whose output may still be in flight; it is discarded.
    dropped: HashSet<usize>,
    buffer: Buffer,
    /// Every input is advanced to `time`: all times before it are complete.
    time: u64,
    last_progress: Option<u64>,
    out: OutputSender,
    /// Where the process's first worker reports its group's progress.
    joint: Arc<JointProgress>,
    /// Which dataflow each operator is in, for the arrangement sizes.
    owners: memory::Owners,
}

fn run_worker(
    worker: &mut timely::worker::Worker,
    place: Place,
    rx: Receiver<Command>,
    Shared { out, sizes, joint }: Shared,
) {
    let owners = memory::Owners::default();
    memory::log_into(worker, sizes.clone(), owners.clone());
    operator_times::install(worker);
    let control = Control::build(worker);
    let mut w = Worker {
        worker,
        place,
        control,
        stopped: false,
        tables: HashMap::new(),
        views: HashMap::new(),
        dropped: HashSet::new(),
        buffer: Rc::new(RefCell::new(BTreeMap::new())),
        time: 0,
        last_progress: None,
        out,
        joint,
        owners,
    };
    w.add_table(UNIT_TABLE, place.group == 0);
    if w.worker.index() == 0 {
        if let Some(t) = w.tables.get_mut(&UNIT_TABLE) {
            t.input.insert(PackedRow::pack(&[]));
        }
    }
    // Every table's data lies before the time its input was advanced to.
    w.advance_tables(&[UNIT_TABLE], 1);
    let leader = place.process == 0;
    let mut measured = Instant::now();
    // When the last command came, and whether memory was freed since the
    // worker last gave its freed pages back.
    let (mut commanded_at, mut unreleased) = (Instant::now(), false);
    loop {
        let mut disconnected = false;
        // A command may complete times without waking any operator (an
        // `Advance`, a transaction whose tables no view reads): release
        // before parking again.
        let mut commanded = false;
        loop {
            match rx.try_recv() {
                // A follower's commands come from the leader; only its
                // subscribers' tuple requests come from its own process.
                Ok(command) if leader || matches!(command, Command::Requests(_)) => {
                    w.forward(&command);
                    w.command(command);
                    commanded = true;
                }
                Ok(_) => {}
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        if leader {
            if w.worker.index() == 0 {
                let asked = std::mem::take(&mut *w.control.asked.borrow_mut());
                for (process, requests) in asked {
                    let _ = w.out.send(Output::Requests { process, requests });
                }
            }
        } else {
            for wire in w.control.take_received() {
                w.command(wire.into_command());
                commanded = true;
            }
        }
        if disconnected || w.stopped {
            break;
        }
        w.worker
            .step_or_park(Some(if commanded { Duration::ZERO } else { IDLE_PARK }));
        if w.first_of_process() {
            w.release();
        }
        if measured.elapsed() >= MEASURE_EVERY {
            w.measure(&sizes);
            measured = Instant::now();
        }
        if commanded {
            (commanded_at, unreleased) = (Instant::now(), true);
        } else if unreleased && commanded_at.elapsed() >= RELEASE_WHEN_IDLE {
            // The pages this thread freed and still holds go back to the
            // system, not only those the allocator has passed on.
            crate::alloc::release_freed();
            unreleased = false;
        }
    }
}

/// How long a worker goes without commands before it gives back the memory
/// it freed (after a load, a burst): under a steady stream it never does.
const RELEASE_WHEN_IDLE: Duration = Duration::from_secs(1);

/// How often a worker adds up the bytes of its arrangements' batches: the
/// sum visits each batch (a few dozen per arrangement), working out a
/// batch's size only the first time it sees it.
const MEASURE_EVERY: Duration = Duration::from_secs(1);

impl Worker<'_> {
    /// Records in `sizes` the bytes this worker's arrangements hold now.
    fn measure(&mut self, sizes: &memory::Sizes) {
        let mut measured = HashMap::new();
        for (id, t) in self.tables.iter_mut() {
            measured.insert(memory::Owner::Table(*id), (t.measure)());
        }
        for (id, v) in self.views.iter_mut() {
            let view = v.measures.iter_mut().map(|m| m()).sum();
            measured.insert(memory::Owner::View(*id), view);
        }
        sizes.set_measured(self.place.first_worker + self.worker.index(), measured);
    }

    /// This process's first worker: it releases the views' outputs to the
    /// process's registry.
    fn first_of_process(&self) -> bool {
        self.worker.index().is_multiple_of(self.place.threads)
    }

    /// Sends `command` on to every worker of the other processes (the
    /// leader's first worker does, in the order it carries them out).
    fn forward(&mut self, command: &Command) {
        if self.place.processes == 1 || self.worker.index() != 0 {
            return;
        }
        let Some(wire) = Wire::of(command) else {
            return;
        };
        let seq = self.control.sent;
        self.control.sent += 1;
        for target in self.place.threads..self.worker.peers() {
            self.control
                .commands
                .send((target as u64, seq, wire.clone()));
        }
        // Only a new time pushes the records through the exchange.
        self.control.commands.advance_to(seq + 1);
    }

    /// Tuple requests of this process's subscribers: the leader's go to
    /// its controller directly, a follower's first worker sends them to
    /// process 0's first worker.
    fn request(&mut self, requests: Vec<TupleRequest>) {
        self.control.requests.send((self.place.process, requests));
        let next = *self.control.requests.time() + 1;
        self.control.requests.advance_to(next);
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::AddTable { id, counts } => self.add_table(id, counts),
            Command::Load { table, rows } => {
                // Each worker enters its share.
                let (index, threads) = (self.worker.index(), self.place.threads);
                self.at_own_time(table, |input| {
                    for (n, row) in rows.iter().enumerate() {
                        if n % threads == index {
                            input.update(row.clone(), 1);
                        }
                    }
                });
            }
            Command::DropTable { id } => {
                // Dropping the input closes it; views that imported the
                // arrangement hold their own handle until they are dropped.
                self.tables.remove(&id);
            }
            Command::AddView { id, plan } => self.add_view(id, &plan),
            Command::DropView { id } => {
                if let Some(mut v) = self.views.remove(&id) {
                    for b in &mut v.buttons {
                        b.press();
                    }
                }
                self.dropped.insert(id);
            }
            Command::Apply {
                lsn,
                updates,
                tables,
            } => {
                let t = lsn.max(self.time);
                self.advance_tables(&tables, t);
                // The rows enter at the leader's workers (a follower's
                // commands carry none); the tables' arrangements exchange
                // them to their owners.
                let (index, threads) = (self.worker.index(), self.place.threads);
                for (n, (table, row, diff)) in updates.iter().enumerate() {
                    if n % threads == index {
                        if let Some(tab) = self.tables.get_mut(table) {
                            tab.input.update(row.clone(), *diff);
                        }
                    }
                }
                self.advance_tables(&tables, t + 1);
                self.move_views(&tables, t + 1);
            }
            // Nothing changed: no input moves, and every view that has
            // caught up is complete up to the new time (`frontier`).
            Command::Advance { lsn } => self.time = self.time.max(lsn + 1),
            Command::Tuples {
                table,
                updates,
                ticket,
            } => {
                let first = self.worker.index() == 0;
                let t = self.at_own_time(table, |input| {
                    if first {
                        for (row, diff) in updates.iter() {
                            input.update(PackedRow::pack(row), *diff);
                        }
                    }
                });
                // Every group applies them at the same time: one tells.
                if self.first_of_process() && self.place.group == 0 {
                    let _ = self.out.send(Output::TuplesApplied { ticket, lsn: t });
                }
            }
            Command::Crash => {
                if self.worker.index() + 1 == self.worker.peers() {
                    panic!("a worker crash injected by a test");
                }
            }
            Command::Mirror(op) => {
                if self.place.process != 0 && self.first_of_process() {
                    let _ = self.out.send(Output::Mirror(op));
                }
            }
            Command::Requests(requests) => self.request(requests),
            Command::Stop => {
                if self.place.process != 0 {
                    if self.first_of_process() {
                        let _ = self.out.send(Output::LeaderStopped);
                    }
                    self.stopped = true;
                }
            }
        }
    }

    /// Moves `table` by a time of its own, after everything applied so far
    /// and before the next transaction (commit LSNs are far apart), with
    /// what `enter` puts in its input (if this group holds it); returns
    /// that time. Every group takes it, so their clocks stay alike.
    fn at_own_time(
        &mut self,
        table: usize,
        enter: impl FnOnce(&mut InputSession<u64, PackedRow, isize>),
    ) -> u64 {
        let t = self.time;
        self.advance_tables(&[table], t);
        if let Some(tab) = self.tables.get_mut(&table) {
            enter(&mut tab.input);
        }
        self.advance_tables(&[table], t + 1);
        self.move_views(&[table], t + 1);
        t
    }

    /// Advances the inputs of `tables` to `time` (those already there stay)
    /// and lets their arrangements forget distinctions between times before
    /// the last complete one (a view added now reads them as of that time,
    /// nothing reads earlier). `time` becomes the worker's time if later.
    fn advance_tables(&mut self, tables: &[usize], time: u64) {
        self.time = self.time.max(time);
        let since = [time.saturating_sub(1)];
        for id in tables {
            let Some(t) = self.tables.get_mut(id) else {
                continue;
            };
            if t.advanced.get() >= time {
                continue;
            }
            t.input.advance_to(time);
            t.input.flush();
            t.advanced.set(time);
            t.trace.set_logical_compaction(AntichainRef::new(&since));
            t.trace.set_physical_compaction(AntichainRef::new(&since));
        }
    }

    /// Moves the clock of every view that reads one of `tables` (sorted) to
    /// `time`, and wakes its imports to follow.
    fn move_views(&mut self, tables: &[usize], time: u64) {
        for v in self.views.values_mut() {
            if v.tables.iter().any(|t| tables.binary_search(t).is_ok()) {
                v.clock.set(time);
                for w in &v.wake {
                    w.activate();
                }
            }
        }
    }

    fn add_table(&mut self, id: usize, counts: bool) {
        let probe = ProbeHandle::new();
        let time = self.time;
        let first = self.worker.peek_identifier();
        let (mut input, trace) =
            self.worker
                .dataflow_named::<u64, _, _>(&format!("table {id}"), |scope| {
                    let (input, coll) = scope.new_collection::<PackedRow, isize>();
                    let arranged = coll.arrange_by_self();
                    arranged.stream.clone().probe_with(&probe);
                    (input, arranged.trace)
                });
        self.owners.record(
            first,
            self.worker.peek_identifier(),
            memory::Owner::Table(id),
        );
        input.advance_to(time);
        input.flush();
        let mut trace = trace;
        let since = [time.saturating_sub(1)];
        trace.set_logical_compaction(AntichainRef::new(&since));
        trace.set_physical_compaction(AntichainRef::new(&since));
        // The rows' bytes are the source's, counted once (with the first
        // group to hold the table).
        let measure = if counts {
            memory::measure(trace.clone())
        } else {
            memory::measure_handles(trace.clone())
        };
        self.tables.insert(
            id,
            Table {
                input,
                trace,
                probe,
                advanced: Rc::new(Cell::new(time)),
                measure,
            },
        );
    }

    fn add_view(&mut self, id: usize, plan: &Plan) {
        let mut wanted = Vec::new();
        plan.tables(&mut wanted);
        wanted.sort_unstable();
        wanted.dedup();
        // Tables that no transaction changed lately lag behind: they move
        // up to now, so that all they hold lies before the view's first time.
        let mut lagging = wanted.clone();
        lagging.push(UNIT_TABLE);
        self.advance_tables(&lagging, self.time);
        // The last complete time: the view's first output is its contents
        // then, ready as soon as the import has caught up with the tables.
        let as_of = self.time.saturating_sub(1);
        let clock: import::SharedTime = Rc::new(Cell::new(self.time));
        let wake: Rc<RefCell<Vec<timely::scheduling::Activator>>> = Rc::default();
        let reads = wanted.clone();
        let progress: Progress = Rc::new(RefCell::new(Antichain::from_elem(0)));
        let view_progress = progress.clone();
        let buffer = self.buffer.clone();
        let (processes, threads) = (self.place.processes, self.place.threads);
        let tables = &mut self.tables;
        let first = self.worker.peek_identifier();
        let worker = &mut *self.worker;
        let (buttons, measures) = memory::collect(|| {
            worker.dataflow_named::<u64, _, _>(&format!("view {id}"), |scope| {
                let buttons = Rc::new(RefCell::new(Vec::new()));
                // A table is imported when the view first reads it (a view
                // that needs no one-row table does not import it), and
                // decoded as it reads it: whole rows, or only the columns
                // a projection right above it takes.
                let import = |table: usize| -> Option<render::Import<'_, u64>> {
                    let t = tables.get(&table)?;
                    let trace = RefCell::new(t.trace.clone());
                    let advanced = t.advanced.clone();
                    // One import per way of decoding (a self-join reads
                    // the same columns twice).
                    type Decoding = (Option<Vec<usize>>, Vec<Expr>);
                    type Decoded<'s> = (render::Coll<'s, u64>, render::ErrList<'s, u64>);
                    let imported: RefCell<HashMap<Decoding, Decoded<'_>>> = RefCell::default();
                    let (buttons, clock, wake) = (buttons.clone(), clock.clone(), wake.clone());
                    Some(Rc::new(move |cols: Option<&[usize]>, filter: &[Expr]| {
                        let key = (cols.map(<[usize]>::to_vec), filter.to_vec());
                        if let Some(decoded) = imported.borrow().get(&key) {
                            return decoded.clone();
                        }
                        let at = import::Imported {
                            as_of,
                            advanced: advanced.clone(),
                            clock: clock.clone(),
                            wake: &wake,
                        };
                        let name = format!("import {table}");
                        let decoder = import::Decoder::new(key.0.clone(), key.1.clone());
                        let import::Import {
                            rows,
                            errors,
                            button,
                        } = import::import(scope, &mut trace.borrow_mut(), &name, at, decoder);
                        buttons.borrow_mut().push(button);
                        let errors = errors.map_or_else(render::ErrList::none, render::ErrList::of);
                        imported
                            .borrow_mut()
                            .insert(key, (rows.clone(), errors.clone()));
                        (rows, errors)
                    }))
                };
                let unit = import(UNIT_TABLE).expect("the unit table exists from the start");
                let imported: HashMap<_, _> = wanted
                    .into_iter()
                    .filter_map(|table| Some((table, import(table)?)))
                    .collect();
                let mut ctx = render::Context::imported(imported, unit);
                let rows = render::render(plan, &mut ctx);
                let errs = ctx.errors_of(plan);
                drop(ctx);
                deliver(id, rows, errs, (processes, threads), buffer, view_progress);
                buttons.take()
            })
        });
        let end = self.worker.peek_identifier();
        if self.worker.index() == 0 {
            // Every step's progress tracking visits the operators whose
            // frontier moved, which is all of them: this is a view's cost
            // per transaction, whatever it changes.
            tracing::debug!(
                view = id,
                group = self.place.group,
                operators = end - first,
                "view dataflow built"
            );
        }
        self.owners.record(first, end, memory::Owner::View(id));
        self.dropped.remove(&id);
        self.views.insert(
            id,
            View {
                buttons,
                progress,
                as_of,
                ready: false,
                tables: reads,
                clock,
                wake: wake.take(),
                measures,
            },
        );
    }

    /// The time every table and view has passed: output before it is final.
    /// A table or view that has passed the last time it was moved to has
    /// passed the worker's time: nothing has entered it since ([`import`]).
    fn frontier(&self) -> Option<u64> {
        let now = self.time;
        let tables = self.tables.values().filter_map(|t| {
            let f = t.probe.with_frontier(|f| f.first().copied())?;
            Some(import::caught_up(f, t.advanced.get(), now))
        });
        let views = self.views.values().filter_map(|v| {
            let f = v.progress.borrow().first().copied()?;
            Some(import::caught_up(f, v.clock.get(), now))
        });
        tables.chain(views).min().or(Some(now))
    }

    /// Sends every buffered time the frontier has passed, oldest first, then
    /// the views that became ready, then progress.
    fn release(&mut self) {
        let Some(frontier) = self.frontier() else {
            return;
        };
        let ready = {
            let mut b = self.buffer.borrow_mut();
            let later = b.split_off(&frontier);
            std::mem::replace(&mut *b, later)
        };
        for (lsn, mut changes) in ready {
            changes.retain(|((view, _), _)| !self.dropped.contains(view));
            differential_dataflow::consolidation::consolidate(&mut changes);
            if changes.is_empty() {
                continue;
            }
            let mut views: Vec<ViewChanges> = Vec::new();
            for ((view, result), diff) in changes {
                if views.last().is_none_or(|v| v.view != view) {
                    views.push(ViewChanges {
                        view,
                        ..Default::default()
                    });
                }
                let v = views.last_mut().expect("pushed above");
                match result {
                    Ok(row) => v.rows.push((row, diff)),
                    Err(e) => v.errors.push((e, diff)),
                }
            }
            let _ = self.out.send(Output::Batch { lsn, views });
        }
        for (id, v) in self.views.iter_mut() {
            if !v.ready && frontier > v.as_of {
                v.ready = true;
                let _ = self.out.send(Output::ViewReady {
                    view: *id,
                    lsn: frontier - 1,
                });
            }
        }
        // A view just added holds the frontier back until it has caught up;
        // progress never goes back.
        if frontier > 0 && self.last_progress.is_none_or(|p| frontier - 1 > p) {
            self.last_progress = Some(frontier - 1);
            self.joint.report(self.place.group, frontier - 1, &self.out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repr::{Datum, Type};
    use crate::sql::expr::Expr;
    use crate::sql::plan::{AggFunc, Aggregate, JoinKind};

    fn get(table: usize) -> Plan {
        Plan::Get {
            table,
            name: format!("t{table}"),
            arity: 2,
        }
    }

    /// Two tables joined on their first columns.
    fn join(left: usize, right: usize) -> Plan {
        Plan::Join {
            left: Box::new(get(left)),
            right: Box::new(get(right)),
            kind: JoinKind::Inner,
            left_keys: vec![Expr::Column(0)],
            right_keys: vec![Expr::Column(0)],
            residual: vec![],
            right_arity: 2,
            null_safe: false,
        }
    }

    fn row(a: i64, b: i64) -> PackedRow {
        PackedRow::pack(&[Datum::Int(a), Datum::Int(b)])
    }

    /// The source's side of the tables: their rows, as the transactions
    /// handed to the dataflow left them, to answer its requests.
    #[derive(Default)]
    struct Source {
        rows: HashMap<usize, Vec<PackedRow>>,
    }

    impl Source {
        fn apply(&mut self, dataflow: &Dataflow, lsn: u64, updates: Updates) {
            for (table, row, diff) in &updates {
                let rows = self.rows.entry(*table).or_default();
                if *diff > 0 {
                    rows.push(row.clone());
                } else {
                    let at = rows.iter().position(|r| r == row).expect("a row to delete");
                    rows.remove(at);
                }
            }
            dataflow.apply(lsn, updates);
        }

        fn answer(&self, dataflow: &Dataflow, asked: Vec<usize>) {
            for table in asked {
                let rows = self.rows.get(&table).cloned().unwrap_or_default();
                dataflow.load(table, rows);
            }
        }
    }

    /// Views over different tables, a join of two and a global count (which
    /// also reads the unit table), through transactions that each change
    /// some of the tables: every view's batches come at the transactions
    /// that change what it reads, whole, and progress passes every
    /// transaction even though most leave most views where they were. The
    /// tables are followed tables: a group holds one once a view there
    /// reads it, and a transaction that comes before the rows it was asked
    /// for does not reach it twice.
    #[test]
    fn views_move_with_the_tables_they_read_and_progress_passes_the_others() {
        // Two workers on every view, and each view in one of two groups.
        for groups in [1, 2] {
            views_move_with_the_tables_they_read(groups);
        }
    }

    fn views_move_with_the_tables_they_read(groups: usize) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let dataflow = Dataflow::start(2, groups, None, tx).expect("workers start");
        let mut source = Source::default();
        for t in [1, 2, 3] {
            dataflow.follow_table(t);
        }
        source.apply(&dataflow, 10, vec![(1, row(1, 10), 1), (3, row(7, 70), 1)]);
        let mut asked = dataflow.add_view(100, get(1));
        asked.extend(dataflow.add_view(101, get(2)));
        asked.extend(dataflow.add_view(102, join(1, 2)));
        let count = Plan::Reduce {
            input: Box::new(get(3)),
            keys: vec![],
            aggs: vec![Aggregate {
                func: AggFunc::CountStar,
                args: vec![],
                order_by: vec![],
                filter: None,
                input_type: Type::Int8,
                output_type: Type::Int8,
                distinct: false,
            }],
        };
        asked.extend(dataflow.add_view(103, count));
        asked.sort_unstable();
        assert_eq!(asked, [1, 2, 3], "each table asked for once");
        // Before the rows come: the groups waiting for them must not see it.
        source.apply(&dataflow, 20, vec![(2, row(1, 11), 1), (2, row(2, 22), 1)]);
        source.answer(&dataflow, asked.clone());
        // Asked twice: the second answer is ignored.
        source.answer(&dataflow, vec![2]);
        dataflow.advance(25);
        source.apply(&dataflow, 30, vec![(3, row(8, 80), 1)]);
        source.apply(&dataflow, 40, vec![(1, row(2, 20), 1), (2, row(1, 11), -1)]);
        source.apply(&dataflow, 50, vec![(2, row(3, 33), 1)]);

        let mut batches: BTreeMap<(usize, u64), Vec<(Row, isize)>> = BTreeMap::new();
        let mut ready = HashMap::new();
        let mut progress = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while progress < 50 {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{groups} groups: progress stopped at {progress}"
            );
            match rx.try_recv() {
                Ok(Output::Batch { lsn, views }) => {
                    assert!(lsn > progress, "a batch at {lsn} after progress {progress}");
                    for v in &views {
                        let again = batches.contains_key(&(v.view, lsn));
                        assert!(!again, "view {} twice at {lsn}", v.view);
                    }
                    for v in views {
                        assert!(v.errors.is_empty());
                        batches.insert((v.view, lsn), v.rows);
                    }
                }
                Ok(Output::Progress { lsn }) => {
                    assert!(lsn >= progress);
                    progress = lsn;
                }
                Ok(Output::ViewReady { view, lsn }) => {
                    ready.insert(view, lsn);
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        let r = |a, b| vec![Datum::Int(a), Datum::Int(b)];
        // The views start as of their tables' rows, loaded at times of
        // their own between the transactions at 20 and 30 (ready once
        // released).
        assert_eq!(ready.len(), 4, "{ready:?}");
        assert!(ready.values().all(|&lsn| lsn > 20), "{ready:?}");
        let first: HashMap<usize, u64> = batches.keys().rev().map(|(v, lsn)| (*v, *lsn)).collect();
        assert!(first.values().all(|&lsn| lsn > 20 && lsn < 30), "{first:?}");
        let at = |view: usize| first[&view];
        let count = |n| vec![Datum::Int(n)];
        let want: BTreeMap<(usize, u64), Vec<(Row, isize)>> = [
            ((100, at(100)), vec![(r(1, 10), 1)]),
            ((100, 40), vec![(r(2, 20), 1)]),
            ((101, at(101)), vec![(r(1, 11), 1), (r(2, 22), 1)]),
            ((101, 40), vec![(r(1, 11), -1)]),
            ((101, 50), vec![(r(3, 33), 1)]),
            (
                (102, at(102)),
                vec![(
                    vec![Datum::Int(1), Datum::Int(10), Datum::Int(1), Datum::Int(11)],
                    1,
                )],
            ),
            (
                (102, 40),
                vec![
                    (
                        vec![Datum::Int(1), Datum::Int(10), Datum::Int(1), Datum::Int(11)],
                        -1,
                    ),
                    (
                        vec![Datum::Int(2), Datum::Int(20), Datum::Int(2), Datum::Int(22)],
                        1,
                    ),
                ],
            ),
            ((103, at(103)), vec![(count(1), 1)]),
            ((103, 30), vec![(count(1), -1), (count(2), 1)]),
        ]
        .into_iter()
        .collect();
        let mut got = batches;
        for rows in got.values_mut() {
            rows.sort();
        }
        assert_eq!(got, want, "{groups} groups");
        let loads: Vec<usize> = dataflow
            .state()
            .placement
            .loads
            .iter()
            .map(|l| l.1)
            .collect();
        assert_eq!(loads.len(), groups);
        assert!(loads.iter().all(|l| *l > 0), "views spread: {loads:?}");
        // Only the count reads t3: one group holds it.
        let holds = dataflow.state().tables[&3].clone();
        let filled = holds.iter().filter(|h| **h == Hold::Filled).count();
        assert_eq!((filled, holds.len()), (1, groups), "{holds:?}");
        assert!(holds.iter().all(|h| *h != Hold::Waiting));
        dataflow.shutdown(Duration::from_secs(5));
    }

    /// Each view goes where its tables' readers are fewest, so the views a
    /// transaction moves are spread over the groups.
    #[test]
    fn views_spread_by_the_tables_they_read() {
        let mut p = Placement::new(2);
        assert_eq!(p.place(10, &get(1)), 0);
        assert_eq!(p.place(11, &get(1)), 1, "t1's second reader");
        // Even on t1 and t2, and in all: the first group.
        assert_eq!(p.place(12, &join(1, 2)), 0);
        assert_eq!(p.place(13, &get(2)), 1, "away from the join over t2");
        // Nobody reads t3: the group with less in all (1 + 1 against 1 + 3).
        assert_eq!(p.place(14, &get(3)), 1);
        assert_eq!(p.remove(12), Some(0));
        assert_eq!(p.place(15, &get(2)), 0, "the join's load on t2 is gone");
        assert_eq!(p.remove(99), None);
        assert_eq!(p.loads[0].1, 2);
        assert_eq!(p.loads[1].1, 3);
    }

    #[tokio::test]
    async fn in_flight_credit_waits_for_progress() {
        let f = Arc::new(InFlight::new(10));
        f.reserve(1, 6).await;
        f.reserve(2, 4).await;
        assert_eq!(f.rows(), 10);
        let g = f.clone();
        let waiter = tokio::spawn(async move { g.reserve(3, 1).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "no credit until progress passes an LSN"
        );
        f.release_through(1);
        assert_eq!(f.applied(), 1);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("credit returned")
            .unwrap();
        f.release_through(3);
        assert_eq!(f.rows(), 0);
    }
}
