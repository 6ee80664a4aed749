//! The public entry point: plan, apply, revert and inspect migrations.

use std::{fmt, path::PathBuf, sync::Arc, time::Duration};

use crate::{
    ApplyMode, Event, Migration, MigrationSet, Phase, PlannedMigration, Report, StatusEntry, TransactionMode,
    UpOptions,
    engine::{self, Backend, Identity},
    error::MigrateError,
    ledger::{LedgerEntry, State},
    lint::{self, LintPolicy},
    outcome::{EventSink, emit},
    sql::{SqlSession, with_sql_session},
    statements::{self, Statement},
};

/// A SQL check that must return `true`: before migrating (integrity) or after (validation).
#[derive(Debug, Clone)]
pub struct SqlCheck {
    /// Shown when it fails.
    pub name: String,
    /// A query returning one boolean.
    pub sql: String,
}

/// Backups before migrating (PostgreSQL, with `pg_dump --format=custom`).
#[derive(Debug, Clone)]
pub struct BackupPolicy {
    /// Where dumps go.
    pub dir: PathBuf,
    /// How many to keep (default 5).
    pub keep: usize,
    /// Restore the dump automatically when a migration fails. Off by default: a restore loses
    /// every write made since the dump.
    pub restore_on_failure: bool,
}

impl BackupPolicy {
    /// Dump into `dir`, keeping the last 5.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            keep: 5,
            restore_on_failure: false,
        }
    }
}

/// Runs migrations against a database URL (`postgres://...` or `sqlite://...`).
///
/// ```no_run
/// use cutover_migrate::{MigrationSet, Migrator, UpOptions};
///
/// # async fn run() -> Result<(), cutover_migrate::MigrateError> {
/// let migrator = Migrator::new(MigrationSet::from_dir("migrations")?);
/// let report = migrator.up("postgres://app@db/app", &UpOptions::default()).await?;
/// println!("{report}"); // applied 1, 2 (or: nothing to apply)
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Migrator {
    pub(crate) set: MigrationSet,
    pub(crate) lock_wait: Duration,
    pub(crate) lock_timeout: Duration,
    pub(crate) lock_retries: u32,
    pub(crate) backup: Option<BackupPolicy>,
    pub(crate) integrity: Vec<SqlCheck>,
    pub(crate) validations: Vec<SqlCheck>,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) max_connections_warning: i64,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) max_disk_percent: f64,
    pub(crate) events: Option<EventSink>,
    pub(crate) lint_policy: LintPolicy,
}

impl fmt::Debug for Migrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migrator")
            .field("migrations", &self.set.migrations().len())
            .field("lock_wait", &self.lock_wait)
            .field("lock_timeout", &self.lock_timeout)
            .finish_non_exhaustive()
    }
}

impl Migrator {
    /// Run `set` with the defaults: wait up to 5 min for the lock, 1 s `lock_timeout` per
    /// statement retried up to 30 times with backoff, no backups.
    pub fn new(set: MigrationSet) -> Self {
        Self {
            set,
            lock_wait: Duration::from_secs(300),
            lock_timeout: Duration::from_secs(1),
            lock_retries: 30,
            backup: None,
            integrity: Vec::new(),
            validations: Vec::new(),
            max_connections_warning: 100,
            max_disk_percent: 90.0,
            events: None,
            lint_policy: LintPolicy::default(),
        }
    }

    /// The migrations.
    pub fn migrations(&self) -> &MigrationSet {
        &self.set
    }

    /// How long to wait for another runner's lock before giving up.
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// `lock_timeout` for each statement (a file's `-- cutover:lock-timeout` wins).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// How many times a statement that timed out on a lock is retried.
    pub fn lock_retries(mut self, retries: u32) -> Self {
        self.lock_retries = retries;
        self
    }

    /// Take a verified backup before applying anything.
    pub fn backups(mut self, policy: BackupPolicy) -> Self {
        self.backup = Some(policy);
        self
    }

