//! The HTTP application, built in a function so tests drive exactly what `main` serves.
//! The health probes are added by `cutover::Service`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Query, Request},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use cutover::Problem;
use serde::Deserialize;
use serde_json::{Value, json};

/// The longest `/api/slow` will wait: long enough to outlast any shutdown timeout in tests,
/// short enough that a typo cannot tie up a connection for hours.
const SLOW_LIMIT_MS: u64 = 120_000;

/// Answer `rate` of the requests through `router` with a 500, spread evenly (request n fails
/// when `floor((n + 1) * rate)` passes an integer): a deliberately bad release for canary
/// rehearsals. A rate of 0 returns the router untouched.
pub fn inject_errors(router: Router, rate: f64) -> Router {
    if rate <= 0.0 {
        return router;
    }
    let served = Arc::new(AtomicU64::new(0));
    router.layer(axum::middleware::from_fn(move |request: Request, next: Next| {
        let n = served.fetch_add(1, Ordering::Relaxed);
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let fails = ((n + 1) as f64 * rate).floor() as u64 > (n as f64 * rate).floor() as u64;
        async move {
            if fails {
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "an error injected by INJECT_ERROR_RATE",
                )
            } else {
                next.run(request).await
            }
        }
    }))
}

/// The application's own routes.
pub fn router(version: &str, environment: &str) -> Router {
    let (version, environment) = (version.to_owned(), environment.to_owned());
    Router::new()
        .route("/", get(move || index(version.clone(), environment.clone())))
        .route("/api/slow", get(slow))
}

async fn index(version: String, environment: String) -> Json<Value> {
    Json(json!({
        "service": "api-service",
        "version": version,
        "environment": environment,
        "health": ["/health", "/health/ready", "/health/live", "/health/startup"],
    }))
}

#[derive(Debug, Deserialize)]
struct SlowParams {
    ms: u64,
}

/// `GET /api/slow?ms=N`: answers after N milliseconds, to see in-flight requests survive a
/// shutdown.
async fn slow(params: Result<Query<SlowParams>, axum::extract::rejection::QueryRejection>) -> Response {
    let Query(SlowParams { ms }) = match params {
        Ok(params) => params,
        Err(rejection) => {
            return problem(
                StatusCode::BAD_REQUEST,
                &format!("expected ?ms=<milliseconds>: {rejection}"),
            );
        }
    };
    if ms > SLOW_LIMIT_MS {
        return problem(StatusCode::BAD_REQUEST, &format!("ms must be at most {SLOW_LIMIT_MS}"));
    }
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Json(json!({ "slept_ms": ms })).into_response()
}

fn problem(status: StatusCode, detail: &str) -> Response {
    Problem::new(status).with_detail(detail).into_response()
}
