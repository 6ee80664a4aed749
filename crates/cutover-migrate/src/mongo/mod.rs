//! MongoDB migrations: the same model as the SQL runner (versions, phases, a ledger with
//! checksums and stored down commands, one runner at a time, resumable steps), on a
//! `mongodb::Database` the application already has.
//!
//! - **One runner at a time** through a lease: one document taken with an atomic upsert,
//!   timed by the server's clock, refreshed while work runs. A runner whose refresh fails
//!   abandons the step in progress instead of carrying on unlocked.
//! - **Idempotent operations**: create a collection (with a `$jsonSchema` validator, staged
//!   warn → backfill → error if wanted), add fields where missing in batches, create named
//!   indexes (same spec: skipped; same name, other spec: an error), and copy documents through a
//!   Rust function in batches, marking each source so a killed run resumes without writing
//!   anything twice. Raw commands come from `.up.json` files.
//! - **Resumable**: each finished step is recorded; a rerun starts at the first unfinished one.
//! - **Nothing skipped silently**: when the server does not implement something a step needs
//!   (for example `$jsonSchema` validators on FerretDB 1.x), the run stops at that step with
//!   the server's answer ([`MigrateError::Unsupported`]).
//!
//! ```no_run
//! use cutover_migrate::{UpOptions, mongo::{CreateCollection, Index, MongoMigration, MongoMigrationSet, MongoMigrator}};
//! use mongodb::bson::doc;
//!
//! # async fn run(db: mongodb::Database) -> Result<(), cutover_migrate::MigrateError> {
//! let set = MongoMigrationSet::new().with(
//!     MongoMigration::new(1, "create_user_behavior")
//!         .then(CreateCollection::new("user_behavior"))
//!         .then(Index::new("user_behavior", "session_id_1", doc! { "session_id": 1 })),
//! )?;
//! let report = MongoMigrator::new(set).up(&db, &UpOptions::default()).await?;
//! println!("{report}"); // applied 1, 2 (or: nothing to apply)
//! # Ok(()) }
//! ```

pub(crate) mod fields;
mod lease;
mod ledger;
mod operation;
mod run;
mod session;
mod source;

use std::{sync::Arc, time::Duration};

use mongodb::{Client, Database, bson::Document, options::ClientOptions};

pub use self::{
    lease::LOCK_COLLECTION,
    ledger::LEDGER_COLLECTION,
    operation::{
        AddFields, Batching, CopyDocuments, CreateCollection, Index, Operation, SetValidation, Transform,
        ValidationAction, ValidationLevel,
    },
    source::{MongoMigration, MongoMigrationSet},
};
use self::{lease::LeaseConfig, session::MongoSession};
use crate::{
    Event, MigrateError, Phase, PlannedMigration, Report, StatusEntry, UpOptions,
    engine::{self, Identity},
    outcome::EventSink,
};

impl Identity for MongoMigration {
    fn version(&self) -> i64 {
        self.version
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn phase(&self) -> Phase {
        self.phase
    }
    fn checksum(&self) -> String {
        MongoMigration::checksum(self)
    }
    fn origin(&self) -> &str {
        &self.origin
    }
}

/// Connect to `url` and pick the database: `database`, or the one named in the URL
/// (`mongodb://host/analytics`).
pub async fn connect(url: &str, database: Option<&str>) -> Result<Database, MigrateError> {
    let options = ClientOptions::parse(url)
        .await
        .map_err(|e| MigrateError::UnsupportedUrl(format!("{}: {e}", crate::redact_url(url))))?;
    let name = database
        .map(str::to_owned)
        .or_else(|| options.default_database.clone())
        .ok_or_else(|| {
            MigrateError::UnsupportedUrl(format!(
                "{}: name the database (--database, or mongodb://host/<database>)",
                crate::redact_url(url)
            ))
        })?;
    let client = Client::with_options(options).map_err(MigrateError::mongo("cannot create the MongoDB client"))?;
    Ok(client.database(&name))
}

/// Runs MongoDB migrations on a database.
#[derive(Clone)]
pub struct MongoMigrator {
    set: MongoMigrationSet,
    lease: LeaseConfig,
    events: Option<EventSink>,
    integrity: Vec<MongoCheck>,
    validations: Vec<MongoCheck>,
}

impl std::fmt::Debug for MongoMigrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoMigrator")
            .field("migrations", &self.set.migrations().len())
            .field("lease", &self.lease.duration)
            .field("lock_wait", &self.lease.wait)
            .finish_non_exhaustive()
    }
}

