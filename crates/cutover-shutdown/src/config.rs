//! Timings of the shutdown sequence, from code or from the environment.

use std::{fmt, time::Duration};

/// Drain delay used when running under Kubernetes: the time endpoint removal needs to reach
/// every proxy after the pod receives SIGTERM.
pub const KUBERNETES_DRAIN_DELAY: Duration = Duration::from_secs(5);
/// Default upper bound for in-flight requests and workers once new requests are refused.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// Default upper bound for one shutdown hook.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Kubernetes' default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

/// Timings and switches for a [`Shutdown`](crate::Shutdown).
///
/// ```text
/// SIGTERM ─▶ Draining ──(drain_delay)──▶ Stopping ──(≤ shutdown_timeout)──▶ hooks ──▶ Stopped
///            readiness 503                new requests 503                  each ≤ hook_timeout
///            requests served              in-flight finish
/// └──────────────────────────── all within grace_period ─────────────────────────────┘
/// ```
///
/// Defaults: `drain_delay` 5 s when `KUBERNETES_SERVICE_HOST` is set (0 otherwise, so Ctrl-C in
/// development is instant), `shutdown_timeout` 20 s, `hook_timeout` 5 s, `grace_period` 30 s.
///
/// ```
/// use std::time::Duration;
/// use cutover_shutdown::ShutdownConfig;
///
/// let config = ShutdownConfig::default()
///     .drain_delay(Duration::from_secs(10))
///     .shutdown_timeout(Duration::from_secs(15));
/// assert_eq!(config.budget(&[Duration::from_secs(5)]), Duration::from_secs(30));
/// assert!(config.budget_warning(&[Duration::from_secs(5)]).is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownConfig {
    pub(crate) drain_delay: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) hook_timeout: Duration,
    pub(crate) grace_period: Duration,
    pub(crate) retry_after: Duration,
    pub(crate) exempt_paths: Vec<String>,
    pub(crate) signals: bool,
    pub(crate) force_exit_on_second_signal: bool,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        let in_kubernetes = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|host| !host.is_empty());
        Self {
            drain_delay: if in_kubernetes {
                KUBERNETES_DRAIN_DELAY
            } else {
                Duration::ZERO
            },
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            hook_timeout: DEFAULT_HOOK_TIMEOUT,
            grace_period: DEFAULT_GRACE_PERIOD,
            retry_after: Duration::from_secs(1),
            exempt_paths: vec!["/health".to_owned()],
            signals: true,
            force_exit_on_second_signal: true,
        }
    }
}

/// The timings of a [`ShutdownConfig`], read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// Time requests keep being served after readiness closes.
    pub drain_delay: Duration,
    /// Time in-flight work gets once new requests are refused.
    pub shutdown_timeout: Duration,
    /// Default timeout of one hook.
    pub hook_timeout: Duration,
    /// Hard limit for the whole sequence.
    pub grace_period: Duration,
}

/// An environment variable that does not hold a usable value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?} is not a duration ({reason}); use e.g. `20s`, `500ms` or `1m 30s`")]
pub struct ConfigError {
    variable: &'static str,
    value: String,
    reason: String,
}

impl ConfigError {
    /// The variable that was rejected.
    pub fn variable(&self) -> &'static str {
        self.variable
    }
}

/// Parses `2s`, `500ms`, `1m 30s`; a bare number is seconds (as in Kubernetes manifests).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text).map_err(|error| error.to_string())
}

