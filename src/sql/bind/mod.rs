//! Binding: names resolved against the catalog, types assigned, and the query
//! turned into a [`Plan`]. Everything outside the supported subset is refused
//! here with the construct's name and position, before any worker sees it.
//!
//! - `mod.rs`: queries (WITH, set operations, ORDER BY/LIMIT) and SELECT blocks.
//! - `from.rs`: FROM items and joins.
//! - `scalar.rs`: expressions, operators, casts and functions.
//! - `aggregate.rs`: aggregate calls and GROUP BY.
//! - `subquery.rs`: subqueries, decorrelated into joins.
//! - `scope.rs`: name resolution.

mod aggregate;
mod from;
pub mod params;
mod rows;
mod scalar;
mod scope;
mod srf;
mod subquery;
mod temporal;
mod window;

use std::cell::RefCell;
use std::collections::HashMap;

use sqlparser::ast::{
    self as ast, Distinct, GroupByExpr, LimitClause, ObjectNamePart, OrderByKind, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, SetOperator, SetQuantifier, Spanned, Value,
};
use sqlparser::tokenizer::Span;

use super::expr::Expr;
use super::plan::{AggFunc, Plan, SetOpKind, SortKey};
use super::{BindError, Catalog, Column, CompiledView};
use crate::repr::tz::TimeCx;
use crate::repr::{Datum, Type};
use aggregate::AggContext;
pub(crate) use scalar::interval_text_allowed;
use scalar::{coerce, common_type, expect_bool};
pub use scope::{Outer, Scope, ScopeCol};

type Result<T> = std::result::Result<T, BindError>;

fn unsupported(what: impl std::fmt::Display, span: Span) -> BindError {
    BindError::new(format!("unsupported: {what}"), span)
}

/// Identifier as Postgres folds it: unquoted names are lower-cased.
/// Whether `e` calls, at this query level (not inside a subquery, whose
/// calls belong to it), a function for which `wanted` holds: how the binder
/// finds aggregates, window calls, set-returning calls and the clock.
pub(super) fn calls_here(e: &ast::Expr, wanted: impl Fn(&ast::Function) -> bool) -> bool {
    struct Finder<W> {
        depth: usize,
        wanted: W,
    }
    impl<W: Fn(&ast::Function) -> bool> ast::Visitor for Finder<W> {
        type Break = ();
        fn pre_visit_query(&mut self, _q: &ast::Query) -> std::ops::ControlFlow<()> {
            self.depth += 1;
            std::ops::ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _q: &ast::Query) -> std::ops::ControlFlow<()> {
            self.depth -= 1;
            std::ops::ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, x: &ast::Expr) -> std::ops::ControlFlow<()> {
            match x {
                ast::Expr::Function(f) if self.depth == 0 && (self.wanted)(f) => {
                    std::ops::ControlFlow::Break(())
                }
                _ => std::ops::ControlFlow::Continue(()),
            }
        }
    }
    ast::Visit::visit(e, &mut Finder { depth: 0, wanted }).is_break()
}

pub fn ident_name(id: &ast::Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_lowercase()
    }
}

pub fn object_name_parts(name: &ast::ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(id) => ident_name(id),
            other => other.to_string(),
        })
        .collect()
}

/// A bound query. Its rows are the values of its parameters (the outer columns
/// a decorrelated subquery depends on; none for a top-level query) followed by
/// one value per column.
#[derive(Clone, Debug)]
pub struct Bound {
    pub plan: Plan,
    pub columns: Vec<Column>,
    pub params: usize,
    /// Exactly one row per parameter tuple: a global aggregate without HAVING.
    pub one_row: bool,
}

/// The outer values a correlated subquery is evaluated for: a relation of
/// distinct parameter tuples, and how the subquery's scope names them.
pub struct Params {
    pub plan: Plan,
    pub cols: Vec<ScopeCol>,
}

/// The state of binding one expression: what its rows look like, the queries
/// around it, the plan subqueries attach their results to, and the aggregates
/// of an aggregating SELECT.
pub struct ExprCx<'c> {
    pub scope: &'c Scope,
    pub outer: Option<&'c Outer<'c>>,
    /// The plan whose rows `scope` describes. A subquery joins its result to it
    /// and is read from the columns it appends past the scope.
    pub input: Option<Plan>,
    pub agg: Option<AggContext>,
    /// The window calls found so far, where window functions are allowed.
    pub win: Option<window::WinContext>,
    /// The set-returning calls found so far, in a select list.
    pub srf: Option<srf::SrfContext>,
}

impl<'c> ExprCx<'c> {
    pub fn new(scope: &'c Scope, outer: Option<&'c Outer<'c>>, input: Option<Plan>) -> Self {
        ExprCx {
            scope,
            outer,
            input,
            agg: None,
            win: None,
            srf: None,
        }
    }
}

pub struct Binder<'a> {
    catalog: &'a Catalog,
    /// Other views, selectable by name.
    views: &'a HashMap<String, CompiledView>,
    /// Common table expressions in scope, innermost last.
    ctes: RefCell<Vec<(String, Bound)>>,
    /// Numbers recursive queries.
    next_recursive: std::cell::Cell<usize>,
    /// Set while the FROM of a query bound with parameters is bound: a
    /// subquery there reaches the enclosing query only through them.
    derived_sealed: std::cell::Cell<bool>,
    /// How many Postgres views' definitions are being bound, one inside the
    /// other (see `bind_pg_view`).
    pg_view_depth: std::cell::Cell<usize>,
    /// Set while the clock side of a time-based condition is bound: `now()`
    /// and its kin read column 0, the clock.
    now_column: std::cell::Cell<bool>,
    /// The session's zone and DateStyle, which `timestamptz` operations,
    /// date/time text and literals depend on (see `repr::tz`).
    pub(crate) time: TimeCx,
}

impl<'a> Binder<'a> {
    /// A binder for views over `catalog`, under its session settings; a
    /// TimeZone or DateStyle viewcast cannot read is an error for every view.
    pub fn new(catalog: &'a Catalog, views: &'a HashMap<String, CompiledView>) -> Result<Self> {
        let s = &catalog.settings;
        let time = TimeCx::resolve(&s.timezone, &s.datestyle)
            .map_err(|e| BindError {
                message: format!("the role's session settings: {e}"),
                position: None,
            })?
            .with_intervalstyle(&s.intervalstyle);
        Ok(Binder {
            catalog,
            views,
            ctes: RefCell::new(Vec::new()),
            next_recursive: std::cell::Cell::new(0),
            derived_sealed: std::cell::Cell::new(false),
            pg_view_depth: std::cell::Cell::new(0),
            now_column: std::cell::Cell::new(false),
            time,
        })
    }

    /// Binds a top-level query.
    pub fn bind_top(&self, q: &ast::Query) -> Result<(Plan, Vec<Column>)> {
        let b = self.bind_query(q, None, None)?;
        Ok((b.plan, b.columns))
    }

    /// Binds a top-level query over the relation of its parameter tuples
    /// (see [`params`]): its rows are each tuple followed by the columns.
    pub fn bind_top_with_params(
        &self,
        q: &ast::Query,
        view_params: &[params::ViewParam],
    ) -> Result<(Plan, Vec<Column>)> {
        if view_params.is_empty() {
            return self.bind_top(q);
        }
        let p = Params {
            plan: Plan::Get {
                table: crate::sql::PARAMS_TABLE,
                name: "parameters".into(),
                arity: view_params.len(),
            },
            cols: view_params
                .iter()
                .map(|vp| {
                    let mut c = ScopeCol::new(None, vp.key(), vp.ty.clone());
                    c.depth = 1;
                    c
                })
                .collect(),
        };
        let b = self.bind_query(q, None, Some(&p))?;
        debug_assert_eq!(b.params, view_params.len());
        Ok((b.plan, b.columns))
    }

