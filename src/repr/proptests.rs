//! Properties of the value layer, checked with proptest under a fixed seed
//! (the same cases on every run, so CI is deterministic):
//!
//! - decoding any text as any type returns a value or an error, never panics;
//! - whatever text decodes, the value's text output decodes back to it;
//! - values generated across each type's whole range (infinities, BC,
//!   294276 AD, NaN, -0, 131072-digit numerics) survive text and JSON forms;
//! - jsonb's canonical text does not depend on spacing or key order;
//! - array text is `array_out`'s: each element reads back from its quoting.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use super::datetime::{DATE_END, DATE_MIN, TS_END, TS_MIN};
use super::interval::Interval;
use super::*;

/// Fixed seed and a modest case count, so the suite stays fast and
/// repeatable. `PROPTEST_CASES=100000 cargo test --lib proptests` searches
/// further (still from the same seed).
pub(crate) fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x5EED_CA57),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Every type a column or an expression can have.
pub(crate) fn all_types() -> Vec<Type> {
    vec![
        Type::Bool,
        Type::Int2,
        Type::Int4,
        Type::Int8,
        Type::Float4,
        Type::Float8,
        Type::Numeric,
        Type::Text,
        Type::Varchar,
        Type::Bpchar,
        Type::Date,
        Type::Timestamp,
        Type::TimestampTz,
        Type::Uuid,
        Type::Json,
        Type::Jsonb,
        Type::Bytea,
        Type::Interval,
        Type::Array {
            name: "_int4".into(),
            elem: Box::new(Type::Int4),
        },
        Type::Enum {
            oid: 1,
            name: "mood".into(),
        },
        Type::Unknown,
        Type::Unsupported {
            oid: 600,
            name: "point".into(),
        },
    ]
}

/// Pieces of text near the edges of some type's input syntax.
const FRAGMENTS: &[&str] = &[
    "infinity",
    "-infinity",
    "Infinity",
    "+Infinity",
    "-Infinity",
    "NaN",
    "nan",
    "inf",
    "-0",
    "0",
    "1",
    "-",
    "+",
    ".",
    "e",
    "E-",
    "e+",
    "1e131071",
    "9.99e131071",
    "1e131072",
    "1e-16383",
    "1e-16384",
    "e2147483647",
    "e-99999999999999999999",
    "1e400",
    "1e-400",
    "2.2250738585072014e-308",
    "3.4028236e38",
    "2147483647",
    "-2147483648",
    "32768",
    "9223372036854775807",
    "-9223372036854775809",
    "99999999999999999999",
    "0x1p3",
    "294276-12-31",
    "294277-01-01",
    "5874897-12-31",
    "5874898-01-01",
    "4714-11-24",
    "4714-11-23",
    "0000-01-01",
    "2024-02-29",
    "2023-02-29",
    "1970-01-01",
    "-01-01",
    " BC",
    " AD",
    " bc",
    "T",
    " ",
    "  ",
    ":",
    "23:59:59.999999",
    "23:59:60",
    "24:00:00",
    "24:00:01",
    ".9999995",
    ".1234567890123456789",
    "+05:30",
    "-15:59:59",
    "+16",
    "+0530",
    "Z",
    "UTC",
    "epoch",
    "\\",
    "\\x",
    "\\\\",
    "\\377",
    "\\400",
    "\\0",
    "0g",
    "é",
    "😀",
    "\u{0}",
    "\t",
    "\n",
    "{",
    "}",
    "[",
    "]",
    "\"",
    ",",
    "\\u0000",
    "\\uD800",
    "\\uDC00",
    "\\uD83D\\uDE00",
    "true",
    "false",
    "null",
    "yes",
    "of",
    "days",
    "mons",
    "years",
    "hours",
    "ago",
    "@",
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "{a0eebc99",
    "-",
    "1_000",
];

/// Text assembled from edge fragments, digits and arbitrary characters.
pub(crate) fn edge_string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            6 => prop::sample::select(FRAGMENTS).prop_map(str::to_string),
            2 => "[0-9]{1,25}",
            1 => any::<char>().prop_map(String::from),
            1 => prop::collection::vec(any::<u8>(), 0..6)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ],
        0..8,
    )
    .prop_map(|parts| parts.concat())
}

