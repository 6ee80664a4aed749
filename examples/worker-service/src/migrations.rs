//! The analytics database's migrations: v1.3.0, the brief's `migration_v1_3_0.py` made safe.
//!
//! | version | phase    | what |
//! |---------|----------|------|
//! | 13001   | expand   | the `user_behavior` collection and its three indexes |
//! | 13002   | backfill | `version`, `processing_status`, `enriched_at` on `events` where missing |
//! | 13003   | expand   | the `events` indexes |
//! | 13004   | backfill | every event copied into `user_behavior` with its `device_info`, each source marked `migrated_v1_3_0` |
//! | 13005   | contract | the strict `$jsonSchema` validator on `user_behavior` |
//!
//! What changed from the brief, and why:
//! - The validator comes last, in the contract phase, once the copy has made every document
//!   valid; the brief's strict validator on an empty collection would have rejected its own
//!   copies of events without a `session_id` (it wrote `null` where the schema wants a string).
//!   `user_id` accepts `int` and `long`, as drivers write either.
//! - Fields are added only where missing, each on its own: an event that already has a
//!   `processing_status` keeps it (the brief skipped every field when `version` existed).
//! - Indexes are named, so a rerun skips them and a different index under the same name is an
//!   error rather than a second index. No `background` option: every build is online since
//!   MongoDB 4.2.
//! - The copy keeps the event's `_id`, so an interrupted run that copies a batch again gets
//!   duplicate-key errors instead of second copies; it reads events in their natural order
//!   without a sort, transforms them here, writes unordered bulk inserts and marks the sources.
//!   The brief's loop could not resume without copying twice.
//! - Everything runs under the migration lease, records its progress, and can be reverted
//!   (`down`), except that reverting 13002 removes the three fields from every event.
//! - Where the server does not implement something (FerretDB 1.x has no `$jsonSchema`
//!   validators), the run stops at that step with the server's answer.

use cutover_migrate::{
    BoxError, MigrateError, Phase,
    mongo::{
        AddFields, Batching, CopyDocuments, CreateCollection, Index, MongoMigration, MongoMigrationSet, SetValidation,
        ValidationAction, ValidationLevel,
    },
};
use mongodb::bson::{Bson, Document, doc};

use crate::device::device_info;

/// The marker set on each event once it is copied into `user_behavior`.
pub const MARKER: &str = "migrated_v1_3_0";

/// The analytics migrations, with `batching` for the long steps (13002 and 13004). Batching
/// is not part of the checksums: a run may resume with other settings.
pub fn migrations(batching: Batching) -> Result<MongoMigrationSet, MigrateError> {
    MongoMigrationSet::new()
        .with(
            MongoMigration::new(13001, "create_user_behavior")
                .then(CreateCollection::new("user_behavior"))
                .then(Index::new(
                    "user_behavior",
                    "user_id_1_timestamp_-1",
                    doc! { "user_id": 1, "timestamp": -1 },
                ))
                .then(Index::new(
                    "user_behavior",
                    "action_1_timestamp_-1",
                    doc! { "action": 1, "timestamp": -1 },
                ))
                .then(Index::new("user_behavior", "session_id_1", doc! { "session_id": 1 })),
        )?
        .with(
            MongoMigration::new(13002, "add_event_processing_fields")
                .phase(Phase::Backfill)
                .then(
                    AddFields::new(
                        "events",
                        doc! { "version": "1.3.0", "processing_status": "pending", "enriched_at": Bson::Null },
                    )
                    .batching(batching),
                ),
        )?
        .with(
            MongoMigration::new(13003, "create_event_indexes")
                .then(Index::new(
                    "events",
                    "processing_status_1_created_at_1",
                    doc! { "processing_status": 1, "created_at": 1 },
                ))
                .then(Index::new("events", "version_1", doc! { "version": 1 }))
                .then(Index::new(
                    "events",
                    "user_id_1_event_type_1_timestamp_-1",
                    doc! { "user_id": 1, "event_type": 1, "timestamp": -1 },
                )),
        )?
        .with(
            MongoMigration::new(13004, "copy_events_to_user_behavior")
                .phase(Phase::Backfill)
                .then(
                    CopyDocuments::new("events", "user_behavior", MARKER, "user_behavior-v1", to_user_behavior)
                        .batching(batching),
                ),
        )?
        .with(
            MongoMigration::new(13005, "validate_user_behavior")
                .phase(Phase::Contract)
                .then(SetValidation::new(
                    "user_behavior",
                    user_behavior_schema(),
                    ValidationLevel::Strict,
                    ValidationAction::Error,
                )),
        )
}

