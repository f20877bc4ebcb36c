//! `Window`: window functions, maintained per partition.
//!
//! Rows are keyed by their partition values and reduced per partition: the
//! partition's rows are sorted by the window's ORDER BY (then by the whole
//! row, so peers come in one deterministic order, one of those Postgres may
//! produce), every function is computed for every row, and differential
//! emits only the output rows that changed. A change to a partition costs a
//! pass over that partition: O(n log n) to sort it, plus per function
//! O(n) for ranking, offsets and frames that start at the partition's first
//! row (running totals), and O(n × frame) for sliding frames and frames with
//! an EXCLUDE clause.

use std::cmp::Ordering;

use super::project::eval_all;
use super::reduce::{finish, merge, partial};
use super::{split, Coll, Errs, Time};
use crate::repr::{key_form_of, Datum, Row, F64};
use crate::sql::expr::{sql_cmp, EvalError, Expr};
use crate::sql::plan::{Aggregate, FrameBound, FrameExclude, FrameUnits, WindowFunc, WindowKind};

type Order = Vec<(Expr, bool, bool)>;

pub fn render<'s, T: Time>(
    input: Coll<'s, T>,
    partition: Vec<Expr>,
    order: Order,
    ties: Order,
    funcs: Vec<WindowFunc>,
) -> (Coll<'s, T>, Errs<'s, T>) {
    let keyed = input.map(move |row| {
        // Partitions meet by SQL equality: 1.5 with 1.50, -0 with 0.
        let key = key_form_of(&eval_all(&partition, &row)?);
        Ok((key, row))
    });
    let (keyed, key_errs) = split(keyed);
    let computed = keyed.reduce(
        move |_key, vals: &[(&Row, isize)], out: &mut Vec<(Result<Row, String>, isize)>| {
            match compute(&order, &ties, &funcs, vals) {
                Ok(mut rows) => {
                    rows.sort();
                    let mut i = 0;
                    while i < rows.len() {
                        let mut j = i + 1;
                        while j < rows.len() && rows[j] == rows[i] {
                            j += 1;
                        }
                        out.push((Ok(rows[i].clone()), (j - i) as isize));
                        i = j;
                    }
                }
                Err(e) => out.push((Err(e.0), 1)),
            }
        },
    );
    let (ok, errs) = split(computed.map(|(_, v)| v));
    (ok, key_errs.concat(errs))
}

