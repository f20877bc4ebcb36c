//! Scalar expressions over one row, evaluated with PostgreSQL's semantics:
//! three-valued logic, NULL propagation, integer overflow and division by zero
//! as errors, and the result types Postgres gives.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::repr::datetime::{self, DATE_NEG_INF, DATE_POS_INF};
use crate::repr::{int_bounds, Datum, Numeric, Type, F64};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    Concat,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Eq => "=",
            BinOp::NotEq => "<>",
            BinOp::Lt => "<",
            BinOp::LtEq => "<=",
            BinOp::Gt => ">",
            BinOp::GtEq => ">=",
            BinOp::And => "AND",
            BinOp::Or => "OR",
            BinOp::Concat => "||",
        }
    }
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::NotEq | BinOp::Lt | BinOp::LtEq | BinOp::Gt | BinOp::GtEq
        )
    }
    pub fn is_arithmetic(self) -> bool {
        matches!(
            self,
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod
        )
    }
}

/// A scalar expression; `Column(i)` reads the i-th value of the input row.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Expr {
    Column(usize),
    Literal(Datum),
    Not(Box<Expr>),
    Neg(Box<Expr>, Type),
    /// Arithmetic carries its result type so overflow is checked at that width.
    Binary {
        op: BinOp,
        left: Box<Expr>,
        right: Box<Expr>,
        ty: Type,
    },
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        negated: bool,
        case_insensitive: bool,
    },
    Cast {
        expr: Box<Expr>,
        to: Type,
    },
    /// A numeric value held to `numeric(precision, scale)`, as an explicit cast
    /// with a type modifier does after the cast itself.
    NumericTypmod {
        expr: Box<Expr>,
        precision: u32,
        scale: u32,
    },
    /// Searched CASE: the first branch whose condition is true, else `otherwise`.
    Case {
        branches: Vec<(Expr, Expr)>,
        otherwise: Box<Expr>,
    },
    /// The first non-NULL argument.
    Coalesce(Vec<Expr>),
    /// GREATEST / LEAST: NULLs are ignored; NULL only if all are.
    Extremum {
        args: Vec<Expr>,
        greatest: bool,
    },
    /// `IS [NOT] DISTINCT FROM`: equality where NULL equals NULL.
    IsDistinct {
        left: Box<Expr>,
        right: Box<Expr>,
        negated: bool,
    },
    /// A scalar function (see `func.rs`), with its result type.
    Call {
        func: Func,
        args: Vec<Expr>,
        ty: Type,
    },
}

pub use super::func::Func;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{0}")]
pub struct EvalError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError(msg.into()))
}

impl Expr {
    /// Columns the expression reads.
    pub fn columns(&self, out: &mut Vec<usize>) {
        match self {
            Expr::Column(i) => out.push(*i),
            Expr::Literal(_) => {}
            Expr::Not(e)
            | Expr::Neg(e, _)
            | Expr::IsNull { expr: e, .. }
            | Expr::Cast { expr: e, .. }
            | Expr::NumericTypmod { expr: e, .. } => e.columns(out),
            Expr::Binary { left, right, .. } => {
                left.columns(out);
                right.columns(out);
            }
            Expr::InList { expr, list, .. } => {
                expr.columns(out);
                list.iter().for_each(|e| e.columns(out));
            }
            Expr::Like { expr, pattern, .. } => {
                expr.columns(out);
                pattern.columns(out);
            }
            Expr::Case {
                branches,
                otherwise,
            } => {
                for (c, v) in branches {
                    c.columns(out);
                    v.columns(out);
                }
                otherwise.columns(out);
            }
            Expr::Coalesce(args) | Expr::Extremum { args, .. } | Expr::Call { args, .. } => {
                args.iter().for_each(|e| e.columns(out))
            }
            Expr::IsDistinct { left, right, .. } => {
                left.columns(out);
                right.columns(out);
            }
        }
    }

    pub fn max_column(&self) -> Option<usize> {
        let mut v = Vec::new();
        self.columns(&mut v);
        v.into_iter().max()
    }

    pub fn min_column(&self) -> Option<usize> {
        let mut v = Vec::new();
        self.columns(&mut v);
        v.into_iter().min()
    }

    /// Renumbers column references: `Column(i)` becomes `Column(f(i))`.
    pub fn remap(&self, f: &impl Fn(usize) -> usize) -> Expr {
        self.replace_columns(&|i| Expr::Column(f(i)))
    }

