//! Every supported type round-trips to exactly what Postgres's `to_json` gives,
//! both from the snapshot (COPY) and from the stream (pgoutput).

use crate::support::{check_view, check_views, TestDb, TestServer};

const VALUES: &str = "
 (1, -32768, 2147483647, 9223372036854775807, 1.5, 1e+20, 123.4500, 'quote \" back\\\\slash
newline	tab ünï', 'vc', 'ab', true, '2024-02-29', '2024-02-29 13:14:15.12', '2024-02-29 13:14:15+05:30',
  'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{\"b\": 1,  \"a\": [1, 2]}', '{\"b\": 1, \"a\": [1, 2]}', '\\x00ff10'),
 (2, 0, -1, -9223372036854775808, 1e+06, 0.1, -0.001, '', ' ', '', false, 'infinity', '1999-12-31 23:59:59', '-infinity',
  '00000000-0000-0000-0000-000000000000', '[]', 'null', ''),
 (3, NULL, NULL, NULL, 'NaN', '-Infinity', 'NaN', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 1, 2, 3, -0.0001, 1.23456789012345e-7, 100000000000000000000.00000000001, 'x', 'y', 'zzzzz', true, '0001-01-01', '2000-01-01 00:00:00.000001', '2262-04-11 23:47:16.854775+00',
  'ffffffff-ffff-ffff-ffff-ffffffffffff', '\"str\"', '{\"k\": {\"n\": [true, false, null]}}', '\\xdeadbeef')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_to_to_json() {
    let db = TestDb::new("types").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, a int2, b int4, c int8, d float4, e float8, f numeric, g text, h varchar(10), i char(5),
                         j bool, k date, l timestamp, m timestamptz, n uuid, o json, p jsonb, q bytea)",
    )
    .await;
    db.exec(&format!("INSERT INTO t VALUES {VALUES}")).await;
    let sql = "SELECT * FROM t";
    let server = TestServer::start(&db, &[("all_types", sql)]).await;
    let mut f = server.follow("all_types").await;
    check_view(&db, &mut f, "all_types (snapshot)", sql).await;

    // The same values again through the replication stream.
    db.exec(&format!(
        "INSERT INTO t VALUES {}",
        VALUES
            .replace("(1,", "(11,")
            .replace("(2,", "(12,")
            .replace("(3,", "(13,")
            .replace("(4,", "(14,")
    ))
    .await;
    db.exec("UPDATE t SET f = f * 2, e = e / 3 WHERE id > 10")
        .await;
    check_view(&db, &mut f, "all_types (stream)", sql).await;

    let (_, views) = server.get("/views").await;
    let types: Vec<&str> = views[0]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "int4",
            "int2",
            "int4",
            "int8",
            "float4",
            "float8",
            "numeric",
            "text",
            "varchar",
            "bpchar",
            "bool",
            "date",
            "timestamp",
            "timestamptz",
            "uuid",
            "json",
            "jsonb",
            "bytea"
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enums_and_domains() {
    let db = TestDb::new("enums_domains").await;
    db.exec(
        "CREATE TYPE status_t AS ENUM ('new', 'paid', 'shipped');
         CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%');
         CREATE DOMAIN money_d AS numeric(10,2) CHECK (VALUE >= 0);
         CREATE TABLE t (id int PRIMARY KEY, status status_t NOT NULL, contact email, amount money_d);
         INSERT INTO t VALUES (1, 'new', 'a@x', 1.50), (2, 'paid', 'b@x', 2), (3, 'shipped', NULL, 3.25);",
    )
    .await;
    let views = [
        ("by_status", "SELECT status, count(*) AS n, sum(amount) AS total FROM t WHERE status IN ('new', 'paid') GROUP BY status"),
        ("contacts", "SELECT id, contact, status, amount FROM t WHERE status <> 'shipped'"),
        ("ordered", "SELECT id FROM t WHERE status < 'paid'"),
        ("latest", "SELECT max(status) FROM t"),
    ];
    let server = TestServer::start(&db, &views).await;
    for name in ["ordered", "latest"] {
        let (status, body) = server.get(&format!("/views/{name}")).await;
        assert_eq!(status, 422, "{name}: {body}");
        assert!(body["error"].as_str().unwrap().contains("enum"), "{body}");
    }
    let served = &views[..2];
    let mut followers = [
        server.follow("by_status").await,
        server.follow("contacts").await,
    ];
    check_views(&db, &mut followers, served).await;
    db.exec("UPDATE t SET status = 'paid', amount = amount + 1 WHERE id = 1; INSERT INTO t VALUES (4, 'new', 'd@x', 0);").await;
    check_views(&db, &mut followers, served).await;
    let (_, list) = server.get("/views").await;
    let types: Vec<&str> = list[1]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["int4", "text", "status_t", "numeric"]);
    server.stop().await;
}
