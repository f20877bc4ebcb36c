//! Decoder for the `pgoutput` logical replication message format.
//!
//! Each message is its own type under [`LogicalMessage`]; [`LogicalMessage::parse`]
//! turns one XLogData payload into one message. Truncated or malformed input is a
//! [`DecodeError`] naming what was being read, never a panic.
//! Format reference: PostgreSQL docs, "Logical Replication Message Formats"
//! (protocol-logicalrep-message-formats). Only non-streaming messages are
//! produced because viewcast never asks for `streaming`.

use bytes::Bytes;

use super::lsn::Lsn;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed pgoutput message: {0}")]
pub struct DecodeError(pub String);

#[derive(Debug, Clone, PartialEq)]
pub struct Begin {
    pub final_lsn: Lsn,
    pub commit_time: i64,
    pub xid: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    pub flags: u8,
    pub commit_lsn: Lsn,
    pub end_lsn: Lsn,
    pub commit_time: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub commit_lsn: Lsn,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RelationColumn {
    /// 1 when the column is part of the replica identity key.
    pub flags: u8,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub id: u32,
    pub namespace: String,
    pub name: String,
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TypeMessage {
    pub id: u32,
    pub namespace: String,
    pub name: String,
}

/// One column of a tuple as pgoutput sends it.
#[derive(Debug, Clone, PartialEq)]
pub enum TupleValue {
    Null,
    /// A TOASTed value that did not change; the receiver must already know it.
    UnchangedToast,
    Text(Bytes),
    Binary(Bytes),
}

pub type Tuple = Vec<TupleValue>;

#[derive(Debug, Clone, PartialEq)]
pub struct Insert {
    pub relation_id: u32,
    pub new: Tuple,
}

/// The old tuple of an update or delete: only the key columns (`K`, replica
/// identity DEFAULT or INDEX) or the whole row (`O`, replica identity FULL).
#[derive(Debug, Clone, PartialEq)]
pub enum OldTuple {
    Key(Tuple),
    Full(Tuple),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub relation_id: u32,
    pub old: Option<OldTuple>,
    pub new: Tuple,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    pub relation_id: u32,
    pub old: OldTuple,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Truncate {
    pub options: u8,
    pub relation_ids: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub transactional: bool,
    pub lsn: Lsn,
    pub prefix: String,
    pub content: Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LogicalMessage {
    Begin(Begin),
    Commit(Commit),
    Origin(Origin),
    Relation(Relation),
    Type(TypeMessage),
    Insert(Insert),
    Update(Update),
    Delete(Delete),
    Truncate(Truncate),
    Message(Message),
}

/// A bounds-checked reader over one message.
struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    fn take(&mut self, n: usize, what: &str) -> Result<Bytes, DecodeError> {
        if self.buf.len() - self.pos < n {
            return Err(DecodeError(format!(
                "truncated while reading {what}: need {n} bytes at offset {}, have {}",
                self.pos,
                self.buf.len() - self.pos
            )));
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }
    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    fn i16(&mut self, what: &str) -> Result<i16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i32(&mut self, what: &str) -> Result<i32, DecodeError> {
        Ok(self.u32(what)? as i32)
    }
    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Ok(u64::from_be_bytes(a))
    }
    fn lsn(&mut self, what: &str) -> Result<Lsn, DecodeError> {
        Ok(Lsn(self.u64(what)?))
    }
    fn cstr(&mut self, what: &str) -> Result<String, DecodeError> {
        let rest = &self.buf[self.pos..];
        let end = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| DecodeError(format!("unterminated string while reading {what}")))?;
        let s = std::str::from_utf8(&rest[..end])
            .map_err(|_| DecodeError(format!("{what} is not valid UTF-8")))?
            .to_string();
        self.pos += end + 1;
        Ok(s)
    }
    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let n = self.i16("tuple column count")?;
        if n < 0 {
            return Err(DecodeError(format!("negative tuple column count {n}")));
        }
        let mut cols = Vec::with_capacity(n as usize);
        for i in 0..n {
            let kind = self.u8("tuple column kind")?;
            cols.push(match kind {
                b'n' => TupleValue::Null,
                b'u' => TupleValue::UnchangedToast,
                b't' | b'b' => {
                    let len = self.u32("tuple value length")? as usize;
                    let data = self.take(len, "tuple value")?;
                    if kind == b't' {
                        TupleValue::Text(data)
                    } else {
                        TupleValue::Binary(data)
                    }
                }
                other => {
                    return Err(DecodeError(format!(
                        "unknown tuple value kind {:?} in column {i}",
                        other as char
                    )))
                }
            });
        }
        Ok(cols)
    }
    fn old_tuple(&mut self, tag: u8) -> Result<OldTuple, DecodeError> {
        match tag {
            b'K' => Ok(OldTuple::Key(self.tuple()?)),
            b'O' => Ok(OldTuple::Full(self.tuple()?)),
            other => Err(DecodeError(format!(
                "expected old tuple tag 'K' or 'O', got {:?}",
                other as char
            ))),
        }
    }
    fn expect_new(&mut self, tag: u8) -> Result<Tuple, DecodeError> {
        if tag != b'N' {
            return Err(DecodeError(format!(
                "expected new tuple tag 'N', got {:?}",
                tag as char
            )));
        }
        self.tuple()
    }
}

impl LogicalMessage {
    /// Parses one pgoutput message (the payload of one XLogData message).
    pub fn parse(buf: Bytes) -> Result<LogicalMessage, DecodeError> {
        let mut r = Reader { buf, pos: 0 };
        let tag = r.u8("message tag")?;
        let msg = match tag {
            b'B' => LogicalMessage::Begin(Begin {
                final_lsn: r.lsn("begin final LSN")?,
                commit_time: r.u64("begin timestamp")? as i64,
                xid: r.u32("begin xid")?,
            }),
            b'C' => LogicalMessage::Commit(Commit {
                flags: r.u8("commit flags")?,
                commit_lsn: r.lsn("commit LSN")?,
                end_lsn: r.lsn("commit end LSN")?,
                commit_time: r.u64("commit timestamp")? as i64,
            }),
            b'O' => LogicalMessage::Origin(Origin {
                commit_lsn: r.lsn("origin LSN")?,
                name: r.cstr("origin name")?,
            }),
            b'R' => {
                let id = r.u32("relation id")?;
                let namespace = r.cstr("relation namespace")?;
                let name = r.cstr("relation name")?;
                let replica_identity = r.u8("replica identity")?;
                let n = r.i16("relation column count")?;
                if n < 0 {
                    return Err(DecodeError(format!("negative relation column count {n}")));
                }
                let mut columns = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    columns.push(RelationColumn {
                        flags: r.u8("column flags")?,
                        name: r.cstr("column name")?,
                        type_oid: r.u32("column type")?,
                        type_modifier: r.i32("column type modifier")?,
                    });
                }
                LogicalMessage::Relation(Relation {
                    id,
                    namespace,
                    name,
                    replica_identity,
                    columns,
                })
            }
            b'Y' => LogicalMessage::Type(TypeMessage {
                id: r.u32("type id")?,
                namespace: r.cstr("type namespace")?,
                name: r.cstr("type name")?,
            }),
            b'I' => {
                let relation_id = r.u32("insert relation id")?;
                let t = r.u8("insert tuple tag")?;
                LogicalMessage::Insert(Insert {
                    relation_id,
                    new: r.expect_new(t)?,
                })
            }
            b'U' => {
                let relation_id = r.u32("update relation id")?;
                let t = r.u8("update tuple tag")?;
                let (old, new) = if t == b'N' {
                    (None, r.tuple()?)
                } else {
                    let old = r.old_tuple(t)?;
                    let t2 = r.u8("update new tuple tag")?;
                    (Some(old), r.expect_new(t2)?)
                };
                LogicalMessage::Update(Update {
                    relation_id,
                    old,
                    new,
                })
            }
            b'D' => {
                let relation_id = r.u32("delete relation id")?;
                let t = r.u8("delete tuple tag")?;
                LogicalMessage::Delete(Delete {
                    relation_id,
                    old: r.old_tuple(t)?,
                })
            }
            b'T' => {
                let n = r.u32("truncate relation count")?;
                let options = r.u8("truncate options")?;
                let mut relation_ids = Vec::with_capacity(n.min(1024) as usize);
                for _ in 0..n {
                    relation_ids.push(r.u32("truncate relation id")?);
                }
                LogicalMessage::Truncate(Truncate {
                    options,
                    relation_ids,
                })
            }
            b'M' => {
                let flags = r.u8("message flags")?;
                let lsn = r.lsn("message LSN")?;
                let prefix = r.cstr("message prefix")?;
                let len = r.u32("message length")? as usize;
                LogicalMessage::Message(Message {
                    transactional: flags & 1 == 1,
                    lsn,
                    prefix,
                    content: r.take(len, "message content")?,
                })
            }
            other => {
                return Err(DecodeError(format!(
                    "unknown message tag {:?}",
                    other as char
                )))
            }
        };
        if r.pos != r.buf.len() {
            return Err(DecodeError(format!(
                "{} trailing bytes after message {:?}",
                r.buf.len() - r.pos,
                tag as char
            )));
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    fn tuple(b: &mut BytesMut, vals: &[Option<&str>]) {
        b.put_i16(vals.len() as i16);
        for v in vals {
            match v {
                None => b.put_u8(b'n'),
                Some("<toast>") => b.put_u8(b'u'),
                Some(s) => {
                    b.put_u8(b't');
                    b.put_u32(s.len() as u32);
                    b.put_slice(s.as_bytes());
                }
            }
        }
    }

    #[test]
    fn begin_commit() {
        let mut b = BytesMut::new();
        b.put_u8(b'B');
        b.put_u64(0x10);
        b.put_i64(5);
        b.put_u32(77);
        assert_eq!(
            LogicalMessage::parse(b.freeze()).unwrap(),
            LogicalMessage::Begin(Begin {
                final_lsn: Lsn(0x10),
                commit_time: 5,
                xid: 77
            })
        );
        let mut b = BytesMut::new();
        b.put_u8(b'C');
        b.put_u8(0);
        b.put_u64(0x10);
        b.put_u64(0x20);
        b.put_i64(5);
        match LogicalMessage::parse(b.freeze()).unwrap() {
            LogicalMessage::Commit(c) => {
                assert_eq!((c.commit_lsn, c.end_lsn), (Lsn(0x10), Lsn(0x20)))
            }
            m => panic!("unexpected {m:?}"),
        }
    }

    #[test]
    fn relation_and_rows() {
        let mut b = BytesMut::new();
        b.put_u8(b'R');
        b.put_u32(16384);
        b.put_slice(b"public\0orders\0");
        b.put_u8(b'd');
        b.put_i16(2);
        b.put_u8(1);
        b.put_slice(b"id\0");
        b.put_u32(23);
        b.put_i32(-1);
        b.put_u8(0);
        b.put_slice(b"note\0");
        b.put_u32(25);
        b.put_i32(-1);
        let LogicalMessage::Relation(r) = LogicalMessage::parse(b.freeze()).unwrap() else {
            panic!()
        };
        assert_eq!(r.name, "orders");
        assert_eq!(r.columns[0].flags, 1);
        assert_eq!(r.columns[1].type_oid, 25);

        let mut b = BytesMut::new();
        b.put_u8(b'U');
        b.put_u32(16384);
        b.put_u8(b'K');
        tuple(&mut b, &[Some("1"), None]);
        b.put_u8(b'N');
        tuple(&mut b, &[Some("2"), Some("<toast>")]);
        let LogicalMessage::Update(u) = LogicalMessage::parse(b.freeze()).unwrap() else {
            panic!()
        };
        assert_eq!(
            u.old,
            Some(OldTuple::Key(vec![
                TupleValue::Text(Bytes::from("1")),
                TupleValue::Null
            ]))
        );
        assert_eq!(u.new[1], TupleValue::UnchangedToast);

        let mut b = BytesMut::new();
        b.put_u8(b'D');
        b.put_u32(16384);
        b.put_u8(b'O');
        tuple(&mut b, &[Some("1"), Some("x")]);
        assert!(matches!(
            LogicalMessage::parse(b.freeze()).unwrap(),
            LogicalMessage::Delete(Delete {
                old: OldTuple::Full(_),
                ..
            })
        ));
    }

    #[test]
    fn malformed_input_is_an_error() {
        for bytes in [
            &b""[..],
            b"B\0\0",
            b"Z",
            b"I\0\0\0\x01X",
            b"I\0\0\0\x01N\0\x01q",
            b"R\0\0\0\x01public",
        ] {
            assert!(
                LogicalMessage::parse(Bytes::copy_from_slice(bytes)).is_err(),
                "{bytes:?}"
            );
        }
        // A length that runs past the end.
        let mut b = BytesMut::new();
        b.put_u8(b'I');
        b.put_u32(1);
        b.put_u8(b'N');
        b.put_i16(1);
        b.put_u8(b't');
        b.put_u32(1000);
        let e = LogicalMessage::parse(b.freeze()).unwrap_err();
        assert!(e.0.contains("tuple value"), "{e}");
    }

    /// The bytes Postgres would send for `m` (the inverse of `parse`).
    fn encode(m: &LogicalMessage) -> Bytes {
        fn cstr(b: &mut BytesMut, s: &str) {
            b.put_slice(s.as_bytes());
            b.put_u8(0);
        }
        fn tuple(b: &mut BytesMut, t: &Tuple) {
            b.put_i16(t.len() as i16);
            for v in t {
                match v {
                    TupleValue::Null => b.put_u8(b'n'),
                    TupleValue::UnchangedToast => b.put_u8(b'u'),
                    TupleValue::Text(d) | TupleValue::Binary(d) => {
                        b.put_u8(if matches!(v, TupleValue::Text(_)) {
                            b't'
                        } else {
                            b'b'
                        });
                        b.put_u32(d.len() as u32);
                        b.put_slice(d);
                    }
                }
            }
        }
        fn old(b: &mut BytesMut, o: &OldTuple) {
            let (tag, t) = match o {
                OldTuple::Key(t) => (b'K', t),
                OldTuple::Full(t) => (b'O', t),
            };
            b.put_u8(tag);
            tuple(b, t);
        }
        let mut b = BytesMut::new();
        match m {
            LogicalMessage::Begin(x) => {
                b.put_u8(b'B');
                b.put_u64(x.final_lsn.0);
                b.put_i64(x.commit_time);
                b.put_u32(x.xid);
            }
            LogicalMessage::Commit(x) => {
                b.put_u8(b'C');
                b.put_u8(x.flags);
                b.put_u64(x.commit_lsn.0);
                b.put_u64(x.end_lsn.0);
                b.put_i64(x.commit_time);
            }
            LogicalMessage::Origin(x) => {
                b.put_u8(b'O');
                b.put_u64(x.commit_lsn.0);
                cstr(&mut b, &x.name);
            }
            LogicalMessage::Relation(x) => {
                b.put_u8(b'R');
                b.put_u32(x.id);
                cstr(&mut b, &x.namespace);
                cstr(&mut b, &x.name);
                b.put_u8(x.replica_identity);
                b.put_i16(x.columns.len() as i16);
                for c in &x.columns {
                    b.put_u8(c.flags);
                    cstr(&mut b, &c.name);
                    b.put_u32(c.type_oid);
                    b.put_i32(c.type_modifier);
                }
            }
            LogicalMessage::Type(x) => {
                b.put_u8(b'Y');
                b.put_u32(x.id);
                cstr(&mut b, &x.namespace);
                cstr(&mut b, &x.name);
            }
            LogicalMessage::Insert(x) => {
                b.put_u8(b'I');
                b.put_u32(x.relation_id);
                b.put_u8(b'N');
                tuple(&mut b, &x.new);
            }
            LogicalMessage::Update(x) => {
                b.put_u8(b'U');
                b.put_u32(x.relation_id);
                if let Some(o) = &x.old {
                    old(&mut b, o);
                }
                b.put_u8(b'N');
                tuple(&mut b, &x.new);
            }
            LogicalMessage::Delete(x) => {
                b.put_u8(b'D');
                b.put_u32(x.relation_id);
                old(&mut b, &x.old);
            }
            LogicalMessage::Truncate(x) => {
                b.put_u8(b'T');
                b.put_u32(x.relation_ids.len() as u32);
                b.put_u8(x.options);
                for id in &x.relation_ids {
                    b.put_u32(*id);
                }
            }
            LogicalMessage::Message(x) => {
                b.put_u8(b'M');
                b.put_u8(x.transactional as u8);
                b.put_u64(x.lsn.0);
                cstr(&mut b, &x.prefix);
                b.put_u32(x.content.len() as u32);
                b.put_slice(&x.content);
            }
        }
        b.freeze()
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;
        use super::encode;
        use crate::repr::proptests::config;

        fn name() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z_]{0,8}",
                any::<String>().prop_map(|s| s.replace('\0', ""))
            ]
        }

