//! The one engine behind every backend: what is pending, what may run, the ledger's rules, the
//! lock's lifecycle, `down` and `repair`. A [`Backend`] knows its database and how to run its
//! kind of migration body (SQL text with transaction modes and a lint; typed MongoDB
//! operations); every decision about *what* to run and *when to refuse* is made here, once, so
//! PostgreSQL, SQLite and MongoDB cannot drift apart.
//!
//! The rules, the same on every backend:
//!
//! - **Before the lock**, the files are checked against the ledger ([`validate`]) and the
//!   pending migrations are planned and linted: a broken file never makes other runners wait.
//! - **Under the lock**, the ledger is read again: a runner that waited finds what another
//!   applied and reports it as `applied_by_others`.
//! - **An applied migration may not change** (checksum) nor disappear. **A migration that stopped
//!   part-way may be fixed, but not in the steps it already ran**: the ledger keeps the checksum
//!   of the steps done; without one (a backfill's batches, an older ledger) the migration must
//!   be unchanged.
//! - **`down` finds and checks every down before reverting anything**, newest first: the file's
//!   (or the Rust migration's), else the copy the ledger kept, with a warning. A ledger row that
//!   never completed a step (a failed transactional migration, a server refusing step 1) is
//!   forgotten without running a down: nothing of it is in the database.
//! - **A `contract` migration waits for every live instance to embed it** (the instance
//!   registry, [`crate::instances`]): checked before the lock, so a refusal never waits for
//!   another runner, and again under it; `force_contract` overrides, warns, and records the
//!   override on the migration's ledger row.
//! - **`repair`** realigns checksums of edited migrations and nothing else.

use std::{future::Future, path::PathBuf};

use crate::{
    Event, MigrateError, Phase, PlannedMigration, Report, StatusEntry, UpOptions,
    instances::{self, BlockedContract, Instance},
    ledger::{LedgerEntry, State},
    outcome::{EventSink, MigrationState, emit},
};

/// What the engine needs of a migration, SQL or MongoDB.
pub(crate) trait Identity {
    fn version(&self) -> i64;
    fn name(&self) -> &str;
    fn phase(&self) -> Phase;
    fn checksum(&self) -> String;
    fn origin(&self) -> &str;
}

/// Whether `apply` ran the migration, or found it applied by a runner that got there first
/// (SQLite, whose lock is taken per migration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    Here,
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    ByAnother,
}

/// A down found for a ledger row, with a warning when it is the ledger's copy.
pub(crate) struct FoundDown<D> {
    pub(crate) down: D,
    pub(crate) warning: Option<String>,
}

/// A database the engine drives. Each method does one thing to the database; none decides what
/// to run. Futures are `Send` so a service can migrate from a spawned task.
pub(crate) trait Backend: Send {
    /// The migrations it runs.
    type Migration: Identity + Sync;
    /// What reverts one (down SQL, stored commands).
    type Down: Send + Sync;

    /// Where progress events go.
    fn events(&self) -> Option<&EventSink>;

    /// Every ledger row, in version order; empty when there is no ledger yet.
    fn ledger(&mut self) -> impl Future<Output = Result<Vec<LedgerEntry>, MigrateError>> + Send;

    /// Create the ledger, or upgrade one written by an older version (under the lock).
    fn ensure_ledger(&mut self) -> impl Future<Output = Result<(), MigrateError>> + Send;

    /// Take the one-runner-at-a-time lock, waiting for another runner's.
    fn lock(&mut self) -> impl Future<Output = Result<(), MigrateError>> + Send;

    /// Release it (never fails: a lost lock ends with its session or lease).
    fn unlock(&mut self) -> impl Future<Output = ()> + Send;

    /// How `migration` would run, with lint findings, given the ledger.
    fn plan(
        &mut self,
        migration: &Self::Migration,
        ledger: &[LedgerEntry],
    ) -> impl Future<Output = Result<PlannedMigration, MigrateError>> + Send;

    /// The checksum of the first `steps` steps as the migration reads now, to compare with the
    /// one recorded when they ran; `None` when steps have no stable text (backfill batches).
    fn ran_checksum(&self, migration: &Self::Migration, steps: usize) -> Option<String>;

