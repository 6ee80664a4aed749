//! Version changes, Stripe-style: handlers produce only the newest representation, and each
//! version that broke compatibility declares, once, what it changed. Responses are walked back
//! one version at a time (newest first); request bodies forward (oldest first).
//!
//! Writes follow one contract, whatever the version: a client may only change the fields its
//! version can see. Fields it does not know are refused ([`UnknownFields`]), fields added after
//! its version keep their stored value on updates ([`VersionChanges::upgrade_onto`],
//! [`VersionChanges::patch_onto`]) and take their declared default on creation.

mod ops;
mod plan;
mod shape;
mod write;

use std::{
    any::TypeId,
    collections::{BTreeMap, HashMap},
    fmt,
    sync::{Arc, PoisonError, RwLock},
};

use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

pub use shape::{Shape, VersionedShape};
pub(crate) use write::merge_patch;
pub use write::{ReadOnlyFields, UnknownFields};

pub(crate) use self::plan::Direction;
use self::{ops::Op, plan::Plan};
use crate::{ApiVersion, VersionSet};

/// A set of version changes that does not hold together, found when it is built or when a type
/// is registered: every problem is reported, each with the resource and version concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version changes:\n  - {}", .problems.join("\n  - "))]
pub struct VersionChangesError {
    problems: Vec<String>,
}

impl VersionChangesError {
    /// Each problem found.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

/// Why a value could not be transformed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransformError {
    /// The version is not one of the set's.
    #[error("API version {0} is not supported")]
    UnsupportedVersion(ApiVersion),
    /// The type's shape names resources that were never declared.
    #[error(transparent)]
    Invalid(#[from] VersionChangesError),
    /// The value could not be turned into JSON, or the JSON into the type. The message
    /// names fields as the client's version calls them.
    #[error("{message}")]
    Json {
        /// What serde said, in the client's vocabulary.
        message: String,
        /// The error itself.
        #[source]
        source: serde_json::Error,
    },
    /// A request names fields its version does not have.
    #[error(transparent)]
    UnknownFields(#[from] UnknownFields),
    /// A request writes fields only the server sets.
    #[error(transparent)]
    ReadOnly(#[from] ReadOnlyFields),
}

impl From<serde_json::Error> for TransformError {
    fn from(source: serde_json::Error) -> Self {
        Self::Json {
            message: crate::json::public_message(&source.to_string()),
            source,
        }
    }
}

#[derive(Debug, Default)]
struct ResourceChanges {
    head_fields: Vec<String>,
    /// Changes per version index (the version that introduced them).
    by_version: BTreeMap<usize, Vec<Op>>,
    /// The top-level fields at each version index.
    fields_at: Vec<Vec<String>>,
    /// At each version index, `(newest name, name at that version)` of the fields whose name
    /// differs, for messages in the client's vocabulary.
    renamed_at: Vec<Vec<(String, String)>>,
    /// Whether requests may carry fields the version does not have.
    ignore_unknown: bool,
    /// Fields only the server sets (newest names).
    read_only: Vec<String>,
}

/// The declared changes of every resource, with compiled plans cached per (type, version).
/// Cheap to clone.
///
/// ```
/// use cutover_versioning::{Shape, VersionChanges, VersionSet, VersionedShape};
/// use serde_json::json;
///
/// #[derive(serde::Serialize)]
/// struct User { id: u64, username: String, is_active: bool }
/// impl VersionedShape for User {
///     fn shape() -> Shape { Shape::resource("user") }
/// }
///
/// let versions = VersionSet::builder().supported(["1.0", "1.1"]).build().unwrap();
/// let changes = VersionChanges::builder(&versions)
///     .resource("user", ["id", "username", "is_active"], |user| {
///         user.version("1.1", |v| v.renamed("name", "username").renamed("active", "is_active"))
///     })
///     .build()
///     .unwrap();
///
/// // Render a webhook for a customer pinned to 1.0: no HTTP involved.
/// let user = User { id: 7, username: "ada".into(), is_active: true };
/// let old = changes.downgrade(&user, &"1.0".parse().unwrap()).unwrap();
/// assert_eq!(old, json!({"id": 7, "name": "ada", "active": true}));
/// ```
#[derive(Clone)]
pub struct VersionChanges {
    inner: Arc<ChangesInner>,
}

struct ChangesInner {
    set: VersionSet,
    resources: HashMap<&'static str, ResourceChanges>,
    plans: RwLock<HashMap<(TypeId, usize, Direction), Arc<Plan>>>,
}

impl fmt::Debug for VersionChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut resources: Vec<_> = self.inner.resources.keys().collect();
        resources.sort();
        f.debug_struct("VersionChanges")
            .field("resources", &resources)
            .finish_non_exhaustive()
    }
}

/// Builds [`VersionChanges`]. Created by [`VersionChanges::builder`].
#[must_use]
pub struct VersionChangesBuilder {
    set: VersionSet,
    resources: Vec<(&'static str, Vec<String>, ResourceBuilder)>,
}

impl fmt::Debug for VersionChangesBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VersionChangesBuilder").finish_non_exhaustive()
    }
}

