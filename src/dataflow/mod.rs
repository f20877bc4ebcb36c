//! Timely workers hosting the base tables and every view, each in a dataflow
//! of its own so views and tables can come and go while the rest runs.
//!
//! ```text
//!  controller ─AddTable{id}──────▶ each worker: a dataflow with an input for
//!                                  the table, arranged once (its trace is shared)
//!             ─AddView{id, plan}─▶ a dataflow that imports the traces of the
//!                                  tables the plan reads and renders it
//!             ─Apply{lsn, rows}──▶ each worker: its share of the rows into the
//!                                  tables' inputs, at time lsn
//!             ─Advance{lsn}──────▶ inputs advance: lsn is complete
//!             ─DropView / DropTable
//!  registry   ◀─Output::Batch / Progress / ViewReady── worker 0: view outputs,
//!                                  exchanged to it and released once every
//!                                  dataflow's frontier has passed lsn
//! ```
//! Time is the commit LSN. A batch for time `t` leaves only when no worker can
//! produce more output at `t`, so a subscriber sees a transaction whole.
//!
//! A view added later imports the tables' arrangements as of the inputs' current
//! time: its first output is its whole contents at that time (no copy from
//! Postgres is needed), after which it follows the same stream as the others.
//! Every worker receives the same commands in the same order, so all of them
//! build the same dataflows in the same order, as timely requires.

mod flat;
pub mod memory;
pub mod render;

use std::cell::RefCell;
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
use timely::dataflow::operators::{CapabilitySet, Exchange, Probe};
use timely::progress::frontier::AntichainRef;
use timely::progress::Antichain;

use serde::{Deserialize, Serialize};
use timely::dataflow::operators::core::Map;
use timely::dataflow::operators::{Input as _, Inspect};
use timely::dataflow::InputHandle;

use crate::cluster::{Cluster, Mirror};
use crate::repr::{PackedRow, Row};
use crate::sql::Plan;

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
    AddTable { id: usize },
    /// Forget a table; views still importing it keep their copy until dropped.
    DropTable { id: usize },
    /// Start maintaining a view; its contents as of now arrive first.
    AddView { id: usize, plan: Arc<Plan> },
    /// Stop maintaining a view.
    DropView { id: usize },
    /// Apply one transaction's changes at time `lsn`.
    Apply { lsn: u64, updates: Arc<Updates> },
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
    AddTable { id: usize },
    DropTable { id: usize },
    AddView { id: usize, plan: Plan },
    DropView { id: usize },
    Apply { lsn: u64 },
    Advance { lsn: u64 },
    Tuples { ticket: u64 },
    Mirror(Mirror),
    Crash,
    Stop,
}

impl Wire {
    /// What the other processes need of `command`, if anything.
    fn of(command: &Command) -> Option<Wire> {
        Some(match command {
            Command::AddTable { id } => Wire::AddTable { id: *id },
            Command::DropTable { id } => Wire::DropTable { id: *id },
            Command::AddView { id, plan } => Wire::AddView {
                id: *id,
                plan: Plan::clone(plan),
            },
            Command::DropView { id } => Wire::DropView { id: *id },
            Command::Apply { lsn, .. } => Wire::Apply { lsn: *lsn },
            Command::Advance { lsn } => Wire::Advance { lsn: *lsn },
            Command::Tuples { ticket, .. } => Wire::Tuples { ticket: *ticket },
            Command::Mirror(m) => Wire::Mirror(m.clone()),
            Command::Crash => Wire::Crash,
            Command::Stop => Wire::Stop,
            Command::Requests(_) => return None,
        })
    }