/// Changes to make to a text: at a position (a fraction of its length),
/// insert, replace a character with, or cut before, an edge fragment.
fn mutations() -> impl Strategy<Value = Vec<(f64, u8, String)>> {
    prop::collection::vec(
        (
            0.0..=1.0f64,
            0u8..3,
            prop_oneof![
                4 => prop::sample::select(FRAGMENTS).prop_map(str::to_string),
                1 => any::<char>().prop_map(String::from),
            ],
        ),
        1..4,
    )
}

fn mutate(text: &str, changes: &[(f64, u8, String)]) -> String {
    let mut t = text.to_string();
    for (at, kind, piece) in changes {
        let mut i = (t.len() as f64 * at) as usize;
        while !t.is_char_boundary(i) {
            i -= 1;
        }
        match kind {
            0 => t.insert_str(i, piece),
            1 => {
                let next = t[i..].chars().next().map_or(0, char::len_utf8);
                t.replace_range(i..i + next, piece);
            }
            _ => t.truncate(i),
        }
    }
    t
}

fn any_type() -> impl Strategy<Value = Type> {
    prop::sample::select(all_types())
}

/// A float's exact identity: -0 differs from 0, and every NaN is one value.
fn same_float(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

fn same(a: &Datum, b: &Datum) -> bool {
    match (a, b) {
        (Datum::Float4(x), Datum::Float4(y)) | (Datum::Float8(x), Datum::Float8(y)) => {
            same_float(x.0, y.0)
        }
        _ => a == b,
    }
}

/// Decodes `s`, and if that works, checks the value's text decodes back to it.
fn decode_and_round_trip(ty: &Type, s: &str) -> Result<(), TestCaseError> {
    let Ok(d) = Datum::from_text(ty, s) else {
        return Ok(());
    };
    let text = d.to_text();
    let _ = d.to_json_string();
    let back = Datum::from_text(ty, &text);
    prop_assert!(
        back.as_ref().is_ok_and(|b| same(b, &d)),
        "{} {s:?} read as {d:?}, written as {text:?}, read back as {back:?}",
        ty.name()
    );
    Ok(())
}

/// A numeric's text: a special word, or digits with a point and an exponent
/// that keep it within (and at the edges of) Postgres's limits.
fn numeric_text() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => prop::sample::select(vec!["NaN", "Infinity", "-Infinity", "0", "-0", "0.000"])
            .prop_map(str::to_string),
        1 => prop::sample::select(vec![
            "9.99e131071",
            "-9.99e131071",
            "1e-16383",
            "1e100000",
            "0.0000000000000000000000000000001",
            "123456789012345678901234567890.123456789",
        ])
        .prop_map(str::to_string),
        6 => (any::<bool>(), "[0-9]{1,40}", "[0-9]{0,20}", -40i32..40).prop_map(
            |(neg, int, frac, exp)| {
                format!("{}{int}.{frac}e{exp}", if neg { "-" } else { "" })
            }
        ),
    ]
}

fn interval() -> impl Strategy<Value = Interval> {
    let edge_i32 = prop_oneof![
        Just(i32::MIN),
        Just(i32::MAX),
        Just(0),
        Just(-1),
        any::<i32>()
    ];
    let edge_i64 = prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), any::<i64>()];
    (edge_i32.clone(), edge_i32, edge_i64).prop_map(|(months, days, micros)| Interval {
        months,
        days,
        micros,
    })
}

