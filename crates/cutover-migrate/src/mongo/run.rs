//! Running one operation of a MongoDB migration.

use std::{collections::BTreeMap, time::Duration};

use futures_util::TryStreamExt;
use mongodb::{
    Collection, Cursor, Database,
    bson::{Bson, Document, doc},
    error::{ErrorKind, WriteFailure},
};

use super::{
    MongoMigration,
    lease::Lease,
    ledger,
    operation::{AddFields, Batching, CopyDocuments, CreateCollection, Index, Operation},
};
use crate::{Event, MigrateError};

const NAMESPACE_EXISTS: i32 = 48;
const NAMESPACE_NOT_FOUND: i32 = 26;
const DUPLICATE_KEY: i32 = 11_000;
/// `NotImplemented`, `CommandNotSupported`, `CommandNotFound`: the server lacks the feature.
const UNSUPPORTED: [i32; 3] = [238, 115, 59];

/// `NamespaceNotFound` or `IndexNotFound`: what a down finds when its work is already undone.
pub(crate) fn is_already_gone(error: &mongodb::error::Error) -> bool {
    const INDEX_NOT_FOUND: i32 = 27;
    server_code(error).is_some_and(|code| code == NAMESPACE_NOT_FOUND || code == INDEX_NOT_FOUND)
}

fn server_code(error: &mongodb::error::Error) -> Option<i32> {
    match error.kind.as_ref() {
        ErrorKind::Command(command) => Some(command.code),
        ErrorKind::Write(WriteFailure::WriteError(write)) => Some(write.code),
        _ => None,
    }
}

fn server_message(error: &mongodb::error::Error) -> String {
    match error.kind.as_ref() {
        ErrorKind::Command(command) => format!("{} ({} {})", command.message, command.code_name, command.code),
        _ => error.to_string(),
    }
}

/// One step of one migration, with what it needs to run.
pub(crate) struct Step<'a> {
    pub(crate) db: &'a Database,
    pub(crate) migration: &'a MongoMigration,
    /// 1-based.
    pub(crate) number: usize,
    pub(crate) operation: &'a Operation,
    pub(crate) lease: &'a Lease,
    pub(crate) emit: &'a (dyn Fn(Event) + Sync),
}

