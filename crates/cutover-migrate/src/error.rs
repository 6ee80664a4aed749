//! Everything that can stop a migration run, each with a message a person can act on.

use std::time::Duration;

use crate::lint::Finding;

/// Why a migration run stopped. Nothing is applied after a validation error (source, checksum,
/// lint); after a statement error the ledger records how far the migration got.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// A migration file is malformed.
    #[error("{origin}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Source {
        /// The file.
        origin: String,
        /// The line, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// Two files claim the same version.
    #[error("version {version} is defined twice: {first} and {second}")]
    DuplicateVersion {
        /// The version.
        version: i64,
        /// One file.
        first: String,
        /// The other.
        second: String,
    },
    /// An applied migration's file changed since it was applied.
    #[error(
        "migration {version} ({name}) changed after it was applied: the database has {applied}, the file has {current}. \
         Restore the file, or run `cutover-migrate repair` if the change is intentional"
    )]
    ChecksumMismatch {
        /// Version.
        version: i64,
        /// Name.
        name: String,
        /// Checksum in the ledger.
        applied: String,
        /// Checksum of the file now.
        current: String,
    },
    /// The database has applied a migration that no source has any more.
    #[error(
        "migration {version} ({name}) is applied in the database but missing from the migrations; \
         an older binary or a deleted file? Restore it (its down SQL or commands are kept in the ledger for `down`)"
    )]
    Missing {
        /// Version.
        version: i64,
        /// Name.
        name: String,
    },
    /// The lint refused lock-heavy statements.
    #[error("the lint refused {} statement(s):\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Lint(Vec<Finding>),
    /// Another runner held the migration lock for too long.
    #[error("another runner held the migration lock for {}; giving up (raise --lock-wait, or look for a stuck runner)", humantime::format_duration(*waited))]
    LockTimeout {
        /// How long it waited.
        waited: Duration,
    },
    /// A migration that must run in one transaction contains a statement that cannot.
    #[error(
        "{origin}:{line}: {statement} cannot run inside a transaction, but the file says `-- cutover:transaction on`; \
         remove that directive (the runner then applies the file one statement at a time)"
    )]
    NeedsNoTransaction {
        /// The file.
        origin: String,
        /// The line.
        line: usize,
        /// The kind of statement.
        statement: &'static str,
    },
    /// `CREATE INDEX CONCURRENTLY` without a name cannot be checked for an INVALID leftover.
    #[error(
        "{origin}:{line}: name the index in `CREATE INDEX CONCURRENTLY`, so a failed build can be detected and rebuilt"
    )]
    UnnamedConcurrentIndex {
        /// The file.
        origin: String,
        /// The line.
        line: usize,
    },
    /// A statement failed.
    #[error("migration {version} ({name}) failed at step {step} ({origin}:{line}): {message}")]
    Statement {
        /// Version.
        version: i64,
        /// Name.
        name: String,
        /// 1-based step (statement or batch).
        step: usize,
        /// The file.
        origin: String,
        /// Line of the statement.
        line: usize,
        /// The database's error.
        message: String,
    },
    /// `down` would have to revert a migration without a down.
    #[error(
        "migration {version} ({name}) is irreversible: it has no down migration. Write `{version:04}_{name}.down.sql` \
         (`.down.json` for MongoDB), or restore from a backup"
    )]
    Irreversible {
        /// Version.
        version: i64,
        /// Name.
        name: String,
    },
    /// The down SQL kept in the ledger cannot be trusted, and there is no down file to use.
    #[error(
        "migration {version} ({name}) has no down file here, and the down SQL stored in the ledger {reason}. \
         Nothing was reverted. Restore `{version:04}_{name}.down.sql` and run `down` again"
    )]
    UnverifiedDown {
        /// Version.
        version: i64,
        /// Name.
        name: String,
        /// Why the stored down SQL is refused.
        reason: &'static str,
    },
    /// A pre-flight check refused to start.
    #[error("pre-flight check failed: {0}")]
    Preflight(String),
    /// A backup or restore failed.
    #[error("backup: {0}")]
    Backup(String),
    /// The server answered that it does not implement an operation a migration needs.
    #[error(
        "migration {version} ({name}) stopped at step {step} ({operation}): the server does not support it: {message}. \
         Nothing after this step ran; the ledger records the failure. Run it against a server that supports it"
    )]
    Unsupported {
        /// Version.
        version: i64,
        /// Name.
        name: String,
        /// 1-based step.
        step: usize,
        /// What the step does.
        operation: String,
        /// The server's answer.
        message: String,
    },
    /// A MongoDB migration step failed.
    #[error("migration {version} ({name}) failed at step {step} ({operation}): {message}")]
    Step {
        /// Version.
        version: i64,
        /// Name.
        name: String,
        /// 1-based step.
        step: usize,
        /// What the step does.
        operation: String,
        /// The server's error.
        message: String,
    },
    /// The migration lease could not be refreshed: another runner may take over, so this one
    /// stopped before doing more.
    #[error(
        "lost the migration lease ({0}); stopped so that two runners never work at once. \
         Run again to resume where it stopped"
    )]
    LeaseLost(String),
    /// An index exists under the same name with a different definition.
    #[error(
        "index `{name}` on `{collection}` already exists as {existing}, but the migration wants {wanted}; \
         drop it or give the new one another name"
    )]
    IndexConflict {
        /// The collection.
        collection: String,
        /// The index name.
        name: String,
        /// Its definition on the server.
        existing: String,
        /// The definition the migration asks for.
        wanted: String,
    },
    /// A MongoDB error outside a migration's steps.
    #[cfg(feature = "mongodb")]
    #[error("{context}: {source}")]
    Mongo {
        /// What was being done.
        context: String,
        /// The error.
        source: mongodb::error::Error,
    },
    /// The database URL is not one this tool speaks.
    #[error("`{0}` is not a database URL this tool supports; use postgres://..., sqlite://... or mongodb://...")]
    UnsupportedUrl(String),
    /// The ledger was written by a newer cutover-migrate than this one; nothing was written.
    #[error(
        "the ledger was written by a newer cutover-migrate (ledger schema {found}; this version knows up to {known}): \
         run the newer cutover-migrate, or upgrade this one; nothing was changed"
    )]
    LedgerTooNew {
        /// The schema found.
        found: i64,
        /// The newest this version knows.
        known: i64,
    },
    /// A pending `contract` migration is not embedded by a live instance, which could still
    /// read what it removes; nothing was applied.
    #[error(
        "refusing to contract while instances that could need the old schema are live:\n  {}\n\
         Nothing was applied. Drain and stop them (a graceful shutdown removes its row; a killed \
         instance's row expires on its own), then run again; or override with --force-contract \
         --reason <why> (recorded in the ledger), and their requests that read what is removed will fail",
        .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
    )]
    ContractBlocked(Vec<crate::instances::BlockedContract>),
    /// `baseline` or `import` found something it cannot adopt; nothing was recorded.
    #[error("cannot adopt the database: {0}")]
    Adoption(String),
    /// A database error outside a migration's statements.
    #[cfg(feature = "sql")]
    #[error("{context}: {source}")]
    Database {
        /// What was being done.
        context: String,
        /// The error.
        source: sqlx::Error,
    },
}

