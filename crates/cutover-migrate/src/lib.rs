//! Database migrations that never take the site down, for PostgreSQL, SQLite and MongoDB
//! (see [`mongo`] for the last).
//!
//! - **Many replicas may start at once.** One takes a PostgreSQL advisory lock on a connection of
//!   its own, polling `pg_try_advisory_lock` without holding a transaction (a blocking waiter
//!   deadlocks `CREATE INDEX CONCURRENTLY`); the others wait, re-read the ledger, and find
//!   nothing left to do. SQLite uses its own write lock.
//! - **No statement queues the table.** Every statement runs with a short `lock_timeout`
//!   (default 1 s) and is retried with backoff and jitter when it fires.
//! - **No half-applied state without a record.** A migration runs in one transaction with its
//!   ledger row; one that cannot (`CREATE INDEX CONCURRENTLY` and friends, detected by parsing
//!   the SQL) runs one statement per round-trip with its progress recorded, and resumes at the
//!   failed statement. An INVALID index left by a failed build is dropped and rebuilt.
//! - **Lock-heavy DDL is refused** by a lint built on `squawk-linter`, unless the file allows
//!   that rule by name; every refusal names the safe alternative.
//! - **Backfills in short batches**, keyset-paginated over a key range fixed at the start, with
//!   the checkpoint committed in each batch's transaction: resumable after a crash, no row twice.
//! - **Phases.** `expand` and `backfill` run by default; `contract` only when asked for, and
//!   only once every live instance embeds the migration: services register the migrations their
//!   binary embeds ([`instances`]), and `up` refuses, naming the old instances, until they are
//!   gone (`--force-contract --reason` overrides, recorded in the ledger).
//! - Checksums normalized and versioned, the down SQL kept in the ledger, verified `pg_dump`
//!   backups, an explicit `restore`, and `repair` that records what it realigned.
//!
//! ```no_run
//! use cutover_migrate::{MigrationSet, Migrator, UpOptions};
//!
//! # async fn run() -> Result<(), cutover_migrate::MigrateError> {
//! let migrator = Migrator::new(MigrationSet::from_dir("migrations")?);
//! for planned in migrator.plan("postgres://app@db/app", &UpOptions::default()).await? {
//!     println!("{} {} ({})", planned.version, planned.name, planned.mode);
//! }
//! migrator.up("postgres://app@db/app", &UpOptions::default()).await?;
//! # Ok(()) }
//! ```
//!
//! One engine drives every backend: what is pending, what is refused, the lock, `down` and
//! `repair` are decided once and behave the same on PostgreSQL, SQLite and MongoDB (one test
//! suite runs on all three). An applied migration may not change or disappear; one that stopped
//! part-way may be fixed except in the steps it already ran; `down` finds every down before
//! reverting anything, and removes without a down the rows of migrations that never completed a
//! step.
//!
//! The `cutover-migrate` command (feature `cli`) does the same from a shell: `status`, `plan`,
//! `up`, `down`, `lint`, `backup`, `restore`, `repair`, `baseline`, `import`. It exits with 3
//! when the contract gate refuses (a deploy script can wait and retry), 1 on any other error.
//!
//! # Migration files
//!
//! A directory ([`MigrationSet::from_dir`], or [`embed_migrations!`] at compile time) of files
//! in the layout sqlx, diesel or Flyway uses, so a project keeps the files it has:
//!
//! | layout | the migration | how to revert it (optional; `down` refuses a migration without one) |
//! | --- | --- | --- |
//! | sqlx | `<version>_<name>.up.sql` (or `<version>_<name>.sql`) | `<version>_<name>.down.sql` |
//! | diesel | `<version>_<name>/up.sql`, the version may hold dashes (`2024-01-31-101500`); `metadata.toml`'s `run_in_transaction = false` is read | `<version>_<name>/down.sql` |
//! | Flyway, refinery | `V<version>__<name>.sql` | `U<version>__<name>.sql` |
//! | MongoDB ([`mongo`]) | the same names ending in `.json` | |
//!
//! The version is a non-negative integer up to 9223372036854775807 (19 digits: a timestamp
//! like `20261130154500` fits); migrations run in version order. Flyway's dotted versions
//! (`V1.1__`) and repeatable migrations (`R__`) are refused with what to rename. Other files
//! are ignored. Comment lines at the top of an up file are directives:
//!
//! | directive | values | default |
//! | --- | --- | --- |
//! | `-- cutover:phase expand` | `expand`, `backfill`, `contract` ([`Phase`]) | `expand` |
//! | `-- cutover:transaction auto` | `auto`: one transaction unless a statement cannot run in one (`CREATE INDEX CONCURRENTLY`, ...), then one round-trip per statement with progress recorded; `on`; `off` (sqlx's `-- no-transaction` means `off`) ([`TransactionMode`]) | `auto` |
//! | `-- cutover:lock-timeout 2s` | the `lock_timeout` of each statement, retried with backoff when it fires | `1s` |
//! | `-- cutover:allow <rule>, <rule>` | lint rules this file may break (`cutover-migrate lint --rules` lists them) | none |
//! | `-- cutover:backfill table=users key=id batch=1000 pause=100ms` | run the file's `UPDATE ... WHERE key > $1 AND key <= $2` in keyset batches ([`BackfillSpec`]) | |
//!
//! Any other `-- cutover:` line, or a malformed value, stops the run with the file and line
//! before anything is applied.
//!
//! `ALTER TYPE ... ADD VALUE` runs inside the migration's transaction on PostgreSQL 12 and
//! later; a file that also uses the new value (which PostgreSQL allows only after the commit)
//! runs one statement at a time, as it must before 12.
//!
//! # Adopting a database with years of migrations
//!
//! - [`Migrator::import`] (`cutover-migrate import`) reads the ledger sqlx, diesel, refinery or
//!   Flyway left in the database and records what they applied, comparing checksums where the
//!   tool kept comparable ones (sqlx's SHA-384, Flyway's CRC-32).
//! - [`Migrator::baseline`] (`cutover-migrate baseline --to <version>`) records every migration
//!   up to a version as applied, for a database migrated by hand.
//! - A [`LintPolicy`] (the file `cutover-migrate.toml` next to the migrations, or `--allow
//!   rule@versions`) accepts rules everywhere, in a range of versions or in one migration,
//!   without editing history; its `baseline` marks the migrations that are history, never
//!   linted, so a fresh database (a new environment, CI) still builds from version 1.
//!
//! # Feature flags
//!
//! | feature | enables |
//! | --- | --- |
//! | `postgres` (default) | the PostgreSQL backend |
//! | `sqlite` (default) | the SQLite backend |
//! | `mongodb` | the MongoDB backend ([`mongo`]) |
//! | `cli` | the `cutover-migrate` binary (`cargo install cutover-migrate --features cli`), with every backend |
//!
//! Any one backend builds alone. The defaults are what a service migrating a SQL database at
//! start-up needs: no MongoDB driver, argument parser or progress bars unless asked for; and
//! `default-features = false, features = ["mongodb"]` builds the MongoDB runner without sqlx or
//! the SQL lint.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(any(feature = "postgres", feature = "sqlite", feature = "mongodb")))]
compile_error!("cutover-migrate needs at least one backend: the `postgres`, `sqlite` or `mongodb` feature");

