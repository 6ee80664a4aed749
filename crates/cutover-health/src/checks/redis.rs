use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{Check, CheckContext, CheckResult};

/// `PING` through the application's `ConnectionManager`; anything but `PONG` fails.
///
/// **Lazy by default.** [`RedisCheck::lazy`] builds the manager from a `redis::Client` without
/// connecting, so the service starts while Redis is down (its readiness fails until Redis
/// answers), and hands the manager to the application with [`manager`](Self::manager):
///
/// ```no_run
/// use cutover_health::{checks::RedisCheck, redis};
///
/// # fn main() -> Result<(), redis::RedisError> {
/// let client = redis::Client::open("redis://127.0.0.1:6379")?; // parses, connects to nothing
/// let check = RedisCheck::lazy(client)?;
/// let cache = check.manager(); // the application's connection, shared with the check
/// # drop(cache);
/// # Ok(())
/// # }
/// ```
///
/// The manager reconnects by itself after a failure, so the check recovers when Redis comes
/// back. **The real cause, not a timeout:** a check that knows the client (`lazy`, or
/// [`with_client`](Self::with_client)) waits for `PING` half of its time, then spends the
/// other half on one direct connection attempt and reports what it says (`connection
/// refused`, a DNS failure, an authentication error) instead of `timed out`.
#[derive(Clone)]
pub struct RedisCheck {
    connection: ConnectionManager,
    client: Option<redis::Client>,
}

impl RedisCheck {
    /// Check through `connection` (a clone shares the application's connection).
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            client: None,
        }
    }

    /// A check with a connection manager made from `client` without connecting: the service
    /// starts while Redis is down. Connection and response timeouts are 2 s, and a failed
    /// command is retried once, so a request never waits long on a Redis that is away. Share
    /// the manager with [`manager`](Self::manager).
    pub fn lazy(client: redis::Client) -> redis::RedisResult<Self> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            connection,
            client: Some(client),
        })
    }

    /// Diagnose a `PING` that gets no answer with one direct connection through `client`.
    pub fn with_client(mut self, client: redis::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The connection manager the check uses: a clone shares its connection.
    pub fn manager(&self) -> ConnectionManager {
        self.connection.clone()
    }
}

impl std::fmt::Debug for RedisCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCheck").finish_non_exhaustive()
    }
}

impl Check for RedisCheck {
    async fn check(&self, ctx: CheckContext) -> CheckResult {
        let mut connection = self.connection.clone();
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        let reply = match &self.client {
            None => ping.await?,
            Some(client) => {
                let patience = ctx.remaining() / 2;
                match tokio::time::timeout(patience, ping).await {
                    Ok(reply) => reply?,
                    Err(_) => return Err(why_no_answer(client, patience, &ctx).await.into()),
                }
            }
        };
        if reply != "PONG" {
            return Err(format!("PING answered {reply:?} instead of PONG").into());
        }
        Ok(crate::Outcome::healthy())
    }
}

/// Why `PING` got no answer in `waited`: what one direct connection attempt says.
async fn why_no_answer(client: &redis::Client, waited: Duration, ctx: &CheckContext) -> String {
    let waited = humantime::format_duration(waited);
    match tokio::time::timeout(ctx.remaining(), client.get_multiplexed_async_connection()).await {
        Ok(Err(error)) => format!("cannot connect: {error}"),
        Ok(Ok(_)) => format!("PING got no answer within {waited}, although Redis accepts connections"),
        Err(_) => format!("cannot connect: no answer within the check's timeout (PING waited {waited})"),
    }
}
