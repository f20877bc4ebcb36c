//! Column pruning: each operator is given only the columns something above
//! it reads. A join arranges its inputs, so every column carried into it is
//! held in memory once per arrangement; TPC-H's lineitem has sixteen columns
//! and most queries read four.
//!
//! `prune(plan, demand)` returns a plan that computes at least the demanded
//! columns, and where each column it kept now sits. Operators whose meaning
//! depends on whole rows (DISTINCT, set operations, top-k's tie-break,
//! recursion) keep every column of their input, and pruning continues below
//! them.

use std::collections::{BTreeSet, HashMap};

use super::expr::Expr;
use super::plan::{JoinKind, Plan};

/// Old column → new column.
type Map = HashMap<usize, usize>;

fn columns_of(exprs: &[Expr], out: &mut BTreeSet<usize>) {
    for e in exprs {
        let mut v = Vec::new();
        e.columns(&mut v);
        out.extend(v);
    }
}

fn remap(e: &Expr, m: &Map) -> Expr {
    e.remap(&|c| m[&c])
}

fn all(arity: usize) -> BTreeSet<usize> {
    (0..arity).collect()
}

fn identity(arity: usize) -> Map {
    (0..arity).map(|c| (c, c)).collect()
}

/// Prunes a view's plan: every output column is demanded.
pub fn prune_view(plan: Plan) -> Plan {
    let arity = plan.arity();
    let (p, m) = prune(plan, &all(arity));
    if (0..arity).all(|c| m[&c] == c) && p.arity() == arity {
        return p;
    }
    Plan::Project {
        input: Box::new(p),
        exprs: (0..arity).map(|c| Expr::Column(m[&c])).collect(),
    }
}

/// `plan` restricted to `demand`, with `demand` in its original order at the
/// front: used where a parent needs a fixed layout (UNION inputs).
fn exactly(plan: Plan, demand: &BTreeSet<usize>) -> Plan {
    let (p, m) = prune(plan, demand);
    let cols: Vec<usize> = demand.iter().map(|c| m[c]).collect();
    if p.arity() == cols.len() && cols.iter().enumerate().all(|(i, c)| i == *c) {
        return p;
    }
    Plan::Project {
        input: Box::new(p),
        exprs: cols.into_iter().map(Expr::Column).collect(),
    }
}

/// Every column of the input kept (in place), pruning below it.
fn keep_all(plan: Plan) -> Plan {
    let arity = plan.arity();
    exactly(plan, &all(arity))
}

