//! A RabbitMQ connection that is (re)established in the background.
//!
//! The service must start, and report "not ready", while RabbitMQ is down, then recover on its
//! own. So the connection lives behind a `watch` channel: `None` while disconnected, the open
//! connection otherwise. The health check and any publisher read the current value.

use std::{sync::Arc, time::Duration};

use cutover::health::redact::redact;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::watch;

const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const STATUS_POLL: Duration = Duration::from_millis(500);

/// Connect to `url` in a background task, reconnecting with backoff whenever the connection is
/// lost. The task ends when every receiver is dropped.
pub fn connect_in_background(url: String) -> watch::Receiver<Option<Arc<Connection>>> {
    let (current, receiver) = watch::channel(None);
    tokio::spawn(async move {
        let mut backoff = MIN_BACKOFF;
        let mut reported_failure = false;
        while !current.is_closed() {
            match Connection::connect(
                &url,
                ConnectionProperties::default().with_connection_name("api-service".into()),
            )
            .await
            {
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
