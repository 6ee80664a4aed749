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
//!     println!("jobs consumer: {report}"); // 65 acked, 0 requeued, ...
//! });
//! # Ok(()) }
//! ```

use std::{fmt, future::Future, sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::{
    Channel, Connection, Consumer,
    message::Delivery,
    options::{BasicAckOptions, BasicCancelOptions, BasicNackOptions},
};
use serde::Serialize;
use tokio::{sync::watch, task::JoinSet};

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
    /// The last broker or connection error: why a [`ConsumerDrain`] ended, or, for the
    /// reconnecting consumer, the last failure it recovered from (or was still retrying when the
    /// shutdown came). `None` when the broker never failed.
    pub error: Option<String>,
}

/// One line for people: `65 acked, 0 requeued, 1 rejected, 3 returned at stop, 0 panicked`,
/// followed by `; last broker error: ...` when the broker or the connection failed.
impl fmt::Display for ConsumerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} acked, {} requeued, {} rejected, {} returned at stop, {} panicked",
            self.acked, self.requeued, self.rejected, self.returned_at_stop, self.panicked
        )?;
        match &self.error {
            Some(error) => write!(f, "; last broker error: {error}"),
            None => Ok(()),
        }
    }
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
        tracing::info!(
            acked = report.acked,
            requeued = report.requeued,
            rejected = report.rejected,
            returned_at_stop = report.returned_at_stop,
            panicked = report.panicked,
            error = report.error.as_deref(),
            "consumer drained"
        );
        report
    }
}

/// A consumer that survives the broker going away: it waits for a connection, subscribes,
/// consumes with a [`ConsumerDrain`], and when the connection or channel fails it subscribes
/// again on the next connection; when the [`ShutdownToken`] fires it drains and returns.
///
/// Give it the `watch` channel of a reconnecting connection (for example from
/// `cutover_health::checks::RabbitMqCheck::reconnecting`) and a `subscribe` function that
/// declares what it needs on a fresh connection and returns the channel, the consumer and the
/// handler to run deliveries through.
///
/// ```no_run
/// use std::sync::Arc;
/// use cutover_shutdown::{ShutdownToken, rabbitmq::{Disposition, Reconnecting}};
/// use lapin::{Connection, options::BasicConsumeOptions, types::FieldTable};
///
/// # async fn run(connection: tokio::sync::watch::Receiver<Option<Arc<Connection>>>, stop: ShutdownToken) {
/// let report = Reconnecting::new(connection)
///     .concurrency(4)
///     .run(stop, |connection| async move {
///         let channel = connection.create_channel().await?;
///         let consumer = channel
///             .basic_consume("jobs".into(), "worker".into(), BasicConsumeOptions::default(), FieldTable::default())
///             .await?;
///         let handler = |_delivery: Arc<lapin::message::Delivery>| async { Disposition::Ack };
///         Ok((channel, consumer, handler))
///     })
///     .await;
/// # }
/// ```
#[derive(Debug)]
pub struct Reconnecting {
    connection: watch::Receiver<Option<Arc<Connection>>>,
    concurrency: usize,
    retry: Duration,
}

impl Reconnecting {
    /// Consume on whichever connection `connection` holds (`None` while disconnected).
    pub fn new(connection: watch::Receiver<Option<Arc<Connection>>>) -> Self {
        Self {
            connection,
            concurrency: 1,
            retry: Duration::from_secs(1),
        }
    }

    /// Deliveries handled at once (default 1); match it with the channel's `basic.qos`.
    pub fn concurrency(mut self, deliveries: usize) -> Self {
        self.concurrency = deliveries.max(1);
        self
    }

    /// Pause before subscribing again after a failure (default 1 s).
    pub fn retry_after(mut self, pause: Duration) -> Self {
        self.retry = pause;
        self
    }

    /// Consume until `stop` fires, then drain. The report adds up every subscription's;
    /// its `error` is the last failure that led to a new subscription, if any.
    pub async fn run<S, SFut, H, Fut>(mut self, stop: ShutdownToken, mut subscribe: S) -> ConsumerReport
    where
        S: FnMut(Arc<Connection>) -> SFut,
        SFut: Future<Output = Result<(Channel, Consumer, H), lapin::Error>>,
        H: Fn(Arc<Delivery>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Disposition> + Send + 'static,
    {
        let mut total = ConsumerReport::default();
        loop {
            let connection = tokio::select! {
                current = self.connection.wait_for(Option::is_some) => match current {
                    Ok(current) => current.clone(),
                    Err(_) => return total, // the connection task is gone
                },
                () = stop.cancelled() => return total,
            };
            let Some(connection) = connection else { continue };
            match subscribe(connection).await {
                Ok((channel, consumer, handler)) => {
                    let report = ConsumerDrain::new(channel)
                        .concurrency(self.concurrency)
                        .run(consumer, stop.clone(), handler)
                        .await;
                    total.acked += report.acked;
                    total.requeued += report.requeued;
                    total.rejected += report.rejected;
                    total.returned_at_stop += report.returned_at_stop;
                    total.panicked += report.panicked;
                    if stop.is_cancelled() {
                        return total; // drained for the shutdown
                    }
                    // The broker cancelled the consumer or the connection went away.
                    let error = report
                        .error
                        .unwrap_or_else(|| "the consumer ended (channel or connection closed)".to_owned());
                    tracing::warn!(%error, "consumer lost; subscribing again");
                    total.error = Some(error);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot subscribe yet; retrying");
                    total.error = Some(error.to_string());
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.retry) => {}
                () = stop.cancelled() => return total,
            }
        }
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

#[cfg(test)]
mod tests {
    use super::ConsumerReport;

    #[test]
    fn report_reads_as_a_sentence() {
        let mut report = ConsumerReport {
            acked: 65,
            rejected: 1,
            returned_at_stop: 3,
            ..ConsumerReport::default()
        };
        assert_eq!(
            report.to_string(),
            "65 acked, 0 requeued, 1 rejected, 3 returned at stop, 0 panicked"
        );
        report.error = Some("connection reset".to_owned());
        assert!(
            report
                .to_string()
                .ends_with("0 panicked; last broker error: connection reset")
        );
    }
}
