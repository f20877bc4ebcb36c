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
//! Over commit times, which are totally ordered, a LIMIT is kept without
//! levels ([`render_ordered`]): the rows go by group to one worker, which
//! keeps each group's rows in order (a change is O(log n)) and, when the
//! frontier passes a time, compares the group's rows `offset..offset+limit`
//! before and after its changes: one operator per step instead of three
//! arranged levels.
//!
//! Order: the ORDER BY terms (NULLs last ascending and first descending, unless
//! NULLS FIRST/LAST says otherwise), then the whole row, so rows that tie on
//! the ORDER BY are chosen deterministically — one of the orders Postgres may
//! produce.

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use super::{arrange_flat, reduce_flat, Arr, Coll, Time};
use crate::dataflow::memory::{self, Measured};
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
    if let (true, Some(limit)) = (T::TOTALLY_ORDERED, limit) {
        return render_ordered(input, group, order, limit, offset);
    }
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

/// A row in a group's order ([`compare`]); every row of an operator
/// shares one copy of the ORDER BY.
#[derive(Clone, Debug)]
struct Ranked {
    row: Row,
    order: Rc<[SortKey]>,
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.row == other.row
    }
}

impl Eq for Ranked {}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        compare(&self.order, &self.row, &other.row)
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A group's rows in order, each with its count (none zero).
type Ordered = BTreeMap<Ranked, isize>;

/// What a kept row costs: its entry in a B-tree node (with room for the
/// node's slack) and its values.
fn row_bytes(row: &Row) -> usize {
    (std::mem::size_of::<Ranked>() + std::mem::size_of::<isize>()) * 3 / 2
        + std::mem::size_of_val(row.as_slice())
        + row.iter().map(super::extremes::datum_heap).sum::<usize>()
}

/// Rows `skip..skip+take` of a group, counting copies: what it shows.
fn window(rows: &Ordered, skip: u64, take: u64) -> Vec<(Row, isize)> {
    let end = skip.saturating_add(take);
    let mut position: u64 = 0;
    let mut out = Vec::new();
    for (ranked, &n) in rows {
        if position >= end {
            break;
        }
        // A negative count (taken back before added, within a time) holds
        // no place.
        let n = n.max(0) as u64;
        let (lo, hi) = (position.max(skip), (position + n).min(end));
        position += n;
        if hi > lo {
            out.push((ranked.row.clone(), (hi - lo) as isize));
        }
    }
    out
}

/// Keeps each group's rows in order on the worker its key hashes to (see
/// the module's documentation); rows keep their own values, groups are
/// told apart by their columns' key form.
fn render_ordered<'s, T: Time>(
    input: Coll<'s, T>,
    group: usize,
    order: Vec<SortKey>,
    limit: u64,
    offset: u64,
) -> Coll<'s, T> {
    let order: Rc<[SortKey]> = order.into();
    let keyed = input.map(move |row| (PackedRow::pack(&key_form_of(&row[..group])), row));
    let state = Rc::new(Cell::new(Measured::default()));
    memory::track_state(&state);
    let mut groups: HashMap<PackedRow, Ordered> = HashMap::new();
    super::settle_by_key(keyed, "TopK", move |key, changes, out| {
        let mut size = state.get();
        let mut kept = groups.remove(&key).unwrap_or_default();
        if kept.is_empty() {
            size.bytes += super::group_slot_bytes::<Ordered>(&key);
        }
        let before = window(&kept, offset, limit);
        for (row, diff) in changes {
            let bytes = row_bytes(&row);
            let ranked = Ranked {
                row,
                order: order.clone(),
            };
            match kept.entry(ranked) {
                Entry::Occupied(mut e) => {
                    *e.get_mut() += diff;
                    if *e.get() == 0 {
                        e.remove();
                        size.records -= 1;
                        size.bytes = size.bytes.saturating_sub(bytes);
                    }
                }
                Entry::Vacant(e) => {
                    if diff != 0 {
                        e.insert(diff);
                        size.records += 1;
                        size.bytes += bytes;
                    }
                }
            }
        }
        let after = window(&kept, offset, limit);
        if kept.is_empty() {
            size.bytes = size
                .bytes
                .saturating_sub(super::group_slot_bytes::<Ordered>(&key));
        } else {
            groups.insert(key, kept);
        }
        state.set(size);
        // The rows that left the window and those that came in, with the
        // rows in both cancelled.
        let mut moved: Vec<(Row, isize)> = before
            .into_iter()
            .map(|(r, n)| (r, -n))
            .chain(after)
            .collect();
        moved.sort_by(|a, b| a.0.cmp(&b.0));
        for (r, n) in moved {
            match out.last_mut() {
                Some((l, m)) if *l == r => *m += n,
                _ => out.push((r, n)),
            }
        }
        out.retain(|(_, n)| *n != 0);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ordered operator over a stream of times (duplicates, ties on
    /// the ORDER BY, NULLs, an OFFSET, groups emptied and refilled) shows
    /// at every time what `select` picks from each group's live rows.
    #[test]
    fn the_ordered_operator_follows_each_group() {
        let order = vec![SortKey {
            column: 1,
            desc: true,
            nulls_first: true,
        }];
        let (skip, take) = (1u64, 3u64);
        let in_order = order.clone();
        super::super::testing::follow_times(
            11,
            80,
            4,
            move |rows| render(rows, 1, in_order, Some(take), skip),
            |seed| {
                let g = (seed >> 33) as i64 % 3;
                let v = match (seed >> 40) % 7 {
                    0 => Datum::Null,
                    x => Datum::Int(x as i64 % 4),
                };
                let tag = Datum::Int((seed >> 50) as i64 % 2);
                vec![Datum::Int(g), v, tag]
            },
            move |live| {
                let mut expected: BTreeMap<Row, isize> = BTreeMap::new();
                for g in 0..3 {
                    let mut counted: BTreeMap<Row, isize> = BTreeMap::new();
                    for r in live.iter().filter(|r| r[0] == Datum::Int(g)) {
                        *counted.entry(r.clone()).or_default() += 1;
                    }
                    let rows: Vec<(Row, isize)> = counted.into_iter().collect();
                    for (i, n) in select(&order, &rows, skip, Some(take)) {
                        *expected.entry(rows[i].0.clone()).or_default() += n;
                    }
                }
                expected
            },
        );
    }

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