    pub fn bind_query(
        &self,
        q: &ast::Query,
        outer: Option<&Outer<'_>>,
        params: Option<&Params>,
    ) -> Result<Bound> {
        let depth = self.ctes.borrow().len();
        let result = self.bind_query_inner(q, outer, params, false);
        self.ctes.borrow_mut().truncate(depth);
        Ok(result?.0)
    }

    /// A subquery in FROM: also the order of its rows when it has an ORDER BY
    /// (see [`Scope::order`]), whose keys may be hidden columns past its
    /// output columns.
    pub fn bind_derived(
        &self,
        q: &ast::Query,
        outer: Option<&Outer<'_>>,
    ) -> Result<(Bound, Vec<SortKey>)> {
        self.bind_derived_over(q, outer, None)
    }

    /// [`Binder::bind_derived`] over parameter tuples (a LATERAL subquery).
    pub fn bind_derived_over(
        &self,
        q: &ast::Query,
        outer: Option<&Outer<'_>>,
        params: Option<&Params>,
    ) -> Result<(Bound, Vec<SortKey>)> {
        let depth = self.ctes.borrow().len();
        let result = self.bind_query_inner(q, outer, params, true);
        self.ctes.borrow_mut().truncate(depth);
        result
    }

    fn bind_query_inner(
        &self,
        q: &ast::Query,
        outer: Option<&Outer<'_>>,
        params: Option<&Params>,
        keep_order: bool,
    ) -> Result<(Bound, Vec<SortKey>)> {
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                let name = ident_name(&cte.alias.name);
                let self_referencing = with.recursive
                    && crate::sql::table_refs(&cte.query)
                        .iter()
                        .any(|p| matches!(p.as_slice(), [n] if *n == name));
                let b = if self_referencing {
                    self.bind_recursive(cte, &name)?
                } else {
                    let mut b = self.bind_query(&cte.query, None, None)?;
                    rename_columns(&mut b.columns, &cte.alias, &name)?;
                    b
                };
                self.ctes.borrow_mut().push((name, b));
            }
        }
        if !q.locks.is_empty() {
            return Err(unsupported("FOR UPDATE/SHARE", Span::empty()));
        }
        let (limit, offset) = match &q.limit_clause {
            None => (None, 0),
            Some(LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                if let Some(e) = limit_by.first() {
                    return Err(unsupported("LIMIT BY", e.span()));
                }
                let limit = match limit {
                    Some(e) => self.constant_count(e, "LIMIT")?,
                    None => None,
                };
                let offset = match offset {
                    Some(o) => self.constant_count(&o.value, "OFFSET")?.unwrap_or(0),
                    None => 0,
                };
                (limit, offset)
            }
            Some(other) => return Err(unsupported("LIMIT offset, count", other.span())),
        };
        // FETCH FIRST n ROWS ONLY is the standard's LIMIT n (n is 1 if left out).
        let limit = match &q.fetch {
            None => limit,
            Some(f) => {
                let span = f.quantity.as_ref().map(|e| e.span()).unwrap_or(q.span());
                if f.with_ties {
                    return Err(unsupported("FETCH ... WITH TIES", span));
                }
                if f.percent {
                    return Err(unsupported("FETCH ... PERCENT", span));
                }
                if limit.is_some() {
                    return Err(BindError::new("multiple LIMIT clauses not allowed", span));
                }
                match &f.quantity {
                    Some(e) => self.constant_count(e, "FETCH FIRST")?,
                    None => Some(1),
                }
            }
        };
        let topk = limit.is_some() || offset > 0;
        // ORDER BY without LIMIT does not change a view's contents: a view is a
        // multiset of rows, and subscribers receive changes, not an ordering.
        // A subquery in FROM keeps its order for what reads it in order.
        let want_order = topk || keep_order;
        // DISTINCT ON keeps the first row of each group in the ORDER BY.
        let distinct_on =
            matches!(&*q.body, SetExpr::Select(s) if matches!(s.distinct, Some(Distinct::On(_))));
        let order_by: &[ast::OrderByExpr] = match (&q.order_by, want_order || distinct_on) {
            (Some(ob), true) => match &ob.kind {
                OrderByKind::Expressions(v) => v,
                OrderByKind::All(_) => return Err(unsupported("ORDER BY ALL", q.span())),
            },
            _ => &[],
        };
        let (mut bound, sort) = self.bind_set_expr(&q.body, outer, params, order_by, want_order)?;
        let visible = bound.params + bound.columns.len();
        let arity = bound.plan.arity();
        if topk {
            bound.plan = Plan::TopK {
                input: Box::new(bound.plan),
                group: bound.params,
                order: sort.clone(),
                limit,
                offset,
            };
            bound.one_row = bound.one_row && offset == 0 && limit.is_some_and(|l| l > 0);
        }
        if arity > visible && !keep_order {
            bound.plan = Plan::Project {
                input: Box::new(bound.plan),
                exprs: (0..visible).map(Expr::Column).collect(),
            };
        }
        let order = if keep_order { sort } else { Vec::new() };
        Ok((bound, order))
    }

    /// `WITH RECURSIVE name AS (base UNION [ALL] step)`: a fixed point
    /// maintained with differential's iteration.
    fn bind_recursive(&self, cte: &ast::Cte, name: &str) -> Result<Bound> {
        let span = cte.query.span();
        let q = &cte.query;
        if q.with.is_some() || q.order_by.is_some() || q.limit_clause.is_some() || q.fetch.is_some()
        {
            return Err(unsupported(
                "WITH, ORDER BY or LIMIT inside a recursive query",
                span,
            ));
        }
        let SetExpr::SetOperation {
            left,
            op: SetOperator::Union,
            set_quantifier,
            right,
        } = q.body.as_ref()
        else {
            return Err(BindError::new(
                format!("recursive query \"{name}\" does not have the form non-recursive-term UNION [ALL] recursive-term"),
                span,
            ));
        };
        let distinct = match set_quantifier {
            SetQuantifier::All => false,
            SetQuantifier::Distinct | SetQuantifier::None => true,
            other => return Err(unsupported(format!("UNION {other}"), span)),
        };
        let (mut base, _) = self.bind_set_expr(left, None, None, &[], false)?;
        rename_columns(&mut base.columns, &cte.alias, name)?;
        for c in base.columns.iter_mut() {
            if c.ty == Type::Unknown {
                c.ty = Type::Text;
            }
        }
        let id = self.next_recursive.get();
        self.next_recursive.set(id + 1);
        let arity = base.columns.len();
        self.ctes.borrow_mut().push((
            name.to_string(),
            Bound {
                plan: Plan::RecursiveRef { id, arity },
                columns: base.columns.clone(),
                params: 0,
                one_row: false,
            },
        ));
        let step = self.bind_set_expr(right, None, None, &[], false);
        self.ctes.borrow_mut().pop();
        let (step, _) = step?;
        if step.columns.len() != arity {
            return Err(BindError::new(
                "each UNION query must have the same number of columns",
                right.span(),
            ));
        }
        let mut exprs = Vec::new();
        for (i, (b, s)) in base.columns.iter().zip(&step.columns).enumerate() {
            if common_type(&b.ty, &s.ty).as_ref() != Some(&b.ty) {
                return Err(BindError::new(
                    format!(
                        "recursive query \"{name}\" column {} has type {} in non-recursive term but type {} overall",
                        i + 1,
                        b.ty.name(),
                        s.ty.name()
                    ),
                    right.span(),
                ));
            }
            exprs.push(coerce(
                &self.time,
                Expr::Column(i),
                &s.ty,
                &b.ty,
                right.span(),
            )?);
        }
        let mut step_plan = step.plan;
        if exprs.iter().enumerate().any(|(i, e)| *e != Expr::Column(i)) {
            step_plan = Plan::Project {
                input: Box::new(step_plan),
                exprs,
            };
        }
        match recursive_uses(&step_plan, id) {
            Err(what) => {
                return Err(unsupported(
                    format!("a recursive reference to \"{name}\" {what}"),
                    right.span(),
                ))
            }
            Ok(0) => {
                // Not actually recursive: a plain UNION.
                let union = Plan::Union {
                    inputs: vec![base.plan, step_plan],
                };
                return Ok(Bound {
                    plan: if distinct {
                        Plan::Distinct {
                            input: Box::new(union),
                        }
                    } else {
                        union
                    },
                    columns: base.columns,
                    params: 0,
                    one_row: false,
                });
            }
            Ok(1) => {}
            Ok(_) => {
                return Err(BindError::new(
                    format!(
                        "recursive reference to query \"{name}\" must not appear more than once"
                    ),
                    right.span(),
                ))
            }
        }
        Ok(Bound {
            plan: Plan::Recursive {
                id,
                base: Box::new(base.plan),
                step: Box::new(step_plan),
                distinct,
            },
            columns: base.columns,
            params: 0,
            one_row: false,
        })
    }

    /// A LIMIT/OFFSET count: a non-negative integer constant (`None` for
    /// `LIMIT ALL` / `LIMIT NULL`).
    fn constant_count(&self, e: &ast::Expr, what: &str) -> Result<Option<u64>> {
        let scope = Scope::default();
        let mut cx = ExprCx::new(&scope, None, None);
        let (x, _) = self.bind_expr(e, &mut cx)?;
        let value = match x {
            Expr::Literal(d) => d,
            _ => {
                return Err(unsupported(
                    format!("{what} that is not a constant"),
                    e.span(),
                ))
            }
        };
        match value {
            Datum::Null => Ok(None),
            Datum::Int(n) if n >= 0 => Ok(Some(n as u64)),
            Datum::Int(_) => Err(BindError::new(
                format!("{what} must not be negative"),
                e.span(),
            )),
            _ => Err(BindError::new(
                format!("argument of {what} must be an integer"),
                e.span(),
            )),
        }
    }

    /// Binds a query body. With `order_by`, also returns the sort keys; a key
    /// that is not an output column is appended as a hidden column past them.
    fn bind_set_expr(
        &self,
        body: &SetExpr,
        outer: Option<&Outer<'_>>,
        params: Option<&Params>,
        order_by: &[ast::OrderByExpr],
        want_order: bool,
    ) -> Result<(Bound, Vec<SortKey>)> {
        match body {
            SetExpr::Select(s) => self.bind_select(s, outer, params, order_by, want_order),
            SetExpr::Query(inner) => {
                let b = self.bind_query(inner, outer, params)?;
                let sort = output_sort_keys(self, &b, order_by)?;
                Ok((b, sort))
            }
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                let (l, _) = self.bind_set_expr(left, outer, params, &[], false)?;
                let (r, _) = self.bind_set_expr(right, outer, params, &[], false)?;
                let b = self.set_operation(l, r, *op, *set_quantifier, body.span())?;
                let sort = output_sort_keys(self, &b, order_by)?;
                Ok((b, sort))
            }
            SetExpr::Values(v) => {
                let b = self.bind_values(v, params, body.span())?;
                let sort = output_sort_keys(self, &b, order_by)?;
                Ok((b, sort))
            }
            other => Err(unsupported(
                format!(
                    "statement {}",
                    other.to_string().split_whitespace().next().unwrap_or("")
                ),
                body.span(),
            )),
        }
    }

    fn set_operation(
        &self,
        l: Bound,
        r: Bound,
        op: SetOperator,
        quantifier: SetQuantifier,
        span: Span,
    ) -> Result<Bound> {
        let name = match op {
            SetOperator::Union => "UNION",
            SetOperator::Intersect => "INTERSECT",
            SetOperator::Except | SetOperator::Minus => "EXCEPT",
        };
        if l.columns.len() != r.columns.len() {
            return Err(BindError::new(
                format!("each {name} query must have the same number of columns"),
                span,
            ));
        }
        let all = match quantifier {
            SetQuantifier::All => true,
            SetQuantifier::Distinct | SetQuantifier::None => false,
            other => return Err(unsupported(format!("{name} {other}"), span)),
        };
        let k = l.params;
        let mut columns = Vec::new();
        let (mut lx, mut rx): (Vec<Expr>, Vec<Expr>) = (
            (0..k).map(Expr::Column).collect(),
            (0..k).map(Expr::Column).collect(),
        );
        let mut cast_needed = false;
        for (i, (lc, rc)) in l.columns.iter().zip(&r.columns).enumerate() {
            let ty = match (&lc.ty, &rc.ty) {
                (Type::Unknown, Type::Unknown) => Type::Text,
                (a, b) => common_type(a, b).ok_or_else(|| {
                    BindError::new(
                        format!(
                            "{name} types {} and {} cannot be matched",
                            a.name(),
                            b.name()
                        ),
                        span,
                    )
                })?,
            };
            let le = coerce(&self.time, Expr::Column(k + i), &lc.ty, &ty, span)?;
            let re = coerce(&self.time, Expr::Column(k + i), &rc.ty, &ty, span)?;
            cast_needed |= le != Expr::Column(k + i) || re != Expr::Column(k + i);
            lx.push(le);
            rx.push(re);
            columns.push(Column {
                name: lc.name.clone(),
                ty,
            });
        }
        let shape = |plan: Plan, exprs: Vec<Expr>| {
            if cast_needed {
                Plan::Project {
                    input: Box::new(plan),
                    exprs,
                }
            } else {
                plan
            }
        };
        let (lp, rp) = (shape(l.plan, lx), shape(r.plan, rx));
        let plan = match op {
            SetOperator::Union => {
                let union = Plan::Union {
                    inputs: vec![lp, rp],
                };
                if all {
                    union
                } else {
                    Plan::Distinct {
                        input: Box::new(union),
                    }
                }
            }
            SetOperator::Intersect => Plan::SetOp {
                kind: SetOpKind::Intersect,
                all,
                left: Box::new(lp),
                right: Box::new(rp),
            },
            SetOperator::Except | SetOperator::Minus => Plan::SetOp {
                kind: SetOpKind::Except,
                all,
                left: Box::new(lp),
                right: Box::new(rp),
            },
        };
        Ok(Bound {
            plan,
            columns,
            params: k,
            one_row: false,
        })
    }

    fn bind_values(&self, v: &ast::Values, params: Option<&Params>, span: Span) -> Result<Bound> {
        if params.is_some() {
            return Err(unsupported("VALUES in a correlated subquery", span));
        }
        let width = v.rows.first().map(|r| r.content.len()).unwrap_or(0);
        let scope = Scope::default();
        let mut rows: Vec<Vec<(Expr, Type)>> = Vec::new();
        for row in &v.rows {
            if row.content.len() != width {
                return Err(BindError::new(
                    "VALUES lists must all be the same length",
                    span,
                ));
            }
            let mut out = Vec::new();
            for e in &row.content {
                let mut cx = ExprCx::new(&scope, None, None);
                out.push(self.bind_expr(e, &mut cx)?);
            }
            rows.push(out);
        }
        let mut types = vec![Type::Unknown; width];
        for row in &rows {
            for (i, (_, t)) in row.iter().enumerate() {
                types[i] = common_type(&types[i], t).ok_or_else(|| {
                    BindError::new(
                        format!(
                            "VALUES types {} and {} cannot be matched",
                            types[i].name(),
                            t.name()
                        ),
                        span,
                    )
                })?;
            }
        }
        for t in types.iter_mut() {
            if *t == Type::Unknown {
                *t = Type::Text;
            }
        }
        let mut data = Vec::new();
        for row in rows {
            let mut out = Vec::new();
            for (i, (e, t)) in row.into_iter().enumerate() {
                let e = coerce(&self.time, e, &t, &types[i], span)?;
                if e.max_column().is_some() {
                    return Err(unsupported("VALUES entries that are not constants", span));
                }
                out.push(e.eval(&[]).map_err(|er| BindError::new(er.0, span))?);
            }
            data.push(out);
        }
        Ok(Bound {
            plan: Plan::Constant {
                rows: data,
                arity: width,
            },
            columns: types
                .into_iter()
                .enumerate()
                .map(|(i, ty)| Column {
                    name: format!("column{}", i + 1),
                    ty,
                })
                .collect(),
            params: 0,
            one_row: false,
        })
    }

    fn bind_select(
        &self,
        s: &ast::Select,
        outer: Option<&Outer<'_>>,
        params: Option<&Params>,
        order_by: &[ast::OrderByExpr],
        want_order: bool,
    ) -> Result<(Bound, Vec<SortKey>)> {
        if s.into.is_some() {
            return Err(unsupported("SELECT INTO", s.span()));
        }
        if s.qualify.is_some() {
            return Err(unsupported("QUALIFY", s.span()));
        }

        // FROM: each comma-separated item is a unit; its columns follow the
        // previous unit's. A correlated subquery's parameters come first.
        // When the first item's joins use them in ON, they are crossed into
        // its first relation instead, ahead of the joins.
        let mut units: Vec<(Plan, Scope)> = Vec::new();
        let lead = params.map(|p| {
            (
                p.plan.clone(),
                Scope {
                    cols: p.cols.clone(),
                    ..Scope::default()
                },
            )
        });
        // Subqueries in FROM see the parameters through `lead` too.
        let led = lead.is_some()
            && s.from.first().is_some_and(|t| {
                from::on_mentions_params(t)
                    || from::reads_left(&t.relation)
                    || t.joins.iter().any(|j| from::reads_left(&j.relation))
            });
        let mut lead = lead;
        if !led {
            units.extend(lead.take());
        }
        // While this query's own FROM is bound with parameters, a subquery
        // in it reads them only as a LATERAL join does; bound on its own it
        // must not reach the enclosing query (that would read the first
        // pass's placeholders).
        let sealed = self.derived_sealed.replace(params.is_some());
        let bound_from = self.bind_from(s, outer, &mut units, lead);
        self.derived_sealed.set(sealed);
        bound_from?;
        if units.is_empty() {
            units.push((
                Plan::Constant {
                    rows: vec![vec![]],
                    arity: 0,
                },
                Scope::default(),
            ));
        }
        let k = params.map(|p| p.cols.len()).unwrap_or(0);
        let mut scope = Scope::default();
        for (_, sc) in &units {
            scope = scope.concat(sc);
        }
        // Rows of one ordered subquery in FROM arrive in its order (a
        // correlated subquery's parameters only select among them).
        let from_order: Vec<SortKey> = match units.as_slice() {
            [(_, only)] => only.order.clone(),
            [_, (_, only)] if k > 0 && !led => only
                .order
                .iter()
                .map(|o| SortKey {
                    column: o.column + k,
                    ..o.clone()
                })
                .collect(),
            _ => Vec::new(),
        };

        // WHERE: plain conjuncts are joined and pushed down; conjuncts with
        // subqueries are applied to the joined rows afterwards.
        let mut plain = Vec::new();
        let mut with_subqueries = Vec::new();
        let mut temporal_bounds = Vec::new();
        if let Some(w) = &s.selection {
            self.refuse_aggregates(w, &scope, outer, "WHERE")?;
            let mut parts = Vec::new();
            split_conjuncts(w, &mut parts);
            for p in parts {
                if temporal::mentions_now(&p) {
                    let mut cx = ExprCx::new(&scope, outer, None);
                    temporal_bounds.extend(self.bind_temporal(&p, &mut cx)?);
                    continue;
                }
                if subquery::contains_subquery(&p) {
                    with_subqueries.push(p);
                    continue;
                }
                let mut cx = ExprCx::new(&scope, outer, None);
                let (e, ty) = self.bind_expr(&p, &mut cx)?;
                expect_bool(&ty, "argument of WHERE", p.span())?;
                plain.push(e);
            }
        }
        let mut plan = from::join_units(units, plain);
        // Conjuncts with subqueries in the order Postgres evaluates them:
        // those read as values first (it filters with them as soon as the
        // columns they read are there, so their errors are raised for every
        // row), then EXISTS, NOT EXISTS and IN, which it plans as semi- and
        // anti-joins.
        // A value that cannot fail to compare (a column against a
        // subquery's value) goes last: joined to every row that reaches it,
        // a change of the subquery's value (q22's `c_acctbal > (SELECT
        // avg(...))`) retracts and adds every such row again, so the fewer
        // rows reach it the cheaper that is, and no error can tell the
        // order.
        let rank = |p: &&ast::Expr| {
            if subquery::filters_by_match(p) {
                1
            } else if subquery::compares_column_with_subquery(p) {
                2
            } else {
                0
            }
        };
        let mut ordered: Vec<&ast::Expr> = with_subqueries.iter().collect();
        ordered.sort_by_key(rank);
        for p in ordered {
            plan = self.where_subquery_conjunct(p, plan, &scope, outer)?;
        }
        if !temporal_bounds.is_empty() {
            plan = Plan::Temporal {
                input: Box::new(plan),
                bounds: temporal_bounds,
            };
        }

        // Aggregation.
        let group_exprs: Vec<ast::Expr> = match &s.group_by {
            GroupByExpr::Expressions(exprs, mods) => {
                if !mods.is_empty() {
                    return Err(unsupported(
                        "GROUP BY modifiers (ROLLUP/CUBE/GROUPING SETS)",
                        s.span(),
                    ));
                }
                exprs.clone()
            }
            GroupByExpr::All(_) => return Err(unsupported("GROUP BY ALL", s.span())),
        };
        // Its own aggregate calls, and those of its subqueries that belong
        // to it (see `aggregate`).
        let (has_aggs, outer_aggs) = self.select_aggregates(s, order_by, &scope, outer)?;
        let aggregating =
            has_aggs || !outer_aggs.is_empty() || !group_exprs.is_empty() || s.having.is_some();

        let mut exprs: Vec<Expr> = (0..k).map(Expr::Column).collect();
        let mut columns = Vec::new();
        let mut one_row = false;
        let sort;
        let on_keys;
        let mut windows: Option<window::WinContext>;
        let mut srfs: Option<srf::SrfContext>;
        if aggregating {
            let mut ctx = AggContext::new(scope.cols[..k].iter().map(|c| c.ty.clone()).collect());
            // GROUPING SETS, ROLLUP and CUBE: the sets of keys, crossed over
            // the GROUP BY items; plain GROUP BY has one set of every key.
            let mut sets: Option<Vec<Vec<usize>>> = None;
            let mut crossed = self.group_items(
                &group_exprs,
                s,
                &scope,
                outer,
                &mut plan,
                &mut ctx,
                &mut sets,
            )?;
            if sets.is_some() {
                if k > 0 {
                    return Err(unsupported(
                        "GROUPING SETS, ROLLUP or CUBE in a correlated subquery or a view with parameters",
                        s.span(),
                    ));
                }
                for set in crossed.iter_mut() {
                    set.sort_unstable();
                    set.dedup();
                }
                sets = Some(crossed);
            }
            let scope =
                self.bind_outer_aggregates(&outer_aggs, &scope, outer, &mut plan, &mut ctx)?;
            let global = ctx.keys.len() == k;
            let mut cx = ExprCx::new(&scope, outer, Some(plan));
            cx.agg = Some(ctx);
            cx.win = Some(window::WinContext::new(s));
            cx.srf = Some(srf::SrfContext::default());
            self.bind_select_list(s, &scope, &mut cx, &mut exprs, &mut columns)?;
            srfs = cx.srf.take();
            let win = cx.win.take();
            // HAVING's conjuncts that read the clock are time-based
            // conditions on the groups.
            let mut having_bounds = Vec::new();
            let having = match &s.having {
                Some(h) if temporal::mentions_now(h) => {
                    let mut parts = Vec::new();
                    split_conjuncts(h, &mut parts);
                    let mut rest = Vec::new();
                    for p in parts {
                        if temporal::mentions_now(&p) {
                            having_bounds.extend(self.bind_temporal(&p, &mut cx)?);
                        } else {
                            let (e, ty) = self.bind_expr(&p, &mut cx)?;
                            expect_bool(&ty, "argument of HAVING", p.span())?;
                            rest.push(e);
                        }
                    }
                    rest.into_iter().reduce(|a, b| Expr::Binary {
                        op: crate::sql::expr::BinOp::And,
                        left: Box::new(a),
                        right: Box::new(b),
                        ty: Type::Bool,
                    })
                }
                Some(h) => {
                    let (e, ty) = self.bind_expr(h, &mut cx)?;
                    expect_bool(&ty, "argument of HAVING", h.span())?;
                    Some(e)
                }
                None => None,
            };
            cx.win = win;
            sort = self.sort_keys(order_by, s, k, &columns, &mut exprs, &mut cx)?;
            on_keys = self.distinct_on_keys(s, k, &columns, &mut exprs, &mut cx)?;
            windows = cx.win.take();
            let mut ctx = cx.agg.take().expect("aggregate context is present");
            // An order-sensitive aggregate without its own ORDER BY reads an
            // ordered subquery's rows in that order, as Postgres does. Under
            // GROUP BY, Postgres may sort the rows by the group keys first
            // (its sort is not stable): the order is its plan's choice.
            for a in ctx.aggs.iter_mut() {
                if a.func.needs_all_values()
                    && a.func != AggFunc::Single
                    && a.order_by.is_empty()
                    && !a.distinct
                    && !from_order.is_empty()
                {
                    if !global {
                        return Err(unsupported(
                            format!(
                                "{}() without ORDER BY in a GROUP BY over an ordered subquery (Postgres's order there depends on its plan; write {}(... ORDER BY ...))",
                                a.func.name(),
                                a.func.name()
                            ),
                            s.span(),
                        ));
                    }
                    a.order_by = from_order
                        .iter()
                        .map(|o| (Expr::Column(o.column), o.desc, o.nulls_first))
                        .collect();
                }
            }
            let input = cx.input.take().expect("input is returned");
            let grouping_at = ctx.keys.len() + ctx.aggs.len();
            let (reduced, substitutes) =
                self.finish_aggregation(input, ctx, global, params, sets.as_deref())?;
            plan = reduced;
            let fix = |e: &Expr| {
                aggregate::substitute(e, &substitutes).replace_columns(&|i| {
                    if (aggregate::GROUPING_BASE..aggregate::POST_BASE).contains(&i) {
                        Expr::Column(grouping_at + i - aggregate::GROUPING_BASE)
                    } else {
                        Expr::Column(i)
                    }
                })
            };
            exprs = exprs.iter().map(fix).collect();
            if let Some(h) = having {
                plan = from::filter(plan, vec![fix(&h)]);
            }
            if !having_bounds.is_empty() {
                plan = Plan::Temporal {
                    input: Box::new(plan),
                    bounds: having_bounds
                        .into_iter()
                        .map(|mut b| {
                            b.row = fix(&b.row);
                            b
                        })
                        .collect(),
                };
            }
            // Window and set-returning calls read the groups, as the select
            // list does.
            if let Some(c) = srfs.as_mut() {
                for f in c.calls.iter_mut() {
                    f.args = f.args.iter().map(fix).collect();
                }
            }
            if let Some(w) = windows.as_mut() {
                for c in w.calls.iter_mut() {
                    c.partition = c.partition.iter().map(fix).collect();
                    c.order = c.order.iter().map(|(e, d, n)| (fix(e), *d, *n)).collect();
                    c.func.args = c.func.args.iter().map(fix).collect();
                    if let Some(a) = c.func.agg.as_mut() {
                        a.args = a.args.iter().map(fix).collect();
                        a.filter = a.filter.as_ref().map(fix);
                    }
                }
            }
            one_row = global && s.having.is_none();
        } else {
            let mut cx = ExprCx::new(&scope, outer, Some(plan));
            cx.win = Some(window::WinContext::new(s));
            cx.srf = Some(srf::SrfContext::default());
            self.bind_select_list(s, &scope, &mut cx, &mut exprs, &mut columns)?;
            srfs = cx.srf.take();
            sort = if order_by.is_empty() && want_order && s.distinct.is_none() {
                // No ORDER BY of its own: the rows keep the order of an
                // ordered subquery they come from.
                from_order
                    .iter()
                    .map(|o| {
                        let e = Expr::Column(o.column);
                        let column = match exprs[k..].iter().position(|x| *x == e) {
                            Some(i) => k + i,
                            None => {
                                exprs.push(e);
                                exprs.len() - 1
                            }
                        };
                        SortKey {
                            column,
                            ..o.clone()
                        }
                    })
                    .collect()
            } else {
                self.sort_keys(order_by, s, k, &columns, &mut exprs, &mut cx)?
            };
            on_keys = self.distinct_on_keys(s, k, &columns, &mut exprs, &mut cx)?;
            windows = cx.win.take();
            plan = cx.input.take().expect("input is returned");
        }
        if let Some(w) = windows.filter(|w| !w.calls.is_empty()) {
            // Rows of an ordered subquery reach the window in its order, so
            // peers keep that order (over groups, the subquery's is gone).
            let ties: Vec<(Expr, bool, bool)> = if aggregating {
                Vec::new()
            } else {
                from_order
                    .iter()
                    .map(|o| (Expr::Column(o.column), o.desc, o.nulls_first))
                    .collect()
            };
            let (p, cols) = self.build_windows(plan, w, &ties);
            plan = p;
            exprs = exprs.iter().map(|e| window::substitute(e, &cols)).collect();
            if let Some(c) = srfs.as_mut() {
                for f in c.calls.iter_mut() {
                    f.args = f
                        .args
                        .iter()
                        .map(|e| window::substitute(e, &cols))
                        .collect();
                }
            }
        }
        // Set-returning calls of the select list, zipped, after windows.
        if let Some(c) = srfs.filter(|c| !c.calls.is_empty()) {
            let first = plan.arity();
            let count = c.calls.len();
            plan = Plan::FlatMap {
                input: Box::new(plan),
                funcs: c.calls,
                ordinality: false,
                outer: false,
            };
            exprs = exprs
                .iter()
                .map(|e| srf::substitute(e, first, count))
                .collect();
        }
        if matches!(s.distinct, Some(Distinct::Distinct)) && exprs.len() > k + columns.len() {
            return Err(BindError::new(
                "for SELECT DISTINCT, ORDER BY expressions must appear in select list",
                s.span(),
            ));
        }
        let identity = exprs.len() == plan.arity()
            && exprs.iter().enumerate().all(|(i, e)| *e == Expr::Column(i));
        if !identity {
            plan = Plan::Project {
                input: Box::new(plan),
                exprs,
            };
        }
        if matches!(s.distinct, Some(Distinct::Distinct)) {
            plan = Plan::Distinct {
                input: Box::new(plan),
            };
        }
        if let Some(on) = on_keys {
            plan = distinct_on(plan, k, &on, &sort, s.span())?;
        }
        Ok((
            Bound {
                plan,
                columns,
                params: k,
                one_row,
            },
            sort,
        ))
    }

    /// The select list: one expression and column per item, `*` and `t.*`
    /// expanded (in an aggregating SELECT every such column must be a key).
    fn bind_select_list(
        &self,
        s: &ast::Select,
        scope: &Scope,
        cx: &mut ExprCx<'_>,
        exprs: &mut Vec<Expr>,
        columns: &mut Vec<Column>,
    ) -> Result<()> {
        for item in &s.projection {
            let (e, name) = match item {
                SelectItem::UnnamedExpr(e) => (e, default_name(e)),
                SelectItem::ExprWithAlias { expr, alias } => (expr, ident_name(alias)),
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    let q = match item {
                        SelectItem::QualifiedWildcard(
                            SelectItemQualifiedWildcardKind::ObjectName(n),
                            _,
                        ) => Some(object_name_parts(n).last().cloned().unwrap_or_default()),
                        SelectItem::QualifiedWildcard(
                            SelectItemQualifiedWildcardKind::Expr(e),
                            _,
                        ) => return Err(unsupported(format!("{e}.*"), e.span())),
                        _ => None,
                    };
                    let mut any = false;
                    for (i, c) in scope.cols.iter().enumerate() {
                        let wanted = c.depth == 0
                            && match &q {
                                Some(q) => c.qualifier.as_deref() == Some(q.as_str()),
                                None => !c.hidden,
                            };
                        if !wanted {
                            continue;
                        }
                        check_supported(c, item.span())?;
                        let e = match &cx.agg {
                            None => Expr::Column(i),
                            Some(ctx) => {
                                let Some(k) = ctx.keys.iter().position(|x| *x == Expr::Column(i))
                                else {
                                    return Err(BindError::new(
                                        format!("column \"{}\" must appear in the GROUP BY clause or be used in an aggregate function", c.name),
                                        item.span(),
                                    ));
                                };
                                Expr::Column(k)
                            }
                        };
                        exprs.push(e);
                        columns.push(Column {
                            name: c.name.clone(),
                            ty: c.ty.clone(),
                        });
                        any = true;
                    }
                    match (&q, any) {
                        (Some(q), false) => {
                            return Err(BindError::new(
                                format!("missing FROM-clause entry for table \"{q}\""),
                                item.span(),
                            ))
                        }
                        (None, false) if s.from.is_empty() => {
                            return Err(BindError::new(
                                "SELECT * with no tables specified is not valid",
                                item.span(),
                            ))
                        }
                        _ => {}
                    }
                    continue;
                }
                other => return Err(unsupported(other.to_string(), other.span())),
            };
            let (b, ty) = self.bind_expr(e, cx)?;
            exprs.push(b);
            columns.push(Column { name, ty });
        }
        Ok(())
    }

    /// A list of GROUP BY items (the GROUP BY clause, or an element of
    /// GROUPING SETS/ROLLUP/CUBE): the cross product of their grouping sets,
    /// each set the union of one set of every item.
    #[allow(clippy::too_many_arguments)]
    fn group_items(
        &self,
        items: &[ast::Expr],
        s: &ast::Select,
        scope: &Scope,
        outer: Option<&Outer<'_>>,
        plan: &mut Plan,
        ctx: &mut AggContext,
        sets: &mut Option<Vec<Vec<usize>>>,
    ) -> Result<Vec<Vec<usize>>> {
        let mut out: Vec<Vec<usize>> = vec![Vec::new()];
        for e in items {
            let sub = self.group_item(e, s, scope, outer, plan, ctx, sets)?;
            out = out
                .iter()
                .flat_map(|a| {
                    sub.iter().map(move |b| {
                        let mut set = a.clone();
                        set.extend(b.iter().copied());
                        set
                    })
                })
                .collect();
        }
        Ok(out)
    }

    /// One GROUP BY item: its keys are added to `ctx`, and it returns its
    /// grouping sets (key positions). `sets` becomes `Some` once an item is a
    /// GROUPING SETS, ROLLUP, CUBE or `()`.
    #[allow(clippy::too_many_arguments)]
    fn group_item(
        &self,
        g: &ast::Expr,
        s: &ast::Select,
        scope: &Scope,
        outer: Option<&Outer<'_>>,
        plan: &mut Plan,
        ctx: &mut AggContext,
        sets: &mut Option<Vec<Vec<usize>>>,
    ) -> Result<Vec<Vec<usize>>> {
        match g {
            ast::Expr::GroupingSets(elements) => {
                sets.get_or_insert_with(Vec::new);
                let mut out = Vec::new();
                for el in elements {
                    out.extend(self.group_items(el, s, scope, outer, plan, ctx, sets)?);
                }
                Ok(out)
            }
            ast::Expr::Rollup(elements) | ast::Expr::Cube(elements) => {
                sets.get_or_insert_with(Vec::new);
                let mut parts: Vec<Vec<usize>> = Vec::new();
                for el in elements {
                    // An element is a list of keys grouped together.
                    let mut keys = Vec::new();
                    for set in self.group_items(el, s, scope, outer, plan, ctx, sets)? {
                        keys.extend(set);
                    }
                    parts.push(keys);
                }
                let n = parts.len();
                let choose = |mask: usize| -> Vec<usize> {
                    (0..n)
                        .filter(|i| mask & (1 << i) != 0)
                        .flat_map(|i| parts[i].iter().copied())
                        .collect()
                };
                Ok(if matches!(g, ast::Expr::Rollup(_)) {
                    (0..=n).rev().map(|len| choose((1 << len) - 1)).collect()
                } else {
                    if n > 12 {
                        return Err(unsupported("CUBE of more than 12 elements", g.span()));
                    }
                    (0..1usize << n).rev().map(choose).collect()
                })
            }
            ast::Expr::Tuple(items) => {
                if items.is_empty() {
                    sets.get_or_insert_with(Vec::new);
                }
                let mut keys = Vec::new();
                for set in self.group_items(items, s, scope, outer, plan, ctx, sets)? {
                    keys.extend(set);
                }
                Ok(vec![keys])
            }
            ast::Expr::Nested(inner)
                if matches!(
                    **inner,
                    ast::Expr::GroupingSets(_) | ast::Expr::Rollup(_) | ast::Expr::Cube(_)
                ) =>
            {
                self.group_item(inner, s, scope, outer, plan, ctx, sets)
            }
            _ => {
                let g = resolve_group_ref(g, s, scope)?;
                self.refuse_aggregates(&g, scope, outer, "GROUP BY")?;
                let mut cx = ExprCx::new(scope, outer, Some(plan.clone()));
                let (e, ty) = self.bind_expr(&g, &mut cx)?;
                *plan = cx.input.take().expect("input is returned");
                ctx.add_key(e.clone(), ty);
                let at = ctx.keys.iter().position(|x| *x == e).expect("just added");
                Ok(vec![vec![at]])
            }
        }
    }

    /// The comma-separated FROM items as units. A LATERAL item reads the
    /// item just before it (join the items it reads into one with JOIN if it
    /// reads several).
    fn bind_from(
        &self,
        s: &ast::Select,
        outer: Option<&Outer<'_>>,
        units: &mut Vec<(Plan, Scope)>,
        mut lead: Option<(Plan, Scope)>,
    ) -> Result<()> {
        for twj in &s.from {
            if units.is_empty() || !from::reads_left(&twj.relation) {
                units.push(self.bind_table_with_joins_led(twj, outer, lead.take())?);
                continue;
            }
            let lateral = from::is_lateral(&twj.relation);
            let mut all = Scope::default();
            for (_, sc) in units.iter() {
                all = all.concat(sc);
            }
            let visible = if lateral {
                all
            } else {
                from::params_only(&all)
            };
            let used = self.factor_reads(&twj.relation, &visible, outer)?;
            if used.is_empty() {
                units.push(self.bind_table_with_joins_led(twj, outer, lead.take())?);
                continue;
            }
            let last_start = visible.cols.len() - units.last().map(|u| u.1.cols.len()).unwrap_or(0);
            if used.iter().any(|&c| c < last_start) {
                return Err(unsupported(
                    "a subquery in FROM that reads FROM items before the one just left of it (join those items with JOIN ... ON into one item first)",
                    twj.relation.span(),
                ));
            }
            let (lplan, lscope) = units.pop().expect("a unit is left of it");
            let lvisible = if lateral {
                lscope.clone()
            } else {
                from::params_only(&lscope)
            };
            let (plan, scope) = self.lateral_join(
                (lplan, lscope),
                &twj.relation,
                &lvisible,
                from::Written::Inner,
                &ast::JoinConstraint::None,
                outer,
            )?;
            units.push(self.bind_joins(plan, scope, twj, outer)?);
        }
        Ok(())
    }

    /// The DISTINCT ON expressions as output columns (found or appended
    /// hidden, like ORDER BY terms); `None` without DISTINCT ON.
    fn distinct_on_keys(
        &self,
        s: &ast::Select,
        k: usize,
        columns: &[Column],
        exprs: &mut Vec<Expr>,
        cx: &mut ExprCx<'_>,
    ) -> Result<Option<Vec<usize>>> {
        let Some(Distinct::On(on)) = &s.distinct else {
            return Ok(None);
        };
        let terms: Vec<ast::OrderByExpr> = on
            .iter()
            .map(|e| ast::OrderByExpr {
                // `DISTINCT ON (1)` parses as a parenthesized expression.
                expr: match e {
                    ast::Expr::Nested(inner) => (**inner).clone(),
                    e => e.clone(),
                },
                options: ast::OrderByOptions {
                    sort: None,
                    nulls_first: None,
                },
                with_fill: None,
            })
            .collect();
        let keys = self.sort_keys(&terms, s, k, columns, exprs, cx)?;
        let mut cols: Vec<usize> = Vec::new();
        for key in keys {
            if !cols.contains(&key.column) {
                cols.push(key.column);
            }
        }
        Ok(Some(cols))
    }

    /// ORDER BY terms of a SELECT as sort keys over its output: an output
    /// position, an output name, an expression equal to a select item, or else
    /// a new hidden column appended to `exprs`.
    fn sort_keys(
        &self,
        order_by: &[ast::OrderByExpr],
        s: &ast::Select,
        k: usize,
        columns: &[Column],
        exprs: &mut Vec<Expr>,
        cx: &mut ExprCx<'_>,
    ) -> Result<Vec<SortKey>> {
        let mut keys = Vec::new();
        // Select items by output position, where no `*` shifts them.
        let plain_items = !s.projection.iter().any(|i| {
            matches!(
                i,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        });
        for o in order_by {
            let (desc, nulls_first) = sort_options(o)?;
            let column = if let Some(i) = output_reference(&o.expr, columns)? {
                let item = match s.projection.get(i) {
                    Some(SelectItem::UnnamedExpr(e))
                    | Some(SelectItem::ExprWithAlias { expr: e, .. })
                        if plain_items =>
                    {
                        Some(e)
                    }
                    _ => None,
                };
                let operands: Vec<&ast::Expr> = std::iter::once(&o.expr).chain(item).collect();
                self.text_order_allowed(
                    "ORDER BY ... LIMIT",
                    &columns[i].ty,
                    &operands,
                    o.expr.span(),
                )?;
                k + i
            } else {
                let e = resolve_group_ref(&o.expr, s, cx.scope)?;
                let (b, ty) = self.bind_expr(&e, cx)?;
                self.text_order_allowed("ORDER BY ... LIMIT", &ty, &[&o.expr, &e], o.expr.span())?;
                match exprs[k..].iter().position(|x| *x == b) {
                    Some(i) => k + i,
                    None => {
                        exprs.push(b);
                        exprs.len() - 1
                    }
                }
            };
            keys.push(SortKey {
                column,
                desc,
                nulls_first,
            });
        }
        Ok(keys)
    }
}

