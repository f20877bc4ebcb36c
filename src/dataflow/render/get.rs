//! `Get`: a base table's collection, shared by every view that reads it.

use super::{Coll, Context};

pub fn render<'s>(table: usize, ctx: &Context<'s>) -> Coll<'s> {
    ctx.tables[table].clone()
}
