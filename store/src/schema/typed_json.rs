//! A JSON form of [`AttrValue`] that keeps every type: `{"s":"text"}`, `{"b":true}`,
//! `{"i":"-3"}` (a string, so 64-bit integers survive JSON readers), `{"d":"1.5"}` (a string, so
//! NaN and infinities survive), `{"y":"00ff"}` (hex bytes), `{"a":[...]}`,
//! `{"k":[["key",value],...]}` (order and repeated keys kept), and `null` for an empty value.
//!
//! Used for attribute values that are not plain scalars (bytes, arrays, kvlists) and for
//! non-string log bodies, so that SQL users can still read them.

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::model::{AttrValue, KeyValue};

pub fn encode(value: &AttrValue) -> String {
    to_json(value).to_string()
}

pub fn decode(text: &str) -> Result<AttrValue> {
    let mut de = serde_json::Deserializer::from_str(text);
    // Nesting depth is bounded where values enter (OTLP decoding caps recursion), so the
    // parser's own limit of 128 would only reject what ingest already accepted.
    de.disable_recursion_limit();
    let value = serde::Deserialize::deserialize(&mut de).map_err(|e| bad(text, &e.to_string()))?;
    from_json(&value).ok_or_else(|| bad(text, "not a typed value"))
}

fn bad(text: &str, why: &str) -> Error {
    let shown: String = text.chars().take(80).collect();
    Error::Corrupt(format!("invalid typed value {shown:?}: {why}"))
}

fn to_json(value: &AttrValue) -> Value {
    match value {
        AttrValue::Empty => Value::Null,
        AttrValue::Str(s) => json!({ "s": s }),
        AttrValue::Bool(b) => json!({ "b": b }),
        AttrValue::Int(i) => json!({ "i": i.to_string() }),
        AttrValue::Double(d) => json!({ "d": d.to_string() }),
        AttrValue::Bytes(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            json!({ "y": hex })
        }
        AttrValue::Array(items) => json!({ "a": items.iter().map(to_json).collect::<Vec<_>>() }),
        AttrValue::KvList(kvs) => {
            let pairs: Vec<Value> = kvs
                .iter()
                .map(|kv| Value::Array(vec![Value::String(kv.key.clone()), to_json(&kv.value)]))
                .collect();
            json!({ "k": pairs })
        }
    }
}

fn from_json(value: &Value) -> Option<AttrValue> {
    let obj: &Map<String, Value> = match value {
        Value::Null => return Some(AttrValue::Empty),
        Value::Object(obj) if obj.len() == 1 => obj,
        _ => return None,
    };
    let (tag, inner) = obj.iter().next()?;
    Some(match (tag.as_str(), inner) {
        ("s", Value::String(s)) => AttrValue::Str(s.clone()),
        ("b", Value::Bool(b)) => AttrValue::Bool(*b),
        ("i", Value::String(s)) => AttrValue::Int(s.parse().ok()?),
        ("d", Value::String(s)) => AttrValue::Double(s.parse().ok()?),
        ("y", Value::String(s)) => AttrValue::Bytes(unhex(s)?),
        ("a", Value::Array(items)) => {
            AttrValue::Array(items.iter().map(from_json).collect::<Option<_>>()?)
        }
        ("k", Value::Array(pairs)) => AttrValue::KvList(
            pairs
                .iter()
                .map(|pair| match pair {
                    Value::Array(kv) if kv.len() == 2 => Some(KeyValue {
                        key: kv[0].as_str()?.to_owned(),
                        value: from_json(&kv[1])?,
                    }),
                    _ => None,
                })
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_survives_including_nan_and_deep_nesting() {
        let mut deep = AttrValue::Int(i64::MIN);
        for i in 0..200 {
            deep = AttrValue::KvList(vec![KeyValue {
                key: format!("k{i}"),
                value: deep,
            }]);
        }
        let values = [
            AttrValue::Empty,
            AttrValue::Str("a \"quoted\" ✓".into()),
            AttrValue::Double(f64::NAN),
            AttrValue::Double(f64::NEG_INFINITY),
            AttrValue::Bytes(vec![0, 255, 16]),
            AttrValue::Array(vec![AttrValue::Bool(false), AttrValue::Empty]),
            deep,
        ];
        for v in values {
            assert_eq!(decode(&encode(&v)).unwrap(), v);
        }
    }

    #[test]
    fn malformed_text_is_an_error_not_a_value() {
        assert!(decode("{\"i\":\"x\"}").is_err());
        assert!(decode("[1]").is_err());
        assert!(decode("{\"y\":\"abc\"}").is_err());
    }
}
