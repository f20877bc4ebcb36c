//! Aggregating SELECTs: GROUP BY keys, aggregate calls, and the Reduce they
//! become.
//!
//! An aggregate call belongs to the query SQL places it in: the innermost
//! level whose columns its arguments (ORDER BY and FILTER too) read, its own
//! when they read none. A call in a subquery that reads only an enclosing
//! query's columns (`SELECT (SELECT max(o.x)) FROM t o`) is that query's:
//!
//! ```text
//!  enclosing query Q                      subquery S (in Q's select list)
//!  1. survey: bind S with Q surveying ─▶ max(o.x) is Q's: recorded in Q
//!  2. Q aggregates (one row, or per group); max(o.x) is a Reduce column
//!     and a hidden column of Q's scope (qualifier OUTER_AGG)
//!  3. bind S again ─────────────────────▶ max(o.x) reads that column, an
//!     outer column: S's parameter, whose values come from Q's groups
//! ```
//!
//! The subquery reads the value as it reads any outer column, so it may be
//! any levels deep in Q. Q's WHERE and GROUP BY refuse such calls as they
//! refuse Q's own.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlparser::ast::{
    self as ast, DuplicateTreatment, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArguments, ObjectNamePart, SelectItem, Spanned,
};
use sqlparser::tokenizer::Span;

use super::scalar::{bpchar_to_text, coerce, expect_bool};
use super::scope::{Outer, Scope, ScopeCol};
use super::subquery::{contains_subquery, Attach};
use super::{ident_name, object_name_parts, unsupported, Binder, ExprCx, Params, Result};
use crate::repr::{Datum, Type};
use crate::sql::expr::Expr;
use crate::sql::plan::{AggFunc, Aggregate, JoinKind, Plan};
use crate::sql::BindError;

/// Column numbers from here up stand for subqueries over the grouped rows,
/// until the Reduce exists and they can be attached to it.
pub const POST_BASE: usize = 1 << 40;

/// Column numbers from here up (below [`POST_BASE`]) stand for `GROUPING()`
/// calls until the grouping sets' Reduces exist.
pub const GROUPING_BASE: usize = 1 << 39;

/// State for binding the select list and HAVING of an aggregating query: group
/// keys (bound against the FROM scope), the aggregates found so far, and
/// uncorrelated subqueries to evaluate over the grouped rows.
pub struct AggContext {
    pub keys: Vec<Expr>,
    pub key_types: Vec<Type>,
    pub aggs: Vec<Aggregate>,
    /// With the Reduce output columns (group keys) they are evaluated for.
    pub post: Vec<(Attach, Vec<usize>)>,
    /// `GROUPING(...)` calls: the keys each names, first argument first.
    pub grouping: Vec<Vec<usize>>,
    /// The aggregates of subqueries that belong to this query: the scope
    /// column standing for each, and its Reduce output column.
    pub outer_aggs: Vec<(usize, usize)>,
    /// The placeholder table a subquery that reads those aggregates takes
    /// its parameters from: the groups, once the Reduce exists.
    pub groups_table: usize,
}

