//! Decides which views exist and what they compute, and keeps the dataflow
//! and the registry in step with Postgres and with the queries directory.
//!
//! ```text
//!  pg::source ──SourceEvent──┐
//!  queries/ (notify, SIGHUP) ┼─▶ controller ──Command──▶ dataflow (tables, views)
//!  dataflow ──Output─────────┘       │
//!                                    └──▶ views::Registry (contents, events, health)
//! ```
//! It is one task, so every decision is taken in stream order: a view added
//! from a file, a table whose columns changed and the transactions around them
//! reach the workers in the order they happened.
//!
//! Views are compiled against the tables the source follows. After every
//! resync (a reconnect, a table re-read because its definition changed, a
//! table the views newly need) all views are compiled again; a view whose
//! plan changed is rebuilt in a new dataflow (its subscribers get the
//! difference, or a snapshot when its columns changed), a view that no longer
//! compiles fails with the reason and comes back when the schema lets it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::cluster::Mirror;
use crate::dataflow::{Dataflow, InFlight, Output};
use crate::pg::catalog::{Resolution, TableInfo};
use crate::pg::source::{Resync, SourceControl, SourceEvent, SourceStatus};
use crate::pg::Lsn;
use crate::repr::Row;
use crate::sql::{self, Catalog};
use crate::views::{Fault, Health, Refused, Registry, TupleRequest, ViewDef};

/// How often progress events go out at most.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// How often the clock of time-based views moves: a row enters or leaves
/// within this (plus the dataflow's step) of the moment its condition
/// changes.
const CLOCK_INTERVAL: Duration = Duration::from_millis(500);
/// Clock moves and parameter-tuple steps each take a dataflow time of their
/// own after the last LSN the source reported (L+1, L+2, ...). The next
/// commit's LSN is at least two WAL records (about 50 bytes) past the
/// server's WAL end the source last reported, so at most this many steps
/// are taken before the source reports again; the clock waits for it past
/// that.
const MAX_STEPS_BETWEEN_LSNS: u32 = 24;
/// After this many steps of its own the controller asks the source for a new
/// LSN ([`SourceControl::NeedProgress`]): an idle database writes no WAL, so
/// no LSN would come, and the clock would stop moving time-based views.
const REQUEST_PROGRESS_AFTER: u32 = 12;
/// How long a request for a new LSN is given before it is made again.
const PROGRESS_RETRY: Duration = Duration::from_secs(5);
/// A progress heartbeat goes out at least this often, even when nothing moved.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// File events are gathered this long before the directory is read again, so
/// an editor's write-rename-delete sequence counts as one change.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(300);
/// How long a replaced dataflow's workers are given to stop.
const DATAFLOW_STOP_PATIENCE: Duration = Duration::from_secs(5);

/// One view as built in the dataflow.
struct Built {
    dataflow: usize,
    /// The plan it computes (before its parameters table is named): a plan
    /// that differs structurally means a rebuild.
    plan: sql::Plan,
    /// The tables it reads.
    tables: Vec<usize>,
    /// A parameterized view's table of parameter tuples.
    params_table: Option<usize>,
}

/// How long a parameter tuple nobody subscribes to stays in the dataflow,
/// so a page that reloads finds its rows still computed.
pub const TUPLE_LINGER: Duration = Duration::from_secs(30);

/// Parameter tables get ids far above the source's table ids.
const FIRST_PARAMS_TABLE: usize = 1 << 40;

pub struct Controller {
    queries_dir: PathBuf,
    /// The views' definitions in use: name → SQL (an edited file that does
    /// not compile leaves its previous SQL here).
    files: BTreeMap<String, String>,
    /// The queries directory as last read.
    disk: BTreeMap<String, String>,
    catalog: Catalog,
    /// Names the tables resolve to, from the last resync.
    names: Vec<(Vec<String>, Result<Resolution, String>)>,
    built: HashMap<String, Built>,
    /// Tables that cannot be followed now, with the reason.
    failed_tables: HashMap<usize, String>,
    next_dataflow: usize,
    /// Dataflow ids whose readiness replaces subscribers' contents outright.
    reset_on_ready: HashSet<usize>,
    /// The dataflow was replaced: views built until the next full resync
    /// send their subscribers a reset snapshot.
    rebuilding: bool,
    /// The last refusal of each view, so each is logged once.
    refusals: HashMap<String, String>,
    next_params_table: usize,
    next_ticket: u64,
    /// The parameter tuples each process's subscribers hold open, by view:
    /// a tuple is in the view's parameters table once, however many
    /// processes hold it (only process 0 outside cluster mode).
    holders: HashMap<String, HashMap<Row, HashSet<usize>>>,
    /// Part of a cluster: a dead worker ends the process (see
    /// [`Controller::replace_dataflow`]).
    clustered: bool,
    /// The clock row in the dataflow's clock table, once a time-based view
    /// needs it.
    clock: Option<crate::repr::Row>,
    /// Dataflow steps of their own (clock, tuples) since the source's last LSN.
    steps_since_lsn: u32,
    /// When the source was last asked for a new LSN since its last one.
    progress_requested: Option<std::time::Instant>,
    /// Whether tokens are verified: a view that reads claims needs it.
    auth: bool,
    /// A resync's LSN until the dataflow has passed it (see
    /// [`Controller::apply_table_faults`]).
    faults_settle_at: Option<Lsn>,
    dataflow: Option<Dataflow>,
    /// Transactions waiting for the dataflow to finish the last ones.
    batching: Batching,
    /// Waiting transactions beyond this many are merged into one time.
    merge_after: usize,
    /// How long after a hand-over the next waits (`--linger-us`).
    linger: Duration,
    /// Rows handed to the dataflow since freed memory was last given back.
    rows_since_trim: usize,
    /// Worker threads, and the groups they are split into.
    workers: (usize, usize),
    out_tx: mpsc::UnboundedSender<Output>,
    registry: Arc<Registry>,
    in_flight: Arc<InFlight>,
    wanted: watch::Sender<Vec<Vec<String>>>,
    source_control: mpsc::UnboundedSender<SourceControl>,
}

