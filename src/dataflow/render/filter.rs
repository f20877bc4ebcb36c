//! `Filter`: keeps rows for which every predicate is true (NULL drops the row).

use super::{Coll, Reporter};
use crate::sql::expr::Expr;

pub fn render<'s>(input: Coll<'s>, predicates: Vec<Expr>, reporter: Reporter) -> Coll<'s> {
    input.filter(move |row| {
        for p in &predicates {
            match p.eval_predicate(row) {
                Ok(true) => {}
                Ok(false) => return false,
                Err(e) => {
                    reporter.report(e);
                    return false;
                }
            }
        }
        true
    })
}
