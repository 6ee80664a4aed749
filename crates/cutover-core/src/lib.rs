//! The lifecycle contract shared by every cutover crate.
//!
//! A service moves through five phases, always forwards:
//!
//! ```text
//! Starting ──▶ Ready ──▶ Draining ──▶ Stopping ──▶ Stopped
//! ```
//!
//! - **Starting**: startup work (migrations, warm-up, the first health-check round) is not done;
//!   the startup and readiness probes answer 503.
//! - **Ready**: the service takes traffic; readiness follows its critical checks.
//! - **Draining**: a shutdown was requested. Readiness answers 503 at once so load balancers stop
//!   routing here, but requests are still served normally while the change propagates.
//! - **Stopping**: new requests are refused with 503; in-flight work gets the rest of the budget.
//! - **Stopped**: everything finished or was cut; the process is about to exit.
//!
//! [`Lifecycle`] is the writable handle (cheap to clone, backed by a `tokio::sync::watch`
//! channel), and [`PhaseWatch`] the read-only view any task can await. Health checks read it to
//! decide readiness, the shutdown manager writes it, and neither needs a lock to do so.
//!
//! ```
//! use cutover_core::{Lifecycle, Phase};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let lifecycle = Lifecycle::new();
//! let mut watch = lifecycle.watch();
//! assert_eq!(lifecycle.phase(), Phase::Starting);
//!
//! lifecycle.mark_ready();
//! assert_eq!(watch.wait_for(Phase::Ready).await, Phase::Ready);
//!
//! // Phases never go back: a late `mark_ready` after a shutdown started changes nothing.
//! lifecycle.advance_to(Phase::Draining);
//! assert!(!lifecycle.mark_ready());
//! assert_eq!(lifecycle.phase(), Phase::Draining);
//! # }
//! ```
//!
//! With the `http` feature, [`problem::Problem`] is the RFC 9457 error body every cutover crate
//! answers with.
//!
//! # Feature flags
//!
//! | feature | enables |
//! | --- | --- |
//! | `http` | [`problem::Problem`]: problem+json documents as `http` responses |
//! | `axum` | `Problem` as an axum `IntoResponse` |
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "http")]
pub mod problem;

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::watch;

/// Where a service is in its life. Ordered: a later phase compares greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Startup work is still running; not ready for traffic.
    Starting,
    /// Taking traffic.
    Ready,
    /// Shutdown requested: readiness is closed, requests are still served.
    Draining,
    /// New requests are refused; in-flight work is finishing.
    Stopping,
    /// Everything finished or was abandoned.
    Stopped,
}

impl Phase {
    /// The lowercase name used in logs and JSON bodies (`"starting"`, `"ready"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Draining => "draining",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
        }
    }

    /// `true` from the moment a shutdown was requested.
    pub const fn is_shutting_down(self) -> bool {
        matches!(self, Self::Draining | Self::Stopping | Self::Stopped)
    }

    const fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Starting,
            1 => Self::Ready,
            2 => Self::Draining,
            3 => Self::Stopping,
            _ => Self::Stopped,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The writable lifecycle handle. Clones share the same phase.
#[derive(Clone)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

struct Inner {
    phase: watch::Sender<Phase>,
    /// The same phase as a plain atomic: middleware reads it on every request, and an atomic
    /// load is cheaper than the watch channel's lock.
    current: AtomicU8,
    started: Instant,
    started_at: SystemTime,
}

impl Lifecycle {
    /// A new lifecycle in [`Phase::Starting`]; uptime counts from now.
    pub fn new() -> Self {
        let (phase, _) = watch::channel(Phase::Starting);
        Self {
            inner: Arc::new(Inner {
                phase,
                current: AtomicU8::new(Phase::Starting as u8),
                started: Instant::now(),
                started_at: SystemTime::now(),
            }),
        }
    }

