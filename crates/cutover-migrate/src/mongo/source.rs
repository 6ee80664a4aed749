//! MongoDB migrations: files of commands, or operations built in Rust.
//!
//! A file `<version>_<name>.up.json` holds the commands, run in order with `runCommand`, either
//! as a list or as an object with a phase:
//!
//! ```json
//! {
//!   "phase": "expand",
//!   "commands": [
//!     { "create": "user_behavior" },
//!     { "createIndexes": "user_behavior", "indexes": [{ "key": { "session_id": 1 }, "name": "session_id_1" }] }
//!   ]
//! }
//! ```
//!
//! Values use MongoDB Extended JSON (`{"$date": "2025-01-01T00:00:00Z"}`, `{"$oid": "..."}`).
//! An optional `<version>_<name>.down.json` holds the commands that revert it.

use std::path::Path;

use mongodb::bson::{Bson, Document};

use super::operation::Operation;
use crate::{MigrateError, Phase, checksum};

/// One MongoDB migration.
#[derive(Debug, Clone)]
pub struct MongoMigration {
    /// Version; migrations apply in ascending order.
    pub version: i64,
    /// Name.
    pub name: String,
    /// When it may run.
    pub phase: Phase,
    /// Where it came from, for messages.
    pub origin: String,
    operations: Vec<Operation>,
    down: Option<Vec<Document>>,
    /// The file's text, for migrations read from files (their checksum covers the text).
    text: Option<String>,
}

impl MongoMigration {
    /// An empty migration in the `expand` phase; add operations with the builder methods.
    pub fn new(version: i64, name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            version,
            origin: format!("rust:{name}"),
            name,
            phase: Phase::Expand,
            operations: Vec::new(),
            down: None,
            text: None,
        }
    }

    /// When it may run.
    pub fn phase(mut self, phase: Phase) -> Self {
        self.phase = phase;
        self
    }

    /// Add an operation: [`CreateCollection`](super::CreateCollection),
    /// [`SetValidation`](super::SetValidation), [`AddFields`](super::AddFields),
    /// [`Index`](super::Index), [`CopyDocuments`](super::CopyDocuments), or a raw
    /// [`Operation::Command`].
    #[allow(clippy::should_implement_trait)] // a builder step, not arithmetic
    pub fn then(mut self, operation: impl Into<Operation>) -> Self {
        self.operations.push(operation.into());
        self
    }

    /// Replace the automatic down (each operation's inverse, last first) with these commands.
    pub fn down_commands(mut self, commands: Vec<Document>) -> Self {
        self.down = Some(commands);
        self
    }

    /// The steps.
    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// The commands that revert it: the explicit ones, or every operation's inverse in reverse
    /// order; `None` when an operation has no inverse.
    pub fn down(&self) -> Option<Vec<Document>> {
        if let Some(down) = &self.down {
            return Some(down.clone());
        }
        let mut commands = Vec::new();
        for operation in self.operations.iter().rev() {
            commands.extend(operation.down()?);
        }
        Some(commands)
    }

    /// Normalized checksum: of the file's text for files, of the operations (and the
    /// transforms' fingerprints) for migrations built in Rust.
    pub fn checksum(&self) -> String {
        match &self.text {
            Some(text) => checksum(text),
            None => {
                let operations: Vec<Bson> = self
                    .operations
                    .iter()
                    .map(|op| Bson::Document(op.canonical()))
                    .collect();
                let canonical = Bson::Array(operations).into_relaxed_extjson();
                checksum(&format!("mongo:{}:{}:{canonical}", self.phase, self.name))
            }
        }
    }
}

impl MongoMigration {
    /// The checksum of the first `steps` operations, recorded as they finish: an edit after
    /// them does not change it.
    pub(crate) fn prefix_checksum(&self, steps: usize) -> String {
        let operations: Vec<Bson> = self
            .operations
            .iter()
            .take(steps)
            .map(|op| Bson::Document(op.canonical()))
            .collect();
        checksum(&format!(
            "mongo-steps:{}",
            Bson::Array(operations).into_relaxed_extjson()
        ))
    }
}

