//! Scalar functions, evaluated as PostgreSQL does. The binder (`bind/scalar.rs`)
//! picks the function and its result type from the argument types; `eval`
//! sees non-coerced values only where noted. A NULL argument gives NULL, except
//! for `concat`/`concat_ws`, which skip NULLs.

use serde::{Deserialize, Serialize};

use super::expr::EvalError;
use super::regex;
use crate::repr::datetime::{
    self, date_from_ymd, split_timestamp, ymd_from_date, DATE_NEG_INF, DATE_POS_INF,
    MICROS_PER_DAY, TS_NEG_INF, TS_POS_INF, UNIX_TO_PG_DAYS,
};
use crate::repr::interval::{add_to_timestamptz, Interval};
use crate::repr::json;
use crate::repr::tz::TimeCx;
use crate::repr::{array_json_in, array_text_in, Datum, Numeric, Type, F64};

/// Postgres's `NUMERIC_MAX_RESULT_SCALE`: `round`/`trunc` digits are clamped to it.
const MAX_RESULT_SCALE: i64 = 2000;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Func {
    Lower,
    Upper,
    /// Characters.
    Length,
    OctetLength,
    /// `substr(s, from [, count])`.
    Substr,
    /// `strpos(s, sub)`; 1-based, 0 when absent.
    Strpos,
    Replace,
    /// Trims characters (default: spaces) from the start, the end, or both.
    Trim {
        leading: bool,
        trailing: bool,
    },
    /// char(n) → text: trailing spaces are not significant.
    BpcharToText,
    Concat,
    ConcatWs,
    SplitPart,
    Left,
    Right,
    Repeat,
    Reverse,
    Lpad,
    Rpad,
    Initcap,
    Abs,
    Sign,
    /// `round(x)` / `round(numeric, digits)`.
    Round,
    /// `trunc(x)` / `trunc(numeric, digits)`.
    Trunc,
    Floor,
    Ceil,
    Sqrt,
    Cbrt,
    Exp,
    Ln,
    Log10,
    Power,
    /// Integer quotient of numerics, truncated toward zero.
    Div,
    /// `extract(field FROM x)` → numeric.
    Extract(String),
    /// `date_part('field', x)` → float8.
    DatePart(String),
    /// `date_trunc('field', x)`.
    DateTrunc(String),
    /// `json -> key_or_index` (`as_text`: `->>`).
    JsonGet {
        as_text: bool,
    },
    /// `json #> '{path}'` (`as_text`: `#>>`).
    JsonPath {
        steps: Vec<String>,
        as_text: bool,
    },
    /// An array's text (`array_out`), for `::text` and `concat`; the type is
    /// the element type, the session's DateStyle and zone write dates and
    /// timestamps.
    ArrayText(Type, TimeCx),
    /// `timestamptz` → `timestamp`: the wall-clock time in the session zone
    /// (`::timestamp`, and `::date` after it).
    ToLocal(TimeCx),
    /// `timestamp` or `date` → `timestamptz`: the wall-clock time (or
    /// midnight) read in the session zone.
    FromLocal(TimeCx),
    /// A date, timestamp or timestamptz as text, in the session's DateStyle
    /// and zone (`::text`, `||`, `concat`).
    DateTimeText(TimeCx),
    /// Text read as the result type (date, timestamp or timestamptz) with
    /// the session's DateStyle and zone.
    ParseDateTime(TimeCx),
    /// `date_trunc(field, timestamptz)`: truncated in the session zone.
    DateTruncIn(String, TimeCx),
    /// `timestamptz + interval` (`interval` second): months and days step
    /// the wall-clock time in the session zone.
    AddInterval(TimeCx),
    /// A view's output value as `to_json` writes it in the session zone: a
    /// timestamptz, or an array of them (the type says which).
    JsonIn(Type, TimeCx),
    /// `json_build_object` (`jsonb`: `jsonb_build_object`): arguments
    /// alternate keys and values; each value as `to_json` writes it (the
    /// binder has put timestamptz values in the session zone).
    JsonBuildObject {
        jsonb: bool,
    },
    /// `json_build_array` / `jsonb_build_array`.
    JsonBuildArray {
        jsonb: bool,
    },
    /// `to_json` / `to_jsonb` of one value (`row_to_json` of a row is the
    /// row itself).
    ToJson {
        jsonb: bool,
    },
    /// A FROM item's row as a value: the JSON object `row_to_json` writes,
    /// one argument per column, named here.
    RowToJson(Vec<String>),
    /// An operator or function on json/jsonb documents.
    Json(JsonOp),
    /// An operator or function on arrays (held as their JSON arrays).
    Array(ArrayOp),
    /// `~`, `~*`, `!~`, `!~*` (see `sql/regex.rs` for the patterns taken).
    RegexMatch {
        case_insensitive: bool,
        negated: bool,
    },
    /// `regexp_replace(s, pattern, replacement [, flags])`.
    RegexpReplace,
    /// `regexp_match(s, pattern [, flags])` → text[].
    RegexpMatch,
    /// `md5(text)`: the hex digest of the UTF-8 bytes.
    Md5,
    StartsWith,
    Translate,
    Ascii,
    Chr,
    QuoteIdent,
    QuoteLiteral,
    /// `quote_nullable`: `NULL` for NULL.
    QuoteNullable,
    /// `age(a, b)` of timestamps (timestamptz: in the session zone, the
    /// binder converts): the field-wise difference Postgres computes.
    Age,
    /// `make_date(year, month, day)`.
    MakeDate,
    /// `make_timestamp(year, month, day, hour, min, sec)`.
    MakeTimestamp,
    /// `date_bin(stride, source, origin)`.
    DateBin,
    /// `justify_days`, `justify_hours`, `justify_interval`.
    Justify {
        days: bool,
        hours: bool,
    },
    /// `to_char(timestamp, format)` (a date or timestamptz arrives as its
    /// local timestamp); see `repr/to_char.rs` for the patterns.
    ToChar,
    /// `format(fmt, args...)` with `%s`, `%I`, `%L` and `%%`; arguments
    /// arrive as text (the binder converts them as `concat` does).
    Format,
}

/// Operators and functions on arrays. Elements compare as the values
/// they are (numbers by value, other elements by their JSON text, which is
/// exact for the element types that reach here); a NULL element equals
/// nothing, as in Postgres.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ArrayOp {
    /// `ARRAY[a, b, ...]`.
    Build,
    /// `anyarray @> anyarray`.
    Contains,
    /// `anyarray <@ anyarray`.
    ContainedBy,
    /// `anyarray && anyarray`.
    Overlaps,
    /// `array_length(a, dim)`.
    Length,
    /// `cardinality(a)`.
    Cardinality,
    /// `array_position(a, v)`: `v` may be NULL (it finds a NULL).
    Position,
    /// `array_append(a, v)`.
    Append,
    /// `array_cat(a, b)`.
    Cat,
    /// `x = ANY(a)` (`negated`: `x <> ALL(a)`).
    Any { negated: bool },
    /// `array_to_string(a, delimiter [, null_string])`: elements as their
    /// type's output function writes them in the session.
    ToString(Type, TimeCx),
    /// `string_to_array(s, delimiter [, null_string])`.
    FromString,
    /// `a[i]`, `a[i][j]`, ...: the element of an array of this element
    /// type; NULL outside the array, or with fewer or more subscripts than
    /// it has dimensions.
    Index(Type),
    /// `a[lo:hi]` (either bound may be left out, and is then not an
    /// argument): the elements (of the first dimension) in the range,
    /// clamped to the array, as an array numbered from 1.
    Slice { lower: bool, upper: bool },
}

/// Operators and functions that take json/jsonb documents apart (see
/// [`json::Value`]). Text arrays (keys, paths) arrive as their JSON arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JsonOp {
    /// `jsonb ? text`.
    Exists,
    /// `jsonb ?| text[]`.
    ExistsAny,
    /// `jsonb ?& text[]`.
    ExistsAll,
    /// `jsonb @> jsonb`.
    Contains,
    /// `jsonb <@ jsonb`.
    ContainedBy,
    /// `jsonb - text`.
    DeleteKey,
    /// `jsonb - text[]`.
    DeleteKeys,
    /// `jsonb - integer`.
    DeleteIndex,
    /// `jsonb || jsonb`.
    Concat,
    /// `jsonb #- text[]`.
    DeletePath,
    /// `jsonb_set(target, path, new [, create_missing])`.
    Set,
    /// `json_typeof` / `jsonb_typeof`.
    TypeOf,
    /// `json_array_length` / `jsonb_array_length`.
    ArrayLength,
    /// `jsonb_strip_nulls` (canonical result).
    StripNulls,
    /// `json_strip_nulls` (compact result, members as written).
    JsonStripNulls,
    /// `jsonb_pretty`.
    Pretty,
}

fn err<T>(msg: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError(msg.into()))
}

fn text(d: &Datum) -> &str {
    match d {
        Datum::Text(s) | Datum::Json(s) => s,
        _ => "",
    }
}

fn int(d: &Datum) -> i64 {
    match d {
        Datum::Int(i) => *i,
        _ => 0,
    }
}

fn float(d: &Datum) -> f64 {
    match d {
        Datum::Int(i) => *i as f64,
        Datum::Float4(f) | Datum::Float8(f) => f.0,
        Datum::Numeric(n) => n.to_f64(),
        _ => f64::NAN,
    }
}

fn float_out(v: f64, ty: &Type) -> Datum {
    if *ty == Type::Float4 {
        Datum::Float4(F64(v as f32 as f64))
    } else {
        Datum::Float8(F64(v))
    }
}

/// The text form a value has as an argument of `concat` (its output
/// function: `t` for true, unlike a cast to text).
fn output_text(d: &Datum) -> String {
    d.to_text()
}

/// Argument `i`; the binder checks arity, so a missing one is a plan bug,
/// reported as an error rather than a panic.
fn arg(args: &[Datum], i: usize) -> Result<&Datum, EvalError> {
    args.get(i)
        .ok_or_else(|| EvalError(format!("function called with {} arguments", args.len())))
}

