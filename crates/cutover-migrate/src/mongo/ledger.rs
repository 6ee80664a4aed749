//! The `_migrations` collection: one document per migration, `_id` = version, with the same
//! fields as the SQL ledger. The down commands are stored with it, so an older binary can still
//! roll back.

use std::time::Duration;

use futures_util::TryStreamExt;
use mongodb::{
    Collection, Database,
    bson::{Bson, DateTime, Document, doc},
};

use super::{
    MongoMigration,
    fields::{integer, text, time},
};
use crate::{
    MigrateError,
    ledger::{LEDGER_SCHEMA, LEDGER_SCHEMA_TABLE, LedgerEntry, State, check_schema, runner_id},
};

/// The ledger collection.
pub const LEDGER_COLLECTION: &str = "_migrations";

fn ledger(db: &Database) -> Collection<Document> {
    db.collection(LEDGER_COLLECTION)
}

fn json(value: Option<&Bson>) -> Option<String> {
    value
        .filter(|v| !matches!(v, Bson::Null))
        .map(|v| v.clone().into_relaxed_extjson().to_string())
}

fn entry(document: &Document) -> Option<LedgerEntry> {
    Some(LedgerEntry {
        version: integer(document, "_id")?,
        name: text(document, "name").unwrap_or_default(),
        phase: text(document, "phase").unwrap_or_default(),
        checksum: text(document, "checksum").unwrap_or_default(),
        state: State::parse(document.get_str("state").unwrap_or_default()),
        steps_done: integer(document, "steps_done").unwrap_or(0),
        steps_total: integer(document, "steps_total").unwrap_or(0),
        done_checksum: text(document, "done_checksum"),
        checkpoint: json(document.get("checkpoint")),
        failed_step: integer(document, "failed_step"),
        error: text(document, "error"),
        installed_by: text(document, "installed_by").unwrap_or_default(),
        started_at: time(document, "started_at").unwrap_or_default(),
        finished_at: time(document, "finished_at"),
        duration_ms: integer(document, "duration_ms"),
        down_sql: json(document.get("down")),
        down_checksum: None,
        repaired_at: time(document, "repaired_at"),
        repair_note: text(document, "repair_note"),
        adopted_from: text(document, "adopted_from"),
        forced_contract: text(document, "forced_contract"),
    })
}

/// Check the ledger's schema version (a document with `_id` [`LEDGER_SCHEMA_TABLE`] in the
/// ledger collection, which entry readers skip: their `_id` is a version number) and record
/// this one's. Fields are added as they are written: no upgrade touches the documents.
pub(crate) async fn ensure_schema(db: &Database) -> Result<(), MigrateError> {
    let found = ledger(db)
        .find_one(doc! { "_id": LEDGER_SCHEMA_TABLE })
        .await
        .map_err(MigrateError::mongo("cannot read the ledger's schema"))?
        .and_then(|document| integer(&document, "schema"));
    check_schema(found)?.for_each(drop);
    if found != Some(LEDGER_SCHEMA) {
        ledger(db)
            .update_one(
                doc! { "_id": LEDGER_SCHEMA_TABLE },
                doc! { "$set": { "schema": LEDGER_SCHEMA } },
            )
            .upsert(true)
            .await
            .map_err(MigrateError::mongo("cannot record the ledger's schema"))?;
    }
    Ok(())
}

/// Every ledger entry, in version order.
pub(crate) async fn read(db: &Database) -> Result<Vec<LedgerEntry>, MigrateError> {
    let cursor = ledger(db)
        .find(doc! {})
        .await
        .map_err(MigrateError::mongo("cannot read the ledger"))?;
    let documents: Vec<Document> = cursor
        .try_collect()
        .await
        .map_err(MigrateError::mongo("cannot read the ledger"))?;
    let mut entries: Vec<LedgerEntry> = documents.iter().filter_map(entry).collect();
    entries.sort_by_key(|e| e.version);
    Ok(entries)
}

