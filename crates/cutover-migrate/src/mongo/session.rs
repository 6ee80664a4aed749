//! MongoDB as the engine's [`Backend`]: a database, the [`MongoMigrator`]'s settings and, while
//! the engine holds the lock, the lease.

use mongodb::{Database, bson::Document};

use super::{MongoCheck, MongoMigration, MongoMigrator, lease::Lease, ledger, run::Step};
use crate::{
    ApplyMode, Event, MigrateError, PlannedMigration,
    engine::{Applied, Backend, FoundDown},
    ledger::{LedgerEntry, State},
    outcome::{EventSink, emit},
};

pub(crate) struct MongoSession<'a> {
    pub(crate) db: &'a Database,
    pub(crate) migrator: &'a MongoMigrator,
    lease: Option<Lease>,
}

impl<'a> MongoSession<'a> {
    pub(crate) fn new(db: &'a Database, migrator: &'a MongoMigrator) -> Self {
        Self {
            db,
            migrator,
            lease: None,
        }
    }

    fn lease(&self) -> Result<&Lease, MigrateError> {
        self.lease
            .as_ref()
            .ok_or_else(|| MigrateError::LeaseLost("the lease was not taken before writing".to_owned()))
    }

    fn emit(&self, event: &Event) {
        emit(self.migrator.events.as_ref(), event);
    }

    /// Every check of `checks` must find no document; the first that does stops the run.
    async fn run_checks(&self, checks: &[MongoCheck], when: &str) -> Result<(), MigrateError> {
        for check in checks {
            let found = self
                .db
                .collection::<Document>(&check.collection)
                .count_documents(check.filter.clone())
                .limit(1)
                .await
                .map_err(MigrateError::mongo(format!("check `{}`", check.name)))?;
            if found > 0 {
                return Err(MigrateError::Preflight(format!(
                    "{when} `{}` failed: a document of `{}` matches its filter",
                    check.name, check.collection
                )));
            }
        }
        Ok(())
    }
}

impl Backend for MongoSession<'_> {
    type Migration = MongoMigration;
    type Down = Vec<Document>;

    fn events(&self) -> Option<&EventSink> {
        self.migrator.events.as_ref()
    }

    async fn ledger(&mut self) -> Result<Vec<LedgerEntry>, MigrateError> {
        ledger::read(self.db).await
    }

    /// The collection appears with its first document; its schema version is checked.
    async fn ensure_ledger(&mut self) -> Result<(), MigrateError> {
        ledger::ensure_schema(self.db).await
    }

    async fn lock(&mut self) -> Result<(), MigrateError> {
        let events = self.migrator.events.clone();
        let lease = Lease::acquire(self.db, self.migrator.lease, &|event| emit(events.as_ref(), &event)).await?;
        self.lease = Some(lease);
        Ok(())
    }

    async fn unlock(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release().await;
        }
    }

    /// Typed operations are idempotent and build no locks worth linting: no findings.
    async fn plan(
        &mut self,
        migration: &MongoMigration,
        ledger: &[LedgerEntry],
    ) -> Result<PlannedMigration, MigrateError> {
        let resume_at = ledger
            .iter()
            .find(|e| e.version == migration.version && e.state != State::Applied)
            .map_or(0, |e| usize::try_from(e.steps_done).unwrap_or(0));
        Ok(PlannedMigration {
            version: migration.version,
            name: migration.name.clone(),
            phase: migration.phase,
            mode: ApplyMode::Operations,
            reason: None,
            statements: migration.operations().len(),
            resume_at,
            findings: Vec::new(),
            blocked_by: Vec::new(),
        })
    }

    fn ran_checksum(&self, migration: &MongoMigration, steps: usize) -> Option<String> {
        Some(migration.prefix_checksum(steps))
    }

    async fn preflight(&mut self, _pending: &[&MongoMigration]) -> Result<Vec<String>, MigrateError> {
        self.run_checks(&self.migrator.integrity, "integrity check").await?;
        Ok(Vec::new())
    }

    async fn apply(&mut self, migration: &MongoMigration, plan: &PlannedMigration) -> Result<Applied, MigrateError> {
        let started = std::time::Instant::now();
        let lease = self.lease()?;
        lease.check()?;
        ledger::start(self.db, migration).await?;
        let steps = migration.operations().len();
        self.emit(&Event::Started {
            version: migration.version,
            name: migration.name.clone(),
            steps,
            resumed_at: plan.resume_at,
        });
        let emit = |event| self.emit(&event);
        for (index, operation) in migration.operations().iter().enumerate().skip(plan.resume_at) {
            let step = Step {
                db: self.db,
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
                if let Err(record) = ledger::fail(self.db, migration.version, index + 1, &error.to_string()).await {
                    tracing::error!(%record, "the failure could not be recorded");
                }
                return Err(error);
            }
            ledger::step_done(self.db, migration, index + 1).await?;
            self.emit(&Event::Step {
                version: migration.version,
                done: index + 1,
                of: steps,
            });
        }
        ledger::applied(self.db, migration.version, started.elapsed()).await?;
        Ok(Applied::Here)
    }

    async fn validations(&mut self) -> Result<(), MigrateError> {
        self.run_checks(&self.migrator.validations, "post-migration validation")
            .await
    }

    async fn down_of(
        &mut self,
        entry: &LedgerEntry,
        migration: Option<&MongoMigration>,
    ) -> Result<FoundDown<Vec<Document>>, MigrateError> {
        if let Some(down) = migration.and_then(MongoMigration::down) {
            return Ok(FoundDown { down, warning: None });
        }
        match ledger::stored_down(self.db, entry.version).await? {
            Some(down) => Ok(FoundDown {
                down,
                warning: Some(format!(
                    "migration {} ({}): no down here; reverted with the down commands stored in the ledger when it was applied",
                    entry.version, entry.name
                )),
            }),
            None => Err(MigrateError::Irreversible {
                version: entry.version,
                name: entry.name.clone(),
            }),
        }
    }

    async fn revert(&mut self, entry: &LedgerEntry, down: &Vec<Document>) -> Result<(), MigrateError> {
        let lease = self.lease()?;
        for (index, command) in down.iter().enumerate() {
            lease
                .guard(async {
                    match self.db.run_command(command.clone()).await {
                        Ok(_) => Ok(()),
                        // Undone already: by an interrupted `down`, or never done by a
                        // migration that failed part-way.
                        Err(e) if super::run::is_already_gone(&e) => Ok(()),
                        Err(e) => Err(MigrateError::Step {
                            version: entry.version,
                            name: entry.name.clone(),
                            step: index + 1,
                            operation: format!("down: {}", command.keys().next().cloned().unwrap_or_default()),
                            message: e.to_string(),
                        }),
                    }
                })
                .await?;
        }
        ledger::remove(self.db, entry.version).await
    }

    async fn forget(&mut self, version: i64) -> Result<(), MigrateError> {
        ledger::remove(self.db, version).await
    }

    async fn instances(&mut self) -> Result<Vec<crate::instances::Instance>, MigrateError> {
        crate::instances::mongo::live(self.db).await
    }

    async fn record_forced(&mut self, version: i64, note: &str) -> Result<(), MigrateError> {
        ledger::record_forced(self.db, version, note).await
    }

    async fn realign(&mut self, version: i64, checksum: &str, note: &str) -> Result<(), MigrateError> {
        ledger::repair(self.db, version, checksum, note).await
    }
}
