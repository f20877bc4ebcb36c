//! `Filter`: keeps rows for which every predicate is true (NULL drops the row).

use super::Time;
use super::{split, Coll, Errs};
use crate::sql::expr::Expr;

pub fn render<'s, T: Time>(
    input: Coll<'s, T>,
    predicates: Vec<Expr>,
) -> (Coll<'s, T>, Errs<'s, T>) {
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
