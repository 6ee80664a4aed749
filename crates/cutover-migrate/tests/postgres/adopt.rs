//! Adopting databases migrated before cutover-migrate: by sqlx (its real migrator writes the
//! ledger), by diesel (its ledger table as diesel creates it, the files applied with psql), by
//! plain psql (`baseline`), and a Flyway ledger with a failure in it (refused, nothing written).

use std::process::Command;

use cutover_tests::{assert_exit, assert_success, output_text};

use super::Fixture;

const USERS: &str = "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);\n\
                     INSERT INTO users SELECT g, 'u' || g || '@example.com' FROM generate_series(1, 1000) g;";
/// Lock-heavy by today's rules: history a team cannot edit.
const OLD_INDEX: &str = "CREATE INDEX users_email ON users (email);";
const NEXT: &str = "ALTER TABLE users ADD COLUMN nickname text;";

fn json(output: &std::process::Output) -> serde_json::Value {
    assert_success(output);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", output_text(output)))
}

fn psql(fixture: &Fixture, file: &std::path::Path) {
    let output = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &fixture.url, "-f"])
        .arg(file)
        .output()
        .unwrap();
    assert_success(&output);
}

async fn ledger_rows(fixture: &Fixture) -> i64 {
    fixture
        .scalar(
            "SELECT CASE WHEN to_regclass('_cutover_migrations') IS NULL THEN 0 ELSE \
             (xpath('/row/c/text()', query_to_xml('SELECT count(*) AS c FROM _cutover_migrations', false, true, '')))[1]::text::bigint END",
        )
        .await
}

/// A database with two migrations applied by sqlx's own migrator, from the fixture's files.
async fn migrated_by_sqlx() -> Fixture {
    let fixture = Fixture::new().await;
    fixture.write("0001_users.sql", USERS);
    fixture.write("0002_users_email.sql", OLD_INDEX);
    sqlx::migrate::Migrator::new(fixture.dir.as_path())
        .await
        .unwrap()
        .run(&fixture.pool)
        .await
        .unwrap();
    fixture
}

#[tokio::test]
async fn a_database_migrated_by_sqlx_is_imported_with_checksums_and_migrated_further() {
    let fixture = migrated_by_sqlx().await;
    fixture.write("0003_nickname.sql", NEXT);

    // Without adoption, `up` would run 0001 again; with it, only 0003 runs.
    let adoption = json(&fixture.run(&["--json", "import"]));
    assert_eq!(adoption["source"], "sqlx");
    assert_eq!(adoption["adopted"], serde_json::json!([1, 2]));
    assert_eq!(
        adoption["checksums_verified"], 2,
        "sqlx's SHA-384 compared with each file"
    );
    let report = json(&fixture.run(&["--json", "up"]));
    assert_eq!(
        report["applied"],
        serde_json::json!([3]),
        "the old index is history, not linted"
    );
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'nickname'")
            .await,
        1
    );
    let status = &json(&fixture.run(&["--json", "status"]))["migrations"];
    assert_eq!(status[0]["ledger"]["adopted_from"], "sqlx");
    assert_eq!(status[2]["ledger"]["adopted_from"], serde_json::Value::Null);
    // Importing again changes nothing.
    let again = json(&fixture.run(&["--json", "import", "--from", "sqlx"]));
    assert_eq!(again["adopted"], serde_json::json!([]));
    assert_eq!(again["already_recorded"], serde_json::json!([1, 2]));
    fixture.drop_database().await;
}

#[tokio::test]
async fn a_file_edited_since_sqlx_ran_it_is_refused_and_nothing_is_recorded() {
    let fixture = migrated_by_sqlx().await;
    fixture.write(
        "0002_users_email.sql",
        "CREATE INDEX users_email ON users (lower(email));",
    );
    let message = assert_exit(1, &fixture.run(&["import"]));
    assert!(
        message.contains("nothing was imported:")
            && message.contains("2 (users_email) changed since sqlx applied it (its checksum differs)"),
        "{message}"
    );
    assert_eq!(ledger_rows(&fixture).await, 0);
    // Accepted on purpose, it is adopted and the ledger says so.
    let adoption = json(&fixture.run(&["--json", "import", "--accept-changed"]));
    assert_eq!(adoption["adopted"], serde_json::json!([1, 2]));
    assert_eq!(adoption["checksums_verified"], 1);
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM _cutover_migrations WHERE repair_note LIKE '%differs from what sqlx applied (accepted)'")
            .await,
        1
    );
    fixture.drop_database().await;
}

