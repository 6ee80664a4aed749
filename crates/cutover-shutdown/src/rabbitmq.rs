//! Draining a RabbitMQ consumer (lapin) on shutdown, without losing or duplicating messages.
//!
//! When the [`ShutdownToken`] fires, [`ConsumerDrain::run`]:
//!
//! 1. sends `basic.cancel`, so the broker stops delivering to this consumer;
//! 2. lets the deliveries already being handled finish, and acks them;
//! 3. rejects with requeue (`basic.nack`, `requeue = true`) every delivery not yet started:
//!    the ones prefetched before the cancel and any that were in flight on the wire, so the
//!    broker hands them to another consumer at once instead of after this connection dies;
//! 4. closes the channel (and the connection, if it was given one).
//!
//! Run it as a [`Workers`](crate::Workers) task, so the shutdown waits for it within its
//! timeout:
//!
//! ```no_run
//! use cutover_shutdown::{Shutdown, rabbitmq::{ConsumerDrain, Disposition}};
//! use lapin::{options::BasicConsumeOptions, types::FieldTable};
//!
//! # async fn run(shutdown: &Shutdown, channel: lapin::Channel) -> Result<(), lapin::Error> {
//! let consumer = channel
//!     .basic_consume("jobs".into(), "worker".into(), BasicConsumeOptions::default(), FieldTable::default())
//!     .await?;
//! shutdown.workers().spawn("jobs consumer", move |stop| async move {
//!     let report = ConsumerDrain::new(channel)
//!         .concurrency(4)
//!         .run(consumer, stop, |delivery| async move {
//!             // handle delivery.data ...
//!             Disposition::Ack
//!         })
//!         .await;
//!     tracing::info!(?report, "consumer drained");
//! });
//! # Ok(()) }
//! ```

use std::{future::Future, sync::Arc};

use futures_util::StreamExt;
use lapin::{
    Channel, Connection, Consumer,
    message::Delivery,
    options::{BasicAckOptions, BasicCancelOptions, BasicNackOptions},
};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::ShutdownToken;

/// What to do with a delivery once the handler is done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Processed: remove it from the queue.
    Ack,
    /// Could not process now: put it back for another attempt.
    Requeue,
    /// Never processable: drop it (or dead-letter it, if the queue has a dead-letter exchange).
    Reject,
}

/// Counts of what happened to the deliveries a [`ConsumerDrain`] received.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConsumerReport {
    /// Acked after the handler returned [`Disposition::Ack`].
    pub acked: u64,
    /// Requeued by the handler ([`Disposition::Requeue`]).
    pub requeued: u64,
    /// Rejected by the handler ([`Disposition::Reject`]).
    pub rejected: u64,
    /// Not started before the shutdown and given back to the broker.
    pub returned_at_stop: u64,
    /// Handlers that panicked (their delivery was requeued).
    pub panicked: u64,
    /// The consumer stopped because of a broker or connection error, not a shutdown.
    pub error: Option<String>,
}

/// Runs a consumer and drains it on shutdown. See the [module docs](self).
#[derive(Debug)]
pub struct ConsumerDrain {
    channel: Channel,
    connection: Option<Arc<Connection>>,
    concurrency: usize,
}

impl ConsumerDrain {
    /// Drain consumers of `channel`, handling one delivery at a time.
    pub fn new(channel: Channel) -> Self {
        Self {
            channel,
            connection: None,
            concurrency: 1,
        }
    }

    /// Handle up to `deliveries` at once (keep it at or below the channel's prefetch count).
    pub fn concurrency(mut self, deliveries: usize) -> Self {
        self.concurrency = deliveries.max(1);
        self
    }

    /// Also close this connection once the channel is closed.
    pub fn close_connection(mut self, connection: Arc<Connection>) -> Self {
        self.connection = Some(connection);
        self
    }

    /// Consume until `stop` fires (or the consumer ends), then drain and close.
    pub async fn run<H, Fut>(self, mut consumer: Consumer, stop: ShutdownToken, handler: H) -> ConsumerReport
    where
        H: Fn(Arc<Delivery>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Disposition> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let mut report = ConsumerReport::default();
        let mut in_progress: JoinSet<(Arc<Delivery>, Option<Disposition>)> = JoinSet::new();
        let mut cancelled = false;
        let mut ended = false;

        while !(ended && in_progress.is_empty()) {
            tokio::select! {
                biased;
                () = stop.cancelled(), if !cancelled => {
                    cancelled = true;
                    tracing::info!(consumer = %consumer.tag(), in_progress = in_progress.len(), "stopping the consumer: basic.cancel");
                    if let Err(error) = self.channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await {
                        report.error.get_or_insert_with(|| error.to_string());
                        ended = true;
                    }
                }
                Some(joined) = in_progress.join_next() => {
                    let (delivery, disposition) = match joined {
                        Ok(done) => done,
                        Err(join_error) => {
                            // The task is gone with its delivery; the broker redelivers it
                            // when the channel closes.
                            report.error.get_or_insert_with(|| format!("handler task failed: {join_error}"));
                            continue;
                        }
                    };
                    settle(&delivery, disposition, &mut report).await;
                }
                next = consumer.next(), if !ended && in_progress.len() < self.concurrency => match next {
                    Some(Ok(delivery)) if cancelled => {
                        // Delivered before the broker processed the cancel: give it back now.
                        if delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await.is_ok() {
                            report.returned_at_stop += 1;
                        }
                    }
                    Some(Ok(delivery)) => {
                        let delivery = Arc::new(delivery);
                        let handler = Arc::clone(&handler);
                        in_progress.spawn(async move {
                            let handled = tokio::spawn((handler)(Arc::clone(&delivery))).await;
                            (delivery, handled.ok())
                        });
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "consumer failed");
                        report.error.get_or_insert_with(|| error.to_string());
                        ended = true;
                    }
                    None => ended = true,
                },
            }
        }

        if let Err(error) = self.channel.close(200, "consumer drained".into()).await {
            tracing::debug!(%error, "closing the consumer channel");
        }
        if let Some(connection) = self.connection
            && let Err(error) = connection.close(200, "consumer drained".into()).await
        {
            tracing::debug!(%error, "closing the consumer connection");
        }
        tracing::info!(?report, "consumer drained");
        report
    }
}

async fn settle(delivery: &Delivery, disposition: Option<Disposition>, report: &mut ConsumerReport) {
    let requeue = |requeue| BasicNackOptions {
        requeue,
        ..Default::default()
    };
    let (result, counter) = match disposition {
        Some(Disposition::Ack) => (delivery.acker.ack(BasicAckOptions::default()).await, &mut report.acked),
        Some(Disposition::Requeue) => (delivery.acker.nack(requeue(true)).await, &mut report.requeued),
        Some(Disposition::Reject) => (delivery.acker.nack(requeue(false)).await, &mut report.rejected),
        None => (delivery.acker.nack(requeue(true)).await, &mut report.panicked),
    };
    match result {
        Ok(_) => *counter += 1,
        Err(error) => {
            tracing::warn!(%error, delivery_tag = delivery.delivery_tag, "could not settle a delivery");
            report.error.get_or_insert_with(|| error.to_string());
        }
    }
}
