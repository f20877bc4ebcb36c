//! Subqueries, decorrelated into joins: nothing is re-evaluated per row.
//!
//! A subquery is bound twice. The first pass finds the columns of enclosing
//! queries it refers to (its parameters); an uncorrelated subquery is done
//! then. Otherwise the second pass binds it over the distinct parameter values
//! of the outer rows, `K = Distinct(Project(outer, params))`, as if K were its
//! first FROM item: every row it produces is prefixed by the parameter values
//! it was computed for, so correlation predicates become ordinary join keys
//! between K and the subquery's tables. Its result is then joined back to the
//! outer rows on the parameters (NULL-safe: a parameter may be NULL).
//!
//! | construct            | plan                                                              |
//! |----------------------|-------------------------------------------------------------------|
//! | `WHERE EXISTS (S)`   | semi-join of the outer rows with S on the parameters              |
//! | `WHERE NOT EXISTS`   | anti-join                                                         |
//! | `WHERE x IN (S)`     | semi-join on parameters and `x = y` (NULLs dropped on both sides) |
//! | `(S)` as a value     | left join with S (one row per parameters, or an error if more)    |
//! | `EXISTS` as a value  | left join with S's distinct parameters, read as IS NOT NULL       |
//! | `x [NOT] IN (S)` as a value | joins with S's row counts and matches, for SQL's NULL rules |

use std::ops::ControlFlow;

use sqlparser::ast::{self as ast, BinaryOperator, Spanned};
use sqlparser::tokenizer::Span;

use super::scalar::{coerce, expect_bool};
use super::scope::{Outer, Scope};
use super::{aggregate, from, unsupported, Binder, Bound, ExprCx, Params, Result};
use crate::repr::{Datum, Type};
use crate::sql::expr::{BinOp, Expr};
use crate::sql::plan::{AggFunc, Aggregate, JoinKind, Plan};
use crate::sql::BindError;

/// Whether `e` contains a subquery.
pub fn contains_subquery(e: &ast::Expr) -> bool {
    struct Finder;
    impl ast::Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, _q: &ast::Query) -> ControlFlow<()> {
            ControlFlow::Break(())
        }
    }
    ast::Visit::visit(e, &mut Finder).is_break()
}

/// `e` without the parentheses around it.
fn unnested(mut e: &ast::Expr) -> &ast::Expr {
    while let ast::Expr::Nested(x) = e {
        e = x;
    }
    e
}

/// Whether WHERE conjunct `p` is `EXISTS`, `NOT EXISTS` or `x IN (S)` at
/// its top, which [`Binder::where_subquery_conjunct`] plans as a semi- or
/// anti-join rather than evaluating the subquery as a value.
pub fn filters_by_match(p: &ast::Expr) -> bool {
    match unnested(p) {
        ast::Expr::Exists { .. } => true,
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Not,
            expr,
        } => matches!(expr.as_ref(), ast::Expr::Exists { negated: false, .. }),
        ast::Expr::InSubquery { negated, .. } => !negated,
        _ => false,
    }
}

/// Whether WHERE conjunct `p` compares a column with a subquery's value
/// (`c = (SELECT ...)`, `<`, `<=`, `>`, `>=`, `<>`, either side), which
/// cannot fail: the binder coerces both sides to a common type by widening.
pub fn compares_column_with_subquery(p: &ast::Expr) -> bool {
    let ast::Expr::BinaryOp { left, op, right } = unnested(p) else {
        return false;
    };
    let comparison = matches!(
        op,
        BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
    );
    let column = |e: &ast::Expr| {
        matches!(
            unnested(e),
            ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_)
        )
    };
    let subquery = |e: &ast::Expr| matches!(unnested(e), ast::Expr::Subquery(_));
    comparison && ((column(left) && subquery(right)) || (subquery(left) && column(right)))
}

pub enum SubKind {
    Scalar,
    Exists,
    /// `x IN (S)`, with `x` already bound and its type.
    In {
        x: Expr,
        xt: Type,
    },
}

