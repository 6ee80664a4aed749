//! Check results exported through the [`metrics`] facade (feature `metrics`).
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `cutover_health_check_status` | gauge: 1 healthy, 0.5 degraded, 0 unhealthy | `check` |
//! | `cutover_health_check_duration_seconds` | histogram | `check` |
//! | `cutover_health_check_failures_total` | counter | `check`, `kind` (`error`, `timeout`, `panic`) |
//!
//! Install any `metrics` recorder (for example `metrics-exporter-prometheus`) to collect them.

use crate::snapshot::{CheckState, Status};

pub(crate) fn record(state: &CheckState) {
    let check = state.name().to_owned();
    let value = match state.status() {
        Status::Healthy => 1.0,
        Status::Degraded => 0.5,
        Status::Unhealthy => 0.0,
    };
    metrics::gauge!("cutover_health_check_status", "check" => check.clone()).set(value);
    metrics::histogram!("cutover_health_check_duration_seconds", "check" => check.clone())
        .record(state.duration().as_secs_f64());
    if let Some(kind) = state.failure() {
        metrics::counter!("cutover_health_check_failures_total", "check" => check, "kind" => kind.as_str())
            .increment(1);
    }
}
