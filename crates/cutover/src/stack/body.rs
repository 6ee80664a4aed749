//! What the stack needs to know about a request body, and the request timeout that depends on
//! it.
//!
//! - A body that stalls (tower-http's `TimeoutBody` fired) or arrives slower than the minimum
//!   data rate after its grace period (Kestrel's `MinRequestBodyDataRate`) ends the request
//!   with 408 and `Connection: close`, whatever the handler made of the read error: a slow
//!   client pays for its own slowness and frees its concurrency slot.
//! - A small body (a `Content-Length` of at most [`BUFFER_UP_TO`]) is read whole before the
//!   request takes a concurrency slot, as a proxy that buffers request bodies does: clients
//!   trickling bodies hold a connection each, never the slots that handlers need, so 520 of
//!   them cannot lock out the clients that send at once. Larger and streamed bodies go to the
//!   handler as they arrive.
//! - The request timeout measures the service, not the client's upload: its clock starts when
//!   a buffered body has been read, restarts when a streamed one has, and does not fire while
//!   the handler is still receiving a body that keeps to the minimum rate. Past it, the answer
//!   is 503 (the server was slow).
//! - An HTTP/1.1 answer given before the body was read (a 413 from its `Content-Length`, a
//!   415, any early refusal) carries `Connection: close`: the server will not read the rest, so
//!   the connection cannot be reused, and a client that pools connections must not send its
//!   next request into it.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use cutover_core::problem::Problem;
use http::{HeaderValue, Request, StatusCode, Version, header, request::Parts};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt as _, combinators::Collect};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tower::{BoxError, Layer, Service};
use tower_http::timeout::{TimeoutBody, TimeoutError};

use crate::limits::MinDataRate;

/// Bodies of at most this many bytes (by `Content-Length`) are read whole before the request
/// takes a concurrency slot.
pub(crate) const BUFFER_UP_TO: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyWatchLayer {
    /// Bodies up to this size are read whole first: at most [`BUFFER_UP_TO`], and never one
    /// the body limit refuses from its `Content-Length`, unread.
    pub(crate) buffer_up_to: u64,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) min_rate: Option<MinDataRate>,
    pub(crate) request_timeout: Option<Duration>,
}

impl<S> Layer<S> for BodyWatchLayer {
    type Service = BodyWatch<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyWatch { inner, limits: *self }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct BodyWatch<S> {
    inner: S,
    limits: BodyWatchLayer,
}

/// How a request body went, as its reader saw it.
#[derive(Debug, Default)]
struct Seen {
    /// Whether the handler polled it at least once (it is receiving, not ignoring it).
    reading: AtomicBool,
    /// Whether it was read to its end.
    finished: AtomicBool,
    /// Why the client's upload was cut, if it was (`CUT_*`).
    cut: AtomicU8,
}

const CUT_NONE: u8 = 0;
const CUT_STALLED: u8 = 1;
const CUT_TOO_SLOW: u8 = 2;

impl<S, B> Service<Request<Body>> for BodyWatch<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BodyWatchFuture<S, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let version = request.version();
        let timeout = self.limits.request_timeout.map(|timeout| RequestTimeout {
            timeout,
            sleep: Box::pin(sleep_until(Instant::now() + timeout)),
            body_done_at: None,
        });
        // Requests without a body (most GETs) are passed through untouched.
        if http_body::Body::is_end_stream(request.body()) {
            return BodyWatchFuture {
                state: State::Running {
                    inner: self.inner.call(request),
                },
                seen: None,
                version,
                timeout,
            };
        }
        let seen = Arc::new(Seen::default());
        let BodyWatchLayer {
            read_timeout, min_rate, ..
        } = self.limits;
        let watch = {
            let seen = Arc::clone(&seen);
            move |body: Body| {
                let inner = match read_timeout {
                    Some(timeout) => Body::new(TimeoutBody::new(timeout, body)),
                    None => body,
                };
                WatchedBody {
                    inner,
                    seen,
                    rate: min_rate.map(RateClock::new),
                }
            }
        };
        let small = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok())
            .is_some_and(|length| length <= self.limits.buffer_up_to);
        if small {
            // The service that was made ready takes the request once the body is in; this
            // one stays for the next request (tower's clone-and-swap).
            let clone = self.inner.clone();
            let service = std::mem::replace(&mut self.inner, clone);
            let (parts, body) = request.into_parts();
            return BodyWatchFuture {
                state: State::Buffering {
                    collect: watch(body).collect(),
                    parts: Some(parts),
                    service: Some(service),
                },
                seen: Some(seen),
                version,
                timeout,
            };
        }
        let request = request.map(|body| Body::new(watch(body)));
        BodyWatchFuture {
            state: State::Running {
                inner: self.inner.call(request),
            },
            seen: Some(seen),
            version,
            timeout,
        }
    }
}

