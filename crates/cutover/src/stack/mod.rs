//! The middleware every [`Service`](crate::Service) request goes through; the table is in the
//! [crate docs](crate#the-middleware-stack).

mod body;
pub(crate) mod problem;
pub(crate) mod route;
pub(crate) mod trace;

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    error_handling::HandleErrorLayer,
    extract::{DefaultBodyLimit, Request},
    response::Response,
};
use cutover_health::HealthRegistry;
use cutover_shutdown::{DrainLayer, drain::DrainBody};
use http::{HeaderName, HeaderValue, StatusCode, header};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    sensitive_headers::{SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use crate::{Limits, SERVICE_VERSION_HEADER};

/// The header carrying the request id.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The header the version layer names the served API version in.
pub(crate) const API_VERSION: HeaderName = HeaderName::from_static("api-version");
/// Longest request id accepted from a client; longer or stranger ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// What the public app is assembled from.
pub(crate) struct Parts {
    /// The application's routes (route templates tagged, versioning applied).
    pub(crate) app: Router,
    pub(crate) health: HealthRegistry,
    pub(crate) drain: DrainLayer,
    pub(crate) limits: Limits,
    pub(crate) service_version: Option<HeaderValue>,
    /// `/metrics`, when it is served on this address.
    pub(crate) metrics: Option<Router>,
    /// Record request metrics.
    pub(crate) record_metrics: bool,
}

/// The public app: probes, `/metrics` (unless it lives on the admin address) and the
/// application, behind the whole stack.
pub(crate) fn public(parts: Parts) -> Router {
    let Parts {
        app,
        health,
        drain,
        limits,
        service_version,
        metrics,
        record_metrics,
    } = parts;
    let application = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(problem::overloaded))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            limits.max_concurrent_requests,
        ))
        .option_layer(
            limits
                .request_timeout
                .map(|timeout| TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout)),
        )
        .layer(body::BodyWatchLayer {
            read_timeout: limits.body_read_timeout,
        })
        .layer(RequestBodyLimitLayer::new(limits.max_body_size))
        .map_request(|request: Request<_>| request.map(Body::new))
        // The limit above is enforced on the body itself; axum's extractors need not add their own.
        .layer(DefaultBodyLimit::disable())
        .service(app);
    let mut routes = Router::new().merge(health.router());
    if let Some(metrics) = metrics {
        routes = routes.merge(metrics);
    }
    let routes = routes.route_layer(route::RouteTagLayer).fallback_service(application);
    wrap(routes, drain, service_version, record_metrics)
}

/// The admin app: every probe with every detail, and `/metrics`. No drain (it answers to the
/// end), no application limits.
pub(crate) fn admin(health: &HealthRegistry, metrics: Option<Router>, service_version: Option<HeaderValue>) -> Router {
    let mut routes = Router::new().merge(health.admin_router());
    if let Some(metrics) = metrics {
        routes = routes.merge(metrics);
    }
    let routes = routes.route_layer(route::RouteTagLayer);
    let stack = ServiceBuilder::new()
        .map_response(move |mut response: Response| {
            if let Some(version) = &service_version {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(SERVICE_VERSION_HEADER), version.clone());
            }
            problem::fill(response)
        })
        .map_response(|response: Response<_>| response.map(Body::new))
        .layer(CatchPanicLayer::custom(problem::PanicResponse))
        .service(routes);
    Router::new().fallback_service(stack)
}

fn wrap(routes: Router, drain: DrainLayer, service_version: Option<HeaderValue>, record_metrics: bool) -> Router {
    let version_label: Arc<str> = service_version
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .into();
    let inner = ServiceBuilder::new()
        .map_response(problem::fill)
        .map_response(|response: http::Response<DrainBody<Body>>| {
            // Untracked bodies are axum's own: pass them through instead of boxing again.
            response.map(|body| body.into_untracked().unwrap_or_else(Body::new))
        })
        .layer(drain)
        .map_response(|response: Response<_>| response.map(Body::new))
        .layer(CatchPanicLayer::custom(problem::PanicResponse))
        .service(routes);
    let inner = metrics_layer(inner, record_metrics, &version_label);
    let sensitive = [header::AUTHORIZATION, header::COOKIE, header::PROXY_AUTHORIZATION];
    let stack = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new(sensitive))
        .layer(SetSensitiveResponseHeadersLayer::new([header::SET_COOKIE]))
        .map_request(sanitize_request_id)
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .map_response(move |mut response: Response<_>| {
            if let Some(version) = &service_version {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(SERVICE_VERSION_HEADER), version.clone());
            }
            response
        })
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(trace::MakeRequestSpan {
                    service_version: version_label,
                })
                .on_request(())
                .on_response(trace::OnRequestEnd)
                .on_failure(()),
        )
        .service(inner);
    Router::new().fallback_service(stack)
}

#[cfg(feature = "prometheus")]
fn metrics_layer<S>(
    inner: S,
    record: bool,
    service_version: &Arc<str>,
) -> tower::util::Either<crate::prometheus::Track<S>, S> {
    if record {
        tower::util::Either::Left(tower::Layer::layer(
            &crate::prometheus::TrackLayer::new(Arc::clone(service_version)),
            inner,
        ))
    } else {
        tower::util::Either::Right(inner)
    }
}

#[cfg(not(feature = "prometheus"))]
fn metrics_layer<S>(inner: S, _record: bool, _service_version: &Arc<str>) -> S {
    inner
}

/// A client's request id is kept only if it is short and made of visible ASCII; otherwise it
/// is dropped and a fresh one is made, so logs never carry a client's megabyte or its escapes.
fn sanitize_request_id<B>(mut request: Request<B>) -> Request<B> {
    let sane = request
        .headers()
        .get(REQUEST_ID)
        .is_none_or(|value| value.len() <= MAX_REQUEST_ID && value.as_bytes().iter().all(|b| b.is_ascii_graphic()));
    if !sane {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}
