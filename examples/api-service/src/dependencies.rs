//! The service's dependencies: connected lazily, so the service starts while they are down,
//! and each with its health check.

use std::{str::FromStr, sync::Arc, time::Duration};

use anyhow::Context;
use cutover::health::{
    HealthRegistry, Registration,
    checks::{DiskCheck, MemoryCheck, MongoCheck, PostgresCheck, RabbitMqCheck, RedisCheck, SqliteCheck},
    redact::redact,
};
use lapin::Connection;
use sqlx::{
    PgPool, SqlitePool,
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions},
};
use tokio::sync::watch;

use crate::Config;

/// Clients for every configured dependency. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Dependencies {
    /// The embedded database, always present.
    pub sqlite: SqlitePool,
    /// PostgreSQL, when `DATABASE_URL` is set.
    pub postgres: Option<PgPool>,
    /// Redis, when `REDIS_URL` is set.
    pub redis: Option<redis::aio::ConnectionManager>,
    /// RabbitMQ, when `AMQP_URL` is set: the current connection, `None` while disconnected.
    pub rabbitmq: Option<watch::Receiver<Option<Arc<Connection>>>>,
    /// MongoDB, when `MONGODB_URL` is set.
    pub mongodb: Option<mongodb::Client>,
}

impl Dependencies {
    /// Open the embedded database and create clients for the others without waiting for them
    /// to answer. Fails only on configuration errors (a malformed URL, an unwritable file).
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let timeout = config.health_check_timeout;
        let sqlite_options = SqliteConnectOptions::new()
            .filename(&config.sqlite_path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let sqlite = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(sqlite_options)
            .await
            .with_context(|| format!("cannot open the SQLite database {}", config.sqlite_path.display()))?;

        let postgres = match &config.database_url {
            Some(url) => Some(
                PgPoolOptions::new()
                    .max_connections(10)
                    .acquire_timeout(timeout)
                    .connect_lazy(url)
                    .map_err(|error| invalid_url("DATABASE_URL", url, &error))?,
            ),
            None => None,
        };

        let redis = match &config.redis_url {
            Some(url) => {
                let client =
                    redis::Client::open(url.as_str()).map_err(|error| invalid_url("REDIS_URL", url, &error))?;
                let manager_config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(2));
                Some(
                    redis::aio::ConnectionManager::new_lazy_with_config(client, manager_config)
                        .map_err(|error| invalid_url("REDIS_URL", url, &error))?,
                )
            }
            None => None,
        };

        let rabbitmq = match &config.amqp_url {
            Some(url) => {
                lapin::uri::AMQPUri::from_str(url).map_err(|error| invalid_url("AMQP_URL", url, &error))?;
                Some(RabbitMqCheck::reconnecting(url, "api-service").1)
            }
            None => None,
        };

        let mongodb = match &config.mongodb_url {
            Some(url) => {
                let mut options = mongodb::options::ClientOptions::parse(url)
                    .await
                    .map_err(|error| invalid_url("MONGODB_URL", url, &error))?;
                options.app_name = Some("api-service".to_owned());
                options.server_selection_timeout = Some(timeout);
                options.connect_timeout = Some(timeout);
                Some(mongodb::Client::with_options(options).map_err(|error| invalid_url("MONGODB_URL", url, &error))?)
            }
            None => None,
        };

        Ok(Self {
            sqlite,
            postgres,
            redis,
            rabbitmq,
            mongodb,
        })
    }

    /// A health registry with a check for each dependency: the databases, Redis and RabbitMQ
    /// are critical (as in the original brief); memory and disk only degrade the report.
    pub fn health(&self, config: &Config) -> anyhow::Result<HealthRegistry> {
        let timeout = config.health_check_timeout;
        let mut builder = HealthRegistry::builder()
            .version(config.service_version.clone())
            .background(config.health_check_interval)
            .register(Registration::new("sqlite", SqliteCheck::new(self.sqlite.clone())).timeout(timeout));
        if let Some(pool) = &self.postgres {
            builder =
                builder.register(Registration::new("postgres", PostgresCheck::new(pool.clone())).timeout(timeout));
        }
        if let Some(manager) = &self.redis {
            builder = builder.register(Registration::new("redis", RedisCheck::new(manager.clone())).timeout(timeout));
        }
        if let Some(current) = &self.rabbitmq {
            builder = builder
                .register(Registration::new("rabbitmq", RabbitMqCheck::watching(current.clone())).timeout(timeout));
        }
        if let Some(client) = &self.mongodb {
            builder = builder.register(Registration::new("mongodb", MongoCheck::new(client.clone())).timeout(timeout));
        }
        let data_dir = match config.sqlite_path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => ".".into(),
        };
        builder = builder
            .register(Registration::new("memory", MemoryCheck::new()))
            .register(Registration::new("disk", DiskCheck::new(data_dir)));
        Ok(builder.build()?)
    }
}

fn invalid_url(variable: &str, url: &str, error: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "{variable} is not usable ({}): {}",
        redact(url),
        redact(&error.to_string())
    )
}
