//! Request JSON read strictly, and serde's errors told in words a client can use.
//!
//! - A duplicate key in an object is an error: parsers disagree on which copy wins (the first,
//!   the last, both), so a body that says two things is refused rather than guessed at.
//! - Error messages never name a Rust type (`expected struct NewUser`) and echo at most a
//!   short prefix of a string the client sent.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Longest part of a client's string echoed back in an error.
const ECHO: usize = 32;

/// Parse a request body, refusing duplicate keys at any depth.
pub(crate) fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = deserializer.deserialize_any(StrictVisitor)?;
    deserializer.end()?;
    Ok(value)
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key `{}` in an object",
                    short(&key)
                )));
            }
            let value = map.next_value_seed(Strict)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

struct Strict;

impl<'de> de::DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

/// A client's text cut to a short prefix, control characters escaped.
pub(crate) fn short(text: &str) -> String {
    let mut out: String = text.chars().take(ECHO).flat_map(char::escape_debug).collect();
    if text.chars().nth(ECHO).is_some() {
        out.push('…');
    }
    out
}

/// serde's message for a client: Rust type names replaced by what they are in JSON, quoted
/// input cut to a short prefix.
pub(crate) fn public_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(256));
    let mut rest = message;
    while let Some(start) = rest.find(['"', '`']) {
        let quote = rest[start..].chars().next().unwrap_or('"');
        out.push_str(&rust_free(&rest[..start]));
        let after = &rest[start + 1..];
        let Some(end) = after.find(quote) else {
            out.push_str(&rust_free(&rest[start..]));
            rest = "";
            break;
        };
        out.push(quote);
        out.push_str(&short(&after[..end]));
        out.push(quote);
        rest = &after[end + 1..];
    }
    out.push_str(&rust_free(rest));
    out
}

/// `struct NewUser` → `an object`, `enum Kind` → `one of the allowed values`, `tuple struct
/// Id` / `newtype struct Id` → `a value`.
fn rust_free(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut words = text.split(' ').peekable();
    let mut first = true;
    while let Some(word) = words.next() {
        let replacement = match word {
            "struct" => Some("an object"),
            "enum" => Some("one of the allowed values"),
            "tuple" | "newtype" if words.peek() == Some(&"struct") => {
                words.next();
                Some("a value")
            }
            _ => None,
        };
        if !first {
            out.push(' ');
        }
        first = false;
        match replacement {
            Some(replacement) => {
                out.push_str(replacement);
                // The type's name follows; a trailing comma or the like stays.
                if let Some(name) = words.next() {
                    let tail = name.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_' || c == ':');
                    out.push_str(tail);
                }
            }
            None => out.push_str(word),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert!(from_slice(br#"{"a":1,"b":{"c":2}}"#).is_ok());
        let error = from_slice(br#"{"a":1,"a":2}"#).unwrap_err().to_string();
        assert!(error.starts_with("duplicate key `a` in an object"), "{error}");
        let error = from_slice(br#"{"a":[{"x":1,"x":1}]}"#).unwrap_err().to_string();
        assert!(error.contains("duplicate key `x`"), "{error}");
        assert!(from_slice(br#"{"a":1} trailing"#).is_err());
        assert_eq!(
            from_slice(b"[1, 2.5, null, true]").unwrap(),
            serde_json::json!([1, 2.5, null, true])
        );
    }

    #[test]
    fn messages_name_no_rust_type_and_echo_a_short_prefix() {
        let long = "x".repeat(500);
        let error = serde_json::from_str::<u32>(&format!("\"{long}\""))
            .unwrap_err()
            .to_string();
        let message = public_message(&error);
        assert!(message.len() < 120, "{message}");
        assert!(message.contains('…'), "{message}");
        assert_eq!(
            public_message("invalid type: string \"a\", expected struct NewUser at line 1 column 3"),
            "invalid type: string \"a\", expected an object at line 1 column 3"
        );
        assert_eq!(
            public_message("expected tuple struct Id, got a map"),
            "expected a value, got a map"
        );
        assert_eq!(public_message("missing field `email`"), "missing field `email`");
        assert_eq!(
            public_message("unknown variant `x`, expected enum Mode"),
            "unknown variant `x`, expected one of the allowed values"
        );
    }
}
