//! `Temporal`: rows while their time-based conditions hold at the clock.
//!
//! Each condition `v OP g(now)` has `g` non-decreasing in `now`, so as the
//! clock moves a row's condition changes at most once each way: the row is
//! in the view for `now` in `[lo, hi)`. When a row arrives the operator finds
//! `lo` and `hi` (by bisection over the clock's range, evaluating the
//! condition as Postgres would at that instant), emits the row if the clock
//! is inside, and files its entry and exit under those instants. A clock
//! update (a row of the clock table, broadcast to every worker) releases
//! what is filed up to the new time, at the time of that update. Work per
//! row is O(log range) when it arrives and O(1) when it enters or leaves; a
//! clock step costs only the rows whose boundary it passes.

use std::collections::BTreeMap;

use differential_dataflow::AsCollection;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Capability;

use super::{split, Coll, Errs, Time};
use crate::repr::datetime::MICROS_PER_DAY;
use crate::repr::{Datum, Row};
use crate::sql::expr::{sql_cmp, EvalError};
use crate::sql::plan::{TemporalBound, TemporalOp};

/// How far from the clock a boundary is looked for: a row whose condition
/// changes further away than this (about 300 years) is taken as never
/// changing.
const HORIZON: i64 = 300 * 366 * MICROS_PER_DAY;

type Out = (Result<Row, String>, isize);

pub fn render<'s, T: Time>(
    input: Coll<'s, T>,
    clock: Coll<'s, T>,
    bounds: Vec<TemporalBound>,
) -> (Coll<'s, T>, Errs<'s, T>) {
    let clock = clock.inner.broadcast();
    let out =
        input
            .inner
            .binary_frontier(clock, Pipeline, Pipeline, "Temporal", move |_cap, _info| {
                // Per time not yet processed: its capability, data and clock updates.
                type Pending<T> = (Capability<T>, Vec<(Row, isize)>, Vec<(Row, isize)>);
                let mut pending: BTreeMap<T, Pending<T>> = BTreeMap::new();
                let mut now: Option<i64> = None;
                // Rows arrived before any clock value (none should: the clock is
                // in place before a view reading it is built).
                let mut unclocked: Vec<(Row, isize)> = Vec::new();
                // What happens to which rows when the clock reaches an instant.
                let mut filed: BTreeMap<i64, Vec<(Row, isize)>> = BTreeMap::new();
                move |(data, f1), (ticks, f2), output| {
                    data.for_each(|cap, batch| {
                        for (row, t, diff) in batch.drain(..) {
                            let entry = pending
                                .entry(t.clone())
                                .or_insert_with(|| (cap.delayed(&t, 0), Vec::new(), Vec::new()));
                            entry.1.push((row, diff));
                        }
                    });
                    ticks.for_each(|cap, batch| {
                        for (row, t, diff) in batch.drain(..) {
                            let entry = pending
                                .entry(t.clone())
                                .or_insert_with(|| (cap.delayed(&t, 0), Vec::new(), Vec::new()));
                            entry.2.push((row, diff));
                        }
                    });
                    let ready: Vec<T> = pending
                        .keys()
                        .filter(|t| !f1.less_equal(t) && !f2.less_equal(t))
                        .cloned()
                        .collect();
                    for t in ready {
                        let (cap, rows, clock_updates) = pending.remove(&t).expect("listed above");
                        let mut emitted: Vec<Out> = Vec::new();
                        // The clock first: its new value, then what it releases.
                        if let Some(value) =
                            clock_updates.iter().find_map(|(r, d)| match r.first() {
                                Some(Datum::TimestampTz(v)) if *d > 0 => Some(*v),
                                _ => None,
                            })
                        {
                            now = Some(value);
                            while let Some(entry) = filed.first_entry() {
                                if *entry.key() > value {
                                    break;
                                }
                                for (row, diff) in entry.remove() {
                                    emitted.push((Ok(row), diff));
                                }
                            }
                            for (row, diff) in std::mem::take(&mut unclocked) {
                                admit(&bounds, row, diff, value, &mut filed, &mut emitted);
                            }
                        }
                        for (row, diff) in rows {
                            match now {
                                Some(n) => admit(&bounds, row, diff, n, &mut filed, &mut emitted),
                                None => unclocked.push((row, diff)),
                            }
                        }
                        consolidate(&mut emitted);
                        if !emitted.is_empty() {
                            let mut session = output.session(&cap);
                            for (r, d) in emitted {
                                session.give((r, t.clone(), d));
                            }
                        }
                    }
                }
            });
    split(out.as_collection())
}

