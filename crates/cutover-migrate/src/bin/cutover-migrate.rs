//! `cutover-migrate`: plan, apply, revert and inspect migrations from a shell.
//!
//! Run with: `cargo run -p cutover-migrate -- --database-url postgres://... status`

use std::{
    collections::HashMap,
    io::IsTerminal,
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

use clap::{Parser, Subcommand};
use cutover_migrate::{BackupPolicy, Event, MigrateError, MigrationSet, Migrator, Phase, UpOptions, lint};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

/// Lock-safe, resumable migrations for PostgreSQL and SQLite.
#[derive(Debug, Parser)]
#[command(name = "cutover-migrate", version, about)]
struct Cli {
    /// Database URL: postgres://user:password@host/db or sqlite://path.db.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    database_url: Option<String>,

    /// Directory of `<version>_<name>.up.sql` files.
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
        #[arg(long = "to")]
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
    },
    /// Revert applied migrations newer than a version, with their stored down SQL.
    Down {
        /// Keep this version and older.
        #[arg(long = "to")]
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
    },
    /// Take a verified pg_dump backup.
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
    /// Accept the current files: realign checksums in the ledger, recording why.
    Repair {
        /// Why (recorded in the ledger).
        #[arg(long)]
        note: String,
    },
}

fn print<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    } else {
        println!("{}", text());
    }
}

/// Progress bars on a terminal; nothing extra otherwise (tracing logs the events).
fn progress(migrator: Migrator) -> Migrator {
    if !std::io::stderr().is_terminal() {
        return migrator;
    }
    let bars = MultiProgress::new();
    let active: Arc<Mutex<HashMap<i64, ProgressBar>>> = Arc::default();
    migrator.on_event(move |event| {
        let mut active = active.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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
                    bar.set_message(format!("{rows} rows"));
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

async fn run(cli: Cli) -> Result<(), MigrateError> {
    let url = || {
        cli.database_url
            .clone()
            .ok_or_else(|| MigrateError::UnsupportedUrl("(none): pass --database-url or set DATABASE_URL".to_owned()))
    };
    let load = || MigrationSet::from_dir(&cli.source);
    let migrator = |set| {
        progress(
            Migrator::new(set)
                .lock_wait(cli.lock_wait)
                .lock_timeout(cli.lock_timeout),
        )
    };
    match cli.command {
        Command::Status => {
            let status = migrator(load()?).status(&url()?).await?;
            print(cli.json, &status, || {
                let mut out = format!("{:>8}  {:<40} {:<9} {}\n", "version", "name", "phase", "state");
                for entry in &status {
                    let detail = entry
                        .ledger
                        .as_ref()
                        .and_then(|l| l.error.clone())
                        .map(|e| format!("  ({e})"))
                        .unwrap_or_default();
                    out.push_str(&format!(
                        "{:>8}  {:<40} {:<9} {}{detail}\n",
                        entry.version, entry.name, entry.phase, entry.state
                    ));
                }
                out.trim_end().to_owned()
            });
        }
        Command::Plan { phases } => {
            let options = UpOptions {
                phases: (!phases.is_empty()).then_some(phases),
                ..UpOptions::default()
            };
            let plan = migrator(load()?).plan(&url()?, &options).await?;
            print(cli.json, &plan, || render_plan(&plan));
        }
        Command::Up {
            phases,
            target,
            dry_run,
            backup_dir,
            keep,
            restore_on_failure,
        } => {
            let options = UpOptions {
                phases: (!phases.is_empty()).then_some(phases),
                target,
                dry_run,
            };
            let mut runner = migrator(load()?);
            if let Some(dir) = backup_dir {
                runner = runner.backups(BackupPolicy {
                    dir,
                    keep,
                    restore_on_failure,
                });
            }
            let url = url()?;
            if dry_run {
                let plan = runner.plan(&url, &options).await?;
                print(cli.json, &plan, || {
                    format!("dry run: nothing was changed\n{}", render_plan(&plan))
                });
                return Ok(());
            }
            let report = runner.up(&url, &options).await?;
            print(cli.json, &report, || {
                let mut out = match report.applied.as_slice() {
                    [] => "nothing to apply".to_owned(),
                    applied => format!("applied {}", join(applied)),
                };
                if !report.applied_by_others.is_empty() {
                    out.push_str(&format!(
                        "; {} applied by another runner",
                        join(&report.applied_by_others)
                    ));
                }
                if !report.skipped_phase.is_empty() {
                    out.push_str(&format!("; {} left for a later phase", join(&report.skipped_phase)));
                }
                if let Some(backup) = &report.backup {
                    out.push_str(&format!("; backup {}", backup.display()));
                }
                out
            });
        }
        Command::Down { target } => {
            let report = migrator(load()?).down(&url()?, target).await?;
            print(cli.json, &report, || match report.applied.as_slice() {
                [] => "nothing to revert".to_owned(),
                reverted => format!("reverted {}", join(reverted)),
            });
        }
        Command::Lint { rules, pg_version } => {
            if rules {
                let names = lint::rule_names();
                print(cli.json, &names, || names.join("\n"));
                return Ok(());
            }
            let report = Migrator::new(load()?).lint_all(pg_version)?;
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
        Command::Backup { dir, keep } => {
            let file = cutover_migrate::backup::backup(
                &url()?,
                &BackupPolicy {
                    dir,
                    keep,
                    restore_on_failure: false,
                },
                0,
            )
            .await?;
            print(cli.json, &file, || {
                format!("backup written and verified: {}", file.display())
            });
        }
        Command::Restore { file } => {
            cutover_migrate::backup::restore(&url()?, &file).await?;
            print(cli.json, &file, || format!("restored {}", file.display()));
        }
        Command::Repair { note } => {
            let repaired = migrator(load()?).repair(&url()?, &note).await?;
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

fn render_plan(plan: &[cutover_migrate::PlannedMigration]) -> String {
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
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if json {
                println!("{}", serde_json::json!({ "error": error.to_string() }));
            }
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
