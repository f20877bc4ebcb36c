//! Name resolution: the columns a clause can see, and the enclosing queries a
//! correlated subquery reaches into.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

use sqlparser::ast;
use sqlparser::tokenizer::Span;

use super::Result;
use crate::repr::Type;
use crate::sql::plan::SortKey;
use crate::sql::BindError;

#[derive(Clone, Debug)]
pub struct ScopeCol {
    pub qualifier: Option<String>,
    pub name: String,
    pub ty: Type,
    /// 0 for the query's own FROM items; d > 0 for a value of the query d
    /// levels out, carried in as a parameter of a decorrelated subquery.
    /// Inner names win over outer ones.
    pub depth: usize,
    /// A column merged away by `JOIN ... USING` / `NATURAL JOIN`: reachable only
    /// qualified (`a.x`) and left out of `*`.
    pub hidden: bool,
    /// Part of a base table's primary key (or replica identity index): never
    /// NULL in a row of the table, so NULL only where an outer join pads.
    pub key: bool,
    /// On the side of an outer join that is padded with NULLs for a row
    /// without a match. A whole-row reference to such a FROM item is NULL
    /// there in Postgres, which its columns alone cannot tell.
    pub null_extended: bool,
}

impl ScopeCol {
    pub fn new(qualifier: Option<String>, name: String, ty: Type) -> Self {
        ScopeCol {
            qualifier,
            name,
            ty,
            depth: 0,
            hidden: false,
            key: false,
            null_extended: false,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub cols: Vec<ScopeCol>,
    /// The order of the rows, for a subquery in FROM with an ORDER BY: keys
    /// over `cols` (some of them hidden). Postgres hands such rows on in that
    /// order, and `array_agg` and `LIMIT` over them are read in it.
    pub order: Vec<SortKey>,
}

impl Scope {
    pub fn concat(&self, other: &Scope) -> Scope {
        Scope {
            cols: self.cols.iter().chain(other.cols.iter()).cloned().collect(),
            order: Vec::new(),
        }
    }

    /// `left` then `right` as an outer join combines them: the columns of
    /// a side padded with NULLs are marked so.
    pub fn outer_join(left: &Scope, right: &Scope, left_padded: bool, right_padded: bool) -> Scope {
        fn mark(s: &Scope, padded: bool) -> impl Iterator<Item = ScopeCol> + '_ {
            s.cols.iter().cloned().map(move |mut c| {
                c.null_extended |= padded;
                c
            })
        }
        Scope {
            cols: mark(left, left_padded)
                .chain(mark(right, right_padded))
                .collect(),
            order: Vec::new(),
        }
    }

    pub fn has_qualifier(&self, q: &str) -> bool {
        self.cols.iter().any(|c| c.qualifier.as_deref() == Some(q))
    }

    /// Finds `qualifier.name` (or `name`): `None` if nothing matches, so the
    /// caller can look in an enclosing query.
    pub fn resolve(
        &self,
        qualifier: Option<&str>,
        name: &str,
        span: Span,
    ) -> Option<Result<(usize, Type)>> {
        let matches: Vec<usize> = self
            .cols
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.name == name
                    && match qualifier {
                        Some(q) => c.qualifier.as_deref() == Some(q),
                        None => !c.hidden,
                    }
            })
            .map(|(i, _)| i)
            .collect();
        let depth = matches.iter().map(|&i| self.cols[i].depth).min()?;
        let nearest: Vec<usize> = matches
            .into_iter()
            .filter(|&i| self.cols[i].depth == depth)
            .collect();
        let shown = match qualifier {
            Some(q) => format!("{q}.{name}"),
            None => name.to_string(),
        };
        Some(match nearest.as_slice() {
            [i] => {
                let ty = self.cols[*i].ty.clone();
                if let Type::Unsupported { name: tn, .. } = &ty {
                    return Some(Err(BindError::new(
                        format!(
                            "column \"{shown}\" has type {tn}, which viewcast does not support"
                        ),
                        span,
                    )));
                }
                Ok((*i, ty))
            }
            _ => Err(BindError::new(
                format!("column reference \"{shown}\" is ambiguous"),
                span,
            )),
        })
    }
}

/// An enclosing query, seen from a subquery inside it: its scope, and the
/// columns of that scope the subquery (or anything nested in it) refers to.
/// Those become the subquery's parameters when it is decorrelated.
pub struct Outer<'o> {
    pub scope: &'o Scope,
    pub used: RefCell<BTreeSet<usize>>,
    pub parent: Option<&'o Outer<'o>>,
    /// While the enclosing query surveys its subqueries for aggregate calls
    /// that belong to it (see `aggregate`), the calls found; `None` where a
    /// subquery stands in a clause of it that allows no aggregates.
    pub surveyed: Option<RefCell<Vec<ast::Function>>>,
    /// How often a call was found to belong to it: a probe of an aggregate's
    /// arguments reads from it that they hold one.
    pub found: Cell<usize>,
}

impl<'o> Outer<'o> {
    pub fn new(scope: &'o Scope, parent: Option<&'o Outer<'o>>) -> Self {
        Outer {
            scope,
            used: RefCell::new(BTreeSet::new()),
            parent,
            surveyed: None,
            found: Cell::new(0),
        }
    }

    /// An enclosing query that collects the aggregate calls of its
    /// subqueries that belong to it.
    pub fn surveying(scope: &'o Scope, parent: Option<&'o Outer<'o>>) -> Self {
        Outer {
            surveyed: Some(RefCell::new(Vec::new())),
            ..Outer::new(scope, parent)
        }
    }

    pub fn used(&self) -> Vec<usize> {
        self.used.borrow().iter().copied().collect()
    }
}
