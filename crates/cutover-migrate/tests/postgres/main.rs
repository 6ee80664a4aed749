//! The migration runner against the real PostgreSQL, through its command-line tool, each test
//! in a database of its own: concurrent runners, resuming a failed non-transactional migration,
//! a backfill killed with SIGKILL, DDL behind a long transaction, backups, checksums, repair,
//! down, dry runs and the lint.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use cutover_tests::{assert_exit, assert_success, output_text, service_url, unique};
use sqlx::{AssertSqlSafe, PgPool};

mod adopt;
mod contract;

/// A fresh database and a directory of migrations for it.
struct Fixture {
    url: String,
    name: String,
    dir: PathBuf,
    admin: PgPool,
    pool: PgPool,
}

impl Fixture {
    async fn new() -> Self {
        let admin_url = service_url("DATABASE_URL");
        let admin = PgPool::connect(&admin_url).await.unwrap();
        let name = unique("mig");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
        let pool = PgPool::connect(&url).await.unwrap();
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            url,
            name,
            dir,
            admin,
            pool,
        }
    }

    fn write(&self, file: &str, sql: &str) {
        std::fs::write(self.dir.join(file), sql).unwrap();
    }

    fn remove(&self, file: &str) {
        std::fs::remove_file(self.dir.join(file)).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cutover-migrate"));
        command
            .args(["--database-url", &self.url, "--source"])
            .arg(&self.dir)
            .args(args)
            .env("RUST_LOG", "cutover_migrate=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn drop_database(self) {
        self.pool.close().await;
        let _ = sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&self.admin)
        .await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const CREATE_TABLE: &str = "CREATE TABLE t (id bigint PRIMARY KEY, a int, b int);\n\
                            INSERT INTO t SELECT g, g % 97, g % 89 FROM generate_series(1, 20000) g;";

async fn advisory_locks(fixture: &Fixture) -> i64 {
    fixture
        .scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_runners_at_once_apply_each_migration_exactly_once() {
    let fixture = Fixture::new().await;
    fixture.write("0001_create.up.sql", CREATE_TABLE);
    fixture.write("0002_index_a.up.sql", "CREATE INDEX CONCURRENTLY idx_t_a ON t (a);");
    fixture.write("0003_index_b.up.sql", "CREATE INDEX CONCURRENTLY idx_t_b ON t (b);");
    fixture.write("0004_column.up.sql", "ALTER TABLE t ADD COLUMN c int;");

    let runners: Vec<_> = (0..5)
        .map(|_| fixture.command(&["--json", "up"]).spawn().unwrap())
        .collect();
    let outputs: Vec<Output> = runners
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .collect();
    let mut applied = Vec::new();
    for output in &outputs {
        assert_success(output);
        assert!(
            !output_text(output).contains("deadlock detected"),
            "{}",
            output_text(output)
        );
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        applied.extend(
            report["applied"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap()),
        );
    }
    applied.sort_unstable();
    assert_eq!(applied, [1, 2, 3, 4], "each migration applied by exactly one runner");
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM _cutover_migrations WHERE state = 'applied'")
            .await,
        4
    );
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM pg_index WHERE NOT indisvalid")
            .await,
        0,
        "no INVALID index"
    );
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM pg_indexes WHERE tablename = 't'")
            .await,
        3
    );
    assert_eq!(advisory_locks(&fixture).await, 0, "no advisory lock left behind");
    fixture.drop_database().await;
}

#[tokio::test]
async fn a_failed_statement_is_recorded_and_the_fixed_migration_resumes_there() {
    let fixture = Fixture::new().await;
    fixture.write("0001_create.up.sql", CREATE_TABLE);
    let broken = "CREATE INDEX CONCURRENTLY idx_t_a ON t (a);\n\
                  CREATE INDEX CONCURRENTLY idx_t_x ON t (no_such_column);\n\
                  CREATE INDEX CONCURRENTLY idx_t_b ON t (b);";
    fixture.write("0002_indexes.up.sql", broken);

    let message = assert_exit(1, &fixture.run(&["up"]));
    assert!(message.contains("migration 2 (indexes) failed at step 2"), "{message}");
    assert!(message.contains("no_such_column"), "{message}");
    let (state, done, failed): (String, i32, Option<i32>) =
        sqlx::query_as("SELECT state, steps_done, failed_step FROM _cutover_migrations WHERE version = 2")
            .fetch_one(&fixture.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), done, failed), ("failed", 1, Some(2)));
    assert_eq!(
        advisory_locks(&fixture).await,
        0,
        "the lock is released after a failure"
    );
    let status = output_text(&fixture.run(&["status"]));
    assert!(
        status.contains("failed") && status.contains("no_such_column"),
        "{status}"
    );

    // Editing a statement that already ran is refused...
    fixture.write(
        "0002_indexes.up.sql",
        &broken.replace("idx_t_a ON t (a)", "idx_t_a ON t (a, b)"),
    );
    let message = assert_exit(1, &fixture.run(&["up"]));
    assert!(message.contains("already run"), "{message}");
    // ...fixing the failed one resumes at it.
    fixture.write("0002_indexes.up.sql", &broken.replace("no_such_column", "a, b"));
    let plan = output_text(&fixture.run(&["plan"]));
    assert!(plan.contains("resumes at statement 2"), "{plan}");
    assert_success(&fixture.run(&["up"]));
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM _cutover_migrations WHERE state = 'applied'")
            .await,
        2
    );
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM pg_indexes WHERE tablename = 't'")
            .await,
        4
    );
    fixture.drop_database().await;
}

