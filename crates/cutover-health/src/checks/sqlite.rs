use sqlx::SqlitePool;

use crate::{Check, CheckContext, CheckResult};

/// `SELECT 1` on the application's SQLite pool. Reports the pool's size and idle count.
#[derive(Debug, Clone)]
pub struct SqliteCheck {
    pool: SqlitePool,
}

impl SqliteCheck {
    /// Check through `pool` (a clone shares the application's pool).
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

impl Check for SqliteCheck {
    async fn check(&self, _ctx: CheckContext) -> CheckResult {
        let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&self.pool).await?;
        if one != 1 {
            return Err(format!("SELECT 1 returned {one}").into());
        }
        Ok(super::pool_outcome(self.pool.size(), self.pool.num_idle()))
    }
}