    /// A query that must return `true` before anything is applied.
    pub fn integrity_check(mut self, name: impl Into<String>, sql: impl Into<String>) -> Self {
        self.integrity.push(SqlCheck {
            name: name.into(),
            sql: sql.into(),
        });
        self
    }

    /// A query that must return `true` after the run.
    pub fn validation(mut self, name: impl Into<String>, sql: impl Into<String>) -> Self {
        self.validations.push(SqlCheck {
            name: name.into(),
            sql: sql.into(),
        });
        self
    }

    /// Which lint findings to accept beyond each file's `-- cutover:allow`, and the baseline at or
    /// below which migrations are history and not linted. See [`LintPolicy`].
    pub fn lint_policy(mut self, policy: LintPolicy) -> Self {
        self.lint_policy = policy;
        self
    }

    /// Receive progress events (also logged with `tracing`).
    pub fn on_event(mut self, sink: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.events = Some(Arc::new(sink));
        self
    }

    #[allow(clippy::needless_pass_by_value)] // events are built at the call site
    pub(crate) fn emit(&self, event: Event) {
        emit(self.events.as_ref(), &event);
    }

    /// Where every migration stands. Read-only.
    pub async fn status(&self, target: impl Into<crate::Target<'_>>) -> Result<Vec<StatusEntry>, MigrateError> {
        with_sql_session!(SqlSession::open(self, target.into(), false).await?, |session| {
            Ok(engine::status(self.set.migrations(), &session.ledger().await?))
        })
    }

    /// The live instances registered in the database (see [`instances`](crate::instances)).
    /// Read-only.
    pub async fn instances(
        &self,
        target: impl Into<crate::Target<'_>>,
    ) -> Result<Vec<crate::instances::Instance>, MigrateError> {
        with_sql_session!(SqlSession::open(self, target.into(), false).await?, |session| {
            session.instances().await
        })
    }

    /// What `up` would do, with the lint's findings. Read-only.
    pub async fn plan(
        &self,
        target: impl Into<crate::Target<'_>>,
        options: &UpOptions,
    ) -> Result<Vec<PlannedMigration>, MigrateError> {
        with_sql_session!(SqlSession::open(self, target.into(), false).await?, |session| {
            engine::plan(&mut session, self.set.migrations(), options).await
        })
    }

    /// Lint every migration (pending or not) without a database, as `up` would for `dialect`:
    /// PostgreSQL's lock-safety rules for [`Dialect::Postgres`] (`server_major` is the version
    /// they judge for); none for [`Dialect::Sqlite`], where every write takes the one database
    /// lock and the rules do not apply (the files are still parsed and their directives checked).
    pub fn lint_all(&self, server_major: u32, dialect: Dialect) -> Result<Vec<PlannedMigration>, MigrateError> {
        self.set
            .migrations()
            .iter()
            .map(|migration| plan_one(migration, &[], server_major, dialect, &self.lint_policy))
            .collect()
    }

    /// Apply pending migrations. Many runners may call this at once: one applies, the others
    /// wait for its lock and then find nothing to do.
    pub async fn up(&self, target: impl Into<crate::Target<'_>>, options: &UpOptions) -> Result<Report, MigrateError> {
        with_sql_session!(
            SqlSession::open(self, target.into(), !options.dry_run).await?,
            |session| { engine::up(&mut session, self.set.migrations(), options).await }
        )
    }

    /// Revert applied migrations newer than `target`, newest first, with each migration's down
    /// SQL from its file. When the file is gone (an older binary rolling back), the down SQL
    /// stored in the ledger is used instead, only if it still matches the checksum stored with
    /// it, and the report's warnings say so. Every down is found and checked before anything
    /// is reverted. A migration that failed before completing a statement (nothing of it is in
    /// the database) has its ledger row removed without running its down.
    pub async fn down(&self, database: impl Into<crate::Target<'_>>, target: i64) -> Result<Report, MigrateError> {
        with_sql_session!(SqlSession::open(self, database.into(), true).await?, |session| {
            engine::down(&mut session, self.set.migrations(), target).await
        })
    }