    /// Warnings about the database, integrity checks and resource checks, before applying.
    fn preflight(
        &mut self,
        pending: &[&Self::Migration],
    ) -> impl Future<Output = Result<Vec<String>, MigrateError>> + Send;

    /// A backup before the first pending migration, where the backend takes them.
    fn backup(&mut self, _first: i64) -> impl Future<Output = Result<Option<PathBuf>, MigrateError>> + Send {
        async { Ok(None) }
    }

    /// Run `migration` as planned, recording each transition in the ledger.
    fn apply(
        &mut self,
        migration: &Self::Migration,
        plan: &PlannedMigration,
    ) -> impl Future<Output = Result<Applied, MigrateError>> + Send;

    /// After a failed `apply` (restore the backup, when asked to).
    fn after_failure(&mut self, _report: &Report) -> impl Future<Output = Result<(), MigrateError>> + Send {
        async { Ok(()) }
    }

    /// The checks that must hold after a run.
    fn validations(&mut self) -> impl Future<Output = Result<(), MigrateError>> + Send;

    /// The down for `entry`: from `migration` when the binary has it, else the ledger's copy.
    fn down_of(
        &mut self,
        entry: &LedgerEntry,
        migration: Option<&Self::Migration>,
    ) -> impl Future<Output = Result<FoundDown<Self::Down>, MigrateError>> + Send;

    /// Run `down` and remove `entry`'s row.
    fn revert(
        &mut self,
        entry: &LedgerEntry,
        down: &Self::Down,
    ) -> impl Future<Output = Result<(), MigrateError>> + Send;

    /// Remove `version`'s row without running anything.
    fn forget(&mut self, version: i64) -> impl Future<Output = Result<(), MigrateError>> + Send;

    /// The live instances registered in this database (none when none ever registered).
    fn instances(&mut self) -> impl Future<Output = Result<Vec<Instance>, MigrateError>> + Send;

    /// Record on `version`'s ledger row that it ran past the contract gate, with `note`.
    fn record_forced(&mut self, version: i64, note: &str) -> impl Future<Output = Result<(), MigrateError>> + Send;

    /// Record `checksum` as `version`'s, with `note`.
    fn realign(
        &mut self,
        version: i64,
        checksum: &str,
        note: &str,
    ) -> impl Future<Output = Result<(), MigrateError>> + Send;
}

/// Add `migration` to `migrations`, kept in version order; a version already there is an error
/// naming both origins.
pub(crate) fn insert_unique<M: Identity>(migrations: &mut Vec<M>, migration: M) -> Result<(), MigrateError> {
    if let Some(existing) = migrations.iter().find(|m| m.version() == migration.version()) {
        return Err(MigrateError::DuplicateVersion {
            version: migration.version(),
            first: existing.origin().to_owned(),
            second: migration.origin().to_owned(),
        });
    }
    migrations.push(migration);
    migrations.sort_by_key(Identity::version);
    Ok(())
}

fn find<M: Identity>(migrations: &[M], version: i64) -> Option<&M> {
    migrations.iter().find(|m| m.version() == version)
}

fn is_applied(version: i64, ledger: &[LedgerEntry]) -> bool {
    ledger.iter().any(|e| e.version == version && e.state == State::Applied)
}

/// Every migration's state: from the sources, joined with the ledger (rows without a source
/// are `missing`).
pub(crate) fn status<M: Identity>(migrations: &[M], ledger: &[LedgerEntry]) -> Vec<StatusEntry> {
    let mut entries: Vec<StatusEntry> = migrations
        .iter()
        .map(|migration| {
            let checksum = migration.checksum();
            let row = ledger.iter().find(|e| e.version == migration.version()).cloned();
            let state = match &row {
                None => MigrationState::Pending,
                Some(row) if row.checksum != checksum => MigrationState::Changed,
                Some(row) => match row.state {
                    State::Applied => MigrationState::Applied,
                    State::Running => MigrationState::Running,
                    State::Failed => MigrationState::Failed,
                },
            };
            StatusEntry {
                version: migration.version(),
                name: migration.name().to_owned(),
                phase: migration.phase().to_string(),
                state,
                checksum,
                ledger: row,
            }
        })
        .collect();
    for row in ledger.iter().filter(|row| find(migrations, row.version).is_none()) {
        entries.push(StatusEntry {
            version: row.version,
            name: row.name.clone(),
            phase: row.phase.clone(),
            state: MigrationState::Missing,
            checksum: row.checksum.clone(),
            ledger: Some(row.clone()),
        });
    }
    entries.sort_by_key(|e| e.version);
    entries
}

