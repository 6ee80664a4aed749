//! The ledger: one row per migration the database has seen (a document per migration on
//! MongoDB), moved only by these named transitions, each written by the backend in the same
//! transaction as the work it records where the database allows:
//!
//! | transition | from | to | when |
//! | --- | --- | --- | --- |
//! | `applied` | (none), `failed` | `applied` | a transactional migration commits, with its row |
//! | `start` | (none), `failed`, `running` | `running` | a migration that runs step by step begins or resumes |
//! | `step done` | `running` | `running` | a step committed: `steps_done` and the checksum of the steps done |
//! | `checkpoint` | `running` | `running` | a backfill batch committed, in the batch's transaction |
//! | `fail` | (none), `running` | `failed` | a step failed: which, and the error |
//! | `finish` | `running` | `applied` | the last step of a step-by-step migration |
//! | `adopt` | (none) | `applied` | `baseline` or `import`: recorded, never run (`adopted_from`) |
//! | `realign` | any | same | `repair`: the checksum of the edited file, with a note |
//! | `force` | `applied` | same | a `contract` migration ran past live instances that did not embed it (`--force-contract`): who, why, which |
//! | `revert` | `applied`, `failed`, `running` | (none) | `down` ran its down, in the down's transaction |
//! | `forget` | `failed`, `running` with no step done | (none) | `down` of a migration of which nothing ran |
//!
//! The ledger has a schema version of its own ([`LEDGER_SCHEMA`]), kept next to it: a run that
//! writes brings an older ledger up to date (its upgrades are additive only, so older rows read as
//! they are) and refuses one written by a newer version of cutover-migrate, whose rows this one
//! might misread.

mod schema;

pub(crate) use schema::check_schema;
pub use schema::{LEDGER_SCHEMA, LEDGER_SCHEMA_TABLE};

use serde::Serialize;

/// The ledger table's name.
pub const LEDGER_TABLE: &str = "_cutover_migrations";

#[cfg(feature = "sql")]
pub(crate) fn serialize_duration<S: serde::Serializer>(
    duration: &std::time::Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*duration).to_string())
}

/// Where a migration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Being applied (or its runner died; the next run resumes it).
    Running,
    /// Done.
    Applied,
    /// A step failed; the next run resumes at that step.
    Failed,
}

impl From<String> for State {
    fn from(text: String) -> Self {
        Self::parse(&text)
    }
}

impl State {
    pub(crate) fn parse(text: &str) -> Self {
        match text {
            "applied" => Self::Applied,
            "failed" => Self::Failed,
            _ => Self::Running,
        }
    }

    /// `"running"`, `"applied"` or `"failed"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Applied => "applied",
            Self::Failed => "failed",
        }
    }
}

/// A ledger row. The SQL backends read it by column name (`sqlx::FromRow`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "sql", derive(sqlx::FromRow))]
pub struct LedgerEntry {
    /// Version.
    pub version: i64,
    /// Name.
    pub name: String,
    /// Phase.
    pub phase: String,
    /// Checksum of what was applied.
    pub checksum: String,
    /// State.
    #[cfg_attr(feature = "sql", sqlx(try_from = "String"))]
    pub state: State,
    /// Statements or batches done.
    pub steps_done: i64,
    /// Statements in the migration (batches are not known in advance: 0).
    pub steps_total: i64,
    /// Checksum of the statements already run, for a migration that stopped part-way: a
    /// resumed run refuses if they were edited since.
    pub done_checksum: Option<String>,
    /// Backfill checkpoint, as JSON.
    pub checkpoint: Option<String>,
    /// The step that failed.
    pub failed_step: Option<i64>,
    /// Its error.
    pub error: Option<String>,
    /// `host:pid` of the runner.
    pub installed_by: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it finished.
    pub finished_at: Option<String>,
    /// How long it took.
    pub duration_ms: Option<i64>,
    /// The down SQL, kept so an older binary can still roll back.
    pub down_sql: Option<String>,
    /// The checksum of `down_sql` when it was stored: a stored down is only run if it still
    /// matches (`None` in ledgers written before it was kept).
    pub down_checksum: Option<String>,
    /// When `repair` last realigned it.
    pub repaired_at: Option<String>,
    /// Why.
    pub repair_note: Option<String>,
    /// Where the record came from when cutover-migrate did not run the migration itself:
    /// `baseline`, or the tool whose ledger was imported (`sqlx`, `diesel`, `refinery`,
    /// `flyway`). `None` for migrations this runner applied.
    pub adopted_from: Option<String>,
    /// For a `contract` migration applied with `--force-contract` while live instances did not
    /// embed it: who forced it, why, and those instances.
    pub forced_contract: Option<String>,
}

/// The columns later ledger schemas added, for a `SELECT`: each by name when `present` has it,
/// else `<null> AS name` (an older ledger, read before `up` upgrades it).
#[cfg(feature = "sql")]
pub(crate) fn added_columns(present: &[String], null: &str) -> String {
    schema::UPGRADES
        .iter()
        .map(|upgrade| {
            if present.iter().any(|c| c == upgrade.column) {
                upgrade.column.to_owned()
            } else {
                format!("{null} AS {}", upgrade.column)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The checksum stored with a migration's down SQL.
#[cfg(feature = "sql")]
pub(crate) fn down_checksum(migration: &crate::Migration) -> Option<String> {
    migration.down.as_deref().map(crate::checksum)
}

/// Where the runner is, for `installed_by`.
pub(crate) fn runner_id() -> String {
    static RUNNER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RUNNER.get_or_init(read_runner_id).clone()
}

fn read_runner_id() -> String {
    format!("{}:{}", host_name(), std::process::id())
}

/// The machine's name: `/etc/hostname`, else `HOSTNAME`.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// A backfill's position, committed with each batch.
#[cfg(feature = "sql")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct Checkpoint {
    /// Keys up to this one are done.
    pub(crate) last: i64,
    /// The largest key when the backfill started: rows inserted later are the application's.
    pub(crate) upper: i64,
    /// Rows changed so far.
    pub(crate) rows: u64,
    /// Batches committed so far.
    pub(crate) batches: u64,
}
