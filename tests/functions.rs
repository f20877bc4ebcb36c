//! The function and operator library against Postgres: JSON construction
//! (byte for byte, through `::text`), whole-row references, json_agg of
//! documents and rows, jsonb operators, arrays and subscripts, regular
//! expressions (also `regexp_matches` as a set-returning function), string
//! and date functions, over a table with NULLs and edge values, from the
//! snapshot and again after updates and deletes through the stream.

use crate::support::{check_views, TestDb, TestServer};

const ROWS: &str = "
 (1, 'a\"b', 1.50, 1e20, true, '2024-01-02', '2024-01-02 03:04:05.5', '2024-01-02 03:04:05+02',
  '{\"b\": 1,  \"a\":[1, 2]}', '{\"k\": null, \"a\": {\"b\": [1,2,{\"c\":3}]}}', '{1,2,NULL}', '1 day 02:00', 'ab', 2024, 2, 29),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (3, '', -0.0, 'NaN', false, 'infinity', '-infinity', 'infinity', '[1,\"x\",null]',
  '[1, \"a\", [2], {\"x\": \"y\"}]', '{}', '-3 mons', 'x', -44, 3, 15),
 (4, '日本', 1e-5, -0.0, true, '0001-01-01 BC', '2000-01-01', '2000-01-01', '\"s\"', '\"a\"', '{5}', '0', 'abcd', 1, 1, 1),
 (5, 'zz', 12345678901234567890.123, 0.1, false, '2024-02-29', '2024-02-29 23:59:59.999999',
  '2024-02-29 23:59:59.999999+00', 'null', 'null', '{7,8}', '35 days -2 hours', '  a', 2000, 12, 31)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_and_operators_equal_postgres() {
    let db = TestDb::new("functions").await;
    db.exec(
        "CREATE TABLE f (id int PRIMARY KEY, t text, n numeric, x float8, b bool, d date, ts timestamp,
                         tz timestamptz, j json, jb jsonb, arr int[], iv interval, c char(4), y int, m int, dd int);
         CREATE TABLE child (id int PRIMARY KEY, parent int, name text);",
    )
    .await;
    db.exec(&format!("INSERT INTO f VALUES {ROWS}")).await;
    db.exec("INSERT INTO child SELECT i, i % 4, 'c' || i FROM generate_series(1, 12) i")
        .await;
    let views: Vec<(&str, &str)> = vec![
        (
            "builders",
            "SELECT id, json_build_object('id', id, 't', t, 'n', n, 'x', x, 'b', b, 'd', d, 'ts', ts, 'tz', tz,
                                          'j', j, 'jb', jb, 'arr', arr, 'iv', iv, 'c', c)::text AS o,
                    jsonb_build_object('t', t, 'n', n, 'x', x, 'j', j, 'jb', jb, 'arr', arr, 't', 'dup')::text AS ob,
                    json_build_array(id, t, n, x, arr, j)::text AS a, jsonb_build_array(n, x, j, jb)::text AS ab,
                    to_json(t)::text AS tj, to_jsonb(x)::text AS xj, to_json(arr)::text AS aj, to_jsonb(j)::text AS jj
             FROM f",
        ),
        (
            "rows",
            "SELECT id, row_to_json(f)::text AS r, to_jsonb(f)::text AS rb FROM f",
        ),
        (
            "nested",
            "SELECT p.id, jsonb_build_object('t', p.t, 'kids',
                      (SELECT jsonb_agg(jsonb_build_object('id', c.id, 'name', c.name) ORDER BY c.id)
                       FROM child c WHERE c.parent = p.id))::text AS doc,
                    (SELECT json_agg(ch ORDER BY ch.id) FROM child ch WHERE ch.parent = p.id)::text AS kids
             FROM f p",
        ),
        (
            "aggs",
            "SELECT json_agg(f ORDER BY id)::text AS r, jsonb_agg(f ORDER BY id)::text AS rb,
                    json_agg(j ORDER BY id)::text AS j, jsonb_agg(jb ORDER BY id)::text AS jb,
                    json_agg(arr ORDER BY id)::text AS a, jsonb_agg(x ORDER BY id)::text AS x
             FROM f",
        ),
        (
            "object_aggs",
            "SELECT p.id, json_object_agg(c.name, ch ORDER BY c.id)::text AS o,
                    jsonb_object_agg(c.id, c.name)::text AS ob,
                    jsonb_object_agg(c.id % 2, c.name ORDER BY c.id)::text AS last_wins,
                    json_object_agg(c.id, p.tz ORDER BY c.id DESC)::text AS zoned
             FROM f p JOIN child c ON c.parent = p.id JOIN child ch ON ch.id = c.id GROUP BY p.id",
        ),
        (
            "jsonb_ops",
            "SELECT id, jb ? 'a' AS q, jb ?| '{a,zz}' AS qa, jb ?& array['a','k'] AS qb,
                    jb @> '{\"a\": {\"b\": [2]}}' AS c1, '[1, \"a\", [2]]'::jsonb @> jb AS c2,
                    (jb || '{\"z\": 1}')::text AS cat, jsonb_typeof(jb) AS ty, json_typeof(j) AS jty,
                    jsonb_strip_nulls(jb)::text AS sn, json_strip_nulls(j)::text AS jsn, jsonb_pretty(jb) AS pretty,
                    CASE WHEN jsonb_typeof(jb) = 'object' THEN (jb - 'a')::text END AS del,
                    CASE WHEN jsonb_typeof(jb) = 'array' THEN (jb - 0)::text || jsonb_array_length(jb) END AS dela,
                    CASE WHEN jsonb_typeof(jb) IN ('object', 'array')
                         THEN jsonb_set(jb, '{0}', '\"new\"')::text END AS set0
             FROM f WHERE jsonb_typeof(jb) <> 'object' OR jb ? 'a'",
        ),
        (
            "typed_paths",
            "SELECT id, jb #> '{a,b,2}'::text[] AS p, jb #>> ARRAY['a', 'b'] AS pt, jb #> ARRAY['a', NULL] AS pn FROM f",
        ),
        (
            "arrays",
            "SELECT id, array_length(arr, 1) AS len, cardinality(arr) AS card, array_position(arr, 2) AS pos,
                    array_append(arr, id)::text AS app, array_cat(arr, '{9}')::text AS cat,
                    array_to_string(arr, ',', '*') AS s, 2 = ANY(arr) AS any2, arr @> '{1}' AS has1,
                    arr && ARRAY[5, 8] AS ov, string_to_array(t, 'b')::text AS split, ARRAY[t, 'k']::text AS mk
             FROM f",
        ),
        (
            "subscripts",
            "SELECT id, arr[1] AS a1, arr[3] AS a3, arr[0] AS a0, arr[id] AS ai, arr[1][1] AS deep,
                    arr[2:3]::text AS s23, arr[:1]::text AS s1, arr[2:]::text AS s2, arr[3:2]::text AS empty,
                    (string_to_array(t, 'b'))[2] AS piece, (ARRAY[t, 'k'])[1] AS first,
                    jb['a'] AS ja, jb['a']['b'][2] AS jab, jb[1] AS j1, jb['0'] AS j0, jb[-1] AS jl
             FROM f",
        ),
        (
            "matches",
            "SELECT id, regexp_matches(t, '[a-z]', 'g')::text AS each, regexp_matches(t, '^(.)(z)?')::text AS first
             FROM f",
        ),
        (
            "match_rows",
            "SELECT f.id, m.m::text, m.n FROM f, regexp_matches(f.t, '([bz\"])?', 'g') WITH ORDINALITY AS m(m, n)",
        ),
        (
            "like_ops",
            "SELECT id, t ~~ 'a%' AS l, t !~~ '%b' AS nl, t ~~* 'A%' AS il, t !~~* '_' AS nil,
                    t ~~ 'a' || '%' AS prec, t ~ 'a' || 'x' AS rprec FROM f",
        ),
        (
            "strings",
            "SELECT id, t ~ 'a' AS m, t ~* 'A\"' AS mi, t !~ '^z+$' AS nm, c ~ 'a $' AS cm,
                    regexp_replace(t, '[a-z]', '<\\&>', 'g') AS rr, regexp_match(t, '^(.)(.*)$')::text AS rm,
                    md5(t) AS h, format('%s|%L|%L|%5s', t, t, n, id) AS fmt, quote_ident(t) AS qi,
                    quote_nullable(t) AS qn, translate(t, 'ab', 'x') AS tr, ascii(t) AS asc1,
                    starts_with(t, 'a') AS sw, chr(64 + id) AS ch,
                    regexp_replace(t, 'b|z|\\.', '_', 'g') AS alt
             FROM f",
        ),
        (
            "dates",
            "SELECT id, age(ts, '2000-01-01 12:00') AS age1, make_date(y, m, dd) AS md,
                    make_timestamp(y, m, dd, 23, 59, 59.5) AS mt, justify_interval(iv) AS ji,
                    justify_days(iv) AS jd, justify_hours(iv) AS jh,
                    date_bin('15 minutes', ts, '2001-01-01') AS bin,
                    to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US FMMonth Dy am') AS tc,
                    to_char(d, 'FMDD Mon YYYY \"Q\"Q') AS tcd
             FROM f WHERE ts > '-infinity' AND y <> 0",
        ),
        (
            "numbers",
            "SELECT id, to_char(n, '999.99') AS a, to_char(n, 'FM999,999.00') AS b, to_char(y, '0999') AS c,
                    to_char(n, 'FM9990.9999') AS d, to_char(-y, '9,999') AS e, to_char(n, '$9.9') AS f
             FROM f WHERE n IS NULL OR n < 1e15",
        ),
    ];
    let server = TestServer::start(&db, &views).await;
    let mut followers = server.follow_all(&views).await;
    check_views(&db, &mut followers, &views).await;

    db.exec(
        "UPDATE f SET t = 'b' || t, jb = jb || '{\"a\": 7}', arr = arr || 3, n = n * 2, ts = ts + interval '1 day'
           WHERE id IN (1, 3, 5);
         UPDATE f SET t = 'new', jb = '{\"a\": null}', arr = '{}', j = '{ \"z\" : [] }' WHERE id = 2;
         UPDATE child SET parent = 1 WHERE id = 4;
         DELETE FROM f WHERE id = 4;
         DELETE FROM child WHERE id = 5;",
    )
    .await;
    check_views(&db, &mut followers, &views).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_failing_functions() {
    let db = TestDb::new("functions_refused").await;
    db.exec(
        "CREATE TABLE f (id int PRIMARY KEY, t text, k text); INSERT INTO f VALUES (1, 'a', NULL);",
    )
    .await;
    let views = [
        ("whole_row", "SELECT f FROM f"),
        (
            "outer_row",
            "SELECT row_to_json(g) FROM f LEFT JOIN f g ON g.id = f.id + 1",
        ),
        (
            "alternation",
            "SELECT regexp_replace(t, 'a|ab', 'x') FROM f",
        ),
        ("backref", "SELECT t ~ '(a)\\1' FROM f"),
        ("age1", "SELECT age('2000-01-01'::timestamp) FROM f"),
        ("null_key", "SELECT json_build_object(k, 1) FROM f"),
        ("field", "SELECT (ARRAY[1]).x FROM f"),
        ("json_key", "SELECT json_object_agg(ARRAY[t], 1) FROM f"),
        ("bad_subscript", "SELECT (ARRAY[1])[1.5] FROM f"),
        ("no_subscript", "SELECT t[1] FROM f"),
        ("jsonb_column_subscript", "SELECT ('{}'::jsonb)[t] FROM f"),
    ];
    let server = TestServer::start_unwaited(&db, &views).await;
    server.wait_healthy().await;
    for (name, want) in [
        ("whole_row", "whole-row reference"),
        ("outer_row", "outer join pads it with NULLs"),
        ("alternation", "alternation"),
        ("backref", "escape \\1"),
        ("age1", "age() with one argument"),
        ("field", "selecting a field of a composite value"),
        ("json_key", "key value must be scalar"),
        ("bad_subscript", "array subscript must have type integer"),
        ("no_subscript", "cannot subscript type text"),
        (
            "jsonb_column_subscript",
            "jsonb subscript that is not a constant",
        ),
    ] {
        let (status, body) = server.get(&format!("/views/{name}")).await;
        let msg = body["error"].as_str().unwrap_or_default().to_string();
        assert!(
            status == 422 && msg.contains(want),
            "{name}: {status} {body}"
        );
    }
    // A NULL key fails the view with Postgres's message.
    let mut message = String::new();
    for _ in 0..100 {
        let (status, body) = server.get("/views/null_key").await;
        if status != 503 {
            message = body["error"].as_str().unwrap_or_default().to_string();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(message.contains("argument 1 cannot be null"), "{message}");
    server.stop().await;
}

/// In a session with another TimeZone and DateStyle: JSON writes
/// timestamptz values in the zone (ISO, as to_json), text in the DateStyle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_text_follow_the_session() {
    let db = TestDb::zoned("functions_zoned").await;
    db.exec(
        "CREATE TABLE z (id int PRIMARY KEY, tz timestamptz, d date, ds date[]);
         INSERT INTO z VALUES (1, '2024-03-10 06:30:00+00', '2024-03-10', '{2024-03-10,NULL}'),
                              (2, '2024-11-03 05:30:00+00', NULL, NULL), (3, NULL, 'infinity', '{}');",
    )
    .await;
    let views: Vec<(&str, &str)> =
        vec![
        (
            "zoned_json",
            "SELECT id, json_build_object('tz', tz, 'd', d)::text AS o, row_to_json(z)::text AS r,
                    to_jsonb(tz)::text AS j, array_to_string(ds, '|') AS s,
                    age(tz, '2024-01-01 00:00') AS a, to_char(tz, 'YYYY-MM-DD HH12:MI AM') AS tc
             FROM z",
        ),
        ("zoned_agg", "SELECT json_agg(z ORDER BY id)::text AS r FROM z"),
    ];
    let server = TestServer::start(&db, &views).await;
    let mut followers = server.follow_all(&views).await;
    check_views(&db, &mut followers, &views).await;
    db.exec("UPDATE z SET tz = tz + interval '1 month', ds = ds || d WHERE id < 3")
        .await;
    check_views(&db, &mut followers, &views).await;
    server.stop().await;
}