    /// Replaces every column reference `Column(i)` with `f(i)`.
    pub fn replace_columns(&self, f: &impl Fn(usize) -> Expr) -> Expr {
        let b = |e: &Expr| Box::new(e.replace_columns(f));
        let all = |v: &[Expr]| v.iter().map(|e| e.replace_columns(f)).collect::<Vec<_>>();
        match self {
            Expr::Column(i) => f(*i),
            Expr::Case {
                branches,
                otherwise,
            } => Expr::Case {
                branches: branches
                    .iter()
                    .map(|(c, v)| (c.replace_columns(f), v.replace_columns(f)))
                    .collect(),
                otherwise: b(otherwise),
            },
            Expr::Coalesce(args) => Expr::Coalesce(all(args)),
            Expr::Extremum { args, greatest } => Expr::Extremum {
                args: all(args),
                greatest: *greatest,
            },
            Expr::IsDistinct {
                left,
                right,
                negated,
            } => Expr::IsDistinct {
                left: b(left),
                right: b(right),
                negated: *negated,
            },
            Expr::Call { func, args, ty } => Expr::Call {
                func: func.clone(),
                args: all(args),
                ty: ty.clone(),
            },
            Expr::Literal(d) => Expr::Literal(d.clone()),
            Expr::Not(e) => Expr::Not(b(e)),
            Expr::Neg(e, t) => Expr::Neg(b(e), t.clone()),
            Expr::Binary {
                op,
                left,
                right,
                ty,
            } => Expr::Binary {
                op: *op,
                left: b(left),
                right: b(right),
                ty: ty.clone(),
            },
            Expr::IsNull { expr, negated } => Expr::IsNull {
                expr: b(expr),
                negated: *negated,
            },
            Expr::InList {
                expr,
                list,
                negated,
            } => Expr::InList {
                expr: b(expr),
                list: all(list),
                negated: *negated,
            },
            Expr::Like {
                expr,
                pattern,
                negated,
                case_insensitive,
            } => Expr::Like {
                expr: b(expr),
                pattern: b(pattern),
                negated: *negated,
                case_insensitive: *case_insensitive,
            },
            Expr::Cast { expr, to } => Expr::Cast {
                expr: b(expr),
                to: to.clone(),
            },
            Expr::NumericTypmod {
                expr,
                precision,
                scale,
            } => Expr::NumericTypmod {
                expr: b(expr),
                precision: *precision,
                scale: *scale,
            },
        }
    }

