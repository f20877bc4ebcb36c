//! `TopK`: ORDER BY ... LIMIT/OFFSET, maintained hierarchically like `Reduce`.
//!
//! ```text
//! row ─ bucket = hash(row) % 4096 ─▶ best offset+limit rows per (group, bucket)
//!     ─ bucket % 64 ───────────────▶ best offset+limit rows per (group, bucket / 64)
//!     ─────────────────────────────▶ rows offset..offset+limit per group
//! ```
//! A changed row re-sorts one bucket of about n/4096 rows and at most 64 small
//! candidate lists above it, instead of the whole input. Without a LIMIT every
//! row survives, so the buckets are skipped. Every level keeps its rows
//! packed, in flat arrangements.
//!
//! Order: the ORDER BY terms (NULLs last ascending and first descending, unless
//! NULLS FIRST/LAST says otherwise), then the whole row, so rows that tie on
//! the ORDER BY are chosen deterministically — one of the orders Postgres may
//! produce.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use super::{arrange_flat, reduce_flat, Arr, Coll, Time};
use crate::repr::{key_form_of, Datum, PackedRow, Row};
use crate::sql::expr::sql_cmp;
use crate::sql::plan::SortKey;

const LEVEL1_BUCKETS: i64 = 4096;
const LEVEL2_BUCKETS: i64 = 64;

pub fn compare(order: &[SortKey], a: &Row, b: &Row) -> Ordering {
    for k in order {
        let (x, y) = (&a[k.column], &b[k.column]);
        let ord = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => {
                if k.nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (false, true) => {
                if k.nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (false, false) => {
                let o = sql_cmp(x, y).unwrap_or_else(|_| x.cmp(y));
                if k.desc {
                    o.reverse()
                } else {
                    o
                }
            }
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.cmp(b)
}

fn hash_of(row: &Row) -> i64 {
    let mut h = std::hash::DefaultHasher::new();
    row.hash(&mut h);
    (h.finish() >> 1) as i64
}

/// Keeps rows `skip..skip+take` (counting multiplicities) of `rows` in
/// `order`: the indexes into `rows` of those kept, with their counts.
fn select(
    order: &[SortKey],
    rows: &[(Row, isize)],
    skip: u64,
    take: Option<u64>,
) -> Vec<(usize, isize)> {
    let mut sorted: Vec<usize> = (0..rows.len()).filter(|i| rows[*i].1 > 0).collect();
    sorted.sort_by(|a, b| compare(order, &rows[*a].0, &rows[*b].0));
    let mut position: u64 = 0;
    let end = take.map(|t| skip.saturating_add(t));
    let mut out = Vec::new();
    for i in sorted {
        let n = rows[i].1;
        let (from, to) = (position, position + n as u64);
        position = to;
        let lo = from.max(skip);
        let hi = end.map_or(to, |e| to.min(e));
        if hi > lo {
            out.push((i, (hi - lo) as isize));
        }
        if end.is_some_and(|e| position >= e) {
            break;
        }
    }
    out
}

/// A reduce over packed rows that keeps those `select` keeps.
fn keep<'s, T: Time>(
    rows: Arr<'s, T>,
    order: Vec<SortKey>,
    skip: u64,
    take: Option<u64>,
) -> Arr<'s, T> {
    reduce_flat(rows, "TopK", move |_key, packed, out| {
        let rows: Vec<(Row, isize)> = packed.iter().map(|(r, n)| (r.unpack(), *n)).collect();
        for (i, n) in select(&order, &rows, skip, take) {
            out.push((packed[i].0.to_row(), n));
        }
    })
}

/// `rows` keyed anew: `key` maps a key's values to the next level's.
fn rekey<'s, T: Time>(rows: Arr<'s, T>, key: impl Fn(&mut Row) + 'static) -> Arr<'s, T> {
    let keyed = rows.as_collection(move |k, row| {
        let mut k = k.unpack();
        key(&mut k);
        (PackedRow::pack(&k), row.to_row())
    });
    arrange_flat(keyed, "ArrangeTopK")
}

/// Rows are kept packed and flat at every level: the first holds every
/// input row.
pub fn render<'s, T: Time>(
    input: Coll<'s, T>,
    group: usize,
    order: Vec<SortKey>,
    limit: Option<u64>,
    offset: u64,
) -> Coll<'s, T> {
    // Key: the group columns in the form they compare by (`1.50` is `1.5`,
    // `-0` is `0`), then (with a LIMIT, until the top) a bucket. Rows keep
    // their own values.
    let bucketed = limit.is_some();
    let keyed = input.map(move |row| {
        let mut key = key_form_of(&row[..group]);
        if bucketed {
            key.push(Datum::Int(hash_of(&row) % LEVEL1_BUCKETS));
        }
        (PackedRow::pack(&key), PackedRow::pack(&row))
    });
    let mut top = arrange_flat(keyed, "ArrangeTopK");
    if let Some(limit) = limit {
        let most = Some(offset.saturating_add(limit));
        let level1 = keep(top, order.clone(), 0, most);
        let level2 = rekey(level1, |k| {
            if let Some(Datum::Int(b)) = k.last_mut() {
                *b %= LEVEL2_BUCKETS;
            }
        });
        let level2 = keep(level2, order.clone(), 0, most);
        top = rekey(level2, |k| {
            k.pop();
        });
    }
    keep(top, order, offset, limit).as_collection(|_, row| row.unpack())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_counts_copies_and_honours_offset() {
        let order = vec![SortKey {
            column: 0,
            desc: true,
            nulls_first: true,
        }];
        let rows: Vec<Row> = vec![
            vec![Datum::Int(1)],
            vec![Datum::Int(3)],
            vec![Datum::Null],
            vec![Datum::Int(2)],
        ];
        let input: Vec<(Row, isize)> = vec![
            (rows[0].clone(), 1),
            (rows[1].clone(), 2),
            (rows[2].clone(), 1),
            (rows[3].clone(), 1),
        ];
        // NULL first (descending), then 3, 3, 2, 1: skip one, keep three.
        assert_eq!(select(&order, &input, 1, Some(3)), vec![(1, 2), (3, 1)]);
    }
}