impl AggContext {
    /// A context whose first keys are a correlated subquery's parameters.
    pub fn new(param_types: Vec<Type>) -> Self {
        AggContext {
            keys: (0..param_types.len()).map(Expr::Column).collect(),
            key_types: param_types,
            aggs: Vec::new(),
            post: Vec::new(),
            grouping: Vec::new(),
            outer_aggs: Vec::new(),
            groups_table: GROUPS_TABLE_BASE + NEXT_GROUPS_TABLE.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub fn add_key(&mut self, e: Expr, ty: Type) {
        if !self.keys.contains(&e) {
            self.keys.push(e);
            self.key_types.push(ty);
        }
    }

    /// The position of `a` among the aggregates, added unless an equal one
    /// is there.
    pub fn push_aggregate(&mut self, a: Aggregate) -> usize {
        match self.aggs.iter().position(|x| *x == a) {
            Some(p) => p,
            None => {
                self.aggs.push(a);
                self.aggs.len() - 1
            }
        }
    }
}

/// The qualifier of the columns that stand, in an aggregating query's scope,
/// for the aggregates of its subqueries that belong to it (see
/// [`Binder::outer_aggregate`]); each is named by the call's SQL text. No
/// written name reaches them.
pub const OUTER_AGG: &str = "\u{1}aggregate";

/// Placeholder tables for the groups of an aggregating query whose Reduce
/// does not exist yet, numbered from here up (see
/// [`AggContext::groups_table`]); far from the catalog's tables and the
/// controller's parameter tables.
const GROUPS_TABLE_BASE: usize = 1 << 60;
static NEXT_GROUPS_TABLE: AtomicUsize = AtomicUsize::new(0);

/// Whether a scope column stands for an aggregate of this query found in a
/// subquery (not one carried in from an enclosing query as a parameter).
pub fn is_outer_aggregate(c: &ScopeCol) -> bool {
    c.depth == 0 && c.qualifier.as_deref() == Some(OUTER_AGG)
}

fn is_aggregate_call(f: &ast::Function) -> bool {
    f.over.is_none()
        && matches!(f.name.0.as_slice(), [ObjectNamePart::Identifier(id)] if is_aggregate_name(&ident_name(id)))
}

/// The aggregate calls of this query level in `e`, outermost first (not
/// those inside a subquery).
fn aggregate_calls(e: &ast::Expr) -> Vec<ast::Function> {
    struct Collect {
        depth: usize,
        found: Vec<ast::Function>,
    }
    impl ast::Visitor for Collect {
        type Break = ();
        fn pre_visit_query(&mut self, _q: &ast::Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _q: &ast::Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, x: &ast::Expr) -> ControlFlow<()> {
            if let ast::Expr::Function(f) = x {
                if self.depth == 0 && is_aggregate_call(f) {
                    self.found.push(f.clone());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut c = Collect {
        depth: 0,
        found: Vec::new(),
    };
    let _ = ast::Visit::visit(e, &mut c);
    c.found
}

/// Whether a query calls an aggregate anywhere, its subqueries included.
fn mentions_aggregate(q: &ast::Query) -> bool {
    struct Finder;
    impl ast::Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, x: &ast::Expr) -> ControlFlow<()> {
            match x {
                ast::Expr::Function(f) if is_aggregate_call(f) => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    ast::Visit::visit(q, &mut Finder).is_break()
}

/// What an aggregate call reads, as SQL places the call: its arguments
/// (`count(t.*)` reads the row of `t`), ORDER BY and WITHIN GROUP keys; and
/// its FILTER.
fn call_reads(f: &ast::Function) -> (Vec<ast::Expr>, Option<&ast::Expr>) {
    let mut reads = Vec::new();
    if let FunctionArguments::List(l) = &f.args {
        for a in &l.args {
            let arg = match a {
                FunctionArg::Unnamed(x)
                | FunctionArg::Named { arg: x, .. }
                | FunctionArg::ExprNamed { arg: x, .. } => x,
            };
            match arg {
                FunctionArgExpr::Expr(e) => reads.push(e.clone()),
                FunctionArgExpr::QualifiedWildcard(q) => {
                    if let Some(ObjectNamePart::Identifier(id)) = q.0.last() {
                        reads.push(ast::Expr::Identifier(id.clone()));
                    }
                }
                FunctionArgExpr::Wildcard | FunctionArgExpr::WildcardWithOptions(_) => {}
            }
        }
        for c in &l.clauses {
            if let FunctionArgumentClause::OrderBy(o) = c {
                reads.extend(o.iter().map(|o| o.expr.clone()));
            }
        }
    }
    reads.extend(f.within_group.iter().map(|o| o.expr.clone()));
    (reads, f.filter.as_deref())
}

pub fn is_aggregate_name(name: &str) -> bool {
    matches!(
        name,
        "count"
            | "sum"
            | "min"
            | "max"
            | "avg"
            | "bool_and"
            | "bool_or"
            | "every"
            | "string_agg"
            | "json_agg"
            | "jsonb_agg"
            | "json_object_agg"
            | "jsonb_object_agg"
            | "array_agg"
            | "percentile_cont"
            | "percentile_disc"
            | "mode"
    )
}

/// Whether `e` calls an aggregate of this query level (aggregates inside a
/// subquery belong to the subquery).
pub fn contains_aggregate(e: &ast::Expr) -> bool {
    super::calls_here(e, |f| {
        f.over.is_none()
            && matches!(f.name.0.as_slice(), [ObjectNamePart::Identifier(id)] if is_aggregate_name(&ident_name(id)))
    })
}

/// Replaces the placeholder columns of post-aggregation subqueries.
pub fn substitute(e: &Expr, subs: &[Expr]) -> Expr {
    if subs.is_empty() {
        return e.clone();
    }
    e.replace_columns(&|i| {
        if (POST_BASE..super::window::WIN_BASE).contains(&i) {
            subs[i - POST_BASE].clone()
        } else {
            Expr::Column(i)
        }
    })
}

impl<'a> Binder<'a> {
    /// Binding in an aggregating SELECT: an aggregate call becomes a column of
    /// the Reduce, an expression equal to a group key becomes that key.
    /// `None`: bind `e` structurally (its parts are checked the same way).
    pub(super) fn bind_grouped(
        &self,
        e: &ast::Expr,
        cx: &mut ExprCx<'_>,
    ) -> Result<Option<(Expr, Type)>> {
        if let ast::Expr::Function(f) = e {
            let name = object_name_parts(&f.name).join(".");
            if name == "grouping" && f.over.is_none() {
                return self.bind_grouping(f, cx).map(Some);
            }
            if is_aggregate_name(&name) && f.over.is_none() {
                let a = self.bind_aggregate(f, &name, cx)?;
                let ty = a.output_type.clone();
                let ctx = cx.agg.as_mut().expect("aggregating");
                let pos = ctx.push_aggregate(a);
                return Ok(Some((Expr::Column(ctx.keys.len() + pos), ty)));
            }
        }
        if contains_aggregate(e) || contains_subquery(e) {
            return Ok(None);
        }
        let mut plain_cx = ExprCx::new(cx.scope, cx.outer, None);
        if let Ok((plain, ty)) = self.bind_expr(e, &mut plain_cx) {
            let ctx = cx.agg.as_ref().expect("aggregating");
            if let Some(k) = ctx.keys.iter().position(|k| *k == plain) {
                return Ok(Some((Expr::Column(k), ctx.key_types[k].clone())));
            }
            if plain.max_column().is_none() {
                return Ok(Some((plain, ty)));
            }
            if matches!(
                e,
                ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_)
            ) {
                return Err(BindError::new(
                    format!("column \"{e}\" must appear in the GROUP BY clause or be used in an aggregate function"),
                    e.span(),
                ));
            }
        }
        Ok(None)
    }

    /// `percentile_cont(f)`, `percentile_disc(f)` and `mode()`, each `WITHIN
    /// GROUP (ORDER BY x)`: the fraction must be a constant in [0, 1].
    fn bind_ordered_set(
        &self,
        f: &ast::Function,
        name: &str,
        cx: &mut ExprCx<'_>,
    ) -> Result<Aggregate> {
        let span = f.span();
        let [o] = f.within_group.as_slice() else {
            return Err(BindError::new(
                if f.within_group.is_empty() {
                    format!("WITHIN GROUP is required for ordered-set aggregate {name}")
                } else {
                    format!("function {name} takes one WITHIN GROUP (ORDER BY ...) expression")
                },
                span,
            ));
        };
        let direct: Vec<&ast::Expr> = match &f.args {
            FunctionArguments::List(l) => {
                if l.duplicate_treatment.is_some() || !l.clauses.is_empty() {
                    return Err(BindError::new(
                        format!("DISTINCT or ORDER BY inside {name}() is not allowed"),
                        span,
                    ));
                }
                l.args
                    .iter()
                    .map(|a| match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                        other => Err(BindError::new(
                            format!("{name}({other}) is not valid"),
                            span,
                        )),
                    })
                    .collect::<Result<_>>()?
            }
            _ => vec![],
        };
        let want = usize::from(name != "mode");
        if direct.len() != want {
            return Err(BindError::new(
                format!("function {name} takes {want} direct argument(s)"),
                span,
            ));
        }
        let fraction = match direct.first() {
            None => None,
            Some(e) => {
                let scope = Scope::default();
                let mut ccx = ExprCx::new(&scope, None, None);
                let (x, xt) = self.bind_expr(e, &mut ccx)?;
                let x = coerce(&self.time, x, &xt, &Type::Float8, e.span())?;
                match x {
                    Expr::Literal(Datum::Float8(v)) if (0.0..=1.0).contains(&v.0) => {
                        Some(Datum::Float8(v))
                    }
                    Expr::Literal(Datum::Float8(v)) => {
                        return Err(BindError::new(
                            format!("percentile value {} is not between 0 and 1", v.0),
                            e.span(),
                        ))
                    }
                    Expr::Literal(Datum::Null) => Some(Datum::Null),
                    _ => {
                        return Err(unsupported(
                            format!("{name}() with a fraction that is not a constant"),
                            e.span(),
                        ))
                    }
                }
            }
        };
        // Like an aggregate's arguments, the ordered value reads the FROM row.
        let input = cx.input.take();
        let mut arg_cx = ExprCx::new(cx.scope, cx.outer, input);
        let bound = self.bind_expr(&o.expr, &mut arg_cx);
        cx.input = arg_cx.input.take();
        let (x, xt) = bound?;
        let (desc, nulls_first) = super::sort_options(o)?;
        let filter = match &f.filter {
            Some(p) => {
                let input = cx.input.take();
                let mut fcx = ExprCx::new(cx.scope, cx.outer, input);
                let r = self.bind_expr(p, &mut fcx);
                cx.input = fcx.input.take();
                let (e, ty) = r?;
                expect_bool(&ty, "argument of FILTER", p.span())?;
                Some(e)
            }
            None => None,
        };
        let (func, x, out) = match name {
            "percentile_cont" => {
                if !(xt.is_numeric_family() || xt == Type::Unknown) {
                    return Err(BindError::new(
                        format!("function percentile_cont(double precision) within group ({}) does not exist", xt.name()),
                        span,
                    ));
                }
                let x = coerce(&self.time, x, &xt, &Type::Float8, span)?;
                (AggFunc::PercentileCont, x, Type::Float8)
            }
            _ => {
                if !xt.is_orderable() {
                    return Err(unsupported(
                        format!("{name}() over type {}", xt.name()),
                        span,
                    ));
                }
                self.text_order_allowed(&format!("{name}() WITHIN GROUP"), &xt, &[&o.expr], span)?;
                let func = if name == "mode" {
                    AggFunc::Mode
                } else {
                    AggFunc::PercentileDisc
                };
                (func, x, xt.clone())
            }
        };
        if fraction == Some(Datum::Null) {
            // A NULL fraction makes the result NULL: no value passes.
            return Ok(Aggregate {
                func,
                args: vec![x.clone(), Expr::Literal(Datum::Null)],
                order_by: vec![(x, desc, nulls_first)],
                filter: Some(Expr::Literal(Datum::Bool(false))),
                input_type: out.clone(),
                output_type: out,
                distinct: false,
            });
        }
        let mut args = vec![x.clone()];
        args.extend(fraction.map(Expr::Literal));
        Ok(Aggregate {
            func,
            args,
            order_by: vec![(x, desc, nulls_first)],
            filter,
            input_type: out.clone(),
            output_type: out,
            distinct: false,
        })
    }

    /// `GROUPING(a, b, ...)`: a bit per argument, first argument highest, set
    /// when the row's grouping set leaves that key out.
    fn bind_grouping(&self, f: &ast::Function, cx: &mut ExprCx<'_>) -> Result<(Expr, Type)> {
        let span = f.span();
        let args: Vec<&ast::Expr> = match &f.args {
            FunctionArguments::List(l) => l
                .args
                .iter()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                    _ => None,
                })
                .collect(),
            _ => vec![],
        };
        if args.is_empty() || args.len() > 31 {
            return Err(BindError::new(
                "GROUPING must have between 1 and 31 arguments",
                span,
            ));
        }
        let mut keys = Vec::new();
        for a in args {
            let mut plain_cx = ExprCx::new(cx.scope, cx.outer, None);
            let bound = self.bind_expr(a, &mut plain_cx).ok().map(|(e, _)| e);
            let ctx = cx.agg.as_ref().expect("aggregating");
            match bound.and_then(|b| ctx.keys.iter().position(|k| *k == b)) {
                Some(k) => keys.push(k),
                None => {
                    return Err(BindError::new(
                        "arguments to GROUPING must be grouping expressions of the associated query level",
                        a.span(),
                    ))
                }
            }
        }
        let ctx = cx.agg.as_mut().expect("aggregating");
        let id = match ctx.grouping.iter().position(|g| *g == keys) {
            Some(i) => i,
            None => {
                ctx.grouping.push(keys);
                ctx.grouping.len() - 1
            }
        };
        Ok((Expr::Column(GROUPING_BASE + id), Type::Int4))
    }

    fn bind_aggregate(
        &self,
        f: &ast::Function,
        name: &str,
        cx: &mut ExprCx<'_>,
    ) -> Result<Aggregate> {
        let span = f.span();
        let ordered_set = matches!(name, "percentile_cont" | "percentile_disc" | "mode");
        if ordered_set {
            return self.bind_ordered_set(f, name, cx);
        }
        if !f.within_group.is_empty() {
            return Err(BindError::new(
                format!("{name} is not an ordered-set aggregate, so it cannot have WITHIN GROUP"),
                span,
            ));
        }
        let list = match &f.args {
            FunctionArguments::List(l) => l,
            _ => return Err(BindError::new(format!("{name}() needs an argument"), span)),
        };
        let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
        let mut order_by_ast: &[ast::OrderByExpr] = &[];
        for c in &list.clauses {
            match c {
                FunctionArgumentClause::OrderBy(o) => order_by_ast = o,
                other => return Err(unsupported(format!("{other} inside {name}()"), span)),
            }
        }
        let mut args = Vec::new();
        let mut row_key: Option<ast::Expr> = None;
        for a in &list.args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => args.push(e),
                // count(t.*): t's row is NULL only where an outer join pads
                // it, which a key column of t tells.
                FunctionArg::Unnamed(FunctionArgExpr::QualifiedWildcard(q))
                    if name == "count" && list.args.len() == 1 =>
                {
                    let q = object_name_parts(q).last().cloned().unwrap_or_default();
                    let key = cx.scope.cols.iter().find(|c| {
                        c.key && c.depth == 0 && c.qualifier.as_deref() == Some(q.as_str())
                    });
                    match key {
                        Some(c) => {
                            row_key = Some(ast::Expr::CompoundIdentifier(vec![
                                ast::Ident::with_quote('"', q.clone()),
                                ast::Ident::with_quote('"', c.name.clone()),
                            ]))
                        }
                        None if cx.scope.has_qualifier(&q) => {
                            return Err(unsupported(
                                format!("count({q}.*) over a FROM item without a primary key (count(*) or count(a column) says what to count)"),
                                span,
                            ))
                        }
                        None => {
                            return Err(BindError::new(
                                format!("missing FROM-clause entry for table \"{q}\""),
                                span,
                            ))
                        }
                    }
                }
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard)
                    if name == "count" && !distinct && list.args.len() == 1 => {}
                other => {
                    return Err(BindError::new(
                        format!("{name}({other}) is not valid"),
                        span,
                    ))
                }
            }
        }
        if let Some(k) = &row_key {
            args.push(k);
        }
        // Calls nested in it and where it belongs were settled by
        // `aggregate_level` before it came here: it is this query's.
        // Arguments, ORDER BY and FILTER read the FROM row: bind them without
        // the aggregate context, against the pre-aggregation input.
        let input = cx.input.take();
        let mut arg_cx = ExprCx::new(cx.scope, cx.outer, input);
        let result = self.bind_aggregate_parts(f, name, &args, order_by_ast, distinct, &mut arg_cx);
        cx.input = arg_cx.input.take();
        result
    }