/// `SELECT DISTINCT ON (on) ...`: the first row of each group of equal `on`
/// values (output columns) in the ORDER BY `sort`, per parameter tuple (the
/// first `k` columns). The groups are a TopK of one row each, keyed by the
/// tuple and the `on` values moved in front of the row.
fn distinct_on(plan: Plan, k: usize, on: &[usize], sort: &[SortKey], span: Span) -> Result<Plan> {
    // Postgres's rule: the ORDER BY starts with the DISTINCT ON expressions
    // (in any order), or names none of them after other keys.
    let mut skipped = false;
    let mut covered = std::collections::BTreeSet::new();
    for key in sort {
        if on.contains(&key.column) {
            if skipped {
                return Err(BindError::new(
                    "SELECT DISTINCT ON expressions must match initial ORDER BY expressions",
                    span,
                ));
            }
            covered.insert(key.column);
        } else {
            skipped = true;
        }
    }
    if skipped && on.iter().any(|c| !covered.contains(c)) {
        return Err(BindError::new(
            "SELECT DISTINCT ON expressions must match initial ORDER BY expressions",
            span,
        ));
    }
    let arity = plan.arity();
    let prefix = k + on.len();
    let mut front: Vec<Expr> = (0..k).map(Expr::Column).collect();
    front.extend(on.iter().map(|&c| Expr::Column(c)));
    front.extend((0..arity).map(Expr::Column));
    let order = sort
        .iter()
        .map(|key| SortKey {
            column: key.column + prefix,
            ..key.clone()
        })
        .collect();
    Ok(Plan::Project {
        input: Box::new(Plan::TopK {
            input: Box::new(Plan::Project {
                input: Box::new(plan),
                exprs: front,
            }),
            group: prefix,
            order,
            limit: Some(1),
            offset: 0,
        }),
        exprs: (prefix..prefix + arity).map(Expr::Column).collect(),
    })
}