/// The changes of one resource, version by version.
#[must_use]
#[derive(Default)]
pub struct ResourceBuilder {
    versions: Vec<(String, Vec<Op>)>,
    ignore_unknown: bool,
    read_only: Vec<String>,
}

impl fmt::Debug for ResourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceBuilder")
            .field("versions", &self.versions)
            .finish()
    }
}

impl ResourceBuilder {
    /// The changes `version` introduced, declared going forward (from the version before it).
    pub fn version(mut self, version: &str, changes: impl FnOnce(ChangeBuilder) -> ChangeBuilder) -> Self {
        let built = changes(ChangeBuilder::default());
        self.versions.push((version.to_owned(), built.ops));
        self
    }

    /// Accept (and drop) fields a request's version does not have, instead of refusing the
    /// request with 400. For resources whose clients are known to send extra fields; the
    /// stored resource is protected either way.
    pub fn ignore_unknown_fields(mut self) -> Self {
        self.ignore_unknown = true;
        self
    }

    /// Fields only the server sets (`id`, `created_at`, ...), by their newest names. One
    /// resource then serves as its own create and update body: a request type that names the
    /// same resource (`Shape::resource("user")` on both `User` and `NewUser`) goes through the
    /// same version changes, and a body that writes one of these fields is refused with 400
    /// ([`ReadOnlyFields`](crate::ReadOnlyFields)), in the request's vocabulary. A create may
    /// not set them; a `PUT` or `PATCH` may repeat them unchanged (a client sends back what it
    /// read).
    pub fn read_only<I, F>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = F>,
        F: Into<String>,
    {
        self.read_only.extend(fields.into_iter().map(Into::into));
        self
    }
}

/// The changes one version introduced to one resource. Field paths may be dotted
/// (`"profile.first_name"`) to reach into plain sub-objects.
#[must_use]
#[derive(Default)]
pub struct ChangeBuilder {
    ops: Vec<Op>,
}

impl fmt::Debug for ChangeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.ops).finish()
    }
}

impl ChangeBuilder {
    /// `old` was renamed to `new` in this version.
    pub fn renamed(mut self, old: &str, new: &str) -> Self {
        self.ops.push(Op::Rename {
            old: old.to_owned(),
            new: new.to_owned(),
        });
        self
    }

    /// `field` is new in this version: older clients do not see it.
    pub fn added(mut self, field: &str) -> Self {
        self.ops.push(Op::Added {
            field: field.to_owned(),
            default: None,
        });
        self
    }

    /// `field` is new in this version; a request from an older client, which cannot send it,
    /// gets `default`.
    pub fn added_with_default(mut self, field: &str, default: impl Into<Value>) -> Self {
        self.ops.push(Op::Added {
            field: field.to_owned(),
            default: Some(default.into()),
        });
        self
    }

