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

/// The value at a dotted `path`.
fn lookup<'a>(object: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut segments = path.split('.');
    let mut current = object.get(segments.next()?)?;
    for segment in segments {
        current = current.as_object()?.get(segment)?;
    }
    Some(current)
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

    /// Redo the change: turn the older shape into the newer one (requests). `stored` is the
    /// stored resource in the newer shape, for writes onto it: a field the older version cannot
    /// see keeps its stored value instead of its default, and a value the older version only
    /// saw as a fallback keeps the stored value it stands for.
    pub(crate) fn up(&self, object: &mut Map<String, Value>, stored: Option<&Map<String, Value>>) {
        match self {
            Self::Rename { old, new } => rename(object, old, new),
            Self::Added { field, default } => {
                let kept = stored.and_then(|stored| lookup(stored, field)).cloned();
                if let Some((holder, key)) = parent(object, field)
                    && !holder.contains_key(key)
                    && let Some(value) = kept.or_else(|| default.clone())
                {
                    holder.insert(key.to_owned(), value);
                }
            }
            Self::Removed { field, .. } => {
                if let Some((holder, key)) = parent(object, field) {
                    holder.remove(key);
                }
            }
            Self::Nested { fields, into } => {
                // Onto a stored resource, the nested object keeps the members the older
                // version never saw.
                let mut inner = match stored.and_then(|stored| stored.get(into)) {
                    Some(Value::Object(stored)) => stored.clone(),
                    _ => Map::new(),
                };
                let mut moved = false;
                for field in fields {
                    if let Some(value) = object.remove(field) {
                        moved = true;
                        if value.is_null() && stored.is_some() && !inner.contains_key(field) {
                            continue; // the older shape shows a missing member as null
                        }
                        inner.insert(field.clone(), value);
                    }
                }
                if moved || !object.contains_key(into) {
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
            Self::EnumMap { field, renamed, added } => {
                // A value the client sent back unchanged stays what is stored, even when the
                // older version could only see it as a fallback.
                let stored_value = stored.and_then(|stored| lookup(stored, field));
                if let (Some(stored_value), Some((holder, key))) = (stored_value, parent(object, field))
                    && let Some(sent) = holder.get(key)
                {
                    let mut seen = Map::new();
                    seen.insert(key.to_owned(), stored_value.clone());
                    map_value(&mut seen, key, added, false);
                    map_value(&mut seen, key, renamed, false);
                    if seen.get(key) == Some(sent) {
                        holder.insert(key.to_owned(), stored_value.clone());
                        return;
                    }
                }
                map_value(object, field, renamed, true);
            }
            Self::Custom { up, .. } => up(object),
        }
    }

    /// Where a field named `name` before the change is after it; `false` when the change
    /// removes it.
    pub(crate) fn follow(&self, name: &mut String) -> bool {
        match self {
            Self::Rename { old, new } if old == name => *name = new.clone(),
            Self::Removed { field, .. } if field == name => return false,
            Self::Nested { fields, into } if fields.contains(name) => *name = format!("{into}.{name}"),
            Self::Flattened { from, fields } => {
                if name == from {
                    return false;
                }
                if let Some(member) = name.strip_prefix(from.as_str()).and_then(|rest| rest.strip_prefix('.'))
                    && fields.iter().any(|f| f == member)
                {
                    *name = member.to_owned();
                }
            }
            _ => {}
        }
        true
    }

    /// The reverse of [`follow`](Self::follow) for top-level names, for error messages: what
    /// a field called `name` after the change was called before it (`None`: it did not exist).
    pub(crate) fn name_before(&self, name: &str) -> Option<String> {
        match self {
            Self::Rename { old, new } if new == name && !new.contains('.') => Some(old.clone()),
            Self::Added { field, .. } if field == name => None,
            Self::Nested { into, .. } if into == name => None,
            _ => Some(name.to_owned()),
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
