//! Plan → dataflow. One file per plan operator, named as in `sql/plan.rs`.
//!
//! Each view is its own timely dataflow, so it can be added, replaced and
//! dropped while the others run. Base tables are arranged once, in dataflows of
//! their own (`dataflow/mod.rs`), and every view imports the arrangements of
//! the tables it reads. Inside a view, identical subplans are rendered once and
//! a join input is arranged once per (subplan, key).
//!
//! A step's CPU is mostly per operator (timely schedules each and tracks its
//! progress), so Filters and Projects are not operators of their own: a
//! chain of them is a list of [`Stage`]s that the operator consuming its rows
//! applies first ([`Staged`]) — the keying before a join arrangement, a
//! reduce's evaluation, a FlatMap — and operators that evaluate have two
//! outputs, rows and errors ([`eval_split`]), or only rows where nothing
//! they evaluate can fail ([`eval_total`], [`Expr::cannot_fail`]: keying a
//! join by columns, a projection of columns).
//!
//! Evaluation errors (overflow, division by zero, a scalar subquery with two
//! rows) are data, as in Postgres they are a property of the current rows: an
//! operator sends the error of a row to its error collection instead of an
//! output row, and the retraction of that row retracts the error. A view is in
//! error exactly while one of its operators holds an error. A view's error
//! collections are kept apart ([`ErrList`]) and each is an input of the
//! operator that delivers the view's output: timely tracks progress through
//! every operator and channel a transaction's frontier passes, and the
//! error outputs and the operators concatenating errors at each join were a
//! fifth of a join-heavy view's operators and channels.

mod accumulate;
mod distinct;
mod eager;
mod extremes;
mod get;
mod join;
mod project;
mod recursive;
mod reduce;
mod setop;
mod temporal;
mod topk;
mod window;

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::progress::operate::FrontierInterest;

use super::flat::{FlatBatcher, FlatBuilder, FlatSpine};
use super::memory::{self, HeapSize};
use crate::repr::{Datum, PackedRef, PackedRow, Row};
use crate::sql::expr::Expr;
use crate::sql::Plan;

/// The timestamps views are computed at: commit LSNs, and inside a recursive
/// query's loop, (LSN, iteration) pairs.
pub trait Time:
    timely::progress::Timestamp + differential_dataflow::lattice::Lattice + timely::ExchangeData
{
    /// Whether any two times are ordered (commit LSNs are; a loop's
    /// (LSN, iteration) pairs are not): operators that settle a time once
    /// the frontier passes it, in order, need this.
    const TOTALLY_ORDERED: bool;

    /// Renders a WITH RECURSIVE fixed point in a loop scope nested in this one.
    fn recursive<'s>(
        id: usize,
        base: &Plan,
        step: &Plan,
        distinct: bool,
        ctx: &mut Context<'s, Self>,
    ) -> (Coll<'s, Self>, Errs<'s, Self>);

    /// Each key with the sum of its differences (while not zero). Over
    /// commit LSNs, which are totally ordered, this is `count_total`: one
    /// arrangement of the input and no arranged output.
    fn accumulate<'s, K: GroupKey, R: Summable>(
        input: VecCollection<'s, Self, K, R>,
    ) -> VecCollection<'s, Self, (K, R), isize>;
}

/// What [`Time::accumulate`] groups by and what it sums.
pub trait GroupKey:
    differential_dataflow::ExchangeData + differential_dataflow::Hashable + HeapSize
{
}
impl<K: differential_dataflow::ExchangeData + differential_dataflow::Hashable + HeapSize> GroupKey
    for K
{
}
pub trait Summable:
    differential_dataflow::ExchangeData + differential_dataflow::difference::Semigroup + HeapSize
{
}
impl<
        R: differential_dataflow::ExchangeData
            + differential_dataflow::difference::Semigroup
            + HeapSize,
    > Summable for R
{
}

impl Time for u64 {
    const TOTALLY_ORDERED: bool = true;

    fn accumulate<'s, K: GroupKey, R: Summable>(
        input: VecCollection<'s, Self, K, R>,
    ) -> VecCollection<'s, Self, (K, R), isize> {
        use differential_dataflow::operators::CountTotal;
        let arranged = input.arrange_by_self_named("Arrange: CountTotal");
        memory::track(&arranged.trace);
        arranged.count_total_core()
    }

    fn recursive<'s>(
        id: usize,
        base: &Plan,
        step: &Plan,
        distinct: bool,
        ctx: &mut Context<'s, Self>,
    ) -> (Coll<'s, Self>, Errs<'s, Self>) {
        recursive::render(id, base, step, distinct, ctx)
    }
}

/// Inside a recursive query's loop. The binder refuses a WITH RECURSIVE nested
/// in the recursive term, so this is not reached; it fails the view if it is.
impl Time for timely::order::Product<u64, u64> {
    const TOTALLY_ORDERED: bool = false;

