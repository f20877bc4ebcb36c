//! Window function calls (`f(...) OVER (PARTITION BY ... ORDER BY ... frame)`,
//! named `WINDOW` clauses): each call becomes a column of a [`Plan::Window`]
//! computed after WHERE, GROUP BY and HAVING, and read by the select list and
//! ORDER BY through a placeholder column until the window exists.

use sqlparser::ast::{
    self as ast, BinaryOperator, FunctionArg, FunctionArgExpr, FunctionArguments, NamedWindowExpr,
    Spanned, WindowFrameBound, WindowFrameUnits, WindowType,
};
use sqlparser::tokenizer::Span;

use super::scalar::{coerce, common_type};
use super::{aggregate, ident_name, unsupported, Binder, ExprCx, Result, Scope};
use crate::repr::{Datum, Type};
use crate::sql::expr::Expr;
use crate::sql::plan::{Frame, FrameBound, FrameExclude, FrameUnits, Plan, WindowFunc, WindowKind};
use crate::sql::BindError;

/// Column numbers from here up stand for window function results until the
/// window is built (above [`aggregate::POST_BASE`]'s range).
pub const WIN_BASE: usize = 1 << 41;

/// One window function call, with its window.
pub struct WinCall {
    pub partition: Vec<Expr>,
    pub order: Vec<(Expr, bool, bool)>,
    pub func: WindowFunc,
}

/// The window calls of a SELECT's list and ORDER BY, and its named windows.
pub struct WinContext {
    named: Vec<(String, NamedWindowExpr)>,
    pub calls: Vec<WinCall>,
}

impl WinContext {
    pub fn new(s: &ast::Select) -> Self {
        WinContext {
            named: s
                .named_window
                .iter()
                .map(|d| (ident_name(&d.0), d.1.clone()))
                .collect(),
            calls: Vec::new(),
        }
    }
}

/// Whether the expression calls a window function of this query level.
pub fn contains_window(e: &ast::Expr) -> bool {
    super::calls_here(e, |f| f.over.is_some())
}

/// The window's parts as written, after resolving named windows.
struct Spec {
    partition: Vec<ast::Expr>,
    order: Vec<ast::OrderByExpr>,
    frame: Option<ast::WindowFrame>,
}

fn named(defs: &[(String, NamedWindowExpr)], id: &ast::Ident) -> Result<Spec> {
    let name = ident_name(id);
    let Some((_, def)) = defs.iter().find(|(n, _)| *n == name) else {
        return Err(BindError::new(
            format!("window \"{name}\" does not exist"),
            id.span,
        ));
    };
    match def {
        NamedWindowExpr::WindowSpec(w) => {
            let mut spec = match &w.window_name {
                Some(base) => named_base(defs, base, w)?,
                None => Spec {
                    partition: w.partition_by.clone(),
                    order: w.order_by.clone(),
                    frame: None,
                },
            };
            spec.frame = w.window_frame.clone();
            Ok(spec)
        }
        NamedWindowExpr::NamedWindow(other) => named(defs, other),
    }
}

/// `OVER (w ORDER BY ...)`: window `w` with more clauses, by SQL's rules.
fn named_base(
    defs: &[(String, NamedWindowExpr)],
    base: &ast::Ident,
    w: &ast::WindowSpec,
) -> Result<Spec> {
    let b = named(defs, base)?;
    let name = ident_name(base);
    if !w.partition_by.is_empty() {
        return Err(BindError::new(
            format!("cannot override PARTITION BY clause of window \"{name}\""),
            base.span,
        ));
    }
    if !b.order.is_empty() && !w.order_by.is_empty() {
        return Err(BindError::new(
            format!("cannot override ORDER BY clause of window \"{name}\""),
            base.span,
        ));
    }
    if b.frame.is_some() {
        return Err(BindError::new(
            format!("cannot copy window \"{name}\" because it has a frame clause"),
            base.span,
        ));
    }
    Ok(Spec {
        partition: b.partition,
        order: if b.order.is_empty() {
            w.order_by.clone()
        } else {
            b.order
        },
        frame: None,
    })
}