/// The request timeout's clock.
struct RequestTimeout {
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    /// When the body was seen read to its end: the clock restarted there.
    body_done_at: Option<Instant>,
}

pin_project! {
    #[project = StateProj]
    enum State<S, F> {
        /// Reading a small body whole, before the service (and its concurrency slot) sees it.
        Buffering {
            #[pin]
            collect: Collect<WatchedBody>,
            parts: Option<Parts>,
            service: Option<S>,
        },
        /// The service has the request.
        Running {
            #[pin]
            inner: F,
        },
    }
}

pin_project! {
    pub(crate) struct BodyWatchFuture<S, F> {
        #[pin]
        state: State<S, F>,
        seen: Option<Arc<Seen>>,
        version: Version,
        timeout: Option<RequestTimeout>,
    }
}

impl<S, B> Future for BodyWatchFuture<S, S::Future>
where
    S: Service<Request<Body>, Response = Response<B>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Buffering {
                    collect,
                    parts,
                    service,
                } => {
                    let collected = std::task::ready!(collect.poll(cx));
                    let Ok(collected) = collected else {
                        return Poll::Ready(Ok(cut_short(this.seen.as_deref(), *this.version)));
                    };
                    let (Some(parts), Some(mut service)) = (parts.take(), service.take()) else {
                        unreachable!("a buffered request is handed over once");
                    };
                    // The service was made ready for this request before it was taken.
                    let request = Request::from_parts(parts, Body::from(collected.to_bytes()));
                    let inner = service.call(request);
                    this.state.set(State::Running { inner });
                    // The service's clock starts now: the upload was the client's time.
                    if let Some(timeout) = this.timeout.as_mut() {
                        let now = Instant::now();
                        timeout.body_done_at = Some(now);
                        timeout.sleep.as_mut().reset(now + timeout.timeout);
                    }
                }
                StateProj::Running { inner } => {
                    let Poll::Ready(response) = inner.poll(cx) else {
                        if let Some(timeout) = this.timeout.as_mut()
                            && timed_out(timeout, this.seen.as_deref(), cx)
                        {
                            // An empty 503: the problem layer fills in "could not answer in time".
                            let mut response = Response::new(Body::empty());
                            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                            return Poll::Ready(Ok(response));
                        }
                        return Poll::Pending;
                    };
                    let response = response?.map(Body::new);
                    let Some(seen) = this.seen.as_ref() else {
                        return Poll::Ready(Ok(response));
                    };
                    if seen.cut.load(Ordering::Relaxed) != CUT_NONE {
                        return Poll::Ready(Ok(cut_short(Some(seen), *this.version)));
                    }
                    let mut response = response;
                    if !seen.finished.load(Ordering::Relaxed) {
                        close(&mut response, *this.version);
                    }
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

/// The answer to a body the client did not deliver: 408 when it stalled or crawled, 400 when
/// it broke off (the connection is closed either way).
fn cut_short(seen: Option<&Seen>, version: Version) -> Response {
    let cut = seen.map_or(CUT_NONE, |seen| seen.cut.load(Ordering::Relaxed));
    let problem = match cut {
        CUT_STALLED => Problem::new(StatusCode::REQUEST_TIMEOUT)
            .with_type("urn:cutover:problem:body-read-timeout")
            .with_detail("the request body stopped arriving; send it at once or not at all"),
        CUT_TOO_SLOW => Problem::new(StatusCode::REQUEST_TIMEOUT)
            .with_type("urn:cutover:problem:body-read-timeout")
            .with_detail("the request body arrived too slowly; send it at once or not at all"),
        _ => Problem::bad_request("the request body could not be read to its end"),
    };
    let mut response = problem.into_response();
    close(&mut response, version);
    response
}

/// Whether the request timeout has run out for the service. The time a client spends sending
/// its body is not counted: the clock restarts when the body has been read, and it waits while
/// the handler is still receiving one (the body's own limits cut a client that is too slow).
fn timed_out(timeout: &mut RequestTimeout, seen: Option<&Seen>, cx: &mut Context<'_>) -> bool {
    loop {
        if let Some(seen) = seen
            && timeout.body_done_at.is_none()
            && seen.finished.load(Ordering::Relaxed)
        {
            let now = Instant::now();
            timeout.body_done_at = Some(now);
            timeout.sleep.as_mut().reset(now + timeout.timeout);
        }
        if timeout.sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        let receiving = seen.is_some_and(|seen| {
            seen.reading.load(Ordering::Relaxed)
                && !seen.finished.load(Ordering::Relaxed)
                && seen.cut.load(Ordering::Relaxed) == CUT_NONE
        });
        if !receiving {
            return true;
        }
        // Still receiving: look again one period later.
        timeout.sleep.as_mut().reset(Instant::now() + timeout.timeout);
    }
}

/// `Connection: close` on HTTP/1.x (HTTP/2 has no such header; its streams are independent).
fn close(response: &mut Response, version: Version) {
    if version < Version::HTTP_2 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// The minimum data rate's clock for one body: started at its first read, armed while the
/// handler waits for data.
struct RateClock {
    minimum: MinDataRate,
    started: Option<Instant>,
    received: u64,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl RateClock {
    fn new(minimum: MinDataRate) -> Self {
        Self {
            minimum,
            started: None,
            received: 0,
            sleep: None,
        }
    }

    /// The moment the average rate since the first read falls below the minimum, given what
    /// has arrived: never before the grace period ends.
    fn deadline(&self, started: Instant) -> Instant {
        let earned = Duration::from_secs_f64(self.received as f64 / self.minimum.bytes_per_second() as f64);
        started + earned.max(self.minimum.grace_period())
    }

    /// Whether the client fell below the rate while the handler waited.
    fn poll_too_slow(&mut self, cx: &mut Context<'_>) -> bool {
        let started = *self.started.get_or_insert_with(Instant::now);
        let deadline = self.deadline(started);
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx).is_ready()
    }
}

/// The error a too-slow body ends with (the handler sees it; the client gets the 408).
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived slower than {0} bytes per second")]
struct TooSlow(u64);

pin_project! {
    /// A request body noting that it ended, or that its read timeout fired, and cutting a
    /// client that sends it too slowly.
    struct WatchedBody {
        #[pin]
        inner: Body,
        seen: Arc<Seen>,
        rate: Option<RateClock>,
    }
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        this.seen.reading.store(true, Ordering::Relaxed);
        if let Some(rate) = this.rate.as_mut() {
            rate.started.get_or_insert_with(Instant::now);
        }
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.seen.finished.store(true, Ordering::Relaxed),
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(rate), Some(data)) = (this.rate.as_mut(), frame.data_ref()) {
                    rate.received = rate.received.saturating_add(data.len() as u64);
                }
            }
            Poll::Ready(Some(Err(error))) => {
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
                while let Some(cause) = source {
                    if cause.is::<TimeoutError>() {
                        this.seen.cut.store(CUT_STALLED, Ordering::Relaxed);
                    }
                    source = cause.source();
                }
            }
            Poll::Pending => {
                if let Some(rate) = this.rate.as_mut()
                    && rate.poll_too_slow(cx)
                {
                    this.seen.cut.store(CUT_TOO_SLOW, Ordering::Relaxed);
                    let minimum = rate.minimum.bytes_per_second();
                    return Poll::Ready(Some(Err(axum::Error::new(TooSlow(minimum)))));
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
