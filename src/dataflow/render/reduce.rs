//! `Reduce`: GROUP BY keys with aggregates, maintained hierarchically.
//!
//! (A Reduce whose aggregates are all count, or sum/avg of integers or
//! numerics, needs none of this: `accumulate.rs` keeps one value per group.
//! Nor, over commit times, does one that adds `min` and `max` to those:
//! `extremes.rs` keeps each group's values in order.)
//!
//! A change to a group must not cost a pass over the whole group (a global
//! `count(*)` over ten million rows), so rows are reduced in three levels:
//!
//! ```text
//! (key, row) ─ bucket = hash(row) % 4096 ─▶ partial per (key, bucket)
//!            ─ bucket % 64 ───────────────▶ partial per (key, bucket / 64)
//!            ─────────────────────────────▶ partial per key ─ finish ─▶ row
//! ```
//! A partial holds, per aggregate, a value (count, running sum, min or max)
//! and the number of non-NULL inputs behind it, and partials merge into
//! partials. A change re-reads one bucket of about n/4096 rows and at most 64
//! partials at each level above. With a `DISTINCT` aggregate all rows of a
//! group stay in one bucket, so equal values meet and are counted once.
//!
//! A global aggregate (no keys) has exactly one row even over empty input, as
//! in SQL: the unit collection minus "a group exists" supplies the default row
//! (`count` 0, others NULL).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use differential_dataflow::VecCollection;

use super::project::eval_all;
use super::Time;
use super::{arrange_flat, reduce_flat, Arr, Coll, ErrList, Staged};
use crate::repr::{key_form_of, Datum, Numeric, PackedRef, PackedRow, Row, Type, F64};
use crate::sql::expr::{sql_cmp, EvalError, Expr};
use crate::sql::plan::{AggFunc, Aggregate};

/// Buckets of the first level; the second level has `LEVEL2_BUCKETS`.
const LEVEL1_BUCKETS: u64 = 4096;
const LEVEL2_BUCKETS: u64 = 64;

/// A group's key with its bucket as one more column, and a row's aggregate
/// inputs (or a partial, see [`pack_partial`]), both packed: every level
/// keeps its rows in flat arrangements.
type Keyed<'s, T> = super::Packed<'s, T>;

/// `unit` is given for a global aggregate (no keys), which needs it for its
/// row over empty input.
pub fn render<'s, T: Time>(
    input: Staged<'s, T>,
    keys: Vec<Expr>,
    aggs: Vec<Aggregate>,
    unit: Option<VecCollection<'s, T, (), isize>>,
) -> (Coll<'s, T>, ErrList<'s, T>) {
    if super::accumulate::applies(&aggs) {
        let (result, errs, groups) = super::accumulate::render(input, keys, aggs.clone());
        return with_default_row(result, errs, groups, &aggs, unit);
    }
    if T::TOTALLY_ORDERED && super::extremes::applies(&aggs) {
        let (result, errs, groups) = super::extremes::render(input, keys, aggs.clone());
        return with_default_row(result, errs, groups, &aggs, unit);
    }
    let input_aggs = aggs.clone();
    let spread = !aggs.iter().any(|a| a.distinct || a.func.needs_all_values());
    // Keys carry a bucket until the top level; a row's value is its
    // aggregate inputs, then its key as shown where that differs from the
    // form it groups by.
    let (bucketed, input_errs): (Keyed<'s, T>, ErrList<'s, T>) =
        input.eval(move |row, made, failed| {
            let evaluated = eval_all(&keys, &row).and_then(|k| {
                let (mut k, shown) = group_key(k);
                let mut v = eval_inputs(&input_aggs, &row)?;
                let bucket = if spread {
                    hash_of(&v) % LEVEL1_BUCKETS
                } else {
                    0
                };
                k.push(Datum::Int(bucket as i64));
                v.extend(shown.unwrap_or_default());
                Ok(Some((PackedRow::pack(&k), PackedRow::pack(&v))))
            });
            super::emit(evaluated, made, failed)
        });
    let level1 = reduce_values(bucketed, &aggs);
    let level2 = reduce_partials(rebucket(level1, LEVEL2_BUCKETS), &aggs);
    let top = reduce_partials(rebucket(level2, 1), &aggs);
    let top = top.as_collection(|k, p| (k.to_row(), p.to_row()));
    let finish_aggs = aggs.clone();
    let (result, agg_errs) = super::eval_split(top.clone(), move |(k, p), made, failed| {
        let finished = unpack_partial(p.borrowed()).and_then(|mut p| {
            let shown = p.split_off(2 * finish_aggs.len());
            let v = finish(&finish_aggs, &p).map_err(|e| e.0)?;
            let mut row = if shown.is_empty() {
                let mut key = k.unpack();
                key.pop();
                key
            } else {
                shown
            };
            row.extend(v);
            Ok(Some(row))
        });
        super::emit(finished, made, failed)
    });
    let errs = input_errs.and(ErrList::of(agg_errs));
    // A group that exists (even one in error) is not the empty input.
    with_default_row(result, errs, top, &aggs, unit)
}

