//! `Reduce`: GROUP BY keys with aggregates, maintained hierarchically.
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
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};

use differential_dataflow::VecCollection;

use super::project::eval_all;
use super::{Coll, Reporter};
use crate::repr::{Datum, Numeric, Row, Type, F64};
use crate::sql::expr::{sql_cmp, EvalError, Expr};
use crate::sql::plan::{AggFunc, Aggregate};

/// Buckets of the first level; the second level has `LEVEL2_BUCKETS`.
const LEVEL1_BUCKETS: u64 = 4096;
const LEVEL2_BUCKETS: u64 = 64;

type Keyed<'s> = VecCollection<'s, u64, (Row, Row), isize>;

pub fn render<'s>(
    input: Coll<'s>,
    keys: Vec<Expr>,
    aggs: Vec<Aggregate>,
    unit: VecCollection<'s, u64, (), isize>,
    reporter: Reporter,
) -> Coll<'s> {
    let global = keys.is_empty();
    let inputs: Vec<Expr> = aggs.iter().map(|a| a.input.clone()).collect();
    let spread = !aggs.iter().any(|a| a.distinct);
    let r = reporter.clone();
    // Key rows carry the bucket as their last value until the top level.
    let bucketed: Keyed<'s> = input.flat_map(move |row| {
        let mut k = eval_all(&keys, &row, &r)?;
        let v = eval_all(&inputs, &row, &r)?;
        let bucket = if spread {
            hash_of(&v) % LEVEL1_BUCKETS
        } else {
            0
        };
        k.push(Datum::Int(bucket as i64));
        Some((k, v))
    });
    let level1 = reduce_level(bucketed, &aggs, &reporter, Partial::FromValues);
    let level2 = reduce_level(
        level1.map(|(mut k, p)| {
            if let Some(Datum::Int(b)) = k.last_mut() {
                *b %= LEVEL2_BUCKETS as i64;
            }
            (k, p)
        }),
        &aggs,
        &reporter,
        Partial::Merge,
    );
    let top = reduce_level(
        level2.map(|(mut k, p)| {
            k.pop();
            (k, p)
        }),
        &aggs,
        &reporter,
        Partial::Merge,
    );
    let finish_aggs = aggs.clone();
    let result = top.flat_map(move |(mut k, p)| match finish(&finish_aggs, &p) {
        Ok(v) => {
            k.extend(v);
            Some(k)
        }
        Err(e) => {
            reporter.report(e);
            None
        }
    });
    if !global {
        return result;
    }
    let defaults: Row = aggs
        .iter()
        .map(|a| match a.func {
            AggFunc::CountStar | AggFunc::Count => Datum::Int(0),
            _ => Datum::Null,
        })
        .collect();
    let missing = unit.concat(result.clone().map(|_| ()).negate());
    result.concat(missing.map(move |()| defaults.clone()))
}

fn hash_of(row: &Row) -> u64 {
    // SipHash with fixed keys: the same row lands in the same bucket on every worker.
    let mut h = std::hash::DefaultHasher::new();
    row.hash(&mut h);
    h.finish()
}

#[derive(Clone, Copy)]
enum Partial {
    /// Inputs are aggregate input values.
    FromValues,
    /// Inputs are partials of a lower level.
    Merge,
}

fn reduce_level<'s>(
    input: Keyed<'s>,
    aggs: &[Aggregate],
    reporter: &Reporter,
    mode: Partial,
) -> Keyed<'s> {
    let aggs = aggs.to_vec();
    let reporter = reporter.clone();
    input.reduce(
        move |_key, vals: &[(&Row, isize)], out: &mut Vec<(Row, isize)>| {
            let result = match mode {
                Partial::FromValues => partial(&aggs, vals),
                Partial::Merge => merge(&aggs, vals),
            };
            match result {
                Ok(p) => out.push((p, 1)),
                Err(e) => reporter.report(e),
            }
        },
    )
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
        Type::Float4 | Type::Float8 => {
            let mut s = 0f64;
            for (d, n) in items {
                if let Datum::Float4(f) | Datum::Float8(f) = d {
                    s += f.0 * *n as f64;
                }
            }
            Ok(if *acc == Type::Float4 {
                Datum::Float4(F64(s as f32 as f64))
            } else {
                Datum::Float8(F64(s))
            })
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

/// A partial over aggregate input values: per aggregate `[value, non-NULL count]`.
pub fn partial(aggs: &[Aggregate], vals: &[(&Row, isize)]) -> Result<Row, EvalError> {
    let mut out = Vec::with_capacity(aggs.len() * 2);
    for (i, agg) in aggs.iter().enumerate() {
        let mut items: Vec<(&Datum, i128)> =
            vals.iter().map(|(row, n)| (&row[i], *n as i128)).collect();
        if agg.func == AggFunc::CountStar {
            let n: i128 = items.iter().map(|(_, n)| *n).sum();
            out.extend([Datum::Int(n as i64), Datum::Int(n as i64)]);
            continue;
        }
        items.retain(|(d, _)| !d.is_null());
        if agg.distinct {
            let set: BTreeSet<&Datum> = items.iter().map(|(d, _)| *d).collect();
            items = set.into_iter().map(|d| (d, 1)).collect();
        }
        let count: i128 = items.iter().map(|(_, n)| *n).sum();
        let value = match agg.func {
            AggFunc::Count | AggFunc::CountStar => Datum::Int(count as i64),
            AggFunc::Sum | AggFunc::Avg => sum(&accumulator_type(&agg.input_type), &items)?,
            AggFunc::Min | AggFunc::Max => best(agg.func, items.iter().map(|(d, _)| *d))?,
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
            AggFunc::CountStar | AggFunc::Count | AggFunc::Min | AggFunc::Max => value.clone(),
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
            input: Expr::Column(0),
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