    fn accumulate<'s, K: GroupKey, R: Summable>(
        input: VecCollection<'s, Self, K, R>,
    ) -> VecCollection<'s, Self, (K, R), isize> {
        input.count()
    }

    fn recursive<'s>(
        _id: usize,
        _base: &Plan,
        _step: &Plan,
        _distinct: bool,
        ctx: &mut Context<'s, Self>,
    ) -> (Coll<'s, Self>, Errs<'s, Self>) {
        let unit = ctx.unit();
        (
            unit.clone().flat_map(|()| None),
            unit.map(|()| "WITH RECURSIVE nested in a recursive term".to_string()),
        )
    }
}

pub type Coll<'s, T> = VecCollection<'s, T, Row, isize>;
/// Error messages, one per failing row (or group).
pub type Errs<'s, T> = VecCollection<'s, T, String, isize>;

/// The error collections of a rendered part. They stay apart until the
/// view's output takes each in as an input of its own (`dataflow::deliver`):
/// concatenating them at every join would add an operator per join, and a
/// transaction's progress is tracked through every operator it passes.
#[derive(Clone)]
pub struct ErrList<'s, T: Time>(Vec<Errs<'s, T>>);

impl<'s, T: Time> ErrList<'s, T> {
    /// No errors: the part cannot fail.
    pub fn none() -> Self {
        ErrList(Vec::new())
    }

    pub fn of(errs: Errs<'s, T>) -> Self {
        ErrList(vec![errs])
    }

    /// These errors and `other`'s.
    pub fn and(mut self, other: ErrList<'s, T>) -> Self {
        self.0.extend(other.0);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<Errs<'s, T>> {
        self.0
    }

    /// All of them as one collection (one operator if there are several);
    /// `None` if there are none.
    pub fn concatenated(self) -> Option<Errs<'s, T>> {
        match self.0.len() {
            0 => None,
            1 => self.0.into_iter().next(),
            _ => {
                let scope = self.0[0].inner.scope();
                Some(differential_dataflow::collection::concatenate(
                    scope, self.0,
                ))
            }
        }
    }
}
/// A join input arranged by its key, keys and rows packed, each batch's
/// rows in one flat buffer.
pub type Arr<'s, T> = Arranged<'s, TraceAgent<FlatSpine<T>>>;
/// Rows packed and paired: a key and a row (or an empty row).
pub type Packed<'s, T> = VecCollection<'s, T, (PackedRow, PackedRow), isize>;

/// `keyed` arranged by its key, flat.
pub fn arrange_flat<'s, T: Time>(keyed: Packed<'s, T>, name: &str) -> Arr<'s, T> {
    let arranged = keyed.arrange_named::<FlatBatcher<T>, _>(name, FlatBatcher::new);
    memory::track(&arranged.trace);
    arranged
}

/// A reduce from a flat arrangement to a flat arrangement: `logic` sees a
/// key's rows (with their counts, none zero) and says the rows the key
/// should have now (with their counts); the output is arranged already, so a
/// join or another reduce reads it as it is.
pub fn reduce_flat<'s, T: Time, L>(arranged: Arr<'s, T>, name: &str, mut logic: L) -> Arr<'s, T>
where
    L: FnMut(PackedRef<'_>, &[(PackedRef<'_>, isize)], &mut Vec<(PackedRow, isize)>) + 'static,
{
    let reduced = arranged.reduce_abelian::<_, FlatBuilder<T>, FlatSpine<T>, _, _>(
        name,
        move |key, rows: &[(PackedRef<'_>, isize)], out: &mut Vec<(PackedRow, isize)>| {
            logic(key, rows, out)
        },
        |built: &mut Vec<_>, key: PackedRef<'_>, updates: &mut Vec<(PackedRow, T, isize)>| {
            built.clear();
            built.extend(updates.drain(..).map(|(v, t, n)| ((key.to_row(), v), t, n)));
        },
    );
    memory::track(&reduced.trace);
    reduced
}

/// Each key of `arranged` once (with an empty row) while its rows count
/// more than zero: the arrangement a semi-join or a DISTINCT reads.
pub fn distinct_flat<'s, T: Time>(arranged: Arr<'s, T>) -> Arr<'s, T> {
    let empty = PackedRow::pack(&[]);
    reduce_flat(arranged, "Distinct", move |_key, rows, out| {
        if rows.iter().map(|(_, n)| n).sum::<isize>() > 0 {
            out.push((empty.clone(), 1));
        }
    })
}

/// A row packed for DISTINCT and the set operations, which compare rows as
/// Postgres's `=` does (`-0` is `0`, `1.5` is `1.50`): the key is the row in
/// key form, and the value is the row itself where that differs (else
/// empty: the key shows as it is).
pub fn by_value(row: &[Datum]) -> (PackedRow, PackedRow) {
    let key = PackedRow::pack(&crate::repr::key_form_of(row));
    let own = PackedRow::pack(row);
    if own == key {
        (key, PackedRow::pack(&[]))
    } else {
        (key, own)
    }
}

/// The row [`by_value`] packed as `key` and `value`.
pub fn shown(key: PackedRef<'_>, value: PackedRef<'_>) -> Row {
    if value.as_bytes().is_empty() {
        key.unpack()
    } else {
        value.unpack()
    }
}

