//! Configuration from flags, each with an environment-variable fallback.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};
use cutover::{
    secrets::{Secret, SecretFileError},
    shutdown::{ShutdownConfig, parse_duration},
    telemetry::LogFormat,
};

/// api-service: an axum API with health probes on its own dependencies.
///
/// Every flag can also be set through the environment variable named in its help. Only the
/// embedded SQLite database is needed; each other dependency is used when its URL is set.
#[derive(Debug, Clone, Parser)]
#[command(name = "api-service", version, about)]
pub struct Config {
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Log format: auto (text on a terminal, else JSON), json or text.
    #[arg(long, env = "LOG_FORMAT", default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub port: u16,

    /// Admin port (on the same host address): `/metrics` and the full `/health` report
    /// (with error text and system details) move there; the probes answer on both ports.
    #[arg(long, env = "ADMIN_PORT")]
    pub admin_port: Option<u16>,

    /// Version reported in health responses.
    #[arg(long, env = "SERVICE_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    pub service_version: String,

    /// Deployment environment (production, staging, ...), shown on `/` and in the logs.
    #[arg(long, env = "ENVIRONMENT", default_value = "development")]
    pub environment: String,

    /// Embedded SQLite database file, created if missing.
    #[arg(long, env = "SQLITE_PATH", default_value = "api-service.db")]
    pub sqlite_path: PathBuf,

    /// PostgreSQL URL, e.g. postgres://user:password@host:5432/db.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Redis URL, e.g. redis://host:6379.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// RabbitMQ URL, e.g. amqp://user:password@host:5672/%2f.
    #[arg(long, env = "AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,

    /// The topic exchange `user.created` events are published to (when AMQP_URL is set).
    #[arg(long, env = "EVENTS_EXCHANGE", default_value = crate::events::EXCHANGE)]
    pub events_exchange: String,

    /// MongoDB URL, e.g. mongodb://host:27017.
    #[arg(long, env = "MONGODB_URL", hide_env_values = true)]
    pub mongodb_url: Option<String>,

    /// Time between two rounds of health checks (e.g. 10s, 500ms).
    #[arg(long, env = "HEALTH_CHECK_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub health_check_interval: Duration,

    /// How often this instance refreshes its row in the instance registry (which `contract`
    /// migrations wait on); the row expires after three.
    #[arg(long, env = "INSTANCE_HEARTBEAT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub instance_heartbeat: Duration,

    /// Time a single health check may take (e.g. 2s).
    #[arg(long, env = "HEALTH_CHECK_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub health_check_timeout: Duration,

    /// How long requests are still served after SIGTERM while load balancers catch up
    /// [default: 5s under Kubernetes, 0s otherwise].
    #[arg(long, env = "SHUTDOWN_DRAIN_DELAY", value_parser = parse_duration)]
    pub shutdown_drain_delay: Option<Duration>,

    /// How long in-flight requests get once new ones are refused [default: 20s].
    #[arg(long, env = "SHUTDOWN_TIMEOUT", value_parser = parse_duration)]
    pub shutdown_timeout: Option<Duration>,

    /// Hard limit for the whole shutdown, normally the orchestrator's grace period [default: 30s].
    #[arg(long, env = "SHUTDOWN_GRACE_PERIOD", value_parser = parse_duration)]
    pub shutdown_grace_period: Option<Duration>,

    /// Answer this fraction (0 to 1) of the application's requests with a 500 on purpose: a bad
    /// release, to rehearse canary analysis and rollback. Probes and /metrics are never failed.
    #[arg(long, env = "INJECT_ERROR_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub inject_error_rate: f64,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("expected a fraction from 0 to 1, e.g. 0.2, not {text:?}")),
    }
}

impl Config {
    /// Settings that may come from a file instead (`DATABASE_URL_FILE=/run/secrets/database_url`),
    /// as Docker and Kubernetes secrets are mounted.
    pub const SECRETS: &[Secret] = &[
        Secret::new("DATABASE_URL", "--database-url"),
        Secret::new("REDIS_URL", "--redis-url"),
        Secret::new("AMQP_URL", "--amqp-url"),
        Secret::new("MONGODB_URL", "--mongodb-url"),
    ];

    /// The command line and the environment, with every `*_FILE` secret of [`Self::SECRETS`] read.
    pub fn load() -> Result<Self, SecretFileError> {
        Ok(Self::parse_from(cutover::secrets::args(Self::SECRETS)?))
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
    /// Apply the embedded migrations to DATABASE_URL (or the SQLite file) and exit: the
    /// deployment's migration job. Exits with 3 when a contract migration is refused because
    /// an instance built without it is live (a Job retries; a script waits).
    Migrate {
        /// Phases to apply (repeatable) [default: expand].
        #[arg(long = "phase")]
        phases: Vec<cutover_migrate::Phase>,
        /// Run contract migrations even while live instances were built without them: their
        /// requests that read what is removed fail. Recorded in the ledger with --reason.
        #[arg(long, requires = "reason")]
        force_contract: bool,
        /// Why the contract gate is overridden.
        #[arg(long, requires = "force_contract")]
        reason: Option<String>,
    },
}

impl Config {
    /// The shutdown timings: cutover's defaults, overridden by the flags that are set.
    pub fn shutdown(&self) -> ShutdownConfig {
        let mut config = ShutdownConfig::default();
        if let Some(delay) = self.shutdown_drain_delay {
            config = config.drain_delay(delay);
        }
        if let Some(timeout) = self.shutdown_timeout {
            config = config.shutdown_timeout(timeout);
        }
        if let Some(grace_period) = self.shutdown_grace_period {
            config = config.grace_period(grace_period);
        }
        config
    }
}