fn consolidate(v: &mut Vec<Out>) {
    v.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<Out> = Vec::with_capacity(v.len());
    for (r, d) in v.drain(..) {
        match out.last_mut() {
            Some(last) if last.0 == r => last.1 += d,
            _ => out.push((r, d)),
        }
    }
    out.retain(|(_, d)| *d != 0);
    *v = out;
}

/// A row (or its retraction) arriving while the clock reads `now`: emitted
/// if its conditions hold now, and filed to enter and leave at the instants
/// they start and stop holding.
fn admit(
    bounds: &[TemporalBound],
    row: Row,
    diff: isize,
    now: i64,
    filed: &mut BTreeMap<i64, Vec<(Row, isize)>>,
    emitted: &mut Vec<Out>,
) {
    let (lo, hi) = match window(bounds, &row, now) {
        Ok(Some(w)) => w,
        Ok(None) => return,
        Err(e) => {
            emitted.push((Err(e.0), diff));
            return;
        }
    };
    if hi.is_some_and(|h| h <= lo) {
        return;
    }
    if lo <= now {
        if hi.is_none_or(|h| now < h) {
            emitted.push((Ok(row.clone()), diff));
            if let Some(h) = hi {
                filed.entry(h).or_default().push((row, -diff));
            }
        }
    } else {
        filed.entry(lo).or_default().push((row.clone(), diff));
        if let Some(h) = hi {
            filed.entry(h).or_default().push((row, -diff));
        }
    }
}

/// The instants `[lo, hi)` (`hi` None: for good) during which every
/// condition holds for `row`, searched within the horizon around `now`;
/// `None` if a value is NULL (the condition is never true).
fn window(
    bounds: &[TemporalBound],
    row: &Row,
    now: i64,
) -> Result<Option<(i64, Option<i64>)>, EvalError> {
    let (start, end) = (now.saturating_sub(HORIZON), now.saturating_add(HORIZON));
    let mut lo = i64::MIN;
    let mut hi: Option<i64> = None;
    for b in bounds {
        let v = b.row.eval(row)?;
        if v.is_null() {
            return Ok(None);
        }
        // `g(t) >= v` (or `> v`) turns from false to true once, at the
        // first t found by bisection; never within the horizon: None.
        let first = |strict: bool| -> Result<Option<i64>, EvalError> {
            let reached = |t: i64| -> Result<bool, EvalError> {
                let g = b.now.eval(&[Datum::TimestampTz(t)])?;
                if g.is_null() {
                    return Ok(false);
                }
                let o = sql_cmp(&g, &v)?;
                Ok(if strict { o.is_gt() } else { o.is_ge() })
            };
            if reached(start)? {
                return Ok(Some(start));
            }
            if !reached(end)? {
                return Ok(None);
            }
            let (mut a, mut z) = (start, end);
            while z - a > 1 {
                let m = a + (z - a) / 2;
                if reached(m)? {
                    z = m;
                } else {
                    a = m;
                }
            }
            Ok(Some(z))
        };
        // v OP g(now), with g non-decreasing.
        let (from, until) = match b.op {
            // v > g: until g >= v.   v >= g: until g > v.
            TemporalOp::Gt => (None, first(false)?),
            TemporalOp::Ge => (None, first(true)?),
            // v < g: from g > v.     v <= g: from g >= v.
            TemporalOp::Lt => (Some(first(true)?), None),
            TemporalOp::Le => (Some(first(false)?), None),
            // v = g: from g >= v until g > v.
            TemporalOp::Eq => (Some(first(false)?), first(true)?),
        };
        match from {
            // Never reached within the horizon: never true.
            Some(None) => return Ok(None),
            Some(Some(f)) => lo = lo.max(f),
            None => {}
        }
        if let Some(u) = until {
            hi = Some(hi.map_or(u, |h: i64| h.min(u)));
        }
    }
    Ok(Some((lo, hi)))
}