/// A bound subquery waiting to be joined to the rows it is evaluated for.
pub struct Attach {
    pub kind: SubKind,
    pub bound: Bound,
    pub span: Span,
}

fn params_plan(input: &Plan, params: &[usize]) -> Plan {
    Plan::Distinct {
        input: Box::new(Plan::Project {
            input: Box::new(input.clone()),
            exprs: params.iter().map(|&i| Expr::Column(i)).collect(),
        }),
    }
}

/// The Reduce output columns of the columns `used` of an aggregating
/// query's scope: group keys, or aggregates of its subqueries that belong to
/// it.
fn group_positions(
    used: &[usize],
    scope: &Scope,
    ctx: &aggregate::AggContext,
    span: Span,
) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for &u in used {
        if let Some(&(_, at)) = ctx.outer_aggs.iter().find(|(i, _)| *i == u) {
            out.push(at);
            continue;
        }
        let Some(k) = ctx.keys.iter().position(|x| *x == Expr::Column(u)) else {
            let c = &scope.cols[u];
            return Err(BindError::new(
                format!(
                    "subquery uses ungrouped column \"{}{}\" from outer query",
                    c.qualifier
                        .as_deref()
                        .map(|q| format!("{q}."))
                        .unwrap_or_default(),
                    c.name
                ),
                span,
            ));
        };
        out.push(k);
    }
    Ok(out)
}

fn columns(range: std::ops::Range<usize>) -> Vec<Expr> {
    range.map(Expr::Column).collect()
}

impl<'a> Binder<'a> {
    /// Binds `q` as a subquery of the query whose rows `cx.scope` describes.
    /// Returns the bound subquery (rows prefixed by its parameter values) and
    /// the parameters: columns of `cx.scope`.
    fn bind_correlated(&self, q: &ast::Query, cx: &ExprCx<'_>) -> Result<(Bound, Vec<usize>)> {
        let outer = Outer::new(cx.scope, cx.outer);
        let first = self.bind_query(q, Some(&outer), None)?;
        let used = outer.used();
        if used.is_empty() {
            return Ok((first, used));
        }
        let reads_aggregates = used
            .iter()
            .any(|&i| aggregate::is_outer_aggregate(&cx.scope.cols[i]));
        let plan = if reads_aggregates {
            // It reads aggregates of this query, which exist once its
            // Reduce does: its parameters are read from the groups, a
            // placeholder until `finish_aggregation` puts them there.
            let Some(ctx) = cx.agg.as_ref() else {
                // In this query's aggregate's arguments.
                return Err(BindError::new(
                    "aggregate function calls cannot be nested",
                    q.span(),
                ));
            };
            let positions = group_positions(&used, cx.scope, ctx, q.span())?;
            let arity = positions.iter().max().map_or(0, |m| m + 1);
            Plan::Distinct {
                input: Box::new(Plan::Project {
                    input: Box::new(Plan::Get {
                        table: ctx.groups_table,
                        name: "groups".into(),
                        arity,
                    }),
                    exprs: positions.into_iter().map(Expr::Column).collect(),
                }),
            }
        } else {
            let Some(input) = cx.input.as_ref() else {
                return Err(unsupported("a correlated subquery here", q.span()));
            };
            params_plan(input, &used)
        };
        let params = Params {
            plan,
            cols: used
                .iter()
                .map(|&i| {
                    let mut c = cx.scope.cols[i].clone();
                    c.depth += 1;
                    c
                })
                .collect(),
        };
        let again = Outer::new(cx.scope, cx.outer);
        let second = self.bind_query(q, Some(&again), Some(&params))?;
        Ok((second, used))
    }

