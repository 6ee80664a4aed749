//! What a MongoDB migration can do. Every operation is idempotent, so a step interrupted
//! between doing its work and recording it in the ledger can simply run again.

use std::{fmt, sync::Arc, time::Duration};

use mongodb::bson::{Bson, Document, doc};

use crate::BoxError;

/// How strictly a collection's validator applies (MongoDB's `validationLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationLevel {
    /// No validation.
    Off,
    /// Inserts and updates of documents that already pass are validated; invalid ones are left.
    Moderate,
    /// Every insert and update is validated.
    Strict,
}

impl ValidationLevel {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Moderate => "moderate",
            Self::Strict => "strict",
        }
    }
}

/// What happens to a document that fails validation (MongoDB's `validationAction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationAction {
    /// Written, with a warning in the server's log: the first stage of a staged rollout.
    Warn,
    /// Refused.
    Error,
}

impl ValidationAction {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// Create a collection, optionally with a validator. Already there: the validator (if any) is
/// applied with `collMod`, so a rerun converges on the same state.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateCollection {
    pub(crate) name: String,
    pub(crate) validation: Option<Validation>,
}

/// A validator with its level and action.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Validation {
    pub(crate) validator: Document,
    pub(crate) level: ValidationLevel,
    pub(crate) action: ValidationAction,
}

impl Validation {
    fn fields(&self) -> Document {
        doc! {
            "validator": self.validator.clone(),
            "validationLevel": self.level.as_str(),
            "validationAction": self.action.as_str(),
        }
    }
}

impl CreateCollection {
    /// A plain collection.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            validation: None,
        }
    }

    /// With a validator (for example `doc! { "$jsonSchema": { ... } }`), strict, refusing
    /// invalid documents. For a staged rollout, create it with
    /// [`ValidationAction::Warn`] through [`validation`](Self::validation), backfill, then
    /// switch to `Error` with [`SetValidation`] in a later migration.
    pub fn validator(self, validator: Document) -> Self {
        self.validation(validator, ValidationLevel::Strict, ValidationAction::Error)
    }

    /// With a validator, level and action.
    pub fn validation(mut self, validator: Document, level: ValidationLevel, action: ValidationAction) -> Self {
        self.validation = Some(Validation {
            validator,
            level,
            action,
        });
        self
    }

    pub(crate) fn create_command(&self) -> Document {
        let mut command = doc! { "create": &self.name };
        if let Some(validation) = &self.validation {
            command.extend(validation.fields());
        }
        command
    }

    pub(crate) fn coll_mod_command(&self) -> Option<Document> {
        self.validation.as_ref().map(|validation| {
            let mut command = doc! { "collMod": &self.name };
            command.extend(validation.fields());
            command
        })
    }
}

/// Set a collection's validator, level and action with `collMod`: the last stage of a staged
/// validator rollout (warn → backfill → error).
#[derive(Debug, Clone, PartialEq)]
pub struct SetValidation {
    pub(crate) collection: String,
    pub(crate) validation: Validation,
}

impl SetValidation {
    /// Validate `collection` with `validator` at `level`, doing `action` on failures.
    pub fn new(
        collection: impl Into<String>,
        validator: Document,
        level: ValidationLevel,
        action: ValidationAction,
    ) -> Self {
        Self {
            collection: collection.into(),
            validation: Validation {
                validator,
                level,
                action,
            },
        }
    }

    pub(crate) fn command(&self) -> Document {
        let mut command = doc! { "collMod": &self.collection };
        command.extend(self.validation.fields());
        command
    }
}

/// Batching and throttling of a long operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Documents per batch (default 1,000, as in the brief).
    pub size: u32,
    /// Pause between batches (default 100 ms, as in the brief).
    pub pause: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            size: 1_000,
            pause: Duration::from_millis(100),
        }
    }
}

/// Add fields with default values to the documents of a collection that lack them, in
/// batches. Each field is set only where it is missing: a document that already has a value
/// keeps it, and a rerun changes nothing. Documents written without the fields while it runs
/// (by the version still serving) are taken by further passes, up to five; if they keep
/// coming the step fails and says so, and the next run continues.
#[derive(Debug, Clone, PartialEq)]
pub struct AddFields {
    pub(crate) collection: String,
    pub(crate) fields: Document,
    pub(crate) batching: Batching,
}

impl AddFields {
    /// Set each of `fields` (name → default) on the documents of `collection` that lack it.
    pub fn new(collection: impl Into<String>, fields: Document) -> Self {
        Self {
            collection: collection.into(),
            fields,
            batching: Batching::default(),
        }
    }

    /// Batch size and pause.
    pub fn batching(mut self, batching: Batching) -> Self {
        self.batching = batching;
        self
    }

