//! What runs report, on every backend: progress [`Event`]s, the [`UpOptions`] a run takes, the
//! [`StatusEntry`] and [`PlannedMigration`] it shows and the [`Report`] it returns.

use std::{fmt, path::PathBuf, sync::Arc};

use serde::Serialize;

use crate::{LedgerEntry, Phase, lint::Finding};

/// Something worth telling a person while migrations run: drives the CLI's progress bars, and
/// is logged with `tracing` by the library either way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// Waiting for another runner's lock.
    WaitingForLock {
        /// How long so far, in milliseconds.
        waited_ms: u64,
    },
    /// A migration started (`steps` statements; 0 for a backfill).
    Started {
        /// Version.
        version: i64,
        /// Name.
        name: String,
        /// Statements, or 0.
        steps: usize,
        /// Where it resumes (0 when it starts fresh).
        resumed_at: usize,
    },
    /// A statement finished.
    Step {
        /// Version.
        version: i64,
        /// Statements done.
        done: usize,
        /// Statements in all.
        of: usize,
    },
    /// A statement waited too long for a lock and will be retried.
    LockRetry {
        /// Version.
        version: i64,
        /// Attempt number.
        attempt: u32,
    },
    /// A backfill batch committed.
    Batch {
        /// Version.
        version: i64,
        /// Key reached.
        last: i64,
        /// Key it will stop at.
        upper: i64,
        /// Rows changed so far.
        rows: u64,
    },
    /// A leftover INVALID index was dropped before being rebuilt.
    RebuildingInvalidIndex {
        /// Version.
        version: i64,
        /// The index.
        index: String,
    },
    /// A pre-flight warning (long transactions, many connections).
    Warning {
        /// What was found.
        message: String,
    },
    /// A migration was applied.
    Applied {
        /// Version.
        version: i64,
        /// How long it took, in milliseconds.
        duration_ms: u64,
    },
}

pub(crate) type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// Log `event` with `tracing` and hand it to the caller's sink, if any.
pub(crate) fn emit(sink: Option<&EventSink>, event: &Event) {
    match event {
        Event::Warning { message } => tracing::warn!("{message}"),
        Event::LockRetry { version, attempt } => {
            tracing::info!(version, attempt, "lock_timeout reached; retrying with backoff");
        }
        Event::Applied { version, duration_ms } => tracing::info!(version, duration_ms, "migration applied"),
        Event::Batch {
            version,
            last,
            upper,
            rows,
        } => tracing::debug!(version, last, upper, rows, "batch committed"),
        Event::Started {
            version,
            name,
            steps,
            resumed_at,
        } => tracing::debug!(version, %name, steps, resumed_at, "migration started"),
        Event::Step { version, done, of } => tracing::debug!(version, done, of, "statement done"),
        Event::WaitingForLock { waited_ms } => tracing::info!(waited_ms, "waiting for another runner's lock"),
        Event::RebuildingInvalidIndex { version, index } => {
            tracing::warn!(version, %index, "dropping a leftover INVALID index before rebuilding it");
        }
    }
    if let Some(sink) = sink {
        sink(event);
    }
}

/// What a run may apply.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Only these phases (default: expand and backfill; contract never runs by default).
    pub phases: Option<Vec<Phase>>,
    /// Stop after this version.
    pub target: Option<i64>,
    /// Print what would run; change nothing.
    pub dry_run: bool,
    /// Run `contract` migrations even while live instances do not embed them (see
    /// [`instances`](crate::instances)), for this reason. Recorded in the ledger
    /// (`forced_contract`: who, why, and the instances still running) and warned about loudly.
    /// Their requests that read what the migration removes will fail.
    pub force_contract: Option<String>,
}

impl UpOptions {
    pub(crate) fn includes(&self, phase: Phase) -> bool {
        match &self.phases {
            Some(phases) => phases.contains(&phase),
            None => phase != Phase::Contract,
        }
    }
}

/// Where a migration stands, joining its file with the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum MigrationState {
    /// Not in the ledger: `up` would run it.
    Pending,
    /// Applied (or adopted, see [`LedgerEntry::adopted_from`](crate::LedgerEntry::adopted_from)).
    Applied,
    /// Being applied, or its runner died; the next run resumes it.
    Running,
    /// A step failed; the next run retries it.
    Failed,
    /// Applied, but the file changed since (its checksum differs).
    Changed,
    /// In the ledger, but no file has it.
    Missing,
}

impl MigrationState {
    /// `"pending"`, `"applied"`, `"running"`, `"failed"`, `"changed"` or `"missing"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Applied => "applied",
            Self::Running => "running",
            Self::Failed => "failed",
            Self::Changed => "changed",
            Self::Missing => "missing",
        }
    }
}

impl fmt::Display for MigrationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How `up` runs a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ApplyMode {
    /// In one transaction with its ledger row.
    Transaction,
    /// One statement per round-trip, progress recorded after each (see
    /// [`PlannedMigration::reason`]).
    PerStatement,
    /// In keyset batches, each in its own transaction with the checkpoint.
    Backfill,
    /// Rust code, in one transaction.
    Rust,
    /// MongoDB operations, one at a time, each resumable.
    Operations,
}

