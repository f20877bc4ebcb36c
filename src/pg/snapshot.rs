//! Tables read at a replication slot's exported snapshot: their definitions
//! from the catalog and their rows with COPY, in one REPEATABLE READ
//! transaction that imported the snapshot, so both are exactly as of the
//! slot's consistent point.
//!
//! Each table is read under a savepoint: a table that cannot be read (dropped
//! meanwhile, permission revoked, a value that does not decode) fails alone,
//! with its reason, and the others are read. Only a lost connection fails the
//! whole read.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::StreamExt;
use tokio_postgres::Transaction;

use crate::pg::catalog::{load_relation, resolve_all, CatalogError, Relation, TableInfo};
use crate::pg::errors::{classify_pg, Class};
use crate::repr::{Datum, Row};
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
    pub rows: HashMap<u32, Result<Vec<Row>, String>>,
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
    loop {
        let next = tokio::time::timeout(COPY_IDLE_TIMEOUT, stream.next())
            .await
            .map_err(|_| SnapshotError::Stalled {
                table: name.clone(),
                after: COPY_IDLE_TIMEOUT,
            })?;
        let Some(chunk) = next else { break };
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
    if table.columns.is_empty() {
        // A table with no columns: each row is an empty line.
        return if line.is_empty() {
            Ok(Vec::new())
        } else {
            Err("COPY row has fields, table has no columns".into())
        };
    }
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
