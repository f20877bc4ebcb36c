//! Set-returning functions: in FROM (always LATERAL, as in Postgres: the
//! arguments may read the FROM items left of the call), `WITH ORDINALITY`,
//! and in the select list (several side by side are zipped, the shorter
//! padded with NULLs). Both become a [`Plan::FlatMap`] over the rows the
//! arguments read.

use sqlparser::ast::{self as ast, FunctionArg, FunctionArgExpr, Spanned};
use sqlparser::tokenizer::Span;

use super::scalar::coerce;
use super::{
    ident_name, object_name_parts, unsupported, Binder, ExprCx, Outer, Result, Scope, ScopeCol,
};
use crate::repr::Type;
use crate::sql::expr::Expr;
use crate::sql::plan::Plan;
use crate::sql::srf::{Srf, SrfKind};
use crate::sql::BindError;

/// Column numbers from here up stand for select-list set-returning calls
/// until their FlatMap exists (above the window placeholders' range).
pub const SRF_BASE: usize = 1 << 42;

/// Whether `name` is a set-returning function viewcast knows.
pub fn is_srf_name(name: &str) -> bool {
    matches!(
        name,
        "generate_series"
            | "unnest"
            | "json_array_elements"
            | "jsonb_array_elements"
            | "json_array_elements_text"
            | "jsonb_array_elements_text"
            | "json_each"
            | "jsonb_each"
            | "json_each_text"
            | "jsonb_each_text"
            | "json_object_keys"
            | "jsonb_object_keys"
            | "string_to_table"
            | "regexp_split_to_table"
            | "regexp_matches"
            | "generate_subscripts"
    )
}

/// Whether the expression calls a set-returning function of this query
/// level.
pub fn contains_srf(e: &ast::Expr) -> bool {
    super::calls_here(e, |f| {
        f.over.is_none() && matches!(object_name_parts(&f.name).as_slice(), [n] if is_srf_name(n))
    })
}

/// The select list's set-returning calls.
#[derive(Default)]
pub struct SrfContext {
    pub calls: Vec<Srf>,
}

/// A function call in FROM, however sqlparser spells it.
pub struct FromCall<'f> {
    pub name: String,
    pub args: Vec<&'f ast::Expr>,
    pub ordinality: bool,
    pub alias: Option<&'f ast::TableAlias>,
    pub span: Span,
}

fn plain_args(args: &[FunctionArg], span: Span) -> Result<Vec<&ast::Expr>> {
    args.iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            other => Err(unsupported(format!("function argument {other}"), span)),
        })
        .collect()
}

/// The call a FROM item makes, if it is a function call.
pub fn from_call(f: &ast::TableFactor) -> Option<Result<FromCall<'_>>> {
    let span = f.span();
    let plain = |args| plain_args(args, span);
    let call = match f {
        ast::TableFactor::Table {
            name,
            alias,
            args: Some(args),
            with_ordinality,
            ..
        } => (|| {
            Ok(FromCall {
                name: object_name_parts(name).join("."),
                args: plain(&args.args)?,
                ordinality: *with_ordinality,
                alias: alias.as_ref(),
                span,
            })
        })(),
        ast::TableFactor::Function {
            name,
            args,
            with_ordinality,
            alias,
            ..
        } => (|| {
            Ok(FromCall {
                name: object_name_parts(name).join("."),
                args: plain(args)?,
                ordinality: *with_ordinality,
                alias: alias.as_ref(),
                span,
            })
        })(),
        ast::TableFactor::UNNEST {
            alias,
            array_exprs,
            with_offset,
            with_ordinality,
            ..
        } => {
            if *with_offset {
                return Some(Err(unsupported("UNNEST ... WITH OFFSET", span)));
            }
            Ok(FromCall {
                name: "unnest".into(),
                args: array_exprs.iter().collect(),
                ordinality: *with_ordinality,
                alias: alias.as_ref(),
                span,
            })
        }
        _ => return None,
    };
    Some(call)
}

