//! PostgreSQL as the engine's [`Backend`]: a [`Pg`] connection pair and the [`Migrator`]'s
//! settings.

use std::path::PathBuf;

use super::Pg;
use crate::{
    MigrateError, Migration, Migrator, PlannedMigration, Report,
    engine::{Applied, Backend, FoundDown},
    ledger::LedgerEntry,
    migrator::{Dialect, Prepared, prepare},
    outcome::EventSink,
    sql::SqlBackend,
};

pub(crate) struct PgSession<'m> {
    pg: Pg<'m>,
    migrator: &'m Migrator,
    /// What `plan` parsed, for `apply` to run without parsing again.
    prepared: std::collections::HashMap<i64, Prepared>,
    major: u32,
    /// The URL, when connected through one (`pg_dump` needs it for backups).
    url: Option<String>,
}

impl<'m> PgSession<'m> {
    pub(crate) async fn new(mut pg: Pg<'m>, migrator: &'m Migrator, url: Option<String>) -> Result<Self, MigrateError> {
        let major = pg.server_major().await?;
        Ok(Self {
            pg,
            migrator,
            prepared: std::collections::HashMap::new(),
            major,
            url,
        })
    }
}

impl Backend for PgSession<'_> {
    type Migration = Migration;
    type Down = String;

    fn events(&self) -> Option<&EventSink> {
        self.migrator.events.as_ref()
    }

    async fn ledger(&mut self) -> Result<Vec<LedgerEntry>, MigrateError> {
        self.pg.ledger().await
    }

    async fn ensure_ledger(&mut self) -> Result<(), MigrateError> {
        self.pg.ensure_ledger().await
    }

    async fn lock(&mut self) -> Result<(), MigrateError> {
        self.pg.lock(self.migrator).await
    }

    async fn unlock(&mut self) {
        self.pg.unlock().await;
    }

    async fn plan(&mut self, migration: &Migration, ledger: &[LedgerEntry]) -> Result<PlannedMigration, MigrateError> {
        let (planned, prepared) = crate::sql::plan(self.migrator, migration, ledger, self.major, Dialect::Postgres)?;
        self.prepared.insert(migration.version, prepared);
        Ok(planned)
    }

    fn ran_checksum(&self, migration: &Migration, steps: usize) -> Option<String> {
        crate::sql::ran_checksum(migration, steps)
    }

    async fn preflight(&mut self, pending: &[&Migration]) -> Result<Vec<String>, MigrateError> {
        self.pg.preflight(self.migrator, pending).await
    }

    async fn backup(&mut self, first: i64) -> Result<Option<PathBuf>, MigrateError> {
        let Some(policy) = &self.migrator.backup else {
            return Ok(None);
        };
        let url = self.url.as_deref().ok_or_else(|| {
            MigrateError::Backup(
                "backups run pg_dump, which needs the database URL: migrate through the URL to take one".to_owned(),
            )
        })?;
        crate::backup::backup(url, policy, first).await.map(Some)
    }

    async fn apply(&mut self, migration: &Migration, plan: &PlannedMigration) -> Result<Applied, MigrateError> {
        let prepared = match self.prepared.remove(&migration.version) {
            Some(prepared) => prepared,
            None => prepare(migration, Dialect::Postgres, self.major)?,
        };
        self.pg
            .apply(self.migrator, migration, &prepared, plan.resume_at)
            .await
            .map(|()| Applied::Here)
    }

    async fn after_failure(&mut self, report: &Report) -> Result<(), MigrateError> {
        if let (Some(policy), Some(dump), Some(url)) = (&self.migrator.backup, &report.backup, &self.url)
            && policy.restore_on_failure
        {
            tracing::warn!(dump = %dump.display(), "restoring the backup after a failed migration (writes since the dump are lost)");
            crate::backup::restore(url, dump).await?;
        }
        Ok(())
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
        self.pg.revert(self.migrator, entry, down).await
    }

    async fn forget(&mut self, version: i64) -> Result<(), MigrateError> {
        self.pg.forget(version).await
    }

    async fn instances(&mut self) -> Result<Vec<crate::instances::Instance>, MigrateError> {
        crate::instances::postgres::live(self.pg.work()).await
    }

    async fn record_forced(&mut self, version: i64, note: &str) -> Result<(), MigrateError> {
        self.pg.record_forced(version, note).await
    }

    async fn realign(&mut self, version: i64, checksum: &str, note: &str) -> Result<(), MigrateError> {
        self.pg.realign(version, checksum, note).await
    }
}

impl SqlBackend for PgSession<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn check(&mut self, check: &crate::SqlCheck) -> Result<bool, MigrateError> {
        self.pg.check(check).await
    }

    async fn table_exists(&mut self, table: &str) -> Result<bool, MigrateError> {
        self.pg.table_exists(table).await
    }

    async fn foreign_rows(&mut self, sql: &str) -> Result<Vec<crate::adopt::ForeignRow>, MigrateError> {
        self.pg.foreign_rows(sql).await
    }

    async fn adopt(&mut self, migration: &Migration, source: &str, note: &str) -> Result<bool, MigrateError> {
        self.pg.adopt(migration, source, note).await
    }
}
