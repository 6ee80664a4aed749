//! The SQLite backend: the same ledger and sources; the lock is SQLite's own write lock, taken
//! with `BEGIN IMMEDIATE` around each migration (so concurrent runners queue on the database
//! file and find the work done when their turn comes).

use std::{
    str::FromStr,
    time::{Duration, Instant},
};

use sqlx::{AssertSqlSafe, Connection, Executor, SqliteConnection, sqlite::SqliteConnectOptions};

use crate::{
    Event, MigrateError, Migration, Migrator,
    ledger::{Checkpoint, LEDGER_SCHEMA, LEDGER_SCHEMA_TABLE, LEDGER_TABLE, LedgerEntry, check_schema, runner_id},
    migrator::{Prepared, SqlCheck},
    source::Body,
};

mod session;
pub(crate) use session::LiteSession;

pub(crate) struct Lite<'c> {
    connection: LiteConnection<'c>,
}

/// A connection of the runner's own, one borrowed from the application's pool (for the run; it
/// goes back to the pool when the run ends, with no session setting changed), or one the
/// application lent.
enum LiteConnection<'c> {
    Own(SqliteConnection),
    Pooled(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Borrowed(&'c mut SqliteConnection),
}

impl std::ops::Deref for LiteConnection<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        match self {
            Self::Own(connection) => connection,
            Self::Pooled(connection) => connection,
            Self::Borrowed(connection) => connection,
        }
    }
}

impl std::ops::DerefMut for LiteConnection<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match self {
            Self::Own(connection) => connection,
            Self::Pooled(connection) => connection,
            Self::Borrowed(connection) => connection,
        }
    }
}

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";

mod statements;

/// The database's message for `error`.
fn message(error: &sqlx::Error) -> String {
    error
        .as_database_error()
        .map_or_else(|| error.to_string(), |e| e.message().to_owned())
}

/// Run `sql` one statement at a time on `connection`, so a failure names its statement's line:
/// `failed(step, line, message)` builds the error.
async fn run_script(
    connection: &mut SqliteConnection,
    sql: &str,
    failed: impl Fn(usize, usize, String) -> MigrateError,
) -> Result<(), MigrateError> {
    for (index, statement) in statements::split(sql).into_iter().enumerate() {
        connection
            .execute(sqlx::raw_sql(AssertSqlSafe(statement.text.to_owned())))
            .await
            .map_err(|error| failed(index + 1, statement.line, message(&error)))?;
    }
    Ok(())
}

/// A failure of `migration`'s statement `step`, at `line` of its file.
fn statement_failed(migration: &Migration) -> impl Fn(usize, usize, String) -> MigrateError + '_ {
    move |step, line, message| MigrateError::Statement {
        version: migration.version,
        name: migration.name.clone(),
        step,
        origin: migration.origin.clone(),
        line,
        message,
    }
}