impl Func {
    pub fn name(&self) -> String {
        match self {
            Func::Trim { leading, trailing } => match (leading, trailing) {
                (true, false) => "ltrim".into(),
                (false, true) => "rtrim".into(),
                _ => "btrim".into(),
            },
            Func::BpcharToText => "text".into(),
            Func::ArrayText(..) => "array_out".into(),
            Func::ToLocal(cx) => format!("to_local[{}]", cx.zone().name()),
            Func::FromLocal(cx) => format!("from_local[{}]", cx.zone().name()),
            Func::DateTimeText(cx) => format!("text[{cx}]"),
            Func::ParseDateTime(cx) => format!("parse[{cx}]"),
            Func::DateTruncIn(f, cx) => format!("date_trunc_{f}[{}]", cx.zone().name()),
            Func::AddInterval(cx) => format!("add_interval[{}]", cx.zone().name()),
            Func::JsonIn(_, cx) => format!("to_json[{}]", cx.zone().name()),
            Func::Extract(f) => format!("extract_{f}"),
            Func::DatePart(f) => format!("date_part_{f}"),
            Func::DateTrunc(f) => format!("date_trunc_{f}"),
            Func::JsonGet { as_text } => (if *as_text { "->>" } else { "->" }).into(),
            Func::JsonBuildObject { jsonb } => (if *jsonb {
                "jsonb_build_object"
            } else {
                "json_build_object"
            })
            .into(),
            Func::JsonBuildArray { jsonb } => (if *jsonb {
                "jsonb_build_array"
            } else {
                "json_build_array"
            })
            .into(),
            Func::ToJson { jsonb } => (if *jsonb { "to_jsonb" } else { "to_json" }).into(),
            Func::RowToJson(_) => "row_to_json".into(),
            Func::Json(op) => format!("{op:?}").to_lowercase(),
            Func::Array(ArrayOp::ToString(..)) => "array_to_string".into(),
            Func::Array(ArrayOp::Index(_)) => "subscript".into(),
            Func::Array(ArrayOp::Slice { .. }) => "slice".into(),
            Func::Array(op) => format!("array_{op:?}").to_lowercase(),
            Func::JsonPath { steps, as_text } => {
                format!(
                    "{}{{{}}}",
                    if *as_text { "#>>" } else { "#>" },
                    steps.join(",")
                )
            }
            other => format!("{other:?}").to_lowercase(),
        }
    }