/// Splits evaluated rows (or keyed rows) into the good ones and the errors,
/// in one operator with two outputs.
pub fn split<'s, T: Time, D: differential_dataflow::Data>(
    results: VecCollection<'s, T, Result<D, String>, isize>,
) -> (VecCollection<'s, T, D, isize>, Errs<'s, T>) {
    let (ok, err) = results
        .inner
        .ok_err::<Vec<_>, _, Vec<_>, _, _>(|(result, time, diff)| match result {
            Ok(d) => Ok((d, time, diff)),
            Err(e) => Err((e, time, diff)),
        });
    (ok.as_collection(), err.as_collection())
}

/// Passes each record to `logic`, which pushes the records it makes to the
/// first vector and the errors it meets to the second; both keep the input
/// record's time and difference. One operator with two outputs: evaluating
/// and splitting off the errors costs no copy of the rows and no second
/// operator to schedule.
pub fn eval_split<'s, T, D, D1, L>(
    input: VecCollection<'s, T, D, isize>,
    mut logic: L,
) -> (VecCollection<'s, T, D1, isize>, Errs<'s, T>)
where
    T: Time,
    D: differential_dataflow::Data,
    D1: differential_dataflow::Data,
    L: FnMut(D, &mut Vec<D1>, &mut Vec<String>) + 'static,
{
    let mut builder = OperatorBuilder::new("Eval".to_owned(), input.inner.scope());
    let mut rows = builder.new_input(input.inner, Pipeline);
    builder.set_notify_for(0, FrontierInterest::Never);
    let (ok_output, ok_stream) = builder.new_output::<Vec<(D1, T, isize)>>();
    let (err_output, err_stream) = builder.new_output::<Vec<(String, T, isize)>>();
    let mut ok_output = OutputBuilder::from(ok_output);
    let mut err_output = OutputBuilder::from(err_output);
    builder.build(move |_| {
        let (mut made, mut failed) = (Vec::new(), Vec::new());
        move |_frontiers| {
            let mut ok_handle = ok_output.activate();
            let mut err_handle = err_output.activate();
            rows.for_each_stamp(|cap, data| {
                let mut ok = ok_handle.session(&cap);
                let mut err = err_handle.session(&cap);
                for (d, time, diff) in data.flat_map(|c| c.drain(..)) {
                    logic(d, &mut made, &mut failed);
                    for x in made.drain(..) {
                        ok.give((x, time.clone(), diff));
                    }
                    for e in failed.drain(..) {
                        err.give((e, time.clone(), diff));
                    }
                }
            });
        }
    });
    (ok_stream.as_collection(), err_stream.as_collection())
}

/// [`eval_split`] for `logic` that cannot fail: one operator with one
/// output, and no error collection for the view to track.
pub fn eval_total<'s, T, D, D1, L>(
    input: VecCollection<'s, T, D, isize>,
    mut logic: L,
) -> VecCollection<'s, T, D1, isize>
where
    T: Time,
    D: differential_dataflow::Data,
    D1: differential_dataflow::Data,
    L: FnMut(D, &mut Vec<D1>) + 'static,
{
    use timely::dataflow::operators::generic::operator::Operator;
    input
        .inner
        .unary::<timely::container::CapacityContainerBuilder<Vec<(D1, T, isize)>>, _, _, _>(
            Pipeline,
            "Eval",
            move |_, _| {
                let mut made = Vec::new();
                move |rows, output| {
                    rows.for_each_stamp(|cap, data| {
                        let mut session = output.session(&cap);
                        for (d, time, diff) in data.flat_map(|c| c.drain(..)) {
                            logic(d, &mut made);
                            for x in made.drain(..) {
                                session.give((x, time.clone(), diff));
                            }
                        }
                    });
                }
            },
        )
        .as_collection()
}

/// What a group kept in a map by its packed key costs besides its contents:
/// the map's slot (key, `V` and a control byte, at the map's usual load)
/// and the key's bytes. For the operators built on [`settle_by_key`].
pub fn group_slot_bytes<V>(key: &PackedRow) -> usize {
    (std::mem::size_of::<PackedRow>() + std::mem::size_of::<V>() + 1) * 8 / 7 + key.heap_size()
}