/// `GROUP BY 1` and `GROUP BY alias` refer to select items, as in Postgres.
fn resolve_group_ref(g: &ast::Expr, s: &ast::Select, scope: &Scope) -> Result<ast::Expr> {
    let item_expr = |i: usize| -> Option<ast::Expr> {
        match s.projection.get(i)? {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                Some(e.clone())
            }
            _ => None,
        }
    };
    match g {
        ast::Expr::Value(v) => {
            if let Value::Number(n, _) = &v.value {
                let pos: usize = n.parse().map_err(|_| {
                    BindError::new(format!("non-integer constant in GROUP BY: {n}"), g.span())
                })?;
                return item_expr(pos.wrapping_sub(1)).ok_or_else(|| {
                    BindError::new(
                        format!("GROUP BY position {pos} is not in select list"),
                        g.span(),
                    )
                });
            }
            Ok(g.clone())
        }
        ast::Expr::Identifier(id) => {
            // A FROM column of that name wins over an output alias, as in Postgres.
            let name = ident_name(id);
            for item in &s.projection {
                if let SelectItem::ExprWithAlias { expr, alias } = item {
                    let from_column = scope.cols.iter().any(|c| c.depth == 0 && c.name == name);
                    if ident_name(alias) == name && !from_column {
                        return Ok(expr.clone());
                    }
                }
            }
            Ok(g.clone())
        }
        _ => Ok(g.clone()),
    }
}

