//! The instance registry and the contract gate.
//!
//! Expand → backfill → contract is safe only if nothing still running reads what `contract`
//! removes. A service binary embeds its migrations, so it knows which schema it was built for;
//! with an [`InstanceRegistry`] each running instance keeps a row (a document on MongoDB) in the
//! database its migrations target, in [`INSTANCES_TABLE`]:
//!
//! | column | what |
//! | --- | --- |
//! | `instance_id` | unique per process (`host-pid-random` unless given) |
//! | `service`, `version`, `host` | who it is |
//! | `migrations`, `max_migration`, `digest` | the versions embedded in its binary (a JSON array), the highest, and a SHA-256 over versions and checksums |
//! | `phase` | `starting`, `ready` or `draining` ([`InstancePhase`]) |
//! | `started_at`, `last_seen`, `expires_at` | when it registered, its last heartbeat, and when its row stops counting |
//!
//! An instance writes its row when it starts, on every phase change and every heartbeat
//! (default 10 s: one statement each, 6 per minute), and removes it after its drain. A row
//! whose instance was killed stops counting at `expires_at` (default three heartbeats after
//! the last), with nobody cleaning up; rows expired for a day are deleted by the next instance
//! that starts.
//!
//! **The gate.** A [`contract`](crate::Phase::Contract) migration runs only when every live
//! instance of every service sharing the database (they share its ledger, hence its
//! migrations) embeds it — it was built knowing the schema without what the migration removes.
//! An instance still `starting` counts: an old build started again (a rollback) blocks too. Otherwise `up` stops before applying anything with
//! [`MigrateError::ContractBlocked`], naming each instance (service, version, host, last seen)
//! and how long until its row expires if it is gone. [`UpOptions::force_contract`](crate::UpOptions::force_contract)
//! overrides it, loudly, recording who and why in the ledger (`forced_contract`).
//!
//! Times come from the database's clock on PostgreSQL and SQLite, so runners and instances on
//! machines with skewed clocks agree. MongoDB (FerretDB 1.x has no `$$NOW`) uses the writer's
//! clock: keep the hosts' clocks synchronised (NTP) to well within the TTL.
//!
//! A row expires while its instance still serves only if the instance cannot write for a whole
//! TTL, which the registry's health check (`instance-registry`, non-critical: the service
//! shows degraded) reports from the first failed heartbeat: choose a TTL longer than the
//! database outages the instances should ride out.
//!
//! ```no_run
//! use cutover_migrate::{MigrationSet, instances::{InstancePhase, InstanceRegistry}};
//!
//! # async fn run(pool: sqlx::PgPool, set: MigrationSet) -> Result<(), cutover_migrate::MigrateError> {
//! let registry = InstanceRegistry::new(pool, "api-service", &set).version("1.3.0");
//! registry.beat(InstancePhase::Ready).await?; // what `cutover::Service` does on a timer
//! for instance in registry.live().await? {
//!     println!("{} {} on {}", instance.service, instance.version, instance.host);
//! }
//! registry.deregister().await?; // after the drain
//! # Ok(()) }
//! ```

#[cfg(feature = "mongodb")]
pub(crate) mod mongo;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

use std::{fmt, str::FromStr, time::Duration};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::{MigrateError, MigrationState, Phase, StatusEntry, engine::Identity};

/// The table (the collection, on MongoDB) instances register in.
pub const INSTANCES_TABLE: &str = "_cutover_instances";

/// Where a registered instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum InstancePhase {
    /// Started; its start-up work (migrations, warm-up) is running.
    Starting,
    /// Serving traffic.
    Ready,
    /// Shutting down: still finishing requests; its row goes when the drain ends.
    Draining,
}

impl InstancePhase {
    /// `"starting"`, `"ready"` or `"draining"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Draining => "draining",
        }
    }
}

impl fmt::Display for InstancePhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InstancePhase {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "starting" => Ok(Self::Starting),
            "ready" => Ok(Self::Ready),
            "draining" => Ok(Self::Draining),
            other => Err(format!("unknown instance phase `{other}`")),
        }
    }
}

/// The migrations a binary embeds: their versions and a digest of versions and checksums.
/// Made from a [`MigrationSet`](crate::MigrationSet) or a
/// [`MongoMigrationSet`](crate::mongo::MongoMigrationSet) with `From`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embedded {
    versions: Vec<i64>,
    digest: String,
}

