//! The shutdown sequence itself.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64},
    },
    task::{Context, Poll},
    time::Duration,
};

use cutover_core::{Lifecycle, Phase};
use http::HeaderValue;
use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
    time::{Instant, sleep_until},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    DrainLayer, ShutdownConfig, ShutdownHandle, Trigger, Workers,
    config::Human,
    drain::DrainState,
    hooks::{Hook, HookOutcome, HookOutput, HookReport},
    report::{PhaseReport, ServerOutcome, ShutdownReport},
    token::ShutdownToken,
    trigger::{Triggers, fire, listen_for_signals},
};

/// Longest wait for the server to close its connections once told to stop. In-flight requests
/// are already finished or cut by then, so this only covers closing idle connections.
const SERVER_STOP_LIMIT: Duration = Duration::from_secs(5);

/// A [`Shutdown`] that could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Signal handling needs a tokio runtime.
    #[error(
        "Shutdown::build() must run inside a tokio runtime to listen for signals (or disable them with ShutdownConfig::signals(false))"
    )]
    NoRuntime,
    /// The OS refused the signal handlers.
    #[error("cannot listen for shutdown signals: {0}")]
    Signal(#[from] std::io::Error),
}

/// Builds a [`Shutdown`]. Created by [`Shutdown::builder`].
#[must_use]
pub struct ShutdownBuilder {
    config: ShutdownConfig,
    lifecycle: Option<Lifecycle>,
    hooks: Vec<Hook>,
}

impl fmt::Debug for ShutdownBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownBuilder")
            .field("config", &self.config)
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

impl ShutdownBuilder {
    /// Timings and switches (default: [`ShutdownConfig::default`]; see
    /// [`ShutdownConfig::from_env`] to read `SHUTDOWN_*` variables).
    pub fn config(mut self, config: ShutdownConfig) -> Self {
        self.config = config;
        self
    }

    /// Drive this lifecycle (share it with the health registry so readiness closes when
    /// draining starts). Without one, the shutdown creates its own.
    pub fn lifecycle(mut self, lifecycle: Lifecycle) -> Self {
        self.lifecycle = Some(lifecycle);
        self
    }

    /// Register an async hook, run after in-flight work with the default hook timeout.
    /// It may return `()` or a `Result<(), E>`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let shutdown = cutover_shutdown::Shutdown::builder()
    ///     .hook("flush metrics", || async { /* push the last batch */ })
    ///     .hook("close pool", || async { Ok::<(), std::io::Error>(()) })
    ///     .build()
    ///     .unwrap();
    /// # drop(shutdown); }
    /// ```
    pub fn hook<F, Fut>(mut self, name: impl Into<String>, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        self.hooks.push(Hook::from_async(name.into(), None, hook));
        self
    }

    /// Register an async hook with its own timeout.
    pub fn hook_with_timeout<F, Fut>(mut self, name: impl Into<String>, timeout: Duration, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        self.hooks.push(Hook::from_async(name.into(), Some(timeout), hook));
        self
    }

    /// Register a blocking hook (run on tokio's blocking pool).
    pub fn blocking_hook<F, R>(mut self, name: impl Into<String>, hook: F) -> Self
    where
        F: FnOnce() -> R + Send + 'static,
        R: HookOutput,
    {
        self.hooks.push(Hook::from_sync(name.into(), None, hook));
        self
    }

    /// Build the shutdown and, unless disabled, start listening for SIGTERM and SIGINT. Logs a
    /// warning when the worst-case sequence does not fit the grace period.
    pub fn build(self) -> Result<Shutdown, BuildError> {
        let lifecycle = self.lifecycle.unwrap_or_default();
        let (triggers, _) = watch::channel(Triggers::default());
        let triggers = Arc::new(triggers);
        if self.config.signals {
            tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
            listen_for_signals(Arc::clone(&triggers), self.config.force_exit_on_second_signal)?;
        }
        let hook_timeouts: Vec<Duration> = self
            .hooks
            .iter()
            .map(|hook| hook.timeout.unwrap_or(self.config.hook_timeout))
            .collect();
        if let Some(warning) = self.config.budget_warning(&hook_timeouts) {
            tracing::warn!("{warning}");
        }
        let stopping = ShutdownToken::new(CancellationToken::new());
        let retry_after = HeaderValue::from(self.config.retry_after.as_secs().max(1));
        let drain = Arc::new(DrainState {
            lifecycle: lifecycle.clone(),
            in_flight: TaskTracker::new(),
            stopping: stopping.clone(),
            cut: CancellationToken::new(),
            cut_flag: AtomicBool::new(false),
            exempt_paths: self.config.exempt_paths.clone(),
            retry_after,
            refusals: crate::drain::Refusals::new(),
            rejected: AtomicU64::new(0),
        });
        Ok(Shutdown {
            config: self.config,
            lifecycle,
            drain,
            workers: Workers::new(stopping),
            hooks: self.hooks,
            triggers,
        })
    }
}