/// Transactions that arrive while the dataflow still works on the ones
/// handed to it last wait here, and go in together, in one dataflow step,
/// when its progress passes them. A transaction arriving at an idle dataflow
/// goes in at once, at its own LSN. When more than `--merge-after` wait, the
/// dataflow is not keeping up, and they go in as one time, the last one's
/// LSN: a step costs mostly per time (every operator of every view
/// scheduled, each reduce computing each time, a diff to every subscriber),
/// so the waiting transactions cost about what one does. Transactions are
/// never split: merged, a subscriber sees several whole transactions as one
/// diff. With `--linger-us`, transactions also wait while less than that has
/// passed since the last hand-over, so a fast stream goes in a few at a
/// time (each still at its own LSN) instead of one dataflow step each.
#[derive(Default)]
struct Batching {
    /// The LSN of the last transaction handed to the dataflow.
    sent: u64,
    /// The LSN the dataflow's progress has reached.
    done: u64,
    /// Transactions waiting, oldest first.
    queued: Vec<(u64, crate::dataflow::Updates)>,
    /// A position the source reported after the queued transactions.
    advance: Option<u64>,
    /// When transactions were last handed to the dataflow.
    last_hand_over: Option<std::time::Instant>,
}

/// After this many rows have gone through the dataflow, freed memory is
/// given back to the system once nothing is in flight.
const TRIM_AFTER_ROWS: usize = 100_000;

/// What tests may ask of a running controller.
#[derive(Debug)]
pub enum TestHook {
    /// Make a dataflow worker panic.
    CrashWorker,
}

pub struct ControllerConfig {
    /// Tokens are verified (`--jwt-secret` / `--jwt-public-key`).
    pub auth: bool,
    /// The dataflow, started (in cluster mode, across the processes).
    pub dataflow: Dataflow,
    /// Process 0 of a cluster rather than a process alone.
    pub clustered: bool,
    pub queries_dir: PathBuf,
    pub files: Vec<(String, String)>,
    /// Worker threads, and the groups they are split into.
    pub workers: (usize, usize),
    /// Waiting transactions beyond this many go in as one time.
    pub merge_after: usize,
    /// Transactions arriving within this long of the last hand-over wait
    /// for it to pass.
    pub linger: Duration,
    pub registry: Arc<Registry>,
    pub in_flight: Arc<InFlight>,
    pub wanted: watch::Sender<Vec<Vec<String>>>,
    pub source_control: mpsc::UnboundedSender<SourceControl>,
}

/// The inputs the controller's loop reads.
pub struct ControllerInputs {
    pub source: mpsc::UnboundedReceiver<SourceEvent>,
    pub outputs: mpsc::UnboundedReceiver<Output>,
    /// Something in the queries directory changed (a file event or SIGHUP).
    pub reload: mpsc::UnboundedReceiver<()>,
    /// Requests from tests (see [`crate::server::Running::crash_a_worker`]).
    pub test_hooks: mpsc::UnboundedReceiver<TestHook>,
    /// Parameter tuples subscribers need.
    pub tuples: mpsc::UnboundedReceiver<TupleRequest>,
    pub shutdown: watch::Receiver<bool>,
}

impl Controller {
    /// Takes over the dataflow and declares the views of `config.files`.
    pub fn new(config: ControllerConfig, out_tx: mpsc::UnboundedSender<Output>) -> Controller {
        config.registry.set_sizes(config.dataflow.sizes());
        let names: Vec<String> = config.files.iter().map(|(n, _)| n.clone()).collect();
        let files: BTreeMap<String, String> = config.files.into_iter().collect();
        let mut controller = Controller {
            queries_dir: config.queries_dir,
            disk: files.clone(),
            files,
            catalog: Catalog::default(),
            names: Vec::new(),
            built: HashMap::new(),
            failed_tables: HashMap::new(),
            next_dataflow: 0,
            reset_on_ready: HashSet::new(),
            rebuilding: false,
            refusals: HashMap::new(),
            next_params_table: FIRST_PARAMS_TABLE,
            next_ticket: 0,
            holders: HashMap::new(),
            clustered: config.clustered,
            clock: None,
            steps_since_lsn: 0,
            progress_requested: None,
            auth: config.auth,
            faults_settle_at: None,
            dataflow: Some(config.dataflow),
            batching: Batching::default(),
            merge_after: config.merge_after,
            linger: config.linger,
            rows_since_trim: 0,
            workers: config.workers,
            out_tx,
            registry: config.registry,
            in_flight: config.in_flight,
            wanted: config.wanted,
            source_control: config.source_control,
        };
        for name in names {
            controller.mirror(Mirror::Declare { name });
        }
        controller.publish_wanted();
        controller
    }

