//! The relational plan a view compiles to. Each operator has a twin file in
//! `dataflow/render/` that turns it into dataflow operators.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::expr::Expr;
use crate::repr::{Row, Type};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AggFunc {
    CountStar,
    Count,
    Sum,
    Min,
    Max,
    Avg,
    BoolAnd,
    BoolOr,
    /// `string_agg(value, delimiter)`.
    StringAgg,
    JsonAgg,
    JsonbAgg,
    /// `json_object_agg(key, value)`: args `[key as text, value]`.
    JsonObjectAgg,
    /// `jsonb_object_agg(key, value)`: the last value of a key wins.
    JsonbObjectAgg,
    ArrayAgg,
    /// The value of the only row; more than one row is an error. This is how a
    /// scalar subquery that is not an aggregate is read.
    Single,
    /// `percentile_cont(f) WITHIN GROUP (ORDER BY x)`: args `[x, f]`, x as
    /// float8; interpolates between the values around position f·(n-1).
    PercentileCont,
    /// `percentile_disc(f) WITHIN GROUP (ORDER BY x)`: args `[x, f]`; the
    /// first value whose position reaches fraction f.
    PercentileDisc,
    /// `mode() WITHIN GROUP (ORDER BY x)`: the most frequent value, the first
    /// in the order among equally frequent ones.
    Mode,
}

impl AggFunc {
    pub fn name(self) -> &'static str {
        match self {
            AggFunc::CountStar | AggFunc::Count => "count",
            AggFunc::Sum => "sum",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
            AggFunc::Avg => "avg",
            AggFunc::BoolAnd => "bool_and",
            AggFunc::BoolOr => "bool_or",
            AggFunc::StringAgg => "string_agg",
            AggFunc::JsonAgg => "json_agg",
            AggFunc::JsonbAgg => "jsonb_agg",
            AggFunc::JsonObjectAgg => "json_object_agg",
            AggFunc::JsonbObjectAgg => "jsonb_object_agg",
            AggFunc::ArrayAgg => "array_agg",
            AggFunc::Single => "single_value",
            AggFunc::PercentileCont => "percentile_cont",
            AggFunc::PercentileDisc => "percentile_disc",
            AggFunc::Mode => "mode",
        }
    }

    /// Aggregates that need all of a group's values in one place (their order
    /// matters), so they are not computed from partials of buckets.
    pub fn needs_all_values(self) -> bool {
        matches!(
            self,
            AggFunc::StringAgg
                | AggFunc::JsonAgg
                | AggFunc::JsonbAgg
                | AggFunc::JsonObjectAgg
                | AggFunc::JsonbObjectAgg
                | AggFunc::ArrayAgg
                | AggFunc::Single
                | AggFunc::PercentileCont
                | AggFunc::PercentileDisc
                | AggFunc::Mode
        )
    }

    /// `percentile_*` and `mode`: ordered-set aggregates, written with
    /// WITHIN GROUP; the order is part of what they compute.
    pub fn is_ordered_set(self) -> bool {
        matches!(
            self,
            AggFunc::PercentileCont | AggFunc::PercentileDisc | AggFunc::Mode
        )
    }
}

/// One aggregate of a Reduce: `func(DISTINCT? args ORDER BY order) FILTER
/// (WHERE filter)`, with its input type (to pick Postgres's accumulation rules)
/// and output type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Aggregate {
    pub func: AggFunc,
    /// No arguments for `count(*)`; `[value, delimiter]` for `string_agg`.
    pub args: Vec<Expr>,
    /// ORDER BY inside the call: expressions with direction.
    pub order_by: Vec<(Expr, bool, bool)>,
    pub filter: Option<Expr>,
    pub input_type: Type,
    pub output_type: Type,
    pub distinct: bool,
}

impl Aggregate {
    /// The input values it reads per row: filter, arguments, order keys.
    pub fn inputs(&self) -> Vec<Expr> {
        let mut v: Vec<Expr> = self.filter.iter().cloned().collect();
        v.extend(self.args.iter().cloned());
        v.extend(self.order_by.iter().map(|(e, _, _)| e.clone()));
        v
    }

