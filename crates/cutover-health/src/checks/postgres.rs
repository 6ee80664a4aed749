use sqlx::PgPool;

use crate::{Check, CheckContext, CheckResult};

/// `SELECT 1` on the application's PostgreSQL pool. Reports the pool's size and idle count.
///
/// The check borrows a connection from the pool like any request would, so it also notices a
/// saturated pool. If the application's pool may be starved on purpose (long batch jobs),
/// give the check a small pool of its own with `max_connections(1)`.
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
    async fn check(&self, _ctx: CheckContext) -> CheckResult {
        let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&self.pool).await?;
        if one != 1 {
            return Err(format!("SELECT 1 returned {one}").into());
        }
        Ok(super::pool_outcome(self.pool.size(), self.pool.num_idle()))
    }
}
