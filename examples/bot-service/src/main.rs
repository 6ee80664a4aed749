//! Run with: `BOT_TOKEN=... API_URL=http://localhost:8000 cargo run -p bot-service`

use std::process::ExitCode;

use bot_service::{Command, Config};
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
    if let Some(Command::Healthcheck { ready }) = config.command {
        return cutover::healthcheck::run(config.port, Check::asked(ready)).await;
    }
    // Refuse to start without what the bot cannot work without, before anything else.
    if let Err(missing) = config.required() {
        eprintln!("error: {missing}");
        return ExitCode::FAILURE;
    }
    // Logs, and traces to OTEL_EXPORTER_OTLP_ENDPOINT when it is set.
    let _telemetry = match Telemetry::builder("bot-service").format(config.log_format).init() {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        api = config.api_url.as_deref().unwrap_or_default(),
        commands = %config.commands_queue,
        replies = %config.replies_queue,
        api_version = bot_service::commands::API_VERSION,
        "starting"
    );
    match bot_service::run::serve(config).await {
        Ok(report) => report.exit(),
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