/// A valid value of `ty` across the type's whole range.
pub(crate) fn valid_datum(ty: &Type) -> BoxedStrategy<Datum> {
    use super::datetime::{DATE_NEG_INF, DATE_POS_INF, TS_NEG_INF, TS_POS_INF};
    match ty {
        Type::Bool => any::<bool>().prop_map(Datum::Bool).boxed(),
        Type::Int2 | Type::Int4 | Type::Int8 => {
            let (lo, hi, _) = int_bounds(ty);
            prop_oneof![Just(lo), Just(hi), Just(0), lo..=hi]
                .prop_map(Datum::Int)
                .boxed()
        }
        Type::Float4 => prop::num::f32::ANY
            .prop_map(|f| Datum::Float4(F64(f as f64)))
            .boxed(),
        Type::Float8 => prop::num::f64::ANY
            .prop_map(|f| Datum::Float8(F64(f)))
            .boxed(),
        Type::Numeric => numeric_text()
            .prop_filter_map("within numeric's limits", |t| Numeric::parse(&t).ok())
            .prop_map(Datum::Numeric)
            .boxed(),
        Type::Date => prop_oneof![
            Just(DATE_POS_INF),
            Just(DATE_NEG_INF),
            Just(DATE_MIN as i32),
            Just(DATE_END as i32 - 1),
            DATE_MIN as i32..DATE_END as i32,
            -800_000i32..800_000,
        ]
        .prop_map(Datum::Date)
        .boxed(),
        Type::Timestamp | Type::TimestampTz => {
            let zone = *ty == Type::TimestampTz;
            prop_oneof![
                Just(TS_POS_INF),
                Just(TS_NEG_INF),
                Just(TS_MIN),
                Just(TS_END - 1),
                TS_MIN..TS_END,
                -100_000_000_000_000_000i64..100_000_000_000_000_000,
            ]
            .prop_map(move |t| {
                if zone {
                    Datum::TimestampTz(t)
                } else {
                    Datum::Timestamp(t)
                }
            })
            .boxed()
        }
        Type::Uuid => any::<u128>().prop_map(Datum::Uuid).boxed(),
        Type::Bytea => prop::collection::vec(any::<u8>(), 0..40)
            .prop_map(Datum::Bytes)
            .boxed(),
        Type::Interval => interval().prop_map(Datum::Interval).boxed(),
        Type::Json | Type::Jsonb => json_value(3)
            .prop_map(|v| Datum::Json(json::to_jsonb(&v.write(&[0], &mut 0)).unwrap_or_default()))
            .boxed(),
        _ => any::<String>().prop_map(Datum::Text).boxed(),
    }
}

/// A JSON document as a tree, to write with varying spacing and key order.
#[derive(Clone, Debug)]
pub(crate) enum JsonValue {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<JsonValue>),
    Object(Vec<(String, JsonValue)>),
}

impl JsonValue {
    /// JSON text; `spaces[i]` picks the white space between tokens and `turn`
    /// counts through it, so the same tree can be written many ways.
    pub(crate) fn write(&self, spaces: &[u8], turn: &mut usize) -> String {
        fn ws(spaces: &[u8], turn: &mut usize) -> &'static str {
            *turn += 1;
            match spaces[*turn % spaces.len()] % 4 {
                0 => "",
                1 => " ",
                2 => "\n\t",
                _ => "  \r\n",
            }
        }
        match self {
            JsonValue::Null => "null".into(),
            JsonValue::Bool(b) => b.to_string(),
            JsonValue::Number(n) => n.clone(),
            JsonValue::String(s) => json_literal(s),
            JsonValue::Array(items) => {
                let mut out = format!("[{}", ws(spaces, turn));
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&format!("{},{}", ws(spaces, turn), ws(spaces, turn)));
                    }
                    out.push_str(&item.write(spaces, turn));
                }
                out + ws(spaces, turn) + "]"
            }
            JsonValue::Object(items) => {
                let mut out = format!("{{{}", ws(spaces, turn));
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&format!("{},{}", ws(spaces, turn), ws(spaces, turn)));
                    }
                    out.push_str(&format!(
                        "{}{}:{}",
                        json_literal(k),
                        ws(spaces, turn),
                        ws(spaces, turn)
                    ));
                    out.push_str(&v.write(spaces, turn));
                }
                out + ws(spaces, turn) + "}"
            }
        }
    }
}

/// A JSON string literal, escaping some characters Postgres would not (`\/`, `\u00e9`).
fn json_literal(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            c if (c as u32) < 0x20 || c == 'é' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) > 0xFFFF => {
                let v = c as u32 - 0x10000;
                out.push_str(&format!(
                    "\\u{:04X}\\u{:04x}",
                    0xD800 + (v >> 10),
                    0xDC00 + (v & 0x3FF)
                ));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) fn json_value(depth: u32) -> impl Strategy<Value = JsonValue> {
    let key = prop_oneof![
        "[a-c]{0,3}",
        any::<String>().prop_map(|s| s.replace('\0', ""))
    ];
    let number = prop_oneof![
        "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,10})?([eE][+-]?[0-9]{1,2})?",
        Just("-0".to_string()),
        Just("1e400".to_string()),
    ];
    let leaf = prop_oneof![
        Just(JsonValue::Null),
        any::<bool>().prop_map(JsonValue::Bool),
        number.prop_map(JsonValue::Number),
        any::<String>()
            .prop_map(|s| s.replace('\0', ""))
            .prop_map(JsonValue::String),
    ];
    leaf.prop_recursive(depth, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(JsonValue::Array),
            prop::collection::vec((key.clone(), inner), 0..4).prop_map(JsonValue::Object),
        ]
    })
}

