//! The SQLite backend: the same ledger, checksums, backfills and down, with SQLite's write lock
//! serializing concurrent runners.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;

use cutover_migrate::{MigrationSet, Migrator, UpOptions};
use cutover_tests::unique;
use sqlx::SqlitePool;

fn url() -> (String, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("{}.db", unique("mig_sqlite")));
    (format!("sqlite://{}", path.display()), path)
}

fn example() -> MigrationSet {
    MigrationSet::from_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/api-service/migrations/sqlite"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runners_apply_each_migration_once() {
    let (url, path) = url();
    let runners: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Migrator::new(example()).up(&url, &UpOptions::default()).await.unwrap() })
        })
        .collect();
    let mut applied = Vec::new();
    for runner in runners {
        applied.extend(runner.await.unwrap().applied);
    }
    applied.sort_unstable();
    let expected: Vec<i64> = example().migrations().iter().map(|m| m.version).collect();
    assert_eq!(applied, expected, "each migration applied by exactly one runner");
    let pool = SqlitePool::connect(&url).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM _cutover_migrations WHERE state = 'applied'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, i64::try_from(expected.len()).unwrap());
    pool.close().await;
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn backfill_checksums_and_down_work_as_on_postgres() {
    let (url, path) = url();
    let migrator = Migrator::new(example());
    migrator
        .up(
            &url,
            &UpOptions {
                phases: Some(vec![cutover_migrate::Phase::Expand]),
                ..UpOptions::default()
            },
        )
        .await
        .unwrap();
    let pool = SqlitePool::connect(&url).await.unwrap();
    for i in 0..2500 {
        sqlx::query("INSERT INTO users (username, email) VALUES (?1, ?2)")
            .bind(format!("u{i}"))
            .bind(format!("u{i}@example.com"))
            .execute(&pool)
            .await
            .unwrap();
    }
    let report = migrator.up(&url, &UpOptions::default()).await.unwrap();
    assert_eq!(report.applied.len(), 1, "the backfill");
    let filled: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE json_extract(notification_settings, '$.push') = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(filled, 2500);

    let status = migrator.status(&url).await.unwrap();
    assert!(
        status
            .iter()
            .all(|s| s.state == cutover_migrate::MigrationState::Applied),
        "{status:?}"
    );

    let changed = MigrationSet::from_files([(
        "m/0001_create_users.up.sql".to_owned(),
        "CREATE TABLE x (id int);".to_owned(),
    )])
    .unwrap();
    let error = Migrator::new(changed)
        .up(&url, &UpOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("changed after it was applied"), "{error}");

    let reverted = migrator.down(&url, 1).await.unwrap();
    assert!(!reverted.applied.is_empty());
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'user_preferences'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tables, 0);
    pool.close().await;
    let _ = std::fs::remove_file(path);
}

#[test]
fn lint_judges_sqlite_files_as_up_does() {
    let dir = std::env::temp_dir().join(unique("mig_sqlite_lint"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("0001_create.up.sql"),
        "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT);",
    )
    .unwrap();
    // A plain index on an existing table: PostgreSQL's lint refuses it, SQLite has no such lock.
    std::fs::write(dir.join("0002_index.up.sql"), "CREATE INDEX i ON t (a);").unwrap();
    let (url, _) = url();
    let lint = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cutover-migrate"))
            .arg("--source")
            .arg(&dir)
            .args(args)
            .output()
            .unwrap()
    };
    let sqlite = lint(&["--database-url", &url, "lint"]);
    let text = cutover_tests::assert_success(&sqlite);
    assert!(
        text.contains("2 SQLite migrations parsed; no lock-safety rules apply"),
        "{text}"
    );
    let explicit = lint(&["lint", "--dialect", "sqlite"]);
    cutover_tests::assert_success(&explicit);
    // The same files for PostgreSQL: refused, as `up` on PostgreSQL would.
    let postgres = lint(&["lint"]);
    let message = cutover_tests::assert_exit(1, &postgres);
    assert!(message.contains("require-concurrent-index-creation"), "{message}");
}