    pub fn eval(&self, row: &[Datum]) -> Result<Datum, EvalError> {
        match self {
            Expr::Column(i) => Ok(row.get(*i).cloned().unwrap_or(Datum::Null)),
            Expr::Literal(d) => Ok(d.clone()),
            Expr::Not(e) => Ok(match e.eval(row)? {
                Datum::Bool(b) => Datum::Bool(!b),
                _ => Datum::Null,
            }),
            Expr::Neg(e, ty) => match e.eval(row)? {
                // Floats negate their sign bit: -(0.0) is -0, as in Postgres.
                Datum::Float4(f) => Ok(Datum::Float4(F64(-f.0))),
                Datum::Float8(f) => Ok(Datum::Float8(F64(-f.0))),
                v => arith(BinOp::Sub, &zero_of(ty), &v, ty),
            },
            Expr::Binary {
                op: BinOp::And,
                left,
                right,
                ..
            } => {
                let l = left.eval(row)?;
                if l == Datum::Bool(false) {
                    return Ok(l);
                }
                let r = right.eval(row)?;
                Ok(match (l, r) {
                    (_, Datum::Bool(false)) => Datum::Bool(false),
                    (Datum::Bool(true), Datum::Bool(true)) => Datum::Bool(true),
                    _ => Datum::Null,
                })
            }
            Expr::Binary {
                op: BinOp::Or,
                left,
                right,
                ..
            } => {
                let l = left.eval(row)?;
                if l == Datum::Bool(true) {
                    return Ok(l);
                }
                let r = right.eval(row)?;
                Ok(match (l, r) {
                    (_, Datum::Bool(true)) => Datum::Bool(true),
                    (Datum::Bool(false), Datum::Bool(false)) => Datum::Bool(false),
                    _ => Datum::Null,
                })
            }
            Expr::Binary {
                op,
                left,
                right,
                ty,
            } if *op != BinOp::Concat => {
                // Compared or computed from where they are: a column's
                // value is not copied (a text, a big numeric) to be read.
                let l = left.operand(row)?;
                let r = right.operand(row)?;
                if l.is_null() || r.is_null() {
                    return Ok(Datum::Null);
                }
                if op.is_comparison() {
                    let ord = sql_cmp(&l, &r)?;
                    return Ok(Datum::Bool(match op {
                        BinOp::Eq => ord == Ordering::Equal,
                        BinOp::NotEq => ord != Ordering::Equal,
                        BinOp::Lt => ord == Ordering::Less,
                        BinOp::LtEq => ord != Ordering::Greater,
                        BinOp::Gt => ord == Ordering::Greater,
                        _ => ord != Ordering::Less,
                    }));
                }
                arith(*op, &l, &r, ty)
            }
            // `||`, which extends its left operand.
            Expr::Binary {
                left, right, ty, ..
            } => {
                let l = left.eval(row)?;
                let r = right.eval(row)?;
                if l.is_null() || r.is_null() {
                    return Ok(Datum::Null);
                }
                Ok(match (l, r) {
                    (Datum::Bytes(mut a), Datum::Bytes(b)) if *ty == Type::Bytea => {
                        a.extend_from_slice(&b);
                        Datum::Bytes(a)
                    }
                    (l, r) => {
                        let mut s = text_of(&l);
                        s.push_str(&text_of(&r));
                        Datum::Text(s)
                    }
                })
            }
            Expr::IsNull { expr, negated } => {
                Ok(Datum::Bool(expr.eval(row)?.is_null() != *negated))
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let v = expr.operand(row)?;
                if v.is_null() {
                    return Ok(Datum::Null);
                }
                let mut saw_null = false;
                for e in list {
                    let x = e.operand(row)?;
                    if x.is_null() {
                        saw_null = true;
                    } else if sql_cmp(&v, &x)? == Ordering::Equal {
                        return Ok(Datum::Bool(!negated));
                    }
                }
                Ok(if saw_null {
                    Datum::Null
                } else {
                    Datum::Bool(*negated)
                })
            }
            Expr::Like {
                expr,
                pattern,
                negated,
                case_insensitive,
            } => {
                let v = expr.eval(row)?;
                let p = pattern.eval(row)?;
                match (v, p) {
                    (Datum::Text(s), Datum::Text(p)) => {
                        let m = if *case_insensitive {
                            like(&s.to_lowercase(), &p.to_lowercase())?
                        } else {
                            like(&s, &p)?
                        };
                        Ok(Datum::Bool(m != *negated))
                    }
                    (Datum::Null, _) | (_, Datum::Null) => Ok(Datum::Null),
                    _ => err("LIKE needs text operands"),
                }
            }
            Expr::Cast { expr, to } => cast(expr.eval(row)?, to),
            Expr::NumericTypmod {
                expr,
                precision,
                scale,
            } => match expr.eval(row)? {
                Datum::Numeric(n) => n
                    .apply_typmod(*precision, *scale)
                    .map(Datum::Numeric)
                    .map_err(|e| EvalError(e.to_string())),
                other => Ok(other),
            },
            Expr::Case {
                branches,
                otherwise,
            } => {
                for (c, v) in branches {
                    if c.eval_predicate(row)? {
                        return v.eval(row);
                    }
                }
                otherwise.eval(row)
            }
            Expr::Coalesce(args) => {
                for a in args {
                    let v = a.eval(row)?;
                    if !v.is_null() {
                        return Ok(v);
                    }
                }
                Ok(Datum::Null)
            }
            Expr::Extremum { args, greatest } => {
                let mut best = Datum::Null;
                for a in args {
                    let v = a.eval(row)?;
                    if v.is_null() {
                        continue;
                    }
                    if best.is_null() {
                        best = v;
                        continue;
                    }
                    let ord = sql_cmp(&v, &best)?;
                    if (*greatest && ord == Ordering::Greater)
                        || (!*greatest && ord == Ordering::Less)
                    {
                        best = v;
                    }
                }
                Ok(best)
            }
            Expr::IsDistinct {
                left,
                right,
                negated,
            } => {
                let (l, r) = (left.eval(row)?, right.eval(row)?);
                let same = match (l.is_null(), r.is_null()) {
                    (true, true) => true,
                    (false, false) => sql_cmp(&l, &r)? == Ordering::Equal,
                    _ => false,
                };
                Ok(Datum::Bool(same == *negated))
            }
            Expr::Call { func, args, ty } => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(a.eval(row)?);
                }
                func.eval(&vals, ty)
            }
        }
    }

    /// Whether evaluating the expression cannot fail, whatever the row: it
    /// reads columns and literals and combines them only with NOT, AND, OR,
    /// IS [NOT] NULL, COALESCE and CASE, none of which can fail on any
    /// values. Conservative: comparisons are left out (values of two kinds
    /// may fail to compare), as are arithmetic, casts and functions. An
    /// operator that evaluates only such expressions needs no error output.
    pub fn cannot_fail(&self) -> bool {
        match self {
            Expr::Column(_) | Expr::Literal(_) => true,
            Expr::Not(e) | Expr::IsNull { expr: e, .. } => e.cannot_fail(),
            Expr::Binary {
                op: BinOp::And | BinOp::Or,
                left,
                right,
                ..
            } => left.cannot_fail() && right.cannot_fail(),
            Expr::Coalesce(args) => args.iter().all(Expr::cannot_fail),
            Expr::Case {
                branches,
                otherwise,
            } => {
                otherwise.cannot_fail()
                    && branches
                        .iter()
                        .all(|(c, v)| c.cannot_fail() && v.cannot_fail())
            }
            Expr::Neg(..)
            | Expr::Binary { .. }
            | Expr::InList { .. }
            | Expr::Like { .. }
            | Expr::Cast { .. }
            | Expr::NumericTypmod { .. }
            | Expr::Extremum { .. }
            | Expr::IsDistinct { .. }
            | Expr::Call { .. } => false,
        }
    }

    /// The value of a column or a literal where it is, or any other
    /// expression's value, evaluated: for operators that only read their
    /// operands.
    fn operand<'a>(&'a self, row: &'a [Datum]) -> Result<Cow<'a, Datum>, EvalError> {
        static NULL: Datum = Datum::Null;
        match self {
            Expr::Column(i) => Ok(Cow::Borrowed(row.get(*i).unwrap_or(&NULL))),
            Expr::Literal(d) => Ok(Cow::Borrowed(d)),
            e => e.eval(row).map(Cow::Owned),
        }
    }

    /// Evaluates a predicate: only `true` keeps a row.
    pub fn eval_predicate(&self, row: &[Datum]) -> Result<bool, EvalError> {
        Ok(self.eval(row)? == Datum::Bool(true))
    }
}

fn zero_of(ty: &Type) -> Datum {
    match ty {
        Type::Interval => Datum::Interval(crate::repr::interval::Interval::ZERO),
        Type::Numeric => Datum::Numeric(Numeric::zero()),
        Type::Float4 => Datum::Float4(F64(0.0)),
        Type::Float8 => Datum::Float8(F64(0.0)),
        _ => Datum::Int(0),
    }
}

/// A value cast to text (`x::text`, and each operand of `||`, which casts):
/// the type's output function, except that a boolean becomes `true`/`false`
/// where its output function writes `t`/`f`.
fn text_of(d: &Datum) -> String {
    match d {
        Datum::Bool(b) => (if *b { "true" } else { "false" }).to_string(),
        other => other.to_text(),
    }
}

