//! Serve an axum app with health probes, traffic draining, graceful shutdown and the limits
//! of a public service wired together.

use std::{fmt, future::Future, net::SocketAddr};

use axum::{Router, http};
use cutover_health::HealthRegistry;
use cutover_shutdown::{
    BoxError, HookOutput, Shutdown, ShutdownBuilder, ShutdownConfig, ShutdownHandle, ShutdownReport, Workers,
};
use tokio::net::TcpListener;

use crate::{
    Limits,
    server::Server,
    stack,
    startup::{Backoff, StartupWork, retrying},
};

/// Why [`Service::serve`] could not run, or why it ended early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The listening address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The shutdown manager could not start (no runtime, no signal handlers).
    #[error(transparent)]
    Shutdown(#[from] cutover_shutdown::BuildError),
    /// Startup work failed; the service was shut down gracefully, as the report shows.
    #[error("startup failed: {source}")]
    Startup {
        /// The error of the startup work.
        source: BoxError,
        /// The shutdown that followed.
        report: Box<ShutdownReport>,
    },
    /// The Prometheus recorder could not be installed.
    #[error("{0}")]
    Metrics(String),
    /// A check wired in by the service (the instance registry's) could not be added to the
    /// health registry.
    #[error("{0}")]
    Health(#[from] cutover_health::BuildError),
    /// The service version cannot be sent as a header value.
    #[error("service version {0:?} cannot be sent in X-Service-Version: use visible ASCII")]
    Version(String),
}

/// The header naming the version that answered, on every response.
pub const SERVICE_VERSION_HEADER: &str = "x-service-version";

enum Listen {
    Address(SocketAddr),
    Listener(TcpListener),
}

impl Listen {
    async fn bind(self) -> Result<TcpListener, ServeError> {
        match self {
            Self::Listener(listener) => Ok(listener),
            Self::Address(address) => TcpListener::bind(address)
                .await
                .map_err(|source| ServeError::Bind { address, source }),
        }
    }
}

/// An axum application served with zero-downtime behaviour and the limits a public service
/// needs. Build it with [`Service::builder`].
///
/// What [`serve`](Self::serve) does:
///
/// 1. binds, starts the health checks and serves at once: `/health/live` answers 200 while
///    `/health/startup` and `/health/ready` answer 503;
/// 2. runs the startup work (migrations, warm-up), retrying what can be retried, and then
///    marks the service started, so readiness follows the checks: ready after the first
///    passing round, with no fixed sleep. A shutdown that begins meanwhile cancels the startup
///    work, so the process still exits within its budget;
/// 3. on SIGTERM/SIGINT, drains: readiness 503 at once, requests served with
///    `Connection: close` (HTTP/2: a GOAWAY) for the drain delay, then new requests refused
///    with 503 while in-flight ones finish (long ones are cut at the deadline);
/// 4. runs the shutdown hooks in reverse order, and returns the [`ShutdownReport`].
///
/// Every request goes through the [middleware stack](crate#the-middleware-stack) (request ids, a trace span,
/// panics caught, problem+json errors) and the [`Limits`] (timeouts, body and header sizes,
/// load shedding, connections), all on by default.
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use cutover::{Limits, Service, health::HealthRegistry, shutdown::ShutdownConfig};
///
/// # async fn run() -> Result<std::process::ExitCode, Box<dyn std::error::Error>> {
/// let health = HealthRegistry::builder().build()?;
/// let report = Service::builder(Router::new().route("/", get(|| async { "hello" })))
///     .health(health)
///     .shutdown(ShutdownConfig::from_env()?)
///     .limits(Limits::from_env()?)
///     .startup(async { /* warm a cache */ Ok::<(), std::io::Error>(()) })
///     .hook("close pool", || async { /* pool.close().await */ })
///     .bind("0.0.0.0:8000".parse()?)
///     .admin_bind("127.0.0.1:9000".parse()?)
///     .serve()
///     .await?;
/// Ok(report.exit())
/// # }
/// ```
pub struct Service {
    app: stack::App,
    admin: Option<stack::App>,
    health: HealthRegistry,
    shutdown: Shutdown,
    listen: Listen,
    admin_listen: Option<Listen>,
    startup: Vec<StartupWork>,
    limits: Limits,
    prometheus: bool,
    #[cfg(feature = "migrate")]
    heartbeat: Option<std::sync::Arc<crate::instance::Heartbeat>>,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("health", &self.health)
            .field("shutdown", &self.shutdown)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Service`].
#[must_use]
pub struct ServiceBuilder {
    router: Router,
    #[cfg(feature = "versioning")]
    versioning: Option<cutover_versioning::VersionLayer>,
    health: Option<HealthRegistry>,
    shutdown: ShutdownBuilder,
    config: ShutdownConfig,
    listen: Listen,
    admin_listen: Option<Listen>,
    startup: Vec<StartupWork>,
    backoff: Backoff,
    version: Option<String>,
    prometheus: bool,
    limits: Limits,
    #[cfg(feature = "migrate")]
    instance: Option<cutover_migrate::instances::InstanceRegistry>,
}

impl fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceBuilder")
            .field("health", &self.health)
            .field("config", &self.config)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Start building a service around `router`.
    pub fn builder(router: Router) -> ServiceBuilder {
        ServiceBuilder {
            // Route templates are known only inside the router: carried out for spans and
            // metrics.
            router: router.layer(stack::route::RouteTagLayer),
            #[cfg(feature = "versioning")]
            versioning: None,
            health: None,
            shutdown: Shutdown::builder(),
            config: ShutdownConfig::default(),
            listen: Listen::Address(SocketAddr::from(([0, 0, 0, 0], 8000))),
            admin_listen: None,
            startup: Vec::new(),
            backoff: Backoff::default(),
            version: None,
            prometheus: false,
            limits: Limits::default(),
            #[cfg(feature = "migrate")]
            instance: None,
        }
    }

    /// A handle to trigger the shutdown or watch the phase from elsewhere.
    pub fn handle(&self) -> ShutdownHandle {
        self.shutdown.handle()
    }

    /// Background workers the shutdown waits for.
    pub fn workers(&self) -> &Workers {
        self.shutdown.workers()
    }

    /// The health registry serving the probes.
    pub fn health(&self) -> &HealthRegistry {
        &self.health
    }

    /// The limits the service serves under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The whole public app as [`serve`](Self::serve) serves it (probes, drain, versioning,
    /// request limits, problem bodies, request ids), for tests that drive the real wiring
    /// in-process with `tower::ServiceExt::oneshot`. Only the connection-level limits (header
    /// and idle timeouts, connection count) need a socket.
    ///
    /// ```
    /// use axum::{Router, body::Body, http::Request, routing::get};
    /// use cutover::Service;
    /// use tower::ServiceExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let service = Service::builder(Router::new().route("/", get(|| async { "hi" })))
    ///     .signals(false)
    ///     .build()
    ///     .unwrap();
    /// let response = service.router().oneshot(Request::get("/health/live").body(Body::empty()).unwrap()).await.unwrap();
    /// assert_eq!(response.status(), 200);
    /// assert!(response.headers().contains_key("x-request-id"));
    /// # }
    /// ```
    pub fn router(&self) -> Router {
        Router::new().fallback_service(self.app.clone())
    }

    /// The admin app (every probe with full details, and `/metrics` when Prometheus is on),
    /// when an admin address was given.
    pub fn admin_router(&self) -> Option<Router> {
        self.admin.clone().map(|admin| Router::new().fallback_service(admin))
    }

    /// Serve until shut down; see the [type docs](Self).
    pub async fn serve(self) -> Result<ShutdownReport, ServeError> {
        let Self {
            app,
            admin,
            health,
            shutdown,
            listen,
            admin_listen,
            startup,
            limits,
            prometheus,
            #[cfg(feature = "migrate")]
            heartbeat,
        } = self;
        let listener = listen.bind().await?;
        let admin = match (admin, admin_listen) {
            (Some(app), Some(listen)) => Some(Server {
                listener: listen.bind().await?,
                app,
                limits: limits.clone(),
                phase: health.lifecycle().watch(),
            }),
            _ => None,
        };
        let public = Server {
            listener,
            app,
            limits,
            phase: health.lifecycle().watch(),
        };
        #[cfg(feature = "prometheus")]
        if prometheus {
            crate::prometheus::follow_phase(health.lifecycle().watch());
        }
        #[cfg(not(feature = "prometheus"))]
        let _ = prometheus;
        health.spawn();
        #[cfg(feature = "migrate")]
        if let Some(heartbeat) = &heartbeat {
            heartbeat.spawn(health.lifecycle().watch());
        }
        let startup_task = tokio::spawn(crate::startup::run(startup, health.clone(), shutdown.handle()));

        let checks: Vec<&str> = health.check_names().collect();
        tracing::info!(
            address = %display_address(public.local_addr()),
            admin = %admin.as_ref().map_or_else(|| "none".to_owned(), |admin| display_address(admin.local_addr())),
            checks = %checks.join(", "),
            "serving"
        );
        let report = shutdown
            .serve(move |stop| async move {
                let (stopping, stopped) = tokio::sync::watch::channel(false);
                let when_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                let admin_stopped = when_stopped(stopped.clone());
                let signal = async move {
                    stop.await;
                    let _ = stopping.send(true);
                };
                let admin = async move {
                    match admin {
                        Some(admin) => admin.run(admin_stopped).await,
                        None => Ok(()),
                    }
                };
                let (_, public, admin) = tokio::join!(signal, public.run(when_stopped(stopped)), admin);
                public.and(admin)
            })
            .await;
        match startup_task.await {
            Ok(Err(source)) => Err(ServeError::Startup {
                source,
                report: Box::new(report),
            }),
            _ => Ok(report),
        }
    }
}

fn display_address(address: Option<SocketAddr>) -> String {
    address.map_or_else(|| "unknown".to_owned(), |address| address.to_string())
}

impl ServiceBuilder {
    /// Negotiate API versions for the application's routes (not the probes) and shape
    /// `Versioned` responses: the layer wraps the whole application router, so
    /// `/api/v1.2/...` paths are rewritten before routing.
    #[cfg(feature = "versioning")]
    pub fn versioning(mut self, layer: cutover_versioning::VersionLayer) -> Self {
        self.versioning = Some(layer);
        self
    }

    /// The health registry whose probes are served (`/health`, `/health/ready`, ...). Its
    /// lifecycle becomes the service's, so readiness closes the moment draining starts.
    /// Without one, an empty registry serves the probes.
    pub fn health(mut self, health: HealthRegistry) -> Self {
        self.health = Some(health);
        self
    }

    /// Shutdown timings (see [`ShutdownConfig::from_env`] for the `SHUTDOWN_*` variables).
    pub fn shutdown(mut self, config: ShutdownConfig) -> Self {
        self.config = config;
        self
    }

    /// Whether SIGTERM and SIGINT start the shutdown (default `true`). Off for services
    /// embedded in tests, which trigger it through [`Service::handle`].
    pub fn signals(mut self, enabled: bool) -> Self {
        self.config = self.config.signals(enabled);
        self
    }

    /// The [`Limits`] to serve under (default [`Limits::default`]; see [`Limits::from_env`]
    /// for the `HTTP_*` variables).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Work to finish before the service reports started (migrations, cache warm-up). Runs
    /// while the server already answers probes; if it fails, the service shuts down and
    /// [`serve`](Service::serve) returns [`ServeError::Startup`]. If a shutdown begins first,
    /// the work is cancelled (dropped) and the shutdown proceeds.
    pub fn startup<F, E>(mut self, work: F) -> Self
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.startup
            .push(Box::pin(async move { work.await.map_err(Into::into) }));
        self
    }

    /// Startup work that may have to wait for a dependency: `attempt` runs until it succeeds,
    /// again after each error `transient` accepts (with backoff, see
    /// [`startup_backoff`](Self::startup_backoff), and a warning naming `step`), and fails the
    /// startup on any other error. Meanwhile the service answers probes, not ready. A shutdown
    /// cancels it like any startup work.
    ///
    /// ```no_run
    /// # use axum::Router;
    /// # async fn migrate(url: &str) -> Result<(), std::io::Error> { Ok(()) }
    /// let service = cutover::Service::builder(Router::new()).startup_retrying(
    ///     "migrations",
    ///     || migrate("postgres://db/app"),
    ///     // Retry while the database cannot be reached; a broken migration ends the startup.
    ///     |error: &std::io::Error| error.kind() == std::io::ErrorKind::ConnectionRefused,
    /// );
    /// ```
    pub fn startup_retrying<F, Fut, E, R>(mut self, step: impl Into<String>, attempt: F, transient: R) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError> + fmt::Display + Send + 'static,
        R: Fn(&E) -> bool + Send + 'static,
    {
        let work = retrying(step.into(), self.backoff, attempt, transient);
        self.startup.push(Box::pin(work));
        self
    }

    /// The backoff of [`startup_retrying`](Self::startup_retrying) work added after this call
    /// (default: 500 ms doubling to 10 s, ±20 % jitter).
    pub fn startup_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// A shutdown hook, run after in-flight work in reverse registration order.
    pub fn hook<F, Fut>(mut self, name: impl Into<String>, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        self.shutdown = self.shutdown.hook(name, hook);
        self
    }

    /// Send `X-Service-Version: <version>` on every response, probes included, so a deployment
    /// (or a test) can see which version answered while traffic moves between two. It is also
    /// the `service_version` of the request spans and metrics.
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Serve `/metrics` in the Prometheus text format and record requests, latencies, requests
    /// in flight, the lifecycle phase and every health check (see [`crate::prometheus`]).
    /// `/metrics` is served on the admin address when there is one, else on the public one.
    /// Installs a process-wide recorder on first use.
    #[cfg(feature = "prometheus")]
    pub fn prometheus(mut self) -> Self {
        self.prometheus = true;
        self
    }

    /// Register this instance in the database its migrations target, with the migrations its
    /// binary embeds, so `contract` migrations wait until no live instance could still need
    /// the old schema (see [`cutover_migrate::instances`]).
    ///
    /// The row is written when the service starts, on every phase change (starting, ready,
    /// draining) and every heartbeat (default 10 s), from a task of its own: a database that is
    /// down delays heartbeats, never a request. After the drain (once in-flight requests are
    /// done, before the shutdown hooks registered here run) the row is removed; a row that
    /// cannot be removed within 3 s, like a killed instance's, expires by itself (default
    /// three heartbeats after the last), which is logged and never fails the shutdown. The
    /// start-up work (migrations) begins once the row is written (or after one TTL without the
    /// database), so an instance is counted before it can read the ledger. The registry's health
    /// shows as the non-critical check `instance-registry`. The version defaults to
    /// [`service_version`](Self::service_version)'s.
    ///
    /// ```no_run
    /// use axum::Router;
    /// use cutover::{Service, migrate::instances::InstanceRegistry};
    ///
    /// # async fn run(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let migrations = cutover::migrate::embed_migrations!("../cutover-migrate/examples/migrations")?;
    /// Service::builder(Router::new())
    ///     .service_version("1.3.0")
    ///     .register_instance(InstanceRegistry::new(&pool, "api-service", &migrations))
    ///     .serve()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "migrate")]
    pub fn register_instance(mut self, registry: cutover_migrate::instances::InstanceRegistry) -> Self {
        self.instance = Some(registry);
        self
    }

    /// Listen on `address` (default `0.0.0.0:8000`).
    pub fn bind(mut self, address: SocketAddr) -> Self {
        self.listen = Listen::Address(address);
        self
    }

    /// Serve on a listener that is already bound (for example on port 0 in tests).
    pub fn listener(mut self, listener: TcpListener) -> Self {
        self.listen = Listen::Listener(listener);
        self
    }

    /// Also serve an admin address (say `127.0.0.1:9000`, or a port only the cluster reaches):
    /// every probe with full details, and `/metrics`, which then leaves the public address.
    /// The probes stay on both, so orchestrators may use either.
    pub fn admin_bind(mut self, address: SocketAddr) -> Self {
        self.admin_listen = Some(Listen::Address(address));
        self
    }

    /// The admin address on a listener that is already bound.
    pub fn admin_listener(mut self, listener: TcpListener) -> Self {
        self.admin_listen = Some(Listen::Listener(listener));
        self
    }

    /// Build the service. Must run inside a tokio runtime (signal handlers are installed here,
    /// so a SIGTERM that arrives during startup is already handled gracefully).
    pub fn build(self) -> Result<Service, ServeError> {
        let version = match &self.version {
            Some(version) => {
                Some(http::HeaderValue::from_str(version).map_err(|_| ServeError::Version(version.clone()))?)
            }
            None => None,
        };
        #[cfg_attr(not(feature = "migrate"), allow(unused_mut))]
        let mut health = match self.health {
            Some(health) => health,
            None => HealthRegistry::builder()
                .build()
                .expect("an empty registry always builds"),
        };
        #[cfg_attr(not(feature = "migrate"), allow(unused_mut))]
        let mut shutdown = self.shutdown;
        #[cfg_attr(not(feature = "migrate"), allow(unused_mut))]
        let mut startup = self.startup;
        #[cfg(feature = "migrate")]
        let heartbeat = match self.instance {
            Some(mut registry) => {
                if let (false, Some(version)) = (registry.has_version(), &self.version) {
                    registry = registry.version(version.clone());
                }
                let heartbeat = crate::instance::Heartbeat::new(registry);
                health.add(heartbeat.check())?;
                // Registered before the start-up work (migrations) reads the ledger.
                let registered = heartbeat.registered();
                startup.insert(
                    0,
                    Box::pin(async move {
                        registered.await;
                        Ok(())
                    }),
                );
                // Registered last, so it runs first of the hooks: before they close the pool
                // the row is in, and after the drain.
                let deregister = std::sync::Arc::clone(&heartbeat);
                shutdown = shutdown.hook(
                    "deregister instance",
                    move || async move { deregister.deregister().await },
                );
                Some(heartbeat)
            }
            None => None,
        };
        let with_admin = self.admin_listen.is_some();
        let metrics = metrics_route(self.prometheus)?;
        let mut config = self.config;
        if metrics.is_some() && !with_admin {
            // Prometheus keeps scraping while the service stops.
            config = config.exempt_path("/metrics");
        }
        let shutdown = shutdown.config(config).lifecycle(health.lifecycle().clone()).build()?;
        let (public_metrics, admin_metrics) = if with_admin { (None, metrics) } else { (metrics, None) };
        let admin = with_admin.then(|| stack::admin(&health, admin_metrics, version.clone()));
        let app = stack::public(stack::Parts {
            app: stack::Application {
                router: self.router,
                #[cfg(feature = "versioning")]
                versioning: self.versioning,
            },
            health: health.clone(),
            drain: shutdown.drain_layer(),
            limits: self.limits.clone(),
            service_version: version,
            metrics: public_metrics,
            record_metrics: self.prometheus,
        });
        Ok(Service {
            app,
            admin,
            health,
            shutdown,
            listen: self.listen,
            admin_listen: self.admin_listen,
            startup,
            limits: self.limits,
            prometheus: self.prometheus,
            #[cfg(feature = "migrate")]
            heartbeat,
        })
    }

    /// [`build`](Self::build) and [`serve`](Service::serve).
    pub async fn serve(self) -> Result<ShutdownReport, ServeError> {
        self.build()?.serve().await
    }
}

#[cfg(feature = "prometheus")]
fn metrics_route(enabled: bool) -> Result<Option<Router>, ServeError> {
    if !enabled {
        return Ok(None);
    }
    let handle = crate::prometheus::handle().map_err(ServeError::Metrics)?;
    Ok(Some(crate::prometheus::route(handle)))
}

#[cfg(not(feature = "prometheus"))]
fn metrics_route(_enabled: bool) -> Result<Option<Router>, ServeError> {
    Ok(None)
}