        fn bytes() -> impl Strategy<Value = Bytes> {
            prop::collection::vec(any::<u8>(), 0..12).prop_map(Bytes::from)
        }

        fn tuple() -> impl Strategy<Value = Tuple> {
            prop::collection::vec(
                prop_oneof![
                    Just(TupleValue::Null),
                    Just(TupleValue::UnchangedToast),
                    bytes().prop_map(TupleValue::Text),
                    bytes().prop_map(TupleValue::Binary),
                ],
                0..5,
            )
        }

        fn old_tuple() -> impl Strategy<Value = OldTuple> {
            prop_oneof![
                tuple().prop_map(OldTuple::Key),
                tuple().prop_map(OldTuple::Full)
            ]
        }

        fn message() -> impl Strategy<Value = LogicalMessage> {
            let lsn = any::<u64>().prop_map(Lsn);
            let column = (any::<u8>(), name(), any::<u32>(), any::<i32>()).prop_map(
                |(flags, name, type_oid, type_modifier)| RelationColumn {
                    flags,
                    name,
                    type_oid,
                    type_modifier,
                },
            );
            prop_oneof![
                (lsn.clone(), any::<i64>(), any::<u32>()).prop_map(
                    |(final_lsn, commit_time, xid)| {
                        LogicalMessage::Begin(Begin {
                            final_lsn,
                            commit_time,
                            xid,
                        })
                    }
                ),
                (any::<u8>(), lsn.clone(), lsn.clone(), any::<i64>()).prop_map(
                    |(flags, commit_lsn, end_lsn, commit_time)| LogicalMessage::Commit(Commit {
                        flags,
                        commit_lsn,
                        end_lsn,
                        commit_time,
                    })
                ),
                (lsn.clone(), name()).prop_map(|(commit_lsn, name)| {
                    LogicalMessage::Origin(Origin { commit_lsn, name })
                }),
                (
                    any::<u32>(),
                    name(),
                    name(),
                    any::<u8>(),
                    prop::collection::vec(column, 0..4)
                )
                    .prop_map(
                        |(id, namespace, name, replica_identity, columns)| {
                            LogicalMessage::Relation(Relation {
                                id,
                                namespace,
                                name,
                                replica_identity,
                                columns,
                            })
                        }
                    ),
                (any::<u32>(), name(), name()).prop_map(|(id, namespace, name)| {
                    LogicalMessage::Type(TypeMessage {
                        id,
                        namespace,
                        name,
                    })
                }),
                (any::<u32>(), tuple()).prop_map(|(relation_id, new)| {
                    LogicalMessage::Insert(Insert { relation_id, new })
                }),
                (any::<u32>(), prop::option::of(old_tuple()), tuple()).prop_map(
                    |(relation_id, old, new)| LogicalMessage::Update(Update {
                        relation_id,
                        old,
                        new,
                    })
                ),
                (any::<u32>(), old_tuple()).prop_map(|(relation_id, old)| {
                    LogicalMessage::Delete(Delete { relation_id, old })
                }),
                (any::<u8>(), prop::collection::vec(any::<u32>(), 0..4)).prop_map(
                    |(options, relation_ids)| LogicalMessage::Truncate(Truncate {
                        options,
                        relation_ids,
                    })
                ),
                (any::<bool>(), lsn, name(), bytes()).prop_map(
                    |(transactional, lsn, prefix, content)| LogicalMessage::Message(Message {
                        transactional,
                        lsn,
                        prefix,
                        content,
                    })
                ),
            ]
        }

