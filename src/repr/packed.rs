//! Rows packed into bytes, for what viewcast keeps: arrangements and the
//! source's table state.
//!
//! A [`Row`] (a `Vec` of 32-byte [`Datum`]s, strings on the heap of their own)
//! is convenient to compute with and costly to keep: an order of six columns
//! takes about 270 bytes in four allocations. A [`PackedRow`] holds the same
//! values in one byte string — a tag byte per value and a payload of the
//! length the value needs (integers in 1, 2, 4 or 8 bytes, text
//! length-prefixed) — inline in the 24-byte handle when it fits in 22 bytes
//! (a key of a few integers), else in one shared heap allocation: a clone
//! is a reference, so the source's table state, the table's arrangement and
//! the copies an arrangement's merges make all hold the same bytes.
//!
//! The encoding is canonical: two rows pack to the same bytes exactly when
//! they are equal as `Row`s, bit for bit (a float's sign of zero and NaN
//! payload are kept, as they are values to show; keys that must match -0 to
//! 0 go through [`Datum::key_form`] first). So packed rows are compared,
//! hashed and consolidated as bytes. Their order is the bytes' order, not
//! SQL's: nothing that keeps packed rows reads them in order.

use std::fmt;

use num_bigint::{BigInt, Sign};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::interval::Interval;
use super::{Datum, Numeric, Row, F64};

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
/// Integers: tags `INT1..=INT8` hold 1, 2, 4 or 8 little-endian bytes,
/// sign-extended; the shortest that holds the value is used.
const INT1: u8 = 3;
const INT2: u8 = 4;
const INT4: u8 = 5;
const INT8: u8 = 6;
const FLOAT4: u8 = 7;
const FLOAT8: u8 = 8;
/// A numeric whose mantissa fits an i64: mantissa (8 bytes), scale (4).
const NUMERIC: u8 = 9;
/// A larger numeric: scale (4), then the mantissa's sign and magnitude bytes.
const NUMERIC_BIG: u8 = 10;
const NUMERIC_NAN: u8 = 11;
const NUMERIC_PINF: u8 = 12;
const NUMERIC_NINF: u8 = 13;
const TEXT: u8 = 14;
const BYTES: u8 = 15;
const JSON: u8 = 16;
const DATE: u8 = 17;
const TIMESTAMP: u8 = 18;
const TIMESTAMPTZ: u8 = 19;
const UUID: u8 = 20;
const INTERVAL: u8 = 21;

/// Bytes held in the handle itself.
const INLINE: usize = 22;

/// One row's values in one byte string; see the module documentation.
#[derive(Clone)]
pub enum PackedRow {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(std::sync::Arc<[u8]>),
}

impl PackedRow {
    pub fn pack(row: &[Datum]) -> PackedRow {
        let mut buf = Vec::with_capacity(row.len() * 9);
        for d in row {
            encode(d, &mut buf);
        }
        PackedRow::from_bytes(&buf)
    }

    fn from_bytes(buf: &[u8]) -> PackedRow {
        if buf.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..buf.len()].copy_from_slice(buf);
            PackedRow::Inline {
                len: buf.len() as u8,
                bytes,
            }
        } else {
            PackedRow::Heap(buf.into())
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            PackedRow::Inline { len, bytes } => &bytes[..*len as usize],
            PackedRow::Heap(b) => b,
        }
    }

    /// The row's bytes, borrowed: what a flat container of rows hands out.
    pub fn borrowed(&self) -> PackedRef<'_> {
        PackedRef(self.as_bytes())
    }

    /// The values, decoded.
    pub fn unpack(&self) -> Row {
        self.borrowed().unpack()
    }

    /// Appends the values to `row`.
    pub fn unpack_into(&self, row: &mut Row) {
        self.borrowed().unpack_into(row)
    }

    /// The values at `cols`, in that order (a column may repeat). Only those
    /// values are decoded; the others are stepped over by their length.
    pub fn columns(&self, cols: &[usize]) -> Row {
        self.borrowed().columns(cols)
    }

    /// Bytes this row holds on the heap, besides its 24-byte handle.
    pub fn heap_bytes(&self) -> usize {
        match self {
            PackedRow::Inline { .. } => 0,
            PackedRow::Heap(b) => b.len(),
        }
    }
}

/// A packed row's bytes where they are kept (a [`PackedRow`], or a flat
/// container of many rows): compared and ordered as bytes, like the row, and
/// decoded the same way.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackedRef<'a>(&'a [u8]);

