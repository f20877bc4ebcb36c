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
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{OutputBuilder, OutputBuilderSession};
use timely::dataflow::operators::CapabilitySet;
use timely::dataflow::Scope;
use timely::scheduling::Activator;

use super::render::holds;
use super::TableTrace;
use crate::repr::{Datum, PackedRef, Row};
use crate::sql::expr::Expr;

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

/// How an import makes the rows its view reads from the table's packed
/// rows: the columns of a projection right above the table (all of them,
/// without one), kept only where the predicates of a filter right above
/// that hold. The columns a predicate reads are decoded first, and the
/// others only for the rows the filter keeps: a view that keeps 2% of a
/// table decodes the rest of 2% of its rows.
///
/// The predicates are evaluated in order, as a Filter's are where it is
/// rendered: the first that is not true drops the row, and the first that
/// fails makes the row an error instead.
pub struct Decoder {
    cols: Option<Vec<usize>>,
    filter: Vec<Expr>,
    /// The positions in the projected row the filter reads.
    read: Vec<usize>,
    /// The table columns up to the last the projection takes.
    width: usize,
    /// Where each of those columns starts in the row being decoded.
    offsets: Vec<usize>,
    /// The projected row of the last row dropped, for the next to reuse.
    scratch: Row,
}

impl Decoder {
    pub fn new(cols: Option<Vec<usize>>, filter: Vec<Expr>) -> Decoder {
        let mut read = Vec::new();
        for p in &filter {
            p.columns(&mut read);
        }
        read.sort_unstable();
        read.dedup();
        // A position past the projection reads NULL, as Expr::Column does.
        let arity = cols.as_ref().map_or(usize::MAX, Vec::len);
        read.retain(|&p| p < arity);
        let width = cols
            .as_ref()
            .and_then(|c| c.iter().max())
            .map_or(0, |&m| m + 1);
        Decoder {
            cols,
            filter,
            read,
            width,
            offsets: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Whether decoding a row can fail (there are predicates to evaluate).
    pub fn can_fail(&self) -> bool {
        !self.filter.is_empty()
    }

    /// The row the view reads of `row`, `None` if the filter drops it, or
    /// the error a predicate raised.
    pub fn decode(&mut self, row: PackedRef<'_>) -> Result<Option<Row>, String> {
        let Some(cols) = &self.cols else {
            let whole = row.unpack();
            return Ok(holds(&self.filter, &whole)?.then_some(whole));
        };
        if self.filter.is_empty() {
            return Ok(Some(row.columns(cols)));
        }
        row.offsets_into(self.width, &mut self.offsets);
        let offsets = &self.offsets;
        let value = |c: usize| offsets.get(c).map_or(Datum::Null, |&at| row.datum_at(at));
        let mut out = std::mem::take(&mut self.scratch);
        out.resize(cols.len(), Datum::Null);
        for &p in &self.read {
            out[p] = value(cols[p]);
        }
        let kept = holds(&self.filter, &out);
        if kept != Ok(true) {
            // Only the positions read are ever set: the next row sets them
            // all again.
            self.scratch = out;
            return kept.map(|_| None);
        }
        let mut read = self.read.iter().peekable();
        for (p, &c) in cols.iter().enumerate() {
            if read.next_if_eq(&&p).is_none() {
                out[p] = value(c);
            }
        }
        Ok(Some(out))
    }
}

/// What an import holds while it runs: a capability for its rows, and one
/// for its errors if decoding can fail. Its shutdown button drops them.
pub struct Held {
    rows: CapabilitySet<u64>,
    errors: Option<CapabilitySet<u64>>,
}

/// What [`import`] makes.
pub struct Import<'s> {
    pub rows: VecCollection<'s, u64, Row, isize>,
    /// The errors decoding raised, if it can fail.
    pub errors: Option<VecCollection<'s, u64, String, isize>>,
    /// Stops the import.
    pub button: ShutdownButton<Held>,
}

/// The rows of `trace`, each decoded by `decoder`, from `at.as_of` on (what
/// the trace held then arrives at that time).
pub fn import<'s>(
    scope: Scope<'s, u64>,
    trace: &mut TableTrace,
    name: &str,
    at: Imported<'_>,
    mut decoder: Decoder,
) -> Import<'s> {
    let Imported {
        as_of,
        advanced,
        clock,
        wake,
    } = at;
    let mut builder = OperatorBuilder::new(name.to_owned(), scope);
    let info = builder.operator_info();
    let (rows_output, rows_stream) = builder.new_output::<Records<Row>>();
    let mut rows_output = OutputBuilder::<_, CapacityContainerBuilder<_>>::from(rows_output);
    let (mut errors_output, errors_stream) = if decoder.can_fail() {
        let (output, stream) = builder.new_output::<Records<String>>();
        (
            Some(OutputBuilder::<_, CapacityContainerBuilder<_>>::from(
                output,
            )),
            Some(stream),
        )
    } else {
        (None, None)
    };
    let activator = || scope.activator_for(info.address.clone());
    let held: Rc<RefCell<Option<Held>>> = Rc::default();
    let button = ShutdownButton::new(held.clone(), activator());
    let queue = trace.new_listener(activator());
    wake.borrow_mut().push(activator());
    builder.build(move |mut capabilities| {
        let errors = errors_output
            .is_some()
            .then(|| CapabilitySet::from_elem(capabilities.pop().expect("one per output")));
        let rows = CapabilitySet::from_elem(capabilities.pop().expect("one per output"));
        *held.borrow_mut() = Some(Held { rows, errors });
        // The trace's upper as replayed so far.
        let mut upper: Option<u64> = Some(0);
        let mut run: Records<Row> = Vec::new();
        let mut failed: Records<String> = Vec::new();
        let mut stamps: Vec<(u64, isize)> = Vec::new();
        move |_frontiers| {
            let mut held = held.borrow_mut();
            let Some(caps) = held.as_mut() else {
                return;
            };
            let mut output = rows_output.activate();
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
                        let Some(low) = caps.rows.first().map(|c| *c.time()) else {
                            continue;
                        };
                        // Records go out in runs of one time (a transaction's
                        // batch has one; the first replay is all at as_of).
                        let mut at: Option<u64> = None;
                        let mut cursor = batch.cursor();
                        while let Some(row) = cursor.get_key(batch) {
                            while cursor.get_val(batch).is_some() {
                                let made = decoder.decode(row.borrowed());
                                if !matches!(made, Ok(None)) {
                                    cursor.map_times(batch, |t, r| {
                                        stamps.push(((*t).max(as_of), *r))
                                    });
                                }
                                for (t, _) in &mut stamps {
                                    debug_assert!(
                                        *t >= low,
                                        "an import passed {low} with data at {t} to come"
                                    );
                                    *t = (*t).max(low);
                                }
                                match made {
                                    Ok(None) => {}
                                    Ok(Some(d)) => {
                                        let mut d = Some(d);
                                        let last = stamps.len();
                                        for (n, (t, r)) in stamps.drain(..).enumerate() {
                                            if at != Some(t) {
                                                send(&mut output, &caps.rows, at, &mut run);
                                                at = Some(t);
                                            }
                                            let row =
                                                if n + 1 == last { d.take() } else { d.clone() };
                                            run.extend(row.map(|row| (row, t, r)));
                                        }
                                    }
                                    Err(e) => failed
                                        .extend(stamps.drain(..).map(|(t, r)| (e.clone(), t, r))),
                                }
                                cursor.step_val(batch);
                            }
                            cursor.step_key(batch);
                        }
                        send(&mut output, &caps.rows, at, &mut run);
                        if let (Some(out), Some(errors)) = (&mut errors_output, &caps.errors) {
                            let mut out = out.activate();
                            for (e, t, r) in failed.drain(..) {
                                out.session(&errors.delayed(&t)).give((e, t, r));
                            }
                        }
                        failed.clear();
                    }
                }
            }
            let to = upper.map(|f| caught_up(f, advanced.get(), clock.get()));
            for set in std::iter::once(&mut caps.rows).chain(caps.errors.as_mut()) {
                match to {
                    // The table's input is gone: nothing more will come.
                    None => set.downgrade(std::iter::empty::<u64>()),
                    Some(to) => {
                        if set.first().is_some_and(|c| to > *c.time()) {
                            set.downgrade([to]);
                        }
                    }
                }
            }
        }
    });
    Import {
        rows: rows_stream.as_collection(),
        errors: errors_stream.map(|s| s.as_collection()),
        button,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::render::{run_stages, Stage};
    use crate::repr::PackedRow;
    use crate::repr::Type;
    use crate::sql::expr::BinOp;

    fn binary(op: BinOp, left: Expr, right: Expr, ty: Type) -> Expr {
        Expr::Binary {
            op,
            left: Box::new(left),
            right: Box::new(right),
            ty,
        }
    }

    fn int(v: i64) -> Expr {
        Expr::Literal(Datum::Int(v))
    }

    /// `#c > v`
    fn above(c: usize, v: i64) -> Expr {
        binary(BinOp::Gt, Expr::Column(c), int(v), Type::Bool)
    }

    /// `10 / #c > 2`: division by zero where column `c` is 0.
    fn tenth_above_two(c: usize) -> Expr {
        let ratio = binary(BinOp::Div, int(10), Expr::Column(c), Type::Int4);
        binary(BinOp::Gt, ratio, int(2), Type::Bool)
    }

    #[test]
    fn decoding_keeps_and_fails_what_the_stages_do() {
        let mut rows: Vec<Row> = Vec::new();
        for a in [-1, 0, 2, 5] {
            for b in [Datum::Int(0), Datum::Int(3), Datum::Null] {
                for text in [Datum::Text("a longer text than inline".into()), Datum::Null] {
                    rows.push(vec![Datum::Int(a), b.clone(), text, Datum::Int(a * 7)]);
                }
            }
        }
        // A row shorter than the table (written before a column was added).
        rows.push(vec![Datum::Int(9)]);
        let projections: Vec<Option<Vec<usize>>> = vec![
            None,
            Some(vec![]),
            Some(vec![0]),
            Some(vec![1, 0]),
            Some(vec![3, 1, 1, 0]),
            Some(vec![2, 5, 0, 1]),
        ];
        let filters: Vec<Vec<Expr>> = vec![
            vec![],
            vec![above(0, 1)],
            vec![tenth_above_two(1)],
            vec![above(0, 1), tenth_above_two(1)],
            vec![tenth_above_two(1), above(0, 1)],
            vec![Expr::IsNull {
                expr: Box::new(Expr::Column(2)),
                negated: true,
            }],
            vec![above(3, 0), above(1, 4)],
        ];
        let (mut kept, mut dropped, mut failed) = (0, 0, 0);
        for cols in &projections {
            for filter in &filters {
                let mut stages = Vec::new();
                stages.extend(cols.clone().map(Stage::Columns));
                stages.push(Stage::Filter(filter.clone()));
                // One decoder for all rows: what a dropped row leaves
                // behind must not reach the next.
                let mut decoder = Decoder::new(cols.clone(), filter.clone());
                assert_eq!(decoder.can_fail(), !filter.is_empty());
                for row in &rows {
                    let packed = PackedRow::pack(row);
                    let expected = run_stages(&stages, row.clone());
                    let got = decoder.decode(packed.borrowed());
                    assert_eq!(
                        format!("{got:?}"),
                        format!("{expected:?}"),
                        "{row:?} through {cols:?} and {filter:?}"
                    );
                    match expected {
                        Ok(Some(_)) => kept += 1,
                        Ok(None) => dropped += 1,
                        Err(_) => failed += 1,
                    }
                }
            }
        }
        assert!(
            kept > 0 && dropped > 0 && failed > 0,
            "{kept} {dropped} {failed}"
        );
    }
}