    /// The same aggregate with every column it reads renumbered by `f`.
    pub fn remap(&self, f: &impl Fn(usize) -> usize) -> Aggregate {
        Aggregate {
            args: self.args.iter().map(|e| e.remap(f)).collect(),
            order_by: self
                .order_by
                .iter()
                .map(|(e, desc, nulls)| (e.remap(f), *desc, *nulls))
                .collect(),
            filter: self.filter.as_ref().map(|e| e.remap(f)),
            ..self.clone()
        }
    }
}

/// Whether every aggregate can be kept as accumulated differences (a row's
/// contribution added, and taken back when it goes): `count(*)`,
/// `count(x)`, and `sum`/`avg` of integers or numerics, none DISTINCT or
/// ordered. Float sums are not exact under subtraction, and the other
/// aggregates need the rows themselves.
pub fn accumulable(aggs: &[Aggregate]) -> bool {
    aggs.iter().all(|a| {
        !a.distinct
            && a.order_by.is_empty()
            && match a.func {
                AggFunc::CountStar | AggFunc::Count => true,
                AggFunc::Sum | AggFunc::Avg => matches!(
                    a.input_type,
                    Type::Int2 | Type::Int4 | Type::Int8 | Type::Numeric
                ),
                _ => false,
            }
    })
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.func == AggFunc::CountStar {
            write!(f, "count(*)")?;
        } else {
            let args: Vec<String> = self.args.iter().map(|e| e.to_string()).collect();
            write!(
                f,
                "{}({}{}",
                self.func.name(),
                if self.distinct { "DISTINCT " } else { "" },
                args.join(", ")
            )?;
            if !self.order_by.is_empty() {
                let keys: Vec<String> = self
                    .order_by
                    .iter()
                    .map(|(e, desc, _)| format!("{e}{}", if *desc { " DESC" } else { "" }))
                    .collect();
                write!(f, " ORDER BY {}", keys.join(", "))?;
            }
            write!(f, ")")?;
        }
        if let Some(p) = &self.filter {
            write!(f, " FILTER (WHERE {p})")?;
        }
        Ok(())
    }
}

/// How a temporal condition compares a row's value `v` with `g(now)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TemporalOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

/// One condition `row OP now_expr` of a time-based view: `row` reads the
/// input row, `now_expr` reads a one-column row holding the clock (a
/// timestamptz) and never decreases as the clock moves, so each row's
/// condition changes at most once each way.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TemporalBound {
    pub row: Expr,
    pub op: TemporalOp,
    pub now: Expr,
}

/// What a window function computes for each row of its partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WindowKind {
    RowNumber,
    Rank,
    DenseRank,
    PercentRank,
    CumeDist,
    /// `ntile(n)`: the argument is the bucket count.
    Ntile,
    /// `lag(value [, offset [, default]])`, rows before in the partition.
    Lag,
    Lead,
    FirstValue,
    LastValue,
    NthValue,
    /// An aggregate over the row's frame.
    Agg(AggFunc),
}

