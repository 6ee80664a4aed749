//! What happened during a shutdown: logged as one event and returned to `main`.

use std::{process::ExitCode, time::Duration};

use cutover_core::Phase;
use serde::{Serialize, Serializer};

use crate::{
    Trigger,
    hooks::{HookOutcome, HookReport},
};

pub(crate) fn millis<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64((duration.as_secs_f64() * 1e4).round() / 10.0)
}

/// How long one phase lasted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhaseReport {
    /// The phase.
    #[serde(serialize_with = "phase_name")]
    pub phase: Phase,
    /// Time spent in it.
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
}

fn phase_name<S: Serializer>(phase: &Phase, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(phase.as_str())
}

/// How the HTTP server (or whatever [`Shutdown::serve`](crate::Shutdown::serve) ran) ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "error", rename_all = "snake_case")]
pub enum ServerOutcome {
    /// It stopped when told to.
    Stopped,
    /// It failed (the error), with or without being asked to stop.
    Failed(String),
    /// It did not stop within the grace period and was abandoned.
    Abandoned,
}

/// The shutdown report: what ran, how long it took, and what was abandoned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// What started the shutdown.
    pub trigger: Trigger,
    /// A second trigger cut the sequence short.
    pub forced: bool,
    /// Time from the trigger to the end.
    #[serde(rename = "total_ms", serialize_with = "millis")]
    pub total: Duration,
    /// Draining, Stopping and hook durations, in order.
    pub phases: Vec<PhaseReport>,
    /// Requests in flight when new requests started being refused.
    pub in_flight_at_stop: usize,
    /// Requests still running at the deadline, answered 503 or cut mid-body.
    pub requests_cut: usize,
    /// Requests refused with 503 while stopping.
    pub requests_rejected: u64,
    /// Workers running when the service started stopping.
    pub workers_at_stop: usize,
    /// Workers still running at the deadline, by name.
    pub workers_abandoned: Vec<String>,
    /// How the server ended.
    pub server: ServerOutcome,
    /// Each hook, in the order they ran.
    pub hooks: Vec<HookReport>,
}

impl ShutdownReport {
    /// Everything finished within its budget: nothing cut, abandoned, failed or forced.
    pub fn is_clean(&self) -> bool {
        !self.forced
            && self.requests_cut == 0
            && self.workers_abandoned.is_empty()
            && self.server == ServerOutcome::Stopped
            && self.hooks.iter().all(|hook| hook.outcome == HookOutcome::Completed)
    }

    /// 0 when clean; 128 + signal after a forced exit; 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.is_clean() {
            0
        } else if self.forced {
            self.trigger.forced_exit_code()
        } else {
            1
        }
    }

    /// [`exit_code`](Self::exit_code) as a `std::process::ExitCode`, to return from `main`.
    pub fn exit(&self) -> ExitCode {
        ExitCode::from(u8::try_from(self.exit_code()).unwrap_or(1))
    }

    /// The hooks that did not complete.
    pub fn failed_hooks(&self) -> impl Iterator<Item = &HookReport> {
        self.hooks.iter().filter(|hook| hook.outcome != HookOutcome::Completed)
    }

    /// Log the report as one structured event (`info` when clean, `warn` otherwise), with
    /// the whole report as JSON in the `report` field.
    pub fn log(&self) {
        let report = serde_json::to_string(self).unwrap_or_default();
        let total_ms = (self.total.as_secs_f64() * 1e4).round() / 10.0;
        let hooks_failed = self.failed_hooks().count();
        if self.is_clean() {
            tracing::info!(
                target: "cutover::shutdown",
                clean = true,
                trigger = %self.trigger,
                total_ms,
                in_flight_at_stop = self.in_flight_at_stop,
                requests_rejected = self.requests_rejected,
                hooks = self.hooks.len(),
                %report,
                "shutdown complete"
            );
        } else {
            tracing::warn!(
                target: "cutover::shutdown",
                clean = false,
                forced = self.forced,
                trigger = %self.trigger,
                total_ms,
                in_flight_at_stop = self.in_flight_at_stop,
                requests_cut = self.requests_cut,
                requests_rejected = self.requests_rejected,
                workers_abandoned = self.workers_abandoned.len(),
                hooks_failed,
                %report,
                "shutdown finished with work cut or failed"
            );
        }
    }
}
