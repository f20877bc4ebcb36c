//! Plan → dataflow. One file per plan operator, named as in `sql/plan.rs`.
//!
//! Each view is its own timely dataflow, so it can be added, replaced and
//! dropped while the others run. Base tables are arranged once, in dataflows of
//! their own (`dataflow/mod.rs`), and every view imports the arrangements of
//! the tables it reads. Inside a view, identical subplans are rendered once and
//! a join input is arranged once per (subplan, key).
//!
//! Evaluation errors (overflow, division by zero, a scalar subquery with two
//! rows) are data, as in Postgres they are a property of the current rows: an
//! operator sends the error of a row to its error collection instead of an
//! output row, and the retraction of that row retracts the error. A view is in
//! error exactly while one of its operators holds an error.

mod accumulate;
mod distinct;
mod filter;
mod get;
mod join;
mod project;
mod recursive;
mod reduce;
mod setop;
mod temporal;
mod topk;
mod window;

use std::collections::HashMap;

use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::ValSpine;
use differential_dataflow::VecCollection;

use crate::repr::{PackedRow, Row};
use crate::sql::Plan;

/// The timestamps views are computed at: commit LSNs, and inside a recursive
/// query's loop, (LSN, iteration) pairs.
pub trait Time:
    timely::progress::Timestamp + differential_dataflow::lattice::Lattice + timely::ExchangeData
{
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
pub trait GroupKey: differential_dataflow::ExchangeData + differential_dataflow::Hashable {}
impl<K: differential_dataflow::ExchangeData + differential_dataflow::Hashable> GroupKey for K {}
pub trait Summable:
    differential_dataflow::ExchangeData + differential_dataflow::difference::Semigroup
{
}
impl<R: differential_dataflow::ExchangeData + differential_dataflow::difference::Semigroup> Summable
    for R
{
}

impl Time for u64 {
    fn accumulate<'s, K: GroupKey, R: Summable>(
        input: VecCollection<'s, Self, K, R>,
    ) -> VecCollection<'s, Self, (K, R), isize> {
        use differential_dataflow::operators::CountTotal;
        input.count_total()
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
        let unit = ctx.unit.clone();
        (
            unit.clone().flat_map(|()| None),
            unit.map(|()| "WITH RECURSIVE nested in a recursive term".to_string()),
        )
    }
}

pub type Coll<'s, T> = VecCollection<'s, T, Row, isize>;
/// Error messages, one per failing row (or group).
pub type Errs<'s, T> = VecCollection<'s, T, String, isize>;
/// A join input arranged by its key, keys and rows packed.
pub type Arr<'s, T> = Arranged<'s, TraceAgent<ValSpine<PackedRow, PackedRow, T, isize>>>;

/// Splits evaluated rows (or keyed rows) into the good ones and the errors.
pub fn split<'s, T: Time, D: differential_dataflow::Data>(
    results: VecCollection<'s, T, Result<D, String>, isize>,
) -> (VecCollection<'s, T, D, isize>, Errs<'s, T>) {
    let ok = results.clone().flat_map(Result::ok);
    let err = results.flat_map(Result::err);
    (ok, err)
}

pub struct Context<'s, T: Time> {
    /// The tables the view reads, by table id (imported by the caller).
    tables: HashMap<usize, Coll<'s, T>>,
    /// The rows found so far of each recursive query being rendered.
    recursive: HashMap<usize, Coll<'s, T>>,
    unit: VecCollection<'s, T, (), isize>,
    collections: HashMap<String, Coll<'s, T>>,
    /// The errors each rendered subplan raises itself (not its inputs').
    errors: HashMap<String, Errs<'s, T>>,
    arrangements: HashMap<String, (Arr<'s, T>, Errs<'s, T>)>,
}

impl<'s, T: Time> Context<'s, T> {
    pub fn new(tables: HashMap<usize, Coll<'s, T>>, unit: VecCollection<'s, T, (), isize>) -> Self {
        Context {
            tables,
            recursive: HashMap::new(),
            unit,
            collections: HashMap::new(),
            errors: HashMap::new(),
            arrangements: HashMap::new(),
        }
    }

