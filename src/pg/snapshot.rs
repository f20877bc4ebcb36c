//! Tables read at a replication slot's exported snapshot: their definitions
//! from the catalog and their rows with COPY, in one REPEATABLE READ
//! transaction that imported the snapshot, so both are exactly as of the
//! slot's consistent point.
//!
//! Each table is read under a savepoint: a table that cannot be read (dropped
//! meanwhile, permission revoked, a value that does not decode) fails alone,
//! with its reason, and the others are read. Only a lost connection fails the
//! whole read.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use tokio_postgres::Transaction;

use crate::pg::catalog::{load_relation, resolve_all, CatalogError, Relation, TableInfo};
use crate::pg::errors::{classify_pg, Class};
use crate::repr::{Datum, PackedRow, Row};
use crate::sql::SessionSettings;

/// Longest wait for the next piece of a COPY: a server that sends nothing
/// for this long is not reading a big table, it is gone.
pub const COPY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What one name resolved to in a snapshot.
pub type Resolved = Result<Relation, String>;

/// Tables read at one snapshot.
pub struct TablesRead {
    /// Each wanted name and each name a view among them reads, resolved at
    /// the snapshot (ids are not yet assigned).
    pub names: Vec<(Vec<String>, Resolved)>,
    /// Rows by table OID, for the tables that were copied; `Err` is why a
    /// table could not be read.
    pub rows: HashMap<u32, Result<Vec<PackedRow>, String>>,
    /// The catalog fingerprint of each name at the snapshot (see
    /// [`crate::pg::catalog::FINGERPRINT_SQL`]).
    pub fingerprints: HashMap<Vec<String>, String>,
    /// The role's TimeZone, DateStyle, IntervalStyle and default collation
    /// at the snapshot: views are bound under them (`Catalog::settings`).
    pub settings: SessionSettings,
}

/// Resolves `names` and copies the tables `copy` selects, inside `tx`, which
/// must have imported a slot's snapshot. A failure of one table is recorded
/// for that table; a failure of the connection is returned.
pub async fn read_tables(
    tx: &Transaction<'_>,
    names: &[Vec<String>],
    publication: &str,
    mut copy: impl FnMut(&TableInfo) -> bool,
) -> Result<TablesRead, SnapshotError> {
    let names = resolve_all(names, |name| async move {
        tx.batch_execute("SAVEPOINT viewcast_table").await?;
        match load_relation(tx, &name).await {
            Ok(relation) => {
                tx.batch_execute("RELEASE SAVEPOINT viewcast_table").await?;
                Ok(Ok(relation))
            }
            Err(CatalogError::Postgres(e)) if classify_pg(&e) == Class::Transient => {
                Err(SnapshotError::from(e))
            }
            Err(e) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT viewcast_table")
                    .await?;
                Ok(Err(e.to_string()))
            }
        }
    })
    .await?;
    let all: Vec<Vec<String>> = names.iter().map(|(n, _)| n.clone()).collect();
    let mut out = TablesRead {
        names,
        rows: HashMap::new(),
        fingerprints: crate::pg::catalog::fingerprints(tx, &all, publication).await?,
        settings: crate::pg::catalog::session_settings(tx).await?,
    };
    let mut seen = std::collections::HashSet::new();
    for (_, resolved) in &out.names {
        let Ok(Relation::Table(info)) = resolved else {
            continue;
        };
        if !seen.insert(info.oid) || !copy(info) {
            continue;
        }
        tx.batch_execute("SAVEPOINT viewcast_copy").await?;
        match copy_table(tx, info).await {
            Ok(rows) => {
                tx.batch_execute("RELEASE SAVEPOINT viewcast_copy").await?;
                out.rows.insert(info.oid, Ok(rows));
            }
            Err(e @ SnapshotError::Postgres { .. }) if e.class() == Class::Transient => {
                return Err(e)
            }
            Err(e @ SnapshotError::Stalled { .. }) => return Err(e),
            Err(e) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT viewcast_copy")
                    .await?;
                out.rows.insert(info.oid, Err(e.to_string()));
            }
        }
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("reading the snapshot failed: {}", super::error_text(.0))]
    Connection(#[from] tokio_postgres::Error),
    #[error("snapshot COPY of {table} failed: {}", super::error_text(source))]
    Postgres {
        table: String,
        source: tokio_postgres::Error,
    },
    #[error("snapshot of {table}: {message}")]
    Decode { table: String, message: String },
    #[error("snapshot COPY of {table} received nothing for {after:?}")]
    Stalled { table: String, after: Duration },
}

impl SnapshotError {
    pub fn class(&self) -> Class {
        match self {
            SnapshotError::Connection(e) | SnapshotError::Postgres { source: e, .. } => {
                classify_pg(e)
            }
            SnapshotError::Decode { .. } => Class::Definite,
            SnapshotError::Stalled { .. } => Class::Transient,
        }
    }
}

/// Bytes of COPY text (whole lines) parsed together on a blocking thread.
const PARSE_CHUNK_BYTES: usize = 1 << 20;

