//! Scalar expressions: names, literals, operators, casts, CASE and functions,
//! typed as Postgres types them.

use sqlparser::ast::{
    self as ast, BinaryOperator, FunctionArg, FunctionArgExpr, FunctionArguments, Spanned,
    UnaryOperator, Value,
};
use sqlparser::tokenizer::Span;

use super::{aggregate, ident_name, object_name_parts, unsupported, Binder, ExprCx, Result};
use crate::repr::tz::TimeCx;
use crate::repr::{Datum, Numeric, Type};
use crate::sql::expr::{BinOp, Expr, Func};
use crate::sql::func::{ArrayOp, JsonOp};
use crate::sql::{is_c_collation, BindError};

impl<'a> Binder<'a> {
    /// Binds a scalar expression. In an aggregating SELECT (`cx.agg`), the
    /// result reads the Reduce's output (group keys, then aggregates).
    pub(super) fn bind_expr(&self, e: &ast::Expr, cx: &mut ExprCx<'_>) -> Result<(Expr, Type)> {
        if let ast::Expr::Function(f) = e {
            // An enclosing query's aggregate is that query's value.
            if let Some(bound) = self.outer_aggregate(f, cx)? {
                return Ok(bound);
            }
        }
        if cx.agg.is_some() {
            if let Some(bound) = self.bind_grouped(e, cx)? {
                return Ok(bound);
            }
        } else if let ast::Expr::Function(f) = e {
            let name = object_name_parts(&f.name).join(".");
            if aggregate::is_aggregate_name(&name) && f.over.is_none() {
                return Err(BindError::new(
                    format!("aggregate function {name}() is not allowed here"),
                    e.span(),
                ));
            }
        }

        let span = e.span();
        if let Some(p) = super::params::param_of(e)? {
            return self.bind_param(&p, span, cx);
        }
        match e {
            ast::Expr::Identifier(id) => self.column(None, &ident_name(id), span, cx),
            ast::Expr::CompoundIdentifier(ids) => {
                let names: Vec<String> = ids.iter().map(ident_name).collect();
                match names.as_slice() {
                    [q, n] | [_, q, n] => self.column(Some(q), n, span, cx),
                    _ => Err(unsupported(format!("name {e}"), span)),
                }
            }
            ast::Expr::Value(v) => literal(&v.value, span),
            ast::Expr::Nested(inner) => self.bind_expr(inner, cx),
            ast::Expr::Collate { expr, collation } => {
                let name = object_name_parts(collation).pop().unwrap_or_default();
                let (x, xt) = self.bind_expr(expr, cx)?;
                if !(xt.is_string() || xt == Type::Unknown) {
                    return Err(BindError::new(
                        format!("collations are not supported by type {}", xt.name()),
                        span,
                    ));
                }
                let default_c = name == "default" && self.catalog.settings.collation_is_c();
                if !is_c_collation(&name) && !default_c {
                    return Err(unsupported(
                        format!("COLLATE \"{name}\" (viewcast orders text by bytes, as COLLATE \"C\" does; write COLLATE \"C\")"),
                        span,
                    ));
                }
                Ok((x, if xt == Type::Unknown { Type::Text } else { xt }))
            }
            ast::Expr::UnaryOp { op, expr } => {
                let (x, ty) = self.bind_expr(expr, cx)?;
                match op {
                    UnaryOperator::Not => {
                        expect_bool(&ty, "argument of NOT", span)?;
                        Ok((Expr::Not(Box::new(x)), Type::Bool))
                    }
                    UnaryOperator::Minus => {
                        if let Expr::Literal(d) = &x {
                            if let Some(n) = negate_literal(d, &ty) {
                                return Ok(n);
                            }
                        }
                        if !ty.is_numeric_family() && ty != Type::Interval {
                            return Err(BindError::new(
                                format!("operator does not exist: - {}", ty.name()),
                                span,
                            ));
                        }
                        Ok((Expr::Neg(Box::new(x), ty.clone()), ty))
                    }
                    UnaryOperator::Plus => {
                        if !ty.is_numeric_family() && ty != Type::Unknown {
                            return Err(BindError::new(
                                format!("operator does not exist: + {}", ty.name()),
                                span,
                            ));
                        }
                        Ok((x, ty))
                    }
                    other => Err(unsupported(format!("operator {other}"), span)),
                }
            }
            ast::Expr::CompoundFieldAccess { root, access_chain } => {
                self.bind_subscripts(root, access_chain, cx, span)
            }
            ast::Expr::BinaryOp { left, op, right } => {
                if let Some(like) = like_operator(left, op, right) {
                    // How Postgres writes LIKE back (pg_get_viewdef).
                    return self.bind_expr(&like, cx);
                }
                if let Some(r) = self.bind_row_comparison(left, op, right, cx) {
                    return r;
                }
                let (l, lt) = self.bind_expr(left, cx)?;
                let (r, rt) = self.bind_expr(right, cx)?;
                if is_ordering(op) {
                    if let Some(ty) = comparison_type(&lt, &rt) {
                        self.text_order_allowed(&format!("{op}"), &ty, &[left, right], span)?;
                    }
                }
                match op {
                    BinaryOperator::Arrow
                    | BinaryOperator::LongArrow
                    | BinaryOperator::HashArrow
                    | BinaryOperator::HashLongArrow => bind_json_access(op, l, lt, r, rt, span),
                    _ => match self.bind_document_op(op, l, lt, r, rt, span)? {
                        Ok(bound) => Ok(bound),
                        Err((l, lt, r, rt)) => bind_binary(&self.time, op, l, lt, r, rt, span),
                    },
                }
            }
            ast::Expr::IsNull(x) | ast::Expr::IsNotNull(x) => {
                let (b, _) = self.bind_expr(x, cx)?;
                Ok((
                    Expr::IsNull {
                        expr: Box::new(b),
                        negated: matches!(e, ast::Expr::IsNotNull(_)),
                    },
                    Type::Bool,
                ))
            }
            ast::Expr::IsTrue(x)
            | ast::Expr::IsNotTrue(x)
            | ast::Expr::IsFalse(x)
            | ast::Expr::IsNotFalse(x)
            | ast::Expr::IsUnknown(x)
            | ast::Expr::IsNotUnknown(x) => {
                let (b, ty) = self.bind_expr(x, cx)?;
                expect_bool(&ty, "argument of IS TRUE/FALSE/UNKNOWN", span)?;
                let (value, negated) = match e {
                    ast::Expr::IsTrue(_) => (Datum::Bool(true), false),
                    ast::Expr::IsNotTrue(_) => (Datum::Bool(true), true),
                    ast::Expr::IsFalse(_) => (Datum::Bool(false), false),
                    ast::Expr::IsNotFalse(_) => (Datum::Bool(false), true),
                    ast::Expr::IsUnknown(_) => (Datum::Null, false),
                    _ => (Datum::Null, true),
                };
                Ok((
                    Expr::IsDistinct {
                        left: Box::new(b),
                        right: Box::new(Expr::Literal(value)),
                        negated: !negated,
                    },
                    Type::Bool,
                ))
            }
            ast::Expr::IsDistinctFrom(a, b) | ast::Expr::IsNotDistinctFrom(a, b) => {
                let (l, lt) = self.bind_expr(a, cx)?;
                let (r, rt) = self.bind_expr(b, cx)?;
                let ty = comparison_type(&lt, &rt).ok_or_else(|| {
                    BindError::new(
                        format!(
                            "operator does not exist: {} IS DISTINCT FROM {}",
                            lt.name(),
                            rt.name()
                        ),
                        span,
                    )
                })?;
                Ok((
                    Expr::IsDistinct {
                        left: Box::new(comparand(&self.time, l, &lt, &ty, span)?),
                        right: Box::new(comparand(&self.time, r, &rt, &ty, span)?),
                        negated: matches!(e, ast::Expr::IsNotDistinctFrom(..)),
                    },
                    Type::Bool,
                ))
            }
            ast::Expr::InList {
                expr,
                list,
                negated,
            } => {
                let (x, xt) = self.bind_expr(expr, cx)?;
                let mut bound = Vec::new();
                for item in list {
                    bound.push(self.bind_expr(item, cx)?);
                }
                // Untyped literals take the type of the others, as in Postgres.
                let ty = unify(
                    std::iter::once(&xt).chain(bound.iter().map(|(_, t)| t)),
                    "IN",
                    span,
                )?;
                let x = comparand(&self.time, x, &xt, &ty, expr.span())?;
                let mut items = Vec::new();
                for ((b, bt), item) in bound.into_iter().zip(list) {
                    items.push(comparand(&self.time, b, &bt, &ty, item.span())?);
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
                let (x, xt) = self.bind_expr(expr, cx)?;
                let (lo, lot) = self.bind_expr(low, cx)?;
                let (hi, hit) = self.bind_expr(high, cx)?;
                for other in [&lot, &hit] {
                    if let Some(ty) = comparison_type(&xt, other) {
                        self.text_order_allowed("BETWEEN", &ty, &[expr, low, high], span)?;
                    }
                }
                let (ge, _) = bind_binary(
                    &self.time,
                    &BinaryOperator::GtEq,
                    x.clone(),
                    xt.clone(),
                    lo,
                    lot,
                    span,
                )?;
                let (le, _) = bind_binary(&self.time, &BinaryOperator::LtEq, x, xt, hi, hit, span)?;
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
                let (x, xt) = self.bind_expr(expr, cx)?;
                let (p, pt) = self.bind_expr(pattern, cx)?;
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
                let (x, xt) = self.bind_expr(expr, cx)?;
                let cast = if let Expr::Literal(Datum::Text(s)) = &x {
                    if xt == Type::Unknown || xt.is_string() {
                        Expr::Literal(
                            Datum::from_text_in(&to, s, &self.time)
                                .map_err(|er| BindError::new(er.0, span))?,
                        )
                    } else {
                        explicit_cast(&self.time, x, &xt, &to, span)?
                    }
                } else {
                    explicit_cast(&self.time, x, &xt, &to, span)?
                };
                let bound = match typmod {
                    Some((precision, scale)) => Expr::NumericTypmod {
                        expr: Box::new(cast),
                        precision,
                        scale,
                    },
                    None => cast,
                };
                Ok((fold(bound, span)?, to))
            }
            ast::Expr::TypedString(ts) => {
                let (to, typmod) = cast_target(&ts.data_type, span)?;
                let text = match &ts.value.value {
                    Value::SingleQuotedString(s) => s.clone(),
                    other => return Err(unsupported(format!("literal {other}"), span)),
                };
                let mut value = Datum::from_text_in(&to, &text, &self.time)
                    .map_err(|er| BindError::new(er.0, span))?;
                if let (Some((precision, scale)), Datum::Numeric(n)) = (typmod, &value) {
                    value = Datum::Numeric(
                        n.apply_typmod(precision, scale)
                            .map_err(|e| BindError::new(e.to_string(), span))?,
                    );
                }
                Ok((Expr::Literal(value), to))
            }
            ast::Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.bind_case(
                operand.as_deref(),
                conditions,
                else_result.as_deref(),
                cx,
                span,
            ),
            ast::Expr::Function(f) => self.bind_function(f, cx),
            ast::Expr::Array(arr) => {
                if arr.elem.iter().any(|e| matches!(e, ast::Expr::Array(_))) {
                    return Err(unsupported("multidimensional ARRAY[...]", span));
                }
                let mut bound = Vec::new();
                for item in &arr.elem {
                    bound.push(self.bind_expr(item, cx)?);
                }
                if bound.is_empty() {
                    return Err(BindError::new(
                        "cannot determine type of empty array (cast it, e.g. ARRAY[]::integer[])",
                        span,
                    ));
                }
                let elem = unify(bound.iter().map(|(_, t)| t), "ARRAY", span)?;
                if matches!(
                    elem,
                    Type::Array { .. } | Type::Record | Type::Unsupported { .. }
                ) {
                    return Err(unsupported(format!("ARRAY[...] of {}", elem.name()), span));
                }
                let mut xs = Vec::new();
                for (x, xt) in bound {
                    xs.push(coerce(&self.time, x, &xt, &elem, span)?);
                }
                let ty = Type::Array {
                    name: format!("_{}", elem.name()),
                    elem: Box::new(elem),
                };
                call(Func::Array(ArrayOp::Build), xs, ty, span)
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
            } if !matches!(**right, ast::Expr::Subquery(_)) => {
                let all = matches!(e, ast::Expr::AllOp { .. });
                let negated = match (compare_op, all) {
                    (BinaryOperator::Eq, false) => false,
                    (BinaryOperator::NotEq, true) => true,
                    _ => {
                        return Err(unsupported(
                            format!(
                                "{compare_op} {} (array) other than = ANY and <> ALL",
                                if all { "ALL" } else { "ANY" }
                            ),
                            span,
                        ))
                    }
                };
                let (x, xt) = self.bind_expr(left, cx)?;
                let (a, at) = self.bind_expr(right, cx)?;
                // char(n) compares without its padding: as text.
                let (x, xt) = if xt == Type::Bpchar && at == Type::Unknown {
                    (bpchar_to_text(x), Type::Text)
                } else {
                    (x, xt)
                };
                let at = if at == Type::Unknown && xt != Type::Unknown {
                    Type::Array {
                        name: format!("_{}", xt.name()),
                        elem: Box::new(xt.clone()),
                    }
                } else {
                    at
                };
                let a = coerce(&self.time, a, &Type::Unknown, &at, span)?;
                let Type::Array { elem, .. } = &at else {
                    return Err(BindError::new(
                        format!(
                            "op ANY/ALL (array) requires array on right side, not {}",
                            at.name()
                        ),
                        span,
                    ));
                };
                let mismatch = || {
                    BindError::new(
                        format!(
                            "operator does not exist: {} {compare_op} {}",
                            xt.name(),
                            elem.name()
                        ),
                        span,
                    )
                };
                let x = self.element_operand(x, &xt, elem, mismatch, span)?;
                call(
                    Func::Array(ArrayOp::Any { negated }),
                    vec![x, a],
                    Type::Bool,
                    span,
                )
            }
            ast::Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.text_arg(expr, cx, "substring")?];
                let from = match substring_from {
                    Some(f) => self.int_arg(f, cx, "substring")?,
                    None => Expr::Literal(Datum::Int(1)),
                };
                args.push(from);
                if let Some(c) = substring_for {
                    args.push(self.int_arg(c, cx, "substring")?);
                }
                Ok(call(Func::Substr, args, Type::Text, span)?)
            }
            ast::Expr::Trim {
                expr,
                trim_where,
                trim_what,
                trim_characters,
            } => {
                if trim_characters.is_some() {
                    return Err(unsupported("TRIM with a character list", span));
                }
                let (leading, trailing) = match trim_where {
                    Some(ast::TrimWhereField::Leading) => (true, false),
                    Some(ast::TrimWhereField::Trailing) => (false, true),
                    _ => (true, true),
                };
                let mut args = vec![self.text_arg(expr, cx, "trim")?];
                if let Some(w) = trim_what {
                    args.push(self.text_arg(w, cx, "trim")?);
                }
                Ok(call(
                    Func::Trim { leading, trailing },
                    args,
                    Type::Text,
                    span,
                )?)
            }
            ast::Expr::Position { expr, r#in } => {
                let args = vec![
                    self.text_arg(r#in, cx, "position")?,
                    self.text_arg(expr, cx, "position")?,
                ];
                Ok(call(Func::Strpos, args, Type::Int4, span)?)
            }
            ast::Expr::Extract { field, expr, .. } => {
                let field = date_field(&field.to_string());
                let (x, xt) = self.bind_expr(expr, cx)?;
                let x = datetime_arg(&self.time, x, &xt, "extract", span)?;
                let x = self.local_fields(x, &xt, &field, span)?;
                Ok(call(Func::Extract(field), vec![x], Type::Numeric, span)?)
            }
            ast::Expr::Ceil { expr, field } | ast::Expr::Floor { expr, field } => {
                if !matches!(
                    field,
                    ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime)
                ) {
                    return Err(unsupported("CEIL/FLOOR with a field or scale", span));
                }
                let func = if matches!(e, ast::Expr::Ceil { .. }) {
                    Func::Ceil
                } else {
                    Func::Floor
                };
                let (x, xt) = self.bind_expr(expr, cx)?;
                let (x, ty) = float_or_numeric(&self.time, x, &xt, span, &func.name())?;
                Ok(call(func, vec![x], ty, span)?)
            }
            ast::Expr::Subquery(_)
            | ast::Expr::InSubquery { .. }
            | ast::Expr::Exists { .. }
            | ast::Expr::AnyOp { .. }
            | ast::Expr::AllOp { .. } => self.bind_subquery_expr(e, cx),
            ast::Expr::Interval(iv) => {
                if iv.leading_precision.is_some()
                    || iv.last_field.is_some()
                    || iv.fractional_seconds_precision.is_some()
                {
                    return Err(unsupported("interval field ranges and precisions", span));
                }
                let (x, _) = self.bind_expr(&iv.value, cx)?;
                let Expr::Literal(Datum::Text(text)) = x else {
                    return Err(unsupported(
                        "INTERVAL of a value that is not a string constant",
                        span,
                    ));
                };
                let text = match &iv.leading_field {
                    Some(f) => format!("{text} {f}"),
                    None => text,
                };
                let value = crate::repr::interval::Interval::parse(&text)
                    .map_err(|m| BindError::new(m, span))?;
                Ok((Expr::Literal(Datum::Interval(value)), Type::Interval))
            }
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

    /// A view parameter (`$name`, `auth.uid()`, `auth.jwt() ->> 'claim'`): a
    /// column of the parameter tuples, or in the first pass a placeholder
    /// that learns its type.
    fn bind_param(
        &self,
        p: &super::params::ViewParam,
        span: Span,
        cx: &ExprCx<'_>,
    ) -> Result<(Expr, Type)> {
        if super::params::discovering() {
            return Ok(match p.from {
                super::params::ParamFrom::Request => super::params::placeholder(&p.name),
                super::params::ParamFrom::Token => (Expr::Literal(Datum::Null), p.ty.clone()),
            });
        }
        self.column(None, &p.key(), span, cx).map_err(|_| {
            BindError::new(
                format!(
                    "parameter {} cannot be used here (parameters work in the view's query and its subqueries, not in WITH)",
                    p.key()
                ),
                span,
            )
        })
    }

    /// A column by name: in this query's scope, or else in an enclosing
    /// query's, which makes the subquery correlated. Until the subquery is
    /// re-bound with the outer values as parameters, such a reference binds as
    /// a typed NULL: that first pass only discovers the parameters.
    fn column(
        &self,
        qualifier: Option<&str>,
        name: &str,
        span: Span,
        cx: &ExprCx<'_>,
    ) -> Result<(Expr, Type)> {
        if let Some(r) = cx.scope.resolve(qualifier, name, span) {
            let (i, ty) = r?;
            return Ok((Expr::Column(i), ty));
        }
        let mut level = cx.outer;
        while let Some(o) = level {
            if let Some(r) = o.scope.resolve(qualifier, name, span) {
                let (i, ty) = r?;
                o.used.borrow_mut().insert(i);
                return Ok((Expr::Literal(Datum::Null), ty));
            }
            level = o.parent;
        }
        let shown = match qualifier {
            Some(q) => {
                let known = cx.scope.has_qualifier(q) || {
                    let mut l = cx.outer;
                    let mut found = false;
                    while let Some(o) = l {
                        found |= o.scope.has_qualifier(q);
                        l = o.parent;
                    }
                    found
                };
                if !known {
                    return Err(BindError::new(
                        format!("missing FROM-clause entry for table \"{q}\""),
                        span,
                    ));
                }
                format!("{q}.{name}")
            }
            None => {
                let mut l = cx.outer;
                let mut row = cx.scope.has_qualifier(name);
                while let Some(o) = l {
                    row |= o.scope.has_qualifier(name);
                    l = o.parent;
                }
                if row {
                    return Err(unsupported(
                        format!("the row of \"{name}\" as a value (a whole-row reference is supported as the argument of to_json, to_jsonb, row_to_json, json_build_object, json_build_array, json_agg and jsonb_agg; select {name}.* or its columns)"),
                        span,
                    ));
                }
                name.to_string()
            }
        };
        Err(BindError::new(
            format!("column \"{shown}\" does not exist"),
            span,
        ))
    }

    fn bind_case(
        &self,
        operand: Option<&ast::Expr>,
        conditions: &[ast::CaseWhen],
        else_result: Option<&ast::Expr>,
        cx: &mut ExprCx<'_>,
        span: Span,
    ) -> Result<(Expr, Type)> {
        let operand = match operand {
            Some(o) => Some(self.bind_expr(o, cx)?),
            None => None,
        };
        let mut conds = Vec::new();
        let mut results = Vec::new();
        for w in conditions {
            let cond = match &operand {
                Some((o, ot)) => {
                    let (v, vt) = self.bind_expr(&w.condition, cx)?;
                    bind_binary(
                        &self.time,
                        &BinaryOperator::Eq,
                        o.clone(),
                        ot.clone(),
                        v,
                        vt,
                        span,
                    )?
                    .0
                }
                None => {
                    let (c, ct) = self.bind_expr(&w.condition, cx)?;
                    expect_bool(&ct, "argument of CASE/WHEN", w.condition.span())?;
                    c
                }
            };
            conds.push(cond);
            results.push(self.bind_expr(&w.result, cx)?);
        }
        if let Some(e) = else_result {
            results.push(self.bind_expr(e, cx)?);
        }
        let ty = unify(results.iter().map(|(_, t)| t), "CASE", span)?;
        let mut coerced = Vec::new();
        for (r, rt) in results {
            coerced.push(coerce(&self.time, r, &rt, &ty, span)?);
        }
        let otherwise = if else_result.is_some() {
            coerced.pop().expect("else result was pushed")
        } else {
            Expr::Literal(Datum::Null)
        };
        Ok((
            Expr::Case {
                branches: conds.into_iter().zip(coerced).collect(),
                otherwise: Box::new(otherwise),
            },
            ty,
        ))
    }

    pub(super) fn args<'f>(&self, f: &'f ast::Function) -> Result<Vec<&'f ast::Expr>> {
        let span = f.span();
        let list = match &f.args {
            FunctionArguments::List(l) => l,
            FunctionArguments::None => return Ok(vec![]),
            FunctionArguments::Subquery(_) => {
                return Err(unsupported("a subquery as function argument list", span))
            }
        };
        if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
            return Err(unsupported(
                "DISTINCT/ORDER BY in a call of a non-aggregate function",
                span,
            ));
        }
        list.args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                other => Err(unsupported(format!("function argument {other}"), span)),
            })
            .collect()
    }

    fn bind_function(&self, f: &ast::Function, cx: &mut ExprCx<'_>) -> Result<(Expr, Type)> {
        let span = f.span();
        let parts = object_name_parts(&f.name);
        let name = match parts.as_slice() {
            [n] => n.as_str(),
            [schema, n] if schema == "pg_catalog" => n.as_str(),
            _ => return Err(unsupported(format!("function {}()", parts.join(".")), span)),
        };
        if f.over.is_some() {
            return self.bind_window_call(f, name, cx);
        }
        if super::srf::is_srf_name(name) {
            return self.bind_select_srf(f, name, cx);
        }
        if f.filter.is_some() || !f.within_group.is_empty() {
            return Err(BindError::new(
                format!("FILTER/WITHIN GROUP specified, but {name} is not an aggregate function"),
                span,
            ));
        }
        let args = self.args(f)?;
        let arity = |ok: &[usize]| -> Result<()> {
            if ok.contains(&args.len()) {
                Ok(())
            } else {
                Err(BindError::new(
                    format!("function {name}() does not take {} arguments", args.len()),
                    span,
                ))
            }
        };
        match name {
            "coalesce" | "greatest" | "least" => {
                if args.is_empty() {
                    return Err(BindError::new(format!("{name}() needs arguments"), span));
                }
                let mut bound = Vec::new();
                for a in &args {
                    bound.push(self.bind_expr(a, cx)?);
                }
                let ty = unify(bound.iter().map(|(_, t)| t), &name.to_uppercase(), span)?;
                let mut exprs = Vec::new();
                for (b, bt) in bound {
                    exprs.push(coerce(&self.time, b, &bt, &ty, span)?);
                }
                if name != "coalesce" {
                    self.text_order_allowed(&format!("{}()", name.to_uppercase()), &ty, &args, span)?;
                }
                if name != "coalesce" && !ty.is_orderable() {
                    return Err(BindError::new(
                        format!("could not identify a comparison function for type {}", ty.name()),
                        span,
                    ));
                }
                let e = if name == "coalesce" {
                    Expr::Coalesce(exprs)
                } else {
                    Expr::Extremum {
                        args: exprs,
                        greatest: name == "greatest",
                    }
                };
                Ok((e, ty))
            }
            "nullif" => {
                arity(&[2])?;
                let (a, at) = self.bind_expr(args[0], cx)?;
                let (b, bt) = self.bind_expr(args[1], cx)?;
                let ty = if at == Type::Unknown { Type::Text } else { at.clone() };
                let (eq, _) = bind_binary(&self.time, &BinaryOperator::Eq, a.clone(), at.clone(), b, bt, span)?;
                Ok((
                    Expr::Case {
                        branches: vec![(eq, Expr::Literal(Datum::Null))],
                        otherwise: Box::new(coerce(&self.time, a, &at, &ty, span)?),
                    },
                    ty,
                ))
            }
            "abs" => {
                arity(&[1])?;
                let (x, xt) = self.bind_expr(args[0], cx)?;
                let ty = match &xt {
                    Type::Unknown => Type::Float8,
                    t if t.is_numeric_family() => t.clone(),
                    t => return Err(no_function(name, std::slice::from_ref(t), span)),
                };
                let x = coerce(&self.time, x, &xt, &ty, span)?;
                call(Func::Abs, vec![x], ty, span)
            }
            "sign" | "round" | "trunc" | "floor" | "ceil" | "ceiling" => {
                arity(if matches!(name, "round" | "trunc") { &[1, 2] } else { &[1] })?;
                let func = match name {
                    "sign" => Func::Sign,
                    "round" => Func::Round,
                    "trunc" => Func::Trunc,
                    "floor" => Func::Floor,
                    _ => Func::Ceil,
                };
                let (x, xt) = self.bind_expr(args[0], cx)?;
                if args.len() == 2 {
                    let x = coerce(&self.time, x, &xt, &Type::Numeric, span)
                        .ok()
                        .filter(|_| xt.is_integer() || xt == Type::Numeric || xt == Type::Unknown)
                        .ok_or_else(|| no_function(name, &[xt.clone(), Type::Int4], span))?;
                    let d = self.int_arg(args[1], cx, name)?;
                    return call(func, vec![x, d], Type::Numeric, span);
                }
                let (x, ty) = float_or_numeric(&self.time, x, &xt, span, name)?;
                call(func, vec![x], ty, span)
            }
            "sqrt" | "cbrt" | "exp" | "ln" | "log" | "log10" | "power" | "pow" => {
                let two = matches!(name, "power" | "pow");
                arity(if two { &[2] } else { &[1] })?;
                let mut xs = Vec::new();
                for a in &args {
                    let (x, xt) = self.bind_expr(a, cx)?;
                    if xt == Type::Numeric {
                        return Err(unsupported(
                            format!("{name}() of numeric (cast the argument to float8)"),
                            span,
                        ));
                    }
                    if !(xt.is_numeric_family() || xt == Type::Unknown) {
                        return Err(no_function(name, &[xt], span));
                    }
                    xs.push(coerce(&self.time, x, &xt, &Type::Float8, span)?);
                }
                let func = match name {
                    "sqrt" => Func::Sqrt,
                    "cbrt" => Func::Cbrt,
                    "exp" => Func::Exp,
                    "ln" => Func::Ln,
                    "log" | "log10" => Func::Log10,
                    _ => Func::Power,
                };
                call(func, xs, Type::Float8, span)
            }
            "mod" => {
                arity(&[2])?;
                let (a, at) = self.bind_expr(args[0], cx)?;
                let (b, bt) = self.bind_expr(args[1], cx)?;
                bind_binary(&self.time, &BinaryOperator::Modulo, a, at, b, bt, span)
            }
            "div" => {
                arity(&[2])?;
                let mut xs = Vec::new();
                for a in &args {
                    let (x, xt) = self.bind_expr(a, cx)?;
                    if !(xt.is_integer() || xt == Type::Numeric || xt == Type::Unknown) {
                        return Err(no_function(name, &[xt], span));
                    }
                    xs.push(coerce(&self.time, x, &xt, &Type::Numeric, span)?);
                }
                call(Func::Div, xs, Type::Numeric, span)
            }
            "lower" | "upper" | "length" | "char_length" | "character_length"
            | "octet_length" | "reverse" | "initcap" => {
                arity(&[1])?;
                let x = self.text_arg(args[0], cx, name)?;
                let (func, ty) = match name {
                    "lower" => (Func::Lower, Type::Text),
                    "upper" => (Func::Upper, Type::Text),
                    "octet_length" => (Func::OctetLength, Type::Int4),
                    "reverse" => (Func::Reverse, Type::Text),
                    "initcap" => (Func::Initcap, Type::Text),
                    _ => (Func::Length, Type::Int4),
                };
                call(func, vec![x], ty, span)
            }
            "substr" | "substring" => {
                arity(&[2, 3])?;
                let mut xs = vec![self.text_arg(args[0], cx, name)?];
                for a in &args[1..] {
                    xs.push(self.int_arg(a, cx, name)?);
                }
                call(Func::Substr, xs, Type::Text, span)
            }
            "strpos" | "replace" | "split_part" | "btrim" | "ltrim" | "rtrim" | "left"
            | "right" | "repeat" | "lpad" | "rpad" => {
                let (func, shape): (Func, &[bool]) = match name {
                    "strpos" => (Func::Strpos, &[true, true]),
                    "replace" => (Func::Replace, &[true, true, true]),
                    "split_part" => (Func::SplitPart, &[true, true, false]),
                    "btrim" => (Func::Trim { leading: true, trailing: true }, &[true, true]),
                    "ltrim" => (Func::Trim { leading: true, trailing: false }, &[true, true]),
                    "rtrim" => (Func::Trim { leading: false, trailing: true }, &[true, true]),
                    "left" => (Func::Left, &[true, false]),
                    "right" => (Func::Right, &[true, false]),
                    "repeat" => (Func::Repeat, &[true, false]),
                    "lpad" => (Func::Lpad, &[true, false, true]),
                    _ => (Func::Rpad, &[true, false, true]),
                };
                let optional_last = matches!(name, "btrim" | "ltrim" | "rtrim" | "lpad" | "rpad");
                let ok: Vec<usize> = if optional_last {
                    vec![shape.len() - 1, shape.len()]
                } else {
                    vec![shape.len()]
                };
                arity(&ok)?;
                let mut xs = Vec::new();
                for (a, is_text) in args.iter().zip(shape) {
                    xs.push(if *is_text {
                        self.text_arg(a, cx, name)?
                    } else {
                        self.int_arg(a, cx, name)?
                    });
                }
                let ty = if name == "strpos" { Type::Int4 } else { Type::Text };
                call(func, xs, ty, span)
            }
            "concat" | "concat_ws" => {
                if name == "concat_ws" && args.is_empty() {
                    return Err(no_function(name, &[], span));
                }
                let mut xs = Vec::new();
                for (i, a) in args.iter().enumerate() {
                    if name == "concat_ws" && i == 0 {
                        xs.push(self.text_arg(a, cx, name)?);
                        continue;
                    }
                    let (x, xt) = self.bind_expr(a, cx)?;
                    if matches!(xt, Type::Unsupported { .. }) {
                        return Err(unsupported(format!("{name}() of {}", xt.name()), span));
                    }
                    xs.push(text_operand(&self.time, x, &xt, span)?);
                }
                let func = if name == "concat" { Func::Concat } else { Func::ConcatWs };
                call(func, xs, Type::Text, span)
            }
            "date_part" | "date_trunc" => {
                arity(&[2])?;
                let field = match self.bind_expr(args[0], cx)?.0 {
                    Expr::Literal(Datum::Text(s)) => date_field(&s),
                    _ => {
                        return Err(unsupported(
                            format!("{name}() with a field that is not a constant"),
                            span,
                        ))
                    }
                };
                let (x, xt) = self.bind_expr(args[1], cx)?;
                let x = datetime_arg(&self.time, x, &xt, name, span)?;
                if name == "date_part" {
                    let x = self.local_fields(x, &xt, &field, span)?;
                    return call(Func::DatePart(field), vec![x], Type::Float8, span);
                }
                let ty = if xt == Type::Timestamp {
                    Type::Timestamp
                } else {
                    Type::TimestampTz
                };
                if ty == Type::TimestampTz && !self.time.is_utc() {
                    // A date is taken as timestamptz (its midnight in the
                    // zone), as Postgres resolves date_trunc(text, date).
                    let x = coerce(&self.time, x, &xt, &Type::TimestampTz, span)?;
                    return call(Func::DateTruncIn(field, self.time.clone()), vec![x], ty, span);
                }
                call(Func::DateTrunc(field), vec![x], ty, span)
            }
            "to_json" | "to_jsonb" | "row_to_json" => {
                arity(&[1])?;
                let jsonb = name == "to_jsonb";
                let (x, xt) = self.json_arg(args[0], cx)?;
                if name == "row_to_json" && xt != Type::Record {
                    return Err(no_function(name, &[xt], span));
                }
                if xt == Type::Unknown {
                    return Err(BindError::new(
                        "could not determine polymorphic type because input has type unknown",
                        span,
                    ));
                }
                let x = self.json_value(x, &xt, span)?;
                if xt == Type::Record && !jsonb {
                    return Ok((x, Type::Json));
                }
                let out = if jsonb { Type::Jsonb } else { Type::Json };
                call(Func::ToJson { jsonb }, vec![x], out.clone(), span)
            }
            "json_build_object" | "jsonb_build_object" | "json_build_array"
            | "jsonb_build_array" => {
                let jsonb = name.starts_with("jsonb");
                let object = name.ends_with("object");
                if object && !args.len().is_multiple_of(2) {
                    return Err(BindError::new(
                        "argument list must have even number of elements (the arguments of json_build_object() must consist of alternating keys and values)",
                        span,
                    ));
                }
                let mut xs = Vec::new();
                for (i, a) in args.iter().enumerate() {
                    let (x, xt) = self.json_arg(a, cx)?;
                    if object && i % 2 == 0 {
                        if matches!(xt, Type::Array { .. } | Type::Record | Type::Json | Type::Jsonb) {
                            return Err(BindError::new(
                                "key value must be scalar, not array, composite, or json",
                                a.span(),
                            ));
                        }
                        if x == Expr::Literal(Datum::Null) {
                            return Err(BindError::new(
                                format!("argument {} cannot be null (object keys should be text)", i + 1),
                                a.span(),
                            ));
                        }
                    }
                    xs.push(self.json_value(x, &xt, a.span())?);
                }
                let (func, out) = match (object, jsonb) {
                    (true, j) => (Func::JsonBuildObject { jsonb: j }, if j { Type::Jsonb } else { Type::Json }),
                    (false, j) => (Func::JsonBuildArray { jsonb: j }, if j { Type::Jsonb } else { Type::Json }),
                };
                call(func, xs, out, span)
            }
            "jsonb_typeof" | "json_typeof" | "jsonb_array_length" | "json_array_length"
            | "jsonb_strip_nulls" | "json_strip_nulls" | "jsonb_pretty" => {
                arity(&[1])?;
                let want = if name.starts_with("jsonb") { Type::Jsonb } else { Type::Json };
                let x = self.typed_arg(args[0], cx, &want, name)?;
                let (op, out) = match name {
                    "jsonb_typeof" | "json_typeof" => (JsonOp::TypeOf, Type::Text),
                    "jsonb_array_length" | "json_array_length" => (JsonOp::ArrayLength, Type::Int4),
                    "jsonb_strip_nulls" => (JsonOp::StripNulls, Type::Jsonb),
                    "json_strip_nulls" => (JsonOp::JsonStripNulls, Type::Json),
                    _ => (JsonOp::Pretty, Type::Text),
                };
                call(Func::Json(op), vec![x], out, span)
            }
            "jsonb_set" => {
                arity(&[3, 4])?;
                let mut xs = vec![
                    self.typed_arg(args[0], cx, &Type::Jsonb, name)?,
                    self.typed_arg(args[1], cx, &text_array_type(), name)?,
                    self.typed_arg(args[2], cx, &Type::Jsonb, name)?,
                ];
                if let Some(c) = args.get(3) {
                    xs.push(self.typed_arg(c, cx, &Type::Bool, name)?);
                }
                call(Func::Json(JsonOp::Set), xs, Type::Jsonb, span)
            }
            "array_length" | "cardinality" => {
                arity(if name == "cardinality" { &[1] } else { &[2] })?;
                let (a, at) = self.bind_expr(args[0], cx)?;
                if !matches!(at, Type::Array { .. }) {
                    return Err(no_function(name, &[at], span));
                }
                let mut xs = vec![a];
                let op = if name == "cardinality" {
                    ArrayOp::Cardinality
                } else {
                    xs.push(self.int_arg(args[1], cx, name)?);
                    ArrayOp::Length
                };
                call(Func::Array(op), xs, Type::Int4, span)
            }
            "array_position" | "array_append" => {
                arity(&[2])?;
                let (a, at) = self.bind_expr(args[0], cx)?;
                let (v, vt) = self.bind_expr(args[1], cx)?;
                let at = match at {
                    Type::Unknown if vt != Type::Unknown && !matches!(vt, Type::Array { .. }) => {
                        Type::Array {
                            name: format!("_{}", vt.name()),
                            elem: Box::new(vt.clone()),
                        }
                    }
                    t => t,
                };
                let a = coerce(&self.time, a, &Type::Unknown, &at, span)?;
                let Type::Array { elem, .. } = &at else {
                    return Err(no_function(name, &[at.clone(), vt], span));
                };
                let v = self.element_operand(v, &vt, elem, || no_function(name, &[at.clone(), vt.clone()], span), span)?;
                let (op, out) = if name == "array_position" {
                    (ArrayOp::Position, Type::Int4)
                } else {
                    (ArrayOp::Append, at.clone())
                };
                call(Func::Array(op), vec![a, v], out, span)
            }
            "array_cat" => {
                arity(&[2])?;
                let (a, at) = self.bind_expr(args[0], cx)?;
                let (b, bt) = self.bind_expr(args[1], cx)?;
                let ty = match (&at, &bt) {
                    (Type::Array { .. }, _) => at.clone(),
                    (_, Type::Array { .. }) => bt.clone(),
                    _ => return Err(no_function(name, &[at, bt], span)),
                };
                let mut xs = Vec::new();
                for (x, xt) in [(a, &at), (b, &bt)] {
                    xs.push(match xt {
                        Type::Unknown => coerce(&self.time, x, xt, &ty, span)?,
                        t if *t == ty => x,
                        _ => return Err(no_function(name, &[at.clone(), bt.clone()], span)),
                    });
                }
                call(Func::Array(ArrayOp::Cat), xs, ty, span)
            }
            "array_to_string" => {
                arity(&[2, 3])?;
                let (a, at) = self.bind_expr(args[0], cx)?;
                let Type::Array { elem, .. } = &at else {
                    return Err(no_function(name, &[at], span));
                };
                interval_text_allowed(&self.time, elem, span)?;
                let mut xs = vec![a];
                for e in &args[1..] {
                    xs.push(self.text_arg(e, cx, name)?);
                }
                let op = ArrayOp::ToString((**elem).clone(), self.time.clone());
                call(Func::Array(op), xs, Type::Text, span)
            }
            "string_to_array" => {
                arity(&[2, 3])?;
                let mut xs = Vec::new();
                for e in &args {
                    xs.push(self.text_arg(e, cx, name)?);
                }
                call(Func::Array(ArrayOp::FromString), xs, text_array_type(), span)
            }
            "regexp_replace" | "regexp_match" => {
                let replace = name == "regexp_replace";
                arity(if replace { &[3, 4] } else { &[2, 3] })?;
                let mut xs = Vec::new();
                for e in &args {
                    xs.push(self.text_arg(e, cx, name)?);
                }
                let (func, ty) = if replace {
                    (Func::RegexpReplace, Type::Text)
                } else {
                    (Func::RegexpMatch, text_array_type())
                };
                self.check_pattern(&xs[1], xs.get(if replace { 3 } else { 2 }), name, true, span)?;
                call(func, xs, ty, span)
            }
            "md5" | "ascii" | "quote_ident" | "starts_with" | "translate" => {
                let n = match name {
                    "starts_with" => 2,
                    "translate" => 3,
                    _ => 1,
                };
                arity(&[n])?;
                let mut xs = Vec::new();
                for e in &args {
                    xs.push(self.text_arg(e, cx, name)?);
                }
                let (func, ty) = match name {
                    "md5" => (Func::Md5, Type::Text),
                    "ascii" => (Func::Ascii, Type::Int4),
                    "quote_ident" => (Func::QuoteIdent, Type::Text),
                    "starts_with" => (Func::StartsWith, Type::Bool),
                    _ => (Func::Translate, Type::Text),
                };
                call(func, xs, ty, span)
            }
            "chr" => {
                arity(&[1])?;
                let x = self.int_arg(args[0], cx, name)?;
                call(Func::Chr, vec![x], Type::Text, span)
            }
            "quote_literal" | "quote_nullable" => {
                arity(&[1])?;
                let (x, xt) = self.bind_expr(args[0], cx)?;
                let x = match &xt {
                    Type::Unknown | Type::Text | Type::Varchar => x,
                    Type::Unsupported { name: t, .. } => {
                        return Err(unsupported(format!("{name}() of {t}"), span))
                    }
                    t => explicit_cast(&self.time, x, t, &Type::Text, span)?,
                };
                let func = if name == "quote_literal" { Func::QuoteLiteral } else { Func::QuoteNullable };
                call(func, vec![x], Type::Text, span)
            }
            "format" => {
                if args.is_empty() {
                    return Err(no_function(name, &[], span));
                }
                let mut xs = vec![self.text_arg(args[0], cx, name)?];
                for a in &args[1..] {
                    let (x, xt) = self.bind_expr(a, cx)?;
                    if matches!(xt, Type::Unsupported { .. }) {
                        return Err(unsupported(format!("{name}() of {}", xt.name()), span));
                    }
                    xs.push(text_operand(&self.time, x, &xt, span)?);
                }
                call(Func::Format, xs, Type::Text, span)
            }
            "age" => {
                if args.len() == 1 {
                    return Err(unsupported(
                        "age() with one argument (it counts from the current date, which changes without a row changing); write age(a, b)",
                        span,
                    ));
                }
                arity(&[2])?;
                let (a, at) = self.bind_expr(args[0], cx)?;
                let (b, bt) = self.bind_expr(args[1], cx)?;
                let ty = match common_type(&at, &bt) {
                    Some(Type::TimestampTz) => Type::TimestampTz,
                    Some(Type::Date | Type::Timestamp | Type::Unknown) => Type::Timestamp,
                    Some(Type::Text) if at == Type::Unknown && bt == Type::Unknown => Type::Timestamp,
                    _ => return Err(no_function(name, &[at, bt], span)),
                };
                // A timestamptz's fields are its wall-clock time in the session zone.
                let local = |x: Expr, t: &Type| -> Result<Expr> {
                    let x = coerce(&self.time, x, t, &ty, span)?;
                    if ty == Type::TimestampTz && !self.time.is_utc() {
                        coerce(&self.time, x, &Type::TimestampTz, &Type::Timestamp, span)
                    } else {
                        Ok(x)
                    }
                };
                let xs = vec![local(a, &at)?, local(b, &bt)?];
                call(Func::Age, xs, Type::Interval, span)
            }
            "make_date" | "make_timestamp" => {
                let n = if name == "make_date" { 3 } else { 6 };
                arity(&[n])?;
                let mut xs = Vec::new();
                for (i, e) in args.iter().enumerate() {
                    if i == 5 {
                        let (x, xt) = self.bind_expr(e, cx)?;
                        if !(xt.is_numeric_family() || xt == Type::Unknown) {
                            return Err(no_function(name, &[xt], span));
                        }
                        xs.push(coerce(&self.time, x, &xt, &Type::Float8, span)?);
                    } else {
                        xs.push(self.int_arg(e, cx, name)?);
                    }
                }
                let (func, ty) = if name == "make_date" {
                    (Func::MakeDate, Type::Date)
                } else {
                    (Func::MakeTimestamp, Type::Timestamp)
                };
                call(func, xs, ty, span)
            }
            "date_bin" => {
                arity(&[3])?;
                let stride = self.typed_arg(args[0], cx, &Type::Interval, name)?;
                let (src, st) = self.bind_expr(args[1], cx)?;
                let (org, ot) = self.bind_expr(args[2], cx)?;
                let ty = match common_type(&st, &ot) {
                    Some(Type::TimestampTz) => Type::TimestampTz,
                    Some(Type::Timestamp | Type::Date | Type::Unknown) => Type::Timestamp,
                    _ => return Err(no_function(name, &[Type::Interval, st, ot], span)),
                };
                let src = coerce(&self.time, src, &st, &ty, span)?;
                let org = coerce(&self.time, org, &ot, &ty, span)?;
                call(Func::DateBin, vec![stride, src, org], ty, span)
            }
            "justify_days" | "justify_hours" | "justify_interval" => {
                arity(&[1])?;
                let x = self.typed_arg(args[0], cx, &Type::Interval, name)?;
                let func = Func::Justify {
                    days: name != "justify_hours",
                    hours: name != "justify_days",
                };
                call(func, vec![x], Type::Interval, span)
            }
            "to_char" => {
                arity(&[2])?;
                let (x, xt) = self.bind_expr(args[0], cx)?;
                let x = match &xt {
                    Type::Date | Type::Timestamp | Type::TimestampTz => {
                        // A timestamptz is written as its wall-clock time in the session zone.
                        coerce(&self.time, x, &xt, &Type::Timestamp, span)?
                    }
                    t if t.is_integer() || *t == Type::Numeric => {
                        coerce(&self.time, x, &xt, &Type::Numeric, span)?
                    }
                    t if t.is_numeric_family() || *t == Type::Interval => {
                        return Err(unsupported(
                            format!("to_char() of {} (dates, timestamps, integers and numeric are formatted)", t.name()),
                            span,
                        ))
                    }
                    other => return Err(no_function(name, &[other.clone(), Type::Text], span)),
                };
                let f = self.text_arg(args[1], cx, name)?;
                if let Expr::Literal(Datum::Text(fmt)) = &f {
                    let checked = if xt.is_integer() || xt == Type::Numeric {
                        crate::repr::to_char::check_number(fmt)
                    } else {
                        crate::repr::to_char::check(fmt)
                    };
                    checked.map_err(|w| {
                        if w == "multiple decimal points" {
                            BindError::new(w, span)
                        } else {
                            unsupported(w, span)
                        }
                    })?;
                }
                call(Func::ToChar, vec![x, f], Type::Text, span)
            }
            n if self.now_column.get() && super::temporal::is_clock_name(n) => {
                // The clock side of a time-based condition: column 0.
                let now = Expr::Column(0);
                match n {
                    "current_date" => Ok((
                        coerce(&self.time, now, &Type::TimestampTz, &Type::Date, span)?,
                        Type::Date,
                    )),
                    "localtimestamp" => Ok((
                        coerce(&self.time, now, &Type::TimestampTz, &Type::Timestamp, span)?,
                        Type::Timestamp,
                    )),
                    _ => Ok((now, Type::TimestampTz)),
                }
            }
            "now" | "current_timestamp" | "current_date" | "localtimestamp" | "random"
            | "clock_timestamp" | "statement_timestamp" | "transaction_timestamp"
            | "timeofday" => Err(unsupported(
                format!("{name}() here (its value changes without a row changing; only a WHERE or HAVING condition comparing a row value with now() ± a constant interval, current_date and the like is maintained, as the clock passes)"),
                span,
            )),
            _ => Err(unsupported(format!("function {name}()"), span)),
        }
    }

    /// Refuses an operation whose result depends on how text is ordered
    /// (`<` and BETWEEN on text, min/max, ORDER BY ... LIMIT, GREATEST/LEAST,
    /// an ordered or DISTINCT string_agg/array_agg/json_agg) when the
    /// database's default collation is not C and no operand says
    /// `COLLATE "C"`: viewcast compares text by bytes, and under another
    /// collation Postgres would not. Equality does not depend on a
    /// deterministic collation, so `=`, GROUP BY, joins and DISTINCT are kept.
    pub(super) fn text_order_allowed(
        &self,
        what: &str,
        ty: &Type,
        operands: &[&ast::Expr],
        span: Span,
    ) -> Result<()> {
        if !(ty.is_string() || *ty == Type::Unknown) {
            return Ok(());
        }
        let settings = &self.catalog.settings;
        if settings.collation_is_c() || operands.iter().any(|e| collated_c(e)) {
            return Ok(());
        }
        Err(BindError::new(
            format!(
                "{what} on text depends on the collation, and the database's default collation {} is not C; viewcast orders text by bytes only. Write COLLATE \"C\" on the text (e.g. name COLLATE \"C\") to order it by bytes in Postgres too",
                settings.collation_name()
            ),
            span,
        ))
    }

    /// The argument of `extract`/`date_part`: a timestamptz's fields are
    /// those of its wall-clock time in the session zone, except `epoch`,
    /// which is absolute. The zone fields (`timezone`, ...) are refused.
    fn local_fields(&self, x: Expr, xt: &Type, field: &str, span: Span) -> Result<Expr> {
        if *xt != Type::TimestampTz {
            return Ok(x);
        }
        if field.starts_with("timezone") {
            return Err(unsupported(
                format!("extract({field} from timestamptz)"),
                span,
            ));
        }
        if self.time.is_utc() || field == "epoch" {
            return Ok(x);
        }
        coerce(&self.time, x, xt, &Type::Timestamp, span)
    }

    /// The operators on jsonb documents and arrays: `?`, `?|`, `?&`, `@>`,
    /// `<@`, `&&`, and `-`/`||` where an operand is jsonb. Anything else is
    /// handed back for [`bind_binary`].
    #[allow(clippy::type_complexity)]
    fn bind_document_op(
        &self,
        op: &BinaryOperator,
        l: Expr,
        lt: Type,
        r: Expr,
        rt: Type,
        span: Span,
    ) -> Result<std::result::Result<(Expr, Type), (Expr, Type, Expr, Type)>> {
        let tcx = &self.time;
        let mismatch = |lt: &Type, rt: &Type| {
            BindError::new(
                format!("operator does not exist: {} {op} {}", lt.name(), rt.name()),
                span,
            )
        };
        let jsonb_or_unknown = |t: &Type| matches!(t, Type::Jsonb | Type::Unknown);
        let is_array = |t: &Type| matches!(t, Type::Array { .. });
        let json = |op: JsonOp, args: Vec<Expr>, ty: Type| call(Func::Json(op), args, ty, span);
        let bound = match op {
            BinaryOperator::Question
            | BinaryOperator::QuestionPipe
            | BinaryOperator::QuestionAnd => {
                if lt != Type::Jsonb {
                    return Err(mismatch(&lt, &rt));
                }
                let (want, jop) = match op {
                    BinaryOperator::Question => (Type::Text, JsonOp::Exists),
                    BinaryOperator::QuestionPipe => (text_array_type(), JsonOp::ExistsAny),
                    _ => (text_array_type(), JsonOp::ExistsAll),
                };
                let r = match &rt {
                    Type::Unknown => coerce(tcx, r, &rt, &want, span)?,
                    Type::Bpchar if want == Type::Text => bpchar_to_text(r),
                    t if t.is_string() && want == Type::Text => r,
                    t if *t == want => r,
                    _ => return Err(mismatch(&lt, &rt)),
                };
                json(jop, vec![l, r], Type::Bool)?
            }
            BinaryOperator::AtArrow | BinaryOperator::ArrowAt
                if jsonb_or_unknown(&lt)
                    && jsonb_or_unknown(&rt)
                    && (lt == Type::Jsonb || rt == Type::Jsonb) =>
            {
                let l = coerce(tcx, l, &lt, &Type::Jsonb, span)?;
                let r = coerce(tcx, r, &rt, &Type::Jsonb, span)?;
                let jop = if *op == BinaryOperator::AtArrow {
                    JsonOp::Contains
                } else {
                    JsonOp::ContainedBy
                };
                json(jop, vec![l, r], Type::Bool)?
            }
            BinaryOperator::AtArrow | BinaryOperator::ArrowAt | BinaryOperator::PGOverlap
                if is_array(&lt) || is_array(&rt) =>
            {
                let ty = if is_array(&lt) {
                    lt.clone()
                } else {
                    rt.clone()
                };
                let operand = |x: Expr, t: &Type| -> Result<Expr> {
                    match t {
                        Type::Unknown => coerce(tcx, x, t, &ty, span),
                        t if *t == ty => Ok(x),
                        Type::Array { elem, .. } if array_elems_compare(elem, &ty) => Ok(x),
                        _ => Err(mismatch(&lt, &rt)),
                    }
                };
                let (l, r) = (operand(l, &lt)?, operand(r, &rt)?);
                let aop = match op {
                    BinaryOperator::AtArrow => ArrayOp::Contains,
                    BinaryOperator::ArrowAt => ArrayOp::ContainedBy,
                    _ => ArrayOp::Overlaps,
                };
                call(Func::Array(aop), vec![l, r], Type::Bool, span)?
            }
            BinaryOperator::Minus if lt == Type::Jsonb => {
                let (jop, r) = match &rt {
                    t if t.is_integer() => (JsonOp::DeleteIndex, r),
                    Type::Unknown => (JsonOp::DeleteKey, r),
                    Type::Bpchar => (JsonOp::DeleteKey, bpchar_to_text(r)),
                    t if t.is_string() => (JsonOp::DeleteKey, r),
                    Type::Array { elem, .. } if elem.is_string() => (JsonOp::DeleteKeys, r),
                    _ => return Err(mismatch(&lt, &rt)),
                };
                json(jop, vec![l, r], Type::Jsonb)?
            }
            BinaryOperator::StringConcat
                if jsonb_or_unknown(&lt)
                    && jsonb_or_unknown(&rt)
                    && (lt == Type::Jsonb || rt == Type::Jsonb) =>
            {
                let l = coerce(tcx, l, &lt, &Type::Jsonb, span)?;
                let r = coerce(tcx, r, &rt, &Type::Jsonb, span)?;
                json(JsonOp::Concat, vec![l, r], Type::Jsonb)?
            }
            BinaryOperator::HashMinus => {
                if lt != Type::Jsonb {
                    return Err(mismatch(&lt, &rt));
                }
                let r = match &rt {
                    Type::Unknown => coerce(tcx, r, &rt, &text_array_type(), span)?,
                    Type::Array { elem, .. } if elem.is_string() => r,
                    _ => return Err(mismatch(&lt, &rt)),
                };
                json(JsonOp::DeletePath, vec![l, r], Type::Jsonb)?
            }
            BinaryOperator::PGRegexMatch
            | BinaryOperator::PGRegexIMatch
            | BinaryOperator::PGRegexNotMatch
            | BinaryOperator::PGRegexNotIMatch => {
                // char(n) is matched with its padding (bpcharregexeq).
                let text = |x: Expr, t: &Type| -> Result<Expr> {
                    match t {
                        t if t.is_string() || *t == Type::Unknown => Ok(x),
                        _ => Err(mismatch(&lt, &rt)),
                    }
                };
                let (l, r) = (text(l, &lt)?, text(r, &rt)?);
                let case_insensitive = matches!(
                    op,
                    BinaryOperator::PGRegexIMatch | BinaryOperator::PGRegexNotIMatch
                );
                let negated = matches!(
                    op,
                    BinaryOperator::PGRegexNotMatch | BinaryOperator::PGRegexNotIMatch
                );
                self.check_pattern(&r, None, "~", false, span)?;
                call(
                    Func::RegexMatch {
                        case_insensitive,
                        negated,
                    },
                    vec![l, r],
                    Type::Bool,
                    span,
                )?
            }
            _ => return Ok(Err((l, lt, r, rt))),
        };
        Ok(Ok(bound))
    }

    /// A value compared with an array's elements: an untyped literal is read
    /// as the element type; otherwise the types must compare by their JSON
    /// values (the same type, numbers with numbers, strings with strings).
    fn element_operand(
        &self,
        v: Expr,
        vt: &Type,
        elem: &Type,
        mismatch: impl Fn() -> BindError,
        span: Span,
    ) -> Result<Expr> {
        if *elem == Type::Bpchar {
            return Err(unsupported(
                "comparing with the elements of a char(n) array (their padding is not significant in Postgres); cast the array to text[]",
                span,
            ));
        }
        match vt {
            Type::Unknown => coerce(&self.time, v, vt, elem, span),
            t if t == elem => Ok(v),
            t if t.is_numeric_family() && elem.is_numeric_family() => Ok(v),
            Type::Bpchar if matches!(elem, Type::Text | Type::Varchar) => Ok(bpchar_to_text(v)),
            t if t.is_string() && elem.is_string() && *elem != Type::Bpchar => Ok(v),
            _ => Err(mismatch()),
        }
    }

    /// A constant regular expression is checked when the view is defined:
    /// one viewcast refuses is refused then, not when a row reaches it.
    pub(super) fn check_pattern(
        &self,
        pattern: &Expr,
        flags: Option<&Expr>,
        func: &str,
        spans: bool,
        span: Span,
    ) -> Result<()> {
        let ci = match flags {
            Some(Expr::Literal(Datum::Text(f))) => {
                crate::sql::regex::flags(
                    f,
                    matches!(func, "regexp_replace" | "regexp_matches"),
                    func,
                )
                .map_err(|m| BindError::new(m, span))?
                .1
            }
            _ => false,
        };
        if let Expr::Literal(Datum::Text(p)) = pattern {
            crate::sql::regex::compile(p, ci, spans).map_err(|m| {
                match m.strip_prefix("unsupported: ") {
                    Some(what) => unsupported(what.to_string(), span),
                    None => BindError::new(m, span),
                }
            })?;
        }
        Ok(())
    }

    /// An argument of the JSON functions and aggregates: a value, or a FROM
    /// item's name standing for its row (`row_to_json(t)`, `json_agg(t)`),
    /// bound as the JSON object of its columns.
    pub(super) fn json_arg(&self, e: &ast::Expr, cx: &mut ExprCx<'_>) -> Result<(Expr, Type)> {
        if let ast::Expr::Identifier(id) = e {
            let name = ident_name(id);
            if let Some(row) = self.whole_row(&name, e.span(), cx)? {
                return Ok(row);
            }
        }
        self.bind_expr(e, cx)
    }

    /// `name` as a whole-row reference: `None` if it is a column (columns
    /// win, as in Postgres) or no FROM item is called so.
    fn whole_row(
        &self,
        name: &str,
        span: Span,
        cx: &mut ExprCx<'_>,
    ) -> Result<Option<(Expr, Type)>> {
        let mut scopes = vec![cx.scope];
        let mut level = cx.outer;
        while let Some(o) = level {
            scopes.push(o.scope);
            level = o.parent;
        }
        if scopes.iter().any(|s| s.resolve(None, name, span).is_some()) {
            return Ok(None);
        }
        let Some(scope) = scopes.iter().find(|s| s.has_qualifier(name)) else {
            return Ok(None);
        };
        let mine: Vec<&super::scope::ScopeCol> = scope
            .cols
            .iter()
            .filter(|c| c.qualifier.as_deref() == Some(name))
            .collect();
        let depth = mine.iter().map(|c| c.depth).min().unwrap_or(0);
        let cols: Vec<&super::scope::ScopeCol> =
            mine.into_iter().filter(|c| c.depth == depth).collect();
        if let Some(dup) = cols
            .iter()
            .enumerate()
            .find(|(i, c)| cols[..*i].iter().any(|o| o.name == c.name))
        {
            return Err(unsupported(
                format!(
                    "the row of \"{name}\" as a value: it has two columns named \"{}\"",
                    dup.1.name
                ),
                span,
            ));
        }
        if cols.iter().any(|c| c.null_extended) {
            return Err(unsupported(
                format!("the row of \"{name}\" as a value where an outer join pads it with NULLs (Postgres makes the whole row NULL there, which viewcast cannot tell from a row of NULLs); build the object with json_build_object or jsonb_build_object"),
                span,
            ));
        }
        let mut names = Vec::new();
        let mut values = Vec::new();
        for c in cols {
            let col = ast::Expr::CompoundIdentifier(vec![
                ast::Ident::with_quote('"', name),
                ast::Ident::with_quote('"', c.name.clone()),
            ]);
            let (x, xt) = self.bind_expr(&col, cx)?;
            names.push(c.name.clone());
            values.push(self.json_value(x, &xt, span)?);
        }
        let row = Expr::Call {
            func: Func::RowToJson(names),
            args: values,
            ty: Type::Record,
        };
        Ok(Some((fold(row, span)?, Type::Record)))
    }

    /// A value as the JSON functions write it: a timestamptz (or an array of
    /// them) in the session zone, as `to_json` does; interval text only under
    /// an IntervalStyle viewcast writes.
    pub(super) fn json_value(&self, x: Expr, ty: &Type, span: Span) -> Result<Expr> {
        fn has_tz(t: &Type) -> bool {
            match t {
                Type::TimestampTz => true,
                Type::Array { elem, .. } => has_tz(elem),
                _ => false,
            }
        }
        if let Type::Unsupported { name, .. } = ty {
            return Err(unsupported(format!("JSON of type {name}"), span));
        }
        interval_text_allowed(&self.time, ty, span)?;
        if has_tz(ty) && !self.time.is_utc() {
            return Ok(fold_constant(Expr::Call {
                func: Func::JsonIn(ty.clone(), self.time.clone()),
                args: vec![x],
                ty: ty.clone(),
            }));
        }
        Ok(x)
    }

    /// An argument of a function with one signature: an untyped literal is
    /// read as `ty`, a value of another type is refused as Postgres would.
    fn typed_arg(&self, e: &ast::Expr, cx: &mut ExprCx<'_>, ty: &Type, func: &str) -> Result<Expr> {
        let (x, xt) = self.bind_expr(e, cx)?;
        match &xt {
            t if t == ty => Ok(x),
            Type::Unknown => coerce(&self.time, x, &xt, ty, e.span()),
            Type::Bpchar if ty.is_string() => Ok(bpchar_to_text(x)),
            t if t.is_string() && ty.is_string() => Ok(x),
            t if t.is_integer() && ty.is_integer() => Ok(x),
            other => Err(no_function(func, std::slice::from_ref(other), e.span())),
        }
    }

    /// An argument of a text function: a string (char(n) loses its padding)
    /// or an untyped literal.
    fn text_arg(&self, e: &ast::Expr, cx: &mut ExprCx<'_>, func: &str) -> Result<Expr> {
        let (x, xt) = self.bind_expr(e, cx)?;
        match xt {
            Type::Bpchar => Ok(bpchar_to_text(x)),
            Type::Text | Type::Varchar | Type::Unknown => Ok(x),
            other => Err(no_function(func, &[other], e.span())),
        }
    }

    /// `a[i]`, `a[i][j]`, `a[lo:hi]` on arrays; `j['key']`, `j[0]` on
    /// jsonb (as `->`).
    fn bind_subscripts(
        &self,
        root: &ast::Expr,
        chain: &[ast::AccessExpr],
        cx: &mut ExprCx<'_>,
        span: Span,
    ) -> Result<(Expr, Type)> {
        use ast::{AccessExpr, Subscript};
        let (x, t) = self.bind_expr(root, cx)?;
        if chain.iter().any(|a| matches!(a, AccessExpr::Dot(_))) {
            return Err(unsupported("selecting a field of a composite value", span));
        }
        if t == Type::Jsonb {
            // A path, as `#>` follows it: each subscript is a key, or on an
            // array an index (negative from the end).
            let mut steps = Vec::new();
            for a in chain {
                let AccessExpr::Subscript(Subscript::Index { index }) = a else {
                    return Err(BindError::new(
                        "jsonb subscript does not support slices",
                        span,
                    ));
                };
                match self.bind_expr(index, cx)? {
                    (Expr::Literal(Datum::Text(k)), _) => steps.push(k),
                    (Expr::Literal(Datum::Int(i)), _) => steps.push(i.to_string()),
                    (Expr::Literal(Datum::Null), _) => {
                        return Ok((Expr::Literal(Datum::Null), Type::Jsonb))
                    }
                    _ => {
                        return Err(unsupported(
                            "a jsonb subscript that is not a constant (use -> or #>)",
                            index.span(),
                        ))
                    }
                }
            }
            let func = Func::JsonPath {
                steps,
                as_text: false,
            };
            return call(func, vec![x], Type::Jsonb, span);
        }
        let Type::Array { elem, .. } = &t else {
            return Err(BindError::new(
                format!(
                    "cannot subscript type {} because it does not support subscripting",
                    t.name()
                ),
                span,
            ));
        };
        let elem = (**elem).clone();
        let mut subscript = |e: &ast::Expr| -> Result<Expr> {
            let (i, it) = self.bind_expr(e, cx)?;
            // An int4, as Postgres casts it (a bigint out of range fails).
            match it {
                Type::Int8 => Ok(Expr::Cast {
                    expr: Box::new(i),
                    to: Type::Int4,
                }),
                t if t.is_integer() => Ok(i),
                Type::Unknown => coerce(&self.time, i, &Type::Unknown, &Type::Int4, e.span()),
                _ => Err(BindError::new(
                    "array subscript must have type integer",
                    e.span(),
                )),
            }
        };
        let mut args = vec![x];
        match chain {
            [AccessExpr::Subscript(Subscript::Slice {
                lower_bound,
                upper_bound,
                stride: None,
            })] => {
                for b in [lower_bound, upper_bound].into_iter().flatten() {
                    args.push(subscript(b)?);
                }
                let op = ArrayOp::Slice {
                    lower: lower_bound.is_some(),
                    upper: upper_bound.is_some(),
                };
                call(Func::Array(op), args, t.clone(), span)
            }
            _ => {
                for a in chain {
                    let AccessExpr::Subscript(Subscript::Index { index }) = a else {
                        return Err(unsupported(
                            "an array slice with more than one subscript",
                            span,
                        ));
                    };
                    args.push(subscript(index)?);
                }
                call(Func::Array(ArrayOp::Index(elem.clone())), args, elem, span)
            }
        }
    }

    fn int_arg(&self, e: &ast::Expr, cx: &mut ExprCx<'_>, func: &str) -> Result<Expr> {
        let (x, xt) = self.bind_expr(e, cx)?;
        match xt {
            t if t.is_integer() => Ok(x),
            Type::Unknown => coerce(&self.time, x, &Type::Unknown, &Type::Int4, e.span()),
            other => Err(no_function(func, &[other], e.span())),
        }
    }
}

