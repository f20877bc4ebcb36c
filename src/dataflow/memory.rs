//! What each table's and each view's arrangements hold, from differential's
//! `differential/arrange` log: every spine reports the batches it gains
//! (records in), the merges it completes (records compacted away) and the
//! batches it drops, and every batcher the updates it buffers.
//!
//! Operators are told apart by dataflow: the operator identifiers a worker
//! hands out while it builds a dataflow form one range, recorded with the
//! dataflow's owner (a table or a view). Each worker folds its events into
//! one shared total per owner, which `/metrics` and `GET /views` read.
//!
//! Bytes are not in that log: each worker keeps a read handle on every
//! arrangement it builds ([`track`]), one that holds back no compaction,
//! and about once a second adds up the contents of the batches each holds
//! ([`Measure`]). A batch never changes once built, so its size is worked
//! out once, when it first shows up.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex};

use differential_dataflow::logging::{DifferentialEvent, DifferentialEventBuilder};
use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::trace::implementations::ord_neu::{OrdKeyBatch, OrdValBatch};
use differential_dataflow::trace::implementations::Vector;
use differential_dataflow::trace::TraceReader;
use serde::Serialize;

use super::flat::{offsets_bytes, Layout};
use crate::repr::PackedRow;

/// Whose arrangements: a base table (or a view's parameter table), or a view.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Owner {
    Table(usize),
    View(usize),
}

/// What an owner's arrangements hold, summed over workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Updates held in arrangement batches (a row at a time, with its
    /// count), and the entries operators keep outside arrangements (a
    /// group, or a distinct value of its `min`/`max`).
    pub records: i64,
    /// Batches those records are in (merging brings them down).
    pub batches: i64,
    /// Updates received but not yet formed into batches.
    pub buffered_records: i64,
    /// Bytes allocated for those buffered updates.
    pub buffered_bytes: i64,
    /// Bytes of the batches' contents and of operators' own state (as of
    /// the last measurement, at most a second old): what the view's
    /// arrangements and operators cost in memory.
    pub bytes: i64,
}

impl Usage {
    fn add(&mut self, d: &Usage) {
        self.records += d.records;
        self.batches += d.batches;
        self.buffered_records += d.buffered_records;
        self.buffered_bytes += d.buffered_bytes;
        self.bytes += d.bytes;
    }

    fn is_zero(&self) -> bool {
        *self == Usage::default()
    }
}

/// The totals of one running dataflow (all its workers).
#[derive(Default)]
pub struct Sizes {
    usage: Mutex<HashMap<Owner, Usage>>,
    /// Each worker's last measurement, by owner.
    measured: Mutex<HashMap<usize, HashMap<Owner, Measured>>>,
}

/// What a [`Measure`] finds: bytes, and the entries of state kept outside
/// arrangements (an arrangement's records come from differential's log).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Measured {
    pub bytes: usize,
    pub records: usize,
}

impl std::ops::Add for Measured {
    type Output = Measured;
    fn add(self, other: Measured) -> Measured {
        Measured {
            bytes: self.bytes + other.bytes,
            records: self.records + other.records,
        }
    }
}

impl std::iter::Sum for Measured {
    fn sum<I: Iterator<Item = Measured>>(iter: I) -> Measured {
        iter.fold(Measured::default(), |a, b| a + b)
    }
}

impl Sizes {
    pub fn of(&self, owner: Owner) -> Usage {
        let mut usage = self.lock().get(&owner).copied().unwrap_or_default();
        let measured = self.measured_of(|o| o == owner);
        usage.bytes = measured.bytes;
        usage.records += measured.records;
        usage
    }

    /// Every table's arrangements together (views share them).
    pub fn tables(&self) -> Usage {
        let mut total = Usage::default();
        for (o, u) in self.lock().iter() {
            if matches!(o, Owner::Table(_)) {
                total.add(u);
            }
        }
        let measured = self.measured_of(|o| matches!(o, Owner::Table(_)));
        total.bytes = measured.bytes;
        total.records += measured.records;
        total
    }

