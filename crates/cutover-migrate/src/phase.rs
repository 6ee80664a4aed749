//! When a migration may run ([`MigrationPhase`]) and how its text is checksummed: the model
//! every backend shares.

use std::{fmt, str::FromStr};

use sha2::{Digest, Sha256};

/// When a migration may run relative to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MigrationPhase {
    /// Additive, backward-compatible changes: safe before the new version rolls out.
    Expand,
    /// Data changes in batches (usually after expand, while both versions run).
    Backfill,
    /// Removals: only after every old instance is gone. Never run by default.
    Contract,
}

/// [`MigrationPhase`] under its first name (it is not `cutover::Phase`, the lifecycle of a
/// service).
pub type Phase = MigrationPhase;

impl MigrationPhase {
    /// `"expand"`, `"backfill"` or `"contract"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Expand => "expand",
            Self::Backfill => "backfill",
            Self::Contract => "contract",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "expand" => Some(Self::Expand),
            "backfill" => Some(Self::Backfill),
            "contract" => Some(Self::Contract),
            _ => None,
        }
    }
}

impl fmt::Display for MigrationPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MigrationPhase {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text).ok_or_else(|| format!("unknown phase `{text}`; use expand, backfill or contract"))
    }
}

/// The checksum of a migration's text, normalized so that line endings, a byte-order mark and
/// trailing whitespace do not change it. Versioned (`v1:`) so the format can evolve.
pub fn checksum(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut normalized = String::with_capacity(text.len());
    for line in text.lines() {
        normalized.push_str(line.trim_end());
        normalized.push('\n');
    }
    let normalized = normalized.trim_end_matches('\n');
    let digest = Sha256::digest(normalized.as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("v1:sha256:{hex}")
}
