//! `Get`: a base table's collection, shared by every view that reads it.

use super::Time;
use super::{Coll, Context};

pub fn render<'s, T: Time>(table: usize, ctx: &Context<'s, T>) -> Coll<'s, T> {
    ctx.tables[table].clone()
}
