//! Middleware that drains traffic instead of dropping it.
//!
//! Wrap any tower `Service` that speaks `http` (an axum `Router`, a tonic server, a hand-written
//! service) with [`DrainLayer`]; it follows the service's lifecycle:
//!
//! | phase | requests | responses |
//! | --- | --- | --- |
//! | `Starting`, `Ready` | served | unchanged |
//! | `Draining` | served normally | HTTP/1.x responses carry `Connection: close`, so pooled clients reconnect to another instance |
//! | `Stopping` | refused with `503` (a problem+json body), `Connection: close`, `Retry-After` (probe paths still served) | in-flight ones finish; long-lived ones see their [`ShutdownToken`] fire |
//! | deadline | | whatever is still running is cut: a pending handler answers `503`, a streaming body ends with an error |
//!
//! The layer counts requests in flight until their response **body** is finished, so a
//! streaming download or an SSE stream keeps the shutdown waiting (up to the deadline) like
//! any other request. Small bodies of known size (up to 64 KiB) are written at once, so those
//! requests stop counting when their response is ready, and their body is passed through
//! untouched ([`DrainBody::into_untracked`]).

mod body;
mod error;
mod future;
mod layer;

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use cutover_core::{
    Lifecycle, Phase,
    problem::{PROBLEM_JSON, Problem},
};
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower_service::Service;

pub use body::DrainBody;
pub use error::Cut;
pub use future::ResponseFuture;
pub use layer::DrainLayer;

use crate::token::ShutdownToken;

/// State shared by every clone of the layer and by the [`Shutdown`](crate::Shutdown) that
/// drives it.
#[derive(Debug)]
pub(crate) struct DrainState {
    pub(crate) lifecycle: Lifecycle,
    /// One token per request in flight, held until its response body ends.
    pub(crate) in_flight: TaskTracker,
    /// Fires when the service enters `Stopping`; handed to every request.
    pub(crate) stopping: ShutdownToken,
    /// Cancelled at the deadline: whatever is still running is cut.
    pub(crate) cut: CancellationToken,
    /// Set just before `cut` is cancelled: a lock-free check for the hot path.
    pub(crate) cut_flag: AtomicBool,
    pub(crate) exempt_paths: Vec<String>,
    pub(crate) retry_after: HeaderValue,
    pub(crate) refusals: Refusals,
    pub(crate) rejected: AtomicU64,
}

impl DrainState {
    fn is_exempt(&self, path: &str) -> bool {
        self.exempt_paths.iter().any(|prefix| {
            path.strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'))
        })
    }

    /// Requests refused with 503 so far.
    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Cut whatever is still running.
    pub(crate) fn cut(&self) {
        self.cut_flag.store(true, Ordering::Release);
        self.cut.cancel();
    }

    pub(crate) fn is_cut(&self) -> bool {
        self.cut_flag.load(Ordering::Acquire)
    }

    /// A future that completes at the cut. Allocated only by requests that have to wait, so
    /// requests answered at once never pay for it.
    pub(crate) fn cut_wait(&self) -> CutWait {
        Box::pin(self.cut.clone().cancelled_owned())
    }
}

pub(crate) type CutWait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Adds `Connection: close` to HTTP/1.x responses (HTTP/2 forbids the header; its connections
/// are closed with GOAWAY by the server's own graceful shutdown).
pub(crate) fn close_connection(headers: &mut http::HeaderMap, version: Version) {
    if version < Version::HTTP_2 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// The problem documents of the two 503s the layer answers with, rendered once.
#[derive(Debug)]
pub(crate) struct Refusals {
    /// A new request while stopping.
    pub(crate) stopping: Bytes,
    /// A request whose handler was still running at the deadline.
    pub(crate) cut: Bytes,
}

impl Refusals {
    pub(crate) fn new() -> Self {
        let render = |detail: &str| {
            let problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_type("urn:cutover:problem:shutting-down")
                .with_detail(detail);
            Bytes::from(serde_json::to_vec(&problem.to_json()).unwrap_or_default())
        };
        Self {
            stopping: render("this instance is shutting down; retry the request (another instance will answer)"),
            cut: render("this instance shut down before the request finished"),
        }
    }
}

pub(crate) fn unavailable<B>(version: Version, retry_after: &HeaderValue, document: &Bytes) -> Response<DrainBody<B>> {
    let mut response = Response::new(DrainBody::problem(document.clone()));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, retry_after.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(document.len()));
    close_connection(headers, version);
    response
}

/// The service made by [`DrainLayer`]. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct DrainService<S> {
    inner: S,
    state: Arc<DrainState>,
}

impl<S> DrainService<S> {
    pub(crate) fn new(inner: S, state: Arc<DrainState>) -> Self {
        Self { inner, state }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwrap the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for DrainService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<DrainBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let version = request.version();
        let exempt = self.state.is_exempt(request.uri().path());
        if !exempt && self.state.lifecycle.phase() >= Phase::Stopping {
            self.state.rejected.fetch_add(1, Ordering::Relaxed);
            return ResponseFuture::rejected(unavailable(
                version,
                &self.state.retry_after,
                &self.state.refusals.stopping,
            ));
        }
        request.extensions_mut().insert(self.state.stopping.clone());
        // Probes are answered to the end but never hold the shutdown up.
        let in_flight = (!exempt).then(|| self.state.in_flight.token());
        ResponseFuture::new(self.inner.call(request), in_flight, Arc::clone(&self.state), version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(prefixes: &[&str]) -> DrainState {
        DrainState {
            lifecycle: Lifecycle::new(),
            in_flight: TaskTracker::new(),
            stopping: ShutdownToken::new(CancellationToken::new()),
            cut: CancellationToken::new(),
            cut_flag: AtomicBool::new(false),
            exempt_paths: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            retry_after: HeaderValue::from_static("1"),
            refusals: Refusals::new(),
            rejected: AtomicU64::new(0),
        }
    }

    #[test]
    fn exempt_paths_match_whole_segments() {
        let state = state(&["/health", "/internal/"]);
        assert!(state.is_exempt("/health"));
        assert!(state.is_exempt("/health/ready"));
        assert!(!state.is_exempt("/healthy"));
        assert!(!state.is_exempt("/api/health"));
        assert!(state.is_exempt("/internal/metrics"));
        assert!(!state.is_exempt("/internals"));
    }
}