    /// `field` was removed in this version; older clients still get it, rebuilt from the rest
    /// of the (older-version) object by `rebuild`.
    pub fn removed(
        mut self,
        field: &str,
        rebuild: impl Fn(&Map<String, Value>) -> Value + Send + Sync + 'static,
    ) -> Self {
        self.ops.push(Op::Removed {
            field: field.to_owned(),
            rebuild: Arc::new(rebuild),
        });
        self
    }

    /// `fields` moved into a new object `into` in this version (older clients see them flat).
    pub fn nested(mut self, fields: &[&str], into: &str) -> Self {
        self.ops.push(Op::Nested {
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            into: into.to_owned(),
        });
        self
    }

    /// The object `from` was flattened in this version: its `fields` now sit next to it.
    pub fn flattened(mut self, from: &str, fields: &[&str]) -> Self {
        self.ops.push(Op::Flattened {
            from: from.to_owned(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        });
        self
    }

    /// Values of the enum field `field` were renamed, as `(old, new)` pairs.
    pub fn enum_renamed(mut self, field: &str, pairs: &[(&str, &str)]) -> Self {
        self.ops.push(Op::EnumMap {
            field: field.to_owned(),
            renamed: pairs
                .iter()
                .map(|(old, new)| (Value::from(*old), Value::from(*new)))
                .collect(),
            added: Vec::new(),
        });
        self
    }

    /// The value `new` of the enum field `field` appeared in this version; older clients, who
    /// do not know it, get `fallback`.
    pub fn enum_added(mut self, field: &str, new: &str, fallback: &str) -> Self {
        self.ops.push(Op::EnumMap {
            field: field.to_owned(),
            renamed: Vec::new(),
            added: vec![(Value::from(fallback), Value::from(new))],
        });
        self
    }

    /// Any other change: `down` turns the new shape into the old one (responses), `up` the
    /// old into the new (requests).
    ///
    /// A custom change is taken not to add, remove or rename top-level fields (those are
    /// what requests are checked against): declare such changes with [`added`](Self::added),
    /// [`removed`](Self::removed) and [`renamed`](Self::renamed), or let the resource
    /// [`ignore_unknown_fields`](ResourceBuilder::ignore_unknown_fields). `up` sees the
    /// request body only; a write that sends back exactly what it read is still stored
    /// unchanged, because a version step that receives the stored value gives the stored value.
    pub fn custom(
        mut self,
        down: impl Fn(&mut Map<String, Value>) + Send + Sync + 'static,
        up: impl Fn(&mut Map<String, Value>) + Send + Sync + 'static,
    ) -> Self {
        self.ops.push(Op::Custom {
            down: Arc::new(down),
            up: Arc::new(up),
        });
        self
    }
}

impl VersionChanges {
    /// Start declaring changes for the versions in `set`.
    pub fn builder(set: &VersionSet) -> VersionChangesBuilder {
        VersionChangesBuilder {
            set: set.clone(),
            resources: Vec::new(),
        }
    }

    /// The version set the changes belong to.
    pub fn versions(&self) -> &VersionSet {
        &self.inner.set
    }

    /// Check `T`'s shape against the declared resources and compile its plans for every
    /// version now, so a mistake stops the service at start-up rather than on a request.
    pub fn register<T: VersionedShape + 'static>(&self) -> Result<(), VersionChangesError> {
        let count = self.inner.set.inner.versions.len();
        for index in 0..count {
            for direction in [Direction::Down, Direction::Up] {
                self.plan::<T>(index, direction)?;
            }
        }
        Ok(())
    }

    /// `value` (in the newest representation) as the client of `version` expects it.
    pub fn downgrade<T>(&self, value: &T, version: &ApiVersion) -> Result<Value, TransformError>
    where
        T: Serialize + VersionedShape + 'static,
    {
        let index = self.index(version)?;
        let mut json = serde_json::to_value(value)?;
        self.plan::<T>(index, Direction::Down)?.apply(&mut json);
        Ok(json)
    }

