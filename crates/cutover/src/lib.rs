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
//! # Safe to expose by default
//!
//! A [`Service`] serves under [`Limits`] (timeouts for request heads, idle connections,
//! request bodies and handlers; body, header, concurrency and connection caps; each with a
//! default, a builder method and an `HTTP_*` variable: see the [`limits`] table), keeps health
//! details private (statuses for everyone; error text and system details only with the
//! registry's token or on the [admin address](ServiceBuilder::admin_bind)), and answers its own
//! errors with RFC 9457 [`Problem`] documents.
//!
//! # The middleware stack
//!
//! Every request goes through, outermost first:
//!
//! | layer | from | does |
//! | --- | --- | --- |
//! | sensitive headers | `tower-http` | `Authorization`, `Cookie`, `Proxy-Authorization` and `Set-Cookie` are never printed |
//! | request id | `tower-http` | `x-request-id` kept when the client sent a sane one (at most 128 visible characters), else a UUID; echoed on the response |
//! | service version | cutover | `X-Service-Version` on every response |
//! | trace | `tower-http` | one span per request (method, path, request id), one `cutover::access` line when it ends (status, latency, route, API and service version); probes at DEBUG. With OpenTelemetry export on, the span also records the late fields as its attributes |
//! | metrics | cutover | Prometheus request metrics by route template, API and service version ([`prometheus`]), when turned on |
//! | problem bodies | cutover | error responses produced without a body (axum's 404 and 405, a timeout's 503) or as plain text by a body limit (413) get a problem document |
//! | drain | `cutover-shutdown` | `Connection: close` while draining (HTTP/2: a GOAWAY from the server), 503 while stopping |
//! | catch panic | `tower-http` | a panicking handler answers 500; the process keeps serving |
//! | router | axum | probes and `/metrics` first, the application behind them |
//!
//! Around the application only (never the probes or `/metrics`): the body watch (the body
//! read timeout with `tower-http`'s `TimeoutBody` and the minimum data rate, both answered
//! 408; small bodies read whole first), the request timeout (503; the upload is not counted),
//! load shedding at the concurrency limit (503 + `Retry-After`), and the body limit
//! (`tower-http`, 413).
//!
//! # Testing in-process
//!
//! [`Service::router`] is the assembled app, for tests that drive the real wiring with
//! `tower::ServiceExt::oneshot`, no socket needed:
//!
//! ```
//! use axum::{Router, body::Body, http::Request, routing::get};
//! use cutover::{Service, health::HealthRegistry, shutdown::ShutdownConfig};
//! use tower::ServiceExt as _;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let health = HealthRegistry::builder().build().unwrap();
//! let service = Service::builder(Router::new().route("/hello", get(|| async { "hi" })))
//!     .health(health.clone())
//!     .shutdown(ShutdownConfig::default().signals(false))
//!     .build()
//!     .unwrap();
//! health.mark_started();
//! health.refresh().await;
//! let ready = service.router().oneshot(Request::get("/health/ready").body(Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(ready.status(), 200);
//! # }
//! ```
//!
//! # Feature flags
//!
//! | feature | enables |
//! | --- | --- |
//! | `serve` (default) | [`Service`], [`Limits`], [`Problem`]; implies `health` and `shutdown` |
//! | `health` | [`health`]: the check registry and probe routes |
//! | `shutdown` | [`shutdown`]: lifecycle, drain layer, hooks, workers |
//! | `versioning` | [`versioning`]: version negotiation, problem+json errors, Stripe-style changes |
//! | `postgres`, `sqlite`, `mongodb`, `redis`, `http` | the built-in check for that dependency |
//! | `rabbitmq` | the RabbitMQ check and the consumer drain |
//! | `system` | memory (cgroup aware) and disk checks |
//! | `metrics` | check metrics through the `metrics` facade |
//! | `prometheus` | `/metrics` in the Prometheus format: requests, latencies, in-flight, phase, checks ([`prometheus`]) |
//! | `migrate` | [`migrate`]: the migration runner; with `serve`, `ServiceBuilder::register_instance` for the contract gate |
//! | `telemetry` | [`telemetry`]: logs (JSON or text, `RUST_LOG`) set up in one call |
//! | `otel` | OpenTelemetry: request spans exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, W3C `traceparent` accepted and handed on ([`telemetry::trace_context`]); implies `telemetry` |
//! | `testing` | scripted checks and in-process probe helpers |
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "serve")]
pub mod healthcheck;
#[cfg(all(feature = "serve", feature = "migrate"))]
mod instance;
#[cfg(feature = "serve")]
pub mod limits;
#[cfg(feature = "otel")]
mod otel;
#[cfg(feature = "prometheus")]
pub mod prometheus;
#[cfg(feature = "serve")]
pub mod secrets;
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
pub use limits::{Limits, LimitsError, MinDataRate};

/// Whether request spans are exported over OpenTelemetry: set once `telemetry` installs an
/// exporter. Only then do request spans carry the late fields (status, route, latency) and the
/// `otel.*` attributes; without it, a JSON log layer would re-parse and re-write the span's
/// fields on every request for nobody.
static TRACES_EXPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg_attr(not(feature = "serve"), allow(dead_code))]
pub(crate) fn traces_exported() -> bool {
    TRACES_EXPORTED.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(feature = "otel")]
pub(crate) fn set_traces_exported() {
    TRACES_EXPORTED.store(true, std::sync::atomic::Ordering::Relaxed);
}
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

/// The migration runner: lock-safe, resumable migrations for PostgreSQL, SQLite and MongoDB
/// (the `cutover-migrate` crate; feature `migrate` with `postgres` and/or `sqlite`).
///
/// ```no_run
/// # async fn run() -> Result<(), cutover::migrate::MigrateError> {
/// use cutover::migrate::{Migrator, UpOptions};
///
/// let migrations = cutover::migrate::embed_migrations!("../cutover-migrate/examples/migrations")?;
/// Migrator::new(migrations).up("postgres://app@db/app", &UpOptions::default()).await?;
/// # Ok(()) }
/// ```
#[cfg(feature = "migrate")]
#[cfg_attr(docsrs, doc(cfg(feature = "migrate")))]
pub use cutover_migrate as migrate;

/// API versions negotiated and transformed: see [`cutover_versioning`].
#[cfg(feature = "versioning")]
#[doc(inline)]
pub use cutover_versioning as versioning;

/// The README's examples, compiled as doctests so they cannot rot (with the features they use).
#[cfg(all(doctest, feature = "serve", feature = "versioning", feature = "telemetry"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// This crate's README, compiled as doctests so its example cannot rot.
#[cfg(all(doctest, feature = "serve"))]
#[doc = include_str!("../README.md")]
pub struct CrateReadmeDoctests;