/// An ordered, validated set of MongoDB migrations.
#[derive(Debug, Clone, Default)]
pub struct MongoMigrationSet {
    migrations: Vec<MongoMigration>,
}

impl MongoMigrationSet {
    /// No migrations yet; add them with [`with`](Self::with).
    pub fn new() -> Self {
        Self::default()
    }

    /// Read every `.json` migration in `dir`, in the layouts [`MigrationSet::from_dir`](crate::MigrationSet::from_dir)
    /// reads; other files are ignored.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, MigrateError> {
        Self::from_files(crate::naming::read_tree(dir.as_ref(), "json")?)
    }

    /// Migrations from `(path, contents)` pairs of `.up.json` / `.down.json` files.
    pub fn from_files(files: impl IntoIterator<Item = (String, String)>) -> Result<Self, MigrateError> {
        let mut ups: Vec<(i64, String, String, String)> = Vec::new();
        let mut downs: Vec<(i64, String, String, String)> = Vec::new();
        for (origin, text) in files {
            let Some(file) = crate::naming::classify(&origin, "json")? else {
                continue;
            };
            let (version, name) = (file.version, file.name);
            let list = if file.down { &mut downs } else { &mut ups };
            if let Some((_, _, first, _)) = list.iter().find(|(v, ..)| *v == version) {
                return Err(MigrateError::DuplicateVersion {
                    version,
                    first: first.clone(),
                    second: origin,
                });
            }
            list.push((version, name, origin, text));
        }
        let mut set = Self::new();
        for (version, name, origin, text) in ups {
            let (phase, commands) = parse_up(&origin, &text)?;
            let down = match downs.iter().position(|(v, ..)| *v == version) {
                Some(index) => {
                    let (_, down_name, down_origin, down_text) = downs.swap_remove(index);
                    if down_name != name {
                        return Err(MigrateError::DuplicateVersion {
                            version,
                            first: origin,
                            second: down_origin,
                        });
                    }
                    Some(parse_commands(&down_origin, &parse_json(&down_origin, &down_text)?)?)
                }
                None => None,
            };
            // Without a down file the migration is irreversible: raw commands have no inverse.
            set = set.with(MongoMigration {
                version,
                name,
                phase,
                origin,
                operations: commands.into_iter().map(Operation::Command).collect(),
                down,
                text: Some(text),
            })?;
        }
        if let Some((_, _, origin, _)) = downs.into_iter().next() {
            return Err(MigrateError::Source {
                origin,
                line: None,
                message: "a down migration without its up migration".to_owned(),
            });
        }
        Ok(set)
    }

    /// Add a migration.
    pub fn with(mut self, migration: MongoMigration) -> Result<Self, MigrateError> {
        crate::engine::insert_unique(&mut self.migrations, migration)?;
        Ok(self)
    }

    /// Every migration, in version order.
    pub fn migrations(&self) -> &[MongoMigration] {
        &self.migrations
    }

    /// The migration with `version`.
    pub fn get(&self, version: i64) -> Option<&MongoMigration> {
        self.migrations.iter().find(|m| m.version == version)
    }
}

fn parse_json(origin: &str, text: &str) -> Result<serde_json::Value, MigrateError> {
    serde_json::from_str(text).map_err(|e| MigrateError::Source {
        origin: origin.to_owned(),
        line: Some(e.line()),
        message: format!("not valid JSON: {e}"),
    })
}

fn parse_up(origin: &str, text: &str) -> Result<(Phase, Vec<Document>), MigrateError> {
    let error = |message: String| MigrateError::Source {
        origin: origin.to_owned(),
        line: None,
        message,
    };
    match parse_json(origin, text)? {
        list @ serde_json::Value::Array(_) => Ok((Phase::Expand, parse_commands(origin, &list)?)),
        serde_json::Value::Object(mut object) => {
            let phase = match object.remove("phase") {
                None => Phase::Expand,
                Some(serde_json::Value::String(phase)) => phase.parse().map_err(error)?,
                Some(other) => return Err(error(format!("`phase` must be a string, not {other}"))),
            };
            let commands = object
                .remove("commands")
                .ok_or_else(|| error("expected `commands`: a list of database commands".to_owned()))?;
            if let Some(unknown) = object.keys().next() {
                return Err(error(format!("unknown key `{unknown}`; known: phase, commands")));
            }
            Ok((phase, parse_commands(origin, &commands)?))
        }
        _ => Err(error(
            "expected a list of commands, or an object with `phase` and `commands`".to_owned(),
        )),
    }
}