#[cfg(feature = "sql")]
mod adopt;
#[cfg(feature = "postgres")]
mod backfill;
#[cfg(feature = "postgres")]
pub mod backup;
mod engine;
mod error;
pub mod instances;
mod ledger;
pub mod lint;
#[cfg(feature = "sql")]
mod migrator;
#[cfg(feature = "mongodb")]
pub mod mongo;
mod naming;
mod outcome;
mod phase;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sql")]
mod source;
#[cfg(feature = "sql")]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sql")]
mod statements;
#[cfg(feature = "sql")]
mod target;

/// Embed a directory of migrations in the binary at compile time: the migration files of the
/// directory (relative to the calling crate's `Cargo.toml`, in any layout of [the file
/// format](crate#migration-files)) are included with `include_str!`, and the expression
/// evaluates to `Result<MigrationSet, MigrateError>`, or to `Result<MongoMigrationSet,
/// MigrateError>` for a directory of `.json` migrations.
///
/// Cargo tracks the embedded files, but not the directory: for cargo to rebuild when a migration
/// file is *added*, give the crate a `build.rs` of one line (as `sqlx migrate build-script`
/// writes):
///
/// ```no_run
/// // build.rs, in its `fn main`:
/// println!("cargo:rerun-if-changed=migrations");
/// ```
///
/// ```
/// // `examples/migrations/0001_create_notes.up.sql` and `.down.sql`, in this crate.
/// let set = cutover_migrate::embed_migrations!("examples/migrations")?;
/// assert_eq!(set.migrations().len(), 1);
/// # Ok::<(), cutover_migrate::MigrateError>(())
/// ```
#[macro_export]
macro_rules! embed_migrations {
    ($dir:literal) => {
        $crate::__embed_migrations!($crate, $dir)
    };
}

