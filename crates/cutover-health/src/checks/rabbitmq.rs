use std::{sync::Arc, time::Duration};

use lapin::{Connection, ConnectionProperties};
use tokio::sync::watch;

use crate::{Check, CheckContext, CheckResult, redact::redact};

/// RabbitMQ: the connection must be open, and the broker must answer a channel open/close
/// round-trip. Never declares queues or publishes.
///
/// Give it the application's connection, or a [`watch`] channel through which a reconnecting
/// task publishes its current connection (`None` while disconnected); the check then follows
/// reconnects, and reports "not connected" rather than failing the service's startup.
#[derive(Debug, Clone)]
pub struct RabbitMqCheck {
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Fixed(Arc<Connection>),
    Watch(watch::Receiver<Option<Arc<Connection>>>),
}

impl RabbitMqCheck {
    /// Check the application's connection.
    pub fn new(connection: Arc<Connection>) -> Self {
        Self {
            source: Source::Fixed(connection),
        }
    }

    /// Connect to `url` in a background task that reconnects with backoff (250 ms to 5 s)
    /// whenever the connection is lost, and check whichever connection it holds: a service
    /// whose broker is down at start-up starts anyway, reports "not connected", and recovers
    /// on its own. The receiver is for the service's own publishers and consumers; the task
    /// ends when every receiver is dropped. Must be called inside a tokio runtime.
    ///
    /// ```no_run
    /// # async fn run() {
    /// use cutover_health::checks::RabbitMqCheck;
    ///
    /// let (check, connection) = RabbitMqCheck::reconnecting("amqp://guest:guest@localhost:5672/%2f", "my-service");
    /// // register `check`; publish with `connection.borrow().clone()` when it is `Some`
    /// # }
    /// ```
    pub fn reconnecting(url: &str, name: &str) -> (Self, watch::Receiver<Option<Arc<Connection>>>) {
        let current = connect_in_background(url.to_owned(), name.to_owned());
        (Self::watching(current.clone()), current)
    }

    /// Check whatever connection `current` holds at each run.
    pub fn watching(current: watch::Receiver<Option<Arc<Connection>>>) -> Self {
        Self {
            source: Source::Watch(current),
        }
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const STATUS_POLL: Duration = Duration::from_millis(500);

fn connect_in_background(url: String, name: String) -> watch::Receiver<Option<Arc<Connection>>> {
    let (current, receiver) = watch::channel(None);
    tokio::spawn(async move {
        let mut backoff = MIN_BACKOFF;
        let mut reported_failure = false;
        while !current.is_closed() {
            let properties = ConnectionProperties::default().with_connection_name(name.clone().into());
            match Connection::connect(&url, properties).await {
                Ok(connection) => {
                    tracing::info!(url = %redact(&url), "connected to RabbitMQ");
                    backoff = MIN_BACKOFF;
                    reported_failure = false;
                    let connection = Arc::new(connection);
                    current.send_replace(Some(Arc::clone(&connection)));
                    while connection.status().connected() && !current.is_closed() {
                        tokio::time::sleep(STATUS_POLL).await;
                    }
                    current.send_replace(None);
                    tracing::warn!("lost the RabbitMQ connection; reconnecting");
                }
                Err(error) => {
                    // One warning per outage, not one per attempt.
                    if !reported_failure {
                        tracing::warn!(error = %redact(&error.to_string()), "cannot connect to RabbitMQ; retrying");
                        reported_failure = true;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
    receiver
}

impl Check for RabbitMqCheck {
    async fn check(&self, _ctx: CheckContext) -> CheckResult {
        let connection = match &self.source {
            Source::Fixed(connection) => Arc::clone(connection),
            Source::Watch(current) => current.borrow().clone().ok_or("not connected to RabbitMQ")?,
        };
        let status = connection.status();
        if !status.connected() {
            let state = if status.connecting() || status.reconnecting() {
                "reconnecting"
            } else if status.blocked() {
                "blocked by the broker"
            } else {
                "closed"
            };
            return Err(format!("RabbitMQ connection is {state}").into());
        }
        if status.blocked() {
            return Ok(crate::Outcome::degraded(
                "the broker blocked publishing (resource alarm)",
            ));
        }
        let channel = connection.create_channel().await?;
        channel.close(200, "health check".into()).await?;
        Ok(crate::Outcome::healthy())
    }
}