fn parse_commands(origin: &str, value: &serde_json::Value) -> Result<Vec<Document>, MigrateError> {
    let error = |message: String| MigrateError::Source {
        origin: origin.to_owned(),
        line: None,
        message,
    };
    let serde_json::Value::Array(items) = value else {
        return Err(error("expected a list of commands".to_owned()));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let bson = Bson::try_from(item.clone())
                .map_err(|e| error(format!("command {}: not valid Extended JSON: {e}", index + 1)))?;
            match bson {
                Bson::Document(command) if !command.is_empty() => Ok(command),
                _ => Err(error(format!(
                    "command {} must be an object whose first key names the command, like {{\"create\": \"events\"}}",
                    index + 1
                ))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    fn set(files: &[(&str, &str)]) -> Result<MongoMigrationSet, MigrateError> {
        MongoMigrationSet::from_files(files.iter().map(|(o, t)| ((*o).to_owned(), (*t).to_owned())))
    }

    #[test]
    fn reads_lists_and_objects_with_a_phase_and_pairs_downs() {
        let set = set(&[
            (
                "m/0002_fields.up.json",
                r#"{"phase": "backfill", "commands": [{"update": "e", "updates": []}]}"#,
            ),
            ("m/0001_create.up.json", r#"[{"create": "events"}, {"ping": 1}]"#),
            ("m/0001_create.down.json", r#"[{"drop": "events"}]"#),
            ("m/README.md", "ignored"),
        ])
        .unwrap();
        let [first, second] = set.migrations() else {
            panic!("two migrations")
        };
        assert_eq!(
            (first.version, first.phase, first.operations().len()),
            (1, Phase::Expand, 2)
        );
        assert_eq!(first.down(), Some(vec![doc! { "drop": "events" }]));
        assert_eq!((second.version, second.phase), (2, Phase::Backfill));
        assert_eq!(second.down(), None, "raw commands without a down file are irreversible");
    }

    #[test]
    fn malformed_files_name_the_file_and_the_problem() {
        let message = |files: &[(&str, &str)]| set(files).unwrap_err().to_string();
        assert_eq!(
            message(&[("m/0001_a.up.json", "[{\"create\": \"x\"},\n {oops}]")]),
            "m/0001_a.up.json:2: not valid JSON: key must be a string at line 2 column 3"
        );
        assert!(
            message(&[("m/0001_a.up.json", r#"{"phase": "later", "commands": []}"#)]).contains("unknown phase `later`")
        );
        assert!(message(&[("m/0001_a.up.json", r#"{"commands": [], "extra": 1}"#)]).contains("unknown key `extra`"));
        assert!(message(&[("m/0001_a.up.json", r#"[{}]"#)]).contains("command 1 must be an object"));
        assert!(message(&[("m/x.up.json", "[]")]).contains("expected a name like"));
        assert!(message(&[("m/0001_a.down.json", "[]")]).contains("without its up"));
        assert!(message(&[("a/0001_a.up.json", "[]"), ("b/0001_b.up.json", "[]")]).contains("defined twice"));
    }

    #[test]
    fn file_checksums_ignore_line_endings_and_rust_checksums_follow_the_operations() {
        let unix = set(&[("m/0001_a.up.json", "[{\"ping\": 1}]\n")]).unwrap();
        let windows = set(&[("m/0001_a.up.json", "[{\"ping\": 1}]\r\n")]).unwrap();
        assert_eq!(unix.migrations()[0].checksum(), windows.migrations()[0].checksum());

        let a = MongoMigration::new(1, "a").then(Operation::Command(doc! { "ping": 1 }));
        let b = MongoMigration::new(1, "a").then(Operation::Command(doc! { "ping": 2 }));
        assert_ne!(a.checksum(), b.checksum());
        assert_eq!(a.checksum(), a.checksum());
    }
}