    /// Evaluates over argument values; `ty` is the result type.
    pub fn eval(&self, args: &[Datum], ty: &Type) -> Result<Datum, EvalError> {
        match self {
            Func::Concat => {
                return Ok(Datum::Text(
                    args.iter()
                        .filter(|d| !d.is_null())
                        .map(output_text)
                        .collect(),
                ))
            }
            Func::ConcatWs => {
                let Some(sep) = args.first() else {
                    return Ok(Datum::Null);
                };
                if sep.is_null() {
                    return Ok(Datum::Null);
                }
                let parts: Vec<String> = args[1..]
                    .iter()
                    .filter(|d| !d.is_null())
                    .map(output_text)
                    .collect();
                return Ok(Datum::Text(parts.join(text(sep))));
            }
            Func::JsonBuildObject { jsonb } => return build_object(args, *jsonb),
            Func::QuoteNullable => {
                return Ok(Datum::Text(match args.first() {
                    Some(Datum::Null) | None => "NULL".into(),
                    Some(d) => quote_literal(text(d)),
                }))
            }
            Func::Format => {
                return match args.first() {
                    Some(Datum::Null) | None => Ok(Datum::Null),
                    Some(f) => format_text(text(f), &args[1..]).map(Datum::Text),
                }
            }
            Func::Array(op) if !op.is_strict() => return array_op(op, args),
            Func::JsonBuildArray { jsonb } => {
                let mut out = String::from("[");
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    a.write_json(&mut out);
                }
                out.push(']');
                return json_result(out, *jsonb);
            }
            Func::RowToJson(names) => {
                let mut out = String::from("{");
                for (i, (name, a)) in names.iter().zip(args).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    crate::repr::write_json_string(name, &mut out);
                    out.push(':');
                    a.write_json(&mut out);
                }
                out.push('}');
                return Ok(Datum::Json(out));
            }
            _ => {}
        }
        if args.iter().any(Datum::is_null) {
            return Ok(Datum::Null);
        }
        let a = arg(args, 0)?;
        Ok(match self {
            Func::Lower => Datum::Text(text(a).to_lowercase()),
            Func::Upper => Datum::Text(text(a).to_uppercase()),
            Func::Length => Datum::Int(text(a).chars().count() as i64),
            Func::OctetLength => Datum::Int(text(a).len() as i64),
            Func::Substr => {
                let s: Vec<char> = text(a).chars().collect();
                let start = int(arg(args, 1)?);
                let end = match args.get(2) {
                    Some(c) => {
                        let c = int(c);
                        if c < 0 {
                            return err("negative substring length not allowed");
                        }
                        start.saturating_add(c)
                    }
                    None => i64::MAX,
                };
                let from = (start.max(1) - 1) as usize;
                let to = (end.max(1) - 1).min(s.len() as i64) as usize;
                Datum::Text(if from < to {
                    s[from..to].iter().collect()
                } else {
                    String::new()
                })
            }
            Func::Strpos => {
                let (s, sub) = (text(a), text(arg(args, 1)?));
                Datum::Int(match s.find(sub) {
                    Some(byte) => s[..byte].chars().count() as i64 + 1,
                    None => 0,
                })
            }
            Func::Replace => {
                let from = text(arg(args, 1)?);
                if from.is_empty() {
                    a.clone()
                } else {
                    Datum::Text(text(a).replace(from, text(arg(args, 2)?)))
                }
            }
            Func::Trim { leading, trailing } => {
                let chars: Vec<char> = match args.get(1) {
                    Some(c) => text(c).chars().collect(),
                    None => vec![' '],
                };
                let mut s = text(a);
                if *leading {
                    s = s.trim_start_matches(|c| chars.contains(&c));
                }
                if *trailing {
                    s = s.trim_end_matches(|c| chars.contains(&c));
                }
                Datum::Text(s.to_string())
            }
            Func::BpcharToText => Datum::Text(text(a).trim_end_matches(' ').to_string()),
            Func::SplitPart => {
                let (s, delim, n) = (text(a), text(arg(args, 1)?), int(arg(args, 2)?));
                if n == 0 {
                    return err("field position must not be zero");
                }
                let parts: Vec<&str> = if delim.is_empty() {
                    vec![s]
                } else {
                    s.split(delim).collect()
                };
                let idx = if n > 0 { n - 1 } else { parts.len() as i64 + n };
                Datum::Text(
                    usize::try_from(idx)
                        .ok()
                        .and_then(|i| parts.get(i))
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                )
            }
            Func::Left | Func::Right => {
                let s: Vec<char> = text(a).chars().collect();
                let n = int(arg(args, 1)?);
                let len = s.len() as i64;
                let keep = if n >= 0 { n.min(len) } else { (len + n).max(0) } as usize;
                Datum::Text(if *self == Func::Left {
                    s[..keep].iter().collect()
                } else {
                    s[s.len() - keep..].iter().collect()
                })
            }
            Func::Repeat => {
                let n = int(arg(args, 1)?).max(0) as usize;
                if text(a).len().saturating_mul(n) > 1 << 28 {
                    return err("requested length too large");
                }
                Datum::Text(text(a).repeat(n))
            }
            Func::Reverse => Datum::Text(text(a).chars().rev().collect()),
            Func::Lpad | Func::Rpad => {
                let s: Vec<char> = text(a).chars().collect();
                let n = int(arg(args, 1)?).max(0) as usize;
                if n > 1 << 28 {
                    return err("requested length too large");
                }
                let fill: Vec<char> = match args.get(2) {
                    Some(f) => text(f).chars().collect(),
                    None => vec![' '],
                };
                if s.len() >= n || fill.is_empty() {
                    return Ok(Datum::Text(s[..n.min(s.len())].iter().collect()));
                }
                let pad: String = fill.iter().cycle().take(n - s.len()).collect();
                let s: String = s.iter().collect();
                Datum::Text(if *self == Func::Lpad {
                    pad + &s
                } else {
                    s + &pad
                })
            }
            Func::Initcap => {
                let mut out = String::new();
                let mut start = true;
                for c in text(a).chars() {
                    if c.is_alphanumeric() {
                        if start {
                            out.extend(c.to_uppercase());
                        } else {
                            out.extend(c.to_lowercase());
                        }
                        start = false;
                    } else {
                        out.push(c);
                        start = true;
                    }
                }
                Datum::Text(out)
            }
            Func::Abs => match a {
                Datum::Int(i) => {
                    let v = i.checked_abs().ok_or_else(|| out_of_range(ty))?;
                    check_int(v, ty)?
                }
                Datum::Numeric(n) => {
                    Datum::Numeric(if n.is_negative() { n.neg() } else { n.clone() })
                }
                other => float_out(float(other).abs(), ty),
            },
            Func::Sign => match a {
                Datum::Numeric(n) => Datum::Numeric(Numeric::from_i64(n.signum() as i64)),
                other => {
                    let f = float(other);
                    float_out(
                        if f > 0.0 {
                            1.0
                        } else if f < 0.0 {
                            -1.0
                        } else {
                            0.0
                        },
                        ty,
                    )
                }
            },
            Func::Round | Func::Trunc => match a {
                Datum::Numeric(n) => {
                    let digits = args.get(1).map(int).unwrap_or(0);
                    Datum::Numeric(round_numeric(n, digits, *self == Func::Trunc))
                }
                other => {
                    let f = float(other);
                    float_out(
                        if *self == Func::Round {
                            f.round_ties_even()
                        } else {
                            f.trunc()
                        },
                        ty,
                    )
                }
            },
            Func::Floor | Func::Ceil => match a {
                Datum::Numeric(n) => {
                    let t = n.trunc();
                    let exact = t.cmp_value(n) == std::cmp::Ordering::Equal;
                    Datum::Numeric(match (*self == Func::Floor, exact, n.is_negative()) {
                        (_, true, _) => t,
                        (true, false, true) => t.sub(&Numeric::from_i64(1)),
                        (false, false, false) => t.add(&Numeric::from_i64(1)),
                        _ => t,
                    })
                }
                other => {
                    let f = float(other);
                    float_out(
                        if *self == Func::Floor {
                            f.floor()
                        } else {
                            f.ceil()
                        },
                        ty,
                    )
                }
            },
            Func::Sqrt => {
                let f = float(a);
                if f < 0.0 {
                    return err("cannot take square root of a negative number");
                }
                Datum::Float8(F64(f.sqrt()))
            }
            Func::Cbrt => Datum::Float8(F64(float(a).cbrt())),
            Func::Exp => {
                let v = float(a).exp();
                if v.is_infinite() && float(a).is_finite() {
                    return err("value out of range: overflow");
                }
                if v == 0.0 && float(a).is_finite() {
                    return err("value out of range: underflow");
                }
                Datum::Float8(F64(v))
            }
            Func::Ln | Func::Log10 => {
                let f = float(a);
                if f == 0.0 {
                    return err("cannot take logarithm of zero");
                }
                if f < 0.0 {
                    return err("cannot take logarithm of a negative number");
                }
                Datum::Float8(F64(if *self == Func::Ln { f.ln() } else { f.log10() }))
            }
            Func::Power => {
                let (x, y) = (float(a), float(arg(args, 1)?));
                if x == 0.0 && y < 0.0 {
                    return err("zero raised to a negative power is undefined");
                }
                if x < 0.0 && y.fract() != 0.0 {
                    return err(
                        "a negative number raised to a non-integer power yields a complex result",
                    );
                }
                let v = x.powf(y);
                if v.is_infinite() && x.is_finite() && y.is_finite() {
                    return err("value out of range: overflow");
                }
                Datum::Float8(F64(v))
            }
            Func::Div => {
                let (Datum::Numeric(x), Datum::Numeric(y)) = (a, arg(args, 1)?) else {
                    return err("div() needs numeric arguments");
                };
                Datum::Numeric(x.div(y).map_err(|e| EvalError(e.to_string()))?.trunc())
            }
            Func::Extract(field) => extract(field, a, true)?,
            Func::DatePart(field) => extract(field, a, false)?,
            Func::DateTrunc(field) => date_trunc(field, a, ty)?,
            Func::ToLocal(cx) => match a {
                Datum::TimestampTz(t) => {
                    Datum::Timestamp(datetime::tz_to_local(*t, cx.zone()).map_err(EvalError)?)
                }
                other => return err(format!("cannot cast {} to timestamp", other.to_text())),
            },
            Func::FromLocal(cx) => match a {
                Datum::Timestamp(t) => {
                    Datum::TimestampTz(datetime::local_to_tz(*t, cx.zone()).map_err(EvalError)?)
                }
                Datum::Date(d) => {
                    Datum::TimestampTz(datetime::date_to_tz(*d, cx.zone()).map_err(EvalError)?)
                }
                other => return err(format!("cannot cast {} to timestamptz", other.to_text())),
            },
            Func::DateTimeText(cx) => {
                let mut out = String::new();
                a.write_text_in(cx, &mut out);
                Datum::Text(out)
            }
            Func::ParseDateTime(cx) => match a {
                Datum::Text(s) => Datum::from_text_in(ty, s, cx).map_err(|e| EvalError(e.0))?,
                other => other.clone(),
            },
            Func::DateTruncIn(field, cx) => date_trunc_in(field, a, cx)?,
            Func::AddInterval(cx) => match (a, arg(args, 1)?) {
                (Datum::TimestampTz(t), Datum::Interval(iv)) => {
                    Datum::TimestampTz(add_to_timestamptz(*t, iv, cx.zone()).map_err(EvalError)?)
                }
                _ => return err("timestamptz + interval of other values"),
            },
            Func::JsonIn(ty, cx) => match a {
                Datum::TimestampTz(t) => {
                    let mut out = String::new();
                    datetime::format_timestamptz_json(*t, cx.zone(), &mut out);
                    Datum::Text(out)
                }
                Datum::Json(j) => {
                    let elem = match ty {
                        Type::Array { elem, .. } => elem,
                        other => other,
                    };
                    Datum::Json(array_json_in(elem, j, cx.zone()).map_err(|e| EvalError(e.0))?)
                }
                other => other.clone(),
            },
            Func::ArrayText(elem, cx) => match a {
                Datum::Json(j) => {
                    Datum::Text(array_text_in(elem, j, cx).map_err(|e| EvalError(e.0))?)
                }
                _ => return err("array_out of a value that is not an array"),
            },
            Func::JsonGet { as_text } => {
                let doc = text(a);
                let found = match arg(args, 1)? {
                    Datum::Int(i) => json::element(doc, *i),
                    key => json::field(doc, text(key)),
                };
                json_out(found, *as_text)
            }
            Func::JsonPath { steps, as_text } => json_out(json::path(text(a), steps), *as_text),
            Func::ToJson { jsonb } => json_result(a.to_json_string(), *jsonb)?,
            Func::Json(op) => json_op(*op, args)?,
            Func::Array(op) => array_op(op, args)?,
            Func::RegexMatch {
                case_insensitive,
                negated,
            } => {
                let re = regex::compile(text(arg(args, 1)?), *case_insensitive, false)
                    .map_err(EvalError)?;
                Datum::Bool(re.is_match(text(a)) != *negated)
            }
            Func::RegexpReplace => {
                let (global, ci) = match args.get(3) {
                    Some(f) => regex::flags(text(f), true, "regexp_replace").map_err(EvalError)?,
                    None => (false, false),
                };
                let re = regex::compile(text(arg(args, 1)?), ci, true).map_err(EvalError)?;
                Datum::Text(regex::replace(&re, text(a), text(arg(args, 2)?), global))
            }
            Func::RegexpMatch => {
                let (_, ci) = match args.get(2) {
                    Some(f) => regex::flags(text(f), false, "regexp_match").map_err(EvalError)?,
                    None => (false, false),
                };
                let re = regex::compile(text(arg(args, 1)?), ci, true).map_err(EvalError)?;
                match regex::first_match(&re, text(a)) {
                    None => Datum::Null,
                    Some(groups) => array_datum(
                        &groups
                            .into_iter()
                            .map(|g| g.map(json::Value::String).unwrap_or(json::Value::Null))
                            .collect::<Vec<_>>(),
                    ),
                }
            }
            Func::Md5 => {
                use md5::Digest;
                let digest = md5::Md5::digest(text(a).as_bytes());
                Datum::Text(digest.iter().map(|b| format!("{b:02x}")).collect())
            }
            Func::StartsWith => Datum::Bool(text(a).starts_with(text(arg(args, 1)?))),
            Func::Translate => {
                let from: Vec<char> = text(arg(args, 1)?).chars().collect();
                let to: Vec<char> = text(arg(args, 2)?).chars().collect();
                Datum::Text(
                    text(a)
                        .chars()
                        .filter_map(|c| match from.iter().position(|f| *f == c) {
                            Some(i) => to.get(i).copied(),
                            None => Some(c),
                        })
                        .collect(),
                )
            }
            Func::Ascii => Datum::Int(text(a).chars().next().map_or(0, |c| c as i64)),
            Func::Chr => {
                let code = int(a);
                if code == 0 {
                    return err("null character not permitted");
                }
                if code < 0 {
                    return err("character number must be positive");
                }
                match u32::try_from(code).ok().and_then(char::from_u32) {
                    Some(c) => Datum::Text(c.to_string()),
                    None if (0xD800..=0xDFFF).contains(&code) => {
                        return err(format!(
                            "requested character not valid for encoding: {code}"
                        ))
                    }
                    None => {
                        return err(format!(
                            "requested character too large for encoding: {code}"
                        ))
                    }
                }
            }
            Func::Age => match (a, arg(args, 1)?) {
                (
                    Datum::Timestamp(x) | Datum::TimestampTz(x),
                    Datum::Timestamp(y) | Datum::TimestampTz(y),
                ) => Datum::Interval(age(*x, *y)?),
                _ => return err("age() of values that are not timestamps"),
            },
            Func::MakeDate => {
                let (y, m, d) = (int(a), int(arg(args, 1)?), int(arg(args, 2)?));
                Datum::Date(make_date(y, m, d)? as i32)
            }
            Func::MakeTimestamp => {
                let (y, m, d) = (int(a), int(arg(args, 1)?), int(arg(args, 2)?));
                let (h, mi, sec) = (int(arg(args, 3)?), int(arg(args, 4)?), float(arg(args, 5)?));
                let days = make_date(y, m, d)?;
                let bad_time = !(0..=24).contains(&h)
                    || !(0..=59).contains(&mi)
                    || !(0.0..=60.0).contains(&sec)
                    || (h == 24 && (mi > 0 || sec > 0.0));
                if bad_time {
                    return err(format!(
                        "time field value out of range: {h}:{mi:02}:{}",
                        pad2(&g_format(sec))
                    ));
                }
                let micros =
                    ((h * 60 + mi) * 60) * 1_000_000 + (sec * 1_000_000.0).round_ties_even() as i64;
                let t = days
                    .checked_mul(MICROS_PER_DAY)
                    .and_then(|v| v.checked_add(micros))
                    .filter(|t| datetime::is_valid_timestamp(*t));
                match t {
                    Some(t) => Datum::Timestamp(t),
                    None => {
                        return err(format!(
                            "timestamp out of range: \"{y}-{m:02}-{d:02} {h}:{mi:02}:{}\"",
                            pad2(&g_format(sec))
                        ))
                    }
                }
            }
            Func::DateBin => {
                let (Datum::Interval(stride), source, origin) = (a, arg(args, 1)?, arg(args, 2)?)
                else {
                    return err("date_bin() needs an interval stride");
                };
                let (Datum::Timestamp(t) | Datum::TimestampTz(t)) = source else {
                    return err("date_bin() needs timestamps");
                };
                let (Datum::Timestamp(o) | Datum::TimestampTz(o)) = origin else {
                    return err("date_bin() needs timestamps");
                };
                if *t == TS_POS_INF || *t == TS_NEG_INF {
                    return Ok(source.clone());
                }
                if *o == TS_POS_INF || *o == TS_NEG_INF {
                    return err("origin out of range");
                }
                if stride.months != 0 {
                    return err(
                        "timestamps cannot be binned into intervals containing months or years",
                    );
                }
                let stride = (stride.days as i64)
                    .checked_mul(MICROS_PER_DAY)
                    .and_then(|d| d.checked_add(stride.micros))
                    .ok_or_else(|| EvalError("interval out of range".into()))?;
                if stride <= 0 {
                    return err("stride must be greater than zero");
                }
                let diff = t
                    .checked_sub(*o)
                    .ok_or_else(|| EvalError("interval out of range".into()))?;
                let modulo = diff % stride;
                let mut result = o + (diff - modulo);
                if modulo < 0 {
                    result -= stride;
                }
                if !datetime::is_valid_timestamp(result) {
                    return err("timestamp out of range");
                }
                match source {
                    Datum::Timestamp(_) => Datum::Timestamp(result),
                    _ => Datum::TimestampTz(result),
                }
            }
            Func::Justify { days, hours } => {
                let Datum::Interval(iv) = a else {
                    return err("justify of a value that is not an interval");
                };
                Datum::Interval(justify(iv, *days, *hours)?)
            }
            Func::ToChar => match a {
                Datum::Timestamp(t) if *t == TS_POS_INF || *t == TS_NEG_INF => Datum::Null,
                Datum::Timestamp(t) => {
                    let f = text(arg(args, 1)?);
                    if f.is_empty() {
                        return Ok(Datum::Null);
                    }
                    Datum::Text(
                        crate::repr::to_char::timestamp(*t, f)
                            .map_err(|w| EvalError(format!("unsupported: {w}")))?,
                    )
                }
                Datum::Numeric(n) => {
                    let f = text(arg(args, 1)?);
                    if f.is_empty() {
                        return Ok(Datum::Null);
                    }
                    Datum::Text(crate::repr::to_char::number(n, f).map_err(|w| {
                        EvalError(
                            if w.starts_with("unsupported") || w.starts_with("multiple") {
                                w
                            } else {
                                format!("unsupported: {w}")
                            },
                        )
                    })?)
                }
                _ => return err("to_char() of a value that is neither a timestamp nor a number"),
            },
            Func::QuoteIdent => Datum::Text(quote_ident(text(a))),
            Func::QuoteLiteral => Datum::Text(quote_literal(text(a))),
            Func::Concat
            | Func::ConcatWs
            | Func::JsonBuildObject { .. }
            | Func::JsonBuildArray { .. }
            | Func::RowToJson(_)
            | Func::QuoteNullable
            | Func::Format => unreachable!("handled above"),
        })
    }
}

