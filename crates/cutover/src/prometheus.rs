//! `/metrics` in the Prometheus text format (feature `prometheus`), turned on with
//! [`ServiceBuilder::prometheus`](crate::ServiceBuilder::prometheus).
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `http_requests_total` | counter | `method`, `route`, `status`, `api_version`, `service_version` |
//! | `http_request_duration_seconds` | histogram | `method`, `route`, `api_version`, `service_version` |
//! | `http_requests_in_flight` | gauge | |
//! | `cutover_lifecycle_phase` | gauge: 1 for the current phase, 0 for the others | `phase` |
//! | `cutover_health_check_status` | gauge: 1 healthy, 0.5 degraded, 0 unhealthy | `check` |
//! | `cutover_health_check_duration_seconds` | histogram | `check` |
//! | `cutover_health_check_failures_total` | counter | `check`, `kind` |
//!
//! `route` is the matched route template (`/api/users/{id}`), never the raw path, so a label
//! cannot grow with ids; requests that matched no route (404s, requests refused while
//! stopping) are counted under `route="unmatched"`. `api_version` is the version the response
//! was served in (`none` when the route is not versioned), `service_version` the one given to
//! [`ServiceBuilder::service_version`](crate::ServiceBuilder::service_version): a canary is
//! judged by comparing the 5xx ratio of two `service_version`s.
//!
//! ```text
//! sum(rate(http_requests_total{service_version="1.4.0",status=~"5.."}[1m]))
//!   / sum(rate(http_requests_total{service_version="1.4.0"}[1m]))
//! ```

use std::{
    cell::RefCell,
    collections::HashMap,
    future::Future,
    hash::BuildHasher as _,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request},
    http::Method,
    middleware::Next,
    response::Response,
};
use cutover_core::{Phase, PhaseWatch};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const PHASES: [Phase; 5] = [
    Phase::Starting,
    Phase::Ready,
    Phase::Draining,
    Phase::Stopping,
    Phase::Stopped,
];
const UNMATCHED: &str = "unmatched";
const UNVERSIONED: &str = "none";

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use (what
/// [`ServiceBuilder::prometheus`](crate::ServiceBuilder::prometheus) calls). Render it
/// yourself to serve the metrics elsewhere (another port, say).
pub fn handle() -> Result<PrometheusHandle, String> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("seconds".to_owned()), BUCKETS)
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| {
                    format!("cannot install the Prometheus recorder (another metrics recorder is installed?): {e}")
                })
        })
        .clone()
}

/// Count and time every request: an axum middleware (`axum::middleware::from_fn(track)`), for
/// routers served without [`Service`](crate::Service). `service_version` is `unknown`.
pub async fn track(request: Request, next: Next) -> Response {
    let recording = Recording::start(&request, Arc::clone(unknown_version()));
    let response = next.run(request).await;
    recording.finish(&response);
    response
}

fn unknown_version() -> &'static Arc<str> {
    static UNKNOWN: OnceLock<Arc<str>> = OnceLock::new();
    UNKNOWN.get_or_init(|| Arc::from("unknown"))
}

/// Records request metrics for everything it wraps; what [`Service`](crate::Service) puts
/// around its app.
#[derive(Debug, Clone)]
pub struct TrackLayer {
    service_version: Arc<str>,
}

impl TrackLayer {
    /// Record with this `service_version` label.
    pub fn new(service_version: impl Into<Arc<str>>) -> Self {
        Self {
            service_version: service_version.into(),
        }
    }
}

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Track {
            inner,
            service_version: Arc::clone(&self.service_version),
        }
    }
}

/// The service made by [`TrackLayer`].
#[derive(Debug, Clone)]
pub struct Track<S> {
    inner: S,
    service_version: Arc<str>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Track<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let recording = Recording::start(&request, Arc::clone(&self.service_version));
        TrackFuture {
            inner: self.inner.call(request),
            recording: Some(recording),
        }
    }
}

pin_project! {
    /// Response future of [`Track`].
    pub struct TrackFuture<F> {
        #[pin]
        inner: F,
        recording: Option<Recording>,
    }
}

impl<F, B, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some(recording)) = (&output, this.recording.take()) {
            recording.finish(response);
        }
        Poll::Ready(output)
    }
}

impl<F> std::fmt::Debug for TrackFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackFuture").finish_non_exhaustive()
    }
}

/// One request being counted. Dropped without `finish` (the client went away), it only leaves
/// the in-flight gauge.
#[derive(Debug)]
pub struct Recording {
    method: &'static str,
    route: Option<MatchedPath>,
    service_version: Arc<str>,
    started: Instant,
}

