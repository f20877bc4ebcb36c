//! `Get`: a base table's rows, imported from its shared arrangement.

use super::Time;
use super::{Coll, Context};

/// The caller imports every table a plan reads before rendering it
/// ([`crate::sql::Plan::tables`]); a missing one is an empty collection
/// rather than a panic, and fails nothing else.
pub fn render<'s, T: Time>(table: usize, ctx: &mut Context<'s, T>) -> Coll<'s, T> {
    match ctx.table(table) {
        Some(c) => c,
        None => ctx.unit().flat_map(|()| None),
    }
}
