//! SQL → plan, off the worker threads.
//!
//! ```text
//! queries/NAME.sql ─ parse (sqlparser, PostgreSQL dialect)
//!                  ─ table_refs: which tables to load from the Postgres catalog
//!                  ─ bind: names and types → Plan (plan.rs), or a BindError
//! ```
//! A view whose SQL is refused never reaches the dataflow; other views are unaffected.

pub mod bind;
pub mod expr;
pub mod func;
pub mod plan;
pub mod prune;
pub mod regex;
pub mod srf;
pub mod topk_windows;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use sqlparser::ast::{self, Spanned, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Span;

use crate::pg::catalog::{PgView, TableInfo};
use crate::repr::tz::TimeCx;
use crate::repr::Type;
pub use bind::params::{ParamFrom, ViewParam};
pub use plan::Plan;

/// A refused query: what is wrong and where (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindError {
    pub message: String,
    pub position: Option<(u64, u64)>,
}

impl BindError {
    pub fn new(message: impl Into<String>, span: Span) -> Self {
        let position = (span.start.line > 0).then_some((span.start.line, span.start.column));
        BindError {
            message: message.into(),
            position,
        }
    }

    /// The message, its position, and the offending line with a caret under the spot.
    pub fn render(&self, sql: &str) -> String {
        match self.position {
            Some((line, col)) => {
                let text = sql.lines().nth(line as usize - 1).unwrap_or("");
                format!(
                    "{} at line {line}, column {col}\n  {text}\n  {}^",
                    self.message,
                    " ".repeat(col.saturating_sub(1) as usize)
                )
            }
            None => self.message.clone(),
        }
    }
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((l, c)) => write!(f, "{} at line {l}, column {c}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for BindError {}

/// One output column of a view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type", serialize_with = "type_name")]
    pub ty: Type,
}

pub(crate) fn type_name<S: serde::Serializer>(t: &Type, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t.name())
}

/// The settings a session of viewcast's role gets by default, which decide
/// what some SQL means: `TimeZone` and `DateStyle` for `timestamptz` and
/// date/time text, `IntervalStyle` for interval text, and the database's
/// default collation for text ordering. Read by
/// [`crate::pg::catalog::session_settings`]; viewcast's own connections
/// override the first three (so values decode alike), views do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    pub timezone: String,
    pub datestyle: String,
    pub intervalstyle: String,
    /// The database's default collation: the libc locale (`C`, `C.UTF-8`,
    /// `en_US.UTF-8`) or, with the ICU provider, the ICU locale (`en-US`).
    pub collation: String,
    /// `libc` or `icu`.
    pub collation_provider: String,
}

impl Default for SessionSettings {
    /// What viewcast's own connections use, and what the tests' cluster has.
    fn default() -> Self {
        SessionSettings {
            timezone: "UTC".into(),
            datestyle: "ISO, MDY".into(),
            intervalstyle: "postgres".into(),
            collation: "C".into(),
            collation_provider: "libc".into(),
        }
    }
}

impl SessionSettings {
    /// Whether the default collation orders text as bytes (C, POSIX, and
    /// libc's C.UTF-8, whose order is code points, which in UTF-8 is bytes).
    pub fn collation_is_c(&self) -> bool {
        self.collation_provider != "icu" && is_c_collation(&self.collation)
    }

    /// The default collation as a message names it.
    pub fn collation_name(&self) -> String {
        if self.collation_provider == "icu" {
            format!("\"{}\" (ICU)", self.collation)
        } else {
            format!("\"{}\"", self.collation)
        }
    }
}

/// Collation names (as `COLLATE "..."` or a libc locale writes them) that
/// order text by bytes.
pub fn is_c_collation(name: &str) -> bool {
    matches!(
        name,
        "C" | "POSIX" | "ucs_basic" | "C.UTF-8" | "C.utf8" | "C.UTF8" | "C.utf-8"
    )
}

/// The tables views may read, loaded from Postgres before binding.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    pub tables: Vec<Arc<TableInfo>>,
    /// Names that could not be loaded, with the reason (unknown table, not a
    /// table, cannot be read, ...).
    pub refused: Vec<(Vec<String>, String)>,
    /// Names as Postgres resolved them (search_path applied) → table id.
    pub resolved: Vec<(Vec<String>, usize)>,
    /// Names that resolved to Postgres views, which are read as their
    /// definitions.
    pub pg_views: Vec<(Vec<String>, Arc<PgView>)>,
    /// The role's session defaults that views are evaluated under.
    pub settings: SessionSettings,
}

impl Catalog {
    /// The Postgres view a name resolved to, if it did.
    pub fn pg_view(&self, parts: &[String]) -> Option<&Arc<PgView>> {
        self.pg_views
            .iter()
            .find(|(p, _)| p.as_slice() == parts)
            .map(|(_, v)| v)
    }

    /// Finds a table by `name` or `schema.name` and returns its id: as
    /// Postgres resolved the name, or else an unqualified name prefers `public`.
    pub fn lookup(&self, parts: &[String]) -> Result<(usize, &TableInfo), String> {
        if let Some((_, reason)) = self.refused.iter().find(|(p, _)| p.as_slice() == parts) {
            return Err(reason.clone());
        }
        if let Some((_, id)) = self.resolved.iter().find(|(p, _)| p.as_slice() == parts) {
            if let Some(t) = self.tables.iter().find(|t| t.id == *id) {
                return Ok((t.id, t.as_ref()));
            }
        }
        let found: Vec<(usize, &Arc<TableInfo>)> = self
            .tables
            .iter()
            .map(|t| (t.id, t))
            .filter(|(_, t)| match parts {
                [name] => &t.name == name,
                [schema, name] => &t.schema == schema && &t.name == name,
                _ => false,
            })
            .collect();
        let pick = found
            .iter()
            .find(|(_, t)| t.schema == "public")
            .or(found.first())
            .map(|&(i, t)| (i, t));
        match pick {
            Some((i, t)) => Ok((i, t.as_ref())),
            None => Err(format!("relation \"{}\" does not exist", parts.join("."))),
        }
    }
}

/// A bound view: its plan and output columns.
#[derive(Debug, Clone)]
pub struct CompiledView {
    /// What the dataflow runs: [`CompiledView::body`], then, where the
    /// session's zone is not UTC, a projection that writes each timestamptz
    /// output value as `to_json` writes it in that zone (see [`compile_with`]).
    /// A parameterized view's rows start with their parameter tuple.
    pub plan: Plan,
    pub columns: Vec<Column>,
    /// The view's rows as values, before output rendering: what a view that
    /// reads this one builds on.
    pub body: Plan,
    /// The view's parameters, in tuple order; its plan reads their tuples
    /// from the table [`PARAMS_TABLE`] (the controller gives each view its own).
    pub params: Vec<ViewParam>,
}