/// How often the recursive term reads the rows so far, or where it reads them
/// in a way a fixed point cannot maintain as Postgres evaluates it (Postgres
/// refuses most of these too): under an aggregate, DISTINCT, LIMIT,
/// INTERSECT/EXCEPT, NOT EXISTS, or the NULL-padded side of an outer join.
fn recursive_uses(plan: &Plan, id: usize) -> std::result::Result<usize, &'static str> {
    use crate::sql::plan::JoinKind;
    let count = |p: &Plan| recursive_uses(p, id);
    let none = |p: &Plan, what: &'static str| match recursive_uses(p, id)? {
        0 => Ok(0),
        _ => Err(what),
    };
    match plan {
        Plan::RecursiveRef { id: r, .. } => Ok(usize::from(*r == id)),
        Plan::Get { .. } | Plan::Constant { .. } => Ok(0),
        Plan::Recursive { .. } => Err("around a nested WITH RECURSIVE"),
        Plan::Filter { input, .. } | Plan::Project { input, .. } => count(input),
        Plan::Reduce { input, .. } => none(input, "under an aggregate"),
        Plan::Distinct { input } => none(input, "under DISTINCT"),
        Plan::TopK { input, .. } => none(input, "under ORDER BY ... LIMIT"),
        Plan::Window { input, .. } => none(input, "under a window function"),
        Plan::FlatMap { input, .. } => count(input),
        Plan::Temporal { input, .. } => none(input, "under a time-based condition"),
        Plan::SetOp { left, right, .. } => {
            Ok(none(left, "under INTERSECT/EXCEPT")? + none(right, "under INTERSECT/EXCEPT")?)
        }
        Plan::Union { inputs } => inputs.iter().map(count).sum(),
        Plan::Join {
            left, right, kind, ..
        } => match kind {
            JoinKind::Inner => Ok(count(left)? + count(right)?),
            JoinKind::Left => {
                Ok(count(left)? + none(right, "on the nullable side of an outer join")?)
            }
            JoinKind::Semi => Ok(count(left)? + none(right, "in a subquery")?),
            JoinKind::Anti => Ok(count(left)? + none(right, "in a subquery")?),
            JoinKind::Full => Ok(none(left, "in a FULL JOIN")? + none(right, "in a FULL JOIN")?),
        },
    }
}