        proptest! {
            #![proptest_config(config(1000))]

            #[test]
            fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..200)) {
                let _ = LogicalMessage::parse(Bytes::from(raw));
            }

            #[test]
            fn valid_messages_parse_and_truncations_are_errors(
                m in message(),
                at in any::<prop::sample::Index>(),
                byte in any::<u8>(),
            ) {
                let wire = encode(&m);
                prop_assert_eq!(LogicalMessage::parse(wire.clone()), Ok(m));
                for len in 0..wire.len() {
                    prop_assert!(LogicalMessage::parse(wire.slice(..len)).is_err(), "prefix {len}");
                }
                let mut changed = wire.to_vec();
                let i = at.index(changed.len());
                changed[i] = byte;
                let _ = LogicalMessage::parse(Bytes::from(changed));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic fuzz: every prefix and single-byte mutation of valid messages.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut b = BytesMut::new();
        b.put_u8(b'U');
        b.put_u32(7);
        b.put_u8(b'O');
        tuple(&mut b, &[Some("1"), None, Some("<toast>")]);
        b.put_u8(b'N');
        tuple(&mut b, &[Some("abc"), Some("d")]);
        let base = b.freeze();
        for len in 0..base.len() {
            let _ = LogicalMessage::parse(base.slice(..len));
        }
        for _ in 0..5000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut m = base.to_vec();
            let i = (seed as usize) % m.len();
            m[i] = (seed >> 32) as u8;
            let _ = LogicalMessage::parse(Bytes::from(m));
        }
    }
}
