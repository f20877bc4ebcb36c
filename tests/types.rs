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

/// Edge values of every type, for the text-output views below. Row 6 holds
/// the extreme dates, which date arithmetic cannot take (kept out of `dates`,
/// as are their copies, ids 16 and on).
const EDGES: &str = r#"
 (1, -32768, 2147483647, 9223372036854775807, 1.5, 0.1, 1.50, 'quote " back\slash {a,b}', 'vc', 'ab', true,
  '2024-02-29', '2024-02-29 13:14:15.12', '2024-01-01 10:00+00', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
  '{"b": 1,  "a": [1, 2]}', '{"b": 1, "a": [1, 2]}', '\x00ff10', '1 day 02:00:00', 'plain'),
 (2, 0, -1, -9223372036854775808, 'NaN', 'Infinity', 'NaN', '', ' ', '', false,
  'infinity', 'infinity', '-infinity', '00000000-0000-0000-0000-000000000000',
  '[]', '"null"', '', '-1 days +02:00:00', 'a\\b'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 1, 2, 3, -0.0001, 1.23456789012345e-7, 1e1000, 'NULL', 'y', 'zzzzz', true,
  '0044-03-15 BC', '0044-03-15 10:00:00.5 BC', '294276-12-31 23:59:59.999999+00', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '"str"', '{"k": {"n": [true, false, null]}, "a": 1.0}', '\xdeadbeef', '1 year 2 mons 3 days 04:05:06.789', 'a\101b'),
 (5, 7, 8, 9, '-Infinity', '-0', '-Infinity', 'é😀', 'a,b', 'x y', false,
  '-infinity', '-infinity', 'infinity', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12',
  '{"a": "x\"y"}', '{"bb": 2, "a": {"c": "d"}}', '\x', '-178956970 years -8 mons -2147483648 days -2562047788:00:54.775807', '\x0102'),
 (6, 1, 1, 1, 3.4e38, 1e+20, -9.99e999, 'x', 'x', 'x', true,
  '5874897-12-31', '4714-11-24 00:00:00 BC', '4714-11-24 01:00:00+01 BC', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13',
  '1', '[1, "a", {}]', '\x5c', '00:00:00', 'é')"#;

/// Text output as Postgres writes it: `::text`, `||` and `concat()` over every
/// type and its edge values (infinite dates and timestamps, NaN and infinite
/// floats, big numerics, BC and year 294276, json/jsonb, bytea, intervals),
/// arrays from array_agg, bytea's escape input format, float → numeric
/// rounding, and infinite dates meeting timestamps — snapshot, then stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_output_matches_postgres() {
    let db = TestDb::new("text_output").await;
    db.exec(
        "CREATE TABLE v (id int PRIMARY KEY, a int2, b int4, c int8, d float4, e float8, f numeric, g text,
                         h varchar(10), i char(5), j bool, k date, l timestamp, m timestamptz, n uuid,
                         o json, p jsonb, q bytea, r interval, s text)",
    )
    .await;
    db.exec(&format!("INSERT INTO v VALUES {EDGES}")).await;
    let casts = "SELECT id, a::text AS a, b::text AS b, c::text AS c, d::text AS d, e::text AS e,
                        f::text AS f, g::text AS g, h::text AS h, i::text AS i, j::text AS j, k::text AS k,
                        l::text AS l, m::text AS m, n::text AS n, o::text AS o, p::text AS p, q::text AS q,
                        r::text AS r, e::numeric AS en, d::numeric AS dn, (e / 3)::numeric AS thirds
                 FROM v";
    let concats = "SELECT id, 'a' || a AS a, 'a' || c AS c, 'a' || d AS d, 'a' || e AS e, 'a' || f AS f,
                          'a' || g AS g, i || '|' AS i, 'a' || j AS j, 'a' || k AS k, 'a' || l AS l,
                          'a' || m AS m, 'a' || n AS n, 'a' || o AS o, 'a'::text || p AS p, 'a' || q AS q,
                          g || q AS gq, r || 'z' AS r,
                          concat(a, '|', d, '|', e, '|', f, '|', j, '|', k, '|', l, '|', m, '|', n, '|',
                                 o, '|', p, '|', q, '|', r, '|', i) AS everything,
                          concat_ws(',', b, j, k, e, NULL, q) AS ws
                   FROM v";
    let arrays = "SELECT array_agg(g ORDER BY id)::text AS g, array_agg(e ORDER BY id)::text AS e,
                         array_agg(d ORDER BY id)::text AS d, array_agg(j ORDER BY id)::text AS j,
                         array_agg(l ORDER BY id)::text AS l, array_agg(m ORDER BY id)::text AS m,
                         array_agg(k ORDER BY id)::text AS k, array_agg(q ORDER BY id)::text AS q,
                         array_agg(r ORDER BY id)::text AS r, array_agg(f ORDER BY id)::text AS f,
                         array_agg(i ORDER BY id)::text AS i, array_agg(n ORDER BY id)::text AS n,
                         concat('<', array_agg(b ORDER BY id), '>') AS b
                  FROM v";
    let bytea = "SELECT id, s::bytea AS s, 'plain'::bytea AS plain, 'a\\\\b'::bytea AS backslash,
                        'a\\101b'::bytea AS octal, q || 'x' AS joined
                 FROM v";
    let dates = "SELECT id, k < l AS lt, k = l AS eq, k >= m AS ge, k < '2024-01-01'::timestamp AS early,
                        k = 'infinity' AS inf, k + 1 AS next, k - 1 AS prev, k::timestamp AS ts,
                        l::date AS ld, m::date AS md, extract(year from k) AS y, date_part('year', l) AS ly,
                        extract(month from m) AS mm, date_trunc('month', l) AS tm, greatest(k, l) AS latest,
                        l + interval '1 day' AS tomorrow
                 FROM v WHERE id % 10 <> 6";
    let views = [
        ("casts", casts),
        ("concats", concats),
        ("arrays", arrays),
        ("bytea", bytea),
        ("dates", dates),
    ];
    let server = TestServer::start(&db, &views).await;
    let mut followers = server.follow_all(&views).await;
    check_views(&db, &mut followers, &views).await;

    // The same kinds of values arriving through the replication stream.
    db.exec(
        "INSERT INTO v SELECT id + 10, a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r, s FROM v;
         UPDATE v SET k = '-infinity', l = 'infinity', m = '0001-01-01 00:00:00 BC', d = 'NaN',
                      e = e / 3, f = f * 2, q = q || '\\x00'::bytea, r = r * 2, j = NOT j,
                      p = '{\"z\": [1.50, \"é\"], \"a\": null}', s = 'a\\\\\\\\b\\\\001'
                  WHERE id = 11;
         UPDATE v SET k = 'infinity', l = '2024-02-29 23:59:59.999999', g = '{}', o = '\"x\"' WHERE id = 2;
         DELETE FROM v WHERE id = 13;",
    )
    .await;
    check_views(&db, &mut followers, &views).await;
    server.stop().await;
}
