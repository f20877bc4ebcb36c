//! viewcast: live SQL views over PostgreSQL, in pipeline order.
//!
//! - [`pg`]: replication client, pgoutput decoder, catalog, snapshot, the source
//! - [`repr`]: SQL types and values, text decoding, `to_json` encoding, time
//!   zones and DateStyle (`repr::tz`)
//! - [`sql`]: parse, bind and plan a view (refusals happen here)
//! - [`dataflow`]: timely workers; `render/` turns plans into operators
//! - [`controller`]: which views exist; turns source events and file changes
//!   into dataflow commands
//! - [`views`]: per-view contents, encoded events, subscribers
//! - [`http`]: SSE, snapshot JSON, health, the live page
//! - [`auth`]: bearer token (JWT) verification into [`auth::Claims`]
//! - [`server`]: wires the above together; [`config`]: its settings
//! - [`cluster`]: one dataflow across processes (`--cluster`, `--process`)
//! - [`client`]: a small SSE client (the `tail` command, tests, benchmarks)
//! - [`demo`]: the self-contained demo (throwaway Postgres, writer, views)
//! - [`alloc`]: the allocator's settings (the binary runs on mimalloc)

pub mod alloc;
pub mod auth;
pub mod client;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod dataflow;
pub mod demo;
pub mod http;
pub mod pg;
pub mod repr;
pub mod server;
pub mod sql;
pub mod views;
