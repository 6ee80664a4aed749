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
use cutover_core::{Phase, PhaseWatch};
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

/// No partial request head (the `head_since` sentinel).
const NO_HEAD: u64 = u64::MAX;

/// What the connection's IO and its requests report to the task watching it, and what the
/// server reads to choose a connection to close at the connection limit.
pub(crate) struct Activity {
    /// When the connection was accepted: the clock's zero for the millisecond fields.
    accepted: Instant,
    /// When bytes last moved either way (used once the connection is closing).
    last_moved: AtomicU64,
    /// Requests whose response body has not ended (or been dropped).
    in_flight: AtomicUsize,
    /// When the last request in progress ended: the idle clock's start.
    idle_since: AtomicU64,
    /// When the bytes of a request head began to arrive on a connection with no request in
    /// progress (from accept for the first request), `NO_HEAD` when none is arriving.
    head_since: AtomicU64,
    /// Whether any request arrived: a connection that never sent one is the first to go when
    /// the connection limit is reached.
    served: AtomicBool,
    /// Whether the connection speaks HTTP/2 (learned from its first request).
    http2: AtomicBool,
    /// Woken when an HTTP/2 request arrives while the service drains: time for a GOAWAY.
    goaway: Notify,
    /// Woken when a request head starts on an idle connection: the header deadline, earlier
    /// than the idle one, applies from now.
    head_started: Notify,
    /// Woken when the server closes this connection to make room for another.
    evict: Notify,
    /// Whether it was told to make room (it is not chosen twice).
    evicted: AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            accepted: Instant::now(),
            last_moved: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            served: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            goaway: Notify::new(),
            head_started: Notify::new(),
            evict: Notify::new(),
            evicted: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(NO_HEAD - 1)
    }

    fn at(&self, millis: u64) -> Instant {
        self.accepted + Duration::from_millis(millis)
    }

    fn moved(&self) {
        self.last_moved.store(self.now(), Ordering::Relaxed);
    }

    /// Bytes arrived. On an HTTP/1.1 connection with no request in progress they are the
    /// start of the next request head, whose clock starts now (never during the idle wait).
    fn read(&self) {
        self.moved();
        if self.in_flight.load(Ordering::Relaxed) == 0
            && !self.http2.load(Ordering::Relaxed)
            && self.head_since.load(Ordering::Relaxed) == NO_HEAD
        {
            self.head_since.store(self.now(), Ordering::Relaxed);
            self.head_started.notify_one();
        }
    }

    /// Whether the server may close this connection to make room: it never sent a whole
    /// request, so nobody waits for an answer on it.
    pub(crate) fn is_unserved(&self) -> bool {
        !self.served.load(Ordering::Relaxed)
            && self.in_flight.load(Ordering::Relaxed) == 0
            && !self.evicted.load(Ordering::Relaxed)
    }

    /// Close this connection to make room for a new one.
    pub(crate) fn evict(&self) {
        self.evicted.store(true, Ordering::Relaxed);
        self.evict.notify_one();
    }

    fn carries_no_request(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }

    /// When the partial request head has to be complete, if one is arriving.
    fn head_deadline(&self, limits: &crate::Limits) -> Option<Instant> {
        let since = self.head_since.load(Ordering::Relaxed);
        if since == NO_HEAD || self.http2.load(Ordering::Relaxed) {
            return None;
        }
        limits.header_read_timeout.map(|timeout| self.at(since) + timeout)
    }

    /// When the connection has been idle (no request in progress) for the idle timeout. While
    /// a request is in progress, no sooner than one idle period from now: the task looks again
    /// then, and the real deadline can only be later.
    fn idle_deadline(&self, limits: &crate::Limits) -> Option<Instant> {
        let timeout = limits.idle_timeout?;
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Some(Instant::now() + timeout);
        }
        Some(self.at(self.idle_since.load(Ordering::Relaxed)) + timeout)
    }

    /// Which limit, if any, the connection has broken.
    fn expired(&self, limits: &crate::Limits) -> Option<Expiry> {
        let now = Instant::now();
        if self.head_deadline(limits).is_some_and(|deadline| now >= deadline) {
            return Some(Expiry::Head);
        }
        (self.carries_no_request() && self.idle_deadline(limits).is_some_and(|deadline| now >= deadline))
            .then_some(Expiry::Idle)
    }
}

/// The limit a connection broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// A request head that did not arrive whole in time: nobody waits for an answer.
    Head,
    /// No request for the idle timeout.
    Idle,
}

