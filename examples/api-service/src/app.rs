//! The HTTP application, built in a function so tests drive exactly what `main` serves.

use axum::{Json, Router, routing::get};
use cutover::health::HealthRegistry;
use serde_json::{Value, json};

/// The application router: the service's own routes plus the health probes.
pub fn router(health: &HealthRegistry) -> Router {
    let version = health.version().unwrap_or(env!("CARGO_PKG_VERSION")).to_owned();
    Router::new()
        .route("/", get(move || index(version.clone())))
        .merge(health.router())
}

async fn index(version: String) -> Json<Value> {
    Json(json!({
        "service": "api-service",
        "version": version,
        "health": ["/health", "/health/ready", "/health/live", "/health/startup"],
    }))
}
