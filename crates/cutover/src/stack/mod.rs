//! The middleware every [`Service`](crate::Service) request goes through; the table is in the
//! [crate docs](crate#the-middleware-stack).

mod body;
mod gate;
pub(crate) mod problem;
pub(crate) mod route;
mod split;
pub(crate) mod trace;

use std::{convert::Infallible, sync::Arc};

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, Request},
    response::Response,
};
use cutover_health::HealthRegistry;
use cutover_shutdown::{DrainLayer, drain::DrainBody};
use http::{HeaderName, HeaderValue, header};
use tower::{ServiceBuilder, ServiceExt as _, util::BoxCloneSyncService};
use tower_http::{
    catch_panic::CatchPanicLayer,
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    sensitive_headers::{SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer},
    trace::TraceLayer,
};

use crate::{Limits, SERVICE_VERSION_HEADER};

/// The assembled app, as the server calls it.
pub(crate) type App = BoxCloneSyncService<Request, Response, Infallible>;

/// The header carrying the request id.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The header the version layer names the served API version in.
pub(crate) const API_VERSION: HeaderName = HeaderName::from_static("api-version");
/// Longest request id accepted from a client; longer or stranger ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// What the public app is assembled from.
pub(crate) struct Parts {
    /// The application's routes (route templates tagged), with versioning when asked for.
    pub(crate) app: Application,
    pub(crate) health: HealthRegistry,
    pub(crate) drain: DrainLayer,
    pub(crate) limits: Limits,
    pub(crate) service_version: Option<HeaderValue>,
    /// `/metrics`, when it is served on this address.
    pub(crate) metrics: Option<Router>,
    /// Record request metrics.
    pub(crate) record_metrics: bool,
}

/// The application's router, and the version layer around it if there is one.
pub(crate) struct Application {
    pub(crate) router: Router,
    #[cfg(feature = "versioning")]
    pub(crate) versioning: Option<cutover_versioning::VersionLayer>,
}

impl Application {
    /// The application as one service answering with axum responses. The version layer wraps
    /// the whole router (so `/api/v1.2/...` is rewritten before routing), without a router of
    /// its own in front.
    fn into_service(self) -> BoxCloneSyncService<Request, Response, Infallible> {
        #[cfg(feature = "versioning")]
        if let Some(layer) = self.versioning {
            use tower::Layer as _;
            let versioned = layer
                .layer(self.router)
                .map_request(|request: Request| request)
                .map_response(
                    |response: http::Response<cutover_versioning::layer::VersionBody<Body>>| {
                        response.map(|body| body.into_parts().unwrap_or_else(Body::from))
                    },
                );
            return BoxCloneSyncService::new(versioned);
        }
        BoxCloneSyncService::new(self.router)
    }
}

/// The public app: probes, `/metrics` (unless it lives on the admin address) and the
/// application, behind the whole stack.
pub(crate) fn public(parts: Parts) -> App {
    let Parts {
        app,
        health,
        drain,
        limits,
        service_version,
        metrics,
        record_metrics,
    } = parts;
    // The body watch is outside the gate: a small body is read whole before its request takes
    // a concurrency slot, so slow uploads hold connections, never the handlers' slots.
    let application = ServiceBuilder::new()
        .layer(body::BodyWatchLayer {
            buffer_up_to: body::BUFFER_UP_TO.min(u64::try_from(limits.max_body_size).unwrap_or(u64::MAX)),
            read_timeout: limits.body_read_timeout,
            min_rate: limits.min_body_data_rate,
            request_timeout: limits.request_timeout,
        })
        .layer(gate::ConcurrencyGateLayer::new(limits.max_concurrent_requests))
        .map_response(|response: Response<_>| response.map(Body::new))
        .layer(RequestBodyLimitLayer::new(limits.max_body_size))
        .map_request(|request: Request<_>| request.map(Body::new))
        // The limit above is enforced on the body itself; axum's extractors need not add their own.
        .layer(DefaultBodyLimit::disable())
        .service(app.into_service());
    let serves_metrics = metrics.is_some();
    let mut probes = Router::new().merge(health.router());
    if let Some(metrics) = metrics {
        probes = probes.merge(metrics);
    }
    let routes = split::Split::new(probes.route_layer(route::RouteTagLayer), application, serves_metrics);
    wrap(routes, drain, service_version, record_metrics)
}

/// The admin app: every probe with every detail, and `/metrics`. No drain (it answers to the
/// end), no application limits.
pub(crate) fn admin(health: &HealthRegistry, metrics: Option<Router>, service_version: Option<HeaderValue>) -> App {
    let mut routes = Router::new().merge(health.admin_router());
    if let Some(metrics) = metrics {
        routes = routes.merge(metrics);
    }
    let routes = routes.route_layer(route::RouteTagLayer);
    let stack = ServiceBuilder::new()
        .map_response(move |response: Response| problem::fill(with_service_version(response, service_version.as_ref())))
        .map_response(|response: Response<_>| response.map(Body::new))
        .layer(CatchPanicLayer::custom(problem::PanicResponse))
        .service(routes);
    BoxCloneSyncService::new(stack)
}

fn wrap<S>(routes: S, drain: DrainLayer, service_version: Option<HeaderValue>, record_metrics: bool) -> App
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
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
        .layer(SetRequestIdLayer::new(REQUEST_ID, FastRequestId))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .map_response(move |response: Response<_>| with_service_version(response, service_version.as_ref()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(trace::MakeRequestSpan {
                    service_version: Arc::clone(&version_label),
                })
                .on_request(())
                .on_response(trace::OnRequestEnd {
                    service_version: version_label,
                })
                .on_failure(()),
        )
        .service(inner)
        .map_response(|response: Response<_>| response.map(Body::new));
    BoxCloneSyncService::new(stack)
}

/// `X-Service-Version` on every answer, when the service has a version.
fn with_service_version<B>(mut response: Response<B>, version: Option<&HeaderValue>) -> Response<B> {
    if let Some(version) = version {
        response
            .headers_mut()
            .insert(HeaderName::from_static(SERVICE_VERSION_HEADER), version.clone());
    }
    response
}

/// Request ids in the UUID v4 format, from a fast per-thread generator: an id names a request
/// in logs, it guards nothing, so it needs no system randomness (a `getrandom` call per request).
#[derive(Debug, Clone, Copy)]
struct FastRequestId;

impl MakeRequestId for FastRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let random = (u128::from(fastrand::u64(..)) << 64) | u128::from(fastrand::u64(..));
        // Version 4 (random) in bits 76-79, variant 10 in bits 62-63.
        let bits = (random & !(0xf << 76) & !(0b11 << 62)) | (0x4 << 76) | (0b10 << 62);
        let mut id = [b'-'; 36];
        let mut nibble = 32;
        for (index, byte) in id.iter_mut().enumerate() {
            if matches!(index, 8 | 13 | 18 | 23) {
                continue;
            }
            nibble -= 1;
            *byte = HEX[((bits >> (nibble * 4)) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&id).ok().map(RequestId::new)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_well_formed_uuids_v4() {
        let request = Request::new(());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let id = FastRequestId.make_request_id(&request).unwrap();
            let text = id.header_value().to_str().unwrap().to_owned();
            let groups: Vec<&str> = text.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12],
                "{text}"
            );
            assert!(groups[2].starts_with('4'), "version 4: {text}");
            assert!(matches!(&groups[3][..1], "8" | "9" | "a" | "b"), "variant 10: {text}");
            assert!(seen.insert(text));
        }
    }
}
