//! A followed table's current rows, found by their identity: the key columns
//! (primary key or replica identity index), or the whole row when the table
//! has none.
//!
//! The table is a hash table of packed rows alone. An entry is hashed and
//! compared by the key it carries (decoded from the row's leading bytes as
//! far as the last key column), so the key is not stored a second time beside
//! each row: at 1M rows that is 24 of every 56 bytes a `HashMap<key, (row,
//! count)>` spent per slot. A multiset needs no count either: rows that share
//! an identity are separate entries (a table without a key can hold equal
//! rows; a deferrable primary key can hold two rows of one key until the
//! transaction ends).

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::catalog::TableInfo;
use crate::dataflow::Updates;
use crate::repr::{Datum, PackedRow, Row};

pub struct TableRows {
    /// Key column positions; `None`: the whole row is the identity.
    key: Option<Vec<usize>>,
    rows: HashTable<PackedRow>,
    hasher: std::collections::hash_map::RandomState,
}

impl TableRows {
    fn with_key(key: Option<Vec<usize>>, capacity: usize) -> TableRows {
        TableRows {
            key,
            rows: HashTable::with_capacity(capacity),
            hasher: Default::default(),
        }
    }

    /// The rows of a snapshot.
    pub fn from_rows(info: &TableInfo, rows: Vec<PackedRow>) -> TableRows {
        let mut out = TableRows::with_key(info.key.clone(), rows.len());
        for row in rows {
            out.insert(row);
        }
        out
    }

    /// The identity of a stored row.
    fn key_of_packed(&self, row: &PackedRow) -> PackedRow {
        key_bytes(&self.key, row)
    }

    fn hash(&self, key: &PackedRow) -> u64 {
        self.hasher.hash_one(key.as_bytes())
    }

    fn hash_row(&self, row: &PackedRow) -> u64 {
        self.hash(&self.key_of_packed(row))
    }

    pub fn iter(&self) -> impl Iterator<Item = &PackedRow> {
        self.rows.iter()
    }

    pub fn drain(&mut self) -> impl Iterator<Item = PackedRow> + '_ {
        self.rows.drain()
    }

    pub fn insert(&mut self, row: PackedRow) {
        let hash = self.hash_row(&row);
        self.insert_hashed(hash, row);
    }

    /// [`TableRows::insert`] of a row whose values are at hand (`row` packs
    /// `values`): its key is taken from them rather than decoded again.
    pub fn insert_decoded(&mut self, row: PackedRow, values: &Row) {
        let key = match &self.key {
            Some(cols) => packed_key(cols.iter().map(|c| &values[*c])),
            None => row.clone(),
        };
        let hash = self.hash(&key);
        self.insert_hashed(hash, row);
    }

    fn insert_hashed(&mut self, hash: u64, row: PackedRow) {
        let (key, hasher) = (&self.key, &self.hasher);
        self.rows
            .insert_unique(hash, row, |r| hasher.hash_one(key_bytes(key, r).as_bytes()));
    }

    /// Removes a row with identity `key` (as [`key_bytes`] makes it) and
    /// returns it. Of several rows with that identity, one for which `prefer`
    /// holds is taken if there is one.
    pub fn remove(
        &mut self,
        key: &PackedRow,
        prefer: impl Fn(&PackedRow) -> bool,
    ) -> Option<PackedRow> {
        if self.key.is_none() {
            // The identity is the whole row: rows sharing it are equal.
            return self.remove_row(key).then(|| key.clone());
        }
        let hash = self.hash(key);
        let mut matching = self
            .rows
            .iter_hash(hash)
            .filter(|r| self.key_of_packed(r) == *key);
        let first = matching.next()?.clone();
        // `prefer` is asked only when there is a choice.
        let chosen = match matching.next() {
            None => first,
            Some(_) if prefer(&first) => first,
            Some(second) => std::iter::once(second)
                .chain(matching)
                .find(|r| prefer(r))
                .cloned()
                .unwrap_or(first),
        };
        let entry = self.rows.find_entry(hash, |r| *r == chosen).ok()?;
        Some(entry.remove().0)
    }

    /// Removes one entry equal to `row` (the whole row); whether there was one.
    pub fn remove_row(&mut self, row: &PackedRow) -> bool {
        let key = self.key_of_packed(row);
        match self.rows.find_entry(self.hash(&key), |r| r == row) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// How many entries equal `row`.
    fn count(&self, row: &PackedRow) -> usize {
        self.rows
            .iter_hash(self.hash_row(row))
            .filter(|r| *r == row)
            .count()
    }

    /// The updates of table `id` that turn `old`'s rows into `new`'s. A row
    /// in both equally often sends nothing; otherwise each of its entries in
    /// `old` is retracted and each in `new` inserted (the dataflow nets a
    /// row that only changed its multiplicity).
    pub fn diff_into(id: usize, old: &TableRows, new: &TableRows, out: &mut Updates) {
        for row in old.iter() {
            if old.count(row) != new.count(row) {
                out.push((id, row.clone(), -1));
            }
        }
        for row in new.iter() {
            if old.count(row) != new.count(row) {
                out.push((id, row.clone(), 1));
            }
        }
    }
}