impl Func {
    /// Whether the function is NULL whenever an argument is NULL (the
    /// binder folds a call with a constant NULL argument to NULL).
    pub fn is_strict(&self) -> bool {
        !matches!(
            self,
            Func::Concat
                | Func::ConcatWs
                | Func::JsonBuildObject { .. }
                | Func::JsonBuildArray { .. }
                | Func::RowToJson(_)
                | Func::QuoteNullable
                | Func::Format
        ) && !matches!(self, Func::Array(op) if !op.is_strict())
    }
}

impl ArrayOp {
    fn is_strict(&self) -> bool {
        !matches!(
            self,
            ArrayOp::Build
                | ArrayOp::Position
                | ArrayOp::Append
                | ArrayOp::Cat
                | ArrayOp::ToString(..)
                | ArrayOp::FromString
        )
    }
}

/// The elements of an array value, a multidimensional one flattened.
fn array_elements(d: &Datum) -> Result<Vec<json::Value>, EvalError> {
    fn flatten(v: json::Value, out: &mut Vec<json::Value>) {
        match v {
            json::Value::Array(items) => items.into_iter().for_each(|i| flatten(i, out)),
            other => out.push(other),
        }
    }
    let mut out = Vec::new();
    match json_value(d)? {
        json::Value::Array(items) => items.into_iter().for_each(|i| flatten(i, &mut out)),
        _ => return err("expected an array"),
    }
    Ok(out)
}

/// Whether an array value has more than one dimension.
fn multidimensional(d: &Datum) -> Result<bool, EvalError> {
    Ok(match json_value(d)? {
        json::Value::Array(items) => items.iter().any(|i| matches!(i, json::Value::Array(_))),
        _ => false,
    })
}

pub(crate) fn array_datum(items: &[json::Value]) -> Datum {
    let mut out = String::new();
    json::Value::Array(items.to_vec()).write_compact(&mut out);
    Datum::Json(out)
}

/// An array element (as the array's JSON holds it) as a value of the
/// element type.
fn element_datum(elem: &Type, v: json::Value) -> Result<Datum, EvalError> {
    let written = |v: &json::Value| {
        let mut s = String::new();
        v.write_compact(&mut s);
        s
    };
    Ok(match (elem, v) {
        (_, json::Value::Null) => Datum::Null,
        (Type::Json | Type::Jsonb, v) => Datum::Json(written(&v)),
        (Type::Bool, json::Value::Bool(b)) => Datum::Bool(b),
        (_, json::Value::String(s)) => Datum::from_text(elem, &s).map_err(|e| EvalError(e.0))?,
        (_, v) => Datum::from_text(elem, &written(&v)).map_err(|e| EvalError(e.0))?,
    })
}

fn element_of(d: &Datum) -> Result<json::Value, EvalError> {
    json::Value::parse(&d.to_json_string()).map_err(EvalError)
}

fn array_op(op: &ArrayOp, args: &[Datum]) -> Result<Datum, EvalError> {
    let found = |items: &[json::Value], v: &json::Value| {
        *v != json::Value::Null && items.iter().any(|i| i.scalar_eq(v))
    };
    Ok(match op {
        ArrayOp::Build => {
            let mut out = String::from("[");
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                a.write_json(&mut out);
            }
            out.push(']');
            Datum::Json(out)
        }
        ArrayOp::Contains | ArrayOp::ContainedBy => {
            let (a, b) = (
                array_elements(arg(args, 0)?)?,
                array_elements(arg(args, 1)?)?,
            );
            let (big, small) = if *op == ArrayOp::Contains {
                (a, b)
            } else {
                (b, a)
            };
            Datum::Bool(small.iter().all(|v| found(&big, v)))
        }
        ArrayOp::Overlaps => {
            let (a, b) = (
                array_elements(arg(args, 0)?)?,
                array_elements(arg(args, 1)?)?,
            );
            Datum::Bool(b.iter().any(|v| found(&a, v)))
        }
        ArrayOp::Length => {
            let dim = int(arg(args, 1)?);
            let mut v = json_value(arg(args, 0)?)?;
            let mut d = 1;
            loop {
                let json::Value::Array(items) = v else {
                    return Ok(Datum::Null);
                };
                if items.is_empty() {
                    return Ok(Datum::Null);
                }
                if d == dim {
                    return Ok(Datum::Int(items.len() as i64));
                }
                if d > dim {
                    return Ok(Datum::Null);
                }
                v = items.into_iter().next().unwrap_or(json::Value::Null);
                d += 1;
            }
        }
        ArrayOp::Cardinality => Datum::Int(array_elements(arg(args, 0)?)?.len() as i64),
        ArrayOp::Index(elem) => {
            if args.iter().any(Datum::is_null) {
                return Ok(Datum::Null);
            }
            // Elements that are JSON documents are one dimension deep.
            let documents = matches!(elem, Type::Json | Type::Jsonb);
            if documents && args.len() > 2 {
                return Ok(Datum::Null);
            }
            let mut v = json_value(arg(args, 0)?)?;
            for i in &args[1..] {
                let json::Value::Array(items) = v else {
                    return Ok(Datum::Null);
                };
                let Some(item) = int(i)
                    .checked_sub(1)
                    .and_then(|at| usize::try_from(at).ok())
                    .and_then(|at| items.into_iter().nth(at))
                else {
                    return Ok(Datum::Null);
                };
                v = item;
            }
            match v {
                json::Value::Array(_) if !documents => Datum::Null,
                v => element_datum(elem, v)?,
            }
        }
        ArrayOp::Slice { lower, upper } => {
            if args.iter().any(Datum::is_null) {
                return Ok(Datum::Null);
            }
            let json::Value::Array(items) = json_value(arg(args, 0)?)? else {
                return Ok(Datum::Null);
            };
            let len = items.len() as i64;
            let lo = if *lower { int(arg(args, 1)?) } else { 1 };
            let hi = if *upper {
                int(arg(args, 1 + usize::from(*lower))?)
            } else {
                len
            };
            let (lo, hi) = (lo.max(1), hi.min(len));
            if lo > hi {
                array_datum(&[])
            } else {
                array_datum(&items[(lo - 1) as usize..hi as usize])
            }
        }
        ArrayOp::Position => {
            let a = arg(args, 0)?;
            if a.is_null() {
                return Ok(Datum::Null);
            }
            if multidimensional(a)? {
                return err("searching for elements in multidimensional arrays is not supported");
            }
            let v = element_of(arg(args, 1)?)?;
            let items = array_elements(a)?;
            match items.iter().position(|i| i.scalar_eq(&v)) {
                Some(p) => Datum::Int(p as i64 + 1),
                None => Datum::Null,
            }
        }
        ArrayOp::Append => {
            let a = arg(args, 0)?;
            let mut items = if a.is_null() {
                Vec::new()
            } else {
                if multidimensional(a)? {
                    return err("argument must be empty or one-dimensional array");
                }
                array_elements(a)?
            };
            items.push(element_of(arg(args, 1)?)?);
            array_datum(&items)
        }
        ArrayOp::Cat => {
            let (a, b) = (arg(args, 0)?, arg(args, 1)?);
            if a.is_null() || b.is_null() {
                return Ok(if a.is_null() { b.clone() } else { a.clone() });
            }
            let (ea, eb) = (array_elements(a)?, array_elements(b)?);
            if ea.is_empty() {
                return Ok(b.clone());
            }
            if eb.is_empty() {
                return Ok(a.clone());
            }
            if multidimensional(a)? || multidimensional(b)? {
                return err("array_cat of multidimensional arrays is not supported by viewcast");
            }
            array_datum(&[ea, eb].concat())
        }
        ArrayOp::Any { negated } => {
            let v = element_of(arg(args, 0)?)?;
            let items = array_elements(arg(args, 1)?)?;
            if items
                .iter()
                .any(|i| i.scalar_eq(&v) && *i != json::Value::Null)
            {
                Datum::Bool(!negated)
            } else if items.contains(&json::Value::Null) {
                Datum::Null
            } else {
                Datum::Bool(*negated)
            }
        }
        ArrayOp::ToString(elem, cx) => {
            let (a, delim) = (arg(args, 0)?, arg(args, 1)?);
            if a.is_null() || delim.is_null() {
                return Ok(Datum::Null);
            }
            let null_text = args.get(2).filter(|d| !d.is_null()).map(text);
            let texts =
                crate::repr::array_element_texts(elem, text(a), cx).map_err(|e| EvalError(e.0))?;
            let parts: Vec<&str> = texts
                .iter()
                .filter_map(|t| match t {
                    Some(t) => Some(t.as_str()),
                    None => null_text,
                })
                .collect();
            Datum::Text(parts.join(text(delim)))
        }
        ArrayOp::FromString => {
            let s = arg(args, 0)?;
            if s.is_null() {
                return Ok(Datum::Null);
            }
            let s = text(s);
            let null_text = args.get(2).filter(|d| !d.is_null()).map(text);
            let parts: Vec<String> = match arg(args, 1)? {
                _ if s.is_empty() => Vec::new(),
                Datum::Null => s.chars().map(String::from).collect(),
                d if text(d).is_empty() => vec![s.to_string()],
                d => s.split(text(d)).map(String::from).collect(),
            };
            let items: Vec<json::Value> = parts
                .into_iter()
                .map(|p| {
                    if Some(p.as_str()) == null_text {
                        json::Value::Null
                    } else {
                        json::Value::String(p)
                    }
                })
                .collect();
            array_datum(&items)
        }
    })
}

