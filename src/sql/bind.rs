//! Binding: names resolved against the catalog, types assigned, and the query
//! turned into a [`Plan`]. Everything outside the supported subset is refused
//! here with the construct's name and position, before any worker sees it.

use sqlparser::ast::{
    self as ast, BinaryOperator, Distinct, DuplicateTreatment, FunctionArg, FunctionArgExpr,
    FunctionArguments, GroupByExpr, JoinConstraint, JoinOperator, ObjectNamePart, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Spanned, TableFactor, UnaryOperator, Value,
};

use sqlparser::tokenizer::Span;

use super::expr::{BinOp, Expr};
use super::plan::{AggFunc, Aggregate, JoinKind, Plan};
use super::{BindError, Catalog, Column};
use crate::repr::{Datum, Numeric, Type};

type Result<T> = std::result::Result<T, BindError>;

fn unsupported(what: impl std::fmt::Display, span: Span) -> BindError {
    BindError::new(format!("unsupported: {what}"), span)
}

/// Identifier as Postgres folds it: unquoted names are lower-cased.
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

#[derive(Clone, Debug)]
struct ScopeCol {
    qualifier: Option<String>,
    name: String,
    ty: Type,
}

#[derive(Clone, Debug, Default)]
struct Scope {
    cols: Vec<ScopeCol>,
}

impl Scope {
    fn concat(&self, other: &Scope) -> Scope {
        Scope {
            cols: self.cols.iter().chain(other.cols.iter()).cloned().collect(),
        }
    }

    fn resolve(&self, qualifier: Option<&str>, name: &str, span: Span) -> Result<(usize, Type)> {
        let matches: Vec<usize> = self
            .cols
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.name == name && qualifier.is_none_or(|q| c.qualifier.as_deref() == Some(q))
            })
            .map(|(i, _)| i)
            .collect();
        let shown = match qualifier {
            Some(q) => format!("{q}.{name}"),
            None => name.to_string(),
        };
        match matches.as_slice() {
            [i] => {
                let ty = self.cols[*i].ty.clone();
                if let Type::Unsupported { name: tn, .. } = &ty {
                    return Err(BindError::new(
                        format!(
                            "column \"{shown}\" has type {tn}, which viewcast does not support"
                        ),
                        span,
                    ));
                }
                Ok((*i, ty))
            }
            [] => {
                if let Some(q) = qualifier {
                    if !self.cols.iter().any(|c| c.qualifier.as_deref() == Some(q)) {
                        return Err(BindError::new(
                            format!("missing FROM-clause entry for table \"{q}\""),
                            span,
                        ));
                    }
                }
                Err(BindError::new(
                    format!("column \"{shown}\" does not exist"),
                    span,
                ))
            }
            _ => Err(BindError::new(
                format!("column reference \"{shown}\" is ambiguous"),
                span,
            )),
        }
    }
}

/// State for binding the select list and HAVING of an aggregating query: group
/// keys (already bound against the FROM scope) and the aggregates found so far.
struct AggContext {
    keys: Vec<Expr>,
    key_types: Vec<Type>,
    aggs: Vec<Aggregate>,
}

pub struct Binder<'a> {
    catalog: &'a Catalog,
}

fn split_conjuncts(e: &ast::Expr, out: &mut Vec<ast::Expr>) {
    match e {
        ast::Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            split_conjuncts(left, out);
            split_conjuncts(right, out);
        }
        ast::Expr::Nested(inner) => match inner.as_ref() {
            ast::Expr::BinaryOp {
                op: BinaryOperator::And,
                ..
            } => split_conjuncts(inner, out),
            _ => out.push(e.clone()),
        },
        _ => out.push(e.clone()),
    }
}

fn is_aggregate_name(name: &str) -> bool {
    matches!(name, "count" | "sum" | "min" | "max" | "avg")
}

fn contains_aggregate(e: &ast::Expr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(e, |x| {
        if let ast::Expr::Function(f) = x {
            if let [ObjectNamePart::Identifier(id)] = f.name.0.as_slice() {
                if is_aggregate_name(&ident_name(id)) {
                    found = true;
                    return std::ops::ControlFlow::Break(());
                }
            }
        }
        std::ops::ControlFlow::Continue(())
    });
    found
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
        _ => "?column?".into(),
    }
}

/// The type a cast names and, for `numeric(p, s)`, its precision and scale.
/// Lengths on strings (`varchar(3)`, `char(5)`) are refused: they truncate or
/// pad in Postgres and viewcast does not apply them yet.
fn cast_target(data_type: &ast::DataType, span: Span) -> Result<(Type, Option<(u32, u32)>)> {
    let text = data_type.to_string();
    let to =
        Type::from_sql_name(&text).ok_or_else(|| unsupported(format!("type {data_type}"), span))?;
    let Some(args) = text
        .split_once('(')
        .map(|(_, rest)| rest.trim_end_matches(')'))
    else {
        return Ok((to, None));
    };
    match to {
        Type::Numeric => {
            let nums: Vec<u32> = args
                .split(',')
                .map(|a| a.trim().parse().ok())
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    BindError::new(format!("invalid type modifier in {data_type}"), span)
                })?;
            let (precision, scale) = match nums.as_slice() {
                [p] => (*p, 0),
                [p, s] => (*p, *s),
                _ => {
                    return Err(BindError::new(
                        format!("invalid type modifier in {data_type}"),
                        span,
                    ))
                }
            };
            if !(1..=1000).contains(&precision) || scale > precision {
                return Err(BindError::new(
                    format!("NUMERIC precision {precision} must be between 1 and 1000, and scale {scale} at most the precision"),
                    span,
                ));
            }
            Ok((to, Some((precision, scale))))
        }
        Type::Varchar | Type::Bpchar => Err(unsupported(
            format!("cast to {data_type} (string lengths are not applied yet); cast to text"),
            span,
        )),
        // Time precision and the like: accepted without effect only where it has none.
        _ => Err(unsupported(format!("type modifier in {data_type}"), span)),
    }
}