    /// A request `body` sent by a client of `version` to create a resource, brought to the
    /// newest representation and deserialized. Fields the version does not have are refused
    /// (unless the resource ignores them); fields added with a default get it when absent, in
    /// every version that has them.
    pub fn upgrade<T>(&self, mut body: Value, version: &ApiVersion) -> Result<T, TransformError>
    where
        T: DeserializeOwned + VersionedShape + 'static,
    {
        let index = self.index(version)?;
        let plan = self.plan::<T>(index, Direction::Up)?;
        self.check_fields(&plan, &body, index)?;
        self.check_read_only(&plan, &body, index, None)?;
        plan.apply(&mut body);
        self.deserialize(&plan, body, index)
    }

    /// A `PUT` body from a client of `version`: a full representation in that version,
    /// brought forward **onto** `stored` (the resource as it is now, newest representation).
    /// The client replaces what its version can see; fields it cannot see keep their stored
    /// values instead of being reset to defaults.
    ///
    /// ```
    /// use cutover_versioning::{Shape, VersionChanges, VersionSet, VersionedShape};
    /// use serde_json::json;
    ///
    /// #[derive(Debug, serde::Serialize, serde::Deserialize)]
    /// struct User { name: String, preferences: serde_json::Value }
    /// impl VersionedShape for User {
    ///     fn shape() -> Shape { Shape::resource("user") }
    /// }
    ///
    /// let versions = VersionSet::builder().supported(["1.0", "1.1"]).build()?;
    /// let changes = VersionChanges::builder(&versions)
    ///     .resource("user", ["name", "preferences"], |user| {
    ///         user.version("1.1", |v| v.added_with_default("preferences", json!({})))
    ///     })
    ///     .build()?;
    /// let stored = User { name: "ada".into(), preferences: json!({"theme": "dark"}) };
    ///
    /// // A 1.0 client renames the user; it has never seen `preferences`, so it keeps them.
    /// let updated: User = changes.upgrade_onto(json!({"name": "ada l."}), &"1.0".parse()?, &stored)?;
    /// assert_eq!(updated.preferences, json!({"theme": "dark"}));
    ///
    /// // A field 1.0 does not have is refused rather than stored.
    /// let refused = changes.upgrade_onto::<User, _>(json!({"name": "x", "preferences": {}}), &"1.0".parse()?, &stored);
    /// assert!(refused.unwrap_err().to_string().contains("`preferences`"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn upgrade_onto<T, R>(&self, body: Value, version: &ApiVersion, stored: &R) -> Result<T, TransformError>
    where
        T: DeserializeOwned + VersionedShape + 'static,
        R: Serialize + VersionedShape + 'static,
    {
        let index = self.index(version)?;
        let plan = self.plan::<T>(index, Direction::Up)?;
        self.check_fields(&plan, &body, index)?;
        let chain = self.stored_chain(index, stored)?;
        self.check_read_only(&plan, &body, index, Some(&chain[0]))?;
        let mut body = body;
        plan.apply_onto(&mut body, &chain);
        self.deserialize(&plan, body, index)
    }

    /// A `PATCH` body from a client of `version`: a JSON merge patch (RFC 7396) in that
    /// version's vocabulary, applied to `stored` as that version sees it, then brought forward
    /// onto `stored`. Exactly the fields the patch names change.
    pub fn patch_onto<T, R>(&self, patch: Value, version: &ApiVersion, stored: &R) -> Result<T, TransformError>
    where
        T: DeserializeOwned + VersionedShape + 'static,
        R: Serialize + VersionedShape + 'static,
    {
        let index = self.index(version)?;
        let plan = self.plan::<T>(index, Direction::Up)?;
        self.check_fields(&plan, &patch, index)?;
        let chain = self.stored_chain(index, stored)?;
        self.check_read_only(&plan, &patch, index, Some(&chain[0]))?;
        let mut body = chain[0].clone();
        merge_patch(&mut body, patch);
        plan.apply_onto(&mut body, &chain);
        self.deserialize(&plan, body, index)
    }

