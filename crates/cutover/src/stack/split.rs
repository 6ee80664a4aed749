//! Probes and `/metrics` on one side, the application on the other, decided by the path:
//! probes never meet the application's limits (load shedding, timeouts, body limits), and the
//! application needs no router of its own in front of it.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use axum::{Router, body::Body, extract::Request, response::Response};
use pin_project_lite::pin_project;
use tower::Service;

#[derive(Debug, Clone)]
pub(crate) struct Split<A> {
    probes: Router,
    application: A,
    metrics: bool,
}

impl<A> Split<A> {
    /// `metrics`: whether `/metrics` is among the probes' routes here.
    pub(crate) fn new(probes: Router, application: A, metrics: bool) -> Self {
        Self {
            probes,
            application,
            metrics,
        }
    }

    fn is_probe(&self, path: &str) -> bool {
        path == "/health" || path.starts_with("/health/") || (self.metrics && path == "/metrics")
    }
}

impl<A> Service<Request> for Split<A>
where
    A: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = SplitFuture<<Router as Service<Request>>::Future, A::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.application.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if self.is_probe(request.uri().path()) {
            SplitFuture::Probe {
                future: self.probes.call(request),
            }
        } else {
            SplitFuture::Application {
                future: self.application.call(request),
            }
        }
    }
}

pin_project! {
    #[project = SplitProj]
    pub(crate) enum SplitFuture<P, A> {
        Probe { #[pin] future: P },
        Application { #[pin] future: A },
    }
}

impl<P, A> Future for SplitFuture<P, A>
where
    P: Future<Output = Result<Response<Body>, Infallible>>,
    A: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            SplitProj::Probe { future } => future.poll(cx),
            SplitProj::Application { future } => future.poll(cx),
        }
    }
}