fn is_ordering(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::Lt | BinaryOperator::LtEq | BinaryOperator::Gt | BinaryOperator::GtEq
    )
}

/// Whether `e` carries an explicit `COLLATE "C"` (or POSIX) as Postgres
/// derives collations: a COLLATE clause is explicit, and it passes up
/// through parentheses, `||`, CASE results and the text functions to the
/// comparison. Anything else (a cast, a column of a subquery) is taken as
/// the default collation, which refuses rather than risks a wrong order.
pub(super) fn collated_c(e: &ast::Expr) -> bool {
    match e {
        ast::Expr::Collate { collation, .. } => {
            is_c_collation(&object_name_parts(collation).pop().unwrap_or_default())
        }
        ast::Expr::Nested(x) => collated_c(x),
        ast::Expr::BinaryOp {
            left,
            op: BinaryOperator::StringConcat,
            right,
        } => collated_c(left) || collated_c(right),
        ast::Expr::Case {
            conditions,
            else_result,
            ..
        } => {
            conditions.iter().any(|w| collated_c(&w.result))
                || else_result.as_deref().is_some_and(collated_c)
        }
        ast::Expr::Substring { expr, .. } | ast::Expr::Trim { expr, .. } => collated_c(expr),
        ast::Expr::Function(f) => {
            let name = object_name_parts(&f.name).pop().unwrap_or_default();
            let text_fn = matches!(
                name.as_str(),
                "lower"
                    | "upper"
                    | "initcap"
                    | "substr"
                    | "substring"
                    | "btrim"
                    | "ltrim"
                    | "rtrim"
                    | "replace"
                    | "left"
                    | "right"
                    | "lpad"
                    | "rpad"
                    | "repeat"
                    | "reverse"
                    | "split_part"
                    | "concat"
                    | "concat_ws"
                    | "coalesce"
                    | "nullif"
                    | "greatest"
                    | "least"
                    | "min"
                    | "max"
            );
            let FunctionArguments::List(list) = &f.args else {
                return false;
            };
            text_fn
                && list.args.iter().any(|a| {
                    matches!(a, FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) if collated_c(x))
                })
        }
        _ => false,
    }
}

