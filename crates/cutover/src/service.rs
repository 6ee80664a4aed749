//! Serve an axum app with health probes, traffic draining and graceful shutdown wired
//! together.

use std::{fmt, future::Future, net::SocketAddr, pin::Pin};

use axum::{Router, ServiceExt as _, body::Body, http};
use cutover_core::Phase;
use cutover_health::HealthRegistry;
use cutover_shutdown::{
    BoxError, HookOutput, Shutdown, ShutdownBuilder, ShutdownConfig, ShutdownHandle, ShutdownReport, Workers,
    drain::DrainBody,
};
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt as _};

type StartupWork = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

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

/// An axum application served with zero-downtime behaviour. Build it with [`Service::builder`].
///
/// What [`serve`](Self::serve) does:
///
/// 1. binds, starts the health checks and serves at once: `/health/live` answers 200 while
///    `/health/startup` and `/health/ready` answer 503;
/// 2. runs the startup work (migrations, warm-up) and then marks the service started, so
///    readiness follows the checks: ready after the first passing round, with no fixed sleep;
/// 3. on SIGTERM/SIGINT, drains: readiness 503 at once, requests served with
///    `Connection: close` for the drain delay, then new requests refused with 503 while
///    in-flight ones finish (long ones are cut at the deadline);
/// 4. runs the shutdown hooks in reverse order, and returns the [`ShutdownReport`].
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use cutover::{Service, health::HealthRegistry, shutdown::ShutdownConfig};
///
/// # async fn run() -> Result<std::process::ExitCode, Box<dyn std::error::Error>> {
/// let health = HealthRegistry::builder().build()?;
/// let report = Service::builder(Router::new().route("/", get(|| async { "hello" })))
///     .health(health)
///     .shutdown(ShutdownConfig::from_env()?)
///     .startup(async { /* run migrations */ Ok::<(), std::io::Error>(()) })
///     .hook("close pool", || async { /* pool.close().await */ })
///     .bind("0.0.0.0:8000".parse()?)
///     .serve()
///     .await?;
/// Ok(report.exit())
/// # }
/// ```
pub struct Service {
    router: Router,
    health: HealthRegistry,
    shutdown: Shutdown,
    listen: Listen,
    startup: Vec<StartupWork>,
    version: Option<http::HeaderValue>,
    prometheus: bool,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("health", &self.health)
            .field("shutdown", &self.shutdown)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Service`].
#[must_use]
pub struct ServiceBuilder {
    router: Router,
    health: Option<HealthRegistry>,
    shutdown: ShutdownBuilder,
    config: ShutdownConfig,
    listen: Listen,
    startup: Vec<StartupWork>,
    version: Option<String>,
    prometheus: bool,
}

impl fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceBuilder")
            .field("health", &self.health)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Start building a service around `router`.
    pub fn builder(router: Router) -> ServiceBuilder {
        ServiceBuilder {
            router,
            health: None,
            shutdown: Shutdown::builder(),
            config: ShutdownConfig::default(),
            listen: Listen::Address(SocketAddr::from(([0, 0, 0, 0], 8000))),
            startup: Vec::new(),
            version: None,
            prometheus: false,
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

    /// Serve until shut down; see the [type docs](Self).
    pub async fn serve(self) -> Result<ShutdownReport, ServeError> {
        let Self {
            router,
            health,
            shutdown,
            listen,
            startup,
            version,
            prometheus,
        } = self;
        let listener = match listen {
            Listen::Listener(listener) => listener,
            Listen::Address(address) => TcpListener::bind(address)
                .await
                .map_err(|source| ServeError::Bind { address, source })?,
        };
        let address = listener.local_addr().ok();
        // The drain layer wraps the whole router (not `Router::layer`, which wraps every route
        // separately and costs an extra boxed clone per request).
        let app = router.merge(health.router());
        let app = if prometheus { with_metrics(app, &health) } else { app };
        let app = shutdown
            .drain_layer()
            .layer(app)
            .map_request(|request: axum::extract::Request| request)
            .map_response(move |response: http::Response<DrainBody<Body>>| {
                // Untracked bodies are axum's own: pass them through instead of boxing again.
                let mut response = response.map(|body| body.into_untracked().unwrap_or_else(Body::new));
                if let Some(version) = &version {
                    response
                        .headers_mut()
                        .insert(http::HeaderName::from_static(SERVICE_VERSION_HEADER), version.clone());
                }
                response
            })
            .into_make_service();
        health.spawn();

        let handle = shutdown.handle();
        let startup_health = health.clone();
        let startup_task = tokio::spawn(async move {
            for work in startup {
                if let Err(error) = work.await {
                    tracing::error!(%error, "startup work failed; shutting down");
                    handle.trigger();
                    return Err(error);
                }
            }
            startup_health.mark_started();
            if startup_health.lifecycle().phase() == Phase::Ready {
                tracing::info!("startup complete; readiness now follows the health checks");
            }
            Ok(())
        });

        tracing::info!(address = ?address, checks = ?health.check_names().collect::<Vec<_>>(), "serving");
        let report = shutdown
            .serve(|stop| axum::serve(listener, app).with_graceful_shutdown(stop).into_future())
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

#[cfg(feature = "prometheus")]
fn with_metrics(app: Router, health: &HealthRegistry) -> Router {
    let Ok(handle) = crate::prometheus::handle() else {
        return app; // refused at build time
    };
    crate::prometheus::follow_phase(health.lifecycle().watch());
    app.route(
        "/metrics",
        axum::routing::get(move || std::future::ready(handle.render())),
    )
    .layer(axum::middleware::from_fn(crate::prometheus::track))
}

#[cfg(not(feature = "prometheus"))]
fn with_metrics(app: Router, _health: &HealthRegistry) -> Router {
    app
}

impl ServiceBuilder {
    /// Negotiate API versions for the application's routes (not the probes) and shape
    /// `Versioned` responses: the layer wraps the whole application router, so
    /// `/api/v1.2/...` paths are rewritten before routing.
    #[cfg(feature = "versioning")]
    #[allow(clippy::needless_pass_by_value)] // builders take what they are given
    pub fn versioning(mut self, layer: cutover_versioning::VersionLayer) -> Self {
        use tower::Layer as _;
        let versioned = layer
            .layer(self.router)
            .map_request(|request: axum::extract::Request| request)
            .map_response(
                |response: http::Response<cutover_versioning::layer::VersionBody<Body>>| {
                    response.map(|body| body.into_parts().unwrap_or_else(Body::from))
                },
            );
        self.router = Router::new().fallback_service(versioned);
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

    /// Work to finish before the service reports started (migrations, cache warm-up). Runs
    /// while the server already answers probes; if it fails, the service shuts down and
    /// [`serve`](Service::serve) returns [`ServeError::Startup`].
    pub fn startup<F, E>(mut self, work: F) -> Self
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.startup
            .push(Box::pin(async move { work.await.map_err(Into::into) }));
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
    /// (or a test) can see which version answered while traffic moves between two.
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Serve `/metrics` in the Prometheus text format and record requests, latencies, requests
    /// in flight, the lifecycle phase and every health check (see [`crate::prometheus`]).
    /// Installs a process-wide recorder on first use.
    #[cfg(feature = "prometheus")]
    pub fn prometheus(mut self) -> Self {
        self.prometheus = true;
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

    /// Build the service. Must run inside a tokio runtime (signal handlers are installed here,
    /// so a SIGTERM that arrives during startup is already handled gracefully).
    pub fn build(self) -> Result<Service, ServeError> {
        let version = match self.version {
            Some(version) => Some(http::HeaderValue::from_str(&version).map_err(|_| ServeError::Version(version))?),
            None => None,
        };
        let health = match self.health {
            Some(health) => health,
            None => HealthRegistry::builder()
                .build()
                .expect("an empty registry always builds"),
        };
        let shutdown = self
            .shutdown
            .config(self.config)
            .lifecycle(health.lifecycle().clone())
            .build()?;
        #[cfg(feature = "prometheus")]
        if self.prometheus {
            crate::prometheus::handle().map_err(ServeError::Metrics)?;
        }
        Ok(Service {
            router: self.router,
            health,
            shutdown,
            listen: self.listen,
            startup: self.startup,
            version,
            prometheus: self.prometheus,
        })
    }

    /// [`build`](Self::build) and [`serve`](Service::serve).
    pub async fn serve(self) -> Result<ShutdownReport, ServeError> {
        self.build()?.serve().await
    }
}
