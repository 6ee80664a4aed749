//! Applying a long history: 250 generated PostgreSQL migrations of realistic shapes (tables,
//! added columns, concurrent indexes, functions with triggers, data loads and updates) to an
//! empty database, with cutover's runner (in-process, reading and linting the files included)
//! versus one `psql` session over the same files and versus sqlx-cli's `sqlx migrate run`, in
//! the same run, alternating the order, each on a fresh database. Reports the median of each,
//! the ratios, and where the runner's time goes (reading + lint, the migrations' own
//! statements, and the rest: lock, ledger, validation).
//!
//! sqlx-cli is installed on first use into `~/.cache/cutover-bench/sqlx-cli` (a few minutes of
//! compiling, once); `SQLX_CLI` points at another binary. `HISTORY_RUNS` sets the runs (5),
//! `HISTORY_DIR` keeps the generated files in that directory.
//!
//! Then the same for SQLite: 250 migrations of the same shapes in SQLite's dialect, the runner
//! against one `sqlite3` session reading them all, each on a new database file.
//!
//! Run with: `scripts/services.sh up && source target/services.env && cargo bench -p cutover-benches --bench migrate_history`

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use cutover_benches::service_url;
use cutover_migrate::{Dialect, Event, LintPolicy, MigrationSet, Migrator, UpOptions};
use sqlx::{AssertSqlSafe, PgPool};

const MIGRATIONS: usize = 250;

/// Migration `n` (1-based) of the generated history.
fn migration(n: usize) -> (String, String) {
    // Tables exist from migration 1 on; later shapes work on one created earlier.
    let table = |k: usize| format!("t{k:03}");
    let earlier = table((n - 1) / 7 * 7 + 1);
    match n % 7 {
        1 => (
            format!("create_{}", table(n)),
            format!(
                "CREATE TABLE {t} (\n    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n    name text NOT NULL,\n    \
                 status text NOT NULL DEFAULT 'new',\n    payload jsonb,\n    created_at timestamptz NOT NULL DEFAULT now()\n);\n\
                 CREATE INDEX {t}_created_at_idx ON {t} (created_at);\n\
                 COMMENT ON TABLE {t} IS 'generated table {n}';\n",
                t = table(n)
            ),
        ),
        2 => (
            format!("add_note_to_{earlier}"),
            format!(
                "ALTER TABLE {earlier} ADD COLUMN note_{n} text;\nALTER TABLE {earlier} ADD COLUMN score_{n} integer;\n"
            ),
        ),
        3 => (
            format!("index_{earlier}_name"),
            format!(
                "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS {earlier}_name_{n}_idx ON {earlier} (name);\n"
            ),
        ),
        4 => (
            format!("touch_function_{n}"),
            format!(
                "CREATE OR REPLACE FUNCTION touch_{n}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n    \
                 NEW.status := coalesce(NEW.status, 'new');\n    RETURN NEW;\nEND;\n$$;\n\
                 CREATE TRIGGER touch_{n} BEFORE INSERT ON {earlier} FOR EACH ROW EXECUTE FUNCTION touch_{n}();\n"
            ),
        ),
        5 => (
            format!("load_{earlier}"),
            format!(
                "INSERT INTO {earlier} (name, payload)\nSELECT 'row ' || g, jsonb_build_object('n', g)\nFROM generate_series(1, 500) AS g;\n"
            ),
        ),
        6 => (
            format!("normalize_{earlier}"),
            format!(
                "UPDATE {earlier} SET status = 'active' WHERE id % 3 = 0;\nDELETE FROM {earlier} WHERE id % 97 = 0;\n"
            ),
        ),
        _ => (
            format!("view_{n}"),
            format!(
                "CREATE OR REPLACE VIEW recent_{n} AS\nSELECT id, name, status FROM {earlier}\nWHERE created_at > now() - interval '7 days';\n"
            ),
        ),
    }
}

/// Write the history in sqlx's naming (which the runner reads too); the files in order.
fn write_history(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("history directory");
    (1..=MIGRATIONS)
        .map(|n| {
            let (name, sql) = migration(n);
            let path = dir.join(format!("{n:04}_{name}.sql"));
            std::fs::write(&path, sql).expect("write a migration");
            path
        })
        .collect()
}