/// Graceful shutdown: drains traffic, lets in-flight work finish, runs hooks, reports.
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use cutover_shutdown::{Shutdown, ShutdownConfig};
///
/// # async fn run() -> Result<std::process::ExitCode, Box<dyn std::error::Error>> {
/// let shutdown = Shutdown::builder()
///     .config(ShutdownConfig::from_env()?)          // SHUTDOWN_DRAIN_DELAY, SHUTDOWN_TIMEOUT, ...
///     .hook("close pool", || async { /* pool.close().await */ })
///     .build()?;
///
/// let app = Router::new().route("/", get(|| async { "hello" })).layer(shutdown.drain_layer());
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8000").await?;
///
/// shutdown.lifecycle().mark_ready();
/// let report = shutdown
///     .serve(|stop| axum::serve(listener, app).with_graceful_shutdown(stop).into_future())
///     .await;
/// Ok(report.exit())
/// # }
/// ```
pub struct Shutdown {
    config: ShutdownConfig,
    lifecycle: Lifecycle,
    drain: Arc<DrainState>,
    workers: Workers,
    hooks: Vec<Hook>,
    triggers: Arc<watch::Sender<Triggers>>,
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("config", &self.config)
            .field("phase", &self.lifecycle.phase())
            .field("in_flight", &self.drain.in_flight.len())
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

/// Resolves when the server should stop accepting connections: give it to the server's
/// graceful-shutdown hook (`axum::serve(..).with_graceful_shutdown(stop)`).
#[derive(Debug)]
pub struct ServerStop {
    rx: oneshot::Receiver<()>,
}

impl Future for ServerStop {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.rx).poll(cx).map(|_| ())
    }
}

impl Shutdown {
    /// Start building a shutdown.
    pub fn builder() -> ShutdownBuilder {
        ShutdownBuilder {
            config: ShutdownConfig::default(),
            lifecycle: None,
            hooks: Vec::new(),
        }
    }