/// Whether arrays of `elem` and of `other`'s elements compare element by
/// element without a cast viewcast would have to make (the same type, or
/// both integers, or both strings).
fn array_elems_compare(elem: &Type, other: &Type) -> bool {
    let Type::Array { elem: o, .. } = other else {
        return false;
    };
    elem == &**o
        || (elem.is_integer() && o.is_integer())
        || (elem.is_string() && o.is_string() && *elem != Type::Bpchar && **o != Type::Bpchar)
}

/// `text[]`, the type of key lists and paths.
pub(super) fn text_array_type() -> Type {
    Type::Array {
        name: "_text".into(),
        elem: Box::new(Type::Text),
    }
}

fn no_function(name: &str, types: &[Type], span: Span) -> BindError {
    let list: Vec<&str> = types.iter().map(|t| t.name()).collect();
    BindError::new(
        format!("function {name}({}) does not exist", list.join(", ")),
        span,
    )
}

/// A function call; with constant arguments it is evaluated once, here.
fn call(func: Func, args: Vec<Expr>, ty: Type, span: Span) -> Result<(Expr, Type)> {
    let e = Expr::Call {
        func,
        args,
        ty: ty.clone(),
    };
    Ok((fold(e, span)?, ty))
}

/// Whether an operator or function returns NULL whenever an argument is NULL.
fn strict_args(e: &Expr) -> Option<Vec<&Expr>> {
    match e {
        Expr::Binary {
            op: BinOp::And | BinOp::Or,
            ..
        } => None,
        Expr::Binary { left, right, .. } => Some(vec![left, right]),
        Expr::Like { expr, pattern, .. } => Some(vec![expr, pattern]),
        Expr::Call { func, .. } if !func.is_strict() => None,
        Expr::Call { args, .. } => Some(args.iter().collect()),
        Expr::Cast { expr, .. } | Expr::Neg(expr, _) => Some(vec![expr]),
        _ => None,
    }
}