/// Rows keyed by a packed group key, each sent to the worker its key
/// hashes to; once the frontier passes a time (times in order: this needs
/// [`Time::TOTALLY_ORDERED`]), `logic` sees each key that moved at it with
/// its changes (in arrival order) and pushes the records the key's output
/// changes by at that time. Operators that keep their own state per group
/// (`extremes.rs`, `topk.rs`) are built on it.
pub fn settle_by_key<'s, T, V, D, L>(
    keyed: VecCollection<'s, T, (PackedRow, V), isize>,
    name: &str,
    mut logic: L,
) -> VecCollection<'s, T, D, isize>
where
    T: Time,
    V: timely::ExchangeData,
    D: differential_dataflow::Data,
    L: FnMut(PackedRow, Vec<(V, isize)>, &mut Vec<(D, isize)>) + 'static,
{
    use std::hash::{Hash, Hasher};
    use timely::dataflow::channels::pact::Exchange;
    use timely::dataflow::operators::generic::operator::Operator;
    use timely::dataflow::operators::Capability;

    let exchange = Exchange::new(|((key, _), _, _): &((PackedRow, V), T, isize)| {
        // SipHash with fixed keys: every worker sends a key to the same one.
        let mut h = std::hash::DefaultHasher::new();
        key.hash(&mut h);
        h.finish()
    });
    keyed
        .inner
        .unary_frontier(exchange, name, move |_cap, _info| {
            // Per time not yet passed: its capability and the changes at it.
            type Pending<T, V> = (Capability<T>, Vec<((PackedRow, V), isize)>);
            let mut pending: BTreeMap<T, Pending<T, V>> = BTreeMap::new();
            let mut out: Vec<(D, isize)> = Vec::new();
            move |(input, frontier), output| {
                input.for_each(|cap, batch| {
                    for (keyed, t, diff) in batch.drain(..) {
                        pending
                            .entry(t.clone())
                            .or_insert_with(|| (cap.delayed(&t, 0), Vec::new()))
                            .1
                            .push((keyed, diff));
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (t, (cap, mut changes)) = entry.remove_entry();
                    // Stable: a key's changes keep their order.
                    changes.sort_by(|a, b| a.0 .0.cmp(&b.0 .0));
                    let mut session = output.session(&cap);
                    let mut changes = changes.into_iter().peekable();
                    while let Some(((key, v), diff)) = changes.next() {
                        let mut run = vec![(v, diff)];
                        while let Some(((_, v), diff)) = changes.next_if(|((k, _), _)| *k == key) {
                            run.push((v, diff));
                        }
                        logic(key, run, &mut out);
                        for (d, n) in out.drain(..) {
                            session.give((d, t.clone(), n));
                        }
                    }
                }
            }
        })
        .as_collection()
}

/// Files what evaluating one record gave, for [`eval_split`]'s `logic`: a
/// record made, nothing (filtered out), or an error.
pub fn emit<D>(result: Result<Option<D>, String>, made: &mut Vec<D>, failed: &mut Vec<String>) {
    match result {
        Ok(Some(d)) => made.push(d),
        Ok(None) => {}
        Err(e) => failed.push(e),
    }
}

/// A Filter or a Project left to the operator that consumes its rows.
#[derive(Clone)]
pub enum Stage {
    Filter(Vec<Expr>),
    Project(Vec<Expr>),
    /// A Project of nothing but columns: they are moved out of the row,
    /// not copied.
    Columns(Vec<usize>),
}

impl Stage {
    fn cannot_fail(&self) -> bool {
        match self {
            Stage::Filter(exprs) | Stage::Project(exprs) => exprs.iter().all(Expr::cannot_fail),
            Stage::Columns(_) => true,
        }
    }
}

/// Whether every predicate of a filter holds for `row`, evaluated in
/// order: false at the first that does not, the error of the first that
/// fails. A Filter rendered as a stage and one evaluated in a table's
/// import ([`super::import::Decoder`]) both go through it.
pub fn holds(predicates: &[Expr], row: &[Datum]) -> Result<bool, String> {
    for p in predicates {
        if !p.eval_predicate(row).map_err(|e| e.0)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `stages` applied in order to `row`: the row they make, `None` if a
/// filter drops it, or the first error.
pub fn run_stages(stages: &[Stage], mut row: Row) -> Result<Option<Row>, String> {
    for stage in stages {
        match stage {
            Stage::Filter(predicates) => {
                if !holds(predicates, &row)? {
                    return Ok(None);
                }
            }
            Stage::Project(exprs) => row = project::eval_all(exprs, &row)?,
            Stage::Columns(cols) => row = take_columns(row, cols),
        }
    }
    Ok(Some(row))
}

/// A rendered input and the Filter and Project stages above it that are
/// not rendered yet: its consumer applies them in its own operator, so a
/// chain of them (and a join's keying, a reduce's evaluation) is one
/// operator, not three per stage.
pub struct Staged<'s, T: Time> {
    input: Coll<'s, T>,
    stages: Vec<Stage>,
}

impl<'s, T: Time> Staged<'s, T> {
    /// The rows through the stages, each then passed to `logic` as in
    /// [`eval_split`]; the stages' errors join `logic`'s.
    pub fn eval<D1, L>(self, mut logic: L) -> (VecCollection<'s, T, D1, isize>, ErrList<'s, T>)
    where
        D1: differential_dataflow::Data,
        L: FnMut(Row, &mut Vec<D1>, &mut Vec<String>) + 'static,
    {
        let stages = self.stages;
        let (ok, errs) = eval_split(self.input, move |row, made, failed| {
            match run_stages(&stages, row) {
                Ok(Some(row)) => logic(row, made, failed),
                Ok(None) => {}
                Err(e) => failed.push(e),
            }
        });
        (ok, ErrList::of(errs))
    }

    /// The rows through the stages, each turned by `logic` into a key and
    /// its contribution to the key's sum, as a collection of keys whose
    /// differences are those contributions (times the rows' counts). Each
    /// batch of input is summed by time and key before it leaves the
    /// operator: a table's first batch (every row at once) becomes one
    /// record per group, not one per row, for the arrangement that adds
    /// them up.
    pub fn eval_summed<K, R, L>(self, mut logic: L) -> (VecCollection<'s, T, K, R>, ErrList<'s, T>)
    where
        K: differential_dataflow::Data + std::hash::Hash,
        R: differential_dataflow::difference::Semigroup
            + differential_dataflow::difference::Multiply<isize, Output = R>
            + 'static,
        L: FnMut(Row) -> Result<Option<(K, R)>, String> + 'static,
    {
        let stages = self.stages;
        let mut builder = OperatorBuilder::new("EvalSummed".to_owned(), self.input.inner.scope());
        let mut rows = builder.new_input(self.input.inner, Pipeline);
        builder.set_notify_for(0, FrontierInterest::Never);
        let (ok_output, ok_stream) = builder.new_output::<Vec<(K, T, R)>>();
        let (err_output, err_stream) = builder.new_output::<Vec<(String, T, isize)>>();
        let mut ok_output = OutputBuilder::from(ok_output);
        let mut err_output = OutputBuilder::from(err_output);
        builder.build(move |_| {
            // Per time in the batch (mostly one), the sums by key.
            let mut sums: Vec<(T, HashMap<K, R>)> = Vec::new();
            move |_frontiers| {
                let mut ok_handle = ok_output.activate();
                let mut err_handle = err_output.activate();
                rows.for_each_stamp(|cap, data| {
                    let mut err = err_handle.session(&cap);
                    for (row, time, diff) in data.flat_map(|c| c.drain(..)) {
                        let made = run_stages(&stages, row).and_then(|row| match row {
                            Some(row) => logic(row),
                            None => Ok(None),
                        });
                        match made {
                            Ok(Some((key, r))) => {
                                let r = if diff == 1 { r } else { r.multiply(&diff) };
                                let at = match sums.iter().position(|(t, _)| *t == time) {
                                    Some(at) => at,
                                    None => {
                                        sums.push((time, HashMap::new()));
                                        sums.len() - 1
                                    }
                                };
                                match sums[at].1.entry(key) {
                                    std::collections::hash_map::Entry::Occupied(mut e) => {
                                        e.get_mut().plus_equals(&r)
                                    }
                                    std::collections::hash_map::Entry::Vacant(e) => {
                                        e.insert(r);
                                    }
                                }
                            }
                            Ok(None) => {}
                            Err(e) => err.give((e, time, diff)),
                        }
                    }
                    let mut ok = ok_handle.session(&cap);
                    for (time, by_key) in sums.drain(..) {
                        for (key, r) in by_key {
                            if !r.is_zero() {
                                ok.give((key, time.clone(), r));
                            }
                        }
                    }
                });
            }
        });
        (
            ok_stream.as_collection(),
            ErrList::of(err_stream.as_collection()),
        )
    }

    /// As [`Staged::eval`], for `logic` that cannot fail: if no stage can
    /// fail either ([`Expr::cannot_fail`]), one operator with no error
    /// output.
    pub fn eval_total<D1, L>(
        self,
        mut logic: L,
    ) -> (VecCollection<'s, T, D1, isize>, ErrList<'s, T>)
    where
        D1: differential_dataflow::Data,
        L: FnMut(Row, &mut Vec<D1>) + 'static,
    {
        if !self.stages.iter().all(Stage::cannot_fail) {
            return self.eval(move |row, made, _| logic(row, made));
        }
        let stages = self.stages;
        let ok = eval_total(self.input, move |row, made| {
            match run_stages(&stages, row) {
                Ok(Some(row)) => logic(row, made),
                Ok(None) => {}
                Err(e) => failed_where_nothing_can_fail(&e),
            }
        });
        (ok, ErrList::none())
    }
}

/// An error from expressions that [`Expr::cannot_fail`] accepted, which
/// its property test rules out: a bug. Tests stop on it; elsewhere it is
/// logged and the row dropped, as there is no error output to send it to.
fn failed_where_nothing_can_fail(e: &str) {
    debug_assert!(false, "an evaluation that cannot fail failed: {e}");
    tracing::error!("an evaluation that cannot fail failed, the row is dropped: {e}");
}

/// `cols` of `row`, in that order, moved out of it (a column taken twice
/// is copied for all but its last use); a column past the row's end is
/// NULL, as [`Expr::Column`] reads it.
fn take_columns(mut row: Row, cols: &[usize]) -> Row {
    let mut out = Vec::with_capacity(cols.len());
    for (n, &c) in cols.iter().enumerate() {
        let value = match row.get_mut(c) {
            None => Datum::Null,
            Some(v) if cols[n + 1..].contains(&c) => v.clone(),
            Some(v) => std::mem::replace(v, Datum::Null),
        };
        out.push(value);
    }
    out
}

/// The columns a projection takes, if it takes nothing but columns.
fn column_list(exprs: &[Expr]) -> Option<Vec<usize>> {
    exprs
        .iter()
        .map(|e| match e {
            Expr::Column(i) => Some(*i),
            _ => None,
        })
        .collect()
}

/// `plan` with the Filter and Project stages on its top left unrendered
/// (down to the first subplan rendered already). A table read through a
/// projection of its columns decodes just those columns from its arrangement.
pub fn staged<'s, T: Time>(plan: &Plan, ctx: &mut Context<'s, T>) -> Staged<'s, T> {
    let mut chain: Vec<(&Plan, Stage)> = Vec::new();
    let mut base = plan;
    while !ctx.collections.contains_key(base) {
        match base {
            Plan::Filter { input, predicates } => {
                chain.push((base, Stage::Filter(predicates.clone())));
                base = input;
            }
            Plan::Project { input, exprs } => {
                let stage = match column_list(exprs) {
                    Some(cols) => Stage::Columns(cols),
                    None => Stage::Project(exprs.clone()),
                };
                chain.push((base, stage));
                base = input;
            }
            _ => break,
        }
    }
    chain.reverse();
    if let Some(import) = match base {
        Plan::Get { table, .. } => ctx.imports.get(table).cloned(),
        _ => None,
    } {
        // The import decodes the columns of a projection right above the
        // table, and evaluates the predicates of a filter right above
        // that: the rows it sends are that filter's.
        let mut pushed = 0;
        let mut cols = None;
        let mut filter: &[Expr] = &[];
        if let Some((_, Stage::Columns(c))) = chain.first() {
            cols = Some(c.as_slice());
            pushed = 1;
        }
        if let Some((_, Stage::Filter(predicates))) = chain.get(pushed) {
            filter = predicates;
            pushed += 1;
        }
        if pushed > 0 {
            let (input, errs) = import(cols, filter);
            let top = chain[pushed - 1].0;
            ctx.collections.insert(top.clone(), input.clone());
            if !errs.is_empty() {
                ctx.errors.insert(top.clone(), errs);
            }
            let stages = chain.into_iter().skip(pushed).map(|(_, s)| s).collect();
            return Staged { input, stages };
        }
    }
    Staged {
        input: render(base, ctx),
        stages: chain.into_iter().map(|(_, s)| s).collect(),
    }
}

/// A table's rows from the arrangement the view imported: every column, or
/// only those listed (in that order), decoded from the packed rows, and of
/// those the rows for which the predicates hold (with the errors they
/// raise, in order, as a Filter's).
pub type Import<'s, T> =
    Rc<dyn Fn(Option<&[usize]>, &[Expr]) -> (Coll<'s, T>, ErrList<'s, T>) + 's>;

pub struct Context<'s, T: Time> {
    /// The tables the view reads, by table id (imported by the caller),
    /// decoded on first use.
    imports: HashMap<usize, Import<'s, T>>,
    /// Every column of the tables read whole so far (or given whole).
    tables: HashMap<usize, Coll<'s, T>>,
    /// The rows found so far of each recursive query being rendered.
    recursive: HashMap<usize, Coll<'s, T>>,
    /// The one-row collection, from `unit_import` on first use.
    unit: Option<VecCollection<'s, T, (), isize>>,
    unit_import: Option<Import<'s, T>>,
    /// Every subplan rendered so far, by value: plans are compared and
    /// hashed structurally (columns by position, literals exactly as
    /// written, so `-0` is not `0` and `1.5` not `1.50`).
    collections: HashMap<Plan, Coll<'s, T>>,
    /// The errors each rendered subplan raises itself (not its inputs').
    errors: HashMap<Plan, ErrList<'s, T>>,
    /// Each subplan arranged by join keys (and whether NULLs match), with
    /// the errors of keying it.
    arrangements: HashMap<ArrangedBy, (Arr<'s, T>, ErrList<'s, T>)>,
}

