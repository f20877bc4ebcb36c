//! Table metadata from the Postgres catalog: columns, types and the key by which
//! viewcast tracks each row so it can supply old rows for updates and deletes.

use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::repr::Type;
use crate::sql::SessionSettings;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(skip)]
    pub ty: Type,
    pub type_oid: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    /// viewcast's own id for this version of the table: a table whose columns
    /// change gets a new id, and the views over it are rebuilt.
    pub id: usize,
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnInfo>,
    /// Column positions of the row identity (primary key or replica identity
    /// index). `None` means the whole row is the identity: under REPLICA
    /// IDENTITY FULL Postgres sends it whole; otherwise the table has no key and
    /// is followed as a multiset of inserted rows (Postgres refuses updates and
    /// deletes of such a table while it is published).
    pub key: Option<Vec<usize>>,
    pub replica_identity: char,
}

impl TableInfo {
    /// Same columns, key and identity: rows of one decode as rows of the other,
    /// and plans over one read the other the same way.
    pub fn same_shape(&self, other: &TableInfo) -> bool {
        self.oid == other.oid
            && self.schema == other.schema
            && self.name == other.name
            && self.columns == other.columns
            && self.key == other.key
            && self.replica_identity == other.replica_identity
    }

    /// Whether updates and deletes carry the whole old row.
    pub fn full_identity(&self) -> bool {
        self.replica_identity == 'f'
    }

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

/// A Postgres view (`CREATE VIEW`), which viewcast reads as Postgres does:
/// as the query it is defined by, over the tables that query reads (they are
/// what the publication sends changes of).
#[derive(Debug, Clone, PartialEq)]
pub struct PgView {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// The view's column names, in order.
    pub columns: Vec<String>,
    /// Its query as `pg_get_viewdef` writes it, without the final semicolon:
    /// fully parenthesized, and with each name qualified where the session's
    /// search_path would not find it, so it reads the same relations when
    /// resolved under that search_path.
    pub definition: String,
}

impl PgView {
    pub fn qualified_name(&self) -> String {
        format!(
            "{}.{}",
            quote_if_needed(&self.schema),
            quote_if_needed(&self.name)
        )
    }

    /// The relation names its definition reads, as written there; a
    /// definition viewcast cannot parse reads nothing it can follow (binding
    /// it then gives the reason).
    pub fn reads(&self) -> Vec<Vec<String>> {
        crate::sql::parse(&self.definition)
            .map(|q| crate::sql::table_refs(&q))
            .unwrap_or_default()
    }
}

/// What a name in FROM resolves to.
#[derive(Debug, Clone, PartialEq)]
pub enum Relation {
    Table(TableInfo),
    View(PgView),
}

/// What a name resolved to once its table is followed: the followed table's
/// id, or a view (whose names were resolved too).
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    Table(usize),
    View(std::sync::Arc<PgView>),
}

impl Resolution {
    pub fn table(&self) -> Option<usize> {
        match self {
            Resolution::Table(id) => Some(*id),
            Resolution::View(_) => None,
        }
    }
}