/// ORDER BY of a set operation or VALUES: output names and positions only.
fn output_sort_keys(
    binder: &Binder<'_>,
    b: &Bound,
    order_by: &[ast::OrderByExpr],
) -> Result<Vec<SortKey>> {
    let mut keys = Vec::new();
    for o in order_by {
        let (desc, nulls_first) = sort_options(o)?;
        let i = output_reference(&o.expr, &b.columns)?.ok_or_else(|| {
            unsupported(
                "ORDER BY of a UNION/INTERSECT/EXCEPT other than an output column name or position",
                o.expr.span(),
            )
        })?;
        binder.text_order_allowed(
            "ORDER BY ... LIMIT",
            &b.columns[i].ty,
            &[&o.expr],
            o.expr.span(),
        )?;
        keys.push(SortKey {
            column: b.params + i,
            desc,
            nulls_first,
        });
    }
    Ok(keys)
}

/// `ORDER BY 2` or `ORDER BY name` naming an output column.
fn output_reference(e: &ast::Expr, columns: &[Column]) -> Result<Option<usize>> {
    match e {
        ast::Expr::Value(v) => {
            if let Value::Number(n, _) = &v.value {
                let pos: usize = n.parse().unwrap_or(0);
                if pos == 0 || pos > columns.len() {
                    return Err(BindError::new(
                        format!("ORDER BY position {n} is not in select list"),
                        e.span(),
                    ));
                }
                return Ok(Some(pos - 1));
            }
            Ok(None)
        }
        ast::Expr::Identifier(id) => {
            let name = ident_name(id);
            let hits: Vec<usize> = columns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.name == name)
                .map(|(i, _)| i)
                .collect();
            match hits.as_slice() {
                [i] => Ok(Some(*i)),
                [] => Ok(None),
                _ => Err(BindError::new(
                    format!("ORDER BY \"{name}\" is ambiguous"),
                    e.span(),
                )),
            }
        }
        _ => Ok(None),
    }
}

