//! JSON bodies of the health endpoints, in cutover's own shape and in the IETF
//! `application/health+json` draft shape (draft-inadarei-api-health-check).

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::{
    HealthRegistry,
    probe::{Liveness, Readiness, StartupStatus},
    snapshot::{CheckState, Snapshot, Status, overall_status},
};

/// The body format a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// cutover's JSON (`application/json`).
    Json,
    /// The IETF health-check draft (`application/health+json`): `pass` / `warn` / `fail`.
    HealthJson,
}

impl Format {
    /// The `Content-Type` of bodies in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::HealthJson => "application/health+json",
        }
    }

    /// Pick the format from an `Accept` header value.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.to_ascii_lowercase().contains("application/health+json") => Self::HealthJson,
            _ => Self::Json,
        }
    }
}

/// A rendered body and whether it means success (200) or failure (503).
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// `true` for HTTP 200.
    pub ok: bool,
    /// The JSON body.
    pub body: Value,
}

fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

fn millis(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1e5).round() / 1e2
}

/// The full report (`/health`), optionally restricted to the checks carrying `tag`.
pub fn full(
    registry: &HealthRegistry,
    snapshot: Option<&Snapshot>,
    tag: Option<&str>,
    show_details: bool,
    format: Format,
) -> Rendered {
    let in_group = |state: &&CheckState| tag.is_none_or(|tag| state.tags().any(|t| t == tag));
    let readiness = registry.readiness_of(snapshot);
    let stale = snapshot.is_some_and(|s| registry.is_stale(s));

    let (status, reason) = match snapshot {
        Some(_) if stale => (Status::Unhealthy, readiness.reason().map(str::to_owned)),
        Some(snapshot) => (overall_status(snapshot.checks.iter().filter(in_group)), None),
        None => {
            let any_critical = registry
                .inner_entries()
                .iter()
                .any(|e| e.critical && tag.is_none_or(|t| e.has_tag(t)));
            let status = if any_critical {
                Status::Unhealthy
            } else {
                Status::Healthy
            };
            (
                status,
                Some("health checks have not completed their first round".to_owned()),
            )
        }
    };

    let mut checks = Map::new();
    match snapshot {
        Some(snapshot) => {
            for state in snapshot.checks.iter().filter(in_group) {
                checks.insert(state.name().to_owned(), check_body(state, show_details, format));
            }
        }
        None => {
            for entry in registry
                .inner_entries()
                .iter()
                .filter(|e| tag.is_none_or(|t| e.has_tag(t)))
            {
                let body = match format {
                    Format::Json => json!({ "status": "pending", "critical": entry.critical }),
                    Format::HealthJson => json!([{ "status": "warn", "output": "not checked yet" }]),
                };
                checks.insert(entry.name.to_string(), body);
            }
        }
    }

    let now = SystemTime::now();
    let lifecycle = registry.lifecycle();
    let body = match format {
        Format::Json => {
            let mut body = json!({
                "status": status.as_str(),
                "timestamp": timestamp(now),
                "uptime_seconds": lifecycle.uptime().as_secs_f64(),
                "ready": readiness.is_ready(),
                "phase": lifecycle.phase().as_str(),
                "version": registry.version(),
                "checks": checks,
            });
            if let Some(reason) = reason {
                body["reason"] = Value::String(reason);
            }
            if let Some(tag) = tag {
                body["group"] = Value::String(tag.to_owned());
            }
            body
        }
        Format::HealthJson => {
            let mut body = json!({
                "status": status.as_ietf(),
                "description": "cutover health report",
                "checks": checks,
            });
            if let Some(version) = registry.version() {
                body["version"] = Value::String(version.to_owned());
                body["releaseId"] = Value::String(version.to_owned());
            }
            if let Some(reason) = reason {
                body["output"] = Value::String(reason);
            }
            body
        }
    };
    Rendered {
        ok: status != Status::Unhealthy,
        body,
    }
}

