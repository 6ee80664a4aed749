//! Example cutover service: an axum API whose readiness follows its dependencies.
//!
//! Run with: `cargo run -p api-service` (embedded SQLite, nothing else needed), then
//! `curl localhost:8000/health`. Set `DATABASE_URL`, `REDIS_URL`, `AMQP_URL` or `MONGODB_URL` to
//! add a critical check on that dependency: the service starts even while one is down, answers
//! 503 on `/health/ready` (and 200 on `/health/live`) until it is back, and recovers on its own.
//!
//! The users API ([`users`]) is the brief's versioning example: one set of handlers serves API
//! versions 1.0 to 1.3, chosen with `Accept-Version`, `/api/v1.2/users` or `?version=1.2`.
//!
//! Copy this crate as a template: [`Config`] reads flags and environment, [`Dependencies`]
//! connects lazily and registers the checks, [`app::router`] and [`users::router`] build the
//! HTTP app, and [`serve`] runs it with probes, versioning and a draining shutdown.

pub mod app;
pub mod cache;
mod config;
mod dependencies;
pub mod events;
pub mod migrations;
pub mod users;

use std::net::SocketAddr;

use cutover::{Limits, Service, shutdown::ShutdownReport};
use cutover_migrate::instances::InstanceRegistry;

pub use config::{Command, Config};
pub use dependencies::Dependencies;

/// Apply the embedded migrations for `config`'s database (`phases`, default expand) once, and
/// report what was applied: the deployment's migration job. `force_contract` (a reason)
/// overrides the contract gate.
pub async fn migrate(
    config: &Config,
    phases: Vec<cutover_migrate::Phase>,
    force_contract: Option<String>,
) -> anyhow::Result<cutover_migrate::Report> {
    let phases = if phases.is_empty() {
        vec![cutover_migrate::Phase::Expand]
    } else {
        phases
    };
    let (url, set) = match &config.database_url {
        Some(url) => (url.clone(), migrations::postgres()?),
        None => (
            format!("sqlite://{}", config.sqlite_path.display()),
            migrations::sqlite()?,
        ),
    };
    let options = cutover_migrate::UpOptions {
        phases: Some(phases),
        force_contract,
        ..cutover_migrate::UpOptions::default()
    };
    Ok(cutover_migrate::Migrator::new(set).up(&url, &options).await?)
}

/// Connect the dependencies, build the health registry and the router, and serve until
/// SIGTERM or Ctrl-C, draining traffic on the way out. Returns the shutdown report.
pub async fn serve(config: Config) -> anyhow::Result<ShutdownReport> {
    tracing::info!(version = %config.service_version, environment = %config.environment, "starting api-service");
    let dependencies = Dependencies::connect(&config).await?;
    let health = dependencies.health(&config)?;
    let (store, migration_target, migration_set, phases) = match &dependencies.postgres {
        Some(pool) => (
            users::UserStore::Postgres(pool.clone()),
            migrations::Database::Postgres(pool.clone()),
            migrations::postgres()?,
            vec![cutover_migrate::Phase::Expand],
        ),
        None => (
            users::UserStore::Sqlite(dependencies.sqlite.clone()),
            migrations::Database::Sqlite(dependencies.sqlite.clone()),
            migrations::sqlite()?,
            vec![cutover_migrate::Phase::Expand, cutover_migrate::Phase::Backfill],
        ),
    };
    let events =
        (dependencies.rabbitmq.clone()).map(|connection| events::Events::new(&config.events_exchange, connection));
    let cache = dependencies.redis.clone().map(cache::UserCache::new);
    let router = app::router(&config.service_version, &config.environment).merge(users::router(store, events, cache));
    let router = app::inject_errors(router, config.inject_error_rate);
    let sqlite = dependencies.sqlite.clone();

    // Registered with the migrations this binary embeds: `cutover-migrate up --phase contract`
    // waits until no live instance was built without them.
    let registry = match &dependencies.postgres {
        Some(pool) => InstanceRegistry::new(pool, "api-service", &migration_set),
        None => InstanceRegistry::new(&dependencies.sqlite, "api-service", &migration_set),
    };
    let migrator = migrations::Startup::new(migration_target, migration_set, phases);
    let mut service = Service::builder(router)
        .service_version(&config.service_version)
        .register_instance(registry.heartbeat(config.instance_heartbeat))
        .prometheus()
        .health(health)
        .shutdown(config.shutdown())
        .limits(Limits::from_env()?)
        .versioning(users::version_layer())
        .bind(SocketAddr::new(config.host, config.port))
        // Readiness waits for the schema: probes answer 503 until the migrations are applied,
        // retried while the database cannot be reached; a broken migration ends the start-up.
        .startup_retrying(
            "migrations",
            move || migrator.clone().apply(),
            cutover_migrate::MigrateError::is_transient,
        )
        .hook("close sqlite", move || async move { sqlite.close().await });
    if let Some(port) = config.admin_port {
        // `/metrics` and the full `/health` report move there; probes stay on both.
        service = service.admin_bind(SocketAddr::new(config.host, port));
    }
    if let Some(pool) = dependencies.postgres.clone() {
        // Hooks run last registered first: PostgreSQL closes before SQLite.
        service = service.hook("close postgres", move || async move { pool.close().await });
    }
    let report = service.serve().await?;
    Ok(report)
}