fn as_numeric(d: &Datum) -> Option<Numeric> {
    match d {
        Datum::Int(i) => Some(Numeric::from_i64(*i)),
        Datum::Numeric(n) => Some(n.clone()),
        _ => None,
    }
}

fn as_f64(d: &Datum) -> Option<f64> {
    match d {
        Datum::Int(i) => Some(*i as f64),
        Datum::Numeric(n) => Some(n.to_f64()),
        Datum::Float4(f) | Datum::Float8(f) => Some(f.0),
        _ => None,
    }
}

/// Compares two non-NULL values as SQL does, across the numeric types.
pub fn sql_cmp(a: &Datum, b: &Datum) -> Result<Ordering, EvalError> {
    Ok(match (a, b) {
        (Datum::Int(x), Datum::Int(y)) => x.cmp(y),
        (Datum::Numeric(x), Datum::Numeric(y)) => x.cmp_value(y),
        (Datum::Int(_), Datum::Numeric(_)) | (Datum::Numeric(_), Datum::Int(_)) => as_numeric(a)
            .unwrap_or_else(Numeric::zero)
            .cmp_value(&as_numeric(b).unwrap_or_else(Numeric::zero)),
        (Datum::Float4(_) | Datum::Float8(_), _) | (_, Datum::Float4(_) | Datum::Float8(_)) => {
            match (as_f64(a), as_f64(b)) {
                (Some(x), Some(y)) => F64(x).cmp_value(&F64(y)),
                _ => return err(format!("cannot compare {a:?} with {b:?}")),
            }
        }
        (Datum::Interval(x), Datum::Interval(y)) => x.cmp_span(y),
        (Datum::Date(d), Datum::Timestamp(t)) | (Datum::Date(d), Datum::TimestampTz(t)) => {
            datetime::cmp_date_timestamp(*d, *t)
        }
        (Datum::Timestamp(t), Datum::Date(d)) | (Datum::TimestampTz(t), Datum::Date(d)) => {
            datetime::cmp_date_timestamp(*d, *t).reverse()
        }
        _ if std::mem::discriminant(a) == std::mem::discriminant(b) => a.cmp(b),
        _ => {
            return err(format!(
                "cannot compare {} with {}",
                a.to_json_string(),
                b.to_json_string()
            ))
        }
    })
}

fn int_range(ty: &Type) -> (i128, i128, &'static str) {
    match ty {
        Type::Int2 => (i16::MIN as i128, i16::MAX as i128, "smallint"),
        Type::Int4 => (i32::MIN as i128, i32::MAX as i128, "integer"),
        _ => (i64::MIN as i128, i64::MAX as i128, "bigint"),
    }
}

/// Arithmetic at result type `ty`.
pub fn arith(op: BinOp, l: &Datum, r: &Datum, ty: &Type) -> Result<Datum, EvalError> {
    if l.is_null() || r.is_null() {
        return Ok(Datum::Null);
    }
    if let Some(v) = interval_arith(op, l, r)? {
        return Ok(v);
    }
    if let Some(v) = date_arith(op, l, r)? {
        return Ok(v);
    }
    match ty {
        Type::Int2 | Type::Int4 | Type::Int8 => {
            let (Datum::Int(a), Datum::Int(b)) = (l, r) else {
                return err("integer arithmetic on non-integers");
            };
            let (a, b) = (*a as i128, *b as i128);
            let v = match op {
                BinOp::Add => a + b,
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                BinOp::Div | BinOp::Mod if b == 0 => return err("division by zero"),
                BinOp::Div => a / b,
                BinOp::Mod => a % b,
                _ => return err(format!("operator {} is not arithmetic", op.symbol())),
            };
            let (lo, hi, name) = int_range(ty);
            if v < lo || v > hi {
                return err(format!("{name} out of range"));
            }
            Ok(Datum::Int(v as i64))
        }
        Type::Numeric => {
            let (Some(a), Some(b)) = (as_numeric(l), as_numeric(r)) else {
                return err("numeric arithmetic on non-numbers");
            };
            let v = match op {
                BinOp::Add => a.checked_add(&b),
                BinOp::Sub => a.checked_sub(&b),
                BinOp::Mul => a.checked_mul(&b),
                BinOp::Div => a.div(&b),
                BinOp::Mod => a.rem(&b),
                _ => return err(format!("operator {} is not arithmetic", op.symbol())),
            };
            v.map(Datum::Numeric).map_err(|e| EvalError(e.to_string()))
        }
        Type::Float4 | Type::Float8 => {
            let (Some(a), Some(b)) = (as_f64(l), as_f64(r)) else {
                return err("float arithmetic on non-numbers");
            };
            let v = match op {
                BinOp::Add => a + b,
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                BinOp::Div if b == 0.0 => return err("division by zero"),
                BinOp::Div => a / b,
                BinOp::Mod => {
                    return err("operator does not exist: double precision % double precision")
                }
                _ => return err(format!("operator {} is not arithmetic", op.symbol())),
            };
            // float4 arithmetic is float4's: computed exactly in f64 and
            // rounded once, then checked at float4's range.
            let v = if *ty == Type::Float4 {
                v as f32 as f64
            } else {
                v
            };
            if v.is_infinite() && a.is_finite() && b.is_finite() {
                return err("value out of range: overflow");
            }
            let underflow = match op {
                BinOp::Mul => a != 0.0 && b != 0.0,
                BinOp::Div => a != 0.0 && b.is_finite(),
                _ => false,
            };
            if v == 0.0 && underflow {
                return err("value out of range: underflow");
            }
            Ok(if *ty == Type::Float4 {
                Datum::Float4(F64(v))
            } else {
                Datum::Float8(F64(v))
            })
        }
        _ => err(format!(
            "operator {} is not supported for type {}",
            op.symbol(),
            ty.name()
        )),
    }
}

