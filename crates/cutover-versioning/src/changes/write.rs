//! The write contract's pieces: refusing fields a version does not have or that only the
//! server sets, and JSON merge patch.

use std::fmt;

use serde_json::Value;

use crate::ApiVersion;

/// A request named fields its API version does not have: refused with 400 rather than stored
/// (a `1.1` client cannot set a field that only exists from `1.3` on) or silently dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct UnknownFields {
    resource: &'static str,
    version: ApiVersion,
    fields: Vec<String>,
    known: Vec<String>,
}

impl UnknownFields {
    pub(crate) fn new(
        resource: &'static str,
        version: ApiVersion,
        mut fields: Vec<String>,
        known: Vec<String>,
    ) -> Self {
        fields.sort();
        Self {
            resource,
            version,
            fields,
            known,
        }
    }

    /// The resource concerned.
    pub fn resource(&self) -> &str {
        self.resource
    }

    /// The version the request was made in.
    pub fn version(&self) -> &ApiVersion {
        &self.version
    }

    /// The fields that version does not have, sorted.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// The fields it does have.
    pub fn known(&self) -> &[String] {
        &self.known
    }
}

impl fmt::Display for UnknownFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self
            .fields
            .iter()
            .map(|name| format!("`{}`", shorten(name)))
            .collect::<Vec<_>>()
            .join(", ");
        let verb = if self.fields.len() == 1 {
            "is not a field"
        } else {
            "are not fields"
        };
        write!(
            f,
            "{names} {verb} of the {} resource in API version {} (its fields: {})",
            self.resource,
            self.version,
            self.known.join(", ")
        )
    }
}

/// A request wrote fields only the server sets (declared with
/// [`ResourceBuilder::read_only`](crate::ResourceBuilder::read_only)): a create may not set
/// them, an update may only repeat them unchanged. Refused with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ReadOnlyFields {
    resource: &'static str,
    fields: Vec<String>,
}

impl ReadOnlyFields {
    pub(crate) fn new(resource: &'static str, fields: Vec<String>) -> Self {
        Self { resource, fields }
    }

    /// The resource concerned.
    pub fn resource(&self) -> &str {
        self.resource
    }

    /// The fields written, as the request's version names them.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }
}

impl fmt::Display for ReadOnlyFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self
            .fields
            .iter()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let verb = if self.fields.len() == 1 { "is" } else { "are" };
        write!(f, "{names} {verb} set by the server and cannot be written")
    }
}

/// Field names from requests are shown, not trusted: a long one is cut.
fn shorten(name: &str) -> String {
    const LIMIT: usize = 64;
    if name.chars().count() <= LIMIT {
        name.to_owned()
    } else {
        let mut short: String = name.chars().take(LIMIT).collect();
        short.push('…');
        short
    }
}

/// RFC 7396: members of `patch` replace those of `target`, `null` removes them, objects merge
/// recursively, and anything that is not an object replaces the target whole.
pub(crate) fn merge_patch(target: &mut Value, patch: Value) {
    let Value::Object(patch) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let Value::Object(object) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            object.remove(&key);
        } else {
            merge_patch(object.entry(key).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The examples of RFC 7396, appendix A.
    #[test]
    fn merge_patch_follows_the_rfc_examples() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": "b", "b": "c"}), json!({"a": null}), json!({"b": "c"})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
            (json!([1, 2]), json!({"a": "b", "c": null}), json!({"a": "b"})),
            (json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
        ];
        for (target, patch, expected) in cases {
            let mut value = target.clone();
            merge_patch(&mut value, patch.clone());
            assert_eq!(value, expected, "{target} + {patch}");
        }
    }

    #[test]
    fn the_message_names_the_fields_the_version_and_what_it_has() {
        let error = UnknownFields::new(
            "user",
            "1.1".parse().unwrap(),
            vec!["preferences".into()],
            vec!["id".into(), "username".into()],
        );
        assert_eq!(
            error.to_string(),
            "`preferences` is not a field of the user resource in API version 1.1 (its fields: id, username)"
        );
        let long = UnknownFields::new("user", "1.1".parse().unwrap(), vec!["x".repeat(500)], Vec::new());
        assert!(long.to_string().len() < 200, "{long}");
    }
}
