//! `cutover-migrate`: plan, apply, revert and inspect migrations from a shell.
//!
//! Run with: `cargo run -p cutover-migrate -- --database-url postgres://... status`, or
//! `cargo run -p cutover-migrate -- --mongodb-url mongodb://... --database app --source mongo status`.
//!
//! The migration files pick the backend: `.up.sql` files run on `--database-url`, `.up.json`
//! files on `--mongodb-url`.

use std::{
    collections::HashMap,
    io::IsTerminal,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use clap::{Parser, Subcommand};
use cutover_migrate::{
    Adoption, BackupPolicy, Dialect, Event, ForeignTool, ImportOptions, LintPolicy, MigrateError, MigrationSet,
    Migrator, Phase, PlannedMigration, Report, StatusEntry, UpOptions,
    instances::Instance,
    lint,
    mongo::{self, MongoMigrationSet, MongoMigrator},
};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

/// Lock-safe, resumable migrations for PostgreSQL, SQLite and MongoDB.
///
/// The files in --source pick the backend: `.up.sql` files run on --database-url,
/// `.up.json` files (MongoDB commands) on --mongodb-url.
#[derive(Debug, Parser)]
#[command(
    name = "cutover-migrate",
    version,
    about,
    after_help = "Exit codes: 0 done; 1 failed; 3 the contract gate refused: a live instance was built without a pending \
                  contract migration (`status` lists them); wait for it to drain, or --force-contract --reason."
)]
struct Cli {
    /// Database URL: postgres://user:password@host/db or sqlite://path.db.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    database_url: Option<String>,

    /// MongoDB URL, for `.up.json` migrations: mongodb://user:password@host/db.
    #[arg(long, env = "MONGODB_URL", hide_env_values = true, global = true)]
    mongodb_url: Option<String>,

    /// MongoDB database (default: the one named in --mongodb-url).
    #[arg(long, global = true)]
    database: Option<String>,

    /// Directory of `<version>_<name>.up.sql` (or `.up.json`) files.
    #[arg(long, default_value = "migrations", global = true)]
    source: PathBuf,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,

    /// How long to wait for another runner's lock (e.g. 5m).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration, global = true)]
    lock_wait: Duration,

    /// `lock_timeout` for each statement (e.g. 1s); a file's own directive wins.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration, global = true)]
    lock_timeout: Duration,

    /// The project's lint policy and baseline [default: cutover-migrate.toml in --source, when
    /// it exists].
    #[arg(long, global = true)]
    config: Option<PathBuf>,

    /// Accept a lint rule everywhere (`ban-drop-column`) or in some versions
    /// (`ban-drop-column@136..=140`, `renaming-column@142`); repeatable.
    #[arg(long = "allow", value_name = "RULE[@VERSIONS]", global = true)]
    allow: Vec<String>,

