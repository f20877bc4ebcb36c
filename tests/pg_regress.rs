//! PostgreSQL's own regression tests (`../shared/corpus/pg_regress`, see its
//! README) as live views: every SELECT of a file that Postgres answers and
//! that reads a table becomes a view, and each view must equal what Postgres
//! answers for the same SQL while the tables it reads change.
//!
//! Per file (one test each; `test_setup.sql` is not run):
//! 1. A fresh database copied from a template with `setup.sql` loaded
//!    (`expressions.sql` runs `date.sql` first, it reads `date_tbl`).
//! 2. The file is split as psql splits it (semicolons outside quotes,
//!    dollar quotes, comments and parentheses; `\` meta-command lines are
//!    skipped, `COPY ... FROM stdin` gets its data up to `\.`) and every
//!    statement runs in order in one session; failures are expected (error
//!    tests) and ignored. `CREATE TEMP`/`TEMPORARY` tables, views and
//!    sequences are created as ordinary ones (temporary tables never reach
//!    the WAL, and another session cannot see them), and after each CREATE
//!    every table without a primary key gets `REPLICA IDENTITY FULL`.
//! 3. Candidates: statements starting with SELECT or WITH that succeeded,
//!    and of those the ones that
//!    - read a table: Postgres's `EXPLAIN (VERBOSE, FORMAT JSON)` of the
//!      statement, right after it ran, has a node with a `Relation Name`
//!      outside `pg_catalog`/`information_schema` (a plan without one reads
//!      only constants, VALUES, functions or catalogs);
//!    - only read: no `ModifyTable` or `LockRows` node (data-modifying
//!      WITH, `FOR UPDATE`), no `INTO` at the top level;
//!    - read no catalog: no catalog relation in the plan, and no word
//!      `pg_catalog`, `information_schema`, `pg_get_*` or `reg*` cast;
//!    - call nothing volatile or time-dependent: no word `random`, `setseed`,
//!      `now`, `current_timestamp`, `current_date`, `current_time`,
//!      `localtime`, `localtimestamp`, `clock_timestamp`,
//!      `statement_timestamp`, `transaction_timestamp`, `timeofday`,
//!      `nextval`, `currval`, `setval`, `lastval`, `gen_random_uuid`,
//!      `txid_*`, `pg_current_*`, and no string literal with the word `now`,
//!      `today`, `tomorrow` or `yesterday`.
//! 4. Segments, so that a SELECT is checked against the tables as they
//!    were when it was asked even if the file drops or changes them later:
//!    before a DROP, ALTER, TRUNCATE or CREATE OR REPLACE that would break
//!    candidates collected since the last cut (one of them prepares now but
//!    not after it, tried in a transaction that is rolled back; or it
//!    empties or redefines something one of them names), the database is
//!    copied (`CREATE DATABASE ... TEMPLATE`, which wants the source without
//!    sessions: the file's session leaves and comes back with its settings
//!    and prepared statements), and those candidates are served on the
//!    copy. Inside a transaction block no copy can be made; such statements
//!    are reported. The candidates left at the end are served on the file's
//!    own database. Each segment's candidates are asked again in a fresh
//!    session on its database (the session settings viewcast's views are
//!    bound under) and kept if Postgres still answers them. They become
//!    views `q<statement>` of one server per segment (in chunks of
//!    [`CHUNK`]).
//! 5. Checkpoints, each after the server reached Postgres's current LSN,
//!    comparing every view with Postgres as sorted multisets of `to_json`
//!    rows: as loaded; after deleting about half of the rows of every table
//!    the views read (by `hashtext` of the row, the deleted rows kept in a
//!    side table); after an update (`tenk1`, `tenk2`, `onek`, `onek2`,
//!    `tmp`: the README's `ten = (ten + 1) % 10, stringu1 = 'XXXXXX'` on a
//!    third of the rows; other tables: `+ 1` on their first numeric column,
//!    or `upper()` of their first text column, that no key, index or
//!    constraint covers; otherwise unchanged); after inserting the deleted
//!    rows again.
//!
//! A view is equal (equal to Postgres at every checkpoint where Postgres
//! answers, and failing where it fails), refused (422 where Postgres
//! answers; reported by reason, not a failure: the refusals are the work
//! list), or wrong (a different answer, an error where Postgres answers, or
//! rows where Postgres fails). A wrong view fails the test unless it is on
//! [`ALLOWED`]; an entry on [`ALLOWED`] whose view agrees fails it too (it is
//! stale). A file with views none of which is served and equal fails (it
//! proves nothing) unless it is on [`NOTHING_EQUAL`], and an entry there
//! whose file has an equal view is stale as well. The counts and these
//! rules are per file, over all its segments.
//!
//! Run one file with `cargo test --test main pg_regress::join -- --nocapture`:
//! it prints the counts, the statements and SELECTs as the corpus README
//! counts them, why SELECTs were left out, where the file was cut into
//! segments, what each data change did, the refusal reasons and every
//! wrong view. `VIEWCAST_PG_REGRESS_VERBOSE=1` also prints every view's
//! outcome and every SELECT left out.
//!
//! Parsers: each file also counts, over its statements, how many Postgres
//! parses (it raised no `syntax_error`, SQLSTATE 42601: its grammar, which
//! is what the pg_query crate wraps), how many the vendored sqlparser's
//! `PostgreSqlDialect` parses, and of the SELECT/WITH statements Postgres
//! answered, how many `viewcast::sql::parse` parses, with sqlparser's error
//! for the others. Once every file of the binary has run (all of
//! `pg_regress`), the last one prints the table and the errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use futures::SinkExt;
use serde_json::Value;

use crate::support::{
    base_conninfo, connect, connect_in, copy_database, sorted_rows, TestDb, TestServer,
};

const CORPUS: &str = "../shared/corpus/pg_regress";
/// Views per server run; a file with more candidates runs in chunks.
const CHUNK: usize = 400;

/// Wrong answers that are known, each as (file, a substring of the SQL that
/// only that file's view has, reason). Any other wrong view fails the test,
/// and so does an entry whose view agrees with Postgres (remove it then),
/// unless its reason says the answer is [`LEFT_OPEN`]: Postgres's order of
/// rows that SQL does not order follows its plan (an index scan or a
/// sequential one, as its statistics decide when autovacuum analyzes the
/// table), so such a view may agree in one run and not in the next.
const LEFT_OPEN: &str = "(SQL leaves it open)";