    /// Documents lacking at least one of the fields.
    pub(crate) fn missing_filter(&self) -> Document {
        let missing: Vec<Bson> = self
            .fields
            .keys()
            .map(|field| Bson::Document(doc! { field: { "$exists": false } }))
            .collect();
        doc! { "$or": missing }
    }
}

/// A named index. An index with the same name and definition is left alone; the same name with
/// another definition is an error naming both.
#[derive(Debug, Clone, PartialEq)]
pub struct Index {
    pub(crate) collection: String,
    pub(crate) name: String,
    pub(crate) keys: Document,
    pub(crate) options: Document,
}

impl Index {
    /// An index `name` on `collection` over `keys` (for example `doc! { "user_id": 1, "timestamp": -1 }`).
    pub fn new(collection: impl Into<String>, name: impl Into<String>, keys: Document) -> Self {
        Self {
            collection: collection.into(),
            name: name.into(),
            keys,
            options: Document::new(),
        }
    }

    /// A unique index.
    pub fn unique(self) -> Self {
        self.option("unique", true)
    }

    /// Any other `createIndexes` option (`sparse`, `partialFilterExpression`,
    /// `expireAfterSeconds`, ...). On MongoDB 4.2 and later every build is an optimized
    /// background build; the old `background` option is not needed.
    pub fn option(mut self, name: &str, value: impl Into<Bson>) -> Self {
        self.options.insert(name, value.into());
        self
    }

    pub(crate) fn spec(&self) -> Document {
        let mut spec = doc! { "key": self.keys.clone(), "name": &self.name };
        spec.extend(self.options.clone());
        spec
    }
}

/// Turns a source document into its target document.
pub type Transform = Arc<dyn Fn(Document) -> Result<Document, BoxError> + Send + Sync>;

/// Copy the documents of one collection into another through a Rust function, in batches.
///
/// Each batch is read from the source documents not yet marked, transformed, written to the
/// target with one unordered bulk insert, then marked in the source (`marker: true`). The target
/// document keeps the source's `_id` and carries the marker too, so a run killed anywhere resumes
/// where it stopped and never writes a document twice: a batch written but not yet marked is
/// written again, and those inserts fail as duplicates, which the runner expects.
#[derive(Clone)]
pub struct CopyDocuments {
    pub(crate) source: String,
    pub(crate) target: String,
    pub(crate) marker: String,
    pub(crate) filter: Document,
    pub(crate) fingerprint: String,
    pub(crate) transform: Transform,
    pub(crate) batching: Batching,
}

impl fmt::Debug for CopyDocuments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyDocuments")
            .field("source", &self.source)
            .field("target", &self.target)
            .field("marker", &self.marker)
            .field("filter", &self.filter)
            .field("fingerprint", &self.fingerprint)
            .field("batching", &self.batching)
            .finish_non_exhaustive()
    }
}

impl CopyDocuments {
    /// Copy `source` into `target` through `transform`, marking progress with the boolean field
    /// `marker`. `fingerprint` names the transform in the checksum: change it when the function
    /// changes meaning.
    pub fn new(
        source: impl Into<String>,
        target: impl Into<String>,
        marker: impl Into<String>,
        fingerprint: impl Into<String>,
        transform: impl Fn(Document) -> Result<Document, BoxError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            source: source.into(),
            target: target.into(),
            marker: marker.into(),
            filter: Document::new(),
            fingerprint: fingerprint.into(),
            transform: Arc::new(transform),
            batching: Batching::default(),
        }
    }

    /// Only source documents matching `filter`.
    pub fn filter(mut self, filter: Document) -> Self {
        self.filter = filter;
        self
    }

    /// Batch size and pause.
    pub fn batching(mut self, batching: Batching) -> Self {
        self.batching = batching;
        self
    }

    /// Source documents not yet copied.
    pub(crate) fn pending_filter(&self) -> Document {
        let mut filter = self.filter.clone();
        filter.insert(&self.marker, doc! { "$ne": true });
        filter
    }
}

/// One step of a MongoDB migration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Operation {
    /// A database command, run with `runCommand` (what `.up.json` files hold).
    Command(Document),
    /// Create a collection.
    CreateCollection(CreateCollection),
    /// Change a collection's validation.
    SetValidation(SetValidation),
    /// Add fields with defaults where they are missing.
    AddFields(AddFields),
    /// Create a named index.
    CreateIndex(Index),
    /// Copy documents through a Rust function.
    CopyDocuments(CopyDocuments),
}

