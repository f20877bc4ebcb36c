//! Integration tests against a real PostgreSQL (see tests/support).

mod auth;
mod cluster;
mod errors;
mod faults;
mod functions;
mod http;
mod js_client;
mod oracle;
mod outer_aggregates;
mod page;
mod params;
mod pg_regress;
mod pg_views;
mod restart;
mod scenarios;
mod schema;
mod slt;
mod support;
mod temporal;
mod tls;
mod tpch;
mod types;
mod ws;