    /// Every error a view over `plan` can be in: those of all its subplans.
    pub fn errors_of(&self, plan: &Plan) -> Option<Errs<'s, T>> {
        let mut keys = Vec::new();
        plan_keys(plan, &mut keys);
        keys.sort();
        keys.dedup();
        let mut out: Option<Errs<'s, T>> = None;
        for k in keys {
            if let Some(e) = self.errors.get(&k) {
                out = Some(match out {
                    Some(acc) => acc.concat(e.clone()),
                    None => e.clone(),
                });
            }
        }
        out
    }
}

fn plan_keys(plan: &Plan, out: &mut Vec<String>) {
    out.push(format!("{plan:?}"));
    match plan {
        // The step is rendered in the loop; its errors are the Recursive's own.
        Plan::Recursive { base, .. } => plan_keys(base, out),
        _ => plan.inputs().into_iter().for_each(|p| plan_keys(p, out)),
    }
}

/// Renders `plan`, reusing an identical subplan rendered before.
pub fn render<'s, T: Time>(plan: &Plan, ctx: &mut Context<'s, T>) -> Coll<'s, T> {
    let key = format!("{plan:?}");
    if let Some(c) = ctx.collections.get(&key) {
        return c.clone();
    }
    let (coll, errs) = match plan {
        Plan::Get { table, .. } => (get::render(*table, ctx), None),
        Plan::RecursiveRef { id, .. } => (
            ctx.recursive
                .get(id)
                .cloned()
                .expect("a recursive reference is rendered inside its loop"),
            None,
        ),
        Plan::Recursive {
            id,
            base,
            step,
            distinct,
        } => {
            let (ok, err) = T::recursive(*id, base, step, *distinct, ctx);
            (ok, Some(err))
        }
        Plan::Constant { rows, .. } => {
            let rows = rows.clone();
            (ctx.unit.clone().flat_map(move |()| rows.clone()), None)
        }
        Plan::Filter { input, predicates } => {
            let input = render(input, ctx);
            let (ok, err) = filter::render(input, predicates.clone());
            (ok, Some(err))
        }
        Plan::Project { input, exprs } => {
            let input = render(input, ctx);
            let (ok, err) = project::render(input, exprs.clone());
            (ok, Some(err))
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
        } => {
            let (ok, err) = join::render(
                left,
                right,
                *kind,
                left_keys,
                right_keys,
                residual,
                *right_arity,
                *null_safe,
                ctx,
            );
            (ok, Some(err))
        }
        Plan::Reduce { input, keys, aggs } => {
            let input = render(input, ctx);
            let unit = ctx.unit.clone();
            let (ok, err) = reduce::render(input, keys.clone(), aggs.clone(), unit);
            (ok, Some(err))
        }
        Plan::Distinct { input } => (distinct::render(render(input, ctx)), None),
        Plan::Union { inputs } => (
            setop::union(inputs.iter().map(|p| render(p, ctx)).collect()),
            None,
        ),
        Plan::SetOp {
            kind,
            all,
            left,
            right,
        } => {
            let (l, r) = (render(left, ctx), render(right, ctx));
            (setop::render(*kind, *all, l, r), None)
        }
        Plan::TopK {
            input,
            group,
            order,
            limit,
            offset,
        } => (
            topk::render(render(input, ctx), *group, order.clone(), *limit, *offset),
            None,
        ),
        Plan::Temporal { input, bounds } => {
            let input = render(input, ctx);
            let clock = get::render(crate::sql::CLOCK_TABLE, ctx);
            let (ok, err) = temporal::render(input, clock, bounds.clone());
            (ok, Some(err))
        }
        Plan::FlatMap {
            input,
            funcs,
            ordinality,
            outer,
        } => {
            let input = render(input, ctx);
            let (ok, err) = project::flat_map(input, funcs.clone(), *ordinality, *outer);
            (ok, Some(err))
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
            (ok, Some(err))
        }
    };
    if let Some(e) = errs {
        ctx.errors.insert(key.clone(), e);
    }
    ctx.collections.insert(key, coll.clone());
    coll
}