impl<'s, T: Time> Context<'s, T> {
    /// A context over whole tables (a recursive query's loop).
    pub fn new(tables: HashMap<usize, Coll<'s, T>>, unit: VecCollection<'s, T, (), isize>) -> Self {
        Context {
            imports: HashMap::new(),
            tables,
            recursive: HashMap::new(),
            unit: Some(unit),
            unit_import: None,
            collections: HashMap::new(),
            errors: HashMap::new(),
            arrangements: HashMap::new(),
        }
    }

    /// A context over imported tables, each decoded only as its readers
    /// need; `unit` is the one-row table's import.
    pub fn imported(imports: HashMap<usize, Import<'s, T>>, unit: Import<'s, T>) -> Self {
        Context {
            imports,
            tables: HashMap::new(),
            recursive: HashMap::new(),
            unit: None,
            unit_import: Some(unit),
            collections: HashMap::new(),
            errors: HashMap::new(),
            arrangements: HashMap::new(),
        }
    }

    /// Every column of `table`, or `None` if the view did not import it.
    pub fn table(&mut self, table: usize) -> Option<Coll<'s, T>> {
        if let Some(c) = self.tables.get(&table) {
            return Some(c.clone());
        }
        let (whole, _) = self.imports.get(&table)?(None, &[]);
        self.tables.insert(table, whole.clone());
        Some(whole)
    }

    /// Every table, whole (for a nested scope to enter).
    pub fn all_tables(&mut self) -> HashMap<usize, Coll<'s, T>> {
        let ids: Vec<usize> = self.imports.keys().copied().collect();
        for id in ids {
            self.table(id);
        }
        self.tables.clone()
    }

    /// The collection of one empty row.
    pub fn unit(&mut self) -> VecCollection<'s, T, (), isize> {
        if let Some(u) = &self.unit {
            return u.clone();
        }
        let import = self
            .unit_import
            .as_ref()
            .expect("a context has the unit table or its import");
        let unit = import(Some(&[]), &[]).0.map(|_| ());
        self.unit = Some(unit.clone());
        unit
    }

    /// Every error a view over `plan` can be in: those of all its subplans.
    pub fn errors_of(&self, plan: &Plan) -> ErrList<'s, T> {
        let mut plans = Vec::new();
        subplans(plan, &mut plans);
        let mut seen = std::collections::HashSet::new();
        plans
            .into_iter()
            .filter(|p| seen.insert(*p))
            .filter_map(|p| self.errors.get(p).cloned())
            .fold(ErrList::none(), ErrList::and)
    }
}