impl Step<'_> {
    fn error(&self, error: &mongodb::error::Error) -> MigrateError {
        let (version, name, step) = (self.migration.version, self.migration.name.clone(), self.number);
        let operation = self.operation.describe();
        let message = server_message(error);
        if server_code(error).is_some_and(|code| UNSUPPORTED.contains(&code)) {
            MigrateError::Unsupported {
                version,
                name,
                step,
                operation,
                message,
            }
        } else {
            MigrateError::Step {
                version,
                name,
                step,
                operation,
                message,
            }
        }
    }

    fn failed(&self, message: String) -> MigrateError {
        MigrateError::Step {
            version: self.migration.version,
            name: self.migration.name.clone(),
            step: self.number,
            operation: self.operation.describe(),
            message,
        }
    }

    async fn command(&self, command: Document) -> Result<Document, MigrateError> {
        self.db.run_command(command).await.map_err(|e| self.error(&e))
    }

    /// Run the operation. Each one is idempotent: running it again after a crash is safe.
    pub(crate) async fn run(&self) -> Result<(), MigrateError> {
        match self.operation {
            Operation::Command(command) => {
                match self.db.run_command(command.clone()).await {
                    Ok(_) => Ok(()),
                    // `create` of a collection that exists: the step ran before a crash.
                    Err(e)
                        if command.keys().next().map(String::as_str) == Some("create")
                            && server_code(&e) == Some(NAMESPACE_EXISTS) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(self.error(&e)),
                }
            }
            Operation::CreateCollection(op) => self.create_collection(op).await,
            Operation::SetValidation(op) => self.command(op.command()).await.map(drop),
            Operation::AddFields(op) => self.add_fields(op).await,
            Operation::CreateIndex(op) => self.create_index(op).await,
            Operation::CopyDocuments(op) => self.copy_documents(op).await,
        }
    }

    async fn create_collection(&self, op: &CreateCollection) -> Result<(), MigrateError> {
        let existing = self
            .db
            .list_collection_names()
            .filter(doc! { "name": &op.name })
            .await
            .map_err(|e| self.error(&e))?;
        if !existing.contains(&op.name) {
            match self.db.run_command(op.create_command()).await {
                Ok(_) => return Ok(()),
                Err(e) if server_code(&e) == Some(NAMESPACE_EXISTS) => {}
                Err(e) => return Err(self.error(&e)),
            }
        }
        // It exists (an earlier, interrupted run): converge on the validator asked for.
        match op.coll_mod_command() {
            Some(command) => self.command(command).await.map(drop),
            None => Ok(()),
        }
    }

    async fn create_index(&self, op: &Index) -> Result<(), MigrateError> {
        // The command's raw answer, so options compare exactly as the server stores them.
        let existing: Vec<Document> = match self.db.run_command(doc! { "listIndexes": &op.collection }).await {
            Ok(answer) => answer
                .get_document("cursor")
                .and_then(|cursor| cursor.get_array("firstBatch"))
                .map(|batch| batch.iter().filter_map(|b| b.as_document().cloned()).collect())
                .unwrap_or_default(),
            Err(e) if server_code(&e) == Some(NAMESPACE_NOT_FOUND) => Vec::new(),
            Err(e) => return Err(self.error(&e)),
        };
        let wanted = op.spec();
        if let Some(found) = existing
            .iter()
            .find(|spec| spec.get_str("name").ok() == Some(op.name.as_str()))
        {
            if same_index(found, &wanted) {
                return Ok(());
            }
            return Err(MigrateError::IndexConflict {
                collection: op.collection.clone(),
                name: op.name.clone(),
                existing: Bson::Document(found.clone()).into_relaxed_extjson().to_string(),
                wanted: Bson::Document(wanted).into_relaxed_extjson().to_string(),
            });
        }
        self.command(doc! { "createIndexes": &op.collection, "indexes": [wanted] })
            .await
            .map(drop)
    }

    async fn add_fields(&self, op: &AddFields) -> Result<(), MigrateError> {
        let collection: Collection<Document> = self.db.collection(&op.collection);
        let filter = op.missing_filter();
        let mut projection = doc! { "_id": 1 };
        for field in op.fields.keys() {
            projection.insert(field, 1);
        }
        /// Passes over the documents still lacking fields before giving up on writers that
        /// keep adding such documents.
        const PASSES: u32 = 5;
        let total = self.count(&collection, &filter).await?;
        let mut done = 0_u64;
        for pass in 1..=PASSES {
            let mut cursor = collection
                .find(filter.clone())
                .projection(projection.clone())
                .batch_size(op.batching.size)
                .await
                .map_err(|e| self.error(&e))?;
            let mut changed = 0_u64;
            let mut batch = self.next_batch(&mut cursor, op.batching.size).await?;
            while !batch.is_empty() {
                self.lease.check()?;
                changed += self.fill_missing(&collection, op, &batch).await?;
                done += batch.len() as u64;
                self.progress(done, total).await?;
                batch = self.next_batch(&mut cursor, op.batching.size).await?;
                if !batch.is_empty() {
                    self.pause(op.batching).await;
                }
            }
            // Documents whose fields changed between the read and the update (or that were
            // inserted during the pass) are taken by another pass.
            let left = self.count(&collection, &filter).await?;
            if left == 0 {
                return Ok(());
            }
            if changed == 0 {
                return Err(self.failed(format!(
                    "{left} documents still lack the fields after being updated (a validator rejecting them?)"
                )));
            }
            tracing::debug!(pass, left, "documents still lack the fields; another pass");
        }
        Err(self.failed(format!(
            "documents lacking the fields keep arriving: {PASSES} passes done and some remain; \
             run the migration again once the writers of the previous version are gone"
        )))
    }

    async fn copy_documents(&self, op: &CopyDocuments) -> Result<(), MigrateError> {
        let source: Collection<Document> = self.db.collection(&op.source);
        let target: Collection<Document> = self.db.collection(&op.target);
        let filter = op.pending_filter();
        let total = self.count(&source, &filter).await?;
        let mut cursor = source
            .find(filter)
            .batch_size(op.batching.size)
            .await
            .map_err(|e| self.error(&e))?;
        let mut done = 0_u64;
        let mut batch = self.next_batch(&mut cursor, op.batching.size).await?;
        while !batch.is_empty() {
            self.lease.check()?;
            // Read the next batch while this one is written.
            let (written, next) = tokio::try_join!(
                self.write_batch(op, &source, &target, batch),
                self.next_batch(&mut cursor, op.batching.size),
            )?;
            done += written;
            self.progress(done, total).await?;
            batch = next;
            if !batch.is_empty() {
                self.pause(op.batching).await;
            }
        }
        Ok(())
    }

    async fn next_batch(&self, cursor: &mut Cursor<Document>, size: u32) -> Result<Vec<Document>, MigrateError> {
        let mut batch = Vec::with_capacity(size as usize);
        while batch.len() < size as usize {
            match cursor.try_next().await.map_err(|e| self.error(&e))? {
                Some(document) => batch.push(document),
                None => break,
            }
        }
        Ok(batch)
    }

    /// Transform, insert (unordered; duplicates from an interrupted run are expected), mark.
    async fn write_batch(
        &self,
        op: &CopyDocuments,
        source: &Collection<Document>,
        target: &Collection<Document>,
        batch: Vec<Document>,
    ) -> Result<u64, MigrateError> {
        let mut ids = Vec::with_capacity(batch.len());
        let mut documents = Vec::with_capacity(batch.len());
        for document in batch {
            let id = document
                .get("_id")
                .cloned()
                .ok_or_else(|| self.failed("a source document has no `_id`".to_owned()))?;
            let mut transformed = (op.transform)(document).map_err(|error| {
                let id = id.clone().into_relaxed_extjson();
                self.failed(format!("the transform failed on the document with _id {id}: {error}"))
            })?;
            // Same `_id` as the source: writing it twice is a duplicate, not a second copy.
            transformed.insert("_id", id.clone());
            transformed.insert(&op.marker, true);
            ids.push(id);
            documents.push(transformed);
        }
        let count = documents.len() as u64;
        match target.insert_many(documents).ordered(false).await {
            Ok(_) => {}
            Err(error) => match error.kind.as_ref() {
                ErrorKind::InsertMany(failure)
                    if failure.write_concern_error.is_none()
                        && failure
                            .write_errors
                            .as_ref()
                            .is_some_and(|errors| errors.iter().all(|e| e.code == DUPLICATE_KEY)) =>
                {
                    tracing::debug!(
                        duplicates = failure.write_errors.as_ref().map_or(0, Vec::len),
                        "documents already copied by an interrupted run"
                    );
                }
                _ => return Err(self.error(&error)),
            },
        }
        // One `$in` update, not an `update` command of one statement per `_id`: FerretDB 1.x
        // holds a backend connection per statement until the command ends, and a command of
        // 100 statements exhausts its pool and wedges the server.
        source
            .update_many(doc! { "_id": { "$in": ids } }, doc! { "$set": { &op.marker: true } })
            .await
            .map_err(|e| self.error(&e))?;
        Ok(count)
    }

    /// Give each document of `batch` (read with the fields projected) exactly the fields it
    /// lacks, guarded by `$exists` so a value written since the read is never overwritten.
    /// Documents lacking the same fields share one update: usually one per batch. Returns how
    /// many documents matched.
    async fn fill_missing(
        &self,
        collection: &Collection<Document>,
        op: &AddFields,
        batch: &[Document],
    ) -> Result<u64, MigrateError> {
        let mut groups: BTreeMap<Vec<&str>, Vec<Bson>> = BTreeMap::new();
        for document in batch {
            let missing: Vec<&str> = op
                .fields
                .keys()
                .map(String::as_str)
                .filter(|field| !has_path(document, field))
                .collect();
            if let (false, Some(id)) = (missing.is_empty(), document.get("_id")) {
                groups.entry(missing).or_default().push(id.clone());
            }
        }
        let mut matched = 0;
        for (missing, ids) in groups {
            let mut filter = doc! { "_id": { "$in": ids } };
            let mut set = Document::new();
            for field in missing {
                filter.insert(field, doc! { "$exists": false });
                set.insert(field, op.fields.get(field).cloned().unwrap_or(Bson::Null));
            }
            matched += collection
                .update_many(filter, doc! { "$set": set })
                .await
                .map_err(|e| self.error(&e))?
                .matched_count;
        }
        Ok(matched)
    }

    async fn count(&self, collection: &Collection<Document>, filter: &Document) -> Result<u64, MigrateError> {
        collection
            .count_documents(filter.clone())
            .await
            .map_err(|e| self.error(&e))
    }

    async fn progress(&self, done: u64, total: u64) -> Result<(), MigrateError> {
        let version = self.migration.version;
        (self.emit)(Event::Batch {
            version,
            last: i64::try_from(done).unwrap_or(i64::MAX),
            upper: i64::try_from(total.max(done)).unwrap_or(i64::MAX),
            rows: done,
        });
        ledger::checkpoint(
            self.db,
            version,
            doc! { "step": i64::try_from(self.number).unwrap_or(i64::MAX), "documents": i64::try_from(done).unwrap_or(i64::MAX) },
        )
        .await
    }

    async fn pause(&self, batching: Batching) {
        if batching.pause > Duration::ZERO {
            tokio::time::sleep(batching.pause).await;
        }
    }
}

