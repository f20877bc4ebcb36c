//! `Filter`: keeps rows for which every predicate is true (NULL drops the row).

use super::{split, Coll, Errs};
use crate::sql::expr::Expr;

pub fn render<'s>(input: Coll<'s>, predicates: Vec<Expr>) -> (Coll<'s>, Errs<'s>) {
    split(input.flat_map(move |row| {
        for p in &predicates {
            match p.eval_predicate(&row) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(e.0)),
            }
        }
        Some(Ok(row))
    }))
}
