//! Plan → dataflow. One file per plan operator, named as in `sql/plan.rs`.
//!
//! Identical subplans are rendered once per dataflow and shared by every view
//! that contains them; a join input is arranged once per (subplan, key) and the
//! arrangement is shared too. Base tables are one input collection each.

mod distinct;
mod filter;
mod get;
mod join;
mod project;
mod reduce;
mod setop;
mod topk;

use std::collections::HashMap;

use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::ValSpine;
use differential_dataflow::VecCollection;

use super::{Output, OutputSender};
use crate::repr::Row;
use crate::sql::expr::EvalError;
use crate::sql::Plan;

pub type Coll<'s> = VecCollection<'s, u64, Row, isize>;
pub type Arr<'s> = Arranged<'s, TraceAgent<ValSpine<Row, Row, u64, isize>>>;

/// Reports evaluation errors (overflow, division by zero) of one view.
#[derive(Clone)]
pub struct Reporter {
    view: usize,
    out: OutputSender,
}

impl Reporter {
    pub fn report(&self, e: EvalError) {
        let _ = self.out.send(Output::ViewError {
            view: self.view,
            message: e.0,
        });
    }
}

pub struct Context<'s> {
    tables: Vec<Coll<'s>>,
    unit: VecCollection<'s, u64, (), isize>,
    out: OutputSender,
    /// The view being rendered, for error reports.
    pub view: usize,
    collections: HashMap<String, Coll<'s>>,
    arrangements: HashMap<String, Arr<'s>>,
}

impl<'s> Context<'s> {
    pub fn new(
        tables: Vec<Coll<'s>>,
        unit: VecCollection<'s, u64, (), isize>,
        out: OutputSender,
    ) -> Self {
        Context {
            tables,
            unit,
            out,
            view: 0,
            collections: HashMap::new(),
            arrangements: HashMap::new(),
        }
    }

    pub fn reporter(&self) -> Reporter {
        Reporter {
            view: self.view,
            out: self.out.clone(),
        }
    }
}

/// Renders `plan`, reusing an identical subplan rendered before.
pub fn render<'s>(plan: &Plan, ctx: &mut Context<'s>) -> Coll<'s> {
    let key = format!("{plan:?}");
    if let Some(c) = ctx.collections.get(&key) {
        return c.clone();
    }
    let coll = match plan {
        Plan::Get { table, .. } => get::render(*table, ctx),
        Plan::Constant { rows, .. } => {
            let rows = rows.clone();
            ctx.unit.clone().flat_map(move |()| rows.clone())
        }
        Plan::Filter { input, predicates } => {
            let input = render(input, ctx);
            filter::render(input, predicates.clone(), ctx.reporter())
        }
        Plan::Project { input, exprs } => {
            let input = render(input, ctx);
            project::render(input, exprs.clone(), ctx.reporter())
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
            let input = render(input, ctx);
            let unit = ctx.unit.clone();
            reduce::render(input, keys.clone(), aggs.clone(), unit, ctx.reporter())
        }
        Plan::Distinct { input } => distinct::render(render(input, ctx)),
        Plan::Union { inputs } => setop::union(inputs.iter().map(|p| render(p, ctx)).collect()),
        Plan::SetOp {
            kind,
            all,
            left,
            right,
        } => {
            let (l, r) = (render(left, ctx), render(right, ctx));
            setop::render(*kind, *all, l, r)
        }
        Plan::TopK {
            input,
            group,
            order,
            limit,
            offset,
        } => topk::render(render(input, ctx), *group, order.clone(), *limit, *offset),
    };
    ctx.collections.insert(key, coll.clone());
    coll
}
