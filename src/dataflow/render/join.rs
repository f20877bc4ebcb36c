//! `Join`: an equi-join of two arranged inputs, plus the NULL-padded unmatched
//! rows of outer joins, and the semi- and anti-joins subqueries plan to.
//!
//! ```text
//! left  ─key─▶ arrange ─┐
//!                       ├─ join_core ─ residual ─▶ matched ───────────────┐
//! right ─key─▶ arrange ─┘                                                 ├─▶ out
//! left ── minus (left rows that matched) ── pad right side with NULL ─────┘  (LEFT, FULL)
//! right ─ minus (right rows that matched) ─ pad left side with NULL ──────┘  (FULL)
//! ```
//! Rows whose key has a NULL never match (SQL `=`), so they are not arranged,
//! unless the join is null-safe.

use super::project::eval_all;
use super::Time;
use super::{
    arrange_flat, distinct_flat, emit, render as render_plan, staged, Arr, Coll, Context, ErrList,
    Packed,
};
use crate::repr::{key_form_of, Datum, PackedRef, PackedRow, Row};
use crate::sql::expr::Expr;
use crate::sql::plan::JoinKind;
use crate::sql::Plan;

/// `plan` keyed by `keys` and arranged, once per dataflow for each (plan, keys).
/// The Filter and Project stages on top of `plan` run in the operator that
/// keys the rows.
pub(super) fn arranged<'s, T: Time>(
    plan: &Plan,
    keys: &[Expr],
    null_safe: bool,
    ctx: &mut Context<'s, T>,
) -> (Arr<'s, T>, ErrList<'s, T>) {
    let cache_key = (plan.clone(), keys.to_vec(), null_safe);
    if let Some(a) = ctx.arrangements.get(&cache_key) {
        return a.clone();
    }
    let (keyed, errs) = keyed(plan, keys, null_safe, |row| PackedRow::pack(row), ctx);
    let arr = arrange_flat(keyed, "ArrangeByKey");
    ctx.arrangements
        .insert(cache_key, (arr.clone(), errs.clone()));
    (arr, errs)
}

/// The rows of `plan` (through its stages) paired with their join key,
/// both packed, the row as `value` makes it; rows whose key matches nothing
/// are left out. Keys that cannot fail (columns, mostly) make an operator
/// without an error output.
fn keyed<'s, T: Time, V>(
    plan: &Plan,
    keys: &[Expr],
    null_safe: bool,
    value: V,
    ctx: &mut Context<'s, T>,
) -> (Packed<'s, T>, ErrList<'s, T>)
where
    V: Fn(&Row) -> PackedRow + 'static,
{
    let keys = keys.to_vec();
    let staged = staged(plan, ctx);
    if keys.iter().all(Expr::cannot_fail) {
        staged.eval_total(move |row, made| match join_key(&keys, null_safe, &row) {
            Ok(Some(k)) => made.push((k, value(&row))),
            Ok(None) => {}
            Err(e) => super::failed_where_nothing_can_fail(&e),
        })
    } else {
        staged.eval(move |row, made, failed| {
            let keyed = join_key(&keys, null_safe, &row).map(|k| k.map(|k| (k, value(&row))));
            emit(keyed, made, failed)
        })
    }
}

/// The join key of `row`, packed in key form; `None` if it has a NULL and
/// NULLs do not match.
pub(super) fn join_key(
    keys: &[Expr],
    null_safe: bool,
    row: &[Datum],
) -> Result<Option<PackedRow>, String> {
    let key = eval_all(keys, row)?;
    if !null_safe && key.iter().any(Datum::is_null) {
        return Ok(None);
    }
    Ok(Some(PackedRow::pack(&key_form_of(&key))))
}

/// A matched pair's row: the left row's values, then the right's.
fn joined(l: PackedRef<'_>, r: PackedRef<'_>) -> Row {
    let mut row = l.unpack();
    r.unpack_into(&mut row);
    row
}

/// The rows of `all` (with their multiplicity) that occur in `matched`.
fn present<'s, T: Time>(all: Coll<'s, T>, matched: Coll<'s, T>) -> Coll<'s, T> {
    let packed = |rows: Coll<'s, T>| {
        let empty = PackedRow::pack(&[]);
        rows.map(move |r| (PackedRow::pack(&r), empty.clone()))
    };
    let all = arrange_flat(packed(all), "Rows");
    let matched = distinct_flat(arrange_flat(packed(matched), "Matched"));
    all.join_core(matched, |row, _, _| Some(row.unpack()))
}

