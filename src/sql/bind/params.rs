//! View parameters: `$name` given by the subscriber, and claims of its
//! verified token, `auth.uid()` (the `sub` claim) and `auth.jwt() ->> 'claim'`
//! (or `->`, or the whole `auth.jwt()`), as Supabase users write them.
//!
//! A parameterized view is compiled as a correlated subquery is: its query
//! is bound over a relation of parameter tuples (the tuples currently
//! subscribed) as its first FROM item, so a parameter is a column of that
//! relation, and every output row is prefixed by the tuple it belongs to.
//! One dataflow serves every tuple; a new tuple costs only its own rows.
//!
//! A `$name` takes its type from where it is used, like an untyped literal:
//! a first pass binds each `$name` as a marked untyped literal and records
//! the type it is coerced to ([`discovered`]); the second pass binds the
//! parameters as typed columns.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::ControlFlow;

use serde::Serialize;
use sqlparser::ast::{self, BinaryOperator, Spanned, Value};

use super::{object_name_parts, BindError, Result};
use crate::repr::{Datum, Type};
use crate::sql::expr::Expr;

/// Where a parameter's value comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamFrom {
    /// The subscriber gives it (`$name`).
    Request,
    /// The caller's verified token; never from the subscriber.
    Token,
}

/// One parameter of a view, in the order of the view's parameter tuples.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ViewParam {
    /// `project_id` for `$project_id`; the claim's name for a claim
    /// (`sub` for `auth.uid()`, `""` for the whole `auth.jwt()`).
    pub name: String,
    #[serde(rename = "type", serialize_with = "crate::sql::type_name")]
    pub ty: Type,
    pub from: ParamFrom,
    /// For a claim: `->>` (text) rather than `->` (jsonb).
    #[serde(skip)]
    pub as_text: bool,
}

impl ViewParam {
    /// The name the binder resolves the parameter by (not a valid SQL
    /// identifier, so it never clashes with a column).
    pub fn key(&self) -> String {
        match (&self.from, self.name.as_str(), self.as_text) {
            (ParamFrom::Request, n, _) => format!("${n}"),
            (ParamFrom::Token, "", _) => "auth.jwt()".into(),
            (ParamFrom::Token, "sub", true) if self.ty == Type::Text => "auth.uid()".into(),
            (ParamFrom::Token, n, true) => format!("auth.jwt()->>'{n}'"),
            (ParamFrom::Token, n, false) => format!("auth.jwt()->'{n}'"),
        }
    }
}

/// The parameter an expression is, if it is one: `$name`, `auth.uid()`,
/// `auth.jwt()`, `auth.jwt() ->> 'claim'`, `auth.jwt() -> 'claim'`.
pub fn param_of(e: &ast::Expr) -> Result<Option<ViewParam>> {
    match e {
        ast::Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => {
                let name = p.trim_start_matches('$');
                if name.is_empty() || name.chars().all(|c| c.is_ascii_digit()) {
                    return Err(BindError::new(
                        format!("positional parameter {p}: name parameters, like $project_id"),
                        e.span(),
                    ));
                }
                if p.starts_with(':') || p.starts_with('?') || !p.starts_with('$') {
                    return Err(BindError::new(
                        format!("parameter {p}: write named parameters as $name"),
                        e.span(),
                    ));
                }
                Ok(Some(ViewParam {
                    name: name.to_lowercase(),
                    ty: Type::Unknown,
                    from: ParamFrom::Request,
                    as_text: true,
                }))
            }
            _ => Ok(None),
        },
        ast::Expr::Function(f) => match auth_call(f)? {
            Some("uid") => Ok(Some(ViewParam {
                name: "sub".into(),
                ty: Type::Text,
                from: ParamFrom::Token,
                as_text: true,
            })),
            Some(_) => Ok(Some(ViewParam {
                name: String::new(),
                ty: Type::Jsonb,
                from: ParamFrom::Token,
                as_text: false,
            })),
            None => Ok(None),
        },
        ast::Expr::BinaryOp { left, op, right } => {
            let ast::Expr::Function(f) = left.as_ref() else {
                return Ok(None);
            };
            if auth_call(f)? != Some("jwt") {
                return Ok(None);
            }
            let as_text = match op {
                BinaryOperator::LongArrow => true,
                BinaryOperator::Arrow => false,
                _ => return Ok(None),
            };
            let claim = match right.as_ref() {
                ast::Expr::Value(v) => match &v.value {
                    Value::SingleQuotedString(s) => s.clone(),
                    _ => return Ok(None),
                },
                _ => return Ok(None),
            };
            if claim.is_empty() {
                return Ok(None);
            }
            Ok(Some(ViewParam {
                name: claim,
                ty: if as_text { Type::Text } else { Type::Jsonb },
                from: ParamFrom::Token,
                as_text,
            }))
        }
        _ => Ok(None),
    }
}

