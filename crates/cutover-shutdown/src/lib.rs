//! Graceful shutdown that drains traffic instead of dropping it.
//!
//! When an orchestrator stops an instance, it sends `SIGTERM` and removes the instance from
//! its load balancers **at the same time**; the proxies learn about it asynchronously, so
//! requests keep arriving for seconds. A server that stops accepting at `SIGTERM` refuses
//! them. `cutover-shutdown` runs the sequence that avoids it:
//!
//! ```text
//! SIGTERM ─▶ Draining ──(drain_delay)──▶ Stopping ──(≤ shutdown_timeout)──▶ hooks ──▶ Stopped
//!            readiness 503                new requests 503 + Connection: close + Retry-After
//!            requests served normally     in-flight requests and workers finish, or are cut
//!            Connection: close            server stops accepting; hooks in reverse order
//! ```
//!
//! - [`Shutdown`] drives the sequence, listens for `SIGTERM`/`SIGINT` (a second signal exits at
//!   once) and returns a [`ShutdownReport`] whose [`exit_code`](ShutdownReport::exit_code) is 0
//!   only when nothing was cut.
//! - [`DrainLayer`] is a tower layer for any HTTP service: it tracks requests in flight (until
//!   their body ends), closes keep-alive connections while draining, refuses new requests with
//!   503 while stopping (probe paths stay answered), and cuts what is left at the deadline, so
//!   an open SSE stream cannot hold the process past its budget.
//! - [`ShutdownToken`] tells handlers and [`Workers`] that it is time to wrap up.
//! - Hooks run last, each with its own timeout taken from what remains of the grace period.
//! - Readiness follows: share the [`Lifecycle`] with
//!   `cutover-health` and `/health/ready` answers 503 from the first moment of `Draining`.
//!
//! The `cutover` facade wires all of this to axum in one call; use this crate directly to
//! drive another server, or a worker process with [`Shutdown::run`].
//!
//! # Feature flags
//!
//! | feature | enables |
//! | --- | --- |
//! | `axum` (default) | [`ShutdownToken`] as an axum extractor |
//! | `rabbitmq` | [`rabbitmq`]: drain a lapin consumer (cancel, finish and ack, requeue the rest) |
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
pub mod drain;
mod hooks;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
mod report;
mod shutdown;
mod token;
mod trigger;
mod workers;

/// An error type that can hold any error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub use config::{
    ConfigError, DEFAULT_GRACE_PERIOD, DEFAULT_HOOK_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT, KUBERNETES_DRAIN_DELAY,
    ShutdownConfig, Timings, parse_duration,
};
#[doc(no_inline)]
pub use cutover_core::{Lifecycle, Phase, PhaseWatch};
pub use drain::{DrainLayer, DrainService};
pub use hooks::{HookOutcome, HookOutput, HookReport};
pub use report::{PhaseReport, ServerOutcome, ShutdownReport};
pub use shutdown::{BuildError, ServerStop, Shutdown, ShutdownBuilder};
#[cfg(feature = "axum")]
pub use token::MissingDrainLayer;
pub use token::ShutdownToken;
pub use trigger::{ShutdownHandle, Trigger};
pub use workers::Workers;

/// This crate's README, compiled as doctests so its example cannot rot.
#[cfg(all(doctest, feature = "axum"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