    /// A subquery used as a value: `(S)`, `EXISTS (S)`, `x IN (S)`,
    /// `x = ANY (S)`, `x <> ALL (S)`.
    pub(super) fn bind_subquery_expr(
        &self,
        e: &ast::Expr,
        cx: &mut ExprCx<'_>,
    ) -> Result<(Expr, Type)> {
        let span = e.span();
        let (q, kind, negated) = match e {
            ast::Expr::Subquery(q) => (q, SubKind::Scalar, false),
            ast::Expr::Exists { subquery, negated } => (subquery, SubKind::Exists, *negated),
            ast::Expr::InSubquery {
                expr,
                subquery,
                negated,
            } => {
                let (x, xt) = self.bind_expr(expr, cx)?;
                (subquery, SubKind::In { x, xt }, *negated)
            }
            ast::Expr::AnyOp {
                left,
                compare_op,
                right,
                ..
            }
            | ast::Expr::AllOp {
                left,
                compare_op,
                right,
            } => {
                let all = matches!(e, ast::Expr::AllOp { .. });
                let negated = match (compare_op, all) {
                    (BinaryOperator::Eq, false) => false,
                    (BinaryOperator::NotEq, true) => true,
                    _ => {
                        return Err(unsupported(
                            format!(
                                "{compare_op} {} (subquery); only = ANY and <> ALL",
                                if all { "ALL" } else { "ANY" }
                            ),
                            span,
                        ))
                    }
                };
                let ast::Expr::Subquery(q) = right.as_ref() else {
                    return Err(unsupported("ANY/ALL over an array", span));
                };
                let (x, xt) = self.bind_expr(left, cx)?;
                (q, SubKind::In { x, xt }, negated)
            }
            _ => return Err(unsupported(format!("expression {e}"), span)),
        };
        let (bound, used) = self.bind_correlated(q, cx)?;
        let ty = self.check_shape(&kind, &bound, span)?;
        let attach = Attach { kind, bound, span };
        let expr = if let Some(ctx) = cx.agg.as_mut() {
            // Over the grouped rows: the outer columns it uses must be group
            // keys (or this query's aggregates), and are read from the
            // Reduce's output.
            let keys = group_positions(&used, cx.scope, ctx, span)?;
            ctx.post.push((attach, keys));
            Expr::Column(aggregate::POST_BASE + ctx.post.len() - 1)
        } else {
            let Some(input) = cx.input.take() else {
                return Err(unsupported("a subquery here", span));
            };
            let (plan, expr) = self.attach(input, &used, attach)?;
            cx.input = Some(plan);
            expr
        };
        Ok(if negated {
            (Expr::Not(Box::new(expr)), Type::Bool)
        } else {
            (expr, ty)
        })
    }

    /// The type a subquery expression has, after checking its column count.
    fn check_shape(&self, kind: &SubKind, bound: &Bound, span: Span) -> Result<Type> {
        match kind {
            SubKind::Exists => Ok(Type::Bool),
            SubKind::Scalar | SubKind::In { .. } => {
                if bound.columns.len() != 1 {
                    return Err(BindError::new(
                        if matches!(kind, SubKind::Scalar) {
                            "subquery must return only one column"
                        } else {
                            "subquery has too many columns"
                        },
                        span,
                    ));
                }
                if let SubKind::In { xt, .. } = kind {
                    let yt = &bound.columns[0].ty;
                    in_type(xt, yt, span)?;
                    return Ok(Type::Bool);
                }
                Ok(match &bound.columns[0].ty {
                    Type::Unknown => Type::Text,
                    t => t.clone(),
                })
            }
        }
    }