    /// The command a follower's worker carries out.
    fn into_command(self) -> Command {
        match self {
            Wire::AddTable { id } => Command::AddTable { id },
            Wire::DropTable { id } => Command::DropTable { id },
            Wire::AddView { id, plan } => Command::AddView {
                id,
                plan: Arc::new(plan),
            },
            Wire::DropView { id } => Command::DropView { id },
            Wire::Apply { lsn } => Command::Apply {
                lsn,
                updates: Arc::default(),
            },
            Wire::Advance { lsn } => Command::Advance { lsn },
            Wire::Tuples { ticket } => Command::Tuples {
                table: UNIT_TABLE,
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
    senders: Vec<Sender<Command>>,
    sizes: Arc<memory::Sizes>,
    threads: Vec<Thread>,
    guards: Mutex<Option<timely::communication::WorkerGuards<()>>>,
}

/// How long an idle worker parks before checking for commands again; sends
/// unpark it sooner, so this only bounds the cost of a missed wake-up.
const IDLE_PARK: Duration = Duration::from_millis(50);

impl Dataflow {
    /// Starts `workers` threads with no tables and no views yet; with a
    /// `cluster`, this process's share of a dataflow across its processes
    /// (it returns once every process is connected).
    pub fn start(
        workers: usize,
        cluster: Option<&Cluster>,
        out: OutputSender,
    ) -> Result<Dataflow, String> {
        let workers = workers.max(1);
        let (config, place) = match cluster {
            None => (timely::Config::process(workers), Place::alone(workers)),
            Some(c) => (
                timely::Config {
                    communication: timely::CommunicationConfig::Cluster {
                        threads: workers,
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
                    threads: workers,
                },
            ),
        };
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
        let out = Arc::new(Mutex::new(out));
        let sizes = Arc::new(memory::Sizes::default());
        let worker_sizes = sizes.clone();
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
            let out = out.lock().expect("output lock").clone();
            // A panic must not leave the server looking healthy: report it,
            // and the controller replaces the whole dataflow.
            let sizes = worker_sizes.clone();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_worker(worker, place, rx, out.clone(), sizes)
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
        Ok(Dataflow {
            senders,
            sizes,
            threads: threads.into_iter().flatten().collect(),
            guards: Mutex::new(Some(guards)),
        })
    }

    /// What each table's and view's arrangements hold now.
    pub fn sizes(&self) -> Arc<memory::Sizes> {
        self.sizes.clone()
    }

    fn send(&self, make: impl Fn() -> Command) {
        for (s, t) in self.senders.iter().zip(&self.threads) {
            let _ = s.send(make());
            t.unpark();
        }
    }

    pub fn add_table(&self, id: usize) {
        self.send(|| Command::AddTable { id });
    }

    pub fn drop_table(&self, id: usize) {
        self.send(|| Command::DropTable { id });
    }

    pub fn add_view(&self, id: usize, plan: Plan) {
        let plan = Arc::new(plan);
        self.send(|| Command::AddView {
            id,
            plan: plan.clone(),
        });
    }

    pub fn drop_view(&self, id: usize) {
        self.send(|| Command::DropView { id });
    }

    pub fn apply(&self, lsn: u64, updates: Updates) {
        let updates = Arc::new(updates);
        self.send(|| Command::Apply {
            lsn,
            updates: updates.clone(),
        });
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
        self.senders.clear();
        for t in &self.threads {
            t.unpark();
        }
    }

    /// Sends `command` to this process's first worker only.
    fn send_first(&self, command: Command) {
        if let Some(s) = self.senders.first() {
            let _ = s.send(command);
            self.threads[0].unpark();
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

    /// Makes a worker panic (for tests of the recovery from one).
    pub fn crash_a_worker(&self) {
        self.send(|| Command::Crash);
    }

    /// Stops the workers and waits for them, at most `patience`: a worker
    /// stuck after another one's panic is left behind rather than waited for.
    pub fn shutdown(mut self, patience: Duration) {
        self.disconnect();
        let guards = self.guards.lock().ok().and_then(|mut g| g.take());
        if let Some(g) = guards {
            let (done_tx, done_rx) = mpsc::channel();
            std::thread::Builder::new()
                .name("dataflow-join".into())
                .spawn(move || {
                    let _ = g.join();
                    let _ = done_tx.send(());
                })
                .ok();
            let _ = done_rx.recv_timeout(patience);
        }
    }
}

impl Drop for Dataflow {
    fn drop(&mut self) {
        self.disconnect();
        if let Some(g) = self.guards.lock().ok().and_then(|mut g| g.take()) {
            let _ = g.join();
        }
    }
}

/// Where this process's workers stand among all of the dataflow's workers.
#[derive(Clone, Copy, Debug)]
struct Place {
    process: usize,
    processes: usize,
    /// Workers per process.
    threads: usize,
}

impl Place {
    fn alone(threads: usize) -> Place {
        Place {
            process: 0,
            processes: 1,
            threads,
        }
    }

    fn describe(&self, local: usize) -> String {
        if self.processes == 1 {
            local.to_string()
        } else {
            format!("{local} of process {}", self.process)
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
    /// The bytes of the arrangement's batches.
    measure: memory::Measure,
}

/// One view on one worker.
struct View {
    /// Pressed to drop the view: its imports stop and the dataflow completes.
    buttons: Vec<ShutdownButton<CapabilitySet<u64>>>,
    /// The times the view may still produce output at ([`deliver`]).
    progress: Progress,
    /// The view's first output is its contents as of this time.
    as_of: u64,
    ready: bool,
    /// The bytes of each of the view's own arrangements' batches.
    measures: Vec<memory::Measure>,
}

/// A view's output frontier, as its [`deliver`] operator last saw it.
type Progress = Rc<RefCell<Antichain<u64>>>;

/// Sends a view's rows and errors to the first worker of every process,
/// where one operator files them in the process's buffer by time and keeps
/// the view's frontier in `progress`: on one process, two exchanges and
/// one operator per view for what took six.
fn deliver<'s>(
    id: usize,
    rows: render::Coll<'s, u64>,
    errs: Option<render::Errs<'s, u64>>,
    (processes, threads): (usize, usize),
    buffer: Buffer,
    progress: Progress,
) {
    use timely::dataflow::channels::pact::Pipeline;
    use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
    use timely::progress::operate::FrontierInterest;
    fn to_servers<'s, D: timely::ExchangeData + Clone>(
        stream: timely::dataflow::Stream<'s, u64, Vec<(D, u64, isize)>>,
        processes: usize,
        threads: usize,
    ) -> timely::dataflow::Stream<'s, u64, Vec<(D, u64, isize)>> {
        if processes == 1 {
            return stream.exchange(|_| 0);
        }
        stream
            .flat_map::<Vec<_>, _, _>(move |(data, time, diff)| {
                (0..processes).map(move |p| (((p * threads) as u64, data.clone()), time, diff))
            })
            .exchange(|((target, _), _, _)| *target)
            .map(|((_, data), time, diff)| (data, time, diff))
    }
    let scope = rows.inner.scope();
    let mut builder = OperatorBuilder::new(format!("deliver {id}"), scope);
    let mut rows_in = builder.new_input(to_servers(rows.inner, processes, threads), Pipeline);
    builder.set_notify_for(0, FrontierInterest::Always);
    let mut errs_in = errs.map(|e| {
        let input = builder.new_input(to_servers(e.inner, processes, threads), Pipeline);
        builder.set_notify_for(1, FrontierInterest::Always);
        input
    });
    builder.build(move |_| {
        move |frontiers| {
            let mut buffer = buffer.borrow_mut();
            rows_in.for_each(|_, data| {
                for (row, time, diff) in data.drain(..) {
                    buffer.entry(time).or_default().push(((id, Ok(row)), diff));
                }
            });
            if let Some(errs_in) = errs_in.as_mut() {
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
    /// Which dataflow each operator is in, for the arrangement sizes.
    owners: memory::Owners,
}

fn run_worker(
    worker: &mut timely::worker::Worker,
    place: Place,
    rx: Receiver<Command>,
    out: OutputSender,
    sizes: Arc<memory::Sizes>,
) {
    let owners = memory::Owners::default();
    memory::log_into(worker, sizes.clone(), owners.clone());
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
        owners,
    };
    w.add_table(UNIT_TABLE);
    if w.worker.index() == 0 {
        if let Some(t) = w.tables.get_mut(&UNIT_TABLE) {
            t.input.insert(PackedRow::pack(&[]));
            t.input.flush();
        }
    }
    let leader = place.process == 0;
    let mut measured = Instant::now();
    loop {
        let mut disconnected = false;
        loop {
            match rx.try_recv() {
                // A follower's commands come from the leader; only its
                // subscribers' tuple requests come from its own process.
                Ok(command) if leader || matches!(command, Command::Requests(_)) => {
                    w.forward(&command);
                    w.command(command)
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
            }
        }
        if disconnected || w.stopped {
            break;
        }
        w.worker.step_or_park(Some(IDLE_PARK));
        if w.first_of_process() {
            w.release();
        }
        if measured.elapsed() >= MEASURE_EVERY {
            w.measure(&sizes);
            measured = Instant::now();
        }
    }
}

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
            let bytes = v.measures.iter_mut().map(|m| m()).sum();
            measured.insert(memory::Owner::View(*id), bytes);
        }
        sizes.set_bytes(self.worker.index(), measured);
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
            Command::AddTable { id } => self.add_table(id),
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
            Command::Apply { lsn, updates } => {
                let t = lsn.max(self.time);
                for table in self.tables.values_mut() {
                    table.input.advance_to(t);
                }
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
                self.advance_to(t + 1);
            }
            Command::Advance { lsn } => {
                if lsn + 1 > self.time {
                    self.advance_to(lsn + 1);
                }
            }
            Command::Tuples {
                table,
                updates,
                ticket,
            } => {
                // A time of their own, after everything applied so far and
                // before the next transaction (commit LSNs are far apart).
                let t = self.time;
                if self.worker.index() == 0 {
                    if let Some(tab) = self.tables.get_mut(&table) {
                        for (row, diff) in updates.iter() {
                            tab.input.update(PackedRow::pack(row), *diff);
                        }
                    }
                }
                if self.first_of_process() {
                    let _ = self.out.send(Output::TuplesApplied { ticket, lsn: t });
                }
                self.advance_to(t + 1);
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

    /// Advances every input to `time` and lets the tables' arrangements
    /// forget distinctions between times before the last complete one
    /// (a view added now reads them as of that time, nothing reads earlier).
    fn advance_to(&mut self, time: u64) {
        self.time = time;
        let since = [time.saturating_sub(1)];
        for t in self.tables.values_mut() {
            t.input.advance_to(time);
            t.input.flush();
            t.trace.set_logical_compaction(AntichainRef::new(&since));
            t.trace.set_physical_compaction(AntichainRef::new(&since));
        }
    }

    fn add_table(&mut self, id: usize) {
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
        let measure = memory::measure(trace.clone());
        self.tables.insert(
            id,
            Table {
                input,
                trace,
                probe,
                measure,
            },
        );
    }

    fn add_view(&mut self, id: usize, plan: &Plan) {
        let mut wanted = Vec::new();
        plan.tables(&mut wanted);
        wanted.sort_unstable();
        wanted.dedup();
        // The last complete time: the view's first output is its contents
        // then, ready as soon as the import has caught up with the tables.
        let as_of = self.time.saturating_sub(1);
        let since = Antichain::from_elem(as_of);
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
                    let trace = RefCell::new(tables.get(&table)?.trace.clone());
                    let imported = RefCell::new(None);
                    let (buttons, since) = (buttons.clone(), since.clone());
                    Some(Rc::new(move |cols: Option<&[usize]>| {
                        let arranged = imported
                            .borrow_mut()
                            .get_or_insert_with(|| {
                                let (arranged, button) = trace.borrow_mut().import_frontier_core(
                                    scope,
                                    &format!("import {table}"),
                                    since.clone(),
                                    Antichain::new(),
                                );
                                buttons.borrow_mut().push(button);
                                arranged
                            })
                            .clone();
                        match cols {
                            None => arranged.as_collection(|row: &PackedRow, _: &()| row.unpack()),
                            Some(cols) => {
                                let cols = cols.to_vec();
                                arranged.as_collection(move |row: &PackedRow, _: &()| {
                                    row.columns(&cols)
                                })
                            }
                        }
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
            tracing::debug!(view = id, operators = end - first, "view dataflow built");
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
                measures,
            },
        );
    }

    /// The time every table and view has passed: output before it is final.
    fn frontier(&self) -> Option<u64> {
        let tables = self
            .tables
            .values()
            .filter_map(|t| t.probe.with_frontier(|f| f.first().copied()));
        let views = self
            .views
            .values()
            .filter_map(|v| v.progress.borrow().first().copied());
        tables.chain(views).min().or(Some(self.time))
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
            let _ = self.out.send(Output::Progress { lsn: frontier - 1 });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