    /// `stored` at every version from `index` to the newest.
    fn stored_chain<R>(&self, index: usize, stored: &R) -> Result<Vec<Value>, TransformError>
    where
        R: Serialize + VersionedShape + 'static,
    {
        let newest = serde_json::to_value(stored)?;
        Ok(self.plan::<R>(index, Direction::Down)?.chain(newest))
    }

    /// Deserialize an upgraded body; errors name fields as the client's version does.
    fn deserialize<T: DeserializeOwned>(&self, plan: &Plan, body: Value, index: usize) -> Result<T, TransformError> {
        serde_json::from_value(body).map_err(|source| TransformError::Json {
            message: self.in_vocabulary(plan, &crate::json::public_message(&source.to_string()), index),
            source,
        })
    }

    /// Refuse server-set fields `body` writes: any at all on a create (`stored` is `None`);
    /// on an update, those at the top level that differ from `stored` as the request's
    /// version sees it (nested ones may be repeated as read).
    fn check_read_only(
        &self,
        plan: &Plan,
        body: &Value,
        index: usize,
        stored: Option<&Value>,
    ) -> Result<(), ReadOnlyFields> {
        for (name, path) in &plan.resources {
            let Some(resource) = self.inner.resources.get(name) else {
                continue;
            };
            if resource.read_only.is_empty() {
                continue;
            }
            let root = path.is_empty();
            if stored.is_some() && !root {
                continue;
            }
            let mut objects = Vec::new();
            plan::objects_at(body, path, &mut objects);
            let mut written: Vec<String> = Vec::new();
            for field in &resource.read_only {
                // The name the request's version gives it; absent from that version, the
                // unknown-field check has it.
                let named = resource.renamed_at[index]
                    .iter()
                    .find(|(newest, _)| newest == field)
                    .map_or(field.as_str(), |(_, old)| old.as_str());
                for object in &objects {
                    let Some(value) = object.get(named) else {
                        continue;
                    };
                    let unchanged = stored
                        .and_then(|stored| stored.get(named))
                        .is_some_and(|was| was == value);
                    if !unchanged && !written.iter().any(|w| w == named) {
                        written.push(named.to_owned());
                    }
                }
            }
            if !written.is_empty() {
                return Err(ReadOnlyFields::new(name, written));
            }
        }
        Ok(())
    }

    /// Refuse fields `body` carries that its version does not have.
    pub(crate) fn check_fields(&self, plan: &Plan, body: &Value, index: usize) -> Result<(), UnknownFields> {
        for (name, path) in &plan.resources {
            let Some(resource) = self.inner.resources.get(name) else {
                continue;
            };
            if resource.ignore_unknown {
                continue;
            }
            let known = &resource.fields_at[index];
            let mut objects = Vec::new();
            plan::objects_at(body, path, &mut objects);
            let mut unknown: Vec<String> = Vec::new();
            for object in objects {
                for key in object.keys() {
                    if !known.contains(key) && !unknown.contains(key) {
                        unknown.push(key.clone());
                    }
                }
            }
            if !unknown.is_empty() {
                return Err(UnknownFields::new(
                    name,
                    self.inner.set.info(index).version.clone(),
                    unknown,
                    known.clone(),
                ));
            }
        }
        Ok(())
    }

    /// `message` with the newest names of fields replaced by their names at `index`.
    pub(crate) fn in_vocabulary(&self, plan: &Plan, message: &str, index: usize) -> String {
        let mut message = message.to_owned();
        for (name, _) in &plan.resources {
            let Some(resource) = self.inner.resources.get(name) else {
                continue;
            };
            for (newest, old) in &resource.renamed_at[index] {
                message = message.replace(&format!("`{newest}`"), &format!("`{old}`"));
            }
        }
        message
    }

    fn index(&self, version: &ApiVersion) -> Result<usize, TransformError> {
        self.inner
            .set
            .index_of(version)
            .ok_or_else(|| TransformError::UnsupportedVersion(version.clone()))
    }

