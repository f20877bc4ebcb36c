//! TPC-H data from the `tpchgen` crate, loaded with COPY, and refresh
//! batches: shared by `tests/tpch.rs` and `benches/tpch.rs`.

use std::fmt::Display;

use futures::SinkExt;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};

pub const CORPUS: &str = "../shared/corpus/tpch";
/// Orders (with their lineitems) come in this many disjoint slices; all but
/// the last two are loaded at first.
pub const SLICES: i32 = 10;

/// A generator row in Postgres COPY text format (`|`-separated).
fn tbl(row: impl Display) -> String {
    let s = row.to_string();
    s.strip_suffix('|').unwrap_or(&s).to_string()
}

async fn copy(client: &tokio_postgres::Transaction<'_>, table: &str, rows: Vec<String>) {
    let sink = client
        .copy_in(&format!("COPY {table} FROM STDIN (DELIMITER '|')"))
        .await
        .expect("COPY starts");
    futures::pin_mut!(sink);
    let mut data = rows.join("\n");
    data.push('\n');
    sink.send(bytes::Bytes::from(data))
        .await
        .expect("COPY data");
    sink.finish().await.expect("COPY ends");
}

/// Orders and lineitems of slice `k`, and the range of its order keys.
fn slice(sf: f64, k: i32) -> (Vec<String>, Vec<String>, i64, i64) {
    let orders: Vec<_> = OrderGenerator::new(sf, k, SLICES).iter().collect();
    let lo = orders.iter().map(|o| o.o_orderkey).min().unwrap_or(0);
    let hi = orders.iter().map(|o| o.o_orderkey).max().unwrap_or(0);
    let orders = orders.into_iter().map(tbl).collect();
    let lines = LineItemGenerator::new(sf, k, SLICES)
        .iter()
        .map(tbl)
        .collect();
    (orders, lines, lo, hi)
}

/// Creates the tables with their primary keys and loads every table, orders
/// and lineitems except the last two slices.
pub async fn create_and_load(client: &mut tokio_postgres::Client, sf: f64) {
    let ddl = std::fs::read_to_string(format!("{CORPUS}/ddl.sql")).expect("tpch ddl");
    let keys = std::fs::read_to_string(format!("{CORPUS}/keys.sql")).expect("tpch keys");
    client.batch_execute(&ddl).await.expect("ddl");
    client.batch_execute(&keys).await.expect("keys");
    let tx = client.transaction().await.unwrap();
    copy(
        &tx,
        "region",
        RegionGenerator::new(sf, 1, 1).iter().map(tbl).collect(),
    )
    .await;
    copy(
        &tx,
        "nation",
        NationGenerator::new(sf, 1, 1).iter().map(tbl).collect(),
    )
    .await;
    copy(
        &tx,
        "part",
        PartGenerator::new(sf, 1, 1).iter().map(tbl).collect(),
    )
    .await;
    copy(
        &tx,
        "supplier",
        SupplierGenerator::new(sf, 1, 1).iter().map(tbl).collect(),
    )
    .await;
    copy(
        &tx,
        "partsupp",
        PartSuppGenerator::new(sf, 1, 1).iter().map(tbl).collect(),
    )
    .await;
    copy(
        &tx,
        "customer",
        CustomerGenerator::new(sf, 1, 1).iter().map(tbl).collect(),
    )
    .await;
    for k in 1..=SLICES - 2 {
        let (orders, lines, _, _) = slice(sf, k);
        copy(&tx, "orders", orders).await;
        copy(&tx, "lineitem", lines).await;
    }
    tx.commit().await.unwrap();
    client.batch_execute("ANALYZE").await.expect("analyze");
}

/// The refresh batches: the two held-back slices inserted, then the first
/// two deleted. Each is (description, slice, insert?).
pub fn batches() -> Vec<(String, i32, bool)> {
    let mut out = Vec::new();
    for k in SLICES - 1..=SLICES {
        out.push((format!("insert slice {k}"), k, true));
    }
    for k in 1..=2 {
        out.push((format!("delete slice {k}"), k, false));
    }
    out
}

/// Inserts or deletes slice `k`'s orders with their lineitems, in one
/// transaction; returns how many rows changed.
pub async fn apply_batch(
    client: &mut tokio_postgres::Client,
    sf: f64,
    k: i32,
    insert: bool,
) -> usize {
    let (orders, lines, lo, hi) = slice(sf, k);
    let rows = orders.len() + lines.len();
    let tx = client.transaction().await.unwrap();
    if insert {
        copy(&tx, "orders", orders).await;
        copy(&tx, "lineitem", lines).await;
    } else {
        tx.batch_execute(&format!(
            "DELETE FROM lineitem WHERE l_orderkey BETWEEN {lo} AND {hi};
             DELETE FROM orders WHERE o_orderkey BETWEEN {lo} AND {hi};"
        ))
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    rows
}

/// The 22 queries as (name, SQL): q01 .. q22.
pub fn queries() -> Vec<(String, String)> {
    (1..=22)
        .map(|i| {
            let name = format!("q{i:02}");
            let sql = std::fs::read_to_string(format!("{CORPUS}/queries/{name}.sql"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, sql)
        })
        .collect()
}
