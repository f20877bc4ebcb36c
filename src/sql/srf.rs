//! Set-returning functions: the rows one call produces from its argument
//! values, as Postgres produces them (`generate_series`, `unnest`, the JSON
//! expanders, `string_to_table`, `regexp_split_to_table`, `regexp_matches`).

use serde::{Deserialize, Serialize};

use crate::repr::interval::{add_to_timestamp, add_to_timestamptz, Interval};
use crate::repr::tz::TimeCx;
use crate::repr::{json, Datum, Numeric, Row, Type};
use crate::sql::expr::EvalError;

/// Rows one call may produce before it is an error: a view holds every row,
/// so a runaway series must fail, not exhaust memory.
pub const MAX_ROWS: usize = 10_000_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SrfKind {
    /// `generate_series(start, stop [, step])` over integers or numerics.
    SeriesNumber,
    /// `generate_series(start, stop, step interval)` over timestamp(tz);
    /// a timestamptz series steps in the session's zone.
    SeriesTime(Option<TimeCx>),
    /// `unnest(array)`: the elements (all dimensions, in storage order).
    Unnest(Type),
    /// `json(b)_array_elements[_text]`.
    ArrayElements { text: bool },
    /// `json(b)_each[_text]`: (key, value).
    Each { text: bool },
    /// `json(b)_object_keys`.
    ObjectKeys,
    /// `string_to_table(text, delimiter [, null_string])`.
    StringToTable,
    /// `regexp_split_to_table(text, pattern [, flags])`.
    RegexpSplit,
    /// `regexp_matches(text, pattern [, flags])`: a text[] of the groups
    /// per match (every match with the `g` flag).
    RegexpMatches,
}

/// One call of a set-returning function: its kind, arguments and the types
/// of the columns each produced row has.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Srf {
    pub name: String,
    pub kind: SrfKind,
    pub args: Vec<crate::sql::expr::Expr>,
    pub types: Vec<Type>,
}

fn too_many() -> EvalError {
    EvalError(format!(
        "a set-returning function produced more than {MAX_ROWS} rows for one row"
    ))
}