/// JSON text built by a json function, as `json` (kept as written) or as
/// `jsonb` (canonical: numbers as numeric writes them, keys sorted).
fn json_result(text: String, jsonb: bool) -> Result<Datum, EvalError> {
    if jsonb {
        json::to_jsonb(&text).map(Datum::Json).map_err(EvalError)
    } else {
        Ok(Datum::Json(text))
    }
}

/// `json_build_object(k1, v1, ...)`: `{"k1" : v1, "k2" : v2}`. A key is
/// its value's `to_json` text, quoted if it is not a string already; it may
/// not be NULL, and Postgres refuses arrays, rows and json as keys (the
/// binder checks the types).
fn build_object(args: &[Datum], jsonb: bool) -> Result<Datum, EvalError> {
    if !args.len().is_multiple_of(2) {
        return err("argument list must have even number of elements");
    }
    let mut out = String::from("{");
    for (i, pair) in args.chunks(2).enumerate() {
        if pair[0].is_null() {
            return err(format!("argument {} cannot be null", 2 * i + 1));
        }
        if i > 0 {
            out.push_str(", ");
        }
        let key = pair[0].to_json_string();
        if key.starts_with('"') {
            out.push_str(&key);
        } else {
            crate::repr::write_json_string(&key, &mut out);
        }
        out.push_str(" : ");
        pair[1].write_json(&mut out);
    }
    out.push('}');
    json_result(out, jsonb)
}

fn json_value(d: &Datum) -> Result<json::Value, EvalError> {
    json::Value::parse(text(d)).map_err(EvalError)
}

/// The strings of a text array (held as its JSON array); NULL elements
/// are `None`.
fn text_array(d: &Datum) -> Result<Vec<Option<String>>, EvalError> {
    match json_value(d)? {
        json::Value::Array(items) => Ok(items
            .into_iter()
            .map(|v| match v {
                json::Value::String(s) => Some(s),
                _ => None,
            })
            .collect()),
        _ => err("expected a text array"),
    }
}

fn jsonb_datum(v: &json::Value) -> Result<Datum, EvalError> {
    v.to_jsonb().map(Datum::Json).map_err(EvalError)
}

/// The json/jsonb operators and functions over non-NULL arguments.
fn json_op(op: JsonOp, args: &[Datum]) -> Result<Datum, EvalError> {
    let doc = json_value(arg(args, 0)?)?;
    Ok(match op {
        JsonOp::Exists => Datum::Bool(doc.has_key(text(arg(args, 1)?))),
        JsonOp::ExistsAny | JsonOp::ExistsAll => {
            let keys = text_array(arg(args, 1)?)?;
            let mut present = keys.iter().flatten().map(|k| doc.has_key(k));
            Datum::Bool(if op == JsonOp::ExistsAny {
                present.any(|b| b)
            } else {
                present.all(|b| b)
            })
        }
        JsonOp::Contains => Datum::Bool(doc.contains(&json_value(arg(args, 1)?)?)),
        JsonOp::ContainedBy => Datum::Bool(json_value(arg(args, 1)?)?.contains(&doc)),
        JsonOp::DeleteKey => jsonb_datum(&doc.delete_key(text(arg(args, 1)?)).map_err(EvalError)?)?,
        JsonOp::DeleteKeys => {
            let mut v = doc;
            if v.is_scalar() {
                return err("cannot delete from scalar");
            }
            for k in text_array(arg(args, 1)?)?.iter().flatten() {
                v = v.delete_key(k).map_err(EvalError)?;
            }
            jsonb_datum(&v)?
        }
        JsonOp::DeleteIndex => {
            jsonb_datum(&doc.delete_index(int(arg(args, 1)?)).map_err(EvalError)?)?
        }
        JsonOp::Concat => jsonb_datum(&doc.concat(json_value(arg(args, 1)?)?))?,
        JsonOp::DeletePath => {
            if doc.is_scalar() {
                return err("cannot delete path in scalar");
            }
            let path = text_array(arg(args, 1)?)?;
            let mut v = doc;
            v.delete_path(&path, 0).map_err(EvalError)?;
            jsonb_datum(&v)?
        }
        JsonOp::Set => {
            if doc.is_scalar() {
                return err("cannot set path in scalar");
            }
            let path = text_array(arg(args, 1)?)?;
            let new = json_value(arg(args, 2)?)?;
            let create = !matches!(args.get(3), Some(Datum::Bool(false)));
            let mut v = doc;
            if !path.is_empty() {
                v.set_path(&path, &new, create, 0).map_err(EvalError)?;
            }
            jsonb_datum(&v)?
        }
        JsonOp::TypeOf => Datum::Text(doc.type_name().into()),
        JsonOp::ArrayLength => match doc {
            json::Value::Array(items) => Datum::Int(items.len() as i64),
            json::Value::Object(_) => return err("cannot get array length of a non-array"),
            _ => return err("cannot get array length of a scalar"),
        },
        JsonOp::StripNulls => jsonb_datum(&doc.strip_nulls())?,
        JsonOp::JsonStripNulls => {
            let mut out = String::new();
            doc.strip_nulls().write_compact(&mut out);
            Datum::Json(out)
        }
        JsonOp::Pretty => {
            let mut out = String::new();
            doc.write_pretty(0, &mut out);
            Datum::Text(out)
        }
    })
}

/// `%g` of a seconds value, as Postgres's time error messages print it.
fn g_format(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e6 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    // Six significant digits.
    let int_digits = s
        .split('.')
        .next()
        .map_or(0, |i| i.trim_start_matches('-').len());
    let keep = 6usize.saturating_sub(int_digits);
    format!("{v:.keep$}")
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}

/// `%02g`: at least two characters, zero-padded.
fn pad2(s: &str) -> String {
    if s.len() < 2 {
        format!("0{s}")
    } else {
        s.to_string()
    }
}

/// Days since 2000-01-01 of a `make_date` year (negative: BC), month and day.
fn make_date(y: i64, m: i64, d: i64) -> Result<i64, EvalError> {
    let bad = || EvalError(format!("date field value out of range: {y}-{m:02}-{d:02}"));
    if y == 0 || !(1..=12).contains(&m) || d < 1 {
        return Err(bad());
    }
    let astro = if y < 0 { y + 1 } else { y };
    if d > datetime::days_in_month(astro, m as u32) as i64 {
        return Err(bad());
    }
    let days = date_from_ymd(astro, m as u32, d as u32);
    if !datetime::is_valid_date(days) {
        return Err(EvalError(format!("date out of range: {y}-{m:02}-{d:02}")));
    }
    Ok(days)
}

/// `age(a, b)` as Postgres's `timestamp_age`: the fields of `b` subtracted
/// from those of `a`, negative fields borrowed from the next larger one
/// (days by the length of the month of the earlier value).
fn age(a: i64, b: i64) -> Result<Interval, EvalError> {
    if [a, b].iter().any(|t| *t == TS_POS_INF || *t == TS_NEG_INF) {
        return err("unsupported: age() of an infinite timestamp");
    }
    let fields = |t: i64| {
        let (days, time) = split_timestamp(t);
        let (y, m, d) = ymd_from_date(days);
        (
            y,
            m as i64,
            d as i64,
            time / 3_600_000_000,
            time / 60_000_000 % 60,
            time / 1_000_000 % 60,
            time % 1_000_000,
        )
    };
    let (y1, mo1, d1, h1, mi1, s1, f1) = fields(a);
    let (y2, mo2, d2, h2, mi2, s2, f2) = fields(b);
    let neg = a < b;
    let flip = |v: i64| if neg { -v } else { v };
    let (mut year, mut mon, mut mday, mut hour, mut min, mut sec, mut fsec) = (
        flip(y1 - y2),
        flip(mo1 - mo2),
        flip(d1 - d2),
        flip(h1 - h2),
        flip(mi1 - mi2),
        flip(s1 - s2),
        flip(f1 - f2),
    );
    while fsec < 0 {
        fsec += 1_000_000;
        sec -= 1;
    }
    while sec < 0 {
        sec += 60;
        min -= 1;
    }
    while min < 0 {
        min += 60;
        hour -= 1;
    }
    while hour < 0 {
        hour += 24;
        mday -= 1;
    }
    while mday < 0 {
        let (y, m) = if neg { (y1, mo1) } else { (y2, mo2) };
        mday += datetime::days_in_month(y, m as u32) as i64;
        mon -= 1;
    }
    while mon < 0 {
        mon += 12;
        year -= 1;
    }
    let months = flip(year * 12 + mon);
    let micros = flip(((hour * 60 + min) * 60 + sec) * 1_000_000 + fsec);
    Ok(Interval {
        months: i32::try_from(months).map_err(|_| EvalError("interval out of range".into()))?,
        days: flip(mday) as i32,
        micros,
    })
}

