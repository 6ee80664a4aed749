//! One span per request, and one line when it ends.
//!
//! The span (`request`, level INFO; DEBUG for probes, so they do not flood logs) carries the
//! method, the path and the request id: every event logged while the request is handled is
//! inside it, so each log line of a request names its request id. The line at the end (target
//! `cutover::access`; `RUST_LOG=info,cutover::access=off` silences it) adds the status, the
//! latency, the matched route, the negotiated API version and the service version.
//!
//! What a request costs to log is what a JSON log layer costs, so the span stays small: a JSON
//! layer re-parses a span's fields for every line written inside it, and re-parses and
//! re-writes them on every `record`. The late fields are recorded into the span (with the
//! service version and the `otel.*` fields) only when spans are exported over OpenTelemetry,
//! where they become the span's attributes.
//!
//! Header values are never recorded (`Authorization` and `Cookie` are also marked sensitive).

use std::{sync::Arc, time::Duration};

use http::{Request, Response};
use tracing::{Span, field::Empty};

use super::{API_VERSION, REQUEST_ID, route::Route};

/// Paths that are probed, not used: their spans and lines are at DEBUG.
pub(crate) fn is_probe(path: &str) -> bool {
    path == "/metrics" || path == "/health" || path.starts_with("/health/")
}

/// Makes the request span.
#[derive(Debug, Clone)]
pub(crate) struct MakeRequestSpan {
    pub(crate) service_version: Arc<str>,
}

impl<B> tower_http::trace::MakeSpan<B> for MakeRequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        let request_id = request
            .headers()
            .get(REQUEST_ID)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        let path = request.uri().path();
        let probe = is_probe(path);
        if crate::traces_exported() {
            // `otel.*` fields describe the span to OpenTelemetry, as tracing-opentelemetry
            // reads them; its name (`GET /api/users/{id}`) is given once the route is known.
            macro_rules! exported_span {
                ($level:expr) => {
                    tracing::span!(
                        $level,
                        "request",
                        method = %request.method(),
                        path,
                        request_id,
                        service_version = &*self.service_version,
                        route = Empty,
                        api_version = Empty,
                        status = Empty,
                        latency_ms = Empty,
                        otel.kind = "server",
                        otel.status_code = Empty,
                    )
                };
            }
            let span = if probe {
                exported_span!(tracing::Level::DEBUG)
            } else {
                exported_span!(tracing::Level::INFO)
            };
            #[cfg(feature = "otel")]
            crate::otel::link_parent(&span, request.headers());
            return span;
        }
        if probe {
            tracing::debug_span!("request", method = %request.method(), path, request_id)
        } else {
            tracing::info_span!("request", method = %request.method(), path, request_id)
        }
    }
}

/// Logs one line when the response is ready (and, when spans are exported, records what it
/// says into the span).
#[derive(Debug, Clone)]
pub(crate) struct OnRequestEnd {
    pub(crate) service_version: Arc<str>,
}

impl<B> tower_http::trace::OnResponse<B> for OnRequestEnd {
    fn on_response(self, response: &Response<B>, latency: Duration, span: &Span) {
        let status = response.status().as_u16();
        let route = response.extensions().get::<Route>();
        let template = route.map(|route| route.template.as_str());
        let api_version = response
            .headers()
            .get(API_VERSION)
            .and_then(|value| value.to_str().ok());
        let latency_ms = latency.as_secs_f64() * 1000.0;
        if crate::traces_exported() {
            let error = response.status().is_server_error().then_some("ERROR");
            record_all(span, status, latency_ms, template, api_version, error);
            #[cfg(feature = "otel")]
            if let Some(route) = route {
                crate::otel::rename(span, format!("{} {}", route.method, route.template.as_str()));
            }
        }
        let service_version = &*self.service_version;
        macro_rules! access {
            ($level:expr) => {
                tracing::event!(
                    target: "cutover::access",
                    $level,
                    status,
                    latency_ms,
                    route = template,
                    api_version,
                    service_version,
                    "request finished"
                )
            };
        }
        let probe = span
            .metadata()
            .is_some_and(|metadata| *metadata.level() == tracing::Level::DEBUG);
        if probe {
            access!(tracing::Level::DEBUG);
        } else if response.status().is_server_error() {
            access!(tracing::Level::WARN);
        } else {
            access!(tracing::Level::INFO);
        }
    }
}

/// Record the late fields in one go: a JSON log layer re-reads and re-writes a span's fields on
/// every `record`, so five separate calls cost five times what one does.
fn record_all(
    span: &Span,
    status: u16,
    latency_ms: f64,
    route: Option<&str>,
    api_version: Option<&str>,
    error: Option<&str>,
) {
    let Some(metadata) = span.metadata() else {
        return; // disabled: nobody listens
    };
    let fields = metadata.fields();
    let (Some(status_field), Some(latency_field), Some(route_field), Some(version_field), Some(error_field)) = (
        fields.field("status"),
        fields.field("latency_ms"),
        fields.field("route"),
        fields.field("api_version"),
        fields.field("otel.status_code"),
    ) else {
        return;
    };
    let values: [(&tracing::field::Field, Option<&dyn tracing::Value>); 5] = [
        (&status_field, Some(&status)),
        (&latency_field, Some(&latency_ms)),
        (&route_field, route.as_ref().map(|r| r as &dyn tracing::Value)),
        (&version_field, api_version.as_ref().map(|v| v as &dyn tracing::Value)),
        (&error_field, error.as_ref().map(|e| e as &dyn tracing::Value)),
    ];
    span.record_all(&fields.value_set(&values));
}
