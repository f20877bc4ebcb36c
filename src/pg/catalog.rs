//! Table metadata from the Postgres catalog: columns, types and the key by which
//! viewcast tracks each row so it can supply old rows for updates and deletes.

use serde::Serialize;
use tokio_postgres::Client;

use crate::repr::Type;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(skip)]
    pub ty: Type,
    pub type_oid: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnInfo>,
    /// Column positions of the row identity (primary key or replica identity
    /// index). `None` means REPLICA IDENTITY FULL without a key: the whole row is
    /// the identity and Postgres sends it whole.
    pub key: Option<Vec<usize>>,
    pub replica_identity: char,
}

impl TableInfo {
    pub fn qualified_name(&self) -> String {
        format!(
            "{}.{}",
            quote_if_needed(&self.schema),
            quote_if_needed(&self.name)
        )
    }
}

/// Quotes an identifier when Postgres would need it quoted.
pub fn quote_if_needed(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("relation \"{0}\" does not exist")]
    NotFound(String),
    #[error(
        "table \"{0}\" has no primary key and REPLICA IDENTITY {1}; add a primary key or run ALTER TABLE {0} REPLICA IDENTITY FULL"
    )]
    NoKey(String, &'static str),
    #[error("catalog query failed: {}", super::error_text(.0))]
    Postgres(#[from] tokio_postgres::Error),
}

/// Loads a table by `name` or `schema.name`, resolved with the session's search_path.
pub async fn load_table(client: &Client, parts: &[String]) -> Result<TableInfo, CatalogError> {
    let display = parts.join(".");
    let regclass_text = parts
        .iter()
        .map(|p| quote_if_needed(p))
        .collect::<Vec<_>>()
        .join(".");
    let row = client
        .query_opt(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.relreplident::text, c.relkind::text
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = to_regclass($1)",
            &[&regclass_text],
        )
        .await?;
    let Some(row) = row else {
        return Err(CatalogError::NotFound(display));
    };
    let oid: u32 = row.get(0);
    let relkind: String = row.get(4);
    if relkind != "r" && relkind != "p" {
        return Err(CatalogError::NotFound(format!(
            "{display} (not a table: views must read tables)"
        )));
    }
    let schema: String = row.get(1);
    let name: String = row.get(2);
    let replica_identity = row.get::<_, String>(3).chars().next().unwrap_or('d');
    let cols = client
        .query(
            "SELECT a.attname::text, a.atttypid, t.typname::text, a.attnum, t.typtype::text,
                    COALESCE(b.oid, 0::oid), COALESCE(b.typname::text, '')
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
             LEFT JOIN pg_type b ON b.oid = t.typbasetype AND t.typtype = 'd'
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
             ORDER BY a.attnum",
            &[&oid],
        )
        .await?;
    let attnums: Vec<i16> = cols.iter().map(|r| r.get(3)).collect();
    let columns: Vec<ColumnInfo> = cols
        .iter()
        .map(|r| {
            let type_oid: u32 = r.get(1);
            let tname: String = r.get(2);
            let typtype: String = r.get(4);
            let ty = match typtype.as_str() {
                // An enum's values are its labels.
                "e" => Type::Enum {
                    oid: type_oid,
                    name: tname,
                },
                // A domain's values are its base type's.
                "d" => Type::from_oid(r.get(5), &r.get::<_, String>(6)),
                _ => Type::from_oid(type_oid, &tname),
            };
            ColumnInfo {
                name: r.get(0),
                ty,
                type_oid,
            }
        })
        .collect();
    // Primary key first; otherwise the replica identity index.
    let key_rows = client
        .query(
            "SELECT i.indisprimary, unnest(i.indkey)::int2 FROM pg_index i
             WHERE i.indrelid = $1 AND (i.indisprimary OR i.indisreplident)
             ORDER BY i.indisprimary DESC",
            &[&oid],
        )
        .await?;
    let primary: Vec<i16> = key_rows
        .iter()
        .filter(|r| r.get::<_, bool>(0))
        .map(|r| r.get(1))
        .collect();
    let replident: Vec<i16> = key_rows
        .iter()
        .filter(|r| !r.get::<_, bool>(0))
        .map(|r| r.get(1))
        .collect();
    let to_positions = |nums: &[i16]| -> Option<Vec<usize>> {
        nums.iter()
            .map(|n| attnums.iter().position(|a| a == n))
            .collect()
    };
    let qualified = format!("{}.{}", quote_if_needed(&schema), quote_if_needed(&name));
    let key = match replica_identity {
        'f' => {
            if primary.is_empty() {
                None
            } else {
                to_positions(&primary)
            }
        }
        'i' if !replident.is_empty() => to_positions(&replident),
        'd' if !primary.is_empty() => to_positions(&primary),
        'n' => return Err(CatalogError::NoKey(qualified, "NOTHING")),
        _ => return Err(CatalogError::NoKey(qualified, "DEFAULT")),
    };
    if replica_identity != 'f' && key.is_none() {
        return Err(CatalogError::NoKey(qualified, "DEFAULT"));
    }
    Ok(TableInfo {
        oid,
        schema,
        name,
        columns,
        key,
        replica_identity,
    })
}
