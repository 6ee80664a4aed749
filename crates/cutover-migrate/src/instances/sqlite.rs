//! The registry on SQLite: times as ISO-8601 text (`2026-11-30T10:00:00.000Z`) from SQLite's
//! clock, which compare in order as text.

use std::time::Duration;

use sqlx::{AssertSqlSafe, SqliteConnection, SqlitePool};

use super::{INSTANCES_TABLE, Instance, InstancePhase, LiveRow, Row, bind_row};
use crate::MigrateError;

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

fn no_table(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.message().starts_with("no such table"))
}

/// Create the table if needed, then write the row.
pub(crate) async fn beat(
    pool: &SqlitePool,
    row: &Row,
    phase: InstancePhase,
    ttl: Duration,
) -> Result<(), MigrateError> {
    let upsert = format!(
        "INSERT INTO {INSTANCES_TABLE} (instance_id, service, version, host, migrations, max_migration, digest, phase,
                                        started_at, last_seen, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, {NOW}, {NOW},
                 strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+' || (?9 / 1000.0) || ' seconds'))
         ON CONFLICT (instance_id) DO UPDATE
            SET phase = excluded.phase, last_seen = excluded.last_seen, expires_at = excluded.expires_at"
    );
    let write = |pool| bind_row(sqlx::query(AssertSqlSafe(upsert.clone())), row, phase, ttl).execute(pool);
    match write(pool).await {
        Ok(_) => Ok(()),
        Err(error) if no_table(&error) => {
            sqlx::raw_sql(AssertSqlSafe(format!(
                "CREATE TABLE IF NOT EXISTS {INSTANCES_TABLE} (
                    instance_id TEXT PRIMARY KEY,
                    service TEXT NOT NULL,
                    version TEXT NOT NULL,
                    host TEXT NOT NULL,
                    migrations TEXT NOT NULL,
                    max_migration INTEGER,
                    digest TEXT NOT NULL,
                    phase TEXT NOT NULL,
                    started_at TEXT NOT NULL,
                    last_seen TEXT NOT NULL,
                    expires_at TEXT NOT NULL
                );
                DELETE FROM {INSTANCES_TABLE} WHERE expires_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day')"
            )))
            .execute(pool)
            .await
            .map_err(MigrateError::db("cannot create the instance registry"))?;
            write(pool)
                .await
                .map_err(MigrateError::db("cannot register the instance"))?;
            Ok(())
        }
        Err(error) => Err(MigrateError::db("cannot register the instance")(error)),
    }
}

/// Remove the row.
pub(crate) async fn remove(pool: &SqlitePool, id: &str) -> Result<(), MigrateError> {
    let removed = sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM {INSTANCES_TABLE} WHERE instance_id = ?1"
    )))
    .bind(id)
    .execute(pool)
    .await;
    match removed {
        Err(error) if !no_table(&error) => Err(MigrateError::db("cannot deregister the instance")(error)),
        _ => Ok(()),
    }
}

/// Every row that has not expired (none when no instance ever registered).
pub(crate) async fn live(connection: &mut SqliteConnection) -> Result<Vec<Instance>, MigrateError> {
    let rows = sqlx::query_as::<_, LiveRow>(AssertSqlSafe(format!(
        "SELECT instance_id, service, version, host, migrations, digest, phase, started_at, last_seen,
                CAST(round((julianday(expires_at) - julianday('now')) * 86400000) AS INTEGER) AS expires_in_ms
         FROM {INSTANCES_TABLE} WHERE expires_at > {NOW}
         ORDER BY service, started_at, instance_id"
    )))
    .fetch_all(connection)
    .await;
    match rows {
        Ok(rows) => Ok(rows.into_iter().map(Instance::from).collect()),
        Err(error) if no_table(&error) => Ok(Vec::new()),
        Err(error) => Err(MigrateError::db("cannot read the instance registry")(error)),
    }
}