/// The down commands stored when `version` was applied.
pub(crate) async fn stored_down(db: &Database, version: i64) -> Result<Option<Vec<Document>>, MigrateError> {
    let document = ledger(db)
        .find_one(doc! { "_id": version })
        .await
        .map_err(MigrateError::mongo("cannot read the ledger"))?;
    let Some(stored) = document.and_then(|d| d.get_array("down").ok().cloned()) else {
        return Ok(None);
    };
    stored
        .iter()
        .map(|command| {
            command
                .as_str()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
                .and_then(|value| Bson::try_from(value).ok())
                .and_then(|bson| bson.as_document().cloned())
                .ok_or_else(|| {
                    MigrateError::Preflight(format!(
                        "the down commands stored for migration {version} are not readable: {command}"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

async fn update(db: &Database, version: i64, update: Document, what: &str) -> Result<(), MigrateError> {
    ledger(db)
        .update_one(doc! { "_id": version }, update)
        .await
        .map(drop)
        .map_err(MigrateError::mongo(format!(
            "cannot record {what} of migration {version} in the ledger"
        )))
}

/// Record that `migration` starts (or resumes).
pub(crate) async fn start(db: &Database, migration: &MongoMigration) -> Result<(), MigrateError> {
    // As Extended JSON text: commands hold `$`-prefixed keys (`$unset`, `$jsonSchema`), which
    // servers refuse or restrict as field names in stored documents.
    let down = migration.down().map_or(Bson::Null, |commands| {
        Bson::Array(
            commands
                .into_iter()
                .map(|command| Bson::String(Bson::Document(command).into_canonical_extjson().to_string()))
                .collect(),
        )
    });
    ledger(db)
        .update_one(
            doc! { "_id": migration.version },
            doc! {
                "$set": {
                    "name": &migration.name,
                    "phase": migration.phase.as_str(),
                    "checksum": migration.checksum(),
                    "state": State::Running.as_str(),
                    "steps_total": i64::try_from(migration.operations().len()).unwrap_or(i64::MAX),
                    "installed_by": runner_id(),
                    "started_at": DateTime::now(),
                    "down": down,
                },
                "$setOnInsert": { "steps_done": 0_i64 },
                "$unset": { "error": "", "failed_step": "", "finished_at": "", "duration_ms": "" },
            },
        )
        .upsert(true)
        .await
        .map(drop)
        .map_err(MigrateError::mongo(format!(
            "cannot record migration {} in the ledger",
            migration.version
        )))
}

/// Record that the first `done` steps of `migration` are done, with their checksum: a resumed
/// run may follow an edited migration only if these steps read the same.
pub(crate) async fn step_done(db: &Database, migration: &MongoMigration, done: usize) -> Result<(), MigrateError> {
    let ran = migration.prefix_checksum(done);
    let done = i64::try_from(done).unwrap_or(i64::MAX);
    let set = doc! { "$set": { "steps_done": done, "done_checksum": ran }, "$unset": { "checkpoint": "" } };
    update(db, migration.version, set, "a finished step").await
}

/// Record a batched step's progress.
pub(crate) async fn checkpoint(db: &Database, version: i64, checkpoint: Document) -> Result<(), MigrateError> {
    update(db, version, doc! { "$set": { "checkpoint": checkpoint } }, "progress").await
}

/// Record that step `step` (1-based) of `version` failed.
pub(crate) async fn fail(db: &Database, version: i64, step: usize, error: &str) -> Result<(), MigrateError> {
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    let set = doc! { "$set": { "state": State::Failed.as_str(), "failed_step": step, "error": error } };
    update(db, version, set, "the failure").await
}

/// Record that `version` is applied.
pub(crate) async fn applied(db: &Database, version: i64, took: Duration) -> Result<(), MigrateError> {
    let took = i64::try_from(took.as_millis()).unwrap_or(i64::MAX);
    let set = doc! { "$set": {
        "state": State::Applied.as_str(),
        "finished_at": DateTime::now(),
        "duration_ms": took,
    } };
    update(db, version, set, "the success").await
}

/// Forget `version` (after `down`).
pub(crate) async fn remove(db: &Database, version: i64) -> Result<(), MigrateError> {
    ledger(db)
        .delete_one(doc! { "_id": version })
        .await
        .map(drop)
        .map_err(MigrateError::mongo(format!(
            "cannot remove migration {version} from the ledger"
        )))
}

/// Realign `version`'s checksum, recording why.
pub(crate) async fn repair(db: &Database, version: i64, checksum: &str, note: &str) -> Result<(), MigrateError> {
    let set = doc! { "$set": { "checksum": checksum, "repaired_at": DateTime::now(), "repair_note": note } };
    update(db, version, set, "the repair").await
}

/// Record why `version` ran past the contract gate.
pub(crate) async fn record_forced(db: &Database, version: i64, note: &str) -> Result<(), MigrateError> {
    update(
        db,
        version,
        doc! { "$set": { "forced_contract": note } },
        "the forced contract record",
    )
    .await
}
