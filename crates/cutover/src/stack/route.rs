//! The matched route template (and the method), carried out of the router on the response,
//! for the span and the metrics: labels stay bounded (`/api/users/{id}`, never
//! `/api/users/42`).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use axum::extract::MatchedPath;
#[cfg(feature = "otel")]
use http::Method;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// The route that answered, in the response's extensions.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// The template, `/api/users/{id}`.
    pub(crate) template: MatchedPath,
    /// For the exported span's name (`GET /api/users/{id}`).
    #[cfg(feature = "otel")]
    pub(crate) method: Method,
}

/// Puts the request's `MatchedPath` and method into the response's extensions as a [`Route`].
/// Apply inside the router (`Router::layer`), where the route is known.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RouteTagLayer;

impl<S> Layer<S> for RouteTagLayer {
    type Service = RouteTag<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RouteTag { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RouteTag<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RouteTag<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RouteTagFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let route = request.extensions().get::<MatchedPath>().map(|template| Route {
            template: template.clone(),
            #[cfg(feature = "otel")]
            method: request.method().clone(),
        });
        RouteTagFuture {
            inner: self.inner.call(request),
            route,
        }
    }
}

pin_project! {
    pub(crate) struct RouteTagFuture<F> {
        #[pin]
        inner: F,
        route: Option<Route>,
    }
}

impl<F, B, E> Future for RouteTagFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(route) = this.route.take()
            && response.extensions().get::<Route>().is_none()
        {
            // The innermost router knows best (a nested router's full path).
            response.extensions_mut().insert(route);
        }
        Poll::Ready(Ok(response))
    }
}
