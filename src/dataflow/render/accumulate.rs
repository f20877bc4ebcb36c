//! `count`, `sum` and `avg` as accumulated differences.
//!
//! These aggregates are invertible: a row's contribution can be added and
//! taken back. So instead of keeping a group's rows (or partials over them,
//! as the hierarchy in `reduce.rs` does), each row becomes a difference
//! ([`Accum`]: the rows, and per aggregate its non-NULL count and exact sum)
//! and differential dataflow adds the differences up by group. One
//! arrangement holds one accumulated value per group, whatever the number of
//! rows behind it, and a change costs one addition.
//!
//! Sums stay exact: integers in an `i128`, numerics as exact decimals with
//! the NaN and infinite inputs counted apart (they cannot be subtracted) and
//! the display scales of the live inputs counted, so a sum shows the scale
//! Postgres would show for the rows there now. Float sums are not exact under
//! subtraction, so they stay in the hierarchy, as do min, max and the
//! order-sensitive aggregates.

use serde::{Deserialize, Serialize};

use differential_dataflow::difference::{IsZero, Multiply, Semigroup};
use differential_dataflow::VecCollection;

use super::reduce::{eval_inputs, finish};
use super::{Coll, ErrList, Staged, Time};
use crate::repr::{Datum, Numeric, PackedRow, Row, Type};
use crate::sql::expr::{EvalError, Expr};
use crate::sql::plan::{AggFunc, Aggregate};

/// Whether every aggregate can be accumulated: `count(*)`, `count(x)`, and
/// `sum`/`avg` of integers or numerics, none DISTINCT.
pub fn applies(aggs: &[Aggregate]) -> bool {
    crate::sql::plan::accumulable(aggs)
}

/// One aggregate's accumulated inputs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Part {
    /// `count(*)`, `count(x)`: the rows or non-NULL values.
    Count(i64),
    /// `sum`/`avg` of integers.
    Int { n: i64, sum: i128 },
    /// `sum`/`avg` of numerics.
    Num(NumSum),
}

/// Numeric inputs of `sum`/`avg`: how many, the finite values' exact sum,
/// how many live values have each display scale (sorted, no zero counts),
/// and the NaN, `Infinity` and `-Infinity` inputs, which cannot be
/// subtracted from a sum.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct NumSum {
    n: i64,
    sum: Numeric,
    scales: Vec<(u32, i64)>,
    nan: i64,
    pinf: i64,
    ninf: i64,
}

impl Default for NumSum {
    fn default() -> NumSum {
        NumSum {
            n: 0,
            sum: Numeric::zero(),
            scales: Vec::new(),
            nan: 0,
            pinf: 0,
            ninf: 0,
        }
    }
}

impl NumSum {
    /// One input: `None` for a NULL or a row its FILTER leaves out.
    fn of(value: Option<&Numeric>) -> NumSum {
        let mut s = NumSum::default();
        let Some(v) = value else {
            return s;
        };
        s.n = 1;
        match v {
            Numeric::NaN => s.nan = 1,
            Numeric::PosInf => s.pinf = 1,
            Numeric::NegInf => s.ninf = 1,
            finite => {
                s.scales.push((finite.scale(), 1));
                s.sum = finite.clone();
            }
        }
        s
    }

    fn is_zero(&self) -> bool {
        self.n == 0
            && self.sum.is_zero()
            && self.scales.is_empty()
            && self.nan == 0
            && self.pinf == 0
            && self.ninf == 0
    }

    fn add(&mut self, other: &NumSum) {
        self.n += other.n;
        self.sum = self.sum.add(&other.sum);
        self.nan += other.nan;
        self.pinf += other.pinf;
        self.ninf += other.ninf;
        for (scale, count) in &other.scales {
            match self.scales.binary_search_by_key(scale, |(s, _)| *s) {
                Ok(i) => {
                    self.scales[i].1 += count;
                    if self.scales[i].1 == 0 {
                        self.scales.remove(i);
                    }
                }
                Err(i) => self.scales.insert(i, (*scale, *count)),
            }
        }
    }