/// Compares two order-key lists as the window sorts them.
fn compare_keys(order: &Order, a: &[Datum], b: &[Datum]) -> Ordering {
    for (i, (_, desc, nulls_first)) in order.iter().enumerate() {
        let ord = compare_one(&a[i], &b[i], *desc, *nulls_first);
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

fn compare_one(x: &Datum, y: &Datum, desc: bool, nulls_first: bool) -> Ordering {
    match (x.is_null(), y.is_null()) {
        (true, true) => Ordering::Equal,
        (true, false) => {
            if nulls_first {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
        (false, true) => {
            if nulls_first {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        _ => {
            let o = sql_cmp(x, y).unwrap_or_else(|_| x.cmp(y));
            if desc {
                o.reverse()
            } else {
                o
            }
        }
    }
}

/// A partition's rows in window order, with their peer groups.
struct Sorted {
    rows: Vec<Row>,
    keys: Vec<Row>,
    /// The peer group of each row, and each group's `[start, end)`.
    group: Vec<usize>,
    bounds: Vec<(usize, usize)>,
}

impl Sorted {
    fn new(order: &Order, ties: &Order, vals: &[(&Row, isize)]) -> Result<Sorted, EvalError> {
        // Keys are the order's values, then the ties'.
        let all: Order = order.iter().chain(ties).cloned().collect();
        let exprs: Vec<Expr> = all.iter().map(|(e, _, _)| e.clone()).collect();
        let mut items: Vec<(Row, Row)> = Vec::new();
        for (row, n) in vals {
            let keys: Row = exprs
                .iter()
                .map(|e| e.eval(row))
                .collect::<Result<_, _>>()?;
            for _ in 0..(*n).max(0) {
                items.push((keys.clone(), (*row).clone()));
            }
        }
        items.sort_by(|a, b| compare_keys(&all, &a.0, &b.0).then_with(|| a.1.cmp(&b.1)));
        let mut group = Vec::with_capacity(items.len());
        let mut bounds: Vec<(usize, usize)> = Vec::new();
        for i in 0..items.len() {
            let new_group =
                i == 0 || compare_keys(order, &items[i - 1].0, &items[i].0) != Ordering::Equal;
            if new_group {
                if let Some(last) = bounds.last_mut() {
                    last.1 = i;
                }
                bounds.push((i, items.len()));
            }
            group.push(bounds.len() - 1);
        }
        let (keys, rows) = items.into_iter().unzip();
        Ok(Sorted {
            rows,
            keys,
            group,
            bounds,
        })
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn peers(&self, i: usize) -> (usize, usize) {
        self.bounds[self.group[i]]
    }
}

fn compute(
    order: &Order,
    ties: &Order,
    funcs: &[WindowFunc],
    vals: &[(&Row, isize)],
) -> Result<Vec<Row>, EvalError> {
    let sorted = Sorted::new(order, ties, vals)?;
    let mut columns = Vec::with_capacity(funcs.len());
    for f in funcs {
        columns.push(values(order, f, &sorted)?);
    }
    Ok((0..sorted.len())
        .map(|i| {
            let mut row = sorted.rows[i].clone();
            row.extend(columns.iter().map(|c| c[i].clone()));
            row
        })
        .collect())
}

fn int_arg(e: &Expr, row: &Row) -> Result<Option<i64>, EvalError> {
    match e.eval(row)? {
        Datum::Null => Ok(None),
        Datum::Int(i) => Ok(Some(i)),
        other => Err(EvalError(format!("expected an integer, got {other:?}"))),
    }
}

/// One window function's value for each row of the sorted partition.
fn values(order: &Order, f: &WindowFunc, s: &Sorted) -> Result<Vec<Datum>, EvalError> {
    let n = s.len();
    let mut out = Vec::with_capacity(n);
    match f.kind {
        WindowKind::RowNumber => out.extend((0..n).map(|i| Datum::Int(i as i64 + 1))),
        WindowKind::Rank => out.extend((0..n).map(|i| Datum::Int(s.peers(i).0 as i64 + 1))),
        WindowKind::DenseRank => out.extend((0..n).map(|i| Datum::Int(s.group[i] as i64 + 1))),
        WindowKind::PercentRank => out.extend((0..n).map(|i| {
            let v = if n > 1 {
                s.peers(i).0 as f64 / (n - 1) as f64
            } else {
                0.0
            };
            Datum::Float8(F64(v))
        })),
        WindowKind::CumeDist => {
            out.extend((0..n).map(|i| Datum::Float8(F64(s.peers(i).1 as f64 / n as f64))))
        }
        WindowKind::Ntile => {
            // The bucket count is read from the partition's first row.
            let buckets = match s.rows.first() {
                Some(r) => int_arg(&f.args[0], r)?,
                None => None,
            };
            match buckets {
                None => out.extend((0..n).map(|_| Datum::Null)),
                Some(b) if b <= 0 => {
                    return Err(EvalError(
                        "argument of ntile must be greater than zero".into(),
                    ))
                }
                Some(b) => {
                    let b = b as usize;
                    let per = n / b;
                    let extra = n % b;
                    // The first `extra` buckets hold one row more.
                    for i in 0..n {
                        let big = extra * (per + 1);
                        let bucket = if i < big {
                            i / (per + 1)
                        } else {
                            extra + (i - big) / per.max(1)
                        };
                        out.push(Datum::Int(bucket as i64 + 1));
                    }
                }
            }
        }
        WindowKind::Lag | WindowKind::Lead => {
            for i in 0..n {
                let row = &s.rows[i];
                let offset = match f.args.get(1) {
                    Some(e) => int_arg(e, row)?,
                    None => Some(1),
                };
                let Some(offset) = offset else {
                    out.push(Datum::Null);
                    continue;
                };
                let target = if f.kind == WindowKind::Lag {
                    i as i128 - offset as i128
                } else {
                    i as i128 + offset as i128
                };
                if target >= 0 && (target as usize) < n {
                    out.push(f.args[0].eval(&s.rows[target as usize])?);
                } else {
                    out.push(match f.args.get(2) {
                        Some(d) => d.eval(row)?,
                        None => Datum::Null,
                    });
                }
            }
        }
        WindowKind::FirstValue | WindowKind::LastValue | WindowKind::NthValue => {
            for i in 0..n {
                let frame = frame_rows(order, f, s, i)?;
                let pick = match f.kind {
                    WindowKind::FirstValue => frame.first().copied(),
                    WindowKind::LastValue => frame.last().copied(),
                    _ => match int_arg(&f.args[1], &s.rows[i])? {
                        None => {
                            out.push(Datum::Null);
                            continue;
                        }
                        Some(k) if k <= 0 => {
                            return Err(EvalError(
                                "argument of nth_value must be greater than zero".into(),
                            ))
                        }
                        Some(k) => frame.get(k as usize - 1).copied(),
                    },
                };
                out.push(match pick {
                    Some(j) => f.args[0].eval(&s.rows[j])?,
                    None => Datum::Null,
                });
            }
        }
        WindowKind::Agg(_) => out = aggregate(order, f, s)?,
    }
    Ok(out)
}

/// The row's inputs to the aggregate, laid out as `partial` reads them:
/// FILTER, arguments, then the row's position (the order an ordered
/// aggregate such as `string_agg` reads them in). A row the FILTER rejects
/// has its other inputs unevaluated.
fn agg_input(agg: &Aggregate, row: &Row, position: usize) -> Result<Row, EvalError> {
    let mut out = Vec::with_capacity(agg.args.len() + 2);
    if let Some(p) = &agg.filter {
        let pass = p.eval(row)?;
        let skip = pass != Datum::Bool(true);
        out.push(pass);
        if skip {
            out.extend(std::iter::repeat_n(Datum::Null, agg.args.len() + 1));
            return Ok(out);
        }
    }
    for a in &agg.args {
        out.push(a.eval(row)?);
    }
    out.push(Datum::Int(position as i64));
    Ok(out)
}

fn aggregate(order: &Order, f: &WindowFunc, s: &Sorted) -> Result<Vec<Datum>, EvalError> {
    let mut agg = f.agg.clone().expect("an aggregate window function");
    // Ordered aggregates read the frame in window order: by position.
    agg.order_by = vec![(Expr::Column(0), false, false)];
    let aggs = std::slice::from_ref(&agg);
    let n = s.len();
    let inputs: Vec<Row> = (0..n)
        .map(|i| agg_input(&agg, &s.rows[i], i))
        .collect::<Result<_, _>>()?;
    let running = matches!(f.frame.start, FrameBound::UnboundedPreceding)
        && f.frame.exclude == FrameExclude::NoOthers
        && !agg.func.needs_all_values();
    let mut out = Vec::with_capacity(n);
    if running {
        // The frame only grows: fold the new rows into the partial so far.
        let mut acc: Option<Row> = None;
        let mut upto = 0;
        let mut cache: Option<(usize, Datum)> = None;
        for i in 0..n {
            let (_, hi) = bounds(order, f, s, i)?;
            if let Some((h, v)) = &cache {
                if *h == hi {
                    out.push(v.clone());
                    continue;
                }
            }
            if hi > upto {
                let fresh: Vec<(&Row, isize)> = inputs[upto..hi].iter().map(|r| (r, 1)).collect();
                let p = partial(aggs, &fresh)?;
                acc = Some(match acc {
                    None => p,
                    Some(prev) => merge(aggs, &[(&prev, 1), (&p, 1)])?,
                });
                upto = hi;
            }
            let value = match &acc {
                Some(p) => finish(aggs, p)?.remove(0),
                None => finish(aggs, &partial(aggs, &[])?)?.remove(0),
            };
            cache = Some((hi, value.clone()));
            out.push(value);
        }
        return Ok(out);
    }
    let mut cache: Option<(Vec<usize>, Datum)> = None;
    for i in 0..n {
        let frame = frame_rows(order, f, s, i)?;
        if let Some((rows, v)) = &cache {
            if *rows == frame {
                out.push(v.clone());
                continue;
            }
        }
        let rows: Vec<(&Row, isize)> = frame.iter().map(|&j| (&inputs[j], 1)).collect();
        let value = finish(aggs, &partial(aggs, &rows)?)?.remove(0);
        cache = Some((frame, value.clone()));
        out.push(value);
    }
    Ok(out)
}

/// The positions in row `i`'s frame, after its EXCLUDE.
fn frame_rows(
    order: &Order,
    f: &WindowFunc,
    s: &Sorted,
    i: usize,
) -> Result<Vec<usize>, EvalError> {
    let (lo, hi) = bounds(order, f, s, i)?;
    let (plo, phi) = s.peers(i);
    Ok((lo..hi)
        .filter(|&j| match f.frame.exclude {
            FrameExclude::NoOthers => true,
            FrameExclude::CurrentRow => j != i,
            FrameExclude::Group => !(plo..phi).contains(&j),
            FrameExclude::Ties => j == i || !(plo..phi).contains(&j),
        })
        .collect())
}

/// Row `i`'s frame as positions `[lo, hi)` before EXCLUDE.
fn bounds(
    order: &Order,
    f: &WindowFunc,
    s: &Sorted,
    i: usize,
) -> Result<(usize, usize), EvalError> {
    let n = s.len();
    let lo = bound(order, f, s, i, &f.frame.start, true)?;
    let hi = bound(order, f, s, i, &f.frame.end, false)?;
    Ok((lo.min(n), hi.max(lo).min(n)))
}

/// Where a frame bound puts the frame's start (`start`) or its exclusive end.
fn bound(
    order: &Order,
    f: &WindowFunc,
    s: &Sorted,
    i: usize,
    b: &FrameBound,
    start: bool,
) -> Result<usize, EvalError> {
    let n = s.len();
    let (plo, phi) = s.peers(i);
    let g = s.group[i];
    let groups = s.bounds.len();
    Ok(match (b, f.frame.units) {
        (FrameBound::UnboundedPreceding, _) => 0,
        (FrameBound::UnboundedFollowing, _) => n,
        (FrameBound::CurrentRow, FrameUnits::Rows) => {
            if start {
                i
            } else {
                i + 1
            }
        }
        (FrameBound::CurrentRow, _) => {
            if start {
                plo
            } else {
                phi
            }
        }
        (FrameBound::Preceding { count, .. }, FrameUnits::Rows) => {
            let at = i as i128 - *count as i128 + i128::from(!start);
            at.clamp(0, n as i128) as usize
        }
        (FrameBound::Following { count, .. }, FrameUnits::Rows) => {
            let at = i as i128 + *count as i128 + i128::from(!start);
            at.clamp(0, n as i128) as usize
        }
        (FrameBound::Preceding { count, .. }, FrameUnits::Groups) => {
            let target = g as i128 - *count as i128;
            if target < 0 {
                0
            } else if start {
                s.bounds[target as usize].0
            } else {
                s.bounds[target as usize].1
            }
        }
        (FrameBound::Following { count, .. }, FrameUnits::Groups) => {
            let target = g + *count as usize;
            if target >= groups {
                n
            } else if start {
                s.bounds[target].0
            } else {
                s.bounds[target].1
            }
        }
        (
            FrameBound::Preceding { bound, .. } | FrameBound::Following { bound, .. },
            FrameUnits::Range,
        ) => {
            let (_, desc, nulls_first) = order[0];
            if s.keys[i][0].is_null() {
                // A NULL key's offset frame is its peers (the other NULLs).
                return Ok(if start { plo } else { phi });
            }
            let mut edge = match bound {
                Some(e) => e.eval(&s.rows[i])?,
                None => return Ok(if start { plo } else { phi }),
            };
            // An infinite key moved by an infinite offset (`-inf - inf`
            // PRECEDING, `-inf + inf` FOLLOWING) is NaN; Postgres then takes
            // every value but NaN as in range.
            if let Datum::Float4(F64(x)) | Datum::Float8(F64(x)) = &mut edge {
                let key_nan = matches!(s.keys[i][0], Datum::Float4(F64(k)) | Datum::Float8(F64(k)) if k.is_nan());
                if x.is_nan() && !key_nan {
                    *x = if start != desc {
                        f64::NEG_INFINITY
                    } else {
                        f64::INFINITY
                    };
                }
            }
            // The first row at or past the edge (start), or past it (end).
            s.keys.partition_point(|k| {
                let o = compare_one(&k[0], &edge, desc, nulls_first);
                if start {
                    o == Ordering::Less
                } else {
                    o != Ordering::Greater
                }
            })
        }
    })
}
