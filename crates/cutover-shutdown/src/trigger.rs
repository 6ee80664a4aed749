//! What starts a shutdown: OS signals or a call, and the handle to make that call.

use std::{fmt, sync::Arc};

use cutover_core::{Lifecycle, Phase, PhaseWatch};
use serde::Serialize;
use tokio::sync::watch;

use crate::token::ShutdownToken;

/// What started the shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// SIGTERM: the orchestrator (Kubernetes, Docker, systemd) asked the process to stop.
    Sigterm,
    /// SIGINT or Ctrl-C.
    Sigint,
    /// [`ShutdownHandle::trigger`].
    Programmatic,
    /// The server ended on its own (for example it failed), without being asked to stop.
    ServerExited,
}

impl Trigger {
    /// The exit status for a forced exit: 128 + the signal number, as shells report it.
    pub fn forced_exit_code(self) -> i32 {
        match self {
            Self::Sigterm => 128 + 15,
            Self::Sigint => 128 + 2,
            Self::Programmatic | Self::ServerExited => 1,
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sigterm => "SIGTERM",
            Self::Sigint => "SIGINT",
            Self::Programmatic => "programmatic",
            Self::ServerExited => "server exited",
        })
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Triggers {
    pub(crate) count: u32,
    pub(crate) first: Option<Trigger>,
    pub(crate) last: Option<Trigger>,
}

/// A cheap, cloneable handle to a [`Shutdown`](crate::Shutdown): trigger it, watch its phase,
/// get the token that fires when it is stopping.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    pub(crate) triggers: Arc<watch::Sender<Triggers>>,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) stopping: ShutdownToken,
}

impl ShutdownHandle {
    /// Start the shutdown, as SIGTERM would. A second call escalates: the sequence stops
    /// waiting and reports a forced shutdown.
    pub fn trigger(&self) {
        fire(&self.triggers, Trigger::Programmatic);
    }

    /// Whether a shutdown was triggered.
    pub fn is_triggered(&self) -> bool {
        self.triggers.borrow().count > 0
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.lifecycle.phase()
    }

    /// A view that can await phase changes.
    pub fn watch(&self) -> PhaseWatch {
        self.lifecycle.watch()
    }

    /// The lifecycle this shutdown drives.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// The token that fires when the service starts stopping.
    pub fn token(&self) -> ShutdownToken {
        self.stopping.clone()
    }
}

/// Record a trigger; returns how many there have been.
pub(crate) fn fire(triggers: &watch::Sender<Triggers>, trigger: Trigger) -> u32 {
    let mut count = 0;
    triggers.send_modify(|state| {
        state.count += 1;
        state.first.get_or_insert(trigger);
        state.last = Some(trigger);
        count = state.count;
    });
    count
}

/// Listen for SIGTERM and SIGINT (Ctrl-C elsewhere) for the life of the process.
pub(crate) fn listen_for_signals(triggers: Arc<watch::Sender<Triggers>>, force_exit: bool) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    Some(()) = terminate.recv() => Trigger::Sigterm,
                    Some(()) = interrupt.recv() => Trigger::Sigint,
                    else => return,
                };
                on_signal(&triggers, received, force_exit);
            }
        });
    }
    #[cfg(not(unix))]
    {
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                on_signal(&triggers, Trigger::Sigint, force_exit);
            }
        });
    }
    Ok(())
}

fn on_signal(triggers: &watch::Sender<Triggers>, received: Trigger, force_exit: bool) {
    let count = fire(triggers, received);
    if count == 1 {
        tracing::info!(signal = %received, "shutdown requested; send the signal again to exit at once");
    } else if force_exit {
        let code = received.forced_exit_code();
        tracing::error!(signal = %received, code, "second signal: exiting now, abandoning in-flight work");
        std::process::exit(code);
    } else {
        tracing::warn!(signal = %received, "second signal: cutting the shutdown short");
    }
}
