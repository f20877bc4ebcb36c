//! `Union` (UNION ALL), and `SetOp`: INTERSECT and EXCEPT, with and without ALL.
//!
//! A set operation counts each distinct row on both sides and derives the
//! output multiplicity from the two counts, as SQL defines it:
//!
//! | operation     | copies of a row seen `l` times left, `r` times right |
//! |---------------|------------------------------------------------------|
//! | INTERSECT     | 1 if l > 0 and r > 0                                 |
//! | INTERSECT ALL | min(l, r)                                            |
//! | EXCEPT        | 1 if l > 0 and r = 0                                 |
//! | EXCEPT ALL    | max(l − r, 0)                                        |
//!
//! (UNION is a UNION ALL under `Distinct`.) Rows compare as in DISTINCT:
//! NULLs are equal to each other, and values by Postgres's `=` (`-0` is `0`,
//! `1.5` is `1.50`); the left side's form of a row is the one shown.

use super::{arrange_flat, by_value, reduce_flat, shown, Coll, Time};
use crate::repr::{Datum, PackedRow};
use crate::sql::plan::SetOpKind;

pub fn union<'s, T: Time>(mut inputs: Vec<Coll<'s, T>>) -> Coll<'s, T> {
    let first = inputs.remove(0);
    inputs.into_iter().fold(first, |acc, c| acc.concat(c))
}

pub fn render<'s, T: Time>(
    kind: SetOpKind,
    all: bool,
    left: Coll<'s, T>,
    right: Coll<'s, T>,
) -> Coll<'s, T> {
    // Each row by its key form (see `by_value`), with the side it came
    // from and, where the key form differs, the row itself.
    let side = |rows: Coll<'s, T>, left: bool| {
        rows.map(move |r| {
            let (key, own) = by_value(&r);
            let mut tagged = vec![Datum::Bool(left)];
            if !own.as_bytes().is_empty() {
                tagged.extend(r);
            }
            (key, PackedRow::pack(&tagged))
        })
    };
    let tagged = arrange_flat(side(left, true).concat(side(right, false)), "Sides");
    reduce_flat(tagged, "SetOp", move |_row, sides, out| {
        let (mut l, mut r) = (0isize, 0isize);
        let mut form = None;
        for (tagged, n) in sides {
            let mut values = tagged.unpack();
            let left = values.first() == Some(&Datum::Bool(true));
            if left {
                l += n;
            } else {
                r += n;
            }
            // The first left row present shows (only left rows are output).
            if left && *n > 0 && form.is_none() {
                values.remove(0);
                form = Some(PackedRow::pack(&values));
            }
        }
        let copies = match (kind, all) {
            (SetOpKind::Intersect, false) => isize::from(l > 0 && r > 0),
            (SetOpKind::Intersect, true) => l.min(r),
            (SetOpKind::Except, false) => isize::from(l > 0 && r <= 0),
            (SetOpKind::Except, true) => (l - r).max(0),
        };
        if let (true, Some(form)) = (copies > 0, form) {
            out.push((form, copies));
        }
    })
    .as_collection(shown)
}