/// Evaluates an expression without column references at bind time, and, as
/// Postgres's planner does, replaces a strict operator or function with a
/// constant NULL argument by NULL (so `x / 0 = NULL` never divides).
fn fold(e: Expr, span: Span) -> Result<Expr> {
    if strict_args(&e).is_some_and(|args| args.iter().any(|a| **a == Expr::Literal(Datum::Null))) {
        return Ok(Expr::Literal(Datum::Null));
    }
    if e.max_column().is_none() && !matches!(e, Expr::Literal(_)) {
        // An error here (1/0 in a constant) is an error Postgres also raises
        // for every row; report it when the view is defined.
        let value = e.eval(&[]).map_err(|er| BindError::new(er.0, span))?;
        return Ok(Expr::Literal(value));
    }
    Ok(e)
}

pub(super) fn bpchar_to_text(x: Expr) -> Expr {
    if let Expr::Literal(Datum::Text(s)) = &x {
        return Expr::Literal(Datum::Text(s.trim_end_matches(' ').to_string()));
    }
    Expr::Call {
        func: Func::BpcharToText,
        args: vec![x],
        ty: Type::Text,
    }
}

fn date_field(s: &str) -> String {
    let f = s.to_lowercase();
    match f.as_str() {
        "years" | "y" | "yr" | "yrs" => "year".into(),
        "months" | "mon" | "mons" => "month".into(),
        "days" | "d" => "day".into(),
        "hours" | "h" | "hr" | "hrs" => "hour".into(),
        "minutes" | "min" | "mins" | "m" => "minute".into(),
        "seconds" | "sec" | "secs" | "s" => "second".into(),
        "weeks" | "w" => "week".into(),
        "dayofweek" => "dow".into(),
        "dayofyear" => "doy".into(),
        "millisecond" | "millisecon" | "ms" | "msec" | "msecs" | "msecond" | "mseconds" => {
            "milliseconds".into()
        }
        "microsecond" | "microsecon" | "us" | "usec" | "usecs" | "usecond" | "useconds" => {
            "microseconds".into()
        }
        "decades" => "decade".into(),
        "centuries" => "century".into(),
        "millennia" | "millenniums" => "millennium".into(),
        _ => f,
    }
}