/// `date ± integer` and `date - date`, as Postgres's `date_pli`, `date_mii`
/// and `date_mi`: infinite dates stay infinite under `±`, and a difference
/// with one is an error.
fn date_arith(op: BinOp, l: &Datum, r: &Datum) -> Result<Option<Datum>, EvalError> {
    let shift = |d: i32, n: i64| -> Result<Option<Datum>, EvalError> {
        if d == DATE_POS_INF || d == DATE_NEG_INF {
            return Ok(Some(Datum::Date(d)));
        }
        let v = (d as i64).saturating_add(n);
        if !datetime::is_valid_date(v) {
            return err("date out of range");
        }
        Ok(Some(Datum::Date(v as i32)))
    };
    match (op, l, r) {
        (BinOp::Add, Datum::Date(d), Datum::Int(n))
        | (BinOp::Add, Datum::Int(n), Datum::Date(d)) => shift(*d, *n),
        (BinOp::Sub, Datum::Date(d), Datum::Int(n)) => shift(*d, n.saturating_neg()),
        (BinOp::Sub, Datum::Date(a), Datum::Date(b)) => {
            if [*a, *b]
                .iter()
                .any(|d| *d == DATE_POS_INF || *d == DATE_NEG_INF)
            {
                return err("cannot subtract infinite dates");
            }
            Ok(Some(Datum::Int(*a as i64 - *b as i64)))
        }
        _ => Ok(None),
    }
}

/// Arithmetic with intervals: timestamp ± interval, interval ± interval,
/// interval × number, interval / number, timestamp − timestamp.
fn interval_arith(op: BinOp, l: &Datum, r: &Datum) -> Result<Option<Datum>, EvalError> {
    use crate::repr::interval::{add_to_timestamp, timestamp_diff, Interval};
    let e = |m: String| EvalError(m);
    let range = || EvalError("interval out of range".into());
    let shift = |t: i64, iv: &Interval, sub: bool| -> Result<i64, EvalError> {
        let iv = if sub {
            iv.checked_neg().ok_or_else(range)?
        } else {
            *iv
        };
        add_to_timestamp(t, &iv).map_err(e)
    };
    Ok(Some(match (op, l, r) {
        (BinOp::Add, Datum::Timestamp(t), Datum::Interval(i))
        | (BinOp::Add, Datum::Interval(i), Datum::Timestamp(t)) => {
            Datum::Timestamp(shift(*t, i, false)?)
        }
        (BinOp::Add, Datum::TimestampTz(t), Datum::Interval(i))
        | (BinOp::Add, Datum::Interval(i), Datum::TimestampTz(t)) => {
            Datum::TimestampTz(shift(*t, i, false)?)
        }
        (BinOp::Sub, Datum::Timestamp(t), Datum::Interval(i)) => {
            Datum::Timestamp(shift(*t, i, true)?)
        }
        (BinOp::Sub, Datum::TimestampTz(t), Datum::Interval(i)) => {
            Datum::TimestampTz(shift(*t, i, true)?)
        }
        (BinOp::Add, Datum::Interval(a), Datum::Interval(b)) => {
            Datum::Interval(a.checked_add(b).ok_or_else(range)?)
        }
        (BinOp::Sub, Datum::Interval(a), Datum::Interval(b)) => Datum::Interval(
            a.checked_add(&b.checked_neg().ok_or_else(range)?)
                .ok_or_else(range)?,
        ),
        (BinOp::Mul, Datum::Interval(i), n) | (BinOp::Mul, n, Datum::Interval(i)) => {
            let f = as_f64(n).ok_or_else(|| EvalError("interval times a non-number".into()))?;
            Datum::Interval(i.mul(f).map_err(e)?)
        }
        (BinOp::Div, Datum::Interval(i), n) => {
            let f =
                as_f64(n).ok_or_else(|| EvalError("interval divided by a non-number".into()))?;
            if f == 0.0 {
                return err("division by zero");
            }
            Datum::Interval(i.mul(1.0 / f).map_err(e)?)
        }
        (BinOp::Sub, Datum::Timestamp(a), Datum::Timestamp(b))
        | (BinOp::Sub, Datum::TimestampTz(a), Datum::TimestampTz(b)) => {
            Datum::Interval(timestamp_diff(*a, *b).map_err(e)?)
        }
        _ => return Ok(None),
    }))
}