/// Refuse before anything runs: an applied migration changed or missing, or a partly applied
/// one edited in the steps it already ran.
pub(crate) fn validate<B: Backend>(
    backend: &B,
    migrations: &[B::Migration],
    ledger: &[LedgerEntry],
) -> Result<(), MigrateError> {
    for entry in ledger {
        let mismatch = |applied: String, current: String| MigrateError::ChecksumMismatch {
            version: entry.version,
            name: entry.name.clone(),
            applied,
            current,
        };
        match find(migrations, entry.version) {
            None if entry.state == State::Applied => {
                return Err(MigrateError::Missing {
                    version: entry.version,
                    name: entry.name.clone(),
                });
            }
            None => {}
            Some(migration) if entry.state != State::Applied => {
                let ran = usize::try_from(entry.steps_done).unwrap_or(0);
                if ran == 0 {
                    continue;
                }
                match (&entry.done_checksum, backend.ran_checksum(migration, ran)) {
                    (Some(done), Some(now)) if *done == now => {}
                    (Some(done), Some(now)) => {
                        return Err(mismatch(format!("{done} (its first {ran} step(s), already run)"), now));
                    }
                    // No record of the steps' text: only the unchanged migration may resume.
                    _ if migration.checksum() == entry.checksum => {}
                    _ => {
                        return Err(mismatch(
                            format!("{} ({ran} step(s) already run)", entry.checksum),
                            migration.checksum(),
                        ));
                    }
                }
            }
            Some(migration) if migration.checksum() != entry.checksum => {
                return Err(mismatch(entry.checksum.clone(), migration.checksum()));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn pending<'a, M: Identity>(migrations: &'a [M], ledger: &[LedgerEntry], options: &UpOptions) -> Vec<&'a M> {
    migrations
        .iter()
        .filter(|m| options.target.is_none_or(|target| m.version() <= target))
        .filter(|m| options.includes(m.phase()))
        .filter(|m| !is_applied(m.version(), ledger))
        .collect()
}

fn skipped_phase<M: Identity>(migrations: &[M], ledger: &[LedgerEntry], options: &UpOptions) -> Vec<i64> {
    migrations
        .iter()
        .filter(|m| !options.includes(m.phase()) && !is_applied(m.version(), ledger))
        .map(Identity::version)
        .collect()
}

/// What `up` would do, with the lint's findings. Read-only.
pub(crate) async fn plan<B: Backend>(
    backend: &mut B,
    migrations: &[B::Migration],
    options: &UpOptions,
) -> Result<Vec<PlannedMigration>, MigrateError> {
    let ledger = backend.ledger().await?;
    validate(backend, migrations, &ledger)?;
    let pending = pending(migrations, &ledger, options);
    let blocked = contract_blocks(backend, &pending).await?;
    let mut planned = Vec::new();
    for migration in pending {
        let mut plan = backend.plan(migration, &ledger).await?;
        if let Some(blocked) = blocked.iter().find(|b| b.version == plan.version) {
            plan.blocked_by = blocked.blocked_by.iter().map(|i| i.id.clone()).collect();
        }
        planned.push(plan);
    }
    Ok(planned)
}

/// The pending contract migrations a live instance does not embed (the registry is read only
/// when a contract migration is pending).
async fn contract_blocks<B: Backend>(
    backend: &mut B,
    pending: &[&B::Migration],
) -> Result<Vec<BlockedContract>, MigrateError> {
    if !pending.iter().any(|m| m.phase() == Phase::Contract) {
        return Ok(Vec::new());
    }
    Ok(instances::blocked(pending, &backend.instances().await?))
}

/// The contract gate: refuse while a live instance does not embed a pending contract
/// migration, unless forced; forced, warn loudly and return what was forced past.
async fn contract_gate<B: Backend>(
    backend: &mut B,
    pending: &[&B::Migration],
    options: &UpOptions,
) -> Result<Vec<BlockedContract>, MigrateError> {
    let blocked = contract_blocks(backend, pending).await?;
    if blocked.is_empty() {
        return Ok(blocked);
    }
    let Some(reason) = &options.force_contract else {
        return Err(MigrateError::ContractBlocked(blocked));
    };
    for contract in &blocked {
        emit(
            backend.events(),
            &Event::Warning {
                message: format!("FORCED past the contract gate ({reason}): {contract}"),
            },
        );
    }
    Ok(blocked)
}

/// Apply pending migrations. Many runners may call this at once: one applies, the others wait
/// for its lock and then find nothing to do.
pub(crate) async fn up<B: Backend>(
    backend: &mut B,
    migrations: &[B::Migration],
    options: &UpOptions,
) -> Result<Report, MigrateError> {
    if options.dry_run {
        let planned = plan(backend, migrations, options).await?;
        return Ok(Report {
            applied: planned.iter().map(|m| m.version).collect(),
            ..Report::default()
        });
    }
    // Everything is validated and linted before the lock: a broken file never makes other
    // runners wait.
    let before = backend.ledger().await?;
    validate(backend, migrations, &before)?;
    let pending_before = pending(migrations, &before, options);
    let mut plans = Vec::with_capacity(pending_before.len());
    let mut refused = Vec::new();
    for migration in &pending_before {
        let planned = backend.plan(migration, &before).await?;
        refused.extend(planned.findings.iter().filter(|f| !f.allowed).cloned());
        plans.push(planned);
    }
    if !refused.is_empty() {
        return Err(MigrateError::Lint(refused));
    }
    // Refused before waiting for the lock (and checked again under it).
    if options.force_contract.is_none() {
        let blocked = contract_blocks(backend, &pending_before).await?;
        if !blocked.is_empty() {
            return Err(MigrateError::ContractBlocked(blocked));
        }
    }
    let mut report = Report {
        skipped_phase: skipped_phase(migrations, &before, options),
        ..Report::default()
    };
    if pending_before.is_empty() {
        return Ok(report);
    }
    let before = Before {
        ledger: &before,
        pending: &pending_before,
        plans: &plans,
    };
    locked(backend, async |backend| {
        up_locked(backend, migrations, options, &before, &mut report).await
    })
    .await?;
    Ok(report)
}

/// Run `work` under the backend's lock, released whatever the outcome.
pub(crate) async fn locked<B: Backend, T>(
    backend: &mut B,
    work: impl AsyncFnOnce(&mut B) -> Result<T, MigrateError>,
) -> Result<T, MigrateError> {
    backend.lock().await?;
    let result = work(backend).await;
    backend.unlock().await;
    result
}

/// What `up` read and planned before taking the lock.
struct Before<'a, M> {
    ledger: &'a [LedgerEntry],
    pending: &'a [&'a M],
    plans: &'a [PlannedMigration],
}