#[tokio::test]
async fn a_transactional_migration_runs_whole_and_a_failure_names_its_statement_and_line() {
    let fixture = Fixture::new().await;
    // Sent as one batch: statements ending in comments must stay apart.
    fixture.write(
        "0001_create.up.sql",
        "CREATE TABLE a (id int); -- a trailing comment\nCREATE TABLE b (id int) -- no semicolon on this line\n;\nINSERT INTO a VALUES (1);\n",
    );
    // Stored in the ledger as written, quotes and backslashes included.
    let down = "DROP TABLE b; -- it's done, \\ and E'\\'' too\nDROP TABLE a;\n";
    fixture.write("0001_create.down.sql", down);
    assert_success(&fixture.run(&["up"]));
    assert_eq!(fixture.scalar("SELECT count(*) FROM a").await, 1);
    assert_eq!(fixture.scalar("SELECT count(*) FROM b").await, 0);
    let stored: String = sqlx::query_scalar("SELECT down_sql FROM _cutover_migrations WHERE version = 1")
        .fetch_one(&fixture.pool)
        .await
        .unwrap();
    assert_eq!(stored, down);

    fixture.write(
        "0002_broken.up.sql",
        "CREATE TABLE c (id int);\nINSERT INTO c VALUES (1);\n\nINSERT INTO c VALUES ('not a number');\nCREATE TABLE d (id int);\n",
    );
    let message = assert_exit(1, &fixture.run(&["up"]));
    assert!(
        message.contains("migration 2 (broken) failed at step 3") && message.contains("0002_broken.up.sql:4"),
        "{message}"
    );
    assert!(message.contains("invalid input syntax"), "{message}");
    let (state, done, failed): (String, i32, Option<i32>) =
        sqlx::query_as("SELECT state, steps_done, failed_step FROM _cutover_migrations WHERE version = 2")
            .fetch_one(&fixture.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), done, failed), ("failed", 0, Some(3)));
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM pg_tables WHERE tablename IN ('c', 'd')")
            .await,
        0,
        "all or nothing"
    );
    fixture.drop_database().await;
}

#[tokio::test]
async fn an_invalid_index_left_by_a_failed_build_is_rebuilt_not_skipped() {
    let fixture = Fixture::new().await;
    fixture.write(
        "0001_create.up.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY, a int);\nINSERT INTO t VALUES (1, 1), (2, 1);",
    );
    assert_success(&fixture.run(&["up"]));
    // A unique build fails on duplicates and leaves an INVALID index behind.
    let failed = sqlx::query("CREATE UNIQUE INDEX CONCURRENTLY idx_t_a ON t (a)")
        .execute(&fixture.pool)
        .await;
    assert!(failed.is_err());
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM pg_index WHERE NOT indisvalid")
            .await,
        1
    );
    sqlx::query("UPDATE t SET a = 2 WHERE id = 2")
        .execute(&fixture.pool)
        .await
        .unwrap();

    // `IF NOT EXISTS` alone would accept the broken index.
    fixture.write(
        "0002_index.up.sql",
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS idx_t_a ON t (a);",
    );
    let output = fixture.run(&["up"]);
    assert_success(&output);
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM pg_index WHERE NOT indisvalid")
            .await,
        0
    );
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_t_a'")
            .await,
        1
    );
    fixture.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_killed_half_way_resumes_without_touching_any_row_twice() {
    let fixture = Fixture::new().await;
    fixture.write(
        "0001_create.up.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY, v bigint, touched int NOT NULL DEFAULT 0);\n\
         INSERT INTO t (id) SELECT g FROM generate_series(1, 20000) g;",
    );
    fixture.write(
        "0002_fill.up.sql",
        "-- cutover:phase backfill\n-- cutover:backfill table=t key=id batch=200 pause=20ms\n\
         UPDATE t SET v = id * 2, touched = touched + 1 WHERE id > $1 AND id <= $2;",
    );
    let mut child = fixture.command(&["up"]).spawn().unwrap();
    let started = Instant::now();
    loop {
        // The ledger does not exist until the runner has the lock.
        let batches = sqlx::query_scalar::<_, Option<i64>>(
            "SELECT (checkpoint->>'batches')::bigint FROM _cutover_migrations WHERE version = 2",
        )
        .fetch_optional(&fixture.pool)
        .await
        .ok()
        .flatten()
        .flatten()
        .unwrap_or(0);
        if batches >= 25 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the backfill did not get going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();

    let done = fixture.scalar("SELECT count(*) FROM t WHERE touched > 0").await;
    let last = fixture
        .scalar("SELECT (checkpoint->>'last')::bigint FROM _cutover_migrations WHERE version = 2")
        .await;
    assert!(done > 0 && done < 20000, "killed half-way: {done} rows done");
    assert_eq!(
        done, last,
        "exactly the rows up to the committed checkpoint were processed"
    );

    // New rows during the rollout are the application's job: the range was fixed at the start.
    sqlx::query("INSERT INTO t (id, v) SELECT g, g * 2 FROM generate_series(20001, 20100) g")
        .execute(&fixture.pool)
        .await
        .unwrap();
    assert_success(&fixture.run(&["up"]));
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM t WHERE v IS DISTINCT FROM id * 2")
            .await,
        0
    );
    assert_eq!(
        fixture.scalar("SELECT max(touched)::bigint FROM t").await,
        1,
        "no row processed twice"
    );
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM t WHERE id <= 20000 AND touched = 1")
            .await,
        20000
    );
    assert_eq!(advisory_locks(&fixture).await, 0);
    fixture.drop_database().await;
}

