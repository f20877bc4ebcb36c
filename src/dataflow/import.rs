//! A view's import of a table: the rows of the table's shared arrangement,
//! decoded as the view reads them, at a frontier that moves only when a
//! transaction changes a table the view reads.
//!
//! Timely's progress tracking visits every operator whose input frontier
//! moves. If every table's input advanced at every transaction, every view's
//! dataflow would move at every transaction, whatever it changed: with
//! TPC-H's 22 views that is ~2 700 operators per worker per transaction.
//!
//! Instead a transaction advances only the inputs of the tables it changes
//! (`Worker::advance_tables`), and each view has a *clock*: the time the
//! worker last moved it to, which it does only when a transaction changes a
//! table the view reads. An import's frontier is its table's, or the view's
//! clock once the table has passed the time its input was last advanced to
//! (all that entered the table is through). So a view reading orders and
//! nation moves when an order arrives (nation's import follows the clock,
//! since nation has nothing pending), and does not move at all when a part
//! changes.
//!
//! A view that did not move is still complete: when its output frontier has
//! reached its clock, nothing has entered its tables since, so its contents
//! are final up to the worker's current time (`Worker::frontier`).
//!
//! One operator does what differential's `import_frontier_core` and
//! `as_collection` did as two: it replays the trace's batches, advances
//! their times to the view's first time (`as_of`) and decodes each row.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use differential_dataflow::collection::{AsCollection, VecCollection};
use differential_dataflow::operators::arrange::{ShutdownButton, TraceReplayInstruction};
use differential_dataflow::trace::cursor::Cursor;
use differential_dataflow::trace::Navigable;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::dataflow::operators::CapabilitySet;
use timely::dataflow::Scope;
use timely::scheduling::Activator;

use super::TableTrace;
use crate::repr::PackedRow;

/// A time shared by the worker and the imports that read it: a table's
/// `advanced` (its input has been advanced to it) or a view's clock.
pub type SharedTime = Rc<Cell<u64>>;

/// Where a table or a view stands: `frontier` as it is, or `later` once
/// the frontier has reached `moved`, the last time data entered it (nothing
/// has entered since, so everything up to `later` is complete).
pub fn caught_up(frontier: u64, moved: u64, later: u64) -> u64 {
    if frontier >= moved {
        frontier.max(later)
    } else {
        frontier
    }
}

/// Records as an import sends them: (row, time, diff).
type Records<D> = Vec<(D, u64, isize)>;

/// Sends `run`, records all at time `at` (if any), and empties it.
fn send<D: differential_dataflow::Data>(
    output: &mut OutputBuilderSession<'_, u64, CapacityContainerBuilder<Records<D>>>,
    caps: &CapabilitySet<u64>,
    at: Option<u64>,
    run: &mut Records<D>,
) {
    if let Some(a) = at {
        output.session(&caps.delayed(&a)).give_container(run);
        run.clear();
    }
}

/// What a view's import needs of its table and its view.
pub struct Imported<'a> {
    pub as_of: u64,
    /// The table's input has been advanced to this time.
    pub advanced: SharedTime,
    /// The view's clock.
    pub clock: SharedTime,
    /// Collects the import's activator, for the worker to call when it
    /// moves the clock.
    pub wake: &'a RefCell<Vec<Activator>>,
}

/// The rows of `trace`, each decoded by `decode`, from `at.as_of` on (what
/// the trace held then arrives at that time), with a button that stops it.
pub fn import<'s, D, L>(
    scope: Scope<'s, u64>,
    trace: &mut TableTrace,
    name: &str,
    at: Imported<'_>,
    mut decode: L,
) -> (
    VecCollection<'s, u64, D, isize>,
    ShutdownButton<CapabilitySet<u64>>,
)
where
    D: differential_dataflow::Data,
    L: FnMut(&PackedRow) -> D + 'static,
{
    let Imported {
        as_of,
        advanced,
        clock,
        wake,
    } = at;
    let mut button = None;
    let stream = source(scope, name, |capability, info| {
        let held = Rc::new(RefCell::new(Some(CapabilitySet::from_elem(capability))));
        button = Some(ShutdownButton::new(
            held.clone(),
            scope.activator_for(info.address.clone()),
        ));
        let queue = trace.new_listener(scope.activator_for(info.address.clone()));
        wake.borrow_mut().push(scope.activator_for(info.address));
        // The trace's upper as replayed so far.
        let mut upper: Option<u64> = Some(0);
        let mut run: Records<D> = Vec::new();
        let mut stamps: Vec<(u64, isize)> = Vec::new();
        move |output| {
            let mut held = held.borrow_mut();
            let Some(caps) = held.as_mut() else {
                return;
            };
            for instruction in queue.1.borrow_mut().drain(..) {
                match instruction {
                    TraceReplayInstruction::Frontier(f) => upper = f.first().copied(),
                    TraceReplayInstruction::Span(span, stamp) => {
                        let Some(batch) = span.inner.as_ref() else {
                            continue;
                        };
                        if stamp.is_empty() {
                            continue;
                        }
                        let Some(low) = caps.first().map(|c| *c.time()) else {
                            continue;
                        };
                        // Records go out in runs of one time (a transaction's
                        // batch has one; the first replay is all at as_of).
                        let mut at: Option<u64> = None;
                        let mut cursor = batch.cursor();
                        while let Some(row) = cursor.get_key(batch) {
                            while cursor.get_val(batch).is_some() {
                                cursor.map_times(batch, |t, r| stamps.push(((*t).max(as_of), *r)));
                                let mut d = Some(decode(row));
                                let last = stamps.len();
                                for (n, (t, r)) in stamps.drain(..).enumerate() {
                                    debug_assert!(
                                        t >= low,
                                        "an import passed {low} with data at {t} to come"
                                    );
                                    let t = t.max(low);
                                    if at != Some(t) {
                                        send(output, caps, at, &mut run);
                                        at = Some(t);
                                    }
                                    let row = if n + 1 == last { d.take() } else { d.clone() };
                                    run.extend(row.map(|row| (row, t, r)));
                                }
                                cursor.step_val(batch);
                            }
                            cursor.step_key(batch);
                        }
                        send(output, caps, at, &mut run);
                    }
                }
            }
            match upper {
                // The table's input is gone: nothing more will come.
                None => caps.downgrade(std::iter::empty::<u64>()),
                Some(f) => {
                    let to = caught_up(f, advanced.get(), clock.get());
                    if caps.first().is_some_and(|c| to > *c.time()) {
                        caps.downgrade([to]);
                    }
                }
            }
        }
    });
    let button = button.expect("the source's constructor ran");
    (stream.as_collection(), button)
}
