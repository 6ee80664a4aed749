//! Example cutover service: an axum API whose readiness follows its dependencies.
//!
//! Run with: `cargo run -p api-service` (embedded SQLite, nothing else needed), then
//! `curl localhost:8000/health`. Set `DATABASE_URL`, `REDIS_URL`, `AMQP_URL` or `MONGODB_URL` to
//! add a critical check on that dependency: the service starts even while one is down, answers
//! 503 on `/health/ready` (and 200 on `/health/live`) until it is back, and recovers on its own.
//!
//! Copy this crate as a template: [`Config`] reads flags and environment, [`Dependencies`]
//! connects lazily and registers the checks, [`app::router`] builds the HTTP app, and
//! [`serve`] runs it.

pub mod amqp;
pub mod app;
mod config;
mod dependencies;

use std::net::SocketAddr;

use anyhow::Context;
use cutover::{Phase, health::HealthRegistry};
use tokio::net::TcpListener;

pub use config::Config;
pub use dependencies::Dependencies;

/// Connect the dependencies, build the health registry and the router, bind, and serve until
/// SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let dependencies = Dependencies::connect(&config).await?;
    let health = dependencies.health(&config)?;
    let app = app::router(&health);

    let address = SocketAddr::new(config.host, config.port);
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    health.spawn();
    // Startup work (connecting lazily, binding) is done; readiness now follows the checks.
    health.mark_started();
    tracing::info!(%address, version = %config.service_version, checks = ?health.check_names().collect::<Vec<_>>(), "api-service listening");

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal(health))
        .await?;
    tracing::info!("api-service stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C, after closing readiness.
async fn shutdown_signal(health: HealthRegistry) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    health.lifecycle().advance_to(Phase::Draining);
    tracing::info!("shutdown requested");
}