/// Reads every row of `table` with `COPY ... TO STDOUT` (text format), decoded
/// with the same codec as pgoutput's text values and packed.
///
/// Decoding is most of a snapshot's cost (numbers and dates from text), and
/// the views can do nothing until it is done: the lines are parsed in chunks
/// on blocking threads, as many at once as there are cores, while the next
/// chunk arrives. The rows keep COPY's order, and an error is the first bad
/// line's.
pub async fn copy_table(
    tx: &Transaction<'_>,
    table: &TableInfo,
) -> Result<Vec<PackedRow>, SnapshotError> {
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
    let shape = Arc::new(table.clone());
    let parse = |lines: Bytes| {
        let shape = shape.clone();
        tokio::task::spawn_blocking(move || parse_lines(&lines, &shape))
    };
    let ahead = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut parsing = FuturesOrdered::new();
    let mut buf = BytesMut::new();
    let mut rows = Vec::new();
    let take = |parsed: Result<Result<Vec<PackedRow>, String>, tokio::task::JoinError>| {
        parsed
            .unwrap_or_else(|e| Err(format!("decoding failed: {e}")))
            .map_err(|message| SnapshotError::Decode {
                table: name.clone(),
                message,
            })
    };
    loop {
        let next = tokio::time::timeout(COPY_IDLE_TIMEOUT, stream.next())
            .await
            .map_err(|_| SnapshotError::Stalled {
                table: name.clone(),
                after: COPY_IDLE_TIMEOUT,
            })?;
        let Some(chunk) = next else { break };
        buf.extend_from_slice(&chunk.map_err(pg_err)?);
        if buf.len() < PARSE_CHUNK_BYTES {
            continue;
        }
        let Some(last) = buf.iter().rposition(|b| *b == b'\n') else {
            continue;
        };
        parsing.push_back(parse(buf.split_to(last + 1).freeze()));
        while parsing.len() >= ahead {
            if let Some(parsed) = parsing.next().await {
                rows.extend(take(parsed)?);
            }
        }
    }
    // The rest, with a last line that may lack its newline.
    if !buf.is_empty() {
        parsing.push_back(parse(buf.freeze()));
    }
    while let Some(parsed) = parsing.next().await {
        rows.extend(take(parsed)?);
    }
    Ok(rows)
}

/// Parses and packs lines of COPY's text format, each ended by a newline
/// (the last may lack it).
fn parse_lines(lines: &[u8], table: &TableInfo) -> Result<Vec<PackedRow>, String> {
    let mut row = Vec::with_capacity(table.columns.len());
    let mut out = Vec::with_capacity(lines.len() / 64);
    for line in lines.split_inclusive(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        parse_into(line, table, &mut row)?;
        out.push(PackedRow::pack(&row));
    }
    Ok(out)
}

/// Parses one line of COPY's text format into `row` (cleared first):
/// tab-separated fields, `\N` for NULL, backslash escapes inside values.
fn parse_into(line: &[u8], table: &TableInfo, row: &mut Row) -> Result<(), String> {
    row.clear();
    if table.columns.is_empty() {
        // A table with no columns: each row is an empty line.
        return if line.is_empty() {
            Ok(())
        } else {
            Err("COPY row has fields, table has no columns".into())
        };
    }
    let fields = line.iter().filter(|b| **b == b'\t').count() + 1;
    if fields != table.columns.len() {
        return Err(format!(
            "COPY row has {fields} fields, table has {} columns",
            table.columns.len()
        ));
    }
    for (f, col) in line.split(|b| *b == b'\t').zip(&table.columns) {
        row.push(if f == b"\\N" {
            Datum::Null
        } else {
            let text = unescape(f)?;
            Datum::from_text(&col.ty, &text).map_err(|e| format!("column {}: {e}", col.name))?
        });
    }
    Ok(())
}

fn unescape(f: &[u8]) -> Result<Cow<'_, str>, String> {
    if !f.contains(&b'\\') {
        return std::str::from_utf8(f)
            .map(Cow::Borrowed)
            .map_err(|_| "COPY value is not valid UTF-8".to_string());
    }
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
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| "COPY value is not valid UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_parsed_in_order_with_or_without_a_last_newline() {
        let table = properties::table(vec![crate::repr::Type::Int8, crate::repr::Type::Text]);
        let unpacked = |lines: &[u8]| {
            parse_lines(lines, &table)
                .map(|rows| rows.iter().map(PackedRow::unpack).collect::<Vec<_>>())
        };
        let want = vec![
            vec![Datum::Int(1), Datum::Text("a\tb".into())],
            vec![Datum::Int(2), Datum::Null],
        ];
        assert_eq!(unpacked(b"1\ta\\tb\n2\t\\N\n"), Ok(want.clone()));
        assert_eq!(unpacked(b"1\ta\\tb\n2\t\\N"), Ok(want));
        assert_eq!(unpacked(b""), Ok(vec![]));
        // The first bad line is the error.
        let err = unpacked(b"1\tx\nnope\ty\n3\n").unwrap_err();
        assert!(err.contains("column c0"), "{err}");
        // A table without columns: each line, even the empty one, is a row.
        let empty = properties::table(vec![]);
        assert_eq!(parse_lines(b"\n\n", &empty).map(|r| r.len()), Ok(2));
    }

    #[test]
    fn unescapes_copy_text() {
        assert_eq!(unescape(b"a\\tb\\nc\\\\d").unwrap(), "a\tb\nc\\d");
        assert_eq!(unescape(b"\\101\\x42").unwrap(), "AB");
        assert_eq!(unescape(b"\\\\x00ff").unwrap(), "\\x00ff");
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        fn parse_line(line: &[u8], table: &TableInfo) -> Result<Row, String> {
            let mut row = Vec::new();
            parse_into(line, table, &mut row)?;
            Ok(row)
        }
        use crate::pg::catalog::ColumnInfo;
        use crate::repr::proptests::{all_types, config, valid_datum};
        use crate::repr::Type;

        pub(in crate::pg::snapshot) fn table(types: Vec<Type>) -> TableInfo {
            TableInfo {
                id: 0,
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
