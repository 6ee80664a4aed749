use std::sync::Arc;

use lapin::Connection;
use tokio::sync::watch;

use crate::{Check, CheckContext, CheckResult};

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

    /// Check whatever connection `current` holds at each run.
    pub fn watching(current: watch::Receiver<Option<Arc<Connection>>>) -> Self {
        Self {
            source: Source::Watch(current),
        }
    }
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
