//! The PostgreSQL backend: a dedicated lock connection polled with `pg_try_advisory_lock`, short
//! `lock_timeout`s retried with backoff, one statement per round-trip where a transaction is
//! impossible, INVALID indexes rebuilt, batched backfills with their checkpoint committed in
//! the same transaction.

use std::{
    str::FromStr,
    time::{Duration, Instant},
};

use sqlx::{
    AssertSqlSafe, Connection, Executor, PgConnection, Row,
    postgres::{PgConnectOptions, PgDatabaseError},
};

use crate::{
    Event, MigrateError, Migration, Migrator,
    ledger::{Checkpoint, LEDGER_SCHEMA, LEDGER_SCHEMA_TABLE, LEDGER_TABLE, LedgerEntry, check_schema, runner_id},
    migrator::{Prepared, SqlCheck},
    source::Body,
    statements::Statement,
};

mod session;
pub(crate) use session::PgSession;

/// `lock_not_available`: a `lock_timeout` fired.
const LOCK_NOT_AVAILABLE: &str = "55P03";

pub(crate) struct Pg<'c> {
    work: Work<'c>,
    /// The lock's own connection; `None` on a borrowed connection (the lock is then taken on
    /// it) and for read-only runs.
    lock: Option<PgConnection>,
    holding: bool,
}

/// The connection statements run on: the runner's own, or one the application lent.
enum Work<'c> {
    Own(PgConnection),
    Borrowed(&'c mut PgConnection),
}

impl std::ops::Deref for Work<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Self::Own(connection) => connection,
            Self::Borrowed(connection) => connection,
        }
    }
}

impl std::ops::DerefMut for Work<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Self::Own(connection) => connection,
            Self::Borrowed(connection) => connection,
        }
    }
}

pub(crate) fn error_code(error: &sqlx::Error) -> Option<String> {
    error
        .as_database_error()
        .and_then(|e| e.try_downcast_ref::<PgDatabaseError>())
        .map(|e| e.code().to_owned())
}

pub(crate) fn describe_error(error: &sqlx::Error) -> String {
    match error
        .as_database_error()
        .and_then(|e| e.try_downcast_ref::<PgDatabaseError>())
    {
        Some(pg) => {
            let mut text = format!("{} (SQLSTATE {})", pg.message(), pg.code());
            if let Some(detail) = pg.detail() {
                text.push_str(&format!("; {detail}"));
            }
            text
        }
        None => error.to_string(),
    }
}

/// Backoff for retries: 100 ms doubling to 5 s, with ±25 % jitter.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(100)
        .saturating_mul(1 << attempt.min(6))
        .min(Duration::from_secs(5));
    base.mul_f64(0.75 + fastrand::f64() * 0.5)
}

pub(crate) fn millis_literal(duration: Duration) -> String {
    format!("{}ms", duration.as_millis().max(1))
}

