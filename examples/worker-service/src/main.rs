//! Run with: `cargo run -p worker-service` (consume), or `cargo run -p worker-service -- migrate up`.

use std::process::ExitCode;

use anyhow::Context as _;
use cutover::{
    healthcheck::Check,
    telemetry::{LogFormat, LogTarget, Telemetry, TelemetryGuard},
};
use cutover_migrate::{
    Event, UpOptions,
    mongo::{self, Batching, MongoMigrator},
};
use worker_service::{Command, Config, Migrate, migrations};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    match config.command.clone() {
        Some(Command::Healthcheck { ready }) => cutover::healthcheck::run(config.port, Check::asked(ready)).await,
        Some(Command::Migrate { action }) => {
            let Some(_telemetry) = telemetry(&config, LogFormat::Text, "warn") else {
                return ExitCode::FAILURE;
            };
            match migrate(&config, action).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error:#}");
                    // As `cutover-migrate`: 3 when the contract gate refused (a script waits).
                    let code = error.downcast_ref().map_or(1, cutover_migrate::MigrateError::exit_code);
                    ExitCode::from(code)
                }
            }
        }
        None => {
            let Some(_telemetry) = telemetry(&config, config.run.log_format, "info") else {
                return ExitCode::FAILURE;
            };
            match worker_service::run::serve(config).await {
                Ok(report) => report.exit(),
                Err(error) => {
                    tracing::error!("{error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Logs on stderr (the `migrate` subcommands print their results on stdout), and traces to
/// `OTEL_EXPORTER_OTLP_ENDPOINT` when it is set.
fn telemetry(config: &Config, format: LogFormat, default_filter: &str) -> Option<TelemetryGuard> {
    let telemetry = Telemetry::builder("worker-service")
        .version(config.run.service_version.clone())
        .format(format)
        .target(LogTarget::Stderr)
        .default_filter(default_filter)
        .init();
    match telemetry {
        Ok(guard) => Some(guard),
        Err(error) => {
            eprintln!("error: {error}");
            None
        }
    }
}

async fn migrate(config: &Config, action: Migrate) -> anyhow::Result<()> {
    let db = mongo::connect(&config.mongodb_url, config.database_name().as_deref()).await?;
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
            reason,
            ..
        } => {
            let options = UpOptions {
                phases: (!phases.is_empty()).then_some(phases),
                force_contract: reason,
                ..UpOptions::default()
            };
            let report = migrator
                .lock_wait(lock_wait)
                .lease_duration(lease)
                .up(&db, &options)
                .await
                .context("the analytics migration stopped")?;
            println!("{report}");
        }
        Migrate::Status => {
            let status = migrator.status(&db).await?;
            for entry in &status {
                println!(
                    "{:>6}  {:<32} {:<9} {}",
                    entry.version, entry.name, entry.phase, entry.state
                );
            }
            for instance in migrator.instances(&db).await? {
                match instance.blocks(&status).as_slice() {
                    [] => println!("live: {instance}"),
                    blocks => println!("live: {instance}; blocks contract {blocks:?}"),
                }
            }
        }
        Migrate::Down { target } => {
            let report = migrator.down(&db, target).await?;
            println!("{}", report.reverted());
        }
    }
    Ok(())
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
