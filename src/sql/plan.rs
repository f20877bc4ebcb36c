//! The relational plan a view compiles to. Each operator has a twin file in
//! `dataflow/render/` that turns it into dataflow operators.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::expr::Expr;
use crate::repr::Type;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggFunc {
    CountStar,
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

impl AggFunc {
    pub fn name(self) -> &'static str {
        match self {
            AggFunc::CountStar | AggFunc::Count => "count",
            AggFunc::Sum => "sum",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
            AggFunc::Avg => "avg",
        }
    }
}

/// One aggregate of a Reduce: `func(DISTINCT? input)` with its input type (to
/// pick Postgres's accumulation rules) and output type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub func: AggFunc,
    pub input: Expr,
    pub input_type: Type,
    pub output_type: Type,
    pub distinct: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinKind {
    Inner,
    /// Left rows without a match are kept, padded with NULLs on the right.
    Left,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Plan {
    /// All rows of a base table (an index into the server's table list).
    Get {
        table: usize,
        name: String,
        arity: usize,
    },
    /// Rows for which every predicate is true.
    Filter {
        input: Box<Plan>,
        predicates: Vec<Expr>,
    },
    /// One output column per expression.
    Project { input: Box<Plan>, exprs: Vec<Expr> },
    /// Equi-join on `left_keys = right_keys`; output is the left row followed by the
    /// right row. `residual` is checked on that output as part of the join condition.
    Join {
        left: Box<Plan>,
        right: Box<Plan>,
        kind: JoinKind,
        left_keys: Vec<Expr>,
        right_keys: Vec<Expr>,
        residual: Vec<Expr>,
        right_arity: usize,
    },
    /// Group by `keys`; output is the key values followed by one value per
    /// aggregate. With no keys it is a global aggregate: exactly one row, even
    /// over no input.
    Reduce {
        input: Box<Plan>,
        keys: Vec<Expr>,
        aggs: Vec<Aggregate>,
    },
    /// Removes duplicate rows.
    Distinct { input: Box<Plan> },
}

impl Plan {
    pub fn arity(&self) -> usize {
        match self {
            Plan::Get { arity, .. } => *arity,
            Plan::Filter { input, .. } | Plan::Distinct { input } => input.arity(),
            Plan::Project { exprs, .. } => exprs.len(),
            Plan::Join {
                left, right_arity, ..
            } => left.arity() + right_arity,
            Plan::Reduce { keys, aggs, .. } => keys.len() + aggs.len(),
        }
    }

    /// Tables the plan reads.
    pub fn tables(&self, out: &mut Vec<usize>) {
        match self {
            Plan::Get { table, .. } => out.push(*table),
            Plan::Filter { input, .. }
            | Plan::Project { input, .. }
            | Plan::Reduce { input, .. }
            | Plan::Distinct { input } => input.tables(out),
            Plan::Join { left, right, .. } => {
                left.tables(out);
                right.tables(out);
            }
        }
    }

    fn explain(&self, depth: usize, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pad = "  ".repeat(depth);
        let list = |v: &[Expr]| {
            v.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Plan::Get { name, .. } => writeln!(f, "{pad}Get {name}"),
            Plan::Filter { input, predicates } => {
                writeln!(f, "{pad}Filter {}", list(predicates))?;
                input.explain(depth + 1, f)
            }
            Plan::Project { input, exprs } => {
                writeln!(f, "{pad}Project {}", list(exprs))?;
                input.explain(depth + 1, f)
            }
            Plan::Join {
                left,
                right,
                kind,
                left_keys,
                right_keys,
                residual,
                ..
            } => {
                write!(
                    f,
                    "{pad}{:?}Join on ({}) = ({})",
                    kind,
                    list(left_keys),
                    list(right_keys)
                )?;
                if !residual.is_empty() {
                    write!(f, " and {}", list(residual))?;
                }
                writeln!(f)?;
                left.explain(depth + 1, f)?;
                right.explain(depth + 1, f)
            }
            Plan::Reduce { input, keys, aggs } => {
                let aggs: Vec<String> = aggs
                    .iter()
                    .map(|a| match a.func {
                        AggFunc::CountStar => "count(*)".to_string(),
                        func => format!(
                            "{}({}{})",
                            func.name(),
                            if a.distinct { "DISTINCT " } else { "" },
                            a.input
                        ),
                    })
                    .collect();
                writeln!(
                    f,
                    "{pad}Reduce keys=[{}] aggs=[{}]",
                    list(keys),
                    aggs.join(", ")
                )?;
                input.explain(depth + 1, f)
            }
            Plan::Distinct { input } => {
                writeln!(f, "{pad}Distinct")?;
                input.explain(depth + 1, f)
            }
        }
    }
}

/// `EXPLAIN`-style text: one operator per line, inputs indented below.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.explain(0, f)
    }
}
