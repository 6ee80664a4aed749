//! Where versioned resources sit inside a response or request body.

use serde_json::Value;

/// The layout of a type's JSON, as far as version changes are concerned: which parts are
/// versioned resources, and where they are nested. Implemented with [`VersionedShape`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// A resource whose changes are declared under `name`, possibly embedding others.
    Resource {
        /// The name changes are declared under.
        name: &'static str,
        /// Fields of this resource that hold other versioned values.
        children: Vec<(&'static str, Shape)>,
    },
    /// A plain object (a page, an envelope) with versioned values in some fields.
    Object(Vec<(&'static str, Shape)>),
    /// An array whose items all have the inner shape.
    List(Box<Shape>),
    /// Nothing versioned inside.
    Opaque,
}

impl Shape {
    /// A resource with no embedded resources.
    pub fn resource(name: &'static str) -> Self {
        Self::Resource {
            name,
            children: Vec::new(),
        }
    }

    /// A resource embedding others: `Shape::resource_with("team", [("members", Vec::<User>::shape())])`.
    pub fn resource_with(name: &'static str, children: impl IntoIterator<Item = (&'static str, Shape)>) -> Self {
        Self::Resource {
            name,
            children: children.into_iter().collect(),
        }
    }

    /// A plain object with versioned values in some fields.
    pub fn object(fields: impl IntoIterator<Item = (&'static str, Shape)>) -> Self {
        Self::Object(fields.into_iter().collect())
    }

    /// Every resource name used, for validation.
    pub(crate) fn resource_names(&self, out: &mut Vec<&'static str>) {
        match self {
            Self::Resource { name, children } => {
                out.push(name);
                children.iter().for_each(|(_, shape)| shape.resource_names(out));
            }
            Self::Object(fields) => fields.iter().for_each(|(_, shape)| shape.resource_names(out)),
            Self::List(item) => item.resource_names(out),
            Self::Opaque => {}
        }
    }
}

/// Types that know their [`Shape`]. Implement it for each resource and each container that
/// carries resources; `Vec<T>`, `Option<T>`, `Box<T>` and `serde_json::Value` are covered.
///
/// ```
/// use cutover_versioning::{Shape, VersionedShape};
///
/// #[derive(serde::Serialize)]
/// struct User { id: u64, username: String }
/// impl VersionedShape for User {
///     fn shape() -> Shape { Shape::resource("user") }
/// }
///
/// #[derive(serde::Serialize)]
/// struct Page<T> { items: Vec<T>, next_cursor: Option<String> }
/// impl<T: VersionedShape> VersionedShape for Page<T> {
///     fn shape() -> Shape { Shape::object([("items", Vec::<T>::shape())]) }
/// }
/// ```
pub trait VersionedShape {
    /// The shape of this type's JSON.
    fn shape() -> Shape;
}

impl<T: VersionedShape> VersionedShape for Vec<T> {
    fn shape() -> Shape {
        Shape::List(Box::new(T::shape()))
    }
}

impl<T: VersionedShape> VersionedShape for Option<T> {
    fn shape() -> Shape {
        // `null` is skipped when walking, so an option has its inner shape.
        T::shape()
    }
}

impl<T: VersionedShape> VersionedShape for Box<T> {
    fn shape() -> Shape {
        T::shape()
    }
}

impl VersionedShape for Value {
    fn shape() -> Shape {
        Shape::Opaque
    }
}