/// Readers' worst latency while a migration's DDL waits behind a long transaction.
async fn reader_stall_during_ddl(lock_timeout: &str) -> (Duration, String) {
    let fixture = Fixture::new().await;
    fixture.write(
        "0001_create.up.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY);\nINSERT INTO t SELECT generate_series(1, 1000);",
    );
    assert_success(&fixture.run(&["up"]));
    fixture.write(
        "0002_column.up.sql",
        &format!("-- cutover:lock-timeout {lock_timeout}\nALTER TABLE t ADD COLUMN c int;"),
    );

    // A long transaction holds a lock on the table for 2 s.
    let mut holder = fixture.pool.begin().await.unwrap();
    sqlx::query("SELECT count(*) FROM t")
        .execute(&mut *holder)
        .await
        .unwrap();
    let migration = fixture
        .command(&["--lock-timeout", lock_timeout, "up"])
        .spawn()
        .unwrap();
    let readers = {
        let pool = fixture.pool.clone();
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let until = Instant::now() + Duration::from_millis(2500);
            while Instant::now() < until {
                let started = Instant::now();
                sqlx::query("SELECT count(*) FROM t").execute(&pool).await.unwrap();
                worst = worst.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            worst
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    holder.commit().await.unwrap();
    let worst = readers.await.unwrap();
    let output = migration.wait_with_output().unwrap();
    assert_success(&output);
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 't' AND column_name = 'c'")
            .await,
        1
    );
    let log = output_text(&output);
    fixture.drop_database().await;
    (worst, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_behind_a_long_transaction_retries_without_stalling_readers() {
    let (worst, log) = reader_stall_during_ddl("200ms").await;
    assert!(
        log.contains("retrying with backoff"),
        "the DDL should have timed out and retried:\n{log}"
    );
    assert!(
        log.contains("holds a lock on `t`"),
        "the pre-flight names the session in the way:\n{log}"
    );
    assert!(
        worst < Duration::from_millis(1000),
        "readers waited {worst:?} behind the queued DDL"
    );

    // Control: with a lock_timeout longer than the blocking transaction, the queued ALTER
    // holds every reader back; the measurement can see a stall.
    let (worst, _) = reader_stall_during_ddl("10s").await;
    assert!(
        worst > Duration::from_millis(1200),
        "control: readers only waited {worst:?}"
    );
}

#[tokio::test]
async fn backup_migrate_restore_round_trip() {
    let fixture = Fixture::new().await;
    fixture.write(
        "0001_create.up.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY, keep text, old text);\nINSERT INTO t VALUES (1, 'k', 'o');",
    );
    assert_success(&fixture.run(&["up"]));
    fixture.write(
        "0002_drop_old.up.sql",
        "-- cutover:phase contract\n-- cutover:allow ban-drop-column\nALTER TABLE t DROP COLUMN old;",
    );
    let backups = fixture.dir.join("backups");
    let backup_arg = backups.display().to_string();

    // Contract migrations never run by default.
    let output = fixture.run(&["up", "--backup-dir", &backup_arg]);
    assert_success(&output);
    assert!(
        output_text(&output).contains("2 left for a later phase"),
        "{}",
        output_text(&output)
    );
    let output = fixture.run(&["up", "--phase", "contract", "--backup-dir", &backup_arg, "--keep", "2"]);
    assert_success(&output);
    assert!(output_text(&output).contains("backup "), "{}", output_text(&output));
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 't' AND column_name = 'old'")
            .await,
        0
    );

    let dump: PathBuf = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    assert_success(&fixture.run(&["restore", &dump.display().to_string()]));
    let old: String = sqlx::query_scalar("SELECT old FROM t WHERE id = 1")
        .fetch_one(&fixture.pool)
        .await
        .unwrap();
    assert_eq!(old, "o", "the dropped column and its data are back");
    assert_eq!(
        fixture.scalar("SELECT count(*) FROM _cutover_migrations").await,
        1,
        "the ledger is restored too"
    );

    for _ in 0..3 {
        assert_success(&fixture.run(&["backup", "--dir", &backup_arg, "--keep", "2"]));
    }
    assert_eq!(
        std::fs::read_dir(&backups).unwrap().count(),
        2,
        "only the newest 2 dumps are kept"
    );
    let message = assert_exit(1, &fixture.run(&["restore", "/no/such.dump"]));
    assert!(message.contains("does not exist"), "{message}");
    fixture.drop_database().await;
}

#[tokio::test]
async fn changed_checksums_are_refused_until_repaired_on_purpose() {
    let fixture = Fixture::new().await;
    fixture.write("0001_create.up.sql", "CREATE TABLE t (id bigint PRIMARY KEY);");
    assert_success(&fixture.run(&["up"]));
    // Line endings and trailing spaces do not count as changes.
    fixture.write(
        "0001_create.up.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY);   \r\n\r\n",
    );
    assert_success(&fixture.run(&["up"]));

    fixture.write(
        "0001_create.up.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY, extra int);",
    );
    fixture.write("0002_more.up.sql", "CREATE TABLE u (id bigint PRIMARY KEY);");
    let message = assert_exit(1, &fixture.run(&["up"]));
    assert!(
        message.contains("migration 1 (create) changed after it was applied"),
        "{message}"
    );
    assert_eq!(
        fixture.scalar("SELECT count(*) FROM _cutover_migrations").await,
        1,
        "nothing else applied"
    );

    let output = fixture.run(&["repair", "--note", "reformatted 0001 (ticket OPS-12)"]);
    assert_success(&output);
    assert!(
        output_text(&output).contains("realigned the checksums of 1"),
        "{}",
        output_text(&output)
    );
    let note: String =
        sqlx::query_scalar("SELECT repair_note FROM _cutover_migrations WHERE version = 1 AND repaired_at IS NOT NULL")
            .fetch_one(&fixture.pool)
            .await
            .unwrap();
    assert_eq!(note, "reformatted 0001 (ticket OPS-12)");
    assert_success(&fixture.run(&["up"]));
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM _cutover_migrations WHERE state = 'applied'")
            .await,
        2
    );

    // A file removed after it was applied is reported, not ignored.
    fixture.remove("0002_more.up.sql");
    let message = assert_exit(1, &fixture.run(&["up"]));
    assert!(
        message.contains("migration 2 (more) is applied in the database but missing"),
        "{message}"
    );
    fixture.drop_database().await;
}

#[tokio::test]
async fn down_uses_the_stored_sql_and_refuses_irreversible_migrations() {
    let fixture = Fixture::new().await;
    fixture.write("0001_create.up.sql", "CREATE TABLE t (id bigint PRIMARY KEY, a int);");
    fixture.write("0001_create.down.sql", "DROP TABLE t;");
    fixture.write("0002_column.up.sql", "ALTER TABLE t ADD COLUMN b int;");
    fixture.write("0002_column.down.sql", "ALTER TABLE t DROP COLUMN b;");
    fixture.write("0003_index.up.sql", "CREATE INDEX CONCURRENTLY idx_t_a ON t (a);");
    fixture.write("0003_index.down.sql", "DROP INDEX CONCURRENTLY IF EXISTS idx_t_a;");
    fixture.write("0004_seed.up.sql", "INSERT INTO t VALUES (1, 1, 1);");
    assert_success(&fixture.run(&["up"]));

    let message = assert_exit(1, &fixture.run(&["down", "--to", "1"]));
    assert!(message.contains("migration 4 (seed) is irreversible"), "{message}");
    assert_eq!(
        fixture.scalar("SELECT count(*) FROM _cutover_migrations").await,
        4,
        "nothing reverted"
    );

    // A down written later is used; and for the others, the ledger kept the down SQL they were
    // applied with, so a binary without those files (an older one) can still revert them.
    fixture.write("0004_seed.down.sql", "DELETE FROM t WHERE id = 1;");
    for file in ["0002_column.down.sql", "0003_index.down.sql"] {
        fixture.remove(file);
    }
    let output = fixture.run(&["down", "--to", "1"]);
    assert_success(&output);
    assert!(
        output_text(&output).contains("reverted 4, 3, 2"),
        "{}",
        output_text(&output)
    );
    assert!(
        output_text(&output).contains(
            "note: migration 3 (index): no down file here; reverted with the down SQL stored in the ledger (checksum verified)"
        ),
        "the output says where the down came from: {}",
        output_text(&output)
    );
    assert_eq!(fixture.scalar("SELECT count(*) FROM _cutover_migrations").await, 1);
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_t_a'")
            .await,
        0
    );
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 't' AND column_name = 'b'")
            .await,
        0
    );
    fixture.drop_database().await;
}