impl<'a> PackedRef<'a> {
    /// Bytes that [`PackedRef::as_bytes`] gave, read back as a row. Only
    /// bytes a packed row was made of are well formed.
    pub(crate) fn from_packed_bytes(bytes: &'a [u8]) -> Self {
        PackedRef(bytes)
    }

    pub fn as_bytes(self) -> &'a [u8] {
        self.0
    }

    /// An owned copy of the row.
    pub fn to_row(self) -> PackedRow {
        PackedRow::from_bytes(self.0)
    }

    /// The values, decoded.
    pub fn unpack(self) -> Row {
        let mut row = Vec::new();
        self.unpack_into(&mut row);
        row
    }

    /// Appends the values to `row`.
    pub fn unpack_into(self, row: &mut Row) {
        let mut r = Reader(self.0);
        while !r.0.is_empty() {
            row.push(r.datum());
        }
    }

    /// As [`PackedRow::columns`].
    pub fn columns(self, cols: &[usize]) -> Row {
        if cols.windows(2).all(|w| w[0] < w[1]) {
            return self.ascending_columns(cols);
        }
        let Some(&last) = cols.iter().max() else {
            return Vec::new();
        };
        let mut r = Reader(self.0);
        let mut found: Vec<Option<Datum>> = vec![None; last + 1];
        let mut wanted = vec![false; last + 1];
        for &c in cols {
            wanted[c] = true;
        }
        for (i, slot) in found.iter_mut().enumerate() {
            if r.0.is_empty() {
                break;
            }
            if wanted[i] {
                *slot = Some(r.datum());
            } else {
                r.skip();
            }
        }
        let mut out = Vec::with_capacity(cols.len());
        for (n, &c) in cols.iter().enumerate() {
            // The last use of a column takes it; earlier ones clone.
            let value = if cols[n + 1..].contains(&c) {
                found[c].clone()
            } else {
                found[c].take()
            };
            out.push(value.unwrap_or(Datum::Null));
        }
        out
    }

    /// Appends the encoded bytes of columns `cols` as they are in the row:
    /// the packed key of those values whenever each is in its key form
    /// already ([`Datum::key_form`] changes only numerics and floats). False,
    /// with `out` holding part of them, when that cannot be told without
    /// decoding: `cols` not strictly ascending, a numeric or a float among
    /// them, or a column past the row's end.
    pub fn key_bytes_into(self, cols: &[usize], out: &mut Vec<u8>) -> bool {
        if !cols.windows(2).all(|w| w[0] < w[1]) {
            return false;
        }
        let mut r = Reader(self.0);
        let mut at = 0;
        for &c in cols {
            while at < c && !r.0.is_empty() {
                r.skip();
                at += 1;
            }
            let Some(&tag) = r.0.first() else {
                return false;
            };
            if matches!(
                tag,
                FLOAT4 | FLOAT8 | NUMERIC | NUMERIC_BIG | NUMERIC_NAN | NUMERIC_PINF | NUMERIC_NINF
            ) {
                return false;
            }
            let value = r.0;
            r.skip();
            at += 1;
            out.extend_from_slice(&value[..value.len() - r.0.len()]);
        }
        true
    }

    /// [`PackedRef::columns`] when `cols` ascend, as a projection's do (a
    /// view decodes every row of a table it reads this way): one pass over
    /// the bytes, with no scratch space.
    fn ascending_columns(self, cols: &[usize]) -> Row {
        let mut r = Reader(self.0);
        let mut at = 0;
        let mut out = Vec::with_capacity(cols.len());
        for &c in cols {
            while at < c && !r.0.is_empty() {
                r.skip();
                at += 1;
            }
            if r.0.is_empty() {
                out.push(Datum::Null);
            } else {
                out.push(r.datum());
                at += 1;
            }
        }
        out
    }

    /// Replaces `out` with the byte offsets at which the row's first `n`
    /// values start (fewer if the row has fewer values), stepping over each
    /// by its length without decoding it: then [`PackedRef::datum_at`]
    /// decodes any of them, in any order, without stepping again.
    pub fn offsets_into(self, n: usize, out: &mut Vec<usize>) {
        out.clear();
        let mut r = Reader(self.0);
        while out.len() < n && !r.0.is_empty() {
            out.push(self.0.len() - r.0.len());
            r.skip();
        }
    }

    /// The value starting at byte `at`: an offset that
    /// [`PackedRef::offsets_into`] gave for this row.
    pub fn datum_at(self, at: usize) -> Datum {
        Reader(&self.0[at..]).datum()
    }
}