    /// Joins a subquery's result to `input`, whose columns `params` it was
    /// computed for; returns the new plan and the expression for the value.
    pub(super) fn attach(&self, input: Plan, params: &[usize], a: Attach) -> Result<(Plan, Expr)> {
        let n = input.arity();
        let k = a.bound.params;
        debug_assert_eq!(k, params.len());
        let r = a.bound.plan;
        let join = |left: Plan, right: Plan, kind, extra: Option<(Expr, Expr)>| {
            let mut left_keys: Vec<Expr> = params.iter().map(|&i| Expr::Column(i)).collect();
            let mut right_keys = columns(0..k);
            if let Some((l, r)) = extra {
                left_keys.push(l);
                right_keys.push(r);
            }
            let right_arity = right.arity();
            Plan::Join {
                left: Box::new(left),
                right: Box::new(right),
                kind,
                left_keys,
                right_keys,
                residual: vec![],
                right_arity,
                null_safe: true,
            }
        };
        match a.kind {
            SubKind::Scalar => {
                let ty = a.bound.columns[0].ty.clone();
                let (right, kind) = if a.bound.one_row {
                    // One row for every parameter tuple of the input.
                    (r, JoinKind::Inner)
                } else {
                    let single = Plan::Reduce {
                        input: Box::new(r),
                        keys: columns(0..k),
                        aggs: vec![Aggregate {
                            func: AggFunc::Single,
                            args: vec![Expr::Column(k)],
                            order_by: vec![],
                            filter: None,
                            input_type: ty.clone(),
                            output_type: ty,
                            distinct: false,
                        }],
                    };
                    // Uncorrelated, the Reduce is global: always one row.
                    let kind = if k == 0 {
                        JoinKind::Inner
                    } else {
                        JoinKind::Left
                    };
                    (single, kind)
                };
                Ok((join(input, right, kind, None), Expr::Column(n + k)))
            }
            SubKind::Exists if k == 0 => {
                // Uncorrelated: one global count, joined to every row.
                let count = Plan::Reduce {
                    input: Box::new(r),
                    keys: vec![],
                    aggs: vec![Aggregate {
                        func: AggFunc::CountStar,
                        args: vec![],
                        order_by: vec![],
                        filter: None,
                        input_type: Type::Unknown,
                        output_type: Type::Int8,
                        distinct: false,
                    }],
                };
                Ok((
                    join(input, count, JoinKind::Inner, None),
                    Expr::Binary {
                        op: BinOp::Gt,
                        left: Box::new(Expr::Column(n)),
                        right: Box::new(Expr::Literal(Datum::Int(0))),
                        ty: Type::Int8,
                    },
                ))
            }
            SubKind::Exists => {
                let mut exprs = columns(0..k);
                exprs.push(Expr::Literal(Datum::Bool(true)));
                let right = Plan::Distinct {
                    input: Box::new(Plan::Project {
                        input: Box::new(r),
                        exprs,
                    }),
                };
                Ok((
                    join(input, right, JoinKind::Left, None),
                    Expr::IsNull {
                        expr: Box::new(Expr::Column(n + k)),
                        negated: true,
                    },
                ))
            }
            SubKind::In { x, xt } => {
                let yt = a.bound.columns[0].ty.clone();
                let ty = in_type(&xt, &yt, a.span)?;
                let x = from::key_expr(coerce(&self.time, x, &xt, &ty, a.span)?, &ty);
                let y = from::key_expr(coerce(&self.time, Expr::Column(k), &yt, &ty, a.span)?, &ty);
                // Per parameter tuple: how many rows, and how many non-NULL.
                let agg = |func, args| Aggregate {
                    func,
                    args,
                    order_by: vec![],
                    filter: None,
                    input_type: ty.clone(),
                    output_type: Type::Int8,
                    distinct: false,
                };
                let counts = Plan::Reduce {
                    input: Box::new(r.clone()),
                    keys: columns(0..k),
                    aggs: vec![
                        agg(AggFunc::CountStar, vec![]),
                        agg(AggFunc::Count, vec![y.clone()]),
                    ],
                };
                let kind = if k == 0 {
                    JoinKind::Inner
                } else {
                    JoinKind::Left
                };
                let with_counts = join(input, counts, kind, None);
                // The distinct non-NULL values, marked.
                let mut exprs = columns(0..k);
                exprs.push(y.clone());
                exprs.push(Expr::Literal(Datum::Bool(true)));
                let values = Plan::Distinct {
                    input: Box::new(Plan::Project {
                        input: Box::new(from::filter(
                            r,
                            vec![Expr::IsNull {
                                expr: Box::new(y),
                                negated: true,
                            }],
                        )),
                        exprs,
                    }),
                };
                let matched = join(
                    with_counts,
                    values,
                    JoinKind::Left,
                    Some((x.clone(), Expr::Column(k))),
                );
                let (cnt, cnt_nn, mark) = (n + k, n + k + 1, n + 2 * k + 3);
                let col = |i| Box::new(Expr::Column(i));
                let lit =
                    |b: Option<bool>| Expr::Literal(b.map(Datum::Bool).unwrap_or(Datum::Null));
                let value = Expr::Case {
                    branches: vec![
                        (
                            Expr::Binary {
                                op: BinOp::Eq,
                                left: Box::new(Expr::Coalesce(vec![
                                    Expr::Column(cnt),
                                    Expr::Literal(Datum::Int(0)),
                                ])),
                                right: Box::new(Expr::Literal(Datum::Int(0))),
                                ty: Type::Int8,
                            },
                            lit(Some(false)),
                        ),
                        (
                            Expr::IsNull {
                                expr: Box::new(x),
                                negated: false,
                            },
                            lit(None),
                        ),
                        (
                            Expr::IsNull {
                                expr: col(mark),
                                negated: true,
                            },
                            lit(Some(true)),
                        ),
                        (
                            Expr::Binary {
                                op: BinOp::Gt,
                                left: col(cnt),
                                right: col(cnt_nn),
                                ty: Type::Int8,
                            },
                            lit(None),
                        ),
                    ],
                    otherwise: Box::new(lit(Some(false))),
                };
                Ok((matched, value))
            }
        }
    }