    /// The compiled plan for `T` to or from the version at `index`, cached.
    pub(crate) fn plan<T: VersionedShape + 'static>(
        &self,
        index: usize,
        direction: Direction,
    ) -> Result<Arc<Plan>, VersionChangesError> {
        self.plan_for(TypeId::of::<T>(), T::shape, index, direction)
    }

    pub(crate) fn plan_for(
        &self,
        type_id: TypeId,
        shape: fn() -> Shape,
        index: usize,
        direction: Direction,
    ) -> Result<Arc<Plan>, VersionChangesError> {
        let key = (type_id, index, direction);
        if let Some(plan) = self
            .inner
            .plans
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(Arc::clone(plan));
        }
        let shape = shape();
        let mut names = Vec::new();
        shape.resource_names(&mut names);
        let unknown: Vec<String> = names
            .into_iter()
            .filter(|name| !self.inner.resources.contains_key(name))
            .map(|name| {
                format!("a shape names the resource `{name}`, which has no `resource(\"{name}\", ...)` declaration")
            })
            .collect();
        if !unknown.is_empty() {
            return Err(VersionChangesError { problems: unknown });
        }
        let head = self.inner.set.inner.versions.len() - 1;
        let plan = Arc::new(Plan::compile(&shape, index, head, direction, &|name, version| {
            self.inner
                .resources
                .get(name)
                .and_then(|resource| resource.by_version.get(&version))
                .map_or(&[][..], Vec::as_slice)
        }));
        self.inner
            .plans
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Arc::clone(&plan));
        Ok(plan)
    }
}

impl VersionChangesBuilder {
    /// Declare resource `name`, its fields in the newest version, and the changes each version
    /// introduced to it. Every resource a shape names must be declared, even without changes.
    pub fn resource<I, F>(
        mut self,
        name: &'static str,
        head_fields: I,
        changes: impl FnOnce(ResourceBuilder) -> ResourceBuilder,
    ) -> Self
    where
        I: IntoIterator<Item = F>,
        F: Into<String>,
    {
        let fields = head_fields.into_iter().map(Into::into).collect();
        self.resources.push((name, fields, changes(ResourceBuilder::default())));
        self
    }

