//! `Project`: one output value per expression.

use super::{Coll, Reporter};
use crate::repr::Row;
use crate::sql::expr::Expr;

/// Evaluates `exprs` over `row`, or reports the first error.
pub fn eval_all(exprs: &[Expr], row: &[crate::repr::Datum], reporter: &Reporter) -> Option<Row> {
    let mut out = Vec::with_capacity(exprs.len());
    for e in exprs {
        match e.eval(row) {
            Ok(d) => out.push(d),
            Err(err) => {
                reporter.report(err);
                return None;
            }
        }
    }
    Some(out)
}

pub fn render<'s>(input: Coll<'s>, exprs: Vec<Expr>, reporter: Reporter) -> Coll<'s> {
    input.flat_map(move |row| eval_all(&exprs, &row, &reporter))
}