/// Whether `document` has a value at the dotted `path`.
fn has_path(document: &Document, path: &str) -> bool {
    match path.split_once('.') {
        None => document.contains_key(path),
        Some((head, rest)) => document.get_document(head).is_ok_and(|inner| has_path(inner, rest)),
    }
}

/// Whether two index specifications (`key` plus options) define the same index; numbers
/// compare by value (`1` and `1.0` are the same direction), and the server's own additions
/// (`v`, `ns`) are ignored.
fn same_index(existing: &Document, wanted: &Document) -> bool {
    const IGNORED: [&str; 3] = ["v", "ns", "background"];
    let relevant = |spec: &Document| -> Vec<(String, Bson)> {
        spec.iter()
            .filter(|(k, _)| !IGNORED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), normalize(v)))
            .collect()
    };
    let (mut a, mut b) = (relevant(existing), relevant(wanted));
    a.sort_by(|x, y| x.0.cmp(&y.0));
    b.sort_by(|x, y| x.0.cmp(&y.0));
    a == b
}

fn normalize(value: &Bson) -> Bson {
    match value {
        Bson::Int32(n) => Bson::Double(f64::from(*n)),
        Bson::Int64(n) => Bson::Double(*n as f64),
        // Key order matters inside `key`, and `Document` equality ignores it: compare as a
        // list of pairs.
        Bson::Document(document) => Bson::Array(
            document
                .iter()
                .map(|(k, v)| Bson::Array(vec![Bson::String(k.clone()), normalize(v)]))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_are_looked_up_in_nested_documents() {
        let document = doc! { "a": { "b": { "c": 1 } }, "x": Bson::Null, "s": "text" };
        assert!(has_path(&document, "a.b.c"));
        assert!(has_path(&document, "x"), "a null value is present, as for `$exists`");
        assert!(!has_path(&document, "a.b.d"));
        assert!(!has_path(&document, "s.t"), "a string has no fields");
        assert!(!has_path(&document, "missing"));
    }

    #[test]
    fn index_specs_compare_numbers_by_value_and_ignore_server_fields() {
        let server = doc! { "v": 2, "key": { "user_id": 1.0, "timestamp": -1_i64 }, "name": "ut" };
        let ours = doc! { "key": { "user_id": 1, "timestamp": -1 }, "name": "ut" };
        assert!(same_index(&server, &ours));
        let reversed = doc! { "key": { "timestamp": -1, "user_id": 1 }, "name": "ut" };
        assert!(!same_index(&server, &reversed), "key order is part of the index");
        let unique = doc! { "key": { "user_id": 1, "timestamp": -1 }, "name": "ut", "unique": true };
        assert!(!same_index(&server, &unique));
    }
}