/// Migration `n` of the SQLite history: the same shapes in SQLite's dialect (a trigger with a
/// `BEGIN ... END` body instead of a function).
fn sqlite_migration(n: usize) -> (String, String) {
    let table = |k: usize| format!("t{k:03}");
    let earlier = table((n - 1) / 7 * 7 + 1);
    match n % 7 {
        1 => (
            format!("create_{}", table(n)),
            format!(
                "CREATE TABLE {t} (\n    id INTEGER PRIMARY KEY,\n    name TEXT NOT NULL,\n    status TEXT NOT NULL DEFAULT 'new',\n    \
                 payload TEXT,\n    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP\n);\n\
                 CREATE INDEX {t}_created_at_idx ON {t} (created_at);\n",
                t = table(n)
            ),
        ),
        2 => (
            format!("add_note_to_{earlier}"),
            format!(
                "ALTER TABLE {earlier} ADD COLUMN note_{n} TEXT;\nALTER TABLE {earlier} ADD COLUMN score_{n} INTEGER;\n"
            ),
        ),
        3 => (
            format!("index_{earlier}_name"),
            format!("CREATE INDEX IF NOT EXISTS {earlier}_name_{n}_idx ON {earlier} (name);\n"),
        ),
        4 => (
            format!("touch_trigger_{n}"),
            format!(
                "CREATE TRIGGER touch_{n} AFTER INSERT ON {earlier} FOR EACH ROW WHEN NEW.status IS NULL\nBEGIN\n    \
                 UPDATE {earlier} SET status = 'new' WHERE id = NEW.id;\nEND;\n"
            ),
        ),
        5 => (
            format!("load_{earlier}"),
            format!(
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 500)\n\
                 INSERT INTO {earlier} (name, payload) SELECT 'row ' || n, json_object('n', n) FROM g;\n"
            ),
        ),
        6 => (
            format!("normalize_{earlier}"),
            format!(
                "UPDATE {earlier} SET status = 'active' WHERE id % 3 = 0;\nDELETE FROM {earlier} WHERE id % 97 = 0;\n"
            ),
        ),
        _ => (
            format!("view_{n}"),
            format!(
                "CREATE VIEW recent_{n} AS\nSELECT id, name, status FROM {earlier}\nWHERE created_at > datetime('now', '-7 days');\n"
            ),
        ),
    }
}

/// Write the SQLite history; returns the whole of it as one script (what `sqlite3` reads).
fn write_sqlite_history(dir: &Path) -> String {
    std::fs::create_dir_all(dir).expect("history directory");
    let mut script = String::new();
    for n in 1..=MIGRATIONS {
        let (name, sql) = sqlite_migration(n);
        std::fs::write(dir.join(format!("{n:04}_{name}.sql")), &sql).expect("write a migration");
        script.push_str(&sql);
    }
    script
}

/// The SQLite runner against one `sqlite3` session over the same files, each on a new file.
async fn sqlite_comparison(runs: usize) {
    let base = std::env::temp_dir().join(format!("cutover-history-sqlite-{}", std::process::id()));
    let dir = base.join("migrations");
    let script = write_sqlite_history(&dir);
    let (mut ours, mut shell) = (Vec::new(), Vec::new());
    for run in 0..runs {
        for turn in 0..2 {
            let db = base.join(format!("run-{run}-{turn}.db"));
            if (run + turn) % 2 == 0 {
                let started = Instant::now();
                let migrator = Migrator::new(MigrationSet::from_dir(&dir).expect("read the history"));
                let report = migrator
                    .up(format!("sqlite://{}", db.display()).as_str(), &UpOptions::default())
                    .await
                    .expect("the runner applies the SQLite history");
                assert_eq!(report.applied.len(), MIGRATIONS);
                ours.push(started.elapsed());
            } else {
                let started = Instant::now();
                let mut child = Command::new("sqlite3")
                    .args(["-bail"])
                    .arg(&db)
                    .stdin(std::process::Stdio::piped())
                    .spawn()
                    .expect("run sqlite3");
                std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), script.as_bytes())
                    .expect("feed sqlite3");
                assert!(child.wait().expect("sqlite3").success(), "sqlite3 failed");
                shell.push(started.elapsed());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&base);
    let (ours, shell) = (median(ours), median(shell));
    println!(
        "SQLite, {MIGRATIONS} migrations (each file statement by statement in its transaction), {runs} runs each, medians:"
    );
    println!("  cutover runner      {}", ms(ours));
    println!(
        "  one sqlite3 session {} (autocommit: a commit per statement)",
        ms(shell)
    );
    println!("  runner / sqlite3 = {:.2}x", ours.as_secs_f64() / shell.as_secs_f64());
}