const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "window.sql",
        "SELECT last_value(four) OVER (ORDER BY ten), ten, four FROM tenk1 WHERE unique2 < 10",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "sum(unique1) over (rows between current row and unbounded following)",
        "no window ORDER BY: Postgres reads the rows in its scan order; viewcast in the order of their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "sum(unique1) over (rows between 2 preceding and 2 following),",
        "no window ORDER BY: Postgres reads the rows in its scan order; viewcast in the order of their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "sum(unique1) over (rows between 2 preceding and 2 following exclude no others)",
        "no window ORDER BY: Postgres reads the rows in its scan order; viewcast in the order of their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "sum(unique1) over (rows between 2 preceding and 2 following exclude current row)",
        "no window ORDER BY: Postgres reads the rows in its scan order; viewcast in the order of their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "first_value(unique1) over (ORDER BY four rows between current row and 2 following exclude current row)",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "first_value(unique1) over (ORDER BY four rows between current row and 2 following exclude group)",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "last_value(unique1) over (ORDER BY four rows between current row and 2 following exclude current row)",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "last_value(unique1) over (ORDER BY four rows between current row and 2 following exclude group)",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "last_value(unique1) over (ORDER BY four rows between current row and 2 following exclude ties)",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "sum(unique1) over (rows between 2 preceding and 1 preceding)",
        "no window ORDER BY: Postgres reads the rows in its scan order; viewcast in the order of their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "sum(unique1) over (rows between 1 following and 3 following)",
        "no window ORDER BY: Postgres reads the rows in its scan order; viewcast in the order of their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "sum(unique1) over (rows between unbounded preceding and 1 following)",
        "no window ORDER BY: Postgres reads the rows in its scan order; viewcast in the order of their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "WINDOW w AS (order by four range between current row and unbounded following)",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "select id, f_interval, first_value(id) over w, last_value(id) over w\nfrom datetimes\nwindow w as (order by f_interval desc range between\n             '1 year' preceding",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "window w as (order by f_timestamptz range between\n             '1 year'::interval preceding",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "window w as (order by f_timestamptz desc range between\n             '1 year' preceding",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "window w as (order by f_timestamp range between\n             '1 year'::interval preceding",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "window w as (order by f_timestamp desc range between\n             '1 year' preceding",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "exclude ties),\n\tlast_value(salary) over(order by enroll_date range between unbounded preceding and '1 year'::interval following),",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "exclude ties),\n\tlast_value(salary) over(order by enroll_date range between unbounded preceding and '1 year'::interval following\n\texclude ties)",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "last_value(salary) over(order by enroll_date range between unbounded preceding and '1 year'::interval following\n\texclude group)",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "last_value(salary) over(order by enroll_date range between unbounded preceding and '1 year'::interval following\n\texclude current row)",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "lead(salary) over(order by enroll_date groups between 1 preceding and 1 following)",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "lag(salary) over(order by enroll_date groups between 1 preceding and 1 following)",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "lead(salary) over(order by enroll_date groups between 1 following and 3 following exclude ties)",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "window.sql",
        "lag(salary) over(order by enroll_date groups between 1 following and 3 following exclude group)",
        "peers: Postgres orders rows that tie on the window's ORDER BY as its scan and sort left them; viewcast by their values (SQL leaves it open)",
    ),
    (
        "with.sql",
        "select * from q limit 24",
        "wrong answer: a recursion without end that Postgres cuts at LIMIT 24 (without \
         ORDER BY, so the rows are Postgres's choice); viewcast fails after 10000 \
         iterations instead of refusing it",
    ),
];

/// Files none of whose views is served and equal today, each with the
/// reason: without an entry such a file fails (it proves nothing). An entry
/// whose file has an equal view is stale and fails too.
const NOTHING_EQUAL: &[(&str, &str)] = &[];

/// One unit of a psql script.
#[derive(Debug, Clone)]
enum Item {
    Sql(String),
    /// `COPY ... FROM stdin` with the data lines that follow it.
    Copy {
        sql: String,
        data: String,
    },
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// The end (exclusive) of the quoted text that starts at `b[i]` (`'`),
/// with backslash escapes or without.
fn string_end(b: &[u8], mut i: usize, escapes: bool) -> usize {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' if escapes => i += 2,
            b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// The dollar-quote tag (`$tag$` or `$$`) that starts at `b[i]`, if any.
fn dollar_tag(b: &[u8], i: usize) -> Option<&[u8]> {
    if i > 0 && is_ident_byte(b[i - 1]) {
        return None;
    }
    let mut j = i + 1;
    while j < b.len() && is_ident_byte(b[j]) {
        j += 1;
    }
    let tag = &b[i..=j.min(b.len() - 1)];
    let first_ok = j == i + 1 || !b[i + 1].is_ascii_digit();
    (j < b.len() && b[j] == b'$' && first_ok).then_some(tag)
}

/// Splits a psql script into statements as psql does: at semicolons outside
/// quotes, comments and parentheses. `--` comments are dropped (a statement
/// is later wrapped in a subquery, where one would hide the closing
/// parenthesis); lines that start with a backslash outside a quote are psql
/// meta-commands and skipped. `standard_conforming_strings` is followed
/// (strings.sql turns it off), as psql does.
fn split(text: &str) -> Vec<Item> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut depth = 0i32;
    let mut std_strings = true;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\\' => {
                // A meta-command runs to the end of its line.
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let start = i;
                let mut nest = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        nest += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        nest -= 1;
                        i += 2;
                        if nest == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                cur.extend_from_slice(&b[start..i]);
            }
            b'\'' => {
                let e_string =
                    i > 0 && matches!(b[i - 1], b'e' | b'E') && (i < 2 || !is_ident_byte(b[i - 2]));
                let end = string_end(b, i, e_string || !std_strings);
                cur.extend_from_slice(&b[i..end]);
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() {
                    if b[j] == b'"' {
                        if b.get(j + 1) == Some(&b'"') {
                            j += 2;
                            continue;
                        }
                        j += 1;
                        break;
                    }
                    j += 1;
                }
                cur.extend_from_slice(&b[i..j.min(b.len())]);
                i = j;
            }
            b'$' if dollar_tag(b, i).is_some() => {
                let tag = dollar_tag(b, i).expect("tag");
                let body = i + tag.len();
                let end = b[body..]
                    .windows(tag.len())
                    .position(|w| w == tag)
                    .map(|p| body + p + tag.len())
                    .unwrap_or(b.len());
                cur.extend_from_slice(&b[i..end]);
                i = end;
            }
            b';' if depth <= 0 => {
                i += 1;
                let sql = String::from_utf8_lossy(&cur).trim().to_string();
                cur.clear();
                depth = 0;
                if sql.is_empty() {
                    continue;
                }
                let words = upper_words(&sql, 6);
                if words.starts_with("SET STANDARD_CONFORMING_STRINGS") {
                    std_strings = !sql.to_lowercase().contains("off");
                }
                let copy_in = words.starts_with("COPY ")
                    && sql.to_uppercase().split_whitespace().any(|w| w == "STDIN");
                if !copy_in {
                    out.push(Item::Sql(sql));
                    continue;
                }
                // The data starts on the next line and runs up to `\.`.
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                i += 1;
                let mut data = String::new();
                while i < b.len() {
                    let end = b[i..]
                        .iter()
                        .position(|&c| c == b'\n')
                        .map(|p| i + p)
                        .unwrap_or(b.len());
                    let line = String::from_utf8_lossy(&b[i..end]).to_string();
                    i = end + 1;
                    if line.trim_end() == "\\." {
                        break;
                    }
                    data.push_str(&line);
                    data.push('\n');
                }
                out.push(Item::Copy { sql, data });
            }
            _ => {
                if c == b'(' {
                    depth += 1;
                } else if c == b')' {
                    depth -= 1;
                }
                cur.push(c);
                i += 1;
            }
        }
    }
    let rest = String::from_utf8_lossy(&cur).trim().to_string();
    if !rest.is_empty() {
        out.push(Item::Sql(rest));
    }
    out
}

