//! SQLite as the engine's [`Backend`]: a [`Lite`] connection and the [`Migrator`]'s settings.
//! The lock is SQLite's own write lock, taken per migration by [`Lite::apply`].

use super::Lite;
use crate::{
    MigrateError, Migration, Migrator, PlannedMigration,
    engine::{Applied, Backend, FoundDown},
    ledger::LedgerEntry,
    migrator::{Dialect, Prepared, prepare},
    outcome::EventSink,
    sql::SqlBackend,
};

pub(crate) struct LiteSession<'m> {
    lite: Lite<'m>,
    migrator: &'m Migrator,
    /// What `plan` parsed, for `apply` to run without parsing again.
    prepared: std::collections::HashMap<i64, Prepared>,
}

impl<'m> LiteSession<'m> {
    pub(crate) fn new(lite: Lite<'m>, migrator: &'m Migrator) -> Self {
        Self {
            lite,
            migrator,
            prepared: std::collections::HashMap::new(),
        }
    }
}

impl Backend for LiteSession<'_> {
    type Migration = Migration;
    type Down = String;

    fn events(&self) -> Option<&EventSink> {
        self.migrator.events.as_ref()
    }

    async fn ledger(&mut self) -> Result<Vec<LedgerEntry>, MigrateError> {
        self.lite.ledger().await
    }

    async fn ensure_ledger(&mut self) -> Result<(), MigrateError> {
        self.lite.ensure_ledger().await
    }

    /// SQLite's write lock is taken per migration with `BEGIN IMMEDIATE`.
    async fn lock(&mut self) -> Result<(), MigrateError> {
        Ok(())
    }

    async fn unlock(&mut self) {}

    async fn plan(&mut self, migration: &Migration, ledger: &[LedgerEntry]) -> Result<PlannedMigration, MigrateError> {
        let (planned, prepared) = crate::sql::plan(self.migrator, migration, ledger, 0, Dialect::Sqlite)?;
        self.prepared.insert(migration.version, prepared);
        Ok(planned)
    }

    /// A SQLite file runs in one transaction (or whole, for the few statements that cannot):
    /// it never stops part-way with steps to compare.
    fn ran_checksum(&self, _migration: &Migration, _steps: usize) -> Option<String> {
        None
    }

    async fn preflight(&mut self, _pending: &[&Migration]) -> Result<Vec<String>, MigrateError> {
        self.lite.preflight(self.migrator).await
    }

    async fn apply(&mut self, migration: &Migration, _plan: &PlannedMigration) -> Result<Applied, MigrateError> {
        let prepared = match self.prepared.remove(&migration.version) {
            Some(prepared) => prepared,
            None => prepare(migration, Dialect::Sqlite, 0)?,
        };
        let applied = self.lite.apply(self.migrator, migration, &prepared).await?;
        Ok(if applied { Applied::Here } else { Applied::ByAnother })
    }

    async fn validations(&mut self) -> Result<(), MigrateError> {
        let migrator = self.migrator;
        crate::sql::validations(self, &migrator.validations).await
    }

    async fn down_of(
        &mut self,
        entry: &LedgerEntry,
        migration: Option<&Migration>,
    ) -> Result<FoundDown<String>, MigrateError> {
        crate::sql::down_of(entry, migration)
    }

    async fn revert(&mut self, entry: &LedgerEntry, down: &String) -> Result<(), MigrateError> {
        self.lite.revert(entry, down).await
    }

    async fn forget(&mut self, version: i64) -> Result<(), MigrateError> {
        self.lite.forget(version).await
    }

    async fn instances(&mut self) -> Result<Vec<crate::instances::Instance>, MigrateError> {
        self.lite.instances().await
    }

    async fn record_forced(&mut self, version: i64, note: &str) -> Result<(), MigrateError> {
        self.lite.record_forced(version, note).await
    }

    async fn realign(&mut self, version: i64, checksum: &str, note: &str) -> Result<(), MigrateError> {
        self.lite.realign(version, checksum, note).await
    }
}

impl SqlBackend for LiteSession<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn check(&mut self, check: &crate::SqlCheck) -> Result<bool, MigrateError> {
        self.lite.check(check).await
    }

    async fn table_exists(&mut self, table: &str) -> Result<bool, MigrateError> {
        self.lite.table_exists(table).await
    }

    async fn foreign_rows(&mut self, sql: &str) -> Result<Vec<crate::adopt::ForeignRow>, MigrateError> {
        self.lite.foreign_rows(sql).await
    }

    async fn adopt(&mut self, migration: &Migration, source: &str, note: &str) -> Result<bool, MigrateError> {
        self.lite.adopt(migration, source, note).await
    }
}