impl PartialEq<&PackedRow> for PackedRef<'_> {
    fn eq(&self, other: &&PackedRow) -> bool {
        self.0 == other.as_bytes()
    }
}

impl fmt::Debug for PackedRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.unpack()).finish()
    }
}

impl From<&Row> for PackedRow {
    fn from(row: &Row) -> PackedRow {
        PackedRow::pack(row)
    }
}

impl PartialEq for PackedRow {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for PackedRow {}
impl PartialOrd for PackedRow {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PackedRow {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}
impl std::hash::Hash for PackedRow {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl fmt::Debug for PackedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.unpack()).finish()
    }
}

impl Serialize for PackedRow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.as_bytes())
    }
}

impl<'de> Deserialize<'de> for PackedRow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PackedRow, D::Error> {
        let bytes: Vec<u8> = serde_bytes_vec(d)?;
        Ok(PackedRow::from_bytes(&bytes))
    }
}

/// Reads a byte string however the format wrote it (bytes or a sequence).
fn serde_bytes_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(b) = a.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
    d.deserialize_byte_buf(V)
}

fn put_len(n: usize, buf: &mut Vec<u8>) {
    // LEB128: seven bits a byte, low first.
    let mut n = n as u64;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            buf.push(b);
            return;
        }
        buf.push(b | 0x80);
    }
}

fn put_str(tag: u8, s: &[u8], buf: &mut Vec<u8>) {
    buf.push(tag);
    put_len(s.len(), buf);
    buf.extend_from_slice(s);
}

/// A tag and a value of fixed width (its little-endian bytes).
fn put_fixed(tag: u8, bytes: &[u8], buf: &mut Vec<u8>) {
    buf.push(tag);
    buf.extend_from_slice(bytes);
}

fn encode(d: &Datum, buf: &mut Vec<u8>) {
    match d {
        Datum::Null => buf.push(NULL),
        Datum::Bool(false) => buf.push(FALSE),
        Datum::Bool(true) => buf.push(TRUE),
        Datum::Int(v) => {
            let v = *v;
            if let Ok(b) = i8::try_from(v) {
                put_fixed(INT1, &b.to_le_bytes(), buf);
            } else if let Ok(b) = i16::try_from(v) {
                put_fixed(INT2, &b.to_le_bytes(), buf);
            } else if let Ok(b) = i32::try_from(v) {
                put_fixed(INT4, &b.to_le_bytes(), buf);
            } else {
                put_fixed(INT8, &v.to_le_bytes(), buf);
            }
        }
        Datum::Float4(F64(f)) => put_fixed(FLOAT4, &f.to_bits().to_le_bytes(), buf),
        Datum::Float8(F64(f)) => put_fixed(FLOAT8, &f.to_bits().to_le_bytes(), buf),
        Datum::Numeric(n) => match n {
            Numeric::Small { mantissa, scale } => {
                buf.push(NUMERIC);
                buf.extend_from_slice(&mantissa.to_le_bytes());
                buf.extend_from_slice(&scale.to_le_bytes());
            }
            Numeric::Big(b) => {
                buf.push(NUMERIC_BIG);
                buf.extend_from_slice(&b.1.to_le_bytes());
                let (sign, mag) = b.0.to_bytes_le();
                buf.push(u8::from(sign == Sign::Minus));
                put_len(mag.len(), buf);
                buf.extend_from_slice(&mag);
            }
            Numeric::NaN => buf.push(NUMERIC_NAN),
            Numeric::PosInf => buf.push(NUMERIC_PINF),
            Numeric::NegInf => buf.push(NUMERIC_NINF),
        },
        Datum::Text(s) => put_str(TEXT, s.as_bytes(), buf),
        Datum::Bytes(b) => put_str(BYTES, b, buf),
        Datum::Json(s) => put_str(JSON, s.as_bytes(), buf),
        Datum::Date(v) => put_fixed(DATE, &v.to_le_bytes(), buf),
        Datum::Timestamp(v) => put_fixed(TIMESTAMP, &v.to_le_bytes(), buf),
        Datum::TimestampTz(v) => put_fixed(TIMESTAMPTZ, &v.to_le_bytes(), buf),
        Datum::Uuid(v) => put_fixed(UUID, &v.to_le_bytes(), buf),
        Datum::Interval(i) => {
            buf.push(INTERVAL);
            buf.extend_from_slice(&i.months.to_le_bytes());
            buf.extend_from_slice(&i.days.to_le_bytes());
            buf.extend_from_slice(&i.micros.to_le_bytes());
        }
    }
}

