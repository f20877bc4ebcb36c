//! Everything that talks to PostgreSQL: the replication client and pgoutput
//! decoder, catalog lookups, the initial snapshot, and the source that ties
//! them into a stream of transactions.

pub mod catalog;
pub mod embedded;
pub mod lsn;
pub mod pgoutput;
pub mod replication;
pub mod snapshot;
pub mod source;

pub use lsn::Lsn;
