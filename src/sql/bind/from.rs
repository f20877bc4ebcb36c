//! FROM items and joins: tables, views, CTEs, derived tables, and every join
//! form (`[INNER|LEFT|RIGHT|FULL|CROSS] JOIN ... ON/USING`, `NATURAL`).

use sqlparser::ast::{self as ast, JoinConstraint, JoinOperator, Spanned, TableFactor};
use sqlparser::tokenizer::Span;

use super::scalar::{coerce, common_type, expect_bool};
use super::{
    aggregate, ident_name, object_name_parts, rename_columns, split_conjuncts, subquery,
    unsupported, Binder, Bound, ExprCx, Outer, Result, Scope, ScopeCol,
};
use crate::pg::catalog::PgView;
use crate::repr::Type;
use crate::sql::expr::{BinOp, Expr};
use crate::sql::plan::{JoinKind, Plan, SortKey};
use crate::sql::BindError;

/// Whether a join's ON condition in `twj` uses a view parameter.
pub(super) fn on_mentions_params(twj: &ast::TableWithJoins) -> bool {
    twj.joins.iter().any(|j| {
        let constraint = match &j.join_operator {
            JoinOperator::Join(c)
            | JoinOperator::Inner(c)
            | JoinOperator::Left(c)
            | JoinOperator::LeftOuter(c)
            | JoinOperator::Right(c)
            | JoinOperator::RightOuter(c)
            | JoinOperator::FullOuter(c) => c,
            _ => return false,
        };
        matches!(constraint, JoinConstraint::On(e) if super::params::mentions(e))
    })
}

/// The join forms as written; RIGHT is planned as a LEFT join with the sides swapped.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Written {
    Inner,
    Left,
    Right,
    Full,
}

impl<'a> Binder<'a> {
    pub(super) fn bind_table_with_joins(
        &self,
        twj: &ast::TableWithJoins,
        outer: Option<&Outer<'_>>,
    ) -> Result<(Plan, Scope)> {
        self.bind_table_with_joins_led(twj, outer, None)
    }

    /// Binds `twj` with `lead` (the parameter tuples) crossed into its first
    /// relation, so that the joins' ON conditions can use the parameters:
    /// `P × A LEFT JOIN B ON c(p)` is, tuple by tuple, `A LEFT JOIN B ON
    /// c(p)`. A RIGHT or FULL join would lose the tuple on its unmatched
    /// rows, so it is refused.
    pub(super) fn bind_table_with_joins_led(
        &self,
        twj: &ast::TableWithJoins,
        outer: Option<&Outer<'_>>,
        lead: Option<(Plan, Scope)>,
    ) -> Result<(Plan, Scope)> {
        if let Some((lplan, lscope)) = &lead {
            if reads_left(&twj.relation) {
                // A subquery reading the parameter tuples (or, as LATERAL,
                // anything left of it) is bound over them.
                let visible = lscope.clone();
                let (plan, scope) = self.lateral_join(
                    (lplan.clone(), lscope.clone()),
                    &twj.relation,
                    &visible,
                    Written::Inner,
                    &JoinConstraint::None,
                    outer,
                )?;
                return self.bind_joins(plan, scope, twj, outer);
            }
        }
        let (mut plan, mut scope) = self.bind_factor(&twj.relation, outer)?;
        if let Some((lplan, lscope)) = lead {
            for join in &twj.joins {
                if matches!(
                    join.join_operator,
                    JoinOperator::Right(_)
                        | JoinOperator::RightOuter(_)
                        | JoinOperator::FullOuter(_)
                ) {
                    return Err(unsupported(
                        "a parameter in the ON of a FROM with a RIGHT or FULL join (use LEFT JOIN, or move the condition to WHERE)",
                        join.relation.span(),
                    ));
                }
            }
            let span = twj.relation.span();
            (plan, scope) = self.join(
                lplan,
                lscope,
                plan,
                scope,
                Written::Inner,
                &JoinConstraint::None,
                outer,
                span,
            )?;
        }
        self.bind_joins(plan, scope, twj, outer)
    }

    /// The joins of `twj`, onto its bound first relation.
    pub(super) fn bind_joins(
        &self,
        mut plan: Plan,
        mut scope: Scope,
        twj: &ast::TableWithJoins,
        outer: Option<&Outer<'_>>,
    ) -> Result<(Plan, Scope)> {
        for join in &twj.joins {
            let span = join.relation.span();
            let (written, constraint) = match &join.join_operator {
                JoinOperator::Join(c) | JoinOperator::Inner(c) | JoinOperator::CrossJoin(c) => {
                    (Written::Inner, c)
                }
                JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (Written::Left, c),
                JoinOperator::Right(c) | JoinOperator::RightOuter(c) => (Written::Right, c),
                JoinOperator::FullOuter(c) => (Written::Full, c),
                other => {
                    let text = format!("{other:?}");
                    let name = text
                        .split(['(', ' ', '{'])
                        .next()
                        .unwrap_or("join")
                        .to_string();
                    return Err(unsupported(format!("{name} join"), span));
                }
            };
            if is_lateral(&join.relation) || (has_params(&scope) && reads_left(&join.relation)) {
                if matches!(written, Written::Right | Written::Full) {
                    return Err(BindError::new(
                        "the combining JOIN type must be INNER or LEFT for a LATERAL reference",
                        span,
                    ));
                }
                // A LATERAL item sees everything left of it; any other
                // subquery only the parameters of the query it is in.
                let visible = if is_lateral(&join.relation) {
                    scope.clone()
                } else {
                    params_only(&scope)
                };
                let left = (plan, scope);
                (plan, scope) =
                    self.lateral_join(left, &join.relation, &visible, written, constraint, outer)?;
                continue;
            }
            let (rplan, rscope) = self.bind_factor(&join.relation, outer)?;
            (plan, scope) =
                self.join(plan, scope, rplan, rscope, written, constraint, outer, span)?;
        }
        Ok((plan, scope))
    }