    fn times(&self, k: i64) -> NumSum {
        NumSum {
            n: self.n * k,
            sum: match k {
                1 => self.sum.clone(),
                -1 => self.sum.neg(),
                _ => self.sum.mul(&Numeric::from_i64(k)),
            },
            scales: self.scales.iter().map(|(s, c)| (*s, c * k)).collect(),
            nan: self.nan * k,
            pinf: self.pinf * k,
            ninf: self.ninf * k,
        }
    }

    /// The sum of the live inputs, as Postgres's `numeric_add` over them
    /// would give it.
    fn value(&self) -> Numeric {
        if self.nan > 0 || (self.pinf > 0 && self.ninf > 0) {
            Numeric::NaN
        } else if self.pinf > 0 {
            Numeric::PosInf
        } else if self.ninf > 0 {
            Numeric::NegInf
        } else {
            // The sum of the live values has no more digits than the
            // largest live scale: rescaling is exact.
            self.sum
                .with_scale(self.scales.last().map_or(0, |(s, _)| *s))
        }
    }
}

impl Part {
    fn is_zero(&self) -> bool {
        match self {
            Part::Count(n) => *n == 0,
            Part::Int { n, sum } => *n == 0 && *sum == 0,
            Part::Num(s) => s.is_zero(),
        }
    }

    fn add(&mut self, other: &Part) {
        match (self, other) {
            (Part::Count(a), Part::Count(b)) => *a += b,
            (Part::Int { n, sum }, Part::Int { n: n2, sum: s2 }) => {
                *n += n2;
                *sum += s2;
            }
            (Part::Num(a), Part::Num(b)) => a.add(b),
            // Parts line up by aggregate: every Accum of one Reduce has the
            // same shape.
            _ => {}
        }
    }

    fn times(&self, k: i64) -> Part {
        match self {
            Part::Count(n) => Part::Count(n * k),
            Part::Int { n, sum } => Part::Int {
                n: n * k,
                sum: sum * k as i128,
            },
            Part::Num(s) => Part::Num(s.times(k)),
        }
    }

    /// The partial `reduce::finish` reads: `[value, non-NULL count]`.
    fn partial(&self, acc_int8: bool) -> Result<[Datum; 2], EvalError> {
        Ok(match self {
            Part::Count(n) => [Datum::Int(*n), Datum::Int(*n)],
            Part::Int { n: 0, .. } | Part::Num(NumSum { n: 0, .. }) => [Datum::Null, Datum::Int(0)],
            Part::Int { n, sum } if acc_int8 => [
                i64::try_from(*sum)
                    .map(Datum::Int)
                    .map_err(|_| EvalError("bigint out of range".into()))?,
                Datum::Int(*n),
            ],
            Part::Int { n, sum } => [
                Datum::Numeric(Numeric::finite((*sum).into(), 0)),
                Datum::Int(*n),
            ],
            Part::Num(s) => [Datum::Numeric(s.value()), Datum::Int(s.n)],
        })
    }
}

/// A group's rows as a difference: how many, per aggregate its inputs, and
/// how many rows show the group's key in each form other than the one it
/// groups by (`1.50` in a group keyed `1.5`; sorted, no zero counts, and
/// empty unless such rows exist).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Accum {
    rows: i64,
    parts: Vec<Part>,
    forms: Vec<(Row, i64)>,
}

impl crate::dataflow::memory::HeapSize for Accum {
    fn heap_size(&self) -> usize {
        let parts = std::mem::size_of_val(self.parts.as_slice());
        let sums = self.parts.iter().map(|p| match p {
            Part::Num(s) => std::mem::size_of_val(s.scales.as_slice()) + s.sum.heap_size(),
            Part::Count(_) | Part::Int { .. } => 0,
        });
        let forms = std::mem::size_of_val(self.forms.as_slice())
            + self
                .forms
                .iter()
                .map(|(r, _)| std::mem::size_of_val(r.as_slice()))
                .sum::<usize>();
        parts + sums.sum::<usize>() + forms
    }
}

