//! A seeded random stream of inserts, updates and deletes over three related
//! tables; after every transaction each view equals Postgres running its SQL.
//! Once in UTC with the C collation, and once in a database whose sessions
//! are in America/New_York, DateStyle `SQL, DMY`, with ICU's en-US collation:
//! there views that order text must be refused, and the rest, including
//! views over `timestamptz` around DST changes and midnight, must equal
//! Postgres answering in that session.

use viewcast::demo::Rng;

use crate::support::{assert_same, Follower, TestDb, TestServer};

const VIEWS: &[(&str, &str)] = &[
    ("joined", "SELECT c.name, o.qty, p.price FROM orders o JOIN customers c ON c.id = o.customer_id JOIN products p ON p.id = o.product_id WHERE o.qty > 1"),
    ("left_joined", "SELECT o.id, o.status, c.region FROM orders o LEFT JOIN customers c ON c.id = o.customer_id"),
    (
        "revenue",
        "SELECT c.region, count(*) AS n, sum(o.qty * p.price) AS revenue, avg(o.qty) AS mean_qty
         FROM orders o JOIN customers c ON o.customer_id = c.id JOIN products p ON p.id = o.product_id
         GROUP BY c.region HAVING count(*) > 2",
    ),
    ("categories", "SELECT DISTINCT p.category, o.status FROM orders o, products p WHERE o.product_id = p.id"),
    (
        "open_per_customer",
        "SELECT c.id, count(o.id) AS open_orders, max(o.qty) AS biggest FROM customers c LEFT JOIN orders o ON o.customer_id = c.id AND o.status <> 'cancelled' GROUP BY c.id",
    ),
    (
        "bounds",
        "SELECT o.status, min(c.name) AS first_name, max(c.name) AS last_name, min(o.placed_at), max(o.placed_at),
                count(DISTINCT o.customer_id) AS customers
         FROM orders o, customers c WHERE o.customer_id = c.id GROUP BY o.status",
    ),
    (
        "prices",
        "SELECT p.category, avg(p.price) AS avg_price, min(p.price), max(p.price), sum(DISTINCT o.qty) AS qtys
         FROM products p, orders o, customers c
         WHERE p.id = o.product_id AND o.customer_id = c.id AND c.region IS NOT NULL
         GROUP BY p.category",
    ),
    (
        "rounded",
        "SELECT o.id, (o.qty * p.price / 3)::numeric(8,1) AS third, o.qty::numeric(3,1) AS q
         FROM orders o JOIN products p ON p.id = o.product_id WHERE o.qty > 2",
    ),
    ("totals", "SELECT count(*), sum(qty), min(status), max(qty), avg(qty) FROM orders"),
    ("filters", "SELECT id, qty FROM orders WHERE (status IN ('new', 'paid') OR qty BETWEEN 3 AND 5) AND NOT (customer_id IS NULL) AND status LIKE '%a%'"),
    // Outer joins of every kind, USING.
    ("full_joined", "SELECT o.id AS oid, c.id AS cid, c.region FROM orders o FULL JOIN customers c ON c.id = o.customer_id AND o.qty > 2"),
    ("right_joined", "SELECT c.name, o.id FROM orders o RIGHT JOIN customers c ON o.customer_id = c.id AND o.status <> 'new'"),
    ("using_joined", "SELECT id, name, qty FROM customers JOIN (SELECT customer_id AS id, qty FROM orders) x USING (id) WHERE qty > 1"),
    ("non_equi", "SELECT o.id, p.id AS cheaper FROM orders o JOIN products p ON p.price < o.qty"),
    // Subqueries, correlated and not, decorrelated into joins.
    ("exists", "SELECT c.id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.qty > 3)"),
    ("not_exists", "SELECT c.id, c.region FROM customers c WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.status = 'paid')"),
    ("not_in", "SELECT p.id FROM products p WHERE p.id NOT IN (SELECT product_id FROM orders WHERE status = 'cancelled')"),
    ("in_with_nulls", "SELECT c.id, c.id NOT IN (SELECT customer_id FROM orders WHERE qty = 1) AS never_single, c.id IN (SELECT customer_id FROM orders WHERE status = 'new') AS has_new,
                 EXISTS (SELECT 1 FROM orders WHERE qty > 5) AS any_big, (SELECT name FROM customers WHERE id = 1) AS first_name
          FROM customers c"),
    (
        "scalar",
        "SELECT c.id, (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) AS n,
                (SELECT max(qty) FROM orders o WHERE o.customer_id = c.id AND o.status = 'paid') AS biggest_paid,
                (SELECT p.category FROM products p WHERE p.id = c.id) AS same_id_category
         FROM customers c",
    ),
    (
        "grouped_correlated",
        "SELECT customer_id, count(*) AS n, (SELECT c.name FROM customers c WHERE c.id = o.customer_id) AS name
         FROM orders o GROUP BY customer_id
         HAVING count(*) > (SELECT count(*) FROM orders i WHERE i.customer_id = o.customer_id AND i.status = 'new')",
    ),
    ("above_average", "SELECT id, qty FROM orders o WHERE qty > (SELECT avg(qty) FROM orders i WHERE i.status = o.status)"),
    // Set operations, CTEs, views over views, top-k.
    ("unioned", "SELECT customer_id AS id FROM orders WHERE status = 'new' UNION SELECT id FROM customers WHERE region = 'north'"),
    ("intersected", "SELECT product_id FROM orders WHERE status = 'paid' INTERSECT ALL SELECT product_id FROM orders WHERE qty > 2"),
    ("excepted", "SELECT customer_id FROM orders EXCEPT SELECT id FROM customers WHERE region IS NULL"),
    (
        "cte",
        "WITH per AS (SELECT customer_id, sum(qty) AS total FROM orders GROUP BY customer_id)
         SELECT a.customer_id, a.total FROM per a WHERE a.total >= (SELECT avg(total) FROM per)",
    ),
    ("over_view", "SELECT name, sum(qty) AS q, count(*) AS n FROM joined GROUP BY name"),
    // Counts and sums over a join whose aggregates read one side: that side
    // is summed by join key before the join (eager aggregation).
    (
        "per_customer",
        "SELECT c.id, c.name, count(*) AS n, sum(o.qty) AS q, avg(o.qty) AS mean, count(o.customer_id) AS k
         FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.id, c.name",
    ),
    (
        "per_region",
        "SELECT c.region, count(*) AS n, sum(o.qty) AS q, sum(o.id) AS ids FROM orders o JOIN customers c ON c.id = o.customer_id
         GROUP BY c.region HAVING count(*) > 1",
    ),
    (
        "per_product",
        "SELECT o.product_id, count(*) AS n, sum(o.qty) AS q
         FROM products p JOIN orders o ON o.product_id = p.id WHERE p.category = 'a' GROUP BY o.product_id",
    ),
    (
        "status_prices",
        "SELECT o.status, sum(p.price) AS total, avg(p.price) AS mean FROM orders o JOIN products p ON p.id = o.product_id GROUP BY o.status",
    ),
    (
        "regional_totals",
        "SELECT count(*) AS n, sum(o.qty) AS q FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.region = 'north'",
    ),
    ("top", "SELECT id, qty FROM orders ORDER BY qty DESC, id LIMIT 5"),
    ("top_groups", "SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id ORDER BY n DESC, customer_id LIMIT 3 OFFSET 1"),
    // Aggregates and expressions.
    (
        "aggs",
        "SELECT status, string_agg(id::text, ',' ORDER BY id) AS ids, bool_and(qty > 1) AS all_multi,
                bool_or(customer_id IS NULL) AS any_anon, count(*) FILTER (WHERE qty > 2) AS big,
                json_agg(qty ORDER BY id DESC) AS qtys, count(DISTINCT product_id) AS products,
                array_agg(customer_id ORDER BY id) AS customers, array_agg(DISTINCT status) AS statuses
         FROM orders GROUP BY status",
    ),
    (
        "exprs",
        "SELECT id, CASE WHEN qty > 3 THEN 'big' WHEN qty > 1 THEN 'mid' ELSE 'small' END AS size,
                coalesce(customer_id, -1) AS cust, nullif(qty, 2) AS q, greatest(qty, product_id) AS g,
                least(qty, product_id) AS l, upper(status) AS s, length(status) AS len,
                substr(status, 2, 3) AS sub, position('a' in status) AS pos, replace(status, 'a', 'A') AS rep,
                split_part(status, 'e', 1) AS part1, status || '-' || qty AS tag, abs(qty - 3) AS dist,
                round(qty / 3.0, 2) AS r, extract(minute from placed_at) AS minute,
                date_trunc('hour', placed_at) AS hour, concat(status, customer_id) AS cat
         FROM orders",
    ),
    // Round two: windows, DISTINCT ON, LATERAL, set-returning functions,
    // grouping sets, ordered-set aggregates. Every window's ORDER BY ends in
    // a key, so no answer depends on the order of peers.
    (
        "windows",
        "SELECT id, customer_id, rank() OVER (PARTITION BY customer_id ORDER BY qty DESC, id) AS r,
                dense_rank() OVER (ORDER BY qty) AS dr, row_number() OVER (PARTITION BY status ORDER BY id) AS rn,
                sum(qty) OVER (PARTITION BY customer_id ORDER BY id) AS running,
                lag(qty) OVER (PARTITION BY customer_id ORDER BY id) AS prev,
                lead(id, 2, -1) OVER (ORDER BY id) AS after2, count(*) OVER w AS n,
                avg(qty) OVER (ORDER BY id ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING) AS moving,
                first_value(id) OVER (PARTITION BY product_id ORDER BY placed_at, id) AS first_id
         FROM orders WINDOW w AS (PARTITION BY status)",
    ),
    (
        "latest_per_customer",
        "SELECT DISTINCT ON (customer_id) customer_id, id, placed_at FROM orders ORDER BY customer_id, placed_at DESC, id",
    ),
    (
        "top2_lateral",
        "SELECT c.id, t.id AS order_id, t.qty FROM customers c,
                LATERAL (SELECT o.id, o.qty FROM orders o WHERE o.customer_id = c.id ORDER BY o.qty DESC, o.id LIMIT 2) t",
    ),
    (
        "series",
        "SELECT o.id, g.v, g.k2, s.k FROM orders o, generate_series(1, o.qty) WITH ORDINALITY g(v, k2),
                LATERAL (SELECT g.v * 10 AS k) s WHERE o.qty < 4",
    ),
    ("split", "SELECT o.id, w.piece, w.n FROM orders o, regexp_split_to_table(o.status, '[ae]') WITH ORDINALITY w(piece, n)"),
    ("select_series", "SELECT id, generate_series(1, qty) AS k, generate_series(1, 2) AS two FROM orders WHERE status = 'new'"),
    (
        "rollup",
        "SELECT status, customer_id, count(*) AS n, sum(qty) AS q, grouping(status, customer_id) AS g
         FROM orders GROUP BY ROLLUP (status, customer_id)",
    ),
    (
        "percentiles",
        "SELECT status, percentile_cont(0.5) WITHIN GROUP (ORDER BY qty) AS median,
                percentile_disc(0.9) WITHIN GROUP (ORDER BY qty) AS p90,
                mode() WITHIN GROUP (ORDER BY product_id) AS common_product
         FROM orders GROUP BY status",
    ),
    (
        "doc",
        "SELECT c.id, json_build_object('name', c.name, 'region', c.region,
                  'orders', (SELECT json_agg(json_build_object('id', o.id, 'qty', o.qty, 'at', o.placed_at) ORDER BY o.id)
                             FROM orders o WHERE o.customer_id = c.id)) AS doc
         FROM customers c",
    ),
    (
        "doc_rows",
        "SELECT c.id, (SELECT jsonb_agg(x) FROM (SELECT o.id, o.status, o.qty FROM orders o WHERE o.customer_id = c.id ORDER BY o.id) x) AS orders,
                to_jsonb(c) AS customer
         FROM customers c",
    ),
    (
        "ordered_sub",
        "SELECT c.id, (SELECT array_agg(x.qty) FROM (SELECT o.qty FROM orders o WHERE o.customer_id = c.id ORDER BY o.id DESC) x) AS qtys
         FROM customers c",
    ),
];