impl<'c> Pg<'c> {
    pub(crate) async fn connect(url: &str, with_lock: bool) -> Result<Self, MigrateError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| MigrateError::UnsupportedUrl(format!("{}: {e}", crate::redact_url(url))))?;
        Self::connect_with(options, with_lock).await
    }

    /// Connections of its own with `options` (a pool's, when migrating through one): the
    /// session settings and the advisory lock never reach a pooled connection.
    pub(crate) async fn connect_with(options: PgConnectOptions, with_lock: bool) -> Result<Self, MigrateError> {
        let options = options.application_name("cutover-migrate");
        let shown = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        let work = async {
            PgConnection::connect_with(&options)
                .await
                .map_err(MigrateError::db(format!("cannot connect to {shown}")))
        };
        let lock = async {
            if !with_lock {
                return Ok(None);
            }
            // Its own connection, never a pooled one: the advisory lock belongs to a session.
            let mut lock = PgConnection::connect_with(&options.clone().application_name("cutover-migrate-lock"))
                .await
                .map_err(MigrateError::db("cannot open the lock connection"))?;
            // If this runner dies without closing the socket, the server notices within about
            // a minute and drops the session, and the lock with it.
            lock.execute(
                "SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3",
            )
            .await
            .map_err(MigrateError::db("cannot set keepalives on the lock connection"))?;
            Ok(Some(lock))
        };
        // Both at once: connecting (authentication included) is most of a short run's fixed cost.
        let (work, lock) = tokio::try_join!(work, lock)?;
        Ok(Self {
            work: Work::Own(work),
            lock,
            holding: false,
        })
    }

    /// Run on the application's connection: statements and the advisory lock both on it (the
    /// lock is released at the end of the run, and `lock_timeout` is only ever set for a
    /// transaction or reset after use). Refused inside a transaction: migrations commit their
    /// own.
    pub(crate) async fn borrow(connection: &'c mut PgConnection) -> Result<Self, MigrateError> {
        // sqlx knows the transactions it began; one begun with a raw `BEGIN` is found by a
        // savepoint, which PostgreSQL refuses outside a transaction block (25P01).
        let in_block = connection.is_in_transaction()
            || match connection.execute("SAVEPOINT cutover_migrate_probe").await {
                Ok(_) => {
                    let _ = connection.execute("RELEASE SAVEPOINT cutover_migrate_probe").await;
                    true
                }
                Err(error) => error_code(&error).as_deref() != Some("25P01"),
            };
        if in_block {
            return Err(MigrateError::Preflight(
                "the connection is inside a transaction: migrations commit their own, so lend one outside any transaction"
                    .to_owned(),
            ));
        }
        Ok(Self {
            work: Work::Borrowed(connection),
            lock: None,
            holding: false,
        })
    }

    /// The connection the advisory lock lives on.
    fn lock_connection(&mut self) -> Option<&mut PgConnection> {
        match (&mut self.lock, &mut self.work) {
            (Some(lock), _) => Some(lock),
            (None, Work::Borrowed(connection)) => Some(connection),
            (None, Work::Own(_)) => None,
        }
    }

    pub(crate) async fn server_major(&mut self) -> Result<u32, MigrateError> {
        let version: String = sqlx::query_scalar("SHOW server_version_num")
            .fetch_one(&mut *self.work)
            .await
            .map_err(MigrateError::db("cannot read the server version"))?;
        Ok(version.trim().parse::<u32>().map_or(15, |n| n / 10_000))
    }

    pub(crate) async fn ensure_ledger(&mut self) -> Result<(), MigrateError> {
        // Each statement runs only where it has work to do: `IF NOT EXISTS` on what exists
        // makes PostgreSQL send a NOTICE ("already exists, skipping"), which drivers log, on
        // every run. `IF NOT EXISTS` stays for two first runs at once.
        let existed = self.table_exists(LEDGER_TABLE).await?;
        let schema_existed = self.table_exists(LEDGER_SCHEMA_TABLE).await?;
        if !schema_existed && existed {
            self.work
                .execute(AssertSqlSafe(format!(
                    "CREATE TABLE IF NOT EXISTS {LEDGER_SCHEMA_TABLE} (schema bigint NOT NULL)"
                )))
                .await
                .map_err(MigrateError::db("cannot create the ledger table"))?;
        }
        if !existed {
            self.create_ledger().await?;
        }
        let found: Option<i64> =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT max(schema) FROM {LEDGER_SCHEMA_TABLE}")))
                .fetch_one(&mut *self.work)
                .await
                .map_err(MigrateError::db("cannot read the ledger's schema"))?;
        let mut upgrade = String::new();
        if existed {
            // A ledger made by an older release: the columns it lacks. (A ledger made just
            // now has them all.)
            for step in check_schema(found)? {
                upgrade.push_str(&format!(
                    "ALTER TABLE {LEDGER_TABLE} ADD COLUMN IF NOT EXISTS {} text;\n",
                    step.column
                ));
            }
        }
        if found != Some(LEDGER_SCHEMA) {
            upgrade.push_str(&format!(
                "DELETE FROM {LEDGER_SCHEMA_TABLE};\nINSERT INTO {LEDGER_SCHEMA_TABLE} VALUES ({LEDGER_SCHEMA})"
            ));
            self.work
                .execute(AssertSqlSafe(upgrade))
                .await
                .map_err(MigrateError::db("cannot upgrade the ledger table"))?;
            tracing::info!(from = found.unwrap_or(1), to = LEDGER_SCHEMA, "ledger schema recorded");
        }
        Ok(())
    }

    /// The ledger and its schema table, in one batch: a fresh database commits them once.
    async fn create_ledger(&mut self) -> Result<(), MigrateError> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
                version bigint PRIMARY KEY,
                name text NOT NULL,
                phase text NOT NULL,
                checksum text NOT NULL,
                state text NOT NULL CHECK (state IN ('running', 'applied', 'failed')),
                steps_done integer NOT NULL DEFAULT 0,
                steps_total integer NOT NULL DEFAULT 0,
                done_checksum text,
                checkpoint jsonb,
                failed_step integer,
                error text,
                installed_by text NOT NULL,
                started_at timestamptz NOT NULL DEFAULT now(),
                finished_at timestamptz,
                duration_ms bigint,
                down_sql text,
                down_checksum text,
                repaired_at timestamptz,
                repair_note text,
                adopted_from text,
                forced_contract text
            );
            CREATE TABLE IF NOT EXISTS {LEDGER_SCHEMA_TABLE} (schema bigint NOT NULL)"
        );
        self.work
            .execute(AssertSqlSafe(sql))
            .await
            .map_err(MigrateError::db("cannot create the ledger table"))?;
        Ok(())
    }

    /// Whether `table` exists (on the search path).
    pub(crate) async fn table_exists(&mut self, table: &str) -> Result<bool, MigrateError> {
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table)
            .fetch_one(&mut *self.work)
            .await
            .map_err(MigrateError::db(format!("cannot look for the table {table}")))
    }

    /// Another tool's ledger rows.
    pub(crate) async fn foreign_rows(&mut self, sql: &str) -> Result<Vec<crate::adopt::ForeignRow>, MigrateError> {
        sqlx::query_as(AssertSqlSafe(sql.to_owned()))
            .fetch_all(&mut *self.work)
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
             VALUES ($1, $2, $3, $4, 'applied', $5, now(), 0, $6, $7, $8, $9)
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
        .execute(&mut *self.work)
        .await
        .map_err(MigrateError::db("cannot record an adopted migration"))?;
        Ok(inserted.rows_affected() == 1)
    }

    pub(crate) async fn ledger(&mut self) -> Result<Vec<LedgerEntry>, MigrateError> {
        let (exists, columns): (Option<String>, Vec<String>) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT to_regclass('{LEDGER_TABLE}')::text,
                    array(SELECT attname::text FROM pg_attribute
                          WHERE attrelid = to_regclass('{LEDGER_TABLE}') AND attnum > 0 AND NOT attisdropped)"
        )))
        .fetch_one(&mut *self.work)
        .await
        .map_err(MigrateError::db("cannot read the ledger"))?;
        if exists.is_none() {
            return Ok(Vec::new());
        }
        // An older ledger is read as it is (what later schemas added reads as NULL); `up`
        // upgrades it.
        let added = crate::ledger::added_columns(&columns, "NULL::text");
        sqlx::query_as::<_, LedgerEntry>(AssertSqlSafe(format!(
            "SELECT version, name, phase, checksum, state, steps_done::bigint AS steps_done,
                    steps_total::bigint AS steps_total, done_checksum, checkpoint::text AS checkpoint,
                    failed_step::bigint AS failed_step, error, installed_by,
                    to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS started_at,
                    to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS finished_at,
                    duration_ms, down_sql,
                    to_char(repaired_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS repaired_at, repair_note,
                    {added}
             FROM {LEDGER_TABLE} ORDER BY version"
        )))
        .fetch_all(&mut *self.work)
        .await
        .map_err(MigrateError::db("cannot read the ledger"))
    }

    /// Poll `pg_try_advisory_lock` on the lock connection, idle and outside any transaction
    /// while waiting (a waiting transaction's snapshot is what deadlocks concurrent index
    /// builds), 25 ms doubling to 1 s with jitter, up to `lock_wait`.
    pub(crate) async fn lock(&mut self, migrator: &Migrator) -> Result<(), MigrateError> {
        let Some(lock) = self.lock_connection() else {
            return Ok(());
        };
        let started = Instant::now();
        let mut delay = Duration::from_millis(25);
        let mut last_report = Instant::now();
        loop {
            let acquired: bool = sqlx::query_scalar(
                "SELECT pg_try_advisory_lock(hashtext('cutover-migrate:' || current_database())::bigint)",
            )
            .fetch_one(&mut *lock)
            .await
            .map_err(MigrateError::db("cannot try the migration lock"))?;
            if acquired {
                self.holding = true;
                return Ok(());
            }
            let waited = started.elapsed();
            if waited >= migrator.lock_wait {
                return Err(MigrateError::LockTimeout { waited });
            }
            if last_report.elapsed() >= Duration::from_secs(1) {
                migrator.emit(Event::WaitingForLock {
                    waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                });
                last_report = Instant::now();
            }
            tokio::time::sleep(delay.mul_f64(0.5 + fastrand::f64())).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    pub(crate) async fn unlock(&mut self) {
        if !self.holding {
            return;
        }
        self.holding = false;
        let Some(lock) = self.lock_connection() else {
            return;
        };
        let released =
            sqlx::query("SELECT pg_advisory_unlock(hashtext('cutover-migrate:' || current_database())::bigint)")
                .execute(&mut *lock)
                .await;
        if let Err(error) = released {
            // Closing the session releases it anyway: the runner's own lock connection is
            // closed now; a borrowed one releases it when the application closes it.
            tracing::warn!(%error, "could not release the migration lock; it ends with its connection");
            if let Some(lock) = self.lock.take() {
                let _ = lock.close().await;
            }
        }
    }

    pub(crate) async fn check(&mut self, check: &SqlCheck) -> Result<bool, MigrateError> {
        sqlx::query_scalar::<_, bool>(AssertSqlSafe(check.sql.clone()))
            .fetch_one(&mut *self.work)
            .await
            .map_err(MigrateError::db(format!("check `{}`", check.name)))
    }

    /// Warnings about the state of the database, and refusals for failed integrity checks.
    pub(crate) async fn preflight(
        &mut self,
        migrator: &Migrator,
        pending: &[&Migration],
    ) -> Result<Vec<String>, MigrateError> {
        let mut warnings = Vec::new();
        let connections: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
                .fetch_one(&mut *self.work)
                .await
                .map_err(MigrateError::db("pre-flight: cannot count connections"))?;
        if connections > migrator.max_connections_warning {
            warnings.push(format!(
                "{connections} active connections to this database (more than {})",
                migrator.max_connections_warning
            ));
        }
        let mut tables: Vec<String> = Vec::new();
        for migration in pending {
            if let Some(sql) = migration.sql()
                && let Ok(statements) = crate::statements::split(sql)
            {
                for statement in statements {
                    for table in statement.tables {
                        let bare = table.rsplit('.').next().unwrap_or(&table).to_owned();
                        if !tables.contains(&bare) {
                            tables.push(bare);
                        }
                    }
                }
            }
            if let Some(backfill) = &migration.backfill {
                tables.push(backfill.table.rsplit('.').next().unwrap_or(&backfill.table).to_owned());
            }
        }
        // pg_locks alone is cheap; the join with pg_stat_activity is not: only when some other
        // session holds a lock on one of the tables.
        let contended = !tables.is_empty()
            && sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                                WHERE c.relname = ANY($1) AND l.pid <> pg_backend_pid())",
            )
            .bind(&tables)
            .fetch_one(&mut *self.work)
            .await
            .map_err(MigrateError::db("pre-flight: cannot inspect locks"))?;
        if contended {
            let rows = sqlx::query(
                "SELECT DISTINCT a.pid, a.state, c.relname, extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))::bigint
                 FROM pg_locks l
                 JOIN pg_class c ON c.oid = l.relation
                 JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE c.relname = ANY($1) AND a.pid <> pg_backend_pid()
                   AND (a.state LIKE 'idle in transaction%' OR now() - a.xact_start > interval '30 seconds')",
            )
            .bind(&tables)
            .fetch_all(&mut *self.work)
            .await
            .map_err(MigrateError::db("pre-flight: cannot inspect sessions"))?;
            for row in rows {
                let pid: i32 = row.try_get(0).unwrap_or_default();
                let state: Option<String> = row.try_get(1).unwrap_or_default();
                let table: String = row.try_get(2).unwrap_or_default();
                let seconds: Option<i64> = row.try_get(3).unwrap_or_default();
                warnings.push(format!(
                    "session pid {pid} ({}, {}s) holds a lock on `{table}`: DDL on it will wait and retry until it ends",
                    state.unwrap_or_else(|| "unknown".to_owned()),
                    seconds.unwrap_or(0)
                ));
            }
        }
        for check in &migrator.integrity {
            if !self.check(check).await? {
                return Err(MigrateError::Preflight(format!(
                    "integrity check `{}` returned false",
                    check.name
                )));
            }
        }
        if let Some(policy) = &migrator.backup {
            crate::backup::check_disk(&policy.dir, migrator.max_disk_percent)?;
        }
        Ok(warnings)
    }

    pub(crate) async fn apply(
        &mut self,
        migrator: &Migrator,
        migration: &Migration,
        prepared: &Prepared,
        resume_at: usize,
    ) -> Result<(), MigrateError> {
        let lock_timeout = migration.lock_timeout.unwrap_or(migrator.lock_timeout);
        migrator.emit(Event::Started {
            version: migration.version,
            name: migration.name.clone(),
            steps: prepared.statements.len(),
            resumed_at: resume_at,
        });
        if let Some(backfill) = &migration.backfill {
            return crate::backfill::run_postgres(self, migrator, migration, backfill, lock_timeout).await;
        }
        match &migration.up {
            Body::Rust(code) => self.apply_rust(migration, code.as_ref()).await,
            Body::Sql(_) if prepared.transactional => {
                self.apply_in_transaction(migrator, migration, &prepared.statements, lock_timeout)
                    .await
            }
            Body::Sql(_) => {
                self.apply_per_statement(migrator, migration, &prepared.statements, resume_at, lock_timeout)
                    .await
            }
        }
    }

    async fn apply_rust(&mut self, migration: &Migration, code: &dyn crate::RustMigration) -> Result<(), MigrateError> {
        let mut transaction = self.work.begin().await.map_err(MigrateError::db("cannot begin"))?;
        let mut connection = crate::Connection::Postgres(transaction.as_mut());
        code.up(&mut connection)
            .await
            .map_err(|error| MigrateError::Statement {
                version: migration.version,
                name: migration.name.clone(),
                step: 1,
                origin: migration.origin.clone(),
                line: 0,
                message: error.to_string(),
            })?;
        transaction
            .execute(AssertSqlSafe(record_applied_sql(migration, 1)))
            .await
            .map_err(MigrateError::db("cannot record the migration"))?;
        transaction.commit().await.map_err(MigrateError::db("cannot commit"))?;
        Ok(())
    }

    /// One transaction with the ledger row; a `lock_timeout` rolls it back and it is retried
    /// whole, after a backoff.
    async fn apply_in_transaction(
        &mut self,
        migrator: &Migrator,
        migration: &Migration,
        statements: &[Statement],
        lock_timeout: Duration,
    ) -> Result<(), MigrateError> {
        // The whole file in one round-trip (the simple query protocol runs a batch of
        // statements), then the ledger row and the commit: psql's pace, not a round-trip per
        // statement. A failure is located afterwards by replaying the statements one at a time
        // in a transaction that is rolled back.
        let mut batch = format!("BEGIN;\nSET LOCAL lock_timeout = '{}'", millis_literal(lock_timeout));
        for statement in statements {
            // A newline first: a statement ending in a `--` comment must not swallow the `;`.
            batch.push_str("\n;\n");
            batch.push_str(&statement.text);
        }
        // The ledger row and the commit ride in the same batch: one round-trip per migration.
        batch.push_str("\n;\n");
        batch.push_str(&record_applied_sql(migration, statements.len()));
        batch.push_str(";\nCOMMIT");
        let mut attempt = 0;
        loop {
            let Err(error) = self.work.execute(AssertSqlSafe(batch.clone())).await else {
                return Ok(());
            };
            let _ = self.work.execute("ROLLBACK").await;
            if error_code(&error).as_deref() == Some(LOCK_NOT_AVAILABLE) && attempt < migrator.lock_retries {
                attempt += 1;
                migrator.emit(Event::LockRetry {
                    version: migration.version,
                    attempt,
                });
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
            let (index, error) = self
                .locate_failure(statements, lock_timeout)
                .await
                .unwrap_or((0, error));
            let statement = &statements[index.min(statements.len().saturating_sub(1))];
            // The transaction rolled back: no statement is done, whichever one failed.
            self.record_failed(migration, statements.len(), 0, index, &describe_error(&error))
                .await?;
            return Err(MigrateError::Statement {
                version: migration.version,
                name: migration.name.clone(),
                step: index + 1,
                origin: migration.origin.clone(),
                line: statement.line,
                message: describe_error(&error),
            });
        }
    }

    /// Which statement of a failed batch fails, and how: the statements again, one per
    /// round-trip, in a transaction that is always rolled back. `None` if none fails now.
    async fn locate_failure(
        &mut self,
        statements: &[Statement],
        lock_timeout: Duration,
    ) -> Option<(usize, sqlx::Error)> {
        let mut transaction = self.work.begin().await.ok()?;
        let set = format!("SET LOCAL lock_timeout = '{}'", millis_literal(lock_timeout));
        transaction.execute(AssertSqlSafe(set)).await.ok()?;
        for (index, statement) in statements.iter().enumerate() {
            if let Err(error) = transaction.execute(AssertSqlSafe(statement.text.clone())).await {
                let _ = transaction.rollback().await;
                return Some((index, error));
            }
        }
        let _ = transaction.rollback().await;
        None
    }

    /// One statement per round-trip, progress committed after each: a failure resumes at the
    /// failed statement.
    async fn apply_per_statement(
        &mut self,
        migrator: &Migrator,
        migration: &Migration,
        statements: &[Statement],
        resume_at: usize,
        lock_timeout: Duration,
    ) -> Result<(), MigrateError> {
        let started = Instant::now();
        self.record_running(migration, statements.len(), resume_at).await?;
        self.work
            .execute(AssertSqlSafe(format!(
                "SET lock_timeout = '{}'",
                millis_literal(lock_timeout)
            )))
            .await
            .map_err(MigrateError::db("cannot set lock_timeout"))?;
        for (index, statement) in statements.iter().enumerate().skip(resume_at) {
            let outcome = self.run_statement(migrator, migration, statement).await;
            if let Err(error) = outcome {
                let _ = self.work.execute("RESET lock_timeout").await;
                self.record_failed(migration, statements.len(), index, index, &error)
                    .await?;
                return Err(MigrateError::Statement {
                    version: migration.version,
                    name: migration.name.clone(),
                    step: index + 1,
                    origin: migration.origin.clone(),
                    line: statement.line,
                    message: error,
                });
            }
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {LEDGER_TABLE} SET steps_done = $2, done_checksum = $3 WHERE version = $1"
            )))
            .bind(migration.version)
            .bind(i32::try_from(index + 1).unwrap_or(i32::MAX))
            .bind(crate::migrator::prefix_checksum(statements, index + 1))
            .execute(&mut *self.work)
            .await
            .map_err(MigrateError::db("cannot record progress"))?;
            migrator.emit(Event::Step {
                version: migration.version,
                done: index + 1,
                of: statements.len(),
            });
        }
        let _ = self.work.execute("RESET lock_timeout").await;
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {LEDGER_TABLE} SET state = 'applied', finished_at = now(), duration_ms = $2, error = NULL, failed_step = NULL
             WHERE version = $1"
        )))
        .bind(migration.version)
        .bind(i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX))
        .execute(&mut *self.work)
        .await
        .map_err(MigrateError::db("cannot record the migration"))?;
        Ok(())
    }

    /// Run one statement outside a transaction, retrying on `lock_timeout`. A concurrent index
    /// build first looks for a leftover of an earlier failed build: a valid one is kept, an
    /// INVALID one (which `IF NOT EXISTS` would silently accept) is dropped and rebuilt.
    async fn run_statement(
        &mut self,
        migrator: &Migrator,
        migration: &Migration,
        statement: &Statement,
    ) -> Result<(), String> {
        if let Some(index) = statement.concurrent_index.as_ref().and_then(|i| i.name.as_ref()) {
            match self.index_validity(index).await.map_err(|e| describe_error(&e))? {
                Some(true) => {
                    tracing::info!(index, "index already exists and is valid; skipping its build");
                    return Ok(());
                }
                Some(false) => {
                    migrator.emit(Event::RebuildingInvalidIndex {
                        version: migration.version,
                        index: index.clone(),
                    });
                    self.retrying(
                        migrator,
                        migration,
                        &format!("DROP INDEX CONCURRENTLY IF EXISTS {}", quote_ident_path(index)),
                    )
                    .await?;
                }
                None => {}
            }
        }
        self.retrying(migrator, migration, &statement.text).await
    }

    async fn retrying(&mut self, migrator: &Migrator, migration: &Migration, sql: &str) -> Result<(), String> {
        let mut attempt = 0;
        loop {
            match self.work.execute(AssertSqlSafe(sql.to_owned())).await {
                Ok(_) => return Ok(()),
                Err(error)
                    if error_code(&error).as_deref() == Some(LOCK_NOT_AVAILABLE) && attempt < migrator.lock_retries =>
                {
                    attempt += 1;
                    migrator.emit(Event::LockRetry {
                        version: migration.version,
                        attempt,
                    });
                    // A timed-out concurrent build leaves an INVALID index behind: the retry's
                    // guard drops it.
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(error) => return Err(describe_error(&error)),
            }
        }
    }

    /// `Some(valid)` when an index of that name exists.
    async fn index_validity(&mut self, name: &str) -> Result<Option<bool>, sqlx::Error> {
        let (schema, bare) = match name.rsplit_once('.') {
            Some((schema, bare)) => (Some(schema.to_owned()), bare.to_owned()),
            None => (None, name.to_owned()),
        };
        sqlx::query_scalar(
            "SELECT i.indisvalid FROM pg_index i
             JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relname = $1 AND ($2::text IS NULL AND n.nspname = ANY(current_schemas(false)) OR n.nspname = $2)
             LIMIT 1",
        )
        .bind(bare)
        .bind(schema)
        .fetch_optional(&mut *self.work)
        .await
    }

    async fn record_running(
        &mut self,
        migration: &Migration,
        total: usize,
        resume_at: usize,
    ) -> Result<(), MigrateError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {LEDGER_TABLE} (version, name, phase, checksum, state, steps_done, steps_total, installed_by, down_sql, down_checksum)
             VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, $8, $9)
             ON CONFLICT (version) DO UPDATE SET state = 'running', error = NULL, failed_step = NULL, checksum = EXCLUDED.checksum,
                 installed_by = EXCLUDED.installed_by, steps_total = EXCLUDED.steps_total, down_sql = EXCLUDED.down_sql,
                 down_checksum = EXCLUDED.down_checksum"
        )))
        .bind(migration.version)
        .bind(&migration.name)
        .bind(migration.phase.as_str())
        .bind(&migration.checksum)
        .bind(i32::try_from(resume_at).unwrap_or(0))
        .bind(i32::try_from(total).unwrap_or(i32::MAX))
        .bind(runner_id())
        .bind(&migration.down)
        .bind(crate::ledger::down_checksum(migration))
        .execute(&mut *self.work)
        .await
        .map_err(MigrateError::db("cannot record the migration as running"))?;
        Ok(())
    }

    /// Record that statement `index` failed with `done` statements committed before it.
    async fn record_failed(
        &mut self,
        migration: &Migration,
        total: usize,
        done: usize,
        index: usize,
        error: &str,
    ) -> Result<(), MigrateError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {LEDGER_TABLE} (version, name, phase, checksum, state, steps_done, steps_total, failed_step, error, installed_by, down_sql, down_checksum)
             VALUES ($1, $2, $3, $4, 'failed', $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (version) DO UPDATE SET state = 'failed', failed_step = EXCLUDED.failed_step, error = EXCLUDED.error,
                 finished_at = now()"
        )))
        .bind(migration.version)
        .bind(&migration.name)
        .bind(migration.phase.as_str())
        .bind(&migration.checksum)
        .bind(i32::try_from(done).unwrap_or(0))
        .bind(i32::try_from(total).unwrap_or(i32::MAX))
        .bind(i32::try_from(index + 1).unwrap_or(i32::MAX))
        .bind(error)
        .bind(runner_id())
        .bind(&migration.down)
        .bind(crate::ledger::down_checksum(migration))
        .execute(&mut *self.work)
        .await
        .map_err(MigrateError::db("cannot record the failure"))?;
        Ok(())
    }

    pub(crate) async fn revert(
        &mut self,
        migrator: &Migrator,
        entry: &LedgerEntry,
        down: &str,
    ) -> Result<(), MigrateError> {
        let statements = crate::statements::split(down).map_err(|(line, message)| MigrateError::Source {
            origin: format!("down of migration {}", entry.version),
            line: Some(line),
            message,
        })?;
        let outside = statements.iter().any(|s| s.outside_transaction.is_some());
        let failed = |index: usize, message: String| MigrateError::Statement {
            version: entry.version,
            name: entry.name.clone(),
            step: index + 1,
            origin: format!("down of migration {}", entry.version),
            line: statements.get(index).map_or(0, |s| s.line),
            message,
        };
        if outside {
            for (index, statement) in statements.iter().enumerate() {
                let migration = self_migration(entry);
                self.retrying(migrator, &migration, &statement.text)
                    .await
                    .map_err(|e| failed(index, e))?;
            }
            self.forget(entry.version).await?;
        } else {
            let mut transaction = self.work.begin().await.map_err(MigrateError::db("cannot begin"))?;
            transaction
                .execute(AssertSqlSafe(format!(
                    "SET LOCAL lock_timeout = '{}'",
                    millis_literal(migrator.lock_timeout)
                )))
                .await
                .map_err(MigrateError::db("cannot set lock_timeout"))?;
            for (index, statement) in statements.iter().enumerate() {
                transaction
                    .execute(AssertSqlSafe(statement.text.clone()))
                    .await
                    .map_err(|e| failed(index, describe_error(&e)))?;
            }
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {LEDGER_TABLE} WHERE version = $1")))
                .bind(entry.version)
                .execute(&mut *transaction)
                .await
                .map_err(MigrateError::db("cannot update the ledger"))?;
            transaction.commit().await.map_err(MigrateError::db("cannot commit"))?;
        }
        Ok(())
    }

    /// Remove `version`'s ledger row.
    pub(crate) async fn forget(&mut self, version: i64) -> Result<(), MigrateError> {
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {LEDGER_TABLE} WHERE version = $1")))
            .bind(version)
            .execute(&mut *self.work)
            .await
            .map(drop)
            .map_err(MigrateError::db("cannot update the ledger"))
    }

    pub(crate) async fn realign(&mut self, version: i64, checksum: &str, note: &str) -> Result<(), MigrateError> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {LEDGER_TABLE} SET checksum = $2, repaired_at = now(), repair_note = $3 WHERE version = $1"
        )))
        .bind(version)
        .bind(checksum)
        .bind(note)
        .execute(&mut *self.work)
        .await
        .map_err(MigrateError::db("cannot repair the ledger"))?;
        Ok(())
    }

    /// Record why `version` ran past the contract gate.
    pub(crate) async fn record_forced(&mut self, version: i64, note: &str) -> Result<(), MigrateError> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {LEDGER_TABLE} SET forced_contract = $2 WHERE version = $1"
        )))
        .bind(version)
        .bind(note)
        .execute(&mut *self.work)
        .await
        .map_err(MigrateError::db("cannot record the forced contract migration"))?;
        Ok(())
    }

    pub(crate) fn work(&mut self) -> &mut PgConnection {
        &mut self.work
    }
}

