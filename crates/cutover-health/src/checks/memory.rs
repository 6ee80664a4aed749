use sysinfo::{MemoryRefreshKind, RefreshKind, System};

use super::Thresholds;
use crate::{Check, CheckContext, CheckResult};

/// Memory in use, against the container's cgroup limit (v2 or v1) when there is one, and the
/// machine's memory otherwise. Degraded above 80 %, failed above 90 % by default.
///
/// In a container, the machine's memory says nothing about when the kernel will kill the
/// process: the cgroup limit does, which is why it comes first.
#[derive(Debug, Clone, Copy)]
pub struct MemoryCheck {
    thresholds: Thresholds,
}

impl MemoryCheck {
    /// Warn at 80 %, fail at 90 %.
    pub fn new() -> Self {
        Self {
            thresholds: Thresholds::DEFAULT,
        }
    }

    /// Use other levels.
    pub fn thresholds(mut self, thresholds: Thresholds) -> Self {
        self.thresholds = thresholds;
        self
    }
}

impl Default for MemoryCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl Check for MemoryCheck {
    async fn check(&self, _ctx: CheckContext) -> CheckResult {
        let thresholds = self.thresholds;
        // Reading /proc and /sys is blocking file I/O.
        tokio::task::spawn_blocking(move || {
            let system =
                System::new_with_specifics(RefreshKind::nothing().with_memory(MemoryRefreshKind::everything()))?;
            match system.cgroup_limits() {
                Some(limits) => thresholds.judge(
                    "memory (cgroup limit)",
                    limits.total_memory.saturating_sub(limits.free_memory),
                    limits.total_memory,
                ),
                None => thresholds.judge("memory (system)", system.used_memory(), system.total_memory()),
            }
        })
        .await?
    }

    fn critical_by_default(&self) -> bool {
        false
    }
}