/// The bytes a row's identity hashes as (see [`TableRows::key_of_packed`]);
/// a free function so `insert`'s rehash can borrow the table mutably.
fn key_bytes(key: &Option<Vec<usize>>, row: &PackedRow) -> PackedRow {
    match key {
        Some(cols) => packed_key(row.columns(cols).iter()),
        None => row.clone(),
    }
}

/// Key values, in key form, packed: the one way an identity is made, from
/// a stored row, from decoded values, or from a change's key columns.
pub(super) fn packed_key<'a>(values: impl Iterator<Item = &'a Datum>) -> PackedRow {
    PackedRow::pack(&values.map(Datum::key_form).collect::<Row>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repr::Numeric;

    fn row(id: i64, name: &str) -> PackedRow {
        PackedRow::pack(&[Datum::Int(id), Datum::Text(name.into())])
    }

    fn key(id: i64) -> PackedRow {
        PackedRow::pack(&[Datum::Int(id)])
    }

    fn rows_of(t: &TableRows) -> Vec<Row> {
        let mut v: Vec<Row> = t.iter().map(PackedRow::unpack).collect();
        v.sort();
        v
    }

    #[test]
    fn finds_rows_by_the_key_inside_them() {
        let mut t = TableRows::with_key(Some(vec![0]), 0);
        for i in 0..1000 {
            t.insert(row(i, &format!("name {i} long enough to live on the heap")));
        }
        assert_eq!(t.iter().count(), 1000);
        let got = t.remove(&key(500), |_| true).expect("row 500");
        assert_eq!(
            got.unpack()[1],
            Datum::Text("name 500 long enough to live on the heap".into())
        );
        assert!(t.remove(&key(500), |_| true).is_none(), "removed once");
        assert!(t.remove(&key(5000), |_| true).is_none(), "never there");
        assert_eq!(t.iter().count(), 999);
    }

    #[test]
    fn a_row_inserted_with_its_values_is_found_like_any_other() {
        let mut t = TableRows::with_key(Some(vec![1]), 0);
        let values = vec![Datum::Text("x".into()), Datum::Int(7)];
        t.insert_decoded(PackedRow::pack(&values), &values);
        assert_eq!(t.count(&PackedRow::pack(&values)), 1);
        assert!(t.remove(&key(7), |_| true).is_some());
    }

    #[test]
    fn key_values_postgres_calls_equal_find_each_other() {
        // A numeric key stored as 1.50 is found by 1.5.
        let mut t = TableRows::with_key(Some(vec![1]), 0);
        let stored = PackedRow::pack(&[
            Datum::Text("x".into()),
            Datum::Numeric(Numeric::parse("1.50").unwrap()),
        ]);
        t.insert(stored.clone());
        let probe = PackedRow::pack(&[Datum::Numeric(Numeric::parse("1.5").unwrap()).key_form()]);
        assert_eq!(t.remove(&probe, |_| true), Some(stored));
    }

    #[test]
    fn rows_sharing_a_key_are_kept_apart_and_the_preferred_one_goes() {
        let mut t = TableRows::with_key(Some(vec![0]), 0);
        t.insert(row(1, "old"));
        t.insert(row(1, "new"));
        assert_eq!(t.iter().count(), 2);
        let got = t.remove(&key(1), |r| *r == row(1, "old")).unwrap();
        assert_eq!(got, row(1, "old"));
        assert_eq!(rows_of(&t), vec![row(1, "new").unpack()]);
        // remove_row takes exactly the row named.
        t.insert(row(1, "old"));
        assert!(t.remove_row(&row(1, "new")));
        assert!(!t.remove_row(&row(1, "new")));
        assert_eq!(rows_of(&t), vec![row(1, "old").unpack()]);
    }

    #[test]
    fn without_a_key_the_table_is_a_multiset_of_rows() {
        let mut t = TableRows::with_key(None, 0);
        t.insert(row(1, "a"));
        t.insert(row(1, "a"));
        t.insert(row(2, "b"));
        assert_eq!(t.count(&row(1, "a")), 2);
        assert_eq!(t.remove(&row(1, "a"), |_| false), Some(row(1, "a")));
        assert_eq!(t.count(&row(1, "a")), 1);
        assert!(t.remove(&row(3, "c"), |_| true).is_none());
    }

    #[test]
    fn diff_sends_only_what_changed_and_nets_multiplicities() {
        let mut old = TableRows::with_key(None, 0);
        let mut new = TableRows::with_key(None, 0);
        for r in [row(1, "same"), row(2, "gone"), row(3, "twice")] {
            old.insert(r);
        }
        for r in [
            row(1, "same"),
            row(3, "twice"),
            row(3, "twice"),
            row(4, "added"),
        ] {
            new.insert(r);
        }
        let mut out = Vec::new();
        TableRows::diff_into(7, &old, &new, &mut out);
        let mut net: std::collections::BTreeMap<Row, isize> = Default::default();
        for (id, r, d) in out {
            assert_eq!(id, 7);
            *net.entry(r.unpack()).or_default() += d;
        }
        net.retain(|_, d| *d != 0);
        let want: std::collections::BTreeMap<Row, isize> = [
            (row(2, "gone").unpack(), -1),
            (row(3, "twice").unpack(), 1),
            (row(4, "added").unpack(), 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(net, want);
    }
}
