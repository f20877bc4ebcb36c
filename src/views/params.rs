//! A subscription's parameter tuple, checked before it goes anywhere near
//! the dataflow: each `$name` from what the subscriber sent (a JSON value, or
//! PostgreSQL's text form, as SSE query strings always are), each claim from
//! the verified token and nowhere else.
//!
//! A bad value is an error for that one subscription: an unknown or missing
//! parameter, a value that does not parse as the parameter's type, an attempt
//! to give a claim-bound parameter.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::repr::{Datum, Row, Type};
use crate::sql::{ParamFrom, ViewParam};

/// Longest parameter value accepted, in bytes: enough for any key or id,
/// small enough that tuples stay cheap to hold and to hash.
pub const MAX_VALUE_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("missing parameter \"{0}\"")]
    Missing(String),
    #[error("unknown parameter \"{name}\" (the view's parameters: {known})")]
    Unknown { name: String, known: String },
    #[error("parameter \"{0}\" comes from the caller's token and cannot be given")]
    FromToken(String),
    #[error("parameter \"{name}\": {message}")]
    Invalid { name: String, message: String },
}

/// A value as a subscriber sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum Given {
    /// PostgreSQL's text form (SSE and `GET` query parameters).
    Text(String),
    /// A JSON value (websocket `params`); `null` is SQL NULL.
    Json(Value),
}

/// The tuple of `params` for one subscription: `given` values by name, and
/// the claims of the caller's verified token (`None` without auth). A view
/// without parameters has the empty tuple whatever is given (its query
/// string was never its own to check).
pub fn tuple(
    params: &[ViewParam],
    given: &BTreeMap<String, Given>,
    claims: Option<&serde_json::Map<String, Value>>,
) -> Result<Row, ParamError> {
    if params.is_empty() {
        return Ok(Vec::new());
    }
    let request: Vec<&ViewParam> = params
        .iter()
        .filter(|p| p.from == ParamFrom::Request)
        .collect();
    for name in given.keys() {
        if request.iter().any(|p| &p.name == name) {
            continue;
        }
        if params
            .iter()
            .any(|p| p.from == ParamFrom::Token && &p.name == name)
        {
            return Err(ParamError::FromToken(name.clone()));
        }
        let known = if request.is_empty() {
            "none".to_string()
        } else {
            request
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(ParamError::Unknown {
            name: name.clone(),
            known,
        });
    }
    params
        .iter()
        .map(|p| match p.from {
            ParamFrom::Request => {
                let v = given
                    .get(&p.name)
                    .ok_or_else(|| ParamError::Missing(p.name.clone()))?;
                value(p, v)
            }
            ParamFrom::Token => Ok(claim(p, claims)),
        })
        .collect()
}

/// A given value as the parameter's type.
fn value(p: &ViewParam, v: &Given) -> Result<Datum, ParamError> {
    let invalid = |message: String| ParamError::Invalid {
        name: p.name.clone(),
        message,
    };
    let text = match v {
        Given::Text(s) => s.clone(),
        Given::Json(Value::Null) => return Ok(Datum::Null),
        Given::Json(Value::String(s)) => s.clone(),
        Given::Json(Value::Bool(b)) => b.to_string(),
        Given::Json(Value::Number(n)) => n.to_string(),
        Given::Json(other @ (Value::Array(_) | Value::Object(_))) => {
            if matches!(p.ty, Type::Json | Type::Jsonb) {
                other.to_string()
            } else {
                return Err(invalid(format!(
                    "expected a value of type {}, got a JSON {}",
                    p.ty.name(),
                    if other.is_array() { "array" } else { "object" }
                )));
            }
        }
    };
    if text.len() > MAX_VALUE_BYTES {
        return Err(invalid(format!(
            "value longer than {MAX_VALUE_BYTES} bytes"
        )));
    }
    Datum::from_text(&p.ty, &text).map_err(|e| invalid(e.to_string()))
}

/// A claim-bound parameter's value: as `->>` or `->` would give it from the
/// claims (NULL for a claim the token does not carry).
fn claim(p: &ViewParam, claims: Option<&serde_json::Map<String, Value>>) -> Datum {
    let Some(claims) = claims else {
        return Datum::Null;
    };
    let v = if p.name.is_empty() {
        Some(Value::Object(claims.clone()))
    } else {
        claims.get(&p.name).cloned()
    };
    let text = match (v, p.as_text) {
        (None, _) | (Some(Value::Null), true) => return Datum::Null,
        (Some(Value::String(s)), true) => s,
        (Some(other), _) => other.to_string(),
    };
    Datum::from_text(&p.ty, &text).unwrap_or(Datum::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param(name: &str, ty: Type, from: ParamFrom, as_text: bool) -> ViewParam {
        ViewParam {
            name: name.into(),
            ty,
            from,
            as_text,
        }
    }

    #[test]
    fn values_are_checked_against_their_types() {
        let ps = [
            param("project_id", Type::Int4, ParamFrom::Request, true),
            param("tenant", Type::Text, ParamFrom::Token, true),
        ];
        let claims = json!({"tenant": "acme", "sub": "u1"});
        let claims = claims.as_object().unwrap();
        let mut given = BTreeMap::new();
        given.insert("project_id".to_string(), Given::Text("7".into()));
        assert_eq!(
            tuple(&ps, &given, Some(claims)).unwrap(),
            vec![
                Datum::Int(7),
                Datum::from_text(&Type::Text, "acme").unwrap()
            ]
        );
        given.insert("project_id".to_string(), Given::Json(json!(8)));
        assert_eq!(tuple(&ps, &given, Some(claims)).unwrap()[0], Datum::Int(8));
        given.insert("project_id".to_string(), Given::Json(json!(null)));
        assert_eq!(tuple(&ps, &given, Some(claims)).unwrap()[0], Datum::Null);
        given.insert("project_id".to_string(), Given::Text("seven".into()));
        assert!(matches!(
            tuple(&ps, &given, Some(claims)),
            Err(ParamError::Invalid { .. })
        ));
        given.insert("project_id".to_string(), Given::Json(json!([1])));
        assert!(matches!(
            tuple(&ps, &given, Some(claims)),
            Err(ParamError::Invalid { .. })
        ));
        given.insert("project_id".to_string(), Given::Text("99999999999".into()));
        assert!(tuple(&ps, &given, Some(claims)).is_err(), "int4 range");
    }

    #[test]
    fn claims_come_only_from_the_token() {
        let ps = [param("tenant", Type::Text, ParamFrom::Token, true)];
        let mut given = BTreeMap::new();
        given.insert("tenant".to_string(), Given::Text("other".into()));
        assert_eq!(
            tuple(&ps, &given, None),
            Err(ParamError::FromToken("tenant".into()))
        );
        let empty = BTreeMap::new();
        assert_eq!(tuple(&ps, &empty, None).unwrap(), vec![Datum::Null]);
        let claims = json!({"tenant": 42});
        assert_eq!(
            tuple(&ps, &empty, claims.as_object()).unwrap(),
            vec![Datum::from_text(&Type::Text, "42").unwrap()]
        );
    }

    #[test]
    fn unknown_and_missing_parameters_are_named() {
        let ps = [param("a", Type::Int4, ParamFrom::Request, true)];
        let mut given = BTreeMap::new();
        assert_eq!(
            tuple(&ps, &given, None),
            Err(ParamError::Missing("a".into()))
        );
        given.insert("a".to_string(), Given::Text("1".into()));
        given.insert("b".to_string(), Given::Text("1".into()));
        assert!(matches!(
            tuple(&ps, &given, None),
            Err(ParamError::Unknown { .. })
        ));
    }
}