    /// Log more (info level); RUST_LOG overrides.
    #[arg(long, short, global = true)]
    verbose: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show every migration: pending, applied, running, failed, changed or missing.
    Status,
    /// Show what `up` would do, with the lint's findings. Changes nothing.
    Plan {
        /// Only these phases (repeatable); default expand and backfill.
        #[arg(long = "phase")]
        phases: Vec<Phase>,
    },
    /// Apply pending migrations.
    Up {
        /// Only these phases (repeatable); default expand and backfill. Contract runs only
        /// when named.
        #[arg(long = "phase")]
        phases: Vec<Phase>,
        /// Stop after this version.
        #[arg(long = "to", allow_negative_numbers = true)]
        target: Option<i64>,
        /// Print what would run; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Take a verified pg_dump backup into this directory first.
        #[arg(long)]
        backup_dir: Option<PathBuf>,
        /// Backups to keep.
        #[arg(long, default_value_t = 5)]
        keep: usize,
        /// Restore the backup if a migration fails (loses writes made since the dump).
        #[arg(long, requires = "backup_dir")]
        restore_on_failure: bool,
        /// Run contract migrations even while live instances do not embed them: their requests
        /// that read what is removed will fail. Recorded in the ledger with --reason.
        #[arg(long, requires = "reason")]
        force_contract: bool,
        /// Why the contract gate is overridden (recorded in the ledger with who ran it).
        #[arg(long, requires = "force_contract")]
        reason: Option<String>,
    },
    /// Revert applied migrations newer than a version, with their stored down SQL.
    Down {
        /// Keep this version and older (`--to -1` or `--to 0` reverts everything).
        #[arg(long = "to", allow_negative_numbers = true)]
        target: i64,
    },
    /// Lint every migration file; no database needed.
    Lint {
        /// List the rule names `-- cutover:allow` accepts.
        #[arg(long)]
        rules: bool,
        /// PostgreSQL major version to lint for.
        #[arg(long, default_value_t = 15)]
        pg_version: u32,
        /// The database the files are for [default: from --database-url's scheme, else
        /// postgres]. SQLite files get no lock-safety rules (SQLite has one database-wide
        /// write lock), as `up` gives them none.
        #[arg(long, value_enum)]
        dialect: Option<Dialect>,
    },
    /// Take a verified pg_dump backup (PostgreSQL only).
    Backup {
        /// Directory for dumps.
        #[arg(long)]
        dir: PathBuf,
        /// Dumps to keep.
        #[arg(long, default_value_t = 5)]
        keep: usize,
    },
    /// Restore a backup (drops and recreates what the dump holds; loses later writes).
    Restore {
        /// The `.dump` file.
        file: PathBuf,
    },
    /// Record migrations up to a version as applied without running them, for a database
    /// migrated by hand or by a tool whose ledger is gone.
    Baseline {
        /// The last version the database already has [default: `baseline` in the config].
        #[arg(long = "to")]
        target: Option<i64>,
        /// Why (recorded in the ledger).
        #[arg(long, default_value = "adopted an existing database")]
        note: String,
    },
    /// Adopt what sqlx, diesel, refinery or Flyway applied, from their ledger in the same
    /// database (checksums compared where the tool kept comparable ones).
    Import {
        /// The tool [default: the one whose ledger is present].
        #[arg(long, value_enum)]
        from: Option<ForeignTool>,
        /// Adopt migrations whose file changed since the other tool ran it, instead of refusing.
        #[arg(long)]
        accept_changed: bool,
    },
    /// Accept the current files: realign checksums in the ledger, recording why.
    Repair {
        /// Why (recorded in the ledger).
        #[arg(long)]
        note: String,
    },
}

/// The command's JSON answer, printed once by `main`: with `--json` every command prints exactly
/// one document, its result, or `{"error": ..., "result": ...}` when it fails after producing
/// one (a lint that refuses: the findings and the refusal together).
static JSON_RESULT: Mutex<Option<serde_json::Value>> = Mutex::new(None);

fn print<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        *JSON_RESULT.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
    } else {
        println!("{}", text());
    }
}

fn json_result() -> Option<serde_json::Value> {
    JSON_RESULT.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// Progress bars on a terminal; `None` otherwise (tracing logs the events).
fn progress() -> Option<impl Fn(&Event) + Send + Sync + 'static> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bars = MultiProgress::new();
    let active: Arc<Mutex<HashMap<i64, ProgressBar>>> = Arc::default();
    Some(move |event: &Event| {
        let mut active = active.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            Event::Started {
                version,
                name,
                steps,
                resumed_at,
            } => {
                let bar = bars.add(ProgressBar::new(u64::try_from(*steps).unwrap_or(0)));
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_prefix(format!("{version} {name}"));
                bar.set_position(u64::try_from(*resumed_at).unwrap_or(0));
                bar.enable_steady_tick(Duration::from_millis(120));
                active.insert(*version, bar);
            }
            Event::Step { version, done, .. } => {
                if let Some(bar) = active.get(version) {
                    bar.set_position(u64::try_from(*done).unwrap_or(0));
                }
            }
            Event::Batch {
                version,
                last,
                upper,
                rows,
            } => {
                if let Some(bar) = active.get(version) {
                    bar.set_length(u64::try_from(*upper).unwrap_or(0));
                    bar.set_position(u64::try_from(*last).unwrap_or(0));
                    bar.set_message(format!("{rows} rows or documents"));
                }
            }
            Event::LockRetry { version, attempt } => {
                if let Some(bar) = active.get(version) {
                    bar.set_message(format!("lock busy, retry {attempt}"));
                }
            }
            Event::Applied { version, duration_ms } => {
                if let Some(bar) = active.remove(version) {
                    bar.finish_with_message(format!("applied in {duration_ms} ms"));
                }
            }
            Event::WaitingForLock { waited_ms } => {
                let _ = bars.println(format!("waiting for another runner's lock ({} s)", waited_ms / 1000));
            }
            Event::Warning { message } => {
                let _ = bars.println(format!("warning: {message}"));
            }
            _ => {}
        }
    })
}