impl IsZero for Accum {
    fn is_zero(&self) -> bool {
        self.rows == 0 && self.parts.iter().all(Part::is_zero) && self.forms.is_empty()
    }
}

impl Semigroup for Accum {
    fn plus_equals(&mut self, rhs: &Self) {
        self.rows += rhs.rows;
        if !rhs.forms.is_empty() {
            for (form, n) in &rhs.forms {
                match self.forms.binary_search_by(|(f, _)| f.cmp(form)) {
                    Ok(i) => {
                        self.forms[i].1 += n;
                        if self.forms[i].1 == 0 {
                            self.forms.remove(i);
                        }
                    }
                    Err(i) => self.forms.insert(i, (form.clone(), *n)),
                }
            }
        }
        if self.parts.is_empty() {
            self.parts = rhs.parts.clone();
            return;
        }
        for (a, b) in self.parts.iter_mut().zip(&rhs.parts) {
            a.add(b);
        }
    }
}

impl Multiply<isize> for Accum {
    type Output = Accum;
    fn multiply(self, rhs: &isize) -> Accum {
        if *rhs == 1 {
            return self;
        }
        let k = *rhs as i64;
        Accum {
            rows: self.rows * k,
            parts: self.parts.iter().map(|p| p.times(k)).collect(),
            forms: self.forms.into_iter().map(|(f, n)| (f, n * k)).collect(),
        }
    }
}

/// A count times accumulated inputs: a joined row's count times the summed
/// side's value for its key, when a join meets a side summed before it
/// (`eager.rs`).
impl Multiply<Accum> for isize {
    type Output = Accum;
    fn multiply(self, rhs: &Accum) -> Accum {
        rhs.clone().multiply(&self)
    }
}

impl Accum {
    /// These rows, each showing the group's key as `shown` (when that
    /// differs from the form the group is keyed by).
    pub(super) fn showing(mut self, shown: Option<Row>) -> Accum {
        if let Some(shown) = shown.filter(|_| self.rows != 0) {
            self.plus_equals(&Accum {
                rows: 0,
                parts: Vec::new(),
                forms: vec![(shown, self.rows)],
            });
        }
        self
    }

    /// One row's contribution, from its aggregate inputs (as `eval_inputs`
    /// lays them out: filter, then arguments, per aggregate). A `min` or
    /// `max` (which `extremes.rs` keeps) counts its non-NULL inputs here.
    pub(super) fn of_row(aggs: &[Aggregate], inputs: &[Datum], shown: Option<Row>) -> Accum {
        let mut at = 0;
        let mut parts = Vec::with_capacity(aggs.len());
        for a in aggs {
            let passes = match &a.filter {
                Some(_) => {
                    at += 1;
                    inputs[at - 1] == Datum::Bool(true)
                }
                None => true,
            };
            let arg = inputs.get(at).filter(|_| !a.args.is_empty());
            at += a.args.len();
            let counted = passes && arg.is_none_or(|v| !v.is_null());
            let n = i64::from(counted);
            parts.push(match (a.func, &a.input_type) {
                (AggFunc::CountStar | AggFunc::Count | AggFunc::Min | AggFunc::Max, _) => {
                    Part::Count(n)
                }
                (_, Type::Numeric) => Part::Num(NumSum::of(match (counted, arg) {
                    (true, Some(Datum::Numeric(v))) => Some(v),
                    _ => None,
                })),
                _ => Part::Int {
                    n,
                    sum: match (counted, arg) {
                        (true, Some(Datum::Int(v))) => *v as i128,
                        _ => 0,
                    },
                },
            });
        }
        Accum {
            rows: 1,
            parts,
            forms: shown.map(|k| (k, 1)).into_iter().collect(),
        }
    }

    /// How the group's key shows: as it is (`None`) while any row has the
    /// form it groups by, else the least of the forms its rows have (as the
    /// hierarchy in `reduce.rs` shows it).
    pub(super) fn shown(&self) -> Option<&Row> {
        let other: i64 = self.forms.iter().map(|(_, n)| n).sum();
        if other < self.rows {
            return None;
        }
        self.forms.iter().find(|(_, n)| *n > 0).map(|(f, _)| f)
    }