/// The table id a parameterized view's plan reads its parameter tuples from,
/// until the controller renames it to the view's own.
pub const PARAMS_TABLE: usize = usize::MAX - 1;

/// The clock of time-based views: one row, the current time as a
/// timestamptz, replaced a few times a second while a view reads it.
pub const CLOCK_TABLE: usize = usize::MAX - 2;

/// Parses one view definition: exactly one SELECT statement.
pub fn parse(sql: &str) -> Result<ast::Query, BindError> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| {
        // sqlparser reports "... at Line: L, Column: C"; keep its text as is.
        BindError {
            message: format!("syntax error: {e}"),
            position: None,
        }
    })?;
    match statements.as_slice() {
        [Statement::Query(q)] => Ok((**q).clone()),
        [] => Err(BindError {
            message: "the file holds no SQL statement".into(),
            position: None,
        }),
        [other] => Err(BindError::new(
            format!(
                "a view must be a SELECT statement, not {}",
                other.to_string().split_whitespace().next().unwrap_or("?")
            ),
            other.span(),
        )),
        _ => Err(BindError {
            message: "a view must be exactly one SELECT statement".into(),
            position: None,
        }),
    }
}

/// The view a relation name in view `own` refers to, if it names one of
/// `is_view`'s: another view's name is that view; a view's own name is the
/// table (`queries/tasks.sql` reading `tasks`), as a view cannot read itself.
pub fn view_ref<'p>(
    own: &str,
    parts: &'p [String],
    is_view: impl Fn(&str) -> bool,
) -> Option<&'p str> {
    match parts {
        [single] if single != own && is_view(single) => Some(single),
        _ => None,
    }
}

/// The names of the tables a set of views reads, in first-mention order
/// (see [`view_ref`] for which names are views).
pub fn table_names(views: &[(String, String)]) -> Vec<Vec<String>> {
    let is_view = |own: &str, parts: &[String]| {
        view_ref(own, parts, |name| views.iter().any(|(n, _)| n == name)).is_some()
    };
    let mut wanted: Vec<Vec<String>> = Vec::new();
    for (own, text) in views {
        if let Ok(q) = parse(text) {
            for r in table_refs(&q) {
                if !wanted.contains(&r) && !is_view(own, &r) {
                    wanted.push(r);
                }
            }
        }
    }
    wanted
}