#[tokio::test]
async fn a_database_migrated_by_diesel_is_imported_from_its_directory_layout() {
    let fixture = Fixture::new().await;
    for (dir, up) in [
        ("2024-01-31-101500_create_users", USERS),
        ("2024-02-01-090000_users_email", OLD_INDEX),
    ] {
        std::fs::create_dir_all(fixture.dir.join(dir)).unwrap();
        fixture.write(&format!("{dir}/up.sql"), up);
        fixture.write(&format!("{dir}/down.sql"), "SELECT 1;");
        psql(&fixture, &fixture.dir.join(dir).join("up.sql"));
    }
    // diesel's ledger, as diesel_migrations creates and fills it.
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS __diesel_schema_migrations (
             version VARCHAR(50) PRIMARY KEY NOT NULL,
             run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
         );
         INSERT INTO __diesel_schema_migrations (version) VALUES ('20240131101500'), ('20240201090000');",
    )
    .execute(&fixture.pool)
    .await
    .unwrap();
    std::fs::create_dir_all(fixture.dir.join("2024-03-01-000000_nickname")).unwrap();
    fixture.write("2024-03-01-000000_nickname/up.sql", NEXT);
    fixture.write(
        "2024-03-01-000000_nickname/down.sql",
        "ALTER TABLE users DROP COLUMN nickname;",
    );

    let adoption = json(&fixture.run(&["--json", "import"]));
    assert_eq!(adoption["source"], "diesel");
    assert_eq!(
        adoption["adopted"],
        serde_json::json!([20_240_131_101_500_i64, 20_240_201_090_000_i64])
    );
    assert_eq!(adoption["checksums_verified"], 0, "diesel keeps no checksums");
    let report = json(&fixture.run(&["--json", "up"]));
    assert_eq!(report["applied"], serde_json::json!([20_240_301_000_000_i64]));
    // The adopted rows carry their down SQL, so `down` works through them.
    let reverted = json(&fixture.run(&["--json", "down", "--to", "20240131101500"]));
    assert_eq!(
        reverted["applied"],
        serde_json::json!([20_240_301_000_000_i64, 20_240_201_090_000_i64])
    );
    fixture.drop_database().await;
}

#[tokio::test]
async fn a_database_migrated_with_psql_is_baselined_and_history_is_not_linted() {
    let fixture = Fixture::new().await;
    fixture.write("0001_users.up.sql", USERS);
    fixture.write("0002_users_email.up.sql", OLD_INDEX);
    psql(&fixture, &fixture.dir.join("0001_users.up.sql"));
    psql(&fixture, &fixture.dir.join("0002_users_email.up.sql"));
    fixture.write("0003_nickname.up.sql", NEXT);

    // Before adoption: everything pending, and the old index refused by the lint.
    let message = assert_exit(1, &fixture.run(&["up"]));
    assert!(message.contains("require-concurrent-index-creation"), "{message}");
    assert_eq!(ledger_rows(&fixture).await, 0, "a refused run records nothing");

    // The project says where history ends; the lint and `baseline` both read it.
    fixture.write(
        "cutover-migrate.toml",
        "# applied with psql before 2026-11\nbaseline = 2\n",
    );
    assert_success(&fixture.run(&["lint"]));
    let adoption = json(&fixture.run(&["--json", "baseline", "--note", "applied with psql"]));
    assert_eq!(adoption["adopted"], serde_json::json!([1, 2]));
    let report = json(&fixture.run(&["--json", "up"]));
    assert_eq!(report["applied"], serde_json::json!([3]));
    assert_eq!(
        fixture
            .scalar("SELECT count(*) FROM _cutover_migrations WHERE adopted_from = 'baseline' AND repair_note = 'baseline: applied with psql'")
            .await,
        2
    );

    // A fresh database (a new environment, CI) runs the history too, unlinted.
    let fresh = Fixture::new().await;
    for file in [
        "0001_users.up.sql",
        "0002_users_email.up.sql",
        "0003_nickname.up.sql",
        "cutover-migrate.toml",
    ] {
        std::fs::copy(fixture.dir.join(file), fresh.dir.join(file)).unwrap();
    }
    let report = json(&fresh.run(&["--json", "up"]));
    assert_eq!(report["applied"], serde_json::json!([1, 2, 3]));

    // A version with nothing at or below it is refused with the first one.
    let message = assert_exit(1, &fixture.run(&["baseline", "--to", "0"]));
    assert!(
        message.contains("no migration has a version at or below 0; the first is 1 (users)"),
        "{message}"
    );
    fresh.drop_database().await;
    fixture.drop_database().await;
}