    /// The group as one partial, as `reduce::finish` reads it: per
    /// aggregate its value and its count of non-NULL inputs.
    pub(super) fn partials(&self, aggs: &[Aggregate]) -> Result<Row, EvalError> {
        let mut partial = Vec::with_capacity(aggs.len() * 2);
        for (a, p) in aggs.iter().zip(&self.parts) {
            let acc_int8 = matches!(a.input_type, Type::Int2 | Type::Int4);
            partial.extend(p.partial(acc_int8)?);
        }
        Ok(partial)
    }

    /// The group's aggregate values.
    fn finish(&self, aggs: &[Aggregate]) -> Result<Row, EvalError> {
        finish(aggs, &self.partials(aggs)?)
    }
}

/// Renders a Reduce whose aggregates all [`applies`]: the group rows, the
/// evaluation errors, and the accumulated groups (for a global aggregate,
/// whether any group exists).
#[allow(clippy::type_complexity)]
pub fn render<'s, T: Time>(
    input: Staged<'s, T>,
    keys: Vec<Expr>,
    aggs: Vec<Aggregate>,
) -> (
    Coll<'s, T>,
    ErrList<'s, T>,
    VecCollection<'s, T, (PackedRow, Accum), isize>,
) {
    let input_aggs = aggs.clone();
    let (ok, input_errs) = input.eval_summed(move |row| {
        let (k, shown) = super::reduce::group_key(super::project::eval_all(&keys, &row)?);
        let v = eval_inputs(&input_aggs, &row)?;
        Ok(Some((
            PackedRow::pack(&k),
            Accum::of_row(&input_aggs, &v, shown),
        )))
    });
    let (result, agg_errs, groups) = finish_groups(ok, aggs);
    (result, input_errs.and(agg_errs), groups)
}

