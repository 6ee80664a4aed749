//! The kinds of breaking change a version can introduce, and how each is undone (responses,
//! going back) and redone (requests, going forward).

use std::{fmt, sync::Arc};

use serde_json::{Map, Value};

type Rebuild = Arc<dyn Fn(&Map<String, Value>) -> Value + Send + Sync>;
type Transform = Arc<dyn Fn(&mut Map<String, Value>) + Send + Sync>;

/// One change, declared as it happened going forward (from the previous version to this one).
#[derive(Clone)]
pub(crate) enum Op {
    /// `old` was renamed to `new`.
    Rename { old: String, new: String },
    /// `field` appeared; requests from older clients get `default` when they omit it.
    Added { field: String, default: Option<Value> },
    /// `field` disappeared; older clients get it rebuilt from the rest of the object.
    Removed { field: String, rebuild: Rebuild },
    /// `fields` moved into the object `into`.
    Nested { fields: Vec<String>, into: String },
    /// The object `from` was flattened: its `fields` moved up next to it.
    Flattened { from: String, fields: Vec<String> },
    /// Values of `field` were renamed (`(old, new)` pairs); values new in this version map to
    /// an old `fallback` for older clients.
    EnumMap {
        field: String,
        renamed: Vec<(Value, Value)>,
        added: Vec<(Value, Value)>,
    },
    /// Anything else: `down` undoes the change on a response, `up` redoes it on a request.
    Custom { down: Transform, up: Transform },
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rename { old, new } => write!(f, "Rename({old} -> {new})"),
            Self::Added { field, .. } => write!(f, "Added({field})"),
            Self::Removed { field, .. } => write!(f, "Removed({field})"),
            Self::Nested { fields, into } => write!(f, "Nested({fields:?} -> {into})"),
            Self::Flattened { from, fields } => write!(f, "Flattened({from} -> {fields:?})"),
            Self::EnumMap { field, .. } => write!(f, "EnumMap({field})"),
            Self::Custom { .. } => f.write_str("Custom"),
        }
    }
}

/// The object that holds the last segment of a dotted `path`, and that segment.
fn parent<'a>(object: &'a mut Map<String, Value>, path: &'a str) -> Option<(&'a mut Map<String, Value>, &'a str)> {
    let mut segments = path.split('.');
    let mut last = segments.next()?;
    let mut current = object;
    for next in segments {
        current = current.get_mut(last)?.as_object_mut()?;
        last = next;
    }
    Some((current, last))
}

fn rename(object: &mut Map<String, Value>, from: &str, to: &str) {
    let Some((holder, from_key)) = parent(object, from) else {
        return;
    };
    if let Some(value) = holder.remove(from_key) {
        let to_key = to.rsplit('.').next().unwrap_or(to);
        holder.insert(to_key.to_owned(), value);
    }
}

fn map_value(object: &mut Map<String, Value>, field: &str, pairs: &[(Value, Value)], forward: bool) {
    let Some((holder, key)) = parent(object, field) else {
        return;
    };
    let Some(value) = holder.get_mut(key) else { return };
    let mut map_one = |value: &mut Value| {
        for (old, new) in pairs {
            let (from, to) = if forward { (old, new) } else { (new, old) };
            if value == from {
                *value = to.clone();
                return;
            }
        }
    };
    match value {
        // An array of enum values (a set of flags) is remapped element by element.
        Value::Array(items) => items.iter_mut().for_each(&mut map_one),
        other => map_one(other),
    }
}

impl Op {
    /// Undo the change: turn the newer shape into the older one (responses).
    pub(crate) fn down(&self, object: &mut Map<String, Value>) {
        match self {
            Self::Rename { old, new } => rename(object, new, old),
            Self::Added { field, .. } => {
                if let Some((holder, key)) = parent(object, field) {
                    holder.remove(key);
                }
            }
            Self::Removed { field, rebuild } => {
                let value = rebuild(object);
                if let Some((holder, key)) = parent(object, field) {
                    holder.insert(key.to_owned(), value);
                }
            }
            Self::Nested { fields, into } => {
                if let Some(Value::Object(mut inner)) = object.remove(into) {
                    for field in fields {
                        object.insert(field.clone(), inner.remove(field).unwrap_or(Value::Null));
                    }
                }
            }
            Self::Flattened { from, fields } => {
                let mut inner = Map::new();
                for field in fields {
                    if let Some(value) = object.remove(field) {
                        inner.insert(field.clone(), value);
                    }
                }
                object.insert(from.clone(), Value::Object(inner));
            }
            Self::EnumMap { field, renamed, added } => {
                // New values first map to their fallback, then renamed values go back.
                map_value(object, field, added, false);
                map_value(object, field, renamed, false);
            }
            Self::Custom { down, .. } => down(object),
        }
    }