/// The migrations in `--source` and the database they run on.
enum Backend {
    Sql(Migrator, String),
    Mongo(MongoMigrator, mongodb::Database),
}

/// What the files in `dir` are: `.up.sql` (or none yet) → SQL, only `.json` → MongoDB.
fn is_mongo_source(dir: &Path) -> Result<bool, MigrateError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(false); // the SQL loader reports the unreadable directory
    };
    let (mut sql, mut json) = (0, 0);
    for entry in entries.flatten() {
        match entry.path().extension().and_then(|e| e.to_str()) {
            Some("sql") => sql += 1,
            Some("json") => json += 1,
            _ => {}
        }
    }
    if sql > 0 && json > 0 {
        return Err(MigrateError::Source {
            origin: dir.display().to_string(),
            line: None,
            message: format!(
                "mixes {sql} .sql and {json} .json files; keep SQL and MongoDB migrations in separate directories"
            ),
        });
    }
    Ok(json > 0)
}

/// The lint policy: `--config` (or `cutover-migrate.toml` in --source), then `--allow` flags.
fn policy(cli: &Cli) -> Result<LintPolicy, MigrateError> {
    let default = cli.source.join(lint::POLICY_FILE);
    let mut policy = match &cli.config {
        Some(path) => LintPolicy::from_file(path)?,
        None if default.is_file() => LintPolicy::from_file(&default)?,
        None => LintPolicy::default(),
    };
    for spec in &cli.allow {
        policy = policy.allow_spec(spec)?;
    }
    Ok(policy)
}

impl Backend {
    async fn open(cli: &Cli) -> Result<Self, MigrateError> {
        if is_mongo_source(&cli.source)? {
            let url = cli.mongodb_url.as_deref().ok_or_else(|| {
                MigrateError::UnsupportedUrl(format!(
                    "(none): {} holds MongoDB migrations; pass --mongodb-url or set MONGODB_URL",
                    cli.source.display()
                ))
            })?;
            let set = MongoMigrationSet::from_dir(&cli.source)?;
            let db = mongo::connect(url, cli.database.as_deref()).await?;
            let mut migrator = MongoMigrator::new(set).lock_wait(cli.lock_wait);
            if let Some(sink) = progress() {
                migrator = migrator.on_event(sink);
            }
            return Ok(Self::Mongo(migrator, db));
        }
        let url = cli.database_url.clone().ok_or_else(|| {
            MigrateError::UnsupportedUrl("(none): pass --database-url or set DATABASE_URL".to_owned())
        })?;
        let mut migrator = Migrator::new(MigrationSet::from_dir(&cli.source)?)
            .lock_wait(cli.lock_wait)
            .lock_timeout(cli.lock_timeout)
            .lint_policy(policy(cli)?);
        if let Some(sink) = progress() {
            migrator = migrator.on_event(sink);
        }
        Ok(Self::Sql(migrator, url))
    }

    async fn status(&self) -> Result<Vec<StatusEntry>, MigrateError> {
        match self {
            Self::Sql(migrator, url) => migrator.status(url).await,
            Self::Mongo(migrator, db) => migrator.status(db).await,
        }
    }

    async fn instances(&self) -> Result<Vec<Instance>, MigrateError> {
        match self {
            Self::Sql(migrator, url) => migrator.instances(url).await,
            Self::Mongo(migrator, db) => migrator.instances(db).await,
        }
    }

    async fn plan(&self, options: &UpOptions) -> Result<Vec<PlannedMigration>, MigrateError> {
        match self {
            Self::Sql(migrator, url) => migrator.plan(url, options).await,
            Self::Mongo(migrator, db) => migrator.plan(db, options).await,
        }
    }