#[tokio::test]
async fn down_trusts_the_file_over_the_ledger_and_never_runs_a_tampered_row() {
    let fixture = Fixture::new().await;
    fixture.write("0001_create.up.sql", "CREATE TABLE t (id bigint PRIMARY KEY);");
    fixture.write("0002_keep.up.sql", "CREATE TABLE keep (id bigint PRIMARY KEY);");
    fixture.write("0002_keep.down.sql", "DROP TABLE keep;");
    assert_success(&fixture.run(&["up"]));
    // Someone with write access to the ledger swaps the stored down for something else.
    sqlx::query("UPDATE _cutover_migrations SET down_sql = 'DROP TABLE t;' WHERE version = 2")
        .execute(&fixture.pool)
        .await
        .unwrap();
    let table_exists = |name: &'static str| {
        let pool = fixture.pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
                .bind(name)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };

    // With the file present, the file's down runs; the ledger row is not even read.
    let output = fixture.run(&["down", "--to", "1"]);
    assert_success(&output);
    assert!(!output_text(&output).contains("note:"), "{}", output_text(&output));
    assert!(!table_exists("keep").await, "the file's down ran");
    assert!(table_exists("t").await, "the tampered down did not");

    // Without the file, a tampered row is refused and nothing is reverted.
    assert_success(&fixture.run(&["up"]));
    sqlx::query("UPDATE _cutover_migrations SET down_sql = 'DROP TABLE t;' WHERE version = 2")
        .execute(&fixture.pool)
        .await
        .unwrap();
    fixture.remove("0002_keep.down.sql");
    let message = assert_exit(1, &fixture.run(&["down", "--to", "1"]));
    assert!(
        message.contains("does not match the checksum stored with it") && message.contains("Nothing was reverted"),
        "{message}"
    );
    assert!(table_exists("t").await && table_exists("keep").await);
    // A row written before checksums were kept cannot be verified either.
    sqlx::query("UPDATE _cutover_migrations SET down_sql = 'DROP TABLE keep;', down_checksum = NULL WHERE version = 2")
        .execute(&fixture.pool)
        .await
        .unwrap();
    let message = assert_exit(1, &fixture.run(&["down", "--to", "1"]));
    assert!(message.contains("stored without a checksum"), "{message}");
    assert!(table_exists("keep").await);
    fixture.drop_database().await;
}