    pub(super) fn bind_aggregate_parts(
        &self,
        f: &ast::Function,
        name: &str,
        args: &[&ast::Expr],
        order_by_ast: &[ast::OrderByExpr],
        distinct: bool,
        cx: &mut ExprCx<'_>,
    ) -> Result<Aggregate> {
        let span = f.span();
        let filter = match &f.filter {
            Some(p) => {
                if self.calls_own_aggregate(p, cx)? {
                    return Err(BindError::new(
                        "aggregate functions are not allowed in FILTER",
                        p.span(),
                    ));
                }
                let (e, ty) = self.bind_expr(p, cx)?;
                expect_bool(&ty, "argument of FILTER", p.span())?;
                Some(e)
            }
            None => None,
        };
        let mut order_by = Vec::new();
        for o in order_by_ast {
            let (e, ty) = self.bind_expr(&o.expr, cx)?;
            self.text_order_allowed(
                &format!("{name}(... ORDER BY ...)"),
                &ty,
                &[&o.expr],
                o.expr.span(),
            )?;
            if !ty.is_orderable() {
                return Err(unsupported(
                    format!("ordering by type {}", ty.name()),
                    o.expr.span(),
                ));
            }
            let desc = matches!(o.options.sort, Some(ast::OrderBySort::Desc));
            order_by.push((e, desc, o.options.nulls_first.unwrap_or(desc)));
        }
        let mk = |func, args: Vec<Expr>, input_type: Type, output_type: Type| Aggregate {
            func,
            args,
            order_by: order_by.clone(),
            filter: filter.clone(),
            input_type,
            output_type,
            distinct,
        };
        if args.is_empty() {
            return if name == "count" {
                Ok(mk(AggFunc::CountStar, vec![], Type::Unknown, Type::Int8))
            } else {
                Err(BindError::new(format!("{name}() needs an argument"), span))
            };
        }
        let mut bound = Vec::new();
        for (i, a) in args.iter().enumerate() {
            let json = match name {
                "json_agg" | "jsonb_agg" => true,
                "json_object_agg" | "jsonb_object_agg" => i == 1,
                _ => false,
            };
            bound.push(if json {
                self.json_arg(a, cx)?
            } else {
                self.bind_expr(a, cx)?
            });
        }
        let (input, ty) = bound[0].clone();
        if distinct && order_by.is_empty() && !matches!(name, "count" | "sum" | "avg") {
            // DISTINCT sorts the values: its order is the collation's.
            self.text_order_allowed(&format!("{name}(DISTINCT ...)"), &ty, &[args[0]], span)?;
        }
        let no_fn = || {
            let types: Vec<&str> = bound.iter().map(|(_, t)| t.name()).collect();
            BindError::new(
                format!("function {name}({}) does not exist", types.join(", ")),
                span,
            )
        };
        let one = |ok: bool| {
            if ok && bound.len() == 1 {
                Ok(())
            } else {
                Err(no_fn())
            }
        };
        if distinct && !order_by.is_empty() {
            let same = order_by.len() == 1 && order_by[0].0 == input;
            if !same {
                return Err(BindError::new(
                    "in an aggregate with DISTINCT, ORDER BY expressions must appear in argument list",
                    span,
                ));
            }
        }
        Ok(match name {
            "count" => {
                one(true)?;
                mk(AggFunc::Count, vec![input], ty, Type::Int8)
            }
            "sum" | "avg" => {
                one(true)?;
                let out = match (name, &ty) {
                    ("sum", Type::Int2 | Type::Int4) => Type::Int8,
                    ("sum", Type::Int8 | Type::Numeric) => Type::Numeric,
                    ("sum", Type::Float4) => Type::Float4,
                    ("sum", Type::Float8) => Type::Float8,
                    ("avg", Type::Int2 | Type::Int4 | Type::Int8 | Type::Numeric) => Type::Numeric,
                    ("avg", Type::Float4 | Type::Float8) => Type::Float8,
                    _ => return Err(no_fn()),
                };
                let func = if name == "sum" {
                    AggFunc::Sum
                } else {
                    AggFunc::Avg
                };
                mk(func, vec![input], ty, out)
            }
            "min" | "max" => {
                one(true)?;
                self.text_order_allowed(&format!("{name}()"), &ty, &[args[0]], span)?;
                let (input, ty) = match ty {
                    Type::Unknown => (input, Type::Text),
                    Type::Bpchar => (input, Type::Bpchar),
                    t => (input, t),
                };
                if matches!(ty, Type::Json | Type::Jsonb | Type::Bool) {
                    return Err(no_fn());
                }
                if matches!(ty, Type::Array { .. }) {
                    // Arrays are held as their JSON text, which does not
                    // order as Postgres orders arrays (element by element).
                    return Err(unsupported(format!("{name}() of arrays"), span));
                }
                if matches!(ty, Type::Enum { .. }) {
                    return Err(unsupported(
                        format!(
                            "{name}() over enum type {} (Postgres orders enums by declaration)",
                            ty.name()
                        ),
                        span,
                    ));
                }
                let func = if name == "min" {
                    AggFunc::Min
                } else {
                    AggFunc::Max
                };
                mk(func, vec![input], ty.clone(), ty)
            }
            "bool_and" | "bool_or" | "every" => {
                one(matches!(ty, Type::Bool | Type::Unknown))?;
                let func = if name == "bool_or" {
                    AggFunc::BoolOr
                } else {
                    AggFunc::BoolAnd
                };
                let input = coerce(&self.time, input, &ty, &Type::Bool, span)?;
                mk(func, vec![input], Type::Bool, Type::Bool)
            }
            "string_agg" => {
                if bound.len() != 2 {
                    return Err(no_fn());
                }
                let mut texts = Vec::new();
                for (e, t) in &bound {
                    texts.push(match t {
                        Type::Bpchar => bpchar_to_text(e.clone()),
                        t if t.is_string() || *t == Type::Unknown => e.clone(),
                        _ => return Err(no_fn()),
                    });
                }
                mk(AggFunc::StringAgg, texts, Type::Text, Type::Text)
            }
            "json_agg" | "jsonb_agg" => {
                one(!matches!(ty, Type::Unsupported { .. }))?;
                let (func, out) = if name == "json_agg" {
                    (AggFunc::JsonAgg, Type::Json)
                } else {
                    (AggFunc::JsonbAgg, Type::Jsonb)
                };
                if distinct && ty == Type::Json {
                    return Err(BindError::new(
                        "could not identify an equality operator for type json",
                        span,
                    ));
                }
                if distinct && matches!(ty, Type::Jsonb | Type::Record) {
                    // Postgres compares these by value (jsonb numbers, a
                    // row's columns), not by their text.
                    return Err(unsupported(
                        format!("{name}(DISTINCT ...) of {} values", ty.name()),
                        span,
                    ));
                }
                let shown = self.json_value(input.clone(), &ty, span)?;
                if shown != input {
                    // Elements are written as to_json writes them in the
                    // session zone; DISTINCT still orders them by instant.
                    let mut a = mk(func, vec![shown], ty, out);
                    if distinct && a.order_by.is_empty() {
                        a.order_by.push((input, false, false));
                    }
                    return Ok(a);
                }
                mk(func, vec![input], ty, out)
            }
            "json_object_agg" | "jsonb_object_agg" => {
                let [(k, kt), (v, vt)] = bound.as_slice() else {
                    return Err(no_fn());
                };
                if distinct {
                    return Err(unsupported(format!("{name}(DISTINCT ...)"), span));
                }
                // The key as to_json writes it, as a string.
                if matches!(
                    kt,
                    Type::Json | Type::Jsonb | Type::Array { .. } | Type::Record
                ) {
                    return Err(BindError::new(
                        "key value must be scalar, not array, composite, or json",
                        span,
                    ));
                }
                let key = self.json_value(k.clone(), kt, span)?;
                let value = self.json_value(v.clone(), vt, span)?;
                let (func, out) = if name == "json_object_agg" {
                    (AggFunc::JsonObjectAgg, Type::Json)
                } else {
                    (AggFunc::JsonbObjectAgg, Type::Jsonb)
                };
                mk(func, vec![key, value], vt.clone(), out)
            }
            "array_agg" => {
                let elem = match ty {
                    Type::Unknown => Type::Text,
                    t => t,
                };
                if matches!(
                    elem,
                    Type::Array { .. } | Type::Unsupported { .. } | Type::Json | Type::Jsonb
                ) {
                    return Err(unsupported(format!("array_agg() of {}", elem.name()), span));
                }
                let out = Type::Array {
                    name: format!("_{}", elem.name()),
                    elem: Box::new(elem.clone()),
                };
                mk(AggFunc::ArrayAgg, vec![input], elem, out)
            }
            _ => return Err(no_fn()),
        })
    }