impl<'a> Binder<'a> {
    /// One call of a set-returning function, its arguments bound in `cx`.
    /// `unnest(a, b, ...)` in FROM is one call per array, zipped.
    pub(super) fn bind_srf(
        &self,
        name: &str,
        args: &[&ast::Expr],
        cx: &mut ExprCx<'_>,
        span: Span,
    ) -> Result<Vec<Srf>> {
        for a in args {
            if contains_srf(a) {
                return Err(BindError::new(
                    "set-returning functions must appear at top level of FROM",
                    a.span(),
                ));
            }
        }
        let mut bound = Vec::new();
        for a in args {
            bound.push(self.bind_expr(a, cx)?);
        }
        let types: Vec<Type> = bound.iter().map(|(_, t)| t.clone()).collect();
        let no_fn = || {
            let names: Vec<&str> = types.iter().map(|t| t.name()).collect();
            BindError::new(
                format!("function {name}({}) does not exist", names.join(", ")),
                span,
            )
        };
        let one = |kind: SrfKind, args: Vec<Expr>, out: Vec<Type>| {
            Ok(vec![Srf {
                name: name.to_string(),
                kind,
                args,
                types: out,
            }])
        };
        let json_arg = |bound: &[(Expr, Type)], want: Type| -> Result<Expr> {
            let [(e, t)] = bound else {
                return Err(no_fn());
            };
            match t {
                Type::Unknown => coerce(&self.time, e.clone(), t, &want, span),
                t if *t == want => Ok(e.clone()),
                _ => Err(no_fn()),
            }
        };
        // Two or three text arguments (`string_to_table`,
        // `regexp_split_to_table`, `regexp_matches`); char(n) without its
        // padding.
        let text_args = || -> Result<Vec<Expr>> {
            if !(2..=3).contains(&bound.len()) {
                return Err(no_fn());
            }
            bound
                .iter()
                .map(|(e, t)| match t {
                    Type::Bpchar => Ok(super::scalar::bpchar_to_text(e.clone())),
                    t if t.is_string() || *t == Type::Unknown => Ok(e.clone()),
                    _ => Err(no_fn()),
                })
                .collect()
        };
        match name {
            "generate_series" => {
                if !(2..=3).contains(&bound.len()) {
                    return Err(no_fn());
                }
                let time = types[..2]
                    .iter()
                    .any(|t| matches!(t, Type::Timestamp | Type::TimestampTz | Type::Date));
                if time {
                    if bound.len() != 3 {
                        return Err(no_fn());
                    }
                    let ty = if types[..2].contains(&Type::TimestampTz) {
                        Type::TimestampTz
                    } else {
                        Type::Timestamp
                    };
                    let mut args = Vec::new();
                    for (i, (e, t)) in bound.iter().enumerate() {
                        let want = if i == 2 { Type::Interval } else { ty.clone() };
                        args.push(coerce(&self.time, e.clone(), t, &want, span)?);
                    }
                    let zone = (ty == Type::TimestampTz).then(|| self.time.clone());
                    return one(SrfKind::SeriesTime(zone), args, vec![ty]);
                }
                let ty = if types
                    .iter()
                    .all(|t| matches!(t, Type::Int2 | Type::Int4 | Type::Unknown))
                {
                    Type::Int4
                } else if types.iter().all(|t| t.is_integer() || *t == Type::Unknown) {
                    Type::Int8
                } else if types
                    .iter()
                    .all(|t| t.is_integer() || *t == Type::Numeric || *t == Type::Unknown)
                {
                    Type::Numeric
                } else {
                    return Err(unsupported(
                        format!(
                            "generate_series({})",
                            types
                                .iter()
                                .map(|t| t.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        span,
                    ));
                };
                let calc = if ty == Type::Numeric {
                    Type::Numeric
                } else {
                    Type::Int8
                };
                let mut args = Vec::new();
                for (e, t) in &bound {
                    args.push(coerce(&self.time, e.clone(), t, &calc, span)?);
                }
                one(SrfKind::SeriesNumber, args, vec![ty])
            }
            "unnest" => {
                if bound.is_empty() {
                    return Err(no_fn());
                }
                let mut out = Vec::new();
                for (e, t) in &bound {
                    let Type::Array { elem, .. } = t else {
                        return Err(no_fn());
                    };
                    out.push(Srf {
                        name: "unnest".into(),
                        kind: SrfKind::Unnest((**elem).clone()),
                        args: vec![e.clone()],
                        types: vec![(**elem).clone()],
                    });
                }
                Ok(out)
            }
            "json_array_elements"
            | "jsonb_array_elements"
            | "json_array_elements_text"
            | "jsonb_array_elements_text" => {
                let jt = if name.starts_with("jsonb") {
                    Type::Jsonb
                } else {
                    Type::Json
                };
                let text = name.ends_with("_text");
                let arg = json_arg(&bound, jt.clone())?;
                let out = if text { Type::Text } else { jt };
                one(SrfKind::ArrayElements { text }, vec![arg], vec![out])
            }
            "json_each" | "jsonb_each" | "json_each_text" | "jsonb_each_text" => {
                let jt = if name.starts_with("jsonb") {
                    Type::Jsonb
                } else {
                    Type::Json
                };
                let text = name.ends_with("_text");
                let arg = json_arg(&bound, jt.clone())?;
                let out = if text { Type::Text } else { jt };
                one(SrfKind::Each { text }, vec![arg], vec![Type::Text, out])
            }
            "json_object_keys" | "jsonb_object_keys" => {
                let jt = if name.starts_with("jsonb") {
                    Type::Jsonb
                } else {
                    Type::Json
                };
                let arg = json_arg(&bound, jt)?;
                one(SrfKind::ObjectKeys, vec![arg], vec![Type::Text])
            }
            "string_to_table" => {
                let args = text_args()?;
                one(SrfKind::StringToTable, args, vec![Type::Text])
            }
            "regexp_split_to_table" => {
                let args = text_args()?;
                self.check_pattern(&args[1], args.get(2), name, true, span)?;
                one(SrfKind::RegexpSplit, args, vec![Type::Text])
            }
            "regexp_matches" => {
                let args = text_args()?;
                self.check_pattern(&args[1], args.get(2), name, true, span)?;
                one(
                    SrfKind::RegexpMatches,
                    args,
                    vec![super::scalar::text_array_type()],
                )
            }
            other => Err(unsupported(
                format!("set-returning function {other}()"),
                span,
            )),
        }
    }

    /// The output columns of a FROM call: named by the alias's column list,
    /// else `key`/`value` for the `_each` functions and otherwise the alias
    /// (or the function's name); `ordinality` last.
    pub(super) fn srf_scope(&self, call: &FromCall<'_>, srfs: &[Srf]) -> Result<Scope> {
        let qualifier = call
            .alias
            .map(|a| ident_name(&a.name))
            .unwrap_or_else(|| call.name.rsplit('.').next().unwrap_or("").to_string());
        let mut cols: Vec<ScopeCol> = Vec::new();
        for s in srfs {
            let names: Vec<String> = match s.kind {
                SrfKind::Each { .. } => vec!["key".into(), "value".into()],
                _ if srfs.len() == 1 => vec![qualifier.clone()],
                _ => vec![s.name.clone()],
            };
            for (n, t) in names.into_iter().zip(&s.types) {
                cols.push(ScopeCol::new(Some(qualifier.clone()), n, t.clone()));
            }
        }
        if call.ordinality {
            cols.push(ScopeCol::new(
                Some(qualifier.clone()),
                "ordinality".into(),
                Type::Int8,
            ));
        }
        if let Some(a) = call.alias {
            if a.columns.len() > cols.len() {
                return Err(BindError::new(
                    format!(
                        "table \"{qualifier}\" has {} columns available but {} columns specified",
                        cols.len(),
                        a.columns.len()
                    ),
                    call.span,
                ));
            }
            for (c, n) in cols.iter_mut().zip(&a.columns) {
                c.name = ident_name(&n.name);
            }
        }
        Ok(Scope {
            cols,
            ..Scope::default()
        })
    }

    /// A FROM call over `left` (whose scope `visible` it may read), as a
    /// FlatMap of `left`'s rows; without `left`, over one empty row.
    pub(super) fn bind_from_call(
        &self,
        call: &FromCall<'_>,
        left: Option<(Plan, Scope)>,
        visible: &Scope,
        outer: Option<&Outer<'_>>,
        keep_unmatched: bool,
    ) -> Result<(Plan, Scope)> {
        let (lplan, lscope) = left.unwrap_or((
            Plan::Constant {
                rows: vec![vec![]],
                arity: 0,
            },
            Scope::default(),
        ));
        let mut cx = ExprCx::new(visible, outer, None);
        let srfs = self.bind_srf(&call.name, &call.args, &mut cx, call.span)?;
        if cx.input.is_some() {
            return Err(unsupported(
                "a subquery in the arguments of a function in FROM",
                call.span,
            ));
        }
        let scope = self.srf_scope(call, &srfs)?;
        Ok((
            Plan::FlatMap {
                input: Box::new(lplan),
                funcs: srfs,
                ordinality: call.ordinality,
                outer: keep_unmatched,
            },
            lscope.concat(&scope),
        ))
    }

    /// A set-returning call in the select list: bound over the query's row
    /// and read through a placeholder column until the FlatMap exists.
    pub(super) fn bind_select_srf(
        &self,
        f: &ast::Function,
        name: &str,
        cx: &mut ExprCx<'_>,
    ) -> Result<(Expr, Type)> {
        let span = f.span();
        let Some(mut ctx) = cx.srf.take() else {
            return Err(BindError::new(
                format!("set-returning function {name}() is not allowed here (only in FROM and the select list)"),
                span,
            ));
        };
        let args = self.args(f)?;
        let result = self.bind_srf(name, &args, cx, span);
        let srfs = match result {
            Ok(s) => s,
            Err(e) => {
                cx.srf = Some(ctx);
                return Err(e);
            }
        };
        let [srf] = srfs.as_slice() else {
            cx.srf = Some(ctx);
            return Err(unsupported(
                format!("{name}() of several arrays in the select list (use it in FROM)"),
                span,
            ));
        };
        if srf.types.len() != 1 {
            cx.srf = Some(ctx);
            return Err(unsupported(
                format!("{name}() in the select list, which returns records (use it in FROM: SELECT ... FROM {name}(...) AS e(key, value))"),
                span,
            ));
        }
        let ty = srf.types[0].clone();
        ctx.calls.push(srf.clone());
        let id = ctx.calls.len() - 1;
        cx.srf = Some(ctx);
        Ok((Expr::Column(SRF_BASE + id), ty))
    }
}

/// Replaces select-list SRF placeholders with the columns the FlatMap puts
/// them in (from `first` on).
pub fn substitute(e: &Expr, first: usize, count: usize) -> Expr {
    if count == 0 {
        return e.clone();
    }
    e.replace_columns(&|i| {
        if (SRF_BASE..SRF_BASE + count).contains(&i) {
            Expr::Column(first + i - SRF_BASE)
        } else {
            Expr::Column(i)
        }
    })
}