impl<'c> Lite<'c> {
    pub(crate) async fn connect(url: &str, lock_wait: Duration) -> Result<Self, MigrateError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| MigrateError::UnsupportedUrl(format!("{url}: {e}")))?
            .create_if_missing(true)
            .busy_timeout(lock_wait);
        let connection = SqliteConnection::connect_with(&options)
            .await
            .map_err(MigrateError::db(format!("cannot open {url}")))?;
        Ok(Self {
            connection: LiteConnection::Own(connection),
        })
    }

    /// A connection borrowed from `pool` for the run.
    pub(crate) async fn from_pool(pool: &sqlx::SqlitePool) -> Result<Self, MigrateError> {
        let connection = pool
            .acquire()
            .await
            .map_err(MigrateError::db("cannot take a connection from the SQLite pool"))?;
        Ok(Self {
            connection: LiteConnection::Pooled(connection),
        })
    }

    /// Run on the application's connection (refused inside a transaction: each migration takes
    /// the write lock with a transaction of its own).
    pub(crate) fn borrow(connection: &'c mut SqliteConnection) -> Result<Self, MigrateError> {
        if connection.is_in_transaction() {
            return Err(MigrateError::Preflight(
                "the connection is inside a transaction: migrations commit their own, so lend one outside any transaction"
                    .to_owned(),
            ));
        }
        Ok(Self {
            connection: LiteConnection::Borrowed(connection),
        })
    }

    pub(crate) async fn ensure_ledger(&mut self) -> Result<(), MigrateError> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
                version INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                phase TEXT NOT NULL,
                checksum TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('running', 'applied', 'failed')),
                steps_done INTEGER NOT NULL DEFAULT 0,
                steps_total INTEGER NOT NULL DEFAULT 0,
                done_checksum TEXT,
                checkpoint TEXT,
                failed_step INTEGER,
                error TEXT,
                installed_by TEXT NOT NULL,
                started_at TEXT NOT NULL DEFAULT ({NOW}),
                finished_at TEXT,
                duration_ms INTEGER,
                down_sql TEXT,
                down_checksum TEXT,
                repaired_at TEXT,
                repair_note TEXT,
                adopted_from TEXT,
                forced_contract TEXT
            )"
        );
        self.connection
            .execute(AssertSqlSafe(sql))
            .await
            .map_err(MigrateError::db("cannot create the ledger table"))?;
        self.connection
            .execute(AssertSqlSafe(format!(
                "CREATE TABLE IF NOT EXISTS {LEDGER_SCHEMA_TABLE} (schema INTEGER NOT NULL)"
            )))
            .await
            .map_err(MigrateError::db("cannot create the ledger's schema table"))?;
        let found: Option<i64> =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT max(schema) FROM {LEDGER_SCHEMA_TABLE}")))
                .fetch_one(&mut *self.connection)
                .await
                .map_err(MigrateError::db("cannot read the ledger's schema"))?;
        for upgrade in check_schema(found)? {
            if !self.has_ledger_column(upgrade.column).await? {
                self.connection
                    .execute(AssertSqlSafe(format!(
                        "ALTER TABLE {LEDGER_TABLE} ADD COLUMN {} TEXT",
                        upgrade.column
                    )))
                    .await
                    .map_err(MigrateError::db("cannot upgrade the ledger table"))?;
            }
        }
        if found != Some(LEDGER_SCHEMA) {
            self.connection
                .execute(AssertSqlSafe(format!(
                    "DELETE FROM {LEDGER_SCHEMA_TABLE}; INSERT INTO {LEDGER_SCHEMA_TABLE} VALUES ({LEDGER_SCHEMA})"
                )))
                .await
                .map_err(MigrateError::db("cannot record the ledger's schema"))?;
        }
        Ok(())
    }

    async fn has_ledger_column(&mut self, column: &str) -> Result<bool, MigrateError> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) > 0 FROM pragma_table_info('{LEDGER_TABLE}') WHERE name = ?1"
        )))
        .bind(column)
        .fetch_one(&mut *self.connection)
        .await
        .map_err(MigrateError::db("cannot read the ledger table"))
    }

    /// Whether `table` exists.
    pub(crate) async fn table_exists(&mut self, table: &str) -> Result<bool, MigrateError> {
        sqlx::query_scalar("SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1")
            .bind(table)
            .fetch_one(&mut *self.connection)
            .await
            .map_err(MigrateError::db(format!("cannot look for the table {table}")))
    }

    /// Another tool's ledger rows.
    pub(crate) async fn foreign_rows(&mut self, sql: &str) -> Result<Vec<crate::adopt::ForeignRow>, MigrateError> {
        sqlx::query_as(AssertSqlSafe(sql.to_owned()))
            .fetch_all(&mut *self.connection)
            .await
            .map_err(MigrateError::db("cannot read the other tool's ledger"))
    }

    /// Record `migration` as applied without running it; `false` when the ledger has it already.
    pub(crate) async fn adopt(
        &mut self,
        migration: &Migration,
        source: &str,
        note: &str,
    ) -> Result<bool, MigrateError> {
        let inserted = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {LEDGER_TABLE} (version, name, phase, checksum, state, installed_by, finished_at, duration_ms,
                                         down_sql, down_checksum, adopted_from, repair_note)
             VALUES (?1, ?2, ?3, ?4, 'applied', ?5, {NOW}, 0, ?6, ?7, ?8, ?9)
             ON CONFLICT (version) DO NOTHING"
        )))
        .bind(migration.version)
        .bind(&migration.name)
        .bind(migration.phase.as_str())
        .bind(&migration.checksum)
        .bind(runner_id())
        .bind(&migration.down)
        .bind(crate::ledger::down_checksum(migration))
        .bind(source)
        .bind(note)
        .execute(&mut *self.connection)
        .await
        .map_err(MigrateError::db("cannot record an adopted migration"))?;
        Ok(inserted.rows_affected() == 1)
    }

    pub(crate) async fn ledger(&mut self) -> Result<Vec<LedgerEntry>, MigrateError> {
        let exists: Option<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1")
                .bind(LEDGER_TABLE)
                .fetch_optional(&mut *self.connection)
                .await
                .map_err(MigrateError::db("cannot read the ledger"))?;
        if exists.is_none() {
            return Ok(Vec::new());
        }
        // An older ledger is read as it is (what later schemas added reads as NULL); `up`
        // upgrades it.
        let columns: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT name FROM pragma_table_info('{LEDGER_TABLE}')"
        )))
        .fetch_all(&mut *self.connection)
        .await
        .map_err(MigrateError::db("cannot read the ledger table"))?;
        let added = crate::ledger::added_columns(&columns, "NULL");
        sqlx::query_as::<_, LedgerEntry>(AssertSqlSafe(format!(
            "SELECT version, name, phase, checksum, state, steps_done, steps_total, done_checksum, checkpoint, failed_step, error,
                    installed_by, started_at, finished_at, duration_ms, down_sql, repaired_at, repair_note, {added}
             FROM {LEDGER_TABLE} ORDER BY version"
        )))
        .fetch_all(&mut *self.connection)
        .await
        .map_err(MigrateError::db("cannot read the ledger"))
    }

    pub(crate) async fn check(&mut self, check: &SqlCheck) -> Result<bool, MigrateError> {
        sqlx::query_scalar::<_, bool>(AssertSqlSafe(check.sql.clone()))
            .fetch_one(&mut *self.connection)
            .await
            .map_err(MigrateError::db(format!("check `{}`", check.name)))
    }

    pub(crate) async fn preflight(&mut self, migrator: &Migrator) -> Result<Vec<String>, MigrateError> {
        if let Some(policy) = &migrator.backup {
            return Err(MigrateError::Backup(format!(
                "backups ({}) use pg_dump and are for PostgreSQL; copy the SQLite file instead",
                policy.dir.display()
            )));
        }
        for check in &migrator.integrity {
            if !self.check(check).await? {
                return Err(MigrateError::Preflight(format!(
                    "integrity check `{}` returned false",
                    check.name
                )));
            }
        }
        Ok(Vec::new())
    }

    async fn applied_already(&mut self, version: i64) -> Result<bool, MigrateError> {
        let state: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT state FROM {LEDGER_TABLE} WHERE version = ?1"
        )))
        .bind(version)
        .fetch_optional(&mut *self.connection)
        .await
        .map_err(MigrateError::db("cannot read the ledger"))?;
        Ok(state.as_deref() == Some("applied"))
    }

    async fn record(
        &mut self,
        migration: &Migration,
        state: &str,
        steps: i64,
        started: Instant,
        error: Option<&str>,
    ) -> Result<(), MigrateError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {LEDGER_TABLE} (version, name, phase, checksum, state, steps_done, steps_total, installed_by, finished_at, duration_ms, down_sql, error, failed_step, down_checksum)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, {NOW}, ?8, ?9, ?10, CASE WHEN ?10 IS NULL THEN NULL ELSE ?6 + 1 END, ?11)
             ON CONFLICT (version) DO UPDATE SET state = excluded.state, steps_done = excluded.steps_done, finished_at = excluded.finished_at,
                 duration_ms = excluded.duration_ms, installed_by = excluded.installed_by, down_sql = excluded.down_sql,
                 down_checksum = excluded.down_checksum, error = excluded.error, failed_step = excluded.failed_step"
        )))
        .bind(migration.version)
        .bind(&migration.name)
        .bind(migration.phase.as_str())
        .bind(&migration.checksum)
        .bind(state)
        .bind(steps)
        .bind(runner_id())
        .bind(i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX))
        .bind(&migration.down)
        .bind(error)
        .bind(crate::ledger::down_checksum(migration))
        .execute(&mut *self.connection)
        .await
        .map_err(MigrateError::db("cannot record the migration"))?;
        Ok(())
    }

    /// Apply `migration`; `false` when another runner applied it first.
    pub(crate) async fn apply(
        &mut self,
        migrator: &Migrator,
        migration: &Migration,
        prepared: &Prepared,
    ) -> Result<bool, MigrateError> {
        migrator.emit(Event::Started {
            version: migration.version,
            name: migration.name.clone(),
            steps: prepared.statements.len(),
            resumed_at: 0,
        });
        let started = Instant::now();
        if let Some(spec) = &migration.backfill {
            return self.backfill(migrator, migration, spec, started).await;
        }
        if !prepared.transactional {
            // SQLite's few non-transactional statements (VACUUM) run as written.
            if self.applied_already(migration.version).await? {
                return Ok(false);
            }
            let sql = migration.sql().unwrap_or_default();
            if let Err(failure) = run_script(&mut self.connection, sql, statement_failed(migration)).await {
                self.record(migration, "failed", 0, started, Some(&failure.to_string()))
                    .await?;
                return Err(failure);
            }
            self.record(migration, "applied", 1, started, None).await?;
            return Ok(true);
        }
        // The write lock for the whole migration: concurrent runners wait here, then see it done.
        self.connection
            .execute("BEGIN IMMEDIATE")
            .await
            .map_err(MigrateError::db("cannot take the write lock"))?;
        let outcome = async {
            if self.applied_already(migration.version).await? {
                return Ok(false);
            }
            match &migration.up {
                Body::Sql(sql) => {
                    run_script(&mut self.connection, sql, statement_failed(migration)).await?;
                }
                Body::Rust(code) => {
                    let mut connection = crate::Connection::Sqlite(&mut self.connection);
                    code.up(&mut connection).await.map_err(|e| MigrateError::Statement {
                        version: migration.version,
                        name: migration.name.clone(),
                        step: 1,
                        origin: migration.origin.clone(),
                        line: 0,
                        message: e.to_string(),
                    })?;
                }
            }
            self.record(migration, "applied", 1, started, None).await?;
            Ok::<bool, MigrateError>(true)
        }
        .await;
        match outcome {
            Ok(applied) => {
                self.connection
                    .execute("COMMIT")
                    .await
                    .map_err(MigrateError::db("cannot commit"))?;
                Ok(applied)
            }
            Err(error) => {
                let _ = self.connection.execute("ROLLBACK").await;
                self.record(migration, "failed", 0, started, Some(&error.to_string()))
                    .await?;
                Err(error)
            }
        }
    }

    /// Each batch runs under SQLite's write lock (`BEGIN IMMEDIATE`) and reads the committed
    /// checkpoint first, so concurrent runners share the batches without repeating one.
    async fn backfill(
        &mut self,
        migrator: &Migrator,
        migration: &Migration,
        spec: &crate::BackfillSpec,
        started: Instant,
    ) -> Result<bool, MigrateError> {
        let statement = migration.sql().unwrap_or_default().trim().to_owned();
        let (table, key) = (format!("\"{}\"", spec.table), format!("\"{}\"", spec.key));
        let next_key = format!(
            "SELECT {key} FROM {table} WHERE {key} > ?1 AND {key} <= ?2 ORDER BY {key} LIMIT 1 OFFSET {}",
            spec.batch_size.saturating_sub(1)
        );
        loop {
            self.connection
                .execute("BEGIN IMMEDIATE")
                .await
                .map_err(MigrateError::db("cannot take the write lock"))?;
            let step = self
                .backfill_batch(migration, &table, &key, &next_key, &statement)
                .await;
            match step {
                Ok(Some(checkpoint)) => {
                    self.connection
                        .execute("COMMIT")
                        .await
                        .map_err(MigrateError::db("cannot commit a batch"))?;
                    migrator.emit(Event::Batch {
                        version: migration.version,
                        last: checkpoint.last,
                        upper: checkpoint.upper,
                        rows: checkpoint.rows,
                    });
                    if checkpoint.last >= checkpoint.upper {
                        break;
                    }
                    if !spec.pause.is_zero() {
                        tokio::time::sleep(spec.pause).await;
                    }
                }
                Ok(None) => {
                    // Nothing left: another runner finished the range (or marked it applied).
                    let _ = self.connection.execute("ROLLBACK").await;
                    break;
                }
                Err(error) => {
                    let _ = self.connection.execute("ROLLBACK").await;
                    return Err(error);
                }
            }
        }
        self.connection
            .execute("BEGIN IMMEDIATE")
            .await
            .map_err(MigrateError::db("cannot take the write lock"))?;
        let first = !self.applied_already(migration.version).await?;
        if first {
            let batches: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT steps_done FROM {LEDGER_TABLE} WHERE version = ?1"
            )))
            .bind(migration.version)
            .fetch_optional(&mut *self.connection)
            .await
            .map_err(MigrateError::db("cannot read the ledger"))?;
            self.record(migration, "applied", batches.unwrap_or(0), started, None)
                .await?;
        }
        self.connection
            .execute("COMMIT")
            .await
            .map_err(MigrateError::db("cannot commit"))?;
        Ok(first)
    }

    /// One batch, inside the caller's `BEGIN IMMEDIATE`; `None` when the range is done.
    async fn backfill_batch(
        &mut self,
        migration: &Migration,
        table: &str,
        key: &str,
        next_key: &str,
        statement: &str,
    ) -> Result<Option<Checkpoint>, MigrateError> {
        let row: Option<(String, Option<String>)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT state, checkpoint FROM {LEDGER_TABLE} WHERE version = ?1"
        )))
        .bind(migration.version)
        .fetch_optional(&mut *self.connection)
        .await
        .map_err(MigrateError::db("cannot read the checkpoint"))?;
        if row.as_ref().is_some_and(|(state, _)| state == "applied") {
            return Ok(None);
        }
        let checkpoint = match row
            .and_then(|(_, json)| json)
            .and_then(|json| serde_json::from_str::<Checkpoint>(&json).ok())
        {
            Some(checkpoint) => checkpoint,
            None => {
                let (min, max): (Option<i64>, Option<i64>) =
                    sqlx::query_as(AssertSqlSafe(format!("SELECT min({key}), max({key}) FROM {table}")))
                        .fetch_one(&mut *self.connection)
                        .await
                        .map_err(MigrateError::db(format!("cannot read the key range of {table}")))?;
                Checkpoint {
                    last: min.map_or(0, |m| m.saturating_sub(1)),
                    upper: max.unwrap_or(0),
                    rows: 0,
                    batches: 0,
                }
            }
        };
        if checkpoint.last >= checkpoint.upper {
            self.save_checkpoint(migration, &checkpoint).await?;
            return Ok(Some(checkpoint));
        }
        let hi: Option<i64> = sqlx::query_scalar(AssertSqlSafe(next_key.to_owned()))
            .bind(checkpoint.last)
            .bind(checkpoint.upper)
            .fetch_optional(&mut *self.connection)
            .await
            .map_err(MigrateError::db("cannot find the next batch"))?;
        let hi = hi.unwrap_or(checkpoint.upper);
        let changed = sqlx::query(AssertSqlSafe(statement.to_owned()))
            .bind(checkpoint.last)
            .bind(hi)
            .execute(&mut *self.connection)
            .await
            .map_err(|e| {
                let line = statements::split(migration.sql().unwrap_or_default())
                    .first()
                    .map_or(1, |s| s.line);
                let batch = usize::try_from(checkpoint.batches + 1).unwrap_or(usize::MAX);
                statement_failed(migration)(batch, line, message(&e))
            })?
            .rows_affected();
        let next = Checkpoint {
            last: hi,
            upper: checkpoint.upper,
            rows: checkpoint.rows + changed,
            batches: checkpoint.batches + 1,
        };
        self.save_checkpoint(migration, &next).await?;
        Ok(Some(next))
    }

    async fn save_checkpoint(&mut self, migration: &Migration, checkpoint: &Checkpoint) -> Result<(), MigrateError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {LEDGER_TABLE} (version, name, phase, checksum, state, steps_done, checkpoint, installed_by, down_sql, down_checksum)
             VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (version) DO UPDATE SET checkpoint = excluded.checkpoint, steps_done = excluded.steps_done"
        )))
        .bind(migration.version)
        .bind(&migration.name)
        .bind(migration.phase.as_str())
        .bind(&migration.checksum)
        .bind(i64::try_from(checkpoint.batches).unwrap_or(i64::MAX))
        .bind(serde_json::to_string(checkpoint).unwrap_or_default())
        .bind(runner_id())
        .bind(&migration.down)
        .bind(crate::ledger::down_checksum(migration))
        .execute(&mut *self.connection)
        .await
        .map_err(MigrateError::db("cannot record the checkpoint"))?;
        Ok(())
    }

    pub(crate) async fn revert(&mut self, entry: &LedgerEntry, down: &str) -> Result<(), MigrateError> {
        self.connection
            .execute("BEGIN IMMEDIATE")
            .await
            .map_err(MigrateError::db("cannot take the write lock"))?;
        let outcome = async {
            run_script(&mut self.connection, down, |step, line, message| {
                MigrateError::Statement {
                    version: entry.version,
                    name: entry.name.clone(),
                    step,
                    origin: format!("down of migration {}", entry.version),
                    line,
                    message,
                }
            })
            .await?;
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {LEDGER_TABLE} WHERE version = ?1")))
                .bind(entry.version)
                .execute(&mut *self.connection)
                .await
                .map_err(MigrateError::db("cannot update the ledger"))?;
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => self
                .connection
                .execute("COMMIT")
                .await
                .map(|_| ())
                .map_err(MigrateError::db("cannot commit")),
            Err(error) => {
                let _ = self.connection.execute("ROLLBACK").await;
                Err(error)
            }
        }
    }

    pub(crate) async fn forget(&mut self, version: i64) -> Result<(), MigrateError> {
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {LEDGER_TABLE} WHERE version = ?1")))
            .bind(version)
            .execute(&mut *self.connection)
            .await
            .map(drop)
            .map_err(MigrateError::db("cannot update the ledger"))
    }

    /// Record why `version` ran past the contract gate.
    pub(crate) async fn record_forced(&mut self, version: i64, note: &str) -> Result<(), MigrateError> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {LEDGER_TABLE} SET forced_contract = ?2 WHERE version = ?1"
        )))
        .bind(version)
        .bind(note)
        .execute(&mut *self.connection)
        .await
        .map_err(MigrateError::db("cannot record the forced contract migration"))?;
        Ok(())
    }

    /// The live instances registered in this database.
    pub(crate) async fn instances(&mut self) -> Result<Vec<crate::instances::Instance>, MigrateError> {
        crate::instances::sqlite::live(&mut self.connection).await
    }

    pub(crate) async fn realign(&mut self, version: i64, checksum: &str, note: &str) -> Result<(), MigrateError> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {LEDGER_TABLE} SET checksum = ?2, repaired_at = {NOW}, repair_note = ?3 WHERE version = ?1"
        )))
        .bind(version)
        .bind(checksum)
        .bind(note)
        .execute(&mut *self.connection)
        .await
        .map_err(MigrateError::db("cannot repair the ledger"))?;
        Ok(())
    }
}