/// A global aggregate (no keys) has one row even over empty input: the
/// aggregates' defaults while no group exists (`groups` is empty).
pub(super) fn with_default_row<'s, T: Time, G: differential_dataflow::Data>(
    result: Coll<'s, T>,
    errs: ErrList<'s, T>,
    groups: VecCollection<'s, T, G, isize>,
    aggs: &[Aggregate],
    unit: Option<VecCollection<'s, T, (), isize>>,
) -> (Coll<'s, T>, ErrList<'s, T>) {
    let Some(unit) = unit else {
        return (result, errs);
    };
    let defaults: Row = aggs
        .iter()
        .map(|a| match a.func {
            AggFunc::CountStar | AggFunc::Count => Datum::Int(0),
            _ => Datum::Null,
        })
        .collect();
    let missing = unit.concat(groups.map(|_| ()).negate());
    (result.concat(missing.map(move |()| defaults.clone())), errs)
}

/// Each aggregate's inputs (filter, arguments, order keys) for one row. A
/// FILTER that is not true excludes the row before its arguments are
/// evaluated, as in Postgres (`sum(1/x) FILTER (WHERE x <> 0)` never divides
/// by zero); the skipped inputs are NULL and never read.
pub(super) fn eval_inputs(aggs: &[Aggregate], row: &[Datum]) -> Result<Row, String> {
    let mut out = Vec::new();
    for a in aggs {
        let rest = a.args.len() + a.order_by.len();
        if let Some(f) = &a.filter {
            let pass = f.eval(row).map_err(|e| e.0)?;
            let skip = pass != Datum::Bool(true);
            out.push(pass);
            if skip {
                out.extend(std::iter::repeat_n(Datum::Null, rest));
                continue;
            }
        }
        for e in a.args.iter().chain(a.order_by.iter().map(|(e, _, _)| e)) {
            out.push(e.eval(row).map_err(|e| e.0)?);
        }
    }
    Ok(out)
}

/// A group key in the form rows group by, Postgres's `=` (`1.50` is `1.5`,
/// `-0` is `0`), and the key as this row shows it where that differs.
pub(super) fn group_key(key: Row) -> (Row, Option<Row>) {
    let form = key_form_of(&key);
    if form == key {
        (key, None)
    } else {
        (form, Some(key))
    }
}

/// How a group's key shows, from what follows the inputs (or partials) of
/// each of its rows: nothing (the key's own form) while any row has the
/// key's own form, else the least of the forms the rows have. Postgres
/// shows the form of whichever row it met first; this is one of the forms
/// present, the same whatever the order the rows came in.
fn shown_of<'a>(tails: impl IntoIterator<Item = &'a [Datum]>) -> Row {
    let mut least: Option<&[Datum]> = None;
    for tail in tails {
        if tail.is_empty() {
            return Vec::new();
        }
        if least.is_none_or(|l| tail < l) {
            least = Some(tail);
        }
    }
    least.map(<[Datum]>::to_vec).unwrap_or_default()
}