    /// A handle to trigger the shutdown or watch it from elsewhere.
    pub fn handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            triggers: Arc::clone(&self.triggers),
            lifecycle: self.lifecycle.clone(),
            stopping: self.drain.stopping.clone(),
        }
    }

    /// The lifecycle this shutdown drives.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// The tower layer that applies the drain behaviour (see [`DrainLayer`]).
    pub fn drain_layer(&self) -> DrainLayer {
        DrainLayer::new(Arc::clone(&self.drain))
    }

    /// Background workers the shutdown waits for.
    pub fn workers(&self) -> &Workers {
        &self.workers
    }

    /// The configuration.
    pub fn config(&self) -> &ShutdownConfig {
        &self.config
    }

    /// Requests in flight through the drain layer right now.
    pub fn in_flight(&self) -> usize {
        self.drain.in_flight.len()
    }

    /// Wait for a shutdown to be triggered with no server to drive: for worker processes.
    /// Equivalent to [`serve`](Self::serve) with a server that does nothing.
    pub async fn run(self) -> ShutdownReport {
        self.serve(|stop| async move {
            stop.await;
            Ok::<(), std::convert::Infallible>(())
        })
        .await
    }

    /// Run `server` until a shutdown is triggered, then carry out the whole sequence around it
    /// and return the report (also logged as one event).
    ///
    /// `server` receives a [`ServerStop`] future for its graceful-shutdown hook. That future
    /// resolves only once in-flight requests are done (or cut at the deadline): until then the
    /// server keeps accepting connections, and the drain layer answers them with 503 and
    /// `Connection: close` instead of the client seeing a refused connection.
    ///
    /// The sequence: `Draining` for the drain delay (readiness closed, requests served),
    /// then `Stopping` (new requests refused, [`ShutdownToken`]s fire, in-flight requests and
    /// workers get up to the shutdown timeout, whatever remains is cut), the server is told
    /// to stop, hooks run in reverse registration order, then `Stopped`. All of it within the
    /// grace period. A second trigger cuts everything short.
    pub async fn serve<F, Fut, E>(self, server: F) -> ShutdownReport
    where
        F: FnOnce(ServerStop) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let (stop_server, stop_rx) = oneshot::channel();
        let server = server(ServerStop { rx: stop_rx });
        let mut server_task: JoinHandle<Result<(), String>> =
            tokio::spawn(async move { server.await.map_err(|error| error.to_string()) });
        let mut triggers = self.triggers.subscribe();

        // Serve until asked to stop, or until the server ends by itself.
        let server_ended = tokio::select! {
            () = triggered(&mut triggers, 1) => None,
            result = &mut server_task => Some(server_outcome(result)),
        };
        if server_ended.is_some() {
            fire(&self.triggers, Trigger::ServerExited);
        }
        let trigger = self.triggers.borrow().first.unwrap_or(Trigger::ServerExited);
        let mut run = Run {
            started: Instant::now(),
            deadline: Instant::now() + self.config.grace_period,
            phases: Vec::new(),
            trigger,
            server: server_ended,
            in_flight_at_stop: 0,
            requests_cut: 0,
            workers_at_stop: 0,
            workers_abandoned: Vec::new(),
        };
        tracing::info!(%trigger, drain_delay = %Human(self.config.drain_delay), timeout = %Human(self.config.shutdown_timeout), "shutdown started");

        // Draining: readiness closes at once; requests are still served while load balancers
        // catch up. Skipped when there is no server left to drain.
        self.lifecycle.advance_to(Phase::Draining);
        let phase_started = Instant::now();
        if run.server.is_none() && !self.config.drain_delay.is_zero() {
            tracing::info!(drain_delay = %Human(self.config.drain_delay), "draining: readiness closed, still serving");
            let delay = sleep_until(phase_started + self.config.drain_delay.min(self.config.grace_period));
            if escalated(&mut triggers, delay).await {
                return self.forced(run, server_task, stop_server).await;
            }
        }
        run.phases.push(PhaseReport {
            phase: Phase::Draining,
            duration: phase_started.elapsed(),
        });

        // Stopping: refuse new requests, tell handlers and workers, wait for in-flight work.
        self.lifecycle.advance_to(Phase::Stopping);
        let phase_started = Instant::now();
        self.drain.stopping.cancel();
        self.drain.in_flight.close();
        self.workers.tracker().close();
        run.in_flight_at_stop = self.drain.in_flight.len();
        run.workers_at_stop = self.workers.len();
        tracing::info!(
            in_flight = run.in_flight_at_stop,
            workers = run.workers_at_stop,
            timeout = %Human(self.config.shutdown_timeout),
            "stopping: refusing new requests, waiting for in-flight work"
        );
        let stop_deadline = (phase_started + self.config.shutdown_timeout).min(run.deadline);
        let idle = async {
            tokio::join!(self.drain.in_flight.wait(), self.workers.tracker().wait());
        };
        let finished = tokio::select! {
            () = idle => true,
            () = sleep_until(stop_deadline) => false,
            () = triggered(&mut triggers, 2) => return self.forced(run, server_task, stop_server).await,
        };
        if !finished {
            run.requests_cut = self.drain.in_flight.len();
            run.workers_abandoned = self.workers.running();
            tracing::warn!(
                requests = run.requests_cut,
                workers = %run.workers_abandoned.join(", "),
                "shutdown timeout reached: cutting what is still running"
            );
            self.drain.cut();
        }

        // Now the server can stop accepting and close its idle connections.
        let _ = stop_server.send(());
        if run.server.is_none() {
            let limit = (Instant::now() + SERVER_STOP_LIMIT).min(run.deadline);
            run.server = Some(tokio::select! {
                result = &mut server_task => server_outcome(result),
                () = sleep_until(limit) => {
                    server_task.abort();
                    ServerOutcome::Abandoned
                }
            });
        }

        // Hooks, last registered first, each within its timeout and the grace period.
        let mut hooks = Vec::with_capacity(self.hooks.len());
        for hook in self.hooks.into_iter().rev() {
            if triggers.borrow().count > 1 {
                hooks.push(skipped(hook));
                continue;
            }
            let remaining = run.deadline.saturating_duration_since(Instant::now());
            let timeout = hook.timeout.unwrap_or(self.config.hook_timeout).min(remaining);
            hooks.push(hook.run(timeout).await);
        }
        run.phases.push(PhaseReport {
            phase: Phase::Stopping,
            duration: phase_started.elapsed(),
        });
        self.lifecycle.advance_to(Phase::Stopped);
        let forced = triggers.borrow().count > 1;
        run.finish(forced, self.drain.rejected(), hooks)
    }

    /// A second trigger arrived: cut everything, skip the hooks, report.
    async fn forced(
        self,
        mut run: Run,
        server_task: JoinHandle<Result<(), String>>,
        stop_server: oneshot::Sender<()>,
    ) -> ShutdownReport {
        tracing::warn!("second shutdown trigger: cutting everything short");
        self.lifecycle.advance_to(Phase::Stopping);
        self.drain.stopping.cancel();
        run.requests_cut = self.drain.in_flight.len();
        run.workers_abandoned = self.workers.running();
        self.drain.cut();
        let _ = stop_server.send(());
        server_task.abort();
        run.server.get_or_insert(ServerOutcome::Abandoned);
        self.lifecycle.advance_to(Phase::Stopped);
        let hooks = self.hooks.into_iter().rev().map(skipped).collect();
        run.finish(true, self.drain.rejected(), hooks)
    }
}