/// The common type two operands are compared or combined in.
fn common_type(a: &Type, b: &Type) -> Option<Type> {
    use Type::*;
    if a == b {
        return Some(a.clone());
    }
    match (a, b) {
        (Unknown, t) | (t, Unknown) => Some(t.clone()),
        (x, y) if x.is_integer() && y.is_integer() => Some(if *x == Int8 || *y == Int8 {
            Int8
        } else if *x == Int4 || *y == Int4 {
            Int4
        } else {
            Int2
        }),
        (Float4 | Float8, y) | (y, Float4 | Float8) if y.is_numeric_family() => Some(Float8),
        (Numeric, y) | (y, Numeric) if y.is_integer() => Some(Numeric),
        (x, y) if x.is_string() && y.is_string() => Some(Text),
        (Date | Timestamp | TimestampTz, Date | Timestamp | TimestampTz) => {
            Some(if *a == TimestampTz || *b == TimestampTz {
                TimestampTz
            } else {
                Timestamp
            })
        }
        (Json, Jsonb) | (Jsonb, Json) => None,
        _ => None,
    }
}

fn cast_to(e: Expr, from: &Type, to: &Type) -> Expr {
    if let Expr::Literal(d) = &e {
        if let Ok(folded) = super::expr::cast(d.clone(), to) {
            return Expr::Literal(folded);
        }
    }
    if from == to
        || (from.is_integer() && to.is_integer())
        || (from.is_string() && to.is_string())
        || *from == Type::Unknown
    {
        e
    } else {
        Expr::Cast {
            expr: Box::new(e),
            to: to.clone(),
        }
    }
}

impl<'a> Binder<'a> {
    pub fn new(catalog: &'a Catalog) -> Self {
        Binder { catalog }
    }

    pub fn bind_query(&self, q: &ast::Query) -> Result<(Plan, Vec<Column>)> {
        if let Some(with) = &q.with {
            return Err(unsupported("WITH (common table expressions)", with.span()));
        }
        if let Some(l) = &q.limit_clause {
            return Err(unsupported(
                "LIMIT/OFFSET (top-k views are not supported yet)",
                l.span(),
            ));
        }
        if let Some(f) = &q.fetch {
            return Err(unsupported(
                "FETCH",
                f.quantity
                    .as_ref()
                    .map(|e| e.span())
                    .unwrap_or(Span::empty()),
            ));
        }
        if !q.locks.is_empty() {
            return Err(unsupported("FOR UPDATE/SHARE", Span::empty()));
        }
        // ORDER BY without LIMIT does not change a view's contents: a view is a
        // multiset of rows, and subscribers receive changes, not an ordering.
        match q.body.as_ref() {
            SetExpr::Select(s) => self.bind_select(s),
            SetExpr::Query(inner) => self.bind_query(inner),
            SetExpr::SetOperation { op, .. } => {
                Err(unsupported(format!("{op} (set operations)"), q.body.span()))
            }
            SetExpr::Values(_) => Err(unsupported("VALUES", q.body.span())),
            other => Err(unsupported(
                format!(
                    "statement {}",
                    other.to_string().split_whitespace().next().unwrap_or("")
                ),
                q.body.span(),
            )),
        }
    }