    /// The Reduce of an aggregating SELECT, then its post-aggregation
    /// subqueries. A correlated global aggregate (`SELECT count(*) ... WHERE
    /// x = outer.x`) is grouped by the parameters; parameter values with no
    /// rows get the aggregate of no rows (count 0, others NULL), as the
    /// subquery would return for them.
    pub(super) fn finish_aggregation(
        &self,
        input: Plan,
        ctx: AggContext,
        global: bool,
        params: Option<&Params>,
        sets: Option<&[Vec<usize>]>,
    ) -> Result<(Plan, Vec<Expr>)> {
        let k = params.map(|p| p.cols.len()).unwrap_or(0);
        let naggs = ctx.aggs.len();
        let nkeys = ctx.keys.len();
        // GROUPING() of a key is 1 in the grouping sets that leave it out.
        let grouping_value = |set: &[usize], keys: &[usize]| -> i64 {
            keys.iter()
                .fold(0, |acc, k| (acc << 1) | i64::from(!set.contains(k)))
        };
        let defaults: Vec<Expr> = ctx
            .aggs
            .iter()
            .map(|a| {
                Expr::Literal(match a.func {
                    AggFunc::CountStar | AggFunc::Count => Datum::Int(0),
                    _ => Datum::Null,
                })
            })
            .collect();
        let all: Vec<usize> = (0..nkeys).collect();
        let mut plan = match sets {
            None => {
                let reduce = Plan::Reduce {
                    input: Box::new(input),
                    keys: ctx.keys,
                    aggs: ctx.aggs,
                };
                if ctx.grouping.is_empty() {
                    reduce
                } else {
                    let mut exprs: Vec<Expr> = (0..nkeys + naggs).map(Expr::Column).collect();
                    exprs.extend(
                        ctx.grouping
                            .iter()
                            .map(|g| Expr::Literal(Datum::Int(grouping_value(&all, g)))),
                    );
                    Plan::Project {
                        input: Box::new(reduce),
                        exprs,
                    }
                }
            }
            // One Reduce per grouping set, its rows laid out like a Reduce
            // over every key: the keys the set leaves out are NULL.
            Some(sets) => Plan::Union {
                inputs: sets
                    .iter()
                    .map(|set| {
                        let reduce = Plan::Reduce {
                            input: Box::new(input.clone()),
                            keys: set.iter().map(|&i| ctx.keys[i].clone()).collect(),
                            aggs: ctx.aggs.clone(),
                        };
                        let mut exprs: Vec<Expr> = (0..nkeys)
                            .map(|i| match set.iter().position(|&s| s == i) {
                                Some(p) => Expr::Column(p),
                                None => Expr::Literal(Datum::Null),
                            })
                            .collect();
                        exprs.extend((0..naggs).map(|a| Expr::Column(set.len() + a)));
                        exprs.extend(
                            ctx.grouping
                                .iter()
                                .map(|g| Expr::Literal(Datum::Int(grouping_value(set, g)))),
                        );
                        Plan::Project {
                            input: Box::new(reduce),
                            exprs,
                        }
                    })
                    .collect(),
            },
        };
        if let (Some(p), true) = (params, global) {
            let missing = Plan::Join {
                left: Box::new(p.plan.clone()),
                right: Box::new(plan.clone()),
                kind: JoinKind::Anti,
                left_keys: (0..k).map(Expr::Column).collect(),
                right_keys: (0..k).map(Expr::Column).collect(),
                residual: vec![],
                right_arity: k + naggs,
                null_safe: true,
            };
            let mut exprs: Vec<Expr> = (0..k).map(Expr::Column).collect();
            exprs.extend(defaults);
            plan = Plan::Union {
                inputs: vec![
                    plan,
                    Plan::Project {
                        input: Box::new(missing),
                        exprs,
                    },
                ],
            };
        }
        // Subqueries that read this query's aggregates take their
        // parameters from the groups (see `bind_correlated`).
        let groups = (!ctx.outer_aggs.is_empty()).then(|| plan.clone());
        let mut substitutes = Vec::new();
        for (mut post, keys) in ctx.post {
            if let Some(g) = &groups {
                replace_groups(&mut post.bound.plan, ctx.groups_table, g);
            }
            let (p, e) = self.attach(plan, &keys, post)?;
            plan = p;
            substitutes.push(e);
        }
        // A post subquery's expression may itself refer to an earlier one.
        let resolved: Vec<Expr> = substitutes
            .iter()
            .map(|e| substitute(e, &substitutes))
            .collect();
        Ok((plan, resolved))
    }
}