    /// Accept the current files as applied: realign the ledger's checksums with them (for
    /// migrations edited after they ran), recording `note` with each change. Returns the
    /// versions realigned. Nothing else changes: failed entries stay as they are, and `up`
    /// retries them (a transactional migration from its start, one run statement by statement
    /// from its failed statement).
    pub async fn repair(&self, target: impl Into<crate::Target<'_>>, note: &str) -> Result<Vec<i64>, MigrateError> {
        with_sql_session!(SqlSession::open(self, target.into(), true).await?, |session| {
            engine::repair(&mut session, self.set.migrations(), note).await
        })
    }
}

/// The SQL dialect of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// A migration ready to run.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) statements: Vec<Statement>,
    pub(crate) transactional: bool,
    pub(crate) reason: Option<String>,
}

/// How `migration` runs on `dialect` (for PostgreSQL, on major version `server_major`).
pub(crate) fn prepare(migration: &Migration, dialect: Dialect, server_major: u32) -> Result<Prepared, MigrateError> {
    let Some(sql) = migration.sql() else {
        return Ok(Prepared {
            statements: Vec::new(),
            transactional: true,
            reason: None,
        });
    };
    let mut statements = match dialect {
        Dialect::Postgres => statements::split(sql).map_err(|(line, message)| MigrateError::Source {
            origin: migration.origin.clone(),
            line: Some(line),
            message: format!("cannot parse: {message}"),
        })?,
        // SQLite runs the file as one batch inside its transaction.
        Dialect::Sqlite => vec![Statement {
            text: sql.to_owned(),
            line: 1,
            outside_transaction: None,
            concurrent_index: None,
            tables: Vec::new(),
            added_enum_value: None,
            created_table: None,
        }],
    };
    let mut reason_override = None;
    for index in 0..statements.len() {
        let Some(value) = statements[index].added_enum_value.clone() else {
            continue;
        };
        if server_major < 12 {
            statements[index].outside_transaction = Some("ALTER TYPE ... ADD VALUE (before PostgreSQL 12)");
        } else if let Some(used_at) = statements[index + 1..]
            .iter()
            .find(|s| s.text.contains(value.as_str()))
            .map(|s| s.line)
        {
            // PostgreSQL 12+ adds the value in a transaction, but refuses to use it before the
            // commit: the statement must commit on its own first.
            statements[index].outside_transaction = Some("ALTER TYPE ... ADD VALUE");
            reason_override.get_or_insert(format!(
                "line {used_at} uses the enum value {value} added at line {}, which PostgreSQL allows only after that commits",
                statements[index].line
            ));
        }
    }
    let needs_outside = statements.iter().find(|s| s.outside_transaction.is_some());
    for statement in &statements {
        if statement
            .concurrent_index
            .as_ref()
            .is_some_and(|index| index.name.is_none())
        {
            return Err(MigrateError::UnnamedConcurrentIndex {
                origin: migration.origin.clone(),
                line: statement.line,
            });
        }
    }
    let (transactional, reason) = match (migration.transaction, needs_outside) {
        (TransactionMode::On, Some(statement)) => {
            return Err(MigrateError::NeedsNoTransaction {
                origin: migration.origin.clone(),
                line: statement.line,
                statement: statement.outside_transaction.unwrap_or("this statement"),
            });
        }
        (TransactionMode::Off, _) => (false, Some("`-- cutover:transaction off`".to_owned())),
        (_, Some(_)) if reason_override.is_some() => (false, reason_override),
        (_, Some(statement)) => (
            false,
            Some(format!(
                "line {}: {} cannot run in a transaction",
                statement.line,
                statement.outside_transaction.unwrap_or("a statement")
            )),
        ),
        (_, None) => (true, None),
    };
    Ok(Prepared {
        statements,
        transactional: transactional || migration.backfill.is_some(),
        reason,
    })
}