#[tokio::test]
async fn a_ledger_from_before_down_checksums_is_read_and_upgraded() {
    let fixture = Fixture::new().await;
    fixture.write("0001_create.up.sql", "CREATE TABLE t (id bigint PRIMARY KEY);");
    fixture.write("0001_create.down.sql", "DROP TABLE t;");
    assert_success(&fixture.run(&["up"]));
    // The ledger as cutover-migrate 0.1 wrote it: no down checksums, no schema version.
    sqlx::query("ALTER TABLE _cutover_migrations DROP COLUMN down_checksum, DROP COLUMN adopted_from")
        .execute(&fixture.pool)
        .await
        .unwrap();
    sqlx::query("DROP TABLE _cutover_migrations_schema")
        .execute(&fixture.pool)
        .await
        .unwrap();
    assert_success(&fixture.run(&["status"]));
    fixture.write("0002_more.up.sql", "CREATE TABLE u (id bigint PRIMARY KEY);");
    fixture.write("0002_more.down.sql", "DROP TABLE u;");
    assert_success(&fixture.run(&["up"]));
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM _cutover_migrations WHERE down_checksum IS NOT NULL")
            .await,
        1,
        "the column is back, and filled for what was applied since"
    );
    assert_eq!(
        fixture.scalar("SELECT schema FROM _cutover_migrations_schema").await,
        cutover_migrate::LEDGER_SCHEMA,
        "the upgraded ledger records its schema"
    );
    fixture.remove("0002_more.down.sql");
    assert_success(&fixture.run(&["down", "--to", "1"]));
    fixture.drop_database().await;
}

#[tokio::test]
async fn the_ledger_is_made_and_reused_without_a_notice_from_the_server() {
    // PostgreSQL answers `IF NOT EXISTS` on what exists with a NOTICE, which sqlx logs at
    // INFO: a fresh database's first run, and every run after it, must not cause one.
    let fixture = Fixture::new().await;
    fixture.write("0001_create.up.sql", "CREATE TABLE t (id bigint PRIMARY KEY);");
    for run in ["first", "second"] {
        let output = fixture.command(&["up"]).env("RUST_LOG", "info").output().unwrap();
        assert_success(&output);
        let text = output_text(&output);
        assert!(
            !text.contains("skipping") && !text.contains("already exists"),
            "{run} run logged a server notice:\n{text}"
        );
    }
    fixture.drop_database().await;
}

