//! A compiled plan: for one type and one version, the flat list of (where, what) to apply.
//! Compiling walks the shape once; applying only walks the JSON value.

use serde_json::{Map, Value};

use super::{Shape, ops::Op};

/// Responses go back in versions; request bodies go forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Direction {
    Down,
    Up,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Field(&'static str),
    Each,
}

#[derive(Debug)]
struct Step {
    /// The version that introduced the changes.
    version: usize,
    path: Vec<Segment>,
    ops: Vec<Op>,
}

/// The steps for one (type, version, direction). Empty for the newest version, except for the
/// request defaults it has.
#[derive(Debug)]
pub(crate) struct Plan {
    direction: Direction,
    /// Going up: the defaults of fields the client's version already has, filled in first.
    prefill: Vec<Step>,
    /// Ordered by version (newest first going down, oldest first going up), then by depth.
    steps: Vec<Step>,
    /// The client's version and the newest.
    target: usize,
    head: usize,
    /// Every resource of the shape and where it sits, for checking request fields.
    pub(crate) resources: Vec<(&'static str, Vec<Segment>)>,
}

/// A resource found in a shape, with the path to it.
struct Located<'a> {
    name: &'static str,
    path: Vec<Segment>,
    depth: usize,
    _shape: &'a Shape,
}

fn locate<'a>(shape: &'a Shape, path: &mut Vec<Segment>, depth: usize, out: &mut Vec<Located<'a>>) {
    match shape {
        Shape::Resource { name, children } => {
            out.push(Located {
                name,
                path: path.clone(),
                depth,
                _shape: shape,
            });
            for (field, child) in children {
                path.push(Segment::Field(field));
                locate(child, path, depth + 1, out);
                path.pop();
            }
        }
        Shape::Object(fields) => {
            for (field, child) in fields {
                path.push(Segment::Field(field));
                locate(child, path, depth + 1, out);
                path.pop();
            }
        }
        Shape::List(item) => {
            path.push(Segment::Each);
            locate(item, path, depth + 1, out);
            path.pop();
        }
        Shape::Opaque => {}
    }
}

impl Plan {
    /// `target` and `head` are version indexes; `ops_of(resource, version)` gives the changes
    /// a version introduced to a resource.
    pub(crate) fn compile<'a>(
        shape: &Shape,
        target: usize,
        head: usize,
        direction: Direction,
        ops_of: &dyn Fn(&str, usize) -> &'a [Op],
    ) -> Self {
        let mut resources = Vec::new();
        locate(shape, &mut Vec::new(), 0, &mut resources);
        // Children before parents going down (a parent's flatten sees downgraded children);
        // parents before children going up.
        match direction {
            Direction::Down => resources.sort_by_key(|r| std::cmp::Reverse(r.depth)),
            Direction::Up => resources.sort_by_key(|r| r.depth),
        }
        let versions: Vec<usize> = match direction {
            Direction::Down => (target + 1..=head).rev().collect(),
            Direction::Up => (target + 1..=head).collect(),
        };
        let mut steps = Vec::new();
        for version in versions {
            for resource in &resources {
                let ops = ops_of(resource.name, version);
                if !ops.is_empty() {
                    steps.push(Step {
                        version,
                        path: resource.path.clone(),
                        ops: ops.to_vec(),
                    });
                }
            }
        }
        let mut prefill = Vec::new();
        if direction == Direction::Up {
            for resource in &resources {
                let defaults = defaults_at(resource.name, target, ops_of);
                if !defaults.is_empty() {
                    prefill.push(Step {
                        version: target,
                        path: resource.path.clone(),
                        ops: defaults,
                    });
                }
            }
        }
        Self {
            direction,
            prefill,
            steps,
            target,
            head,
            resources: resources.into_iter().map(|r| (r.name, r.path)).collect(),
        }
    }

    /// Whether applying the plan changes anything.
    pub(crate) fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.prefill.is_empty()
    }

    pub(crate) fn apply(&self, value: &mut Value) {
        for step in self.prefill.iter().chain(&self.steps) {
            walk(value, &step.path, &mut |object| match self.direction {
                // Within one version, changes are undone in reverse declaration order.
                Direction::Down => step.ops.iter().rev().for_each(|op| op.down(object)),
                Direction::Up => step.ops.iter().for_each(|op| op.up(object, None)),
            });
        }
    }

    /// Going down from the newest representation: the value at every version from the newest
    /// to the plan's target, newest last (`chain[k - target]` is the value at version `k`).
    pub(crate) fn chain(&self, newest: Value) -> Vec<Value> {
        debug_assert_eq!(self.direction, Direction::Down);
        let mut chain = vec![Value::Null; self.head - self.target + 1];
        let mut value = newest;
        let mut steps = self.steps.iter().peekable();
        for version in (self.target + 1..=self.head).rev() {
            chain[version - self.target] = value.clone();
            while let Some(step) = steps.next_if(|step| step.version == version) {
                walk(&mut value, &step.path, &mut |object| {
                    step.ops.iter().rev().for_each(|op| op.down(object));
                });
            }
        }
        chain[0] = value;
        chain
    }

    /// Going up onto a stored resource: `stored` is its [`chain`](Self::chain) from the same
    /// target. A version step that receives exactly what is stored at the older version gives
    /// exactly what is stored at the newer one; otherwise fields the client's version cannot
    /// see keep their stored values.
    pub(crate) fn apply_onto(&self, value: &mut Value, stored: &[Value]) {
        debug_assert_eq!(self.direction, Direction::Up);
        for step in &self.prefill {
            walk(value, &step.path, &mut |object| {
                step.ops.iter().for_each(|op| op.up(object, None));
            });
        }
        let mut steps = self.steps.iter().peekable();
        for version in self.target + 1..=self.head {
            let (Some(before), Some(after)) =
                (stored.get(version - 1 - self.target), stored.get(version - self.target))
            else {
                break;
            };
            if value == before {
                *value = after.clone();
                while steps.next_if(|step| step.version == version).is_some() {}
                continue;
            }
            while let Some(step) = steps.next_if(|step| step.version == version) {
                walk_onto(value, Some(after), &step.path, &mut |object, stored| {
                    step.ops.iter().for_each(|op| op.up(object, stored));
                });
            }
        }
    }
}