pub fn prune(plan: Plan, demand: &BTreeSet<usize>) -> (Plan, Map) {
    match plan {
        Plan::Get { arity, .. } => {
            if demand.len() == arity {
                return (plan, identity(arity));
            }
            let cols: Vec<usize> = demand.iter().copied().collect();
            let map = cols.iter().enumerate().map(|(i, c)| (*c, i)).collect();
            (
                Plan::Project {
                    input: Box::new(plan),
                    exprs: cols.into_iter().map(Expr::Column).collect(),
                },
                map,
            )
        }
        Plan::Filter { input, predicates } => {
            let mut need = demand.clone();
            columns_of(&predicates, &mut need);
            let (p, m) = prune(*input, &need);
            let predicates = predicates.iter().map(|e| remap(e, &m)).collect();
            (
                Plan::Filter {
                    input: Box::new(p),
                    predicates,
                },
                m,
            )
        }
        Plan::Project { input, exprs } => {
            let kept: Vec<usize> = demand.iter().copied().collect();
            let chosen: Vec<Expr> = kept.iter().map(|&c| exprs[c].clone()).collect();
            let mut need = BTreeSet::new();
            columns_of(&chosen, &mut need);
            let (p, m) = prune(*input, &need);
            let exprs = chosen.iter().map(|e| remap(e, &m)).collect();
            let map = kept.iter().enumerate().map(|(i, c)| (*c, i)).collect();
            (
                Plan::Project {
                    input: Box::new(p),
                    exprs,
                },
                map,
            )
        }
        Plan::Join {
            left,
            right,
            kind,
            left_keys,
            right_keys,
            residual,
            right_arity: _,
            null_safe,
        } => {
            let la = left.arity();
            let mut residual_cols = BTreeSet::new();
            columns_of(&residual, &mut residual_cols);
            let mut lneed: BTreeSet<usize> = demand.iter().copied().filter(|c| *c < la).collect();
            columns_of(&left_keys, &mut lneed);
            lneed.extend(residual_cols.iter().copied().filter(|c| *c < la));
            let mut rneed: BTreeSet<usize> = demand
                .iter()
                .filter(|c| **c >= la)
                .map(|c| c - la)
                .collect();
            columns_of(&right_keys, &mut rneed);
            rneed.extend(residual_cols.iter().filter(|c| **c >= la).map(|c| c - la));
            let (lp, lm) = prune(*left, &lneed);
            let (rp, rm) = prune(*right, &rneed);
            let (la2, ra2) = (lp.arity(), rp.arity());
            let joined = |c: usize| if c < la { lm[&c] } else { la2 + rm[&(c - la)] };
            let residual = residual.iter().map(|e| e.remap(&joined)).collect();
            let left_keys = left_keys.iter().map(|e| remap(e, &lm)).collect();
            let right_keys = right_keys.iter().map(|e| remap(e, &rm)).collect();
            let mut map: Map = lm.clone();
            if !matches!(kind, JoinKind::Semi | JoinKind::Anti) {
                map.extend(rm.iter().map(|(c, n)| (c + la, la2 + n)));
            }
            (
                Plan::Join {
                    left: Box::new(lp),
                    right: Box::new(rp),
                    kind,
                    left_keys,
                    right_keys,
                    residual,
                    right_arity: ra2,
                    null_safe,
                },
                map,
            )
        }
        Plan::Reduce { input, keys, aggs } => {
            let mut need = BTreeSet::new();
            columns_of(&keys, &mut need);
            for a in &aggs {
                columns_of(&a.inputs(), &mut need);
            }
            let (p, m) = prune(*input, &need);
            let arity = keys.len() + aggs.len();
            let keys = keys.iter().map(|e| remap(e, &m)).collect();
            let aggs = aggs.iter().map(|a| a.remap(&|c| m[&c])).collect();
            (
                Plan::Reduce {
                    input: Box::new(p),
                    keys,
                    aggs,
                },
                identity(arity),
            )
        }
        Plan::Union { inputs } => {
            let map = demand.iter().enumerate().map(|(i, c)| (*c, i)).collect();
            let inputs = inputs.into_iter().map(|p| exactly(p, demand)).collect();
            (Plan::Union { inputs }, map)
        }
        // Operators that read every column of their inputs (to compare
        // whole rows, or to pass them on): each input keeps all its columns.
        Plan::Distinct { .. }
        | Plan::SetOp { .. }
        | Plan::TopK { .. }
        | Plan::Recursive { .. }
        | Plan::Window { .. }
        | Plan::FlatMap { .. }
        | Plan::Temporal { .. } => {
            let arity = plan.arity();
            let mut plan = plan;
            plan.map_inputs(keep_all);
            (plan, identity(arity))
        }
        Plan::Constant { .. } | Plan::RecursiveRef { .. } => {
            let arity = plan.arity();
            (plan, identity(arity))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_carries_only_what_is_read() {
        let get = |arity| Plan::Get {
            table: 0,
            name: "t".into(),
            arity,
        };
        // SELECT l.#1, r.#2 FROM l(5 cols) JOIN r(4 cols) ON l.#0 = r.#0
        let plan = Plan::Project {
            input: Box::new(Plan::Join {
                left: Box::new(get(5)),
                right: Box::new(get(4)),
                kind: JoinKind::Inner,
                left_keys: vec![Expr::Column(0)],
                right_keys: vec![Expr::Column(0)],
                residual: vec![],
                right_arity: 4,
                null_safe: false,
            }),
            exprs: vec![Expr::Column(1), Expr::Column(7)],
        };
        let pruned = prune_view(plan).to_string();
        assert!(pruned.contains("Project #0, #1\n      Get t"), "{pruned}");
        assert!(pruned.contains("Project #0, #2\n      Get t"), "{pruned}");
        assert!(pruned.starts_with("Project #1, #3\n"), "{pruned}");
    }
}
