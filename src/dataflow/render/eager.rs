//! `Reduce` over an inner `Join`, with the rows of one side summed by their
//! join key before the join (eager aggregation; [`Plan::summed_side`] says
//! when it applies).
//!
//! ```text
//! other  ─key─▶ arrange (rows) ─────────────────┐
//!                                                ├─ join_core ─ group key ─▶ accumulate ─▶ finish
//! summed ─key─▶ sum inputs by (key, grouped) ─▶ arrange (one Accum each) ─┘
//! ```
//! `count`, `sum` and `avg` add up: a group's accumulated value
//! ([`Accum`]) is the sum of its joined rows' contributions, and a joined
//! row contributes what its summed-side row does (the aggregates read only
//! that side). So the summed side's rows become, per join key (and per
//! value of the columns the group keys read of it, which are join
//! columns), one [`Accum`] in the difference of a single record, and the
//! join multiplies the other side's counts by it: a joined record carries
//! the inputs of every row of the summed side behind it. The groups then
//! add up exactly what the plain plan would have added up.
//!
//! What it saves: a change to a row of the other side (pgbench's branch)
//! meets one record per key instead of one per matching row (its ten
//! tellers), and the summed side is kept as one record per key instead of
//! its rows.

use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::operators::vec::Map;

use super::accumulate::{finish_groups, Accum};
use super::reduce::{eval_inputs, group_key, with_default_row};
use super::{memory, staged, Coll, Context, ErrList, Time};
use crate::dataflow::flat::{FlatBatcher, FlatSpine};
use crate::repr::{Datum, PackedRef, PackedRow, Row};
use crate::sql::expr::Expr;
use crate::sql::plan::{Aggregate, Side};
use crate::sql::Plan;

/// The join's two inputs, as the Reduce over it reads them.
pub struct Join<'p> {
    pub left: &'p Plan,
    pub right: &'p Plan,
    pub left_keys: &'p [Expr],
    pub right_keys: &'p [Expr],
    pub null_safe: bool,
}

/// Renders `Reduce { Join, keys, aggs }` with the `summed` side summed
/// before the join; `unit` for a global aggregate, as `reduce::render`.
pub fn render<'s, T: Time>(
    join: Join<'_>,
    summed: Side,
    keys: Vec<Expr>,
    aggs: Vec<Aggregate>,
    unit: Option<VecCollection<'s, T, (), isize>>,
    ctx: &mut Context<'s, T>,
) -> (Coll<'s, T>, ErrList<'s, T>) {
    let left_arity = join.left.arity();
    let (other, other_keys, sum, sum_keys, offset) = match summed {
        Side::Right => (
            join.left,
            join.left_keys,
            join.right,
            join.right_keys,
            left_arity,
        ),
        Side::Left => (join.right, join.right_keys, join.left, join.left_keys, 0),
    };
    let sum_arity = sum.arity();
    // The summed side's columns the group keys read (its join columns), by
    // their place in that side's rows.
    let mut grouped = Vec::new();
    keys.iter().for_each(|k| k.columns(&mut grouped));
    let mut grouped: Vec<usize> = grouped
        .into_iter()
        .filter(|c| (offset..offset + sum_arity).contains(c))
        .map(|c| c - offset)
        .collect();
    grouped.sort_unstable();
    grouped.dedup();
    // The aggregates over the summed side's rows alone.
    let sum_aggs: Vec<Aggregate> = aggs.iter().map(|a| a.remap(&|c| c - offset)).collect();

    let (other_arr, other_errs) = super::join::arranged(other, other_keys, join.null_safe, ctx);
    let (sum_keys, null_safe, grouped_at) = (sum_keys.to_vec(), join.null_safe, grouped.clone());
    let (sums, sum_errs) = staged(sum, ctx).eval_summed(move |row| {
        let Some(key) = super::join::join_key(&sum_keys, null_safe, &row)? else {
            return Ok(None);
        };
        let values: Row = grouped_at.iter().map(|&c| column(&row, c)).collect();
        let inputs = eval_inputs(&sum_aggs, &row)?;
        Ok(Some((
            (key, PackedRow::pack(&values)),
            Accum::of_row(&sum_aggs, &inputs, None),
        )))
    });
    let sum_arr: Arranged<'s, TraceAgent<FlatSpine<T, Accum>>> =
        sums.arrange_named::<FlatBatcher<T, Accum>, _>("ArrangeSummed", FlatBatcher::new);
    memory::track(&sum_arr.trace);

    // Each match as the joined row the group keys read: the other side's
    // columns and the summed side's grouped columns, NULL where nothing
    // reads it.
    let other_arity = other.arity();
    let joined = other_arr.join_core(sum_arr, move |_key, o: PackedRef<'_>, s: PackedRef<'_>| {
        let mut sum_row = vec![Datum::Null; sum_arity];
        for (&c, v) in grouped.iter().zip(s.unpack()) {
            sum_row[c] = v;
        }
        let row = match summed {
            Side::Right => {
                let mut row = Vec::with_capacity(other_arity + sum_arity);
                o.unpack_into(&mut row);
                row.extend(sum_row);
                row
            }
            Side::Left => {
                let mut row = sum_row;
                o.unpack_into(&mut row);
                row
            }
        };
        // Plan::summed_side takes only group keys that cannot fail.
        let key = super::project::eval_all(&keys, &row).unwrap_or_else(|e| {
            super::failed_where_nothing_can_fail(&e);
            vec![Datum::Null; keys.len()]
        });
        let (key, shown) = group_key(key);
        Some((PackedRow::pack(&key), shown))
    });
    let by_group = joined
        .inner
        .map(
            |((key, shown), time, acc): ((PackedRow, Option<Row>), T, Accum)| {
                (key, time, acc.showing(shown))
            },
        )
        .as_collection();
    let (result, finish_errs, groups) = finish_groups(by_group, aggs.clone());
    let errs = other_errs.and(sum_errs).and(finish_errs);
    with_default_row(result, errs, groups, &aggs, unit)
}

/// Column `c` of `row`, NULL past its end (as `Expr::Column` reads it).
fn column(row: &[Datum], c: usize) -> Datum {
    row.get(c).cloned().unwrap_or(Datum::Null)
}