impl<'a> Binder<'a> {
    /// The query an aggregate call belongs to, as SQL places it: the
    /// innermost level whose columns its arguments, ORDER BY and FILTER read,
    /// inside their subqueries too (0: this one, also when they read no
    /// column; n: n levels out, `cx.outer` being 1). Aggregates inside the
    /// call must belong to an inner level than the call's own (Postgres's
    /// "cannot be nested").
    pub(super) fn aggregate_level(&self, f: &ast::Function, cx: &ExprCx<'_>) -> Result<usize> {
        let (reads, filter) = call_reads(f);
        for p in &reads {
            for g in aggregate_calls(p) {
                if self.aggregate_level(&g, cx)? == 0 {
                    return Err(nested(&g));
                }
            }
        }
        for g in filter.map(aggregate_calls).unwrap_or_default() {
            if self.aggregate_level(&g, cx)? == 0 {
                return Err(BindError::new(
                    "aggregate functions are not allowed in FILTER",
                    g.span(),
                ));
            }
        }
        let mut chain: Vec<&Outer<'_>> = Vec::new();
        let mut level = cx.outer;
        while let Some(o) = level {
            chain.push(o);
            level = o.parent;
        }
        if chain.is_empty() {
            // No enclosing query (a column of depth > 0 is a view parameter).
            return Ok(0);
        }
        // Bind what the call reads against an empty scope nested in this
        // one: the columns of this scope and of the enclosing ones it reads
        // are recorded as used, and aggregates of enclosing queries inside it
        // as found (the probe surveys, so this query's own are found too).
        // What the enclosing queries record is put back afterwards: the call
        // is bound for real where it belongs.
        let probe = Outer::surveying(cx.scope, cx.outer);
        let saved: Vec<BTreeSet<usize>> = chain.iter().map(|o| o.used.take()).collect();
        let found_before: Vec<usize> = chain.iter().map(|o| o.found.get()).collect();
        let empty = Scope::default();
        let mut readable = true;
        for p in reads.iter().chain(filter) {
            let mut pcx = ExprCx::new(&empty, Some(&probe), Some(unit()));
            if self.json_arg(p, &mut pcx).is_err() {
                readable = false;
                break;
            }
        }
        let read: Vec<BTreeSet<usize>> = chain
            .iter()
            .zip(saved)
            .map(|(o, s)| o.used.replace(s))
            .collect();
        if !readable {
            // Bound here, it reports its error.
            return Ok(0);
        }
        let (mut vars, mut aggs) = (Vec::new(), Vec::new());
        let mut note = |c: &ScopeCol, at: usize| {
            // Beyond the enclosing queries: a view parameter, a constant.
            if at <= chain.len() {
                if c.qualifier.as_deref() == Some(OUTER_AGG) {
                    aggs.push(at);
                } else {
                    vars.push(at);
                }
            }
        };
        for i in probe.used() {
            let c = &cx.scope.cols[i];
            note(c, c.depth);
        }
        for (j, o) in chain.iter().enumerate() {
            for &i in &read[j] {
                let c = &o.scope.cols[i];
                note(c, j + 1 + c.depth);
            }
        }
        if probe.found.get() > 0 {
            aggs.push(0);
        }
        for (j, o) in chain.iter().enumerate() {
            if o.found.get() > found_before[j] {
                aggs.push(j + 1);
            }
        }
        let at = vars.iter().chain(&aggs).min().copied().unwrap_or(0);
        if aggs.iter().any(|&a| a <= at) {
            return Err(nested(f));
        }
        Ok(at)
    }