/// sqlx-cli's binary, installed into the cache on first use.
fn sqlx_cli() -> PathBuf {
    if let Ok(path) = std::env::var("SQLX_CLI") {
        return path.into();
    }
    let root = PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/cutover-bench/sqlx-cli");
    let binary = root.join("bin/sqlx");
    if !binary.exists() {
        eprintln!("installing sqlx-cli into {} (once; a few minutes)", root.display());
        let status = Command::new("cargo")
            .args([
                "install",
                "sqlx-cli",
                "--locked",
                "--no-default-features",
                "--features",
                "postgres,rustls",
                "--root",
            ])
            .arg(&root)
            .status()
            .expect("cargo install sqlx-cli");
        assert!(status.success(), "cargo install sqlx-cli failed");
    }
    binary
}

struct Database {
    admin: PgPool,
    name: String,
    url: String,
}

impl Database {
    async fn fresh(admin: &PgPool, admin_url: &str, run: usize, tool: &str) -> Self {
        let name = format!("history_{tool}_{run}_{}", std::process::id());
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(admin)
            .await
            .expect("create database");
        let url = format!("{}/{name}", admin_url.rsplit_once('/').expect("a database URL").0);
        Self {
            admin: admin.clone(),
            name,
            url,
        }
    }

    async fn check_and_drop(self) {
        let pool = PgPool::connect(&self.url).await.expect("connect");
        let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tablename LIKE 't%'")
            .fetch_one(&pool)
            .await
            .expect("count tables");
        assert_eq!(
            tables,
            i64::try_from(MIGRATIONS.div_ceil(7)).unwrap_or(0),
            "every table was created"
        );
        pool.close().await;
        sqlx::query(AssertSqlSafe(format!("DROP DATABASE {} WITH (FORCE)", self.name)))
            .execute(&self.admin)
            .await
            .expect("drop database");
    }
}

#[derive(Default)]
struct Breakdown {
    read: Duration,
    lint: Duration,
    statements: Duration,
    /// Time in migrations run in one transaction, and in those run statement by statement.
    transactional: Duration,
    per_statement: Duration,
    per_statement_count: usize,
    /// From the start of `up` until the first migration starts (connect, ledger, plan + lint,
    /// lock, pre-flight).
    before_first: Duration,
    /// After the last migration (validations, unlock, closing).
    after_last: Duration,
}

/// When the first migration started and the last one finished.
#[derive(Default)]
struct Marks {
    first_started: Option<Instant>,
    last_applied: Option<Instant>,
    current: Option<Instant>,
    applied: Duration,
    /// Each migration's time, by version.
    each: std::collections::HashMap<i64, Duration>,
}

async fn runner(dir: &Path, url: &str, breakdown: &mut Breakdown) -> Duration {
    let started = Instant::now();
    let marks = Arc::new(Mutex::new(Marks::default()));
    let set = MigrationSet::from_dir(dir).expect("read the history");
    let read = started.elapsed();
    let migrator = {
        let marks = Arc::clone(&marks);
        // The data changes are small and accepted by policy, as a project with this history
        // would in `cutover-migrate.toml`; `up` still lints every file.
        Migrator::new(set)
            .lint_policy(LintPolicy::default().allow("unbatched-update"))
            .on_event(move |event| {
                let mut marks = marks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match event {
                    Event::Started { .. } => {
                        let now = Instant::now();
                        marks.first_started.get_or_insert(now);
                        marks.current = Some(now);
                    }
                    // Timed here: the event's own `duration_ms` is whole milliseconds.
                    Event::Applied { version, .. } => {
                        let now = Instant::now();
                        if let Some(started) = marks.current.take() {
                            marks.applied += now - started;
                            marks.each.insert(*version, now - started);
                        }
                        marks.last_applied = Some(now);
                    }
                    _ => {}
                }
            })
    };
    let up_started = Instant::now();
    let report = migrator
        .up(url, &UpOptions::default())
        .await
        .expect("the runner applies the history");
    let up_ended = Instant::now();
    let total = started.elapsed();
    assert_eq!(report.applied.len(), MIGRATIONS);
    {
        let marks = marks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        breakdown.statements += marks.applied;
        let (first, last) = (
            marks.first_started.expect("started"),
            marks.last_applied.expect("applied"),
        );
        breakdown.before_first += first - up_started;
        breakdown.after_last += up_ended - last;
    }
    // Outside the timed run: what `up`'s planning (parse + lint) costs on its own.
    let lint = Instant::now();
    let plans = migrator.lint_all(15, Dialect::Postgres).expect("lint");
    {
        let marks = marks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        breakdown.per_statement_count = 0;
        for plan in &plans {
            let took = marks.each.get(&plan.version).copied().unwrap_or_default();
            if plan.mode == cutover_migrate::ApplyMode::PerStatement {
                breakdown.per_statement += took;
                breakdown.per_statement_count += 1;
            } else {
                breakdown.transactional += took;
            }
        }
    }
    breakdown.read += read;
    breakdown.lint += lint.elapsed();
    assert!(
        plans.iter().all(|p| p.findings.iter().all(|f| f.allowed)),
        "the generated history passes the lint"
    );
    total
}

