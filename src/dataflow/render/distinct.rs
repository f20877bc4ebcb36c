//! `Distinct`: each row once.

use super::Coll;
use super::Time;

pub fn render<T: Time>(input: Coll<'_, T>) -> Coll<'_, T> {
    input.distinct()
}
