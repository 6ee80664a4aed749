//! Configuration from flags, each with an environment-variable fallback.

use std::{net::IpAddr, time::Duration};

use clap::{Args, Parser, Subcommand};
use cutover::{
    secrets::{Secret, SecretFileError},
    shutdown::{ShutdownConfig, parse_duration},
    telemetry::LogFormat,
};

/// worker-service: stores the user events the API publishes, in MongoDB.
///
/// Every flag can also be set through the environment variable named in its help.
#[derive(Debug, Clone, Parser)]
#[command(name = "worker-service", version, about)]
pub struct Config {
    /// What to do instead of consuming.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// MongoDB URL.
    #[arg(
        long,
        env = "MONGODB_URL",
        hide_env_values = true,
        default_value = "mongodb://127.0.0.1:27017",
        global = true
    )]
    pub mongodb_url: String,

    /// The analytics database (default: the one named in the URL, else `analytics`).
    #[arg(long, env = "MONGODB_DATABASE", global = true)]
    pub database: Option<String>,

    /// Port of the probes and `/` (also what `healthcheck` probes).
    #[arg(long, env = "PORT", default_value_t = 8002, global = true)]
    pub port: u16,

    /// Settings of the consumer.
    #[command(flatten)]
    pub run: Run,
}

impl Config {
    /// Settings that may come from a file instead (`DATABASE_URL_FILE=/run/secrets/database_url`),
    /// as Docker and Kubernetes secrets are mounted.
    pub const SECRETS: &[Secret] = &[
        Secret::new("MONGODB_URL", "--mongodb-url"),
        Secret::new("AMQP_URL", "--amqp-url"),
    ];

    /// The command line and the environment, with every `*_FILE` secret of [`Self::SECRETS`] read.
    pub fn load() -> Result<Self, SecretFileError> {
        Ok(Self::parse_from(cutover::secrets::args(Self::SECRETS)?))
    }
}

/// Settings of the consumer.
#[derive(Debug, Clone, Args)]
pub struct Run {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Version reported in `X-Service-Version` and health responses.
    #[arg(long, env = "SERVICE_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    pub service_version: String,

    /// Deployment environment (production, staging, ...), shown on `/`.
    #[arg(long, env = "ENVIRONMENT", default_value = "development")]
    pub environment: String,

    /// RabbitMQ URL.
    #[arg(
        long,
        env = "AMQP_URL",
        hide_env_values = true,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// The topic exchange the API publishes user events to.
    #[arg(long, env = "EVENTS_EXCHANGE", default_value = "users")]
    pub exchange: String,

    /// The queue this worker consumes (bound to `user.*` on the exchange).
    #[arg(long, env = "EVENTS_QUEUE", default_value = "worker.user-events")]
    pub queue: String,

    /// Events handled at once.
    #[arg(long, env = "CONSUMER_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,

    /// Time between two rounds of health checks.
    #[arg(long, env = "HEALTH_CHECK_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub health_check_interval: Duration,

    /// How long the process keeps serving probes after SIGTERM [default: 5s under Kubernetes, 0s otherwise].
    #[arg(long, env = "SHUTDOWN_DRAIN_DELAY", value_parser = parse_duration)]
    pub shutdown_drain_delay: Option<Duration>,

    /// How long events in progress get once the consumer is cancelled [default: 20s].
    #[arg(long, env = "SHUTDOWN_TIMEOUT", value_parser = parse_duration)]
    pub shutdown_timeout: Option<Duration>,

    /// Log format: auto (text on a terminal, else JSON), json or text.
    #[arg(long, env = "LOG_FORMAT", default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// The analytics database's migrations.
    Migrate {
        /// What to do.
        #[command(subcommand)]
        action: Migrate,
    },
    /// The container health check, in images without curl: exit 0 once start-up has finished
    /// and while the process is live (a dependency outage never fails it), 1 otherwise.
    Healthcheck {
        /// Ask readiness (`/health/ready`) instead: for what routes on the container's health
        /// or waits for it, never for what restarts unhealthy containers.
        #[arg(long)]
        ready: bool,
    },
}

/// `migrate` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Migrate {
    /// Apply pending migrations (expand and backfill unless phases are named).
    Up {
        /// Only these phases (repeatable); `contract` runs only when named.
        #[arg(long = "phase")]
        phases: Vec<cutover_migrate::Phase>,
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
        /// Run contract migrations even while live workers were built without them (their
        /// writes may then be refused); recorded in the ledger with --reason.
        #[arg(long, requires = "reason")]
        force_contract: bool,
        /// Why the contract gate is overridden.
        #[arg(long, requires = "force_contract")]
        reason: Option<String>,
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

impl Config {
    /// The database name: `--database`, else the URL's, else `analytics`.
    pub fn database_name(&self) -> Option<String> {
        match &self.database {
            Some(name) => Some(name.clone()),
            None if url_names_database(&self.mongodb_url) => None,
            None => Some("analytics".to_owned()),
        }
    }
}

impl Run {
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

/// Whether `mongodb://host/<database>` names one.
fn url_names_database(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split_once('/')
        .map(|(_, path)| path.split('?').next().unwrap_or_default())
        .is_some_and(|name| !name.is_empty())
}