pub(crate) fn plan_one(
    migration: &Migration,
    ledger: &[LedgerEntry],
    major: u32,
    dialect: Dialect,
    policy: &LintPolicy,
) -> Result<PlannedMigration, MigrateError> {
    plan_prepared(migration, ledger, major, dialect, policy).map(|(planned, _)| planned)
}

/// The plan, and the statements it was made from (which `apply` runs without parsing again).
pub(crate) fn plan_prepared(
    migration: &Migration,
    ledger: &[LedgerEntry],
    major: u32,
    dialect: Dialect,
    policy: &LintPolicy,
) -> Result<(PlannedMigration, Prepared), MigrateError> {
    let prepared = prepare(migration, dialect, major)?;
    let mode = match (&migration.up, &migration.backfill, prepared.transactional) {
        (crate::source::Body::Rust(_), _, _) => ApplyMode::Rust,
        (_, Some(_), _) => ApplyMode::Backfill,
        (_, None, true) => ApplyMode::Transaction,
        (_, None, false) => ApplyMode::PerStatement,
    };
    let resume_at = ledger
        .iter()
        .find(|e| e.version == migration.version && e.state != State::Applied && !prepared.transactional)
        .map_or(0, |e| usize::try_from(e.steps_done).unwrap_or(0));
    let findings = if dialect == Dialect::Postgres {
        lint::lint_split(
            migration,
            &prepared.statements,
            major,
            prepared.transactional && migration.backfill.is_none(),
            policy,
        )
    } else {
        Vec::new()
    };
    let planned = PlannedMigration {
        version: migration.version,
        name: migration.name.clone(),
        phase: migration.phase,
        mode,
        reason: prepared.reason.clone(),
        statements: prepared.statements.len(),
        resume_at,
        findings,
        blocked_by: Vec::new(),
    };
    Ok((planned, prepared))
}

/// The checksum of the first `count` statements, recorded as a migration progresses.
#[cfg(feature = "postgres")]
pub(crate) fn prefix_checksum(statements: &[Statement], count: usize) -> String {
    let text: Vec<&str> = statements.iter().take(count).map(|s| s.text.as_str()).collect();
    crate::checksum(&text.join("\n"))
}

impl Identity for Migration {
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
        self.checksum.clone()
    }
    fn origin(&self) -> &str {
        &self.origin
    }
}

#[cfg(test)]
mod tests {
    use super::{Dialect, prepare};
    use crate::MigrationSet;

    #[test]
    fn adding_an_enum_value_stays_transactional_from_postgres_12_unless_the_file_uses_it() {
        let migration = |sql: &str| {
            MigrationSet::from_files([("m/0001_enum.up.sql".to_owned(), sql.to_owned())])
                .unwrap()
                .migrations()[0]
                .clone()
        };
        let add = migration("ALTER TYPE status ADD VALUE 'archived';\nALTER TABLE t ADD COLUMN c int;");
        assert!(prepare(&add, Dialect::Postgres, 12).unwrap().transactional);
        let old = prepare(&add, Dialect::Postgres, 11).unwrap();
        assert!(!old.transactional);
        assert_eq!(
            old.reason.as_deref(),
            Some("line 1: ALTER TYPE ... ADD VALUE (before PostgreSQL 12) cannot run in a transaction")
        );
        let uses = migration(
            "ALTER TYPE status ADD VALUE IF NOT EXISTS 'archived';\n\nUPDATE t SET s = 'archived' WHERE old;",
        );
        let prepared = prepare(&uses, Dialect::Postgres, 16).unwrap();
        assert!(!prepared.transactional);
        assert_eq!(
            prepared.reason.as_deref(),
            Some(
                "line 3 uses the enum value 'archived' added at line 1, which PostgreSQL allows only after that commits"
            )
        );
    }
}