impl Operation {
    /// A one-line description, for messages and progress.
    pub fn describe(&self) -> String {
        match self {
            Self::Command(command) => format!("command `{}`", command.keys().next().map_or("(empty)", String::as_str)),
            Self::CreateCollection(op) => match &op.validation {
                Some(v) => format!(
                    "create collection `{}` with a validator ({}, {})",
                    op.name,
                    v.level.as_str(),
                    v.action.as_str()
                ),
                None => format!("create collection `{}`", op.name),
            },
            Self::SetValidation(op) => format!(
                "set the validator of `{}` ({}, {})",
                op.collection,
                op.validation.level.as_str(),
                op.validation.action.as_str()
            ),
            Self::AddFields(op) => format!(
                "add {} to `{}` where missing",
                op.fields.keys().map(String::as_str).collect::<Vec<_>>().join(", "),
                op.collection
            ),
            Self::CreateIndex(op) => format!("create index `{}` on `{}`", op.name, op.collection),
            Self::CopyDocuments(op) => format!("copy `{}` into `{}` ({})", op.source, op.target, op.fingerprint),
        }
    }

    /// What the operation is, as a document: the input of the migration's checksum.
    pub(crate) fn canonical(&self) -> Document {
        match self {
            Self::Command(command) => doc! { "command": command.clone() },
            Self::CreateCollection(op) => doc! { "createCollection": op.create_command() },
            Self::SetValidation(op) => doc! { "setValidation": op.command() },
            Self::AddFields(op) => doc! {
                "addFields": { "collection": &op.collection, "fields": op.fields.clone() },
            },
            Self::CreateIndex(op) => doc! {
                "createIndex": { "collection": &op.collection, "spec": op.spec() },
            },
            Self::CopyDocuments(op) => doc! {
                "copyDocuments": {
                    "source": &op.source,
                    "target": &op.target,
                    "marker": &op.marker,
                    "filter": op.filter.clone(),
                    "transform": &op.fingerprint,
                },
            },
        }
    }

    /// The commands that undo it, or `None` when it cannot be undone (a raw command).
    pub(crate) fn down(&self) -> Option<Vec<Document>> {
        match self {
            Self::Command(_) => None,
            Self::CreateCollection(op) => Some(vec![doc! { "drop": &op.name }]),
            // The previous validator is not known: validation is switched off.
            Self::SetValidation(op) => Some(vec![doc! {
                "collMod": &op.collection, "validator": {}, "validationLevel": "off",
            }]),
            Self::AddFields(op) => {
                let unset: Document = op
                    .fields
                    .keys()
                    .map(|field| (field.clone(), Bson::String(String::new())))
                    .collect();
                Some(vec![doc! {
                    "update": &op.collection,
                    "updates": [{ "q": {}, "u": { "$unset": unset }, "multi": true }],
                }])
            }
            Self::CreateIndex(op) => Some(vec![doc! { "dropIndexes": &op.collection, "index": &op.name }]),
            Self::CopyDocuments(op) => Some(vec![
                doc! {
                    "delete": &op.target,
                    "deletes": [{ "q": { &op.marker: true }, "limit": 0 }],
                },
                doc! {
                    "update": &op.source,
                    "updates": [{ "q": { &op.marker: true }, "u": { "$unset": { &op.marker: "" } }, "multi": true }],
                },
            ]),
        }
    }
}

macro_rules! into_operation {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        $(impl From<$ty> for Operation {
            fn from(op: $ty) -> Self {
                Self::$variant(op)
            }
        })*
    };
}

into_operation!(
    CreateCollection(CreateCollection),
    SetValidation(SetValidation),
    AddFields(AddFields),
    CreateIndex(Index),
    CopyDocuments(CopyDocuments),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_fields_selects_documents_missing_any_field_and_unsets_them_all_on_down() {
        let op = AddFields::new("events", doc! { "version": "1.3.0", "processing_status": "pending" });
        assert_eq!(
            op.missing_filter(),
            doc! { "$or": [{ "version": { "$exists": false } }, { "processing_status": { "$exists": false } }] }
        );
        let down = Operation::AddFields(op).down().unwrap();
        assert_eq!(
            down[0].get_array("updates").unwrap()[0]
                .as_document()
                .unwrap()
                .get_document("u")
                .unwrap(),
            &doc! { "$unset": { "version": "", "processing_status": "" } }
        );
    }

    #[test]
    fn copy_documents_skips_marked_sources_within_the_user_filter() {
        let op = CopyDocuments::new("events", "user_behavior", "migrated", "v1", Ok).filter(doc! { "kind": "click" });
        assert_eq!(
            op.pending_filter(),
            doc! { "kind": "click", "migrated": { "$ne": true } }
        );
    }

    #[test]
    fn raw_commands_have_no_automatic_down() {
        assert!(Operation::Command(doc! { "ping": 1 }).down().is_none());
        assert_eq!(
            Operation::CreateIndex(Index::new("c", "a_1", doc! { "a": 1 })).down(),
            Some(vec![doc! { "dropIndexes": "c", "index": "a_1" }])
        );
    }

    #[test]
    fn the_checksum_input_changes_with_the_transform_fingerprint() {
        let a = Operation::from(CopyDocuments::new("s", "t", "m", "v1", Ok)).canonical();
        let b = Operation::from(CopyDocuments::new("s", "t", "m", "v2", Ok)).canonical();
        assert_ne!(a, b);
    }
}