/// A join input's cache key: the subplan, its join keys, and whether NULL
/// keys match.
type ArrangedBy = (Plan, Vec<Expr>, bool);

/// `plan` and every subplan whose errors are the view's.
fn subplans<'p>(plan: &'p Plan, out: &mut Vec<&'p Plan>) {
    out.push(plan);
    match plan {
        // The step is rendered in the loop; its errors are the Recursive's own.
        Plan::Recursive { base, .. } => subplans(base, out),
        _ => plan.inputs().into_iter().for_each(|p| subplans(p, out)),
    }
}

/// Renders `plan`, reusing an identical subplan rendered before.
pub fn render<'s, T: Time>(plan: &Plan, ctx: &mut Context<'s, T>) -> Coll<'s, T> {
    if let Some(c) = ctx.collections.get(plan) {
        return c.clone();
    }
    let (coll, errs) = match plan {
        Plan::Get { table, .. } => (get::render(*table, ctx), ErrList::none()),
        Plan::Filter { .. } | Plan::Project { .. } => {
            let staged = staged(plan, ctx);
            if staged.stages.is_empty() {
                // A projection of a table's columns, read as it is decoded.
                (staged.input, ErrList::none())
            } else {
                staged.eval_total(|row, made| made.push(row))
            }
        }
        Plan::RecursiveRef { id, .. } => (
            ctx.recursive
                .get(id)
                .cloned()
                .expect("a recursive reference is rendered inside its loop"),
            ErrList::none(),
        ),
        Plan::Recursive {
            id,
            base,
            step,
            distinct,
        } => {
            let (ok, err) = T::recursive(*id, base, step, *distinct, ctx);
            (ok, ErrList::of(err))
        }
        Plan::Constant { rows, .. } => {
            let rows = rows.clone();
            (ctx.unit().flat_map(move |()| rows.clone()), ErrList::none())
        }
        Plan::Join {
            left,
            right,
            kind,
            left_keys,
            right_keys,
            residual,
            right_arity,
            null_safe,
        } => join::render(
            left,
            right,
            *kind,
            left_keys,
            right_keys,
            residual,
            *right_arity,
            *null_safe,
            ctx,
        ),
        Plan::Reduce { input, keys, aggs } => {
            let unit = keys.is_empty().then(|| ctx.unit());
            match (plan.summed_side(), &**input) {
                (
                    Some(side),
                    Plan::Join {
                        left,
                        right,
                        left_keys,
                        right_keys,
                        null_safe,
                        ..
                    },
                ) => {
                    let join = eager::Join {
                        left,
                        right,
                        left_keys,
                        right_keys,
                        null_safe: *null_safe,
                    };
                    eager::render(join, side, keys.clone(), aggs.clone(), unit, ctx)
                }
                _ => {
                    let input = staged(input, ctx);
                    reduce::render(input, keys.clone(), aggs.clone(), unit)
                }
            }
        }
        Plan::Distinct { input } => (distinct::render(render(input, ctx)), ErrList::none()),
        Plan::Union { inputs } => (
            setop::union(inputs.iter().map(|p| render(p, ctx)).collect()),
            ErrList::none(),
        ),
        Plan::SetOp {
            kind,
            all,
            left,
            right,
        } => {
            let (l, r) = (render(left, ctx), render(right, ctx));
            (setop::render(*kind, *all, l, r), ErrList::none())
        }
        Plan::TopK {
            input,
            group,
            order,
            limit,
            offset,
        } => (
            topk::render(render(input, ctx), *group, order.clone(), *limit, *offset),
            ErrList::none(),
        ),
        Plan::Temporal { input, bounds } => {
            let input = render(input, ctx);
            let clock = get::render(crate::sql::CLOCK_TABLE, &mut *ctx);
            let (ok, err) = temporal::render(input, clock, bounds.clone());
            (ok, ErrList::of(err))
        }
        Plan::FlatMap {
            input,
            funcs,
            ordinality,
            outer,
        } => {
            let input = staged(input, ctx);
            project::flat_map(input, funcs.clone(), *ordinality, *outer)
        }
        Plan::Window {
            input,
            partition,
            order,
            ties,
            funcs,
        } => {
            let input = render(input, ctx);
            let (ok, err) = window::render(
                input,
                partition.clone(),
                order.clone(),
                ties.clone(),
                funcs.clone(),
            );
            (ok, ErrList::of(err))
        }
    };
    if !errs.is_empty() {
        ctx.errors.insert(plan.clone(), errs);
    }
    ctx.collections.insert(plan.clone(), coll.clone());
    coll
}

