//! `Distinct`: each row once.

use super::Coll;

pub fn render(input: Coll<'_>) -> Coll<'_> {
    input.distinct()
}