    /// Does `op` to the registry, and has the dataflow carry it to the
    /// other processes' registries (cluster mode), after every command
    /// given so far.
    fn mirror(&mut self, op: Mirror) {
        if self.clustered {
            if let Some(df) = &self.dataflow {
                df.mirror(op.clone());
            }
        }
        self.registry.mirror(op, &mut self.reset_on_ready);
    }

    fn df(&self) -> &Dataflow {
        self.dataflow
            .as_ref()
            .expect("a dataflow is always running")
    }

    /// Tells the source which tables the views read.
    fn publish_wanted(&self) {
        let views: Vec<(String, String)> = self
            .files
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        let wanted = sql::table_names(&views);
        self.wanted.send_if_modified(|w| {
            if *w == wanted {
                false
            } else {
                *w = wanted;
                true
            }
        });
    }

    pub async fn run(mut self, mut inputs: ControllerInputs) {
        let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
        let mut clock = tokio::time::interval(CLOCK_INTERVAL);
        clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut reap = tokio::time::interval(Duration::from_secs(1));
        let mut last_heartbeat = std::time::Instant::now();
        loop {
            tokio::select! {
                ev = inputs.source.recv() => match ev {
                    Some(ev) => self.source_event(ev),
                    None => return,
                },
                out = inputs.outputs.recv() => match out {
                    Some(out) => self.output(out),
                    None => return,
                },
                r = inputs.reload.recv() => {
                    if r.is_none() {
                        return;
                    }
                    // Gather a burst of file events into one reload.
                    tokio::time::sleep(RELOAD_DEBOUNCE).await;
                    while inputs.reload.try_recv().is_ok() {}
                    self.reload_files();
                }
                Some(r) = inputs.tuples.recv() => {
                    // Everything queued goes in one step: a page opening 100
                    // subscriptions, or 10 000 clients arriving, is a few
                    // dataflow rounds, not one per tuple.
                    let mut all = vec![r];
                    while let Ok(r) = inputs.tuples.try_recv() {
                        all.push(r);
                    }
                    self.tuple_requests(all.into_iter().map(|r| (0, r)).collect());
                }
                _ = tokio::time::sleep_until(self.linger_ends()), if self.waiting_only_for_linger() => {
                    self.flush_queued();
                }
                _ = clock.tick() => self.move_clock(),
                _ = reap.tick() => {
                    let expired = self.registry.expire_idle(TUPLE_LINGER);
                    self.tuple_requests(expired.into_iter().map(|r| (0, r)).collect());
                }
                Some(hook) = inputs.test_hooks.recv() => match hook {
                    TestHook::CrashWorker => self.df().crash_a_worker(),
                },
                _ = tick.tick() => {
                    let heartbeat = last_heartbeat.elapsed() >= HEARTBEAT_INTERVAL;
                    if heartbeat {
                        last_heartbeat = std::time::Instant::now();
                    }
                    self.registry.announce_progress(heartbeat);
                }
                _ = stopped(&mut inputs.shutdown) => break,
            }
        }
        if let Some(df) = self.dataflow.take() {
            let _ = tokio::task::spawn_blocking(move || df.shutdown(DATAFLOW_STOP_PATIENCE)).await;
        }
    }

    fn source_event(&mut self, ev: SourceEvent) {
        tracing::trace!(event = ?std::mem::discriminant(&ev), "source event");
        match ev {
            SourceEvent::Resync(r) => {
                self.lsn_arrived();
                self.flush_queued();
                self.resync(*r)
            }
            SourceEvent::Transaction { lsn, updates } => {
                self.lsn_arrived();
                self.rows_since_trim += updates.len();
                let b = &self.batching;
                if b.queued.is_empty() && b.done >= b.sent && !self.lingers() {
                    self.hand_over(lsn.0, updates);
                } else {
                    self.batching.queued.push((lsn.0, updates));
                }
                self.registry.transactions.fetch_add(1, Ordering::Relaxed);
            }
            SourceEvent::Progress { lsn } => {
                self.lsn_arrived();
                if !self.batching.queued.is_empty() {
                    self.batching.advance = Some(lsn.0);
                } else {
                    self.df().advance(lsn.0)
                }
            }
            SourceEvent::Status(status) => {
                let health = match status {
                    SourceStatus::Streaming { snapshot_lsn } => Health::Streaming { snapshot_lsn },
                    SourceStatus::Reconnecting { reason } => Health::Reconnecting { reason },
                    SourceStatus::Failed { reason } => Health::Failed { reason },
                };
                self.mirror(Mirror::SetHealth((&health).into()));
            }
            SourceEvent::Rows { table, rows } => {
                // The rows hold every transaction sent before them: those
                // still queued go first.
                self.flush_queued();
                self.df().load(table, rows);
            }
            SourceEvent::TableFailed { table, message } => {
                self.failed_tables.insert(table, message);
                self.apply_table_faults();
            }
        }
    }