    async fn up(&self, options: &UpOptions) -> Result<Report, MigrateError> {
        match self {
            Self::Sql(migrator, url) => migrator.up(url, options).await,
            Self::Mongo(migrator, db) => migrator.up(db, options).await,
        }
    }

    async fn down(&self, target: i64) -> Result<Report, MigrateError> {
        match self {
            Self::Sql(migrator, url) => migrator.down(url, target).await,
            Self::Mongo(migrator, db) => migrator.down(db, target).await,
        }
    }

    async fn repair(&self, note: &str) -> Result<Vec<i64>, MigrateError> {
        match self {
            Self::Sql(migrator, url) => migrator.repair(url, note).await,
            Self::Mongo(migrator, db) => migrator.repair(db, note).await,
        }
    }

    /// The SQL migrator and URL, for the commands MongoDB does not have yet.
    fn sql_only(self, what: &str) -> Result<(Migrator, String), MigrateError> {
        match self {
            Self::Sql(migrator, url) => Ok((migrator, url)),
            Self::Mongo(..) => Err(MigrateError::Preflight(format!(
                "{what} is for PostgreSQL and SQLite; MongoDB migrations cannot be adopted yet"
            ))),
        }
    }

    /// The PostgreSQL URL, for the commands only PostgreSQL has.
    fn postgres_only(self, what: &str) -> Result<(Migrator, String), MigrateError> {
        match self {
            Self::Sql(migrator, url) => Ok((migrator, url)),
            Self::Mongo(..) => Err(MigrateError::Preflight(format!(
                "{what} uses pg_dump and exists for PostgreSQL only; for MongoDB take a mongodump before migrating"
            ))),
        }
    }
}

fn phases(phases: Vec<Phase>) -> Option<Vec<Phase>> {
    (!phases.is_empty()).then_some(phases)
}