/// `justify_days` (30 days to a month), `justify_hours` (24 hours to a
/// day) and `justify_interval` (both, signs made to agree), as Postgres 15.
fn justify(iv: &Interval, days: bool, hours: bool) -> Result<Interval, EvalError> {
    const MONTH: i64 = 30;
    let overflow = || EvalError("interval out of range".into());
    let (mut month, mut day, mut time) = (iv.months as i64, iv.days as i64, iv.micros);
    if days && hours {
        if (day > 0 && time > 0) || (day < 0 && time < 0) {
            let whole = day / MONTH;
            day -= whole * MONTH;
            month += whole;
        }
        let whole_day = time / MICROS_PER_DAY;
        time -= whole_day * MICROS_PER_DAY;
        day += whole_day;
        let whole = day / MONTH;
        day -= whole * MONTH;
        month += whole;
        if month > 0 && (day < 0 || (day == 0 && time < 0)) {
            day += MONTH;
            month -= 1;
        } else if month < 0 && (day > 0 || (day == 0 && time > 0)) {
            day -= MONTH;
            month += 1;
        }
        if day > 0 && time < 0 {
            time += MICROS_PER_DAY;
            day -= 1;
        } else if day < 0 && time > 0 {
            time -= MICROS_PER_DAY;
            day += 1;
        }
    } else if days {
        let whole = day / MONTH;
        day -= whole * MONTH;
        month += whole;
        if month > 0 && day < 0 {
            day += MONTH;
            month -= 1;
        } else if month < 0 && day > 0 {
            day -= MONTH;
            month += 1;
        }
    } else {
        let whole_day = time / MICROS_PER_DAY;
        time -= whole_day * MICROS_PER_DAY;
        day += whole_day;
        if day > 0 && time < 0 {
            time += MICROS_PER_DAY;
            day -= 1;
        } else if day < 0 && time > 0 {
            time -= MICROS_PER_DAY;
            day += 1;
        }
    }
    Ok(Interval {
        months: i32::try_from(month).map_err(|_| overflow())?,
        days: i32::try_from(day).map_err(|_| overflow())?,
        micros: time,
    })
}

/// Keywords `quote_ident` quotes: all of Postgres 15's but the unreserved
/// ones (`pg_get_keywords()` where `catcode <> 'U'`).
const QUOTED_KEYWORDS: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

/// `quote_ident`: quoted unless a lowercase identifier that is not a
/// reserved-ish keyword; quotes inside are doubled.
fn quote_ident(s: &str) -> String {
    let safe = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !QUOTED_KEYWORDS.contains(&s);
    if safe {
        return s.to_string();
    }
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `quote_literal`: quotes doubled; with a backslash, an `E'...'` string
/// with backslashes doubled.
fn quote_literal(s: &str) -> String {
    let body = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// `format(fmt, args...)`: `%[n$][-][width]type` with types `s`, `I`, `L`
/// and `%%`; a `*` width is refused.
fn format_text(fmt: &str, args: &[Datum]) -> Result<String, EvalError> {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let mut next_arg = 0usize;
    let too_few = || EvalError("too few arguments for format()".into());
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        // An optional argument position `n$`, flags, then width.
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let mut position = None;
        let mut width = None;
        let mut left = false;
        if chars.peek() == Some(&'$') {
            chars.next();
            let n: usize = digits
                .parse()
                .map_err(|_| EvalError("number is out of range".into()))?;
            if n == 0 {
                return err("format specifies argument 0, but arguments are numbered from 1");
            }
            position = Some(n - 1);
            digits.clear();
        }
        if digits.is_empty() {
            while chars.peek() == Some(&'-') {
                left = true;
                chars.next();
            }
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
        }
        if !digits.is_empty() {
            width = Some(
                digits
                    .parse::<usize>()
                    .map_err(|_| EvalError("number is out of range".into()))?,
            );
        }
        if chars.peek() == Some(&'*') {
            return err("unsupported: a * width in format()");
        }
        let Some(kind) = chars.next() else {
            return err("unterminated format() type specifier");
        };
        if !matches!(kind, 's' | 'I' | 'L') {
            return err(format!("unrecognized format() type specifier \"{kind}\""));
        }
        let i = position.unwrap_or(next_arg);
        next_arg = i + 1;
        let value = args.get(i).ok_or_else(too_few)?;
        let piece = match (kind, value) {
            ('s', Datum::Null) => String::new(),
            ('s', v) => output_text(v),
            ('I', Datum::Null) => {
                return err("null values cannot be formatted as an SQL identifier")
            }
            ('I', v) => quote_ident(&output_text(v)),
            (_, Datum::Null) => "NULL".into(),
            (_, v) => quote_literal(&output_text(v)),
        };
        let pad = width.unwrap_or(0).saturating_sub(piece.chars().count());
        if left {
            out.push_str(&piece);
            out.extend(std::iter::repeat_n(' ', pad));
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&piece);
        }
    }
    Ok(out)
}

fn json_out(found: Option<&str>, as_text: bool) -> Datum {
    match (found, as_text) {
        (None, _) => Datum::Null,
        (Some(v), true) => json::as_text(v).map(Datum::Text).unwrap_or(Datum::Null),
        (Some(v), false) => Datum::Json(v.to_string()),
    }
}

fn out_of_range(ty: &Type) -> EvalError {
    EvalError(
        match ty {
            Type::Int2 => "smallint out of range",
            Type::Int4 => "integer out of range",
            _ => "bigint out of range",
        }
        .into(),
    )
}

fn check_int(v: i64, ty: &Type) -> Result<Datum, EvalError> {
    let fits = match ty {
        Type::Int2 => i16::try_from(v).is_ok(),
        Type::Int4 => i32::try_from(v).is_ok(),
        _ => true,
    };
    if fits {
        Ok(Datum::Int(v))
    } else {
        Err(out_of_range(ty))
    }
}

/// `round`/`trunc` of a numeric to `digits` fractional digits (negative:
/// to tens, hundreds, ...).
fn round_numeric(n: &Numeric, digits: i64, truncate: bool) -> Numeric {
    if n.parts().is_none() {
        return n.clone();
    }
    let digits = digits.clamp(-MAX_RESULT_SCALE, MAX_RESULT_SCALE);
    if digits >= 0 {
        let d = digits as u32;
        if truncate {
            let factor = Numeric::parse(&format!("1{}", "0".repeat(d as usize)))
                .unwrap_or_else(|_| Numeric::from_i64(1));
            let scaled = n.mul(&factor).trunc();
            return scaled
                .div(&factor)
                .map(|q| q.with_scale(d))
                .unwrap_or_else(|_| n.clone());
        }
        return n.with_scale(d);
    }
    let factor = Numeric::parse(&format!("1{}", "0".repeat((-digits) as usize)))
        .unwrap_or_else(|_| Numeric::from_i64(1));
    let q = match n.div(&factor) {
        Ok(q) => q,
        Err(_) => return n.clone(),
    };
    let q = if truncate { q.trunc() } else { q.with_scale(0) };
    q.mul(&factor).with_scale(0)
}

/// Fields whose value grows with time: the only ones an infinite date or
/// timestamp has (an infinity); the others are NULL for it.
const MONOTONIC_FIELDS: &[&str] = &[
    "epoch",
    "year",
    "isoyear",
    "decade",
    "century",
    "millennium",
];

const TIME_FIELDS: &[&str] = &["hour", "minute", "second", "milliseconds", "microseconds"];

const DATE_FIELDS: &[&str] = &["month", "day", "quarter", "dow", "isodow", "doy", "week"];

/// `extract` (a numeric) and `date_part` (a float8) of a date or timestamp.
/// `extract` on a date is date-specific (time fields are errors);
/// `date_part` on a date reads it as the timestamp at its midnight.
fn extract(field: &str, v: &Datum, as_numeric: bool) -> Result<Datum, EvalError> {
    let (finite, type_name) = match v {
        // (days since 2000-01-01, microseconds into the day)
        Datum::Date(d) => (
            (*d != DATE_POS_INF && *d != DATE_NEG_INF).then_some((*d as i64, 0)),
            "date",
        ),
        Datum::Timestamp(t) => (
            (*t != TS_POS_INF && *t != TS_NEG_INF).then(|| split_timestamp(*t)),
            "timestamp without time zone",
        ),
        Datum::TimestampTz(t) => (
            (*t != TS_POS_INF && *t != TS_NEG_INF).then(|| split_timestamp(*t)),
            "timestamp with time zone",
        ),
        _ => return err(format!("cannot extract {field} from this value")),
    };
    let is_date = matches!(v, Datum::Date(_)) && as_numeric;
    let known = MONOTONIC_FIELDS.contains(&field)
        || DATE_FIELDS.contains(&field)
        || TIME_FIELDS.contains(&field);
    if !known {
        return err(format!(
            "unit \"{field}\" not recognized for type {type_name}"
        ));
    }
    if is_date && TIME_FIELDS.contains(&field) {
        return err(format!("unit \"{field}\" not supported for type date"));
    }
    let Some((days, time)) = finite else {
        if !MONOTONIC_FIELDS.contains(&field) {
            return Ok(Datum::Null);
        }
        let positive = matches!(
            v,
            Datum::Date(DATE_POS_INF)
                | Datum::Timestamp(TS_POS_INF)
                | Datum::TimestampTz(TS_POS_INF)
        );
        return Ok(match (as_numeric, positive) {
            (true, true) => Datum::Numeric(Numeric::PosInf),
            (true, false) => Datum::Numeric(Numeric::NegInf),
            (false, true) => Datum::Float8(F64(f64::INFINITY)),
            (false, false) => Datum::Float8(F64(f64::NEG_INFINITY)),
        });
    };
    let (y, m, d) = ymd_from_date(days);
    let dow = (days + 6).rem_euclid(7); // 2000-01-01 was a Saturday.
    let doy = days - date_from_ymd(y, 1, 1) + 1;
    // (value as scaled integer, scale)
    let (value, scale): (i128, u32) = match field {
        "year" => (if y > 0 { y } else { y - 1 } as i128, 0),
        "month" => (m as i128, 0),
        "day" => (d as i128, 0),
        "quarter" => (((m - 1) / 3 + 1) as i128, 0),
        "dow" => (dow as i128, 0),
        "isodow" => (if dow == 0 { 7 } else { dow } as i128, 0),
        "doy" => (doy as i128, 0),
        "decade" => (y.div_euclid(10) as i128, 0),
        "century" => (
            (if y > 0 {
                (y + 99) / 100
            } else {
                -((99 - (y - 1)) / 100)
            }) as i128,
            0,
        ),
        "millennium" => (
            (if y > 0 {
                (y + 999) / 1000
            } else {
                -((999 - (y - 1)) / 1000)
            }) as i128,
            0,
        ),
        "week" | "isoyear" => {
            let (iso_year, week) = iso_week(days);
            let iso_year = if field == "isoyear" && iso_year <= 0 {
                iso_year - 1
            } else {
                iso_year
            };
            (if field == "week" { week } else { iso_year } as i128, 0)
        }
        "epoch" => {
            let unix = (days + UNIX_TO_PG_DAYS) as i128 * MICROS_PER_DAY as i128 + time as i128;
            if is_date {
                (unix / 1_000_000, 0)
            } else {
                (unix, 6)
            }
        }
        "hour" => ((time / 3_600_000_000) as i128, 0),
        "minute" => ((time / 60_000_000 % 60) as i128, 0),
        "second" => ((time % 60_000_000) as i128, 6),
        "milliseconds" => ((time % 60_000_000) as i128, 3),
        _ => ((time % 60_000_000) as i128, 0), // microseconds
    };
    if !as_numeric && scale > 0 {
        // date_part computes fractional fields in floating point, and its last
        // bit is what Postgres's arithmetic gives, not the nearest double.
        let (sec, frac) = (
            (time % 60_000_000 / 1_000_000) as f64,
            (time % 1_000_000) as f64,
        );
        return Ok(Datum::Float8(F64(match field {
            "second" => sec + frac / 1_000_000.0,
            "milliseconds" => sec * 1000.0 + frac / 1000.0,
            // epoch: (timestamp - epoch) / 1000000.0, in floating point
            // where the difference would overflow an int64.
            _ => match i64::try_from(value) {
                Ok(v) => v as f64 / 1_000_000.0,
                Err(_) => {
                    let pg_micros = value - UNIX_TO_PG_DAYS as i128 * MICROS_PER_DAY as i128;
                    (pg_micros as f64 + (UNIX_TO_PG_DAYS * MICROS_PER_DAY) as f64) / 1_000_000.0
                }
            },
        })));
    }
    let num = Numeric::parse(&scaled_text(value, scale)).map_err(|e| EvalError(e.to_string()))?;
    Ok(if as_numeric {
        Datum::Numeric(num)
    } else {
        Datum::Float8(F64(num.to_f64()))
    })
}