    /// An aggregate call that belongs to an enclosing query, bound as that
    /// query's value: a column the enclosing query computes in its Reduce
    /// and this query reads as an outer column (a parameter once it is
    /// decorrelated). `None` for a call of this query.
    ///
    /// While the enclosing query surveys its subqueries (before its select
    /// list is bound), the call is recorded there and reads as a typed NULL,
    /// as outer columns do in a first pass.
    pub(super) fn outer_aggregate(
        &self,
        f: &ast::Function,
        cx: &ExprCx<'_>,
    ) -> Result<Option<(Expr, Type)>> {
        if !is_aggregate_call(f) {
            return Ok(None);
        }
        let level = self.aggregate_level(f, cx)?;
        if level == 0 {
            return Ok(None);
        }
        let text = f.to_string();
        let span = f.span();
        let (e, ty) = match self.outer_aggregate_column(&text, span, cx)? {
            Some(found) => found,
            None => {
                let mut owner = cx.outer.expect("an enclosing query at level >= 1");
                for _ in 1..level {
                    owner = owner.parent.expect("the level is within the chain");
                }
                let Some(list) = &owner.surveyed else {
                    let name = object_name_parts(&f.name).join(".");
                    return Err(BindError::new(
                        format!("aggregate functions are not allowed here: {name}() reads only columns of an enclosing query, so that query computes it, and it allows aggregates only in its select list, HAVING and ORDER BY"),
                        span,
                    ));
                };
                let name = object_name_parts(&f.name).join(".");
                let mut ocx = ExprCx::new(owner.scope, owner.parent, Some(unit()));
                let ty = self.bind_aggregate(f, &name, &mut ocx)?.output_type;
                owner.found.set(owner.found.get() + 1);
                if !list.borrow().iter().any(|g| g.to_string() == text) {
                    list.borrow_mut().push(f.clone());
                }
                (Expr::Literal(Datum::Null), ty)
            }
        };
        // In an aggregating query the value is a parameter, a group key.
        let e = match (&cx.agg, e) {
            (Some(ctx), Expr::Column(i)) => {
                match ctx.keys.iter().position(|k| *k == Expr::Column(i)) {
                    Some(k) => Expr::Column(k),
                    None => {
                        return Err(BindError::new(
                            format!(
                        "aggregate function {text} of an enclosing query is not a parameter here"
                    ),
                            span,
                        ))
                    }
                }
            }
            (_, e) => e,
        };
        Ok(Some((e, ty)))
    }