/// Serve one connection until it ends, it is closed for a limit, or the server stops.
pub(crate) async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    shared: Arc<Shared>,
    mut signals: Signals,
    activity: Arc<Activity>,
    _slot: OwnedSemaphorePermit,
) {
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
    // The phase the connection was accepted in: one opened while the service drains is not
    // one the drain found open, and is answered (with `Connection: close`, or a GOAWAY after
    // its first HTTP/2 request).
    let accepted_in = signals.phase.phase();
    let mut phase_open = accepted_in < Phase::Stopping;
    loop {
        let deadline = if closing {
            // One more quiet period to finish, then it is dropped; while a request is still in
            // flight, look again one period later (the shutdown's own timeout bounds it).
            limits.idle_timeout.or(limits.header_read_timeout).map(|quiet| {
                let quiet_since = activity.at(activity.last_moved.load(Ordering::Relaxed)) + quiet;
                if activity.carries_no_request() {
                    quiet_since
                } else {
                    quiet_since.max(Instant::now() + quiet)
                }
            })
        } else {
            earliest(activity.head_deadline(limits), activity.idle_deadline(limits))
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%remote, %error, "connection ended with an error");
                }
                return;
            }
            Ok(()) = signals.stopping.changed(), if !closing => {
                if activity.carries_no_request() && !activity.http2.load(Ordering::Relaxed) {
                    return; // idle, or a head still arriving: nobody waits for an answer
                }
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            phase = signals.phase.changed(), if phase_open => {
                let http2 = activity.http2.load(Ordering::Relaxed);
                match phase {
                    None => phase_open = false,
                    // Stopping (the drain delay is over; proxies have stopped routing here):
                    // a connection that carries no request (idle keep-alive, a head still
                    // arriving) is closed now, an HTTP/2 one told to go.
                    Some(phase) if phase >= Phase::Stopping => {
                        phase_open = false;
                        if !http2 && activity.carries_no_request() {
                            tracing::debug!(%remote, "closing a connection with no request in progress: stopping");
                            return;
                        }
                        if http2 && !goaway_sent {
                            goaway_sent = true;
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                    // Draining: an HTTP/2 connection gets a GOAWAY at once (clients open their
                    // next stream elsewhere; the protocol makes it race-free). An idle HTTP/1.1
                    // one stays open: a proxy may still send on it until it has seen the
                    // readiness change, and closing it under the proxy is the keep-alive race;
                    // each request on it is answered with `Connection: close` instead.
                    Some(phase) if phase.is_shutting_down() && accepted_in < Phase::Draining => {
                        if http2 && !goaway_sent {
                            goaway_sent = true;
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                    Some(_) => {}
                }
            }
            () = activity.goaway.notified(), if !goaway_sent => {
                goaway_sent = true;
                connection.as_mut().graceful_shutdown();
            }
            () = activity.evict.notified() => {
                if activity.served.load(Ordering::Relaxed) {
                    // A request arrived meanwhile: it is answered. The new connection waits
                    // for a slot like any other.
                    continue;
                }
                tracing::debug!(%remote, "closing a connection that sent no request: the connection limit is reached");
                return;
            }
            () = activity.head_started.notified(), if !closing => {}
            () = sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                if closing {
                    if activity.carries_no_request()
                        && deadline.is_some_and(|deadline| Instant::now() >= deadline)
                    {
                        tracing::debug!(%remote, "connection did not close in time; dropping it");
                        return;
                    }
                    continue;
                }
                match activity.expired(limits) {
                    None => continue,
                    Some(Expiry::Head) => {
                        tracing::debug!(%remote, served = activity.served.load(Ordering::Relaxed), "closing a connection whose request head did not arrive in time");
                        return;
                    }
                    Some(Expiry::Idle) => {
                        tracing::debug!(%remote, "closing an idle connection");
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                        if !activity.http2.load(Ordering::Relaxed) {
                            return;
                        }
                    }
                }
            }
        }
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
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
            this.activity.read();
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
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = Counted<tower::util::Oneshot<crate::stack::App, Request>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let activity = &self.activity;
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.head_since.store(NO_HEAD, Ordering::Relaxed);
        activity.served.store(true, Ordering::Relaxed);
        if request.version() == http::Version::HTTP_2 && !activity.http2.swap(true, Ordering::Relaxed) {
            // First HTTP/2 request on a connection opened while draining: it gets its answer,
            // and the client its GOAWAY.
            if self.phase.phase().is_shutting_down() {
                activity.goaway.notify_one();
            }
        }
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(self.remote));
        Counted {
            inner: self.app.clone().oneshot(request),
            guard: Some(InFlight(Arc::clone(activity))),
        }
    }
}

/// Counts a request as in progress until its response body ends, or it is dropped. The last
/// one out starts the idle clock.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.moved();
        if activity.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            activity.idle_since.store(activity.now(), Ordering::Relaxed);
        }
    }
}

pin_project! {
    /// A response future counted as in flight; its response body carries the count on.
    pub(crate) struct Counted<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
    }
}

impl<F> Future for Counted<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response<Tracked>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = std::task::ready!(this.inner.poll(cx));
        let guard = this.guard.take();
        Poll::Ready(Ok(response.map(|inner| Tracked { inner, _guard: guard })))
    }
}

pin_project! {
    /// A response body that keeps its request counted as in progress until it ends: a
    /// streaming response is not an idle connection.
    pub(crate) struct Tracked {
        #[pin]
        inner: Body,
        _guard: Option<InFlight>,
    }
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
