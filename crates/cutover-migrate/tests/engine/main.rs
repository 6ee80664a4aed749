//! The engine's rules, the same tests on every backend: PostgreSQL, SQLite and MongoDB
//! (FerretDB), through the library. Each scenario is written once against [`Db`]; the macro at
//! the bottom runs it on all three, each in a database of its own.
//!
//! A migration here is a list of steps (create a thing, drop a thing, fail), rendered as each
//! backend's files: SQL statements, or `.up.json` commands.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use cutover_migrate::{
    MigrateError, MigrationSet, MigrationState, Migrator, Phase, PlannedMigration, Report, StatusEntry, UpOptions,
    instances::{Embedded, InstancePhase, InstanceRegistry},
    mongo::{MongoMigrationSet, MongoMigrator},
};
use cutover_tests::{service_url, unique};
use mongodb::bson::doc;
use sqlx::{AssertSqlSafe, PgPool, SqlitePool};

#[derive(Clone, Copy)]
enum Step {
    Create(&'static str),
    Drop(&'static str),
    Fail,
}

#[derive(Clone)]
struct Spec {
    version: i64,
    up: Vec<Step>,
    down: Option<Vec<Step>>,
    contract: bool,
}

fn spec(version: i64, up: &[Step], down: Option<&[Step]>) -> Spec {
    Spec {
        version,
        up: up.to_vec(),
        down: down.map(<[Step]>::to_vec),
        contract: false,
    }
}

/// A migration in the `contract` phase.
fn contract(version: i64, up: &[Step]) -> Spec {
    Spec {
        contract: true,
        ..spec(version, up, None)
    }
}

/// Every phase, contract included.
fn every_phase() -> UpOptions {
    UpOptions {
        phases: Some(vec![Phase::Expand, Phase::Backfill, Phase::Contract]),
        ..UpOptions::default()
    }
}

/// What a binary embedding these versions registers.
fn embedding(versions: &[i64]) -> Embedded {
    let checksums: Vec<(i64, String)> = versions.iter().map(|v| (*v, format!("checksum-{v}"))).collect();
    Embedded::new(checksums.iter().map(|(v, c)| (*v, c.as_str())))
}

/// A backend under test, with a database of its own.
trait Db {
    /// Whether a migration can stop with some of its steps done (not SQLite, whose files run in
    /// one transaction).
    const PARTIAL_RUNS: bool;
    async fn up(&self, specs: &[Spec]) -> Result<Report, MigrateError> {
        self.up_with(specs, &UpOptions::default()).await
    }
    async fn up_with(&self, specs: &[Spec], options: &UpOptions) -> Result<Report, MigrateError>;
    async fn plan(&self, specs: &[Spec], options: &UpOptions) -> Vec<PlannedMigration>;
    /// An instance of `service` whose binary embeds `versions`, registering in this database.
    fn registry(&self, service: &str, versions: &[i64]) -> InstanceRegistry;
    async fn up_with_failing_integrity_check(&self, specs: &[Spec]) -> Result<Report, MigrateError>;
    async fn down(&self, specs: &[Spec], to: i64) -> Result<Report, MigrateError>;
    async fn status(&self, specs: &[Spec]) -> Vec<StatusEntry>;
    async fn repair(&self, specs: &[Spec]) -> Vec<i64>;
    async fn exists(&self, thing: &str) -> bool;
    /// The ledger's schema version, as a newer (or this) cutover-migrate recorded it.
    async fn ledger_schema(&self) -> i64;
    async fn set_ledger_schema(&self, schema: i64);
    async fn cleanup(self);
}

fn sql_files(specs: &[Spec], per_statement: bool) -> Vec<(String, String)> {
    let render = |steps: &[Step], contract: bool| -> String {
        let mut text = if per_statement {
            "-- cutover:transaction off\n".to_owned()
        } else {
            String::new()
        };
        if contract {
            text.push_str("-- cutover:phase contract\n-- cutover:allow ban-drop-table\n");
        }
        for step in steps {
            text.push_str(&match step {
                Create(name) => format!("CREATE TABLE {name} (id integer);\n"),
                Drop(name) => format!("DROP TABLE {name};\n"),
                Fail => "SELECT * FROM no_such_table;\n".to_owned(),
            });
        }
        text
    };
    let mut files = Vec::new();
    for spec in specs {
        files.push((
            format!("m/{:04}_m{}.up.sql", spec.version, spec.version),
            render(&spec.up, spec.contract),
        ));
        if let Some(down) = &spec.down {
            files.push((
                format!("m/{:04}_m{}.down.sql", spec.version, spec.version),
                render(down, false),
            ));
        }
    }
    files
}

fn mongo_files(specs: &[Spec]) -> Vec<(String, String)> {
    let render = |steps: &[Step], contract: bool| -> String {
        let commands: Vec<String> = steps
            .iter()
            .map(|step| match step {
                Create(name) => format!(r#"{{ "create": "{name}" }}"#),
                Drop(name) => format!(r#"{{ "drop": "{name}" }}"#),
                Fail => r#"{ "noSuchCommand": 1 }"#.to_owned(),
            })
            .collect();
        let commands = format!("[{}]", commands.join(",\n"));
        if contract {
            format!(r#"{{ "phase": "contract", "commands": {commands} }}"#)
        } else {
            commands
        }
    };
    let mut files = Vec::new();
    for spec in specs {
        files.push((
            format!("m/{:04}_m{}.up.json", spec.version, spec.version),
            render(&spec.up, spec.contract),
        ));
        if let Some(down) = &spec.down {
            files.push((
                format!("m/{:04}_m{}.down.json", spec.version, spec.version),
                render(down, false),
            ));
        }
    }
    files
}

struct Postgres {
    admin: PgPool,
    pool: PgPool,
    name: String,
}

impl Postgres {
    async fn new() -> Self {
        let admin = PgPool::connect(&service_url("DATABASE_URL")).await.unwrap();
        let name = unique("engine");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        let options = (*admin.connect_options()).clone().database(&name);
        let pool = PgPool::connect_with(options).await.unwrap();
        Self { admin, pool, name }
    }

    fn migrator(specs: &[Spec]) -> Migrator {
        Migrator::new(MigrationSet::from_files(sql_files(specs, true)).unwrap())
    }
}

impl Db for Postgres {
    const PARTIAL_RUNS: bool = true;

    async fn up_with(&self, specs: &[Spec], options: &UpOptions) -> Result<Report, MigrateError> {
        Self::migrator(specs).up(&self.pool, options).await
    }

    async fn plan(&self, specs: &[Spec], options: &UpOptions) -> Vec<PlannedMigration> {
        Self::migrator(specs).plan(&self.pool, options).await.unwrap()
    }

    fn registry(&self, service: &str, versions: &[i64]) -> InstanceRegistry {
        InstanceRegistry::new(&self.pool, service, embedding(versions))
    }

    async fn up_with_failing_integrity_check(&self, specs: &[Spec]) -> Result<Report, MigrateError> {
        Self::migrator(specs)
            .integrity_check("no rows yet", "SELECT false")
            .up(&self.pool, &UpOptions::default())
            .await
    }

    async fn down(&self, specs: &[Spec], to: i64) -> Result<Report, MigrateError> {
        Self::migrator(specs).down(&self.pool, to).await
    }

    async fn status(&self, specs: &[Spec]) -> Vec<StatusEntry> {
        Self::migrator(specs).status(&self.pool).await.unwrap()
    }

    async fn repair(&self, specs: &[Spec]) -> Vec<i64> {
        Self::migrator(specs)
            .repair(&self.pool, "edited on purpose")
            .await
            .unwrap()
    }

    async fn exists(&self, thing: &str) -> bool {
        sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
            .bind(thing)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn ledger_schema(&self) -> i64 {
        sqlx::query_scalar("SELECT schema FROM _cutover_migrations_schema")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn set_ledger_schema(&self, schema: i64) {
        sqlx::query("UPDATE _cutover_migrations_schema SET schema = $1")
            .bind(schema)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    async fn cleanup(self) {
        self.pool.close().await;
        sqlx::query(AssertSqlSafe(format!("DROP DATABASE {} WITH (FORCE)", self.name)))
            .execute(&self.admin)
            .await
            .unwrap();
    }
}

struct Sqlite {
    pool: SqlitePool,
}

impl Sqlite {
    async fn new() -> Self {
        // In memory, through the application's pool: the database lives as long as the pool.
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        Self { pool }
    }

    fn migrator(specs: &[Spec]) -> Migrator {
        Migrator::new(MigrationSet::from_files(sql_files(specs, false)).unwrap())
    }
}

impl Db for Sqlite {
    const PARTIAL_RUNS: bool = false;

    async fn up_with(&self, specs: &[Spec], options: &UpOptions) -> Result<Report, MigrateError> {
        Self::migrator(specs).up(&self.pool, options).await
    }

    async fn plan(&self, specs: &[Spec], options: &UpOptions) -> Vec<PlannedMigration> {
        Self::migrator(specs).plan(&self.pool, options).await.unwrap()
    }

    fn registry(&self, service: &str, versions: &[i64]) -> InstanceRegistry {
        InstanceRegistry::new(&self.pool, service, embedding(versions))
    }

    async fn up_with_failing_integrity_check(&self, specs: &[Spec]) -> Result<Report, MigrateError> {
        Self::migrator(specs)
            .integrity_check("no rows yet", "SELECT 0")
            .up(&self.pool, &UpOptions::default())
            .await
    }

    async fn down(&self, specs: &[Spec], to: i64) -> Result<Report, MigrateError> {
        Self::migrator(specs).down(&self.pool, to).await
    }

    async fn status(&self, specs: &[Spec]) -> Vec<StatusEntry> {
        Self::migrator(specs).status(&self.pool).await.unwrap()
    }

    async fn repair(&self, specs: &[Spec]) -> Vec<i64> {
        Self::migrator(specs)
            .repair(&self.pool, "edited on purpose")
            .await
            .unwrap()
    }

    async fn exists(&self, thing: &str) -> bool {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1")
            .bind(thing)
            .fetch_one(&self.pool)
            .await
            .unwrap()
            > 0
    }

    async fn ledger_schema(&self) -> i64 {
        sqlx::query_scalar("SELECT schema FROM _cutover_migrations_schema")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn set_ledger_schema(&self, schema: i64) {
        sqlx::query("UPDATE _cutover_migrations_schema SET schema = ?1")
            .bind(schema)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    async fn cleanup(self) {
        self.pool.close().await;
    }
}

struct Mongo {
    db: mongodb::Database,
}

impl Mongo {
    async fn new() -> Self {
        let db = cutover_migrate::mongo::connect(&service_url("MONGODB_URL"), Some(&unique("engine")))
            .await
            .unwrap();
        Self { db }
    }

    fn migrator(specs: &[Spec]) -> MongoMigrator {
        MongoMigrator::new(MongoMigrationSet::from_files(mongo_files(specs)).unwrap())
    }
}

impl Db for Mongo {
    const PARTIAL_RUNS: bool = true;

    async fn up_with(&self, specs: &[Spec], options: &UpOptions) -> Result<Report, MigrateError> {
        Self::migrator(specs).up(&self.db, options).await
    }

    async fn plan(&self, specs: &[Spec], options: &UpOptions) -> Vec<PlannedMigration> {
        Self::migrator(specs).plan(&self.db, options).await.unwrap()
    }

    fn registry(&self, service: &str, versions: &[i64]) -> InstanceRegistry {
        InstanceRegistry::new(&self.db, service, embedding(versions))
    }

    async fn up_with_failing_integrity_check(&self, specs: &[Spec]) -> Result<Report, MigrateError> {
        self.db
            .collection("guard")
            .insert_one(doc! { "unexpected": true })
            .await
            .unwrap();
        let result = Self::migrator(specs)
            .integrity_check("no unexpected documents", "guard", doc! { "unexpected": true })
            .up(&self.db, &UpOptions::default())
            .await;
        self.db
            .collection::<mongodb::bson::Document>("guard")
            .drop()
            .await
            .unwrap();
        result
    }

    async fn down(&self, specs: &[Spec], to: i64) -> Result<Report, MigrateError> {
        Self::migrator(specs).down(&self.db, to).await
    }

    async fn status(&self, specs: &[Spec]) -> Vec<StatusEntry> {
        Self::migrator(specs).status(&self.db).await.unwrap()
    }

    async fn repair(&self, specs: &[Spec]) -> Vec<i64> {
        Self::migrator(specs)
            .repair(&self.db, "edited on purpose")
            .await
            .unwrap()
    }

    async fn exists(&self, thing: &str) -> bool {
        self.db
            .list_collection_names()
            .await
            .unwrap()
            .iter()
            .any(|name| name == thing)
    }

    async fn ledger_schema(&self) -> i64 {
        self.db
            .collection::<mongodb::bson::Document>("_migrations")
            .find_one(doc! { "_id": "_cutover_migrations_schema" })
            .await
            .unwrap()
            .unwrap()
            .get_i64("schema")
            .unwrap()
    }

    async fn set_ledger_schema(&self, schema: i64) {
        self.db
            .collection::<mongodb::bson::Document>("_migrations")
            .update_one(
                doc! { "_id": "_cutover_migrations_schema" },
                doc! { "$set": { "schema": schema } },
            )
            .await
            .unwrap();
    }

    async fn cleanup(self) {
        self.db.drop().await.unwrap();
    }
}

fn states(status: &[StatusEntry]) -> Vec<(i64, MigrationState)> {
    status.iter().map(|s| (s.version, s.state)).collect()
}

use Step::{Create, Drop, Fail};

async fn applies_in_order_and_a_rerun_is_a_no_op(db: impl Db) {
    let specs = [
        spec(1, &[Create("a")], Some(&[Drop("a")])),
        spec(2, &[Create("b"), Create("c")], Some(&[Drop("c"), Drop("b")])),
    ];
    assert_eq!(db.up(&specs).await.unwrap().applied, [1, 2]);
    assert!(db.exists("a").await && db.exists("b").await && db.exists("c").await);
    let again = db.up(&specs).await.unwrap();
    assert!(again.applied.is_empty(), "{again}");
    assert_eq!(
        states(&db.status(&specs).await),
        [(1, MigrationState::Applied), (2, MigrationState::Applied)]
    );
    db.cleanup().await;
}

async fn an_edited_or_missing_applied_migration_is_refused_until_repaired(db: impl Db) {
    let specs = [spec(1, &[Create("a")], None), spec(2, &[Create("b")], None)];
    db.up(&specs).await.unwrap();
    let edited = [
        spec(1, &[Create("a"), Create("x")], None),
        spec(2, &[Create("b")], None),
        spec(3, &[Create("c")], None),
    ];
    let refused = db.up(&edited).await.unwrap_err();
    assert!(
        matches!(refused, MigrateError::ChecksumMismatch { version: 1, .. }),
        "{refused}"
    );
    assert!(!db.exists("c").await, "nothing runs after a refusal");
    assert_eq!(db.status(&edited).await[0].state, MigrationState::Changed);

    let gone = db.up(&[spec(2, &[Create("b")], None)]).await.unwrap_err();
    assert!(matches!(gone, MigrateError::Missing { version: 1, .. }), "{gone}");

    assert_eq!(db.repair(&edited).await, [1]);
    assert_eq!(db.up(&edited).await.unwrap().applied, [3]);
    assert!(!db.exists("x").await, "repair records the edit; it does not run it");
    db.cleanup().await;
}

async fn a_failed_migration_resumes_once_fixed_but_its_run_steps_cannot_change<D: Db>(db: D) {
    let failing = [
        spec(1, &[Create("a")], None),
        spec(2, &[Create("b"), Fail, Create("c")], None),
    ];
    let error = db.up(&failing).await.unwrap_err();
    assert!(
        error.to_string().contains("migration 2") || error.to_string().contains("m2"),
        "{error}"
    );
    assert_eq!(
        states(&db.status(&failing).await),
        [(1, MigrationState::Applied), (2, MigrationState::Failed)]
    );
    assert_eq!(
        db.exists("b").await,
        D::PARTIAL_RUNS,
        "the step before the failure stays only where steps commit one by one"
    );

    // Editing the step that already ran is refused where a step ran; elsewhere nothing ran.
    let rewritten = [
        spec(1, &[Create("a")], None),
        spec(2, &[Create("z"), Create("c")], None),
    ];
    match db.up(&rewritten).await {
        Err(MigrateError::ChecksumMismatch { version: 2, .. }) => assert!(D::PARTIAL_RUNS),
        Ok(report) => {
            assert!(!D::PARTIAL_RUNS, "edited a step that had run, and it was accepted");
            assert_eq!(report.applied, [2]);
            db.cleanup().await;
            return;
        }
        Err(other) => panic!("{other}"),
    }
    // Fixing the failed step (and what follows) resumes after the step that ran.
    let fixed = [
        spec(1, &[Create("a")], None),
        spec(2, &[Create("b"), Create("c")], None),
    ];
    assert_eq!(db.up(&fixed).await.unwrap().applied, [2]);
    assert!(db.exists("b").await && db.exists("c").await);
    db.cleanup().await;
}

async fn down_finds_every_down_before_reverting_anything(db: impl Db) {
    let specs = [
        spec(1, &[Create("a")], Some(&[Drop("a")])),
        spec(2, &[Create("b")], None),
        spec(3, &[Create("c")], Some(&[Drop("c")])),
    ];
    db.up(&specs).await.unwrap();
    let refused = db.down(&specs, 0).await.unwrap_err();
    assert!(
        matches!(refused, MigrateError::Irreversible { version: 2, .. }),
        "{refused}"
    );
    assert!(
        db.exists("c").await,
        "3 was not reverted before 2 was found irreversible"
    );
    assert_eq!(
        states(&db.status(&specs).await),
        [
            (1, MigrationState::Applied),
            (2, MigrationState::Applied),
            (3, MigrationState::Applied)
        ]
    );
    assert_eq!(db.down(&specs, 2).await.unwrap().applied, [3]);
    assert!(!db.exists("c").await);
    db.cleanup().await;
}

async fn down_forgets_a_migration_that_never_completed_a_step(db: impl Db) {
    // Its down would fail if it ran (dropping what does not exist).
    let specs = [
        spec(1, &[Create("a")], Some(&[Drop("a")])),
        spec(2, &[Fail, Create("b")], Some(&[Fail])),
    ];
    db.up(&specs).await.unwrap_err();
    let report = db.down(&specs, 1).await.unwrap();
    assert_eq!(report.applied, [2]);
    assert!(
        report.warnings.iter().any(|w| w.contains("without running a down")),
        "{:?}",
        report.warnings
    );
    assert_eq!(
        states(&db.status(&specs).await),
        [(1, MigrationState::Applied), (2, MigrationState::Pending)]
    );
    assert!(db.exists("a").await);
    db.cleanup().await;
}

async fn a_failing_integrity_check_applies_nothing(db: impl Db) {
    let specs = [spec(1, &[Create("a")], None)];
    let refused = db.up_with_failing_integrity_check(&specs).await.unwrap_err();
    assert!(refused.to_string().contains("integrity check"), "{refused}");
    assert!(!db.exists("a").await);
    assert_eq!(db.up(&specs).await.unwrap().applied, [1]);
    db.cleanup().await;
}

async fn concurrent_runners_apply_each_migration_once(db: impl Db) {
    let specs = [
        spec(1, &[Create("a")], None),
        spec(2, &[Create("b")], None),
        spec(3, &[Create("c")], None),
    ];
    let (first, second) = tokio::join!(db.up(&specs), db.up(&specs));
    let (first, second) = (first.unwrap(), second.unwrap());
    let mut applied: Vec<i64> = first.applied.iter().chain(&second.applied).copied().collect();
    applied.sort_unstable();
    assert_eq!(applied, [1, 2, 3], "each applied exactly once: {first} / {second}");
    db.cleanup().await;
}

async fn a_ledger_written_by_a_newer_version_is_never_written_to(db: impl Db) {
    let specs = [spec(1, &[Create("a")], Some(&[Drop("a")]))];
    db.up(&specs).await.unwrap();
    assert_eq!(db.ledger_schema().await, cutover_migrate::LEDGER_SCHEMA);
    db.set_ledger_schema(cutover_migrate::LEDGER_SCHEMA + 1).await;
    let more = [specs[0].clone(), spec(2, &[Create("b")], None)];
    let refused = db.up(&more).await.unwrap_err();
    assert!(matches!(refused, MigrateError::LedgerTooNew { .. }), "{refused}");
    assert!(refused.to_string().contains("newer cutover-migrate"), "{refused}");
    assert!(!db.exists("b").await);
    let refused = db.down(&more, 0).await.unwrap_err();
    assert!(matches!(refused, MigrateError::LedgerTooNew { .. }), "{refused}");
    assert!(db.exists("a").await);
    // Reading is still allowed: an operator can see where things stand.
    assert_eq!(db.status(&more).await.len(), 2);
    db.cleanup().await;
}

async fn contract_waits_until_every_live_instance_embeds_it(db: impl Db) {
    let specs = [spec(1, &[Create("a")], None), contract(2, &[Drop("a")])];
    let report = db.up(&specs).await.unwrap();
    assert_eq!(
        (report.applied.clone(), report.skipped_phase.clone()),
        (vec![1], vec![2])
    );

    let blue = db.registry("api", &[1]).version("1.2.0").host("blue-1");
    let green = db.registry("api", &[1, 2]).version("1.3.0").host("green-1");
    blue.beat(InstancePhase::Starting).await.unwrap();
    blue.beat(InstancePhase::Ready).await.unwrap();
    green.beat(InstancePhase::Ready).await.unwrap();
    let live = green.live().await.unwrap();
    assert_eq!(live.len(), 2);
    let seen = live.iter().find(|i| i.id == blue.id()).unwrap();
    assert_eq!(
        (
            seen.service.as_str(),
            seen.version.as_str(),
            seen.host.as_str(),
            seen.phase.as_str()
        ),
        ("api", "1.2.0", "blue-1", "ready")
    );
    assert_eq!(seen.migrations, [1]);
    assert_eq!(seen.digest, embedding(&[1]).digest());
    assert!(seen.expires_in > Duration::from_secs(20) && seen.expires_in <= Duration::from_secs(30));

    let refused = db.up_with(&specs, &every_phase()).await.unwrap_err();
    let message = refused.to_string();
    let MigrateError::ContractBlocked(blocked) = refused else {
        panic!("expected the contract gate, got: {message}");
    };
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].version, 2);
    let blocking: Vec<&str> = blocked[0].blocked_by.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(blocking, [blue.id()], "only the instance that does not embed it blocks");
    assert!(message.contains("api 1.2.0 on blue-1"), "{message}");
    assert!(message.contains("expires in"), "{message}");
    assert!(db.exists("a").await, "nothing was applied");
    assert_eq!(db.status(&specs).await[1].state, MigrationState::Pending);

    let plan = db.plan(&specs, &every_phase()).await;
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0].blocked_by, [blue.id()]);
    let status = db.status(&specs).await;
    assert_eq!(seen.blocks(&status), [2]);

    // Blue drained: its row goes; contract runs.
    blue.deregister().await.unwrap();
    assert_eq!(green.live().await.unwrap().len(), 1);
    assert!(db.plan(&specs, &every_phase()).await[0].blocked_by.is_empty());
    assert_eq!(db.up_with(&specs, &every_phase()).await.unwrap().applied, [2]);
    assert!(!db.exists("a").await);
    green.deregister().await.unwrap();
    assert!(green.live().await.unwrap().is_empty());
    db.cleanup().await;
}

async fn a_killed_instance_stops_counting_when_its_row_expires(db: impl Db) {
    let specs = [spec(1, &[Create("a")], None), contract(2, &[Drop("a")])];
    db.up(&specs).await.unwrap();
    let blue = db
        .registry("api", &[1])
        .heartbeat(Duration::from_millis(200))
        .ttl(Duration::from_millis(600));
    blue.beat(InstancePhase::Ready).await.unwrap();
    assert!(matches!(
        db.up_with(&specs, &every_phase()).await,
        Err(MigrateError::ContractBlocked(_))
    ));
    // Killed: no more heartbeats, nobody deregisters it.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(blue.live().await.unwrap().is_empty(), "its row expired");
    assert_eq!(db.up_with(&specs, &every_phase()).await.unwrap().applied, [2]);
    db.cleanup().await;
}

async fn a_forced_contract_runs_and_is_recorded_with_who_and_why(db: impl Db) {
    let specs = [spec(1, &[Create("a")], None), contract(2, &[Drop("a")])];
    db.up(&specs).await.unwrap();
    let blue = db.registry("api", &[1]).version("1.2.0");
    blue.beat(InstancePhase::Ready).await.unwrap();
    let forced = UpOptions {
        force_contract: Some("blue is wedged; its traffic is already drained".to_owned()),
        ..every_phase()
    };
    let report = db.up_with(&specs, &forced).await.unwrap();
    assert_eq!(report.applied, [2]);
    assert_eq!(report.forced.len(), 1);
    assert_eq!(report.forced[0].blocked_by[0].id, blue.id());
    assert!(
        report.to_string().contains("2 FORCED past 1 live instance(s)"),
        "{report}"
    );
    let status = db.status(&specs).await;
    let note = status[1].ledger.as_ref().unwrap().forced_contract.clone().unwrap();
    assert!(
        note.contains("blue is wedged; its traffic is already drained"),
        "{note}"
    );
    assert!(note.contains(blue.id()) && note.contains("forced by"), "{note}");
    assert_eq!(status[0].ledger.as_ref().unwrap().forced_contract, None);
    blue.deregister().await.unwrap();
    db.cleanup().await;
}

async fn heartbeats_refresh_the_row_and_deregistering_removes_only_it(db: impl Db) {
    let one = db.registry("worker", &[1]).heartbeat(Duration::from_millis(200));
    let two = db.registry("worker", &[1]);
    assert!(one.live().await.unwrap().is_empty(), "no registry yet reads as none");
    one.beat(InstancePhase::Starting).await.unwrap();
    two.beat(InstancePhase::Ready).await.unwrap();
    let first = one
        .live()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.id == one.id())
        .unwrap();
    assert_eq!(first.phase, "starting");
    assert!(first.expires_in <= Duration::from_millis(600));
    tokio::time::sleep(Duration::from_millis(400)).await;
    one.beat(InstancePhase::Ready).await.unwrap();
    let again = one
        .live()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.id == one.id())
        .unwrap();
    assert_eq!(again.phase, "ready");
    assert_eq!(
        again.started_at, first.started_at,
        "a heartbeat keeps when it registered"
    );
    assert!(
        again.expires_in > Duration::from_millis(400),
        "refreshed: {:?}",
        again.expires_in
    );
    one.beat(InstancePhase::Draining).await.unwrap();
    one.deregister().await.unwrap();
    let left: Vec<String> = two.live().await.unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(left, [two.id()]);
    two.deregister().await.unwrap();
    db.cleanup().await;
}

macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {
        mod on_postgres {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Postgres::new().await).await;
            })*
        }
        mod on_sqlite {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Sqlite::new().await).await;
            })*
        }
        mod on_mongodb {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Mongo::new().await).await;
            })*
        }
    };
}

on_every_backend!(
    applies_in_order_and_a_rerun_is_a_no_op,
    an_edited_or_missing_applied_migration_is_refused_until_repaired,
    a_failed_migration_resumes_once_fixed_but_its_run_steps_cannot_change,
    down_finds_every_down_before_reverting_anything,
    down_forgets_a_migration_that_never_completed_a_step,
    a_failing_integrity_check_applies_nothing,
    concurrent_runners_apply_each_migration_once,
    a_ledger_written_by_a_newer_version_is_never_written_to,
    contract_waits_until_every_live_instance_embeds_it,
    a_killed_instance_stops_counting_when_its_row_expires,
    a_forced_contract_runs_and_is_recorded_with_who_and_why,
    heartbeats_refresh_the_row_and_deregistering_removes_only_it,
);
