//! The HTTP server under [`Service`](crate::Service): hyper's HTTP/1.1 and HTTP/2 connections,
//! with the connection-level [`Limits`] that `axum::serve` does not have.
//!
//! - At most `max_connections` connections. At the limit, a new connection makes the oldest
//!   connection that never sent a whole request close (a flood of half-open connections
//!   cannot lock out probes and real clients); when every connection has sent one, new
//!   connections wait in the kernel's backlog.
//! - A request head must arrive whole within the header read timeout of its first byte (of
//!   accept, for a connection's first request). The wait between kept-alive requests is not
//!   a head: it is governed by the idle timeout alone.
//! - A connection with no request in progress for the idle timeout is closed (HTTP/2: a
//!   GOAWAY). Bytes that carry no request (HTTP/2 PINGs) do not keep it open. A response
//!   body still streaming is a request in progress.
//! - When the service starts draining, every HTTP/2 connection gets a GOAWAY, so clients open
//!   their next stream elsewhere while in-flight ones finish. HTTP/1.1 connections stay open
//!   through the drain delay, while proxies may still route here: closing an idle one under a
//!   proxy that is about to reuse it is the keep-alive race (a reset, a 502 for a POST); each
//!   request on it is answered with the drain layer's `Connection: close` instead.
//! - When the drain delay is over (stopping), a connection that carries no request (an idle
//!   keep-alive connection, a head still arriving) is closed at once; when the server is told
//!   to stop, the rest close gracefully.

mod connection;

use std::{collections::BTreeMap, future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use cutover_core::PhaseWatch;
use hyper_util::{
    rt::{TokioExecutor, TokioTimer},
    server::conn::auto,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinSet,
};

use self::connection::Activity;

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
        let open = Arc::new(OpenConnections::default());
        let (stopping, _) = tokio::sync::watch::channel(false);
        let mut connections = JoinSet::new();
        // A connection accepted at the limit, waiting for the slot of one made to leave.
        let mut waiting: Option<(TcpStream, SocketAddr)> = None;
        let mut stop = std::pin::pin!(stop);
        loop {
            let (stream, remote, slot) = tokio::select! {
                biased;
                () = &mut stop => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                slot = Arc::clone(&slots).acquire_owned(), if waiting.is_some() => {
                    let (Ok(slot), Some((stream, remote))) = (slot, waiting.take()) else { continue };
                    (stream, remote, slot)
                }
                accepted = accept(&listener), if waiting.is_none() => {
                    let Some((stream, remote)) = accepted else { continue };
                    match Arc::clone(&slots).try_acquire_owned() {
                        Ok(slot) => (stream, remote, slot),
                        Err(_) => {
                            // At the limit: the oldest connection that never sent a request
                            // makes room, so a flood of half-open connections cannot lock
                            // out probes and real clients. With none, this one waits for a
                            // slot and the next ones wait in the kernel's backlog.
                            open.evict_oldest_unserved();
                            waiting = Some((stream, remote));
                            continue;
                        }
                    }
                }
            };
            let signals = connection::Signals {
                phase: phase.clone(),
                stopping: stopping.subscribe(),
            };
            let activity = open.register();
            let open = Arc::clone(&open);
            let shared = Arc::clone(&shared);
            connections.spawn(async move {
                let id = activity.0;
                connection::serve(stream, remote, shared, signals, activity.1, slot).await;
                open.remove(id);
            });
        }
        drop(listener);
        drop(waiting);
        let _ = stopping.send(true);
        while connections.join_next().await.is_some() {}
        Ok(())
    }
}

/// The open connections in the order they were accepted, to find the oldest one that never
/// sent a request.
#[derive(Default)]
struct OpenConnections {
    inner: std::sync::Mutex<OpenInner>,
}

#[derive(Default)]
struct OpenInner {
    next: u64,
    by_age: BTreeMap<u64, Arc<Activity>>,
}

impl OpenConnections {
    fn register(&self) -> (u64, Arc<Activity>) {
        let activity = Arc::new(Activity::new());
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = inner.next;
        inner.next += 1;
        inner.by_age.insert(id, Arc::clone(&activity));
        (id, activity)
    }

    fn remove(&self, id: u64) {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_age
            .remove(&id);
    }

    /// Tell the oldest connection that never sent a request to close; whether there was one.
    fn evict_oldest_unserved(&self) -> bool {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(victim) = inner.by_age.values().find(|activity| activity.is_unserved()) else {
            return false;
        };
        victim.evict();
        true
    }
}

/// The next connection. Errors accepting (out of file descriptors, a connection reset before
/// it was accepted) are logged and retried after a pause, as `axum::serve` does; they never
/// end the server.
async fn accept(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok((stream, remote)) => {
            let _ = stream.set_nodelay(true);
            Some((stream, remote))
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
        // The connection task enforces it from a head's first byte: hyper's own clock would
        // also run during the idle wait between kept-alive requests.
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_size);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX))
        // WebSockets over HTTP/2 (RFC 8441), as `axum::serve` allows.
        .enable_connect_protocol();
    builder
}