async fn run(cli: Cli) -> Result<(), MigrateError> {
    match cli.command {
        Command::Status => {
            let backend = Backend::open(&cli).await?;
            let status = backend.status().await?;
            let instances = backend.instances().await?;
            let blocks: Vec<Vec<i64>> = instances.iter().map(|i| i.blocks(&status)).collect();
            let listed = listed_instances(&instances, &blocks);
            print(
                cli.json,
                &serde_json::json!({ "migrations": status, "instances": listed }),
                || {
                    let mut out = format!("{:>8}  {:<40} {:<9} {}\n", "version", "name", "phase", "state");
                    for entry in &status {
                        let detail = entry
                            .ledger
                            .as_ref()
                            .and_then(|l| {
                                l.error.clone().or_else(|| {
                                    l.adopted_from
                                        .as_ref()
                                        .map(|from| format!("adopted: {from}, not run here"))
                                        .or_else(|| l.forced_contract.as_ref().map(|f| format!("FORCED: {f}")))
                                })
                            })
                            .map(|e| format!("  ({e})"))
                            .unwrap_or_default();
                        out.push_str(&format!(
                            "{:>8}  {:<40} {:<9} {}{detail}\n",
                            entry.version, entry.name, entry.phase, entry.state
                        ));
                    }
                    out.push_str(&render_instances(&instances, &blocks));
                    out.trim_end().to_owned()
                },
            );
        }
        Command::Plan { ref phases } => {
            let options = UpOptions {
                phases: self::phases(phases.clone()),
                ..UpOptions::default()
            };
            let backend = Backend::open(&cli).await?;
            let plan = backend.plan(&options).await?;
            let instances = backend.instances().await?;
            print_plan(cli.json, &plan, &instances, "");
        }
        Command::Up {
            ref phases,
            target,
            dry_run,
            ref backup_dir,
            keep,
            restore_on_failure,
            force_contract,
            ref reason,
        } => {
            let reason = match (force_contract, reason) {
                (true, Some(reason)) if reason.trim().is_empty() => {
                    return Err(MigrateError::Preflight(
                        "--reason is empty: say why the contract gate is overridden".to_owned(),
                    ));
                }
                (true, reason) => reason.clone(),
                (false, _) => None,
            };
            let options = UpOptions {
                phases: self::phases(phases.clone()),
                target,
                dry_run,
                force_contract: reason,
            };
            let mut backend = Backend::open(&cli).await?;
            if let Some(dir) = backup_dir {
                let (migrator, url) = backend.postgres_only("--backup-dir")?;
                backend = Backend::Sql(
                    migrator.backups(BackupPolicy {
                        dir: dir.clone(),
                        keep,
                        restore_on_failure,
                    }),
                    url,
                );
            }
            if dry_run {
                let plan = backend.plan(&options).await?;
                let instances = backend.instances().await?;
                print_plan(cli.json, &plan, &instances, "dry run: nothing was changed\n");
                return Ok(());
            }
            let report = backend.up(&options).await?;
            for forced in &report.forced {
                eprintln!("WARNING: FORCED past the contract gate: {forced}");
            }
            print(cli.json, &report, || report.to_string());
        }
        Command::Down { target } => {
            let report = Backend::open(&cli).await?.down(target).await?;
            print(cli.json, &report, || report.reverted().to_string());
        }
        Command::Lint {
            rules,
            pg_version,
            dialect,
        } => {
            if rules {
                let names = lint::rule_names();
                print(cli.json, &names, || names.join("\n"));
                return Ok(());
            }
            if is_mongo_source(&cli.source)? {
                // Parsing is the check: every file is read, every command must be an object.
                let set = MongoMigrationSet::from_dir(&cli.source)?;
                let count = set.migrations().len();
                print(
                    cli.json,
                    &serde_json::json!({ "migrations": count, "findings": [] }),
                    || format!("{count} MongoDB migrations parsed; no findings"),
                );
                return Ok(());
            }
            let dialect = dialect.unwrap_or_else(|| match cli.database_url.as_deref() {
                Some(url) if url.starts_with("sqlite:") => Dialect::Sqlite,
                _ => Dialect::Postgres,
            });
            let report = Migrator::new(MigrationSet::from_dir(&cli.source)?)
                .lint_policy(policy(&cli)?)
                .lint_all(pg_version, dialect)?;
            if dialect == Dialect::Sqlite {
                let count = report.len();
                print(cli.json, &report, || {
                    format!(
                        "{count} SQLite migrations parsed; no lock-safety rules apply to SQLite (one database-wide write lock), as in `up`"
                    )
                });
                return Ok(());
            }
            let refused: Vec<_> = report
                .iter()
                .flat_map(|m| m.findings.iter().filter(|f| !f.allowed).cloned())
                .collect();
            print(cli.json, &report, || {
                let findings: Vec<String> = report
                    .iter()
                    .flat_map(|m| m.findings.iter().map(ToString::to_string))
                    .collect();
                if findings.is_empty() {
                    "no findings".to_owned()
                } else {
                    findings.join("\n")
                }
            });
            if !refused.is_empty() {
                return Err(MigrateError::Lint(refused));
            }
        }
        Command::Backup { ref dir, keep } => {
            let (_, url) = Backend::open(&cli).await?.postgres_only("backup")?;
            let policy = BackupPolicy {
                dir: dir.clone(),
                keep,
                restore_on_failure: false,
            };
            let file = cutover_migrate::backup::backup(&url, &policy, 0).await?;
            print(cli.json, &file, || {
                format!("backup written and verified: {}", file.display())
            });
        }
        Command::Restore { ref file } => {
            let (_, url) = Backend::open(&cli).await?.postgres_only("restore")?;
            cutover_migrate::backup::restore(&url, file).await?;
            print(cli.json, file, || format!("restored {}", file.display()));
        }
        Command::Baseline { target, ref note } => {
            let target = match target {
                Some(target) => target,
                None => policy(&cli)?.baseline_version().ok_or_else(|| {
                    MigrateError::Adoption(format!(
                        "which version does the database have? pass --to <version>, or set `baseline` in {}",
                        lint::POLICY_FILE
                    ))
                })?,
            };
            let (migrator, url) = Backend::open(&cli).await?.sql_only("baseline")?;
            let adoption = migrator.baseline(&url, target, note).await?;
            print(cli.json, &adoption, || adoption.to_string());
        }
        Command::Import { from, accept_changed } => {
            let (migrator, url) = Backend::open(&cli).await?.sql_only("import")?;
            let adoption: Adoption = migrator.import(&url, ImportOptions { from, accept_changed }).await?;
            print(cli.json, &adoption, || adoption.to_string());
        }
        Command::Repair { ref note } => {
            let repaired = Backend::open(&cli).await?.repair(note).await?;
            print(cli.json, &repaired, || match repaired.as_slice() {
                [] => "nothing to repair".to_owned(),
                versions => format!("realigned the checksums of {} ({note})", join(versions)),
            });
        }
    }
    Ok(())
}