/// Reads `array_out` text back into element texts (None for NULL).
fn read_array(text: &str) -> Option<Vec<Option<String>>> {
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    let mut out = Vec::new();
    if inner.is_empty() {
        return Some(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next()? {
                    '\\' => s.push(chars.next()?),
                    '"' => break,
                    c => s.push(c),
                }
            }
            out.push(Some(s));
        } else {
            let mut s = String::new();
            while let Some(c) = chars.peek().filter(|c| **c != ',') {
                s.push(*c);
                chars.next();
            }
            out.push((s != "NULL").then_some(s));
        }
        match chars.next() {
            None => return Some(out),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

fn array_elem_type() -> impl Strategy<Value = Type> {
    prop::sample::select(
        all_types()
            .into_iter()
            .filter(|t| {
                !matches!(
                    t,
                    Type::Array { .. } | Type::Unknown | Type::Unsupported { .. } | Type::Json
                )
            })
            .collect::<Vec<_>>(),
    )
}

proptest! {
    // Mutating valid text is what finds byte-level slicing bugs (a hex pair
    // cut through a multi-byte character): it gets the most cases.
    #![proptest_config(config(3000))]

    #[test]
    fn from_text_never_panics_on_mutated_values(
        (ty, d) in any_type().prop_flat_map(|t| (Just(t.clone()), valid_datum(&t))),
        changes in mutations(),
    ) {
        let text = mutate(&d.to_text(), &changes);
        decode_and_round_trip(&ty, &text)?;
        let json = mutate(d.to_json_string().trim_matches('"'), &changes);
        decode_and_round_trip(&ty, &json)?;
    }
}

proptest! {
    #![proptest_config(config(600))]

    /// A key read from a packed row's bytes as they are is the key packed
    /// from its decoded values in key form, whenever it is read that way;
    /// and it is, unless a column is a numeric or a float, past the row's
    /// end, or the columns are out of order.
    #[test]
    fn key_bytes_read_in_place_are_the_packed_key(
        row in prop::collection::vec(
            prop_oneof![
                1 => Just(Datum::Null),
                6 => any_type().prop_flat_map(|t| valid_datum(&t)),
            ],
            0..6,
        ),
        cols in prop::collection::vec(0usize..7, 0..4),
    ) {
        let packed = PackedRow::pack(&row);
        let mut out = Vec::new();
        let read = packed.borrowed().key_bytes_into(&cols, &mut out);
        if read {
            let want = PackedRow::pack(&key_form_of(&packed.columns(&cols)));
            prop_assert_eq!(&out[..], want.as_bytes(), "{:?} at {:?}", row, cols);
        }
        let ascending = cols.windows(2).all(|w| w[0] < w[1]);
        let plain = cols.iter().all(|&c| {
            c < row.len() && !matches!(row[c], Datum::Numeric(_) | Datum::Float4(_) | Datum::Float8(_))
        });
        prop_assert_eq!(read, ascending && plain, "{:?} at {:?}", row, cols);
    }
}

proptest! {
    #![proptest_config(config(400))]

    /// Plain digits (what COPY and pgoutput send) are read without a big
    /// integer when they fit an i64; with an exponent they take the general
    /// path. Both must give the same value and scale.
    #[test]
    fn plain_numerics_read_as_the_general_path_does(
        sign in prop::sample::select(vec!["", "-", "+"]),
        int in "[0-9]{0,19}",
        frac in prop::option::of("[0-9]{0,19}"),
        pad in prop::sample::select(vec!["", " "]),
    ) {
        let body = match &frac {
            Some(f) => format!("{sign}{int}.{f}"),
            None => format!("{sign}{int}"),
        };
        // (Errors quote the text, which differs by the exponent.)
        let plain = Numeric::parse(&format!("{pad}{body}{pad}")).ok();
        let general = Numeric::parse(&format!("{body}e0")).ok();
        prop_assert_eq!(&plain, &general, "{:?}", body);
        if let Some(n) = plain {
            prop_assert_eq!(n.scale() as usize, frac.map_or(0, |f| f.len()));
        }
    }

    #[test]
    fn from_text_never_panics_on_edge_text(ty in any_type(), s in edge_string()) {
        decode_and_round_trip(&ty, &s)?;
    }

    #[test]
    fn from_text_never_panics_on_any_text(ty in any_type(), s in any::<String>()) {
        decode_and_round_trip(&ty, &s)?;
    }

    #[test]
    fn valid_values_round_trip_through_text(
        (ty, d) in any_type().prop_flat_map(|t| (Just(t.clone()), valid_datum(&t)))
    ) {
        if matches!(ty, Type::Array { .. } | Type::Unsupported { .. }) {
            return Ok(());
        }
        let text = d.to_text();
        let back = Datum::from_text(&ty, &text);
        prop_assert!(
            back.as_ref().is_ok_and(|b| same(b, &d)),
            "{d:?} written as {text:?}, read back as {back:?}"
        );
        // Dates and timestamps also read back from their to_json form, which
        // is what array values hold.
        if matches!(ty, Type::Date | Type::Timestamp | Type::TimestampTz) {
            let json = d.to_json_string();
            let back = Datum::from_text(&ty, json.trim_matches('"'));
            prop_assert_eq!(back, Ok(d), "{}", json);
        }
    }

    #[test]
    fn bytea_escape_format_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        let mut escaped = String::new();
        for b in &bytes {
            match b {
                b'\\' => escaped.push_str("\\\\"),
                0x20..=0x7e => escaped.push(*b as char),
                _ => escaped.push_str(&format!("\\{b:03o}")),
            }
        }
        prop_assert_eq!(parse_bytea(&escaped), Ok(bytes));
    }

    #[test]
    fn jsonb_text_is_canonical(v in json_value(4), spaces in prop::collection::vec(any::<u8>(), 1..8)) {
        let compact = v.write(&[0], &mut 0);
        let spaced = v.write(&spaces, &mut 0);
        prop_assert!(json::validate(&spaced).is_ok(), "{}", spaced);
        let canonical = json::to_jsonb(&compact);
        prop_assert_eq!(&json::to_jsonb(&spaced), &canonical);
        if let Ok(c) = canonical {
            prop_assert_eq!(json::to_jsonb(&c), Ok(c.clone()));
        }
    }

    #[test]
    fn json_functions_never_panic(s in prop_oneof![edge_string(), any::<String>()], key in "[a-c]{0,2}", i in -3i64..3) {
        let _ = json::parse(&s);
        let _ = json::field(&s, &key);
        let _ = json::element(&s, i);
        let _ = json::as_text(&s);
        let _ = json::unescape(&s);
        let _ = json::parse_path(&s);
        let _ = array_text(&Type::Text, &s);
    }

    #[test]
    fn array_text_quotes_as_array_out(
        (elem, items) in array_elem_type().prop_flat_map(|t| {
            let items = prop::collection::vec(
                prop_oneof![1 => Just(Datum::Null), 4 => valid_datum(&t)],
                0..6,
            );
            (Just(t), items)
        })
    ) {
        let json = format!(
            "[{}]",
            items.iter().map(Datum::to_json_string).collect::<Vec<_>>().join(",")
        );
        let text = array_text(&elem, &json);
        prop_assert!(text.is_ok(), "{json}: {text:?}");
        let text = text.unwrap_or_default();
        let read = read_array(&text);
        // A jsonb `null` element reads as SQL NULL: the JSON form cannot tell them apart.
        let want: Vec<Option<String>> = items
            .iter()
            .map(|d| (!d.is_null() && *d != Datum::Json("null".into())).then(|| d.to_text()))
            .collect();
        prop_assert_eq!(read, Some(want), "{}", text);
    }
}

#[test]
fn deep_json_does_not_overflow_the_stack() {
    let deep = format!("{}1{}", "[".repeat(200_000), "]".repeat(200_000));
    assert!(json::validate(&deep).is_ok());
    assert_eq!(json::to_jsonb(&deep).map(|j| j.len()), Ok(deep.len()));
    let open = "{\"a\":".repeat(100_000);
    assert!(json::validate(&open).is_err());
}