fn hash_of(row: &Row) -> u64 {
    // SipHash with fixed keys: the same row lands in the same bucket on every worker.
    let mut h = std::hash::DefaultHasher::new();
    row.hash(&mut h);
    h.finish()
}

/// A partial as a level keeps it: `true` and the partial's values (two per
/// aggregate, then the group key as shown, see [`shown_of`]), or `false`
/// and the message of the error computing it (an error below stays an error
/// above).
fn pack_partial(partial: Result<Row, EvalError>) -> PackedRow {
    match partial {
        Ok(mut p) => {
            p.insert(0, Datum::Bool(true));
            PackedRow::pack(&p)
        }
        Err(e) => PackedRow::pack(&[Datum::Bool(false), Datum::Text(e.0)]),
    }
}

/// The partial [`pack_partial`] packed, or its error.
fn unpack_partial(packed: PackedRef<'_>) -> Result<Row, String> {
    let mut p = packed.unpack();
    match p.first() {
        Some(Datum::Bool(true)) => {
            p.remove(0);
            Ok(p)
        }
        _ => match p.pop() {
            Some(Datum::Text(e)) => Err(e),
            _ => Err("internal error: a malformed aggregate partial".into()),
        },
    }
}

/// The first level: partials of aggregate input values. It holds every
/// input row.
fn reduce_values<'s, T: Time>(input: Keyed<'s, T>, aggs: &[Aggregate]) -> Arr<'s, T> {
    let aggs = aggs.to_vec();
    let arranged = arrange_flat(input, "AggregateInputs");
    let width: usize = aggs.iter().map(|a| a.inputs().len()).sum();
    reduce_flat(arranged, "Partials", move |_key, vals, out| {
        let rows: Vec<Row> = vals.iter().map(|(v, _)| v.unpack()).collect();
        let vals: Vec<(&Row, isize)> = rows.iter().zip(vals).map(|(r, (_, n))| (r, *n)).collect();
        let shown = shown_of(rows.iter().map(|r| &r[width.min(r.len())..]));
        let p = partial(&aggs, &vals).map(|mut p| {
            p.extend(shown);
            p
        });
        out.push((pack_partial(p), 1));
    })
}

/// A level's partials keyed for the level above: bucket `b` goes to
/// `b % buckets` (1: the group's top).
fn rebucket<'s, T: Time>(level: Arr<'s, T>, buckets: u64) -> Keyed<'s, T> {
    level.as_collection(move |key, partial| {
        let mut key = key.unpack();
        if let Some(Datum::Int(b)) = key.last_mut() {
            *b %= buckets as i64;
        }
        (PackedRow::pack(&key), partial.to_row())
    })
}

/// Higher levels: partials merged; an error below stays an error.
fn reduce_partials<'s, T: Time>(input: Keyed<'s, T>, aggs: &[Aggregate]) -> Arr<'s, T> {
    let aggs = aggs.to_vec();
    let arranged = arrange_flat(input, "PartialsBelow");
    reduce_flat(arranged, "Partials", move |_key, vals, out| {
        let mut rows: Vec<(Row, isize)> = Vec::with_capacity(vals.len());
        for (v, n) in vals {
            match unpack_partial(*v) {
                Ok(p) => rows.push((p, *n)),
                Err(e) => {
                    out.push((pack_partial(Err(EvalError(e))), 1));
                    return;
                }
            }
        }
        let ok: Vec<(&Row, isize)> = rows.iter().map(|(r, n)| (r, *n)).collect();
        let width = 2 * aggs.len();
        let shown = shown_of(rows.iter().map(|(r, _)| &r[width.min(r.len())..]));
        let merged = merge(&aggs, &ok).map(|mut p| {
            p.extend(shown);
            p
        });
        out.push((pack_partial(merged), 1));
    })
}

fn out_of_range() -> EvalError {
    EvalError("bigint out of range".into())
}