impl WindowKind {
    pub fn name(self) -> &'static str {
        match self {
            WindowKind::RowNumber => "row_number",
            WindowKind::Rank => "rank",
            WindowKind::DenseRank => "dense_rank",
            WindowKind::PercentRank => "percent_rank",
            WindowKind::CumeDist => "cume_dist",
            WindowKind::Ntile => "ntile",
            WindowKind::Lag => "lag",
            WindowKind::Lead => "lead",
            WindowKind::FirstValue => "first_value",
            WindowKind::LastValue => "last_value",
            WindowKind::NthValue => "nth_value",
            WindowKind::Agg(a) => a.name(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FrameUnits {
    Rows,
    Range,
    Groups,
}

/// One end of a frame. An offset is a constant: a row or group count for
/// ROWS/GROUPS; for RANGE, `bound` is the order key moved by the offset
/// (`key - offset` for PRECEDING under ascending order), evaluated per row.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FrameBound {
    UnboundedPreceding,
    Preceding { count: u64, bound: Option<Expr> },
    CurrentRow,
    Following { count: u64, bound: Option<Expr> },
    UnboundedFollowing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FrameExclude {
    NoOthers,
    CurrentRow,
    Group,
    Ties,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Frame {
    pub units: FrameUnits,
    pub start: FrameBound,
    pub end: FrameBound,
    pub exclude: FrameExclude,
}

impl Frame {
    /// SQL's default: with ORDER BY, the partition up to the current row's
    /// last peer; without, the whole partition (every row is a peer).
    pub fn default_frame() -> Frame {
        Frame {
            units: FrameUnits::Range,
            start: FrameBound::UnboundedPreceding,
            end: FrameBound::CurrentRow,
            exclude: FrameExclude::NoOthers,
        }
    }
}

/// A window function call: its arguments (over the window's input row), the
/// FILTER of an aggregate, the frame, and for an aggregate the [`Aggregate`]
/// whose accumulation it shares with GROUP BY.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WindowFunc {
    pub kind: WindowKind,
    pub args: Vec<Expr>,
    pub frame: Frame,
    pub agg: Option<Aggregate>,
    pub output_type: Type,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JoinKind {
    Inner,
    /// Left rows without a match are kept, padded with NULLs on the right.
    Left,
    /// Unmatched rows of both sides are kept, padded with NULLs on the other.
    Full,
    /// Left rows with at least one match, each once (EXISTS, IN); output is
    /// the left row only.
    Semi,
    /// Left rows without a match (NOT EXISTS); output is the left row only.
    Anti,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SetOpKind {
    Intersect,
    Except,
}

/// One ORDER BY term over a column of the input.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SortKey {
    pub column: usize,
    pub desc: bool,
    pub nulls_first: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// Fixed rows (VALUES, SELECT without FROM).
    Constant { rows: Vec<Row>, arity: usize },
    /// Equi-join on `left_keys = right_keys`; output is the left row followed by the
    /// right row (only the left row for Semi and Anti). `residual` is checked on
    /// the concatenated row as part of the join condition. Keys holding a NULL
    /// never match, unless `null_safe` (keys compared as IS NOT DISTINCT FROM,
    /// which decorrelated subqueries use to find their outer row again).
    Join {
        left: Box<Plan>,
        right: Box<Plan>,
        kind: JoinKind,
        left_keys: Vec<Expr>,
        right_keys: Vec<Expr>,
        residual: Vec<Expr>,
        right_arity: usize,
        null_safe: bool,
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
    /// All rows of every input (UNION ALL); the inputs have equal arity.
    Union { inputs: Vec<Plan> },
    /// INTERSECT / EXCEPT, with multiset semantics under `all`.
    SetOp {
        kind: SetOpKind,
        all: bool,
        left: Box<Plan>,
        right: Box<Plan>,
    },
    /// The first `limit` rows after skipping `offset`, in `order`, separately for
    /// each value of the first `group` columns (0: over all rows). Ties are
    /// broken by the whole row, so the choice is deterministic.
    TopK {
        input: Box<Plan>,
        group: usize,
        order: Vec<SortKey>,
        limit: Option<u64>,
        offset: u64,
    },
    /// WITH RECURSIVE: the least fixed point of `base ∪ step(self)` (as a set
    /// when `distinct`, for UNION; as a multiset for UNION ALL). `step` reads
    /// the rows found so far as `RecursiveRef { id }`.
    Recursive {
        id: usize,
        base: Box<Plan>,
        step: Box<Plan>,
        distinct: bool,
    },
    /// The rows of the enclosing `Recursive` with the same id.
    RecursiveRef { id: usize, arity: usize },
    /// Rows while every condition holds at the clock's current value: a row
    /// enters and leaves as the clock (the table [`crate::sql::CLOCK_TABLE`])
    /// passes the moments its conditions change, with no write.
    Temporal {
        input: Box<Plan>,
        bounds: Vec<TemporalBound>,
    },
    /// Set-returning functions: each input row followed by each row the
    /// functions produce for it, zipped side by side (a function with fewer
    /// rows gives NULLs, as in a select list or `ROWS FROM`), then the row's
    /// number if `ordinality`. With `outer`, a row for which they produce
    /// nothing is kept once with NULLs (`LEFT JOIN LATERAL f(...) ON true`).
    FlatMap {
        input: Box<Plan>,
        funcs: Vec<crate::sql::srf::Srf>,
        ordinality: bool,
        outer: bool,
    },
    /// Window functions: each input row followed by one value per function,
    /// computed over the rows with the same `partition` values in `order`
    /// (expressions with DESC and NULLS FIRST). `ties` orders the rows that
    /// tie on `order` (peers) without making them any less peers: the order
    /// of an ordered subquery the rows come from. A change to a partition
    /// recomputes that partition.
    Window {
        input: Box<Plan>,
        partition: Vec<Expr>,
        order: Vec<(Expr, bool, bool)>,
        ties: Vec<(Expr, bool, bool)>,
        funcs: Vec<WindowFunc>,
    },
}

/// An input of a join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

impl Plan {
    /// For a Reduce over an inner join, the side whose rows can be summed
    /// by their join key before the join (eager aggregation): each key of
    /// that side then meets the other side as one accumulated value instead
    /// of one row per match, so a change to a row of the other side moves
    /// one joined value, not one per row of that side sharing its key.
    ///
    /// It applies when every aggregate is [`accumulable`] and reads only
    /// that side's columns, the group keys read of that side at most the
    /// columns it joins on (a key of one column, or of a cast of one), the
    /// join has no residual condition, and neither the aggregates' inputs
    /// nor the group keys can fail (the inputs would be evaluated on rows
    /// without a match too, and could fail where Postgres does not). The
    /// right side is preferred when both qualify.
    pub fn summed_side(&self) -> Option<Side> {
        let Plan::Reduce { input, keys, aggs } = self else {
            return None;
        };
        let Plan::Join {
            left,
            kind: JoinKind::Inner,
            left_keys,
            right_keys,
            residual,
            ..
        } = &**input
        else {
            return None;
        };
        if !residual.is_empty() || !accumulable(aggs) {
            return None;
        }
        let inputs: Vec<Expr> = aggs.iter().flat_map(Aggregate::inputs).collect();
        if !inputs.iter().chain(keys).all(Expr::cannot_fail) {
            return None;
        }
        let columns = |exprs: &[Expr]| {
            let mut v = Vec::new();
            exprs.iter().for_each(|e| e.columns(&mut v));
            v
        };
        let (read, grouped) = (columns(&inputs), columns(keys));
        let left_arity = left.arity();
        // A join key that reads column `c` alone (`c`, or a cast of it).
        let joined_on = |join_keys: &[Expr], offset: usize, c: usize| {
            join_keys
                .iter()
                .any(|k| columns(std::slice::from_ref(k)) == [c - offset])
        };
        let right = read.iter().all(|&c| c >= left_arity)
            && grouped
                .iter()
                .filter(|&&c| c >= left_arity)
                .all(|&c| joined_on(right_keys, left_arity, c));
        let left_side = read.iter().all(|&c| c < left_arity)
            && grouped
                .iter()
                .filter(|&&c| c < left_arity)
                .all(|&c| joined_on(left_keys, 0, c));
        if right {
            Some(Side::Right)
        } else if left_side {
            Some(Side::Left)
        } else {
            None
        }
    }

    pub fn arity(&self) -> usize {
        match self {
            Plan::Get { arity, .. }
            | Plan::Constant { arity, .. }
            | Plan::RecursiveRef { arity, .. } => *arity,
            Plan::Recursive { base, .. } => base.arity(),
            Plan::Filter { input, .. }
            | Plan::Distinct { input }
            | Plan::TopK { input, .. }
            | Plan::Temporal { input, .. } => input.arity(),
            Plan::Project { exprs, .. } => exprs.len(),
            Plan::Join {
                left,
                right_arity,
                kind,
                ..
            } => match kind {
                JoinKind::Semi | JoinKind::Anti => left.arity(),
                _ => left.arity() + right_arity,
            },
            Plan::Reduce { keys, aggs, .. } => keys.len() + aggs.len(),
            Plan::Window { input, funcs, .. } => input.arity() + funcs.len(),
            Plan::FlatMap {
                input,
                funcs,
                ordinality,
                ..
            } => {
                input.arity()
                    + funcs.iter().map(|f| f.types.len()).sum::<usize>()
                    + usize::from(*ordinality)
            }
            Plan::Union { inputs } => inputs.first().map(Plan::arity).unwrap_or(0),
            Plan::SetOp { left, .. } => left.arity(),
        }
    }

    /// Replaces each input with `f` of it.
    pub fn map_inputs(&mut self, mut f: impl FnMut(Plan) -> Plan) {
        for input in self.inputs_mut() {
            let taken = std::mem::replace(
                input,
                Plan::Constant {
                    rows: vec![],
                    arity: 0,
                },
            );
            *input = f(taken);
        }
    }

    /// The plans this one reads.
    pub fn inputs_mut(&mut self) -> Vec<&mut Plan> {
        match self {
            Plan::Get { .. } | Plan::Constant { .. } | Plan::RecursiveRef { .. } => vec![],
            Plan::Filter { input, .. }
            | Plan::Project { input, .. }
            | Plan::Reduce { input, .. }
            | Plan::Distinct { input }
            | Plan::Window { input, .. }
            | Plan::FlatMap { input, .. }
            | Plan::Temporal { input, .. }
            | Plan::TopK { input, .. } => vec![input],
            Plan::Join { left, right, .. } | Plan::SetOp { left, right, .. } => vec![left, right],
            Plan::Recursive { base, step, .. } => vec![base, step],
            Plan::Union { inputs } => inputs.iter_mut().collect(),
        }
    }

    pub fn inputs(&self) -> Vec<&Plan> {
        match self {
            Plan::Get { .. } | Plan::Constant { .. } | Plan::RecursiveRef { .. } => vec![],
            Plan::Filter { input, .. }
            | Plan::Project { input, .. }
            | Plan::Reduce { input, .. }
            | Plan::Distinct { input }
            | Plan::Window { input, .. }
            | Plan::FlatMap { input, .. }
            | Plan::Temporal { input, .. }
            | Plan::TopK { input, .. } => vec![input],
            Plan::Join { left, right, .. } | Plan::SetOp { left, right, .. } => vec![left, right],
            Plan::Recursive { base, step, .. } => vec![base, step],
            Plan::Union { inputs } => inputs.iter().collect(),
        }
    }

    /// Tables the plan reads.
    /// Reads table `to` wherever the plan reads table `from`.
    pub fn rename_table(&mut self, from: usize, to: usize) {
        if let Plan::Get { table, .. } = self {
            if *table == from {
                *table = to;
            }
        }
        for input in self.inputs_mut() {
            input.rename_table(from, to);
        }
    }

    pub fn tables(&self, out: &mut Vec<usize>) {
        if let Plan::Get { table, .. } = self {
            out.push(*table);
        }
        if let Plan::Temporal { .. } = self {
            out.push(crate::sql::CLOCK_TABLE);
        }
        self.inputs().into_iter().for_each(|p| p.tables(out));
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
            Plan::Constant { rows, .. } => {
                let rows: Vec<String> = rows
                    .iter()
                    .map(|r| {
                        let vals: Vec<String> = r.iter().map(|d| d.to_json_string()).collect();
                        format!("({})", vals.join(", "))
                    })
                    .collect();
                writeln!(f, "{pad}Constant {}", rows.join(", "))
            }
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
                null_safe,
                ..
            } => {
                if left_keys.is_empty() {
                    // No equality to key on: every left row meets every right row.
                    write!(
                        f,
                        "{pad}{kind:?}Join (cross product: cost grows as left rows × right rows)"
                    )?;
                    if !residual.is_empty() {
                        write!(f, " filtered by {}", list(residual))?;
                    }
                } else {
                    write!(
                        f,
                        "{pad}{:?}Join on ({}) {} ({})",
                        kind,
                        list(left_keys),
                        if *null_safe {
                            "IS NOT DISTINCT FROM"
                        } else {
                            "="
                        },
                        list(right_keys)
                    )?;
                    if !residual.is_empty() {
                        write!(f, " and {}", list(residual))?;
                    }
                }
                writeln!(f)?;
                left.explain(depth + 1, f)?;
                right.explain(depth + 1, f)
            }
            Plan::Reduce { input, keys, aggs } => {
                let aggs: Vec<String> = aggs.iter().map(|a| a.to_string()).collect();
                write!(
                    f,
                    "{pad}Reduce keys=[{}] aggs=[{}]",
                    list(keys),
                    aggs.join(", ")
                )?;
                match self.summed_side() {
                    Some(side) => writeln!(
                        f,
                        " (the join's {} rows summed by join key before joining)",
                        if side == Side::Left { "left" } else { "right" }
                    )?,
                    None => writeln!(f)?,
                }
                input.explain(depth + 1, f)
            }
            Plan::Distinct { input } => {
                writeln!(f, "{pad}Distinct")?;
                input.explain(depth + 1, f)
            }
            Plan::Temporal { input, bounds } => {
                let conds: Vec<String> = bounds
                    .iter()
                    .map(|b| {
                        format!(
                            "{} {:?} {}",
                            b.row,
                            b.op,
                            b.now.to_string().replace("#0", "now()")
                        )
                    })
                    .collect();
                writeln!(
                    f,
                    "{pad}Temporal {} (rows enter and leave as the clock passes)",
                    conds.join(" AND ")
                )?;
                input.explain(depth + 1, f)
            }
            Plan::FlatMap {
                input,
                funcs,
                ordinality,
                outer,
            } => {
                let funcs: Vec<String> = funcs
                    .iter()
                    .map(|f| format!("{}({})", f.name, list(&f.args)))
                    .collect();
                writeln!(
                    f,
                    "{pad}FlatMap {}{}{}",
                    funcs.join(", "),
                    if *ordinality { " WITH ORDINALITY" } else { "" },
                    if *outer {
                        " (keeping rows without any)"
                    } else {
                        ""
                    }
                )?;
                input.explain(depth + 1, f)
            }
            Plan::Window {
                input,
                partition,
                order,
                funcs,
                ..
            } => {
                let order: Vec<String> = order
                    .iter()
                    .map(|(e, desc, _)| format!("{e}{}", if *desc { " DESC" } else { "" }))
                    .collect();
                let funcs: Vec<String> = funcs
                    .iter()
                    .map(|w| format!("{}({})", w.kind.name(), list(&w.args)))
                    .collect();
                writeln!(
                    f,
                    "{pad}Window partition=[{}] order=[{}] funcs=[{}] (a change recomputes its partition)",
                    list(partition),
                    order.join(", "),
                    funcs.join(", ")
                )?;
                input.explain(depth + 1, f)
            }
            Plan::Recursive {
                id,
                base,
                step,
                distinct,
            } => {
                writeln!(
                    f,
                    "{pad}Recursive r{id} (fixed point of base {} step)",
                    if *distinct { "UNION" } else { "UNION ALL" }
                )?;
                base.explain(depth + 1, f)?;
                step.explain(depth + 1, f)
            }
            Plan::RecursiveRef { id, .. } => writeln!(f, "{pad}Get r{id} (rows so far)"),
            Plan::Union { inputs } => {
                writeln!(f, "{pad}UnionAll")?;
                inputs.iter().try_for_each(|p| p.explain(depth + 1, f))
            }
            Plan::SetOp {
                kind,
                all,
                left,
                right,
            } => {
                writeln!(f, "{pad}{kind:?}{}", if *all { "All" } else { "" })?;
                left.explain(depth + 1, f)?;
                right.explain(depth + 1, f)
            }
            Plan::TopK {
                input,
                group,
                order,
                limit,
                offset,
            } => {
                let order: Vec<String> = order
                    .iter()
                    .map(|k| {
                        format!(
                            "#{}{}{}",
                            k.column,
                            if k.desc { " DESC" } else { "" },
                            match (k.desc, k.nulls_first) {
                                (false, true) => " NULLS FIRST",
                                (true, false) => " NULLS LAST",
                                _ => "",
                            }
                        )
                    })
                    .collect();
                write!(f, "{pad}TopK order=[{}]", order.join(", "))?;
                if *group > 0 {
                    write!(f, " per=[#0..#{}]", group - 1)?;
                }
                if let Some(l) = limit {
                    write!(f, " limit={l}")?;
                }
                if *offset > 0 {
                    write!(f, " offset={offset}")?;
                }
                writeln!(f)?;
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