/// `value / 10^scale` as decimal text; milliseconds are microseconds / 1000
/// shown with three decimals, so scale 3 divides by 1000 from micros.
fn scaled_text(value: i128, scale: u32) -> String {
    let neg = value < 0;
    let digits = value.unsigned_abs().to_string();
    let (int, frac) = if scale == 0 {
        (digits, String::new())
    } else {
        let width = scale as usize;
        let padded = format!("{digits:0>w$}", w = width + 1);
        let (i, f) = padded.split_at(padded.len() - width);
        (i.to_string(), f.to_string())
    };
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push_str(&int);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(&frac);
    }
    out
}

/// ISO 8601 (year, week) of a day counted from 2000-01-01.
fn iso_week(days: i64) -> (i64, i64) {
    let isodow = (days + 5).rem_euclid(7) + 1; // Monday = 1; 2000-01-01 was a Saturday.
    let thursday = days - isodow + 4;
    let (y, _, _) = ymd_from_date(thursday);
    let week = (thursday - date_from_ymd(y, 1, 1)) / 7 + 1;
    (y, week)
}

/// `date_trunc(field, timestamptz)` in a zone, as Postgres's
/// `timestamptz_trunc`: the wall-clock time is truncated; from `day` up the
/// result is that local time read in the zone again (midnight may have
/// another offset than the value had), below it keeps the value's offset.
fn date_trunc_in(field: &str, v: &Datum, cx: &TimeCx) -> Result<Datum, EvalError> {
    let Datum::TimestampTz(t) = v else {
        return date_trunc(field, v, &Type::TimestampTz);
    };
    if *t == TS_POS_INF || *t == TS_NEG_INF {
        return date_trunc(field, v, &Type::TimestampTz);
    }
    let zone = cx.zone();
    let offset = zone.offset_at(*t) as i64 * 1_000_000;
    let Datum::Timestamp(local) =
        date_trunc(field, &Datum::Timestamp(t + offset), &Type::Timestamp)?
    else {
        return err("date_trunc gave no timestamp");
    };
    let redo = !matches!(
        field,
        "microseconds" | "milliseconds" | "second" | "minute" | "hour"
    );
    let offset = if redo {
        zone.offset_for_local(local) as i64 * 1_000_000
    } else {
        offset
    };
    let utc = local - offset;
    if !datetime::is_valid_timestamp(utc) {
        return err("timestamp out of range");
    }
    Ok(Datum::TimestampTz(utc))
}