/// Every relation name a query mentions in FROM, as written (folded to lower
/// case), except the names of its own common table expressions.
pub fn table_refs(q: &ast::Query) -> Vec<Vec<String>> {
    let mut ctes = Vec::new();
    struct CteNames<'n>(&'n mut Vec<String>);
    impl ast::Visitor for CteNames<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &ast::Query) -> std::ops::ControlFlow<()> {
            if let Some(w) = &q.with {
                for c in &w.cte_tables {
                    self.0.push(bind::ident_name(&c.alias.name));
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = ast::Visit::visit(q, &mut CteNames(&mut ctes));
    let mut out = Vec::new();
    let _ = ast::visit_relations(q, |name| {
        let parts = bind::object_name_parts(name);
        let is_cte = matches!(parts.as_slice(), [single] if ctes.contains(single));
        if !is_cte && !out.contains(&parts) {
            out.push(parts);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    out
}

/// Parses and binds a view against the catalog (and no other views).
pub fn compile(sql: &str, catalog: &Catalog) -> Result<CompiledView, BindError> {
    compile_with(sql, catalog, &HashMap::new())
}

/// Parses and binds a view that may select from the views in `views`.
pub fn compile_with(
    sql: &str,
    catalog: &Catalog,
    views: &HashMap<String, CompiledView>,
) -> Result<CompiledView, BindError> {
    let q = parse(sql)?;
    let mut params = bind::params::collect(&q)?;
    if let Some(name) =
        crate::sql::table_refs(&q)
            .into_iter()
            .find_map(|parts| match parts.as_slice() {
                [single] if views.get(single).is_some_and(|v| !v.params.is_empty()) => {
                    Some(single.clone())
                }
                _ => None,
            })
    {
        return Err(BindError {
            message: format!(
                "view \"{name}\" has parameters; a view cannot read a parameterized view"
            ),
            position: None,
        });
    }
    if !params.is_empty() {
        // First pass: the type each $name takes from where it is used.
        let (first, types) =
            bind::params::discovered(|| bind::Binder::new(catalog, views)?.bind_top(&q));
        first?;
        for p in &mut params {
            if p.from == ParamFrom::Request {
                p.ty = match types.get(&p.name) {
                    Some(Type::Unknown) | None => Type::Text,
                    Some(t) => t.clone(),
                };
            }
        }
    }
    let binder = bind::Binder::new(catalog, views)?;
    let (plan, columns) = binder.bind_top_with_params(&q, &params)?;
    let body = prune::prune_view(topk_windows::rewrite(plan));
    let plan = render_output(body.clone(), params.len(), &columns, &binder.time)?;
    Ok(CompiledView {
        plan,
        columns,
        body,
        params,
    })
}

/// The plan a view's subscribers are served from. Postgres's `to_json`
/// writes a timestamptz in the session's TimeZone
/// (`"2024-01-01T00:00:00-05:00"`); viewcast keeps values in UTC and, where
/// the zone is another, ends the plan with a projection that writes each
/// timestamptz (and each array of them) as that JSON text. The values a
/// subscriber receives are then the same bytes Postgres would give, the
/// JSON encoder needs no settings, and views reading this view read its
/// [`CompiledView::body`], still values. An interval shown under an
/// IntervalStyle other than `postgres` is refused.
fn render_output(
    body: Plan,
    params: usize,
    columns: &[Column],
    time: &TimeCx,
) -> Result<Plan, BindError> {
    fn has_tz(t: &Type) -> bool {
        match t {
            Type::TimestampTz => true,
            Type::Array { elem, .. } => has_tz(elem),
            _ => false,
        }
    }
    for c in columns {
        bind::interval_text_allowed(time, &c.ty, Span::empty()).map_err(|e| BindError {
            message: format!("column \"{}\": {}", c.name, e.message),
            position: None,
        })?;
    }
    if time.is_utc() || !columns.iter().any(|c| has_tz(&c.ty)) {
        return Ok(body);
    }
    let exprs = (0..params)
        .map(expr::Expr::Column)
        .chain(columns.iter().enumerate().map(|(i, c)| {
            let i = params + i;
            if has_tz(&c.ty) {
                expr::Expr::Call {
                    func: func::Func::JsonIn(c.ty.clone(), time.clone()),
                    args: vec![expr::Expr::Column(i)],
                    ty: c.ty.clone(),
                }
            } else {
                expr::Expr::Column(i)
            }
        }))
        .collect();
    Ok(Plan::Project {
        input: Box::new(body),
        exprs,
    })
}

/// Compiles a set of views, each of which may select from the others by
/// name: a view is bound after the views it reads, and its plan contains
/// theirs (the dataflow computes a shared subplan once). A view that reads a
/// refused view, or is part of a cycle, is refused.
pub fn compile_all(
    views: &[(String, String)],
    catalog: &Catalog,
) -> Vec<Result<CompiledView, BindError>> {
    // Binding recurses over the query's syntax tree: a long chain of
    // conditions or deeply nested expressions needs more stack than a
    // runtime worker thread has, so views compile on a thread of their own.
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("viewcast-compile".into())
            .stack_size(COMPILE_STACK)
            .spawn_scoped(s, || compile_all_here(views, catalog))
            .expect("a thread to compile views on")
            .join()
            .unwrap_or_else(|_| {
                views
                    .iter()
                    .map(|_| {
                        Err(BindError {
                            message: "internal error while compiling the views; please report it"
                                .into(),
                            position: None,
                        })
                    })
                    .collect()
            })
    })
}

/// The stack views are compiled on (reserved, not committed, until used).
const COMPILE_STACK: usize = 256 << 20;

fn compile_all_here(
    views: &[(String, String)],
    catalog: &Catalog,
) -> Vec<Result<CompiledView, BindError>> {
    let names: Vec<&str> = views.iter().map(|(n, _)| n.as_str()).collect();
    let deps: Vec<Vec<usize>> = views
        .iter()
        .map(|(own, sql)| match parse(sql) {
            Ok(q) => table_refs(&q)
                .into_iter()
                .filter_map(|parts| {
                    let view = view_ref(own, &parts, |name| names.contains(&name))?;
                    names.iter().position(|n| *n == view)
                })
                .collect(),
            Err(_) => Vec::new(),
        })
        .collect();
    let mut results: Vec<Option<Result<CompiledView, BindError>>> = vec![None; views.len()];
    let mut done: HashMap<String, CompiledView> = HashMap::new();
    loop {
        let mut progressed = false;
        for i in 0..views.len() {
            if results[i].is_some() || deps[i].iter().any(|&d| results[d].is_none()) {
                continue;
            }
            progressed = true;
            if let Some(&bad) = deps[i]
                .iter()
                .find(|&&d| matches!(results[d], Some(Err(_))))
            {
                results[i] = Some(Err(BindError {
                    message: format!("view \"{}\" it reads was refused", names[bad]),
                    position: None,
                }));
                continue;
            }
            // A bug in the binder must refuse one view, not take the
            // controller (and every other view) down with it.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                compile_with(&views[i].1, catalog, &done)
            }))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                tracing::error!(view = %views[i].0, panic = %what, "compiling the view panicked");
                Err(BindError {
                    message: format!(
                        "internal error while compiling this view ({what}); please report it"
                    ),
                    position: None,
                })
            });
            if let Ok(v) = &r {
                done.insert(views[i].0.clone(), v.clone());
            }
            results[i] = Some(r);
        }
        if !progressed {
            break;
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(BindError {
                    message: "views that read each other in a cycle".into(),
                    position: None,
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::catalog::ColumnInfo;

    fn catalog() -> Catalog {
        let t = |id: usize, name: &str, cols: &[(&str, Type)]| {
            Arc::new(TableInfo {
                id,
                oid: 1,
                schema: "public".into(),
                name: name.into(),
                columns: cols
                    .iter()
                    .map(|(n, t)| ColumnInfo {
                        name: n.to_string(),
                        ty: t.clone(),
                        type_oid: 0,
                    })
                    .collect(),
                key: Some(vec![0]),
                replica_identity: 'd',
            })
        };
        Catalog {
            tables: vec![
                t(
                    0,
                    "customers",
                    &[
                        ("id", Type::Int4),
                        ("name", Type::Text),
                        ("tier", Type::Text),
                    ],
                ),
                t(
                    1,
                    "orders",
                    &[
                        ("id", Type::Int4),
                        ("customer_id", Type::Int4),
                        ("amount", Type::Numeric),
                        ("at", Type::TimestampTz),
                    ],
                ),
                t(
                    2,
                    "odd",
                    &[
                        ("id", Type::Int4),
                        (
                            "span",
                            Type::Unsupported {
                                oid: 1186,
                                name: "interval".into(),
                            },
                        ),
                    ],
                ),
            ],
            refused: vec![],
            resolved: vec![],
            pg_views: [
                (
                    "big",
                    &["id", "who"][..],
                    "SELECT orders.id, orders.customer_id AS who FROM orders WHERE (orders.amount > (100)::numeric)",
                ),
                (
                    "big_names",
                    &["name", "n"][..],
                    "WITH b AS (SELECT big.who FROM big) SELECT c.name, count(*) AS n FROM (customers c JOIN b ON ((b.who = c.id))) GROUP BY c.name",
                ),
                ("broken", &["x"][..], "SELECT orders.nope AS x FROM orders"),
            ]
            .into_iter()
            .map(|(name, columns, definition)| {
                let view = PgView {
                    oid: 0,
                    schema: "public".into(),
                    name: name.into(),
                    columns: columns.iter().map(|c| c.to_string()).collect(),
                    definition: definition.into(),
                };
                (vec![name.to_string()], Arc::new(view))
            })
            .collect(),
            settings: SessionSettings::default(),
        }
    }

    #[test]
    fn postgres_views_read_as_their_definitions() {
        let v = compile("SELECT n, name FROM big_names", &catalog()).unwrap();
        let names: Vec<&str> = v.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["n", "name"]);
        let p = v.plan.to_string();
        assert!(
            p.contains("Get public.orders") && p.contains("Get public.customers"),
            "{p}"
        );
        // The query's CTE named like a table the definition reads does not
        // reach into it.
        let v = compile(
            "WITH orders AS (SELECT 1 AS id) SELECT big.who FROM big, orders",
            &catalog(),
        )
        .unwrap();
        assert!(v.plan.to_string().contains("Get public.orders"));
        // Column aliases apply to the view's columns.
        let v = compile("SELECT b.a FROM big AS b(x, a)", &catalog()).unwrap();
        assert_eq!(v.columns[0].ty, Type::Int4);
        // An error inside the definition points at the name.
        let e = refuse("SELECT * FROM orders, broken");
        assert!(
            e.contains("Postgres view public.broken (read as its definition): column")
                && e.contains("SELECT * FROM orders, broken\n                        ^"),
            "{e}"
        );
    }

    fn plan(sql: &str) -> String {
        match compile(sql, &catalog()) {
            Ok(v) => v.plan.to_string(),
            Err(e) => panic!("{}", e.render(sql)),
        }
    }

    fn refuse(sql: &str) -> String {
        compile(sql, &catalog()).unwrap_err().render(sql)
    }

    #[test]
    fn join_keys_come_from_where_and_on() {
        let p = plan("SELECT c.name, o.amount FROM customers c, orders o WHERE o.customer_id = c.id AND o.amount > 10");
        assert!(p.contains("InnerJoin on (#0) = (#0)"), "{p}");
        assert!(p.contains("Filter (#1 > 10)"), "{p}");
        let p = plan("SELECT c.name FROM customers c LEFT JOIN orders o ON o.customer_id = c.id AND o.amount > 5");
        assert!(p.contains("LeftJoin on (#0) = (#0)"), "{p}");
        // With no equality the plan says what the join costs.
        let p = plan("SELECT c.name FROM customers c JOIN orders o ON o.amount > c.id");
        assert!(p.contains("InnerJoin (cross product: cost grows as left rows × right rows) filtered by (#2 > #0::numeric)"), "{p}");
    }

    #[test]
    fn units_pinned_to_constants_are_joined_first() {
        // After o, both c and o2 are linked to it; o2 is held to one amount,
        // so it is joined first, and the output keeps FROM's column order.
        let p = plan("SELECT * FROM orders o, customers c, orders o2 WHERE o.customer_id = c.id AND o.id = o2.id AND o2.amount = 5");
        let at = |needle: &str| p.find(needle).unwrap_or_else(|| panic!("{needle} in {p}"));
        assert!(at("Filter (#2 = 5") > at("InnerJoin on (#0) = (#0)"), "{p}");
        assert!(
            p.starts_with("Project #0, #1, #2, #3, #8, #9, #10, #4, #5, #6, #7"),
            "{p}"
        );
        // An IN list of constants pins too (c2 is joined before c, so its
        // filter is printed before c's table); a unit with no pin keeps its
        // place in FROM's order.
        let sql = |filter: &str| {
            format!("SELECT o.id FROM orders o, customers c, customers c2 WHERE o.customer_id = c.id AND o.customer_id = c2.id AND c2.tier {filter}")
        };
        let first_customers = |p: &str| p.find("Get public.customers").expect("customers read");
        let p = plan(&sql("IN ('a', 'b')"));
        assert!(
            p.find("Filter (#1 IN (\"a\", \"b\"))").expect("pinned") < first_customers(&p),
            "{p}"
        );
        let p = plan(&sql("<> 'a'"));
        assert!(
            p.find("Filter (#1 <> \"a\")").expect("filtered") > first_customers(&p),
            "{p}"
        );
    }

    #[test]
    fn where_conjuncts_over_one_side_of_a_join_go_into_it() {
        // As with tables listed in FROM, WHERE's conjuncts over one side of
        // JOIN ... ON filter that side before the join.
        let joined = plan("SELECT c.name, o.amount FROM customers c JOIN orders o ON o.customer_id = c.id WHERE o.amount > 10 AND c.name <> 'x'");
        let listed = plan("SELECT c.name, o.amount FROM customers c, orders o WHERE o.customer_id = c.id AND o.amount > 10 AND c.name <> 'x'");
        assert_eq!(joined, listed);
        assert!(joined.contains("Filter (#1 > 10)"), "{joined}");
        // A LEFT join's preserved side takes them; its NULL-padded side does
        // not (the padded rows would escape the filter).
        let p = plan("SELECT c.name, o.amount FROM customers c LEFT JOIN orders o ON o.customer_id = c.id WHERE c.name <> 'x' AND o.amount > 10");
        let at = |needle: &str| p.find(needle).unwrap_or_else(|| panic!("{needle} in {p}"));
        assert!(at("Filter (#3 > 10)") < at("LeftJoin"), "{p}");
        assert!(at("LeftJoin") < at("Filter (#1 <> \"x\")"), "{p}");
    }

    #[test]
    fn aggregates_and_result_types() {
        let v = compile("SELECT customer_id, count(*), sum(amount), avg(id), sum(id) AS s FROM orders GROUP BY 1 HAVING count(*) > 1", &catalog())
            .unwrap();
        let types: Vec<&str> = v.columns.iter().map(|c| c.ty.name()).collect();
        assert_eq!(types, ["int4", "int8", "numeric", "numeric", "int8"]);
        assert_eq!(v.columns[1].name, "count");
        assert_eq!(v.columns[4].name, "s");
        let v = compile("SELECT count(*) FROM orders", &catalog()).unwrap();
        assert!(
            matches!(v.plan, Plan::Reduce { ref keys, .. } if keys.is_empty())
                || v.plan.to_string().contains("Reduce keys=[]")
        );
    }

    #[test]
    fn refusals_name_the_construct_and_position() {
        let e = refuse("SELECT id FROM orders\nWHERE rank() OVER () > 1");
        assert!(
            e.contains("window functions are not allowed here") && e.contains("line 2, column 7"),
            "{e}"
        );
        let e = refuse("SELECT nope FROM orders");
        assert!(
            e.contains("column \"nope\" does not exist at line 1, column 8"),
            "{e}"
        );
        let e = refuse("SELECT * FROM missing");
        assert!(e.contains("relation \"missing\" does not exist"), "{e}");
        let e = refuse("SELECT id FROM orders UNION SELECT id, name FROM customers");
        assert!(e.contains("same number of columns"), "{e}");
        let e = refuse("SELECT id FROM orders UNION SELECT name FROM customers");
        assert!(
            e.contains("UNION types int4 and text cannot be matched"),
            "{e}"
        );
        let e = refuse("SELECT customer_id, amount FROM orders GROUP BY customer_id");
        assert!(e.contains("must appear in the GROUP BY clause"), "{e}");
        let e = refuse("SELECT span FROM odd");
        assert!(e.contains("interval"), "{e}");
        let e = refuse("SELECT name FROM customers WHERE name = 1");
        assert!(e.contains("operator does not exist: text = int4"), "{e}");
        let e = refuse("DELETE FROM orders");
        assert!(e.contains("SELECT"), "{e}");
        let e = refuse("SELEC 1");
        assert!(e.contains("syntax error"), "{e}");
    }

    #[test]
    fn parameters_take_their_types_from_where_they_are_used() {
        let v = compile(
            "SELECT o.id, o.amount FROM orders o WHERE o.customer_id = $cust AND o.amount > $min AND $note = 'x'",
            &catalog(),
        )
        .unwrap();
        let names: Vec<(String, Type)> = v
            .params
            .iter()
            .map(|p| (p.name.clone(), p.ty.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("cust".to_string(), Type::Int4),
                ("min".to_string(), Type::Numeric),
                ("note".to_string(), Type::Text)
            ]
        );
        let p = v.plan.to_string();
        assert!(p.contains("Get parameters"), "{p}");
        // The parameter is a join key: a new tuple costs only its rows.
        assert!(
            p.contains("InnerJoin on (#0) = (#1)") || p.contains("= (#0)"),
            "{p}"
        );
        assert_eq!(v.plan.arity(), 3 + 2, "rows start with the tuple");
    }

    #[test]
    fn claims_and_parameters_in_subqueries_and_aggregates() {
        let v = compile(
            "SELECT count(*) AS n, sum(o.amount) AS total FROM orders o
             WHERE o.customer_id IN (SELECT c.id FROM customers c WHERE c.tier = auth.jwt() ->> 'tier')
               AND o.customer_id <> $skip",
            &catalog(),
        )
        .unwrap();
        let params: Vec<(String, ParamFrom)> = v
            .params
            .iter()
            .map(|p| (p.name.clone(), p.from.clone()))
            .collect();
        assert_eq!(
            params,
            [
                ("tier".to_string(), ParamFrom::Token),
                ("skip".to_string(), ParamFrom::Request)
            ]
        );
        assert_eq!(v.params[0].ty, Type::Text);
        assert_eq!(v.params[1].ty, Type::Int4);
        // A global aggregate has a row for every tuple, matched or not.
        assert!(v.plan.to_string().contains("AntiJoin"), "{}", v.plan);
        let uid = compile(
            "SELECT id FROM customers WHERE name = auth.uid()",
            &catalog(),
        )
        .unwrap();
        assert_eq!(uid.params[0].name, "sub");
        assert_eq!(uid.params[0].from, ParamFrom::Token);
    }

    #[test]
    fn parameter_mistakes_are_refused_clearly() {
        assert!(refuse("SELECT id FROM orders WHERE id = $1").contains("name parameters"));
        assert!(refuse("SELECT id FROM orders WHERE id = auth.role()").contains("auth.uid()"));
        assert!(refuse("SELECT $x + 'a'::text FROM orders").contains("operator"));
        assert!(
            refuse("WITH w AS (SELECT id FROM orders WHERE id = $x) SELECT * FROM w")
                .contains("not in WITH"),
        );
        assert!(refuse(
            "SELECT o.id FROM orders o RIGHT JOIN customers c ON c.id = o.customer_id AND o.id = $x"
        )
        .contains("RIGHT or FULL join"));
    }

    #[test]
    fn subqueries_become_joins() {
        // EXISTS in WHERE: a semi-join on the parameter, no per-row evaluation.
        let p = plan("SELECT name FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id)");
        assert!(
            p.contains("SemiJoin on (#0) IS NOT DISTINCT FROM (#0)"),
            "{p}"
        );
        assert!(p.contains("InnerJoin on (#0) = (#0)"), "{p}");
        let p = plan("SELECT name FROM customers c WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id)");
        assert!(p.contains("AntiJoin"), "{p}");
        // A correlated count: grouped by the parameter, with count 0 for the rest.
        let p = plan("SELECT name, (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) AS n FROM customers c");
        assert!(p.contains("Reduce keys=[#0] aggs=[count(*)]"), "{p}");
        assert!(p.contains("UnionAll"), "{p}");
        // Uncorrelated IN as a value: counts and matches.
        let p = plan(
            "SELECT id, customer_id IN (SELECT id FROM customers WHERE tier = 'gold') FROM orders",
        );
        assert!(p.contains("count(*)"), "{p}");
        let e = refuse("SELECT (SELECT id, name FROM customers) FROM orders");
        assert!(e.contains("only one column"), "{e}");
    }

    /// Which joins a count or sum is pushed below: the side its aggregates
    /// read, when the group keys read no more of that side than its join
    /// columns, and nothing evaluated there can fail.
    #[test]
    fn sums_over_a_join_are_taken_on_the_side_they_read() {
        let summed = |sql: &str| {
            let p = plan(sql);
            ["left", "right"]
                .into_iter()
                .find(|side| p.contains(&format!("the join's {side} rows summed by join key")))
        };
        let join = "FROM customers c JOIN orders o ON o.customer_id = c.id";
        for (sql, want) in [
            (format!("SELECT c.id, c.name, count(*), sum(o.amount) {join} GROUP BY c.id, c.name"), Some("right")),
            (format!("SELECT c.tier, count(o.id), avg(o.amount) {join} GROUP BY c.tier"), Some("right")),
            // Grouped by the summed side's join column.
            (format!("SELECT o.customer_id, count(*) {join} GROUP BY o.customer_id"), Some("right")),
            (format!("SELECT count(*), sum(o.id) {join}"), Some("right")),
            (
                "SELECT o.id, count(*), sum(c.id) FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY o.id".into(),
                Some("right"),
            ),
            (
                "SELECT c.tier, sum(o.amount) FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.tier".into(),
                Some("left"),
            ),
            // The group keys read the summed side beyond its join column.
            (format!("SELECT c.tier, o.id, count(*) {join} GROUP BY c.tier, o.id"), None),
            // Aggregates of both sides, or not accumulable, or fallible.
            (format!("SELECT c.tier, sum(o.amount), count(c.name) {join} GROUP BY c.tier"), None),
            (format!("SELECT c.tier, max(o.amount) {join} GROUP BY c.tier"), None),
            (format!("SELECT c.tier, count(DISTINCT o.id) {join} GROUP BY c.tier"), None),
            (format!("SELECT c.tier, sum(o.amount * 2) {join} GROUP BY c.tier"), None),
            (format!("SELECT c.tier || 'x', sum(o.amount) {join} GROUP BY 1"), None),
            // An outer join, or a join condition beyond equality.
            (
                "SELECT c.tier, sum(o.amount) FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.tier".into(),
                None,
            ),
            (format!("SELECT c.tier, sum(o.amount) {join} AND o.id < c.id GROUP BY c.tier"), None),
        ] {
            assert_eq!(summed(&sql), want, "{sql}\n{}", plan(&sql));
        }
    }

    #[test]
    fn aggregates_of_enclosing_queries_are_computed_there() {
        // max(o.amount) reads only the outer query: it aggregates, one row.
        let v = compile("SELECT (SELECT max(o.amount)) FROM orders o", &catalog()).unwrap();
        let p = v.plan.to_string();
        assert!(p.contains("Reduce keys=[] aggs=[max("), "{p}");
        assert!(!p.contains("groups"), "the placeholder is replaced: {p}");
        assert_eq!(v.columns[0].ty, Type::Numeric);
        // Per group; count(*) is the subquery's own.
        plan("SELECT o.customer_id, (SELECT count(o.id) + count(*) FROM customers) FROM orders o GROUP BY 1");
        // Two levels out, and in the subquery's WHERE and GROUP BY.
        plan("SELECT (SELECT (SELECT sum(o.amount)) FROM customers c LIMIT 1) FROM orders o");
        plan("SELECT (SELECT count(*) FROM customers c WHERE c.id > (SELECT max(o.id))) FROM orders o");
        plan("SELECT (SELECT 1 FROM customers GROUP BY max(o.id)) FROM orders o");
        // Inside the subquery's own aggregate, which reads its own rows.
        plan("SELECT (SELECT sum(c.id + (SELECT max(o.id))) FROM customers c) FROM orders o");
        // Reading the subquery's columns makes it the subquery's.
        let p = plan("SELECT (SELECT max(o.id + c.id) FROM customers c) FROM orders o");
        assert!(!p.contains("Reduce keys=[] aggs=[max"), "{p}");
    }

    #[test]
    fn aggregates_of_enclosing_queries_are_refused_where_postgres_refuses_them() {
        for (sql, want) in [
            (
                "SELECT o.id, (SELECT max(o.amount)) FROM orders o",
                "column \"o.id\" must appear in the GROUP BY clause",
            ),
            (
                "SELECT (SELECT max(o.amount) + o.id) FROM orders o",
                "subquery uses ungrouped column \"o.id\" from outer query",
            ),
            (
                "SELECT o.id FROM orders o WHERE o.amount = (SELECT max(o.amount))",
                "aggregate functions are not allowed in WHERE",
            ),
            (
                "SELECT o.customer_id FROM orders o GROUP BY (SELECT max(o.amount))",
                "aggregate functions are not allowed in GROUP BY",
            ),
            (
                "SELECT (SELECT max(o.amount + count(*)) FROM customers) FROM orders o",
                "aggregate function calls cannot be nested",
            ),
            (
                "SELECT (SELECT sum(max(o.amount))) FROM orders o",
                "aggregate function calls cannot be nested",
            ),
            (
                "SELECT sum((SELECT max(o.amount))) FROM orders o",
                "aggregate function calls cannot be nested",
            ),
            (
                "SELECT (SELECT count(*) FILTER (WHERE max(o.amount) > 1) FROM customers) FROM orders o",
                "aggregate function calls cannot be nested",
            ),
            (
                "SELECT * FROM orders o, LATERAL (SELECT max(o.amount)) d",
                "aggregate functions are not allowed here",
            ),
        ] {
            let e = refuse(sql);
            assert!(e.contains(want), "{sql}: {e}");
        }
        // The error points at the aggregate.
        let e = refuse("SELECT o.id FROM orders o\nWHERE o.amount = (SELECT max(o.amount))");
        assert!(e.contains("line 2, column 26"), "{e}");
    }

    #[test]
    fn set_operations_ctes_and_topk() {
        let p = plan("WITH big AS (SELECT * FROM orders WHERE amount > 100) SELECT id FROM big UNION SELECT id FROM customers");
        assert!(p.contains("Distinct") && p.contains("UnionAll"), "{p}");
        let p = plan("SELECT id FROM orders EXCEPT ALL SELECT id FROM customers");
        assert!(p.contains("ExceptAll"), "{p}");
        let p = plan("SELECT id, amount FROM orders ORDER BY amount DESC, at LIMIT 3 OFFSET 1");
        assert!(
            p.contains("TopK order=[#1 DESC, #2] limit=3 offset=1"),
            "{p}"
        );
        let p = plan("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT n FROM r");
        assert!(
            p.contains("Recursive r0 (fixed point of base UNION ALL step)"),
            "{p}"
        );
        let e = refuse(
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION SELECT count(*)::int4 FROM r) SELECT * FROM r",
        );
        assert!(e.contains("under an aggregate"), "{e}");
        let e = refuse(
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION SELECT n::numeric FROM r) SELECT * FROM r",
        );
        assert!(
            e.contains("has type int4 in non-recursive term but type numeric overall"),
            "{e}"
        );
    }

    #[test]
    fn numeric_casts_keep_their_precision_and_scale() {
        let p = plan("SELECT amount::numeric(6,1) FROM orders WHERE amount > '1.25'::numeric(4,1)");
        assert!(p.contains("#0::numeric(6,1)"), "{p}");
        // The constant is cast once, while binding: 1.25 rounds to 1.3.
        assert!(p.contains("(#0 > 1.3)"), "{p}");
        assert!(plan("SELECT NUMERIC(5,2) '1.234' AS x FROM orders").contains("1.23"));
        let e = refuse("SELECT 12345::numeric(3,1) FROM orders");
        assert!(e.contains("numeric field overflow"), "{e}");
        let e = refuse("SELECT name::varchar(3) FROM customers");
        assert!(e.contains("string lengths"), "{e}");
        let e = refuse("SELECT at::timestamp(0) FROM orders");
        assert!(e.contains("type modifier"), "{e}");
    }

    #[test]
    fn strict_operators_with_a_null_constant_fold_to_null() {
        // As Postgres's planner: the division is never evaluated.
        let p = plan("SELECT id FROM orders WHERE (id / - 0) = NULL");
        assert!(p.contains("Filter null"), "{p}");
        let p = plan("SELECT id FROM orders WHERE id IS NULL OR (id / 0 = 1)");
        assert!(p.contains("(#0 / 0)"), "{p}");
    }

    #[test]
    fn string_literals_take_the_other_operand_type() {
        let p = plan("SELECT id FROM orders WHERE at >= '2024-01-01 00:00:00+00'");
        assert!(p.contains("\"2024-01-01T00:00:00+00:00\""), "{p}");
        let e = refuse("SELECT id FROM orders WHERE at >= 'not a time'");
        assert!(e.contains("timestamp"), "{e}");
    }

    fn catalog_in(timezone: &str, datestyle: &str) -> Catalog {
        let mut c = catalog();
        c.settings.timezone = timezone.into();
        c.settings.datestyle = datestyle.into();
        c
    }

    /// The rows of a view made only of constants and projections, as JSON.
    fn constant_rows(plan: &Plan) -> Vec<String> {
        fn rows(plan: &Plan) -> Vec<crate::repr::Row> {
            match plan {
                Plan::Constant { rows, .. } => rows.clone(),
                Plan::Project { input, exprs } => rows(input)
                    .iter()
                    .map(|r| exprs.iter().map(|e| e.eval(r).unwrap()).collect())
                    .collect(),
                other => panic!("not a constant plan: {other}"),
            }
        }
        rows(plan)
            .iter()
            .map(|r| {
                let mut s = String::new();
                crate::repr::write_row_json(r, &mut s);
                s
            })
            .collect()
    }

    #[test]
    fn timestamptz_follows_the_session_zone() {
        let ny = catalog_in("America/New_York", "ISO, MDY");
        // Each expected value is PostgreSQL 15's to_json under TimeZone America/New_York.
        for (expr, want) in [
            ("'2024-03-10 06:30+00'::timestamptz::date", "\"2024-03-10\""),
            ("'2024-03-10 04:30+00'::timestamptz::date", "\"2024-03-09\""),
            (
                "date_trunc('day', '2024-03-10 12:00+00'::timestamptz)",
                "\"2024-03-10T00:00:00-05:00\"",
            ),
            (
                "date_trunc('day', '2024-11-03 12:00+00'::timestamptz)",
                "\"2024-11-03T00:00:00-04:00\"",
            ),
            ("extract(hour from '2024-07-01 12:00+00'::timestamptz)", "8"),
            (
                "'2024-07-01 12:00+00'::timestamptz::text",
                "\"2024-07-01 08:00:00-04\"",
            ),
            (
                "'2024-03-09 12:00+00'::timestamptz + interval '1 day'",
                "\"2024-03-10T07:00:00-04:00\"",
            ),
            (
                "'2024-03-09 12:00+00'::timestamptz - interval '-1 day 2 hours'",
                "\"2024-03-10T05:00:00-04:00\"",
            ),
            (
                "'2024-01-01'::date::timestamptz",
                "\"2024-01-01T00:00:00-05:00\"",
            ),
            (
                "'2024-01-01 00:00'::timestamp = '2024-01-01 05:00+00'::timestamptz",
                "true",
            ),
            ("'2024-01-01'::timestamptz", "\"2024-01-01T00:00:00-05:00\""),
            (
                "'x' || '2024-01-01 05:00+00'::timestamptz",
                "\"x2024-01-01 00:00:00-05\"",
            ),
            (
                "date_trunc('day', '2024-03-10'::date)",
                "\"2024-03-10T00:00:00-05:00\"",
            ),
            ("date_part('hour', '2024-11-03 06:30+00'::timestamptz)", "1"),
            (
                "'2024-11-03 06:30+00'::timestamptz::timestamp",
                "\"2024-11-03T01:30:00\"",
            ),
            (
                "'2024-03-10 02:30'::timestamp::timestamptz",
                "\"2024-03-10T03:30:00-04:00\"",
            ),
            (
                "concat('2024-01-01 05:00+00'::timestamptz, 1)",
                "\"2024-01-01 00:00:00-051\"",
            ),
            (
                "extract(epoch from '2024-01-01 05:00+00'::timestamptz)",
                "1704085200.000000",
            ),
            (
                "date_trunc('month', '2024-03-31 23:00-04'::timestamptz)",
                "\"2024-03-01T00:00:00-05:00\"",
            ),
            (
                "'2024-03-10 05:00+00'::timestamptz > '2024-03-10'::date",
                "false",
            ),
        ] {
            let v =
                compile(&format!("SELECT {expr}"), &ny).unwrap_or_else(|e| panic!("{expr}: {e}"));
            assert_eq!(constant_rows(&v.plan), [format!("[{want}]")], "{expr}");
        }
        let kolkata = catalog_in("Asia/Kolkata", "ISO, MDY");
        let v = compile(
            "SELECT date_trunc('hour', '2024-01-01 00:10+00'::timestamptz)",
            &kolkata,
        )
        .unwrap();
        assert_eq!(constant_rows(&v.plan), ["[\"2024-01-01T05:00:00+05:30\"]"]);
    }

    #[test]
    fn views_over_timestamptz_render_in_the_zone_and_read_values() {
        let ny = catalog_in("America/New_York", "SQL, DMY");
        let v = compile("SELECT id, at, at::date AS day FROM orders", &ny).unwrap();
        let p = v.plan.to_string();
        assert!(p.contains("to_json[America/New_York](#1)"), "{p}");
        assert!(!v.body.to_string().contains("to_json"), "{}", v.body);
        // A view reading it reads values, not their JSON.
        let mut views = HashMap::new();
        views.insert("v".to_string(), v);
        let w = compile_with("SELECT max(at) FROM v", &ny, &views).unwrap();
        assert!(w.plan.to_string().contains("max(#"), "{}", w.plan);
        // DMY reads 02/01/2024 as 2 January.
        let v = compile("SELECT '02/01/2024'::date::text", &ny).unwrap();
        assert_eq!(constant_rows(&v.plan), ["[\"02/01/2024\"]"]);
        // UTC needs no rendering.
        let v = compile("SELECT at FROM orders", &catalog()).unwrap();
        assert_eq!(v.plan.to_string(), v.body.to_string());
        let mut bad = catalog();
        bad.settings.timezone = "Mars/Olympus".into();
        let e = compile("SELECT 1", &bad).unwrap_err().to_string();
        assert!(e.contains("Mars/Olympus"), "{e}");
        let mut iso8601 = catalog();
        iso8601.settings.intervalstyle = "iso_8601".into();
        let e = compile("SELECT at - at AS d FROM orders", &iso8601)
            .unwrap_err()
            .to_string();
        assert!(e.contains("IntervalStyle iso_8601"), "{e}");
        assert!(compile(
            "SELECT id FROM orders WHERE at - at < interval '1 day'",
            &iso8601
        )
        .is_ok());
    }

    #[test]
    fn text_ordering_under_a_collation_is_refused_unless_collate_c() {
        let mut icu = catalog();
        icu.settings.collation = "en-US".into();
        icu.settings.collation_provider = "icu".into();
        for sql in [
            "SELECT name FROM customers ORDER BY name LIMIT 3",
            "SELECT name FROM customers ORDER BY 1 DESC LIMIT 3",
            "SELECT min(name) FROM customers",
            "SELECT tier, max(name) FROM customers GROUP BY tier",
            "SELECT id FROM customers WHERE name < 'm'",
            "SELECT id FROM customers WHERE name BETWEEN 'a' AND 'm'",
            "SELECT greatest(name, tier) FROM customers",
            "SELECT string_agg(name, ',' ORDER BY name) FROM customers",
            "SELECT array_agg(DISTINCT name) FROM customers",
            "SELECT name FROM customers UNION SELECT tier FROM customers ORDER BY 1 LIMIT 2",
            "SELECT 'a' < 'B'",
        ] {
            let e = compile(sql, &icu).unwrap_err().to_string();
            assert!(
                e.contains("\"en-US\" (ICU)") && e.contains("COLLATE \"C\""),
                "{sql}: {e}"
            );
        }
        for sql in [
            "SELECT id FROM customers WHERE name = 'x'",
            "SELECT name, count(*) FROM customers GROUP BY name",
            "SELECT DISTINCT name FROM customers",
            "SELECT count(DISTINCT name) FROM customers",
            "SELECT c.id FROM customers c JOIN customers d ON c.name = d.tier",
            "SELECT name FROM customers ORDER BY id LIMIT 3",
            "SELECT name FROM customers ORDER BY name COLLATE \"C\" LIMIT 3",
            "SELECT name COLLATE \"C\" AS n FROM customers ORDER BY n LIMIT 3",
            "SELECT min(name COLLATE \"C\") FROM customers",
            "SELECT id FROM customers WHERE lower(name) COLLATE \"POSIX\" < 'm'",
            "SELECT id FROM customers WHERE name < 'm' COLLATE \"C\"",
            "SELECT string_agg(name, ',' ORDER BY name COLLATE \"C\") FROM customers",
            "SELECT name FROM customers",
        ] {
            if let Err(e) = compile(sql, &icu) {
                panic!("{sql}: {e}");
            }
        }
        let e = compile(
            "SELECT name FROM customers ORDER BY name COLLATE \"en-US-x-icu\" LIMIT 3",
            &icu,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("COLLATE \"en-US-x-icu\""), "{e}");
        // Under C (and C.UTF-8, which orders by code point) nothing is refused.
        let mut c_utf8 = catalog();
        c_utf8.settings.collation = "C.UTF-8".into();
        assert!(compile("SELECT min(name) FROM customers", &c_utf8).is_ok());
        let mut libc = catalog();
        libc.settings.collation = "en_US.UTF-8".into();
        let e = compile("SELECT min(name) FROM customers", &libc)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"en_US.UTF-8\""), "{e}");
        let e = compile(
            "SELECT id FROM customers WHERE id COLLATE \"C\" < 3",
            &catalog(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("collations are not supported by type int4"),
            "{e}"
        );
    }

    #[test]
    fn plans_are_equal_as_values_not_as_text() {
        use std::collections::hash_map::DefaultHasher;
        use std::hash::{Hash, Hasher};
        let compiled = |sql: &str| compile(sql, &catalog()).unwrap().plan;
        let hash = |p: &Plan| {
            let mut h = DefaultHasher::new();
            p.hash(&mut h);
            h.finish()
        };
        // Aliases, output names and layout do not make a plan different.
        let a = compiled("SELECT o.customer_id, sum(o.amount) AS total FROM orders o WHERE o.amount > 1 GROUP BY 1");
        let b = compiled("select x.customer_id,  sum(x.amount) as s\n from orders x where x.amount > 1 group by x.customer_id");
        assert_eq!(a, b);
        assert_eq!(hash(&a), hash(&b));
        // Literals compare as written: -0 is not 0, 1.5 is not 1.50 (their
        // results print differently), and a different constant is a
        // different plan.
        let zero = compiled("SELECT id, 0::float8 AS z FROM orders");
        assert_ne!(zero, compiled("SELECT id, '-0'::float8 AS z FROM orders"));
        let n = compiled("SELECT id, 1.5 AS n FROM orders");
        assert_ne!(n, compiled("SELECT id, 1.50 AS n FROM orders"));
        assert_ne!(
            a,
            compiled("SELECT customer_id, sum(amount) FROM orders WHERE amount > 2 GROUP BY 1")
        );
    }

    #[test]
    fn a_compared_subquery_value_meets_the_rows_left_after_not_exists() {
        use crate::sql::plan::JoinKind;
        fn find<'p>(p: &'p Plan, pred: &dyn Fn(&Plan) -> bool) -> Option<&'p Plan> {
            if pred(p) {
                return Some(p);
            }
            p.inputs().into_iter().find_map(|i| find(i, pred))
        }
        let cross = |p: &Plan| matches!(p, Plan::Join { kind: JoinKind::Inner, left_keys, .. } if left_keys.is_empty());
        let anti = |p: &Plan| {
            matches!(
                p,
                Plan::Join {
                    kind: JoinKind::Anti,
                    ..
                }
            )
        };
        let below = |outer: &dyn Fn(&Plan) -> bool, inner: &dyn Fn(&Plan) -> bool, sql: &str| {
            let plan = compile(sql, &catalog()).unwrap().plan;
            let top = find(&plan, outer).unwrap_or_else(|| panic!("no such join in {plan:?}"));
            find(top, inner).is_some()
        };
        // q22's shape: the average changes whenever a row below it does,
        // and each change meets only the rows the anti-join kept, whichever
        // order the conjuncts are written in.
        for sql in [
            "SELECT id FROM orders o WHERE amount > (SELECT avg(amount) FROM orders) AND NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = o.customer_id)",
            "SELECT id FROM orders o WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = o.customer_id) AND (SELECT avg(amount) FROM orders) < amount",
        ] {
            assert!(below(&cross, &anti, sql), "{sql}");
        }
        // A value that can fail (a division) is evaluated for every row, as
        // Postgres filters with it before its anti-join.
        let fallible = "SELECT id FROM orders o WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = o.customer_id) AND amount / (SELECT avg(amount) FROM orders) > 1";
        assert!(below(&anti, &cross, fallible));
        assert!(!below(&cross, &anti, fallible));
    }
}
