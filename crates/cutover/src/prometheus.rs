//! `/metrics` in the Prometheus text format (feature `prometheus`), turned on with
//! [`ServiceBuilder::prometheus`](crate::ServiceBuilder::prometheus).
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `http_requests_total` | counter | `method`, `status` |
//! | `http_request_duration_seconds` | histogram | `method` |
//! | `http_requests_in_flight` | gauge | |
//! | `cutover_lifecycle_phase` | gauge: 1 for the current phase, 0 for the others | `phase` |
//! | `cutover_health_check_status` | gauge: 1 healthy, 0.5 degraded, 0 unhealthy | `check` |
//! | `cutover_health_check_duration_seconds` | histogram | `check` |
//! | `cutover_health_check_failures_total` | counter | `check`, `kind` |
//!
//! Paths are not a label: on a versioned API every route goes through one fallback, and raw
//! paths (`/api/users/42`) would give every id its own series.

use std::{cell::RefCell, collections::HashMap, sync::OnceLock, time::Instant};

use axum::{extract::Request, http::Method, middleware::Next, response::Response};
use cutover_core::{Phase, PhaseWatch};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

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
/// routers served without [`Service`](crate::Service).
pub async fn track(request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let started = Instant::now();
    let in_flight = IN_FLIGHT.get_or_init(|| metrics::gauge!("http_requests_in_flight"));
    in_flight.increment(1.0);
    let response = next.run(request).await;
    in_flight.decrement(1.0);
    let elapsed = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    // Handles are looked up once per thread and (method, status), not per request: the
    // registry lookup (hashing the labels) is most of the cost of a `metrics` call.
    SERIES.with(|series| {
        let mut series = series.borrow_mut();
        let (requests, duration) = series.entry((method, status)).or_insert_with(|| {
            (
                metrics::counter!("http_requests_total", "method" => method, "status" => status_label(status)),
                metrics::histogram!("http_request_duration_seconds", "method" => method),
            )
        });
        requests.increment(1);
        duration.record(elapsed);
    });
    response
}

static IN_FLIGHT: OnceLock<metrics::Gauge> = OnceLock::new();

/// The request counter and duration histogram of one (method, status).
type Series = HashMap<(&'static str, u16), (metrics::Counter, metrics::Histogram)>;

thread_local! {
    static SERIES: RefCell<Series> = RefCell::new(HashMap::new());
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
