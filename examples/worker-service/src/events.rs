//! One user event, stored once: in `events` (with the v1.3.0 fields already set and the
//! copy's marker) and in `user_behavior`, both under the event's own id. A redelivered event
//! (the broker gives back what a stopped worker had not acked) finds both documents there and
//! changes nothing.

use mongodb::{
    Database,
    bson::{Bson, DateTime, Document, doc},
    error::{ErrorKind, WriteFailure},
};
use serde::Deserialize;

use crate::migrations::{MARKER, to_user_behavior};

/// A user event as the API publishes it (see `api-service`'s `events` module).
#[derive(Debug, Clone, Deserialize)]
pub struct UserEvent {
    /// Unique per event, e.g. `user.created:42`.
    pub id: String,
    /// `user.created`, `user.updated`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The user.
    pub user_id: i64,
    /// When it happened, RFC 3339.
    pub timestamp: String,
    /// The `User-Agent` of the request behind it.
    #[serde(default)]
    pub user_agent: Option<String>,
    /// Details.
    #[serde(default)]
    pub data: serde_json::Value,
}

/// What storing an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// First time seen.
    New,
    /// Already stored: a redelivery.
    Again,
}

impl std::fmt::Display for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::New => "new",
            Self::Again => "again (a redelivery)",
        })
    }
}

impl UserEvent {
    /// The `events` document and the `user_behavior` document.
    pub fn documents(&self) -> Result<(Document, Document), String> {
        let timestamp = DateTime::parse_rfc3339_str(&self.timestamp)
            .map_err(|e| format!("`timestamp` {:?} is not RFC 3339: {e}", self.timestamp))?;
        let metadata = match mongodb::bson::to_bson(&self.data) {
            Ok(Bson::Document(document)) => document,
            Ok(Bson::Null) => Document::new(),
            Ok(other) => doc! { "value": other },
            Err(e) => return Err(format!("`data` cannot be stored: {e}")),
        };
        let mut event = doc! {
            "_id": &self.id,
            "user_id": self.user_id,
            "event_type": &self.kind,
            "timestamp": timestamp,
            "created_at": DateTime::now(),
            "metadata": metadata,
            "version": "1.3.0",
            "processing_status": "pending",
            "enriched_at": Bson::Null,
            MARKER: true,
        };
        if let Some(agent) = &self.user_agent {
            event.insert("user_agent", agent);
        }
        let mut behavior = to_user_behavior(event.clone()).map_err(|e| e.to_string())?;
        behavior.insert("_id", &self.id);
        behavior.insert(MARKER, true);
        Ok((event, behavior))
    }

    /// Store the event (idempotent).
    pub async fn store(&self, db: &Database) -> Result<Stored, StoreError> {
        let (event, behavior) = self.documents().map_err(StoreError::Invalid)?;
        let stored = match db.collection::<Document>("events").insert_one(event).await {
            Ok(_) => Stored::New,
            Err(e) if is_duplicate(&e) => Stored::Again,
            Err(e) => return Err(StoreError::Database(e)),
        };
        // Also on a redelivery: the first attempt may have stopped between the two writes.
        match db.collection::<Document>("user_behavior").insert_one(behavior).await {
            Ok(_) => Ok(stored),
            Err(e) if is_duplicate(&e) => Ok(stored),
            Err(e) => Err(StoreError::Database(e)),
        }
    }
}

/// Why an event was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The event itself is wrong: retrying cannot help.
    #[error("invalid event: {0}")]
    Invalid(String),
    /// The database failed: worth another try.
    #[error("database: {0}")]
    Database(mongodb::error::Error),
}

fn is_duplicate(error: &mongodb::error::Error) -> bool {
    matches!(error.kind.as_ref(), ErrorKind::Write(WriteFailure::WriteError(e)) if e.code == 11_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> UserEvent {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn both_documents_carry_the_event_id_and_the_v1_3_0_shape() {
        let e = event(
            r#"{"id":"user.created:7","type":"user.created","user_id":7,"timestamp":"2026-11-26T10:00:00Z",
                "user_agent":"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0","data":{"username":"ada"}}"#,
        );
        let (event, behavior) = e.documents().unwrap();
        assert_eq!(event.get_str("_id").unwrap(), "user.created:7");
        assert_eq!(event.get_str("processing_status").unwrap(), "pending");
        assert!(event.get_bool(MARKER).unwrap());
        assert_eq!(behavior.get_str("_id").unwrap(), "user.created:7");
        assert_eq!(behavior.get_str("action").unwrap(), "user.created");
        assert_eq!(behavior.get_i64("user_id").unwrap(), 7);
        assert_eq!(
            behavior.get_document("metadata").unwrap().get_str("username").unwrap(),
            "ada"
        );
        assert_eq!(
            behavior
                .get_document("device_info")
                .unwrap()
                .get_str("browser")
                .unwrap(),
            "Firefox"
        );
    }

    #[test]
    fn a_bad_timestamp_is_named() {
        let e = event(r#"{"id":"x","type":"user.created","user_id":1,"timestamp":"yesterday"}"#);
        assert!(e.documents().unwrap_err().contains("\"yesterday\" is not RFC 3339"));
    }
}
