//! Everything that talks to PostgreSQL: the connection string and TLS, the
//! replication client and pgoutput decoder, catalog lookups, the initial
//! snapshot, and the source that ties them into a stream of transactions.

pub mod catalog;
pub mod conninfo;
pub mod embedded;
pub mod errors;
pub mod lsn;
pub mod pgoutput;
pub mod replication;
pub mod snapshot;
pub mod source;
mod table_rows;
pub mod tls;

pub use conninfo::PgConfig;
pub use lsn::Lsn;
pub use tls::{connect_sql, ConnectError};

/// A `tokio_postgres` error with what Postgres said: its message, detail, hint
/// and SQLSTATE (the error's own Display is only "db error").
pub fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(&format!("; {d}"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            s
        }
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}
