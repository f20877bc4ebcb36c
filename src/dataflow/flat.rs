//! Arrangements whose keys and values are packed rows kept flat: each batch
//! holds its rows' bytes back to back in one buffer, with the offset where
//! each row ends, instead of a `Vec` of 24-byte [`PackedRow`] handles that
//! each point at a heap allocation of their own once a row is longer than 22
//! bytes.
//!
//! A row of 40 bytes costs 44 bytes here (its bytes and a 4-byte offset)
//! against 24 + 64 in a `Vec` (the handle, and the allocation with its
//! reference counts rounded up to the allocator's size class). Batches are
//! built by differential-dataflow's own `ord_neu` builder and merger over
//! this layout; readers get a [`PackedRef`] into the buffer, ordered as the
//! owned row is (by bytes), so operators over the arrangement see the same
//! rows in the same order.

use std::rc::Rc;

use differential_dataflow::batcher::merge::chunker::ContainerChunker;
use differential_dataflow::batcher::merge::vec::VecMerger;
use differential_dataflow::batcher::merge::MergeBatcher;
use differential_dataflow::trace::implementations::ord_neu::{OrdValBatch, OrdValBuilder};
use differential_dataflow::trace::implementations::spine_fueled::Spine;
use differential_dataflow::trace::implementations::{BatchContainer, OffsetList};
use timely::container::PushInto;

use crate::repr::{PackedRef, PackedRow};

/// Bytes of an offset list's offsets.
pub(super) fn offsets_bytes(o: &OffsetList) -> usize {
    std::mem::size_of_val(o.smol.as_slice()) + std::mem::size_of_val(o.chonk.as_slice())
}

/// Packed rows, their bytes in one buffer.
pub struct PackedRows {
    /// Where each row's bytes end in `bytes` (a row starts where the one
    /// before it ends); `u32`s while the buffer is under 4 GiB.
    ends: OffsetList,
    bytes: Vec<u8>,
}

impl PackedRows {
    /// Bytes of the rows and their ends (the buffers may have room for
    /// more: a merge sizes them for both inputs before consolidating).
    pub fn heap_size(&self) -> usize {
        self.bytes.len() + offsets_bytes(&self.ends)
    }

    fn push_bytes(&mut self, row: &[u8]) {
        self.bytes.extend_from_slice(row);
        self.ends.push(self.bytes.len());
    }
}

impl PushInto<PackedRow> for PackedRows {
    fn push_into(&mut self, row: PackedRow) {
        self.push_bytes(row.as_bytes());
    }
}

impl PushInto<&PackedRow> for PackedRows {
    fn push_into(&mut self, row: &PackedRow) {
        self.push_bytes(row.as_bytes());
    }
}

impl<'a> PushInto<PackedRef<'a>> for PackedRows {
    fn push_into(&mut self, row: PackedRef<'a>) {
        self.push_bytes(row.as_bytes());
    }
}

impl BatchContainer for PackedRows {
    type Owned = PackedRow;
    type ReadItem<'a> = PackedRef<'a>;

    fn into_owned(item: PackedRef<'_>) -> PackedRow {
        item.to_row()
    }

    fn push_ref(&mut self, item: PackedRef<'_>) {
        self.push_bytes(item.as_bytes());
    }

    fn push_own(&mut self, item: &PackedRow) {
        self.push_bytes(item.as_bytes());
    }

    fn clear(&mut self) {
        self.ends = OffsetList::with_capacity(0);
        self.bytes.clear();
    }

    /// Room for `size` row ends; the bytes grow as rows come (a batch built
    /// from new updates does not know their length beforehand, and the
    /// part of a grown buffer not written yet is not resident).
    fn with_capacity(size: usize) -> Self {
        PackedRows {
            ends: OffsetList::with_capacity(size),
            bytes: Vec::new(),
        }
    }

    /// Room for both: a merge keeps at most every row of the two.
    fn merge_capacity(a: &Self, b: &Self) -> Self {
        PackedRows {
            ends: OffsetList::with_capacity(a.len() + b.len()),
            bytes: Vec::with_capacity(a.bytes.len() + b.bytes.len()),
        }
    }

    fn reborrow<'b, 'a: 'b>(item: PackedRef<'a>) -> PackedRef<'b> {
        item
    }

    fn index(&self, index: usize) -> PackedRef<'_> {
        let start = match index {
            0 => 0,
            i => self.ends.index(i - 1),
        };
        let end = self.ends.index(index);
        PackedRef::from_packed_bytes(&self.bytes[start..end])
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

/// The updates an arrangement of packed rows is built from: each (key,
/// row) pair with its time and difference (a count, or for the summed side
/// of a join an aggregate's accumulated inputs).
type Updates<T, R> = Vec<((PackedRow, PackedRow), T, R)>;
/// Keys and values flat, times and differences in vectors.
pub type Layout<T, R = isize> = (PackedRows, PackedRows, Vec<T>, Vec<R>, OffsetList);
pub type FlatBuilder<T, R = isize> = OrdValBuilder<Layout<T, R>, Updates<T, R>>;
pub type FlatBatcher<T, R = isize> = MergeBatcher<
    ContainerChunker<Updates<T, R>>,
    VecMerger<(PackedRow, PackedRow), T, R>,
    FlatBuilder<T, R>,
>;
/// A trace of packed (key, value) rows with flat batches.
pub type FlatSpine<T, R = isize> = Spine<Rc<OrdValBatch<Layout<T, R>>>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repr::Datum;

    fn row(values: &[i64]) -> PackedRow {
        PackedRow::pack(&values.iter().map(|v| Datum::Int(*v)).collect::<Vec<_>>())
    }

    #[test]
    fn rows_read_back_as_pushed_including_empty_ones() {
        let long = PackedRow::pack(&[Datum::Text("a row longer than the inline bytes".into())]);
        let rows = [
            PackedRow::pack(&[]),
            row(&[1, 2]),
            long,
            PackedRow::pack(&[]),
            row(&[3]),
        ];
        let mut flat = PackedRows::with_capacity(0);
        for r in &rows {
            flat.push_own(r);
        }
        assert_eq!(flat.len(), rows.len());
        for (i, r) in rows.iter().enumerate() {
            assert!(flat.index(i) == r, "row {i}");
            assert_eq!(PackedRows::into_owned(flat.index(i)), *r);
            assert_eq!(flat.index(i).unpack(), r.unpack());
        }
        flat.clear();
        assert_eq!(flat.len(), 0);
        flat.push_ref(rows[1].borrowed());
        assert!(flat.index(0) == &rows[1]);
    }

    #[test]
    fn borrowed_rows_order_as_owned_rows() {
        let rows = [
            row(&[1]),
            row(&[-1]),
            row(&[300]),
            row(&[1, 0]),
            PackedRow::pack(&[]),
        ];
        for a in &rows {
            for b in &rows {
                assert_eq!(a.borrowed().cmp(&b.borrowed()), a.cmp(b), "{a:?} {b:?}");
            }
        }
    }
}