impl<M: Identity> Before<'_, M> {
    /// The plan made before the lock, if `version`'s ledger row is unchanged since.
    fn plan(&self, version: i64, ledger: &[LedgerEntry]) -> Option<&PlannedMigration> {
        fn row(rows: &[LedgerEntry], version: i64) -> Option<&LedgerEntry> {
            rows.iter().find(|e| e.version == version)
        }
        (row(self.ledger, version) == row(ledger, version))
            .then(|| self.plans.iter().find(|p| p.version == version))
            .flatten()
    }
}

async fn up_locked<B: Backend>(
    backend: &mut B,
    migrations: &[B::Migration],
    options: &UpOptions,
    before: &Before<'_, B::Migration>,
    report: &mut Report,
) -> Result<(), MigrateError> {
    backend.ensure_ledger().await?;
    // Re-read under the lock: a runner that waited usually finds nothing left to do.
    let ledger = backend.ledger().await?;
    validate(backend, migrations, &ledger)?;
    let pending = pending(migrations, &ledger, options);
    report.applied_by_others = before
        .pending
        .iter()
        .map(|m| m.version())
        .filter(|version| !pending.iter().any(|m| m.version() == *version))
        .collect();
    report.skipped_phase = skipped_phase(migrations, &ledger, options);
    let Some(first) = pending.first() else {
        return Ok(());
    };
    report.forced = contract_gate(backend, &pending, options).await?;
    report.warnings = backend.preflight(&pending).await?;
    for warning in &report.warnings {
        emit(
            backend.events(),
            &Event::Warning {
                message: warning.clone(),
            },
        );
    }
    report.backup = backend.backup(first.version()).await?;
    for migration in pending {
        // Planned (parsed and linted) once, unless another runner moved it on meanwhile.
        let replanned;
        let planned = match before.plan(migration.version(), &ledger) {
            Some(planned) => planned,
            None => {
                replanned = backend.plan(migration, &ledger).await?;
                &replanned
            }
        };
        let started = std::time::Instant::now();
        match backend.apply(migration, planned).await {
            Ok(Applied::Here) => {}
            Ok(Applied::ByAnother) => {
                report.applied_by_others.push(migration.version());
                continue;
            }
            Err(error) => {
                backend.after_failure(report).await?;
                return Err(error);
            }
        }
        if let (Some(reason), Some(forced)) = (
            &options.force_contract,
            report.forced.iter().find(|b| b.version == migration.version()),
        ) {
            backend
                .record_forced(migration.version(), &instances::forced_note(reason, forced))
                .await?;
        }
        report.applied.push(migration.version());
        emit(
            backend.events(),
            &Event::Applied {
                version: migration.version(),
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            },
        );
    }
    backend.validations().await
}

