//! Run with: `cargo run -p api-service` (then `curl localhost:8000/health`).

use std::process::ExitCode;

use api_service::{Command, Config};
use cutover::{healthcheck::Check, telemetry::Telemetry};

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
        Some(Command::Healthcheck { ready }) => {
            return cutover::healthcheck::run(config.port, Check::asked(ready)).await;
        }
        Some(Command::Migrate { phases, reason, .. }) => {
            return match api_service::migrate(&config, phases, reason).await {
                Ok(report) => {
                    for forced in &report.forced {
                        eprintln!("WARNING: FORCED past the contract gate: {forced}");
                    }
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {error:#}");
                    // As `cutover-migrate`: 3 when the contract gate refused (a Job retries).
                    let code = error.downcast_ref().map_or(1, cutover_migrate::MigrateError::exit_code);
                    ExitCode::from(code)
                }
            };
        }
        None => {}
    }
    // Logs, and traces to OTEL_EXPORTER_OTLP_ENDPOINT when it is set.
    let telemetry = Telemetry::builder("api-service")
        .version(&config.service_version)
        .format(config.log_format)
        .init();
    let _telemetry = match telemetry {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    match api_service::serve(config).await {
        Ok(report) => report.exit(),
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
