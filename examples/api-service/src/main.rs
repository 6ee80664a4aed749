//! Run with: `cargo run -p api-service` (then `curl localhost:8000/health`).

use std::{io::IsTerminal, process::ExitCode};

use api_service::{Command, Config, LogFormat};
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    match config.command.clone() {
        Some(Command::Healthcheck) => return cutover::healthcheck::run(config.port).await,
        Some(Command::Migrate { phases }) => {
            return match api_service::migrate(&config, phases).await {
                Ok(report) => {
                    println!(
                        "applied: {}; already applied by others: {}",
                        api_service::migrations::versions(&report.applied),
                        api_service::migrations::versions(&report.applied_by_others)
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {error:#}");
                    ExitCode::FAILURE
                }
            };
        }
        None => {}
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::stdout().is_terminal();
    match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter).init(),
        LogFormat::Auto if !terminal => tracing_subscriber::fmt().json().with_env_filter(filter).init(),
        LogFormat::Auto | LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(terminal)
            .init(),
    }
    match api_service::serve(config).await {
        Ok(report) => report.exit(),
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
