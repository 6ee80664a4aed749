//! This instance's row in the instance registry, kept by [`ServiceBuilder::register_instance`]
//! (see [`cutover_migrate::instances`] for the registry and the contract gate it serves).
//!
//! [`ServiceBuilder::register_instance`]: crate::ServiceBuilder::register_instance

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use cutover_core::{Phase, PhaseWatch};
use cutover_health::{CheckResult, Outcome, Registration, check_fn};
use cutover_migrate::instances::{InstancePhase, InstanceRegistry};
use tokio::{sync::watch, task::JoinHandle};

/// The name of the registry's (non-critical) health check.
pub(crate) const CHECK_NAME: &str = "instance-registry";

/// What the last heartbeats did, for the health check.
#[derive(Debug, Default)]
struct Beats {
    /// When a row was last written.
    last_written: Option<Instant>,
    /// Why the last attempt failed, if it did.
    error: Option<String>,
}

/// The heartbeat task and what the deregistration needs.
pub(crate) struct Heartbeat {
    registry: InstanceRegistry,
    beats: Arc<Mutex<Beats>>,
    /// `true` once the row was written.
    written: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

fn instance_phase(phase: Phase) -> InstancePhase {
    match phase {
        Phase::Starting => InstancePhase::Starting,
        Phase::Ready => InstancePhase::Ready,
        _ => InstancePhase::Draining,
    }
}

impl Heartbeat {
    pub(crate) fn new(registry: InstanceRegistry) -> Arc<Self> {
        Arc::new(Self {
            registry,
            beats: Arc::default(),
            written: watch::channel(false).0,
            stop: watch::channel(false).0,
            task: Mutex::new(None),
        })
    }

    /// The non-critical check showing whether the row is being written.
    pub(crate) fn check(self: &Arc<Self>) -> Registration {
        let heartbeat = Arc::clone(self);
        Registration::new(
            CHECK_NAME,
            check_fn(move |_| {
                let heartbeat = Arc::clone(&heartbeat);
                async move { heartbeat.health() }
            }),
        )
        .non_critical()
    }

    fn health(&self) -> CheckResult {
        let beats = self.beats.lock().unwrap_or_else(PoisonError::into_inner);
        let ago = beats.last_written.map(|t| t.elapsed());
        match (&beats.error, ago) {
            (None, Some(ago)) => Ok(Outcome::healthy()
                .with_observed(
                    u64::try_from(ago.as_millis()).unwrap_or(u64::MAX),
                    "ms since the last heartbeat",
                )
                .with_message(format!("registered as {}", self.registry.id()))),
            (None, None) => Ok(Outcome::healthy().with_message("registering")),
            (Some(error), ago) => {
                let ttl = humantime::format_duration(self.registry.ttl_duration());
                let last = ago.map_or_else(
                    || "never written".to_owned(),
                    |ago| format!("last written {} ago", humantime::format_duration(secs(ago))),
                );
                Err(format!(
                    "cannot write this instance's registry row ({error}); {last}: {ttl} after the last write it stops \
                     counting, and contract migrations no longer wait for this instance"
                )
                .into())
            }
        }
    }

    /// Start-up work that waits until the row is written (for at most one TTL), so the instance
    /// is registered before its own migrations read the ledger: a contract migration applied
    /// concurrently either sees its row, or is seen by its migrations (which then refuse to
    /// start a binary missing an applied migration). Without the database for a whole TTL, the
    /// start-up goes on, with a warning.
    pub(crate) fn registered(self: &Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        let mut written = self.written.subscribe();
        let ttl = self.registry.ttl_duration();
        async move {
            if tokio::time::timeout(ttl, written.wait_for(|written| *written))
                .await
                .is_err()
            {
                tracing::warn!(
                    "this instance's registry row could not be written within {}; starting anyway",
                    humantime::format_duration(ttl)
                );
            }
        }
    }

    /// Start beating: at once, on every phase change and every interval, until stopped.
    pub(crate) fn spawn(self: &Arc<Self>, phase: PhaseWatch) {
        let heartbeat = Arc::clone(self);
        let stopped = self.stop.subscribe();
        let task = tokio::spawn(async move { heartbeat.run(phase, stopped).await });
        *self.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
    }

    async fn run(&self, mut phase: PhaseWatch, mut stopped: watch::Receiver<bool>) {
        let interval = self.registry.heartbeat_interval();
        let mut lifecycle_open = true;
        // After a failed beat the next comes sooner (250 ms, doubling up to the interval), so
        // the row is written soon after the database is back (the start-up may be waiting).
        let mut retry = RETRY_FIRST;
        loop {
            // A database that does not answer delays the next beat, never more than one interval.
            let outcome = tokio::time::timeout(interval, self.registry.beat(instance_phase(phase.phase()))).await;
            let error = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error.to_string()),
                Err(_) => Some(format!("no answer within {}", humantime::format_duration(interval))),
            };
            let pause = {
                let mut beats = self.beats.lock().unwrap_or_else(PoisonError::into_inner);
                if error.is_none() {
                    beats.last_written = Some(Instant::now());
                    self.written.send_replace(true);
                } else if beats.error.is_none() {
                    tracing::warn!(error = error.as_deref(), "cannot write this instance's registry row");
                }
                let pause = if error.is_some() {
                    let pause = retry.min(interval);
                    retry = retry.saturating_mul(2);
                    pause
                } else {
                    retry = RETRY_FIRST;
                    interval
                };
                beats.error = error;
                pause
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                changed = phase.changed(), if lifecycle_open => lifecycle_open = changed.is_some(),
                _ = stopped.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Stop beating and remove the row: after the drain, when the instance no longer serves.
    /// Never fails the shutdown: a row that cannot be removed (the database is down) expires
    /// by itself one TTL after the last heartbeat, which is logged.
    pub(crate) async fn deregister(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        let registered = || {
            self.beats
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .last_written
                .is_some()
        };
        if let Some(task) = task {
            let abort = task.abort_handle();
            // Once registered, a beat in flight finishes first, so it cannot write the row back
            // after the removal; one that hangs on an unreachable database is abandoned. Never
            // registered: there is nothing to race with.
            if !registered() || tokio::time::timeout(STOP_WAIT, task).await.is_err() {
                abort.abort();
            }
        }
        if !registered() {
            tracing::debug!("this instance never wrote its registry row; nothing to remove");
            return;
        }
        let ttl = humantime::format_duration(self.registry.ttl_duration());
        match tokio::time::timeout(STOP_WAIT, self.registry.deregister()).await {
            Ok(Ok(())) => tracing::info!(instance = self.registry.id(), "instance deregistered"),
            Ok(Err(error)) => tracing::warn!(
                %error,
                "cannot remove this instance's registry row; it stops counting {ttl} after its last heartbeat"
            ),
            Err(_) => tracing::warn!(
                "no answer from the database while removing this instance's registry row; it stops counting {ttl} after its last heartbeat"
            ),
        }
    }
}

/// The pause after a first failed heartbeat.
const RETRY_FIRST: Duration = Duration::from_millis(250);

/// How long the deregistration waits for a beat in flight, and for the removal itself.
const STOP_WAIT: Duration = Duration::from_secs(3);

fn secs(duration: Duration) -> Duration {
    Duration::from_secs(duration.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_map_to_registry_phases() {
        assert_eq!(instance_phase(Phase::Starting), InstancePhase::Starting);
        assert_eq!(instance_phase(Phase::Ready), InstancePhase::Ready);
        for phase in [Phase::Draining, Phase::Stopping, Phase::Stopped] {
            assert_eq!(instance_phase(phase), InstancePhase::Draining);
        }
    }
}