#[tokio::test]
async fn a_failing_statement_is_reported_at_its_own_line_and_rolled_back() {
    let (url, path) = url();
    let set = MigrationSet::from_files([(
        "m/0001_init.up.sql".to_owned(),
        "-- two tables, a trigger, then a mistake\nCREATE TABLE a (id INTEGER PRIMARY KEY, note TEXT DEFAULT 'x;y');\n\n\
         CREATE TRIGGER a_touch AFTER INSERT ON a BEGIN\n  UPDATE a SET note = 'z' WHERE id = new.id;\nEND;\n\
         INSERT INTO a (id) VALUES (1);\nINSERT INTO missing VALUES (1);\n"
            .to_owned(),
    )])
    .unwrap();
    let error = Migrator::new(set)
        .up(&url, &UpOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("m/0001_init.up.sql:8"), "{error}");
    assert!(error.contains("no such table: missing"), "{error}");
    let pool = SqlitePool::connect(&url).await.unwrap();
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'a'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tables, 0, "the migration's transaction rolled back");
    pool.close().await;
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn a_database_migrated_by_sqlx_is_imported_then_baselined_further() {
    let (url, path) = url();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_a.sql"),
        "CREATE TABLE a (id INTEGER PRIMARY KEY);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0002_b.sql"),
        "CREATE TABLE b (id INTEGER PRIMARY KEY);",
    )
    .unwrap();
    let pool = SqlitePool::connect(&format!("{url}?mode=rwc")).await.unwrap();
    sqlx::migrate::Migrator::new(dir.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    // Migration 3 was applied by hand; 4 is new.
    sqlx::raw_sql("CREATE TABLE c (id INTEGER PRIMARY KEY);")
        .execute(&pool)
        .await
        .unwrap();
    std::fs::write(
        dir.path().join("0003_c.sql"),
        "CREATE TABLE c (id INTEGER PRIMARY KEY);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0004_d.sql"),
        "CREATE TABLE d (id INTEGER PRIMARY KEY);",
    )
    .unwrap();
    let migrator = Migrator::new(MigrationSet::from_dir(dir.path()).unwrap());

    let imported = migrator
        .import(&url, cutover_migrate::ImportOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (imported.source.as_str(), imported.adopted.as_slice()),
        ("sqlx", &[1, 2][..])
    );
    assert_eq!(imported.checksums_verified, 2);
    let baselined = migrator.baseline(&url, 3, "created c by hand").await.unwrap();
    assert_eq!(baselined.adopted, [3]);
    assert_eq!(baselined.already_recorded, [1, 2]);
    assert_eq!(migrator.up(&url, &UpOptions::default()).await.unwrap().applied, [4]);
    let sources: Vec<Option<String>> =
        sqlx::query_scalar("SELECT adopted_from FROM _cutover_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        sources,
        [Some("sqlx".into()), Some("sqlx".into()), Some("baseline".into()), None]
    );
    pool.close().await;
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn an_in_memory_pool_the_application_holds_is_migrated_through_the_pool() {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let migrator = Migrator::new(example());
    let report = migrator.up(&pool, &UpOptions::default()).await.unwrap();
    assert_eq!(report.applied.len(), example().migrations().len());
    // The application's own connection sees the schema: the same in-memory database.
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = '_cutover_migrations'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tables, 1);
    assert!(
        migrator
            .up(&pool, &UpOptions::default())
            .await
            .unwrap()
            .applied
            .is_empty()
    );
}

#[tokio::test]
async fn a_connection_the_application_lends_is_migrated_in_place() {
    use sqlx::Connection as _;

    // An in-memory database exists only on its connection: migrated there, it is visible there.
    let mut connection = sqlx::SqliteConnection::connect("sqlite::memory:").await.unwrap();
    let set = MigrationSet::from_files([
        (
            "m/0001_notes.up.sql".to_owned(),
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);".to_owned(),
        ),
        (
            "m/0002_seed.up.sql".to_owned(),
            "INSERT INTO notes (body) VALUES ('first');".to_owned(),
        ),
    ])
    .unwrap();
    let migrator = Migrator::new(set);
    let report = migrator.up(&mut connection, &UpOptions::default()).await.unwrap();
    assert_eq!(report.applied, [1, 2]);
    let notes: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(notes, 1);
    assert!(
        migrator
            .up(&mut connection, &UpOptions::default())
            .await
            .unwrap()
            .applied
            .is_empty()
    );
    let mut transaction = connection.begin().await.unwrap();
    let error = migrator
        .up(&mut *transaction, &UpOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("inside a transaction"), "{error}");
}
