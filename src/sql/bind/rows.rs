//! Row constructors: `(a, b)` and `ROW(a, b)` compared with `=`, `<>`, `<`,
//! `<=`, `>`, `>=` (pairwise, lexicographic for the orderings, with SQL's
//! NULL rules), and `(a, b) [NOT] IN (SELECT x, y ...)` at the top of WHERE
//! (see `subquery.rs`).

use sqlparser::ast::{self as ast, BinaryOperator, Spanned};

use super::{object_name_parts, Binder, ExprCx, Result};
use crate::repr::Type;
use crate::sql::expr::Expr;
use crate::sql::BindError;

/// The fields of a row constructor, if `e` is one.
pub fn row_items(e: &ast::Expr) -> Option<Vec<&ast::Expr>> {
    match e {
        ast::Expr::Tuple(items) => Some(items.iter().collect()),
        ast::Expr::Nested(inner) => row_items(inner),
        ast::Expr::Function(f) if f.over.is_none() => {
            if object_name_parts(&f.name).as_slice() != ["row"] {
                return None;
            }
            match &f.args {
                ast::FunctionArguments::List(l) => l
                    .args
                    .iter()
                    .map(|a| match a {
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Some(e),
                        _ => None,
                    })
                    .collect(),
                ast::FunctionArguments::None => Some(vec![]),
                _ => None,
            }
        }
        _ => None,
    }
}

fn and(a: ast::Expr, b: ast::Expr) -> ast::Expr {
    ast::Expr::BinaryOp {
        left: Box::new(a),
        op: BinaryOperator::And,
        right: Box::new(b),
    }
}

fn or(a: ast::Expr, b: ast::Expr) -> ast::Expr {
    ast::Expr::BinaryOp {
        left: Box::new(a),
        op: BinaryOperator::Or,
        right: Box::new(b),
    }
}

fn cmp(a: &ast::Expr, op: BinaryOperator, b: &ast::Expr) -> ast::Expr {
    ast::Expr::BinaryOp {
        left: Box::new(ast::Expr::Nested(Box::new(a.clone()))),
        op,
        right: Box::new(ast::Expr::Nested(Box::new(b.clone()))),
    }
}

impl<'a> Binder<'a> {
    /// `row OP row`: `=` is every pair equal, `<>` some pair unequal; an
    /// ordering compares the first pair that is not equal (`(a, b) < (c, d)`
    /// is `a < c OR (a = c AND b < d)`), which gives SQL's NULL when that
    /// pair has a NULL. `None` when the operands are not both rows.
    pub(super) fn bind_row_comparison(
        &self,
        left: &ast::Expr,
        op: &BinaryOperator,
        right: &ast::Expr,
        cx: &mut ExprCx<'_>,
    ) -> Option<Result<(Expr, Type)>> {
        let (l, r) = (row_items(left)?, row_items(right)?);
        let span = left.span().union(&right.span());
        if l.len() != r.len() || l.is_empty() {
            return Some(Err(BindError::new(
                "unequal number of entries in row expressions",
                span,
            )));
        }
        let pairs: Vec<(&ast::Expr, &ast::Expr)> = l.into_iter().zip(r).collect();
        let expanded = match op {
            BinaryOperator::Eq => pairs
                .iter()
                .map(|(a, b)| cmp(a, BinaryOperator::Eq, b))
                .reduce(and),
            BinaryOperator::NotEq => pairs
                .iter()
                .map(|(a, b)| cmp(a, BinaryOperator::NotEq, b))
                .reduce(or),
            BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq => {
                let strict = match op {
                    BinaryOperator::LtEq => BinaryOperator::Lt,
                    BinaryOperator::GtEq => BinaryOperator::Gt,
                    o => o.clone(),
                };
                // From the last pair back: last uses `op`, earlier ones the
                // strict form, each guarded by equality of the pairs before.
                let mut acc: Option<ast::Expr> = None;
                for (i, (a, b)) in pairs.iter().enumerate().rev() {
                    let here = if i + 1 == pairs.len() {
                        cmp(a, op.clone(), b)
                    } else {
                        cmp(a, strict.clone(), b)
                    };
                    acc = Some(match acc {
                        None => here,
                        Some(rest) => or(here, and(cmp(a, BinaryOperator::Eq, b), rest)),
                    });
                }
                acc
            }
            other => {
                return Some(Err(BindError::new(
                    format!("operator {other} is not supported for row expressions"),
                    span,
                )))
            }
        };
        let e = expanded.expect("at least one pair");
        Some(self.bind_expr(&ast::Expr::Nested(Box::new(e)), cx))
    }
}