    fn output(&mut self, out: Output) {
        let Some(out) = record(&self.registry, &mut self.reset_on_ready, out) else {
            return;
        };
        match out {
            Output::Progress { lsn } => {
                tracing::trace!(lsn = %Lsn(lsn), "dataflow progress");
                self.batching.done = self.batching.done.max(lsn);
                if self.batching.done >= self.batching.sent && !self.lingers() {
                    self.flush_queued();
                }
                self.registry.advance(Lsn(lsn));
                self.in_flight.release_through(lsn);
                // A large ingest (a backlog, a bulk load) leaves the pages
                // of its transient rows with the allocator: give them back
                // once it has gone through.
                if self.rows_since_trim >= TRIM_AFTER_ROWS && self.in_flight.rows() == 0 {
                    self.rows_since_trim = 0;
                    release_freed_memory();
                }
                if self.faults_settle_at.is_some_and(|at| Lsn(lsn) >= at) {
                    self.faults_settle_at = None;
                    self.apply_table_faults();
                }
            }
            Output::WorkerFailed { message } => self.replace_dataflow(&message),
            Output::Requests { process, requests } => {
                self.tuple_requests(requests.into_iter().map(|r| (process, r)).collect())
            }
            // Done by `record`, or a follower's (process 0 never receives it).
            _ => {}
        }
    }

    /// Whether transactions handed over now would be within `--linger-us`
    /// of the last ones handed over: they wait for it to pass.
    fn lingers(&self) -> bool {
        self.batching
            .last_hand_over
            .is_some_and(|t| t.elapsed() < self.linger)
    }

    /// Transactions wait only for the linger to pass (the dataflow has
    /// done what it was given).
    fn waiting_only_for_linger(&self) -> bool {
        let b = &self.batching;
        !b.queued.is_empty() && b.done >= b.sent
    }

    /// When the linger after the last hand-over ends.
    fn linger_ends(&self) -> tokio::time::Instant {
        let last = self
            .batching
            .last_hand_over
            .unwrap_or_else(std::time::Instant::now);
        tokio::time::Instant::from_std(last + self.linger)
    }

    /// Hands transactions to the dataflow as one time, `lsn`.
    fn hand_over(&mut self, lsn: u64, updates: crate::dataflow::Updates) {
        self.batching.sent = lsn;
        self.batching.last_hand_over = Some(std::time::Instant::now());
        self.registry.batches.fetch_add(1, Ordering::Relaxed);
        self.df().apply(lsn, updates);
    }

    /// Hands the queued transactions to the dataflow (merged if there are
    /// many), then the position reported after them.
    fn flush_queued(&mut self) {
        let queued = std::mem::take(&mut self.batching.queued);
        if queued.len() > self.merge_after {
            let lsn = queued.last().map_or(0, |(lsn, _)| *lsn);
            let updates = queued.into_iter().flat_map(|(_, u)| u).collect();
            self.hand_over(lsn, updates);
        } else {
            for (lsn, updates) in queued {
                self.hand_over(lsn, updates);
            }
        }
        if let Some(lsn) = self.batching.advance.take() {
            self.df().advance(lsn);
        }
    }

    /// A worker died: nothing the dataflow holds can be trusted. Start an
    /// empty one and have the source read every table into it again; every
    /// view's subscribers get a fresh snapshot once it is rebuilt.
    fn replace_dataflow(&mut self, message: &str) {
        if self.clustered {
            // The other processes' workers are part of this dataflow and a
            // new one needs them all to connect again: end the process, so
            // its supervisor restarts the cluster (the others end when
            // they lose this one).
            error!(error = %message, "a dataflow worker died or a process of the cluster was lost; exiting");
            std::process::exit(70);
        }
        error!(error = %message, "dataflow worker died; rebuilding the dataflow from a fresh snapshot");
        self.registry
            .dataflow_restarts
            .fetch_add(1, Ordering::Relaxed);
        self.registry.set_health(Health::Reconnecting {
            reason: format!("rebuilding after {message}"),
        });
        if let Some(old) = self.dataflow.take() {
            tokio::task::spawn_blocking(move || old.shutdown(DATAFLOW_STOP_PATIENCE));
        }
        let (workers, groups) = self.workers;
        match Dataflow::start(workers, groups, None, self.out_tx.clone()) {
            Ok(df) => {
                self.registry.set_sizes(df.sizes());
                self.dataflow = Some(df);
            }
            Err(e) => {
                // Without workers nothing can be computed again: stop, so a
                // supervisor restarts the process (this is not a database fault).
                error!(error = %e, "cannot start a new dataflow; exiting");
                std::process::exit(70);
            }
        }
        // Like what the old workers held, the queued transactions are read
        // again with the tables.
        self.batching = Batching::default();
        self.in_flight.release_all();
        self.clock = None;
        for (_, b) in std::mem::take(&mut self.built) {
            self.mirror(Mirror::Detach {
                dataflow: b.dataflow,
            });
        }
        self.catalog = Catalog::default();
        self.names.clear();
        self.failed_tables.clear();
        self.reset_on_ready.clear();
        self.faults_settle_at = None;
        self.rebuilding = true;
        let _ = self.source_control.send(SourceControl::Reload);
    }