fn upper_words(sql: &str, n: usize) -> String {
    sql.split_whitespace()
        .take(n)
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

/// The words of `sql` outside quotes, with the parenthesis depth each is at,
/// and the contents of its string literals.
fn words(sql: &str) -> (Vec<(String, i32)>, Vec<String>) {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut strings = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\'' {
            let e_string =
                i > 0 && matches!(b[i - 1], b'e' | b'E') && (i < 2 || !is_ident_byte(b[i - 2]));
            let end = string_end(b, i, e_string);
            strings.push(
                String::from_utf8_lossy(&b[i + 1..end.saturating_sub(1).max(i + 1)]).to_lowercase(),
            );
            i = end;
        } else if c == b'"' {
            let end = b[i + 1..]
                .iter()
                .position(|&c| c == b'"')
                .map(|p| i + p + 2)
                .unwrap_or(b.len());
            i = end;
        } else if c == b'$' && dollar_tag(b, i).is_some() {
            let tag = dollar_tag(b, i).expect("tag");
            let body = i + tag.len();
            let end = b[body..]
                .windows(tag.len())
                .position(|w| w == tag)
                .map(|p| body + p + tag.len())
                .unwrap_or(b.len());
            strings.push(
                String::from_utf8_lossy(&b[body..end.saturating_sub(tag.len()).max(body)])
                    .to_lowercase(),
            );
            i = end;
        } else if is_ident_byte(c) {
            let start = i;
            while i < b.len() && is_ident_byte(b[i]) {
                i += 1;
            }
            out.push((String::from_utf8_lossy(&b[start..i]).to_lowercase(), depth));
        } else {
            if c == b'(' {
                depth += 1;
            } else if c == b')' {
                depth -= 1;
            }
            i += 1;
        }
    }
    (out, strings)
}

/// The first keyword of a statement, past opening parentheses and comments.
fn first_word(mut sql: &str) -> String {
    loop {
        sql = sql.trim_start_matches(|c: char| c == '(' || c.is_whitespace());
        match sql
            .strip_prefix("/*")
            .and_then(|rest| rest.split_once("*/"))
        {
            Some((_, rest)) => sql = rest,
            None => break,
        }
    }
    let (w, _) = words(sql);
    w.first().map(|(w, _)| w.to_uppercase()).unwrap_or_default()
}

const VOLATILE: &[&str] = &[
    "random",
    "random_normal",
    "setseed",
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "timeofday",
    "nextval",
    "currval",
    "setval",
    "lastval",
    "gen_random_uuid",
];

/// Why a SELECT that succeeded is no candidate, by its text alone.
fn excluded_by_text(sql: &str) -> Option<&'static str> {
    let (ws, strings) = words(sql);
    if ws
        .iter()
        .any(|(w, d)| *d == 0 && matches!(w.as_str(), "into" | "insert" | "update" | "delete"))
    {
        return Some("writes");
    }
    for (w, _) in &ws {
        if VOLATILE.contains(&w.as_str()) || w.starts_with("txid_") || w.starts_with("pg_current_")
        {
            return Some("volatile");
        }
        if w == "pg_catalog"
            || w == "information_schema"
            || w.starts_with("pg_get_")
            || (w.starts_with("reg") && REG_TYPES.contains(&w.as_str()))
        {
            return Some("catalog");
        }
    }
    for s in &strings {
        if s.split(|c: char| !c.is_ascii_alphabetic())
            .any(|w| matches!(w, "now" | "today" | "tomorrow" | "yesterday"))
        {
            return Some("time-dependent literal");
        }
    }
    None
}

const REG_TYPES: &[&str] = &[
    "regclass",
    "regtype",
    "regproc",
    "regprocedure",
    "regoper",
    "regoperator",
    "regnamespace",
    "regrole",
    "regconfig",
    "regdictionary",
    "regcollation",
];

/// What `EXPLAIN (VERBOSE, FORMAT JSON)` says a statement reads.
#[derive(Debug, Default)]
struct PlanFacts {
    /// (schema, table) of every relation scanned.
    tables: BTreeSet<(String, String)>,
    writes: bool,
}

fn plan_facts(node: &Value, facts: &mut PlanFacts) {
    if let Some(rel) = node.get("Relation Name").and_then(Value::as_str) {
        let schema = node
            .get("Schema")
            .and_then(Value::as_str)
            .unwrap_or("public");
        facts.tables.insert((schema.to_string(), rel.to_string()));
    }
    if matches!(
        node.get("Node Type").and_then(Value::as_str),
        Some("ModifyTable" | "LockRows")
    ) {
        facts.writes = true;
    }
    if let Some(Value::Array(children)) = node.get("Plans") {
        for c in children {
            plan_facts(c, facts);
        }
    }
}

async fn explain(client: &tokio_postgres::Client, sql: &str) -> Result<PlanFacts, String> {
    let msgs = client
        .simple_query(&format!("EXPLAIN (VERBOSE, FORMAT JSON) {sql}"))
        .await
        .map_err(|e| viewcast::pg::error_text(&e))?;
    let text = msgs
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .ok_or("EXPLAIN returned no row")?;
    let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let mut facts = PlanFacts::default();
    plan_facts(&v[0]["Plan"], &mut facts);
    Ok(facts)
}

fn is_catalog(schema: &str) -> bool {
    schema == "pg_catalog" || schema == "information_schema" || schema.starts_with("pg_toast")
}

/// `CREATE [OR REPLACE] TEMP|TEMPORARY ...` without the TEMP.
fn without_temp(sql: &str) -> String {
    let mut ws = sql.split_whitespace();
    let first = ws.next().unwrap_or("").to_uppercase();
    if first != "CREATE" {
        return sql.to_string();
    }
    let mut skip = 1;
    let mut rest: Vec<&str> = ws.collect();
    if rest.len() > 2
        && rest[0].eq_ignore_ascii_case("or")
        && rest[1].eq_ignore_ascii_case("replace")
    {
        skip += 2;
        rest.drain(..2);
    }
    match rest.first() {
        Some(w) if w.eq_ignore_ascii_case("temp") || w.eq_ignore_ascii_case("temporary") => {
            // Remove exactly that word, keeping the rest of the text as it is.
            let mut pos = 0;
            let mut count = 0;
            let mut in_word = false;
            for (p, ch) in sql.char_indices() {
                if ch.is_whitespace() {
                    in_word = false;
                } else if !in_word {
                    in_word = true;
                    if count == skip {
                        pos = p;
                        break;
                    }
                    count += 1;
                }
            }
            format!("{}{}", &sql[..pos], &sql[pos + w.len()..])
        }
        _ => sql.to_string(),
    }
}

/// Every table without a primary key that still has the default replica
/// identity gets FULL, so its updates and deletes reach the WAL whole.
const REPLICA_IDENTITY_FULL: &str = r#"DO $vc$ DECLARE r record; BEGIN
  FOR r IN SELECT c.oid::regclass::text AS t FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND c.relreplident = 'd'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
  LOOP
    BEGIN EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', r.t);
    EXCEPTION WHEN others THEN NULL; END;
  END LOOP; END $vc$"#;

