//! The [`Check`] contract: what a health check is, what it is given, what it returns.

use std::{borrow::Cow, fmt, future::Future, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::time::Instant;

/// An error type that can hold any error a check runs into.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a check returns: an [`Outcome`] when the dependency answered, an error when it did not.
///
/// Any error converts with `?`. The registry turns it into a failed result, records its
/// message (with secrets [redacted](crate::redact)) and keeps running.
pub type CheckResult = Result<Outcome, BoxError>;

/// A health check: one question about one dependency, asked on a schedule.
///
/// Implement it for a type that holds the application's own client or pool (never open a
/// connection per check), or register a closure with [`check_fn`].
///
/// The registry runs every check in its own task, so a check that hangs is cut off at its
/// timeout and a check that panics is reported as failed; neither affects the others or the
/// process.
///
/// ```
/// use cutover_health::{Check, CheckContext, CheckResult, Outcome};
///
/// struct QueueDepth { limit: usize }
///
/// impl Check for QueueDepth {
///     async fn check(&self, _ctx: CheckContext) -> CheckResult {
///         let depth = 12; // ask the queue
///         if depth > self.limit {
///             return Err(format!("{depth} messages waiting, limit {}", self.limit).into());
///         }
///         Ok(Outcome::healthy().with_observed(depth, "messages"))
///     }
/// }
/// ```
pub trait Check: Send + Sync + 'static {
    /// Run the check once. `ctx` says which registration is running and its deadline; the
    /// registry enforces the deadline whether or not the check looks at it.
    fn check(&self, ctx: CheckContext) -> impl Future<Output = CheckResult> + Send;

    /// Whether a failure of this check should fail readiness when the registration does not
    /// say. `true` unless overridden: dependencies the service cannot work without are the
    /// common case. Upstream HTTP checks override it to `false`.
    fn critical_by_default(&self) -> bool {
        true
    }
}

/// Object-safe form of [`Check`], used to store checks of different types together.
pub(crate) trait DynCheck: Send + Sync + 'static {
    fn check_boxed(&self, ctx: CheckContext) -> BoxFuture<'_, CheckResult>;
}

impl<C: Check> DynCheck for C {
    fn check_boxed(&self, ctx: CheckContext) -> BoxFuture<'_, CheckResult> {
        Box::pin(self.check(ctx))
    }
}

/// Passed to every check run.
#[derive(Debug, Clone)]
pub struct CheckContext {
    name: Arc<str>,
    deadline: Instant,
}

impl CheckContext {
    /// A context for a run of `name` that must finish within `timeout`. The registry makes
    /// these; make one yourself to call a [`Check`] directly, for example in a unit test.
    pub fn new(name: impl Into<Arc<str>>, timeout: Duration) -> Self {
        Self {
            name: name.into(),
            deadline: Instant::now() + timeout,
        }
    }

    /// The name the check was registered under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When the registry will give up on this run.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left before the deadline, for passing on to a client's own timeout.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// The result of a check that passed, fully or with a warning.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub(crate) degraded: bool,
    pub(crate) message: Option<String>,
    pub(crate) observed_value: Option<Value>,
    pub(crate) observed_unit: Option<Cow<'static, str>>,
}

impl Outcome {
    /// The dependency works.
    pub fn healthy() -> Self {
        Self {
            degraded: false,
            message: None,
            observed_value: None,
            observed_unit: None,
        }
    }

    /// The dependency works but something is off (for example memory above its warning
    /// level). A degraded check never fails readiness and keeps `/health` at 200.
    pub fn degraded(reason: impl Into<String>) -> Self {
        Self {
            degraded: true,
            message: Some(reason.into()),
            ..Self::healthy()
        }
    }

    /// Attach a measured value and its unit (shown as `observedValue` / `observedUnit` in the
    /// `application/health+json` format).
    pub fn with_observed(mut self, value: impl Into<Value>, unit: impl Into<Cow<'static, str>>) -> Self {
        self.observed_value = Some(value.into());
        self.observed_unit = Some(unit.into());
        self
    }

    /// Attach a short human-readable note.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// `true` for [`Outcome::degraded`].
    pub fn is_degraded(&self) -> bool {
        self.degraded
    }
}

/// Make a [`Check`] from an async closure, as `tower::service_fn` makes a service.
///
/// ```
/// use cutover_health::{check_fn, HealthRegistry, Outcome};
///
/// let registry = HealthRegistry::builder()
///     .check("always", check_fn(|_ctx| async { Ok(Outcome::healthy()) }))
///     .build()
///     .unwrap();
/// # drop(registry);
/// ```
pub fn check_fn<F, Fut>(f: F) -> CheckFn<F>
where
    F: Fn(CheckContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CheckResult> + Send + 'static,
{
    CheckFn { f }
}

/// A [`Check`] made from a closure by [`check_fn`].
#[derive(Clone, Copy)]
pub struct CheckFn<F> {
    f: F,
}

impl<F> fmt::Debug for CheckFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckFn").finish_non_exhaustive()
    }
}

impl<F, Fut> Check for CheckFn<F>
where
    F: Fn(CheckContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CheckResult> + Send + 'static,
{
    fn check(&self, ctx: CheckContext) -> impl Future<Output = CheckResult> + Send {
        (self.f)(ctx)
    }
}

/// Renders an error with its chain of sources, `outer: inner: root`, so the cause that
/// matters (often the innermost, e.g. "connection refused") is not lost.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("query failed")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn error_chain_keeps_the_root_cause() {
        let error = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(error_chain(&error), "query failed: connection refused");
    }

    #[tokio::test]
    async fn context_reports_time_left() {
        let ctx = CheckContext::new("db", Duration::from_secs(2));
        assert_eq!(ctx.name(), "db");
        assert!(ctx.remaining() <= Duration::from_secs(2));
        assert!(ctx.remaining() > Duration::from_secs(1));
    }
}