    fn bind_select(&self, s: &ast::Select) -> Result<(Plan, Vec<Column>)> {
        if let Some(Distinct::On(exprs)) = &s.distinct {
            return Err(unsupported(
                "DISTINCT ON",
                exprs.first().map(|e| e.span()).unwrap_or(Span::empty()),
            ));
        }
        if s.into.is_some() {
            return Err(unsupported("SELECT INTO", s.span()));
        }
        if !s.named_window.is_empty() || s.qualify.is_some() {
            return Err(unsupported("window clauses", s.span()));
        }
        if s.from.is_empty() {
            return Err(unsupported("SELECT without FROM", s.span()));
        }

        // FROM: each comma-separated item is a unit; its columns follow the previous unit's.
        let mut units = Vec::new();
        for twj in &s.from {
            units.push(self.bind_table_with_joins(twj)?);
        }
        let mut scope = Scope::default();
        for (_, sc) in &units {
            scope = scope.concat(sc);
        }

        let mut conjuncts = Vec::new();
        if let Some(w) = &s.selection {
            if contains_aggregate(w) {
                return Err(BindError::new(
                    "aggregate functions are not allowed in WHERE",
                    w.span(),
                ));
            }
            let mut parts = Vec::new();
            split_conjuncts(w, &mut parts);
            for p in parts {
                let (e, ty) = self.bind_expr(&p, &scope, &mut None)?;
                expect_bool(&ty, "argument of WHERE", p.span())?;
                conjuncts.push(e);
            }
        }
        let mut plan = self.join_units(units, conjuncts);

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
        let has_aggs = s.projection.iter().any(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                contains_aggregate(e)
            }
            _ => false,
        }) || s.having.as_ref().is_some_and(contains_aggregate);
        let aggregating = has_aggs || !group_exprs.is_empty() || s.having.is_some();

        let mut exprs = Vec::new();
        let mut columns = Vec::new();
        if aggregating {
            let mut ctx = AggContext {
                keys: Vec::new(),
                key_types: Vec::new(),
                aggs: Vec::new(),
            };
            for g in &group_exprs {
                let g = self.resolve_group_ref(g, s)?;
                if contains_aggregate(&g) {
                    return Err(BindError::new(
                        "aggregate functions are not allowed in GROUP BY",
                        g.span(),
                    ));
                }
                let (e, ty) = self.bind_expr(&g, &scope, &mut None)?;
                if !ctx.keys.contains(&e) {
                    ctx.keys.push(e);
                    ctx.key_types.push(ty);
                }
            }
            let mut ctx = Some(ctx);
            for item in &s.projection {
                match item {
                    SelectItem::UnnamedExpr(e) => {
                        let (b, ty) = self.bind_expr(e, &scope, &mut ctx)?;
                        exprs.push(b);
                        columns.push(Column {
                            name: default_name(e),
                            ty,
                        });
                    }
                    SelectItem::ExprWithAlias { expr, alias } => {
                        let (b, ty) = self.bind_expr(expr, &scope, &mut ctx)?;
                        exprs.push(b);
                        columns.push(Column {
                            name: ident_name(alias),
                            ty,
                        });
                    }
                    other => {
                        return Err(unsupported(
                            format!("{other} with GROUP BY or aggregates"),
                            other.span(),
                        ))
                    }
                }
            }
            let having = match &s.having {
                Some(h) => {
                    let (e, ty) = self.bind_expr(h, &scope, &mut ctx)?;
                    expect_bool(&ty, "argument of HAVING", h.span())?;
                    Some(e)
                }
                None => None,
            };
            let ctx = ctx.expect("aggregate context is present while aggregating");
            plan = Plan::Reduce {
                input: Box::new(plan),
                keys: ctx.keys,
                aggs: ctx.aggs,
            };
            if let Some(h) = having {
                plan = Plan::Filter {
                    input: Box::new(plan),
                    predicates: vec![h],
                };
            }
        } else {
            for item in &s.projection {
                match item {
                    SelectItem::UnnamedExpr(e) => {
                        let (b, ty) = self.bind_expr(e, &scope, &mut None)?;
                        exprs.push(b);
                        columns.push(Column {
                            name: default_name(e),
                            ty,
                        });
                    }
                    SelectItem::ExprWithAlias { expr, alias } => {
                        let (b, ty) = self.bind_expr(expr, &scope, &mut None)?;
                        exprs.push(b);
                        columns.push(Column {
                            name: ident_name(alias),
                            ty,
                        });
                    }
                    SelectItem::Wildcard(_) => {
                        for (i, c) in scope.cols.iter().enumerate() {
                            check_supported(c, item.span())?;
                            exprs.push(Expr::Column(i));
                            columns.push(Column {
                                name: c.name.clone(),
                                ty: c.ty.clone(),
                            });
                        }
                    }
                    SelectItem::QualifiedWildcard(kind, _) => {
                        let q = match kind {
                            SelectItemQualifiedWildcardKind::ObjectName(n) => {
                                object_name_parts(n).last().cloned().unwrap_or_default()
                            }
                            SelectItemQualifiedWildcardKind::Expr(e) => {
                                return Err(unsupported(format!("{e}.*"), e.span()))
                            }
                        };
                        let mut any = false;
                        for (i, c) in scope.cols.iter().enumerate() {
                            if c.qualifier.as_deref() == Some(q.as_str()) {
                                check_supported(c, item.span())?;
                                exprs.push(Expr::Column(i));
                                columns.push(Column {
                                    name: c.name.clone(),
                                    ty: c.ty.clone(),
                                });
                                any = true;
                            }
                        }
                        if !any {
                            return Err(BindError::new(
                                format!("missing FROM-clause entry for table \"{q}\""),
                                item.span(),
                            ));
                        }
                    }
                    other => return Err(unsupported(other.to_string(), other.span())),
                }
            }
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
        Ok((plan, columns))
    }

    /// `GROUP BY 1` and `GROUP BY alias` refer to select items, as in Postgres.
    fn resolve_group_ref(&self, g: &ast::Expr, s: &ast::Select) -> Result<ast::Expr> {
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
                        if ident_name(alias) == name && !self.any_from_column_named(s, &name) {
                            return Ok(expr.clone());
                        }
                    }
                }
                Ok(g.clone())
            }
            _ => Ok(g.clone()),
        }
    }

    fn any_from_column_named(&self, s: &ast::Select, name: &str) -> bool {
        s.from.iter().any(|twj| {
            self.bind_table_with_joins(twj)
                .map(|(_, sc)| sc.cols.iter().any(|c| c.name == name))
                .unwrap_or(false)
        })
    }

    fn bind_table_with_joins(&self, twj: &ast::TableWithJoins) -> Result<(Plan, Scope)> {
        let (mut plan, mut scope) = self.bind_factor(&twj.relation)?;
        for join in &twj.joins {
            let (rplan, rscope) = self.bind_factor(&join.relation)?;
            let combined = scope.concat(&rscope);
            let (kind, constraint) = match &join.join_operator {
                JoinOperator::Join(c) | JoinOperator::Inner(c) => (JoinKind::Inner, c),
                JoinOperator::CrossJoin(c) => (JoinKind::Inner, c),
                JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinKind::Left, c),
                JoinOperator::Right(_) | JoinOperator::RightOuter(_) => {
                    return Err(unsupported("RIGHT JOIN", join.relation.span()))
                }
                JoinOperator::FullOuter(_) => {
                    return Err(unsupported("FULL OUTER JOIN", join.relation.span()))
                }
                other => {
                    let text = format!("{other:?}");
                    let name = text
                        .split(['(', ' ', '{'])
                        .next()
                        .unwrap_or("join")
                        .to_string();
                    return Err(unsupported(format!("{name} join"), join.relation.span()));
                }
            };
            let conjuncts = match constraint {
                JoinConstraint::On(e) => {
                    if contains_aggregate(e) {
                        return Err(BindError::new(
                            "aggregate functions are not allowed in JOIN conditions",
                            e.span(),
                        ));
                    }
                    let mut parts = Vec::new();
                    split_conjuncts(e, &mut parts);
                    let mut out = Vec::new();
                    for p in parts {
                        let (b, ty) = self.bind_expr(&p, &combined, &mut None)?;
                        expect_bool(&ty, "argument of JOIN/ON", p.span())?;
                        out.push(b);
                    }
                    out
                }
                JoinConstraint::None => {
                    if kind == JoinKind::Left {
                        return Err(BindError::new(
                            "LEFT JOIN needs an ON condition",
                            join.relation.span(),
                        ));
                    }
                    Vec::new()
                }
                JoinConstraint::Using(_) => {
                    return Err(unsupported("JOIN ... USING", join.relation.span()))
                }
                JoinConstraint::Natural => {
                    return Err(unsupported("NATURAL JOIN", join.relation.span()))
                }
            };
            plan = make_join(plan, rplan, conjuncts, kind);
            scope = combined;
        }
        Ok((plan, scope))
    }

    fn bind_factor(&self, f: &TableFactor) -> Result<(Plan, Scope)> {
        match f {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                if args.is_some() {
                    return Err(unsupported("table functions", f.span()));
                }
                let parts = object_name_parts(name);
                let (index, info) = self
                    .catalog
                    .lookup(&parts)
                    .map_err(|m| BindError::new(m, name.span()))?;
                let qualifier = match alias {
                    Some(a) => ident_name(&a.name),
                    None => parts.last().cloned().unwrap_or_default(),
                };
                let mut cols: Vec<ScopeCol> = info
                    .columns
                    .iter()
                    .map(|c| ScopeCol {
                        qualifier: Some(qualifier.clone()),
                        name: c.name.clone(),
                        ty: c.ty.clone(),
                    })
                    .collect();
                if let Some(a) = alias {
                    if a.columns.len() > cols.len() {
                        return Err(BindError::new(
                            format!("table \"{qualifier}\" has {} columns available but {} columns specified", cols.len(), a.columns.len()),
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
                    Scope { cols },
                ))
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if alias.is_some() {
                    return Err(unsupported("alias on a parenthesized join", f.span()));
                }
                self.bind_table_with_joins(table_with_joins)
            }
            TableFactor::Derived { .. } => Err(unsupported("subquery in FROM", f.span())),
            _ => Err(unsupported(format!("FROM item {f}"), f.span())),
        }
    }

    /// Joins the FROM units left to right. WHERE conjuncts that mention one unit
    /// are pushed into it; equalities between the units joined so far and the next
    /// one become join keys; the rest are checked as soon as their columns exist.
    fn join_units(&self, units: Vec<(Plan, Scope)>, conjuncts: Vec<Expr>) -> Plan {
        let mut offsets = Vec::new();
        let mut total = 0;
        for (_, sc) in &units {
            offsets.push(total);
            total += sc.cols.len();
        }
        let mut pending: Vec<Option<Expr>> = conjuncts.into_iter().map(Some).collect();
        let mut plans: Vec<Plan> = Vec::new();
        for (i, (plan, sc)) in units.into_iter().enumerate() {
            let (lo, hi) = (offsets[i], offsets[i] + sc.cols.len());
            let mut local = Vec::new();
            for slot in pending.iter_mut() {
                let inside = slot.as_ref().is_some_and(|e| {
                    e.min_column().is_some_and(|m| m >= lo)
                        && e.max_column().is_some_and(|m| m < hi)
                });
                if inside {
                    let e = slot.take().expect("checked above");
                    local.push(e.remap(&|c| c - lo));
                }
            }
            plans.push(filter(plan, local));
        }
        let mut iter = plans.into_iter().enumerate();
        let (_, mut acc) = iter.next().expect("FROM has at least one item");
        for (i, right) in iter {
            let hi = offsets[i] + right.arity();
            let mut eligible = Vec::new();
            for slot in pending.iter_mut() {
                if slot
                    .as_ref()
                    .is_some_and(|e| e.max_column().is_some_and(|m| m < hi))
                {
                    eligible.push(slot.take().expect("checked above"));
                }
            }
            acc = make_join(acc, right, eligible, JoinKind::Inner);
        }
        filter(acc, pending.into_iter().flatten().collect())
    }

    /// Binds a scalar expression. With an aggregate context, the result reads the
    /// Reduce's output (group keys, then aggregates) instead of the FROM row.
    fn bind_expr(
        &self,
        e: &ast::Expr,
        scope: &Scope,
        agg: &mut Option<AggContext>,
    ) -> Result<(Expr, Type)> {
        if let Some(ctx) = agg.as_mut() {
            if let ast::Expr::Function(f) = e {
                let name = object_name_parts(&f.name).join(".");
                if is_aggregate_name(&name) {
                    let a = self.bind_aggregate(f, &name, scope)?;
                    let ty = a.output_type.clone();
                    let pos = match ctx.aggs.iter().position(|x| *x == a) {
                        Some(p) => p,
                        None => {
                            ctx.aggs.push(a);
                            ctx.aggs.len() - 1
                        }
                    };
                    return Ok((Expr::Column(ctx.keys.len() + pos), ty));
                }
            }
            if !contains_aggregate(e) {
                if let Ok((plain, ty)) = self.bind_expr(e, scope, &mut None) {
                    if let Some(k) = ctx.keys.iter().position(|k| *k == plain) {
                        return Ok((Expr::Column(k), ctx.key_types[k].clone()));
                    }
                    if plain.max_column().is_none() {
                        return Ok((plain, ty));
                    }
                }
                if matches!(
                    e,
                    ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_)
                ) {
                    let (_, _) = self.bind_expr(e, scope, &mut None)?;
                    return Err(BindError::new(
                        format!("column \"{e}\" must appear in the GROUP BY clause or be used in an aggregate function"),
                        e.span(),
                    ));
                }
            }
        } else if let ast::Expr::Function(f) = e {
            let name = object_name_parts(&f.name).join(".");
            if is_aggregate_name(&name) {
                return Err(BindError::new(
                    format!("aggregate function {name}() is not allowed here"),
                    e.span(),
                ));
            }
        }

        let span = e.span();
        match e {
            ast::Expr::Identifier(id) => {
                let (i, ty) = scope.resolve(None, &ident_name(id), span)?;
                Ok((Expr::Column(i), ty))
            }
            ast::Expr::CompoundIdentifier(ids) => {
                let names: Vec<String> = ids.iter().map(ident_name).collect();
                let (q, n) = match names.as_slice() {
                    [q, n] => (q.as_str(), n.as_str()),
                    [_, q, n] => (q.as_str(), n.as_str()),
                    _ => return Err(unsupported(format!("name {e}"), span)),
                };
                let (i, ty) = scope.resolve(Some(q), n, span)?;
                Ok((Expr::Column(i), ty))
            }
            ast::Expr::Value(v) => literal(&v.value, span),
            ast::Expr::Nested(inner) => self.bind_expr(inner, scope, agg),
            ast::Expr::UnaryOp { op, expr } => {
                let (x, ty) = self.bind_expr(expr, scope, agg)?;
                match op {
                    UnaryOperator::Not => {
                        expect_bool(&ty, "argument of NOT", span)?;
                        Ok((Expr::Not(Box::new(x)), Type::Bool))
                    }
                    UnaryOperator::Minus => {
                        if let Expr::Literal(d) = &x {
                            return Ok((Expr::Literal(negate_literal(d)), ty));
                        }
                        if !ty.is_numeric_family() {
                            return Err(BindError::new(
                                format!("operator does not exist: - {}", ty.name()),
                                span,
                            ));
                        }
                        Ok((Expr::Neg(Box::new(x), ty.clone()), ty))
                    }
                    UnaryOperator::Plus => Ok((x, ty)),
                    other => Err(unsupported(format!("operator {other}"), span)),
                }
            }
            ast::Expr::BinaryOp { left, op, right } => {
                let (l, lt) = self.bind_expr(left, scope, agg)?;
                let (r, rt) = self.bind_expr(right, scope, agg)?;
                bind_binary(op, l, lt, r, rt, span)
            }
            ast::Expr::IsNull(x) | ast::Expr::IsNotNull(x) => {
                let (b, _) = self.bind_expr(x, scope, agg)?;
                Ok((
                    Expr::IsNull {
                        expr: Box::new(b),
                        negated: matches!(e, ast::Expr::IsNotNull(_)),
                    },
                    Type::Bool,
                ))
            }
            ast::Expr::InList {
                expr,
                list,
                negated,
            } => {
                let (x, xt) = self.bind_expr(expr, scope, agg)?;
                let mut items = Vec::new();
                let mut ty = xt.clone();
                let mut bound = Vec::new();
                for item in list {
                    let (b, bt) = self.bind_expr(item, scope, agg)?;
                    ty = common_type(&ty, &bt).ok_or_else(|| {
                        BindError::new(
                            format!("IN types {} and {} cannot be matched", ty.name(), bt.name()),
                            item.span(),
                        )
                    })?;
                    bound.push((b, bt));
                }
                let x = coerce(x, &xt, &ty, expr.span())?;
                for ((b, bt), item) in bound.into_iter().zip(list) {
                    items.push(coerce(b, &bt, &ty, item.span())?);
                }
                Ok((
                    Expr::InList {
                        expr: Box::new(x),
                        list: items,
                        negated: *negated,
                    },
                    Type::Bool,
                ))
            }
            ast::Expr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let (x, xt) = self.bind_expr(expr, scope, agg)?;
                let (lo, lot) = self.bind_expr(low, scope, agg)?;
                let (hi, hit) = self.bind_expr(high, scope, agg)?;
                let (ge, _) =
                    bind_binary(&BinaryOperator::GtEq, x.clone(), xt.clone(), lo, lot, span)?;
                let (le, _) = bind_binary(&BinaryOperator::LtEq, x, xt, hi, hit, span)?;
                let both = Expr::Binary {
                    op: BinOp::And,
                    left: Box::new(ge),
                    right: Box::new(le),
                    ty: Type::Bool,
                };
                Ok((
                    if *negated {
                        Expr::Not(Box::new(both))
                    } else {
                        both
                    },
                    Type::Bool,
                ))
            }
            ast::Expr::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            }
            | ast::Expr::ILike {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                if *any || escape_char.is_some() {
                    return Err(unsupported("LIKE ANY / ESCAPE", span));
                }
                let (x, xt) = self.bind_expr(expr, scope, agg)?;
                let (p, pt) = self.bind_expr(pattern, scope, agg)?;
                for t in [&xt, &pt] {
                    if !t.is_string() && *t != Type::Unknown {
                        return Err(BindError::new(
                            format!("operator does not exist: {} ~~ {}", xt.name(), pt.name()),
                            span,
                        ));
                    }
                }
                let ci = matches!(e, ast::Expr::ILike { .. });
                Ok((
                    Expr::Like {
                        expr: Box::new(x),
                        pattern: Box::new(p),
                        negated: *negated,
                        case_insensitive: ci,
                    },
                    Type::Bool,
                ))
            }
            ast::Expr::Cast {
                expr,
                data_type,
                format: None,
                ..
            } => {
                let (to, typmod) = cast_target(data_type, span)?;
                let (x, xt) = self.bind_expr(expr, scope, agg)?;
                let cast = if let Expr::Literal(Datum::Text(s)) = &x {
                    Expr::Literal(
                        Datum::from_text(&to, s).map_err(|er| BindError::new(er.0, span))?,
                    )
                } else if xt == to {
                    x
                } else {
                    Expr::Cast {
                        expr: Box::new(x),
                        to: to.clone(),
                    }
                };
                let bound = match typmod {
                    Some((precision, scale)) => Expr::NumericTypmod {
                        expr: Box::new(cast),
                        precision,
                        scale,
                    },
                    None => cast,
                };
                // A cast of a constant is done once, here.
                if bound.max_column().is_none() && !matches!(bound, Expr::Literal(_)) {
                    let value = bound.eval(&[]).map_err(|e| BindError::new(e.0, span))?;
                    return Ok((Expr::Literal(value), to));
                }
                Ok((bound, to))
            }
            ast::Expr::TypedString(ts) => {
                let (to, typmod) = cast_target(&ts.data_type, span)?;
                let text = match &ts.value.value {
                    Value::SingleQuotedString(s) => s.clone(),
                    other => return Err(unsupported(format!("literal {other}"), span)),
                };
                let mut value =
                    Datum::from_text(&to, &text).map_err(|er| BindError::new(er.0, span))?;
                if let (Some((precision, scale)), Datum::Numeric(n)) = (typmod, &value) {
                    value = Datum::Numeric(
                        n.apply_typmod(precision, scale)
                            .map_err(|e| BindError::new(e.to_string(), span))?,
                    );
                }
                Ok((Expr::Literal(value), to))
            }
            ast::Expr::Function(f) => {
                let name = object_name_parts(&f.name).join(".");
                Err(unsupported(format!("function {name}()"), span))
            }
            ast::Expr::Subquery(_) | ast::Expr::InSubquery { .. } | ast::Expr::Exists { .. } => {
                Err(unsupported("subqueries", span))
            }
            ast::Expr::Case { .. } => Err(unsupported("CASE", span)),
            other => {
                let text = format!("{other:?}");
                let kind = text
                    .split(['(', ' ', '{'])
                    .next()
                    .unwrap_or("expression")
                    .to_string();
                Err(unsupported(format!("expression {kind} ({other})"), span))
            }
        }
    }

    fn bind_aggregate(&self, f: &ast::Function, name: &str, scope: &Scope) -> Result<Aggregate> {
        let span = f.span();
        if f.over.is_some() {
            return Err(unsupported("window functions (OVER)", span));
        }
        if f.filter.is_some() {
            return Err(unsupported("aggregate FILTER (WHERE ...)", span));
        }
        if !f.within_group.is_empty() {
            return Err(unsupported("WITHIN GROUP", span));
        }
        let list = match &f.args {
            FunctionArguments::List(l) => l,
            _ => return Err(BindError::new(format!("{name}() needs an argument"), span)),
        };
        if !list.clauses.is_empty() {
            return Err(unsupported(
                format!("ORDER BY or other clauses inside {name}()"),
                span,
            ));
        }
        let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
        let arg = match list.args.as_slice() {
            [FunctionArg::Unnamed(a)] => a,
            _ => {
                return Err(BindError::new(
                    format!("{name}() takes exactly one argument"),
                    span,
                ))
            }
        };
        let arg_expr = match arg {
            FunctionArgExpr::Wildcard if name == "count" && !distinct => {
                return Ok(Aggregate {
                    func: AggFunc::CountStar,
                    input: Expr::Literal(Datum::Null),
                    input_type: Type::Unknown,
                    output_type: Type::Int8,
                    distinct: false,
                })
            }
            FunctionArgExpr::Expr(e) => e,
            _ => return Err(BindError::new(format!("{name}(*) is not valid"), span)),
        };
        if contains_aggregate(arg_expr) {
            return Err(BindError::new(
                "aggregate function calls cannot be nested",
                arg_expr.span(),
            ));
        }
        let (input, ty) = self.bind_expr(arg_expr, scope, &mut None)?;
        let no_fn = || {
            BindError::new(
                format!("function {name}({}) does not exist", ty.name()),
                span,
            )
        };
        let (func, output_type) = match name {
            "count" => (AggFunc::Count, Type::Int8),
            "sum" => (
                AggFunc::Sum,
                match ty {
                    Type::Int2 | Type::Int4 => Type::Int8,
                    Type::Int8 | Type::Numeric => Type::Numeric,
                    Type::Float4 => Type::Float4,
                    Type::Float8 => Type::Float8,
                    _ => return Err(no_fn()),
                },
            ),
            "avg" => (
                AggFunc::Avg,
                match ty {
                    Type::Int2 | Type::Int4 | Type::Int8 | Type::Numeric => Type::Numeric,
                    Type::Float4 | Type::Float8 => Type::Float8,
                    _ => return Err(no_fn()),
                },
            ),
            "min" | "max" => {
                if matches!(ty, Type::Json | Type::Bool | Type::Unknown | Type::Bytea) {
                    return Err(no_fn());
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
                (
                    if name == "min" {
                        AggFunc::Min
                    } else {
                        AggFunc::Max
                    },
                    ty.clone(),
                )
            }
            _ => return Err(no_fn()),
        };
        Ok(Aggregate {
            func,
            input,
            input_type: ty,
            output_type,
            distinct,
        })
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

fn expect_bool(ty: &Type, what: &str, span: Span) -> Result<()> {
    if matches!(ty, Type::Bool | Type::Unknown) {
        Ok(())
    } else {
        Err(BindError::new(
            format!("{what} must be type boolean, not type {}", ty.name()),
            span,
        ))
    }
}

fn negate_literal(d: &Datum) -> Datum {
    match d {
        Datum::Int(i) => Datum::Int(-i),
        Datum::Numeric(n) => Datum::Numeric(n.neg()),
        Datum::Float8(f) => Datum::Float8(crate::repr::F64(-f.0)),
        other => other.clone(),
    }
}

fn literal(v: &Value, span: Span) -> Result<(Expr, Type)> {
    Ok(match v {
        Value::Number(n, _) => {
            if let Ok(i) = n.parse::<i64>() {
                let ty = if i32::try_from(i).is_ok() {
                    Type::Int4
                } else {
                    Type::Int8
                };
                (Expr::Literal(Datum::Int(i)), ty)
            } else {
                let num = Numeric::parse(n).map_err(|e| BindError::new(e.to_string(), span))?;
                (Expr::Literal(Datum::Numeric(num)), Type::Numeric)
            }
        }
        Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => {
            (Expr::Literal(Datum::Text(s.clone())), Type::Unknown)
        }
        Value::Boolean(b) => (Expr::Literal(Datum::Bool(*b)), Type::Bool),
        Value::Null => (Expr::Literal(Datum::Null), Type::Unknown),
        other => return Err(unsupported(format!("literal {other}"), span)),
    })
}

/// Converts `e` of type `from` to `to`: untyped string literals are parsed as
/// `to`, numbers are widened.
fn coerce(e: Expr, from: &Type, to: &Type, span: Span) -> Result<Expr> {
    if *from == Type::Unknown {
        if let Expr::Literal(Datum::Text(s)) = &e {
            if *to == Type::Unknown || to.is_string() {
                return Ok(e);
            }
            return Datum::from_text(to, s)
                .map(Expr::Literal)
                .map_err(|er| BindError::new(er.0, span));
        }
        return Ok(e);
    }
    Ok(cast_to(e, from, to))
}

fn bind_binary(
    op: &BinaryOperator,
    l: Expr,
    lt: Type,
    r: Expr,
    rt: Type,
    span: Span,
) -> Result<(Expr, Type)> {
    let bop = match op {
        BinaryOperator::Plus => BinOp::Add,
        BinaryOperator::Minus => BinOp::Sub,
        BinaryOperator::Multiply => BinOp::Mul,
        BinaryOperator::Divide => BinOp::Div,
        BinaryOperator::Modulo => BinOp::Mod,
        BinaryOperator::Eq => BinOp::Eq,
        BinaryOperator::NotEq => BinOp::NotEq,
        BinaryOperator::Lt => BinOp::Lt,
        BinaryOperator::LtEq => BinOp::LtEq,
        BinaryOperator::Gt => BinOp::Gt,
        BinaryOperator::GtEq => BinOp::GtEq,
        BinaryOperator::And => BinOp::And,
        BinaryOperator::Or => BinOp::Or,
        BinaryOperator::StringConcat => BinOp::Concat,
        other => return Err(unsupported(format!("operator {other}"), span)),
    };
    let mismatch = || {
        BindError::new(
            format!(
                "operator does not exist: {} {} {}",
                lt.name(),
                bop.symbol(),
                rt.name()
            ),
            span,
        )
    };
    let bin = |l: Expr, r: Expr, ty: Type| Expr::Binary {
        op: bop,
        left: Box::new(l),
        right: Box::new(r),
        ty,
    };
    match bop {
        BinOp::And | BinOp::Or => {
            expect_bool(&lt, &format!("argument of {}", bop.symbol()), span)?;
            expect_bool(&rt, &format!("argument of {}", bop.symbol()), span)?;
            Ok((bin(l, r, Type::Bool), Type::Bool))
        }
        op if op.is_comparison() => {
            let ty = if lt == Type::Unknown && rt == Type::Unknown {
                Type::Text
            } else {
                common_type(&lt, &rt).ok_or_else(mismatch)?
            };
            if matches!(ty, Type::Json) {
                return Err(mismatch());
            }
            if matches!(ty, Type::Enum { .. }) && !matches!(bop, BinOp::Eq | BinOp::NotEq) {
                return Err(unsupported(
                    format!(
                        "ordering comparison {} on enum type {} (Postgres orders enums by declaration)",
                        bop.symbol(),
                        ty.name()
                    ),
                    span,
                ));
            }
            let l = coerce(l, &lt, &ty, span)?;
            let r = coerce(r, &rt, &ty, span)?;
            Ok((bin(l, r, ty), Type::Bool))
        }
        BinOp::Concat => {
            if !(lt.is_string() || rt.is_string() || lt == Type::Unknown || rt == Type::Unknown) {
                return Err(mismatch());
            }
            Ok((bin(l, r, Type::Text), Type::Text))
        }
        _ => {
            // Date arithmetic: date ± integer and date - date.
            match (&lt, &rt, bop) {
                (Type::Date, t, BinOp::Add | BinOp::Sub) if t.is_integer() => {
                    return Ok((bin(l, r, Type::Date), Type::Date))
                }
                (t, Type::Date, BinOp::Add) if t.is_integer() => {
                    return Ok((bin(l, r, Type::Date), Type::Date))
                }
                (Type::Date, Type::Date, BinOp::Sub) => {
                    return Ok((bin(l, r, Type::Int4), Type::Int4))
                }
                _ => {}
            }
            let ty = match (&lt, &rt) {
                (Type::Float4, Type::Float4) => Type::Float4,
                (a, b) if a.is_numeric_family() && b.is_numeric_family() => {
                    common_type(a, b).ok_or_else(mismatch)?
                }
                (Type::Unknown, b) if b.is_numeric_family() => b.clone(),
                (a, Type::Unknown) if a.is_numeric_family() => a.clone(),
                _ => return Err(mismatch()),
            };
            if bop == BinOp::Mod && matches!(ty, Type::Float4 | Type::Float8) {
                return Err(mismatch());
            }
            let l = coerce(l, &lt, &ty, span)?;
            let r = coerce(r, &rt, &ty, span)?;
            Ok((bin(l, r, ty.clone()), ty))
        }
    }
}

fn filter(plan: Plan, predicates: Vec<Expr>) -> Plan {
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

/// Builds a join from conjuncts over the concatenated (left ++ right) row:
/// equalities across the two sides become keys, one-sided conjuncts are pushed
/// into their side where the join kind allows, and the rest stay as a residual.
fn make_join(left: Plan, right: Plan, conjuncts: Vec<Expr>, kind: JoinKind) -> Plan {
    let la = left.arity();
    let right_arity = right.arity();
    let (mut lk, mut rk, mut residual, mut lpush, mut rpush) =
        (vec![], vec![], vec![], vec![], vec![]);
    let side = |e: &Expr| -> (bool, bool) {
        let mut cols = Vec::new();
        e.columns(&mut cols);
        (cols.iter().any(|c| *c < la), cols.iter().any(|c| *c >= la))
    };
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
            let key = |x: &Expr| -> Expr {
                if matches!(ty, Type::Numeric | Type::Float4 | Type::Float8) {
                    Expr::Cast {
                        expr: Box::new(x.clone()),
                        to: ty.clone(),
                    }
                } else {
                    x.clone()
                }
            };
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
        match side(&c) {
            (true, false) if kind == JoinKind::Inner => lpush.push(c),
            (false, true) => rpush.push(c.remap(&|i| i - la)),
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
    }
}