    /// A WHERE conjunct with a subquery. `EXISTS`, `NOT EXISTS` and `x IN`
    /// at the top of a conjunct filter rows by whether a match exists, so they
    /// become semi- and anti-joins; anything else is evaluated as a value.
    pub(super) fn where_subquery_conjunct(
        &self,
        p: &ast::Expr,
        plan: Plan,
        scope: &Scope,
        outer: Option<&Outer<'_>>,
    ) -> Result<Plan> {
        let inner = unnested(p);
        let mut cx = ExprCx::new(scope, outer, Some(plan));
        if let ast::Expr::InSubquery {
            expr,
            subquery,
            negated: false,
        } = inner
        {
            if let Some(items) = super::rows::row_items(expr) {
                return self.row_in_subquery(&items, subquery, cx, p.span());
            }
        }
        let (subquery, negated, x) = match inner {
            ast::Expr::Exists { subquery, negated } => (subquery, *negated, None),
            ast::Expr::UnaryOp {
                op: ast::UnaryOperator::Not,
                expr,
            } if matches!(expr.as_ref(), ast::Expr::Exists { negated: false, .. }) => {
                let ast::Expr::Exists { subquery, .. } = expr.as_ref() else {
                    unreachable!("matched above")
                };
                (subquery, true, None)
            }
            ast::Expr::InSubquery {
                expr,
                subquery,
                negated: false,
            } => {
                let x = self.bind_expr(expr, &mut cx)?;
                (subquery, false, Some(x))
            }
            _ => {
                let (e, ty) = self.bind_expr(p, &mut cx)?;
                expect_bool(&ty, "argument of WHERE", p.span())?;
                let plan = cx.input.take().expect("input is returned");
                return Ok(from::filter(plan, vec![e]));
            }
        };
        let (bound, used) = self.bind_correlated(subquery, &cx)?;
        let kind = match &x {
            Some((_, xt)) => SubKind::In {
                x: Expr::Literal(Datum::Null),
                xt: xt.clone(),
            },
            None => SubKind::Exists,
        };
        self.check_shape(&kind, &bound, p.span())?;
        let input = cx.input.take().expect("input is returned");
        let k = bound.params;
        let mut left_keys: Vec<Expr> = used.iter().map(|&i| Expr::Column(i)).collect();
        let mut right_keys = columns(0..k);
        let (mut left, mut right) = (input, bound.plan);
        if let Some((x, xt)) = x {
            let yt = bound.columns[0].ty.clone();
            let ty = in_type(&xt, &yt, p.span())?;
            let x = from::key_expr(coerce(&self.time, x, &xt, &ty, p.span())?, &ty);
            let y = from::key_expr(
                coerce(&self.time, Expr::Column(k), &yt, &ty, p.span())?,
                &ty,
            );
            // NULL IN (...) is never true, and a NULL in the list never matches.
            let not_null = |e: &Expr| Expr::IsNull {
                expr: Box::new(e.clone()),
                negated: true,
            };
            left = from::filter(left, vec![not_null(&x)]);
            right = from::filter(right, vec![not_null(&y)]);
            left_keys.push(x);
            right_keys.push(y);
        }
        let right_arity = right.arity();
        Ok(Plan::Join {
            left: Box::new(left),
            right: Box::new(right),
            kind: if negated {
                JoinKind::Anti
            } else {
                JoinKind::Semi
            },
            left_keys,
            right_keys,
            residual: vec![],
            right_arity,
            null_safe: true,
        })
    }
}