fn sort_options(o: &ast::OrderByExpr) -> Result<(bool, bool)> {
    let desc = match &o.options.sort {
        None | Some(ast::OrderBySort::Asc) => false,
        Some(ast::OrderBySort::Desc) => true,
        // The built-in types' `<` and `>` are their btree order.
        Some(ast::OrderBySort::Using(op)) => match object_name_parts(op).as_slice() {
            [o] if o == "<" || o == "~<~" => false,
            [o] if o == ">" || o == "~>~" => true,
            _ => {
                return Err(unsupported(
                    format!("ORDER BY ... USING {op}"),
                    o.expr.span(),
                ))
            }
        },
    };
    Ok((desc, o.options.nulls_first.unwrap_or(desc)))
}

/// Applies a table alias's column list (`AS t(a, b)`) to bound columns.
fn rename_columns(columns: &mut [Column], alias: &ast::TableAlias, name: &str) -> Result<()> {
    if alias.columns.len() > columns.len() {
        return Err(BindError::new(
            format!(
                "table \"{name}\" has {} columns available but {} columns specified",
                columns.len(),
                alias.columns.len()
            ),
            alias.name.span,
        ));
    }
    for (c, def) in columns.iter_mut().zip(&alias.columns) {
        c.name = ident_name(&def.name);
    }
    Ok(())
}