/// A stand-in migration for retrying down statements (only the version is used).
fn self_migration(entry: &LedgerEntry) -> Migration {
    Migration {
        version: entry.version,
        name: entry.name.clone(),
        phase: crate::Phase::Expand,
        transaction: crate::TransactionMode::Off,
        lock_timeout: None,
        allow: Vec::new(),
        up: Body::Sql(String::new()),
        down: None,
        checksum: entry.checksum.clone(),
        origin: String::new(),
        backfill: None,
    }
}

fn quote_ident_path(name: &str) -> String {
    name.split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// `text` as a string literal that reads the same whatever `standard_conforming_strings` is:
/// an escape string, with `\` and `'` doubled.
fn literal(text: &str) -> String {
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// The ledger row of a migration applied in one transaction, values inlined so it can end the
/// migration's batch; its duration is the transaction's, from the server's clock.
fn record_applied_sql(migration: &Migration, steps: usize) -> String {
    let optional = |text: Option<&str>| text.map_or_else(|| "NULL".to_owned(), literal);
    format!(
        "INSERT INTO {LEDGER_TABLE} (version, name, phase, checksum, state, steps_done, steps_total, installed_by, finished_at, duration_ms, down_sql, down_checksum)
         VALUES ({version}, {name}, {phase}, {checksum}, 'applied', {steps}, {steps}, {runner}, now(),
                 (extract(epoch FROM clock_timestamp() - now()) * 1000)::bigint, {down}, {down_checksum})
         ON CONFLICT (version) DO UPDATE SET state = 'applied', steps_done = EXCLUDED.steps_done, error = NULL, failed_step = NULL,
             finished_at = now(), duration_ms = EXCLUDED.duration_ms, installed_by = EXCLUDED.installed_by, down_sql = EXCLUDED.down_sql,
             down_checksum = EXCLUDED.down_checksum",
        version = migration.version,
        name = literal(&migration.name),
        phase = literal(migration.phase.as_str()),
        checksum = literal(&migration.checksum),
        runner = literal(&runner_id()),
        down = optional(migration.down.as_deref()),
        down_checksum = optional(crate::ledger::down_checksum(migration).as_deref()),
    )
}

pub(crate) fn checkpoint_json(checkpoint: &Checkpoint) -> String {
    serde_json::to_string(checkpoint).unwrap_or_default()
}

pub(crate) const LOCK_TIMEOUT_CODE: &str = LOCK_NOT_AVAILABLE;