/// Views whose answers depend on the session's zone and DateStyle.
const ZONED_VIEWS: &[(&str, &str)] = &[
    (
        "tz_parts",
        "SELECT id, placed_at, placed_at::date AS day, date_trunc('day', placed_at) AS midnight,
                extract(hour from placed_at) AS hour, date_part('dow', placed_at) AS dow,
                placed_at::text AS shown, placed_at::timestamp AS wall,
                placed_at + interval '1 day' AS next_day, placed_at - interval '1 month 2 hours' AS earlier
         FROM orders",
    ),
    (
        "tz_days",
        "SELECT placed_at::date AS day, count(*) AS n, min(placed_at) AS first,
                array_agg(placed_at ORDER BY placed_at, id) AS times
         FROM orders GROUP BY 1",
    ),
    (
        "tz_filter",
        "SELECT id FROM orders
         WHERE placed_at >= '2024-03-10 02:30' AND placed_at::date <> '2024-11-03' AND placed_at < date '2024-11-04'",
    ),
    (
        "tz_text",
        "SELECT status, string_agg(placed_at::text || ' / ' || placed_at::date || ' / ' || placed_at::timestamp, ', ' ORDER BY id) AS log,
                concat(max(placed_at), ' ', min(placed_at)::date) AS span
         FROM orders GROUP BY status",
    ),
    (
        "tz_json",
        "SELECT customer_id, json_agg(placed_at ORDER BY id) AS times FROM orders GROUP BY customer_id",
    ),
    (
        "tz_trunc",
        "SELECT date_trunc('week', placed_at) AS week, date_trunc('hour', placed_at) AS hour, count(*) AS n
         FROM orders GROUP BY 1, 2",
    ),
    (
        "collated",
        "SELECT name FROM customers ORDER BY name COLLATE \"C\" DESC LIMIT 3",
    ),
    (
        "collated_bounds",
        "SELECT min(c.name COLLATE \"C\") AS first, max(o.status COLLATE \"C\") AS last
         FROM customers c JOIN orders o ON o.customer_id = c.id",
    ),
    ("ordered_text", "SELECT name FROM customers ORDER BY name LIMIT 3"),
];