fn psql(files: &[PathBuf], url: &str) -> Duration {
    let started = Instant::now();
    let mut command = Command::new("psql");
    command.args(["-q", "-X", "-v", "ON_ERROR_STOP=1", "-d", url]);
    for file in files {
        command.arg("-f").arg(file);
    }
    let output = command.output().expect("run psql");
    assert!(
        output.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

fn sqlx_run(binary: &Path, dir: &Path, url: &str) -> Duration {
    let started = Instant::now();
    let output = Command::new(binary)
        .args(["migrate", "run", "--database-url", url, "--source"])
        .arg(dir)
        .output()
        .expect("run sqlx migrate");
    assert!(
        output.status.success(),
        "sqlx migrate run: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn ms(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("HISTORY_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let admin_url = service_url("DATABASE_URL");
    let admin = PgPool::connect(&admin_url).await.expect("connect to PostgreSQL");
    // `HISTORY_DIR` keeps the generated files there (to run a tool on them by hand).
    let keep = std::env::var_os("HISTORY_DIR").map(PathBuf::from);
    let dir = keep
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("cutover-history-{}", std::process::id())));
    let files = write_history(&dir);
    let sqlx = sqlx_cli();

    let (mut ours, mut psql_times, mut sqlx_times) = (Vec::new(), Vec::new(), Vec::new());
    let mut breakdown = Breakdown::default();
    for run in 0..runs {
        // Rotate the order so no tool always runs first (or on the warmest cache).
        for turn in 0..3 {
            match (run + turn) % 3 {
                0 => {
                    let db = Database::fresh(&admin, &admin_url, run, "cutover").await;
                    ours.push(runner(&dir, &db.url, &mut breakdown).await);
                    db.check_and_drop().await;
                }
                1 => {
                    let db = Database::fresh(&admin, &admin_url, run, "psql").await;
                    psql_times.push(psql(&files, &db.url));
                    db.check_and_drop().await;
                }
                _ => {
                    let db = Database::fresh(&admin, &admin_url, run, "sqlx").await;
                    sqlx_times.push(sqlx_run(&sqlx, &dir, &db.url));
                    db.check_and_drop().await;
                }
            }
        }
    }
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }

    let (ours_median, psql_median, sqlx_median) = (median(ours.clone()), median(psql_times), median(sqlx_times));
    let per_run = |total: Duration| total / u32::try_from(runs).unwrap_or(1);
    let (read, lint, statements) = (
        per_run(breakdown.read),
        per_run(breakdown.lint),
        per_run(breakdown.statements),
    );
    let mean_ours = per_run(ours.iter().sum());
    println!("{MIGRATIONS} migrations, {runs} runs each, medians:");
    println!("  cutover runner      {}", ms(ours_median));
    println!("  one psql session    {}", ms(psql_median));
    println!("  sqlx migrate run    {}", ms(sqlx_median));
    println!(
        "  runner / psql = {:.2}x, runner / sqlx-cli = {:.2}x",
        ours_median.as_secs_f64() / psql_median.as_secs_f64(),
        ours_median.as_secs_f64() / sqlx_median.as_secs_f64()
    );
    let (before_first, after_last) = (per_run(breakdown.before_first), per_run(breakdown.after_last));
    let applying = mean_ours.saturating_sub(read + before_first + after_last);
    println!("  runner's time, mean of {} per run:", ms(mean_ours));
    println!("    reading the files              {}", ms(read));
    println!(
        "    before the first migration     {} (parsing + linting every file is {} of it; then connecting, ledger, lock, pre-flight)",
        ms(before_first),
        ms(lint)
    );
    println!(
        "    applying                       {} (the statements with their ledger rows {}, between migrations {})",
        ms(applying),
        ms(statements),
        ms(applying.saturating_sub(statements))
    );
    println!(
        "      of which {} migrations in one transaction (one round-trip each) {}, {} run statement by statement (CREATE INDEX CONCURRENTLY) {}",
        MIGRATIONS - breakdown.per_statement_count,
        ms(per_run(breakdown.transactional)),
        breakdown.per_statement_count,
        ms(per_run(breakdown.per_statement))
    );
    println!("    after the last migration       {}", ms(after_last));
    sqlite_comparison(runs).await;
}
