//! The results of one round of checks, as published to every probe.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde::Serialize;
use serde_json::Value;

use crate::registry::Entry;

/// Health of one check, or of the whole service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Works.
    Healthy,
    /// Works with a warning; HTTP 200, readiness unaffected.
    Degraded,
    /// Does not work; HTTP 503 when the check is critical.
    Unhealthy,
}

impl Status {
    /// `"healthy"`, `"degraded"` or `"unhealthy"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }

    /// The `application/health+json` name: `"pass"`, `"warn"` or `"fail"`.
    pub const fn as_ietf(self) -> &'static str {
        match self {
            Self::Healthy => "pass",
            Self::Degraded => "warn",
            Self::Unhealthy => "fail",
        }
    }
}

/// Why a check's last run failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The check returned an error.
    Error,
    /// The check did not finish before its timeout.
    Timeout,
    /// The check panicked.
    Panic,
}

impl FailureKind {
    /// `"error"`, `"timeout"` or `"panic"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::Panic => "panic",
        }
    }
}

/// The latest known state of one registered check.
#[derive(Debug, Clone)]
pub struct CheckState {
    pub(crate) entry: Arc<Entry>,
    pub(crate) status: Status,
    pub(crate) duration: Duration,
    pub(crate) checked_at: SystemTime,
    pub(crate) consecutive_failures: u32,
    pub(crate) last_success: Option<SystemTime>,
    pub(crate) last_error: Option<String>,
    pub(crate) failure: Option<FailureKind>,
    pub(crate) message: Option<String>,
    pub(crate) observed_value: Option<Value>,
    pub(crate) observed_unit: Option<String>,
}

impl CheckState {
    /// The registration name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// Result of the last run.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Whether a failure of this check fails readiness and makes `/health` unhealthy.
    pub fn is_critical(&self) -> bool {
        self.entry.critical
    }

    /// How long the last run took (up to the timeout).
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// When the last run finished.
    pub fn checked_at(&self) -> SystemTime {
        self.checked_at
    }

    /// Failed runs in a row, 0 after a success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// When the check last passed (healthy or degraded), if ever.
    pub fn last_success(&self) -> Option<SystemTime> {
        self.last_success
    }

    /// The error of the last run, redacted; `None` when it passed.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Why the last run failed.
    pub fn failure(&self) -> Option<FailureKind> {
        self.failure
    }

    /// The note or degradation reason the check attached, if any.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The measured value the check attached, if any.
    pub fn observed_value(&self) -> Option<&Value> {
        self.observed_value.as_ref()
    }

    /// Tags the check was registered with.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.entry.tags.iter().map(|tag| &**tag)
    }
}

/// The results of one round of checks. Cheap to share: probes receive an `Arc<Snapshot>`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) round: u64,
    pub(crate) checks: Vec<CheckState>,
    pub(crate) completed_at: SystemTime,
    pub(crate) completed: tokio::time::Instant,
    pub(crate) round_duration: Duration,
}

impl Snapshot {
    /// Rounds run since the registry was built, starting at 1.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// Every check, in registration order.
    pub fn checks(&self) -> &[CheckState] {
        &self.checks
    }

    /// The state of the check registered as `name`.
    pub fn check(&self, name: &str) -> Option<&CheckState> {
        self.checks.iter().find(|state| state.name() == name)
    }

    /// Wall-clock time at which the round finished.
    pub fn completed_at(&self) -> SystemTime {
        self.completed_at
    }

    /// Time since the round finished.
    pub fn age(&self) -> Duration {
        self.completed.elapsed()
    }

    /// Wall time of the whole round (checks run concurrently, so about the slowest check).
    pub fn round_duration(&self) -> Duration {
        self.round_duration
    }

    /// Overall status: unhealthy if a critical check fails, degraded if only non-critical
    /// checks fail or any check is degraded, healthy otherwise.
    pub fn status(&self) -> Status {
        overall_status(self.checks.iter())
    }
}

pub(crate) fn overall_status<'a>(checks: impl Iterator<Item = &'a CheckState>) -> Status {
    checks.fold(Status::Healthy, |overall, state| {
        let status = match (state.status, state.entry.critical) {
            (Status::Unhealthy, false) => Status::Degraded,
            (status, _) => status,
        };
        overall.max(status)
    })
}