    /// Tables were (re)read: update the dataflow's tables, apply the rows,
    /// and rebuild every view whose plan changed.
    fn resync(&mut self, r: Resync) {
        let Resync {
            lsn,
            full,
            names,
            tables,
            added,
            removed,
            failed,
            updates,
            copied,
            reread,
            settings,
        } = r;
        self.registry.resyncs.fetch_add(1, Ordering::Relaxed);
        self.registry
            .tables_copied
            .fetch_add(copied as u64, Ordering::Relaxed);
        // A table stays failed until it is read again without failing.
        let followed: HashSet<usize> = tables.iter().map(|t| t.id).collect();
        let reread: HashSet<usize> = if full {
            followed.clone()
        } else {
            added.iter().map(|a| a.id).chain(reread).collect()
        };
        self.failed_tables
            .retain(|id, _| followed.contains(id) && !reread.contains(id));
        for (id, reason) in &failed {
            self.failed_tables.insert(*id, reason.clone());
        }
        self.names = names;
        self.catalog = catalog_of(&tables, &self.names);
        self.catalog.settings = settings;
        let compiled = self.compile();
        // Views to drop now: changed plan, no longer compiling, or reading a
        // table that is going away.
        let going: HashSet<usize> = removed
            .iter()
            .copied()
            .chain(added.iter().filter_map(|a| a.replaces))
            .collect();
        let mut rebuild: Vec<(String, sql::CompiledView)> = Vec::new();
        let mut refuse: Vec<Refused> = Vec::new();
        for (name, result) in compiled {
            match result {
                Ok(view) => {
                    let same = self.built.get(&name).is_some_and(|b| b.plan == view.plan);
                    if !same {
                        self.unbuild(&name);
                        rebuild.push((name, view));
                    }
                }
                Err(refused) => {
                    self.unbuild(&name);
                    refuse.push(refused);
                }
            }
        }
        debug_assert!(self
            .built
            .values()
            .all(|b| b.tables.iter().all(|t| !going.contains(t))));
        for a in &added {
            self.df().follow_table(a.id);
        }
        self.batching.sent = lsn.0;
        self.rows_since_trim += updates.len();
        self.df().apply(lsn.0, updates);
        for id in &going {
            self.df().drop_table(*id);
        }
        for (name, view) in rebuild {
            if self.rebuilding {
                // Before the build: in a cluster, a follower must know it
                // before the view's readiness can reach it.
                let id = self.next_dataflow;
                self.mirror(Mirror::ResetOnReady { dataflow: id });
            }
            self.build(name, view);
        }
        if full {
            self.rebuilding = false;
        }
        self.faults_settle_at = Some(lsn);
        for r in refuse {
            self.refuse(r);
        }
        self.apply_table_faults();
    }

    /// Records that a view does not compile, logging it once per reason.
    fn refuse(&mut self, r: Refused) {
        if self.refusals.get(&r.name) != Some(&r.error) {
            error!(view = %r.name, "view refused: {}", r.detail);
            self.refusals.insert(r.name.clone(), r.error.clone());
        }
        self.mirror((&r).into());
    }

    /// Compiles every view file against the current catalog.
    fn compile(&self) -> Vec<(String, Result<sql::CompiledView, Refused>)> {
        let views: Vec<(String, String)> = self
            .files
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        let results = sql::compile_all(&views, &self.catalog);
        let auth = self.auth;
        views
            .into_iter()
            .zip(results)
            .map(|((name, text), r)| {
                let r = r.and_then(|v| {
                    if !auth && v.params.iter().any(|p| p.from == sql::ParamFrom::Token) {
                        return Err(sql::BindError {
                            message: "the view reads the caller's token (auth.uid(), auth.jwt()) but viewcast verifies no tokens: start it with --jwt-secret or --jwt-public-key".into(),
                            position: None,
                        });
                    }
                    Ok(v)
                });
                let r = r.map_err(|e| Refused {
                    name: name.clone(),
                    sql: text.clone(),
                    error: e.to_string(),
                    detail: e.render(&text),
                });
                (name, r)
            })
            .collect()
    }