/// The request defaults of `resource`'s fields that exist at `target`: fields added with a
/// default by `target` or earlier, under their name at `target`.
fn defaults_at<'a>(resource: &str, target: usize, ops_of: &dyn Fn(&str, usize) -> &'a [Op]) -> Vec<Op> {
    let mut defaults: Vec<(String, Value)> = Vec::new();
    for version in 1..=target {
        for op in ops_of(resource, version) {
            // Later changes move the fields added before them.
            defaults.retain_mut(|(name, _)| op.follow(name));
            if let Op::Added {
                field,
                default: Some(default),
            } = op
            {
                defaults.push((field.clone(), default.clone()));
            }
        }
    }
    defaults
        .into_iter()
        .map(|(field, default)| Op::Added {
            field,
            default: Some(default),
        })
        .collect()
}

/// What a step does to one resource object, given the stored object beside it.
type ApplyOnto<'f> = dyn FnMut(&mut Map<String, Value>, Option<&Map<String, Value>>) + 'f;

/// Walk `value` and the stored value beside it, pairing list items by position.
fn walk_onto(value: &mut Value, stored: Option<&Value>, path: &[Segment], apply: &mut ApplyOnto<'_>) {
    match path.split_first() {
        None => {
            if let Value::Object(object) = value {
                apply(object, stored.and_then(Value::as_object));
            }
        }
        Some((Segment::Field(field), rest)) => {
            if let Some(child) = value.as_object_mut().and_then(|object| object.get_mut(*field)) {
                let stored = stored.and_then(|s| s.get(*field));
                walk_onto(child, stored, rest, apply);
            }
        }
        Some((Segment::Each, rest)) => {
            if let Value::Array(items) = value {
                let stored = stored.and_then(Value::as_array);
                for (index, item) in items.iter_mut().enumerate() {
                    walk_onto(item, stored.and_then(|s| s.get(index)), rest, apply);
                }
            }
        }
    }
}

/// Every resource object at `path` in `value`.
pub(crate) fn objects_at<'v>(value: &'v Value, path: &[Segment], out: &mut Vec<&'v Map<String, Value>>) {
    match path.split_first() {
        None => {
            if let Value::Object(object) = value {
                out.push(object);
            }
        }
        Some((Segment::Field(field), rest)) => {
            if let Some(child) = value.get(*field) {
                objects_at(child, rest, out);
            }
        }
        Some((Segment::Each, rest)) => {
            if let Value::Array(items) = value {
                for item in items {
                    objects_at(item, rest, out);
                }
            }
        }
    }
}

fn walk(value: &mut Value, path: &[Segment], apply: &mut dyn FnMut(&mut Map<String, Value>)) {
    match path.split_first() {
        None => {
            if let Value::Object(object) = value {
                apply(object);
            }
        }
        Some((Segment::Field(field), rest)) => {
            if let Some(child) = value.as_object_mut().and_then(|object| object.get_mut(*field)) {
                walk(child, rest, apply);
            }
        }
        Some((Segment::Each, rest)) => {
            if let Value::Array(items) = value {
                for item in items {
                    walk(item, rest, apply);
                }
            }
        }
    }
}
