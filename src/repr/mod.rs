//! Values as they flow through viewcast: SQL types, datums and rows.
//!
//! Values enter from Postgres's text format (pgoutput and COPY both use it),
//! live in the dataflow as [`Datum`]s, and leave as JSON written exactly as
//! Postgres's `to_json` would write them. Inside a view, `::text`, `||` and
//! `concat()` see the text form Postgres's output functions write
//! ([`Datum::write_text`], [`array_text`]).
//!
//! Decoding is total: any text gives a value or the error Postgres gives
//! for it, never a panic, and limits are Postgres's (numeric's digit
//! counts, the date and timestamp ranges). `proptests.rs` checks this.

pub mod datetime;
pub mod interval;
pub mod json;
pub mod numeric;
pub mod packed;
#[cfg(test)]
pub(crate) mod proptests;
pub mod to_char;
pub mod tz;

use std::cmp::Ordering;
use std::fmt::Write;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

pub use numeric::{Numeric, NumericError};
pub use packed::{PackedRef, PackedRow};

/// One row: values in column order.
pub type Row = Vec<Datum>;

/// The SQL types viewcast understands, named as Postgres names them in `pg_type`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Type {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    Text,
    Varchar,
    Bpchar,
    Date,
    Timestamp,
    TimestampTz,
    Uuid,
    Json,
    Jsonb,
    Bytea,
    Interval,
    /// An array (from `array_agg`); `name` is pg_type's (`_int4`). Values are
    /// held as the JSON array `to_json` gives.
    Array {
        name: String,
        elem: Box<Type>,
    },
    /// A user-defined enum: values are their labels. Postgres orders enums by
    /// declaration, so ordering comparisons on them are refused.
    Enum {
        oid: u32,
        name: String,
    },
    /// A row of a FROM item used as a value (`row_to_json(t)`, `json_agg(t)`):
    /// held as the JSON object `row_to_json` writes. Only the JSON functions
    /// and aggregates accept it.
    Record,
    /// The type of a bare NULL or a string literal before it meets a typed operand.
    Unknown,
    /// A column type viewcast cannot decode; carried as text, refused if a view reads it.
    Unsupported {
        oid: u32,
        name: String,
    },
}

impl Type {
    pub fn from_oid(oid: u32, name: &str) -> Type {
        match oid {
            16 => Type::Bool,
            17 => Type::Bytea,
            // `name` is text for every purpose a view has (catalog names,
            // and columns declared `name` like the regression tables').
            19 => Type::Text,
            20 => Type::Int8,
            21 => Type::Int2,
            23 => Type::Int4,
            25 => Type::Text,
            114 => Type::Json,
            700 => Type::Float4,
            701 => Type::Float8,
            1042 => Type::Bpchar,
            1043 => Type::Varchar,
            1082 => Type::Date,
            1186 => Type::Interval,
            1114 => Type::Timestamp,
            1184 => Type::TimestampTz,
            1700 => Type::Numeric,
            2950 => Type::Uuid,
            3802 => Type::Jsonb,
            // One-dimensional arrays of the types above, read by `array_in`.
            1000 | 1001 | 1005 | 1007 | 1016 | 1021 | 1022 | 1231 | 1009 | 1015 | 1014 | 1182
            | 1115 | 1185 | 2951 | 199 | 3807 | 1187 => {
                let elem = match oid {
                    1000 => Type::Bool,
                    1001 => Type::Bytea,
                    1005 => Type::Int2,
                    1007 => Type::Int4,
                    1016 => Type::Int8,
                    1021 => Type::Float4,
                    1022 => Type::Float8,
                    1231 => Type::Numeric,
                    1009 => Type::Text,
                    1015 => Type::Varchar,
                    1014 => Type::Bpchar,
                    1182 => Type::Date,
                    1115 => Type::Timestamp,
                    1185 => Type::TimestampTz,
                    2951 => Type::Uuid,
                    199 => Type::Json,
                    3807 => Type::Jsonb,
                    _ => Type::Interval,
                };
                Type::Array {
                    name: format!("_{}", elem.name()),
                    elem: Box::new(elem),
                }
            }
            _ => Type::Unsupported {
                oid,
                name: name.to_string(),
            },
        }
    }

    /// The type's name as `pg_type.typname` spells it.
    pub fn name(&self) -> &str {
        match self {
            Type::Bool => "bool",
            Type::Int2 => "int2",
            Type::Int4 => "int4",
            Type::Int8 => "int8",
            Type::Float4 => "float4",
            Type::Float8 => "float8",
            Type::Numeric => "numeric",
            Type::Text => "text",
            Type::Varchar => "varchar",
            Type::Bpchar => "bpchar",
            Type::Date => "date",
            Type::Timestamp => "timestamp",
            Type::TimestampTz => "timestamptz",
            Type::Uuid => "uuid",
            Type::Json => "json",
            Type::Jsonb => "jsonb",
            Type::Bytea => "bytea",
            Type::Interval => "interval",
            Type::Unknown => "unknown",
            Type::Record => "record",
            Type::Enum { name, .. } | Type::Unsupported { name, .. } | Type::Array { name, .. } => {
                name
            }
        }
    }

    pub fn is_integer(&self) -> bool {
        matches!(self, Type::Int2 | Type::Int4 | Type::Int8)
    }

    pub fn is_numeric_family(&self) -> bool {
        self.is_integer() || matches!(self, Type::Numeric | Type::Float4 | Type::Float8)
    }

    pub fn is_string(&self) -> bool {
        matches!(self, Type::Text | Type::Varchar | Type::Bpchar)
    }

    /// Whether `<`, `min`, ORDER BY and the like are supported on the type.
    pub fn is_orderable(&self) -> bool {
        !matches!(
            self,
            Type::Json
                | Type::Jsonb
                | Type::Enum { .. }
                | Type::Unsupported { .. }
                | Type::Array { .. }
                | Type::Record
        )
    }