impl<'a> Binder<'a> {
    /// A window function call: its window's parts and arguments are bound
    /// over the query's row (in an aggregating query, its groups), and the
    /// call is read through a placeholder column.
    pub(super) fn bind_window_call(
        &self,
        f: &ast::Function,
        name: &str,
        cx: &mut ExprCx<'_>,
    ) -> Result<(Expr, Type)> {
        let span = f.span();
        let Some(mut win) = cx.win.take() else {
            return Err(BindError::new(
                "window functions are not allowed here (only in the select list and ORDER BY)",
                span,
            ));
        };
        // Window calls cannot nest: while its parts are bound there is no
        // window context.
        let result = self.bind_window_parts(f, name, &win, cx);
        let (call, ty) = match result {
            Ok(r) => r,
            Err(e) => {
                cx.win = Some(win);
                return Err(e);
            }
        };
        let id = match win.calls.iter().position(|c| {
            c.func == call.func && c.partition == call.partition && c.order == call.order
        }) {
            Some(i) => i,
            None => {
                win.calls.push(call);
                win.calls.len() - 1
            }
        };
        cx.win = Some(win);
        Ok((Expr::Column(WIN_BASE + id), ty))
    }

    fn bind_window_parts(
        &self,
        f: &ast::Function,
        name: &str,
        win: &WinContext,
        cx: &mut ExprCx<'_>,
    ) -> Result<(WinCall, Type)> {
        let span = f.span();
        let spec = match f.over.as_ref().expect("a window call has OVER") {
            WindowType::NamedWindow(id) => named(&win.named, id)?,
            WindowType::WindowSpec(w) => match &w.window_name {
                Some(base) => {
                    let mut s = named_base(&win.named, base, w)?;
                    s.frame = w.window_frame.clone();
                    s
                }
                None => Spec {
                    partition: w.partition_by.clone(),
                    order: w.order_by.clone(),
                    frame: w.window_frame.clone(),
                },
            },
        };
        let mut partition = Vec::new();
        for p in &spec.partition {
            if contains_window(p) {
                return Err(BindError::new(
                    "window functions are not allowed in window definitions",
                    p.span(),
                ));
            }
            let (e, ty) = self.bind_expr(p, cx)?;
            if matches!(ty, Type::Unsupported { .. }) {
                return Err(unsupported(
                    format!("PARTITION BY type {}", ty.name()),
                    p.span(),
                ));
            }
            partition.push(e);
        }
        let mut order = Vec::new();
        let mut order_types = Vec::new();
        for o in &spec.order {
            if contains_window(&o.expr) {
                return Err(BindError::new(
                    "window functions are not allowed in window definitions",
                    o.expr.span(),
                ));
            }
            let (e, ty) = self.bind_expr(&o.expr, cx)?;
            self.text_order_allowed("a window's ORDER BY", &ty, &[&o.expr], o.expr.span())?;
            if !ty.is_orderable() {
                return Err(unsupported(
                    format!("ordering by type {}", ty.name()),
                    o.expr.span(),
                ));
            }
            let (desc, nulls_first) = super::sort_options(o)?;
            order.push((e, desc, nulls_first));
            order_types.push(ty);
        }
        let frame = match &spec.frame {
            None => Frame::default_frame(),
            Some(fr) => self.bind_frame(fr, &spec.order, &mut order, &order_types, cx, span)?,
        };
        let args: Vec<&ast::Expr> = match &f.args {
            FunctionArguments::None => vec![],
            FunctionArguments::List(l) => {
                if l.duplicate_treatment.is_some() {
                    return Err(BindError::new(
                        "DISTINCT is not implemented for window functions",
                        span,
                    ));
                }
                if !l.clauses.is_empty() {
                    return Err(BindError::new(
                        "aggregate ORDER BY is not implemented for window functions",
                        span,
                    ));
                }
                let mut v = Vec::new();
                for a in &l.args {
                    match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => v.push(e),
                        FunctionArg::Unnamed(FunctionArgExpr::Wildcard) if name == "count" => {}
                        other => {
                            return Err(BindError::new(
                                format!("{name}({other}) is not valid"),
                                span,
                            ))
                        }
                    }
                }
                v
            }
            FunctionArguments::Subquery(_) => {
                return Err(unsupported("a subquery as function argument list", span))
            }
        };
        for a in &args {
            if contains_window(a) {
                return Err(BindError::new(
                    "window function calls cannot be nested",
                    a.span(),
                ));
            }
        }
        let (func, ty) = if aggregate::is_aggregate_name(name) {
            if f.filter.is_some() && args.is_empty() && name != "count" {
                return Err(BindError::new(format!("{name}() needs an argument"), span));
            }
            let agg = self.bind_aggregate_parts(f, name, &args, &[], false, cx)?;
            let ty = agg.output_type.clone();
            (
                WindowFunc {
                    kind: WindowKind::Agg(agg.func),
                    args: vec![],
                    frame,
                    agg: Some(agg),
                    output_type: ty.clone(),
                },
                ty,
            )
        } else {
            if f.filter.is_some() {
                return Err(BindError::new(
                    "FILTER is not implemented for non-aggregate window functions",
                    span,
                ));
            }
            self.bind_window_function(name, &args, frame, cx, span)?
        };
        Ok((
            WinCall {
                partition,
                order,
                func,
            },
            ty,
        ))
    }

    fn bind_window_function(
        &self,
        name: &str,
        args: &[&ast::Expr],
        frame: Frame,
        cx: &mut ExprCx<'_>,
        span: Span,
    ) -> Result<(WindowFunc, Type)> {
        let no_fn = |types: &[Type]| {
            let names: Vec<&str> = types.iter().map(|t| t.name()).collect();
            BindError::new(
                format!("function {name}({}) does not exist", names.join(", ")),
                span,
            )
        };
        let mut bound = Vec::new();
        for a in args {
            bound.push(self.bind_expr(a, cx)?);
        }
        let types: Vec<Type> = bound.iter().map(|(_, t)| t.clone()).collect();
        let int = |i: usize, bound: &mut Vec<(Expr, Type)>| -> Result<()> {
            let (e, t) = bound[i].clone();
            if !(t.is_integer() || t == Type::Unknown) {
                return Err(no_fn(&types));
            }
            let e = coerce(&self.time, e, &t, &Type::Int8, span)?;
            bound[i] = (e, Type::Int8);
            Ok(())
        };
        let (kind, ty) = match (name, bound.len()) {
            ("row_number", 0) => (WindowKind::RowNumber, Type::Int8),
            ("rank", 0) => (WindowKind::Rank, Type::Int8),
            ("dense_rank", 0) => (WindowKind::DenseRank, Type::Int8),
            ("percent_rank", 0) => (WindowKind::PercentRank, Type::Float8),
            ("cume_dist", 0) => (WindowKind::CumeDist, Type::Float8),
            ("ntile", 1) => {
                int(0, &mut bound)?;
                (WindowKind::Ntile, Type::Int4)
            }
            ("lag" | "lead", 1..=3) => {
                if bound.len() >= 2 {
                    int(1, &mut bound)?;
                }
                let mut ty = match &bound[0].1 {
                    Type::Unknown => Type::Text,
                    t => t.clone(),
                };
                if bound.len() == 3 {
                    let dt = bound[2].1.clone();
                    ty = common_type(&ty, &dt).ok_or_else(|| no_fn(&types))?;
                    let (d, _) = bound[2].clone();
                    bound[2] = (coerce(&self.time, d, &dt, &ty, span)?, ty.clone());
                }
                let (v, vt) = bound[0].clone();
                bound[0] = (coerce(&self.time, v, &vt, &ty, span)?, ty.clone());
                let kind = if name == "lag" {
                    WindowKind::Lag
                } else {
                    WindowKind::Lead
                };
                (kind, ty)
            }
            ("first_value" | "last_value", 1) => {
                let kind = if name == "first_value" {
                    WindowKind::FirstValue
                } else {
                    WindowKind::LastValue
                };
                (kind, bound[0].1.clone())
            }
            ("nth_value", 2) => {
                int(1, &mut bound)?;
                (WindowKind::NthValue, bound[0].1.clone())
            }
            (
                "row_number" | "rank" | "dense_rank" | "percent_rank" | "cume_dist" | "ntile"
                | "lag" | "lead" | "first_value" | "last_value" | "nth_value",
                _,
            ) => return Err(no_fn(&types)),
            _ => {
                return Err(BindError::new(
                    format!(
                    "OVER specified, but {name} is not a window function nor an aggregate function"
                ),
                    span,
                ))
            }
        };
        if let Type::Unsupported { name: tn, .. } = &ty {
            return Err(unsupported(format!("{name}() of type {tn}"), span));
        }
        Ok((
            WindowFunc {
                kind,
                args: bound.into_iter().map(|(e, _)| e).collect(),
                frame,
                agg: None,
                output_type: ty.clone(),
            },
            ty,
        ))
    }

    /// A frame clause. Offsets are constants; a RANGE offset moves the one
    /// ORDER BY key (`key - offset` ascending, `key + offset` descending for
    /// PRECEDING), bound here as an expression over the row.
    fn bind_frame(
        &self,
        fr: &ast::WindowFrame,
        order_ast: &[ast::OrderByExpr],
        order: &mut [(Expr, bool, bool)],
        order_types: &[Type],
        cx: &mut ExprCx<'_>,
        span: Span,
    ) -> Result<Frame> {
        let units = match fr.units {
            WindowFrameUnits::Rows => FrameUnits::Rows,
            WindowFrameUnits::Range => FrameUnits::Range,
            WindowFrameUnits::Groups => FrameUnits::Groups,
        };
        if units == FrameUnits::Groups && order.is_empty() {
            return Err(BindError::new(
                "GROUPS mode requires an ORDER BY clause",
                span,
            ));
        }
        let end_ast = fr.end_bound.clone().unwrap_or(WindowFrameBound::CurrentRow);
        // The key's type as the first bound may have changed it (a date key
        // is compared as a timestamp with interval offsets).
        let mut key_types = order_types.to_vec();
        let start = self.bind_frame_bound(
            &fr.start_bound,
            units,
            order_ast,
            order,
            &mut key_types,
            cx,
            span,
        )?;
        let end =
            self.bind_frame_bound(&end_ast, units, order_ast, order, &mut key_types, cx, span)?;
        let rank = |b: &FrameBound| match b {
            FrameBound::UnboundedPreceding => 0,
            FrameBound::Preceding { .. } => 1,
            FrameBound::CurrentRow => 2,
            FrameBound::Following { .. } => 3,
            FrameBound::UnboundedFollowing => 4,
        };
        match (rank(&start), rank(&end)) {
            (4, _) => {
                return Err(BindError::new(
                    "frame start cannot be UNBOUNDED FOLLOWING",
                    span,
                ))
            }
            (_, 0) => {
                return Err(BindError::new(
                    "frame end cannot be UNBOUNDED PRECEDING",
                    span,
                ))
            }
            (2, 1) => {
                return Err(BindError::new(
                    "frame starting from current row cannot have preceding rows",
                    span,
                ))
            }
            (3, 1 | 2) => {
                return Err(BindError::new(
                    "frame starting from following row cannot have preceding rows",
                    span,
                ))
            }
            _ => {}
        }
        let exclude = match fr.exclusion {
            None | Some(ast::WindowFrameExclusion::NoOthers) => FrameExclude::NoOthers,
            Some(ast::WindowFrameExclusion::CurrentRow) => FrameExclude::CurrentRow,
            Some(ast::WindowFrameExclusion::Group) => FrameExclude::Group,
            Some(ast::WindowFrameExclusion::Ties) => FrameExclude::Ties,
        };
        Ok(Frame {
            units,
            start,
            end,
            exclude,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn bind_frame_bound(
        &self,
        b: &WindowFrameBound,
        units: FrameUnits,
        order_ast: &[ast::OrderByExpr],
        order: &mut [(Expr, bool, bool)],
        order_types: &mut [Type],
        cx: &mut ExprCx<'_>,
        span: Span,
    ) -> Result<FrameBound> {
        let (offset, preceding) = match b {
            WindowFrameBound::CurrentRow => return Ok(FrameBound::CurrentRow),
            WindowFrameBound::Preceding(None) => return Ok(FrameBound::UnboundedPreceding),
            WindowFrameBound::Following(None) => return Ok(FrameBound::UnboundedFollowing),
            WindowFrameBound::Preceding(Some(e)) => (e.as_ref(), true),
            WindowFrameBound::Following(Some(e)) => (e.as_ref(), false),
        };
        let make = |count: u64, bound: Option<Expr>| {
            if preceding {
                FrameBound::Preceding { count, bound }
            } else {
                FrameBound::Following { count, bound }
            }
        };
        if units != FrameUnits::Range {
            let scope = Scope::default();
            let mut ccx = ExprCx::new(&scope, None, None);
            let (e, _) = self.bind_expr(offset, &mut ccx)?;
            return match e {
                Expr::Literal(Datum::Int(n)) if n >= 0 => Ok(make(n as u64, None)),
                Expr::Literal(Datum::Int(_)) => Err(BindError::new(
                    "frame starting offset must not be negative",
                    offset.span(),
                )),
                Expr::Literal(Datum::Null) => Err(BindError::new(
                    "frame starting offset must not be null",
                    offset.span(),
                )),
                _ => Err(unsupported(
                    "a frame offset that is not an integer constant",
                    offset.span(),
                )),
            };
        }
        if order.len() != 1 {
            return Err(BindError::new(
                "RANGE with offset PRECEDING/FOLLOWING requires exactly one ORDER BY column",
                span,
            ));
        }
        // The offset must be a non-negative constant. A bare string literal
        // takes the offset type the key's type has (an interval for dates
        // and times, the key's own type for numbers).
        let scope = Scope::default();
        let mut ccx = ExprCx::new(&scope, None, None);
        let (_, raw_ty) = self.bind_expr(offset, &mut ccx)?;
        let typed;
        let offset = if raw_ty == Type::Unknown {
            let target = match &order_types[0] {
                Type::Date | Type::Timestamp | Type::TimestampTz | Type::Interval => {
                    ast::DataType::Interval {
                        fields: None,
                        precision: None,
                    }
                }
                _ => ast::DataType::Custom(
                    ast::ObjectName::from(vec![ast::Ident::new(order_types[0].name())]),
                    vec![],
                ),
            };
            typed = ast::Expr::Cast {
                kind: ast::CastKind::DoubleColon,
                expr: Box::new(offset.clone()),
                data_type: target,
                format: None,
            };
            &typed
        } else {
            offset
        };
        let (off, off_ty) = self.bind_expr(offset, &mut ccx)?;
        if off_ty.is_integer() && !order_types[0].is_numeric_family() {
            // Postgres has no in_range support for date ± integer.
            return Err(BindError::new(
                format!(
                    "RANGE with offset PRECEDING/FOLLOWING is not supported for column type {} and offset type {}",
                    order_types[0].name(),
                    off_ty.name()
                ),
                offset.span(),
            ));
        }
        match &off {
            Expr::Literal(Datum::Null) => {
                return Err(BindError::new(
                    "frame starting offset must not be null",
                    offset.span(),
                ))
            }
            Expr::Literal(d) => {
                if crate::sql::expr::sql_cmp(d, &Datum::Int(0)).is_ok_and(|o| o.is_lt())
                    || matches!(d, Datum::Interval(i) if i.span() < 0)
                {
                    return Err(BindError::new(
                        "invalid preceding or following size in window function",
                        offset.span(),
                    ));
                }
            }
            _ => {
                return Err(unsupported(
                    "a frame offset that is not a constant",
                    offset.span(),
                ))
            }
        }
        let desc = order[0].1;
        let op = if preceding != desc {
            BinaryOperator::Minus
        } else {
            BinaryOperator::Plus
        };
        let moved = ast::Expr::BinaryOp {
            left: Box::new(ast::Expr::Nested(Box::new(order_ast[0].expr.clone()))),
            op,
            right: Box::new(ast::Expr::Nested(Box::new(offset.clone()))),
        };
        let (edge, edge_ty) = self.bind_expr(&moved, cx).map_err(|_| {
            BindError::new(
                format!(
                    "RANGE with offset PRECEDING/FOLLOWING is not supported for column type {} and offset type",
                    order_types[0].name()
                ),
                offset.span(),
            )
        })?;
        let key_ty = order_types[0].clone();
        if edge_ty != key_ty {
            // date ± interval is a timestamp: compare the keys as timestamps.
            let Some(common) = common_type(&key_ty, &edge_ty) else {
                return Err(unsupported(
                    format!(
                        "RANGE offsets of type {} over {}",
                        edge_ty.name(),
                        key_ty.name()
                    ),
                    offset.span(),
                ));
            };
            order[0].0 = coerce(&self.time, order[0].0.clone(), &key_ty, &common, span)?;
            let edge = coerce(&self.time, edge, &edge_ty, &common, span)?;
            order_types[0] = common;
            return Ok(make(0, Some(edge)));
        }
        Ok(make(0, Some(edge)))
    }

    /// Puts the window calls of `win` over `plan` (whose columns the calls'
    /// expressions read): one Window per distinct PARTITION BY/ORDER BY, each
    /// appending its functions. Returns the plan and, per call, its column.
    pub(super) fn build_windows(
        &self,
        mut plan: Plan,
        win: WinContext,
        ties: &[(Expr, bool, bool)],
    ) -> (Plan, Vec<usize>) {
        let mut columns = vec![0; win.calls.len()];
        let mut done = vec![false; win.calls.len()];
        for i in 0..win.calls.len() {
            if done[i] {
                continue;
            }
            let base = plan.arity();
            let mut funcs = Vec::new();
            for j in i..win.calls.len() {
                let (a, b) = (&win.calls[i], &win.calls[j]);
                if !done[j] && a.partition == b.partition && a.order == b.order {
                    done[j] = true;
                    columns[j] = base + funcs.len();
                    funcs.push(b.func.clone());
                }
            }
            plan = Plan::Window {
                input: Box::new(plan),
                partition: win.calls[i].partition.clone(),
                order: win.calls[i].order.clone(),
                ties: ties.to_vec(),
                funcs,
            };
        }
        (plan, columns)
    }
}

/// Replaces window placeholders with the columns the windows put them in.
pub fn substitute(e: &Expr, columns: &[usize]) -> Expr {
    if columns.is_empty() {
        return e.clone();
    }
    e.replace_columns(&|i| {
        if (WIN_BASE..super::srf::SRF_BASE).contains(&i) {
            Expr::Column(columns[i - WIN_BASE])
        } else {
            Expr::Column(i)
        }
    })
}
