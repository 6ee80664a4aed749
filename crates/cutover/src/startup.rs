//! Startup work: run in order while the probes already answer, retried where it may have to
//! wait for a dependency, and cancelled when a shutdown begins first.

use std::{fmt, future::Future, pin::Pin, time::Duration};

use cutover_core::Phase;
use cutover_health::HealthRegistry;
use cutover_shutdown::{BoxError, ShutdownHandle};

pub(crate) type StartupWork = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// How [`startup_retrying`](crate::ServiceBuilder::startup_retrying) work waits between
/// attempts: `initial`, doubling up to `max`, each wait varied by ±`jitter` (a fraction) so
/// replicas started together do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// `initial` doubling to `max`, with the default ±20 % jitter.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            ..Self::default()
        }
    }

    /// The fraction each wait varies by (0 to 1; default 0.2).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.clamp(0.0, 1.0);
        self
    }

    /// The wait before retry number `retry` (0 for the first retry), without jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(30));
        self.initial.saturating_mul(factor).min(self.max)
    }

    fn jittered(&self, retry: u32) -> Duration {
        let spread = (fastrand::f64() * 2.0 - 1.0) * self.jitter;
        self.delay(retry).mul_f64(1.0 + spread)
    }
}

/// `attempt` until it succeeds or fails for good; see
/// [`ServiceBuilder::startup_retrying`](crate::ServiceBuilder::startup_retrying).
pub(crate) async fn retrying<F, Fut, E, R>(
    step: String,
    backoff: Backoff,
    mut attempt: F,
    transient: R,
) -> Result<(), BoxError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<BoxError> + fmt::Display,
    R: Fn(&E) -> bool,
{
    let mut retry = 0;
    loop {
        match attempt().await {
            Ok(()) => {
                if retry > 0 {
                    tracing::info!(%step, attempts = retry + 1, "startup step finished");
                }
                return Ok(());
            }
            Err(error) if transient(&error) => {
                let wait = backoff.jittered(retry);
                tracing::warn!(
                    %step,
                    %error,
                    attempt = retry + 1,
                    retry_in = %humantime::format_duration(Duration::from_millis(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))),
                    "startup step cannot finish yet; not ready, retrying"
                );
                tokio::time::sleep(wait).await;
                retry += 1;
            }
            Err(error) => {
                tracing::error!(%step, %error, "startup step failed");
                return Err(error.into());
            }
        }
    }
}

/// Run the startup work in order, then mark the service started. A shutdown that begins first
/// cancels the work (drops it) so the process exits within its budget; a failure shuts the
/// service down and is returned.
pub(crate) async fn run(
    work: Vec<StartupWork>,
    health: HealthRegistry,
    shutdown: ShutdownHandle,
) -> Result<(), BoxError> {
    let mut phase = health.lifecycle().watch();
    let all = async {
        for step in work {
            step.await?;
        }
        Ok::<(), BoxError>(())
    };
    tokio::select! {
        result = all => match result {
            Ok(()) => {
                health.mark_started();
                if health.lifecycle().phase() == Phase::Ready {
                    tracing::info!("startup complete; readiness now follows the health checks");
                }
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "startup work failed; shutting down");
                shutdown.trigger();
                Err(error)
            }
        },
        _ = phase.wait_for(Phase::Draining) => {
            tracing::info!("shutdown began before startup finished: startup work cancelled");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        let delays: Vec<u64> = (0..7).map(|retry| backoff.delay(retry).as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(10));
        for retry in 0..5 {
            let wait = backoff.jittered(retry);
            let base = backoff.delay(retry);
            assert!(
                wait >= base.mul_f64(0.8) && wait <= base.mul_f64(1.2),
                "{wait:?} around {base:?}"
            );
        }
    }
}