    /// Parses a type name as written in a cast (`x::int8`, `CAST(x AS numeric(10,2))`).
    pub fn from_sql_name(name: &str) -> Option<Type> {
        let lower = name.to_ascii_lowercase();
        if let Some(inner) = lower.trim().strip_suffix("[]") {
            let elem = Type::from_sql_name(inner)?;
            if matches!(elem, Type::Array { .. }) {
                return None;
            }
            return Some(Type::Array {
                name: format!("_{}", elem.name()),
                elem: Box::new(elem),
            });
        }
        let base = lower.split('(').next().unwrap_or("").trim();
        Some(match base {
            "bool" | "boolean" => Type::Bool,
            "int2" | "smallint" => Type::Int2,
            "int" | "int4" | "integer" => Type::Int4,
            "int8" | "bigint" => Type::Int8,
            "float4" | "real" => Type::Float4,
            "float8" | "double precision" | "float" => Type::Float8,
            "numeric" | "decimal" => Type::Numeric,
            "text" => Type::Text,
            "varchar" | "character varying" => Type::Varchar,
            "bpchar" | "char" | "character" => Type::Bpchar,
            "date" => Type::Date,
            "timestamp" | "timestamp without time zone" => Type::Timestamp,
            "timestamptz" | "timestamp with time zone" => Type::TimestampTz,
            "uuid" => Type::Uuid,
            "json" => Type::Json,
            "jsonb" => Type::Jsonb,
            "bytea" => Type::Bytea,
            "interval" => Type::Interval,
            _ => return None,
        })
    }
}

/// A float as a stored value: ordered as Postgres orders floats (NaN equals
/// NaN and sorts above everything), then `-0` before `0`. Postgres's `=`
/// says `-0 = 0` ([`F64::cmp_value`], which `sql_cmp` uses), but the two
/// print differently, so as rows they stay apart, as `1.5` and `1.50` do: an
/// update of `0` to `-0` is a change a subscriber sees.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct F64(pub f64);

impl F64 {
    /// The order of Postgres's float comparisons: NaN equals NaN and sorts
    /// above everything, and `-0` equals `0`.
    pub fn cmp_value(&self, other: &F64) -> Ordering {
        match (self.0.is_nan(), other.0.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => self.0.partial_cmp(&other.0).unwrap_or(Ordering::Equal),
        }
    }

    /// `-0`: the one value that prints unlike a value it equals.
    fn is_negative_zero(&self) -> bool {
        self.0 == 0.0 && self.0.is_sign_negative()
    }
}

impl Ord for F64 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_value(other)
            .then_with(|| other.is_negative_zero().cmp(&self.is_negative_zero()))
    }
}
impl PartialOrd for F64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for F64 {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for F64 {}
impl Hash for F64 {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Every NaN is one value (they all print `NaN`); zeros keep their sign.
        if self.0.is_nan() {
            u64::MAX.hash(state)
        } else {
            self.0.to_bits().hash(state)
        }
    }
}

/// One SQL value. Integers of every width share `Int`; the column's [`Type`] says which.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Datum {
    Null,
    Bool(bool),
    Int(i64),
    Float4(F64),
    Float8(F64),
    Numeric(Numeric),
    Text(String),
    Bytes(Vec<u8>),
    /// Days since 2000-01-01 (Postgres's epoch); `i32::MIN`/`MAX` are
    /// `-infinity`/`infinity`. See [`datetime`].
    Date(i32),
    /// Microseconds since 2000-01-01 00:00:00; `i64::MIN`/`MAX` are the infinities.
    Timestamp(i64),
    /// Microseconds since 2000-01-01 00:00:00 UTC; `i64::MIN`/`MAX` are the infinities.
    TimestampTz(i64),
    Uuid(u128),
    /// json: the text exactly as stored; jsonb: Postgres's canonical text.
    Json(String),
    Interval(interval::Interval),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