fn join(versions: &[i64]) -> String {
    versions.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// The live instances for `--json`, each with the pending contract migrations it blocks.
fn listed_instances(instances: &[Instance], blocks: &[Vec<i64>]) -> Vec<serde_json::Value> {
    instances
        .iter()
        .zip(blocks)
        .map(|(instance, blocks)| {
            let mut value = serde_json::to_value(instance).unwrap_or(serde_json::Value::Null);
            value["blocks"] = serde_json::json!(blocks);
            value
        })
        .collect()
}

/// The live instances for people, each with the pending contract migrations it blocks.
fn render_instances(instances: &[Instance], blocks: &[Vec<i64>]) -> String {
    if instances.is_empty() {
        return "\nno live instances registered\n".to_owned();
    }
    let mut out = format!("\n{} live instance(s):\n", instances.len());
    for (instance, blocks) in instances.iter().zip(blocks) {
        out.push_str(&format!("  {instance}"));
        if !blocks.is_empty() {
            out.push_str(&format!("; blocks contract {}", join(blocks)));
        }
        out.push('\n');
    }
    out
}

/// `plan` (and `up --dry-run`): the plan, then the live instances and what they block.
fn print_plan(json: bool, plan: &[PlannedMigration], instances: &[Instance], heading: &str) {
    let blocks: Vec<Vec<i64>> = instances
        .iter()
        .map(|instance| {
            plan.iter()
                .filter(|step| step.blocked_by.contains(&instance.id))
                .map(|step| step.version)
                .collect()
        })
        .collect();
    let listed = listed_instances(instances, &blocks);
    print(
        json,
        &serde_json::json!({ "migrations": plan, "instances": listed }),
        || {
            format!(
                "{heading}{}\n{}",
                render_plan(plan),
                render_instances(instances, &blocks)
            )
            .trim_end()
            .to_owned()
        },
    );
}

fn render_plan(plan: &[PlannedMigration]) -> String {
    if plan.is_empty() {
        return "nothing to apply".to_owned();
    }
    let mut out = String::new();
    for step in plan {
        out.push_str(&format!(
            "{:>8}  {:<40} {:<9} {}",
            step.version,
            step.name,
            step.phase.as_str(),
            step.mode
        ));
        if let Some(reason) = &step.reason {
            out.push_str(&format!(" ({reason})"));
        }
        if step.resume_at > 0 {
            out.push_str(&format!(", resumes at statement {}", step.resume_at + 1));
        }
        if !step.blocked_by.is_empty() {
            out.push_str(&format!(
                ", REFUSED while {} live instance(s) do not embed it: {}",
                step.blocked_by.len(),
                step.blocked_by.join(", ")
            ));
        }
        out.push('\n');
        for finding in &step.findings {
            out.push_str(&format!("          {finding}\n"));
        }
    }
    out.trim_end().to_owned()
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = if cli.verbose { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .init();
    let json = cli.json;
    let outcome = run(cli).await;
    if json {
        let document = match (&outcome, json_result()) {
            (Ok(()), result) => result.unwrap_or(serde_json::Value::Null),
            (Err(MigrateError::ContractBlocked(blocked)), None) => {
                serde_json::json!({ "error": outcome.as_ref().err().map(ToString::to_string), "blocked": blocked })
            }
            (Err(error), None) => serde_json::json!({ "error": error.to_string() }),
            (Err(error), Some(result)) => serde_json::json!({ "error": error.to_string(), "result": result }),
        };
        println!("{}", serde_json::to_string_pretty(&document).unwrap_or_default());
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // 3 for the contract gate, so a deploy script can wait for old instances and retry.
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