    /// Redo the change: turn the older shape into the newer one (requests).
    pub(crate) fn up(&self, object: &mut Map<String, Value>) {
        match self {
            Self::Rename { old, new } => rename(object, old, new),
            Self::Added { field, default } => {
                if let (Some(default), Some((holder, key))) = (default, parent(object, field))
                    && !holder.contains_key(key)
                {
                    holder.insert(key.to_owned(), default.clone());
                }
            }
            Self::Removed { field, .. } => {
                if let Some((holder, key)) = parent(object, field) {
                    holder.remove(key);
                }
            }
            Self::Nested { fields, into } => {
                let mut inner = Map::new();
                for field in fields {
                    if let Some(value) = object.remove(field) {
                        inner.insert(field.clone(), value);
                    }
                }
                if !inner.is_empty() || !object.contains_key(into) {
                    object.insert(into.clone(), Value::Object(inner));
                }
            }
            Self::Flattened { from, fields } => {
                if let Some(Value::Object(mut inner)) = object.remove(from) {
                    for field in fields {
                        if let Some(value) = inner.remove(field) {
                            object.insert(field.clone(), value);
                        }
                    }
                }
            }
            Self::EnumMap { field, renamed, .. } => map_value(object, field, renamed, true),
            Self::Custom { up, .. } => up(object),
        }
    }

    /// Check the change against the fields the resource has after it (in the newer version),
    /// and turn that set into the fields it has before it (in the older version).
    pub(crate) fn fields_before(&self, fields: &mut Vec<String>) -> Result<(), String> {
        let first = |path: &str| path.split('.').next().unwrap_or(path).to_owned();
        let require = |fields: &Vec<String>, name: &str, why: &str| {
            if fields.iter().any(|f| *f == first(name)) {
                Ok(())
            } else {
                Err(format!(
                    "{why} `{name}`, but the resource has no field `{}` at that version (fields: {})",
                    first(name),
                    fields.join(", ")
                ))
            }
        };
        let forbid = |fields: &Vec<String>, name: &str, why: &str| {
            if fields.iter().any(|f| f == name) {
                Err(format!(
                    "{why} `{name}`, but the resource already has that field at that version"
                ))
            } else {
                Ok(())
            }
        };
        match self {
            Self::Rename { old, new } => {
                require(fields, new, "renames a field to")?;
                if !new.contains('.') {
                    forbid(fields, old, "renames from")?;
                    fields.retain(|f| f != new);
                    fields.push(old.clone());
                }
            }
            Self::Added { field, .. } => {
                require(fields, field, "adds")?;
                if !field.contains('.') {
                    fields.retain(|f| f != field);
                }
            }
            Self::Removed { field, .. } => {
                if !field.contains('.') {
                    forbid(fields, field, "removes")?;
                    fields.push(field.clone());
                }
            }
            Self::Nested { fields: moved, into } => {
                require(fields, into, "nests fields into")?;
                for field in moved {
                    forbid(fields, field, "nests")?;
                }
                fields.retain(|f| f != into);
                fields.extend(moved.iter().cloned());
            }
            Self::Flattened { from, fields: moved } => {
                for field in moved {
                    require(fields, field, "flattens")?;
                }
                forbid(fields, from, "flattens the object")?;
                fields.retain(|f| !moved.contains(f));
                fields.push(from.clone());
            }
            Self::EnumMap { field, .. } => require(fields, field, "remaps the values of")?,
            Self::Custom { .. } => {}
        }
        Ok(())
    }
}