    /// The column standing for an enclosing query's aggregate `text`: this
    /// query's parameter, or an enclosing query's column (recorded as used,
    /// read as a typed NULL until the subquery is bound with parameters).
    fn outer_aggregate_column(
        &self,
        text: &str,
        span: Span,
        cx: &ExprCx<'_>,
    ) -> Result<Option<(Expr, Type)>> {
        if let Some(r) = cx.scope.resolve(Some(OUTER_AGG), text, span) {
            let (i, ty) = r?;
            return Ok(Some((Expr::Column(i), ty)));
        }
        let mut level = cx.outer;
        while let Some(o) = level {
            if let Some(r) = o.scope.resolve(Some(OUTER_AGG), text, span) {
                let (i, ty) = r?;
                o.used.borrow_mut().insert(i);
                return Ok(Some((Expr::Literal(Datum::Null), ty)));
            }
            level = o.parent;
        }
        Ok(None)
    }

    /// Whether `e` calls an aggregate that belongs to this query.
    pub(super) fn calls_own_aggregate(&self, e: &ast::Expr, cx: &ExprCx<'_>) -> Result<bool> {
        for f in aggregate_calls(e) {
            if self.aggregate_level(&f, cx)? == 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The aggregate calls in the subqueries of `exprs` that belong to this
    /// query, found by binding each subquery that calls an aggregate with
    /// this query as a surveying enclosing query.
    fn survey_outer_aggregates(
        &self,
        exprs: &[&ast::Expr],
        scope: &Scope,
        outer: Option<&Outer<'_>>,
    ) -> Result<Vec<ast::Function>> {
        struct Survey<'s, 'b, 'o> {
            binder: &'s Binder<'b>,
            here: &'s Outer<'o>,
            depth: usize,
        }
        impl ast::Visitor for Survey<'_, '_, '_> {
            type Break = BindError;
            fn pre_visit_query(&mut self, q: &ast::Query) -> ControlFlow<BindError> {
                if self.depth == 0 && mentions_aggregate(q) {
                    if let Err(e) = self.binder.bind_query(q, Some(self.here), None) {
                        return ControlFlow::Break(e);
                    }
                }
                self.depth += 1;
                ControlFlow::Continue(())
            }
            fn post_visit_query(&mut self, _q: &ast::Query) -> ControlFlow<BindError> {
                self.depth -= 1;
                ControlFlow::Continue(())
            }
        }
        let here = Outer::surveying(scope, outer);
        for e in exprs {
            if !contains_subquery(e) {
                continue;
            }
            let mut survey = Survey {
                binder: self,
                here: &here,
                depth: 0,
            };
            if let ControlFlow::Break(err) = ast::Visit::visit(*e, &mut survey) {
                return Err(err);
            }
        }
        Ok(here.surveyed.map(|l| l.into_inner()).unwrap_or_default())
    }