/// The rows of `keyed` (unpacked) whose key occurs in `keys`.
fn semijoin<'s, T: Time>(keyed: Arr<'s, T>, keys: Packed<'s, T>) -> Coll<'s, T> {
    let keys = distinct_flat(arrange_flat(keys, "Keys"));
    keyed.join_core(keys, |_, row, _| Some(row.unpack()))
}

/// The rows of `all` that do not occur in `matched`.
fn unmatched<'s, T: Time>(all: Coll<'s, T>, matched: Coll<'s, T>) -> Coll<'s, T> {
    all.clone().concat(present(all, matched).negate())
}

#[allow(clippy::too_many_arguments)]
pub fn render<'s, T: Time>(
    left: &Plan,
    right: &Plan,
    kind: JoinKind,
    left_keys: &[Expr],
    right_keys: &[Expr],
    residual: &[Expr],
    right_arity: usize,
    null_safe: bool,
    ctx: &mut Context<'s, T>,
) -> (Coll<'s, T>, ErrList<'s, T>) {
    let left_arity = left.arity();
    if matches!(kind, JoinKind::Semi | JoinKind::Anti) && residual.is_empty() {
        // Only whether a key has a match matters: join against the distinct
        // keys. An anti-join needs every left row besides: render them
        // first, so the arrangement reads the rendered rows.
        if kind == JoinKind::Anti {
            render_plan(left, ctx);
        }
        let (left_arr, left_errs) = arranged(left, left_keys, null_safe, ctx);
        let empty = PackedRow::pack(&[]);
        let (right_keys_coll, right_errs) =
            keyed(right, right_keys, null_safe, move |_| empty.clone(), ctx);
        let hit = semijoin(left_arr, right_keys_coll);
        let out = match kind {
            JoinKind::Semi => hit,
            _ => render_plan(left, ctx).concat(hit.negate()),
        };
        return (out, left_errs.and(right_errs));
    }
    // A side whose every row is needed besides its matches is rendered
    // first, and its arrangement reads the rendered rows: the stages above
    // it then run once, not once for the join and again for the rest.
    if kind != JoinKind::Inner {
        render_plan(left, ctx);
    }
    if kind == JoinKind::Full {
        render_plan(right, ctx);
    }
    let (left_arr, left_errs) = arranged(left, left_keys, null_safe, ctx);
    let (right_arr, right_errs) = arranged(right, right_keys, null_safe, ctx);
    let (matched, errs) = if residual.is_empty() {
        // Nothing to evaluate, so nothing can fail: no errors to split off.
        let matched = left_arr.join_core(right_arr, |_key, l: PackedRef<'_>, r: PackedRef<'_>| {
            Some(joined(l, r))
        });
        (matched, left_errs.and(right_errs))
    } else {
        let residual = residual.to_vec();
        let results = left_arr.join_core(
            right_arr,
            move |_key, l: PackedRef<'_>, r: PackedRef<'_>| {
                let row = joined(l, r);
                for p in &residual {
                    match p.eval_predicate(&row) {
                        Ok(true) => {}
                        Ok(false) => return None,
                        Err(e) => return Some(Err(e.0)),
                    }
                }
                Some(Ok(row))
            },
        );
        let (matched, residual_errs) = super::split(results);
        let errs = left_errs.and(right_errs).and(ErrList::of(residual_errs));
        (matched, errs)
    };
    let matched_left =
        |matched: &Coll<'s, T>| matched.clone().map(move |row| row[..left_arity].to_vec());
    let left_unmatched = |ctx: &mut Context<'s, T>, matched: &Coll<'s, T>| {
        unmatched(render_plan(left, ctx), matched_left(matched))
    };
    let out = match kind {
        JoinKind::Inner => matched,
        JoinKind::Semi => present(render_plan(left, ctx), matched_left(&matched)),
        JoinKind::Anti => left_unmatched(ctx, &matched),
        JoinKind::Left | JoinKind::Full => {
            let padded = left_unmatched(ctx, &matched).map(move |mut r| {
                r.extend(std::iter::repeat_n(Datum::Null, right_arity));
                r
            });
            let mut out = matched.clone().concat(padded);
            if kind == JoinKind::Full {
                let matched_right = matched.map(move |row| row[left_arity..].to_vec());
                let right_padded =
                    unmatched(render_plan(right, ctx), matched_right).map(move |r| {
                        let mut row = vec![Datum::Null; left_arity];
                        row.extend(r);
                        row
                    });
                out = out.concat(right_padded);
            }
            out
        }
    };
    (out, errs)
}