impl<'a> Binder<'a> {
    /// `(a, b) IN (SELECT x, y ...)` at the top of WHERE: a semi-join on
    /// every pair (and the parameters of a correlated subquery); a row with a
    /// NULL field, or a NULL in the subquery's row, never matches.
    fn row_in_subquery(
        &self,
        items: &[&ast::Expr],
        subquery: &ast::Query,
        mut cx: ExprCx<'_>,
        span: Span,
    ) -> Result<Plan> {
        let mut xs = Vec::new();
        for e in items {
            xs.push(self.bind_expr(e, &mut cx)?);
        }
        let (bound, used) = self.bind_correlated(subquery, &cx)?;
        if bound.columns.len() != xs.len() {
            return Err(BindError::new(
                if bound.columns.len() > xs.len() {
                    "subquery has too many columns"
                } else {
                    "subquery has too few columns"
                },
                span,
            ));
        }
        let input = cx.input.take().expect("input is returned");
        let k = bound.params;
        let mut left_keys: Vec<Expr> = used.iter().map(|&i| Expr::Column(i)).collect();
        let mut right_keys = columns(0..k);
        let (mut left, mut right) = (input, bound.plan);
        let not_null = |e: &Expr| Expr::IsNull {
            expr: Box::new(e.clone()),
            negated: true,
        };
        for (i, (x, xt)) in xs.into_iter().enumerate() {
            let yt = bound.columns[i].ty.clone();
            let ty = in_type(&xt, &yt, span)?;
            let x = from::key_expr(coerce(&self.time, x, &xt, &ty, span)?, &ty);
            let y = from::key_expr(
                coerce(&self.time, Expr::Column(k + i), &yt, &ty, span)?,
                &ty,
            );
            left = from::filter(left, vec![not_null(&x)]);
            right = from::filter(right, vec![not_null(&y)]);
            left_keys.push(x);
            right_keys.push(y);
        }
        let right_arity = right.arity();
        Ok(Plan::Join {
            left: Box::new(left),
            right: Box::new(right),
            kind: JoinKind::Semi,
            left_keys,
            right_keys,
            residual: vec![],
            right_arity,
            null_safe: true,
        })
    }
}

/// The type `x IN (SELECT y ...)` compares in.
fn in_type(xt: &Type, yt: &Type, span: Span) -> Result<Type> {
    let ty = match (xt, yt) {
        (Type::Unknown, Type::Unknown) => Type::Text,
        (Type::Bpchar, Type::Unknown) | (Type::Unknown, Type::Bpchar) => Type::Bpchar,
        (a, b) => super::scalar::common_type(a, b).ok_or_else(|| {
            BindError::new(
                format!("operator does not exist: {} = {}", a.name(), b.name()),
                span,
            )
        })?,
    };
    if matches!(ty, Type::Json) {
        return Err(BindError::new(
            format!("operator does not exist: {} = {}", xt.name(), yt.name()),
            span,
        ));
    }
    Ok(ty)
}