/// `date_trunc`: infinities stay infinite, a date is its midnight, and a
/// result before the first valid timestamp is an error, as in Postgres.
fn date_trunc(field: &str, v: &Datum, ty: &Type) -> Result<Datum, EvalError> {
    let micros = match v {
        Datum::Date(d) => datetime::date_to_timestamp(*d).map_err(EvalError)?,
        Datum::Timestamp(t) | Datum::TimestampTz(t) => *t,
        _ => return err("date_trunc needs a timestamp"),
    };
    let wrap = |t: i64| match ty {
        Type::Timestamp => Datum::Timestamp(t),
        _ => Datum::TimestampTz(t),
    };
    let units = [
        "microseconds",
        "milliseconds",
        "second",
        "minute",
        "hour",
        "day",
        "week",
        "month",
        "quarter",
        "year",
        "decade",
        "century",
        "millennium",
    ];
    if !units.contains(&field) {
        return err(format!("unit \"{field}\" not recognized"));
    }
    if micros == TS_POS_INF || micros == TS_NEG_INF {
        return Ok(wrap(micros));
    }
    if !datetime::is_valid_timestamp(micros) {
        return err("timestamp out of range");
    }
    let (days, time) = split_timestamp(micros);
    let (y, m, _) = ymd_from_date(days);
    let day_start = |d: i64| d * MICROS_PER_DAY;
    // Postgres's year arithmetic (year 0 is 1 BC), C division on positives.
    let millennium = |y: i64| {
        if y > 0 {
            (y + 999) / 1000 * 1000 - 999
        } else {
            -((999 - (y - 1)) / 1000) * 1000 + 1
        }
    };
    let century = |y: i64| {
        if y > 0 {
            (y + 99) / 100 * 100 - 99
        } else {
            -((99 - (y - 1)) / 100) * 100 + 1
        }
    };
    let decade = |y: i64| {
        if y > 0 {
            y / 10 * 10
        } else {
            -((8 - (y - 1)) / 10) * 10
        }
    };
    let truncated = match field {
        "microseconds" => micros,
        "milliseconds" => micros - micros.rem_euclid(1_000),
        "second" => micros - micros.rem_euclid(1_000_000),
        "minute" => micros - micros.rem_euclid(60_000_000),
        "hour" => day_start(days) + time - time.rem_euclid(3_600_000_000),
        "day" => day_start(days),
        "week" => day_start(days - (days + 5).rem_euclid(7)),
        "month" => day_start(date_from_ymd(y, m, 1)),
        "quarter" => day_start(date_from_ymd(y, (m - 1) / 3 * 3 + 1, 1)),
        "year" => day_start(date_from_ymd(y, 1, 1)),
        "decade" => day_start(date_from_ymd(decade(y), 1, 1)),
        "century" => day_start(date_from_ymd(century(y), 1, 1)),
        _ => day_start(date_from_ymd(millennium(y), 1, 1)),
    };
    if !datetime::is_valid_timestamp(truncated) {
        return err("timestamp out of range");
    }
    Ok(wrap(truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Datum {
        Datum::Text(s.into())
    }

    #[test]
    fn string_functions_follow_postgres() {
        let substr = |s, f, c: Option<i64>| {
            let mut a = vec![t(s), Datum::Int(f)];
            a.extend(c.map(Datum::Int));
            Func::Substr.eval(&a, &Type::Text).unwrap()
        };
        assert_eq!(substr("hello", 2, Some(3)), t("ell"));
        assert_eq!(substr("hello", 0, Some(3)), t("he"));
        assert_eq!(substr("hello", -5, Some(3)), t(""));
        assert_eq!(substr("hello", 3, None), t("llo"));
        assert_eq!(
            Func::SplitPart
                .eval(&[t("a,b,c"), t(","), Datum::Int(-1)], &Type::Text)
                .unwrap(),
            t("c")
        );
        assert_eq!(
            Func::Strpos
                .eval(&[t("héllo"), t("l")], &Type::Int4)
                .unwrap(),
            Datum::Int(3)
        );
        assert_eq!(
            Func::Concat
                .eval(&[t("a"), Datum::Null, Datum::Int(1)], &Type::Text)
                .unwrap(),
            t("a1")
        );
    }

    #[test]
    fn extract_and_trunc() {
        let day = Datum::Date(date_from_ymd(2024, 3, 5) as i32);
        let year = Func::Extract("year".into()).eval(std::slice::from_ref(&day), &Type::Numeric);
        assert_eq!(year.unwrap().to_json_string(), "2024");
        let dow = Func::Extract("dow".into()).eval(std::slice::from_ref(&day), &Type::Numeric);
        assert_eq!(dow.unwrap().to_json_string(), "2");
        let ts = Datum::Timestamp(date_from_ymd(2024, 3, 5) * MICROS_PER_DAY + 5_250_000);
        let sec = Func::Extract("second".into()).eval(std::slice::from_ref(&ts), &Type::Numeric);
        assert_eq!(sec.unwrap().to_json_string(), "5.250000");
        let month = Func::DateTrunc("month".into()).eval(&[ts], &Type::Timestamp);
        assert_eq!(month.unwrap().to_json_string(), "\"2024-03-01T00:00:00\"");
    }

    #[test]
    fn infinite_dates_extract_and_trunc_like_postgres() {
        let inf = Datum::Date(DATE_POS_INF);
        let ninf = Datum::Timestamp(TS_NEG_INF);
        let ex = |f: &str, v: &Datum| {
            Func::Extract(f.into()).eval(std::slice::from_ref(v), &Type::Numeric)
        };
        let part = |f: &str, v: &Datum| {
            Func::DatePart(f.into()).eval(std::slice::from_ref(v), &Type::Float8)
        };
        assert_eq!(ex("year", &inf).unwrap().to_text(), "Infinity");
        assert_eq!(ex("month", &inf).unwrap(), Datum::Null);
        assert_eq!(part("year", &ninf).unwrap().to_text(), "-Infinity");
        assert_eq!(part("hour", &ninf).unwrap(), Datum::Null);
        assert_eq!(ex("epoch", &ninf).unwrap().to_text(), "-Infinity");
        assert_eq!(
            ex("hour", &inf).unwrap_err().0,
            "unit \"hour\" not supported for type date"
        );
        assert!(ex("foo", &ninf).unwrap_err().0.contains("not recognized"));
        let trunc =
            Func::DateTrunc("year".into()).eval(std::slice::from_ref(&ninf), &Type::Timestamp);
        assert_eq!(trunc.unwrap(), ninf);
        // A date past the timestamp range has no midnight to truncate.
        let far = Datum::Date(DATE_POS_INF - 1);
        assert!(Func::DateTrunc("day".into())
            .eval(&[far], &Type::TimestampTz)
            .is_err());
        // Before 4714-11-24 BC there are no timestamps.
        let first = Datum::Timestamp(datetime::TS_MIN);
        assert_eq!(
            Func::DateTrunc("millennium".into())
                .eval(&[first], &Type::Timestamp)
                .unwrap_err()
                .0,
            "timestamp out of range"
        );
        let bc = Datum::Date(date_from_ymd(-43, 3, 15) as i32); // 44 BC
        assert_eq!(ex("century", &bc).unwrap().to_text(), "-1");
        assert_eq!(ex("year", &bc).unwrap().to_text(), "-44");
        assert_eq!(ex("epoch", &Datum::Date(0)).unwrap().to_text(), "946684800");
        // BC values checked against PostgreSQL 15.
        assert_eq!(ex("millennium", &bc).unwrap().to_text(), "-1");
        assert_eq!(ex("decade", &bc).unwrap().to_text(), "-5");
        let bc1 = Datum::Date(date_from_ymd(0, 1, 1) as i32); // 0001-01-01 BC
        assert_eq!(ex("isoyear", &bc1).unwrap().to_text(), "-2");
        assert_eq!(ex("week", &bc1).unwrap().to_text(), "52");
        let bc_ts = Datum::Timestamp(date_from_ymd(-43, 3, 15) * MICROS_PER_DAY);
        for (field, want) in [
            ("century", "0100-01-01 00:00:00 BC"),
            ("millennium", "1000-01-01 00:00:00 BC"),
            ("decade", "0051-01-01 00:00:00 BC"),
            ("week", "0044-03-11 00:00:00 BC"),
        ] {
            let got =
                Func::DateTrunc(field.into()).eval(std::slice::from_ref(&bc_ts), &Type::Timestamp);
            assert_eq!(got.unwrap().to_text(), want, "{field}");
        }
    }

    #[test]
    fn date_part_fractions_are_postgres_floats() {
        // Values checked against PostgreSQL 15, to the last bit.
        let part = |f: &str, t: i64| {
            Func::DatePart(f.into())
                .eval(&[Datum::Timestamp(t)], &Type::Float8)
                .unwrap()
                .to_text()
        };
        assert_eq!(part("second", 93836523657478), "3.6574780000000002");
        assert_eq!(
            part("milliseconds", -9544512658208265),
            "1791.7350000000001"
        );
        assert_eq!(part("epoch", 3259124504095100776), "3260071188895.101");
        assert_eq!(part("epoch", 9223371331199999999), "9224318016000");
    }

    #[test]
    fn missing_arguments_are_errors() {
        for f in [
            Func::Substr,
            Func::Left,
            Func::Power,
            Func::Repeat,
            Func::JsonGet { as_text: true },
        ] {
            assert!(f.eval(&[t("x")], &Type::Text).is_err(), "{f:?}");
        }
        assert_eq!(
            Func::Repeat
                .eval(&[t("ab"), Datum::Int(i64::MAX)], &Type::Text)
                .unwrap_err()
                .0,
            "requested length too large"
        );
    }

    fn j(s: &str) -> Datum {
        Datum::Json(s.into())
    }

    #[test]
    fn json_builders_write_postgres_text() {
        let args = [t("a"), Datum::Int(1), Datum::Bool(true), j("[1,2]")];
        let obj = Func::JsonBuildObject { jsonb: false }.eval(&args, &Type::Json);
        assert_eq!(obj.unwrap(), j(r#"{"a" : 1, "true" : [1,2]}"#));
        let b = Func::JsonBuildObject { jsonb: true }.eval(&args, &Type::Jsonb);
        assert_eq!(b.unwrap(), j(r#"{"a": 1, "true": [1, 2]}"#));
        let null_key =
            Func::JsonBuildObject { jsonb: false }.eval(&[Datum::Null, t("x")], &Type::Json);
        assert_eq!(null_key.unwrap_err().0, "argument 1 cannot be null");
        let arr = Func::JsonBuildArray { jsonb: false }.eval(&[Datum::Null, t("x")], &Type::Json);
        assert_eq!(arr.unwrap(), j(r#"[null, "x"]"#));
        let row = Func::RowToJson(vec!["a".into(), "b c".into()])
            .eval(&[Datum::Int(1), Datum::Null], &Type::Record);
        assert_eq!(row.unwrap(), j(r#"{"a":1,"b c":null}"#));
        let big = Func::ToJson { jsonb: true }.eval(&[Datum::Float8(F64(1e20))], &Type::Jsonb);
        assert_eq!(big.unwrap(), j("100000000000000000000"));
    }

    #[test]
    fn jsonb_operators() {
        let op = |o: JsonOp, a: &[Datum]| Func::Json(o).eval(a, &Type::Jsonb).unwrap();
        let doc = j(r#"{"a": {"b": [1, 2.0]}, "k": null}"#);
        assert_eq!(
            op(JsonOp::Contains, &[doc.clone(), j(r#"{"a": {"b": [2]}}"#)]),
            Datum::Bool(true)
        );
        assert_eq!(
            op(JsonOp::Contains, &[j("[1, [2]]"), j("2")]),
            Datum::Bool(false)
        );
        assert_eq!(
            op(JsonOp::Contains, &[j(r#"["a"]"#), j(r#""a""#)]),
            Datum::Bool(true)
        );
        assert_eq!(
            op(JsonOp::Contains, &[j(r#""a""#), j(r#"["a"]"#)]),
            Datum::Bool(false)
        );
        assert_eq!(
            op(JsonOp::Exists, &[j(r#"["x", 1]"#), t("x")]),
            Datum::Bool(true)
        );
        assert_eq!(
            op(JsonOp::DeleteKey, &[doc.clone(), t("a")]),
            j(r#"{"k": null}"#)
        );
        assert_eq!(
            op(JsonOp::DeleteIndex, &[j("[1, 2, 3]"), Datum::Int(-1)]),
            j("[1, 2]")
        );
        assert_eq!(
            op(JsonOp::Concat, &[j(r#"{"a": 1}"#), j("1")]),
            j(r#"[{"a": 1}, 1]"#)
        );
        assert_eq!(
            op(
                JsonOp::Set,
                &[doc.clone(), j(r#"["a", "b", "-1"]"#), j("9")]
            ),
            j(r#"{"a": {"b": [1, 9]}, "k": null}"#)
        );
        assert_eq!(
            op(JsonOp::StripNulls, &[doc]),
            j(r#"{"a": {"b": [1, 2.0]}}"#)
        );
        assert_eq!(
            Func::Json(JsonOp::DeleteIndex)
                .eval(&[j("{}"), Datum::Int(0)], &Type::Jsonb)
                .unwrap_err()
                .0,
            "cannot delete from object using integer index"
        );
        let pretty = op(JsonOp::Pretty, &[j(r#"{"a": [], "b": [1]}"#)]);
        assert_eq!(
            pretty,
            t("{\n    \"a\": [\n    ],\n    \"b\": [\n        1\n    ]\n}")
        );
    }

    #[test]
    fn array_functions() {
        let op = |o: ArrayOp, a: &[Datum]| Func::Array(o).eval(a, &Type::Int4).unwrap();
        let arr = j("[1,2,null]");
        assert_eq!(
            op(ArrayOp::Position, &[arr.clone(), Datum::Null]),
            Datum::Int(3)
        );
        assert_eq!(
            op(
                ArrayOp::Any { negated: false },
                &[Datum::Int(5), arr.clone()]
            ),
            Datum::Null
        );
        assert_eq!(
            op(
                ArrayOp::Any { negated: false },
                &[Datum::Int(2), arr.clone()]
            ),
            Datum::Bool(true)
        );
        assert_eq!(
            op(ArrayOp::Contains, &[arr.clone(), j("[null]")]),
            Datum::Bool(false)
        );
        assert_eq!(op(ArrayOp::Length, &[j("[]"), Datum::Int(1)]), Datum::Null);
        assert_eq!(
            op(ArrayOp::Length, &[j("[[1,2],[3,4]]"), Datum::Int(2)]),
            Datum::Int(2)
        );
        assert_eq!(op(ArrayOp::Append, &[Datum::Null, Datum::Int(1)]), j("[1]"));
        assert_eq!(
            op(ArrayOp::FromString, &[t("a,,b"), t(","), t("")]),
            j(r#"["a",null,"b"]"#)
        );
        assert_eq!(op(ArrayOp::FromString, &[t(""), t(",")]), j("[]"));
    }

    #[test]
    fn strings_and_dates() {
        assert_eq!(quote_ident("select"), "\"select\"");
        assert_eq!(quote_ident("a_1"), "a_1");
        assert_eq!(quote_literal("it's \\"), "E'it''s \\\\'");
        assert_eq!(
            format_text("%2$s %1$s|%-3s|", &[t("a"), t("b")]).unwrap(),
            "b a|b  |"
        );
        assert_eq!(
            format_text("%s %s", &[t("a")]).unwrap_err().0,
            "too few arguments for format()"
        );
        let ts = |y, m, d| date_from_ymd(y, m, d) * MICROS_PER_DAY;
        let a = age(ts(2024, 3, 31), ts(2024, 2, 29)).unwrap();
        assert_eq!((a.months, a.days, a.micros), (1, 2, 0));
        let iv = Interval {
            months: 1,
            days: 0,
            micros: -3_600_000_000,
        };
        let j = justify(&iv, true, true).unwrap();
        assert_eq!((j.months, j.days, j.micros), (0, 29, 82_800_000_000));
        assert_eq!(
            make_date(0, 1, 1).unwrap_err().0,
            "date field value out of range: 0-01-01"
        );
    }

    #[test]
    fn numeric_rounding() {
        let n = |s: &str| Numeric::parse(s).unwrap();
        assert_eq!(round_numeric(&n("2.5"), 0, false).to_string(), "3");
        assert_eq!(round_numeric(&n("-2.5"), 0, false).to_string(), "-3");
        assert_eq!(
            round_numeric(&n("1234.5678"), 2, true).to_string(),
            "1234.56"
        );
        assert_eq!(round_numeric(&n("1250"), -2, false).to_string(), "1300");
    }
}
