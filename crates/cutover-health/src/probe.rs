//! The verdicts of the three Kubernetes probes, independent of HTTP.

use std::time::Duration;

use cutover_core::Phase;

/// Should this instance receive traffic? See [`HealthRegistry::readiness`](crate::HealthRegistry::readiness).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub(crate) phase: Phase,
    pub(crate) reason: Option<String>,
    pub(crate) failed_checks: Vec<String>,
}

impl Readiness {
    /// `true` when traffic should be sent here.
    pub fn is_ready(&self) -> bool {
        self.reason.is_none()
    }

    /// The lifecycle phase at the time of the verdict.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Why the instance is not ready, if it is not.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Critical readiness checks that are failing (or have no fresh result).
    pub fn failed_checks(&self) -> &[String] {
        &self.failed_checks
    }
}

/// Has this instance finished starting? Latched once true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupStatus {
    pub(crate) started: bool,
    pub(crate) reason: Option<String>,
}

impl StartupStatus {
    /// `true` once startup work is done and the startup checks passed a round.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// What startup is still waiting for.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

/// Is this process able to make progress? Never depends on dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liveness {
    pub(crate) alive: bool,
    pub(crate) phase: Phase,
    pub(crate) uptime: Duration,
}

impl Liveness {
    /// `false` only when the runtime could not run a trivial task in time.
    pub fn is_alive(&self) -> bool {
        self.alive
    }

    /// The lifecycle phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Process uptime.
    pub fn uptime(&self) -> Duration {
        self.uptime
    }
}