async fn run_item(
    client: &tokio_postgres::Client,
    item: &Item,
) -> Result<(), tokio_postgres::Error> {
    match item {
        Item::Sql(sql) => client.batch_execute(sql).await,
        Item::Copy { sql, data } => {
            let sink = client.copy_in::<_, bytes::Bytes>(sql.as_str()).await?;
            futures::pin_mut!(sink);
            sink.send(bytes::Bytes::from(data.clone())).await?;
            sink.finish().await.map(|_| ())
        }
    }
}

fn read_file(name: &str) -> String {
    let path = Path::new(CORPUS).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "read {}: {e} (the corpus sits next to the checkout)",
            path.display()
        )
    })
}

/// A candidate: statement number in the file and its SQL.
struct Candidate {
    index: usize,
    sql: String,
}

/// Candidates served together on one database: a copy of the file's
/// database made right before the statement that would have broken them,
/// or the file's database itself once the file has run.
struct Segment {
    db: String,
    /// The statement the copy was made before: its number and first words.
    before: Option<(usize, String)>,
    candidates: Vec<Candidate>,
}

/// The session a file runs in.
struct Session {
    client: tokio_postgres::Client,
    /// The cluster's conninfo, without a dbname.
    base: String,
    db: String,
}

impl Session {
    /// A session of the database's own settings, as the oracle and
    /// viewcast's views have; the file may change them as it likes.
    async fn open(base: &str, db: &str) -> Session {
        Session {
            client: connect_in(&format!("{base} dbname={db}"), None).await,
            base: base.to_string(),
            db: db.to_string(),
        }
    }

    /// Whether the session is in a transaction block (or a failed one):
    /// there `now()`, the transaction's start, is not this statement's.
    async fn in_block(&self) -> bool {
        let answer = self
            .client
            .simple_query("SELECT now() = statement_timestamp()")
            .await;
        let outside = answer.ok().and_then(|msgs| {
            msgs.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v == "t"),
                _ => None,
            })
        });
        outside != Some(true)
    }

    /// Copies the database as it is now to `copy`. CREATE DATABASE ...
    /// TEMPLATE wants the source without other sessions, so this one leaves
    /// and comes back with its settings and prepared statements (outside a
    /// transaction block there is nothing else a later statement can see).
    async fn copy_to(self, copy: &str) -> Session {
        let settings: Vec<(String, String)> = self
            .client
            .query(
                "SELECT name::text, current_setting(name) FROM pg_settings WHERE source = 'session'",
                &[],
            )
            .await
            .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            .unwrap_or_default();
        let prepared: Vec<String> = self
            .client
            .query(
                "SELECT statement FROM pg_prepared_statements WHERE from_sql ORDER BY prepare_time",
                &[],
            )
            .await
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .unwrap_or_default();
        let Session { client, base, db } = self;
        drop(client);
        let admin = connect(&format!("{base} dbname=postgres")).await;
        // Postgres waits up to 5 s for the session's backend to exit.
        copy_database(&admin, copy, &db).await;
        let session = Session::open(&base, &db).await;
        for (name, value) in &settings {
            let _ = session
                .client
                .execute("SELECT set_config($1, $2, false)", &[name, value])
                .await;
        }
        for sql in &prepared {
            let _ = session.client.batch_execute(sql).await;
        }
        session
    }
}

/// Statements that can make an earlier SELECT fail or change its answer
/// without touching rows: DROP, ALTER (and its RENAME), TRUNCATE, CREATE OR
/// REPLACE.
fn redefines(sql: &str) -> bool {
    let w = upper_words(sql, 3);
    ["DROP ", "ALTER ", "TRUNCATE ", "CREATE OR REPLACE "]
        .iter()
        .any(|p| w.starts_with(p))
}

