//! A request body that sends nothing for the body read timeout ends the request with 408 and
//! `Connection: close`, whatever the handler made of the read error. The timing is
//! `tower_http::timeout::TimeoutBody`'s; this only notices that it fired.

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
use cutover_core::problem::Problem;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tower_http::timeout::{TimeoutBody, TimeoutError};

#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyReadTimeoutLayer {
    pub(crate) timeout: Duration,
}

impl<S> Layer<S> for BodyReadTimeoutLayer {
    type Service = BodyReadTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyReadTimeout {
            inner,
            timeout: self.timeout,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct BodyReadTimeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S> Service<Request<Body>> for BodyReadTimeout<S>
where
    S: Service<Request<Body>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BodyReadTimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let timed_out = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&timed_out);
        let timeout = self.timeout;
        let request = request.map(|body| {
            Body::new(TimeoutBody::new(timeout, body).map_err(move |error| {
                if error.is::<TimeoutError>() {
                    flag.store(true, Ordering::Relaxed);
                }
                error
            }))
        });
        BodyReadTimeoutFuture {
            inner: self.inner.call(request),
            timed_out,
        }
    }
}

pin_project! {
    pub(crate) struct BodyReadTimeoutFuture<F> {
        #[pin]
        inner: F,
        timed_out: Arc<AtomicBool>,
    }
}

impl<F, E> Future for BodyReadTimeoutFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        if !this.timed_out.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(response));
        }
        let mut response = Problem::new(StatusCode::REQUEST_TIMEOUT)
            .with_type("urn:cutover:problem:body-read-timeout")
            .with_detail("the request body stopped arriving; send it at once or not at all")
            .into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        Poll::Ready(Ok(response))
    }
}