    /// A function call in FROM after `left`: the rows it produces for each
    /// of `left`'s rows (a FlatMap), with the join's ON applied after; a LEFT
    /// join keeps a row the call produces nothing for (ON must then be
    /// `true`).
    fn lateral_call(
        &self,
        left: (Plan, Scope),
        call: &super::srf::FromCall<'_>,
        visible: &Scope,
        written: Written,
        constraint: &JoinConstraint,
        outer: Option<&Outer<'_>>,
    ) -> Result<(Plan, Scope)> {
        let on = match constraint {
            JoinConstraint::On(e) => {
                let always =
                    matches!(e, ast::Expr::Value(v) if v.value == ast::Value::Boolean(true));
                (!always).then_some(e)
            }
            JoinConstraint::None => None,
            _ => {
                return Err(unsupported(
                    "USING or NATURAL with a function in FROM",
                    call.span,
                ))
            }
        };
        if written == Written::Left && on.is_some() {
            return Err(unsupported(
                "LEFT JOIN of a function in FROM with a condition other than ON true",
                call.span,
            ));
        }
        let (plan, scope) =
            self.bind_from_call(call, Some(left), visible, outer, written == Written::Left)?;
        let Some(e) = on else {
            return Ok((plan, scope));
        };
        if aggregate::contains_aggregate(e) || subquery::contains_subquery(e) {
            return Err(unsupported(
                "aggregates or subqueries in the ON of a function in FROM",
                e.span(),
            ));
        }
        let mut parts = Vec::new();
        split_conjuncts(e, &mut parts);
        let mut preds = Vec::new();
        for p in parts {
            let mut cx = ExprCx::new(&scope, outer, None);
            let (c, ty) = self.bind_expr(&p, &mut cx)?;
            expect_bool(&ty, "argument of JOIN/ON", p.span())?;
            preds.push(c);
        }
        Ok((filter(plan, preds), scope))
    }

    /// The columns of `visible` a FROM item reads (a subquery or a function
    /// call), found by binding it against `visible` as an enclosing query.
    pub(super) fn factor_reads(
        &self,
        factor: &TableFactor,
        visible: &Scope,
        outer: Option<&Outer<'_>>,
    ) -> Result<Vec<usize>> {
        let probe = Outer::new(visible, outer);
        if let Some(call) = super::srf::from_call(factor) {
            let call = call?;
            let empty = Scope::default();
            let mut cx = ExprCx::new(&empty, Some(&probe), None);
            self.bind_srf(&call.name, &call.args, &mut cx, call.span)?;
        } else if let TableFactor::Derived { subquery, .. } = factor {
            self.bind_derived(subquery, Some(&probe))?;
        }
        Ok(probe.used())
    }