impl MongoMigrator {
    /// Run `set` with a 30 s lease (refreshed every 10 s) and up to 5 min of waiting for it.
    pub fn new(set: MongoMigrationSet) -> Self {
        Self {
            set,
            lease: LeaseConfig {
                duration: Duration::from_secs(30),
                wait: Duration::from_secs(300),
            },
            events: None,
            integrity: Vec::new(),
            validations: Vec::new(),
        }
    }

    /// The migrations.
    pub fn migrations(&self) -> &MongoMigrationSet {
        &self.set
    }

    /// How long the lease lasts without a refresh (refreshed every third of it).
    pub fn lease_duration(mut self, duration: Duration) -> Self {
        self.lease.duration = duration.max(Duration::from_millis(300));
        self
    }

    /// How long to wait for another runner's lease before giving up.
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lease.wait = wait;
        self
    }

    /// Receive progress events (also logged with `tracing`).
    pub fn on_event(mut self, sink: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.events = Some(Arc::new(sink));
        self
    }

    /// A check that must hold before anything is applied: no document of `collection` may
    /// match `filter` (for example `{ "email": { "$exists": false } }`).
    pub fn integrity_check(mut self, name: impl Into<String>, collection: impl Into<String>, filter: Document) -> Self {
        self.integrity.push(MongoCheck::new(name, collection, filter));
        self
    }

    /// A check that must hold after the run, like [`integrity_check`](Self::integrity_check).
    pub fn validation(mut self, name: impl Into<String>, collection: impl Into<String>, filter: Document) -> Self {
        self.validations.push(MongoCheck::new(name, collection, filter));
        self
    }

    /// Where every migration stands. Read-only.
    pub async fn status(&self, db: &Database) -> Result<Vec<StatusEntry>, MigrateError> {
        Ok(engine::status(self.set.migrations(), &ledger::read(db).await?))
    }

    /// The live instances registered in the database (see [`instances`](crate::instances)).
    /// Read-only.
    pub async fn instances(&self, db: &Database) -> Result<Vec<crate::instances::Instance>, MigrateError> {
        crate::instances::mongo::live(db).await
    }

    /// What `up` would do. Read-only.
    pub async fn plan(&self, db: &Database, options: &UpOptions) -> Result<Vec<PlannedMigration>, MigrateError> {
        engine::plan(&mut MongoSession::new(db, self), self.set.migrations(), options).await
    }

    /// Apply pending migrations. Many runners may call this at once: one applies, the others
    /// wait for the lease, re-read the ledger and find nothing left to do.
    pub async fn up(&self, db: &Database, options: &UpOptions) -> Result<Report, MigrateError> {
        engine::up(&mut MongoSession::new(db, self), self.set.migrations(), options).await
    }

    /// Revert applied migrations newer than `target`, newest first, with each migration's down
    /// commands (its `.down.json`, or the inverse of its operations); for a migration this
    /// binary does not have, the commands stored in the ledger when it was applied. Every down
    /// is found before anything is reverted. A migration that failed before completing a step
    /// has its ledger row removed without running a down.
    pub async fn down(&self, db: &Database, target: i64) -> Result<Report, MigrateError> {
        engine::down(&mut MongoSession::new(db, self), self.set.migrations(), target).await
    }

    /// Accept the current migrations: realign the ledger's checksums, recording `note`.
    pub async fn repair(&self, db: &Database, note: &str) -> Result<Vec<i64>, MigrateError> {
        engine::repair(&mut MongoSession::new(db, self), self.set.migrations(), note).await
    }
}

/// A check on a MongoDB database: no document of `collection` may match `filter`.
#[derive(Debug, Clone)]
pub(crate) struct MongoCheck {
    name: String,
    collection: String,
    filter: Document,
}

impl MongoCheck {
    fn new(name: impl Into<String>, collection: impl Into<String>, filter: Document) -> Self {
        Self {
            name: name.into(),
            collection: collection.into(),
            filter,
        }
    }
}
