//! Load shedding at the concurrency limit: a request that finds every slot taken is answered
//! at once with 503 + `Retry-After` instead of queueing.
//!
//! tower's `LoadShed` + `GlobalConcurrencyLimit` do the same through `poll_ready`, but each
//! clone of the limit allocates its own `PollSemaphore` future, and a service served by hyper
//! (or behind an axum router) is cloned for every request: the gate here takes its permit with
//! one `try_acquire` on a shared semaphore and allocates nothing.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use cutover_core::problem::Problem;
use http::Request;
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

#[derive(Debug, Clone)]
pub(crate) struct ConcurrencyGateLayer {
    slots: Arc<Semaphore>,
}

impl ConcurrencyGateLayer {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
        }
    }
}

impl<S> Layer<S> for ConcurrencyGateLayer {
    type Service = ConcurrencyGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyGate {
            inner,
            slots: Arc::clone(&self.slots),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ConcurrencyGate<S> {
    inner: S,
    slots: Arc<Semaphore>,
}

impl<S, B> Service<Request<B>> for ConcurrencyGate<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = GateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => GateFuture::Admitted {
                inner: self.inner.call(request),
                _permit: permit,
            },
            Err(_) => GateFuture::Shed,
        }
    }
}

pin_project! {
    #[project = GateProj]
    pub(crate) enum GateFuture<F> {
        Admitted {
            #[pin]
            inner: F,
            // Held until the response is ready: the request counts as in progress until then.
            _permit: OwnedSemaphorePermit,
        },
        Shed,
    }
}

impl<F, E> Future for GateFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GateProj::Admitted { inner, .. } => inner.poll(cx),
            GateProj::Shed => Poll::Ready(Ok(Problem::unavailable(
                "the service is at its limit of concurrent requests; retry shortly",
                1,
            )
            .with_type("urn:cutover:problem:overloaded")
            .into_response())),
        }
    }
}
