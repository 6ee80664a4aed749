use redis::aio::ConnectionManager;

use crate::{Check, CheckContext, CheckResult};

/// `PING` through the application's `ConnectionManager`; anything but `PONG` fails.
///
/// The manager reconnects by itself after a failure, so the check recovers when Redis comes
/// back. Create it with `ConnectionManager::new_lazy_with_config` to let the service start
/// while Redis is down.
#[derive(Clone)]
pub struct RedisCheck {
    connection: ConnectionManager,
}

impl RedisCheck {
    /// Check through `connection` (a clone shares the application's connection).
    pub fn new(connection: ConnectionManager) -> Self {
        Self { connection }
    }
}

impl std::fmt::Debug for RedisCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCheck").finish_non_exhaustive()
    }
}

impl Check for RedisCheck {
    async fn check(&self, _ctx: CheckContext) -> CheckResult {
        let mut connection = self.connection.clone();
        let reply: String = redis::cmd("PING").query_async(&mut connection).await?;
        if reply != "PONG" {
            return Err(format!("PING answered {reply:?} instead of PONG").into());
        }
        Ok(crate::Outcome::healthy())
    }
}