/// The type partial sums are kept in: int2/int4 inputs in an int8, int8 and
/// numeric inputs exactly, floats as floats.
fn accumulator_type(input: &Type) -> Type {
    match input {
        Type::Int2 | Type::Int4 => Type::Int8,
        Type::Int8 | Type::Numeric => Type::Numeric,
        other => other.clone(),
    }
}

/// Sum of `(value, multiplicity)` in accumulator type `acc`; NULL for no values.
fn sum(acc: &Type, items: &[(&Datum, i128)]) -> Result<Datum, EvalError> {
    if items.is_empty() {
        return Ok(Datum::Null);
    }
    match acc {
        Type::Int8 => {
            let mut s: i128 = 0;
            for (d, n) in items {
                if let Datum::Int(v) = d {
                    s = s.checked_add(*v as i128 * n).ok_or_else(out_of_range)?;
                }
            }
            i64::try_from(s).map(Datum::Int).map_err(|_| out_of_range())
        }
        Type::Numeric => {
            let mut s: Option<Numeric> = None;
            for (d, n) in items {
                let v = match d {
                    Datum::Numeric(v) => v.clone(),
                    Datum::Int(i) => Numeric::from_i64(*i),
                    _ => continue,
                };
                let term = if *n == 1 {
                    v
                } else {
                    v.mul(&Numeric::from_i64(*n as i64))
                };
                s = Some(match s {
                    Some(acc) => acc.add(&term),
                    None => term,
                });
            }
            Ok(s.map(Datum::Numeric).unwrap_or(Datum::Null))
        }
        // sum(float4) adds in float4, as Postgres's float4pl does.
        Type::Float4 => {
            let mut s = 0f32;
            for (d, n) in items {
                if let Datum::Float4(f) | Datum::Float8(f) = d {
                    s += f.0 as f32 * *n as f32;
                }
            }
            Ok(Datum::Float4(F64(s as f64)))
        }
        Type::Float8 => {
            let mut s = 0f64;
            for (d, n) in items {
                if let Datum::Float4(f) | Datum::Float8(f) = d {
                    s += f.0 * *n as f64;
                }
            }
            Ok(Datum::Float8(F64(s)))
        }
        other => Err(EvalError(format!(
            "cannot sum values of type {}",
            other.name()
        ))),
    }
}

fn best<'a>(func: AggFunc, items: impl Iterator<Item = &'a Datum>) -> Result<Datum, EvalError> {
    let want = if func == AggFunc::Min {
        Ordering::Less
    } else {
        Ordering::Greater
    };
    let mut best: Option<&Datum> = None;
    for d in items {
        if d.is_null() {
            continue;
        }
        best = match best {
            Some(b) if sql_cmp(d, b)? != want => Some(b),
            _ => Some(d),
        };
    }
    Ok(best.cloned().unwrap_or(Datum::Null))
}

/// Where each aggregate's inputs (filter, arguments, order keys) start in an
/// input row.
fn offsets(aggs: &[Aggregate]) -> Vec<usize> {
    let mut at = 0;
    aggs.iter()
        .map(|a| {
            let o = at;
            at += a.inputs().len();
            o
        })
        .collect()
}