/// The `$jsonSchema` every `user_behavior` document satisfies.
pub fn user_behavior_schema() -> Document {
    doc! { "$jsonSchema": {
        "bsonType": "object",
        "required": ["user_id", "action", "timestamp"],
        "properties": {
            "user_id": { "bsonType": ["int", "long"] },
            "action": { "bsonType": "string" },
            "timestamp": { "bsonType": "date" },
            "metadata": { "bsonType": "object" },
            "session_id": { "bsonType": "string" },
            "device_info": {
                "bsonType": "object",
                "properties": {
                    "platform": { "bsonType": "string" },
                    "browser": { "bsonType": "string" },
                    "ip_address": { "bsonType": "string" },
                },
            },
        },
    } }
}

/// An event as a `user_behavior` document (the runner adds the event's `_id` and the marker).
///
/// An event without an integer `user_id`, a string `event_type` or a date `timestamp` is an
/// error naming the field: the migration stops on it rather than write a document the
/// validator would reject.
///
/// ```
/// use mongodb::bson::{DateTime, doc, oid::ObjectId};
///
/// let id = ObjectId::new();
/// let event = doc! {
///     "_id": id, "user_id": 42, "event_type": "click", "timestamp": DateTime::now(),
///     "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
///     "ip_address": "203.0.113.9",
/// };
/// let behavior = worker_service::migrations::to_user_behavior(event).unwrap();
/// assert_eq!(behavior.get_str("action").unwrap(), "click");
/// assert_eq!(behavior.get_document("device_info").unwrap().get_str("browser").unwrap(), "Firefox");
/// assert_eq!(behavior.get_document("device_info").unwrap().get_str("ip_address").unwrap(), "203.0.113.9");
/// assert_eq!(behavior.get_object_id("original_event_id").unwrap(), id);
/// assert!(behavior.get("session_id").is_none(), "absent, not null");
/// ```
pub fn to_user_behavior(mut event: Document) -> Result<Document, BoxError> {
    let user_id = match event.remove("user_id") {
        Some(id @ (Bson::Int32(_) | Bson::Int64(_))) => id,
        Some(other) => return Err(format!("`user_id` is {}, not an integer", other.element_type_name()).into()),
        None => return Err("the event has no `user_id`".into()),
    };
    let Some(Bson::String(action)) = event.remove("event_type") else {
        return Err("the event has no string `event_type`".into());
    };
    let Some(Bson::DateTime(timestamp)) = event.remove("timestamp") else {
        return Err("the event has no date `timestamp`".into());
    };
    let metadata = match event.remove("metadata") {
        Some(Bson::Document(metadata)) => metadata,
        _ => Document::new(),
    };
    let mut device = event.get_str("user_agent").map(device_info).unwrap_or_default();
    if let Some(Bson::String(ip)) = event.remove("ip_address") {
        device.insert("ip_address", ip);
    }
    let mut behavior = doc! {
        "user_id": user_id,
        "action": action,
        "timestamp": timestamp,
        "metadata": metadata,
        "device_info": device,
    };
    if let Some(Bson::String(session)) = event.remove("session_id") {
        behavior.insert("session_id", session);
    }
    if let Some(id) = event.remove("_id") {
        behavior.insert("original_event_id", id);
    }
    Ok(behavior)
}

trait ElementTypeName {
    fn element_type_name(&self) -> &'static str;
}

impl ElementTypeName for Bson {
    fn element_type_name(&self) -> &'static str {
        match self {
            Self::String(_) => "a string",
            Self::Double(_) => "a double",
            Self::Null => "null",
            Self::Document(_) => "a document",
            Self::Array(_) => "an array",
            Self::Boolean(_) => "a boolean",
            _ => "another type",
        }
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::DateTime;

    use super::*;

    #[test]
    fn events_that_would_break_the_schema_are_refused_with_the_field_named() {
        let base = doc! { "user_id": 1, "event_type": "view", "timestamp": DateTime::now() };
        assert!(to_user_behavior(base.clone()).is_ok());
        let mut text_id = base.clone();
        text_id.insert("user_id", "1");
        assert_eq!(
            to_user_behavior(text_id).unwrap_err().to_string(),
            "`user_id` is a string, not an integer"
        );
        let mut no_type = base.clone();
        no_type.remove("event_type");
        assert!(
            to_user_behavior(no_type)
                .unwrap_err()
                .to_string()
                .contains("event_type")
        );
        let mut no_time = base;
        no_time.insert("timestamp", "yesterday");
        assert!(to_user_behavior(no_time).unwrap_err().to_string().contains("timestamp"));
    }

    #[test]
    fn the_set_is_valid_and_its_checksums_ignore_batching() {
        let slow = migrations(Batching::default()).unwrap();
        let fast = migrations(Batching {
            size: 50,
            pause: std::time::Duration::ZERO,
        })
        .unwrap();
        let versions: Vec<i64> = slow.migrations().iter().map(|m| m.version).collect();
        assert_eq!(versions, [13001, 13002, 13003, 13004, 13005]);
        for (a, b) in slow.migrations().iter().zip(fast.migrations()) {
            assert_eq!(a.checksum(), b.checksum());
        }
        assert!(
            slow.migrations().iter().all(|m| m.down().is_some()),
            "every step can be reverted"
        );
    }
}