/// One check's entry. Without `show_details`, only what a stranger may know: status,
/// timings, failure counts; error text becomes `"hidden"` and messages and observed values
/// (memory figures, disk paths) are left out.
fn check_body(state: &CheckState, show_details: bool, format: Format) -> Value {
    let error = if show_details {
        state.last_error()
    } else {
        state.last_error().map(|_| "hidden")
    };
    let message = state.message().filter(|_| show_details);
    let observed = state.observed_value().filter(|_| show_details);
    match format {
        Format::Json => {
            let mut body = json!({
                "status": state.status().as_str(),
                "critical": state.is_critical(),
                "duration_ms": millis(state.duration()),
                "consecutive_failures": state.consecutive_failures(),
                "last_checked": timestamp(state.checked_at()),
                "last_success": state.last_success().map(timestamp),
                "last_error": error,
            });
            if let Some(kind) = state.failure() {
                body["failure"] = Value::String(kind.as_str().to_owned());
            }
            if let Some(message) = message {
                body["message"] = Value::String(message.to_owned());
            }
            if let Some(value) = observed {
                body["observed_value"] = value.clone();
                body["observed_unit"] = json!(state.observed_unit);
            }
            body
        }
        Format::HealthJson => {
            let mut entry = json!({
                "status": state.status().as_ietf(),
                "time": timestamp(state.checked_at()),
            });
            match observed {
                Some(value) => {
                    entry["observedValue"] = value.clone();
                    entry["observedUnit"] = json!(state.observed_unit);
                }
                None => {
                    entry["observedValue"] = json!(millis(state.duration()));
                    entry["observedUnit"] = json!("ms");
                }
            }
            if let Some(output) = error.or(message) {
                entry["output"] = Value::String(output.to_owned());
            }
            Value::Array(vec![entry])
        }
    }
}

/// `/health/ready`.
pub fn readiness(readiness: &Readiness, snapshot: Option<&Snapshot>, format: Format) -> Rendered {
    let ready = readiness.is_ready();
    let body = match format {
        Format::Json if ready => {
            let checks: Map<String, Value> = snapshot
                .map(|s| {
                    s.checks
                        .iter()
                        .filter(|state| state.entry.readiness)
                        .map(|state| (state.name().to_owned(), Value::from(state.status().as_str())))
                        .collect()
                })
                .unwrap_or_default();
            json!({ "status": "ready", "phase": readiness.phase().as_str(), "checks": checks })
        }
        Format::Json => json!({
            "status": "not_ready",
            "phase": readiness.phase().as_str(),
            "reason": readiness.reason(),
            "failed_checks": readiness.failed_checks(),
        }),
        Format::HealthJson if ready => json!({ "status": "pass" }),
        Format::HealthJson => json!({
            "status": "fail",
            "output": readiness.reason(),
            "notes": readiness.failed_checks(),
        }),
    };
    Rendered { ok: ready, body }
}

/// `/health/live`.
pub fn liveness(liveness: &Liveness, format: Format) -> Rendered {
    let alive = liveness.is_alive();
    let body = match format {
        Format::Json => json!({
            "status": if alive { "alive" } else { "wedged" },
            "uptime_seconds": liveness.uptime().as_secs_f64(),
            "phase": liveness.phase().as_str(),
        }),
        Format::HealthJson if alive => json!({ "status": "pass" }),
        Format::HealthJson => json!({ "status": "fail", "output": "the async runtime did not run a task in time" }),
    };
    Rendered { ok: alive, body }
}

/// `/health/startup`.
pub fn startup(startup: &StartupStatus, uptime: std::time::Duration, format: Format) -> Rendered {
    let started = startup.is_started();
    let body = match format {
        Format::Json if started => json!({ "status": "started", "uptime_seconds": uptime.as_secs_f64() }),
        Format::Json => json!({ "status": "starting", "reason": startup.reason() }),
        Format::HealthJson if started => json!({ "status": "pass" }),
        Format::HealthJson => json!({ "status": "fail", "output": startup.reason() }),
    };
    Rendered { ok: started, body }
}