/// `value::to` with Postgres's conversion rules for the supported types.
pub fn cast(v: Datum, to: &Type) -> Result<Datum, EvalError> {
    if v.is_null() {
        return Ok(v);
    }
    let (lo, hi, int_name) = int_bounds(to);
    let out_of_range = || EvalError(format!("{int_name} out of range"));
    let range_check = |i: i64| -> Result<Datum, EvalError> {
        if i < lo || i > hi {
            return Err(out_of_range());
        }
        Ok(Datum::Int(i))
    };
    let e = |m: String| EvalError(m);
    match (to, &v) {
        (Type::Text | Type::Varchar | Type::Bpchar, _) => Ok(Datum::Text(text_of(&v))),
        (_, Datum::Text(s)) => Datum::from_text(to, s).map_err(|er| EvalError(er.0)),
        (Type::Int2 | Type::Int4 | Type::Int8, Datum::Int(i)) => range_check(*i),
        (Type::Int2 | Type::Int4 | Type::Int8, Datum::Bool(b)) => Ok(Datum::Int(*b as i64)),
        (Type::Int2 | Type::Int4 | Type::Int8, Datum::Numeric(n)) => match n {
            Numeric::NaN => err(format!("cannot convert NaN to {int_name}")),
            Numeric::PosInf | Numeric::NegInf => {
                err(format!("cannot convert infinity to {int_name}"))
            }
            _ => range_check(n.to_i64_rounded().ok_or_else(out_of_range)?),
        },
        (Type::Int2 | Type::Int4 | Type::Int8, Datum::Float4(f) | Datum::Float8(f)) => {
            // rint, then the range check Postgres's FLOAT8_FITS_IN_INT64 makes.
            let r = f.0.round_ties_even();
            // NaN is in no range.
            let two_63 = 2f64.powi(63);
            if !(-two_63..two_63).contains(&r) {
                return Err(out_of_range());
            }
            range_check(r as i64)
        }
        (Type::Bool, Datum::Int(i)) => Ok(Datum::Bool(*i != 0)),
        (Type::Numeric, Datum::Int(i)) => Ok(Datum::Numeric(Numeric::from_i64(*i))),
        (Type::Numeric, Datum::Numeric(_)) => Ok(v),
        (Type::Numeric, Datum::Float4(f)) => Ok(Datum::Numeric(float_to_numeric(f.0, 6))),
        (Type::Numeric, Datum::Float8(f)) => Ok(Datum::Numeric(float_to_numeric(f.0, 15))),
        (Type::Float8 | Type::Float4, Datum::Numeric(n)) => {
            // Postgres reads the numeric's text as a float: out of range is an error.
            let single = *to == Type::Float4;
            Datum::from_text(to, &n.to_string())
                .map_err(|er| EvalError(er.0))
                .map(|d| {
                    if single {
                        d
                    } else {
                        Datum::Float8(F64(as_f64(&d).unwrap_or(f64::NAN)))
                    }
                })
        }
        (Type::Float4, Datum::Float8(f)) => {
            let r = f.0 as f32 as f64;
            if r.is_infinite() && f.0.is_finite() {
                return err("value out of range: overflow");
            }
            if r == 0.0 && f.0 != 0.0 {
                return err("value out of range: underflow");
            }
            Ok(Datum::Float4(F64(r)))
        }
        (Type::Float8, _) => as_f64(&v)
            .map(|f| Datum::Float8(F64(f)))
            .ok_or_else(|| EvalError(format!("cannot cast {} to float8", v.to_text()))),
        (Type::Float4, _) => as_f64(&v)
            .map(|f| Datum::Float4(F64(f as f32 as f64)))
            .ok_or_else(|| EvalError(format!("cannot cast {} to float4", v.to_text()))),
        (Type::Timestamp, Datum::Date(d)) => Ok(Datum::Timestamp(
            datetime::date_to_timestamp(*d).map_err(e)?,
        )),
        (Type::TimestampTz, Datum::Date(d)) => Ok(Datum::TimestampTz(
            datetime::date_to_timestamp(*d).map_err(e)?,
        )),
        (Type::TimestampTz, Datum::Timestamp(t)) => Ok(Datum::TimestampTz(*t)),
        (Type::Timestamp, Datum::TimestampTz(t)) => Ok(Datum::Timestamp(*t)),
        (Type::Date, Datum::Timestamp(t) | Datum::TimestampTz(t)) => {
            Ok(Datum::Date(datetime::timestamp_to_date(*t)))
        }
        (Type::Jsonb, Datum::Json(j)) => Datum::from_text(to, j).map_err(|er| EvalError(er.0)),
        (Type::Json, Datum::Json(_)) => Ok(v),
        _ => err(format!("cannot cast {} to {}", v.to_text(), to.name())),
    }
}

/// `float8::numeric` and `float4::numeric`: Postgres prints the float with
/// `%.{digits}g` (DBL_DIG = 15 or FLT_DIG = 6 significant digits) and reads
/// that text back, so `0.1::float4::numeric` is `0.1` and
/// `(1/3::float8)::numeric` is `0.333333333333333`.
pub fn float_to_numeric(v: f64, digits: usize) -> Numeric {
    if v.is_nan() {
        return Numeric::NaN;
    }
    if v.is_infinite() {
        return if v > 0.0 {
            Numeric::PosInf
        } else {
            Numeric::NegInf
        };
    }
    // `{:.*e}` rounds the exact binary value to `digits` significant digits,
    // half to even, as printf does; %g's trailing zeros do not matter once
    // the digits are read as a numeric, only where the point falls.
    let sci = format!("{:.*e}", digits - 1, v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let all: String = mantissa.chars().filter(|c| *c != '.').collect();
    let trimmed = all.trim_end_matches('0');
    let sig = if trimmed.is_empty() { "0" } else { trimmed };
    // In plain and in scientific notation alike, %g shows the significant
    // digits without trailing zeros, so the scale read back is the number of
    // those digits after the point (never negative): sig × 10^(exp - len + 1).
    let text = format!(
        "{}{sig}e{}",
        if neg { "-" } else { "" },
        exp - (sig.len() as i64 - 1)
    );
    Numeric::parse(&text).unwrap_or_else(|_| Numeric::zero())
}

/// SQL LIKE with `%`, `_` and backslash escapes.
fn like(s: &str, pattern: &str) -> Result<bool, EvalError> {
    let s: Vec<char> = s.chars().collect();
    let mut p: Vec<(char, bool)> = Vec::new(); // (char, is_literal)
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some(n) => p.push((n, true)),
                None => return err("LIKE pattern must not end with escape character"),
            }
        } else {
            p.push((c, false));
        }
    }
    // Iterative matcher with backtracking on the last '%'.
    let (mut si, mut pi) = (0usize, 0usize);
    let (mut star_p, mut star_s) = (None::<usize>, 0usize);
    while si < s.len() {
        if pi < p.len() && !p[pi].1 && p[pi].0 == '%' {
            star_p = Some(pi);
            star_s = si;
            pi += 1;
        } else if pi < p.len() && ((!p[pi].1 && p[pi].0 == '_') || p[pi].0 == s[si]) {
            si += 1;
            pi += 1;
        } else if let Some(sp) = star_p {
            pi = sp + 1;
            star_s += 1;
            si = star_s;
        } else {
            return Ok(false);
        }
    }
    while pi < p.len() && !p[pi].1 && p[pi].0 == '%' {
        pi += 1;
    }
    Ok(pi == p.len())
}