fn datetime_arg(tcx: &TimeCx, x: Expr, xt: &Type, func: &str, span: Span) -> Result<Expr> {
    match xt {
        Type::Date | Type::Timestamp | Type::TimestampTz => Ok(x),
        Type::Unknown => coerce(tcx, x, xt, &Type::Timestamp, span),
        other => Err(no_function(func, &[Type::Text, other.clone()], span)),
    }
}

/// Math functions with float8 and numeric variants: integers go to float8, as
/// Postgres resolves `floor(5)`.
fn float_or_numeric(
    tcx: &TimeCx,
    x: Expr,
    xt: &Type,
    span: Span,
    name: &str,
) -> Result<(Expr, Type)> {
    match xt {
        Type::Numeric => Ok((x, Type::Numeric)),
        t if t.is_numeric_family() || *t == Type::Unknown => {
            Ok((coerce(tcx, x, xt, &Type::Float8, span)?, Type::Float8))
        }
        other => Err(no_function(name, std::slice::from_ref(other), span)),
    }
}

/// The common type of CASE branches, COALESCE arguments and the like.
fn unify<'t>(types: impl Iterator<Item = &'t Type>, what: &str, span: Span) -> Result<Type> {
    let mut ty = Type::Unknown;
    for t in types {
        ty = common_type(&ty, t).ok_or_else(|| {
            BindError::new(
                format!(
                    "{what} types {} and {} cannot be matched",
                    ty.name(),
                    t.name()
                ),
                span,
            )
        })?;
    }
    Ok(if ty == Type::Unknown { Type::Text } else { ty })
}