/// Decodes what [`encode`] wrote. Packed rows are only made by `pack`, so
/// the bytes are well formed; a short read would be a bug and panics.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().expect("split at N")
    }

    fn len(&mut self) -> usize {
        let mut n = 0u64;
        let mut shift = 0;
        loop {
            let [b] = self.take::<1>();
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return n as usize;
            }
            shift += 7;
        }
    }

    fn slice(&mut self) -> &[u8] {
        let n = self.len();
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn text(&mut self) -> String {
        // Written from a String.
        String::from_utf8_lossy(self.slice()).into_owned()
    }

    /// Steps over one value without decoding it.
    fn skip(&mut self) {
        let [tag] = self.take::<1>();
        let fixed = match tag {
            NULL | FALSE | TRUE | NUMERIC_NAN | NUMERIC_PINF | NUMERIC_NINF => 0,
            INT1 => 1,
            INT2 => 2,
            INT4 | DATE => 4,
            INT8 | FLOAT4 | FLOAT8 | TIMESTAMP | TIMESTAMPTZ => 8,
            NUMERIC => 12,
            UUID | INTERVAL => 16,
            NUMERIC_BIG => {
                self.take::<5>();
                self.slice();
                return;
            }
            TEXT | BYTES | JSON => {
                self.slice();
                return;
            }
            other => unreachable!("packed row tag {other}"),
        };
        self.0 = &self.0[fixed..];
    }

    fn datum(&mut self) -> Datum {
        let [tag] = self.take::<1>();
        match tag {
            NULL => Datum::Null,
            FALSE => Datum::Bool(false),
            TRUE => Datum::Bool(true),
            INT1 => Datum::Int(i8::from_le_bytes(self.take()) as i64),
            INT2 => Datum::Int(i16::from_le_bytes(self.take()) as i64),
            INT4 => Datum::Int(i32::from_le_bytes(self.take()) as i64),
            INT8 => Datum::Int(i64::from_le_bytes(self.take())),
            FLOAT4 => Datum::Float4(F64(f64::from_bits(u64::from_le_bytes(self.take())))),
            FLOAT8 => Datum::Float8(F64(f64::from_bits(u64::from_le_bytes(self.take())))),
            NUMERIC => {
                let mantissa = i64::from_le_bytes(self.take());
                let scale = u32::from_le_bytes(self.take());
                Datum::Numeric(Numeric::Small { mantissa, scale })
            }
            NUMERIC_BIG => {
                let scale = u32::from_le_bytes(self.take());
                let [neg] = self.take::<1>();
                let sign = if neg == 1 { Sign::Minus } else { Sign::Plus };
                let mag = BigInt::from_bytes_le(sign, self.slice());
                Datum::Numeric(Numeric::finite(mag, scale))
            }
            NUMERIC_NAN => Datum::Numeric(Numeric::NaN),
            NUMERIC_PINF => Datum::Numeric(Numeric::PosInf),
            NUMERIC_NINF => Datum::Numeric(Numeric::NegInf),
            TEXT => Datum::Text(self.text()),
            BYTES => Datum::Bytes(self.slice().to_vec()),
            JSON => Datum::Json(self.text()),
            DATE => Datum::Date(i32::from_le_bytes(self.take())),
            TIMESTAMP => Datum::Timestamp(i64::from_le_bytes(self.take())),
            TIMESTAMPTZ => Datum::TimestampTz(i64::from_le_bytes(self.take())),
            UUID => Datum::Uuid(u128::from_le_bytes(self.take())),
            INTERVAL => Datum::Interval(Interval {
                months: i32::from_le_bytes(self.take()),
                days: i32::from_le_bytes(self.take()),
                micros: i64::from_le_bytes(self.take()),
            }),
            other => unreachable!("packed row tag {other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        vec![
            vec![],
            vec![Datum::Null, Datum::Bool(true), Datum::Bool(false)],
            [
                0,
                1,
                -1,
                127,
                -128,
                128,
                -129,
                32767,
                -32768,
                32768,
                i32::MAX as i64,
                i32::MIN as i64,
                i32::MAX as i64 + 1,
                i64::MAX,
                i64::MIN,
            ]
            .iter()
            .map(|v| Datum::Int(*v))
            .collect(),
            vec![
                Datum::Float8(F64(-0.0)),
                Datum::Float8(F64(f64::NAN)),
                Datum::Float4(F64(1.5)),
                Datum::Float8(F64(f64::NEG_INFINITY)),
            ],
            vec![
                Datum::Numeric(Numeric::parse("1.50").unwrap()),
                Datum::Numeric(Numeric::parse("-123456789012345678901234567890.123").unwrap()),
                Datum::Numeric(Numeric::NaN),
                Datum::Numeric(Numeric::PosInf),
                Datum::Numeric(Numeric::NegInf),
            ],
            vec![
                Datum::Text("".into()),
                Datum::Text("é".repeat(200)),
                Datum::Bytes(vec![0, 255, 1]),
                Datum::Json("{\"a\": 1}".into()),
            ],
            vec![
                Datum::Date(i32::MIN),
                Datum::Timestamp(i64::MAX),
                Datum::TimestampTz(-5),
                Datum::Uuid(u128::MAX - 7),
                Datum::Interval(Interval {
                    months: -1,
                    days: 40,
                    micros: i64::MIN,
                }),
            ],
        ]
    }

    #[test]
    fn rows_unpack_to_what_was_packed_bit_for_bit() {
        for row in rows() {
            let p = PackedRow::pack(&row);
            let back = p.unpack();
            assert_eq!(format!("{back:?}"), format!("{row:?}"));
            for (a, b) in back.iter().zip(&row) {
                if let (Datum::Float8(x), Datum::Float8(y)) = (a, b) {
                    assert_eq!(x.0.to_bits(), y.0.to_bits());
                }
            }
        }
    }

    #[test]
    fn equal_rows_pack_equal_and_different_rows_differently() {
        let all = rows();
        for (i, a) in all.iter().enumerate() {
            for (j, b) in all.iter().enumerate() {
                assert_eq!(i == j, PackedRow::pack(a) == PackedRow::pack(b));
            }
        }
        // 1.5 and 1.50 are different values to show.
        let x = PackedRow::pack(&[Datum::Numeric(Numeric::parse("1.5").unwrap())]);
        let y = PackedRow::pack(&[Datum::Numeric(Numeric::parse("1.50").unwrap())]);
        assert_ne!(x, y);
    }

    /// Every test row's values in one row, ending with a text.
    fn one_long_row() -> (Vec<Datum>, PackedRow) {
        let mut all: Vec<Datum> = rows().into_iter().flatten().collect();
        all.push(Datum::Text("last".into()));
        let packed = PackedRow::pack(&all);
        (all, packed)
    }

    /// Every column list (with repeats, in any order, past the end) reads
    /// what the unpacked row holds at those positions.
    #[test]
    fn columns_read_the_values_at_their_positions() {
        let (all, packed) = one_long_row();
        let n = all.len();
        let lists: Vec<Vec<usize>> = vec![
            vec![],
            vec![n - 1],
            vec![0, n - 1, 0],
            (0..n).rev().collect(),
            (0..n).step_by(3).collect(),
            vec![n + 2, 1],
            vec![1, 2, n - 1, n, n + 3],
            (0..n).collect(),
        ];
        for cols in lists {
            let expected: Row = cols
                .iter()
                .map(|&c| all.get(c).cloned().unwrap_or(Datum::Null))
                .collect();
            assert_eq!(
                format!("{:?}", packed.columns(&cols)),
                format!("{expected:?}"),
                "{cols:?}"
            );
        }
    }

    #[test]
    fn offsets_find_every_value_in_any_order() {
        let (all, packed) = one_long_row();
        let row = packed.borrowed();
        let mut offsets = vec![7; 3];
        for n in [0, 1, all.len() / 2, all.len(), all.len() + 5] {
            row.offsets_into(n, &mut offsets);
            assert_eq!(offsets.len(), n.min(all.len()), "{n}");
            for (i, &at) in offsets.iter().enumerate().rev() {
                assert_eq!(
                    format!("{:?}", row.datum_at(at)),
                    format!("{:?}", all[i]),
                    "value {i} of {n}"
                );
            }
        }
        PackedRow::pack(&[])
            .borrowed()
            .offsets_into(4, &mut offsets);
        assert!(offsets.is_empty());
    }

    #[test]
    fn short_rows_stay_inline() {
        let key = PackedRow::pack(&[Datum::Int(42), Datum::Int(1 << 40)]);
        assert_eq!(key.heap_bytes(), 0);
        assert_eq!(std::mem::size_of::<PackedRow>(), 24);
        let long = PackedRow::pack(&[Datum::Text("x".repeat(30))]);
        assert_eq!(long.heap_bytes(), 32);
    }
}