fn list(args: &[Expr]) -> String {
    args.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Column(i) => write!(f, "#{i}"),
            Expr::Literal(d) => write!(f, "{}", d.to_json_string()),
            Expr::Not(e) => write!(f, "NOT ({e})"),
            Expr::Neg(e, _) => write!(f, "-({e})"),
            Expr::Binary {
                op, left, right, ..
            } => write!(f, "({left} {} {right})", op.symbol()),
            Expr::IsNull { expr, negated } => {
                write!(f, "({expr} IS {}NULL)", if *negated { "NOT " } else { "" })
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                write!(f, "({expr} {}IN (", if *negated { "NOT " } else { "" })?;
                for (i, e) in list.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{e}")?;
                }
                write!(f, "))")
            }
            Expr::Like {
                expr,
                pattern,
                negated,
                case_insensitive,
            } => write!(
                f,
                "({expr} {}{} {pattern})",
                if *negated { "NOT " } else { "" },
                if *case_insensitive { "ILIKE" } else { "LIKE" }
            ),
            Expr::Cast { expr, to } => write!(f, "{expr}::{}", to.name()),
            Expr::NumericTypmod {
                expr,
                precision,
                scale,
            } => write!(f, "{expr}::numeric({precision},{scale})"),
            Expr::Case {
                branches,
                otherwise,
            } => {
                write!(f, "CASE")?;
                for (c, v) in branches {
                    write!(f, " WHEN {c} THEN {v}")?;
                }
                write!(f, " ELSE {otherwise} END")
            }
            Expr::Coalesce(args) => write!(f, "coalesce({})", list(args)),
            Expr::Extremum { args, greatest } => write!(
                f,
                "{}({})",
                if *greatest { "greatest" } else { "least" },
                list(args)
            ),
            Expr::IsDistinct {
                left,
                right,
                negated,
            } => write!(
                f,
                "({left} IS {}DISTINCT FROM {right})",
                if *negated { "NOT " } else { "" }
            ),
            Expr::Call { func, args, .. } => write!(f, "{}({})", func.name(), list(args)),
        }
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(d: Datum) -> Box<Expr> {
        Box::new(Expr::Literal(d))
    }

    #[test]
    fn three_valued_logic() {
        let and = |a, b| {
            Expr::Binary {
                op: BinOp::And,
                left: lit(a),
                right: lit(b),
                ty: Type::Bool,
            }
            .eval(&[])
            .unwrap()
        };
        assert_eq!(and(Datum::Null, Datum::Bool(false)), Datum::Bool(false));
        assert_eq!(and(Datum::Null, Datum::Bool(true)), Datum::Null);
        let inl = Expr::InList {
            expr: lit(Datum::Int(1)),
            list: vec![Expr::Literal(Datum::Int(2)), Expr::Literal(Datum::Null)],
            negated: true,
        };
        assert_eq!(inl.eval(&[]).unwrap(), Datum::Null);
    }

    #[test]
    fn overflow_and_division_errors() {
        assert!(arith(
            BinOp::Add,
            &Datum::Int(i32::MAX as i64),
            &Datum::Int(1),
            &Type::Int4
        )
        .is_err());
        assert_eq!(
            arith(
                BinOp::Add,
                &Datum::Int(i32::MAX as i64),
                &Datum::Int(1),
                &Type::Int8
            )
            .unwrap(),
            Datum::Int(2147483648)
        );
        assert!(arith(BinOp::Div, &Datum::Int(1), &Datum::Int(0), &Type::Int4).is_err());
        assert_eq!(
            arith(BinOp::Div, &Datum::Int(-7), &Datum::Int(2), &Type::Int4).unwrap(),
            Datum::Int(-3)
        );
    }

    #[test]
    fn floats_become_numerics_at_float_precision() {
        // Values checked against PostgreSQL 15.
        let f8 = |v: f64| float_to_numeric(v, 15).to_string();
        assert_eq!(f8(1.0 / 3.0), "0.333333333333333");
        assert_eq!(f8(1e20), "100000000000000000000");
        assert_eq!(f8(1.5e-5), "0.000015");
        assert_eq!(f8(123456789012345678.0), "123456789012346000");
        assert_eq!(f8(1000000000000005.0), "1000000000000000");
        assert_eq!(f8(-0.0), "0");
        assert_eq!(f8(f64::NAN), "NaN");
        assert_eq!(f8(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(float_to_numeric(0.1f32 as f64, 6).to_string(), "0.1");
        assert_eq!(float_to_numeric(1.0e-310, 15).to_string().len(), 327);
    }

    #[test]
    fn infinite_dates_compare_and_shift() {
        use crate::repr::datetime::{TS_NEG_INF, TS_POS_INF};
        let inf = Datum::Date(DATE_POS_INF);
        let cmp = |a: &Datum, b: &Datum| sql_cmp(a, b).unwrap();
        // Once an overflow: the infinite date multiplied out to microseconds.
        assert_eq!(cmp(&inf, &Datum::Timestamp(0)), Ordering::Greater);
        assert_eq!(cmp(&inf, &Datum::Timestamp(TS_POS_INF)), Ordering::Equal);
        assert_eq!(
            cmp(&Datum::TimestampTz(TS_NEG_INF), &Datum::Date(DATE_NEG_INF)),
            Ordering::Equal
        );
        assert_eq!(
            cmp(&Datum::Date(DATE_NEG_INF), &Datum::Date(0)),
            Ordering::Less
        );
        assert_eq!(
            arith(BinOp::Add, &inf, &Datum::Int(5), &Type::Date).unwrap(),
            inf
        );
        assert_eq!(
            arith(BinOp::Sub, &inf, &Datum::Date(0), &Type::Int4)
                .unwrap_err()
                .0,
            "cannot subtract infinite dates"
        );
        assert_eq!(
            arith(BinOp::Sub, &Datum::Date(10), &Datum::Date(3), &Type::Int4).unwrap(),
            Datum::Int(7)
        );
        assert_eq!(
            arith(
                BinOp::Add,
                &Datum::Date(0),
                &Datum::Int(i64::MAX),
                &Type::Date
            )
            .unwrap_err()
            .0,
            "date out of range"
        );
        assert_eq!(
            cast(inf.clone(), &Type::Timestamp).unwrap(),
            Datum::Timestamp(TS_POS_INF)
        );
        assert_eq!(
            cast(Datum::Date(DATE_POS_INF - 1), &Type::Timestamp)
                .unwrap_err()
                .0,
            "date out of range for timestamp"
        );
        let ts_inf = Datum::Timestamp(TS_POS_INF);
        assert_eq!(
            arith(BinOp::Sub, &ts_inf, &ts_inf, &Type::Interval)
                .unwrap_err()
                .0,
            "cannot subtract infinite timestamps"
        );
    }

    #[test]
    fn casts_check_ranges() {
        let err_of = |v: Datum, to: Type| cast(v, &to).unwrap_err().0;
        assert_eq!(
            err_of(Datum::Float8(F64(f64::NAN)), Type::Int4),
            "integer out of range"
        );
        assert_eq!(
            err_of(Datum::Float8(F64(f64::INFINITY)), Type::Int8),
            "bigint out of range"
        );
        assert_eq!(
            err_of(Datum::Float8(F64(9.3e18)), Type::Int8),
            "bigint out of range"
        );
        assert_eq!(
            cast(Datum::Float8(F64(i64::MIN as f64)), &Type::Int8).unwrap(),
            Datum::Int(i64::MIN)
        );
        assert_eq!(
            err_of(Datum::Numeric(Numeric::NaN), Type::Int2),
            "cannot convert NaN to smallint"
        );
        assert_eq!(
            err_of(Datum::Float8(F64(1e300)), Type::Float4),
            "value out of range: overflow"
        );
        assert!(err_of(
            Datum::Numeric(Numeric::parse("1e400").unwrap()),
            Type::Float8
        )
        .contains("out of range for type double precision"));
        assert_eq!(
            cast(Datum::Bool(true), &Type::Text).unwrap(),
            Datum::Text("true".into())
        );
        assert_eq!(
            cast(Datum::Int(0), &Type::Bool).unwrap(),
            Datum::Bool(false)
        );
        assert_eq!(
            cast(Datum::Text("1.5".into()), &Type::Float8).unwrap(),
            Datum::Float8(F64(1.5))
        );
        // i64::MIN / -1 and % -1 do not trap.
        assert!(arith(
            BinOp::Div,
            &Datum::Int(i64::MIN),
            &Datum::Int(-1),
            &Type::Int8
        )
        .is_err());
        assert_eq!(
            arith(
                BinOp::Mod,
                &Datum::Int(i64::MIN),
                &Datum::Int(-1),
                &Type::Int8
            )
            .unwrap(),
            Datum::Int(0)
        );
        assert_eq!(
            arith(
                BinOp::Mul,
                &Datum::Float4(F64(3e38)),
                &Datum::Float4(F64(10.0)),
                &Type::Float4
            )
            .unwrap_err()
            .0,
            "value out of range: overflow"
        );
        assert_eq!(
            arith(
                BinOp::Mul,
                &Datum::Float8(F64(1e-300)),
                &Datum::Float8(F64(1e-300)),
                &Type::Float8
            )
            .unwrap_err()
            .0,
            "value out of range: underflow"
        );
    }

    #[test]
    fn like_patterns() {
        assert!(like("hello", "h%o").unwrap());
        assert!(like("hello", "h_llo").unwrap());
        assert!(!like("hello", "h_lo").unwrap());
        assert!(like("50%", "50\\%").unwrap());
        assert!(like("", "%").unwrap());
        assert!(like("abcabc", "%abc").unwrap());
    }
}
