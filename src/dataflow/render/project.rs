//! `Project`'s evaluation (its rendering is a stage: `Staged` in mod.rs);
//! `FlatMap`: the rows set-returning functions produce for each row.

use super::Time;
use super::{Coll, ErrList, Staged};
use crate::repr::{Datum, Row};
use crate::sql::expr::Expr;
use crate::sql::srf::{self, Srf};

/// Evaluates `exprs` over `row`, or gives the first error.
pub fn eval_all(exprs: &[Expr], row: &[Datum]) -> Result<Row, String> {
    exprs
        .iter()
        .map(|e| e.eval(row).map_err(|err| err.0))
        .collect()
}

/// Each row followed by each row its set-returning functions produce,
/// zipped (see `Plan::FlatMap`).
pub fn flat_map<'s, T: Time>(
    input: Staged<'s, T>,
    funcs: Vec<Srf>,
    ordinality: bool,
    outer: bool,
) -> (Coll<'s, T>, ErrList<'s, T>) {
    input.eval(
        move |row, made, failed| match expand(&funcs, &row, ordinality, outer) {
            Ok(rows) => made.extend(rows),
            Err(e) => failed.push(e),
        },
    )
}

fn expand(funcs: &[Srf], row: &Row, ordinality: bool, outer: bool) -> Result<Vec<Row>, String> {
    let mut produced = Vec::with_capacity(funcs.len());
    for f in funcs {
        let args = eval_all(&f.args, row)?;
        produced.push(srf::rows(&f.kind, &args).map_err(|e| e.0)?);
    }
    let n = produced.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(n.max(1));
    for i in 0..n {
        let mut r = row.clone();
        for (f, rows) in funcs.iter().zip(&produced) {
            match rows.get(i) {
                Some(values) => r.extend(values.iter().cloned()),
                None => r.extend(std::iter::repeat_n(Datum::Null, f.types.len())),
            }
        }
        if ordinality {
            r.push(Datum::Int(i as i64 + 1));
        }
        out.push(r);
    }
    if n == 0 && outer {
        let mut r = row.clone();
        let width: usize =
            funcs.iter().map(|f| f.types.len()).sum::<usize>() + usize::from(ordinality);
        r.extend(std::iter::repeat_n(Datum::Null, width));
        out.push(r);
    }
    Ok(out)
}