pub(super) fn split_conjuncts(e: &ast::Expr, out: &mut Vec<ast::Expr>) {
    match e {
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::And,
            right,
        } => {
            split_conjuncts(left, out);
            split_conjuncts(right, out);
        }
        ast::Expr::Nested(inner) => match inner.as_ref() {
            ast::Expr::BinaryOp {
                op: ast::BinaryOperator::And,
                ..
            } => split_conjuncts(inner, out),
            _ => out.push(e.clone()),
        },
        _ => out.push(e.clone()),
    }
}

/// The column name Postgres gives a select item without an alias.
fn default_name(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Identifier(id) => ident_name(id),
        ast::Expr::CompoundIdentifier(ids) => ids.last().map(ident_name).unwrap_or_default(),
        ast::Expr::Function(f) => object_name_parts(&f.name)
            .last()
            .cloned()
            .unwrap_or_default(),
        ast::Expr::Cast {
            expr, data_type, ..
        } => match default_name(expr).as_str() {
            "?column?" => Type::from_sql_name(&data_type.to_string())
                .map(|t| t.name().to_string())
                .unwrap_or("?column?".into()),
            n => n.to_string(),
        },
        ast::Expr::Nested(inner) => default_name(inner),
        ast::Expr::Case { .. } => "case".into(),
        ast::Expr::Exists { .. } => "exists".into(),
        ast::Expr::Subquery(q) => match q.body.as_ref() {
            SetExpr::Select(s) => match s.projection.as_slice() {
                [SelectItem::UnnamedExpr(e)] => default_name(e),
                [SelectItem::ExprWithAlias { alias, .. }] => ident_name(alias),
                _ => "?column?".into(),
            },
            _ => "?column?".into(),
        },
        ast::Expr::Substring { .. } => "substring".into(),
        ast::Expr::Trim { .. } => "btrim".into(),
        ast::Expr::Position { .. } => "position".into(),
        ast::Expr::Extract { .. } => "extract".into(),
        ast::Expr::Ceil { .. } => "ceil".into(),
        ast::Expr::Floor { .. } => "floor".into(),
        _ => "?column?".into(),
    }
}

fn check_supported(c: &ScopeCol, span: Span) -> Result<()> {
    if let Type::Unsupported { name, .. } = &c.ty {
        return Err(BindError::new(
            format!(
                "column \"{}\" has type {name}, which viewcast does not support",
                c.name
            ),
            span,
        ));
    }
    Ok(())
}
