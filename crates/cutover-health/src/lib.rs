//! Kubernetes-style health probes for Rust services.
//!
//! Register [`Check`]s in a [`HealthRegistry`]; the registry runs them **concurrently**, each
//! with its own **timeout**, on a **schedule of its own** (every 10 s with jitter by default,
//! every 2 s while something fails),
//! and publishes each round as a [`Snapshot`]. Probes read the latest snapshot, so a thousand
//! load-balancer probes a second cost your database nothing, and every probe answers in
//! microseconds, well inside Kubernetes' 1 s probe timeout.
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use cutover_health::{check_fn, HealthRegistry, Outcome, Registration};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let health = HealthRegistry::builder()
//!     .version(env!("CARGO_PKG_VERSION"))
//!     .check("database", check_fn(|_ctx| async {
//!         // SELECT 1 on the application's pool
//!         Ok(Outcome::healthy())
//!     }))
//!     .register(
//!         Registration::new("recommendations", check_fn(|_ctx| async { Ok(Outcome::healthy()) }))
//!             .non_critical()
//!             .timeout(Duration::from_millis(500)),
//!     )
//!     .build()?;
//!
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .merge(health.router());
//!
//! // ... run migrations, warm caches ...
//! health.mark_started();
//!
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! # Probes
//!
//! | path | answers 200 when | never depends on |
//! | --- | --- | --- |
//! | `/health` | no critical check fails (degraded is 200) | |
//! | `/health/ready` | lifecycle is `Ready` and all critical readiness checks pass | |
//! | `/health/live` | the async runtime runs a task within 500 ms | any dependency |
//! | `/health/startup` | [`HealthRegistry::mark_started`] was called and startup checks passed once (latched) | |
//! | `/health/group/{tag}` | no critical check with that tag fails | |
//!
//! Failing probes answer 503. Bodies are JSON, or the IETF `application/health+json` shape
//! (`pass` / `warn` / `fail`) when the request's `Accept` asks for it. See [`routes`] for the
//! exact bodies.
//!
//! # Readiness follows the lifecycle
//!
//! The registry reads a [`Lifecycle`]: readiness is closed while
//! `Starting` (until [`mark_started`](HealthRegistry::mark_started)) and from the moment a
//! shutdown begins (`Draining`), whatever the checks say. Share the lifecycle with
//! `cutover-shutdown` through [`HealthRegistryBuilder::lifecycle`] and a `SIGTERM` closes
//! readiness at once. There is no fixed sleep anywhere.
//!
//! # Failures are contained
//!
//! - A check that exceeds its timeout is failed with `timed out after 2s` and its task is
//!   aborted.
//! - A check that panics is failed with `check panicked: <message>`; the process keeps running.
//! - A check error is recorded with its source chain, and secrets are
//!   [redacted](redact) before anything else sees it: a password in a connection URL never
//!   reaches a response or a log line. [`ErrorDetails`] keeps error text and system details from
//!   unauthenticated callers altogether; statuses stay visible.
//! - Results older than three intervals count as failed, so a stopped scheduler cannot leave
//!   a stale "healthy" behind.
//!
//! # Drivers and their versions
//!
//! The built-in checks take the application's own clients, so the application must use the
//! same major versions of the drivers: sqlx 0.9, redis 1, mongodb 3, lapin 4 and reqwest
//! 0.13. Each is re-exported under its feature (`cutover_health::sqlx`, `::redis`,
//! `::mongodb`, `::lapin`, `::reqwest`); use those paths, or depend on the same versions.
//!
//! Every check can be built without a live connection, so a service starts while a
//! dependency is down and becomes ready when it answers: `PgPoolOptions::connect_lazy`,
//! [`checks::RedisCheck::lazy`], `mongodb::Client::with_options` (connects on first use), and
//! [`checks::RabbitMqCheck::reconnecting`].
//!
//! # Feature flags
//!
//! | feature | enables |
//! | --- | --- |
//! | `axum` (default) | [`HealthRegistry::router`]: the probe routes |
//! | `postgres` | [`checks::PostgresCheck`], and `cutover_health::sqlx` |
//! | `sqlite` | [`checks::SqliteCheck`], and `cutover_health::sqlx` |
//! | `mongodb` | [`checks::MongoCheck`], and `cutover_health::mongodb` |
//! | `redis` | [`checks::RedisCheck`], and `cutover_health::redis` |
//! | `rabbitmq` | [`checks::RabbitMqCheck`], and `cutover_health::lapin` |
//! | `http` | [`checks::HttpCheck`], and `cutover_health::reqwest` |
//! | `memory` | [`checks::MemoryCheck`] (cgroup aware) |
//! | `disk` | [`checks::DiskCheck`] |
//! | `metrics` | check status and duration through the [`metrics`](https://docs.rs/metrics) facade |
//! | `testing` | [`testing`]: scripted checks and in-process probe helpers for your tests |
#![cfg_attr(docsrs, feature(doc_cfg))]

mod check;
pub mod checks;
#[cfg(feature = "metrics")]
pub mod metrics;
mod probe;
pub mod redact;
mod registry;
pub mod report;
#[cfg(feature = "axum")]
pub mod routes;
mod runner;
mod snapshot;
#[cfg(feature = "testing")]
pub mod testing;

// The driver crates the built-in checks take, at the versions they were built against: a
// service that uses these paths never has two versions of a driver whose types do not mix.
#[cfg(feature = "rabbitmq")]
pub use ::lapin;
#[cfg(feature = "mongodb")]
pub use ::mongodb;
#[cfg(feature = "redis")]
pub use ::redis;
#[cfg(feature = "http")]
pub use ::reqwest;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use ::sqlx;
pub use check::{BoxError, Check, CheckContext, CheckFn, CheckResult, Outcome, check_fn};
#[doc(no_inline)]
pub use cutover_core::{Lifecycle, Phase};
pub use probe::{Liveness, Readiness, StartupStatus};
pub use registry::{
    BuildError, DEFAULT_FAILING_INTERVAL, DEFAULT_INTERVAL, DEFAULT_TIMEOUT, DEFAULT_TTL, ErrorDetails, HealthRegistry,
    HealthRegistryBuilder, Mode, Probe, Registration,
};
pub use snapshot::{CheckState, FailureKind, Snapshot, Status};

/// This crate's README, compiled as doctests so its example cannot rot.
#[cfg(all(doctest, feature = "axum"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
