//! The registry on PostgreSQL: `timestamptz` columns stamped with the server's clock.

use std::time::Duration;

use sqlx::{AssertSqlSafe, PgConnection, PgPool};

use super::{INSTANCES_TABLE, Instance, InstancePhase, LiveRow, Row, bind_row};
use crate::MigrateError;

/// Create the table if needed, then write the row; the first beat of a process also deletes rows
/// expired for a day.
pub(crate) async fn beat(pool: &PgPool, row: &Row, phase: InstancePhase, ttl: Duration) -> Result<(), MigrateError> {
    let upsert = format!(
        "INSERT INTO {INSTANCES_TABLE} (instance_id, service, version, host, migrations, max_migration, digest, phase,
                                        last_seen, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, clock_timestamp(), clock_timestamp() + $9 * interval '1 millisecond')
         ON CONFLICT (instance_id) DO UPDATE
            SET phase = excluded.phase, last_seen = excluded.last_seen, expires_at = excluded.expires_at"
    );
    let write = |pool| bind_row(sqlx::query(AssertSqlSafe(upsert.clone())), row, phase, ttl).execute(pool);
    match write(pool).await {
        Ok(_) => Ok(()),
        Err(error) if is(&error, NO_TABLE) => {
            create(pool).await?;
            write(pool)
                .await
                .map_err(MigrateError::db("cannot register the instance"))?;
            Ok(())
        }
        Err(error) => Err(MigrateError::db("cannot register the instance")(error)),
    }
}

/// Whether the server answered with one of these SQLSTATEs.
fn is(error: &sqlx::Error, codes: &[&str]) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| codes.contains(&code.as_ref()))
}

/// `undefined_table`: no instance registered yet.
const NO_TABLE: &[&str] = &["42P01"];

/// The table, created by the first instance (two at once: one wins, the other's duplicate
/// type error is ignored), and the day-old leftovers of killed instances removed.
async fn create(pool: &PgPool) -> Result<(), MigrateError> {
    // Asked first: `IF NOT EXISTS` on an existing table makes PostgreSQL send a NOTICE that
    // drivers log, at every start of every instance.
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(INSTANCES_TABLE)
        .fetch_one(pool)
        .await
        .map_err(MigrateError::db("cannot look for the instance registry"))?;
    if exists {
        return sqlx::raw_sql(AssertSqlSafe(format!(
            "DELETE FROM {INSTANCES_TABLE} WHERE expires_at < clock_timestamp() - interval '1 day'"
        )))
        .execute(pool)
        .await
        .map(drop)
        .map_err(MigrateError::db("cannot clean the instance registry"));
    }
    let created = sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {INSTANCES_TABLE} (
            instance_id text PRIMARY KEY,
            service text NOT NULL,
            version text NOT NULL,
            host text NOT NULL,
            migrations text NOT NULL,
            max_migration bigint,
            digest text NOT NULL,
            phase text NOT NULL,
            started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            last_seen timestamptz NOT NULL,
            expires_at timestamptz NOT NULL
        );
        DELETE FROM {INSTANCES_TABLE} WHERE expires_at < clock_timestamp() - interval '1 day'"
    )))
    .execute(pool)
    .await;
    match created {
        Err(error) if !is(&error, &["23505", "42P07"]) => {
            Err(MigrateError::db("cannot create the instance registry")(error))
        }
        _ => Ok(()),
    }
}

/// Remove the row.
pub(crate) async fn remove(pool: &PgPool, id: &str) -> Result<(), MigrateError> {
    let removed = sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM {INSTANCES_TABLE} WHERE instance_id = $1"
    )))
    .bind(id)
    .execute(pool)
    .await;
    match removed {
        Err(error) if !is(&error, NO_TABLE) => Err(MigrateError::db("cannot deregister the instance")(error)),
        _ => Ok(()),
    }
}

/// Every row that has not expired (none when no instance ever registered).
pub(crate) async fn live(connection: &mut PgConnection) -> Result<Vec<Instance>, MigrateError> {
    let rows = sqlx::query_as::<_, LiveRow>(AssertSqlSafe(format!(
        "SELECT instance_id, service, version, host, migrations, digest, phase,
                to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS started_at,
                to_char(last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_seen,
                (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint AS expires_in_ms
         FROM {INSTANCES_TABLE} WHERE expires_at > clock_timestamp()
         ORDER BY service, started_at, instance_id"
    )))
    .fetch_all(connection)
    .await;
    match rows {
        Ok(rows) => Ok(rows.into_iter().map(Instance::from).collect()),
        Err(error) if is(&error, NO_TABLE) => Ok(Vec::new()),
        Err(error) => Err(MigrateError::db("cannot read the instance registry")(error)),
    }
}
