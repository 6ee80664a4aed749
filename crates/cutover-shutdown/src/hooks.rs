//! Work to do once traffic has stopped: flush buffers, close pools, deregister.

use std::{any::Any, fmt, future::Future, pin::Pin, time::Duration};

use serde::Serialize;
use tokio::time::Instant;

use crate::{BoxError, config::Human};

type BoxFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;
type AsyncHook = Box<dyn FnOnce() -> BoxFuture + Send>;
type SyncHook = Box<dyn FnOnce() -> Result<(), BoxError> + Send>;

/// What a hook may return: nothing, or a `Result` whose error is reported.
pub trait HookOutput: Send + 'static {
    /// Convert into the result the shutdown reports.
    fn into_result(self) -> Result<(), BoxError>;
}

impl HookOutput for () {
    fn into_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError> + Send + 'static> HookOutput for Result<(), E> {
    fn into_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}

pub(crate) enum Run {
    Async(AsyncHook),
    Sync(SyncHook),
}

/// A named shutdown hook. Hooks run after in-flight work, in reverse registration order
/// (what was opened last closes first, like Rust's drop order), each within its own timeout
/// and what is left of the grace period. A failing or timed-out hook is logged and the next
/// one still runs.
pub(crate) struct Hook {
    pub(crate) name: String,
    pub(crate) timeout: Option<Duration>,
    pub(crate) run: Run,
}

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hook")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Hook {
    pub(crate) fn from_async<F, Fut>(name: String, timeout: Option<Duration>, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        Self {
            name,
            timeout,
            run: Run::Async(Box::new(move || Box::pin(async move { hook().await.into_result() }))),
        }
    }

    pub(crate) fn from_sync<F, R>(name: String, timeout: Option<Duration>, hook: F) -> Self
    where
        F: FnOnce() -> R + Send + 'static,
        R: HookOutput,
    {
        Self {
            name,
            timeout,
            run: Run::Sync(Box::new(move || hook().into_result())),
        }
    }

    /// Run the hook within `timeout`.
    pub(crate) async fn run(self, timeout: Duration) -> HookReport {
        let started = Instant::now();
        let name = self.name;
        if timeout.is_zero() {
            tracing::warn!(hook = %name, "shutdown hook skipped: no time left in the grace period");
            return HookReport {
                name,
                outcome: HookOutcome::Skipped,
                duration: Duration::ZERO,
            };
        }
        let mut task = match self.run {
            Run::Async(hook) => tokio::spawn(hook()),
            // Blocking work goes to the blocking pool; if it overruns, the thread is left to
            // finish on its own (it cannot be interrupted) and the hook is reported timed out.
            Run::Sync(hook) => tokio::task::spawn_blocking(hook),
        };
        let outcome = match tokio::time::timeout(timeout, &mut task).await {
            Ok(Ok(Ok(()))) => HookOutcome::Completed,
            Ok(Ok(Err(error))) => HookOutcome::Failed(error.to_string()),
            Ok(Err(join_error)) if join_error.is_panic() => {
                HookOutcome::Failed(format!("panicked: {}", panic_message(&*join_error.into_panic())))
            }
            Ok(Err(_)) => HookOutcome::Failed("cancelled".to_owned()),
            Err(_) => {
                task.abort();
                HookOutcome::TimedOut
            }
        };
        let duration = started.elapsed();
        match &outcome {
            HookOutcome::Completed => {
                tracing::info!(hook = %name, duration = %Human(duration), "shutdown hook completed");
            }
            HookOutcome::Failed(error) => tracing::error!(hook = %name, %error, "shutdown hook failed"),
            HookOutcome::TimedOut => {
                tracing::error!(hook = %name, timeout = %Human(timeout), "shutdown hook timed out");
            }
            HookOutcome::Skipped => {}
        }
        HookReport {
            name,
            outcome,
            duration,
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "error", rename_all = "snake_case")]
pub enum HookOutcome {
    /// Finished in time.
    Completed,
    /// Returned an error or panicked.
    Failed(String),
    /// Did not finish within its timeout.
    TimedOut,
    /// Not run: the grace period was used up.
    Skipped,
}

/// One hook's line in the [`ShutdownReport`](crate::ShutdownReport).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookReport {
    /// The name it was registered with.
    pub name: String,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: HookOutcome,
    /// How long it ran.
    #[serde(rename = "duration_ms", serialize_with = "crate::report::millis")]
    pub duration: Duration,
}
