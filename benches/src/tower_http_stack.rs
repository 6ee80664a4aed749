//! What a team assembles by hand from tower-http and `metrics` with the same duties as
//! `cutover::Service`'s default stack: the baseline `cutover::Service` is measured against.
//!
//! Sensitive headers, request ids (UUID v4, kept from the client or made) in the span of every
//! request, so each log line of a request names it (as tower-http's own example does), an
//! access line at INFO, Prometheus request counters and a latency histogram
//! labelled by method, route and status, caught panics, a request timeout (503), a body limit
//! (1 MiB), and load shedding past 512 requests in flight (503).

use std::time::Duration;

use axum::{
    Router,
    extract::{MatchedPath, Request},
    http::{HeaderName, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    sensitive_headers::SetSensitiveRequestHeadersLayer,
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::Level;

/// `router` behind the hand-assembled stack, with `/metrics`.
///
/// # Panics
///
/// If a Prometheus recorder is already installed.
pub fn app(router: Router) -> Router {
    let handle: PrometheusHandle = PrometheusBuilder::new()
        .install_recorder()
        .expect("install the recorder");
    let x_request_id = HeaderName::from_static("x-request-id");
    let shed = ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(
            |_: tower::BoxError| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "1")],
                    "overloaded",
                )
                    .into_response()
            },
        ))
        .load_shed()
        .concurrency_limit(512);
    router
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .layer(RequestBodyLimitLayer::new(1024 * 1024))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .layer(shed)
        .layer(CatchPanicLayer::new())
        .layer(middleware::from_fn(track))
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                ]))
                .layer(SetRequestIdLayer::new(x_request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|request: &Request| {
                            let request_id = request
                                .headers()
                                .get("x-request-id")
                                .and_then(|value| value.to_str().ok())
                                .unwrap_or("");
                            tracing::info_span!(
                                "request",
                                method = %request.method(),
                                uri = %request.uri(),
                                version = ?request.version(),
                                request_id,
                            )
                        })
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(x_request_id)),
        )
}

/// Request counter and latency histogram, labelled as most hand-written middleware does.
async fn track(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let labels = [
        ("method", method),
        ("path", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    response
}
