use std::path::PathBuf;

use super::Thresholds;
use crate::{Check, CheckContext, CheckResult};

/// Used space of the filesystem that holds a path, computed as `df` does (space reserved for
/// root counts as unavailable). Fails above 90 % by default, degraded above 80 %.
#[derive(Debug, Clone)]
pub struct DiskCheck {
    path: PathBuf,
    thresholds: Thresholds,
}

impl DiskCheck {
    /// Check the filesystem holding `path` (for example the data directory).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            thresholds: Thresholds::DEFAULT,
        }
    }

    /// Use other levels.
    pub fn thresholds(mut self, thresholds: Thresholds) -> Self {
        self.thresholds = thresholds;
        self
    }
}

impl Check for DiskCheck {
    async fn check(&self, _ctx: CheckContext) -> CheckResult {
        let path = self.path.clone();
        let thresholds = self.thresholds;
        tokio::task::spawn_blocking(move || {
            let stat = rustix::fs::statvfs(&path).map_err(|errno| format!("statvfs {}: {errno}", path.display()))?;
            let block = stat.f_frsize;
            let used = stat.f_blocks.saturating_sub(stat.f_bfree) * block;
            let usable = used + stat.f_bavail * block;
            thresholds.judge(&format!("disk {}", path.display()), used, usable)
        })
        .await?
    }

    fn critical_by_default(&self) -> bool {
        false
    }
}
