//! Values as they flow through viewcast: SQL types, datums and rows.
//!
//! Values enter from Postgres's text format (pgoutput and COPY both use it),
//! live in the dataflow as [`Datum`]s, and leave as JSON written exactly as
//! Postgres's `to_json` would write them.

pub mod datetime;
pub mod interval;
pub mod json;
pub mod numeric;

use std::cmp::Ordering;
use std::fmt::Write;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

pub use numeric::{Numeric, NumericError};

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
        )
    }

    /// Parses a type name as written in a cast (`x::int8`, `CAST(x AS numeric(10,2))`).
    pub fn from_sql_name(name: &str) -> Option<Type> {
        let lower = name.to_ascii_lowercase();
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

/// A float ordered as Postgres orders floats: NaN equals NaN and sorts above
/// everything, and -0 equals 0.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct F64(pub f64);

impl Ord for F64 {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.0.is_nan(), other.0.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => self.0.partial_cmp(&other.0).unwrap_or(Ordering::Equal),
        }
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
        let v = if self.0 == 0.0 { 0.0 } else { self.0 };
        if v.is_nan() {
            u64::MAX.hash(state)
        } else {
            v.to_bits().hash(state)
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
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01 00:00:00.
    Timestamp(i64),
    /// Microseconds since 1970-01-01 00:00:00 UTC.
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

    /// Decodes Postgres's text output of a value of type `ty`.
    pub fn from_text(ty: &Type, s: &str) -> Result<Datum, DecodeError> {
        let bad = || DecodeError(format!("invalid {} value: {s:?}", ty.name()));
        Ok(match ty {
            Type::Bool => match s {
                "t" | "true" => Datum::Bool(true),
                "f" | "false" => Datum::Bool(false),
                _ => return Err(bad()),
            },
            Type::Int2 | Type::Int4 | Type::Int8 => {
                Datum::Int(s.trim().parse().map_err(|_| bad())?)
            }
            Type::Float4 => Datum::Float4(F64(parse_float(s).ok_or_else(bad)? as f32 as f64)),
            Type::Float8 => Datum::Float8(F64(parse_float(s).ok_or_else(bad)?)),
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
            Type::Uuid => {
                let hex: String = s.chars().filter(|c| *c != '-').collect();
                if hex.len() != 32 {
                    return Err(bad());
                }
                Datum::Uuid(u128::from_str_radix(&hex, 16).map_err(|_| bad())?)
            }
            Type::Json | Type::Jsonb => Datum::Json(s.to_string()),
            Type::Array { .. } => return Err(bad()),
            Type::Interval => Datum::Interval(interval::Interval::parse(s).map_err(DecodeError)?),
            Type::Bytea => {
                let hex = s.strip_prefix("\\x").ok_or_else(bad)?;
                if hex.len() % 2 != 0 {
                    return Err(bad());
                }
                let mut bytes = Vec::with_capacity(hex.len() / 2);
                for i in (0..hex.len()).step_by(2) {
                    bytes.push(u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad())?);
                }
                Datum::Bytes(bytes)
            }
        })
    }

    /// Appends the value as PostgreSQL's `to_json` renders it.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Datum::Null => out.push_str("null"),
            Datum::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Datum::Int(i) => {
                let _ = write!(out, "{i}");
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
            Datum::Bytes(b) => {
                let mut s = String::with_capacity(2 + b.len() * 2);
                s.push_str("\\x");
                for byte in b {
                    let _ = write!(s, "{byte:02x}");
                }
                write_json_string(&s, out);
            }
            Datum::Date(d) => {
                out.push('"');
                datetime::format_date(*d, out);
                out.push('"');
            }
            Datum::Timestamp(t) | Datum::TimestampTz(t) => {
                out.push('"');
                datetime::format_timestamp(*t, matches!(self, Datum::TimestampTz(_)), out);
                out.push('"');
            }
            Datum::Uuid(u) => {
                let h = format!("{u:032x}");
                let _ = write!(
                    out,
                    "\"{}-{}-{}-{}-{}\"",
                    &h[0..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..32]
                );
            }
            Datum::Json(j) => out.push_str(j),
            Datum::Interval(iv) => {
                let mut s = String::new();
                iv.format(&mut s);
                write_json_string(&s, out);
            }
        }
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
            other => other.clone(),
        }
    }
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => s.trim().parse().ok(),
    }
}

/// Writes a float the way Postgres's `float8out`/`float4out` do with the default
/// `extra_float_digits = 1`: the shortest text that reads back exactly, in
/// exponential form when the decimal exponent is < -4 or >= 15 (6 for float4).
fn write_float(v: f64, single: bool, out: &mut String) {
    if v.is_nan() {
        return out.push_str("\"NaN\"");
    }
    if v.is_infinite() {
        return out.push_str(if v > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
    }
    if v == 0.0 {
        return out.push_str(if v.is_sign_negative() { "-0" } else { "0" });
    }
    let sci = if single {
        format!("{:e}", v as f32)
    } else {
        format!("{v:e}")
    };
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
    }
}
