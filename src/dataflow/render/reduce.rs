//! `Reduce`: GROUP BY keys with aggregates, recomputed per changed group.
//!
//! Each group's aggregates are recomputed from the group's current values when
//! any of them changes. A global aggregate (no keys) has exactly one row even
//! over empty input, as in SQL: the unit collection minus "a group exists"
//! supplies the default row (`count` 0, others NULL).

use std::cmp::Ordering;
use std::collections::BTreeSet;

use differential_dataflow::VecCollection;

use super::project::eval_all;
use super::{Coll, Reporter};
use crate::repr::{Datum, Numeric, Row, Type, F64};
use crate::sql::expr::{sql_cmp, EvalError};
use crate::sql::plan::{AggFunc, Aggregate};

pub fn render<'s>(
    input: Coll<'s>,
    keys: Vec<Expr>,
    aggs: Vec<Aggregate>,
    unit: VecCollection<'s, u64, (), isize>,
    reporter: Reporter,
) -> Coll<'s> {
    let global = keys.is_empty();
    let inputs: Vec<Expr> = aggs.iter().map(|a| a.input.clone()).collect();
    let key_reporter = reporter.clone();
    let keyed = input.flat_map(move |row| {
        let k = eval_all(&keys, &row, &key_reporter)?;
        let v = eval_all(&inputs, &row, &key_reporter)?;
        Some((k, v))
    });
    let agg_list = aggs.clone();
    let result = keyed
        .reduce(
            move |_key, vals: &[(&Row, isize)], out: &mut Vec<(Row, isize)>| match compute(
                &agg_list, vals,
            ) {
                Ok(row) => out.push((row, 1)),
                Err(e) => reporter.report(e),
            },
        )
        .map(|(mut k, v)| {
            k.extend(v);
            k
        });
    if !global {
        return result;
    }
    let defaults: Row = aggs
        .iter()
        .map(|a| {
            if matches!(a.func, AggFunc::CountStar | AggFunc::Count) {
                Datum::Int(0)
            } else {
                Datum::Null
            }
        })
        .collect();
    let missing = unit.concat(result.clone().map(|_| ()).negate());
    result.concat(missing.map(move |()| defaults.clone()))
}

use crate::sql::expr::Expr;

fn int_out_of_range(ty: &Type) -> EvalError {
    EvalError(format!(
        "{} out of range",
        if *ty == Type::Int8 {
            "bigint"
        } else {
            "integer"
        }
    ))
}

/// Computes every aggregate over one group's values (with multiplicities).
pub fn compute(aggs: &[Aggregate], vals: &[(&Row, isize)]) -> Result<Row, EvalError> {
    let mut out = Vec::with_capacity(aggs.len());
    for (i, agg) in aggs.iter().enumerate() {
        let mut items: Vec<(&Datum, i128)> =
            vals.iter().map(|(row, n)| (&row[i], *n as i128)).collect();
        if agg.func == AggFunc::CountStar {
            out.push(Datum::Int(
                items.iter().map(|(_, n)| *n).sum::<i128>() as i64
            ));
            continue;
        }
        items.retain(|(d, _)| !d.is_null());
        if agg.distinct {
            let set: BTreeSet<&Datum> = items.iter().map(|(d, _)| *d).collect();
            items = set.into_iter().map(|d| (d, 1)).collect();
        }
        let count: i128 = items.iter().map(|(_, n)| *n).sum();
        if agg.func == AggFunc::Count {
            out.push(Datum::Int(count as i64));
            continue;
        }
        if items.is_empty() {
            out.push(Datum::Null);
            continue;
        }
        out.push(match agg.func {
            AggFunc::Min | AggFunc::Max => {
                let want = if agg.func == AggFunc::Min {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
                let mut best = items[0].0;
                for (d, _) in &items[1..] {
                    if sql_cmp(d, best)? == want {
                        best = d;
                    }
                }
                best.clone()
            }
            AggFunc::Sum | AggFunc::Avg => {
                let sum = sum(&agg.input_type, &items)?;
                match (agg.func, sum) {
                    (AggFunc::Sum, Datum::Int(s)) if agg.output_type == Type::Numeric => {
                        Datum::Numeric(Numeric::from_i64(s))
                    }
                    (AggFunc::Sum, s) => s,
                    (_, Datum::Int(s)) => Datum::Numeric(
                        Numeric::from_i64(s)
                            .div(&Numeric::from_i64(count as i64))
                            .map_err(|e| EvalError(e.to_string()))?,
                    ),
                    (_, Datum::Numeric(s)) => Datum::Numeric(
                        s.div(&Numeric::from_i64(count as i64))
                            .map_err(|e| EvalError(e.to_string()))?,
                    ),
                    (_, Datum::Float8(f) | Datum::Float4(f)) => {
                        Datum::Float8(F64(f.0 / count as f64))
                    }
                    (_, other) => other,
                }
            }
            AggFunc::Count | AggFunc::CountStar => unreachable!("handled above"),
        });
    }
    Ok(out)
}

/// Sum of values with multiplicities, in the accumulator type Postgres uses.
fn sum(input_type: &Type, items: &[(&Datum, i128)]) -> Result<Datum, EvalError> {
    match input_type {
        Type::Int2 | Type::Int4 | Type::Int8 => {
            let mut s: i128 = 0;
            for (d, n) in items {
                if let Datum::Int(v) = d {
                    s = s
                        .checked_add(*v as i128 * n)
                        .ok_or_else(|| int_out_of_range(&Type::Int8))?;
                }
            }
            if *input_type == Type::Int8 {
                // sum(int8) is numeric: exact however large.
                return Numeric::parse(&s.to_string())
                    .map(Datum::Numeric)
                    .map_err(|e| EvalError(e.to_string()));
            }
            i64::try_from(s)
                .map(Datum::Int)
                .map_err(|_| int_out_of_range(&Type::Int8))
        }
        Type::Numeric => {
            let mut s = Numeric::zero();
            let mut scale_seen = false;
            for (d, n) in items {
                if let Datum::Numeric(v) = d {
                    let term = if *n == 1 {
                        v.clone()
                    } else {
                        v.mul(&Numeric::from_i64(*n as i64))
                    };
                    s = if scale_seen { s.add(&term) } else { term };
                    scale_seen = true;
                }
            }
            Ok(Datum::Numeric(s))
        }
        Type::Float4 | Type::Float8 => {
            let mut s = 0f64;
            for (d, n) in items {
                if let Datum::Float4(f) | Datum::Float8(f) = d {
                    s += f.0 * *n as f64;
                }
            }
            Ok(if *input_type == Type::Float4 {
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