/// Adds up `summed` (each group key with its rows' accumulated inputs) by
/// group, and finishes each group's aggregates: the group rows, the errors
/// of finishing them, and the accumulated groups.
#[allow(clippy::type_complexity)]
pub(super) fn finish_groups<'s, T: Time>(
    summed: VecCollection<'s, T, PackedRow, Accum>,
    aggs: Vec<Aggregate>,
) -> (
    Coll<'s, T>,
    ErrList<'s, T>,
    VecCollection<'s, T, (PackedRow, Accum), isize>,
) {
    let groups = T::accumulate(summed);
    let (result, agg_errs) = super::eval_split(groups.clone(), move |(k, acc), made, failed| {
        let finished = acc.finish(&aggs).map_err(|e| e.0).map(|v| {
            let mut row = match acc.shown() {
                Some(shown) => shown.clone(),
                None => k.unpack(),
            };
            row.extend(v);
            Some(row)
        });
        super::emit(finished, made, failed)
    });
    (result, ErrList::of(agg_errs), groups)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::dataflow::render::reduce::partial;
    use crate::dataflow::render::testing::{follow_times, grouped_by_first};
    use std::collections::BTreeMap;

    /// An aggregate over column `col` (FILTER on column `filter`): the
    /// fixture of these tests and `extremes.rs`'s.
    pub(in crate::dataflow::render) fn agg(
        func: AggFunc,
        col: usize,
        ty: Type,
        out: Type,
        filter: Option<usize>,
    ) -> Aggregate {
        Aggregate {
            func,
            args: if func == AggFunc::CountStar {
                vec![]
            } else {
                vec![Expr::Column(col)]
            },
            order_by: vec![],
            filter: filter.map(Expr::Column),
            input_type: ty,
            output_type: out,
            distinct: false,
        }
    }

    fn num(s: &str) -> Datum {
        Datum::Numeric(Numeric::parse(s).unwrap())
    }

    /// Adds and takes back rows one at a time; after every step the
    /// accumulated group must finish exactly as the hierarchy's one pass over
    /// the live rows does (values and display scales).
    #[test]
    fn accumulated_groups_finish_as_one_pass_over_the_live_rows() {
        let aggs = vec![
            agg(AggFunc::CountStar, 0, Type::Unknown, Type::Int8, None),
            agg(AggFunc::Count, 2, Type::Numeric, Type::Int8, None),
            agg(AggFunc::Sum, 0, Type::Int4, Type::Int8, None),
            agg(AggFunc::Avg, 1, Type::Int8, Type::Numeric, Some(3)),
            agg(AggFunc::Sum, 1, Type::Int8, Type::Numeric, None),
            agg(AggFunc::Sum, 2, Type::Numeric, Type::Numeric, None),
            agg(AggFunc::Avg, 2, Type::Numeric, Type::Numeric, Some(3)),
        ];
        let rows: Vec<Row> = vec![
            vec![
                Datum::Int(3),
                Datum::Int(i64::MAX),
                num("1.5"),
                Datum::Bool(true),
            ],
            vec![
                Datum::Null,
                Datum::Int(-4),
                num("2.125"),
                Datum::Bool(false),
            ],
            vec![Datum::Int(-9), Datum::Null, Datum::Null, Datum::Null],
            vec![
                Datum::Int(7),
                Datum::Int(i64::MAX),
                num("NaN"),
                Datum::Bool(true),
            ],
            vec![
                Datum::Int(1),
                Datum::Int(2),
                num("Infinity"),
                Datum::Bool(true),
            ],
            vec![
                Datum::Int(1),
                Datum::Int(2),
                num("-Infinity"),
                Datum::Bool(true),
            ],
            vec![
                Datum::Int(2),
                Datum::Int(5),
                num("10.00000"),
                Datum::Bool(true),
            ],
        ];
        // Insert all in order, then take back in another order, checking
        // after each step (rows may repeat: index 6 goes in twice).
        let steps: Vec<(usize, isize)> = [0, 1, 2, 6, 3, 4, 5, 6]
            .iter()
            .map(|&i| (i, 1))
            .chain([3, 6, 0, 4, 6, 5, 2, 1].iter().map(|&i| (i, -1)))
            .collect();
        let mut acc = Accum::default();
        let mut live: Vec<(usize, isize)> = Vec::new();
        for (i, diff) in steps {
            let inputs = eval_inputs(&aggs, &rows[i]).unwrap();
            acc.plus_equals(&Accum::of_row(&aggs, &inputs, None).multiply(&diff));
            match live.iter_mut().find(|(j, _)| *j == i) {
                Some(e) => e.1 += diff,
                None => live.push((i, diff)),
            }
            live.retain(|(_, n)| *n != 0);
            if live.is_empty() {
                assert!(acc.is_zero(), "an empty group accumulates to zero: {acc:?}");
                continue;
            }
            let evaluated: Vec<Row> = live
                .iter()
                .map(|(j, _)| eval_inputs(&aggs, &rows[*j]).unwrap())
                .collect();
            let vals: Vec<(&Row, isize)> = evaluated
                .iter()
                .zip(&live)
                .map(|(r, (_, n))| (r, *n))
                .collect();
            let expected = partial(&aggs, &vals).and_then(|p| finish(&aggs, &p));
            let got = acc.finish(&aggs);
            assert_eq!(
                format!("{got:?}"),
                format!("{expected:?}"),
                "after {live:?}"
            );
        }
    }

    /// The operator over a stream of times, many changes per time (rows
    /// added and taken back within one time, groups emptied and refilled,
    /// numerics of several scales): the changes are summed by group before
    /// they are arranged, and every time's output still adds up to what the
    /// live rows finish to.
    #[test]
    fn the_operator_follows_the_groups_time_by_time() {
        let aggs = vec![
            agg(AggFunc::CountStar, 0, Type::Unknown, Type::Int8, None),
            agg(AggFunc::Sum, 1, Type::Int4, Type::Int8, None),
            agg(AggFunc::Sum, 2, Type::Numeric, Type::Numeric, None),
        ];
        follow_times(
            11,
            40,
            30,
            move |rows| grouped_by_first(rows, |staged, keys| render(staged, keys, aggs)),
            |seed| {
                let g = (seed >> 33) as i64 % 3;
                let v = (seed >> 40) as i64 % 9 - 4;
                let scale = (seed >> 50) % 3;
                let n = Numeric::parse(&format!("{v}.{}", "5".repeat(scale as usize)));
                vec![
                    Datum::Int(g),
                    Datum::Int(v),
                    Datum::Numeric(n.expect("a numeric")),
                ]
            },
            |live| {
                let mut expected: BTreeMap<Row, isize> = BTreeMap::new();
                for g in 0..3 {
                    let rows: Vec<&Row> = live.iter().filter(|r| r[0] == Datum::Int(g)).collect();
                    if rows.is_empty() {
                        continue;
                    }
                    let ints: i64 = rows
                        .iter()
                        .map(|r| match r[1] {
                            Datum::Int(v) => v,
                            _ => unreachable!(),
                        })
                        .sum();
                    // numeric_add, row by row: its scale is the larger one.
                    let sum = rows.iter().fold(Numeric::zero(), |sum, r| match &r[2] {
                        Datum::Numeric(v) => sum.add(v),
                        _ => unreachable!(),
                    });
                    let row = vec![
                        Datum::Int(g),
                        Datum::Int(rows.len() as i64),
                        Datum::Int(ints),
                        Datum::Numeric(sum),
                    ];
                    expected.insert(row, 1);
                }
                expected
            },
        );
    }

    #[test]
    fn int_sums_past_bigint_fail_as_postgres_does() {
        let aggs = vec![agg(AggFunc::Sum, 0, Type::Int4, Type::Int8, None)];
        let one = Accum::of_row(&aggs, &[Datum::Int(i32::MAX as i64)], None);
        let many = one.clone().multiply(&(1isize << 33));
        assert_eq!(many.finish(&aggs).unwrap_err().0, "bigint out of range");
        assert!(one.finish(&aggs).is_ok());
    }

    #[test]
    fn what_is_accumulated_and_what_is_not() {
        let count = agg(AggFunc::CountStar, 0, Type::Unknown, Type::Int8, None);
        let float_sum = agg(AggFunc::Sum, 0, Type::Float8, Type::Float8, None);
        let max = agg(AggFunc::Max, 0, Type::Int4, Type::Int4, None);
        let mut distinct = agg(AggFunc::Count, 0, Type::Int4, Type::Int8, None);
        distinct.distinct = true;
        assert!(applies(std::slice::from_ref(&count)));
        assert!(!applies(&[count.clone(), float_sum]));
        assert!(!applies(&[count.clone(), max]));
        assert!(!applies(&[count, distinct]));
    }

    /// A group's key shows as it is while any row has the form it groups
    /// by, else as the least form its rows have; the forms add up and take
    /// back like the rest of the difference.
    #[test]
    fn a_group_shows_a_form_its_rows_have() {
        let aggs = vec![agg(AggFunc::CountStar, 0, Type::Unknown, Type::Int8, None)];
        let row = |shown: Option<&str>| Accum::of_row(&aggs, &[], shown.map(|s| vec![num(s)]));
        let mut acc = row(None);
        acc.plus_equals(&row(Some("1.500")));
        acc.plus_equals(&row(Some("1.50")));
        assert_eq!(acc.shown(), None, "a row has the key's own form");
        acc.plus_equals(&row(None).multiply(&-1));
        let shown = acc.shown().expect("no row has the key's own form");
        assert_eq!(shown, &vec![num("1.50")], "the least form present");
        acc.plus_equals(&row(Some("1.50")).multiply(&-1));
        assert_eq!(acc.shown(), Some(&vec![num("1.500")]));
        assert_eq!(acc.finish(&aggs).unwrap(), vec![Datum::Int(1)]);
        acc.plus_equals(&row(Some("1.500")).multiply(&-1));
        assert!(acc.is_zero(), "{acc:?}");
    }
}
