//! The initial contents of a table, read with COPY inside the transaction that
//! imported the replication slot's exported snapshot.

use bytes::{Buf, BytesMut};
use futures::StreamExt;
use tokio_postgres::Transaction;

use crate::pg::catalog::TableInfo;
use crate::repr::{Datum, Row};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot COPY of {table} failed: {}", super::error_text(source))]
    Postgres {
        table: String,
        source: tokio_postgres::Error,
    },
    #[error("snapshot of {table}: {message}")]
    Decode { table: String, message: String },
}

/// Reads every row of `table` with `COPY ... TO STDOUT` (text format), decoded
/// with the same codec as pgoutput's text values.
pub async fn copy_table(
    tx: &Transaction<'_>,
    table: &TableInfo,
) -> Result<Vec<Row>, SnapshotError> {
    let name = table.qualified_name();
    let cols: Vec<String> = table
        .columns
        .iter()
        .map(|c| crate::pg::catalog::quote_if_needed(&c.name))
        .collect();
    let sql = format!("COPY (SELECT {} FROM {}) TO STDOUT", cols.join(", "), name);
    let pg_err = |source| SnapshotError::Postgres {
        table: name.clone(),
        source,
    };
    let stream = tx.copy_out(&sql).await.map_err(pg_err)?;
    futures::pin_mut!(stream);
    let mut buf = BytesMut::new();
    let mut rows = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk.map_err(pg_err)?);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line = buf.split_to(nl);
            buf.advance(1);
            rows.push(
                parse_line(&line, table).map_err(|message| SnapshotError::Decode {
                    table: name.clone(),
                    message,
                })?,
            );
        }
    }
    if !buf.is_empty() {
        rows.push(
            parse_line(&buf, table).map_err(|message| SnapshotError::Decode {
                table: name.clone(),
                message,
            })?,
        );
    }
    Ok(rows)
}

/// Parses one line of COPY's text format: tab-separated fields, `\N` for NULL,
/// backslash escapes inside values.
pub fn parse_line(line: &[u8], table: &TableInfo) -> Result<Row, String> {
    let fields: Vec<&[u8]> = line.split(|b| *b == b'\t').collect();
    if fields.len() != table.columns.len() {
        return Err(format!(
            "COPY row has {} fields, table has {} columns",
            fields.len(),
            table.columns.len()
        ));
    }
    fields
        .into_iter()
        .zip(&table.columns)
        .map(|(f, col)| {
            if f == b"\\N" {
                return Ok(Datum::Null);
            }
            let text = unescape(f)?;
            Datum::from_text(&col.ty, &text).map_err(|e| format!("column {}: {e}", col.name))
        })
        .collect()
}

fn unescape(f: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(f.len());
    let mut i = 0;
    while i < f.len() {
        if f[i] != b'\\' || i + 1 == f.len() {
            out.push(f[i]);
            i += 1;
            continue;
        }
        let c = f[i + 1];
        i += 2;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = (c - b'0') as u32;
                let mut n = 1;
                while n < 3 && i < f.len() && (b'0'..=b'7').contains(&f[i]) {
                    v = v * 8 + (f[i] - b'0') as u32;
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 && i < f.len() && f[i].is_ascii_hexdigit() {
                    v = v * 16 + (f[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).map_err(|_| "COPY value is not valid UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_copy_text() {
        assert_eq!(unescape(b"a\\tb\\nc\\\\d").unwrap(), "a\tb\nc\\d");
        assert_eq!(unescape(b"\\101\\x42").unwrap(), "AB");
        assert_eq!(unescape(b"\\\\x00ff").unwrap(), "\\x00ff");
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;
        use crate::pg::catalog::ColumnInfo;
        use crate::repr::proptests::{all_types, config, valid_datum};
        use crate::repr::Type;

        fn table(types: Vec<Type>) -> TableInfo {
            TableInfo {
                oid: 1,
                schema: "public".into(),
                name: "t".into(),
                columns: types
                    .into_iter()
                    .enumerate()
                    .map(|(i, ty)| ColumnInfo {
                        name: format!("c{i}"),
                        ty,
                        type_oid: 0,
                    })
                    .collect(),
                key: None,
                replica_identity: 'd',
            }
        }

        /// A value as COPY's text format writes it.
        fn copy_field(d: &Datum) -> String {
            if d.is_null() {
                return "\\N".into();
            }
            let mut out = String::new();
            for c in d.to_text().chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c => out.push(c),
                }
            }
            out
        }

        fn row_types() -> impl Strategy<Value = Vec<Type>> {
            let readable: Vec<Type> = all_types()
                .into_iter()
                .filter(|t| !matches!(t, Type::Array { .. }))
                .collect();
            prop::collection::vec(prop::sample::select(readable), 1..5)
        }

        proptest! {
            #![proptest_config(config(1000))]

            #[test]
            fn any_line_never_panics(types in row_types(), line in prop::collection::vec(any::<u8>(), 0..80)) {
                let _ = parse_line(&line, &table(types));
            }

            #[test]
            fn written_rows_read_back(
                (types, row) in row_types().prop_flat_map(|types| {
                    let row: Vec<_> = types
                        .iter()
                        .map(|t| prop_oneof![1 => Just(Datum::Null), 4 => valid_datum(t)])
                        .collect();
                    (Just(types), row)
                })
            ) {
                let line = row.iter().map(copy_field).collect::<Vec<_>>().join("\t");
                let read = parse_line(line.as_bytes(), &table(types));
                // Floats compare by bits: -0 must stay -0.
                let same = |a: &Datum, b: &Datum| match (a, b) {
                    (Datum::Float4(x), Datum::Float4(y)) | (Datum::Float8(x), Datum::Float8(y)) => {
                        (x.0.is_nan() && y.0.is_nan()) || x.0.to_bits() == y.0.to_bits()
                    }
                    _ => a == b,
                };
                prop_assert!(
                    read.as_ref().is_ok_and(|r| r.len() == row.len() && r.iter().zip(&row).all(|(a, b)| same(a, b))),
                    "{line:?} read as {read:?}, want {row:?}"
                );
            }
        }
    }
}