impl Datum {
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }

    /// Decodes Postgres's text form of a value of type `ty` (what pgoutput
    /// and COPY send, and what a `'...'::type` cast reads), with Postgres's
    /// checks and messages: out-of-range integers, floats and dates are
    /// errors, never wrapped or clamped values.
    pub fn from_text(ty: &Type, s: &str) -> Result<Datum, DecodeError> {
        let bad = || {
            DecodeError(format!(
                "invalid input syntax for type {}: \"{s}\"",
                ty.name()
            ))
        };
        Ok(match ty {
            Type::Bool => Datum::Bool(parse_bool(s).ok_or_else(bad)?),
            Type::Int2 | Type::Int4 | Type::Int8 => {
                let (_, _, sql_name) = int_bounds(ty);
                let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
                let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(DecodeError(format!(
                        "invalid input syntax for type {sql_name}: \"{s}\""
                    )));
                }
                let (lo, hi, _) = int_bounds(ty);
                match t.parse::<i64>() {
                    Ok(v) if (lo..=hi).contains(&v) => Datum::Int(v),
                    _ => {
                        return Err(DecodeError(format!(
                            "value \"{s}\" is out of range for type {sql_name}"
                        )))
                    }
                }
            }
            Type::Float4 => Datum::Float4(F64(parse_float(s, true)?)),
            Type::Float8 => Datum::Float8(F64(parse_float(s, false)?)),
            Type::Numeric => {
                Datum::Numeric(Numeric::parse(s).map_err(|e| DecodeError(e.to_string()))?)
            }
            Type::Text
            | Type::Varchar
            | Type::Bpchar
            | Type::Enum { .. }
            | Type::Unknown
            | Type::Unsupported { .. } => Datum::Text(s.to_string()),
            Type::Date => Datum::Date(datetime::parse_date(s).map_err(DecodeError)?),
            Type::Timestamp => {
                Datum::Timestamp(datetime::parse_timestamp(s, false).map_err(DecodeError)?)
            }
            Type::TimestampTz => {
                Datum::TimestampTz(datetime::parse_timestamp(s, true).map_err(DecodeError)?)
            }
            Type::Uuid => Datum::Uuid(parse_uuid(s).ok_or_else(bad)?),
            Type::Json => {
                json::validate(s).map_err(|e| json_error(ty, &e))?;
                Datum::Json(s.to_string())
            }
            Type::Jsonb => Datum::Json(json::to_jsonb(s).map_err(|e| json_error(ty, &e))?),
            Type::Array { elem, .. } => Datum::Json(array_in(elem, s, &tz::TimeCx::default())?),
            Type::Record => {
                return Err(DecodeError(format!(
                    "reading {} values from text is not supported",
                    ty.name()
                )))
            }
            Type::Interval => Datum::Interval(interval::Interval::parse(s).map_err(DecodeError)?),
            Type::Bytea => Datum::Bytes(parse_bytea(s)?),
        })
    }

    /// [`Datum::from_text`] in a session: dates and timestamps read with
    /// DateStyle's field order, and a timestamptz without an offset as local
    /// time in the session's zone (what a literal means in a view).
    pub fn from_text_in(ty: &Type, s: &str, cx: &tz::TimeCx) -> Result<Datum, DecodeError> {
        let order = cx.datestyle().order;
        Ok(match ty {
            Type::Date => Datum::Date(datetime::parse_date_in(s, order).map_err(DecodeError)?),
            Type::Timestamp => Datum::Timestamp(
                datetime::parse_timestamp_in(s, false, order, None).map_err(DecodeError)?,
            ),
            Type::TimestampTz => Datum::TimestampTz(
                datetime::parse_timestamp_in(s, true, order, Some(cx.zone()))
                    .map_err(DecodeError)?,
            ),
            Type::Array { elem, .. } => Datum::Json(array_in(elem, s, cx)?),
            _ => Datum::from_text(ty, s)?,
        })
    }

    /// Appends the value's text as [`Datum::write_text`] does, with dates and
    /// timestamps in the session's DateStyle and a timestamptz in its zone.
    pub fn write_text_in(&self, cx: &tz::TimeCx, out: &mut String) {
        match self {
            Datum::Date(d) => datetime::format_date_in(*d, cx.datestyle(), out),
            Datum::Timestamp(t) => datetime::format_timestamp_in(*t, cx.datestyle(), out),
            Datum::TimestampTz(t) => datetime::format_timestamptz_in(*t, cx, out),
            other => other.write_text(out),
        }
    }

    /// Appends the value as PostgreSQL's `to_json` renders it.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Datum::Null => out.push_str("null"),
            Datum::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Datum::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Datum::Float4(F64(f)) | Datum::Float8(F64(f)) if !f.is_finite() => {
                out.push('"');
                self.write_text(out);
                out.push('"');
            }
            Datum::Float4(f) => write_float(f.0, true, out),
            Datum::Float8(f) => write_float(f.0, false, out),
            Datum::Numeric(n) => match n {
                Numeric::Small { .. } | Numeric::Big(_) => {
                    let _ = write!(out, "{n}");
                }
                _ => write_json_string(&n.to_string(), out),
            },
            Datum::Text(s) => write_json_string(s, out),
            Datum::Bytes(_) => {
                // The hex form has no characters JSON escapes but the backslash.
                out.push_str("\"\\");
                self.write_text(out);
                out.push('"');
            }
            Datum::Date(d) => {
                out.push('"');
                datetime::format_date(*d, out);
                out.push('"');
            }
            Datum::Timestamp(t) | Datum::TimestampTz(t) => {
                out.push('"');
                let zone = matches!(self, Datum::TimestampTz(_));
                datetime::format_timestamp(*t, zone, datetime::Style::Json, out);
                out.push('"');
            }
            Datum::Uuid(_) => {
                out.push('"');
                self.write_text(out);
                out.push('"');
            }
            Datum::Json(j) => out.push_str(j),
            Datum::Interval(iv) => {
                let mut s = String::new();
                iv.format(&mut s);
                write_json_string(&s, out);
            }
        }
    }

    /// Appends the value as its type's output function writes it (what
    /// `concat`, `format` and array output use): `t` for true, `1.50`,
    /// `2024-01-01 10:00:00+00`, `1 day 02:00:00`, `\x00ff`, `NaN`. The text
    /// of an array needs its element type: see [`array_text`].
    pub fn write_text(&self, out: &mut String) {
        match self {
            Datum::Null => {}
            Datum::Bool(b) => out.push(if *b { 't' } else { 'f' }),
            Datum::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Datum::Float4(f) => write_float(f.0, true, out),
            Datum::Float8(f) => write_float(f.0, false, out),
            Datum::Numeric(n) => {
                let _ = write!(out, "{n}");
            }
            Datum::Text(s) | Datum::Json(s) => out.push_str(s),
            Datum::Bytes(b) => {
                out.reserve(2 + b.len() * 2);
                out.push_str("\\x");
                for byte in b {
                    let _ = write!(out, "{byte:02x}");
                }
            }
            Datum::Date(d) => datetime::format_date(*d, out),
            Datum::Timestamp(t) => {
                datetime::format_timestamp(*t, false, datetime::Style::Text, out)
            }
            Datum::TimestampTz(t) => {
                datetime::format_timestamp(*t, true, datetime::Style::Text, out)
            }
            Datum::Uuid(u) => {
                let h = format!("{u:032x}");
                let _ = write!(
                    out,
                    "{}-{}-{}-{}-{}",
                    &h[0..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..32]
                );
            }
            Datum::Interval(iv) => iv.format(out),
        }
    }

    /// The value's text as its type's output function writes it (see [`Datum::write_text`]).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.write_text(&mut s);
        s
    }

    pub fn to_json_string(&self) -> String {
        let mut s = String::new();
        self.write_json(&mut s);
        s
    }

    /// The value in the form a join or grouping key compares by: numerics without
    /// trailing zeros, so `1.5` meets `1.50` as Postgres's `=` says it should.
    pub fn key_form(&self) -> Datum {
        match self {
            Datum::Numeric(n) => Datum::Numeric(n.normalized()),
            // -0 equals 0 and NaN equals NaN; packed keys compare bits.
            Datum::Float4(F64(f)) if *f == 0.0 || f.is_nan() => {
                Datum::Float4(F64(if f.is_nan() { f64::NAN } else { 0.0 }))
            }
            Datum::Float8(F64(f)) if *f == 0.0 || f.is_nan() => {
                Datum::Float8(F64(if f.is_nan() { f64::NAN } else { 0.0 }))
            }
            other => other.clone(),
        }
    }
}

/// Values in the form keys compare by ([`Datum::key_form`]): how a group,
/// a join key, a partition or a distinct row is told apart.
pub fn key_form_of(values: &[Datum]) -> Row {
    values.iter().map(Datum::key_form).collect()
}

