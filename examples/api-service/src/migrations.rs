//! The database schema, as migrations embedded in the binary, applied at start-up.
//!
//! Every replica runs them when it starts; they race for the migration lock safely (one
//! applies, the others wait and find nothing to do). On PostgreSQL only the `expand` phase runs
//! here, which is safe while the previous version still serves traffic; the backfill and
//! contract phases are run by the deployment (`cutover-migrate up --phase backfill`, then
//! `--phase contract` once every old instance is gone). The embedded SQLite database has no
//! rollout to protect and runs expand and backfill.

use cutover_migrate::{MigrateError, MigrationSet, Migrator, Phase, UpOptions};

/// The PostgreSQL migrations.
pub fn postgres() -> Result<MigrationSet, MigrateError> {
    cutover_migrate::embed_migrations!("migrations/postgres")
}

/// The SQLite migrations.
pub fn sqlite() -> Result<MigrationSet, MigrateError> {
    cutover_migrate::embed_migrations!("migrations/sqlite")
}

/// What start-up applies: the embedded migrations of `phases` to one database. Each
/// [`apply`](Self::apply) is one attempt; the service retries the attempts that failed because
/// the database could not be reached ([`MigrateError::is_transient`]).
#[derive(Debug, Clone)]
pub struct Startup {
    database: Database,
    migrator: Migrator,
    options: UpOptions,
}

/// The pool the service already holds: the migrations run through it (on PostgreSQL, on
/// connections of their own opened with the pool's options).
#[derive(Debug, Clone)]
pub enum Database {
    /// PostgreSQL.
    Postgres(sqlx::PgPool),
    /// The embedded SQLite database.
    Sqlite(sqlx::SqlitePool),
}

impl Startup {
    /// Apply `set`'s migrations of `phases` to `database`.
    pub fn new(database: Database, set: MigrationSet, phases: Vec<Phase>) -> Self {
        Self {
            database,
            migrator: Migrator::new(set),
            options: UpOptions {
                phases: Some(phases),
                ..UpOptions::default()
            },
        }
    }

    /// One attempt.
    pub async fn apply(self) -> Result<(), MigrateError> {
        let report = match &self.database {
            Database::Postgres(pool) => self.migrator.up(pool, &self.options).await?,
            Database::Sqlite(pool) => self.migrator.up(pool, &self.options).await?,
        };
        tracing::info!(%report, "migrations up to date");
        Ok(())
    }
}