    /// The current phase. A single atomic load: cheap enough for every request.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.inner.current.load(Ordering::Acquire))
    }

    /// A read-only view that can await phase changes.
    pub fn watch(&self) -> PhaseWatch {
        PhaseWatch {
            rx: self.inner.phase.subscribe(),
        }
    }

    /// Move from [`Phase::Starting`] to [`Phase::Ready`]. Returns `false` (and changes nothing)
    /// when the service already left `Starting`, for example because a shutdown began first.
    pub fn mark_ready(&self) -> bool {
        self.inner.phase.send_if_modified(|phase| {
            if *phase == Phase::Starting {
                *phase = Phase::Ready;
                self.inner.current.store(Phase::Ready as u8, Ordering::Release);
                true
            } else {
                false
            }
        })
    }

    /// Move forward to `target`. Returns `true` if the phase changed; asking for the current or
    /// an earlier phase changes nothing, so racing callers cannot move the service backwards.
    pub fn advance_to(&self, target: Phase) -> bool {
        self.inner.phase.send_if_modified(|phase| {
            if target > *phase {
                *phase = target;
                self.inner.current.store(target as u8, Ordering::Release);
                true
            } else {
                false
            }
        })
    }

    /// Time since this lifecycle was created.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Wall-clock time at which this lifecycle was created.
    pub fn started_at(&self) -> SystemTime {
        self.inner.started_at
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lifecycle")
            .field("phase", &self.phase())
            .field("uptime", &self.uptime())
            .finish()
    }
}

/// A read-only, cloneable view of a [`Lifecycle`]'s phase.
#[derive(Debug, Clone)]
pub struct PhaseWatch {
    rx: watch::Receiver<Phase>,
}

impl PhaseWatch {
    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.rx.borrow()
    }

    /// Wait until the phase is `target` or later, and return the phase seen.
    ///
    /// Returns at once if it already is. If every [`Lifecycle`] handle was dropped, returns the
    /// last phase instead of waiting forever.
    pub async fn wait_for(&mut self, target: Phase) -> Phase {
        let reached = self.rx.wait_for(|phase| *phase >= target).await.map(|phase| *phase);
        reached.unwrap_or_else(|_closed| *self.rx.borrow())
    }

    /// Wait for the next phase change and return the new phase, or `None` once every
    /// [`Lifecycle`] handle was dropped.
    pub async fn changed(&mut self) -> Option<Phase> {
        self.rx.changed().await.ok()?;
        Some(*self.rx.borrow_and_update())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_only_move_forward() {
        let lifecycle = Lifecycle::new();
        assert!(lifecycle.advance_to(Phase::Stopping));
        assert!(!lifecycle.advance_to(Phase::Draining));
        assert!(!lifecycle.advance_to(Phase::Stopping));
        assert!(!lifecycle.mark_ready());
        assert_eq!(lifecycle.phase(), Phase::Stopping);
    }

    #[tokio::test]
    async fn watchers_see_changes_made_by_any_clone() {
        let lifecycle = Lifecycle::new();
        let mut watch = lifecycle.watch();
        let writer = lifecycle.clone();
        let waiter = tokio::spawn(async move { watch.wait_for(Phase::Draining).await });
        writer.mark_ready();
        writer.advance_to(Phase::Draining);
        assert_eq!(waiter.await.unwrap(), Phase::Draining);
    }

    #[tokio::test]
    async fn watch_returns_last_phase_when_all_handles_are_gone() {
        let lifecycle = Lifecycle::new();
        let mut watch = lifecycle.watch();
        lifecycle.mark_ready();
        drop(lifecycle);
        assert_eq!(watch.wait_for(Phase::Stopped).await, Phase::Ready);
        assert_eq!(watch.changed().await, None);
    }

    #[test]
    fn the_atomic_mirror_round_trips_every_phase() {
        for phase in [
            Phase::Starting,
            Phase::Ready,
            Phase::Draining,
            Phase::Stopping,
            Phase::Stopped,
        ] {
            assert_eq!(Phase::from_u8(phase as u8), phase);
        }
        let lifecycle = Lifecycle::new();
        lifecycle.advance_to(Phase::Draining);
        assert_eq!(lifecycle.phase(), *lifecycle.watch().rx.borrow());
    }

    #[test]
    fn display_matches_json_names() {
        assert_eq!(Phase::Draining.to_string(), "draining");
        assert!(Phase::Draining.is_shutting_down());
        assert!(!Phase::Ready.is_shutting_down());
    }
}

/// This crate's README, compiled as doctests so its example cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
