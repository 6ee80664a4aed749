//! Batched, resumable backfills.
//!
//! The key range is fixed when the backfill starts (rows inserted later are the application's
//! job: it writes both shapes during the rollout), so the backfill ends even under a steady
//! stream of inserts. Each batch of keys `(last, hi]` is one short transaction that runs the
//! migration's statement with `$1 = last` and `$2 = hi` and commits the checkpoint with it: a
//! crash loses at most the batches whose commit had not reached the disk, each together with its
//! checkpoint, and no row is processed twice.

use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection};

use crate::{
    BackfillSpec, Event, MigrateError, Migration, Migrator,
    ledger::{Checkpoint, LEDGER_TABLE, runner_id},
    postgres::{LOCK_TIMEOUT_CODE, Pg, backoff, checkpoint_json, describe_error, error_code, millis_literal},
};

fn quote(path: &str) -> String {
    path.split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

fn single_statement(migration: &Migration) -> Result<String, MigrateError> {
    let sql = migration.sql().unwrap_or_default();
    let statements = crate::statements::split(sql).map_err(|(line, message)| MigrateError::Source {
        origin: migration.origin.clone(),
        line: Some(line),
        message,
    })?;
    match statements.as_slice() {
        [one] if one.text.contains("$1") && one.text.contains("$2") => Ok(one.text.clone()),
        [_] => Err(MigrateError::Source {
            origin: migration.origin.clone(),
            line: None,
            message: "a backfill statement must use $1 (exclusive lower key) and $2 (inclusive upper key), \
                      e.g. `UPDATE t SET ... WHERE id > $1 AND id <= $2`"
                .to_owned(),
        }),
        _ => Err(MigrateError::Source {
            origin: migration.origin.clone(),
            line: None,
            message: format!(
                "a backfill holds exactly one statement, this one has {}",
                statements.len()
            ),
        }),
    }
}

pub(crate) async fn run_postgres(
    pg: &mut Pg<'_>,
    migrator: &Migrator,
    migration: &Migration,
    spec: &BackfillSpec,
    lock_timeout: Duration,
) -> Result<(), MigrateError> {
    let started = Instant::now();
    let statement = single_statement(migration)?;
    let (table, key) = (quote(&spec.table), quote(&spec.key));
    let connection = pg.work();
    let existing: Option<Option<String>> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT checkpoint::text FROM {LEDGER_TABLE} WHERE version = $1"
    )))
    .bind(migration.version)
    .fetch_optional(&mut *connection)
    .await
    .map_err(MigrateError::db("cannot read the backfill checkpoint"))?;
    let mut checkpoint = match existing
        .flatten()
        .and_then(|json| serde_json::from_str::<Checkpoint>(&json).ok())
    {
        Some(checkpoint) => {
            tracing::info!(
                version = migration.version,
                last = checkpoint.last,
                upper = checkpoint.upper,
                "resuming backfill"
            );
            checkpoint
        }
        None => {
            let (min, max): (Option<i64>, Option<i64>) = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT min({key})::bigint, max({key})::bigint FROM {table}"
            )))
            .fetch_one(&mut *connection)
            .await
            .map_err(MigrateError::db(format!("cannot read the key range of {}", spec.table)))?;
            let checkpoint = Checkpoint {
                last: min.map_or(0, |m| m.saturating_sub(1)),
                upper: max.unwrap_or(0),
                rows: 0,
                batches: 0,
            };
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {LEDGER_TABLE} (version, name, phase, checksum, state, steps_done, steps_total, checkpoint, installed_by, down_sql, down_checksum)
                 VALUES ($1, $2, $3, $4, 'running', 0, 0, $5::jsonb, $6, $7, $8)
                 ON CONFLICT (version) DO UPDATE SET state = 'running', checkpoint = EXCLUDED.checkpoint, error = NULL"
            )))
            .bind(migration.version)
            .bind(&migration.name)
            .bind(migration.phase.as_str())
            .bind(&migration.checksum)
            .bind(checkpoint_json(&checkpoint))
            .bind(runner_id())
            .bind(&migration.down)
            .bind(crate::ledger::down_checksum(migration))
            .execute(&mut *connection)
            .await
            .map_err(MigrateError::db("cannot record the backfill"))?;
            checkpoint
        }
    };

    let next_key = format!(
        "SELECT {key}::bigint FROM {table} WHERE {key} > $1 AND {key} <= $2 ORDER BY {key} OFFSET {} LIMIT 1",
        spec.batch_size.saturating_sub(1)
    );
    // One round-trip opens the batch with its settings. Asynchronous commit is safe here: the
    // batch and its checkpoint are one transaction, so a crash loses both or neither and the
    // rerun redoes the batch; and the application's own commits do not queue behind ours for
    // the WAL flush.
    let begin = format!(
        "BEGIN; SET LOCAL lock_timeout = '{}'; SET LOCAL synchronous_commit = off",
        millis_literal(lock_timeout)
    );
    while checkpoint.last < checkpoint.upper {
        let mut attempt = 0;
        loop {
            let mut transaction = connection
                .begin_with(AssertSqlSafe(begin.clone()))
                .await
                .map_err(MigrateError::db("cannot begin a batch"))?;
            let batch = async {
                let hi: Option<i64> = sqlx::query_scalar(AssertSqlSafe(next_key.clone()))
                    .bind(checkpoint.last)
                    .bind(checkpoint.upper)
                    .fetch_optional(&mut *transaction)
                    .await?;
                let hi = hi.unwrap_or(checkpoint.upper);
                let changed = sqlx::query(AssertSqlSafe(statement.clone()))
                    .bind(checkpoint.last)
                    .bind(hi)
                    .execute(&mut *transaction)
                    .await?
                    .rows_affected();
                let next = Checkpoint {
                    last: hi,
                    upper: checkpoint.upper,
                    rows: checkpoint.rows + changed,
                    batches: checkpoint.batches + 1,
                };
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {LEDGER_TABLE} SET checkpoint = $2::jsonb, steps_done = $3 WHERE version = $1"
                )))
                .bind(migration.version)
                .bind(checkpoint_json(&next))
                .bind(i32::try_from(next.batches).unwrap_or(i32::MAX))
                .execute(&mut *transaction)
                .await?;
                Ok::<Checkpoint, sqlx::Error>(next)
            }
            .await;
            match batch {
                Ok(next) => {
                    transaction
                        .commit()
                        .await
                        .map_err(MigrateError::db("cannot commit a batch"))?;
                    checkpoint = next;
                    break;
                }
                Err(error) => {
                    let _ = transaction.rollback().await;
                    if error_code(&error).as_deref() == Some(LOCK_TIMEOUT_CODE) && attempt < migrator.lock_retries {
                        attempt += 1;
                        migrator.emit(Event::LockRetry {
                            version: migration.version,
                            attempt,
                        });
                        tokio::time::sleep(backoff(attempt)).await;
                        continue;
                    }
                    let message = describe_error(&error);
                    let _ = sqlx::query(AssertSqlSafe(format!(
                        "UPDATE {LEDGER_TABLE} SET state = 'failed', error = $2, failed_step = $3 WHERE version = $1"
                    )))
                    .bind(migration.version)
                    .bind(&message)
                    .bind(i32::try_from(checkpoint.batches + 1).unwrap_or(i32::MAX))
                    .execute(&mut *connection)
                    .await;
                    return Err(MigrateError::Statement {
                        version: migration.version,
                        name: migration.name.clone(),
                        step: usize::try_from(checkpoint.batches + 1).unwrap_or(usize::MAX),
                        origin: migration.origin.clone(),
                        line: 0,
                        message,
                    });
                }
            }
        }
        migrator.emit(Event::Batch {
            version: migration.version,
            last: checkpoint.last,
            upper: checkpoint.upper,
            rows: checkpoint.rows,
        });
        if checkpoint.last < checkpoint.upper && !spec.pause.is_zero() {
            tokio::time::sleep(spec.pause).await;
        }
    }
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {LEDGER_TABLE} SET state = 'applied', finished_at = now(), duration_ms = $2, error = NULL, failed_step = NULL
         WHERE version = $1"
    )))
    .bind(migration.version)
    .bind(i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX))
    .execute(&mut *connection)
    .await
    .map_err(MigrateError::db("cannot record the backfill as applied"))?;
    tracing::info!(
        version = migration.version,
        rows = checkpoint.rows,
        batches = checkpoint.batches,
        "backfill complete"
    );
    Ok(())
}
