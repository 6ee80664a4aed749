//! One connection: hyper drives the protocol; this task watches the clock around it (head,
//! idle), and closes it gracefully when the service drains (HTTP/2) or stops.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::{Pin, pin},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    response::Response,
};
use cutover_core::PhaseWatch;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{Notify, OwnedSemaphorePermit, watch},
    time::{Instant, sleep_until},
};
use tower::ServiceExt as _;

use super::Shared;

/// What tells a connection to close.
pub(crate) struct Signals {
    pub(crate) phase: PhaseWatch,
    pub(crate) stopping: watch::Receiver<bool>,
}

/// What the connection's IO and its requests report to the task watching it.
struct Activity {
    /// When the connection was accepted: the clock's zero for `last_moved`.
    accepted: Instant,
    /// Milliseconds after `accepted` when bytes last moved either way.
    last_moved: AtomicU64,
    /// Requests whose response has not been produced yet.
    in_flight: AtomicUsize,
    /// Whether any request arrived (the head deadline no longer applies).
    served: AtomicBool,
    /// Whether the connection speaks HTTP/2 (learned from its first request).
    http2: AtomicBool,
    /// Woken when an HTTP/2 request arrives while the service drains: time for a GOAWAY.
    goaway: Notify,
    /// Woken by the first request: the connection's deadline changes from the head's to the
    /// idle one, which may be earlier.
    first_request: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            accepted: Instant::now(),
            last_moved: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            goaway: Notify::new(),
            first_request: Notify::new(),
        }
    }

    fn moved(&self) {
        let millis = u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_moved.store(millis, Ordering::Relaxed);
    }

    fn last_moved(&self) -> Instant {
        self.accepted + Duration::from_millis(self.last_moved.load(Ordering::Relaxed))
    }
}

/// Serve one connection until it ends, it is closed for a limit, or the server stops.
pub(crate) async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    shared: Arc<Shared>,
    mut signals: Signals,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let service = ConnectionService {
        app: shared.app.clone(),
        remote,
        activity: Arc::clone(&activity),
        phase: signals.phase.clone(),
    };
    let mut connection = pin!(shared.builder.serve_connection_with_upgrades(io, service));
    let limits = &shared.limits;
    let mut closing = false;
    let mut goaway_sent = false;
    let mut phase_open = true;
    loop {
        let deadline = next_deadline(&activity, limits, closing);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%remote, %error, "connection ended with an error");
                }
                return;
            }
            Ok(()) = signals.stopping.changed(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            phase = signals.phase.changed(), if !goaway_sent && phase_open => {
                // Draining: an HTTP/2 connection that has served requests moves its next
                // streams elsewhere.
                match phase {
                    None => phase_open = false,
                    Some(phase) if phase.is_shutting_down() && activity.http2.load(Ordering::Relaxed) => {
                        goaway_sent = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    Some(_) => {}
                }
            }
            () = activity.goaway.notified(), if !goaway_sent => {
                goaway_sent = true;
                connection.as_mut().graceful_shutdown();
            }
            () = activity.first_request.notified(), if !activity.served.load(Ordering::Relaxed) => {}
            () = sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                if !expired(&activity, limits, closing) {
                    continue;
                }
                if closing {
                    tracing::debug!(%remote, "connection did not close in time; dropping it");
                    return;
                }
                tracing::debug!(%remote, served = activity.served.load(Ordering::Relaxed), "closing a connection that went quiet");
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// When to look at the connection again: the head deadline before its first request, the idle
/// deadline after; once closing, one more idle period (or head timeout) before it is dropped.
fn next_deadline(activity: &Activity, limits: &crate::Limits, closing: bool) -> Option<Instant> {
    if !activity.served.load(Ordering::Relaxed) && !closing {
        return limits.header_read_timeout.map(|timeout| activity.accepted + timeout);
    }
    let quiet = limits.idle_timeout.or(limits.header_read_timeout)?;
    Some(activity.last_moved() + quiet)
}

/// Whether the connection broke the limit whose deadline just passed.
fn expired(activity: &Activity, limits: &crate::Limits, closing: bool) -> bool {
    let now = Instant::now();
    if !activity.served.load(Ordering::Relaxed) && !closing {
        return limits
            .header_read_timeout
            .is_some_and(|timeout| now >= activity.accepted + timeout);
    }
    let Some(quiet) = limits.idle_timeout.or(limits.header_read_timeout) else {
        return false;
    };
    activity.in_flight.load(Ordering::Relaxed) == 0 && now >= activity.last_moved() + quiet
}

pin_project! {
    /// The TCP stream, noting when bytes move.
    struct Watched {
        #[pin]
        inner: TcpStream,
        activity: Arc<Activity>,
    }
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let poll = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.moved();
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let poll = this.inner.poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.moved();
        }
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let poll = this.inner.poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.moved();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// The app as hyper calls it: counts requests in progress, learns the protocol, and gives
/// handlers the peer address (`ConnectInfo<SocketAddr>`).
#[derive(Clone)]
struct ConnectionService {
    app: crate::stack::App,
    remote: SocketAddr,
    activity: Arc<Activity>,
    phase: PhaseWatch,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response;
    type Error = Infallible;
    type Future = Counted<tower::util::Oneshot<crate::stack::App, Request>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let activity = &self.activity;
        if !activity.served.swap(true, Ordering::Relaxed) {
            activity.first_request.notify_one();
        }
        if request.version() == http::Version::HTTP_2 && !activity.http2.swap(true, Ordering::Relaxed) {
            // First HTTP/2 request on a connection opened while draining: it gets its answer,
            // and the client its GOAWAY.
            if self.phase.phase().is_shutting_down() {
                activity.goaway.notify_one();
            }
        }
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(self.remote));
        Counted {
            inner: self.app.clone().oneshot(request),
            guard: InFlight(Arc::clone(activity)),
        }
    }
}

/// Counts a request as in progress until its response is produced, or it is dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.moved();
    }
}

pin_project! {
    /// A response future counted as in flight.
    pub(crate) struct Counted<F> {
        #[pin]
        inner: F,
        guard: InFlight,
    }
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}