    /// Replaces what `worker` last measured.
    pub fn set_measured(&self, worker: usize, measured: HashMap<Owner, Measured>) {
        let mut all = self.measured.lock().unwrap_or_else(|p| p.into_inner());
        all.insert(worker, measured);
    }

    /// Bytes and records measured for the owners `wanted`, over workers.
    fn measured_of(&self, mut wanted: impl FnMut(Owner) -> bool) -> Usage {
        let all = self.measured.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = Measured::default();
        for measured in all.values() {
            for (o, m) in measured {
                if wanted(*o) {
                    total = total + *m;
                }
            }
        }
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        Usage {
            bytes: count(total.bytes),
            records: count(total.records),
            ..Usage::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Owner, Usage>> {
        self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, deltas: HashMap<Owner, Usage>) {
        let mut usage = self.lock();
        for (owner, d) in deltas {
            let u = usage.entry(owner).or_default();
            u.add(&d);
            if u.is_zero() {
                usage.remove(&owner);
            }
        }
    }
}

/// One worker's record of which operator identifiers belong to whom.
#[derive(Clone, Default)]
pub struct Owners {
    /// First identifier of a dataflow → (one past its last, its owner).
    ranges: Rc<RefCell<BTreeMap<usize, (usize, Owner)>>>,
}

impl Owners {
    /// The operators with identifiers in `first..end` belong to `owner`.
    pub fn record(&self, first: usize, end: usize, owner: Owner) {
        if end > first {
            self.ranges.borrow_mut().insert(first, (end, owner));
        }
    }

    fn owner_of(&self, operator: usize) -> Option<Owner> {
        let ranges = self.ranges.borrow();
        let (_, &(end, owner)) = ranges.range(..=operator).next_back()?;
        (operator < end).then_some(owner)
    }
}

/// Registers this worker's logger of arrangement sizes into `sizes`. It must
/// be called before any dataflow is built: a spine finds its logger when it
/// is created.
pub fn log_into(worker: &mut timely::worker::Worker, sizes: Arc<Sizes>, owners: Owners) {
    let Some(mut register) = worker.log_register() else {
        return;
    };
    register.insert::<DifferentialEventBuilder, _>(
        "differential/arrange",
        move |_time, events: &mut Option<Vec<(std::time::Duration, DifferentialEvent)>>| {
            let Some(events) = events.as_ref() else {
                return;
            };
            let mut deltas: HashMap<Owner, Usage> = HashMap::new();
            for (_, event) in events {
                let (operator, d) = match event {
                    DifferentialEvent::Batch(e) => (
                        e.operator,
                        Usage {
                            records: e.length as i64,
                            batches: 1,
                            ..Usage::default()
                        },
                    ),
                    DifferentialEvent::Merge(e) => match e.complete {
                        Some(merged) => (
                            e.operator,
                            Usage {
                                records: merged as i64 - e.length1 as i64 - e.length2 as i64,
                                batches: -1,
                                ..Usage::default()
                            },
                        ),
                        None => continue,
                    },
                    DifferentialEvent::Drop(e) => (
                        e.operator,
                        Usage {
                            records: -(e.length as i64),
                            batches: -1,
                            ..Usage::default()
                        },
                    ),
                    DifferentialEvent::Batcher(e) => (
                        e.operator,
                        Usage {
                            buffered_records: e.records_diff as i64,
                            buffered_bytes: e.capacity_diff as i64,
                            ..Usage::default()
                        },
                    ),
                    DifferentialEvent::MergeShortfall(_) | DifferentialEvent::TraceShare(_) => {
                        continue
                    }
                };
                if let Some(owner) = owners.owner_of(operator) {
                    deltas.entry(owner).or_default().add(&d);
                }
            }
            if !deltas.is_empty() {
                sizes.apply(deltas);
            }
        },
    );
}

/// Bytes a value owns on the heap, besides its own size (which its
/// container counts).
pub trait HeapSize {
    fn heap_size(&self) -> usize;
}

/// What an `Arc`'s allocation adds to its contents: the two counts.
const ARC_HEADER: usize = 2 * std::mem::size_of::<usize>();

impl HeapSize for PackedRow {
    fn heap_size(&self) -> usize {
        match self.heap_bytes() {
            0 => 0,
            n => n + ARC_HEADER,
        }
    }
}

impl HeapSize for isize {
    fn heap_size(&self) -> usize {
        0
    }
}

/// Bytes a vector's elements take, with what they hold beyond it.
fn vec_bytes<E: HeapSize>(v: &[E]) -> usize {
    std::mem::size_of_val(v) + v.iter().map(HeapSize::heap_size).sum::<usize>()
}

/// A batch that can say how many bytes its contents take (its buffers may
/// have room for more).
pub trait BatchBytes {
    fn bytes(&self) -> usize;

    /// Of [`BatchBytes::bytes`], what the keys hold on the heap: for a
    /// table, the rows' own bytes, which every view group's copy of the
    /// table shares with the source's state.
    fn keys_heap_bytes(&self) -> usize {
        0
    }
}

impl<T, R> BatchBytes for OrdValBatch<Layout<T, R>>
where
    T: differential_dataflow::lattice::Lattice + timely::progress::Timestamp,
    R: Ord + Clone + differential_dataflow::difference::Semigroup + HeapSize + 'static,
{
    fn bytes(&self) -> usize {
        let s = &self.storage;
        s.keys.heap_size()
            + offsets_bytes(&s.vals.offs)
            + s.vals.vals.heap_size()
            + offsets_bytes(&s.upds.offs)
            + std::mem::size_of_val(s.upds.times.as_slice())
            + vec_bytes(&s.upds.diffs)
    }
}

impl<K, T, R> BatchBytes for OrdKeyBatch<Vector<((K, ()), T, R)>>
where
    K: Ord + Clone + HeapSize + 'static,
    T: differential_dataflow::lattice::Lattice + timely::progress::Timestamp,
    R: Ord + differential_dataflow::difference::Semigroup + HeapSize + 'static,
{
    fn bytes(&self) -> usize {
        let s = &self.storage;
        vec_bytes(&s.keys)
            + offsets_bytes(&s.upds.offs)
            + std::mem::size_of_val(s.upds.times.as_slice())
            + vec_bytes(&s.upds.diffs)
    }

    fn keys_heap_bytes(&self) -> usize {
        self.storage.keys.iter().map(HeapSize::heap_size).sum()
    }
}

/// Adds up the bytes of one arrangement's batches (it holds a read handle
/// on the trace that holds back no compaction; dropping it lets the trace
/// go), or reads what an operator keeps outside arrangements.
pub type Measure = Box<dyn FnMut() -> Measured>;

/// A [`Measure`] of `trace`.
pub fn measure<Tr, B>(trace: TraceAgent<Tr>) -> Measure
where
    Tr: TraceReader<Batch = Rc<B>> + 'static,
    B: BatchBytes + 'static,
{
    measure_by(trace, B::bytes)
}

/// A [`Measure`] of `trace` without what its keys hold on the heap: a
/// table's copy in a view group after the first, whose rows are counted
/// once, with the first group's.
pub fn measure_handles<Tr, B>(trace: TraceAgent<Tr>) -> Measure
where
    Tr: TraceReader<Batch = Rc<B>> + 'static,
    B: BatchBytes + 'static,
{
    measure_by(trace, |b: &B| b.bytes() - b.keys_heap_bytes())
}

fn measure_by<Tr, B>(mut trace: TraceAgent<Tr>, size: fn(&B) -> usize) -> Measure
where
    Tr: TraceReader<Batch = Rc<B>> + 'static,
    B: BatchBytes + 'static,
{
    use timely::progress::frontier::AntichainRef;
    trace.set_logical_compaction(AntichainRef::new(&[]));
    trace.set_physical_compaction(AntichainRef::new(&[]));
    // Each batch's size by its address, with a weak handle that keeps the
    // address from being reused by a later batch while it is remembered.
    let mut known: HashMap<usize, (Weak<B>, usize)> = HashMap::new();
    Box::new(move || {
        let mut seen = HashMap::with_capacity(known.len());
        let mut total = 0;
        trace.map_spans(|span| {
            if let Some(batch) = &span.inner {
                let at = Rc::as_ptr(batch) as usize;
                let bytes = match known.remove(&at) {
                    Some((weak, bytes)) => (weak, bytes),
                    None => (Rc::downgrade(batch), size(batch)),
                };
                total += bytes.1;
                seen.insert(at, bytes);
            }
        });
        known = seen;
        Measured {
            bytes: total,
            records: 0,
        }
    })
}

thread_local! {
    /// The measures of the arrangements built since [`collect`] began on
    /// this thread (none outside it).
    static COLLECTING: RefCell<Option<Vec<Measure>>> = const { RefCell::new(None) };
}

/// Runs `build` and returns with its result a [`Measure`] of every
/// arrangement [`track`]ed while it ran (on this thread).
pub fn collect<R>(build: impl FnOnce() -> R) -> (R, Vec<Measure>) {
    let outer = COLLECTING.with(|c| c.borrow_mut().replace(Vec::new()));
    let built = build();
    let measures = COLLECTING.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    (built, measures.unwrap_or_default())
}

/// Measures `trace` for the dataflow being built, if its builder
/// [`collect`]s (a clone of the handle is kept).
pub fn track<Tr, B>(trace: &TraceAgent<Tr>)
where
    Tr: TraceReader<Batch = Rc<B>> + 'static,
    B: BatchBytes + 'static,
{
    COLLECTING.with(|c| {
        if let Some(measures) = c.borrow_mut().as_mut() {
            measures.push(measure(trace.clone()));
        }
    });
}

/// Reports `state` (kept up to date by an operator that holds state
/// outside arrangements) with the dataflow being built, if its builder
/// [`collect`]s; once the operator is gone it counts nothing.
pub fn track_state(state: &Rc<std::cell::Cell<Measured>>) {
    let weak = Rc::downgrade(state);
    COLLECTING.with(|c| {
        if let Some(measures) = c.borrow_mut().as_mut() {
            measures.push(Box::new(move || {
                weak.upgrade().map(|s| s.get()).unwrap_or_default()
            }));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repr::Datum;

    #[test]
    fn operators_belong_to_the_dataflow_built_around_them() {
        let owners = Owners::default();
        owners.record(0, 5, Owner::Table(1));
        owners.record(5, 9, Owner::View(3));
        owners.record(12, 12, Owner::View(4));
        assert_eq!(owners.owner_of(0), Some(Owner::Table(1)));
        assert_eq!(owners.owner_of(4), Some(Owner::Table(1)));
        assert_eq!(owners.owner_of(5), Some(Owner::View(3)));
        assert_eq!(owners.owner_of(9), None);
        assert_eq!(owners.owner_of(12), None);
    }

    #[test]
    fn deltas_sum_and_empty_owners_go() {
        let sizes = Sizes::default();
        let d = |records, batches| Usage {
            records,
            batches,
            ..Usage::default()
        };
        sizes.apply(HashMap::from([
            (Owner::View(1), d(10, 1)),
            (Owner::Table(2), d(4, 1)),
        ]));
        sizes.apply(HashMap::from([
            (Owner::View(1), d(-3, -1)),
            (Owner::Table(7), d(1, 1)),
        ]));
        assert_eq!(sizes.of(Owner::View(1)), d(7, 0));
        assert_eq!(sizes.tables(), d(5, 2));
        sizes.apply(HashMap::from([(Owner::View(1), d(-7, 0))]));
        assert!(sizes.lock().get(&Owner::View(1)).is_none());
    }

    /// A flat arrangement's batches hold at least their rows' bytes (and
    /// not wildly more); more rows make more bytes; a measurement repeats
    /// while nothing changes; building outside `collect` tracks nothing.
    #[test]
    fn a_flat_arrangement_measures_its_rows() {
        use differential_dataflow::input::Input;
        use timely::dataflow::operators::probe::Handle;
        use timely::dataflow::operators::Probe;

        let row = |i: i64| {
            PackedRow::pack(&[
                Datum::Int(i),
                Datum::Text(format!("customer number {i:08} of many")),
            ])
        };
        let row_bytes: usize = (0..2000).map(|i| row(i).as_bytes().len()).sum();
        timely::execute_directly(move |worker| {
            let probe = Handle::new();
            let ((mut input, _trace), mut measures) = collect(|| {
                worker.dataflow::<u64, _, _>(|scope| {
                    let (input, rows) = scope.new_collection::<(PackedRow, PackedRow), isize>();
                    let arranged = super::super::render::arrange_flat(rows, "Test");
                    arranged.stream.clone().probe_with(&probe);
                    (input, arranged.trace)
                })
            });
            assert_eq!(measures.len(), 1, "the one arrangement is tracked");
            let mut step_to = |input: &mut differential_dataflow::input::InputSession<_, _, _>,
                               t: u64| {
                input.advance_to(t);
                input.flush();
                while probe.less_than(&t) {
                    worker.step();
                }
            };
            for i in 0..1000 {
                input.insert((row(i), PackedRow::pack(&[])));
            }
            step_to(&mut input, 1);
            let first = measures[0]().bytes;
            assert!(
                first >= row_bytes / 2,
                "{first} bytes for {} of rows",
                row_bytes / 2
            );
            assert!(first < row_bytes * 4, "{first} bytes");
            assert_eq!(measures[0]().bytes, first, "nothing changed");
            for i in 1000..2000 {
                input.insert((row(i), PackedRow::pack(&[])));
            }
            step_to(&mut input, 2);
            let second = measures[0]().bytes;
            assert!(
                second >= row_bytes,
                "{second} bytes for {row_bytes} of rows"
            );
            assert!(second > first);

            let (_, none) = collect(|| ());
            assert!(none.is_empty());
            assert!(
                COLLECTING.with(|c| c.borrow().is_none()),
                "collect puts back what was there before"
            );
            let outside = worker.dataflow::<u64, _, _>(|scope| {
                let (_input, rows) = scope.new_collection::<(PackedRow, PackedRow), isize>();
                super::super::render::arrange_flat(rows, "Untracked").trace
            });
            drop(outside);
            assert!(
                COLLECTING.with(|c| c.borrow().is_none()),
                "an arrangement built outside collect is not tracked"
            );
        });
    }

    /// A table's copy in a second view group counts what it adds: all but
    /// the rows' own bytes, which the first group's copy counts.
    #[test]
    fn a_second_copy_of_a_table_counts_its_handles_not_the_rows() {
        use differential_dataflow::input::Input;
        use timely::dataflow::operators::probe::Handle;
        use timely::dataflow::operators::Probe;

        let rows: Vec<PackedRow> = (0..1000)
            .map(|i| {
                PackedRow::pack(&[
                    Datum::Int(i),
                    Datum::Text(format!("customer number {i:08} of many")),
                ])
            })
            .collect();
        let heap: usize = rows.iter().map(HeapSize::heap_size).sum();
        assert!(heap > 0, "rows this long live on the heap");
        timely::execute_directly(move |worker| {
            let probe = Handle::new();
            let (mut input, trace) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, rows) = scope.new_collection::<PackedRow, isize>();
                let arranged = rows.arrange_by_self();
                arranged.stream.clone().probe_with(&probe);
                (input, arranged.trace)
            });
            for row in &rows {
                input.insert(row.clone());
            }
            input.advance_to(1);
            input.flush();
            while probe.less_than(&1) {
                worker.step();
            }
            let whole = measure(trace.clone())().bytes;
            let handles = measure_handles(trace)().bytes;
            assert_eq!(whole - handles, heap);
            assert!(handles >= rows.len() * std::mem::size_of::<PackedRow>());
        });
    }
}
