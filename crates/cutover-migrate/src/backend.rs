//! One type over the two databases, chosen by the URL's scheme.

use crate::{
    MigrateError, Migration, Migrator,
    ledger::LedgerEntry,
    migrator::{Dialect, Prepared, SqlCheck},
};

pub(crate) enum Backend {
    #[cfg(feature = "postgres")]
    Postgres(Box<crate::postgres::Pg>),
    #[cfg(feature = "sqlite")]
    Sqlite(Box<crate::sqlite::Lite>),
}

impl Backend {
    pub(crate) async fn connect(target: crate::Target<'_>, for_writing: bool) -> Result<Self, MigrateError> {
        #[cfg(not(feature = "postgres"))]
        let _ = for_writing;
        let url = match target {
            crate::Target::Url(url) => url,
            #[cfg(feature = "postgres")]
            crate::Target::Postgres(pool) => {
                let options = (*pool.connect_options()).clone();
                return Ok(Self::Postgres(Box::new(
                    crate::postgres::Pg::connect_with(options, for_writing).await?,
                )));
            }
            #[cfg(feature = "sqlite")]
            crate::Target::Sqlite(pool) => {
                return Ok(Self::Sqlite(Box::new(crate::sqlite::Lite::from_pool(pool).await?)));
            }
        };
        let scheme = url.split_once(':').map(|(scheme, _)| scheme).unwrap_or_default();
        match scheme {
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => Ok(Self::Postgres(Box::new(
                crate::postgres::Pg::connect(url, for_writing).await?,
            ))),
            #[cfg(feature = "sqlite")]
            "sqlite" => Ok(Self::Sqlite(Box::new(
                crate::sqlite::Lite::connect(url, std::time::Duration::from_secs(300)).await?,
            ))),
            _ => Err(MigrateError::UnsupportedUrl(crate::redact_url(url))),
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => Dialect::Postgres,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => Dialect::Sqlite,
        }
    }

    pub(crate) async fn server_major(&mut self) -> Result<u32, MigrateError> {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(pg) => pg.server_major().await,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => Ok(0),
        }
    }

    pub(crate) async fn ensure_ledger(&mut self) -> Result<(), MigrateError> {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(pg) => pg.ensure_ledger().await,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(lite) => lite.ensure_ledger().await,
        }
    }

    pub(crate) async fn ledger(&mut self) -> Result<Vec<LedgerEntry>, MigrateError> {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(pg) => pg.ledger().await,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(lite) => lite.ledger().await,
        }
    }

    pub(crate) async fn lock(&mut self, migrator: &Migrator) -> Result<(), MigrateError> {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(pg) => pg.lock(migrator).await,
            // SQLite's write lock is taken per migration with BEGIN IMMEDIATE.
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => {
                let _ = migrator;
                Ok(())
            }
        }
    }

    pub(crate) async fn unlock(&mut self) {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(pg) => pg.unlock().await,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => {}
        }
    }

    pub(crate) async fn preflight(
        &mut self,
        migrator: &Migrator,
        pending: &[&Migration],
    ) -> Result<Vec<String>, MigrateError> {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(pg) => pg.preflight(migrator, pending).await,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(lite) => {
                let _ = pending;
                lite.preflight(migrator).await
            }
        }
    }

    /// Apply `migration`; `false` when another runner applied it first (SQLite, where the
    /// lock is taken per migration).
    pub(crate) async fn apply(
        &mut self,
        migrator: &Migrator,
        migration: &Migration,
        prepared: &Prepared,
        resume_at: usize,
    ) -> Result<bool, MigrateError> {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(pg) => pg.apply(migrator, migration, prepared, resume_at).await.map(|()| true),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(lite) => {
                let _ = resume_at;
                lite.apply(migrator, migration, prepared).await
            }
        }
    }

    pub(crate) async fn revert(
        &mut self,
        migrator: &Migrator,
        entry: &LedgerEntry,
        down: &str,
    ) -> Result<(), MigrateError> {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(pg) => pg.revert(migrator, entry, down).await,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(lite) => {
                let _ = migrator;
                lite.revert(entry, down).await
            }
        }
    }

    pub(crate) async fn realign(&mut self, version: i64, checksum: &str, note: &str) -> Result<(), MigrateError> {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(pg) => pg.realign(version, checksum, note).await,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(lite) => lite.realign(version, checksum, note).await,
        }
    }

    pub(crate) async fn check(&mut self, check: &SqlCheck) -> Result<bool, MigrateError> {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(pg) => pg.check(check).await,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(lite) => lite.check(check).await,
        }
    }

    pub(crate) async fn table_exists(&mut self, table: &str) -> Result<bool, MigrateError> {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(pg) => pg.table_exists(table).await,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(lite) => lite.table_exists(table).await,
        }
    }

    pub(crate) async fn foreign_rows(&mut self, sql: &str) -> Result<Vec<crate::adopt::ForeignRow>, MigrateError> {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(pg) => pg.foreign_rows(sql).await,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(lite) => lite.foreign_rows(sql).await,
        }
    }

    pub(crate) async fn adopt(
        &mut self,
        migration: &Migration,
        source: &str,
        note: &str,
    ) -> Result<bool, MigrateError> {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(pg) => pg.adopt(migration, source, note).await,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(lite) => lite.adopt(migration, source, note).await,
        }
    }
}
