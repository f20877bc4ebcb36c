//! `Join`: an equi-join of two arranged inputs, plus the NULL-padded unmatched
//! left rows for LEFT JOIN.
//!
//! ```text
//! left  ─key─▶ arrange ─┐
//!                       ├─ join_core ─ residual ─▶ matched ───────────────┐
//! right ─key─▶ arrange ─┘                                                 ├─▶ out
//! left ── minus (left rows that matched) ── pad right side with NULL ─────┘  (LEFT only)
//! ```
//! Rows whose key has a NULL never match (SQL `=`), so they are not arranged.

use super::project::eval_all;
use super::{render as render_plan, Arr, Coll, Context};
use crate::repr::{Datum, Row};
use crate::sql::expr::Expr;
use crate::sql::plan::JoinKind;
use crate::sql::Plan;

/// `plan` keyed by `keys` and arranged, once per dataflow for each (plan, keys).
fn arranged<'s>(plan: &Plan, keys: &[Expr], ctx: &mut Context<'s>) -> Arr<'s> {
    let cache_key = format!("{plan:?}|{keys:?}");
    if let Some(a) = ctx.arrangements.get(&cache_key) {
        return a.clone();
    }
    let coll = render_plan(plan, ctx);
    let reporter = ctx.reporter();
    let keys = keys.to_vec();
    let arr = coll
        .flat_map(move |row| {
            let key = eval_all(&keys, &row, &reporter)?;
            if key.iter().any(Datum::is_null) {
                return None;
            }
            Some((key.iter().map(Datum::key_form).collect::<Row>(), row))
        })
        .arrange_by_key();
    ctx.arrangements.insert(cache_key, arr.clone());
    arr
}

#[allow(clippy::too_many_arguments)]
pub fn render<'s>(
    left: &Plan,
    right: &Plan,
    kind: JoinKind,
    left_keys: &[Expr],
    right_keys: &[Expr],
    residual: &[Expr],
    right_arity: usize,
    ctx: &mut Context<'s>,
) -> Coll<'s> {
    let left_arr = arranged(left, left_keys, ctx);
    let right_arr = arranged(right, right_keys, ctx);
    let reporter = ctx.reporter();
    let residual = residual.to_vec();
    let matched = left_arr.join_core(right_arr, move |_key, l: &Row, r: &Row| {
        let mut row = Vec::with_capacity(l.len() + r.len());
        row.extend(l.iter().cloned());
        row.extend(r.iter().cloned());
        for p in &residual {
            match p.eval_predicate(&row) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    reporter.report(e);
                    return None;
                }
            }
        }
        Some(row)
    });
    match kind {
        JoinKind::Inner => matched,
        JoinKind::Left => {
            let left_arity = left.arity();
            let left_all = render_plan(left, ctx);
            let matched_left = matched
                .clone()
                .map(move |row| row[..left_arity].to_vec())
                .distinct();
            let left_matched = left_all
                .clone()
                .map(|r| (r, ()))
                .semijoin(matched_left)
                .map(|(r, ())| r);
            let unmatched = left_all.concat(left_matched.negate());
            let padded = unmatched.map(move |mut r| {
                r.extend(std::iter::repeat_n(Datum::Null, right_arity));
                r
            });
            matched.concat(padded)
        }
    }
}
