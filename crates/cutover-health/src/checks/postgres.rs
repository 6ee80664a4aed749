use std::time::Duration;

use sqlx::{ConnectOptions, Connection, PgPool};

use crate::{Check, CheckContext, CheckResult};

/// `SELECT 1` on the application's PostgreSQL pool. Reports the pool's size and idle count.
///
/// The check borrows a connection from the pool like any request would, so it also notices a
/// saturated pool. If the application's pool may be starved on purpose (long batch jobs),
/// give the check a small pool of its own with `max_connections(1)`.
///
/// **The real cause, not a timeout.** A sqlx pool retries a refused connection until its own
/// acquire timeout (30 s by default), far beyond the check's: left alone, a database that is
/// down would only ever be reported as `timed out after 2s`. So the check waits for the pool
/// for half of its time, and when the pool has handed out nothing, it spends the other half on
/// one direct connection attempt with the pool's own options, and reports what that says
/// (`connection refused`, a DNS failure, an authentication error) whatever the pool's size
/// (its size counts attempts still in progress). If the attempt succeeds, the pool is
/// saturated, and the report says so. That attempt happens at most once per round, only when
/// the pool handed out nothing in time, and the connection is closed at once.
#[derive(Debug, Clone)]
pub struct PostgresCheck {
    pool: PgPool,
}

impl PostgresCheck {
    /// Check through `pool` (a clone shares the application's pool).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

impl Check for PostgresCheck {
    async fn check(&self, ctx: CheckContext) -> CheckResult {
        let patience = ctx.remaining() / 2;
        let mut connection = match tokio::time::timeout(patience, self.pool.acquire()).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(sqlx::Error::PoolTimedOut)) | Err(_) => {
                return Err(self.why_no_connection(patience, &ctx).await.into());
            }
            Ok(Err(error)) => return Err(error.into()),
        };
        let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *connection).await?;
        if one != 1 {
            return Err(format!("SELECT 1 returned {one}").into());
        }
        drop(connection);
        Ok(super::pool_outcome(self.pool.size(), self.pool.num_idle()))
    }
}

impl PostgresCheck {
    /// Why the pool handed out no connection in `waited`.
    async fn why_no_connection(&self, waited: Duration, ctx: &CheckContext) -> String {
        let waited = humantime::format_duration(waited);
        // The pool's size counts connections still being opened (another task's attempt
        // against a database that is down), so it cannot tell a saturated pool from an
        // unreachable database: one direct attempt can.
        let options = self.pool.connect_options();
        let attempt = tokio::time::timeout(ctx.remaining(), options.connect()).await;
        let (size, idle) = (self.pool.size(), self.pool.num_idle());
        match attempt {
            Ok(Err(error)) => format!("cannot connect: {error}"),
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                if size > 0 {
                    format!(
                        "no free connection in the pool within {waited} (size {size}, idle {idle}): the pool is saturated"
                    )
                } else {
                    format!("the pool opened no connection within {waited}, although the database accepts connections")
                }
            }
            Err(_) => format!("cannot connect: no answer within the check's timeout (the pool waited {waited})"),
        }
    }
}
