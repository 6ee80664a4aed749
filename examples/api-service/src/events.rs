//! `user.created` events, published to RabbitMQ when `AMQP_URL` is set.
//!
//! Topology (declared by publisher and consumers alike, so either may start first): a durable
//! topic exchange ([`EXCHANGE`] unless configured); messages are persistent JSON with routing keys `user.created`
//! and `user.updated`. The worker service binds its queue to `user.*`.
//!
//! Publishing waits for the broker's confirm. If the broker is unreachable the user is still
//! created and the failure is logged: a service that must never miss an event writes it to an
//! outbox table in the same transaction and publishes from there.

use std::sync::Arc;

use lapin::{
    BasicProperties, Channel, Connection, ExchangeKind,
    options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions},
    types::{AMQPValue, FieldTable},
};
use serde::Serialize;
use tokio::sync::{Mutex, watch};

use crate::users::User;

/// The default exchange user events go to.
pub const EXCHANGE: &str = "users";

/// One event, as the worker reads it.
#[derive(Debug, Clone, Serialize)]
pub struct UserEvent<'a> {
    /// Unique per event: `user.created:42`. Consumers store it as the document `_id`, so a
    /// redelivered event is stored once.
    pub id: String,
    /// `user.created` or `user.updated`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The user.
    pub user_id: i64,
    /// When it happened, RFC 3339.
    pub timestamp: &'a str,
    /// The `User-Agent` of the request that caused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<&'a str>,
    /// Details.
    pub data: serde_json::Value,
}

impl<'a> UserEvent<'a> {
    /// The event for a user just created.
    pub fn created(user: &'a User, user_agent: Option<&'a str>) -> Self {
        Self {
            id: format!("user.created:{}", user.id),
            kind: "user.created",
            user_id: user.id,
            timestamp: &user.created_at,
            user_agent,
            data: serde_json::json!({ "username": user.username }),
        }
    }

    /// The event for a user just changed; the id includes the change's time, so each change
    /// is its own event.
    pub fn updated(user: &'a User, user_agent: Option<&'a str>) -> Self {
        Self {
            id: format!("user.updated:{}:{}", user.id, user.updated_at),
            kind: "user.updated",
            user_id: user.id,
            timestamp: &user.updated_at,
            user_agent,
            data: serde_json::json!({ "username": user.username, "is_active": user.is_active }),
        }
    }
}

/// Publishes on the current connection, with one confirmed channel kept between events.
#[derive(Clone)]
pub struct Events {
    exchange: String,
    connection: watch::Receiver<Option<Arc<Connection>>>,
    channel: Arc<Mutex<Option<Channel>>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    /// Publish to `exchange` through whichever connection `connection` holds.
    pub fn new(exchange: impl Into<String>, connection: watch::Receiver<Option<Arc<Connection>>>) -> Self {
        Self {
            exchange: exchange.into(),
            connection,
            channel: Arc::default(),
        }
    }

    /// Publish `event` and wait for the broker to confirm it.
    pub async fn publish(&self, event: &UserEvent<'_>) -> Result<(), String> {
        let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
        let mut cached = self.channel.lock().await;
        let channel = match cached.as_ref().filter(|c| c.status().connected()) {
            Some(channel) => channel.clone(),
            None => {
                let channel = self.open().await?;
                *cached = Some(channel.clone());
                channel
            }
        };
        drop(cached);
        let confirm = channel
            .basic_publish(
                self.exchange.as_str().into(),
                event.kind.into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into())
                    .with_message_id(event.id.clone().into())
                    // The request's trace continues in whoever consumes the event.
                    .with_headers(trace_headers()),
            )
            .await
            .map_err(|e| format!("cannot publish: {e}"))?
            .await
            .map_err(|e| format!("the broker did not confirm: {e}"))?;
        if confirm.is_nack() {
            return Err("the broker refused the event (nack)".to_owned());
        }
        Ok(())
    }

    async fn open(&self) -> Result<Channel, String> {
        let connection = self.connection.borrow().clone().ok_or("not connected to RabbitMQ")?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| format!("cannot open a channel: {e}"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("cannot enable confirms: {e}"))?;
        channel
            .exchange_declare(
                self.exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("cannot declare the `{}` exchange: {e}", self.exchange))?;
        Ok(channel)
    }
}

/// The current trace's W3C context (`traceparent`, ...) as AMQP message headers; empty when
/// traces are not exported.
pub fn trace_headers() -> FieldTable {
    let mut headers = FieldTable::default();
    for (name, value) in cutover::telemetry::trace_context() {
        headers.insert(name.into(), AMQPValue::LongString(value.into()));
    }
    headers
}