/// Everything the sequence learned, turned into the report at the end.
struct Run {
    started: Instant,
    deadline: Instant,
    phases: Vec<PhaseReport>,
    trigger: Trigger,
    server: Option<ServerOutcome>,
    in_flight_at_stop: usize,
    requests_cut: usize,
    workers_at_stop: usize,
    workers_abandoned: Vec<String>,
}

impl Run {
    fn finish(self, forced: bool, requests_rejected: u64, hooks: Vec<HookReport>) -> ShutdownReport {
        let report = ShutdownReport {
            trigger: self.trigger,
            forced,
            total: self.started.elapsed(),
            phases: self.phases,
            in_flight_at_stop: self.in_flight_at_stop,
            requests_cut: self.requests_cut,
            requests_rejected,
            workers_at_stop: self.workers_at_stop,
            workers_abandoned: self.workers_abandoned,
            server: self.server.unwrap_or(ServerOutcome::Abandoned),
            hooks,
        };
        report.log();
        report
    }
}

fn skipped(hook: Hook) -> HookReport {
    HookReport {
        name: hook.name,
        outcome: HookOutcome::Skipped,
        duration: Duration::ZERO,
    }
}

fn server_outcome(result: Result<Result<(), String>, tokio::task::JoinError>) -> ServerOutcome {
    match result {
        Ok(Ok(())) => ServerOutcome::Stopped,
        Ok(Err(error)) => ServerOutcome::Failed(error),
        Err(join_error) if join_error.is_panic() => ServerOutcome::Failed("the server task panicked".to_owned()),
        Err(_) => ServerOutcome::Abandoned,
    }
}

/// Wait for `until`; `true` if a second trigger arrived first.
async fn escalated(triggers: &mut watch::Receiver<Triggers>, until: impl Future<Output = ()>) -> bool {
    tokio::select! {
        () = until => false,
        () = triggered(triggers, 2) => true,
    }
}

/// Resolves once there have been `count` triggers. Never resolves if every sender is gone
/// (the `Shutdown` owns one, so that only happens while it is being dropped).
async fn triggered(triggers: &mut watch::Receiver<Triggers>, count: u32) {
    if triggers.wait_for(|t| t.count >= count).await.is_err() {
        std::future::pending::<()>().await;
    }
}
