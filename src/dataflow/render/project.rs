//! `Project`: one output value per expression.

use super::Time;
use super::{split, Coll, Errs};
use crate::repr::{Datum, Row};
use crate::sql::expr::Expr;

/// Evaluates `exprs` over `row`, or gives the first error.
pub fn eval_all(exprs: &[Expr], row: &[Datum]) -> Result<Row, String> {
    exprs
        .iter()
        .map(|e| e.eval(row).map_err(|err| err.0))
        .collect()
}

pub fn render<'s, T: Time>(input: Coll<'s, T>, exprs: Vec<Expr>) -> (Coll<'s, T>, Errs<'s, T>) {
    split(input.map(move |row| eval_all(&exprs, &row)))
}