    /// Refuses aggregates of this query in a clause that allows none
    /// (WHERE, GROUP BY): its own calls, and those of its subqueries that
    /// belong to it.
    pub(super) fn refuse_aggregates(
        &self,
        e: &ast::Expr,
        scope: &Scope,
        outer: Option<&Outer<'_>>,
        clause: &str,
    ) -> Result<()> {
        let cx = ExprCx::new(scope, outer, None);
        let own = aggregate_calls(e)
            .into_iter()
            .map(|f| Ok((self.aggregate_level(&f, &cx)? == 0).then_some(f)))
            .collect::<Result<Vec<_>>>()?;
        let found = match own.into_iter().flatten().next() {
            Some(f) => Some(f),
            None => self
                .survey_outer_aggregates(&[e], scope, outer)?
                .into_iter()
                .next(),
        };
        match found {
            Some(f) => Err(BindError::new(
                format!("aggregate functions are not allowed in {clause}"),
                f.span(),
            )),
            None => Ok(()),
        }
    }

    /// The aggregates of a SELECT: whether its select list, HAVING or ORDER
    /// BY call one of its own, and the calls in their subqueries that belong
    /// to it. Either makes it an aggregating query.
    pub(super) fn select_aggregates(
        &self,
        s: &ast::Select,
        order_by: &[ast::OrderByExpr],
        scope: &Scope,
        outer: Option<&Outer<'_>>,
    ) -> Result<(bool, Vec<ast::Function>)> {
        let mut exprs: Vec<&ast::Expr> = s
            .projection
            .iter()
            .filter_map(|item| match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
                _ => None,
            })
            .collect();
        exprs.extend(s.having.as_ref());
        exprs.extend(order_by.iter().map(|o| &o.expr));
        let cx = ExprCx::new(scope, outer, None);
        let mut own = false;
        for e in &exprs {
            if self.calls_own_aggregate(e, &cx)? {
                own = true;
                break;
            }
        }
        let found = self.survey_outer_aggregates(&exprs, scope, outer)?;
        Ok((own, found))
    }

    /// The aggregates of an aggregating query's subqueries that belong to
    /// it, bound as aggregates of its Reduce over `plan`; returns the scope
    /// its select list, HAVING and ORDER BY are bound in: `scope` and a
    /// column standing for each, which the subqueries read as an outer
    /// column.
    pub(super) fn bind_outer_aggregates(
        &self,
        found: &[ast::Function],
        scope: &Scope,
        outer: Option<&Outer<'_>>,
        plan: &mut Plan,
        ctx: &mut AggContext,
    ) -> Result<Scope> {
        let mut extended = scope.clone();
        if found.is_empty() {
            return Ok(extended);
        }
        let input = std::mem::replace(plan, unit());
        let mut cx = ExprCx::new(scope, outer, Some(input));
        for f in found {
            let name = object_name_parts(&f.name).join(".");
            let a = self.bind_aggregate(f, &name, &mut cx)?;
            let ty = a.output_type.clone();
            let at = ctx.keys.len() + ctx.push_aggregate(a);
            ctx.outer_aggs.push((extended.cols.len(), at));
            let mut c = ScopeCol::new(Some(OUTER_AGG.into()), f.to_string(), ty);
            c.hidden = true;
            extended.cols.push(c);
        }
        *plan = cx.input.take().expect("input is returned");
        Ok(extended)
    }
}

fn nested(f: &ast::Function) -> BindError {
    BindError::new("aggregate function calls cannot be nested", f.span())
}

/// One row of no columns: what a probe binds over.
fn unit() -> Plan {
    Plan::Constant {
        rows: vec![vec![]],
        arity: 0,
    }
}

/// Puts `groups` where the placeholder `table` stands in `plan`.
fn replace_groups(plan: &mut Plan, table: usize, groups: &Plan) {
    if matches!(plan, Plan::Get { table: t, .. } if *t == table) {
        *plan = groups.clone();
        return;
    }
    for input in plan.inputs_mut() {
        replace_groups(input, table, groups);
    }
}
