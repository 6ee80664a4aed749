//! The SQL backends' common ground: opening a session for a [`Target`](crate::Target), the
//! dispatch from [`Migrator`]'s methods to the engine, and what PostgreSQL and SQLite share
//! (planning a file, its down, the adoption hooks).
//!
//! A new SQL backend is a module with a session type implementing [`SqlBackend`] (and so the
//! engine's [`Backend`]), a variant here, one in [`Target`](crate::Target) for its pool, and a
//! feature.

use std::future::Future;

use crate::{
    MigrateError, Migration, Migrator, PlannedMigration,
    engine::{Backend, FoundDown},
    ledger::LedgerEntry,
    migrator::{Dialect, Prepared, plan_prepared},
};

/// What adoption (`baseline`, `import`) needs beyond the engine's backend.
pub(crate) trait SqlBackend: Backend<Migration = Migration, Down = String> {
    fn dialect(&self) -> Dialect;

    /// Run a check query (one boolean).
    fn check(&mut self, check: &crate::SqlCheck) -> impl Future<Output = Result<bool, MigrateError>> + Send;

    /// Whether a table of that name exists.
    fn table_exists(&mut self, table: &str) -> impl Future<Output = Result<bool, MigrateError>> + Send;

    /// Another tool's ledger rows, read by `sql`.
    fn foreign_rows(
        &mut self,
        sql: &str,
    ) -> impl Future<Output = Result<Vec<crate::adopt::ForeignRow>, MigrateError>> + Send;

    /// Record `migration` as applied without running it; `false` when a row was there already.
    fn adopt(
        &mut self,
        migration: &Migration,
        source: &str,
        note: &str,
    ) -> impl Future<Output = Result<bool, MigrateError>> + Send;
}

/// An open session on one of the SQL databases.
pub(crate) enum SqlSession<'m> {
    #[cfg(feature = "postgres")]
    Postgres(crate::postgres::PgSession<'m>),
    #[cfg(feature = "sqlite")]
    Sqlite(crate::sqlite::LiteSession<'m>),
}

/// Run `$body` with `$session` bound to the open backend, whichever it is: the engine is
/// generic, and each backend gets its own monomorphized copy.
macro_rules! with_sql_session {
    ($open:expr, |$session:ident| $body:expr) => {
        match $open {
            #[cfg(feature = "postgres")]
            $crate::sql::SqlSession::Postgres(mut $session) => $body,
            #[cfg(feature = "sqlite")]
            $crate::sql::SqlSession::Sqlite(mut $session) => $body,
        }
    };
}
pub(crate) use with_sql_session;

impl<'m> SqlSession<'m> {
    /// Connect to `target` for `migrator`; `for_writing` opens what writing needs (PostgreSQL's
    /// lock connection).
    pub(crate) async fn open(
        migrator: &'m Migrator,
        target: crate::Target<'m>,
        for_writing: bool,
    ) -> Result<Self, MigrateError> {
        #[cfg(not(feature = "postgres"))]
        let _ = for_writing;
        let url = match target {
            crate::Target::Url(url) => url,
            #[cfg(feature = "postgres")]
            crate::Target::Postgres(pool) => {
                let options = (*pool.connect_options()).clone();
                let pg = crate::postgres::Pg::connect_with(options, for_writing).await?;
                return Ok(Self::Postgres(
                    crate::postgres::PgSession::new(pg, migrator, None).await?,
                ));
            }
            #[cfg(feature = "postgres")]
            crate::Target::PostgresConnection(connection) => {
                let pg = crate::postgres::Pg::borrow(connection).await?;
                return Ok(Self::Postgres(
                    crate::postgres::PgSession::new(pg, migrator, None).await?,
                ));
            }
            #[cfg(feature = "sqlite")]
            crate::Target::SqliteConnection(connection) => {
                let lite = crate::sqlite::Lite::borrow(connection)?;
                return Ok(Self::Sqlite(crate::sqlite::LiteSession::new(lite, migrator)));
            }
            #[cfg(feature = "sqlite")]
            crate::Target::Sqlite(pool) => {
                let lite = crate::sqlite::Lite::from_pool(pool).await?;
                return Ok(Self::Sqlite(crate::sqlite::LiteSession::new(lite, migrator)));
            }
        };
        let scheme = url.split_once(':').map(|(scheme, _)| scheme).unwrap_or_default();
        match scheme {
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => {
                let pg = crate::postgres::Pg::connect(url, for_writing).await?;
                Ok(Self::Postgres(
                    crate::postgres::PgSession::new(pg, migrator, Some(url.to_owned())).await?,
                ))
            }
            #[cfg(feature = "sqlite")]
            "sqlite" => {
                let lite = crate::sqlite::Lite::connect(url, migrator.lock_wait).await?;
                Ok(Self::Sqlite(crate::sqlite::LiteSession::new(lite, migrator)))
            }
            _ => Err(MigrateError::UnsupportedUrl(crate::redact_url(url))),
        }
    }
}

/// How a SQL migration would run on `dialect` (PostgreSQL major `major`), linted by `migrator`'s
/// policy.
pub(crate) fn plan(
    migrator: &Migrator,
    migration: &Migration,
    ledger: &[LedgerEntry],
    major: u32,
    dialect: Dialect,
) -> Result<(PlannedMigration, Prepared), MigrateError> {
    plan_prepared(migration, ledger, major, dialect, &migrator.lint_policy)
}

/// The checksum of the first `steps` statements of `migration` (PostgreSQL's split; SQLite
/// files run whole and never stop part-way).
#[cfg(feature = "postgres")]
pub(crate) fn ran_checksum(migration: &Migration, steps: usize) -> Option<String> {
    let statements = crate::statements::split(migration.sql()?).ok()?;
    Some(crate::migrator::prefix_checksum(&statements, steps))
}

/// The down SQL for `entry`: the file's, else the ledger's copy if it still matches the
/// checksum kept with it (with a warning saying so).
pub(crate) fn down_of(entry: &LedgerEntry, migration: Option<&Migration>) -> Result<FoundDown<String>, MigrateError> {
    if let Some(down) = migration.and_then(|m| m.down.clone()) {
        return Ok(FoundDown { down, warning: None });
    }
    let (version, name) = (entry.version, entry.name.clone());
    let Some(stored) = &entry.down_sql else {
        return Err(MigrateError::Irreversible { version, name });
    };
    match &entry.down_checksum {
        Some(expected) if *expected == crate::checksum(stored) => Ok(FoundDown {
            down: stored.clone(),
            warning: Some(format!(
                "migration {version} ({name}): no down file here; reverted with the down SQL stored in the ledger (checksum verified)"
            )),
        }),
        Some(_) => Err(MigrateError::UnverifiedDown {
            version,
            name,
            reason: "does not match the checksum stored with it: it was changed after it was stored",
        }),
        None => Err(MigrateError::UnverifiedDown {
            version,
            name,
            reason: "was stored without a checksum (by an older cutover-migrate), so it cannot be verified",
        }),
    }
}

/// Every check of `checks` must return `true` after a run.
pub(crate) async fn validations<B: SqlBackend>(
    backend: &mut B,
    checks: &[crate::SqlCheck],
) -> Result<(), MigrateError> {
    for check in checks {
        if !backend.check(check).await? {
            return Err(MigrateError::Preflight(format!(
                "post-migration validation `{}` returned false",
                check.name
            )));
        }
    }
    Ok(())
}
