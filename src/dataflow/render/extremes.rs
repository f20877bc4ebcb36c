//! `min` and `max` over commit times: each group's values kept in order.
//!
//! The hierarchy in `reduce.rs` bounds what a change costs by spreading a
//! group over 4096 and then 64 buckets: three arranged levels, whatever the
//! group's size. A step that moves a group pays each level's seeks and
//! merges in two spines, and that per-step cost, not the rows, is what small
//! transactions spend (about 87 µs a level per step in the scale benchmark).
//!
//! Over commit LSNs, which are totally ordered, one operator does it: the
//! rows are exchanged by group key, and each worker keeps, per group it
//! owns, the values of each `min`/`max` as a counted multiset in SQL order
//! (a change is O(log n); the answer is the first or the last value) and
//! the group's `count`, `sum` and `avg` accumulated as in `accumulate.rs`.
//! When the input frontier passes a time, the groups that moved at it are
//! finished before and after its changes, and the difference is the output.
//! No arrangement is kept: the state is one entry per group and per
//! distinct value in it, reported with the view's memory (records and
//! bytes in `/metrics` and `GET /views`).
//!
//! Inside a recursive query's loop, where times are only partially ordered,
//! the hierarchy stays.

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use differential_dataflow::difference::{IsZero, Multiply, Semigroup};
use differential_dataflow::VecCollection;

use super::accumulate::Accum;
use super::reduce::{eval_inputs, finish, group_key};
use super::{split, Coll, ErrList, Staged, Time};
use crate::dataflow::memory::{self, HeapSize, Measured};
use crate::repr::{Datum, PackedRow, Row};
use crate::sql::expr::{sql_cmp, Expr};
use crate::sql::plan::{AggFunc, Aggregate};

/// Whether this path computes `aggs`: at least one `min` or `max`, and
/// every aggregate a `min`/`max` or one [`accumulate`](super::accumulate)
/// keeps, none DISTINCT or ordered.
pub fn applies(aggs: &[Aggregate]) -> bool {
    let extreme = |a: &Aggregate| matches!(a.func, AggFunc::Min | AggFunc::Max);
    aggs.iter().any(extreme)
        && aggs.iter().all(|a| {
            !a.distinct
                && a.order_by.is_empty()
                && (extreme(a) || super::accumulate::applies(std::slice::from_ref(a)))
        })
}

/// A value ordered as SQL compares it, ties (`1.5` and `1.50`) broken by
/// the stored form, so that equal values in different forms are counted
/// apart and the answer is always one of the forms present.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ordered(Datum);

impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> Ordering {
        // Values of one column compare without error; should two not, they
        // still get a consistent place.
        sql_cmp(&self.0, &other.0)
            .unwrap_or(Ordering::Equal)
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Bytes a value owns beyond its own size.
pub(super) fn datum_heap(d: &Datum) -> usize {
    match d {
        Datum::Text(s) | Datum::Json(s) => s.capacity(),
        Datum::Bytes(b) => b.capacity(),
        Datum::Numeric(n) => n.heap_size(),
        _ => 0,
    }
}

/// What a multiset entry costs: the value and its count, with room for the
/// B-tree's nodes (half full at worst, two thirds on average).
const ENTRY_BYTES: usize = (std::mem::size_of::<Ordered>() + std::mem::size_of::<i64>()) * 3 / 2;

/// One aggregate's non-NULL values in a group, with their counts (none
/// zero), and the bytes the values own.
#[derive(Default)]
struct Values {
    counts: BTreeMap<Ordered, i64>,
    heap: usize,
}

impl Values {
    fn add(&mut self, value: &Datum, n: i64) {
        match self.counts.entry(Ordered(value.clone())) {
            Entry::Occupied(mut e) => {
                *e.get_mut() += n;
                if *e.get() == 0 {
                    self.heap -= datum_heap(value);
                    e.remove();
                }
            }
            Entry::Vacant(e) => {
                if n != 0 {
                    self.heap += datum_heap(value);
                    e.insert(n);
                }
            }
        }
    }

    /// The least or the greatest value; NULL without values.
    fn best(&self, func: AggFunc) -> Datum {
        let entry = if func == AggFunc::Min {
            self.counts.first_key_value()
        } else {
            self.counts.last_key_value()
        };
        entry.map_or(Datum::Null, |(v, _)| v.0.clone())
    }

    fn bytes(&self) -> usize {
        self.counts.len() * ENTRY_BYTES + self.heap
    }
}

/// Where a `min`/`max` reads its input in a row of aggregate inputs.
struct Slot {
    /// The aggregate's position.
    agg: usize,
    func: AggFunc,
    /// Its FILTER's result, if it has one.
    filter: Option<usize>,
    arg: usize,
}

fn slots(aggs: &[Aggregate]) -> Vec<Slot> {
    let mut at = 0;
    let mut slots = Vec::new();
    for (i, a) in aggs.iter().enumerate() {
        if matches!(a.func, AggFunc::Min | AggFunc::Max) {
            let filter = a.filter.as_ref().map(|_| at);
            slots.push(Slot {
                agg: i,
                func: a.func,
                filter,
                arg: at + usize::from(filter.is_some()),
            });
        }
        at += a.inputs().len();
    }
    slots
}

/// A group: its rows accumulated (rows, counts, sums, the forms its key
/// shows in) and one multiset per `min`/`max`.
struct Group {
    accum: Accum,
    values: Vec<Values>,
}

impl Group {
    /// Adds `diff` copies of a row: its aggregate inputs, then the key as
    /// it shows where that differs from the form it groups by.
    fn add(
        &mut self,
        aggs: &[Aggregate],
        slots: &[Slot],
        width: usize,
        row: &[Datum],
        diff: isize,
    ) {
        let (inputs, shown) = row.split_at(width.min(row.len()));
        let shown = (!shown.is_empty()).then(|| shown.to_vec());
        self.accum
            .plus_equals(&Accum::of_row(aggs, inputs, shown).multiply(&diff));
        for (slot, values) in slots.iter().zip(&mut self.values) {
            let passes = slot.filter.is_none_or(|f| inputs[f] == Datum::Bool(true));
            match inputs.get(slot.arg) {
                Some(v) if passes && !v.is_null() => values.add(v, diff as i64),
                _ => {}
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.accum.is_zero() && self.values.iter().all(|v| v.counts.is_empty())
    }

    /// The group's row (its key as shown, then the aggregates), or the
    /// error finishing it.
    fn row(&self, key: &PackedRow, aggs: &[Aggregate], slots: &[Slot]) -> Result<Row, String> {
        let mut partial = self.accum.partials(aggs).map_err(|e| e.0)?;
        for (slot, values) in slots.iter().zip(&self.values) {
            partial[2 * slot.agg] = values.best(slot.func);
        }
        let finished = finish(aggs, &partial).map_err(|e| e.0)?;
        let mut row = match self.accum.shown() {
            Some(shown) => shown.clone(),
            None => key.unpack(),
        };
        row.extend(finished);
        Ok(row)
    }

    /// What the group holds: its bytes, and its entries (itself and each
    /// distinct value it keeps).
    fn size(&self) -> Measured {
        Measured {
            bytes: self.accum.heap_size() + self.values.iter().map(Values::bytes).sum::<usize>(),
            records: 1 + self.values.iter().map(|v| v.counts.len()).sum::<usize>(),
        }
    }
}

type Keyed = (PackedRow, Row);

/// Renders a Reduce whose aggregates [`applies`] over totally ordered
/// times: the group rows, the errors (evaluating rows, or finishing a
/// group), and one record per group while it exists (for a global
/// aggregate's row over empty input).
#[allow(clippy::type_complexity)]
pub fn render<'s, T: Time>(
    input: Staged<'s, T>,
    keys: Vec<Expr>,
    aggs: Vec<Aggregate>,
) -> (Coll<'s, T>, ErrList<'s, T>, VecCollection<'s, T, (), isize>) {
    let input_aggs = aggs.clone();
    let (keyed, input_errs): (VecCollection<'s, T, Keyed, isize>, _) =
        input.eval(move |row, made, failed| {
            let evaluated = super::project::eval_all(&keys, &row).and_then(|k| {
                let (k, shown) = group_key(k);
                let mut v = eval_inputs(&input_aggs, &row)?;
                v.extend(shown.unwrap_or_default());
                Ok(Some((PackedRow::pack(&k), v)))
            });
            super::emit(evaluated, made, failed)
        });
    let state = Rc::new(Cell::new(Measured::default()));
    memory::track_state(&state);
    let slots = slots(&aggs);
    let width: usize = aggs.iter().map(|a| a.inputs().len()).sum();
    let mut groups: HashMap<PackedRow, Group> = HashMap::new();
    let out = super::settle_by_key(keyed, "MinMax", move |key, changes, out| {
        let Measured {
            mut bytes,
            mut records,
        } = state.get();
        let (before, mut group) = match groups.remove(&key) {
            Some(g) => (Some(g.row(&key, &aggs, &slots)), g),
            None => {
                bytes += super::group_slot_bytes::<Group>(&key);
                let group = Group {
                    accum: Accum::default(),
                    values: slots.iter().map(|_| Values::default()).collect(),
                };
                (None, group)
            }
        };
        let size = group.size();
        bytes = bytes.saturating_sub(size.bytes);
        records = records.saturating_sub(size.records);
        for (row, diff) in changes {
            group.add(&aggs, &slots, width, &row, diff);
        }
        let after = if group.is_empty() {
            bytes = bytes.saturating_sub(super::group_slot_bytes::<Group>(&key));
            None
        } else {
            let size = group.size();
            bytes += size.bytes;
            records += size.records;
            let row = group.row(&key, &aggs, &slots);
            groups.insert(key, group);
            Some(row)
        };
        state.set(Measured { bytes, records });
        if before != after {
            out.extend(before.map(|old| (old, -1)));
            out.extend(after.map(|new| (new, 1)));
        }
    });
    let present = out.clone().map(|_| ());
    let (rows, errs) = split(out);
    (rows, input_errs.and(ErrList::of(errs)), present)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::render::accumulate::tests::agg;
    use crate::dataflow::render::reduce::partial;
    use crate::dataflow::render::testing::{follow_times, grouped_by_first};
    use crate::repr::{Numeric, Type};

    #[test]
    fn which_aggregates_it_computes() {
        let min = agg(AggFunc::Min, 0, Type::Int4, Type::Int4, None);
        let count = agg(AggFunc::CountStar, 0, Type::Unknown, Type::Int8, None);
        let fsum = agg(AggFunc::Sum, 0, Type::Float8, Type::Float8, None);
        assert!(applies(std::slice::from_ref(&min)));
        assert!(applies(&[count.clone(), min.clone()]));
        assert!(!applies(&[count]), "accumulate's alone");
        assert!(
            !applies(&[min.clone(), fsum]),
            "float sums stay in the hierarchy"
        );
        let distinct = Aggregate {
            distinct: true,
            ..min.clone()
        };
        assert!(!applies(&[distinct]));
        let string = agg(AggFunc::StringAgg, 0, Type::Text, Type::Text, None);
        assert!(!applies(&[min, string]));
    }

    /// Adds and takes back rows (with FILTERs, NULLs, numerics equal in
    /// value but not in form, and duplicates); after every change the group
    /// must finish as the hierarchy's one pass over the live rows does.
    #[test]
    fn a_group_finishes_as_one_pass_over_its_live_rows() {
        let aggs = vec![
            agg(AggFunc::CountStar, 0, Type::Unknown, Type::Int8, None),
            agg(AggFunc::Min, 0, Type::Numeric, Type::Numeric, None),
            agg(AggFunc::Max, 0, Type::Numeric, Type::Numeric, Some(1)),
            agg(AggFunc::Sum, 2, Type::Int4, Type::Int8, None),
            agg(AggFunc::Max, 3, Type::Text, Type::Text, None),
            agg(AggFunc::Avg, 0, Type::Numeric, Type::Numeric, Some(1)),
        ];
        let slots = slots(&aggs);
        let width: usize = aggs.iter().map(|a| a.inputs().len()).sum();
        let num = |s: &str| Datum::Numeric(Numeric::parse(s).unwrap());
        let values = [num("1.5"), num("1.50"), num("-2"), num("7.25"), Datum::Null];
        let texts = ["b", "a", "", "zz", "b"];
        let mut rows: Vec<Row> = Vec::new();
        for i in 0..40usize {
            let v = values[i % values.len()].clone();
            let flag = Datum::Bool(i % 3 != 0);
            let n = if i % 4 == 0 {
                Datum::Null
            } else {
                Datum::Int(i as i64)
            };
            let t = Datum::Text(texts[(i * 7) % texts.len()].into());
            rows.push(vec![v, flag, n, t]);
        }
        let key = PackedRow::pack(&[Datum::Int(1)]);
        let mut group = Group {
            accum: Accum::default(),
            values: slots.iter().map(|_| Values::default()).collect(),
        };
        let mut live: Vec<Row> = Vec::new();
        // Insert everything, then take back every other row, then the rest.
        let order: Vec<(usize, isize)> = (0..rows.len())
            .map(|i| (i, 1))
            .chain((0..rows.len()).step_by(2).map(|i| (i, -1)))
            .chain((1..rows.len()).step_by(2).map(|i| (i, -1)))
            .collect();
        for (i, diff) in order {
            let inputs = eval_inputs(&aggs, &rows[i]).unwrap();
            group.add(&aggs, &slots, width, &inputs, diff);
            if diff > 0 {
                live.push(rows[i].clone());
            } else {
                let at = live.iter().position(|r| *r == rows[i]).unwrap();
                live.remove(at);
            }
            if live.is_empty() {
                assert!(group.is_empty(), "no rows left, nothing kept");
                assert!(group.values.iter().all(|v| v.bytes() == 0));
                assert_eq!(group.size().records, 1, "the group itself");
                continue;
            }
            let inputs: Vec<Row> = live
                .iter()
                .map(|r| eval_inputs(&aggs, r).unwrap())
                .collect();
            let all: Vec<(&Row, isize)> = inputs.iter().map(|r| (r, 1)).collect();
            let mut expected = key.unpack();
            expected.extend(finish(&aggs, &partial(&aggs, &all).unwrap()).unwrap());
            let got = group.row(&key, &aggs, &slots).unwrap();
            // Equal values may show in either form (the hierarchy's choice
            // depends on bucket order): compare min/max by SQL equality.
            assert_eq!(got.len(), expected.len());
            for (g, e) in got.iter().zip(&expected) {
                assert_eq!(
                    sql_cmp(g, e).ok(),
                    Some(Ordering::Equal),
                    "{got:?} vs {expected:?}"
                );
            }
            assert_eq!(got[0..2], expected[0..2]);
            assert_eq!(got[4], expected[4], "sums exact");
            assert_eq!(got[6], expected[6], "averages exact, scale too");
        }
    }

    /// The operator over a stream of times: changes spread over several
    /// groups and times (with a group emptied and refilled) give, at every
    /// time, the rows the groups' live inputs finish to.
    #[test]
    fn the_operator_follows_the_groups_time_by_time() {
        let aggs = vec![
            agg(AggFunc::CountStar, 0, Type::Unknown, Type::Int8, None),
            agg(AggFunc::Max, 1, Type::Int8, Type::Int8, None),
            agg(AggFunc::Min, 1, Type::Int8, Type::Int8, None),
        ];
        follow_times(
            7,
            60,
            5,
            move |rows| grouped_by_first(rows, |staged, keys| render(staged, keys, aggs)),
            |seed| {
                let g = (seed >> 33) as i64 % 4;
                let v = (seed >> 40) as i64 % 9 - 4;
                vec![Datum::Int(g), Datum::Int(v)]
            },
            |live| {
                let mut expected: BTreeMap<Row, isize> = BTreeMap::new();
                for g in 0..4 {
                    let vals: Vec<i64> = live
                        .iter()
                        .filter(|r| r[0] == Datum::Int(g))
                        .map(|r| match r[1] {
                            Datum::Int(v) => v,
                            _ => unreachable!(),
                        })
                        .collect();
                    if let (Some(max), Some(min)) = (vals.iter().max(), vals.iter().min()) {
                        let r = vec![
                            Datum::Int(g),
                            Datum::Int(vals.len() as i64),
                            Datum::Int(*max),
                            Datum::Int(*min),
                        ];
                        expected.insert(r, 1);
                    }
                }
                expected
            },
        );
    }
}
