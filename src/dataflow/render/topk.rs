//! `TopK`: ORDER BY ... LIMIT/OFFSET, maintained hierarchically like `Reduce`.
//!
//! ```text
//! row ─ bucket = hash(row) % 4096 ─▶ best offset+limit rows per (group, bucket)
//!     ─ bucket % 64 ───────────────▶ best offset+limit rows per (group, bucket / 64)
//!     ─────────────────────────────▶ rows offset..offset+limit per group
//! ```
//! A changed row re-sorts one bucket of about n/4096 rows and at most 64 small
//! candidate lists above it, instead of the whole input. Without a LIMIT every
//! row survives, so the buckets are skipped.
//!
//! Order: the ORDER BY terms (NULLs last ascending and first descending, unless
//! NULLS FIRST/LAST says otherwise), then the whole row, so rows that tie on
//! the ORDER BY are chosen deterministically — one of the orders Postgres may
//! produce.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use super::Coll;
use super::Time;
use crate::repr::{Datum, Row};
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

/// Keeps rows `skip..skip+take` (counting multiplicities) of `rows` in `order`.
fn select(
    order: &[SortKey],
    rows: &[(&Row, isize)],
    skip: u64,
    take: Option<u64>,
    out: &mut Vec<(Row, isize)>,
) {
    let mut sorted: Vec<(&Row, isize)> = rows.iter().filter(|(_, n)| *n > 0).cloned().collect();
    sorted.sort_by(|a, b| compare(order, a.0, b.0));
    let mut position: u64 = 0;
    let end = take.map(|t| skip.saturating_add(t));
    for (row, n) in sorted {
        let (from, to) = (position, position + n as u64);
        position = to;
        let lo = from.max(skip);
        let hi = end.map_or(to, |e| to.min(e));
        if hi > lo {
            out.push((row.clone(), (hi - lo) as isize));
        }
        if end.is_some_and(|e| position >= e) {
            break;
        }
    }
}

pub fn render<'s, T: Time>(
    input: Coll<'s, T>,
    group: usize,
    order: Vec<SortKey>,
    limit: Option<u64>,
    offset: u64,
) -> Coll<'s, T> {
    // Key: the group columns, then (until the top) a bucket.
    let keyed = input.map(move |row| {
        let mut key: Row = row[..group].to_vec();
        key.push(Datum::Int(hash_of(&row) % LEVEL1_BUCKETS));
        (key, row)
    });
    let keyed = match limit {
        Some(limit) => {
            let keep = offset.saturating_add(limit);
            let prune = |c: differential_dataflow::VecCollection<'s, T, (Row, Row), isize>,
                         order: Vec<SortKey>| {
                c.reduce(
                    move |_k, rows: &[(&Row, isize)], out: &mut Vec<(Row, isize)>| {
                        select(&order, rows, 0, Some(keep), out)
                    },
                )
            };
            let level1 = prune(keyed, order.clone());
            let level2 = prune(
                level1.map(|(mut k, row)| {
                    if let Some(Datum::Int(b)) = k.last_mut() {
                        *b %= LEVEL2_BUCKETS;
                    }
                    (k, row)
                }),
                order.clone(),
            );
            level2
        }
        None => keyed,
    };
    keyed
        .map(|(mut k, row)| {
            k.pop();
            (k, row)
        })
        .reduce(
            move |_k, rows: &[(&Row, isize)], out: &mut Vec<(Row, isize)>| {
                select(&order, rows, offset, limit, out)
            },
        )
        .map(|(_, row)| row)
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
        let input: Vec<(&Row, isize)> =
            vec![(&rows[0], 1), (&rows[1], 2), (&rows[2], 1), (&rows[3], 1)];
        let mut out = Vec::new();
        select(&order, &input, 1, Some(3), &mut out);
        // NULL first (descending), then 3, 3, 2, 1: skip one, keep three.
        assert_eq!(out, vec![(rows[1].clone(), 2), (rows[3].clone(), 1)]);
    }
}
