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
//! NULLs are equal to each other.

use super::Coll;
use super::Time;
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
    let tagged = left.map(|r| (r, true)).concat(right.map(|r| (r, false)));
    tagged
        .reduce(
            move |_row, sides: &[(&bool, isize)], out: &mut Vec<((), isize)>| {
                let (mut l, mut r) = (0isize, 0isize);
                for (left, n) in sides {
                    if **left {
                        l += n;
                    } else {
                        r += n;
                    }
                }
                let copies = match (kind, all) {
                    (SetOpKind::Intersect, false) => isize::from(l > 0 && r > 0),
                    (SetOpKind::Intersect, true) => l.min(r),
                    (SetOpKind::Except, false) => isize::from(l > 0 && r <= 0),
                    (SetOpKind::Except, true) => (l - r).max(0),
                };
                if copies > 0 {
                    out.push(((), copies));
                }
            },
        )
        .map(|(row, ())| row)
}