    /// Joins `left` with a subquery in FROM that may read the columns of
    /// `visible` (`left`'s scope, or the part of it the subquery may see),
    /// as SQL's LATERAL does: the subquery is bound over the distinct values
    /// of the columns it reads, like a correlated subquery, and its rows are
    /// joined back to `left` on them (NULL-safe: a NULL is a value too).
    /// Nothing is re-evaluated per row.
    pub(super) fn lateral_join(
        &self,
        left: (Plan, Scope),
        factor: &TableFactor,
        visible: &Scope,
        written: Written,
        constraint: &JoinConstraint,
        outer: Option<&Outer<'_>>,
    ) -> Result<(Plan, Scope)> {
        let span = factor.span();
        if let Some(call) = super::srf::from_call(factor) {
            return self.lateral_call(left, &call?, visible, written, constraint, outer);
        }
        let TableFactor::Derived {
            subquery, alias, ..
        } = factor
        else {
            return Err(unsupported(format!("LATERAL {factor}"), span));
        };
        let (lplan, lscope) = left;
        let probe = Outer::new(visible, outer);
        let (first, order) = self.bind_derived(subquery, Some(&probe))?;
        let used = probe.used();
        let qualifier = alias.as_ref().map(|a| ident_name(&a.name));
        // Over the parameter tuples alone (a subquery in FROM of a correlated
        // subquery), the rows keep the subquery's order: Postgres evaluates
        // it once per tuple.
        let params_only_left = !lscope.cols.is_empty() && lscope.cols.iter().all(|c| c.depth > 0);
        let la = lplan.arity();
        if used.is_empty() {
            // It reads nothing of `left`: an ordinary join.
            let (rplan, rscope) = derived_scope(first, order, alias.as_ref(), &qualifier)?;
            let keep: Vec<SortKey> = if params_only_left {
                rscope
                    .order
                    .iter()
                    .map(|k| SortKey {
                        column: k.column + la,
                        ..k.clone()
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let (plan, mut scope) = self.join(
                lplan, lscope, rplan, rscope, written, constraint, outer, span,
            )?;
            scope.order = keep;
            return Ok((plan, scope));
        }
        let n = used.len();
        let params = super::Params {
            plan: Plan::Distinct {
                input: Box::new(Plan::Project {
                    input: Box::new(lplan.clone()),
                    exprs: used.iter().map(|&i| Expr::Column(i)).collect(),
                }),
            },
            cols: used
                .iter()
                .map(|&i| {
                    let mut c = visible.cols[i].clone();
                    c.depth += 1;
                    c
                })
                .collect(),
        };
        let again = Outer::new(visible, outer);
        let (mut b, order) = self.bind_derived_over(subquery, Some(&again), Some(&params))?;
        if let Some(a) = alias {
            rename_columns(&mut b.columns, a, qualifier.as_deref().unwrap_or(""))?;
        }
        let right_arity = b.plan.arity();
        let width = b.params + b.columns.len();
        let (_, mut rscope) = bound_scope(
            super::Bound {
                plan: Plan::Constant {
                    rows: vec![],
                    arity: 0,
                },
                columns: b.columns.clone(),
                params: 0,
                one_row: false,
            },
            qualifier.as_deref().unwrap_or(""),
        );
        // ORDER BY keys past the output columns: hidden, nameless.
        for _ in width..right_arity {
            let mut c = ScopeCol::new(None, String::new(), Type::Unknown);
            c.hidden = true;
            rscope.cols.push(c);
        }
        let mut combined = Scope::outer_join(&lscope, &rscope, false, written == Written::Left);
        let mut residual = Vec::new();
        match constraint {
            JoinConstraint::On(e) => {
                if aggregate::contains_aggregate(e) || subquery::contains_subquery(e) {
                    return Err(unsupported(
                        "aggregates or subqueries in the ON of a LATERAL join",
                        e.span(),
                    ));
                }
                let mut parts = Vec::new();
                split_conjuncts(e, &mut parts);
                for p in parts {
                    let mut cx = ExprCx::new(&combined, outer, None);
                    let (c, ty) = self.bind_expr(&p, &mut cx)?;
                    expect_bool(&ty, "argument of JOIN/ON", p.span())?;
                    // Past `left`, the subquery's rows start with the parameters.
                    residual.push(c.remap(&|i| if i < la { i } else { i + n }));
                }
            }
            JoinConstraint::None => {
                if written != Written::Inner {
                    return Err(BindError::new(
                        "an outer join needs an ON or USING condition",
                        span,
                    ));
                }
            }
            _ => {
                return Err(unsupported(
                    "USING or NATURAL with a LATERAL subquery",
                    span,
                ))
            }
        }
        let kind = if written == Written::Left {
            JoinKind::Left
        } else {
            JoinKind::Inner
        };
        let joined = Plan::Join {
            left: Box::new(lplan),
            right: Box::new(b.plan),
            kind,
            left_keys: used.iter().map(|&i| Expr::Column(i)).collect(),
            right_keys: (0..n).map(Expr::Column).collect(),
            residual,
            right_arity,
            null_safe: true,
        };
        let mut exprs: Vec<Expr> = (0..la).map(Expr::Column).collect();
        exprs.extend((la + n..la + right_arity).map(Expr::Column));
        if params_only_left {
            // A key on a parameter is the same for all of a tuple's rows.
            combined.order = order
                .iter()
                .filter(|k| k.column >= n)
                .map(|k| SortKey {
                    column: la + k.column - n,
                    ..k.clone()
                })
                .collect();
        }
        Ok((
            Plan::Project {
                input: Box::new(joined),
                exprs,
            },
            combined,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &self,
        lplan: Plan,
        lscope: Scope,
        rplan: Plan,
        rscope: Scope,
        written: Written,
        constraint: &JoinConstraint,
        outer: Option<&Outer<'_>>,
        span: Span,
    ) -> Result<(Plan, Scope)> {
        let la = lplan.arity();
        let ra = rplan.arity();
        let combined = Scope::outer_join(
            &lscope,
            &rscope,
            matches!(written, Written::Right | Written::Full),
            matches!(written, Written::Left | Written::Full),
        );
        // Column pairs merged by USING / NATURAL.
        let mut merged: Vec<(String, usize, usize)> = Vec::new();
        let mut conjuncts = Vec::new();
        match constraint {
            JoinConstraint::On(e) => {
                if aggregate::contains_aggregate(e) {
                    return Err(BindError::new(
                        "aggregate functions are not allowed in JOIN conditions",
                        e.span(),
                    ));
                }
                if subquery::contains_subquery(e) {
                    return Err(unsupported(
                        "subqueries in JOIN ... ON (move the condition to WHERE)",
                        e.span(),
                    ));
                }
                let mut parts = Vec::new();
                split_conjuncts(e, &mut parts);
                for p in parts {
                    let mut cx = ExprCx::new(&combined, outer, None);
                    let (b, ty) = self.bind_expr(&p, &mut cx)?;
                    expect_bool(&ty, "argument of JOIN/ON", p.span())?;
                    conjuncts.push(b);
                }
            }
            JoinConstraint::None => {
                if written != Written::Inner {
                    return Err(BindError::new(
                        "an outer join needs an ON or USING condition",
                        span,
                    ));
                }
            }
            JoinConstraint::Using(names) => {
                for n in names {
                    let name = object_name_parts(n).join(".");
                    merged.push(self.using_pair(&lscope, &rscope, &name, la, n.span())?);
                }
            }
            JoinConstraint::Natural => {
                for c in &lscope.cols {
                    if c.hidden || c.depth > 0 {
                        continue;
                    }
                    if rscope
                        .cols
                        .iter()
                        .any(|r| r.name == c.name && !r.hidden && r.depth == 0)
                        && !merged.iter().any(|(n, _, _)| *n == c.name)
                    {
                        merged.push(self.using_pair(&lscope, &rscope, &c.name, la, span)?);
                    }
                }
            }
        }
        for (_, l, r) in &merged {
            let (lt, rt) = (&combined.cols[*l].ty, &combined.cols[*r].ty);
            let ty = common_type(lt, rt).ok_or_else(|| {
                BindError::new(
                    format!(
                        "JOIN/USING types {} and {} cannot be matched",
                        lt.name(),
                        rt.name()
                    ),
                    span,
                )
            })?;
            conjuncts.push(Expr::Binary {
                op: BinOp::Eq,
                left: Box::new(coerce(&self.time, Expr::Column(*l), lt, &ty, span)?),
                right: Box::new(coerce(&self.time, Expr::Column(*r), rt, &ty, span)?),
                ty,
            });
        }
        let plan = match written {
            Written::Inner => make_join(lplan, rplan, conjuncts, JoinKind::Inner),
            Written::Left => make_join(lplan, rplan, conjuncts, JoinKind::Left),
            Written::Full => make_join(lplan, rplan, conjuncts, JoinKind::Full),
            Written::Right => {
                // b RIGHT JOIN a = a LEFT JOIN b, with the columns put back in order.
                let swap = |i: usize| if i < la { i + ra } else { i - la };
                let swapped = conjuncts.iter().map(|c| c.remap(&swap)).collect();
                let joined = make_join(rplan, lplan, swapped, JoinKind::Left);
                Plan::Project {
                    input: Box::new(joined),
                    exprs: (0..la + ra).map(|i| Expr::Column(swap(i))).collect(),
                }
            }
        };
        if merged.is_empty() {
            return Ok((plan, combined));
        }
        // USING / NATURAL: the merged columns come first, unqualified; the
        // originals stay reachable qualified.
        let mut exprs = Vec::new();
        let mut cols = Vec::new();
        for (name, l, r) in &merged {
            let (lt, rt) = (&combined.cols[*l].ty, &combined.cols[*r].ty);
            let ty = common_type(lt, rt).unwrap_or_else(|| lt.clone());
            let le = coerce(&self.time, Expr::Column(*l), lt, &ty, span)?;
            let re = coerce(&self.time, Expr::Column(*r), rt, &ty, span)?;
            exprs.push(match written {
                Written::Inner | Written::Left => le,
                Written::Right => re,
                Written::Full => Expr::Coalesce(vec![le, re]),
            });
            cols.push(ScopeCol::new(None, name.clone(), ty));
        }
        exprs.extend((0..la + ra).map(Expr::Column));
        for (i, c) in combined.cols.iter().enumerate() {
            let mut c = c.clone();
            if merged.iter().any(|(_, l, r)| *l == i || *r == i) {
                c.hidden = true;
            }
            cols.push(c);
        }
        Ok((
            Plan::Project {
                input: Box::new(plan),
                exprs,
            },
            Scope {
                cols,
                ..Scope::default()
            },
        ))
    }

    /// The left and right columns (as indices into the joined row) named `name`.
    fn using_pair(
        &self,
        lscope: &Scope,
        rscope: &Scope,
        name: &str,
        la: usize,
        span: Span,
    ) -> Result<(String, usize, usize)> {
        let find = |sc: &Scope, side: &str| -> Result<usize> {
            let hits: Vec<usize> = sc
                .cols
                .iter()
                .enumerate()
                .filter(|(_, c)| c.name == name && !c.hidden && c.depth == 0)
                .map(|(i, _)| i)
                .collect();
            match hits.as_slice() {
                [i] => Ok(*i),
                [] => Err(BindError::new(
                    format!("column \"{name}\" specified in USING clause does not exist in {side} table"),
                    span,
                )),
                _ => Err(BindError::new(
                    format!("common column name \"{name}\" appears more than once in {side} table"),
                    span,
                )),
            }
        };
        Ok((
            name.to_string(),
            find(lscope, "left")?,
            la + find(rscope, "right")?,
        ))
    }

    pub(super) fn bind_factor(
        &self,
        f: &TableFactor,
        outer: Option<&Outer<'_>>,
    ) -> Result<(Plan, Scope)> {
        match f {
            TableFactor::Table { .. }
            | TableFactor::Function { .. }
            | TableFactor::UNNEST { .. }
                if super::srf::from_call(f).is_some() =>
            {
                // A call that reads nothing left of it: over one empty row.
                let call = super::srf::from_call(f).expect("checked")?;
                let outer = if self.derived_sealed.get() {
                    None
                } else {
                    outer
                };
                self.bind_from_call(&call, None, &Scope::default(), outer, false)
            }
            TableFactor::Table {
                name, alias, args, ..
            } => {
                if args.is_some() {
                    return Err(unsupported("table functions", f.span()));
                }
                let parts = object_name_parts(name);
                let qualifier = match alias {
                    Some(a) => ident_name(&a.name),
                    None => parts.last().cloned().unwrap_or_default(),
                };
                if let [single] = parts.as_slice() {
                    let cte = self
                        .ctes
                        .borrow()
                        .iter()
                        .rev()
                        .find(|(n, _)| n == single)
                        .map(|(_, b)| b.clone());
                    // Inside a Postgres view's definition, names are the
                    // database's (its own CTEs aside; the enclosing query's
                    // are set aside while it is bound): viewcast's views do
                    // not shadow them.
                    let in_pg_view = self.pg_view_depth.get() > 0;
                    let named = cte.or_else(|| {
                        let view = self.views.get(single).filter(|_| !in_pg_view);
                        view.map(|v| Bound {
                            plan: v.body.clone(),
                            columns: v.columns.clone(),
                            params: 0,
                            one_row: false,
                        })
                    });
                    if let Some(mut b) = named {
                        if let Some(a) = alias {
                            rename_columns(&mut b.columns, a, &qualifier)?;
                        }
                        return Ok(bound_scope(b, &qualifier));
                    }
                }
                if let Some(view) = self.catalog.pg_view(&parts) {
                    return self.bind_pg_view(view, alias.as_ref(), &qualifier, name.span());
                }
                let (index, info) = self
                    .catalog
                    .lookup(&parts)
                    .map_err(|m| BindError::new(m, name.span()))?;
                let mut cols: Vec<ScopeCol> = info
                    .columns
                    .iter()
                    .map(|c| ScopeCol::new(Some(qualifier.clone()), c.name.clone(), c.ty.clone()))
                    .collect();
                for &k in info.key.iter().flatten() {
                    if let Some(c) = cols.get_mut(k) {
                        c.key = true;
                    }
                }
                if let Some(a) = alias {
                    if a.columns.len() > cols.len() {
                        return Err(BindError::new(
                            format!(
                                "table \"{qualifier}\" has {} columns available but {} columns specified",
                                cols.len(),
                                a.columns.len()
                            ),
                            a.name.span,
                        ));
                    }
                    for (c, def) in cols.iter_mut().zip(&a.columns) {
                        c.name = ident_name(&def.name);
                    }
                }
                Ok((
                    Plan::Get {
                        table: index,
                        name: info.qualified_name(),
                        arity: cols.len(),
                    },
                    Scope {
                        cols,
                        ..Scope::default()
                    },
                ))
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let (plan, mut scope) = self.bind_table_with_joins(table_with_joins, outer)?;
                if let Some(a) = alias {
                    let q = ident_name(&a.name);
                    let visible: Vec<usize> = (0..scope.cols.len())
                        .filter(|&i| !scope.cols[i].hidden)
                        .collect();
                    for (n, &i) in visible.iter().enumerate() {
                        scope.cols[i].qualifier = Some(q.clone());
                        if let Some(def) = a.columns.get(n) {
                            scope.cols[i].name = ident_name(&def.name);
                        }
                    }
                }
                Ok((plan, scope))
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                // It may read enclosing queries (which makes the query it is
                // in correlated); LATERAL as the first item has nothing to
                // its left.
                let outer = if self.derived_sealed.get() {
                    None
                } else {
                    outer
                };
                let (b, order) = self.bind_derived(subquery, outer)?;
                let qualifier = alias.as_ref().map(|a| ident_name(&a.name));
                derived_scope(b, order, alias.as_ref(), &qualifier)
            }
            _ => Err(unsupported(format!("FROM item {f}"), f.span())),
        }
    }
}

/// How deep Postgres views may read each other.
const MAX_PG_VIEW_DEPTH: usize = 64;
/// How an error in a Postgres view's definition begins.
const PG_VIEW_ERROR: &str = "Postgres view ";

impl Binder<'_> {
    /// A Postgres view in FROM, read as Postgres reads it: its definition as
    /// a subquery over the database's names, its columns named as the view
    /// names them. An error in the definition is reported at the name.
    fn bind_pg_view(
        &self,
        view: &PgView,
        alias: Option<&ast::TableAlias>,
        qualifier: &str,
        at: Span,
    ) -> Result<(Plan, Scope)> {
        // The message names the innermost view whose definition failed.
        let in_view = |m: String| {
            let m = if m.starts_with(PG_VIEW_ERROR) {
                m
            } else {
                format!(
                    "{PG_VIEW_ERROR}{} (read as its definition): {m}",
                    view.qualified_name()
                )
            };
            BindError::new(m, at)
        };
        let depth = self.pg_view_depth.get();
        if depth >= MAX_PG_VIEW_DEPTH {
            return Err(in_view(format!(
                "views read each other more than {MAX_PG_VIEW_DEPTH} deep"
            )));
        }
        let q = crate::sql::parse(&view.definition).map_err(|e| in_view(e.message))?;
        let ctes = self.ctes.take();
        let sealed = self.derived_sealed.replace(false);
        self.pg_view_depth.set(depth + 1);
        let bound = self.bind_derived(&q, None);
        self.pg_view_depth.set(depth);
        self.derived_sealed.set(sealed);
        *self.ctes.borrow_mut() = ctes;
        let (mut b, order) = bound.map_err(|e| in_view(e.message))?;
        for (c, name) in b.columns.iter_mut().zip(&view.columns) {
            c.name = name.clone();
        }
        derived_scope(b, order, alias, &Some(qualifier.to_string()))
    }
}

/// A subquery in FROM as a unit: its output columns named by the alias, then
/// the ORDER BY keys that are not output columns as hidden, nameless
/// columns, read only through the scope's order.
fn derived_scope(
    mut b: Bound,
    order: Vec<crate::sql::plan::SortKey>,
    alias: Option<&ast::TableAlias>,
    qualifier: &Option<String>,
) -> Result<(Plan, Scope)> {
    if let Some(a) = alias {
        rename_columns(&mut b.columns, a, qualifier.as_deref().unwrap_or(""))?;
    }
    let arity = b.plan.arity();
    let (plan, mut scope) = bound_scope(b, qualifier.as_deref().unwrap_or(""));
    while scope.cols.len() < arity {
        let mut c = ScopeCol::new(None, String::new(), Type::Unknown);
        c.hidden = true;
        scope.cols.push(c);
    }
    scope.order = order;
    Ok((plan, scope))
}

/// Whether a FROM item sees everything left of it: LATERAL, and function
/// calls (always lateral in Postgres).
pub(super) fn is_lateral(f: &TableFactor) -> bool {
    matches!(f, TableFactor::Derived { lateral: true, .. }) || super::srf::from_call(f).is_some()
}

/// Whether a FROM item may read columns left of it: LATERAL, a function
/// call, or a subquery (which may read the parameters of the query it is in).
pub(super) fn reads_left(f: &TableFactor) -> bool {
    matches!(f, TableFactor::Derived { .. }) || super::srf::from_call(f).is_some()
}

fn has_params(scope: &Scope) -> bool {
    scope.cols.iter().any(|c| c.depth > 0)
}

/// `scope` with only its parameter columns reachable (the rest keep their
/// places, nameless).
pub(super) fn params_only(scope: &Scope) -> Scope {
    Scope {
        cols: scope
            .cols
            .iter()
            .map(|c| {
                if c.depth > 0 {
                    c.clone()
                } else {
                    let mut h = ScopeCol::new(None, String::new(), c.ty.clone());
                    h.hidden = true;
                    h
                }
            })
            .collect(),
        order: Vec::new(),
    }
}

/// A bound query used as a FROM item named `qualifier`.
fn bound_scope(b: Bound, qualifier: &str) -> (Plan, Scope) {
    let q = (!qualifier.is_empty()).then(|| qualifier.to_string());
    let cols = b
        .columns
        .iter()
        .map(|c| ScopeCol::new(q.clone(), c.name.clone(), c.ty.clone()))
        .collect();
    (
        b.plan,
        Scope {
            cols,
            ..Scope::default()
        },
    )
}

/// Joins the FROM units. WHERE conjuncts that mention one unit are pushed
/// into it. The units are joined greedily: next comes a unit that an
/// equality connects to the units joined so far (so `a, b, c WHERE a.x = c.x
/// AND c.y = b.y` never builds the cross product of a and b), the first
/// [pinned](pins_a_column) one if any, else the first; each conjunct is
/// checked as soon as its columns exist. The result has the FROM clause's
/// column order.
///
/// A pinned unit (`n_name = 'SAUDI ARABIA'`) is likely to keep few rows, so
/// joining it early keeps the rows joined and arranged after it few: TPC-H
/// Q21's `supplier, lineitem l1, orders, nation` joins supplier with its one
/// nation before lineitem, rather than every qualifying lineitem with its
/// supplier and order before dropping all but one nation's.
pub(super) fn join_units(units: Vec<(Plan, Scope)>, conjuncts: Vec<Expr>) -> Plan {
    let conjuncts: Vec<Expr> = conjuncts.into_iter().flat_map(factor_or).collect();
    let mut offsets = Vec::new();
    let mut total = 0;
    for (_, sc) in &units {
        offsets.push(total);
        total += sc.cols.len();
    }
    let unit_of = |c: usize| offsets.iter().rposition(|&o| o <= c).unwrap_or(0);
    let mut pending: Vec<Option<Expr>> = conjuncts.into_iter().map(Some).collect();
    let mut plans: Vec<Option<Plan>> = Vec::new();
    let mut pinned = Vec::new();
    for (i, (plan, sc)) in units.into_iter().enumerate() {
        let (lo, hi) = (offsets[i], offsets[i] + sc.cols.len());
        let mut local = Vec::new();
        for slot in pending.iter_mut() {
            let inside = slot.as_ref().is_some_and(|e| {
                e.min_column().is_some_and(|m| m >= lo) && e.max_column().is_some_and(|m| m < hi)
            });
            if inside {
                let e = slot.take().expect("checked above");
                local.push(e.remap(&|c| c - lo));
            }
        }
        pinned.push(local.iter().any(pins_a_column));
        plans.push(Some(filter_into(plan, local)));
    }
    let units_of = |e: &Expr| -> Vec<usize> {
        let mut cols = Vec::new();
        e.columns(&mut cols);
        let mut u: Vec<usize> = cols.into_iter().map(unit_of).collect();
        u.sort_unstable();
        u.dedup();
        u
    };
    // Whether an equality links unit `u` to the units joined so far.
    let links = |pending: &[Option<Expr>], joined: &[usize], u: usize| {
        pending.iter().flatten().any(|e| {
            let Expr::Binary {
                op: BinOp::Eq,
                left,
                right,
                ..
            } = e
            else {
                return false;
            };
            let (l, r) = (units_of(left), units_of(right));
            let in_joined = |v: &[usize]| !v.is_empty() && v.iter().all(|x| joined.contains(x));
            (in_joined(&l) && r == [u]) || (in_joined(&r) && l == [u])
        })
    };
    let mut order = vec![0usize];
    let mut acc = plans[0].take().expect("FROM has at least one item");
    // position[c] = where original column c sits in `acc` (once joined).
    let mut position = vec![usize::MAX; total];
    for (c, p) in position
        .iter_mut()
        .enumerate()
        .take(offsets.get(1).copied().unwrap_or(total))
    {
        *p = c;
    }
    while order.len() < plans.len() {
        let linked: Vec<usize> = (0..plans.len())
            .filter(|u| !order.contains(u) && links(&pending, &order, *u))
            .collect();
        let next = linked
            .iter()
            .find(|&&u| pinned[u])
            .or(linked.first())
            .copied()
            .unwrap_or_else(|| {
                (0..plans.len())
                    .find(|u| !order.contains(u))
                    .expect("a unit remains")
            });
        let right = plans[next].take().expect("each unit is joined once");
        let width = acc.arity();
        let end = offsets.get(next + 1).copied().unwrap_or(total);
        for (i, p) in position[offsets[next]..end].iter_mut().enumerate() {
            *p = width + i;
        }
        order.push(next);
        let mut eligible = Vec::new();
        for slot in pending.iter_mut() {
            if slot
                .as_ref()
                .is_some_and(|e| units_of(e).iter().all(|u| order.contains(u)))
            {
                let e = slot.take().expect("checked above");
                eligible.push(e.remap(&|c| position[c]));
            }
        }
        acc = make_join(acc, right, eligible, JoinKind::Inner);
    }
    let rest: Vec<Expr> = pending
        .into_iter()
        .flatten()
        .map(|e| e.remap(&|c| position[c]))
        .collect();
    acc = filter(acc, rest);
    let in_order = order.windows(2).all(|w| w[0] < w[1]);
    if in_order {
        return acc;
    }
    Plan::Project {
        input: Box::new(acc),
        exprs: position.into_iter().map(Expr::Column).collect(),
    }
}

/// Whether a unit's own conjunct holds one of its columns to constants:
/// `f(col) = constant` or `f(col) IN (constants)`, where `f(col)` reads that
/// column alone (`text(n_name)` for a char(n) column, `lower(name)`).
fn pins_a_column(e: &Expr) -> bool {
    let one_column = |e: &Expr| {
        let mut cols = Vec::new();
        e.columns(&mut cols);
        cols.dedup();
        cols.len() == 1
    };
    let constant = |e: &Expr| e.max_column().is_none();
    match e {
        Expr::Binary {
            op: BinOp::Eq,
            left,
            right,
            ..
        } => (one_column(left) && constant(right)) || (constant(left) && one_column(right)),
        Expr::InList {
            expr,
            list,
            negated: false,
        } => one_column(expr) && list.iter().all(constant),
        _ => false,
    }
}

fn conjuncts_of(e: &Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::Binary {
            op: BinOp::And,
            left,
            right,
            ..
        } => {
            conjuncts_of(left, out);
            conjuncts_of(right, out);
        }
        other => out.push(other.clone()),
    }
}

fn disjuncts_of(e: &Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::Binary {
            op: BinOp::Or,
            left,
            right,
            ..
        } => {
            disjuncts_of(left, out);
            disjuncts_of(right, out);
        }
        other => out.push(other.clone()),
    }
}

fn all_of(parts: Vec<Expr>, op: BinOp, empty: bool) -> Expr {
    parts
        .into_iter()
        .reduce(|a, b| Expr::Binary {
            op,
            left: Box::new(a),
            right: Box::new(b),
            ty: Type::Bool,
        })
        .unwrap_or(Expr::Literal(crate::repr::Datum::Bool(empty)))
}

/// `(a AND b) OR (a AND c)` is `a AND (b OR c)`: conjuncts common to every
/// branch of a disjunction are pulled out, so a join key repeated in each
/// branch (TPC-H Q19) is seen as a join key.
pub(super) fn factor_or(e: Expr) -> Vec<Expr> {
    let mut branches = Vec::new();
    disjuncts_of(&e, &mut branches);
    if branches.len() < 2 {
        return vec![e];
    }
    let split: Vec<Vec<Expr>> = branches
        .iter()
        .map(|b| {
            let mut c = Vec::new();
            conjuncts_of(b, &mut c);
            c
        })
        .collect();
    let common: Vec<Expr> = split[0]
        .iter()
        .filter(|c| split[1..].iter().all(|b| b.contains(c)))
        .cloned()
        .collect();
    if common.is_empty() {
        return vec![e];
    }
    let rest: Vec<Expr> = split
        .into_iter()
        .map(|b| {
            all_of(
                b.into_iter().filter(|c| !common.contains(c)).collect(),
                BinOp::And,
                true,
            )
        })
        .collect();
    let mut out = common;
    // A branch left with nothing is TRUE, and so is the whole disjunction.
    if !rest.contains(&Expr::Literal(crate::repr::Datum::Bool(true))) {
        out.push(all_of(rest, BinOp::Or, false));
    }
    out
}

/// `plan` filtered by WHERE's `conjuncts`, each pushed into `plan`'s inner
/// joins (and into a LEFT join's preserved side) as far as the columns it
/// reads allow, as Postgres filters at the scan: fewer rows are joined and
/// arranged, and a row raises its evaluation errors (`10 / c.y > 0`)
/// whether or not it finds a match. A conjunct over both sides, or none,
/// stays on top.
fn filter_into(plan: Plan, conjuncts: Vec<Expr>) -> Plan {
    if conjuncts.is_empty() {
        return plan;
    }
    let Plan::Join {
        left,
        right,
        kind: kind @ (JoinKind::Inner | JoinKind::Left),
        left_keys,
        right_keys,
        residual,
        right_arity,
        null_safe,
    } = plan
    else {
        return filter(plan, conjuncts);
    };
    let la = left.arity();
    let (mut on_left, mut on_right, mut rest) = (vec![], vec![], vec![]);
    for c in conjuncts {
        match sides_read(&c, la) {
            (true, false) => on_left.push(c),
            (false, true) if kind == JoinKind::Inner => on_right.push(c.remap(&|i| i - la)),
            _ => rest.push(c),
        }
    }
    let join = Plan::Join {
        left: Box::new(filter_into(*left, on_left)),
        right: Box::new(filter_into(*right, on_right)),
        kind,
        left_keys,
        right_keys,
        residual,
        right_arity,
        null_safe,
    };
    filter(join, rest)
}

/// Whether `e`, over a join's row (left columns first, `left_arity` of
/// them), reads the left side's columns and whether it reads the right's.
fn sides_read(e: &Expr, left_arity: usize) -> (bool, bool) {
    let mut cols = Vec::new();
    e.columns(&mut cols);
    (
        cols.iter().any(|&c| c < left_arity),
        cols.iter().any(|&c| c >= left_arity),
    )
}

pub(super) fn filter(plan: Plan, predicates: Vec<Expr>) -> Plan {
    if predicates.is_empty() {
        plan
    } else if let Plan::Filter {
        input,
        predicates: mut existing,
    } = plan
    {
        existing.extend(predicates);
        Plan::Filter {
            input,
            predicates: existing,
        }
    } else {
        Plan::Filter {
            input: Box::new(plan),
            predicates,
        }
    }
}

/// A join key compared as type `ty`: numbers in one representation, char(n)
/// without its padding.
pub(super) fn key_expr(x: Expr, ty: &Type) -> Expr {
    match ty {
        Type::Numeric | Type::Float4 | Type::Float8 => Expr::Cast {
            expr: Box::new(x),
            to: ty.clone(),
        },
        Type::Bpchar => super::scalar::bpchar_to_text(x),
        _ => x,
    }
}

/// Builds a join from conjuncts over the concatenated (left ++ right) row:
/// equalities across the two sides become keys, one-sided conjuncts are pushed
/// into their side where the join kind allows, and the rest stay as a residual.
pub(super) fn make_join(left: Plan, right: Plan, conjuncts: Vec<Expr>, kind: JoinKind) -> Plan {
    let la = left.arity();
    let right_arity = right.arity();
    let (mut lk, mut rk, mut residual, mut lpush, mut rpush) =
        (vec![], vec![], vec![], vec![], vec![]);
    let side = |e: &Expr| sides_read(e, la);
    for c in conjuncts {
        if let Expr::Binary {
            op: BinOp::Eq,
            left: a,
            right: b,
            ty,
        } = &c
        {
            let (al, ar) = side(a);
            let (bl, br) = side(b);
            let key = |x: &Expr| key_expr(x.clone(), ty);
            if al && !ar && br && !bl {
                lk.push(key(a));
                rk.push(key(b).remap(&|i| i - la));
                continue;
            }
            if bl && !br && ar && !al {
                lk.push(key(b));
                rk.push(key(a).remap(&|i| i - la));
                continue;
            }
        }
        let pushable_left = kind == JoinKind::Inner;
        let pushable_right = matches!(kind, JoinKind::Inner | JoinKind::Left);
        match side(&c) {
            (true, false) if pushable_left => lpush.push(c),
            (false, true) if pushable_right => rpush.push(c.remap(&|i| i - la)),
            _ => residual.push(c),
        }
    }
    Plan::Join {
        left: Box::new(filter(left, lpush)),
        right: Box::new(filter(right, rpush)),
        kind,
        left_keys: lk,
        right_keys: rk,
        residual,
        right_arity,
        null_safe: false,
    }
}