/// The rows a call produces for its argument values. A NULL argument
/// produces no rows, as these functions are strict.
pub fn rows(kind: &SrfKind, args: &[Datum]) -> Result<Vec<Row>, EvalError> {
    if args.iter().any(Datum::is_null)
        && !matches!(kind, SrfKind::StringToTable if !args[0].is_null())
    {
        return Ok(Vec::new());
    }
    match kind {
        SrfKind::SeriesNumber => series_number(args),
        SrfKind::SeriesTime(zone) => series_time(args, zone.as_ref()),
        SrfKind::Unnest(elem) => {
            let Datum::Json(text) = &args[0] else {
                return Ok(Vec::new());
            };
            let doc = json::parse(text).map_err(|e| EvalError(format!("invalid array: {e}")))?;
            let mut out = Vec::new();
            flatten(elem, &doc, doc.root, text, &mut out)?;
            Ok(out.into_iter().map(|d| vec![d]).collect())
        }
        SrfKind::ArrayElements { text } => {
            let Datum::Json(src) = &args[0] else {
                return Ok(Vec::new());
            };
            let doc = json::parse(src).map_err(EvalError)?;
            let json::Kind::Array(items) = &doc.nodes[doc.root].kind else {
                return Err(EvalError(
                    if matches!(doc.nodes[doc.root].kind, json::Kind::Object(_)) {
                        "cannot extract elements from an object".into()
                    } else {
                        "cannot extract elements from a scalar".into()
                    },
                ));
            };
            Ok(items
                .iter()
                .map(|&i| vec![value(&doc, i, src, *text)])
                .collect())
        }
        SrfKind::Each { .. } | SrfKind::ObjectKeys => {
            let Datum::Json(src) = &args[0] else {
                return Ok(Vec::new());
            };
            let doc = json::parse(src).map_err(EvalError)?;
            let json::Kind::Object(fields) = &doc.nodes[doc.root].kind else {
                let what = match doc.nodes[doc.root].kind {
                    json::Kind::Array(_) => "an array",
                    _ => "a scalar",
                };
                let func = if matches!(kind, SrfKind::ObjectKeys) {
                    "json_object_keys"
                } else {
                    "json_each"
                };
                return Err(EvalError(format!("cannot call {func} on {what}")));
            };
            Ok(fields
                .iter()
                .map(|(k, i)| match kind {
                    SrfKind::ObjectKeys => vec![Datum::Text(k.clone())],
                    SrfKind::Each { text } => {
                        vec![Datum::Text(k.clone()), value(&doc, *i, src, *text)]
                    }
                    _ => unreachable!("matched above"),
                })
                .collect())
        }
        SrfKind::RegexpSplit => {
            let (Datum::Text(s), Datum::Text(p)) = (&args[0], &args[1]) else {
                return Ok(Vec::new());
            };
            let ci = match args.get(2) {
                Some(Datum::Text(f)) => {
                    crate::sql::regex::flags(f, false, "regexp_split_to_table")
                        .map_err(EvalError)?
                        .1
                }
                _ => false,
            };
            let re = crate::sql::regex::compile(p, ci, true).map_err(EvalError)?;
            Ok(crate::sql::regex::split(&re, s)
                .into_iter()
                .map(|piece| vec![Datum::Text(piece)])
                .collect())
        }
        SrfKind::RegexpMatches => {
            let (Datum::Text(s), Datum::Text(p)) = (&args[0], &args[1]) else {
                return Ok(Vec::new());
            };
            let (global, ci) = match args.get(2) {
                Some(Datum::Text(f)) => {
                    crate::sql::regex::flags(f, true, "regexp_matches").map_err(EvalError)?
                }
                _ => (false, false),
            };
            let re = crate::sql::regex::compile(p, ci, true).map_err(EvalError)?;
            let found = crate::sql::regex::matches(&re, s, global);
            if found.len() > MAX_ROWS {
                return Err(too_many());
            }
            Ok(found
                .into_iter()
                .map(|groups| {
                    let items: Vec<json::Value> = groups
                        .into_iter()
                        .map(|g| g.map(json::Value::String).unwrap_or(json::Value::Null))
                        .collect();
                    vec![crate::sql::func::array_datum(&items)]
                })
                .collect())
        }
        SrfKind::StringToTable => {
            let Datum::Text(s) = &args[0] else {
                return Ok(Vec::new());
            };
            let null_string = match args.get(2) {
                Some(Datum::Text(n)) => Some(n.as_str()),
                _ => None,
            };
            let parts: Vec<&str> = match &args[1] {
                // A NULL delimiter splits into characters.
                Datum::Null => s
                    .char_indices()
                    .map(|(i, c)| &s[i..i + c.len_utf8()])
                    .collect(),
                Datum::Text(d) if d.is_empty() => {
                    if s.is_empty() {
                        vec![]
                    } else {
                        vec![s.as_str()]
                    }
                }
                Datum::Text(d) => {
                    if s.is_empty() {
                        vec![]
                    } else {
                        s.split(d.as_str()).collect()
                    }
                }
                _ => vec![],
            };
            Ok(parts
                .into_iter()
                .map(|p| {
                    if Some(p) == null_string {
                        vec![Datum::Null]
                    } else {
                        vec![Datum::Text(p.to_string())]
                    }
                })
                .collect())
        }
    }
}

/// An element or field value: json(b) text as it stands in the document,
/// or for the `_text` variants the string itself (NULL for JSON null).
fn value(doc: &json::Doc, node: usize, src: &str, text: bool) -> Datum {
    let n = &doc.nodes[node];
    let raw = src[n.span.0..n.span.1].to_string();
    if !text {
        return Datum::Json(raw);
    }
    match &n.kind {
        json::Kind::Null => Datum::Null,
        json::Kind::String(s) => Datum::Text(s.clone()),
        _ => Datum::Text(raw),
    }
}