/// `float8in`/`float4in`: the special words in any case, else a decimal that
/// must neither overflow to infinity nor underflow to zero (denormals are
/// fine), as Postgres checks `strtod`'s range errors.
fn parse_float(s: &str, single: bool) -> Result<f64, DecodeError> {
    let sql_name = if single { "real" } else { "double precision" };
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let special = match t.to_ascii_lowercase().as_str() {
        "nan" | "+nan" | "-nan" => Some(f64::NAN),
        "infinity" | "+infinity" | "inf" | "+inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        _ => None,
    };
    if let Some(v) = special {
        return Ok(v);
    }
    let syntax = || DecodeError(format!("invalid input syntax for type {sql_name}: \"{s}\""));
    // Rust's parser also reads "inf" and "nan" spellings: only digits get here.
    if !t
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return Err(syntax());
    }
    let v = if single {
        t.parse::<f32>().map(f64::from)
    } else {
        t.parse::<f64>()
    }
    .map_err(|_| syntax())?;
    let mantissa = t.split(['e', 'E']).next().unwrap_or("");
    let nonzero = mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b));
    if v.is_infinite() || (v == 0.0 && nonzero) {
        return Err(DecodeError(format!(
            "\"{s}\" is out of range for type {sql_name}"
        )));
    }
    Ok(v)
}

fn parse_bool(s: &str) -> Option<bool> {
    // boolin: any unique prefix of true/false/yes/no/on/off, or 1/0, any case.
    let t = s
        .trim_matches(|c: char| c.is_ascii_whitespace())
        .to_ascii_lowercase();
    if t.is_empty() {
        return None;
    }
    let prefix_of = |word: &str, min: usize| t.len() >= min && word.starts_with(t.as_str());
    if prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) || t == "1" {
        Some(true)
    } else if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || t == "0" {
        Some(false)
    } else {
        None
    }
}

/// `uuid_in`: 32 hex digits, optionally in braces, with a hyphen allowed
/// after any group of four digits.
fn parse_uuid(s: &str) -> Option<u128> {
    let t = match s.strip_prefix('{') {
        Some(rest) => rest.strip_suffix('}')?,
        None => s,
    };
    let mut value = 0u128;
    let mut count = 0;
    let mut after_hyphen = false;
    for b in t.bytes() {
        if b == b'-' {
            if count == 0 || count % 4 != 0 || count == 32 || after_hyphen {
                return None;
            }
            after_hyphen = true;
            continue;
        }
        after_hyphen = false;
        let digit = (b as char).to_digit(16)?;
        if count == 32 {
            return None;
        }
        value = value << 4 | digit as u128;
        count += 1;
    }
    (count == 32 && !after_hyphen).then_some(value)
}

/// `byteain`: `\x` followed by hex digit pairs (spaces allowed between
/// pairs), otherwise the escape format, where `\\` is a backslash, `\nnn`
/// (three octal digits, the first 0-3) a byte, and any other byte itself.
pub fn parse_bytea(s: &str) -> Result<Vec<u8>, DecodeError> {
    let b = s.as_bytes();
    if let Some(hex) = b.strip_prefix(b"\\x") {
        let mut out = Vec::with_capacity(hex.len() / 2);
        let mut i = 0;
        let invalid_digit = |at: usize| {
            // Name the whole character, not a byte of it.
            let c = s[2 + at..].chars().next().unwrap_or('?');
            DecodeError(format!("invalid hexadecimal digit: \"{c}\""))
        };
        while i < hex.len() {
            if matches!(hex[i], b' ' | b'\n' | b'\t' | b'\r') {
                i += 1;
                continue;
            }
            let hi = (hex[i] as char)
                .to_digit(16)
                .ok_or_else(|| invalid_digit(i))?;
            let Some(&next) = hex.get(i + 1) else {
                return Err(DecodeError(
                    "invalid hexadecimal data: odd number of digits".into(),
                ));
            };
            let lo = (next as char)
                .to_digit(16)
                .ok_or_else(|| invalid_digit(i + 1))?;
            out.push((hi << 4 | lo) as u8);
            i += 2;
        }
        return Ok(out);
    }
    let syntax = || DecodeError("invalid input syntax for type bytea".into());
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1..i + 4) {
            Some([d1 @ b'0'..=b'3', d2 @ b'0'..=b'7', d3 @ b'0'..=b'7']) => {
                out.push((d1 - b'0') << 6 | (d2 - b'0') << 3 | (d3 - b'0'));
                i += 4;
            }
            _ if b.get(i + 1) == Some(&b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            _ => return Err(syntax()),
        }
    }
    Ok(out)
}

/// Smallest and largest value of an integer type, and its SQL name.
pub fn int_bounds(ty: &Type) -> (i64, i64, &'static str) {
    match ty {
        Type::Int2 => (i16::MIN as i64, i16::MAX as i64, "smallint"),
        Type::Int4 => (i32::MIN as i64, i32::MAX as i64, "integer"),
        _ => (i64::MIN, i64::MAX, "bigint"),
    }
}

fn json_error(ty: &Type, e: &str) -> DecodeError {
    DecodeError(format!("invalid input syntax for type {}: {e}", ty.name()))
}

/// Writes a float the way Postgres's `float8out`/`float4out` do with the default
/// `extra_float_digits = 1`: the shortest text that reads back exactly, in
/// exponential form when the decimal exponent is < -4 or >= 15 (6 for float4).
fn write_float(v: f64, single: bool, out: &mut String) {
    if v.is_nan() {
        return out.push_str("NaN");
    }
    if v.is_infinite() {
        return out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    }
    if v == 0.0 {
        return out.push_str(if v.is_sign_negative() { "-0" } else { "0" });
    }
    let sci = shortest(v, single);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mant) = match mant.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mant),
    };
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let limit = if single { 6 } else { 15 };
    if neg {
        out.push('-');
    }
    if exp < -4 || exp >= limit {
        out.push_str(mant);
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
}

/// The shortest decimal (as `{:e}` writes it) that Postgres's Ryu-based
/// output picks for a finite nonzero float: the fewest digits that read back
/// as `v` while lying strictly inside its rounding interval, and of those the
/// one nearest `v`, ties to even. Rust's own shortest form also accepts a
/// decimal exactly halfway to the next float (it reads back by ties-to-even)
/// and breaks digit ties upward, so it is only the starting length here.
fn shortest(v: f64, single: bool) -> String {
    let rust = if single {
        format!("{:e}", v as f32)
    } else {
        format!("{v:e}")
    };
    let len = rust
        .split('e')
        .next()
        .unwrap_or("")
        .bytes()
        .filter(u8::is_ascii_digit)
        .count()
        .max(1);
    let max_len = if single { 9 } else { 17 };
    for k in len..=max_len {
        // Correctly rounded to k significant digits, ties to even.
        let candidate = if single {
            format!("{:.*e}", k - 1, v as f32)
        } else {
            format!("{:.*e}", k - 1, v)
        };
        let reads_back = if single {
            candidate.parse::<f32>().ok() == Some(v as f32)
        } else {
            candidate.parse::<f64>().ok() == Some(v)
        };
        if reads_back && !is_halfway(&candidate, v, single) {
            return candidate;
        }
    }
    rust
}