impl Embedded {
    /// From `(version, checksum)` pairs.
    pub fn new<'a>(migrations: impl IntoIterator<Item = (i64, &'a str)>) -> Self {
        let mut pairs: Vec<(i64, &str)> = migrations.into_iter().collect();
        pairs.sort_unstable();
        let mut hasher = Sha256::new();
        for (version, checksum) in &pairs {
            hasher.update(format!("{version}:{checksum}\n"));
        }
        let digest = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Self {
            versions: pairs.iter().map(|(version, _)| *version).collect(),
            digest,
        }
    }

    fn of<M: Identity>(migrations: &[M]) -> Self {
        let checksums: Vec<(i64, String)> = migrations.iter().map(|m| (m.version(), m.checksum())).collect();
        Self::new(checksums.iter().map(|(v, c)| (*v, c.as_str())))
    }

    /// The versions, ascending.
    pub fn versions(&self) -> &[i64] {
        &self.versions
    }

    /// SHA-256 (hex) over `version:checksum` lines, in version order.
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

#[cfg(feature = "sql")]
impl From<&crate::MigrationSet> for Embedded {
    fn from(set: &crate::MigrationSet) -> Self {
        Self::of(set.migrations())
    }
}

#[cfg(feature = "mongodb")]
impl From<&crate::mongo::MongoMigrationSet> for Embedded {
    fn from(set: &crate::mongo::MongoMigrationSet) -> Self {
        Self::of(set.migrations())
    }
}

/// A live instance, as its row reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// Unique per process.
    pub id: String,
    /// The service.
    pub service: String,
    /// Its version.
    pub version: String,
    /// Where it runs.
    pub host: String,
    /// The migration versions its binary embeds, ascending.
    pub migrations: Vec<i64>,
    /// SHA-256 over the embedded versions and checksums.
    pub digest: String,
    /// Where it is.
    pub phase: String,
    /// When it registered (RFC 3339, UTC).
    pub started_at: String,
    /// Its last heartbeat (RFC 3339, UTC).
    pub last_seen: String,
    /// How long until its row expires if no heartbeat comes.
    #[serde(rename = "expires_in_ms", serialize_with = "millis")]
    pub expires_in: Duration,
}

fn millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

impl Instance {
    /// Whether its binary embeds migration `version`.
    pub fn embeds(&self, version: i64) -> bool {
        self.migrations.binary_search(&version).is_ok()
    }

    /// The `contract` migrations of `status` not yet applied that this instance would block:
    /// those its binary does not embed.
    pub fn blocks(&self, status: &[StatusEntry]) -> Vec<i64> {
        status
            .iter()
            .filter(|entry| entry.phase == Phase::Contract.as_str())
            .filter(|entry| !matches!(entry.state, MigrationState::Applied | MigrationState::Missing))
            .map(|entry| entry.version)
            .filter(|version| !self.embeds(*version))
            .collect()
    }
}

/// `api-service 1.2.0 on web-1 (id web-1-42-a1b2c3, ready, last seen 2026-11-30T10:00:00Z,
/// expires in 24s if it is gone)`.
impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} on {} (id {}, {}, last seen {}, expires in {} if it is gone)",
            self.service,
            self.version,
            self.host,
            self.id,
            self.phase,
            self.last_seen,
            humantime::format_duration(Duration::from_secs(self.expires_in.as_secs()))
        )
    }
}

/// A pending `contract` migration and the live instances whose binaries do not embed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockedContract {
    /// The migration's version.
    pub version: i64,
    /// Its name.
    pub name: String,
    /// The live instances that could still need what it removes.
    pub blocked_by: Vec<Instance>,
}

impl fmt::Display for BlockedContract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "contract migration {} ({}) is not embedded by {} live instance(s):",
            self.version,
            self.name,
            self.blocked_by.len()
        )?;
        for instance in &self.blocked_by {
            write!(f, "\n    {instance}")?;
        }
        Ok(())
    }
}

/// The contract migrations among `pending` that a live instance of `instances` does not embed.
pub(crate) fn blocked<M: Identity>(pending: &[&M], instances: &[Instance]) -> Vec<BlockedContract> {
    pending
        .iter()
        .filter(|m| m.phase() == Phase::Contract)
        .filter_map(|m| {
            let blocked_by: Vec<Instance> = instances.iter().filter(|i| !i.embeds(m.version())).cloned().collect();
            (!blocked_by.is_empty()).then(|| BlockedContract {
                version: m.version(),
                name: m.name().to_owned(),
                blocked_by,
            })
        })
        .collect()
}

