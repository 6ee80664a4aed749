//! The registry on MongoDB: one document per instance (`_id` = its id), times from the writer's
//! clock (FerretDB 1.x has no `$$NOW`).

use std::time::{Duration, SystemTime};

use futures_util::TryStreamExt;
use mongodb::{
    Collection, Database,
    bson::{Bson, DateTime, Document, doc},
};

use super::{INSTANCES_TABLE, Instance, InstancePhase, Row, whole_seconds};
use crate::MigrateError;
use crate::mongo::fields::{number, text, time};

fn collection(db: &Database) -> Collection<Document> {
    db.collection(INSTANCES_TABLE)
}

fn at(time: SystemTime) -> DateTime {
    DateTime::from_system_time(time)
}

/// Write the whole document (upsert): one command per beat. The first beat of a process also
/// deletes documents expired for a day.
pub(crate) async fn beat(db: &Database, row: &Row, phase: InstancePhase, ttl: Duration) -> Result<(), MigrateError> {
    let now = SystemTime::now();
    let document = doc! {
        "_id": &row.id,
        "service": &row.service,
        "version": &row.version,
        "host": &row.host,
        "migrations": row.embedded.versions().iter().map(|v| Bson::Int64(*v)).collect::<Vec<_>>(),
        "max_migration": row.max_migration(),
        "digest": row.embedded.digest(),
        "phase": phase.as_str(),
        "started_at": at(row.started),
        "last_seen": at(now),
        "expires_at": at(now + ttl),
    };
    let replaced = collection(db)
        .replace_one(doc! { "_id": &row.id }, document)
        .upsert(true)
        .await
        .map_err(MigrateError::mongo("cannot register the instance"))?;
    if replaced.upserted_id.is_some() {
        let day_ago = at(now - Duration::from_secs(86_400));
        collection(db)
            .delete_many(doc! { "expires_at": { "$lt": day_ago } })
            .await
            .map_err(MigrateError::mongo("cannot remove expired instances"))?;
    }
    Ok(())
}

/// Remove the document.
pub(crate) async fn remove(db: &Database, id: &str) -> Result<(), MigrateError> {
    collection(db)
        .delete_one(doc! { "_id": id })
        .await
        .map_err(MigrateError::mongo("cannot deregister the instance"))?;
    Ok(())
}

/// Every document that has not expired.
pub(crate) async fn live(db: &Database) -> Result<Vec<Instance>, MigrateError> {
    let now = DateTime::now();
    let documents: Vec<Document> = collection(db)
        .find(doc! { "expires_at": { "$gt": now } })
        .sort(doc! { "service": 1, "started_at": 1, "_id": 1 })
        .await
        .map_err(MigrateError::mongo("cannot read the instance registry"))?
        .try_collect()
        .await
        .map_err(MigrateError::mongo("cannot read the instance registry"))?;
    Ok(documents
        .iter()
        .map(|document| {
            let text = |key| text(document, key).unwrap_or_default();
            let time = |key| whole_seconds(time(document, key).unwrap_or_default());
            let mut migrations: Vec<i64> = document
                .get_array("migrations")
                .map(|versions| versions.iter().filter_map(number).collect())
                .unwrap_or_default();
            migrations.sort_unstable();
            let expires = document.get_datetime("expires_at").map_or(0, |t| t.timestamp_millis());
            Instance {
                id: text("_id"),
                service: text("service"),
                version: text("version"),
                host: text("host"),
                migrations,
                digest: text("digest"),
                phase: text("phase"),
                started_at: time("started_at"),
                last_seen: time("last_seen"),
                expires_in: Duration::from_millis(u64::try_from(expires - now.timestamp_millis()).unwrap_or(0)),
            }
        })
        .collect())
}