impl MigrateError {
    /// Whether running again later may succeed without anything changing: the database could
    /// not be reached or refused connections for now, or another runner held the lock. What a
    /// start-up retry loop retries; every other error needs a person.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cutover_migrate::MigrateError;
    ///
    /// assert!(MigrateError::LockTimeout { waited: Duration::from_secs(60) }.is_transient());
    /// assert!(!MigrateError::UnsupportedUrl("ftp://x".into()).is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            Self::LockTimeout { .. } => true,
            #[cfg(feature = "sql")]
            Self::Database { source, .. } => is_transient_sqlx(source),
            #[cfg(feature = "mongodb")]
            Self::Mongo { source, .. } => matches!(
                *source.kind,
                mongodb::error::ErrorKind::ServerSelection { .. } | mongodb::error::ErrorKind::Io(_)
            ),
            _ => false,
        }
    }

    /// The exit code a command should end with for this error: 3 when the contract gate
    /// refused (nothing was applied; running again once the old instances are gone succeeds,
    /// so a script or a Job can wait and retry), 1 for anything else.
    ///
    /// ```
    /// use cutover_migrate::MigrateError;
    ///
    /// assert_eq!(MigrateError::ContractBlocked(Vec::new()).exit_code(), 3);
    /// assert_eq!(MigrateError::UnsupportedUrl("ftp://x".into()).exit_code(), 1);
    /// ```
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::ContractBlocked(_) => 3,
            _ => 1,
        }
    }

    #[cfg(feature = "mongodb")]
    pub(crate) fn mongo(context: impl Into<String>) -> impl FnOnce(mongodb::error::Error) -> Self {
        let context = context.into();
        move |source| Self::Mongo { context, source }
    }

    #[cfg(feature = "sql")]
    pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Self {
        let context = context.into();
        move |source| Self::Database { context, source }
    }
}

/// Connection failures, and the server saying "not now": SQLSTATE class 08 (connection
/// exception), 57P03 (cannot connect now: starting up or shutting down), 53300 (too many
/// connections).
#[cfg(feature = "sql")]
fn is_transient_sqlx(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(database) => database
            .code()
            .is_some_and(|code| code.starts_with("08") || code == "57P03" || code == "53300"),
        _ => false,
    }
}