/// What a TRUNCATE empties or a CREATE OR REPLACE redefines: SELECTs that
/// read it still run afterwards, with another answer.
fn redefined_names(sql: &str) -> Vec<String> {
    let (ws, _) = words(sql);
    let ws: Vec<&str> = ws
        .iter()
        .filter(|(_, d)| *d == 0)
        .map(|(w, _)| w.as_str())
        .collect();
    match ws.as_slice() {
        ["truncate", rest @ ..] => rest
            .iter()
            .filter(|w| {
                !matches!(
                    **w,
                    "table" | "only" | "restart" | "continue" | "identity" | "cascade" | "restrict"
                )
            })
            .map(|w| w.to_string())
            .collect(),
        ["create", "or", "replace", rest @ ..] => {
            let kinds = [
                "view",
                "function",
                "procedure",
                "rule",
                "trigger",
                "aggregate",
            ];
            rest.iter()
                .position(|w| kinds.contains(w))
                .and_then(|p| rest.get(p + 1))
                .map(|w| vec![w.to_string()])
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// Whether running `sql` now would break one of `pending`: a candidate
/// that Postgres prepares now but not after `sql` (tried in a transaction
/// that is rolled back), or one that reads what a TRUNCATE or CREATE OR
/// REPLACE changes.
async fn breaks(client: &tokio_postgres::Client, sql: &str, pending: &[Candidate]) -> bool {
    let before = futures::future::join_all(pending.iter().map(|c| client.prepare(&c.sql))).await;
    let live: Vec<&Candidate> = pending
        .iter()
        .zip(&before)
        .filter(|(_, p)| p.is_ok())
        .map(|(c, _)| c)
        .collect();
    if live.is_empty() {
        return false;
    }
    let names = redefined_names(sql);
    if live
        .iter()
        .any(|c| words(&c.sql).0.iter().any(|(w, _)| names.contains(w)))
    {
        return true;
    }
    if client.batch_execute("BEGIN").await.is_err() {
        return false;
    }
    let broken = match client.batch_execute(sql).await {
        // Postgres refuses it (or refuses it in a transaction block, as
        // DROP INDEX CONCURRENTLY): nothing changes.
        Err(_) => false,
        Ok(()) => futures::future::join_all(live.iter().map(|c| client.prepare(&c.sql)))
            .await
            .iter()
            .any(Result::is_err),
    };
    let _ = client.batch_execute("ROLLBACK").await;
    broken
}

/// How a file ran, counted as the corpus README counts (statements whose
/// first word is SELECT), why SELECTs were left out, and what the parsers
/// made of its statements.
#[derive(Default)]
struct Ran {
    statements: usize,
    failed: usize,
    selects: usize,
    failed_selects: usize,
    skipped: BTreeMap<&'static str, usize>,
    /// Statements that would have broken pending candidates, but came in a
    /// transaction block, where the database cannot be copied.
    uncut: Vec<usize>,
    parsed: Parsed,
}

/// Runs `file`'s statements in `session`; returns the session and the
/// file's candidates in segments (none when `collect` is false). Before a
/// statement that would break pending candidates (see [`breaks`]) the
/// database is copied, and those candidates are served on the copy.
async fn run_script(
    mut session: Session,
    file: &str,
    collect: bool,
    ran: &mut Ran,
) -> (Session, Vec<Segment>) {
    let mut segments = Vec::new();
    let mut pending = Vec::new();
    for (index, item) in split(&read_file(&format!("sql/{file}")))
        .into_iter()
        .enumerate()
    {
        let original = item.clone();
        let item = match item {
            Item::Sql(sql) => Item::Sql(without_temp(&sql)),
            copy => copy,
        };
        if let Item::Sql(sql) = &item {
            if !pending.is_empty() && redefines(sql) && breaks(&session.client, sql, &pending).await
            {
                if session.in_block().await {
                    ran.uncut.push(index);
                } else {
                    let copy = format!("{}_s{}", session.db, segments.len() + 1);
                    session = session.copy_to(&copy).await;
                    segments.push(Segment {
                        db: copy,
                        before: Some((index, upper_words(sql, 3))),
                        candidates: std::mem::take(&mut pending),
                    });
                }
            }
        }
        let result = run_item(&session.client, &item).await;
        let ok = result.is_ok();
        if collect {
            let select = match &item {
                Item::Sql(sql) => first_word(sql) == "SELECT",
                Item::Copy { .. } => false,
            };
            ran.statements += 1;
            ran.failed += usize::from(!ok);
            ran.selects += usize::from(select);
            ran.failed_selects += usize::from(select && !ok);
            let code = result
                .as_ref()
                .err()
                .and_then(|e| e.code())
                .map(|c| c.code());
            ran.parsed.count(&original, code == Some(SYNTAX_ERROR), ok);
        }
        let client = &session.client;
        let Item::Sql(sql) = item else { continue };
        let head = first_word(&sql);
        let text_excluded = excluded_by_text(&sql);
        // CREATE TABLE, CREATE TABLE AS and SELECT INTO make tables.
        if ok && (head == "CREATE" || text_excluded == Some("writes")) {
            let _ = client.batch_execute(REPLICA_IDENTITY_FULL).await;
        }
        if !collect || !matches!(head.as_str(), "SELECT" | "WITH") {
            continue;
        }
        let skipped = &mut ran.skipped;
        if !ok {
            *skipped.entry("fails in Postgres").or_default() += 1;
            continue;
        }
        if let Some(why) = text_excluded {
            if verbose() {
                println!("  left out ({why}): {sql}");
            }
            *skipped.entry(why).or_default() += 1;
            continue;
        }
        let why = match explain(client, &sql).await {
            Err(_) => Some("cannot be explained"),
            Ok(f) if f.writes => Some("writes"),
            Ok(f) if f.tables.iter().any(|(s, _)| is_catalog(s)) => Some("catalog"),
            Ok(f) if f.tables.is_empty() => Some("reads no table"),
            Ok(_) => None,
        };
        match why {
            Some(why) => {
                if verbose() {
                    println!("  left out ({why}): {sql}");
                }
                *skipped.entry(why).or_default() += 1
            }
            None => pending.push(Candidate { index, sql }),
        }
    }
    if collect {
        segments.push(Segment {
            db: session.db.clone(),
            before: None,
            candidates: pending,
        });
    }
    (session, segments)
}

/// The SQLSTATE of syntax_error: what Postgres's grammar (and so pg_query)
/// does not parse.
const SYNTAX_ERROR: &str = "42601";

/// How many statements Postgres's grammar and sqlparser each parse.
#[derive(Default, Clone)]
struct Parsed {
    statements: usize,
    /// Postgres raised no syntax_error: its grammar, which is pg_query's,
    /// parses them.
    postgres: usize,
    /// sqlparser's PostgreSqlDialect parses them ...
    sqlparser: usize,
    /// ... of those Postgres parses.
    both: usize,
    /// SELECT/WITH statements Postgres answered ...
    answered: usize,
    /// ... and those `viewcast::sql::parse` parses.
    answered_parsed: usize,
    /// sqlparser's error on answered SELECT/WITH statements: how often and
    /// the first statement that got it.
    reasons: BTreeMap<String, (usize, String)>,
}

impl Parsed {
    fn count(&mut self, item: &Item, syntax_error: bool, answered: bool) {
        let sql = match item {
            Item::Sql(sql) | Item::Copy { sql, .. } => sql,
        };
        let dialect = sqlparser::dialect::PostgreSqlDialect {};
        let parses = sqlparser::parser::Parser::parse_sql(&dialect, sql).is_ok();
        self.statements += 1;
        self.postgres += usize::from(!syntax_error);
        self.sqlparser += usize::from(parses);
        self.both += usize::from(parses && !syntax_error);
        let select =
            matches!(item, Item::Sql(_)) && matches!(first_word(sql).as_str(), "SELECT" | "WITH");
        if !(select && answered) {
            return;
        }
        self.answered += 1;
        match viewcast::sql::parse(sql) {
            Ok(_) => self.answered_parsed += 1,
            Err(e) => {
                let reason = parse_reason(&e.message);
                self.reasons.entry(reason).or_insert((0, sql.clone())).0 += 1;
            }
        }
    }

    fn add(&mut self, other: &Parsed) {
        self.statements += other.statements;
        self.postgres += other.postgres;
        self.sqlparser += other.sqlparser;
        self.both += other.both;
        self.answered += other.answered;
        self.answered_parsed += other.answered_parsed;
        for (reason, (n, example)) in &other.reasons {
            self.reasons
                .entry(reason.clone())
                .or_insert((0, example.clone()))
                .0 += n;
        }
    }

    fn line(&self) -> String {
        format!(
            "{:>5} {:>8} {:>9} {:>4} {:>8} {:>6}",
            self.statements,
            self.postgres,
            self.sqlparser,
            self.both,
            self.answered,
            self.answered_parsed
        )
    }
}

/// The columns of [`Parsed::line`].
const PARSED_HEADER: &str = "stmts postgres sqlparser both answered parsed";
/// What they mean.
const PARSED_LEGEND: &str = "stmts: statements; postgres: without syntax_error (what pg_query \
parses); sqlparser: parsed by sqlparser's PostgreSqlDialect; both: of those also postgres; \
answered: SELECT/WITH statements Postgres answered; parsed: of those, parsed by viewcast::sql::parse";

/// sqlparser's error without where it happened.
fn parse_reason(msg: &str) -> String {
    let msg = msg.strip_prefix("syntax error: ").unwrap_or(msg);
    let msg = msg.strip_prefix("sql parser error: ").unwrap_or(msg);
    msg.split(" at Line: ").next().unwrap_or(msg).to_string()
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// What the oracle and the view say at a checkpoint.
#[derive(Debug, PartialEq)]
enum Answer {
    Rows(Vec<String>),
    Error(String),
}

/// The view's answer once it has loaded (a view can still be loading after
/// the server reached the LSN: 503, retried for up to 30 s).
async fn view_answer(server: &TestServer, name: &str) -> (u16, Answer) {
    let start = std::time::Instant::now();
    let (status, body) = loop {
        let (status, body) = server.get(&format!("/views/{name}")).await;
        if status != 503 || start.elapsed() > Duration::from_secs(30) {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if status != 200 {
        let msg = match body["error"].as_str() {
            Some(m) => m.to_string(),
            None => body.to_string(),
        };
        return (status, Answer::Error(msg));
    }
    (status, Answer::Rows(sorted_rows(&body)))
}

/// How long a file's server may take to load its views, and to catch up
/// with a step's changes.
const STARTUP: Duration = Duration::from_secs(360);

async fn wait_for(server: &TestServer, db: &TestDb) {
    let target = db.lsn().await;
    assert!(
        server.reaches(target, STARTUP).await,
        "viewcast did not reach {target}"
    );
}

/// A few rows of a long list, and how many there are.
fn some_rows(rows: &[String]) -> String {
    const SHOWN: usize = 4;
    let mut s = rows
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if rows.len() > SHOWN {
        s.push_str(&format!(", ... ({} rows)", rows.len()));
    }
    format!("[{s}]")
}

/// Two sorted row lists: the rows only one side has, a few of each.
fn row_diff(want: &[String], got: &[String]) -> String {
    let mut only_pg = Vec::new();
    let mut only_vc = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < want.len() || j < got.len() {
        match (want.get(i), got.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                only_pg.push(a.clone());
                i += 1;
            }
            (Some(_), Some(b)) => {
                only_vc.push(b.clone());
                j += 1;
            }
            (Some(a), None) => {
                only_pg.push(a.clone());
                i += 1;
            }
            (None, Some(b)) => {
                only_vc.push(b.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    format!(
        "Postgres {} rows {}\n    viewcast {} rows {}\n    only in Postgres: {}\n    only in viewcast: {}",
        want.len(),
        some_rows(want),
        got.len(),
        some_rows(got),
        some_rows(&only_pg),
        some_rows(&only_vc)
    )
}

/// How a view and Postgres parted, at the first checkpoint they did.
#[derive(Debug)]
enum Outcome {
    Refused(String),
    Wrong(String),
}

struct Tracked {
    index: usize,
    sql: String,
    arity: usize,
    first_status: Option<u16>,
    agreed: usize,
    outcome: Option<Outcome>,
}

const STEPS: [&str; 4] = ["loaded", "after delete", "after update", "after re-insert"];

/// Runs `sqls` in one transaction; the rows the last one changed, or
/// `None` (and nothing changed) if any fails.
async fn in_transaction(db: &TestDb, sqls: &[String]) -> Option<u64> {
    db.client.batch_execute("BEGIN").await.ok()?;
    let mut rows = 0;
    for sql in sqls {
        match db.client.execute(sql.as_str(), &[]).await {
            Ok(n) => rows = n,
            Err(_) => {
                let _ = db.client.batch_execute("ROLLBACK").await;
                return None;
            }
        }
    }
    db.client.batch_execute("COMMIT").await.ok()?;
    Some(rows)
}

/// The data-change step `step` (1 delete, 2 update, 3 re-insert) on
/// `tables`; returns the rows changed and the tables it could not change.
async fn change(db: &TestDb, step: usize, tables: &[(String, String)]) -> (u64, Vec<String>) {
    let mut rows = 0;
    let mut unchanged = Vec::new();
    for (n, (schema, table)) in tables.iter().enumerate() {
        let t = format!("{}.{}", quote_ident(schema), quote_ident(table));
        let saved = format!("_vc_saved_{n}");
        let sqls = match step {
            1 => vec![
                format!("DROP TABLE IF EXISTS {saved}"),
                format!(
                    "CREATE TABLE {saved} AS SELECT * FROM ONLY {t} AS x WHERE hashtext(x::text) % 2 = 0"
                ),
                format!("DELETE FROM ONLY {t} AS x WHERE hashtext(x::text) % 2 = 0"),
            ],
            2 => {
                let copies = ["tenk1", "tenk2", "onek", "onek2", "tmp"];
                if schema == "public" && copies.contains(&table.as_str()) {
                    vec![format!(
                        "UPDATE {t} SET ten = (ten + 1) % 10, stringu1 = 'XXXXXX' WHERE unique1 % 3 = 0"
                    )]
                } else {
                    generic_update(db, &t).await.into_iter().collect()
                }
            }
            _ => vec![
                format!("INSERT INTO {t} OVERRIDING SYSTEM VALUE SELECT * FROM {saved}"),
                format!("DROP TABLE {saved}"),
            ],
        };
        // DROP TABLE reports no rows: count the INSERT's.
        let counted = if step == 3 { &sqls[..1] } else { &sqls[..] };
        match in_transaction(db, counted).await {
            Some(n) if !sqls.is_empty() => {
                rows += n;
                if step == 3 {
                    let _ = db.client.batch_execute(&sqls[1]).await;
                }
            }
            _ => unchanged.push(t),
        }
    }
    (rows, unchanged)
}

/// An update of a third of `t`'s rows that changes a column no key, index
/// or constraint covers: `+ 1` on the first numeric one, else `upper()` of
/// the first text one; `None` if it has neither.
async fn generic_update(db: &TestDb, t: &str) -> Option<String> {
    let rows = db
        .client
        .query(
            "SELECT a.attname::text, ty.typcategory::text
             FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
             WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attgenerated = '' AND a.attidentity = ''
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = a.attrelid AND a.attnum = ANY (c.conkey))
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.confrelid = a.attrelid AND a.attnum = ANY (c.confkey))
               AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND a.attnum = ANY (i.indkey))
             ORDER BY a.attnum",
            &[&t],
        )
        .await
        .ok()?;
    let cols: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let which = |cat: &str| {
        cols.iter()
            .find(|(_, c)| c == cat)
            .map(|(n, _)| quote_ident(n))
    };
    let filter = "hashtext(x::text) % 3 = 0";
    if let Some(c) = which("N") {
        return Some(format!(
            "UPDATE ONLY {t} AS x SET {c} = {c} + 1 WHERE {filter} AND {c} BETWEEN -30000 AND 30000"
        ));
    }
    which("S").map(|c| format!("UPDATE ONLY {t} AS x SET {c} = upper({c}) WHERE {filter}"))
}

#[derive(Default)]
struct Counts {
    views: usize,
    served: usize,
    equal: usize,
    both_reject: usize,
    refused: BTreeMap<String, usize>,
    /// Wrong views on [`ALLOWED`] and the entry's index there.
    allowed: Vec<(usize, String)>,
    failures: Vec<String>,
    /// What each data-change step did.
    steps: Vec<String>,
}

/// `VIEWCAST_PG_REGRESS_VERBOSE=1`: print every view's outcome and every
/// SELECT left out, with the reason.
fn verbose() -> bool {
    std::env::var("VIEWCAST_PG_REGRESS_VERBOSE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The reason of a refusal, in a form equal reasons share: the construct
/// after `unsupported: ` without the SQL it quotes, or the start of the
/// message; literals, names and numbers are blanked out of both.
fn refusal_reason(msg: &str) -> String {
    let msg = msg.split(" at line ").next().unwrap_or(msg);
    let msg = msg.split(" at Line: ").next().unwrap_or(msg);
    let msg = match msg.split_once(" was refused: ") {
        Some((_, m)) => m,
        None => msg,
    };
    let msg = match msg.split_once("unsupported: ") {
        Some((_, what)) => format!("unsupported: {}", what.split(" (").next().unwrap_or(what)),
        None => msg.replace("sql parser error: ", ""),
    };
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut in_name = false;
    for ch in msg.chars() {
        match quote {
            Some(q) if ch == q => {
                quote = None;
                out.push(ch);
            }
            Some(_) => {}
            None if ch == '"' || ch == '\'' => {
                quote = Some(ch);
                out.push(ch);
                out.push('…');
            }
            // A number (not the digits of a name such as int4).
            None if ch.is_ascii_digit() && !in_name => {
                if !out.ends_with('N') {
                    out.push('N');
                }
            }
            None => out.push(ch),
        }
        in_name = ch.is_ascii_alphabetic() || ch == '_' || (in_name && ch.is_ascii_digit());
    }
    out.chars().take(60).collect()
}

async fn run_chunk(db: &TestDb, file: &str, chunk: &[Candidate], counts: &mut Counts) {
    let mut tracked = Vec::new();
    let mut tables = BTreeSet::new();
    for c in chunk {
        let arity = match db.client.prepare(&c.sql).await {
            Ok(st) => st.columns().len(),
            Err(_) => continue,
        };
        if let Ok(f) = explain(&db.client, &c.sql).await {
            tables.extend(f.tables.into_iter().filter(|(s, _)| !is_catalog(s)));
        }
        tracked.push(Tracked {
            index: c.index,
            sql: c.sql.clone(),
            arity,
            first_status: None,
            agreed: 0,
            outcome: None,
        });
    }
    let tables: Vec<(String, String)> = tables.into_iter().collect();
    let views: Vec<(String, String)> = tracked
        .iter()
        .map(|t| (format!("q{}", t.index), t.sql.clone()))
        .collect();
    let named: Vec<(&str, &str)> = views
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_str()))
        .collect();
    // A regression file's views all start at once (subselect's are the most
    // and the heaviest): on a loaded 2-core machine that has taken over the
    // usual two minutes.
    let server = TestServer::start_unwaited(db, &named).await;
    server.wait_healthy_within(STARTUP).await;
    for (step, what) in STEPS.iter().enumerate() {
        if step > 0 {
            let (rows, unchanged) = change(db, step, &tables).await;
            let mut line = format!("  {what}: {rows} rows changed in {} tables", tables.len());
            if !unchanged.is_empty() {
                line.push_str(&format!(", unchanged: {}", unchanged.join(" ")));
            }
            counts.steps.push(line);
        }
        wait_for(&server, db).await;
        for t in tracked.iter_mut().filter(|t| t.outcome.is_none()) {
            let (status, got) = view_answer(&server, &format!("q{}", t.index)).await;
            t.first_status.get_or_insert(status);
            let want = match db.json_rows(&t.sql, t.arity).await {
                Ok(rows) => Answer::Rows(rows),
                Err(e) => Answer::Error(e),
            };
            t.outcome = match (&want, status, &got) {
                (Answer::Rows(a), 200, Answer::Rows(b)) if a == b => {
                    t.agreed += 1;
                    None
                }
                // Both fail (on this data).
                (Answer::Error(_), _, Answer::Error(_)) => None,
                (Answer::Rows(_), 422, Answer::Error(m)) => Some(Outcome::Refused(m.clone())),
                (Answer::Error(e), _, Answer::Rows(b)) => Some(Outcome::Wrong(format!(
                    "{what}: Postgres fails ({e}) but the view serves {}",
                    some_rows(b)
                ))),
                (Answer::Rows(a), _, Answer::Rows(b)) => {
                    Some(Outcome::Wrong(format!("{what}: {}", row_diff(a, b))))
                }
                (Answer::Rows(a), _, Answer::Error(m)) => Some(Outcome::Wrong(format!(
                    "{what}: Postgres {} rows {}\n    viewcast {status}: {m}",
                    a.len(),
                    some_rows(a)
                ))),
            };
        }
    }
    server.stop().await;
    for t in tracked {
        counts.views += 1;
        if t.first_status == Some(200) {
            counts.served += 1;
        }
        let allowed = ALLOWED
            .iter()
            .position(|(f, needle, _)| *f == file && t.sql.contains(needle));
        if verbose() {
            let what = match &t.outcome {
                None if t.agreed == 0 => "fails in both".to_string(),
                None => "equal".to_string(),
                Some(Outcome::Refused(m)) => format!("refused: {m}"),
                Some(Outcome::Wrong(_)) => "WRONG".to_string(),
            };
            println!(
                "  q{} {what}\n    {}",
                t.index,
                t.sql.replace('\n', "\n    ")
            );
        }
        match t.outcome {
            None if t.agreed == 0 => counts.both_reject += 1,
            None => counts.equal += 1,
            Some(Outcome::Refused(m)) => {
                *counts.refused.entry(refusal_reason(&m)).or_default() += 1;
            }
            Some(Outcome::Wrong(w)) => {
                let text = format!("q{}: {}\n    {w}", t.index, t.sql);
                match allowed {
                    Some(a) => counts.allowed.push((a, text)),
                    None => counts.failures.push(text),
                }
            }
        }
    }
}

/// Serves `segment`'s candidates that Postgres still answers on its
/// database (in a fresh session), adding to `counts`; returns them. A copy
/// is dropped afterwards.
async fn serve(
    file: &str,
    segment: Segment,
    counts: &mut Counts,
    skipped: &mut BTreeMap<&'static str, usize>,
) -> Vec<Candidate> {
    let base = base_conninfo();
    let conninfo = format!("{base} dbname={}", segment.db);
    let db = TestDb {
        client: connect_in(&conninfo, None).await,
        conninfo,
    };
    let _ = db.client.batch_execute(REPLICA_IDENTITY_FULL).await;
    let mut kept = Vec::new();
    for c in segment.candidates {
        let ok = match db.client.prepare(&c.sql).await {
            Ok(st) => db.json_rows(&c.sql, st.columns().len()).await.is_ok(),
            Err(_) => false,
        };
        if ok {
            kept.push(c);
        } else {
            if verbose() {
                println!("  left out (fails at the end of its segment): {}", c.sql);
            }
            *skipped
                .entry("fails at the end of its segment")
                .or_default() += 1;
        }
    }
    if !kept.is_empty() {
        counts.steps.push(match &segment.before {
            Some((i, what)) => format!(
                "{} views on a copy made before statement {i} ({what} ...):",
                kept.len()
            ),
            None => format!("{} views once the file has run:", kept.len()),
        });
        for chunk in kept.chunks(CHUNK) {
            run_chunk(&db, file, chunk, counts).await;
        }
    }
    if segment.before.is_some() {
        drop(db);
        let admin = connect(&format!("{base} dbname=postgres")).await;
        let _ = admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                segment.db
            ))
            .await;
    }
    kept
}

async fn run_file(file: &'static str) {
    let name = file.trim_end_matches(".sql");
    let db = TestDb::from_template(
        &format!("pg_regress_{name}"),
        "pg_regress",
        &read_file("setup.sql"),
    )
    .await;
    // The session must be the database's only one when it is copied.
    drop(db);
    let mut session = Session::open(base_conninfo(), &format!("t_pg_regress_{name}")).await;
    let mut ran = Ran::default();
    if file == "expressions.sql" {
        (session, _) = run_script(session, "date.sql", false, &mut ran).await;
    }
    let (session, segments) = run_script(session, file, true, &mut ran).await;
    let _ = session.client.batch_execute("ROLLBACK").await;
    drop(session);
    let cuts = segments.len() - 1;
    let mut counts = Counts::default();
    let mut kept = Vec::new();
    for segment in segments {
        kept.extend(serve(file, segment, &mut counts, &mut ran.skipped).await);
    }
    record_parsed(file, &ran.parsed);
    println!(
        "pg_regress {file}: {} views, {} served, {} equal, {} refused, {} wrong",
        counts.views,
        counts.served,
        counts.equal,
        counts.refused.values().sum::<usize>(),
        counts.allowed.len() + counts.failures.len(),
    );
    println!(
        "  {} statements ({} failed), {} SELECT ({} failed)",
        ran.statements, ran.failed, ran.selects, ran.failed_selects
    );
    let left_out: Vec<String> = ran
        .skipped
        .iter()
        .map(|(w, n)| format!("{n} {w}"))
        .collect();
    println!("  SELECT/WITH left out: {}", left_out.join(", "));
    println!("  {cuts} copies made before statements that would break candidates");
    if !ran.uncut.is_empty() {
        println!(
            "  not copied before statements {:?}: they would break candidates, but run in a transaction block",
            ran.uncut
        );
    }
    println!(
        "  parsers: {PARSED_HEADER}\n           {}",
        ran.parsed.line()
    );
    for step in &counts.steps {
        println!("  {step}");
    }
    if counts.both_reject > 0 {
        println!("  {} fail in both on every checkpoint", counts.both_reject);
    }
    for (reason, n) in &counts.refused {
        println!("  refused {n}x: {reason}");
    }
    for (a, text) in &counts.allowed {
        println!("  ALLOWED ({}) {text}", ALLOWED[*a].2);
    }
    for f in &counts.failures {
        println!("  WRONG {f}");
    }
    let mut stale: Vec<String> = Vec::new();
    for (a, (f, needle, reason)) in ALLOWED.iter().enumerate() {
        if *f != file {
            continue;
        }
        let matching = kept.iter().filter(|c| c.sql.contains(needle)).count();
        if matching != 1 {
            stale.push(format!(
                "{needle:?} ({reason}) is in {matching} views' SQL: it must pick out one"
            ));
        } else if !counts.allowed.iter().any(|(x, _)| *x == a) && !reason.contains(LEFT_OPEN) {
            stale.push(format!(
                "{needle:?} ({reason}) agrees with Postgres now: remove the entry"
            ));
        }
    }
    for s in &stale {
        println!("  STALE {s}");
    }
    assert!(
        counts.failures.is_empty() && stale.is_empty(),
        "{file}: {} wrong views not on ALLOWED, {} stale ALLOWED entries:\n{}",
        counts.failures.len(),
        stale.len(),
        counts
            .failures
            .iter()
            .chain(&stale)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // A file whose views are all refused proves nothing about answers.
    match NOTHING_EQUAL.iter().find(|(f, _)| *f == file) {
        Some((_, reason)) => assert!(
            counts.equal == 0,
            "{file} is on NOTHING_EQUAL ({reason}), but {} of its views are equal to Postgres: remove the entry",
            counts.equal
        ),
        None => assert!(
            counts.views == 0 || counts.equal > 0,
            "{file}: none of its {} views is served and equal to Postgres",
            counts.views
        ),
    }
}

/// Each file's parser counts, kept until every file of [`FILES`] has
/// reported; the last one prints them all with the totals.
fn record_parsed(file: &'static str, parsed: &Parsed) {
    static SEEN: std::sync::Mutex<BTreeMap<&'static str, Parsed>> =
        std::sync::Mutex::new(BTreeMap::new());
    let mut seen = SEEN.lock().expect("parser counts");
    seen.insert(file, parsed.clone());
    if seen.len() < FILES.len() {
        return;
    }
    let mut total = Parsed::default();
    println!("pg_regress parsers, per file: {:<22} {PARSED_HEADER}", "");
    for (file, p) in seen.iter() {
        println!("  {file:<22} {}", p.line());
        total.add(p);
    }
    println!("  {:<22} {}", "total", total.line());
    println!("  ({PARSED_LEGEND})");
    let mut reasons: Vec<_> = total.reasons.iter().collect();
    reasons.sort_by_key(|(r, (n, _))| (std::cmp::Reverse(*n), r.to_string()));
    println!("sqlparser's errors on the SELECT/WITH statements Postgres answered:");
    for (reason, (n, example)) in reasons {
        println!(
            "  {n:>4}x {reason}\n        e.g. {}",
            example.replace('\n', " ")
        );
    }
}

macro_rules! pg_regress_tests {
    ($($name:ident => $file:expr),* $(,)?) => {
        /// The files, one test each.
        const FILES: &[&str] = &[$($file),*];
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                run_file($file).await;
            }
        )*
    };
}

pg_regress_tests! {
    aggregates => "aggregates.sql",
    arrays => "arrays.sql",
    boolean => "boolean.sql",
    case => "case.sql",
    date => "date.sql",
    expressions => "expressions.sql",
    groupingsets => "groupingsets.sql",
    interval => "interval.sql",
    join => "join.sql",
    json => "json.sql",
    jsonb => "jsonb.sql",
    limit => "limit.sql",
    select_distinct => "select_distinct.sql",
    select_distinct_on => "select_distinct_on.sql",
    select_having => "select_having.sql",
    strings => "strings.sql",
    subselect => "subselect.sql",
    text => "text.sql",
    timestamptz => "timestamptz.sql",
    union => "union.sql",
    window => "window.sql",
    with => "with.sql",
}

/// The splitter sends what psql sends (checked once against psql's own
/// statement log for every file of the corpus); these are its hard cases.
#[test]
fn split_as_psql_does() {
    let script = "\\pset null '\\N'
SELECT 'a;b' AS \"x;y\" -- c; d
, E'it\\'s;' FROM t;
create function f() returns int as $body$ select 1; $body$ language sql;
create rule r as on insert to v do instead (insert into a values (1); insert into b values (2));
/* a /* nested; */ comment */ SELECT $1;
COPY t FROM stdin;
1\tx;y
\\.
set standard_conforming_strings = off;
select 'a\\';' as f;
set standard_conforming_strings = on;
select 'a\\';
SELECT 1";
    let got: Vec<String> = split(script)
        .into_iter()
        .map(|i| match i {
            Item::Sql(s) => s,
            Item::Copy { sql, data } => format!("{sql} <- {data:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [
            "SELECT 'a;b' AS \"x;y\" \n, E'it\\'s;' FROM t",
            "create function f() returns int as $body$ select 1; $body$ language sql",
            "create rule r as on insert to v do instead (insert into a values (1); insert into b values (2))",
            "/* a /* nested; */ comment */ SELECT $1",
            "COPY t FROM stdin <- \"1\\tx;y\\n\"",
            "set standard_conforming_strings = off",
            "select 'a\\';' as f",
            "set standard_conforming_strings = on",
            "select 'a\\'",
            "SELECT 1",
        ]
    );
    assert_eq!(
        without_temp("CREATE OR REPLACE TEMP VIEW v AS SELECT 1"),
        "CREATE OR REPLACE  VIEW v AS SELECT 1"
    );
    assert_eq!(
        without_temp("create temporary table temp (a int)"),
        "create  table temp (a int)"
    );
}