/// Whether the decimal `text` lies exactly halfway between `v` and a
/// neighbouring float. Only floats past 2^53 (2^24 for float4) have
/// halfway points with 17 (9) or fewer significant digits, all integers.
fn is_halfway(text: &str, v: f64, single: bool) -> bool {
    use num_bigint::BigUint;
    let (bits, limit) = if single {
        (24, 16_777_216.0)
    } else {
        (53, 9_007_199_254_740_992.0)
    };
    if v.abs() < limit {
        return false;
    }
    let Some((mant, exp)) = text.trim_start_matches('-').split_once('e') else {
        return false;
    };
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let Ok(exp) = exp.parse::<i64>() else {
        return false;
    };
    let shift = exp - (digits.len() as i64 - 1);
    let Ok(d) = digits.parse::<BigUint>() else {
        return false;
    };
    if shift < 0 {
        return false;
    }
    let decimal = d * BigUint::from(10u32).pow(shift as u32);
    // v = m * 2^e with m of `bits` bits; midpoints are (2m ± 1) * 2^(e-1),
    // below a power of two (4m - 1) * 2^(e-2).
    let (m, e) = if single {
        let b = (v as f32).abs().to_bits();
        (
            (b & 0x7F_FFFF | 0x80_0000) as u64,
            ((b >> 23) & 0xFF) as i64 - 150,
        )
    } else {
        let b = v.abs().to_bits();
        (
            b & 0xF_FFFF_FFFF_FFFF | 1 << 52,
            ((b >> 52) & 0x7FF) as i64 - 1075,
        )
    };
    if e < 1 {
        return false;
    }
    let m = BigUint::from(m);
    let up = (&m * 2u32 + 1u32) << (e - 1) as usize;
    let down = if m == BigUint::from(1u64) << (bits - 1) {
        // Below a power of two the gap halves: an integer only from e = 2.
        (e >= 2).then(|| (&m * 4u32 - 1u32) << (e - 2) as usize)
    } else {
        Some((&m * 2u32 - 1u32) << (e - 1) as usize)
    };
    decimal == up || down.is_some_and(|d| decimal == d)
}

/// `array_in`: an array's text (`{1,2,NULL}`, `{"a b",c}`, `{{1,2},{3,4}}`)
/// as the JSON array viewcast holds it, elements read as `elem` in the
/// session `cx`. Dimension decorations (`[1:2]={...}`) are refused.
pub fn array_in(elem: &Type, s: &str, cx: &tz::TimeCx) -> Result<String, DecodeError> {
    let malformed =
        |detail: &str| DecodeError(format!("malformed array literal: \"{s}\" ({detail})"));
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    let ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    ws(&mut i);
    if b.get(i) == Some(&'[') {
        return Err(DecodeError(format!(
            "array bounds in \"{s}\" are not supported; write the array without them"
        )));
    }
    if b.get(i) != Some(&'{') {
        return Err(malformed(
            "Array value must start with \"{\" or dimension information.",
        ));
    }
    // (depth-first) the JSON text, and per nesting level the element counts
    // seen, which must agree (arrays are rectangular).
    let mut out = String::new();
    let mut depth = 0usize;
    let mut counts: Vec<usize> = Vec::new();
    let mut widths: Vec<Option<usize>> = Vec::new();
    let mut leaf_depth: Option<usize> = None;
    let mut expect_value = true;
    while i < b.len() {
        let c = b[i];
        match c {
            '{' if expect_value => {
                if depth >= 6 {
                    return Err(DecodeError(
                        "number of array dimensions (7) exceeds the maximum allowed (6)".into(),
                    ));
                }
                if counts.last().is_some_and(|n| *n > 0) {
                    out.push(',');
                }
                if let Some(n) = counts.last_mut() {
                    *n += 1;
                }
                out.push('[');
                depth += 1;
                counts.push(0);
                if widths.len() < depth {
                    widths.push(None);
                }
                i += 1;
                ws(&mut i);
                if b.get(i) == Some(&'}') {
                    continue;
                }
                expect_value = true;
            }
            '}' => {
                let n = counts.pop().unwrap_or(0);
                if expect_value && n > 0 {
                    return Err(malformed("Unexpected \"}\" character."));
                }
                match widths[depth - 1] {
                    Some(w) if w != n => return Err(malformed(
                        "Multidimensional arrays must have sub-arrays with matching dimensions.",
                    )),
                    _ => widths[depth - 1] = Some(n),
                }
                out.push(']');
                depth -= 1;
                i += 1;
                ws(&mut i);
                if depth == 0 {
                    if i != b.len() {
                        return Err(malformed("Junk after closing right brace."));
                    }
                    break;
                }
                expect_value = false;
            }
            ',' if !expect_value => {
                expect_value = true;
                i += 1;
                ws(&mut i);
            }
            _ if expect_value && depth > 0 => {
                if *leaf_depth.get_or_insert(depth) != depth {
                    return Err(malformed(
                        "Multidimensional arrays must have sub-arrays with matching dimensions.",
                    ));
                }
                // One element: quoted, or up to the next delimiter.
                let mut text = String::new();
                let mut quoted_any = false;
                let mut trailing_ws_from: Option<usize> = None;
                loop {
                    let Some(&c) = b.get(i) else {
                        return Err(malformed("Unexpected end of input."));
                    };
                    let after_quote =
                        quoted_any && !c.is_ascii_whitespace() && c != ',' && c != '}';
                    if after_quote || (c == '"' && !text.trim().is_empty()) {
                        return Err(malformed("Unexpected array element."));
                    }
                    match c {
                        '"' => {
                            quoted_any = true;
                            trailing_ws_from = None;
                            i += 1;
                            loop {
                                match b.get(i) {
                                    None => return Err(malformed("Unexpected end of input.")),
                                    Some('"') => break,
                                    Some('\\') => {
                                        i += 1;
                                        let Some(&e) = b.get(i) else {
                                            return Err(malformed("Unexpected end of input."));
                                        };
                                        text.push(e);
                                    }
                                    Some(&o) => text.push(o),
                                }
                                i += 1;
                            }
                            i += 1;
                        }
                        '\\' => {
                            i += 1;
                            let Some(&e) = b.get(i) else {
                                return Err(malformed("Unexpected end of input."));
                            };
                            text.push(e);
                            trailing_ws_from = None;
                            i += 1;
                        }
                        ',' | '}' => break,
                        '{' => return Err(malformed("Unexpected \"{\" character.")),
                        c if c.is_ascii_whitespace() => {
                            trailing_ws_from.get_or_insert(text.len());
                            text.push(c);
                            i += 1;
                        }
                        c => {
                            trailing_ws_from = None;
                            text.push(c);
                            i += 1;
                        }
                    }
                }
                if let Some(cut) = trailing_ws_from {
                    text.truncate(cut);
                }
                if counts.last().is_some_and(|n| *n > 0) {
                    out.push(',');
                }
                if let Some(n) = counts.last_mut() {
                    *n += 1;
                }
                if !quoted_any && text.eq_ignore_ascii_case("null") {
                    out.push_str("null");
                } else {
                    Datum::from_text_in(elem, &text, cx)?.write_json(&mut out);
                }
                expect_value = false;
            }
            _ => return Err(malformed(&format!("Unexpected \"{c}\" character."))),
        }
    }
    if depth != 0 {
        return Err(malformed("Unexpected end of input."));
    }
    Ok(out)
}