/// Revert applied migrations newer than `target`, newest first, after finding every down.
pub(crate) async fn down<B: Backend>(
    backend: &mut B,
    migrations: &[B::Migration],
    target: i64,
) -> Result<Report, MigrateError> {
    locked(backend, async |backend| down_locked(backend, migrations, target).await).await
}

async fn down_locked<B: Backend>(
    backend: &mut B,
    migrations: &[B::Migration],
    target: i64,
) -> Result<Report, MigrateError> {
    // Refuses a ledger a newer cutover-migrate wrote before touching it.
    backend.ensure_ledger().await?;
    let mut ledger = backend.ledger().await?;
    ledger.retain(|e| e.version > target);
    ledger.sort_by_key(|e| std::cmp::Reverse(e.version));
    let mut report = Report::default();
    // Find and check every down first: refuse before reverting anything.
    let mut steps = Vec::with_capacity(ledger.len());
    for entry in &ledger {
        if entry.state != State::Applied && entry.steps_done == 0 {
            steps.push((entry, None));
            continue;
        }
        let found = backend.down_of(entry, find(migrations, entry.version)).await?;
        report.warnings.extend(found.warning);
        steps.push((entry, Some(found.down)));
    }
    for (entry, down) in steps {
        match down {
            Some(down) => backend.revert(entry, &down).await?,
            None => {
                backend.forget(entry.version).await?;
                report.warnings.push(format!(
                    "migration {} ({}): {} before completing a step; its ledger row was removed without running a down",
                    entry.version,
                    entry.name,
                    entry.state.as_str()
                ));
            }
        }
        tracing::info!(version = entry.version, "migration reverted");
        report.applied.push(entry.version);
    }
    Ok(report)
}

/// Realign the ledger's checksums with the current migrations, recording `note`.
pub(crate) async fn repair<B: Backend>(
    backend: &mut B,
    migrations: &[B::Migration],
    note: &str,
) -> Result<Vec<i64>, MigrateError> {
    locked(backend, async |backend| {
        backend.ensure_ledger().await?;
        let mut repaired = Vec::new();
        for entry in backend.ledger().await? {
            let Some(migration) = find(migrations, entry.version) else {
                continue;
            };
            let checksum = migration.checksum();
            if entry.checksum != checksum {
                backend.realign(entry.version, &checksum, note).await?;
                repaired.push(entry.version);
            }
        }
        Ok(repaired)
    })
    .await
}
