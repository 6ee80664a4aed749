//! Configuration from flags, each with an environment-variable fallback.

use std::{fmt, net::IpAddr, time::Duration};

use clap::{Parser, Subcommand};
use cutover::{
    secrets::{Secret, SecretFileError},
    shutdown::{ShutdownConfig, parse_duration},
    telemetry::LogFormat,
};

/// bot-service: answers chat commands from RabbitMQ through the API.
///
/// Every flag can also be set through the environment variable named in its help.
#[derive(Clone, Parser)]
#[command(name = "bot-service", version, about)]
pub struct Config {
    /// What to do instead of running the bot.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The chat platform token (required; never logged or shown): commands must be signed with
    /// it, and replies are.
    #[arg(long, env = "BOT_TOKEN", hide_env_values = true)]
    pub bot_token: Option<String>,

    /// Base URL of the API, e.g. http://api-service:8000 (required).
    #[arg(long, env = "API_URL")]
    pub api_url: Option<String>,

    /// RabbitMQ URL.
    #[arg(
        long,
        env = "AMQP_URL",
        hide_env_values = true,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// The queue commands arrive on.
    #[arg(long, env = "BOT_COMMANDS_QUEUE", default_value = "bot.commands")]
    pub commands_queue: String,

    /// The queue replies go to.
    #[arg(long, env = "BOT_REPLIES_QUEUE", default_value = "bot.replies")]
    pub replies_queue: String,

    /// Address to listen on (probes and /metrics).
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Port to listen on (also what `healthcheck` probes).
    #[arg(long, env = "PORT", default_value_t = 8001)]
    pub port: u16,

    /// Version reported in `X-Service-Version` and health responses.
    #[arg(long, env = "SERVICE_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    pub service_version: String,

    /// Deployment environment (production, staging, ...), shown on `/`.
    #[arg(long, env = "ENVIRONMENT", default_value = "development")]
    pub environment: String,

    /// Time between two rounds of health checks.
    #[arg(long, env = "HEALTH_CHECK_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub health_check_interval: Duration,

    /// How long the process keeps serving probes after SIGTERM [default: 5s under Kubernetes, 0s otherwise].
    #[arg(long, env = "SHUTDOWN_DRAIN_DELAY", value_parser = parse_duration)]
    pub shutdown_drain_delay: Option<Duration>,

    /// How long commands in progress get once the consumer is cancelled [default: 20s].
    #[arg(long, env = "SHUTDOWN_TIMEOUT", value_parser = parse_duration)]
    pub shutdown_timeout: Option<Duration>,

    /// Log format: auto (text on a terminal, else JSON), json or text.
    #[arg(long, env = "LOG_FORMAT", default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

impl Config {
    /// Settings that may come from a file instead (`DATABASE_URL_FILE=/run/secrets/database_url`),
    /// as Docker and Kubernetes secrets are mounted.
    pub const SECRETS: &[Secret] = &[
        Secret::new("BOT_TOKEN", "--bot-token"),
        Secret::new("AMQP_URL", "--amqp-url"),
    ];

    /// The command line and the environment, with every `*_FILE` secret of [`Self::SECRETS`] read.
    pub fn load() -> Result<Self, SecretFileError> {
        Ok(Self::parse_from(cutover::secrets::args(Self::SECRETS)?))
    }
}

/// The token is a secret: `Debug` shows that it is set, never what it is.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("bot_token", &self.bot_token.as_ref().map(|_| "***"))
            .field("api_url", &self.api_url)
            .field("commands_queue", &self.commands_queue)
            .field("replies_queue", &self.replies_queue)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// The container health check, in images without curl: exit 0 once start-up has finished
    /// and while the process is live (a dependency outage never fails it), 1 otherwise.
    Healthcheck {
        /// Ask readiness (`/health/ready`) instead: for what routes on the container's health
        /// or waits for it, never for what restarts unhealthy containers.
        #[arg(long)]
        ready: bool,
    },
}

/// A required setting is missing or unusable.
#[derive(Debug)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

impl Config {
    /// The token and the API URL, or a message saying which is missing and why it matters.
    pub fn required(&self) -> Result<(String, url::Url), Invalid> {
        let token = self.bot_token.clone().filter(|t| !t.trim().is_empty()).ok_or_else(|| {
            Invalid("BOT_TOKEN is not set: the bot needs its chat platform token (--bot-token or BOT_TOKEN)".to_owned())
        })?;
        let api = self
            .api_url
            .as_deref()
            .ok_or_else(|| Invalid("API_URL is not set: the bot answers commands through the API (--api-url or API_URL, e.g. http://api-service:8000)".to_owned()))?;
        let api = url::Url::parse(api).map_err(|e| Invalid(format!("API_URL {api:?} is not a URL: {e}")))?;
        if !matches!(api.scheme(), "http" | "https") {
            return Err(Invalid(format!("API_URL {api} must be http:// or https://")));
        }
        Ok((token, api))
    }

    /// The shutdown timings: cutover's defaults, overridden by the flags that are set.
    pub fn shutdown(&self) -> ShutdownConfig {
        let mut config = ShutdownConfig::default();
        if let Some(delay) = self.shutdown_drain_delay {
            config = config.drain_delay(delay);
        }
        if let Some(timeout) = self.shutdown_timeout {
            config = config.shutdown_timeout(timeout);
        }
        config
    }
}