/// The views that order text by the default collation: refused under en-US.
const ORDERS_TEXT: &[&str] = &["bounds", "totals", "aggs", "ordered_text"];

/// When inserted orders are placed.
struct Times {
    base: &'static str,
    step: &'static str,
    spread: u64,
}

/// January to early March 2024, by the minute.
const UTC_TIMES: Times = Times {
    base: "2024-01-01 00:00:00+00",
    step: "1 minute",
    spread: 100_000,
};

/// March 9 to late November 2024 in 37-minute steps: both of New York's DST
/// changes and every midnight in between.
const ZONED_TIMES: Times = Times {
    base: "2024-03-09 12:00:00+00",
    step: "37 minutes",
    spread: 10_000,
};

const STATUSES: &[&str] = &["new", "paid", "shipped", "cancelled"];
const REGIONS: &[&str] = &["'north'", "'south'", "'east'", "NULL"];

fn random_statement(rng: &mut Rng, next_id: &mut i64, times: &Times) -> String {
    let cust = |rng: &mut Rng| {
        if rng.below(8) == 0 {
            "NULL".to_string()
        } else {
            (1 + rng.below(12)).to_string()
        }
    };
    match rng.below(12) {
        0..=3 => {
            *next_id += 1;
            format!(
                "INSERT INTO orders VALUES ({}, {}, {}, {}, '{}', timestamptz '{}' + interval '{}' * {})",
                next_id,
                cust(rng),
                1 + rng.below(6),
                1 + rng.below(6),
                STATUSES[rng.below(4) as usize],
                times.base,
                times.step,
                rng.below(times.spread)
            )
        }
        4 => format!("UPDATE orders SET qty = qty + 1 WHERE id % 7 = {}", rng.below(7)),
        5 => format!("UPDATE orders SET status = '{}' WHERE id = (SELECT id FROM orders ORDER BY id OFFSET {} LIMIT 1)", STATUSES[rng.below(4) as usize], rng.below(20)),
        6 => format!("UPDATE orders SET customer_id = {} WHERE id % 5 = {}", cust(rng), rng.below(5)),
        7 => format!("DELETE FROM orders WHERE id = (SELECT id FROM orders ORDER BY id OFFSET {} LIMIT 1)", rng.below(20)),
        8 => format!("UPDATE customers SET region = {} WHERE id = {}", REGIONS[rng.below(4) as usize], 1 + rng.below(12)),
        9 => {
            let id = 1 + rng.below(12);
            format!("DELETE FROM customers WHERE id = {id}; INSERT INTO customers VALUES ({id}, 'again {id}', {}) ON CONFLICT DO NOTHING", REGIONS[rng.below(4) as usize])
        }
        10 => format!("UPDATE products SET price = price + 0.25 WHERE id = {}", 1 + rng.below(6)),
        _ => format!("UPDATE orders SET id = id + 1000 WHERE id = (SELECT max(id) FROM orders WHERE id < 1000) AND {} = {}", rng.below(2), rng.below(2)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_transactions_match_postgres() {
    let db = TestDb::new("oracle").await;
    run(db, VIEWS, &[], &UTC_TIMES).await;
}

/// The oracle in the role's session: America/New_York, `SQL, DMY`, ICU
/// en-US. The settings are read at each snapshot and the views compile
/// against them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_transactions_match_postgres_in_the_roles_session() {
    let db = TestDb::zoned("oracle_zoned").await;
    let views: Vec<(&str, &str)> = VIEWS.iter().chain(ZONED_VIEWS).copied().collect();
    run(db, &views, ORDERS_TEXT, &ZONED_TIMES).await;
}

async fn run(db: TestDb, views: &[(&str, &str)], refused: &[&str], times: &Times) {
    let seed: u64 = std::env::var("VIEWCAST_ORACLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let transactions: usize = std::env::var("VIEWCAST_ORACLE_TXNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(80);
    db.exec(
        "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, region text);
         CREATE TABLE products (id int PRIMARY KEY, price numeric(8,2) NOT NULL, category text NOT NULL);
         CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int, product_id int NOT NULL, qty int NOT NULL, status text NOT NULL,
                              placed_at timestamptz NOT NULL DEFAULT '2024-01-01 00:00:00+00');
         INSERT INTO customers SELECT i, (ARRAY['customer ', 'Customer ', 'émile ', '_c '])[1 + i % 4] || i, (ARRAY['north','south','east',NULL])[1 + i % 4] FROM generate_series(1, 10) i;
         INSERT INTO products SELECT i, i * 2.5, (ARRAY['a','b'])[1 + i % 2] FROM generate_series(1, 6) i;
         INSERT INTO orders SELECT i, 1 + i % 11, 1 + i % 6, 1 + i % 4, (ARRAY['new','paid','shipped','cancelled'])[1 + i % 4] FROM generate_series(1, 25) i;
         CREATE VIEW joined AS SELECT c.name, o.qty, p.price FROM orders o JOIN customers c ON c.id = o.customer_id JOIN products p ON p.id = o.product_id WHERE o.qty > 1;",
    )
    .await;
    let server = TestServer::start(&db, views).await;
    for name in refused {
        let (status, body) = server.get(&format!("/views/{name}")).await;
        let msg = body["error"].as_str().unwrap_or_default();
        assert_eq!(status, 422, "{name} must be refused: {body}");
        assert!(
            msg.contains("collation") && msg.contains("COLLATE \"C\""),
            "{name}: {msg}"
        );
    }
    let checked: Vec<(&str, &str)> = views
        .iter()
        .filter(|(name, _)| !refused.contains(name))
        .copied()
        .collect();
    let mut followers = server.follow_all(&checked).await;
    let mut rng = Rng::new(seed);
    let mut next_id = 100i64;
    for n in 0..transactions {
        let stmts: Vec<String> = (0..1 + rng.below(4))
            .map(|_| random_statement(&mut rng, &mut next_id, times))
            .collect();
        let context = format!("seed {seed}, transaction {n}");
        commit_and_check(&db, &stmts, &mut followers, &checked, &context).await;
    }
    server.stop().await;
}

/// Commits `stmts` as one transaction, then checks each view's follower
/// against Postgres at that LSN (printing the transaction if one differs).
async fn commit_and_check(
    db: &TestDb,
    stmts: &[String],
    followers: &mut [Follower],
    views: &[(&str, &str)],
    context: &str,
) {
    db.exec(&format!("BEGIN; {}; COMMIT;", stmts.join("; ")))
        .await;
    let lsn = db.lsn().await;
    for (f, (name, sql)) in followers.iter_mut().zip(views) {
        f.wait_for(lsn).await;
        let want = db.oracle(sql).await;
        if f.rows != want {
            eprintln!("{context}: {}", stmts.join("; "));
        }
        assert_same(name, lsn, &f.rows, &want);
    }
}

/// Counts and sums over a join, summed on one side before the join, keep
/// Postgres's answers where keys are NULL (no match), where a key value has
/// a display form other than the one it groups by (`1.50` groups as `1.5`;
/// each value here has one form, so Postgres's choice among forms is never
/// in question), under FILTER, and over numeric NaN and infinities.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sums_taken_before_a_join_match_postgres() {
    const SUMMED: &[(&str, &str)] = &[
        (
            "by_other_key",
            "SELECT b.k, count(*) AS n, sum(a.v) AS v, sum(a.n) AS total, avg(a.n) AS mean
             FROM b JOIN a ON a.k = b.k GROUP BY b.k",
        ),
        (
            "by_own_key",
            "SELECT a.k, count(*) AS n, sum(a.v) AS v, avg(a.v) AS mean FROM a JOIN b ON b.k = a.k GROUP BY a.k",
        ),
        (
            "filtered",
            "SELECT b.id, count(*) FILTER (WHERE a.v IS NULL) AS nulls, count(a.v) AS vs,
                    sum(a.v) FILTER (WHERE a.n IS NOT NULL) AS sv
             FROM b JOIN a ON a.k = b.k GROUP BY b.id",
        ),
        ("global", "SELECT count(*) AS n, sum(a.n) AS s, avg(a.v) AS v FROM a JOIN b ON a.k = b.k"),
        (
            "two_keys",
            "SELECT b.w, count(*) AS n, sum(a.v) AS v FROM b JOIN a ON a.k = b.k AND a.id % 3 = b.id % 3 GROUP BY b.w",
        ),
    ];
    const KEYS: &[&str] = &["NULL", "1.50", "2", "2.500", "3.0"];
    const NUMS: &[&str] = &[
        "NULL",
        "1.5",
        "2.25",
        "0.100",
        "-3",
        "7",
        "'NaN'",
        "'Infinity'",
        "'-Infinity'",
    ];
    let db = TestDb::new("summed").await;
    db.exec(
        "CREATE TABLE a (id int PRIMARY KEY, k numeric, v int, n numeric);
         CREATE TABLE b (id int PRIMARY KEY, k numeric, w bigint);
         INSERT INTO a SELECT i, (ARRAY[NULL, 1.50, 2, 2.500, 3.0])[1 + i % 5], nullif(i % 7, 3), (i % 4) * 1.25 FROM generate_series(1, 30) i;
         INSERT INTO b SELECT i, (ARRAY[1.50, 2, 2.500, 3.0, NULL])[1 + i % 5], i % 3 FROM generate_series(1, 8) i;",
    )
    .await;
    let server = TestServer::start(&db, SUMMED).await;
    for (name, _) in SUMMED {
        let (_, plan) = viewcast::client::get(&server.addr, &format!("/views/{name}/plan"))
            .await
            .expect("GET plan");
        assert!(plan.contains("summed by join key"), "{name}: {plan}");
    }
    let mut followers = server.follow_all(SUMMED).await;
    let mut rng = Rng::new(11);
    let mut next_id = 100;
    let pick = |rng: &mut Rng, from: &[&'static str]| from[rng.below(from.len() as u64) as usize];
    for n in 0..60 {
        let stmts: Vec<String> = (0..1 + rng.below(3))
            .map(|_| match rng.below(8) {
                0 | 1 => {
                    next_id += 1;
                    format!(
                        "INSERT INTO a VALUES ({next_id}, {}, {}, {})",
                        pick(&mut rng, KEYS),
                        if rng.below(4) == 0 { "NULL".into() } else { rng.below(9).to_string() },
                        pick(&mut rng, NUMS)
                    )
                }
                2 => format!("UPDATE a SET k = {} WHERE id % 6 = {}", pick(&mut rng, KEYS), rng.below(6)),
                3 => format!("UPDATE a SET v = v + 1, n = {} WHERE id % 4 = {}", pick(&mut rng, NUMS), rng.below(4)),
                4 => format!("DELETE FROM a WHERE id = (SELECT id FROM a ORDER BY id OFFSET {} LIMIT 1)", rng.below(20)),
                5 => format!("UPDATE b SET k = {} WHERE id = {}", pick(&mut rng, KEYS), 1 + rng.below(8)),
                6 => format!("UPDATE b SET w = w + 1 WHERE id % 3 = {}", rng.below(3)),
                _ => {
                    let id = 1 + rng.below(10);
                    format!(
                        "DELETE FROM b WHERE id = {id}; INSERT INTO b VALUES ({id}, {}, {}) ON CONFLICT DO NOTHING",
                        pick(&mut rng, KEYS),
                        rng.below(3)
                    )
                }
            })
            .collect();
        let context = format!("transaction {n}");
        commit_and_check(&db, &stmts, &mut followers, SUMMED, &context).await;
    }
    server.stop().await;
}

/// `session_settings` reads what a session of the role gets by default, even
/// on a connection that has set viewcast's own TimeZone and DateStyle, and
/// `viewcast check` compiles views under them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_compile_under_the_roles_session_settings() {
    let db = TestDb::zoned("session_settings").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL, at timestamptz NOT NULL)")
        .await;
    let read = |conninfo: String| async move {
        let client = crate::support::connect(&conninfo).await;
        client
            .batch_execute(viewcast::pg::source::SESSION_SETTINGS)
            .await
            .expect("viewcast's own settings");
        viewcast::pg::catalog::session_settings(&client)
            .await
            .expect("session settings")
    };
    let s = read(db.conninfo.clone()).await;
    assert_eq!(s.timezone, crate::support::ZONED_TIMEZONE);
    assert_eq!(s.datestyle, crate::support::ZONED_DATESTYLE);
    assert_eq!(s.intervalstyle, "postgres");
    assert_eq!(
        (s.collation_provider.as_str(), s.collation.as_str()),
        ("icu", "en-US")
    );
    assert!(!s.collation_is_c());
    // The role's own setting wins over the database's.
    db.exec("ALTER ROLE CURRENT_USER IN DATABASE t_session_settings SET TimeZone = 'Asia/Kolkata'")
        .await;
    let s = read(db.conninfo.clone()).await;
    assert_eq!(s.timezone, "Asia/Kolkata");

    let dir = std::env::temp_dir().join(format!("viewcast-session-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("queries dir");
    std::fs::write(
        dir.join("days.sql"),
        "SELECT id, at, at::date AS day FROM t",
    )
    .unwrap();
    std::fs::write(
        dir.join("named.sql"),
        "SELECT name FROM t ORDER BY name LIMIT 3",
    )
    .unwrap();
    std::fs::write(
        dir.join("named_c.sql"),
        "SELECT name FROM t ORDER BY name COLLATE \"C\" LIMIT 3",
    )
    .unwrap();
    let (report, ok) = viewcast::server::check(&db.conninfo, &dir)
        .await
        .expect("check");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok, "{report}");
    assert!(report.contains("to_json[Asia/Kolkata](#1)"), "{report}");
    assert!(report.contains("named_c: ok"), "{report}");
    assert!(
        report.contains("named: refused")
            && report.contains("\"en-US\" (ICU) is not C")
            && report.contains("COLLATE \"C\""),
        "{report}"
    );
    db.exec("ALTER ROLE CURRENT_USER IN DATABASE t_session_settings RESET TimeZone")
        .await;
}
