//! Zero-downtime building blocks for Rust services.
//!
//! `cutover` is the facade over the workspace's crates: add it once and switch parts on with
//! features. Each part is also published on its own (`cutover-health`, ...) for libraries
//! that want the smallest dependency.
//!
//! ```
//! use cutover::health::{check_fn, HealthRegistry, Outcome};
//!
//! let health = HealthRegistry::builder()
//!     .check("database", check_fn(|_ctx| async { Ok(Outcome::healthy()) }))
//!     .build()
//!     .expect("unique check names");
//! let probes: axum::Router = health.router();
//! # drop(probes);
//! ```
//!
//! # Feature flags
//!
//! | feature | enables |
//! | --- | --- |
//! | `health` (default) | [`health`]: the check registry and probe routes |
//! | `postgres`, `sqlite`, `mongodb`, `redis`, `rabbitmq`, `http` | the built-in check for that dependency |
//! | `system` | memory (cgroup aware) and disk checks |
//! | `metrics` | check metrics through the `metrics` facade |
//! | `testing` | scripted checks and in-process probe helpers |
#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(inline)]
pub use cutover_core::{Lifecycle, Phase, PhaseWatch};

/// Health checks and probe routes: see [`cutover_health`].
#[cfg(feature = "health")]
#[doc(inline)]
pub use cutover_health as health;

/// The README's examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