/// The type a cast names and, for `numeric(p, s)`, its precision and scale.
/// Lengths on strings (`varchar(3)`, `char(5)`) are refused: they truncate or
/// pad in Postgres and viewcast does not apply them yet.
pub(super) fn cast_target(
    data_type: &ast::DataType,
    span: Span,
) -> Result<(Type, Option<(u32, u32)>)> {
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

/// The common type two operands are combined in (UNION, CASE, COALESCE, IN).
pub(super) fn common_type(a: &Type, b: &Type) -> Option<Type> {
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
        _ => None,
    }
}

/// The type two operands are compared in: as [`common_type`], except that
/// char(n) against an untyped literal compares as char(n).
fn comparison_type(a: &Type, b: &Type) -> Option<Type> {
    match (a, b) {
        (Type::Unknown, Type::Unknown) => Some(Type::Text),
        (Type::Bpchar, Type::Unknown) | (Type::Unknown, Type::Bpchar) => Some(Type::Bpchar),
        _ => common_type(a, b),
    }
}

/// Implicit conversion of `e` from `from` to `to`.
fn cast_to(tcx: &TimeCx, e: Expr, from: &Type, to: &Type) -> Expr {
    if *from == Type::Bpchar && matches!(to, Type::Text | Type::Varchar) {
        return bpchar_to_text(e);
    }
    if let Some(zoned) = session_conversion(tcx, &e, from, to) {
        return zoned;
    }
    if let Expr::Literal(d) = &e {
        if let Ok(folded) = crate::sql::expr::cast(d.clone(), to) {
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

/// A conversion whose result depends on the session's TimeZone or DateStyle,
/// built from the functions that carry them: timestamptz to and from local
/// time, date/time text and its reading. `None` where the session does not
/// matter (UTC, `ISO, MDY`) or no date is involved: the plain cast then does.
fn session_conversion(tcx: &TimeCx, e: &Expr, from: &Type, to: &Type) -> Option<Expr> {
    use crate::repr::tz::{DateOrder, OutStyle};
    use Type::*;
    let is_dt = |t: &Type| matches!(t, Date | Timestamp | TimestampTz);
    let call = |func: Func, arg: Expr, ty: Type| {
        fold_constant(Expr::Call {
            func,
            args: vec![arg],
            ty,
        })
    };
    let utc = tcx.is_utc();
    let style = tcx.datestyle();
    Some(match (from, to) {
        (f, t) if f == t => return None,
        (Date | Timestamp, TimestampTz) if !utc => {
            call(Func::FromLocal(tcx.clone()), e.clone(), TimestampTz)
        }
        (TimestampTz, Timestamp | Date) if !utc => {
            let local = call(Func::ToLocal(tcx.clone()), e.clone(), Timestamp);
            if *to == Date {
                fold_constant(Expr::Cast {
                    expr: Box::new(local),
                    to: Date,
                })
            } else {
                local
            }
        }
        (f, t)
            if is_dt(f)
                && t.is_string()
                && (style.style != OutStyle::Iso || (*f == TimestampTz && !utc)) =>
        {
            call(Func::DateTimeText(tcx.clone()), e.clone(), Text)
        }
        (f, t)
            if (f.is_string() || *f == Unknown)
                && is_dt(t)
                && (style.order != DateOrder::Mdy || (*t == TimestampTz && !utc)) =>
        {
            call(Func::ParseDateTime(tcx.clone()), e.clone(), t.clone())
        }
        _ => return None,
    })
}

/// Evaluates an expression without column references now; one that fails
/// stays as it is, to fail where Postgres would.
fn fold_constant(e: Expr) -> Expr {
    if e.max_column().is_none() {
        if let Ok(v) = e.eval(&[]) {
            return Expr::Literal(v);
        }
    }
    e
}

/// An operand turned into text as `||` and `concat` turn it: dates and
/// timestamps in the session's DateStyle and zone, arrays as `array_out`
/// writes them; intervals only under IntervalStyle postgres.
fn text_operand(tcx: &TimeCx, e: Expr, ty: &Type, span: Span) -> Result<Expr> {
    interval_text_allowed(tcx, ty, span)?;
    Ok(match ty {
        Type::Array { .. } => array_as_text(tcx, e, ty),
        Type::Date | Type::Timestamp | Type::TimestampTz => {
            session_conversion(tcx, &e, ty, &Type::Text).unwrap_or(e)
        }
        _ => e,
    })
}

/// Refuses interval text (an interval, or an array of them, shown or cast
/// to text) when the role's IntervalStyle is one viewcast does not write.
pub(crate) fn interval_text_allowed(tcx: &TimeCx, ty: &Type, span: Span) -> Result<()> {
    let interval = match ty {
        Type::Interval => true,
        Type::Array { elem, .. } => matches!(**elem, Type::Interval),
        _ => false,
    };
    match tcx.unsupported_intervalstyle() {
        Some(style) if interval => Err(unsupported(
            format!(
                "interval text under IntervalStyle {style} (viewcast writes intervals as IntervalStyle postgres does; set IntervalStyle = postgres for viewcast's role, or show the interval's parts with extract)"
            ),
            span,
        )),
        _ => Ok(()),
    }
}

/// An explicit `CAST(x AS to)`: any conversion Postgres allows between the
/// supported types.
fn explicit_cast(tcx: &TimeCx, x: Expr, from: &Type, to: &Type, span: Span) -> Result<Expr> {
    if from == to {
        return Ok(x);
    }
    if to.is_string() {
        interval_text_allowed(tcx, from, span)?;
    }
    if matches!(from, Type::Array { .. }) {
        if to.is_string() {
            return Ok(array_as_text(tcx, x, from));
        }
        return Err(unsupported(format!("casts of {}", from.name()), span));
    }
    if *from == Type::Bpchar && to.is_string() {
        return Ok(bpchar_to_text(x));
    }
    let allowed = from.is_string()
        || *from == Type::Unknown
        || to.is_string()
        || (from.is_numeric_family() && to.is_numeric_family())
        || (matches!(from, Type::Date | Type::Timestamp | Type::TimestampTz)
            && matches!(to, Type::Date | Type::Timestamp | Type::TimestampTz))
        || (matches!(from, Type::Json | Type::Jsonb) && matches!(to, Type::Json | Type::Jsonb))
        || (from.is_integer() && *to == Type::Bool)
        || (*from == Type::Bool && to.is_integer());
    if !allowed {
        return Err(BindError::new(
            format!("cannot cast type {} to {}", from.name(), to.name()),
            span,
        ));
    }
    if from.is_integer() && to.is_integer() && from != to {
        // Narrowing casts check the range.
        return Ok(Expr::Cast {
            expr: Box::new(x),
            to: to.clone(),
        });
    }
    Ok(cast_to(tcx, x, from, to))
}

/// An array value as its text (`{1,2}`), which is what `::text` and
/// `concat` make of it; other values pass unchanged.
fn array_as_text(tcx: &TimeCx, x: Expr, ty: &Type) -> Expr {
    match ty {
        Type::Array { elem, .. } => Expr::Call {
            func: Func::ArrayText((**elem).clone(), tcx.clone()),
            args: vec![x],
            ty: Type::Text,
        },
        _ => x,
    }
}

pub(super) fn expect_bool(ty: &Type, what: &str, span: Span) -> Result<()> {
    if matches!(ty, Type::Bool | Type::Unknown) {
        Ok(())
    } else {
        Err(BindError::new(
            format!("{what} must be type boolean, not type {}", ty.name()),
            span,
        ))
    }
}

/// `-literal`, folded; `-2147483648` is an int4 as in Postgres.
fn negate_literal(d: &Datum, ty: &Type) -> Option<(Expr, Type)> {
    Some(match d {
        Datum::Int(i) => {
            let v = i.checked_neg()?;
            let t = if *ty == Type::Int8 && i32::try_from(v).is_ok() && *i == 2147483648 {
                Type::Int4
            } else {
                ty.clone()
            };
            (Expr::Literal(Datum::Int(v)), t)
        }
        Datum::Numeric(n) => (Expr::Literal(Datum::Numeric(n.neg())), ty.clone()),
        Datum::Float8(f) => (
            Expr::Literal(Datum::Float8(crate::repr::F64(-f.0))),
            ty.clone(),
        ),
        Datum::Null => (Expr::Literal(Datum::Null), ty.clone()),
        _ => return None,
    })
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

/// An operand of a comparison made in type `ty`: coerced to it, and for
/// char(n) stripped of its padding, since trailing spaces are not significant
/// when Postgres compares char(n) values (the comparison is then on text).
pub(super) fn comparand(tcx: &TimeCx, e: Expr, from: &Type, ty: &Type, span: Span) -> Result<Expr> {
    let e = coerce(tcx, e, from, ty, span)?;
    Ok(if *ty == Type::Bpchar {
        bpchar_to_text(e)
    } else {
        e
    })
}

/// Converts `e` of type `from` to `to`: untyped string literals are parsed as
/// `to`, numbers are widened.
pub(super) fn coerce(tcx: &TimeCx, e: Expr, from: &Type, to: &Type, span: Span) -> Result<Expr> {
    if *from == Type::Unknown {
        if let Some(placeholder) = super::params::record(&e, to) {
            return Ok(placeholder);
        }
        if let Expr::Literal(Datum::Text(s)) = &e {
            if *to == Type::Unknown || to.is_string() {
                return Ok(e);
            }
            return Datum::from_text_in(to, s, tcx)
                .map(Expr::Literal)
                .map_err(|er| BindError::new(er.0, span));
        }
        return Ok(e);
    }
    Ok(cast_to(tcx, e, from, to))
}

/// `->`, `->>`, `#>`, `#>>` on json and jsonb.
fn bind_json_access(
    op: &BinaryOperator,
    l: Expr,
    lt: Type,
    r: Expr,
    rt: Type,
    span: Span,
) -> Result<(Expr, Type)> {
    let as_text = matches!(
        op,
        BinaryOperator::LongArrow | BinaryOperator::HashLongArrow
    );
    let mismatch = || {
        BindError::new(
            format!("operator does not exist: {} {op} {}", lt.name(), rt.name()),
            span,
        )
    };
    if !matches!(lt, Type::Json | Type::Jsonb) {
        return Err(mismatch());
    }
    let out = if as_text { Type::Text } else { lt.clone() };
    let func = match op {
        BinaryOperator::Arrow | BinaryOperator::LongArrow => {
            let r = match &rt {
                t if t.is_integer() => r,
                Type::Bpchar => bpchar_to_text(r),
                t if t.is_string() || *t == Type::Unknown => r,
                _ => return Err(mismatch()),
            };
            return call(Func::JsonGet { as_text }, vec![l, r], out, span);
        }
        _ => {
            let steps = match &r {
                Expr::Literal(Datum::Text(lit)) => {
                    crate::repr::json::parse_path(lit).ok_or_else(|| {
                        BindError::new(format!("malformed array literal: \"{lit}\""), span)
                    })?
                }
                // A text[] constant (`'{a,0}'::text[]`, as view definitions
                // write paths).
                Expr::Literal(Datum::Json(arr)) if matches!(&rt, Type::Array { elem, .. } if elem.is_string()) =>
                {
                    let path = crate::repr::json::Value::parse(arr)
                        .map_err(|e| BindError::new(e, span))?;
                    let crate::repr::json::Value::Array(items) = path else {
                        return Err(mismatch());
                    };
                    let mut steps = Vec::new();
                    for item in items {
                        match item {
                            crate::repr::json::Value::String(s) => steps.push(s),
                            // A NULL step finds nothing.
                            _ => return Ok((Expr::Literal(Datum::Null), out)),
                        }
                    }
                    steps
                }
                _ => {
                    return Err(unsupported(
                        format!("{op} with a path that is not a constant"),
                        span,
                    ))
                }
            };
            Func::JsonPath { steps, as_text }
        }
    };
    call(func, vec![l], out, span)
}

/// Operand and result types of arithmetic involving intervals: `None` if no
/// interval (or timestamp difference) is involved, `Some(None)` if the
/// combination does not exist.
#[allow(clippy::type_complexity)]
fn interval_types(op: BinOp, lt: &Type, rt: &Type) -> Option<Option<(Type, Type, Type)>> {
    use Type::*;
    let is_time = |t: &Type| matches!(t, Date | Timestamp | TimestampTz);
    // A date meets an interval as a timestamp.
    let ts = |t: &Type| if *t == Date { Timestamp } else { t.clone() };
    let unknown_as_interval = |t: &Type| if *t == Unknown { Interval } else { t.clone() };
    match (lt, rt) {
        (Interval, _) | (_, Interval) => {}
        (a, b) if op == BinOp::Sub && matches!(a, Timestamp | TimestampTz) && a == b => {
            return Some(Some((a.clone(), b.clone(), Interval)));
        }
        _ => return None,
    }
    let (lt, rt) = (unknown_as_interval(lt), unknown_as_interval(rt));
    Some(match (op, &lt, &rt) {
        (BinOp::Add | BinOp::Sub, Interval, Interval) => Some((Interval, Interval, Interval)),
        (BinOp::Add | BinOp::Sub, t, Interval) if is_time(t) => Some((ts(t), Interval, ts(t))),
        (BinOp::Add, Interval, t) if is_time(t) => Some((Interval, ts(t), ts(t))),
        (BinOp::Mul, Interval, n) if n.is_numeric_family() => Some((Interval, n.clone(), Interval)),
        (BinOp::Mul, n, Interval) if n.is_numeric_family() => Some((n.clone(), Interval, Interval)),
        (BinOp::Div, Interval, n) if n.is_numeric_family() => Some((Interval, n.clone(), Interval)),
        _ => None,
    })
}

/// `a ~~ b` and its kin, the operators LIKE and ILIKE are: as the LIKE
/// expression they stand for.
fn like_operator(left: &ast::Expr, op: &BinaryOperator, right: &ast::Expr) -> Option<ast::Expr> {
    let (negated, ci) = match op {
        BinaryOperator::PGLikeMatch => (false, false),
        BinaryOperator::PGNotLikeMatch => (true, false),
        BinaryOperator::PGILikeMatch => (false, true),
        BinaryOperator::PGNotILikeMatch => (true, true),
        _ => return None,
    };
    let (expr, pattern) = (Box::new(left.clone()), Box::new(right.clone()));
    Some(if ci {
        ast::Expr::ILike {
            negated,
            any: false,
            expr,
            pattern,
            escape_char: None,
        }
    } else {
        ast::Expr::Like {
            negated,
            any: false,
            expr,
            pattern,
            escape_char: None,
        }
    })
}

pub(super) fn bind_binary(
    tcx: &TimeCx,
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
    let folded = |e: Expr, ty: Type| -> Result<(Expr, Type)> { Ok((fold(e, span)?, ty)) };
    match bop {
        BinOp::And | BinOp::Or => {
            expect_bool(&lt, &format!("argument of {}", bop.symbol()), span)?;
            expect_bool(&rt, &format!("argument of {}", bop.symbol()), span)?;
            folded(bin(l, r, Type::Bool), Type::Bool)
        }
        op if op.is_comparison() => {
            let ty = comparison_type(&lt, &rt).ok_or_else(mismatch)?;
            if let Type::Array { elem, .. } = &ty {
                // Equal arrays of these element types have equal JSON text
                // (numerics, floats, char(n), json and intervals do not).
                let exact = elem.is_integer()
                    || matches!(
                        **elem,
                        Type::Text
                            | Type::Varchar
                            | Type::Bool
                            | Type::Date
                            | Type::Timestamp
                            | Type::TimestampTz
                            | Type::Uuid
                            | Type::Enum { .. }
                    );
                if !(exact && matches!(bop, BinOp::Eq | BinOp::NotEq)) {
                    return Err(unsupported(
                        format!("comparing {} arrays with {}", elem.name(), bop.symbol()),
                        span,
                    ));
                }
                if lt != rt && lt != Type::Unknown && rt != Type::Unknown {
                    return Err(mismatch());
                }
            }
            if matches!(ty, Type::Json)
                || !ty.is_orderable() && !matches!(bop, BinOp::Eq | BinOp::NotEq)
            {
                if matches!(ty, Type::Enum { .. }) {
                    return Err(unsupported(
                        format!(
                            "ordering comparison {} on enum type {} (Postgres orders enums by declaration)",
                            bop.symbol(),
                            ty.name()
                        ),
                        span,
                    ));
                }
                return Err(mismatch());
            }
            let l = comparand(tcx, l, &lt, &ty, span)?;
            let r = comparand(tcx, r, &rt, &ty, span)?;
            let ty = if ty == Type::Bpchar { Type::Text } else { ty };
            folded(bin(l, r, ty), Type::Bool)
        }
        BinOp::Concat => {
            // bytea || bytea (an untyped literal reads as bytea) joins bytes.
            let bytea_or_literal = |t: &Type| matches!(t, Type::Bytea | Type::Unknown);
            if (lt == Type::Bytea || rt == Type::Bytea)
                && bytea_or_literal(&lt)
                && bytea_or_literal(&rt)
            {
                let l = coerce(tcx, l, &lt, &Type::Bytea, span)?;
                let r = coerce(tcx, r, &rt, &Type::Bytea, span)?;
                return folded(bin(l, r, Type::Bytea), Type::Bytea);
            }
            // Otherwise text || anything (and anything || text) casts the other
            // side to text. An untyped literal beside jsonb would read as jsonb
            // (jsonb concatenation), and beside an array as an array: refused.
            let text = |e: Expr, t: &Type| -> Result<Expr> {
                match t {
                    Type::Bpchar => Ok(bpchar_to_text(e)),
                    t if t.is_string() || *t == Type::Unknown => Ok(e),
                    Type::Unsupported { .. } | Type::Array { .. } => Err(mismatch()),
                    _ => text_operand(tcx, e, t, span),
                }
            };
            let typed_text = |t: &Type| t.is_string();
            let ok = match (&lt, &rt) {
                (a, b) if typed_text(a) || typed_text(b) => true,
                (Type::Unknown, Type::Jsonb) | (Type::Jsonb, Type::Unknown) => {
                    return Err(unsupported("jsonb || jsonb (jsonb concatenation)", span))
                }
                (Type::Unknown, _) | (_, Type::Unknown) => true,
                _ => false,
            };
            if !ok {
                return Err(mismatch());
            }
            let (l, r) = (text(l, &lt)?, text(r, &rt)?);
            folded(bin(l, r, Type::Text), Type::Text)
        }
        _ => {
            if let Some(done) = interval_types(bop, &lt, &rt) {
                let (lc, rc, ty) = done.ok_or_else(mismatch)?;
                let l = coerce(tcx, l, &lt, &lc, span)?;
                let r = coerce(tcx, r, &rt, &rc, span)?;
                if ty == Type::TimestampTz && !tcx.is_utc() {
                    // Months and days step the wall-clock time in the zone.
                    let (ts, iv) = if lc == Type::Interval { (r, l) } else { (l, r) };
                    let iv = if bop == BinOp::Sub {
                        Expr::Neg(Box::new(iv), Type::Interval)
                    } else {
                        iv
                    };
                    return call(Func::AddInterval(tcx.clone()), vec![ts, iv], ty, span);
                }
                return folded(bin(l, r, ty.clone()), ty);
            }
            // Date arithmetic: date ± integer and date - date.
            match (&lt, &rt, bop) {
                (Type::Date, t, BinOp::Add | BinOp::Sub) if t.is_integer() => {
                    return folded(bin(l, r, Type::Date), Type::Date)
                }
                (t, Type::Date, BinOp::Add) if t.is_integer() => {
                    return folded(bin(l, r, Type::Date), Type::Date)
                }
                (Type::Date, Type::Date, BinOp::Sub) => {
                    return folded(bin(l, r, Type::Int4), Type::Int4)
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
            let l = coerce(tcx, l, &lt, &ty, span)?;
            let r = coerce(tcx, r, &rt, &ty, span)?;
            folded(bin(l, r, ty.clone()), ty)
        }
    }
}