/// Resolves `names` and, for every view among them, the names its
/// definition reads (views over views to any depth), each name once, in
/// first-mention order. `load` resolves one name; an `Err` from it (a lost
/// connection) ends the walk.
pub async fn resolve_all<E, F, Fut>(
    names: &[Vec<String>],
    mut load: F,
) -> Result<Vec<(Vec<String>, Result<Relation, String>)>, E>
where
    F: FnMut(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Result<Relation, String>, E>>,
{
    let mut queue: std::collections::VecDeque<Vec<String>> = names.iter().cloned().collect();
    let mut out: Vec<(Vec<String>, Result<Relation, String>)> = Vec::new();
    while let Some(name) = queue.pop_front() {
        if out.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let resolved = load(name.clone()).await?;
        if let Ok(Relation::View(v)) = &resolved {
            queue.extend(v.reads());
        }
        out.push((name, resolved));
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("relation \"{0}\" does not exist")]
    NotFound(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("catalog query failed: {}", super::error_text(.0))]
    Postgres(#[from] tokio_postgres::Error),
}

/// One line per wanted name that changes whenever anything viewcast depends
/// on changes: what the name resolves to, the table's columns and types, its
/// key and replica identity, privileges, partitions or inheritance children,
/// a view's definition, and whether the publication covers it. `$1` is the names as `text[]`
/// (each `schema.name` or `name`, quoted as needed), `$2` the publication.
pub const FINGERPRINT_SQL: &str = "
SELECT w.name, md5(concat_ws('|', c.oid, n.nspname, c.relname, c.relkind, c.relreplident,
         c.relispartition, c.relacl,
         (SELECT string_agg(a.attnum || ':' || a.attname || ':' || a.atttypid || ':' || a.attgenerated::text, ','
                            ORDER BY a.attnum)
            FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
         (SELECT string_agg(i.indexrelid || ':' || i.indkey::text || ':' || i.indisprimary || ':' || i.indisreplident, ','
                            ORDER BY i.indexrelid)
            FROM pg_index i WHERE i.indrelid = c.oid AND (i.indisprimary OR i.indisreplident)),
         (SELECT string_agg(h.inhrelid::text, ',' ORDER BY h.inhrelid) FROM pg_inherits h WHERE h.inhparent = c.oid),
         (SELECT string_agg(t.oid || ':' || t.typname, ',' ORDER BY t.oid)
            FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND t.typtype IN ('e', 'd')),
         CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END,
         EXISTS (SELECT 1 FROM pg_publication_tables p
                 WHERE p.pubname = $2 AND p.schemaname = n.nspname AND p.tablename = c.relname)))
FROM unnest($1::text[]) WITH ORDINALITY AS w(name, ord)
LEFT JOIN pg_class c ON c.oid = to_regclass(w.name)
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
ORDER BY w.ord";

/// A name as written in a view (`["orders"]`, `["shop", "orders"]`) in the
/// text form `to_regclass` reads.
pub fn regclass_text(parts: &[String]) -> String {
    parts
        .iter()
        .map(|p| quote_if_needed(p))
        .collect::<Vec<_>>()
        .join(".")
}

/// The settings a session of the connected role gets by default: `reset_val`
/// is what `RESET` restores (the server's, the database's and the role's
/// settings, and startup options), not what viewcast's own `SET`s changed.
/// `datlocprovider` and `daticulocale` are read through `to_jsonb` so the
/// query also runs on servers before 15, which have neither (libc only).
const SESSION_SETTINGS_SQL: &str = "\
SELECT (SELECT reset_val FROM pg_settings WHERE name = 'TimeZone'), \
       (SELECT reset_val FROM pg_settings WHERE name = 'DateStyle'), \
       (SELECT reset_val FROM pg_settings WHERE name = 'IntervalStyle'), \
       d.datcollate::text, \
       coalesce(to_jsonb(d) ->> 'datlocprovider', 'c'), \
       coalesce(to_jsonb(d) ->> 'daticulocale', to_jsonb(d) ->> 'datlocale', '') \
FROM pg_database d WHERE d.datname = current_database()";

/// The TimeZone, DateStyle, IntervalStyle and default collation that a
/// session of the connected role would have, although this connection has
/// set its own (`TimeZone = UTC`, ...): what views must be evaluated under.
pub async fn session_settings<C: GenericClient + Sync>(
    client: &C,
) -> Result<SessionSettings, tokio_postgres::Error> {
    let row = client.query_one(SESSION_SETTINGS_SQL, &[]).await?;
    let text = |i: usize| -> String { row.get::<_, Option<String>>(i).unwrap_or_default() };
    let icu = text(4) == "i";
    Ok(SessionSettings {
        timezone: text(0),
        datestyle: text(1),
        intervalstyle: text(2),
        collation: if icu { text(5) } else { text(3) },
        collation_provider: if icu { "icu" } else { "libc" }.into(),
    })
}

/// The fingerprint of each name (see [`FINGERPRINT_SQL`]).
pub async fn fingerprints<C: GenericClient + Sync>(
    client: &C,
    names: &[Vec<String>],
    publication: &str,
) -> Result<std::collections::HashMap<Vec<String>, String>, tokio_postgres::Error> {
    let texts: Vec<String> = names.iter().map(|n| regclass_text(n)).collect();
    let rows = client
        .query(FINGERPRINT_SQL, &[&texts, &publication])
        .await?;
    let mut out = std::collections::HashMap::new();
    for (name, row) in names.iter().zip(rows) {
        let fp: Option<String> = row.get(1);
        out.insert(name.clone(), fp.unwrap_or_default());
    }
    Ok(out)
}

/// Loads a table or view by `name` or `schema.name`, resolved with the
/// session's search_path. Inside a transaction that imported a replication
/// slot's snapshot, it describes the relation as of that snapshot.
pub async fn load_relation<C: GenericClient + Sync>(
    client: &C,
    parts: &[String],
) -> Result<Relation, CatalogError> {
    let display = parts.join(".");
    let regclass_text = regclass_text(parts);
    let row = client
        .query_opt(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.relreplident::text, c.relkind::text,
                    c.relispartition,
                    EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid) AS has_children
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
    let schema: String = row.get(1);
    let name: String = row.get(2);
    let qualified = format!("{}.{}", quote_if_needed(&schema), quote_if_needed(&name));
    match relkind.as_str() {
        "r" | "p" => {}
        "v" => {
            return load_view(client, oid, schema, name)
                .await
                .map(Relation::View)
        }
        "m" => {
            return Err(CatalogError::Unsupported(format!(
                "{qualified} is a materialized view: Postgres publishes no changes of it (it \
                 changes only at REFRESH); write its query as a viewcast view, which is kept \
                 up to date, or read the tables it is computed from"
            )))
        }
        _ => {
            return Err(CatalogError::NotFound(format!(
                "{display} (not a table or view: views must read tables)"
            )))
        }
    }
    let replica_identity = row.get::<_, String>(3).chars().next().unwrap_or('d');
    if row.get::<_, bool>(5) {
        // The publication sends a partition's changes as its root's.
        return Err(CatalogError::Unsupported(format!(
            "table {qualified} is a partition: viewcast follows partitioned tables through their root \
             (publish_via_partition_root); read the partitioned table and filter on the partition key"
        )));
    }
    if relkind == "r" && row.get::<_, bool>(6) {
        return Err(CatalogError::Unsupported(format!(
            "table {qualified} has inheritance children, whose rows SELECT ... FROM {qualified} includes; \
             viewcast cannot follow them: read the tables by name with FROM ONLY semantics in mind, \
             or use declarative partitioning"
        )));
    }
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
    // The identity by which old rows are found. Without one (no primary key
    // and REPLICA IDENTITY DEFAULT or NOTHING), Postgres publishes only inserts
    // and truncates of the table, so it is followed as a multiset of rows.
    let key = match replica_identity {
        'f' if primary.is_empty() => None,
        'f' => to_positions(&primary),
        'i' if !replident.is_empty() => to_positions(&replident),
        'i' | 'd' if !primary.is_empty() => to_positions(&primary),
        _ => None,
    };
    Ok(Relation::Table(TableInfo {
        id: 0,
        oid,
        schema,
        name,
        columns,
        key,
        replica_identity,
    }))
}

/// A view's columns and definition.
async fn load_view<C: GenericClient + Sync>(
    client: &C,
    oid: u32,
    schema: String,
    name: String,
) -> Result<PgView, CatalogError> {
    let columns = client
        .query(
            "SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Not pretty-printed: every operator application is parenthesized, so
    // the text means the same under any parser's precedence rules.
    let definition: String = client
        .query_one("SELECT pg_get_viewdef($1::oid, false)", &[&oid])
        .await?
        .get(0);
    let definition = definition.trim().trim_end_matches(';').trim().to_string();
    Ok(PgView {
        oid,
        schema,
        name,
        columns,
        definition,
    })
}
