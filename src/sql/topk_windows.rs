//! `row_number() ... WHERE rn <= k`, the idiomatic top-k per group, kept
//! cheap: the window is computed over the first k rows of each partition (a
//! maintained TopK, which re-reads a small bucket per change) instead of
//! over whole partitions (which a change would sort again).
//!
//! ```text
//! Filter rn <= k                      Filter rn <= k
//!   Project ..., #w AS rn               Project ..., #w AS rn
//!     Window row_number()       ──▶       Window row_number()
//!       input                               TopK per partition, order, limit k
//!                                             input
//! ```
//! Only when every function of that window is `row_number()` (the others
//! would see rows the TopK drops) and its rows are ordered by their values
//! alone: then both order peers the same way, by the whole row.

use super::expr::{BinOp, Expr};
use super::plan::{Plan, SortKey, WindowKind};
use crate::repr::Datum;

/// Rewrites every such filter in `plan`.
pub fn rewrite(plan: Plan) -> Plan {
    let mut plan = plan;
    plan.map_inputs(rewrite);
    match plan {
        Plan::Filter { input, predicates } => {
            let limit = predicates
                .iter()
                .filter_map(|p| row_number_limit(p, &input))
                .min();
            let input = match limit {
                Some(k) => Box::new(limit_window(*input, k)),
                None => input,
            };
            Plan::Filter { input, predicates }
        }
        other => other,
    }
}

/// The window column a column of `plan` is, through projections.
fn window_column(plan: &Plan, column: usize) -> Option<(usize, &Plan)> {
    match plan {
        Plan::Project { input, exprs } => match exprs.get(column)? {
            Expr::Column(c) => window_column(input, *c),
            _ => None,
        },
        Plan::Window { input, funcs, .. } => {
            let base = input.arity();
            (column >= base && column < base + funcs.len()).then(|| (column - base, plan))
        }
        _ => None,
    }
}

/// `k` if `p` is `rn <= k`, `rn < k + 1` or `rn = k` over a row_number of a
/// window that can be limited.
fn row_number_limit(p: &Expr, input: &Plan) -> Option<u64> {
    let Expr::Binary {
        op, left, right, ..
    } = p
    else {
        return None;
    };
    let (Expr::Column(c), Expr::Literal(Datum::Int(k))) = (left.as_ref(), right.as_ref()) else {
        return None;
    };
    let k = match op {
        BinOp::LtEq | BinOp::Eq => *k,
        BinOp::Lt => k - 1,
        _ => return None,
    };
    let (_, window) = window_column(input, *c)?;
    let Plan::Window { funcs, ties, .. } = window else {
        return None;
    };
    let only_row_numbers = funcs.iter().all(|f| f.kind == WindowKind::RowNumber);
    (only_row_numbers && ties.is_empty() && k >= 0).then_some(k as u64)
}

/// The plan with the window under it computed over the first `k` rows of
/// each partition.
fn limit_window(plan: Plan, k: u64) -> Plan {
    match plan {
        Plan::Project { input, exprs } => Plan::Project {
            input: Box::new(limit_window(*input, k)),
            exprs,
        },
        Plan::Window {
            input,
            partition,
            order,
            ties,
            funcs,
        } => {
            let arity = input.arity();
            let np = partition.len();
            let prefix = np + order.len();
            let mut front: Vec<Expr> = partition.clone();
            front.extend(order.iter().map(|(e, _, _)| e.clone()));
            front.extend((0..arity).map(Expr::Column));
            let topk = Plan::TopK {
                input: Box::new(Plan::Project {
                    input,
                    exprs: front,
                }),
                group: np,
                order: order
                    .iter()
                    .enumerate()
                    .map(|(j, (_, desc, nulls_first))| SortKey {
                        column: np + j,
                        desc: *desc,
                        nulls_first: *nulls_first,
                    })
                    .collect(),
                limit: Some(k),
                offset: 0,
            };
            Plan::Window {
                input: Box::new(Plan::Project {
                    input: Box::new(topk),
                    exprs: (prefix..prefix + arity).map(Expr::Column).collect(),
                }),
                partition,
                order,
                ties,
                funcs,
            }
        }
        other => other,
    }
}