/// The text of an array value (held as the JSON array `to_json` gives) as
/// Postgres's `array_out` writes it: `{1,2,NULL}`, `{"a b","x\\"y"}`,
/// `{t,f}`, `{"2024-01-01 10:00:00+00"}`. Elements are written by their
/// type's output function and quoted where `array_out` quotes them.
///
/// One ambiguity is inherent in the JSON form: a `json`/`jsonb` element that
/// is JSON `null` cannot be told from SQL NULL, and is written as `NULL`.
pub fn array_text(elem: &Type, array_json: &str) -> Result<String, DecodeError> {
    array_text_in(elem, array_json, &tz::TimeCx::default())
}

/// [`array_text`] in a session: date and timestamp elements in its DateStyle
/// and zone.
pub fn array_text_in(
    elem: &Type,
    array_json: &str,
    cx: &tz::TimeCx,
) -> Result<String, DecodeError> {
    let doc = json::parse(array_json)
        .map_err(|e| DecodeError(format!("invalid array value {array_json:?}: {e}")))?;
    let mut out = String::with_capacity(array_json.len());
    write_array_text(elem, &doc, doc.root, array_json, cx, &mut out)?;
    Ok(out)
}

/// An array of timestamptz values (held as `to_json` writes them in UTC) as
/// `to_json` writes it in `zone`; other elements are kept.
pub fn array_json_in(
    elem: &Type,
    array_json: &str,
    zone: &tz::Zone,
) -> Result<String, DecodeError> {
    let doc = json::parse(array_json)
        .map_err(|e| DecodeError(format!("invalid array value {array_json:?}: {e}")))?;
    let mut out = String::with_capacity(array_json.len() + 16);
    write_array_json(elem, &doc, doc.root, array_json, zone, &mut out)?;
    Ok(out)
}

fn write_array_json(
    elem: &Type,
    doc: &json::Doc,
    node: usize,
    src: &str,
    zone: &tz::Zone,
    out: &mut String,
) -> Result<(), DecodeError> {
    let n = &doc.nodes[node];
    match (&n.kind, elem) {
        (json::Kind::Array(items), _) => {
            let inner = match elem {
                Type::Array { elem, .. } => elem,
                other => other,
            };
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_array_json(inner, doc, *item, src, zone, out)?;
            }
            out.push(']');
        }
        (json::Kind::String(s), Type::TimestampTz) => {
            let Datum::TimestampTz(t) = Datum::from_text(elem, s)? else {
                return Err(DecodeError(format!("invalid array value {src:?}")));
            };
            out.push('"');
            datetime::format_timestamptz_json(t, zone, out);
            out.push('"');
        }
        _ => out.push_str(&src[n.span.0..n.span.1]),
    }
    Ok(())
}

fn write_array_text(
    elem: &Type,
    doc: &json::Doc,
    node: usize,
    src: &str,
    cx: &tz::TimeCx,
    out: &mut String,
) -> Result<(), DecodeError> {
    let not_array = || DecodeError(format!("invalid array value {src:?}"));
    let json::Kind::Array(items) = &doc.nodes[node].kind else {
        return Err(not_array());
    };
    out.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let n = &doc.nodes[*item];
        let raw = &src[n.span.0..n.span.1];
        let text: std::borrow::Cow<'_, str> = match (&n.kind, elem) {
            (json::Kind::Null, _) => {
                out.push_str("NULL");
                continue;
            }
            // A multidimensional array: inner arrays are written unquoted.
            (json::Kind::Array(_), Type::Array { elem: inner, .. }) => {
                write_array_text(inner, doc, *item, src, cx, out)?;
                continue;
            }
            (_, Type::Json | Type::Jsonb) => raw.into(),
            (json::Kind::Bool(b), _) => (if *b { "t" } else { "f" }).into(),
            (json::Kind::String(s), Type::Date | Type::Timestamp | Type::TimestampTz) => {
                let mut text = String::new();
                Datum::from_text(elem, s)?.write_text_in(cx, &mut text);
                text.into()
            }
            (json::Kind::String(s), _) => s.as_str().into(),
            (json::Kind::Number, _) => raw.into(),
            _ => return Err(not_array()),
        };
        write_array_element(&text, out);
    }
    out.push('}');
    Ok(())
}