/// The rows an aggregate sees: its FILTER passed; each as its argument and
/// order-key values, with multiplicity.
fn items<'r>(
    agg: &Aggregate,
    offset: usize,
    vals: &[(&'r Row, isize)],
) -> Vec<(&'r [Datum], i128)> {
    let has_filter = agg.filter.is_some();
    let width = agg.inputs().len();
    vals.iter()
        .filter(|(row, _)| !has_filter || row[offset] == Datum::Bool(true))
        .map(|(row, n)| {
            let from = offset + usize::from(has_filter);
            (&row[from..offset + width], *n as i128)
        })
        .collect()
}

fn logical(func: AggFunc, items: impl Iterator<Item = bool>) -> Datum {
    let mut acc: Option<bool> = None;
    for b in items {
        acc = Some(match (acc, func) {
            (None, _) => b,
            (Some(a), AggFunc::BoolAnd) => a && b,
            (Some(a), _) => a || b,
        });
    }
    acc.map(Datum::Bool).unwrap_or(Datum::Null)
}

/// string_agg / json_agg over all of a group's values, in the aggregate's
/// ORDER BY (then by value, so the result does not depend on arrival order).
fn ordered(agg: &Aggregate, items: &[(&[Datum], i128)]) -> Result<Datum, EvalError> {
    let nargs = agg.args.len();
    let mut sorted: Vec<&(&[Datum], i128)> = items.iter().collect();
    sorted.sort_by(|a, b| {
        for (i, (_, desc, nulls_first)) in agg.order_by.iter().enumerate() {
            let (x, y) = (&a.0[nargs + i], &b.0[nargs + i]);
            let ord = match (x.is_null(), y.is_null()) {
                (true, true) => Ordering::Equal,
                (true, false) => {
                    if *nulls_first {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    }
                }
                (false, true) => {
                    if *nulls_first {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    }
                }
                _ => {
                    let o = sql_cmp(x, y).unwrap_or_else(|_| x.cmp(y));
                    if *desc {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        // Then by value, NULLs last, as Postgres sorts a DISTINCT input.
        match (a.0[0].is_null(), b.0[0].is_null()) {
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => a.0.cmp(b.0),
        }
    });
    let expanded = sorted
        .into_iter()
        .flat_map(|(v, n)| std::iter::repeat_n(*v, (*n).max(0) as usize));
    match agg.func {
        AggFunc::PercentileCont | AggFunc::PercentileDisc | AggFunc::Mode => {
            Ok(ordered_set(agg.func, &expanded.collect::<Vec<_>>()))
        }
        AggFunc::StringAgg => {
            let mut out: Option<String> = None;
            for v in expanded {
                let (Datum::Text(s), delim) = (&v[0], &v[1]) else {
                    continue;
                };
                match out.as_mut() {
                    None => out = Some(s.clone()),
                    Some(o) => {
                        if let Datum::Text(d) = delim {
                            o.push_str(d);
                        }
                        o.push_str(s);
                    }
                }
            }
            Ok(out.map(Datum::Text).unwrap_or(Datum::Null))
        }
        AggFunc::JsonObjectAgg | AggFunc::JsonbObjectAgg => {
            // json_object_agg writes `{ "k" : v, ... }`; jsonb_object_agg's
            // result is canonical jsonb, the last value of a key kept.
            let jsonb = agg.func == AggFunc::JsonbObjectAgg;
            let mut out = String::from(if jsonb { "{" } else { "{ " });
            let mut any = false;
            for v in expanded {
                if v[0].is_null() {
                    return Err(EvalError("field name must not be null".into()));
                }
                if any {
                    out.push_str(", ");
                }
                any = true;
                let mut key = String::new();
                v[0].write_json(&mut key);
                if key.starts_with('"') {
                    out.push_str(&key);
                } else {
                    Datum::Text(key).write_json(&mut out);
                }
                out.push_str(if jsonb { ": " } else { " : " });
                v[1].write_json(&mut out);
            }
            out.push_str(if jsonb { "}" } else { " }" });
            Ok(if !any {
                Datum::Null
            } else if jsonb {
                Datum::Json(crate::repr::json::to_jsonb(&out).map_err(EvalError)?)
            } else {
                Datum::Json(out)
            })
        }
        AggFunc::ArrayAgg => {
            // An array's to_json separates with ",".
            let parts: Vec<String> = expanded.map(|v| v[0].to_json_string()).collect();
            Ok(if parts.is_empty() {
                Datum::Null
            } else {
                Datum::Json(format!("[{}]", parts.join(",")))
            })
        }
        _ => {
            // json_agg writes ", " between elements, and a line break and a
            // space before each array or row after the first (Postgres's
            // json_agg_transfn); jsonb_agg's result is canonical jsonb.
            let structured = matches!(agg.input_type, Type::Array { .. } | Type::Record);
            let mut out = String::from("[");
            let mut any = false;
            for v in expanded {
                if any {
                    out.push_str(", ");
                    if structured && !v[0].is_null() {
                        out.push_str("\n ");
                    }
                }
                any = true;
                v[0].write_json(&mut out);
            }
            out.push(']');
            Ok(if !any {
                Datum::Null
            } else if agg.func == AggFunc::JsonbAgg {
                Datum::Json(crate::repr::json::to_jsonb(&out).map_err(EvalError)?)
            } else {
                Datum::Json(out)
            })
        }
    }
}

/// An ordered-set aggregate over its non-NULL values in order (each row as
/// `[x, fraction]`).
fn ordered_set(func: AggFunc, rows: &[&[Datum]]) -> Datum {
    let n = rows.len();
    if n == 0 {
        return Datum::Null;
    }
    let fraction = || match rows[0].get(1) {
        Some(Datum::Float8(F64(f))) => *f,
        _ => 0.0,
    };
    match func {
        AggFunc::PercentileCont => {
            let value = |i: usize| match &rows[i][0] {
                Datum::Float8(F64(v)) => *v,
                _ => 0.0,
            };
            let pos = fraction() * (n - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            let v = if lo == hi {
                value(lo)
            } else {
                value(lo) + (pos - lo as f64) * (value(hi) - value(lo))
            };
            Datum::Float8(F64(v))
        }
        AggFunc::PercentileDisc => {
            // The first row whose cumulative fraction reaches f.
            let i = ((fraction() * n as f64).ceil() as usize).saturating_sub(1);
            rows[i.min(n - 1)][0].clone()
        }
        _ => {
            let (mut best, mut best_n) = (&rows[0][0], 0);
            let mut i = 0;
            while i < n {
                let mut j = i;
                while j < n && rows[j][0] == rows[i][0] {
                    j += 1;
                }
                if j - i > best_n {
                    best = &rows[i][0];
                    best_n = j - i;
                }
                i = j;
            }
            best.clone()
        }
    }
}

fn single_error() -> EvalError {
    EvalError("more than one row returned by a subquery used as an expression".into())
}

/// A partial over aggregate input values: per aggregate `[value, non-NULL count]`.
pub fn partial(aggs: &[Aggregate], vals: &[(&Row, isize)]) -> Result<Row, EvalError> {
    let mut out = Vec::with_capacity(aggs.len() * 2);
    for (agg, offset) in aggs.iter().zip(offsets(aggs)) {
        let mut items = items(agg, offset, vals);
        if agg.func == AggFunc::CountStar {
            let n: i128 = items.iter().map(|(_, n)| *n).sum();
            out.extend([Datum::Int(n as i64), Datum::Int(n as i64)]);
            continue;
        }
        if agg.func == AggFunc::Single {
            let n: i128 = items.iter().map(|(_, n)| *n).sum();
            if n > 1 {
                return Err(single_error());
            }
            let v = items
                .first()
                .map(|(v, _)| v[0].clone())
                .unwrap_or(Datum::Null);
            out.extend([v, Datum::Int(n as i64)]);
            continue;
        }
        if !matches!(
            agg.func,
            AggFunc::JsonAgg
                | AggFunc::JsonbAgg
                | AggFunc::JsonObjectAgg
                | AggFunc::JsonbObjectAgg
                | AggFunc::ArrayAgg
        ) {
            items.retain(|(v, _)| !v[0].is_null());
        }
        if agg.distinct {
            // Distinct by SQL equality (1.5 is 1.50, -0 is 0), each value
            // shown in its least stored form.
            let mut set: BTreeMap<Vec<Datum>, &[Datum]> = BTreeMap::new();
            for (v, _) in &items {
                let shown = set.entry(key_form_of(v)).or_insert(v);
                if *v < *shown {
                    *shown = v;
                }
            }
            items = set.into_values().map(|v| (v, 1)).collect();
        }
        let count: i128 = items.iter().map(|(_, n)| *n).sum();
        let value = match agg.func {
            AggFunc::Count | AggFunc::CountStar => Datum::Int(count as i64),
            AggFunc::Sum | AggFunc::Avg => {
                let values: Vec<(&Datum, i128)> = items.iter().map(|(v, n)| (&v[0], *n)).collect();
                sum(&accumulator_type(&agg.input_type), &values)?
            }
            AggFunc::Min | AggFunc::Max => best(agg.func, items.iter().map(|(v, _)| &v[0]))?,
            AggFunc::BoolAnd | AggFunc::BoolOr => logical(
                agg.func,
                items.iter().map(|(v, _)| v[0] == Datum::Bool(true)),
            ),
            AggFunc::StringAgg
            | AggFunc::JsonAgg
            | AggFunc::JsonbAgg
            | AggFunc::JsonObjectAgg
            | AggFunc::JsonbObjectAgg
            | AggFunc::ArrayAgg
            | AggFunc::PercentileCont
            | AggFunc::PercentileDisc
            | AggFunc::Mode => ordered(agg, &items)?,
            AggFunc::Single => unreachable!("handled above"),
        };
        out.extend([value, Datum::Int(count as i64)]);
    }
    Ok(out)
}

/// Partials merged into one partial (each with its multiplicity).
pub fn merge(aggs: &[Aggregate], partials: &[(&Row, isize)]) -> Result<Row, EvalError> {
    let mut out = Vec::with_capacity(aggs.len() * 2);
    for (i, agg) in aggs.iter().enumerate() {
        let values: Vec<(&Datum, i128)> = partials
            .iter()
            .map(|(p, n)| (&p[2 * i], *n as i128))
            .collect();
        let count: i128 = partials
            .iter()
            .map(|(p, n)| int(&p[2 * i + 1]) * *n as i128)
            .sum();
        let value = match agg.func {
            AggFunc::CountStar | AggFunc::Count => {
                Datum::Int(values.iter().map(|(d, n)| int(d) * n).sum::<i128>() as i64)
            }
            AggFunc::Sum | AggFunc::Avg => {
                let nonnull: Vec<(&Datum, i128)> =
                    values.into_iter().filter(|(d, _)| !d.is_null()).collect();
                sum(&accumulator_type(&agg.input_type), &nonnull)?
            }
            AggFunc::Min | AggFunc::Max => best(agg.func, values.iter().map(|(d, _)| *d))?,
            AggFunc::BoolAnd | AggFunc::BoolOr => logical(
                agg.func,
                values
                    .iter()
                    .filter(|(d, _)| !d.is_null())
                    .map(|(d, _)| **d == Datum::Bool(true)),
            ),
            // Computed whole in one bucket: there is one partial to pass on.
            AggFunc::StringAgg
            | AggFunc::JsonAgg
            | AggFunc::JsonbAgg
            | AggFunc::JsonObjectAgg
            | AggFunc::JsonbObjectAgg
            | AggFunc::ArrayAgg
            | AggFunc::PercentileCont
            | AggFunc::PercentileDisc
            | AggFunc::Mode
            | AggFunc::Single => {
                if agg.func == AggFunc::Single && count > 1 {
                    return Err(single_error());
                }
                values
                    .first()
                    .map(|(d, _)| (*d).clone())
                    .unwrap_or(Datum::Null)
            }
        };
        out.extend([value, Datum::Int(count as i64)]);
    }
    Ok(out)
}

fn int(d: &Datum) -> i128 {
    match d {
        Datum::Int(i) => *i as i128,
        _ => 0,
    }
}

/// The aggregate values of a group from its top-level partial.
pub fn finish(aggs: &[Aggregate], p: &Row) -> Result<Row, EvalError> {
    let mut out = Vec::with_capacity(aggs.len());
    for (i, agg) in aggs.iter().enumerate() {
        let value = &p[2 * i];
        let count = int(&p[2 * i + 1]);
        out.push(match agg.func {
            AggFunc::CountStar
            | AggFunc::Count
            | AggFunc::Min
            | AggFunc::Max
            | AggFunc::BoolAnd
            | AggFunc::BoolOr
            | AggFunc::StringAgg
            | AggFunc::JsonAgg
            | AggFunc::JsonbAgg
            | AggFunc::JsonObjectAgg
            | AggFunc::JsonbObjectAgg
            | AggFunc::ArrayAgg
            | AggFunc::PercentileCont
            | AggFunc::PercentileDisc
            | AggFunc::Mode
            | AggFunc::Single => value.clone(),
            _ if count == 0 || value.is_null() => Datum::Null,
            AggFunc::Sum => match (value, &agg.output_type) {
                (Datum::Int(s), Type::Numeric) => Datum::Numeric(Numeric::from_i64(*s)),
                _ => value.clone(),
            },
            AggFunc::Avg => match value {
                Datum::Int(s) => Datum::Numeric(
                    Numeric::from_i64(*s)
                        .div(&Numeric::from_i64(count as i64))
                        .map_err(|e| EvalError(e.to_string()))?,
                ),
                Datum::Numeric(s) => Datum::Numeric(
                    s.div(&Numeric::from_i64(count as i64))
                        .map_err(|e| EvalError(e.to_string()))?,
                ),
                Datum::Float4(f) | Datum::Float8(f) => Datum::Float8(F64(f.0 / count as f64)),
                other => other.clone(),
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(func: AggFunc, input_type: Type, output_type: Type, distinct: bool) -> Aggregate {
        Aggregate {
            func,
            args: if func == AggFunc::CountStar {
                vec![]
            } else {
                vec![Expr::Column(0)]
            },
            order_by: vec![],
            filter: None,
            input_type,
            output_type,
            distinct,
        }
    }

    #[test]
    fn partials_merge_to_the_same_answer_as_one_pass() {
        let aggs = vec![
            agg(AggFunc::CountStar, Type::Unknown, Type::Int8, false),
            agg(AggFunc::Count, Type::Int4, Type::Int8, false),
            agg(AggFunc::Sum, Type::Int4, Type::Int8, false),
            agg(AggFunc::Avg, Type::Int4, Type::Numeric, false),
            agg(AggFunc::Min, Type::Int4, Type::Int4, false),
            agg(AggFunc::Max, Type::Int4, Type::Int4, false),
        ];
        let rows: Vec<Row> = [Some(3), None, Some(4), Some(3), Some(-7)]
            .iter()
            .map(|v| vec![v.map(Datum::Int).unwrap_or(Datum::Null); 6])
            .collect();
        let all: Vec<(&Row, isize)> = rows.iter().map(|r| (r, 1)).collect();
        let whole = finish(
            &aggs,
            &merge(&aggs, &[(&partial(&aggs, &all).unwrap(), 1)]).unwrap(),
        )
        .unwrap();
        let p1 = partial(&aggs, &all[..2]).unwrap();
        let p2 = partial(&aggs, &all[2..]).unwrap();
        let split = finish(&aggs, &merge(&aggs, &[(&p1, 1), (&p2, 1)]).unwrap()).unwrap();
        assert_eq!(whole, split);
        assert_eq!(whole[0], Datum::Int(5));
        assert_eq!(whole[1], Datum::Int(4));
        assert_eq!(whole[2], Datum::Int(3));
        assert_eq!(whole[3].to_json_string(), "0.75000000000000000000");
        assert_eq!(
            (whole[4].clone(), whole[5].clone()),
            (Datum::Int(-7), Datum::Int(4))
        );
        // Two identical partials arrive as one row with multiplicity 2.
        let doubled = finish(&aggs, &merge(&aggs, &[(&p1, 2)]).unwrap()).unwrap();
        assert_eq!(doubled[0], Datum::Int(4));
    }

    #[test]
    fn empty_and_all_null_groups() {
        let aggs = vec![
            agg(AggFunc::Sum, Type::Int8, Type::Numeric, false),
            agg(AggFunc::Count, Type::Int8, Type::Int8, true),
        ];
        let rows = [vec![Datum::Null, Datum::Null]];
        let all: Vec<(&Row, isize)> = rows.iter().map(|r| (r, 3)).collect();
        let out = finish(&aggs, &partial(&aggs, &all).unwrap()).unwrap();
        assert_eq!(out, vec![Datum::Null, Datum::Int(0)]);
    }
}
