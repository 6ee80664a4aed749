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
enum Segment {
    Field(&'static str),
    Each,
}

#[derive(Debug)]
struct Step {
    path: Vec<Segment>,
    ops: Vec<Op>,
    direction: Direction,
}

/// The steps for one (type, version, direction). Empty for the newest version.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    steps: Vec<Step>,
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
                        path: resource.path.clone(),
                        ops: ops.to_vec(),
                        direction,
                    });
                }
            }
        }
        Self { steps }
    }

    /// Whether applying the plan changes anything.
    pub(crate) fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub(crate) fn apply(&self, value: &mut Value) {
        for step in &self.steps {
            walk(value, &step.path, &mut |object| match step.direction {
                // Within one version, changes are undone in reverse declaration order.
                Direction::Down => step.ops.iter().rev().for_each(|op| op.down(object)),
                Direction::Up => step.ops.iter().for_each(|op| op.up(object)),
            });
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