    /// Starts a view's dataflow; the registry collects its first output as
    /// its contents. A parameterized view gets a table of its own for its
    /// parameter tuples, holding those subscribed now.
    fn build(&mut self, name: String, mut view: sql::CompiledView) {
        self.refusals.remove(&name);
        let id = self.next_dataflow;
        self.next_dataflow += 1;
        let plan = view.plan.clone();
        let def = ViewDef {
            sql: self.files.get(&name).cloned().unwrap_or_default(),
            columns: view.columns.clone(),
            plan: view.plan.to_string(),
            params: view.params.clone(),
        };
        self.mirror(Mirror::Attach {
            name: name.clone(),
            def: (&def).into(),
            dataflow: id,
        });
        let params_table = if view.params.is_empty() {
            self.holders.remove(&name);
            None
        } else {
            let table = self.next_params_table;
            self.next_params_table += 1;
            view.plan.rename_table(sql::PARAMS_TABLE, table);
            self.df().add_table(table);
            // The tuples held open now (of this definition's arity: the
            // registries dropped the others when it was attached).
            let arity = view.params.len();
            let held = self.holders.entry(name.clone()).or_default();
            held.retain(|t, _| t.len() == arity);
            let tuples: Vec<Row> = held.keys().cloned().collect();
            if !tuples.is_empty() {
                let ticket = self.ticket();
                self.mirror(Mirror::TuplesRequested {
                    view: name.clone(),
                    tuples: tuples.clone(),
                    ticket,
                });
                self.df()
                    .tuples(table, tuples.into_iter().map(|t| (t, 1)).collect(), ticket);
            }
            Some(table)
        };
        let mut tables = Vec::new();
        view.plan.tables(&mut tables);
        tables.sort_unstable();
        tables.dedup();
        if tables.contains(&sql::CLOCK_TABLE) && self.clock.is_none() {
            // The clock table, with the time now, before the view reads it.
            let row = vec![crate::repr::Datum::TimestampTz(clock_now())];
            self.df().add_table(sql::CLOCK_TABLE);
            let ticket = self.ticket();
            self.df()
                .tuples(sql::CLOCK_TABLE, vec![(row.clone(), 1)], ticket);
            self.clock = Some(row);
        }
        self.built.insert(
            name,
            Built {
                dataflow: id,
                plan,
                tables,
                params_table,
            },
        );
        let ask = self.df().add_view(id, view.plan);
        if !ask.is_empty() {
            let _ = self.source_control.send(SourceControl::Rows(ask));
        }
    }

    /// Stops a view's dataflow (and drops its parameters table).
    fn unbuild(&mut self, name: &str) {
        if let Some(b) = self.built.remove(name) {
            self.df().drop_view(b.dataflow);
            self.mirror(Mirror::Detach {
                dataflow: b.dataflow,
            });
            if let Some(t) = b.params_table {
                self.df().drop_table(t);
            }
        }
    }

    /// Moves the clock of time-based views to now (one dataflow step of its
    /// own, between transactions, like parameter tuples).
    fn move_clock(&mut self) {
        let Some(old) = self.clock.take() else {
            return;
        };
        let row = vec![crate::repr::Datum::TimestampTz(clock_now())];
        if row == old || self.steps_since_lsn >= MAX_STEPS_BETWEEN_LSNS {
            self.clock = Some(old);
            self.want_progress();
            return;
        }
        self.step_taken();
        let ticket = self.ticket();
        self.df()
            .tuples(sql::CLOCK_TABLE, vec![(old, -1), (row.clone(), 1)], ticket);
        self.clock = Some(row);
    }

    fn lsn_arrived(&mut self) {
        self.steps_since_lsn = 0;
        self.progress_requested = None;
    }

    /// Counts a dataflow step of the controller's own, and asks the source
    /// for a new LSN before the steps run out.
    fn step_taken(&mut self) {
        self.steps_since_lsn = self.steps_since_lsn.saturating_add(1);
        self.want_progress();
    }

    /// Asks the source for a new LSN once the steps since the last one pass
    /// [`REQUEST_PROGRESS_AFTER`], and again every [`PROGRESS_RETRY`] while
    /// none comes (the write failed, or its keepalive came during a re-read).
    fn want_progress(&mut self) {
        let due = self
            .progress_requested
            .is_none_or(|at| at.elapsed() >= PROGRESS_RETRY);
        if self.steps_since_lsn >= REQUEST_PROGRESS_AFTER && due {
            self.progress_requested = Some(std::time::Instant::now());
            let _ = self.source_control.send(SourceControl::NeedProgress);
        }
    }

    fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    /// A process's subscribers need a parameter tuple that is new to that
    /// process, or one its subscribers have not needed for a while goes.
    /// A tuple enters the dataflow when the first process holds it and
    /// leaves when the last lets it go.
    fn tuple_requests(&mut self, requests: Vec<(usize, TupleRequest)>) {
        let mut by_view: BTreeMap<String, Vec<TupleRequest>> = BTreeMap::new();
        for (process, r) in requests {
            let held = self.holders.entry(r.view.clone()).or_default();
            let changes = if r.add {
                let processes = held.entry(r.tuple.clone()).or_default();
                processes.insert(process) && processes.len() == 1
            } else {
                let last = held
                    .get_mut(&r.tuple)
                    .is_some_and(|processes| processes.remove(&process) && processes.is_empty());
                if last {
                    held.remove(&r.tuple);
                }
                last
            };
            if changes {
                by_view.entry(r.view.clone()).or_default().push(r);
            }
        }
        for (view, requests) in by_view {
            let Some(table) = self.built.get(&view).and_then(|b| b.params_table) else {
                // Not built: the build adds every tuple subscribed by then.
                continue;
            };
            let ticket = self.ticket();
            let added: Vec<crate::repr::Row> = requests
                .iter()
                .filter(|r| r.add)
                .map(|r| r.tuple.clone())
                .collect();
            if !added.is_empty() {
                self.mirror(Mirror::TuplesRequested {
                    view: view.clone(),
                    tuples: added,
                    ticket,
                });
            }
            let retracted: Vec<Row> = requests
                .iter()
                .filter(|r| !r.add)
                .map(|r| r.tuple.clone())
                .collect();
            let updates = requests
                .into_iter()
                .map(|r| (r.tuple, if r.add { 1 } else { -1 }))
                .collect();
            self.step_taken();
            self.df().tuples(table, updates, ticket);
            if !retracted.is_empty() {
                self.mirror(Mirror::TuplesRetracted {
                    view,
                    tuples: retracted,
                });
            }
        }
    }