impl ShutdownConfig {
    /// Defaults, overridden by `SHUTDOWN_DRAIN_DELAY`, `SHUTDOWN_TIMEOUT`,
    /// `SHUTDOWN_HOOK_TIMEOUT` and `SHUTDOWN_GRACE_PERIOD` when they are set.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::default().with_env()
    }

    /// `self`, overridden by the `SHUTDOWN_*` variables that are set.
    pub fn with_env(self) -> Result<Self, ConfigError> {
        self.with_vars(|name| std::env::var(name).ok())
    }

    /// Like [`with_env`](Self::with_env) with any source of variables (tests, config files).
    pub fn with_vars(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let read = |variable: &'static str| -> Result<Option<Duration>, ConfigError> {
            match lookup(variable) {
                None => Ok(None),
                Some(value) => parse_duration(&value).map(Some).map_err(|reason| ConfigError {
                    variable,
                    value,
                    reason,
                }),
            }
        };
        if let Some(value) = read("SHUTDOWN_DRAIN_DELAY")? {
            self.drain_delay = value;
        }
        if let Some(value) = read("SHUTDOWN_TIMEOUT")? {
            self.shutdown_timeout = value;
        }
        if let Some(value) = read("SHUTDOWN_HOOK_TIMEOUT")? {
            self.hook_timeout = value;
        }
        if let Some(value) = read("SHUTDOWN_GRACE_PERIOD")? {
            self.grace_period = value;
        }
        Ok(self)
    }

    /// How long requests keep being served after readiness closes, so load balancers notice
    /// before new requests are refused.
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// How long in-flight requests and workers get once new requests are refused.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Default timeout of each hook (a hook can set its own).
    pub fn hook_timeout(mut self, timeout: Duration) -> Self {
        self.hook_timeout = timeout;
        self
    }

    /// The hard limit for the whole sequence, normally the orchestrator's grace period before
    /// it sends SIGKILL. Hooks only get what is left of it.
    pub fn grace_period(mut self, grace_period: Duration) -> Self {
        self.grace_period = grace_period;
        self
    }

    /// `Retry-After` sent with 503 responses while stopping (default 1 s).
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Path prefixes that keep being answered while stopping (default `/health`), so probes
    /// see the truth until the end.
    pub fn exempt_paths<I, P>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.exempt_paths = prefixes.into_iter().map(Into::into).collect();
        self
    }

    /// Add one exempt path prefix to those already set (`/metrics`, so Prometheus keeps
    /// scraping until the end).
    pub fn exempt_path(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        if !self.exempt_paths.contains(&prefix) {
            self.exempt_paths.push(prefix);
        }
        self
    }

    /// The `Retry-After` sent with 503 responses while stopping.
    pub fn retry_after_value(&self) -> Duration {
        self.retry_after
    }

    /// Whether SIGTERM and SIGINT (Ctrl-C on Windows) start the shutdown (default `true`).
    pub fn signals(mut self, enabled: bool) -> Self {
        self.signals = enabled;
        self
    }

    /// Whether a second signal exits the process at once (default `true`), with status
    /// 128 + the signal number.
    pub fn force_exit_on_second_signal(mut self, enabled: bool) -> Self {
        self.force_exit_on_second_signal = enabled;
        self
    }

    /// The configured timings, for logs and for checking manifests against them.
    pub fn timings(&self) -> Timings {
        Timings {
            drain_delay: self.drain_delay,
            shutdown_timeout: self.shutdown_timeout,
            hook_timeout: self.hook_timeout,
            grace_period: self.grace_period,
        }
    }

    /// Worst-case length of the sequence: drain delay + shutdown timeout + every hook timeout.
    pub fn budget(&self, hook_timeouts: &[Duration]) -> Duration {
        self.drain_delay + self.shutdown_timeout + hook_timeouts.iter().sum::<Duration>()
    }

    /// A warning when the worst case does not fit the grace period: the orchestrator would
    /// kill the process before the last hooks run.
    pub fn budget_warning(&self, hook_timeouts: &[Duration]) -> Option<String> {
        let budget = self.budget(hook_timeouts);
        (budget > self.grace_period).then(|| {
            format!(
                "shutdown may need {} (drain {} + timeout {} + {} hook(s) {}) but the grace period is {}: \
                 the last hooks would be cut; shorten the timeouts or raise terminationGracePeriodSeconds",
                Human(budget),
                Human(self.drain_delay),
                Human(self.shutdown_timeout),
                hook_timeouts.len(),
                Human(hook_timeouts.iter().sum()),
                Human(self.grace_period),
            )
        })
    }
}

/// Formats a duration the way people write it (`1.5s`, `250ms`).
pub(crate) struct Human(pub(crate) Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis == 0 && !self.0.is_zero() {
            // Quick hooks: `350µs`, not `0s`.
            write!(f, "{}µs", self.0.as_micros())
        } else if millis.is_multiple_of(1000) {
            write!(f, "{}s", millis / 1000)
        } else if millis >= 1000 {
            write!(f, "{:.1}s", self.0.as_secs_f64())
        } else {
            write!(f, "{millis}ms")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn environment_overrides_defaults() {
        let config = ShutdownConfig::default()
            .with_vars(vars(&[
                ("SHUTDOWN_DRAIN_DELAY", "2s"),
                ("SHUTDOWN_TIMEOUT", "500ms"),
                ("SHUTDOWN_GRACE_PERIOD", "45"),
            ]))
            .unwrap();
        assert_eq!(config.drain_delay, Duration::from_secs(2));
        assert_eq!(config.shutdown_timeout, Duration::from_millis(500));
        assert_eq!(config.grace_period, Duration::from_secs(45));
        assert_eq!(config.hook_timeout, DEFAULT_HOOK_TIMEOUT);
    }

    #[test]
    fn malformed_durations_name_the_variable_and_the_value() {
        let error = ShutdownConfig::default()
            .with_vars(vars(&[("SHUTDOWN_TIMEOUT", "soon")]))
            .unwrap_err();
        assert_eq!(error.variable(), "SHUTDOWN_TIMEOUT");
        let message = error.to_string();
        assert!(
            message.starts_with("SHUTDOWN_TIMEOUT=\"soon\" is not a duration"),
            "{message}"
        );
        assert!(
            ShutdownConfig::default()
                .with_vars(vars(&[("SHUTDOWN_DRAIN_DELAY", "-1s")]))
                .is_err()
        );
    }

    #[test]
    fn budget_warning_fires_only_when_the_grace_period_is_exceeded() {
        let config = ShutdownConfig::default()
            .drain_delay(Duration::from_secs(5))
            .shutdown_timeout(Duration::from_secs(20));
        assert!(config.budget_warning(&[Duration::from_secs(5)]).is_none());
        let warning = config
            .budget_warning(&[Duration::from_secs(5), Duration::from_millis(1500)])
            .unwrap();
        assert!(
            warning.starts_with("shutdown may need 31.5s (drain 5s + timeout 20s + 2 hook(s) 6.5s)"),
            "{warning}"
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(Human(Duration::from_millis(250)).to_string(), "250ms");
        assert_eq!(Human(Duration::from_secs(3)).to_string(), "3s");
        assert_eq!(Human(Duration::from_millis(1500)).to_string(), "1.5s");
        assert_eq!(Human(Duration::from_micros(350)).to_string(), "350µs");
        assert_eq!(Human(Duration::ZERO).to_string(), "0s");
    }
}