#[tokio::test]
async fn backups_are_private_and_pg_dump_never_sees_the_password() {
    let fixture = Fixture::new().await;
    fixture.write("0001_create.up.sql", "CREATE TABLE t (id bigint PRIMARY KEY);");
    assert_success(&fixture.run(&["up"]));
    // The real pg_dump, behind a wrapper that records what it was started with.
    let wrappers = fixture.dir.join("wrappers");
    std::fs::create_dir_all(&wrappers).unwrap();
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v pg_dump"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let record = fixture.dir.join("pg_dump.seen");
    let script = format!(
        "#!/bin/sh\n\
         tr '\\0' ' ' < /proc/$$/cmdline > '{record}'\n\
         echo >> '{record}'\n\
         tr '\\0' '\\n' < /proc/$$/environ >> '{record}'\n\
         echo \"passfile-mode=$(stat -c %a \"$PGPASSFILE\")\" >> '{record}'\n\
         echo \"passfile=$PGPASSFILE\" >> '{record}'\n\
         exec {real} \"$@\"\n",
        record = record.display(),
        real = real.trim()
    );
    let wrapper = wrappers.join("pg_dump");
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    // A role of its own, whose password holds what URLs make hard: `@`, `:` and `/`.
    let role = unique("dumper");
    let password = format!("S3cr:t@p/ss-{role}");
    sqlx::query(AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'"
    )))
    .execute(&fixture.admin)
    .await
    .unwrap();
    let mut with_userinfo = url::Url::parse(&fixture.url).unwrap();
    with_userinfo.set_username(&role).unwrap();
    with_userinfo.set_password(Some(&password)).unwrap();
    let mut with_query = url::Url::parse(&fixture.url).unwrap();
    with_query.set_username(&role).unwrap();
    with_query.set_password(None).unwrap();
    with_query.query_pairs_mut().append_pair("password", &password);
    let path = format!("{}:{}", wrappers.display(), std::env::var("PATH").unwrap());
    let mode =
        |path: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777;

    for (form, url) in [("user information", with_userinfo), ("query", with_query)] {
        let backups = fixture.dir.join(unique("private")).join("backups");
        let output = Command::new(env!("CARGO_BIN_EXE_cutover-migrate"))
            .args(["--source"])
            .arg(&fixture.dir)
            .args(["backup", "--dir", &backups.display().to_string()])
            .env("DATABASE_URL", url.as_str())
            .env("PATH", &path)
            .output()
            .unwrap();
        assert_success(&output);
        assert!(
            !output_text(&output).contains(&password),
            "{form}: {}",
            output_text(&output)
        );

        let seen = std::fs::read_to_string(&record).unwrap();
        let (cmdline, environment) = seen.split_once('\n').unwrap();
        assert!(cmdline.contains("--format=custom"), "{cmdline}");
        assert!(
            cmdline.contains(&role),
            "{form}: pg_dump connects as the role: {cmdline}"
        );
        for secret in [password.as_str(), "S3cr", "p/ss"] {
            assert!(
                !cmdline.contains(secret),
                "{form}: the password is in pg_dump's arguments: {cmdline}"
            );
            assert!(
                !environment.contains(secret),
                "{form}: the password is in pg_dump's environment"
            );
        }
        assert!(environment.contains("passfile-mode=600"), "{form}: {environment}");
        let passfile = environment.lines().find_map(|l| l.strip_prefix("passfile=")).unwrap();
        assert!(
            !Path::new(passfile).exists(),
            "{form}: the password file is removed after the run"
        );
        assert_eq!(mode(&backups), 0o700, "{form}: the backup directory");
        let dump = std::fs::read_dir(&backups).unwrap().next().unwrap().unwrap().path();
        assert_eq!(mode(&dump), 0o600, "{form}: the dump");
    }
    let _ = sqlx::query(AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
        .execute(&fixture.admin)
        .await;
    fixture.drop_database().await;
}

#[tokio::test]
async fn a_dry_run_changes_nothing() {
    let fixture = Fixture::new().await;
    fixture.write("0001_create.up.sql", CREATE_TABLE);
    fixture.write("0002_index.up.sql", "CREATE INDEX CONCURRENTLY idx_t_a ON t (a);");
    let output = fixture.run(&["up", "--dry-run"]);
    assert_success(&output);
    let out = output_text(&output);
    assert!(out.contains("dry run: nothing was changed"), "{out}");
    assert!(
        out.contains("per-statement (line 1: CREATE INDEX CONCURRENTLY cannot run in a transaction)"),
        "{out}"
    );
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            .await,
        0
    );
    fixture.drop_database().await;
}