/// What `--force-contract` records in the ledger: who, why, and who was still running.
pub(crate) fn forced_note(reason: &str, blocked: &BlockedContract) -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown user".to_owned());
    let instances: Vec<String> = blocked
        .blocked_by
        .iter()
        .map(|i| format!("{} {} on {} ({})", i.service, i.version, i.host, i.id))
        .collect();
    format!(
        "forced by {user} at {}: {reason}; live instances without it: {}",
        crate::ledger::runner_id(),
        instances.join(", ")
    )
}

/// Where the registry writes: the pool (or database) the service's migrations target.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum InstanceStore {
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
    /// SQLite.
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    /// MongoDB.
    #[cfg(feature = "mongodb")]
    MongoDb(mongodb::Database),
}

#[cfg(feature = "postgres")]
impl From<sqlx::PgPool> for InstanceStore {
    fn from(pool: sqlx::PgPool) -> Self {
        Self::Postgres(pool)
    }
}

#[cfg(feature = "postgres")]
impl From<&sqlx::PgPool> for InstanceStore {
    fn from(pool: &sqlx::PgPool) -> Self {
        Self::Postgres(pool.clone())
    }
}

#[cfg(feature = "sqlite")]
impl From<sqlx::SqlitePool> for InstanceStore {
    fn from(pool: sqlx::SqlitePool) -> Self {
        Self::Sqlite(pool)
    }
}

#[cfg(feature = "sqlite")]
impl From<&sqlx::SqlitePool> for InstanceStore {
    fn from(pool: &sqlx::SqlitePool) -> Self {
        Self::Sqlite(pool.clone())
    }
}

#[cfg(feature = "mongodb")]
impl From<mongodb::Database> for InstanceStore {
    fn from(db: mongodb::Database) -> Self {
        Self::MongoDb(db)
    }
}

#[cfg(feature = "mongodb")]
impl From<&mongodb::Database> for InstanceStore {
    fn from(db: &mongodb::Database) -> Self {
        Self::MongoDb(db.clone())
    }
}

/// What an instance writes about itself.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) id: String,
    pub(crate) service: String,
    pub(crate) version: String,
    pub(crate) host: String,
    pub(crate) embedded: Embedded,
    /// When this process registered (MongoDB keeps it; the SQL databases stamp their own).
    #[cfg_attr(not(feature = "mongodb"), allow(dead_code))]
    pub(crate) started: std::time::SystemTime,
}

impl Row {
    #[cfg(feature = "sql")]
    pub(crate) fn migrations_json(&self) -> String {
        serde_json::to_string(&self.embedded.versions).unwrap_or_else(|_| "[]".to_owned())
    }

    pub(crate) fn max_migration(&self) -> Option<i64> {
        self.embedded.versions.last().copied()
    }
}

