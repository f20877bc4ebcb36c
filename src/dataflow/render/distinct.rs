//! `Distinct`: each row once.
//!
//! Rows are packed and arranged flat, by their key form (rows equal under
//! Postgres's `=` are one row, shown as one of them); the reduce that keeps
//! one copy of each writes its output arrangement in the same layout.

use super::{arrange_flat, by_value, reduce_flat, shown, Coll, Time};

pub fn render<T: Time>(input: Coll<'_, T>) -> Coll<'_, T> {
    let rows = arrange_flat(input.map(|r| by_value(&r)), "Rows");
    reduce_flat(rows, "Distinct", |_key, rows, out| {
        if rows.iter().map(|(_, n)| n).sum::<isize>() > 0 {
            // The first (by bytes) of the forms present shows.
            if let Some((row, _)) = rows.iter().find(|(_, n)| *n > 0) {
                out.push((row.to_row(), 1));
            }
        }
    })
    .as_collection(shown)
}