#[tokio::test]
async fn the_lint_refuses_a_plain_index_on_an_existing_table_and_explains_the_fix() {
    let fixture = Fixture::new().await;
    fixture.write("0001_create.up.sql", CREATE_TABLE);
    assert_success(&fixture.run(&["up"]));
    fixture.write("0002_more.up.sql", "CREATE TABLE u (id bigint PRIMARY KEY);");
    fixture.write("0003_index.up.sql", "-- indexes t.a\nCREATE INDEX idx_t_a ON t (a);");
    let message = assert_exit(1, &fixture.run(&["up"]));
    assert!(
        message.contains("0003_index.up.sql:2: require-concurrent-index-creation"),
        "{message}"
    );
    assert!(message.to_lowercase().contains("concurrently"), "{message}");
    assert!(
        message.contains("-- cutover:allow require-concurrent-index-creation"),
        "{message}"
    );
    assert_eq!(
        fixture.scalar("SELECT count(*) FROM _cutover_migrations").await,
        1,
        "0002 was not applied either"
    );
    assert_exit(1, &fixture.run(&["lint"]));
    // With --json: one document, holding both the findings and the refusal.
    let output = fixture.run(&["--json", "lint"]);
    assert_eq!(output.status.code(), Some(1));
    let document: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("one JSON document ({e}):\n{}", String::from_utf8_lossy(&output.stdout)));
    assert!(
        document["error"]
            .as_str()
            .unwrap()
            .contains("require-concurrent-index-creation"),
        "{document}"
    );
    assert!(document["result"].is_array(), "{document}");

    fixture.write("0003_index.up.sql", "CREATE INDEX CONCURRENTLY idx_t_a ON t (a);");
    assert_success(&fixture.run(&["lint"]));
    assert_success(&fixture.run(&["up"]));
    // `--to -1` means everything (parsed, not taken for a flag); nothing has a down file, so
    // it is refused before anything is reverted, naming the newest.
    let message = assert_exit(1, &fixture.run(&["down", "--to", "-1"]));
    assert!(message.contains("migration 3 (index) is irreversible"), "{message}");
    assert_eq!(fixture.scalar("SELECT count(*) FROM _cutover_migrations").await, 3);
    fixture.drop_database().await;
}

#[tokio::test]
async fn malformed_files_and_urls_are_refused_with_the_file_and_line() {
    let fixture = Fixture::new().await;
    fixture.write("0001_create.up.sql", "CREATE TABLE t (id bigint PRIMARY KEY);");
    fixture.write("0002_bad.up.sql", "-- cutover:lock-timeout forever\nSELECT 1;");
    let message = assert_exit(1, &fixture.run(&["up"]));
    assert!(
        message.contains("0002_bad.up.sql:1: `forever` is not a duration"),
        "{message}"
    );
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            .await,
        0
    );

    fixture.write("0002_bad.up.sql", "SELECT 1;\nCREATE TABLEE u (id int);");
    let message = assert_exit(1, &fixture.run(&["up"]));
    assert!(message.contains("0002_bad.up.sql:2: cannot parse"), "{message}");

    fixture.remove("0002_bad.up.sql");
    let output = Command::new(env!("CARGO_BIN_EXE_cutover-migrate"))
        .args(["--database-url", "mysql://root:hunter2@db/app", "--source"])
        .arg(&fixture.dir)
        .arg("status")
        .output()
        .unwrap();
    let message = assert_exit(1, &output);
    assert!(
        message.contains("not a database URL this tool supports") && !message.contains("hunter2"),
        "{message}"
    );
    let _ = Path::new("");
    fixture.drop_database().await;
}

#[tokio::test]
async fn the_briefs_v1_3_0_migrations_apply_by_phase_and_revert() {
    let fixture = Fixture::new().await;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/api-service/migrations/postgres");
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, fixture.dir.join(path.file_name().unwrap())).unwrap();
    }
    assert_success(&fixture.run(&["lint"]));
    assert_success(&fixture.run(&["up", "--phase", "expand"]));
    sqlx::query("INSERT INTO users (username, email) SELECT 'u' || g, 'u' || g || '@example.com' FROM generate_series(1, 3000) g")
        .execute(&fixture.pool)
        .await
        .unwrap();
    assert_success(&fixture.run(&["up"]));
    assert_eq!(
        fixture.scalar("SELECT count(*) FROM users WHERE notification_settings = '{\"email\": true, \"sms\": false, \"push\": true}'::jsonb").await,
        3000
    );
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM pg_index WHERE NOT indisvalid")
            .await,
        0
    );
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM pg_type WHERE typname = 'user_status_new'")
            .await,
        1
    );
    let output = fixture.run(&["down", "--to", "1"]);
    assert_success(&output);
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = 'user_preferences'")
            .await,
        0
    );
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM pg_type WHERE typname = 'user_status_new'")
            .await,
        0
    );
    fixture.drop_database().await;
}

#[tokio::test]
async fn adding_an_enum_value_is_all_or_nothing_on_postgres_12_and_later() {
    let fixture = Fixture::new().await;
    fixture.write(
        "0001_status.up.sql",
        "CREATE TYPE status AS ENUM ('active');\nCREATE TABLE s (v status);",
    );
    assert_success(&fixture.run(&["up"]));
    // Adds the value, then fails: the value must not stay behind.
    fixture.write(
        "0002_archived.up.sql",
        "ALTER TYPE status ADD VALUE 'archived' AFTER 'active';\nALTER TABLE s ADD COLUMN note text;\nALTER TABLE missing ADD COLUMN x int;",
    );
    let plan = output_text(&fixture.run(&["plan"]));
    assert!(plan.contains("0002") || plan.contains("archived"), "{plan}");
    assert!(plan.contains(" transaction"), "planned as one transaction: {plan}");
    let message = assert_exit(1, &fixture.run(&["up"]));
    assert!(message.contains("0002_archived.up.sql:3"), "{message}");
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM pg_enum WHERE enumlabel = 'archived'")
            .await,
        0,
        "rolled back with the rest of the migration"
    );
    // A file that uses the new value commits it first, statement by statement.
    fixture.write(
        "0002_archived.up.sql",
        "ALTER TYPE status ADD VALUE 'archived' AFTER 'active';\nINSERT INTO s VALUES ('archived');",
    );
    let plan = output_text(&fixture.run(&["plan"]));
    assert!(
        plan.contains("per-statement (line 2 uses the enum value 'archived' added at line 1"),
        "{plan}"
    );
    // (The failed transactional run committed nothing: the per-statement retry starts at 1.)
    assert_success(&fixture.run(&["up"]));
    assert_eq!(fixture.scalar("SELECT count(*) FROM s WHERE v = 'archived'").await, 1);
    fixture.drop_database().await;
}