/// A test bench for operators over commit times (`extremes.rs`, `topk.rs`).
#[cfg(test)]
pub(super) mod testing {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    use differential_dataflow::input::Input;
    use differential_dataflow::VecCollection;
    use timely::dataflow::operators::probe::Handle;
    use timely::dataflow::operators::{Inspect, Probe};

    use super::{Coll, ErrList, Expr, Staged};
    use crate::repr::Row;

    /// What an aggregate's `render` gives for `rows` (no stages) grouped by
    /// their first column; any evaluation error fails the test.
    pub fn grouped_by_first<'s, X>(
        rows: VecCollection<'s, u64, Row, isize>,
        render: impl FnOnce(Staged<'s, u64>, Vec<Expr>) -> (Coll<'s, u64>, ErrList<'s, u64>, X),
    ) -> Coll<'s, u64> {
        let staged = Staged {
            input: rows,
            stages: vec![],
        };
        let (out, errs, _) = render(staged, vec![Expr::Column(0)]);
        for errs in errs.into_vec() {
            errs.inspect(|e| panic!("no errors expected: {e:?}"));
        }
        out
    }

    /// Feeds the operator `build` makes, at times `1..times`, `per_time`
    /// pseudo-random changes each (from `seed`): a third of them remove a
    /// live row, the others insert `new_row(seed)`. After each time it
    /// checks that the operator's output so far, all of it at that time,
    /// adds up to `expected(live rows)`.
    pub fn follow_times<B, N, E>(
        seed: u64,
        times: u64,
        per_time: usize,
        build: B,
        new_row: N,
        expected: E,
    ) where
        B: for<'s> FnOnce(VecCollection<'s, u64, Row, isize>) -> VecCollection<'s, u64, Row, isize>
            + Send
            + Sync
            + 'static,
        N: Fn(u64) -> Row + Send + Sync + 'static,
        E: Fn(&[Row]) -> BTreeMap<Row, isize> + Send + Sync + 'static,
    {
        timely::execute_directly(move |worker| {
            let probe = Handle::new();
            let results = Rc::new(RefCell::new(Vec::new()));
            let sink = results.clone();
            let mut input = worker.dataflow::<u64, _, _>(|scope| {
                let (input, rows) = scope.new_collection::<Row, isize>();
                build(rows)
                    .inner
                    .inspect(move |(row, t, d)| sink.borrow_mut().push((row.clone(), *t, *d)))
                    .probe_with(&probe);
                input
            });
            let mut live: Vec<Row> = Vec::new();
            let mut shown: BTreeMap<Row, isize> = BTreeMap::new();
            let mut seed = seed;
            for t in 1..times {
                input.advance_to(t);
                for _ in 0..per_time {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    if (seed >> 20).is_multiple_of(3) && !live.is_empty() {
                        let r = live.remove((seed >> 25) as usize % live.len());
                        input.remove(r);
                    } else {
                        let row = new_row(seed);
                        live.push(row.clone());
                        input.insert(row);
                    }
                }
                input.advance_to(t + 1);
                input.flush();
                while probe.less_than(&(t + 1)) {
                    worker.step();
                }
                for (r, time, d) in results.borrow_mut().drain(..) {
                    assert_eq!(time, t, "changes come out at their own time");
                    *shown.entry(r).or_default() += d;
                }
                shown.retain(|_, d| *d != 0);
                assert_eq!(shown, expected(&live), "at time {t}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moving columns out of a row gives what evaluating them as
    /// `Expr::Column`s does: duplicates, reordering, and columns past the
    /// row's end.
    #[test]
    fn columns_moved_out_equal_columns_evaluated() {
        let row: Row = vec![
            Datum::Int(1),
            Datum::Text("two".into()),
            Datum::Null,
            Datum::Text("four".into()),
        ];
        for cols in [
            vec![],
            vec![0, 1, 2, 3],
            vec![3, 1],
            vec![1, 1, 3, 1],
            vec![5, 0, 7],
        ] {
            let exprs: Vec<Expr> = cols.iter().map(|&c| Expr::Column(c)).collect();
            let evaluated = project::eval_all(&exprs, &row).expect("columns evaluate");
            assert_eq!(take_columns(row.clone(), &cols), evaluated, "{cols:?}");
        }
    }
}