    /// Validate every change against the versions and the resources' fields, and build.
    pub fn build(self) -> Result<VersionChanges, VersionChangesError> {
        let set = self.set;
        let mut problems = Vec::new();
        let mut resources = HashMap::new();
        for (name, head_fields, builder) in self.resources {
            if resources.contains_key(name) {
                problems.push(format!("resource `{name}` is declared twice"));
                continue;
            }
            let mut changes = ResourceChanges {
                head_fields,
                by_version: BTreeMap::new(),
                fields_at: Vec::new(),
                renamed_at: Vec::new(),
                ignore_unknown: builder.ignore_unknown,
                read_only: Vec::new(),
            };
            for field in &builder.read_only {
                if changes.head_fields.contains(field) {
                    changes.read_only.push(field.clone());
                } else {
                    problems.push(format!(
                        "resource `{name}`: read-only field `{field}` is not one of its fields"
                    ));
                }
            }
            for (text, ops) in builder.versions {
                let index = match text.parse::<ApiVersion>() {
                    Ok(version) => match set.index_of(&version) {
                        Some(index) => index,
                        None => {
                            problems.push(format!(
                                "resource `{name}`: version {version} is not a supported version"
                            ));
                            continue;
                        }
                    },
                    Err(error) => {
                        problems.push(format!("resource `{name}`: {error}"));
                        continue;
                    }
                };
                if index == 0 {
                    problems.push(format!(
                        "resource `{name}`: version {text} is the oldest version; there is nothing before it to change"
                    ));
                    continue;
                }
                if changes.by_version.insert(index, ops).is_some() {
                    problems.push(format!("resource `{name}`: version {text} is declared twice"));
                }
            }
            // Walk the fields back from the newest version, checking every change on the way,
            // and record each version's fields and names.
            let count = set.inner.versions.len();
            let mut fields = changes.head_fields.clone();
            let mut names: Vec<(String, Option<String>)> =
                fields.iter().map(|f| (f.clone(), Some(f.clone()))).collect();
            let mut fields_at = vec![Vec::new(); count];
            let mut renamed_at = vec![Vec::new(); count];
            for index in (0..count).rev() {
                fields_at[index].clone_from(&fields);
                renamed_at[index] = names
                    .iter()
                    .filter_map(|(newest, old)| {
                        old.as_ref()
                            .filter(|old| *old != newest)
                            .map(|old| (newest.clone(), old.clone()))
                    })
                    .collect();
                let Some(ops) = changes.by_version.get(&index) else {
                    continue;
                };
                for op in ops.iter().rev() {
                    if let Err(problem) = op.fields_before(&mut fields) {
                        problems.push(format!(
                            "resource `{name}`, version {}: {problem}",
                            set.info(index).version
                        ));
                    }
                    for (_, old) in &mut names {
                        *old = old.as_deref().and_then(|current| op.name_before(current));
                    }
                }
            }
            changes.fields_at = fields_at;
            changes.renamed_at = renamed_at;
            resources.insert(name, changes);
        }
        if !problems.is_empty() {
            return Err(VersionChangesError { problems });
        }
        Ok(VersionChanges {
            inner: Arc::new(ChangesInner {
                set,
                resources,
                plans: RwLock::new(HashMap::new()),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn set() -> VersionSet {
        VersionSet::builder().supported(["1.0", "1.1", "1.2"]).build().unwrap()
    }

    #[test]
    fn every_mistake_is_reported_with_its_resource_and_version() {
        let error = VersionChanges::builder(&set())
            .resource("user", ["id", "username"], |r| {
                r.version("1.1", |v| v.renamed("name", "usernme").added("email"))
                    .version("1.0", |v| v.added("id"))
                    .version("1.9", |v| v.added("x"))
            })
            .resource("user", ["id"], |r| r)
            .build()
            .unwrap_err();
        let problems = error.problems().join("\n");
        assert!(
            problems.contains("version 1.1: renames a field to `usernme`, but the resource has no field `usernme`"),
            "{problems}"
        );
        assert!(
            problems.contains("version 1.1: adds `email`, but the resource has no field `email`"),
            "{problems}"
        );
        assert!(problems.contains("version 1.0 is the oldest version"), "{problems}");
        assert!(
            problems.contains("version 1.9 is not a supported version"),
            "{problems}"
        );
        assert!(problems.contains("resource `user` is declared twice"), "{problems}");
    }

    #[test]
    fn fields_are_tracked_across_versions() {
        // 1.2 renames a field that 1.1 added: valid only because the walk is ordered.
        let changes = VersionChanges::builder(&set())
            .resource("thing", ["id", "title"], |r| {
                r.version("1.2", |v| v.renamed("name", "title"))
                    .version("1.1", |v| v.added("name"))
            })
            .build();
        assert!(changes.is_ok(), "{changes:?}");
        // But 1.1 cannot add a field that only exists from 1.2 on.
        let error = VersionChanges::builder(&set())
            .resource("thing", ["id", "title"], |r| {
                r.version("1.2", |v| v.renamed("name", "title"))
                    .version("1.1", |v| v.added("title"))
            })
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("version 1.1: adds `title`"), "{error}");
    }

    #[test]
    fn unknown_resources_in_shapes_are_caught_at_registration() {
        struct Typo;
        impl VersionedShape for Typo {
            fn shape() -> Shape {
                Shape::object([("items", Shape::List(Box::new(Shape::resource("usr"))))])
            }
        }
        let changes = VersionChanges::builder(&set())
            .resource("user", ["id"], |r| r)
            .build()
            .unwrap();
        let error = changes.register::<Typo>().unwrap_err();
        assert!(error.to_string().contains("names the resource `usr`"), "{error}");
        let _ = json!(null);
    }
}