impl Recording {
    fn start<B>(request: &http::Request<B>, service_version: Arc<str>) -> Self {
        in_flight().increment(1.0);
        Self {
            method: method_label(request.method()),
            route: request.extensions().get::<MatchedPath>().cloned(),
            service_version,
            started: Instant::now(),
        }
    }

    fn finish<B>(self, response: &http::Response<B>) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let status = response.status().as_u16();
        // The route that answered, as the stack's router tags it, else as the request's router
        // matched it (`track` used as `Router::layer`).
        let route = response
            .extensions()
            .get::<crate::stack::route::Route>()
            .map(|route| route.template.as_str())
            .or(self.route.as_ref().map(MatchedPath::as_str))
            .unwrap_or(UNMATCHED);
        let api_version = response
            .headers()
            .get("api-version")
            .and_then(|value| value.to_str().ok())
            .unwrap_or(UNVERSIONED);
        // Handles are looked up once per thread and label set, not per request: the registry
        // lookup (hashing every label) is most of the cost of a `metrics` call. The lookup here
        // hashes borrowed labels with a fast hash, so a request allocates nothing.
        SERIES.with(|series| {
            let mut series = series.borrow_mut();
            let Series { hasher, entries } = &mut *series;
            let hash = hasher.hash_one((self.method, status, route, api_version, &*self.service_version));
            let bucket = entries.entry(hash).or_default();
            let position = bucket.iter().position(|entry| {
                entry.method == self.method
                    && entry.status == status
                    && entry.route == route
                    && entry.api_version == api_version
                    && *entry.service_version == *self.service_version
            });
            let entry = match position {
                Some(position) => &bucket[position],
                None => {
                    bucket.push(SeriesEntry::new(
                        self.method,
                        status,
                        route,
                        api_version,
                        &self.service_version,
                    ));
                    &bucket[bucket.len() - 1]
                }
            };
            entry.requests.increment(1);
            entry.duration.record(elapsed);
        });
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        in_flight().decrement(1.0);
    }
}

fn in_flight() -> &'static metrics::Gauge {
    static IN_FLIGHT: OnceLock<metrics::Gauge> = OnceLock::new();
    IN_FLIGHT.get_or_init(|| metrics::gauge!("http_requests_in_flight"))
}

/// The request counter and duration histogram of one label set, with the labels.
struct SeriesEntry {
    method: &'static str,
    status: u16,
    route: String,
    api_version: String,
    service_version: Arc<str>,
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

impl SeriesEntry {
    fn new(method: &'static str, status: u16, route: &str, api_version: &str, service_version: &Arc<str>) -> Self {
        let labels = [
            ("method", method.to_owned()),
            ("route", route.to_owned()),
            ("api_version", api_version.to_owned()),
            ("service_version", service_version.to_string()),
        ];
        let mut counted = labels.to_vec();
        counted.push(("status", status_label(status).to_owned()));
        Self {
            method,
            status,
            route: route.to_owned(),
            api_version: api_version.to_owned(),
            service_version: Arc::clone(service_version),
            requests: metrics::counter!("http_requests_total", &counted),
            duration: metrics::histogram!("http_request_duration_seconds", &labels),
        }
    }
}

#[derive(Default)]
struct Series {
    hasher: rustc_hash::FxBuildHasher,
    entries: HashMap<u64, Vec<SeriesEntry>, rustc_hash::FxBuildHasher>,
}

thread_local! {
    static SERIES: RefCell<Series> = RefCell::new(Series::default());
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// `"200"`, `"404"`, ...: one leaked string per status code seen, at most 1,000.
fn status_label(status: u16) -> &'static str {
    static LABELS: OnceLock<Vec<&'static str>> = OnceLock::new();
    let labels = LABELS.get_or_init(|| (0..1000).map(|code| &*format!("{code}").leak()).collect());
    labels.get(usize::from(status)).copied().unwrap_or("invalid")
}

/// Keep `cutover_lifecycle_phase` in step with the lifecycle.
pub(crate) fn follow_phase(mut phase: PhaseWatch) {
    tokio::spawn(async move {
        loop {
            let current = phase.phase();
            for candidate in PHASES {
                let value = if candidate == current { 1.0 } else { 0.0 };
                metrics::gauge!("cutover_lifecycle_phase", "phase" => candidate.as_str()).set(value);
            }
            if current == Phase::Stopped || phase.changed().await.is_none() {
                return;
            }
        }
    });
}

/// The `/metrics` route.
pub(crate) fn route(handle: PrometheusHandle) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || std::future::ready(handle.render())),
    )
}