#[tokio::test]
async fn a_pool_the_application_holds_is_migrated_without_leaving_session_state_in_it() {
    let fixture = Fixture::new().await;
    fixture.write("0001_create.up.sql", CREATE_TABLE);
    fixture.write("0002_index.up.sql", "CREATE INDEX CONCURRENTLY idx_t_a ON t (a);");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&fixture.url)
        .await
        .unwrap();
    let migrator = cutover_migrate::Migrator::new(cutover_migrate::MigrationSet::from_dir(&fixture.dir).unwrap())
        .lock_timeout(Duration::from_millis(750));
    let report = migrator
        .up(&pool, &cutover_migrate::UpOptions::default())
        .await
        .unwrap();
    assert_eq!(report.applied, [1, 2]);
    // The pool's one connection: no lock_timeout of the runner's, no advisory lock held.
    let lock_timeout: String = sqlx::query_scalar("SHOW lock_timeout").fetch_one(&pool).await.unwrap();
    assert_eq!(lock_timeout, "0");
    assert_eq!(advisory_locks(&fixture).await, 0);
    let status = migrator.status(&pool).await.unwrap();
    assert!(
        status
            .iter()
            .all(|s| s.state == cutover_migrate::MigrationState::Applied),
        "{status:?}"
    );
    // Backups need pg_dump, which needs the URL: refused with why, before anything runs.
    fixture.write("0003_more.up.sql", "ALTER TABLE t ADD COLUMN c int;");
    let with_backup = cutover_migrate::Migrator::new(cutover_migrate::MigrationSet::from_dir(&fixture.dir).unwrap())
        .backups(cutover_migrate::BackupPolicy::new(fixture.dir.join("backups")));
    let error = with_backup
        .up(&pool, &cutover_migrate::UpOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("backups run pg_dump, which needs the database URL"),
        "{error}"
    );
    pool.close().await;
    fixture.drop_database().await;
}

#[tokio::test]
async fn a_connection_the_application_lends_is_migrated_and_left_as_it_was() {
    use sqlx::Connection as _;

    let fixture = Fixture::new().await;
    fixture.write("0001_create.up.sql", CREATE_TABLE);
    fixture.write("0002_index.up.sql", "CREATE INDEX CONCURRENTLY idx_t_a ON t (a);");
    let migrator = cutover_migrate::Migrator::new(cutover_migrate::MigrationSet::from_dir(&fixture.dir).unwrap())
        .lock_timeout(Duration::from_millis(750));
    let mut connection = sqlx::PgConnection::connect(&fixture.url).await.unwrap();

    // Inside a transaction: refused before anything runs (each migration commits its own).
    {
        let mut transaction = connection.begin().await.unwrap();
        let error = migrator
            .up(&mut *transaction, &cutover_migrate::UpOptions::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("inside a transaction"), "{error}");
        transaction.rollback().await.unwrap();
    }
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM pg_tables WHERE tablename = 't'")
            .await,
        0
    );

    // Also one begun with a raw BEGIN, which sqlx does not track.
    sqlx::query("BEGIN").execute(&mut connection).await.unwrap();
    let error = migrator
        .up(&mut connection, &cutover_migrate::UpOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("inside a transaction"), "{error}");
    sqlx::query("ROLLBACK").execute(&mut connection).await.unwrap();
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM pg_tables WHERE tablename = 't'")
            .await,
        0
    );

    let report = migrator
        .up(&mut connection, &cutover_migrate::UpOptions::default())
        .await
        .unwrap();
    assert_eq!(report.applied, [1, 2]);
    // The lock was taken on the lent connection and released; no lock_timeout left on it.
    assert_eq!(advisory_locks(&fixture).await, 0);
    let lock_timeout: String = sqlx::query_scalar("SHOW lock_timeout")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(lock_timeout, "0");
    assert!(!connection.is_in_transaction());
    let irreversible = migrator.down(&mut connection, 0).await.unwrap_err().to_string();
    assert!(irreversible.contains("irreversible"), "{irreversible}");
    let status = migrator.status(&mut connection).await.unwrap();
    assert!(
        status
            .iter()
            .all(|s| s.state == cutover_migrate::MigrationState::Applied)
    );
    connection.close().await.unwrap();
    fixture.drop_database().await;
}