/// The elements of an array value in storage order (a multidimensional
/// array flattened), each as its type's output function writes it (dates
/// and timestamps in the session `cx`), NULL as `None`: what
/// `array_to_string` joins.
pub fn array_element_texts(
    elem: &Type,
    array_json: &str,
    cx: &tz::TimeCx,
) -> Result<Vec<Option<String>>, DecodeError> {
    let doc = json::parse(array_json)
        .map_err(|e| DecodeError(format!("invalid array value {array_json:?}: {e}")))?;
    let mut out = Vec::new();
    // Depth-first, left to right; json elements are values, not dimensions.
    let flatten = !matches!(elem, Type::Json | Type::Jsonb);
    let mut stack = match &doc.nodes[doc.root].kind {
        json::Kind::Array(items) => items.iter().rev().copied().collect::<Vec<_>>(),
        _ => return Err(DecodeError(format!("invalid array value {array_json:?}"))),
    };
    let mut order = Vec::new();
    while let Some(i) = stack.pop() {
        match &doc.nodes[i].kind {
            json::Kind::Array(items) if flatten => stack.extend(items.iter().rev()),
            _ => order.push(i),
        }
    }
    for i in order {
        let n = &doc.nodes[i];
        let raw = &array_json[n.span.0..n.span.1];
        out.push(match (&n.kind, elem) {
            (json::Kind::Null, _) => None,
            (_, Type::Json | Type::Jsonb) => Some(raw.to_string()),
            (json::Kind::Bool(b), _) => Some((if *b { "t" } else { "f" }).into()),
            (json::Kind::String(s), Type::Date | Type::Timestamp | Type::TimestampTz) => {
                let mut text = String::new();
                Datum::from_text(elem, s)?.write_text_in(cx, &mut text);
                Some(text)
            }
            (json::Kind::String(s), _) => Some(s.clone()),
            _ => Some(raw.to_string()),
        });
    }
    Ok(out)
}

