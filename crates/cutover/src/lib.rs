//! Zero-downtime building blocks for Rust services.
//!
//! `cutover` is the facade over the workspace's crates: add it once and switch parts on with
//! features. Each part is also published on its own (`cutover-health`, `cutover-shutdown`,
//! ...) for libraries that want the smallest dependency.
//!
//! [`Service`] wires them to an axum app in one call: probes served from the first moment,
//! readiness only after startup work and a passing check round, and on `SIGTERM` a drain
//! instead of a drop.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use cutover::{Service, health::{check_fn, HealthRegistry, Outcome}, shutdown::ShutdownConfig};
//!
//! #[tokio::main]
//! async fn main() -> Result<std::process::ExitCode, Box<dyn std::error::Error>> {
//!     let health = HealthRegistry::builder()
//!         .check("database", check_fn(|_ctx| async { Ok(Outcome::healthy()) }))
//!         .build()?;
//!     let app = Router::new().route("/", get(|| async { "hello" }));
//!     let report = Service::builder(app)
//!         .health(health)
//!         .shutdown(ShutdownConfig::from_env()?)
//!         .bind("0.0.0.0:8000".parse()?)
//!         .serve()
//!         .await?;
//!     Ok(report.exit()) // 0 when nothing was cut
//! }
//! ```
//!
//! # Feature flags
//!
//! | feature | enables |
//! | --- | --- |
//! | `serve` (default) | [`Service`]; implies `health` and `shutdown` |
//! | `health` | [`health`]: the check registry and probe routes |
//! | `shutdown` | [`shutdown`]: lifecycle, drain layer, hooks, workers |
//! | `versioning` | [`versioning`]: version negotiation, problem+json errors, Stripe-style changes |
//! | `postgres`, `sqlite`, `mongodb`, `redis`, `http` | the built-in check for that dependency |
//! | `rabbitmq` | the RabbitMQ check and the consumer drain |
//! | `system` | memory (cgroup aware) and disk checks |
//! | `metrics` | check metrics through the `metrics` facade |
//! | `prometheus` | `/metrics` in the Prometheus format: requests, latencies, in-flight, phase, checks ([`prometheus`]) |
//! | `testing` | scripted checks and in-process probe helpers |
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "serve")]
pub mod healthcheck;
#[cfg(feature = "serve")]
pub mod limits;
#[cfg(feature = "otel")]
mod otel;
#[cfg(feature = "prometheus")]
pub mod prometheus;
#[cfg(feature = "serve")]
mod server;
#[cfg(feature = "serve")]
mod service;
#[cfg(feature = "serve")]
mod stack;
#[cfg(feature = "serve")]
pub mod startup;
#[cfg(feature = "telemetry")]
pub mod telemetry;

#[cfg(feature = "serve")]
#[doc(inline)]
pub use cutover_core::problem::Problem;
#[doc(inline)]
pub use cutover_core::{Lifecycle, Phase, PhaseWatch};
#[cfg(feature = "serve")]
pub use limits::{Limits, LimitsError};
#[cfg(feature = "serve")]
pub use service::{SERVICE_VERSION_HEADER, ServeError, Service, ServiceBuilder};
#[cfg(feature = "serve")]
pub use startup::Backoff;

/// Health checks and probe routes: see [`cutover_health`].
#[cfg(feature = "health")]
#[doc(inline)]
pub use cutover_health as health;

/// Graceful shutdown: see [`cutover_shutdown`].
#[cfg(feature = "shutdown")]
#[doc(inline)]
pub use cutover_shutdown as shutdown;

/// API versions negotiated and transformed: see [`cutover_versioning`].
#[cfg(feature = "versioning")]
#[doc(inline)]
pub use cutover_versioning as versioning;

/// The README's examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