    /// Fails the views over failed tables with the table's reason, and clears
    /// that fault of the others.
    /// While a resync's rows are still on their way through the dataflow,
    /// only new failures are applied: a view over a table that recovered is
    /// told so (with a snapshot) once its contents have caught up, never
    /// with the rows it held while the table was failing.
    fn apply_table_faults(&mut self) {
        let settled = self.faults_settle_at.is_none();
        let mut faults = Vec::new();
        for (name, b) in &self.built {
            // The first failing table's reason, if any.
            let message = b
                .tables
                .iter()
                .find_map(|t| self.failed_tables.get(t))
                .cloned();
            if message.is_some() || settled {
                faults.push(Mirror::SetFault {
                    name: name.clone(),
                    fault: (&Fault::Table).into(),
                    message,
                });
            }
        }
        for op in faults {
            self.mirror(op);
        }
    }

    /// Reads the queries directory again: new files become views, edited ones
    /// replace theirs (unless they no longer compile: then the old version
    /// keeps running), removed ones are dropped.
    fn reload_files(&mut self) {
        let files = match crate::server::read_queries(&self.queries_dir) {
            Ok(f) => f,
            Err(e) => {
                warn!(error = %e, "cannot read the queries directory; keeping the views as they are");
                return;
            }
        };
        let new: BTreeMap<String, String> = files.into_iter().collect();
        if new == self.disk {
            return;
        }
        let previous = std::mem::replace(&mut self.disk, new.clone());
        let removed: Vec<String> = previous
            .keys()
            .filter(|n| !new.contains_key(*n))
            .cloned()
            .collect();
        let changed: Vec<String> = new
            .iter()
            .filter(|(n, s)| previous.get(*n) != Some(s))
            .map(|(n, _)| n.clone())
            .collect();
        info!(
            changed = changed.len(),
            removed = removed.len(),
            "queries directory changed"
        );
        let old_files = self.files.clone();
        for name in &removed {
            self.files.remove(name);
        }
        for name in &changed {
            self.files.insert(name.clone(), new[name].clone());
        }
        // An edited file that does not compile keeps its old version running.
        for (name, result) in self.compile() {
            let Err(r) = result else { continue };
            if !changed.contains(&name) || !self.built.contains_key(&name) {
                continue;
            }
            if let Some(old) = old_files.get(&name) {
                error!(view = %name, "edited view refused, the previous version keeps running: {}", r.detail);
                self.files.insert(name, old.clone());
            }
        }
        for name in &removed {
            self.unbuild(name);
            self.holders.remove(name);
            self.mirror(Mirror::Remove {
                name: name.clone(),
                message: format!("view \"{name}\" was removed"),
            });
        }
        for name in &changed {
            if !self.built.contains_key(name) {
                self.mirror(Mirror::Declare { name: name.clone() });
            }
        }
        // Views that need tables not followed yet are built after the source
        // has read them (it sends a resync); the rest are built now, from the
        // table state already in the dataflow.
        self.publish_wanted();
        let compiled = self.compile();
        for (name, result) in compiled {
            match result {
                Ok(view) => {
                    if self.built.get(&name).is_some_and(|b| b.plan == view.plan) {
                        continue;
                    }
                    self.unbuild(&name);
                    self.build(name, view);
                }
                Err(r) => {
                    let waits_for_table = self.needs_unfollowed_table(&name, &r.sql);
                    if !self.built.contains_key(&name) && !waits_for_table {
                        self.refuse(r);
                    }
                }
            }
        }
        self.apply_table_faults();
    }

    /// Whether `sql` (of the view `own`) reads a table name the source has
    /// not resolved yet.
    fn needs_unfollowed_table(&self, own: &str, sql: &str) -> bool {
        let Ok(q) = sql::parse(sql) else {
            return false;
        };
        sql::table_refs(&q).into_iter().any(|parts| {
            let is_view =
                sql::view_ref(own, &parts, |name| self.files.contains_key(name)).is_some();
            !is_view && !self.names.iter().any(|(n, _)| *n == parts)
        })
    }
}

/// Completes once `shutdown` turns true (or its sender is gone).
/// What a follower (a process of a cluster other than 0) runs instead of
/// a controller: see [`follow`].
pub struct Following {
    pub registry: Arc<Registry>,
    pub in_flight: Arc<InFlight>,
    pub dataflow: Dataflow,
    pub outputs: mpsc::UnboundedReceiver<Output>,
    /// Parameter tuples this process's subscribers need or let go.
    pub tuples: mpsc::UnboundedReceiver<TupleRequest>,
    /// Set when process 0 stops the dataflow.
    pub finished: watch::Sender<bool>,
}

