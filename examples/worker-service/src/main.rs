//! Run with: `cargo run -p worker-service -- migrate up` (MongoDB at `MONGODB_URL`).

use std::{io::IsTerminal, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use cutover_migrate::{
    Event, Phase, UpOptions,
    mongo::{self, Batching, MongoMigrator},
};
use tracing_subscriber::EnvFilter;
use worker_service::migrations;

/// The analytics worker of the cutover example services.
#[derive(Debug, Parser)]
#[command(name = "worker-service", version, about)]
struct Cli {
    /// MongoDB URL.
    #[arg(
        long,
        env = "MONGODB_URL",
        hide_env_values = true,
        default_value = "mongodb://127.0.0.1:27017"
    )]
    mongodb_url: String,

    /// The analytics database (default: the one named in the URL, else `analytics`).
    #[arg(long, env = "MONGODB_DATABASE")]
    database: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The analytics database's migrations.
    Migrate {
        #[command(subcommand)]
        action: Migrate,
    },
}

#[derive(Debug, Subcommand)]
enum Migrate {
    /// Apply pending migrations (expand and backfill unless phases are named).
    Up {
        /// Only these phases (repeatable); `contract` runs only when named.
        #[arg(long = "phase")]
        phases: Vec<Phase>,
        /// Documents per batch.
        #[arg(long, default_value_t = 1_000)]
        batch_size: u32,
        /// Pause between batches (e.g. 100ms, 0s).
        #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
        pause: Duration,
        /// How long to wait for another runner's lease.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        lock_wait: Duration,
        /// How long the lease outlives a runner that dies (refreshed every third of it).
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        lease: Duration,
    },
    /// Show where each migration stands.
    Status,
    /// Revert applied migrations newer than a version.
    Down {
        /// Keep this version and older.
        #[arg(long = "to")]
        target: i64,
    },
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let Command::Migrate { action } = cli.command;
    let database = match cli.database {
        Some(name) => Some(name),
        None if url_names_database(&cli.mongodb_url) => None,
        None => Some("analytics".to_owned()),
    };
    let db = mongo::connect(&cli.mongodb_url, database.as_deref()).await?;
    let batching = match &action {
        Migrate::Up { batch_size, pause, .. } => Batching {
            size: (*batch_size).max(1),
            pause: *pause,
        },
        _ => Batching::default(),
    };
    let migrator = MongoMigrator::new(migrations::migrations(batching)?).on_event(report);
    match action {
        Migrate::Up {
            phases,
            lock_wait,
            lease,
            ..
        } => {
            let options = UpOptions {
                phases: (!phases.is_empty()).then_some(phases),
                ..UpOptions::default()
            };
            let report = migrator
                .lock_wait(lock_wait)
                .lease_duration(lease)
                .up(&db, &options)
                .await
                .context("the analytics migration stopped")?;
            match report.applied.as_slice() {
                [] => println!("nothing to apply"),
                applied => println!("applied {applied:?}"),
            }
            if !report.skipped_phase.is_empty() {
                println!("left for a later phase: {:?}", report.skipped_phase);
            }
        }
        Migrate::Status => {
            for entry in migrator.status(&db).await? {
                println!(
                    "{:>6}  {:<32} {:<9} {}",
                    entry.version, entry.name, entry.phase, entry.state
                );
            }
        }
        Migrate::Down { target } => {
            let report = migrator.down(&db, target).await?;
            println!("reverted {:?}", report.applied);
        }
    }
    Ok(())
}

/// Whether `mongodb://host/<database>` names one.
fn url_names_database(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split_once('/')
        .map(|(_, path)| path.split('?').next().unwrap_or_default())
        .is_some_and(|name| !name.is_empty())
}

/// Progress on stderr, one line per batch and step.
fn report(event: &Event) {
    match event {
        Event::Started {
            version,
            name,
            resumed_at,
            ..
        } if *resumed_at > 0 => eprintln!("{version} {name}: resuming at step {}", resumed_at + 1),
        Event::Started { version, name, .. } => eprintln!("{version} {name}: started"),
        Event::Batch {
            version, rows, upper, ..
        } => eprintln!("{version}: {rows}/{upper} documents"),
        Event::Applied { version, duration_ms } => eprintln!("{version}: applied in {duration_ms} ms"),
        Event::WaitingForLock { waited_ms } => {
            eprintln!("waiting for another runner's lease ({} s)", waited_ms / 1000);
        }
        _ => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