/// An element as `array_out` writes it: quoted when empty, `NULL` in any
/// case, or holding braces, commas, quotes, backslashes or white space.
fn write_array_element(text: &str, out: &mut String) {
    let quote = text.is_empty()
        || text.eq_ignore_ascii_case("null")
        || text.bytes().any(|b| {
            matches!(
                b,
                b'{' | b'}' | b',' | b'"' | b'\\' | b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c
            )
        });
    if !quote {
        out.push_str(text);
        return;
    }
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Appends `s` as a JSON string, escaping as Postgres's `escape_json` does.
pub fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a row as a JSON array.
pub fn write_row_json(row: &[Datum], out: &mut String) {
    out.push('[');
    for (i, d) in row.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        d.write_json(out);
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_in_reads_postgres_array_text() {
        let cx = tz::TimeCx::default();
        let read = |elem: &Type, s: &str| array_in(elem, s, &cx);
        assert_eq!(read(&Type::Int4, "{1, 2 ,NULL}").unwrap(), "[1,2,null]");
        assert_eq!(
            read(&Type::Text, r#"{"a b",c\,d,"NULL",""}"#).unwrap(),
            r#"["a b","c,d","NULL",""]"#
        );
        assert_eq!(read(&Type::Int4, "{{1,2},{3,4}}").unwrap(), "[[1,2],[3,4]]");
        assert_eq!(read(&Type::Int4, "{}").unwrap(), "[]");
        assert!(read(&Type::Int4, "{{1},{2,3}}")
            .unwrap_err()
            .0
            .contains("matching dimensions"));
        assert!(read(&Type::Int4, "{1}x").unwrap_err().0.contains("Junk"));
        assert!(read(&Type::Int4, "1,2")
            .unwrap_err()
            .0
            .contains("malformed array literal"));
        assert!(read(&Type::Int4, "{a}")
            .unwrap_err()
            .0
            .contains("invalid input syntax"));
    }

    fn json(ty: Type, text: &str) -> String {
        Datum::from_text(&ty, text).unwrap().to_json_string()
    }

    #[test]
    fn floats_render_like_postgres() {
        assert_eq!(json(Type::Float8, "1.5"), "1.5");
        assert_eq!(json(Type::Float8, "1e+20"), "1e+20");
        assert_eq!(json(Type::Float8, "123456789012345"), "123456789012345");
        assert_eq!(
            json(Type::Float8, "1.23456789012345e+15"),
            "1.23456789012345e+15"
        );
        assert_eq!(json(Type::Float8, "0.0001"), "0.0001");
        assert_eq!(json(Type::Float8, "1e-05"), "1e-05");
        assert_eq!(json(Type::Float8, "-0"), "-0");
        assert_eq!(json(Type::Float8, "NaN"), "\"NaN\"");
        assert_eq!(json(Type::Float4, "1e+06"), "1e+06");
        assert_eq!(json(Type::Float4, "0.1"), "0.1");
        assert_eq!(json(Type::Float4, "123456"), "123456");
        // Postgres's Ryu never picks a decimal exactly halfway to the next
        // float, and breaks ties between equally short digits to even
        // (checked against PostgreSQL 15; Rust's own shortest form differs).
        assert_eq!(
            json(Type::Float8, "5.2990648348713776e16"),
            "5.2990648348713776e+16"
        );
        assert_eq!(json(Type::Float4, "245503392"), "2.4550339e+08");
        assert_eq!(json(Type::Float4, "3590001.25"), "3.5900012e+06");
    }

    #[test]
    fn other_types_render_like_to_json() {
        assert_eq!(json(Type::Bytea, "\\x00ff"), "\"\\\\x00ff\"");
        assert_eq!(
            json(Type::Uuid, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
            "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\""
        );
        assert_eq!(json(Type::Text, "a\"b\n\u{1}"), "\"a\\\"b\\n\\u0001\"");
        assert_eq!(json(Type::Jsonb, "{\"a\": [1, 2]}"), "{\"a\": [1, 2]}");
        assert_eq!(json(Type::Bool, "t"), "true");
        assert_eq!(json(Type::Numeric, "-0.50"), "-0.50");
        assert!(Datum::from_text(&Type::Int4, "x").is_err());
        assert!(Datum::from_text(&Type::Bytea, "\\x0").is_err());
        assert_eq!(json(Type::Date, "0044-03-15 BC"), "\"0044-03-15 BC\"");
        assert_eq!(
            json(Type::TimestampTz, "0044-03-15 10:00 BC"),
            "\"0044-03-15T10:00:00+00:00 BC\""
        );
    }

    fn text(ty: Type, input: &str) -> String {
        Datum::from_text(&ty, input).unwrap().to_text()
    }

    fn input_error(ty: Type, input: &str) -> String {
        Datum::from_text(&ty, input).unwrap_err().0
    }

    #[test]
    fn bytea_reads_hex_and_escape_formats() {
        // Outputs checked against PostgreSQL 15.
        assert_eq!(text(Type::Bytea, "plain"), "\\x706c61696e");
        assert_eq!(text(Type::Bytea, "a\\\\b"), "\\x615c62");
        assert_eq!(text(Type::Bytea, "a\\101b"), "\\x614162");
        assert_eq!(text(Type::Bytea, "\\x 01 02"), "\\x0102");
        assert_eq!(text(Type::Bytea, "\\x"), "\\x");
        assert_eq!(text(Type::Bytea, "é"), "\\xc3a9");
        assert_eq!(text(Type::Bytea, ""), "\\x");
        for bad in ["a\\b", "a\\", "a\\400", "\\"] {
            assert_eq!(
                input_error(Type::Bytea, bad),
                "invalid input syntax for type bytea",
                "{bad}"
            );
        }
        assert_eq!(
            input_error(Type::Bytea, "\\x0"),
            "invalid hexadecimal data: odd number of digits"
        );
        // Once a panic: a hex pair cut through a multi-byte character.
        assert_eq!(
            input_error(Type::Bytea, "\\x0é0"),
            "invalid hexadecimal digit: \"é\""
        );
        assert_eq!(
            input_error(Type::Bytea, "\\x0 1"),
            "invalid hexadecimal digit: \" \""
        );
    }

    #[test]
    fn text_output_is_postgres_output_function() {
        assert_eq!(text(Type::Bool, "true"), "t");
        assert_eq!(text(Type::Numeric, "1.50"), "1.50");
        assert_eq!(text(Type::Float8, "0.1"), "0.1");
        assert_eq!(text(Type::Float8, "1e20"), "1e+20");
        assert_eq!(text(Type::Float8, "NaN"), "NaN");
        assert_eq!(text(Type::Float4, "-Infinity"), "-Infinity");
        assert_eq!(text(Type::Float4, "1234567"), "1.234567e+06");
        assert_eq!(
            text(Type::TimestampTz, "2024-01-01 10:00+00"),
            "2024-01-01 10:00:00+00"
        );
        assert_eq!(
            text(Type::Timestamp, "2024-01-01 10:00:00.50"),
            "2024-01-01 10:00:00.5"
        );
        assert_eq!(text(Type::Date, "infinity"), "infinity");
        assert_eq!(text(Type::Interval, "26 hours"), "26:00:00");
        assert_eq!(text(Type::Interval, "1 day 2 hours"), "1 day 02:00:00");
        assert_eq!(
            text(Type::Uuid, "{A0EEBC99-9C0B4EF8-BB6D-6BB9BD380A11}"),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        assert_eq!(
            text(Type::Jsonb, r#"{"b":1,"a":[1,2]}"#),
            r#"{"a": [1, 2], "b": 1}"#
        );
        assert_eq!(
            text(Type::Json, r#"{"b":1,"a":[1,2]}"#),
            r#"{"b":1,"a":[1,2]}"#
        );
    }

    #[test]
    fn input_checks_ranges_like_postgres() {
        assert_eq!(
            input_error(Type::Int4, "2147483648"),
            "value \"2147483648\" is out of range for type integer"
        );
        assert_eq!(
            input_error(Type::Int2, " 1x"),
            "invalid input syntax for type smallint: \" 1x\""
        );
        assert_eq!(text(Type::Int2, " -32768 "), "-32768");
        assert_eq!(
            input_error(Type::Float8, "1e400"),
            "\"1e400\" is out of range for type double precision"
        );
        assert_eq!(
            input_error(Type::Float8, "1e-400"),
            "\"1e-400\" is out of range for type double precision"
        );
        assert_eq!(text(Type::Float8, "1e-310"), "1e-310");
        assert_eq!(
            input_error(Type::Float4, "1e39"),
            "\"1e39\" is out of range for type real"
        );
        assert_eq!(text(Type::Float8, " -INF "), "-Infinity");
        assert!(input_error(Type::Float8, "infinityx").contains("invalid input syntax"));
        assert_eq!(text(Type::Bool, " YES "), "t");
        assert_eq!(text(Type::Bool, "of"), "f");
        assert!(Datum::from_text(&Type::Bool, "o").is_err());
        assert!(Datum::from_text(&Type::Uuid, "+0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").is_err());
        assert!(Datum::from_text(&Type::Uuid, "a0eebc999c0b4ef8bb6d6bb9bd380a1-1").is_err());
        assert!(
            input_error(Type::Json, "{\"a\": 01}").contains("invalid input syntax for type json")
        );
        assert!(input_error(Type::Jsonb, r#""\u0000""#).contains("\\u0000"));
        assert_eq!(text(Type::Json, r#""\u0000""#), r#""\u0000""#);
    }

    #[test]
    fn arrays_write_as_array_out() {
        let arr = |elem: Type, json: &str| array_text(&elem, json).unwrap();
        // Outputs checked against PostgreSQL 15's array_agg(x)::text.
        assert_eq!(
            arr(
                Type::Text,
                r#"["a","b c",null,"x\"y","NULL","","a,b","{","back\\slash"," lead"]"#
            ),
            r#"{a,"b c",NULL,"x\"y","NULL","","a,b","{","back\\slash"," lead"}"#
        );
        assert_eq!(
            arr(Type::Float8, r#"[1.5,"NaN","Infinity",null]"#),
            "{1.5,NaN,Infinity,NULL}"
        );
        assert_eq!(arr(Type::Bool, "[true,false]"), "{t,f}");
        assert_eq!(
            arr(
                Type::TimestampTz,
                r#"["2024-01-01T10:00:00.5+00:00","infinity"]"#
            ),
            r#"{"2024-01-01 10:00:00.5+00",infinity}"#
        );
        assert_eq!(
            arr(Type::Jsonb, r#"[{"a": [1, 2]},"s"]"#),
            r#"{"{\"a\": [1, 2]}","\"s\""}"#
        );
        assert_eq!(arr(Type::Bytea, r#"["\\x0102"]"#), r#"{"\\x0102"}"#);
        assert_eq!(
            arr(Type::Interval, r#"["1 day 02:00:00"]"#),
            r#"{"1 day 02:00:00"}"#
        );
        assert_eq!(
            arr(Type::Date, r#"["0044-03-15 BC"]"#),
            r#"{"0044-03-15 BC"}"#
        );
        assert_eq!(arr(Type::Int4, "[]"), "{}");
        assert!(array_text(&Type::Int4, "[1,").is_err());
    }
}
