//! Test doubles and helpers for applications that embed cutover's health routes (feature
//! `testing`).
//!
//! [`StaticCheck`] always answers the same; [`ScriptedCheck`] answers whatever its
//! [`Script`] handle says at the moment it runs (healthy, degraded, failing, hanging,
//! panicking), and counts its runs. [`probe`] drives a router in-process with
//! `tower::ServiceExt::oneshot`, no socket needed.
//!
//! ```
//! use cutover_health::{HealthRegistry, testing::{probe, ScriptedCheck}};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (database, script) = ScriptedCheck::healthy();
//! let health = HealthRegistry::builder().check("database", database).build().unwrap();
//! health.mark_started();
//! let app = health.router();
//!
//! health.refresh().await;
//! assert_eq!(probe(&app, "/health/ready").await.status, 200);
//!
//! script.fail("connection refused");
//! health.refresh().await;
//! let response = probe(&app, "/health/ready").await;
//! assert_eq!(response.status, 503);
//! assert_eq!(response.json["failed_checks"][0], "database");
//! # }
//! ```

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Body};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::{Check, CheckContext, CheckResult, Outcome};

/// What a test check does when it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Behavior {
    /// Pass.
    Healthy,
    /// Pass with a warning.
    Degraded(String),
    /// Return an error with this message.
    Fail(String),
    /// Never finish (the registry's timeout must cut it).
    Hang,
    /// Panic with this message.
    Panic(String),
    /// Wait, then behave as the inner behavior.
    Delay(Duration, Box<Behavior>),
}

impl Behavior {
    async fn perform(self) -> CheckResult {
        let mut behavior = self;
        loop {
            return match behavior {
                Self::Healthy => Ok(Outcome::healthy()),
                Self::Degraded(reason) => Ok(Outcome::degraded(reason)),
                Self::Fail(message) => Err(message.into()),
                Self::Hang => std::future::pending().await,
                Self::Panic(message) => panic!("{message}"),
                Self::Delay(delay, inner) => {
                    tokio::time::sleep(delay).await;
                    behavior = *inner;
                    continue;
                }
            };
        }
    }
}

/// A check that always behaves the same.
#[derive(Debug, Clone)]
pub struct StaticCheck {
    behavior: Behavior,
    critical: bool,
}

impl StaticCheck {
    /// Always healthy.
    pub fn healthy() -> Self {
        Self::new(Behavior::Healthy)
    }

    /// Always failing with `message`.
    pub fn failing(message: impl Into<String>) -> Self {
        Self::new(Behavior::Fail(message.into()))
    }

    /// Always behaves as `behavior`.
    pub fn new(behavior: Behavior) -> Self {
        Self {
            behavior,
            critical: true,
        }
    }

    /// Make the check non-critical by default (as an upstream HTTP check would be).
    pub fn non_critical(mut self) -> Self {
        self.critical = false;
        self
    }
}

impl Check for StaticCheck {
    async fn check(&self, _ctx: CheckContext) -> CheckResult {
        self.behavior.clone().perform().await
    }

    fn critical_by_default(&self) -> bool {
        self.critical
    }
}

/// A check whose behavior a test changes through its [`Script`] while the registry runs.
#[derive(Debug, Clone)]
pub struct ScriptedCheck {
    script: Script,
}

/// The handle that scripts a [`ScriptedCheck`].
#[derive(Debug, Clone)]
pub struct Script {
    state: Arc<ScriptState>,
}

#[derive(Debug)]
struct ScriptState {
    behavior: Mutex<Behavior>,
    runs: AtomicUsize,
}

impl ScriptedCheck {
    /// A check that starts healthy, and the handle that changes it.
    pub fn healthy() -> (Self, Script) {
        Self::new(Behavior::Healthy)
    }

    /// A check that starts as `behavior`, and the handle that changes it.
    pub fn new(behavior: Behavior) -> (Self, Script) {
        let script = Script {
            state: Arc::new(ScriptState {
                behavior: Mutex::new(behavior),
                runs: AtomicUsize::new(0),
            }),
        };
        (Self { script: script.clone() }, script)
    }
}

impl Check for ScriptedCheck {
    async fn check(&self, _ctx: CheckContext) -> CheckResult {
        self.script.state.runs.fetch_add(1, Ordering::SeqCst);
        let behavior = self.script.current();
        behavior.perform().await
    }
}

impl Script {
    /// Behave as `behavior` from the next run on.
    pub fn set(&self, behavior: Behavior) {
        *self.state.behavior.lock().unwrap_or_else(PoisonError::into_inner) = behavior;
    }

    /// Pass from the next run on.
    pub fn heal(&self) {
        self.set(Behavior::Healthy);
    }

    /// Fail with `message` from the next run on.
    pub fn fail(&self, message: impl Into<String>) {
        self.set(Behavior::Fail(message.into()));
    }

    /// Hang from the next run on.
    pub fn hang(&self) {
        self.set(Behavior::Hang);
    }

    /// The current behavior.
    pub fn current(&self) -> Behavior {
        self.state
            .behavior
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many times the check has run.
    pub fn runs(&self) -> usize {
        self.state.runs.load(Ordering::SeqCst)
    }
}

/// A response from [`probe`], with the body parsed as JSON (`Value::Null` when empty).
#[derive(Debug, Clone)]
pub struct ProbeResponse {
    /// The HTTP status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, parsed.
    pub json: Value,
}

/// `GET path` on `router`, in-process.
pub async fn probe(router: &Router, path: &str) -> ProbeResponse {
    let request = Request::get(path).body(Body::empty()).expect("a path is a valid URI");
    send(router, request).await
}

/// Send any request to `router` in-process and parse the JSON response.
///
/// # Panics
///
/// If the body is neither empty nor JSON: this is a test helper, and a non-JSON health body is
/// a failed test.
pub async fn send(router: &Router, request: Request<Body>) -> ProbeResponse {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .expect("reading an in-memory body cannot fail")
        .to_bytes();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|error| {
            panic!(
                "response body is not JSON ({error}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    ProbeResponse {
        status: parts.status,
        headers: parts.headers,
        json,
    }
}