/// `auth.uid()` → `uid`, `auth.jwt()` → `jwt`; other `auth.*` calls are errors.
fn auth_call(f: &ast::Function) -> Result<Option<&'static str>> {
    let parts = object_name_parts(&f.name);
    let [schema, name] = parts.as_slice() else {
        return Ok(None);
    };
    if schema != "auth" {
        return Ok(None);
    }
    let no_args = match &f.args {
        ast::FunctionArguments::None => true,
        ast::FunctionArguments::List(l) => l.args.is_empty(),
        ast::FunctionArguments::Subquery(_) => false,
    };
    match name.as_str() {
        "uid" if no_args => Ok(Some("uid")),
        "jwt" if no_args => Ok(Some("jwt")),
        _ => Err(BindError::new(
            format!(
                "function auth.{name}(): the token's claims are read with auth.uid() and auth.jwt() ->> 'claim'"
            ),
            f.span(),
        )),
    }
}

/// Whether `e` uses a parameter anywhere.
pub fn mentions(e: &ast::Expr) -> bool {
    struct Finder;
    impl ast::Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &ast::Expr) -> ControlFlow<()> {
            match param_of(e) {
                Ok(Some(_)) => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    ast::Visit::visit(e, &mut Finder).is_break()
}

/// Every parameter of a query, in the order of first appearance (claims
/// and `$name`s alike), without types.
pub fn collect(q: &ast::Query) -> Result<Vec<ViewParam>> {
    struct Finder {
        found: Vec<ViewParam>,
        error: Option<BindError>,
        /// The `auth.jwt()` inside a matched `auth.jwt() ->> 'claim'`: part of
        /// that parameter, not one of its own.
        inner: Vec<*const ast::Expr>,
    }
    impl ast::Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &ast::Expr) -> ControlFlow<()> {
            if self.inner.contains(&(e as *const ast::Expr)) {
                return ControlFlow::Continue(());
            }
            match param_of(e) {
                Ok(Some(p)) => {
                    if let ast::Expr::BinaryOp { left, .. } = e {
                        self.inner.push(left.as_ref() as *const ast::Expr);
                    }
                    if !self.found.iter().any(|f| f.key() == p.key()) {
                        self.found.push(p);
                    }
                }
                Ok(None) => {}
                Err(err) => {
                    self.error = Some(err);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut f = Finder {
        found: Vec::new(),
        error: None,
        inner: Vec::new(),
    };
    let _ = ast::Visit::visit(q, &mut f);
    match f.error {
        Some(e) => Err(e),
        None => Ok(f.found),
    }
}

thread_local! {
    /// Types the first pass found for `$name`s, while it runs.
    static DISCOVERY: RefCell<Option<BTreeMap<String, Type>>> = const { RefCell::new(None) };
}

/// Marks an untyped literal as standing for the parameter `$name`.
const MARK: &str = "\u{0}viewcast-param\u{0}";

/// What a `$name` binds to in the first pass: an untyped literal whose
/// coercion records the parameter's type ([`record`]).
pub fn placeholder(name: &str) -> (Expr, Type) {
    (
        Expr::Literal(Datum::Text(format!("{MARK}{name}"))),
        Type::Unknown,
    )
}

/// Called where an untyped literal meets the type `to`: for a parameter's
/// placeholder, records `to` as its type and returns the NULL it binds as.
pub fn record(e: &Expr, to: &Type) -> Option<Expr> {
    let Expr::Literal(Datum::Text(s)) = e else {
        return None;
    };
    let name = s.strip_prefix(MARK)?;
    DISCOVERY.with(|d| {
        if let Some(map) = d.borrow_mut().as_mut() {
            let entry = map.entry(name.to_string()).or_insert(Type::Unknown);
            if *entry == Type::Unknown {
                *entry = to.clone();
            }
        }
    });
    Some(Expr::Literal(Datum::Null))
}

/// Runs the first pass `f` and returns the types it gave the parameters
/// (`text` for one never used where a type is expected).
pub fn discovered<T>(f: impl FnOnce() -> T) -> (T, BTreeMap<String, Type>) {
    DISCOVERY.with(|d| *d.borrow_mut() = Some(BTreeMap::new()));
    let out = f();
    let types = DISCOVERY
        .with(|d| d.borrow_mut().take())
        .unwrap_or_default();
    (out, types)
}

/// Whether the first pass is running.
pub fn discovering() -> bool {
    DISCOVERY.with(|d| d.borrow().is_some())
}
