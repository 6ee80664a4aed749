//! Run with: `BOT_TOKEN=... API_URL=http://localhost:8000 cargo run -p bot-service`

use std::{io::IsTerminal, process::ExitCode};

use bot_service::{Command, Config, LogFormat};
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    if let Some(Command::Healthcheck) = config.command {
        return cutover::healthcheck::run(config.port).await;
    }
    // Refuse to start without what the bot cannot work without, before anything else.
    if let Err(missing) = config.required() {
        eprintln!("error: {missing}");
        return ExitCode::FAILURE;
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
    tracing::info!(config = ?config, "starting");
    match bot_service::run::serve(config).await {
        Ok(report) => report.exit(),
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