/// An array's elements in storage order, all dimensions flattened.
fn flatten(
    elem: &Type,
    doc: &json::Doc,
    node: usize,
    src: &str,
    out: &mut Vec<Datum>,
) -> Result<(), EvalError> {
    let n = &doc.nodes[node];
    match &n.kind {
        json::Kind::Array(items) => {
            for &i in items {
                flatten(elem, doc, i, src, out)?;
                if out.len() > MAX_ROWS {
                    return Err(too_many());
                }
            }
            Ok(())
        }
        json::Kind::Null => {
            out.push(Datum::Null);
            Ok(())
        }
        kind => {
            let raw = &src[n.span.0..n.span.1];
            let d = match (elem, kind) {
                (Type::Json | Type::Jsonb, _) => Datum::Json(raw.to_string()),
                (Type::Bool, json::Kind::Bool(b)) => Datum::Bool(*b),
                (_, json::Kind::String(s)) => {
                    Datum::from_text(elem, s).map_err(|e| EvalError(e.0))?
                }
                _ => Datum::from_text(elem, raw).map_err(|e| EvalError(e.0))?,
            };
            out.push(d);
            Ok(())
        }
    }
}

fn series_number(args: &[Datum]) -> Result<Vec<Row>, EvalError> {
    match args {
        [Datum::Int(a), Datum::Int(b), rest @ ..] => {
            let step = match rest.first() {
                Some(Datum::Int(s)) => *s,
                _ => 1,
            };
            if step == 0 {
                return Err(EvalError("step size cannot equal zero".into()));
            }
            let (a, b, step) = (*a as i128, *b as i128, step as i128);
            let count = if (step > 0 && a > b) || (step < 0 && a < b) {
                0
            } else {
                ((b - a) / step + 1) as usize
            };
            if count > MAX_ROWS {
                return Err(too_many());
            }
            Ok((0..count)
                .map(|i| vec![Datum::Int((a + i as i128 * step) as i64)])
                .collect())
        }
        [a, b, rest @ ..] => {
            let num = |d: &Datum| match d {
                Datum::Numeric(n) => Some(n.clone()),
                Datum::Int(i) => Some(Numeric::from_i64(*i)),
                _ => None,
            };
            let (Some(a), Some(b)) = (num(a), num(b)) else {
                return Err(EvalError("generate_series() of these types".into()));
            };
            let step = rest
                .first()
                .and_then(num)
                .unwrap_or_else(|| Numeric::from_i64(1));
            let nan = |n: &Numeric| matches!(n, Numeric::NaN);
            if nan(&step) || nan(&a) || nan(&b) {
                return Err(EvalError(
                    "start value, stop value and step size cannot be NaN".into(),
                ));
            }
            let zero = Numeric::from_i64(0);
            let sign = step.cmp(&zero);
            if sign == std::cmp::Ordering::Equal {
                return Err(EvalError("step size cannot equal zero".into()));
            }
            let mut out = Vec::new();
            let mut x = a;
            while (sign.is_gt() && x <= b) || (sign.is_lt() && x >= b) {
                out.push(vec![Datum::Numeric(x.clone())]);
                if out.len() > MAX_ROWS {
                    return Err(too_many());
                }
                x = x.add(&step);
            }
            Ok(out)
        }
        _ => Ok(Vec::new()),
    }
}

fn series_time(args: &[Datum], zone: Option<&TimeCx>) -> Result<Vec<Row>, EvalError> {
    let [start, stop, Datum::Interval(step)] = args else {
        return Err(EvalError("generate_series() needs an interval step".into()));
    };
    if step.span() == 0 {
        return Err(EvalError("step size cannot equal zero".into()));
    }
    let positive = step.span() > 0;
    let (a, b, tz) = match (start, stop) {
        (Datum::Timestamp(a), Datum::Timestamp(b)) => (*a, *b, false),
        (Datum::TimestampTz(a), Datum::TimestampTz(b)) => (*a, *b, true),
        _ => return Err(EvalError("generate_series() of these types".into())),
    };
    let add = |t: i64, iv: &Interval| -> Result<i64, EvalError> {
        if tz {
            let cx = zone.cloned().unwrap_or_default();
            add_to_timestamptz(t, iv, cx.zone()).map_err(EvalError)
        } else {
            add_to_timestamp(t, iv).map_err(EvalError)
        }
    };
    let mut out = Vec::new();
    let mut t = a;
    while (positive && t <= b) || (!positive && t >= b) {
        out.push(vec![if tz {
            Datum::TimestampTz(t)
        } else {
            Datum::Timestamp(t)
        }]);
        if out.len() > MAX_ROWS {
            return Err(too_many());
        }
        // Postgres adds the step to the previous value.
        t = match add(t, step) {
            Ok(n) => n,
            Err(_) => break,
        };
    }
    Ok(out)
}
