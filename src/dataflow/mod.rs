//! Timely workers hosting every view's dataflow.
//!
//! ```text
//!  source ──Command::Apply{lsn, updates}──▶ each worker: its share of the updates
//!                                           into one input per base table, at time lsn
//!         ──Command::Advance{lsn}─────────▶ inputs advance: lsn is complete
//!  views  ◀──Output::Batch / Progress────── worker 0: view outputs, exchanged to it,
//!                                           released once the probe frontier passes lsn
//! ```
//! Time is the commit LSN. A batch for time `t` leaves only when no worker can
//! produce more output at `t`, so a subscriber sees a transaction whole.

pub mod render;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::Duration;

use differential_dataflow::input::Input;
use differential_dataflow::AsCollection;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Exchange;

use crate::repr::Row;
use crate::sql::Plan;

/// Updates of one transaction: (table index, row, +1/-1).
pub type Updates = Vec<(usize, Row, isize)>;

pub enum Command {
    /// Apply one transaction's changes at time `lsn`.
    Apply { lsn: u64, updates: Arc<Updates> },
    /// Everything at or before `lsn` is known: nothing more will arrive for it.
    Advance { lsn: u64 },
}

#[derive(Debug)]
pub enum Output {
    /// The consolidated changes of each view that changed at `lsn`.
    Batch { lsn: u64, views: Vec<ViewChanges> },
    /// All times up to and including `lsn` are complete.
    Progress { lsn: u64 },
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
pub struct InFlight {
    credit: tokio::sync::Semaphore,
    max: usize,
    pending: Mutex<std::collections::VecDeque<(u64, u32)>>,
}

impl InFlight {
    pub fn new(max_rows: usize) -> InFlight {
        let max = max_rows.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        InFlight {
            credit: tokio::sync::Semaphore::new(max),
            max,
            pending: Mutex::new(Default::default()),
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

    /// Returns the credit of every transaction at or before `lsn`.
    pub fn release_through(&self, lsn: u64) {
        let mut pending = self.pending.lock().expect("in-flight lock");
        while let Some(&(l, n)) = pending.front() {
            if l > lsn {
                break;
            }
            pending.pop_front();
            self.credit.add_permits(n as usize);
        }
    }

    /// Rows currently in flight.
    pub fn rows(&self) -> usize {
        self.max - self.credit.available_permits()
    }
}

/// Handle to the running workers. Dropping it stops them.
pub struct Dataflow {
    senders: Vec<Sender<Command>>,
    threads: Vec<Thread>,
    guards: Mutex<Option<timely::communication::WorkerGuards<()>>>,
}

/// How long an idle worker parks before checking for commands again; sends
/// unpark it sooner, so this only bounds the cost of a missed wake-up.
const IDLE_PARK: Duration = Duration::from_millis(50);

impl Dataflow {
    /// Starts `workers` threads, each building the same dataflow: one input per
    /// table and one output per plan.
    pub fn start(
        workers: usize,
        num_tables: usize,
        plans: Vec<Plan>,
        out: OutputSender,
    ) -> Result<Dataflow, String> {
        let workers = workers.max(1);
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
        let plans = Arc::new(plans);
        let out = Arc::new(Mutex::new(out));
        let guards = timely::execute(timely::Config::process(workers), move |worker| {
            let index = worker.index();
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
            run_worker(worker, rx, num_tables, &plans, out);
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
            threads: threads.into_iter().flatten().collect(),
            guards: Mutex::new(Some(guards)),
        })
    }

    fn send(&self, make: impl Fn() -> Command) {
        for (s, t) in self.senders.iter().zip(&self.threads) {
            let _ = s.send(make());
            t.unpark();
        }
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
}

impl Drop for Dataflow {
    fn drop(&mut self) {
        self.senders.clear();
        for t in &self.threads {
            t.unpark();
        }
        if let Some(g) = self.guards.lock().ok().and_then(|mut g| g.take()) {
            let _ = g.join();
        }
    }
}

type Buffer = Rc<RefCell<BTreeMap<u64, Vec<((usize, Result<Row, String>), isize)>>>>;

fn run_worker(
    worker: &mut timely::worker::Worker,
    rx: Receiver<Command>,
    num_tables: usize,
    plans: &[Plan],
    out: OutputSender,
) {
    let index = worker.index();
    let peers = worker.peers();
    let buffer: Buffer = Rc::new(RefCell::new(BTreeMap::new()));
    let probe = ProbeHandle::new();
    let (mut inputs, mut unit) = worker.dataflow::<u64, _, _>(|scope| {
        let mut inputs = Vec::new();
        let mut tables = Vec::new();
        for _ in 0..num_tables {
            let (handle, coll) = scope.new_collection::<Row, isize>();
            inputs.push(handle);
            tables.push(coll);
        }
        let (unit_input, unit) = scope.new_collection::<(), isize>();
        // The probe also watches an input, so progress flows even with no views.
        unit.clone().probe_with(&probe);
        let mut ctx = render::Context::new(tables, unit);
        for (vi, plan) in plans.iter().enumerate() {
            let coll = render::render(plan, &mut ctx);
            let buf = buffer.clone();
            let mut results = coll.map(move |row| (vi, Ok(row)));
            if let Some(errs) = ctx.errors_of(plan) {
                results = results.concat(errs.map(move |e| (vi, Err(e))));
            }
            results
                .inner
                .exchange(|_| 0)
                .as_collection()
                .inspect(move |(data, time, diff)| {
                    buf.borrow_mut()
                        .entry(*time)
                        .or_default()
                        .push((data.clone(), *diff));
                })
                .probe_with(&probe);
        }
        (inputs, unit_input)
    });
    if index == 0 {
        unit.insert(());
    }
    let mut time = 0u64;
    let mut last_progress: Option<u64> = None;
    let advance =
        |inputs: &mut Vec<differential_dataflow::input::InputSession<u64, Row, isize>>,
         unit: &mut differential_dataflow::input::InputSession<u64, (), isize>,
         to: u64| {
            for i in inputs.iter_mut() {
                i.advance_to(to);
                i.flush();
            }
            unit.advance_to(to);
            unit.flush();
        };
    loop {
        let mut disconnected = false;
        loop {
            match rx.try_recv() {
                Ok(Command::Apply { lsn, updates }) => {
                    let t = lsn.max(time);
                    for i in inputs.iter_mut() {
                        i.advance_to(t);
                    }
                    for (n, (table, row, diff)) in updates.iter().enumerate() {
                        if n % peers == index {
                            inputs[*table].update(row.clone(), *diff);
                        }
                    }
                    time = t + 1;
                    advance(&mut inputs, &mut unit, time);
                }
                Ok(Command::Advance { lsn }) => {
                    if lsn + 1 > time {
                        time = lsn + 1;
                        advance(&mut inputs, &mut unit, time);
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        if disconnected {
            break;
        }
        worker.step_or_park(Some(IDLE_PARK));
        if index == 0 {
            release(&probe, &buffer, &mut last_progress, &out);
        }
    }
}

/// Sends every buffered time the probe has passed, oldest first, then progress.
fn release(
    probe: &ProbeHandle<u64>,
    buffer: &Buffer,
    last_progress: &mut Option<u64>,
    out: &OutputSender,
) {
    let Some(frontier) = probe.with_frontier(|f| f.first().copied()) else {
        return;
    };
    let ready = {
        let mut b = buffer.borrow_mut();
        let later = b.split_off(&frontier);
        std::mem::replace(&mut *b, later)
    };
    for (lsn, mut changes) in ready {
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
        let _ = out.send(Output::Batch { lsn, views });
    }
    if frontier > 0 && *last_progress != Some(frontier - 1) {
        *last_progress = Some(frontier - 1);
        let _ = out.send(Output::Progress { lsn: frontier - 1 });
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
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("credit returned")
            .unwrap();
        f.release_through(3);
        assert_eq!(f.rows(), 0);
    }
}
