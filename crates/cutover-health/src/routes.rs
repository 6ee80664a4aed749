//! The probe endpoints as an axum [`Router`].
//!
//! | path | 200 when |
//! | --- | --- |
//! | `/health` | no critical check failing (degraded is still 200) |
//! | `/health/ready` | lifecycle `Ready` and every critical readiness check passing |
//! | `/health/live` | the runtime can run a task (dependencies are never consulted) |
//! | `/health/startup` | startup work done and startup checks passed once (latched) |
//! | `/health/group/{tag}` | no critical check carrying `tag` failing |
//!
//! Every route answers `GET` and `HEAD`, sends `Cache-Control: no-store`, and returns the IETF
//! `application/health+json` shape when the request's `Accept` asks for it. Failing probes
//! answer 503.
//!
//! Details are private by default: everyone sees each check's status, but error text and
//! system details (memory figures, disk paths, check messages) only reach callers allowed by
//! [`ErrorDetails`](crate::ErrorDetails) (a bearer token), or every caller of
//! [`admin_router`](HealthRegistry::admin_router), meant for an address only operators reach.

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::{
    HealthRegistry,
    report::{self, Format, Rendered},
};

impl HealthRegistry {
    /// The probe routes under `/health`, ready to `merge` into an application router or to serve
    /// on a port of their own.
    ///
    /// The router is generic over the application's state, so it merges into any `Router<S>`.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use cutover_health::HealthRegistry;
    ///
    /// let health = HealthRegistry::builder().build().unwrap();
    /// let app: Router = Router::new()
    ///     .route("/", get(|| async { "hello" }))
    ///     .merge(health.router());
    /// # drop(app);
    /// ```
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        self.router_at("/health")
    }

    /// The probe routes under another prefix, e.g. `/internal/health` or `/healthz`.
    pub fn router_at<S>(&self, prefix: &str) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        self.routes(prefix, false)
    }

    /// The probe routes for an address only operators reach (an admin port): the same
    /// routes, but `/health` and `/health/group/{tag}` show every detail (error text, memory,
    /// disk paths) to every caller, whatever [`ErrorDetails`](crate::ErrorDetails) says.
    pub fn admin_router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        self.routes("/health", true)
    }

    fn routes<S>(&self, prefix: &str, all_details: bool) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let prefix = prefix.trim_end_matches('/');
        let root = if prefix.is_empty() { "/" } else { prefix };
        Router::new()
            .route(root, get(full_report))
            .route(&format!("{prefix}/ready"), get(ready))
            .route(&format!("{prefix}/live"), get(live))
            .route(&format!("{prefix}/startup"), get(startup))
            .route(&format!("{prefix}/group/{{tag}}"), get(group))
            .with_state(Probes {
                registry: self.clone(),
                all_details,
            })
    }
}

/// The routes' state: the registry, and whether this is an admin router.
#[derive(Clone)]
struct Probes {
    registry: HealthRegistry,
    all_details: bool,
}

fn format_of(headers: &HeaderMap) -> Format {
    Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
}

fn respond(rendered: &Rendered, format: Format) -> Response {
    let status = if rendered.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::to_vec(&rendered.body).unwrap_or_else(|_| b"{}".to_vec());
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(format.content_type())),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

fn shows_details(probes: &Probes, headers: &HeaderMap) -> bool {
    probes.all_details
        || probes
            .registry
            .error_details()
            .allows(headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes))
}

async fn full_report(State(probes): State<Probes>, headers: HeaderMap) -> Response {
    let format = format_of(&headers);
    let registry = &probes.registry;
    let snapshot = registry.latest().await;
    let show_errors = shows_details(&probes, &headers);
    respond(
        &report::full(registry, snapshot.as_deref(), None, show_errors, format),
        format,
    )
}

async fn group(State(probes): State<Probes>, Path(tag): Path<String>, headers: HeaderMap) -> Response {
    let registry = &probes.registry;
    if !registry.has_tag(&tag) {
        let body = serde_json::json!({
            "type": "about:blank",
            "title": "Unknown health group",
            "status": 404,
            "detail": format!("no health check carries the tag `{tag}`"),
        });
        return (
            StatusCode::NOT_FOUND,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/problem+json"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            body.to_string(),
        )
            .into_response();
    }
    let format = format_of(&headers);
    let snapshot = registry.latest().await;
    let show_errors = shows_details(&probes, &headers);
    respond(
        &report::full(registry, snapshot.as_deref(), Some(&tag), show_errors, format),
        format,
    )
}

async fn ready(State(Probes { registry, .. }): State<Probes>, headers: HeaderMap) -> Response {
    let format = format_of(&headers);
    let snapshot = registry.latest().await;
    let readiness = registry.readiness_of(snapshot.as_deref());
    respond(&report::readiness(&readiness, snapshot.as_deref(), format), format)
}

async fn live(State(Probes { registry, .. }): State<Probes>, headers: HeaderMap) -> Response {
    let format = format_of(&headers);
    let liveness = registry.liveness().await;
    respond(&report::liveness(&liveness, format), format)
}

async fn startup(State(Probes { registry, .. }): State<Probes>, headers: HeaderMap) -> Response {
    let format = format_of(&headers);
    let startup = registry.startup().await;
    respond(
        &report::startup(&startup, registry.lifecycle().uptime(), format),
        format,
    )
}
