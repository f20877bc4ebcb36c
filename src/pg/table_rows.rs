//! A followed table's current rows, found by their identity: the key columns
//! (primary key or replica identity index), or the whole row when the table
//! has none.
//!
//! The table is a hash table of packed rows alone. An entry is hashed and
//! compared by the key it carries (its key columns' bytes as they are in the
//! row, or decoded and packed in key form where a numeric or a float may
//! differ from it), so the key is not stored a second time beside
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
    key: Option<Vec<usize>>,
    rows: HashTable<PackedRow>,
    hasher: std::collections::hash_map::RandomState,
    /// A key's bytes while it is hashed or compared (kept to reuse its
    /// allocation).
    scratch: Vec<u8>,
}

impl TableRows {
    fn with_key(key: Option<Vec<usize>>, capacity: usize) -> TableRows {
        TableRows {
            key,
            rows: HashTable::with_capacity(capacity),
            hasher: Default::default(),
            scratch: Vec::new(),
        }
    }

    pub fn from_rows(info: &TableInfo, rows: Vec<PackedRow>) -> TableRows {
        let mut out = TableRows::with_key(info.key.clone(), rows.len());
        for row in rows {
            out.insert(row);
        }
        out
    }

    /// The hash of a key's packed bytes.
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The hash of `row`'s key, the key's bytes left in `self.scratch`.
    fn hash_row(&mut self, row: &PackedRow) -> u64 {
        key_into(&self.key, row, &mut self.scratch);
        self.hash(&self.scratch)
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

    pub fn insert_decoded(&mut self, row: PackedRow, values: &Row) {
        let hash = match &self.key {
            Some(cols) => self.hash(packed_key(cols.iter().map(|c| &values[*c])).as_bytes()),
            None => self.hash(row.as_bytes()),
        };
        self.insert_hashed(hash, row);
    }

    fn insert_hashed(&mut self, hash: u64, row: PackedRow) {
        let (key, hasher) = (&self.key, &self.hasher);
        // Only when the table grows are the rows it holds hashed again.
        let scratch = std::cell::RefCell::new(Vec::new());
        self.rows.insert_unique(hash, row, |r| {
            let mut scratch = scratch.borrow_mut();
            key_into(key, r, &mut scratch);
            hasher.hash_one(&scratch[..])
        });
    }

    /// Removes a row whose key is `key`: when several share it, the first
    /// that `prefer` accepts, else any of them.
    pub fn remove(
        &mut self,
        key: &PackedRow,
        prefer: impl Fn(&PackedRow) -> bool,
    ) -> Option<PackedRow> {
        if self.key.is_none() {
            return self.remove_row(key).then(|| key.clone());
        }
        let hash = self.hash(key.as_bytes());
        let (cols, scratch) = (&self.key, &mut self.scratch);
        let mut matching = self.rows.iter_hash(hash).filter(|r| {
            key_into(cols, r, scratch);
            scratch[..] == *key.as_bytes()
        });
        let first = matching.next()?.clone();
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

    pub fn remove_row(&mut self, row: &PackedRow) -> bool {
        let hash = self.hash_row(row);
        match self.rows.find_entry(hash, |r| r == row) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    fn count(&self, row: &PackedRow) -> usize {
        let mut key = Vec::new();
        key_into(&self.key, row, &mut key);
        self.rows
            .iter_hash(self.hash(&key))
            .filter(|r| *r == row)
            .count()
    }

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

/// The packed bytes of `row`'s key into `out` (the whole row without a key):
/// its key columns as they are in the row when they are in key form
/// already, else decoded and packed again.
fn key_into(key: &Option<Vec<usize>>, row: &PackedRow, out: &mut Vec<u8>) {
    out.clear();
    match key {
        None => out.extend_from_slice(row.as_bytes()),
        Some(cols) => {
            if !row.borrowed().key_bytes_into(cols, out) {
                out.clear();
                out.extend_from_slice(packed_key(row.columns(cols).iter()).as_bytes());
            }
        }
    }
}

/// Key values, in key form, packed: the one way an identity is made, from
/// a stored row, from decoded values, or from a change's key columns
/// ([`key_into`] reads a stored row's key columns as they are only where
/// this would give the same bytes).
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

    /// Keys read in place (ints and texts in column order) and keys decoded
    /// (a numeric, columns out of order) find the rows their values pack to,
    /// also across the table's growth.
    #[test]
    fn keys_read_in_place_or_decoded_find_the_same_rows() {
        for key in [vec![0, 2], vec![2, 0], vec![1]] {
            let mut t = TableRows::with_key(Some(key.clone()), 0);
            let rows: Vec<Row> = (0..300)
                .map(|i| {
                    vec![
                        Datum::Int(i * 1000),
                        Datum::Numeric(Numeric::parse(&format!("{i}.50")).unwrap()),
                        Datum::Text(format!("text {}", i % 7)),
                    ]
                })
                .collect();
            for r in &rows {
                t.insert(PackedRow::pack(r));
            }
            for r in &rows {
                let k = packed_key(key.iter().map(|c| &r[*c]));
                let got = t.remove(&k, |_| true).map(|p| p.unpack());
                assert_eq!(got.as_ref(), Some(r), "key {key:?}");
            }
            assert_eq!(t.iter().count(), 0);
        }
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