/// `query` with the row's parameters bound in order: `instance_id, service, version, host,
/// migrations, max_migration, digest, phase, ttl in milliseconds` (the placeholders differ
/// between PostgreSQL and SQLite; the order does not).
#[cfg(feature = "sql")]
pub(crate) fn bind_row<'q, DB>(
    query: sqlx::query::Query<'q, DB, DB::Arguments>,
    row: &Row,
    phase: InstancePhase,
    ttl: Duration,
) -> sqlx::query::Query<'q, DB, DB::Arguments>
where
    DB: sqlx::Database,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Option<i64>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    query
        .bind(row.id.clone())
        .bind(row.service.clone())
        .bind(row.version.clone())
        .bind(row.host.clone())
        .bind(row.migrations_json())
        .bind(row.max_migration())
        .bind(row.embedded.digest.clone())
        .bind(phase.as_str().to_owned())
        .bind(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

/// `2026-11-30T10:00:00.123Z` → `2026-11-30T10:00:00Z`: every backend shows whole seconds.
pub(crate) fn whole_seconds(time: String) -> String {
    match time.split_once('.') {
        Some((whole, _)) => format!("{whole}Z"),
        None => time,
    }
}

/// A row of the SQL registry, as `live` selects it.
#[cfg(feature = "sql")]
#[derive(sqlx::FromRow)]
pub(crate) struct LiveRow {
    instance_id: String,
    service: String,
    version: String,
    host: String,
    /// A JSON array of versions.
    migrations: String,
    digest: String,
    phase: String,
    started_at: String,
    last_seen: String,
    expires_in_ms: i64,
}

#[cfg(feature = "sql")]
impl From<LiveRow> for Instance {
    fn from(row: LiveRow) -> Self {
        let mut migrations: Vec<i64> = serde_json::from_str(&row.migrations).unwrap_or_default();
        migrations.sort_unstable();
        Self {
            id: row.instance_id,
            service: row.service,
            version: row.version,
            host: row.host,
            migrations,
            digest: row.digest,
            phase: row.phase,
            started_at: whole_seconds(row.started_at),
            last_seen: whole_seconds(row.last_seen),
            expires_in: Duration::from_millis(u64::try_from(row.expires_in_ms).unwrap_or(0)),
        }
    }
}

/// One instance's registration: writes its row on [`beat`](Self::beat), removes it on
/// [`deregister`](Self::deregister), and reads every live one with [`live`](Self::live).
/// `cutover::Service` drives it (`ServiceBuilder::register_instance`); use it directly in a
/// service that is not built on `Service`.
#[derive(Debug, Clone)]
pub struct InstanceRegistry {
    store: InstanceStore,
    row: Row,
    /// Whether [`version`](Self::version) was called.
    version_set: bool,
    heartbeat: Duration,
    ttl: Option<Duration>,
}

impl InstanceRegistry {
    /// Register an instance of `service`, whose binary embeds `embedded`, in `store`. The
    /// version defaults to `unknown` (set it with [`version`](Self::version)); the host to the
    /// machine's name; the heartbeat to 10 s and the TTL to three heartbeats.
    pub fn new(store: impl Into<InstanceStore>, service: impl Into<String>, embedded: impl Into<Embedded>) -> Self {
        let host = crate::ledger::host_name();
        let id = format!("{host}-{}-{:06x}", std::process::id(), fastrand::u32(..0x0100_0000));
        Self {
            store: store.into(),
            row: Row {
                id,
                service: service.into(),
                version: "unknown".to_owned(),
                host,
                embedded: embedded.into(),
                started: std::time::SystemTime::now(),
            },
            version_set: false,
            heartbeat: Duration::from_secs(10),
            ttl: None,
        }
    }

    /// The service's version, as deployed (`1.3.0`, a git SHA).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.row.version = version.into();
        self.version_set = true;
        self
    }

    /// Whether a version was set (`cutover::Service` otherwise gives it the service's).
    pub fn has_version(&self) -> bool {
        self.version_set
    }

    /// The host shown for it (default: the machine's name, from `/etc/hostname` or `HOSTNAME`).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.row.host = host.into();
        self
    }

    /// Its id (default `host-pid-random`), unique per process.
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.row.id = id.into();
        self
    }

    /// How often the row is refreshed (default 10 s; at least 100 ms).
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval.max(Duration::from_millis(100));
        self
    }

    /// How long after its last heartbeat a row stops counting (default three heartbeats; at
    /// least two, so one late heartbeat never drops a live instance).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The id.
    pub fn id(&self) -> &str {
        &self.row.id
    }

    /// The heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat
    }

    /// The TTL in effect.
    pub fn ttl_duration(&self) -> Duration {
        effective_ttl(self.heartbeat, self.ttl)
    }

    /// The embedded migrations.
    pub fn embedded(&self) -> &Embedded {
        &self.row.embedded
    }

    /// Write the row with `phase`: created on the first call (with the table), refreshed after.
    /// One statement per call once the table exists.
    pub async fn beat(&self, phase: InstancePhase) -> Result<(), MigrateError> {
        let ttl = self.ttl_duration();
        match &self.store {
            #[cfg(feature = "postgres")]
            InstanceStore::Postgres(pool) => postgres::beat(pool, &self.row, phase, ttl).await,
            #[cfg(feature = "sqlite")]
            InstanceStore::Sqlite(pool) => sqlite::beat(pool, &self.row, phase, ttl).await,
            #[cfg(feature = "mongodb")]
            InstanceStore::MongoDb(db) => mongo::beat(db, &self.row, phase, ttl).await,
        }
    }

    /// Remove the row: the instance no longer serves.
    pub async fn deregister(&self) -> Result<(), MigrateError> {
        match &self.store {
            #[cfg(feature = "postgres")]
            InstanceStore::Postgres(pool) => postgres::remove(pool, &self.row.id).await,
            #[cfg(feature = "sqlite")]
            InstanceStore::Sqlite(pool) => sqlite::remove(pool, &self.row.id).await,
            #[cfg(feature = "mongodb")]
            InstanceStore::MongoDb(db) => mongo::remove(db, &self.row.id).await,
        }
    }

    /// Every live instance registered in the database, this one included.
    pub async fn live(&self) -> Result<Vec<Instance>, MigrateError> {
        match &self.store {
            #[cfg(feature = "postgres")]
            InstanceStore::Postgres(pool) => {
                let mut connection = pool
                    .acquire()
                    .await
                    .map_err(MigrateError::db("cannot read the instance registry"))?;
                postgres::live(&mut connection).await
            }
            #[cfg(feature = "sqlite")]
            InstanceStore::Sqlite(pool) => {
                let mut connection = pool
                    .acquire()
                    .await
                    .map_err(MigrateError::db("cannot read the instance registry"))?;
                sqlite::live(&mut connection).await
            }
            #[cfg(feature = "mongodb")]
            InstanceStore::MongoDb(db) => mongo::live(db).await,
        }
    }
}