#[doc(hidden)]
pub use cutover_migrate_macros::embed_migrations as __embed_migrations;

#[cfg(feature = "sql")]
pub use adopt::{Adoption, ForeignTool, ImportOptions};
pub use error::MigrateError;
pub use ledger::{LEDGER_SCHEMA, LEDGER_SCHEMA_TABLE, LEDGER_TABLE, LedgerEntry, State as LedgerState};
#[cfg(feature = "sql")]
pub use lint::{LintPolicy, VersionRange};
#[cfg(feature = "sql")]
pub use migrator::{BackupPolicy, Dialect, Migrator, SqlCheck};
pub use outcome::{ApplyMode, Event, MigrationState, PlannedMigration, Report, StatusEntry, UpOptions};
pub use phase::{MigrationPhase, Phase, checksum};
#[cfg(feature = "sql")]
pub use source::{BackfillSpec, Body, Migration, MigrationSet, RustMigration, TransactionMode};
#[cfg(feature = "sql")]
pub use target::Target;

/// An error type that can hold any error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The connection a [`RustMigration`] runs on, inside its migration's transaction.
#[cfg(feature = "sql")]
#[derive(Debug)]
#[non_exhaustive]
pub enum Connection<'a> {
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(&'a mut sqlx::PgConnection),
    /// SQLite.
    #[cfg(feature = "sqlite")]
    Sqlite(&'a mut sqlx::SqliteConnection),
}

/// `url` with every password replaced by `***`: the one in the user information, even when
/// it holds a raw `@` or `/` (`postgres://app:p@ss/w0rd@db/app`), and `password=` in the query
/// (which libpq also reads).
///
/// ```
/// use cutover_migrate::redact_url;
///
/// assert_eq!(redact_url("postgres://app:s3cret@db:5432/app"), "postgres://app:***@db:5432/app");
/// assert_eq!(redact_url("postgres://app:p@ss/w0rd@db/app"), "postgres://app:***@db/app");
/// assert_eq!(
///     redact_url("postgres://db/app?user=app&password=s3cret&sslmode=require"),
///     "postgres://db/app?user=app&password=***&sslmode=require"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The query starts at the first `?` after the user information's last `@`.
    let before_query = rest.find(['?', '#']).unwrap_or(rest.len());
    let (authority_and_path, query) = match rest[..before_query].rfind('@') {
        Some(at) => {
            let query_start = rest[at..].find(['?', '#']).map_or(rest.len(), |i| at + i);
            rest.split_at(query_start)
        }
        None => rest.split_at(before_query),
    };
    let authority_and_path = match authority_and_path.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority_and_path.to_owned(),
    };
    format!("{scheme}://{authority_and_path}{}", redact_query(query))
}

/// `?a=1&password=x` → `?a=1&password=***`.
fn redact_query(query: &str) -> String {
    let Some(first) = query.chars().next() else {
        return String::new();
    };
    let pairs = query[first.len_utf8()..]
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{first}{pairs}")
}

/// This crate's README, compiled as doctests so its example cannot rot.
#[cfg(all(doctest, feature = "postgres"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The README of `cutover-migrate-macros` (a proc-macro crate cannot run its own examples),
/// compiled as doctests here.
#[cfg(doctest)]
#[doc = include_str!("../../cutover-migrate-macros/README.md")]
pub struct MacrosReadmeDoctests;
