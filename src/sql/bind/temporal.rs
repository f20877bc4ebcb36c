//! Time-based conditions: `now()`, `current_timestamp`, `current_date`,
//! `localtimestamp` compared with a row's value in WHERE or HAVING
//! (`updated_at > now() - interval '15 minutes'`, `due < current_date`).
//! Each becomes a [`TemporalBound`]: the row side bound as usual, the clock
//! side bound over a one-column row holding the clock, which must not
//! decrease as the clock moves (so the row's condition changes at most once
//! each way, at instants the dataflow can find). Anywhere else these
//! functions stay refused.

use sqlparser::ast::{self as ast, BinaryOperator, Spanned};

use super::scalar::bind_binary;
use super::{object_name_parts, unsupported, Binder, ExprCx, Result, Scope};
use crate::repr::Type;
use crate::sql::expr::{BinOp, Expr, Func};
use crate::sql::plan::{TemporalBound, TemporalOp};
use crate::sql::BindError;

/// The functions a time-based condition may read the clock through.
pub fn is_clock_name(name: &str) -> bool {
    matches!(
        name,
        "now"
            | "current_timestamp"
            | "current_date"
            | "localtimestamp"
            | "transaction_timestamp"
            | "statement_timestamp"
    )
}

/// Whether the expression reads the clock at this query level.
pub fn mentions_now(e: &ast::Expr) -> bool {
    super::calls_here(
        e,
        |f| matches!(object_name_parts(&f.name).as_slice(), [n] if is_clock_name(n)),
    )
}

fn shape_error(span: sqlparser::tokenizer::Span) -> BindError {
    unsupported(
        "a time-based condition other than `value OP f(now())` in WHERE or HAVING, where OP is <, <=, >, >=, = or BETWEEN and f is now(), current_timestamp, current_date or localtimestamp plus or minus constant intervals (a row leaves or enters the view when the clock passes that moment)",
        span,
    )
}

/// Whether `e` (over the clock row) never decreases as the clock moves:
/// the clock, casts between dates and times, date_trunc, and adding or
/// subtracting constants.
fn monotone(e: &Expr) -> bool {
    fn constant(e: &Expr) -> bool {
        e.max_column().is_none()
    }
    match e {
        Expr::Column(0) => true,
        Expr::Literal(_) => true,
        Expr::Cast { expr, to } => {
            matches!(to, Type::Date | Type::Timestamp | Type::TimestampTz) && monotone(expr)
        }
        Expr::Call { func, args, .. } => match func {
            Func::ToLocal(_) | Func::FromLocal(_) => args.len() == 1 && monotone(&args[0]),
            Func::DateTrunc(_) | Func::DateTruncIn(..) => {
                args.iter().all(|a| constant(a) || monotone(a))
                    && args.iter().filter(|a| !constant(a)).count() <= 1
            }
            Func::AddInterval(_) => args.len() == 2 && monotone(&args[0]) && constant(&args[1]),
            _ => constant(e),
        },
        Expr::Binary {
            op: BinOp::Add,
            left,
            right,
            ..
        } => (monotone(left) && constant(right)) || (constant(left) && monotone(right)),
        Expr::Binary {
            op: BinOp::Sub,
            left,
            right,
            ..
        } => monotone(left) && constant(right),
        other => constant(other),
    }
}

impl<'a> Binder<'a> {
    /// A WHERE or HAVING conjunct that reads the clock, as bounds on when
    /// each row is in the view. `cx` binds the row side (in HAVING, over the
    /// groups).
    pub(super) fn bind_temporal(
        &self,
        p: &ast::Expr,
        cx: &mut ExprCx<'_>,
    ) -> Result<Vec<TemporalBound>> {
        let span = p.span();
        match p {
            ast::Expr::Nested(inner) => self.bind_temporal(inner, cx),
            ast::Expr::BinaryOp { left, op, right } => {
                let (l_now, r_now) = (mentions_now(left), mentions_now(right));
                let (row, clock, op) = match (l_now, r_now) {
                    (false, true) => (left, right, op.clone()),
                    // `f(now) OP value` is `value OP' f(now)`.
                    (true, false) => {
                        let flipped = match op {
                            BinaryOperator::Lt => BinaryOperator::Gt,
                            BinaryOperator::LtEq => BinaryOperator::GtEq,
                            BinaryOperator::Gt => BinaryOperator::Lt,
                            BinaryOperator::GtEq => BinaryOperator::LtEq,
                            other => other.clone(),
                        };
                        (right, left, flipped)
                    }
                    _ => return Err(shape_error(span)),
                };
                let top = match op {
                    BinaryOperator::Lt => TemporalOp::Lt,
                    BinaryOperator::LtEq => TemporalOp::Le,
                    BinaryOperator::Gt => TemporalOp::Gt,
                    BinaryOperator::GtEq => TemporalOp::Ge,
                    BinaryOperator::Eq => TemporalOp::Eq,
                    _ => return Err(shape_error(span)),
                };
                Ok(vec![self.temporal_bound(row, &op, top, clock, cx, span)?])
            }
            ast::Expr::Between {
                expr,
                negated: false,
                low,
                high,
            } if !mentions_now(expr) => Ok(vec![
                self.temporal_bound(expr, &BinaryOperator::GtEq, TemporalOp::Ge, low, cx, span)?,
                self.temporal_bound(expr, &BinaryOperator::LtEq, TemporalOp::Le, high, cx, span)?,
            ]),
            _ => Err(shape_error(span)),
        }
    }

    fn temporal_bound(
        &self,
        row: &ast::Expr,
        op: &BinaryOperator,
        top: TemporalOp,
        clock: &ast::Expr,
        cx: &mut ExprCx<'_>,
        span: sqlparser::tokenizer::Span,
    ) -> Result<TemporalBound> {
        if super::subquery::contains_subquery(row) || super::subquery::contains_subquery(clock) {
            return Err(unsupported("a subquery in a time-based condition", span));
        }
        let (re, rt) = self.bind_expr(row, cx)?;
        // The clock side reads nothing but the clock (column 0) and constants.
        let empty = Scope::default();
        let mut ccx = ExprCx::new(&empty, None, None);
        let was = self.now_column.replace(true);
        let bound = self.bind_expr(clock, &mut ccx);
        self.now_column.set(was);
        let (ce, ct) = match bound {
            Ok(b) => b,
            Err(e) if e.message.starts_with("column") || e.message.starts_with("missing FROM") => {
                return Err(shape_error(span))
            }
            Err(e) => return Err(e),
        };
        let (cmp, _) = bind_binary(&self.time, op, re, rt, ce, ct, span)?;
        let Expr::Binary { left, right, .. } = cmp else {
            return Err(shape_error(span));
        };
        if right.max_column() != Some(0) || !monotone(&right) {
            return Err(shape_error(span));
        }
        Ok(TemporalBound {
            row: *left,
            op: top,
            now: *right,
        })
    }
}