impl ApplyMode {
    /// `"transaction"`, `"per-statement"`, `"backfill"`, `"rust"` or `"operations"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Transaction => "transaction",
            Self::PerStatement => "per-statement",
            Self::Backfill => "backfill",
            Self::Rust => "rust",
            Self::Operations => "operations",
        }
    }
}

impl fmt::Display for ApplyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where each migration stands.
#[derive(Debug, Clone, Serialize)]
pub struct StatusEntry {
    /// Version.
    pub version: i64,
    /// Name.
    pub name: String,
    /// Phase (from the file, or the ledger for missing files).
    pub phase: String,
    /// Where it stands.
    pub state: MigrationState,
    /// The file's checksum, or the ledger's for a missing file.
    pub checksum: String,
    /// The ledger row, if the database has one.
    pub ledger: Option<LedgerEntry>,
}

/// A migration that would run, and how.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedMigration {
    /// Version.
    pub version: i64,
    /// Name.
    pub name: String,
    /// Phase.
    pub phase: Phase,
    /// How it runs.
    pub mode: ApplyMode,
    /// Why it is not transactional, when it is not.
    pub reason: Option<String>,
    /// Statements in it.
    pub statements: usize,
    /// Resuming at this statement (after an earlier failure).
    pub resume_at: usize,
    /// Lint findings (allowed ones included, marked).
    pub findings: Vec<Finding>,
    /// For a `contract` migration: the ids of the live instances whose binaries do not embed
    /// it, which make `up` refuse it (see [`instances`](crate::instances)).
    pub blocked_by: Vec<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Versions applied (or reverted, for `down`) by this runner.
    pub applied: Vec<i64>,
    /// Pending migrations that another runner applied while this one waited for the lock.
    pub applied_by_others: Vec<i64>,
    /// Migrations skipped because of their phase.
    pub skipped_phase: Vec<i64>,
    /// The backup taken first, if any.
    pub backup: Option<PathBuf>,
    /// Pre-flight warnings.
    pub warnings: Vec<String>,
    /// Contract migrations applied with [`UpOptions::force_contract`] while live instances did
    /// not embed them, with those instances.
    pub forced: Vec<crate::instances::BlockedContract>,
}

/// One line for people, for a report from `up`: `applied 3, 4; 5 applied by another runner;
/// 6 left for a later phase; backup /var/backups/app.dump`, or `nothing to apply`. Reports from
/// `down` read with [`Report::reverted`].
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.applied.as_slice() {
            [] => f.write_str("nothing to apply")?,
            applied => write!(f, "applied {}", Versions(applied))?,
        }
        if !self.applied_by_others.is_empty() {
            write!(f, "; {} applied by another runner", Versions(&self.applied_by_others))?;
        }
        if !self.skipped_phase.is_empty() {
            write!(f, "; {} left for a later phase", Versions(&self.skipped_phase))?;
        }
        if let Some(backup) = &self.backup {
            write!(f, "; backup {}", backup.display())?;
        }
        for forced in &self.forced {
            write!(
                f,
                "; {} FORCED past {} live instance(s) that do not embed it",
                forced.version,
                forced.blocked_by.len()
            )?;
        }
        Ok(())
    }
}

impl Report {
    /// One line for people, for a report from `down`: `reverted 5, 4` or `nothing to revert`,
    /// then a `note:` line per warning.
    ///
    /// ```
    /// let report = cutover_migrate::Report {
    ///     applied: vec![5, 4],
    ///     ..Default::default()
    /// };
    /// assert_eq!(report.reverted().to_string(), "reverted 5, 4");
    /// ```
    pub fn reverted(&self) -> impl fmt::Display + '_ {
        struct Reverted<'a>(&'a Report);
        impl fmt::Display for Reverted<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0.applied.as_slice() {
                    [] => f.write_str("nothing to revert")?,
                    reverted => write!(f, "reverted {}", Versions(reverted))?,
                }
                self.0
                    .warnings
                    .iter()
                    .try_for_each(|warning| write!(f, "\nnote: {warning}"))
            }
        }
        Reverted(self)
    }
}

/// `3, 4, 5`.
struct Versions<'a>(&'a [i64]);

impl fmt::Display for Versions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, version) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{version}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Report;

    #[test]
    fn reports_read_as_sentences() {
        assert_eq!(Report::default().to_string(), "nothing to apply");
        let report = Report {
            applied: vec![3, 4],
            applied_by_others: vec![5],
            skipped_phase: vec![6, 7],
            backup: Some("/backups/app.dump".into()),
            warnings: vec!["down SQL from the ledger".to_owned()],
            forced: Vec::new(),
        };
        assert_eq!(
            report.to_string(),
            "applied 3, 4; 5 applied by another runner; 6, 7 left for a later phase; backup /backups/app.dump"
        );
        assert_eq!(
            report.reverted().to_string(),
            "reverted 3, 4\nnote: down SQL from the ledger"
        );
        assert_eq!(Report::default().reverted().to_string(), "nothing to revert");
    }
}
