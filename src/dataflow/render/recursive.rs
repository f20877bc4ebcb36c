//! `Recursive`: WITH RECURSIVE as a differential fixed point.
//!
//! ```text
//! base ─ enter ─┐
//!               ├─ concat ─ (distinct for UNION) ─▶ x ─ leave ─▶ out
//! x ─ step ─────┘                                  │
//! ▲────────────── next iteration ──────────────────┘
//! ```
//! The loop runs in a nested scope whose time is (LSN, iteration). A change
//! to the tables re-runs only the iterations it affects, so reachability in a
//! graph that gains or loses an edge is updated, not recomputed. Rows the step
//! produces after `MAX_ITERATIONS` are dropped and fail the view: a query
//! that never reaches a fixed point (Postgres would run it forever) cannot
//! stall the other views. The failure lasts while such rows exist: removing
//! the cycle that made a UNION ALL endless makes the view serve again.

use differential_dataflow::operators::iterate::Variable;
use differential_dataflow::AsCollection;
use timely::dataflow::operators::vec::{Filter, Map};
use timely::order::Product;

use super::{render as render_plan, Coll, Context, ErrList, Errs};
use crate::sql::Plan;

pub const MAX_ITERATIONS: u64 = 10_000;

pub fn render<'s>(
    id: usize,
    base: &Plan,
    step: &Plan,
    distinct: bool,
    ctx: &mut Context<'s, u64>,
) -> (Coll<'s, u64>, Errs<'s, u64>) {
    let base_coll = render_plan(base, ctx);
    let outer = base_coll.inner.scope();
    let tables = ctx.all_tables();
    let unit = ctx.unit();
    outer.scoped::<Product<u64, u64>, _, _>("WithRecursive", |inner| {
        let (variable, so_far) = Variable::new(inner, Product::new(0, 1));
        let mut inner_ctx = Context::new(
            tables.into_iter().map(|(i, t)| (i, t.enter(inner))).collect(),
            unit.enter(inner),
        );
        inner_ctx.recursive.insert(id, so_far);
        let stepped = render_plan(step, &mut inner_ctx);
        let step_errs = inner_ctx.errors_of(step);
        // Rows from beyond the iteration bound do not go round again.
        let bounded = stepped
            .inner
            .clone()
            .filter(|(_, t, _)| t.inner <= MAX_ITERATIONS)
            .as_collection();
        let overflow: Errs<'_, Product<u64, u64>> = stepped
            .inner
            .flat_map(|(_, t, r)| {
                // Each dropped row counts (with its sign), so the error goes
                // away if a later change lets the recursion converge.
                (t.inner > MAX_ITERATIONS).then(|| {
                    (
                        format!(
                            "recursive query did not reach a fixed point within {MAX_ITERATIONS} iterations"
                        ),
                        t,
                        r,
                    )
                })
            })
            .as_collection();
        let next = base_coll.enter(inner).concat(bounded);
        let next = if distinct {
            next.distinct()
        } else {
            next.consolidate()
        };
        variable.set(next.clone());
        let errs = step_errs
            .and(ErrList::of(overflow))
            .concatenated()
            .expect("the overflow errors at least");
        (next.leave(outer), errs.leave(outer))
    })
}