/// `ttl`, or three heartbeats; never under two.
fn effective_ttl(heartbeat: Duration, ttl: Option<Duration>) -> Duration {
    ttl.unwrap_or(heartbeat * 3).max(heartbeat * 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, migrations: Vec<i64>) -> Instance {
        Instance {
            id: id.to_owned(),
            service: "api".to_owned(),
            version: "1.2.0".to_owned(),
            host: "web-1".to_owned(),
            migrations,
            digest: String::new(),
            phase: "ready".to_owned(),
            started_at: "2026-11-30T10:00:00Z".to_owned(),
            last_seen: "2026-11-30T10:00:20Z".to_owned(),
            expires_in: Duration::from_millis(24_400),
        }
    }

    struct M(i64, Phase);

    impl Identity for M {
        fn version(&self) -> i64 {
            self.0
        }
        fn name(&self) -> &str {
            "drop_legacy"
        }
        fn phase(&self) -> Phase {
            self.1
        }
        fn checksum(&self) -> String {
            format!("c{}", self.0)
        }
        fn origin(&self) -> &str {
            "test"
        }
    }

    #[test]
    fn only_contract_migrations_an_instance_does_not_embed_are_blocked() {
        let (expand, contract, later) = (M(3, Phase::Expand), M(4, Phase::Contract), M(5, Phase::Contract));
        let pending = [&expand, &contract, &later];
        let old = instance("old", vec![1, 2, 3]);
        let new = instance("new", vec![1, 2, 3, 4, 5]);
        let partly = instance("partly", vec![1, 2, 3, 4]);
        assert!(blocked(&pending, std::slice::from_ref(&new)).is_empty());
        let found = blocked(&pending, &[old.clone(), new, partly.clone()]);
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].version, found[0].blocked_by.clone()), (4, vec![old.clone()]));
        assert_eq!((found[1].version, found[1].blocked_by.clone()), (5, vec![old, partly]));
        let message = found[0].to_string();
        assert!(message.contains("contract migration 4 (drop_legacy)"), "{message}");
        assert!(
            message.contains(
                "api 1.2.0 on web-1 (id old, ready, last seen 2026-11-30T10:00:20Z, expires in 24s if it is gone)"
            ),
            "{message}"
        );
    }

    #[test]
    fn the_digest_covers_versions_and_checksums_in_any_order() {
        let a = Embedded::new([(2, "b"), (1, "a")]);
        assert_eq!(a.versions(), [1, 2]);
        assert_eq!(a, Embedded::new([(1, "a"), (2, "b")]));
        assert_ne!(a.digest(), Embedded::new([(1, "a"), (2, "c")]).digest());
        assert_eq!(a.digest().len(), 64);
    }

    #[test]
    fn the_ttl_is_at_least_two_heartbeats() {
        let secs = Duration::from_secs;
        assert_eq!(effective_ttl(secs(10), None), secs(30));
        assert_eq!(effective_ttl(secs(10), Some(secs(5))), secs(20));
        assert_eq!(effective_ttl(secs(1), Some(secs(60))), secs(60));
    }
}
