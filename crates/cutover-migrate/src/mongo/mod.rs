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

mod lease;
mod ledger;
mod operation;
mod run;
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
use self::{
    lease::{Lease, LeaseConfig},
    run::Step,
};
use crate::{
    Event, MigrateError, Phase, PlannedMigration, Report, StatusEntry, UpOptions,
    ledger::{LedgerEntry, State},
    migrator::{EventSink, Identity, emit, status},
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

    fn emit(&self, event: &Event) {
        emit(self.events.as_ref(), event);
    }

    /// Where every migration stands. Read-only.
    pub async fn status(&self, db: &Database) -> Result<Vec<StatusEntry>, MigrateError> {
        Ok(status(self.set.migrations(), &ledger::read(db).await?))
    }

    /// What `up` would do. Read-only.
    pub async fn plan(&self, db: &Database, options: &UpOptions) -> Result<Vec<PlannedMigration>, MigrateError> {
        let entries = ledger::read(db).await?;
        self.validate(&entries)?;
        Ok(self
            .pending(&entries, options)
            .into_iter()
            .map(|migration| PlannedMigration {
                version: migration.version,
                name: migration.name.clone(),
                phase: migration.phase,
                mode: crate::ApplyMode::Operations,
                reason: None,
                statements: migration.operations().len(),
                resume_at: resume_at(migration, &entries),
                findings: Vec::new(),
            })
            .collect())
    }

    /// Apply pending migrations. Many runners may call this at once: one applies, the others
    /// wait for the lease, re-read the ledger and find nothing left to do.
    pub async fn up(&self, db: &Database, options: &UpOptions) -> Result<Report, MigrateError> {
        if options.dry_run {
            let plan = self.plan(db, options).await?;
            return Ok(Report {
                applied: plan.iter().map(|m| m.version).collect(),
                ..Report::default()
            });
        }
        let before = ledger::read(db).await?;
        self.validate(&before)?;
        let pending_before: Vec<i64> = self.pending(&before, options).iter().map(|m| m.version).collect();
        let mut report = Report {
            skipped_phase: self
                .set
                .migrations()
                .iter()
                .filter(|m| !options.includes(m.phase) && !is_applied(m.version, &before))
                .map(|m| m.version)
                .collect(),
            ..Report::default()
        };
        if pending_before.is_empty() {
            return Ok(report);
        }
        let lease = Lease::acquire(db, self.lease, &|event| self.emit(&event)).await?;
        let result = self.up_locked(db, &lease, options, &pending_before, &mut report).await;
        lease.release().await;
        result.map(|()| report)
    }

    async fn up_locked(
        &self,
        db: &Database,
        lease: &Lease,
        options: &UpOptions,
        pending_before: &[i64],
        report: &mut Report,
    ) -> Result<(), MigrateError> {
        // Re-read under the lease: a runner that waited usually finds nothing left to do.
        let entries = ledger::read(db).await?;
        self.validate(&entries)?;
        let pending = self.pending(&entries, options);
        report.applied_by_others = pending_before
            .iter()
            .copied()
            .filter(|version| !pending.iter().any(|m| m.version == *version))
            .collect();
        for migration in pending {
            self.apply(db, lease, migration, resume_at(migration, &entries)).await?;
            report.applied.push(migration.version);
        }
        Ok(())
    }

    async fn apply(
        &self,
        db: &Database,
        lease: &Lease,
        migration: &MongoMigration,
        resume_at: usize,
    ) -> Result<(), MigrateError> {
        let started = std::time::Instant::now();
        lease.check()?;
        ledger::start(db, migration).await?;
        let steps = migration.operations().len();
        self.emit(&Event::Started {
            version: migration.version,
            name: migration.name.clone(),
            steps,
            resumed_at: resume_at,
        });
        let emit = |event| self.emit(&event);
        for (index, operation) in migration.operations().iter().enumerate().skip(resume_at) {
            let step = Step {
                db,
                migration,
                number: index + 1,
                operation,
                lease,
                emit: &emit,
            };
            tracing::info!(
                version = migration.version,
                step = index + 1,
                "{}",
                operation.describe()
            );
            if let Err(error) = lease.guard(step.run()).await {
                if let Err(record) = ledger::fail(db, migration.version, index + 1, &error.to_string()).await {
                    tracing::error!(%record, "the failure could not be recorded");
                }
                return Err(error);
            }
            ledger::step_done(db, migration.version, index + 1).await?;
            self.emit(&Event::Step {
                version: migration.version,
                done: index + 1,
                of: steps,
            });
        }
        ledger::applied(db, migration.version, started.elapsed()).await?;
        self.emit(&Event::Applied {
            version: migration.version,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
        Ok(())
    }

    /// Revert applied migrations newer than `target`, newest first, with the down commands
    /// stored in the ledger when each was applied.
    pub async fn down(&self, db: &Database, target: i64) -> Result<Report, MigrateError> {
        let lease = Lease::acquire(db, self.lease, &|event| self.emit(&event)).await?;
        let result = self.down_locked(db, &lease, target).await;
        lease.release().await;
        result
    }

    async fn down_locked(&self, db: &Database, lease: &Lease, target: i64) -> Result<Report, MigrateError> {
        let mut report = Report::default();
        let mut entries = ledger::read(db).await?;
        entries.retain(|e| e.version > target);
        entries.sort_by_key(|e| std::cmp::Reverse(e.version));
        for entry in entries {
            if entry.state != State::Applied && entry.steps_done == 0 {
                // Started but nothing done (for example refused by the server at step 1).
                ledger::remove(db, entry.version).await?;
                report.applied.push(entry.version);
                continue;
            }
            let commands = ledger::stored_down(db, entry.version)
                .await?
                .ok_or_else(|| MigrateError::Irreversible {
                    version: entry.version,
                    name: entry.name.clone(),
                })?;
            for (index, command) in commands.into_iter().enumerate() {
                lease
                    .guard(async {
                        match db.run_command(command.clone()).await {
                            Ok(_) => Ok(()),
                            // Undone already: by an interrupted `down`, or never done by a
                            // migration that failed part-way.
                            Err(e) if run::is_already_gone(&e) => Ok(()),
                            Err(e) => Err(MigrateError::Step {
                                version: entry.version,
                                name: entry.name.clone(),
                                step: index + 1,
                                operation: format!("down: {}", describe(&command)),
                                message: e.to_string(),
                            }),
                        }
                    })
                    .await?;
            }
            ledger::remove(db, entry.version).await?;
            tracing::info!(version = entry.version, "migration reverted");
            report.applied.push(entry.version);
        }
        Ok(report)
    }

    /// Accept the current migrations: realign the ledger's checksums, recording `note`.
    pub async fn repair(&self, db: &Database, note: &str) -> Result<Vec<i64>, MigrateError> {
        let lease = Lease::acquire(db, self.lease, &|event| self.emit(&event)).await?;
        let result = async {
            let mut repaired = Vec::new();
            for entry in ledger::read(db).await? {
                if let Some(migration) = self.set.get(entry.version) {
                    let checksum = migration.checksum();
                    if checksum != entry.checksum {
                        ledger::repair(db, entry.version, &checksum, note).await?;
                        repaired.push(entry.version);
                    }
                }
            }
            Ok(repaired)
        }
        .await;
        lease.release().await;
        result
    }

    /// Refuse before anything runs: an applied migration changed or missing, or a partly
    /// applied one edited since.
    fn validate(&self, entries: &[LedgerEntry]) -> Result<(), MigrateError> {
        for entry in entries {
            match self.set.get(entry.version) {
                None if entry.state == State::Applied => {
                    return Err(MigrateError::Missing {
                        version: entry.version,
                        name: entry.name.clone(),
                    });
                }
                None => {}
                Some(migration) => {
                    let current = migration.checksum();
                    let started = entry.state == State::Applied || entry.steps_done > 0;
                    if started && current != entry.checksum {
                        return Err(MigrateError::ChecksumMismatch {
                            version: entry.version,
                            name: entry.name.clone(),
                            applied: entry.checksum.clone(),
                            current,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn pending<'a>(&'a self, entries: &[LedgerEntry], options: &UpOptions) -> Vec<&'a MongoMigration> {
        self.set
            .migrations()
            .iter()
            .filter(|m| options.target.is_none_or(|target| m.version <= target))
            .filter(|m| options.includes(m.phase))
            .filter(|m| !is_applied(m.version, entries))
            .collect()
    }
}

fn is_applied(version: i64, entries: &[LedgerEntry]) -> bool {
    entries
        .iter()
        .any(|e| e.version == version && e.state == State::Applied)
}

fn resume_at(migration: &MongoMigration, entries: &[LedgerEntry]) -> usize {
    entries
        .iter()
        .find(|e| e.version == migration.version && e.state != State::Applied)
        .map_or(0, |e| usize::try_from(e.steps_done).unwrap_or(0))
}

fn describe(command: &Document) -> String {
    command.keys().next().cloned().unwrap_or_default()
}
