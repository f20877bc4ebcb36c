//! TPC-H: the 22 queries of `../shared/corpus/tpch` as views over data from
//! the `tpchgen` crate (scale factor 0.01 unless `VIEWCAST_TPCH_SF` says
//! otherwise), then batches in the spirit of TPC-H's refresh functions:
//! inserts and deletes of orders together with their lineitems, each batch
//! one transaction. After the initial load and after every batch, every view
//! must equal what Postgres answers for the same query at the same LSN.

use std::time::{Duration, Instant};

use crate::support::{connect, sorted_rows, TestDb, TestServer};

#[path = "tpch_data.rs"]
mod tpch_data;

async fn postgres_answer(db: &TestDb, sql: &str) -> Vec<String> {
    let st = db
        .client
        .prepare(sql)
        .await
        .expect("Postgres prepares the query");
    db.json_rows(sql, st.columns().len())
        .await
        .unwrap_or_else(|e| panic!("Postgres answers: {e}"))
}

async fn check_all(server: &TestServer, db: &TestDb, queries: &[(String, String)], when: &str) {
    let target = db.lsn().await;
    let start = Instant::now();
    assert!(
        server.reaches(target, Duration::from_secs(300)).await,
        "{when}: viewcast did not reach {target}"
    );
    let caught_up = start.elapsed();
    let mut rows_total = 0;
    for (name, sql) in queries {
        let (status, body) = server.get(&format!("/views/{name}")).await;
        assert_eq!(status, 200, "{when}: {name}: {body}");
        let got = sorted_rows(&body);
        let want = postgres_answer(db, sql).await;
        rows_total += want.len();
        if got != want {
            let missing: Vec<&String> = want.iter().filter(|r| !got.contains(r)).take(5).collect();
            let extra: Vec<&String> = got.iter().filter(|r| !want.contains(r)).take(5).collect();
            panic!(
                "{when}: {name} differs from Postgres ({} rows vs {}):\n  missing {missing:?}\n  extra {extra:?}",
                got.len(),
                want.len()
            );
        }
    }
    println!(
        "tpch {when}: all 22 views equal Postgres ({rows_total} rows); caught up {:.2}s after the commit",
        caught_up.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_22_queries_stay_equal_to_postgres_through_refresh_batches() {
    let sf: f64 = std::env::var("VIEWCAST_TPCH_SF")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.01);
    let db = TestDb::new("tpch").await;
    let mut loader = connect(&db.conninfo).await;
    let started = Instant::now();
    tpch_data::create_and_load(&mut loader, sf).await;
    println!(
        "tpch: loaded scale factor {sf} in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let queries = tpch_data::queries();
    let named: Vec<(&str, &str)> = queries
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_str()))
        .collect();
    let started = Instant::now();
    let server = TestServer::start(&db, &named).await;
    println!(
        "tpch: 22 views healthy {:.1}s after start",
        started.elapsed().as_secs_f64()
    );
    let (_, list) = server.get("/views").await;
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(22),
        "every TPC-H query is served"
    );
    check_all(&server, &db, &queries, "initial load").await;

    // Refresh batches: new orders with their lineitems, then old ones removed.
    for (what, k, insert) in tpch_data::batches() {
        tpch_data::apply_batch(&mut loader, sf, k, insert).await;
        check_all(&server, &db, &queries, &what).await;
    }
    // Prices change in place: updates of lineitems across many orders.
    db.exec("UPDATE lineitem SET l_discount = 0.10 - l_discount, l_quantity = l_quantity + 1 WHERE l_orderkey % 5 = 0")
        .await;
    check_all(&server, &db, &queries, "update of a fifth of the lineitems").await;
    server.stop().await;
}
