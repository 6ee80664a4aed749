//! The database schema, as migrations embedded in the binary, applied at start-up.
//!
//! Every replica runs them when it starts; they race for the migration lock safely (one
//! applies, the others wait and find nothing to do). On PostgreSQL only the `expand` phase runs
//! here, which is safe while the previous version still serves traffic; the backfill and
//! contract phases are run by the deployment (`cutover-migrate up --phase backfill`, then
//! `--phase contract` once every old instance is gone). The embedded SQLite database has no
//! rollout to protect and runs expand and backfill.

use std::time::Duration;

use cutover_migrate::{MigrateError, MigrationSet, Migrator, Phase, UpOptions};

/// The PostgreSQL migrations.
pub fn postgres() -> Result<MigrationSet, MigrateError> {
    cutover_migrate::embed_migrations!("migrations/postgres")
}

/// The SQLite migrations.
pub fn sqlite() -> Result<MigrationSet, MigrateError> {
    cutover_migrate::embed_migrations!("migrations/sqlite")
}

/// Apply what start-up should apply to `url`, retrying while the database cannot be reached:
/// the service keeps answering probes (not ready) meanwhile, and recovers when it is back.
/// Errors that waiting cannot fix (a broken migration, a lint refusal) end the start-up.
pub async fn apply_on_startup(url: String, set: MigrationSet, phases: Vec<Phase>) -> Result<(), MigrateError> {
    let migrator = Migrator::new(set);
    let options = UpOptions {
        phases: Some(phases),
        ..UpOptions::default()
    };
    let mut delay = Duration::from_millis(500);
    loop {
        match migrator.up(&url, &options).await {
            Ok(report) => {
                tracing::info!(applied = ?report.applied, by_others = ?report.applied_by_others, "migrations up to date");
                return Ok(());
            }
            Err(error @ (MigrateError::Database { .. } | MigrateError::LockTimeout { .. })) => {
                tracing::warn!(%error, retry_in = ?delay, "cannot migrate yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(error) => return Err(error),
        }
    }
}
