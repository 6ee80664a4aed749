//! Running a round of checks: concurrently, each in its own task, each with its own timeout.

use std::{
    any::Any,
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures_util::future::join_all;
use tokio::time::Instant;

use crate::{
    check::{CheckContext, CheckResult, error_chain},
    redact::Redactor,
    registry::Entry,
    snapshot::{CheckState, FailureKind, Snapshot, Status},
};

/// What one run of one check produced, before it is merged with the check's history.
struct RunResult {
    result: Result<crate::Outcome, (FailureKind, String)>,
    duration: Duration,
}

/// Run every check once, concurrently, and fold the results into the previous snapshot's
/// history (consecutive failures, last success).
pub(crate) async fn run_round(
    entries: &[Arc<Entry>],
    previous: Option<&Snapshot>,
    round: u64,
    redactor: &Redactor,
) -> Snapshot {
    let started = Instant::now();
    let results = join_all(entries.iter().map(|entry| run_one(Arc::clone(entry)))).await;
    let completed_at = SystemTime::now();

    let checks = entries
        .iter()
        .zip(results)
        .map(|(entry, run)| {
            let before = previous.and_then(|snapshot| snapshot.check(&entry.name));
            merge(entry, before, run, completed_at, redactor)
        })
        .collect();

    Snapshot {
        round,
        checks,
        completed_at,
        completed: Instant::now(),
        round_duration: started.elapsed(),
    }
}

async fn run_one(entry: Arc<Entry>) -> RunResult {
    let started = Instant::now();
    let ctx = CheckContext::new(Arc::clone(&entry.name), entry.timeout);
    let check = Arc::clone(&entry.check);
    // A task per check: a panic is caught by the runtime and reported through the JoinHandle,
    // and a check that blocks its thread cannot stall the others or the timeout below.
    let mut task = tokio::spawn(async move { check.check_boxed(ctx).await });
    let result = match tokio::time::timeout(entry.timeout, &mut task).await {
        Ok(Ok(CheckResult::Ok(outcome))) => Ok(outcome),
        Ok(Ok(Err(error))) => Err((FailureKind::Error, error_chain(error.as_ref()))),
        Ok(Err(join_error)) if join_error.is_panic() => Err((
            FailureKind::Panic,
            format!("check panicked: {}", panic_message(&*join_error.into_panic())),
        )),
        Ok(Err(_cancelled)) => Err((FailureKind::Error, "check task was cancelled".to_owned())),
        Err(_elapsed) => {
            task.abort();
            Err((
                FailureKind::Timeout,
                format!("timed out after {}", humantime::format_duration(entry.timeout)),
            ))
        }
    };
    RunResult {
        result,
        duration: started.elapsed(),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

fn merge(
    entry: &Arc<Entry>,
    before: Option<&CheckState>,
    run: RunResult,
    now: SystemTime,
    redactor: &Redactor,
) -> CheckState {
    let previous_status = before.map(|state| state.status);
    let state = match run.result {
        Ok(outcome) => CheckState {
            entry: Arc::clone(entry),
            status: if outcome.degraded {
                Status::Degraded
            } else {
                Status::Healthy
            },
            duration: run.duration,
            checked_at: now,
            consecutive_failures: 0,
            last_success: Some(now),
            last_error: None,
            failure: None,
            message: outcome.message.map(|message| redactor.redact(&message).into_owned()),
            observed_value: outcome.observed_value,
            observed_unit: outcome.observed_unit.map(|unit| unit.into_owned()),
        },
        Err((kind, error)) => CheckState {
            entry: Arc::clone(entry),
            status: Status::Unhealthy,
            duration: run.duration,
            checked_at: now,
            consecutive_failures: before.map_or(0, |state| state.consecutive_failures).saturating_add(1),
            last_success: before.and_then(|state| state.last_success),
            last_error: Some(redactor.redact(&error).into_owned()),
            failure: Some(kind),
            message: None,
            observed_value: None,
            observed_unit: None,
        },
    };
    log_transition(previous_status, &state);
    #[cfg(feature = "metrics")]
    crate::metrics::record(&state);
    state
}

/// Log changes of status, not every run: a check failing every 10 s for an hour is one event
/// when it starts and one when it recovers.
fn log_transition(previous: Option<Status>, state: &CheckState) {
    if previous == Some(state.status) {
        return;
    }
    let check = state.name();
    match state.status {
        Status::Healthy if previous.is_some() => {
            tracing::info!(
                check,
                duration_ms = state.duration.as_secs_f64() * 1e3,
                "health check recovered"
            );
        }
        Status::Healthy => {}
        Status::Degraded => {
            tracing::warn!(check, reason = state.message.as_deref(), "health check degraded");
        }
        Status::Unhealthy => {
            tracing::warn!(
                check,
                critical = state.entry.critical,
                kind = state.failure.map(FailureKind::as_str),
                error = state.last_error.as_deref(),
                "health check failed"
            );
        }
    }
}