/// A follower's loop: process 0's registry operations and the views'
/// outputs, in the order its first worker received them, go to this
/// process's registry; its subscribers' tuple requests go to process 0.
pub async fn follow(f: Following, mut shutdown: watch::Receiver<bool>) {
    let Following {
        registry,
        in_flight,
        dataflow,
        mut outputs,
        mut tuples,
        finished,
    } = f;
    let mut reset_on_ready = HashSet::new();
    let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
    let mut reap = tokio::time::interval(Duration::from_secs(1));
    let mut last_heartbeat = std::time::Instant::now();
    loop {
        tokio::select! {
            out = outputs.recv() => {
                // No more outputs: the workers are gone, as when process 0 stops.
                let out = out.map(|o| record(&registry, &mut reset_on_ready, o));
                match out.unwrap_or(Some(Output::LeaderStopped)) {
                    Some(Output::Progress { lsn }) => {
                        registry.advance(Lsn(lsn));
                        in_flight.release_through(lsn);
                    }
                    Some(Output::WorkerFailed { message }) => {
                        error!(error = %message, "a dataflow worker died or process 0 was lost; exiting");
                        std::process::exit(70);
                    }
                    Some(Output::LeaderStopped) => {
                        let _ = finished.send(true);
                        break;
                    }
                    // Done by `record`, or the leader's.
                    _ => {}
                }
            }
            Some(r) = tuples.recv() => {
                let mut all = vec![r];
                while let Ok(r) = tuples.try_recv() {
                    all.push(r);
                }
                dataflow.request(all);
            }
            _ = reap.tick() => {
                let expired = registry.expire_idle(TUPLE_LINGER);
                if !expired.is_empty() {
                    dataflow.request(expired);
                }
            }
            _ = tick.tick() => {
                let heartbeat = last_heartbeat.elapsed() >= HEARTBEAT_INTERVAL;
                if heartbeat {
                    last_heartbeat = std::time::Instant::now();
                }
                registry.announce_progress(heartbeat);
            }
            _ = stopped(&mut shutdown) => break,
        }
    }
    registry.close();
    let _ = tokio::task::spawn_blocking(move || dataflow.shutdown(DATAFLOW_STOP_PATIENCE)).await;
}

/// Does to `registry` what an output of the dataflow means for it, the same
/// at process 0 and at the others: a view's changes, its readiness (reset
/// if `reset_on_ready` says so), tuples applied, a registry operation of
/// process 0. Returns the outputs it leaves to the caller.
fn record(registry: &Registry, reset_on_ready: &mut HashSet<usize>, out: Output) -> Option<Output> {
    match out {
        Output::Batch { lsn, views } => {
            for v in views {
                registry.apply(v.view, Lsn(lsn), &v.rows, &v.errors);
            }
        }
        Output::ViewReady { view, lsn } => {
            let reset = reset_on_ready.remove(&view);
            registry.ready(view, Lsn(lsn), reset);
            release_freed_memory();
        }
        Output::TuplesApplied { ticket, lsn } => registry.tuples_applied(ticket, Lsn(lsn)),
        Output::Mirror(op) => registry.mirror(op, reset_on_ready),
        other => return Some(other),
    }
    None
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// The catalog views compile against: the followed tables and what each name
/// resolved to.
fn catalog_of(
    tables: &[Arc<TableInfo>],
    names: &[(Vec<String>, Result<Resolution, String>)],
) -> Catalog {
    let mut catalog = Catalog {
        tables: tables.to_vec(),
        ..Default::default()
    };
    for (name, r) in names {
        match r {
            Ok(Resolution::Table(id)) => catalog.resolved.push((name.clone(), *id)),
            Ok(Resolution::View(v)) => catalog.pg_views.push((name.clone(), v.clone())),
            Err(reason) => catalog.refused.push((name.clone(), reason.clone())),
        }
    }
    catalog
}

/// The time now as a timestamptz (microseconds since 2000-01-01 UTC).
fn clock_now() -> i64 {
    let since_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64;
    since_unix - crate::repr::datetime::UNIX_TO_PG_DAYS * crate::repr::datetime::MICROS_PER_DAY
}

/// Returns the allocator's freed pages to the operating system now. Loading
/// a snapshot or building a view allocates transient rows (the COPY's rows,
/// the updates handed to the workers, arrangement merges) that are freed
/// between the rows that stay; the allocator gives them back after its purge
/// delay, but only when some thread frees memory again, so a server gone
/// idle after a load would keep them. Called when a view becomes ready and
/// after a large ingest has gone through (at most once every 5 s), off the
/// controller's task: at once, and again once the workers' merges after the
/// load are done.
fn release_freed_memory() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let last = LAST.load(Ordering::Relaxed);
    if now < last + 5
        || LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    tokio::spawn(async {
        for wait in [0, 2] {
            tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
            let _ = tokio::task::spawn_blocking(crate::alloc::release_freed).await;
        }
    });
}