#[tokio::test]
async fn lint_rules_are_allowed_by_range_from_the_config_or_the_command_line() {
    let fixture = Fixture::new().await;
    fixture.write("0001_users.up.sql", USERS);
    assert_success(&fixture.run(&["up"]));
    fixture.write("0002_users_email.up.sql", OLD_INDEX);
    fixture.write("0003_drop_email.up.sql", "ALTER TABLE users DROP COLUMN email;");
    let message = assert_exit(1, &fixture.run(&["lint"]));
    assert!(
        message.contains("require-concurrent-index-creation") && message.contains("ban-drop-column"),
        "{message}"
    );
    // One rule by flag, in one version; the other still refused.
    let message = assert_exit(
        1,
        &fixture.run(&["lint", "--allow", "require-concurrent-index-creation@2"]),
    );
    assert!(
        !message.contains("require-concurrent-index-creation (to accept"),
        "{message}"
    );
    assert!(message.contains("ban-drop-column"), "{message}");
    // Both from the config file.
    fixture.write(
        "cutover-migrate.toml",
        "[lint]\nallow = [\"require-concurrent-index-creation\"]\n\n[[lint.allow-in]]\nversions = \"3..=3\"\nrules = [\"ban-drop-column\"]\nreason = \"unused since 2.0\"\n",
    );
    assert_success(&fixture.run(&["lint"]));
    let report = json(&fixture.run(&["--json", "up"]));
    assert_eq!(report["applied"], serde_json::json!([2, 3]));
    // A mistake in the file names the file and the line.
    fixture.write("cutover-migrate.toml", "[lint]\nallow = [\"ban-drop-colum\"]\n");
    let message = assert_exit(1, &fixture.run(&["lint"]));
    assert!(
        message.contains("cutover-migrate.toml: unknown lint rule `ban-drop-colum`"),
        "{message}"
    );
    fixture.drop_database().await;
}

#[tokio::test]
async fn a_flyway_ledger_with_a_failed_migration_is_refused_before_anything_is_recorded() {
    let fixture = Fixture::new().await;
    fixture.write("V1__users.sql", USERS);
    fixture.write("V2__users_email.sql", OLD_INDEX);
    psql(&fixture, &fixture.dir.join("V1__users.sql"));
    // Flyway's history table, with version 2 failed half-way.
    sqlx::raw_sql(
        "CREATE TABLE flyway_schema_history (
             installed_rank integer PRIMARY KEY, version varchar(50), description varchar(200) NOT NULL,
             type varchar(20) NOT NULL, script varchar(1000) NOT NULL, checksum integer,
             installed_by varchar(100) NOT NULL, installed_on timestamp NOT NULL DEFAULT now(),
             execution_time integer NOT NULL, success boolean NOT NULL
         );
         INSERT INTO flyway_schema_history VALUES
             (1, '1', 'users', 'SQL', 'V1__users.sql', NULL, 'app', now(), 12, true),
             (2, '2', 'users email', 'SQL', 'V2__users_email.sql', NULL, 'app', now(), 3, false);",
    )
    .execute(&fixture.pool)
    .await
    .unwrap();
    let message = assert_exit(1, &fixture.run(&["import"]));
    assert!(
        message.contains("flyway's ledger records version 2 (users email) as failed"),
        "{message}"
    );
    assert_eq!(ledger_rows(&fixture).await, 0);
    // Once it is dealt with, version 1 is adopted and 2 runs.
    sqlx::query("DELETE FROM flyway_schema_history WHERE NOT success")
        .execute(&fixture.pool)
        .await
        .unwrap();
    let adoption = json(&fixture.run(&["--json", "import", "--allow", "require-concurrent-index-creation"]));
    assert_eq!(adoption["adopted"], serde_json::json!([1]));
    let report = json(&fixture.run(&["--json", "up", "--allow", "require-concurrent-index-creation"]));
    assert_eq!(report["applied"], serde_json::json!([2]));
    fixture.drop_database().await;
}
