//! What the stack needs to know about a request body: whether it stalled (tower-http's
//! `TimeoutBody` fired: the request ends with 408 and `Connection: close`, whatever the handler
//! made of the read error), and whether it was read to its end. An HTTP/1.1 answer given before
//! the body was read (a 413 from its `Content-Length`, a 415, any early refusal) carries
//! `Connection: close`: the server will not read the rest, so the connection cannot be reused,
//! and a client that pools connections must not send its next request into it.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
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
use http::{HeaderValue, Request, StatusCode, Version, header};
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{BoxError, Layer, Service};
use tower_http::timeout::{TimeoutBody, TimeoutError};

#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyWatchLayer {
    pub(crate) read_timeout: Option<Duration>,
}

impl<S> Layer<S> for BodyWatchLayer {
    type Service = BodyWatch<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyWatch {
            inner,
            read_timeout: self.read_timeout,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct BodyWatch<S> {
    inner: S,
    read_timeout: Option<Duration>,
}

#[derive(Debug, Default)]
struct Seen {
    finished: AtomicBool,
    timed_out: AtomicBool,
}

impl<S, B> Service<Request<Body>> for BodyWatch<S>
where
    S: Service<Request<Body>, Response = Response<B>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BodyWatchFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let version = request.version();
        // Requests without a body (most GETs) are passed through untouched.
        if http_body::Body::is_end_stream(request.body()) {
            return BodyWatchFuture {
                inner: self.inner.call(request),
                seen: None,
                version,
            };
        }
        let seen = Arc::new(Seen::default());
        let timeout = self.read_timeout;
        let watched = Arc::clone(&seen);
        let request = request.map(move |body| {
            let inner = match timeout {
                Some(timeout) => Body::new(TimeoutBody::new(timeout, body)),
                None => body,
            };
            Body::new(WatchedBody { inner, seen: watched })
        });
        BodyWatchFuture {
            inner: self.inner.call(request),
            seen: Some(seen),
            version,
        }
    }
}

pin_project! {
    pub(crate) struct BodyWatchFuture<F> {
        #[pin]
        inner: F,
        seen: Option<Arc<Seen>>,
        version: Version,
    }
}

impl<F, B, E> Future for BodyWatchFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?.map(Body::new);
        let Some(seen) = this.seen.as_ref() else {
            return Poll::Ready(Ok(response));
        };
        if seen.timed_out.load(Ordering::Relaxed) {
            let mut response = Problem::new(StatusCode::REQUEST_TIMEOUT)
                .with_type("urn:cutover:problem:body-read-timeout")
                .with_detail("the request body stopped arriving; send it at once or not at all")
                .into_response();
            close(&mut response, *this.version);
            return Poll::Ready(Ok(response));
        }
        let mut response = response;
        if !seen.finished.load(Ordering::Relaxed) {
            close(&mut response, *this.version);
        }
        Poll::Ready(Ok(response))
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

pin_project! {
    /// A request body noting that it ended, or that its read timeout fired.
    struct WatchedBody {
        #[pin]
        inner: Body,
        seen: Arc<Seen>,
    }
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.seen.finished.store(true, Ordering::Relaxed),
            Poll::Ready(Some(Err(error))) => {
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
                while let Some(cause) = source {
                    if cause.is::<TimeoutError>() {
                        this.seen.timed_out.store(true, Ordering::Relaxed);
                    }
                    source = cause.source();
                }
            }
            _ => {}
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
