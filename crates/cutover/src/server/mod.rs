//! The HTTP server under [`Service`](crate::Service): hyper's HTTP/1.1 and HTTP/2 connections,
//! with the connection-level [`Limits`] that `axum::serve` does not have.
//!
//! - At most `max_connections` connections: past that, the listener is not polled and new
//!   connections wait in the kernel's backlog.
//! - A connection must send a whole request head within the header read timeout of being
//!   accepted (hyper enforces it again for the next request of a kept-alive HTTP/1.1
//!   connection, from its first byte).
//! - A connection with no request in progress and no bytes moving for the idle timeout is
//!   closed gracefully; one that still does not finish is dropped after another idle period.
//! - When the service starts draining, every HTTP/2 connection that has served a request gets
//!   a GOAWAY, the HTTP/2 twin of the `Connection: close` the drain layer adds to HTTP/1.1
//!   responses: clients open their next stream elsewhere while in-flight ones finish.
//! - When the server is told to stop, every connection closes gracefully.

mod connection;

use std::{future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use cutover_core::PhaseWatch;
use hyper_util::{
    rt::{TokioExecutor, TokioTimer},
    server::conn::auto,
};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet};

use crate::{Limits, stack::App};

/// One listener and the app it serves.
pub(crate) struct Server {
    pub(crate) listener: TcpListener,
    pub(crate) app: App,
    pub(crate) limits: Limits,
    /// The service's phase: draining sends HTTP/2 connections a GOAWAY.
    pub(crate) phase: PhaseWatch,
}

/// What every connection task shares.
pub(crate) struct Shared {
    pub(crate) app: App,
    pub(crate) builder: auto::Builder<TokioExecutor>,
    pub(crate) limits: Limits,
}

impl Server {
    /// The address it listens on.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Accept and serve until `stop` resolves, then close every connection gracefully and
    /// wait for them. Dropping the returned future drops every connection.
    pub(crate) async fn run(self, stop: impl Future<Output = ()>) -> io::Result<()> {
        let Self {
            listener,
            app,
            limits,
            phase,
        } = self;
        let shared = Arc::new(Shared {
            builder: builder(&limits),
            app,
            limits,
        });
        let slots = Arc::new(Semaphore::new(shared.limits.max_connections));
        let (stopping, _) = tokio::sync::watch::channel(false);
        let mut connections = JoinSet::new();
        let mut stop = std::pin::pin!(stop);
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut stop => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                accepted = accept(&listener, &slots) => accepted,
            };
            let Some((stream, remote, slot)) = accepted else {
                continue;
            };
            let signals = connection::Signals {
                phase: phase.clone(),
                stopping: stopping.subscribe(),
            };
            connections.spawn(connection::serve(stream, remote, Arc::clone(&shared), signals, slot));
        }
        drop(listener);
        let _ = stopping.send(true);
        while connections.join_next().await.is_some() {}
        Ok(())
    }
}

/// The next connection, once a slot is free. Errors accepting (out of file descriptors, a
/// connection reset before it was accepted) are logged and retried after a pause, as
/// `axum::serve` does; they never end the server.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> Option<(tokio::net::TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
    let slot = Arc::clone(slots).acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, remote)) => {
            let _ = stream.set_nodelay(true);
            Some((stream, remote, slot))
        }
        Err(error) => {
            if !is_connection_error(&error) {
                tracing::error!(%error, "cannot accept connections; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        }
    }
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_size);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX))
        // WebSockets over HTTP/2 (RFC 8441), as `axum::serve` allows.
        .enable_connect_protocol();
    builder
}
