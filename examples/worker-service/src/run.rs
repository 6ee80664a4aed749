//! The worker: probes on HTTP, the v1.3.0 migration at start-up, and a RabbitMQ consumer that
//! stores user events and drains on SIGTERM.

use std::{net::SocketAddr, str::FromStr, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{Json, Router, routing::get};
use cutover::{
    Service,
    health::{
        HealthRegistry, Registration,
        checks::{MongoCheck, RabbitMqCheck},
        redact::redact,
    },
    shutdown::{
        ShutdownReport, ShutdownToken,
        rabbitmq::{Disposition, Reconnecting},
    },
};
use cutover_migrate::{
    MigrateError, Phase, UpOptions,
    instances::InstanceRegistry,
    mongo::{Batching, MongoMigrator},
};
use lapin::{
    Channel, Connection, ExchangeKind,
    options::{BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
};
use mongodb::{Client, Database, options::ClientOptions};
use serde_json::json;
use tokio::sync::watch;

use crate::{
    Config,
    events::{StoreError, UserEvent},
    migrations,
};

/// Connect lazily, register the checks, migrate, consume until SIGTERM; returns the report.
pub async fn serve(config: Config) -> anyhow::Result<ShutdownReport> {
    let run = &config.run;
    let mut options = ClientOptions::parse(&config.mongodb_url)
        .await
        .with_context(|| format!("MONGODB_URL is not usable ({})", redact(&config.mongodb_url)))?;
    options.app_name = Some("worker-service".to_owned());
    options.server_selection_timeout = Some(Duration::from_secs(2));
    let client = Client::with_options(options).context("cannot create the MongoDB client")?;
    let db = match config.database_name() {
        Some(name) => client.database(&name),
        None => client.default_database().context("MONGODB_URL names no database")?,
    };
    lapin::uri::AMQPUri::from_str(&run.amqp_url)
        .map_err(|error| anyhow::anyhow!("AMQP_URL is not usable ({}): {error}", redact(&run.amqp_url)))?;
    let (rabbitmq, connection) = RabbitMqCheck::reconnecting(&run.amqp_url, "worker-service");

    let health = HealthRegistry::builder()
        .version(run.service_version.clone())
        .background(run.health_check_interval)
        .register(Registration::new("mongodb", MongoCheck::new(client)).timeout(Duration::from_secs(2)))
        .register(Registration::new("rabbitmq", rabbitmq).timeout(Duration::from_secs(2)))
        .build()?;
    let (migrated, ready_to_consume) = watch::channel(false);
    // Registered with the migrations this binary embeds: `migrate up --phase contract` waits
    // until no live worker was built without them.
    let embedded = migrations::migrations(Batching::default())?;
    let service = Service::builder(router(&run.service_version, &run.environment))
        .service_version(&run.service_version)
        .register_instance(InstanceRegistry::new(&db, "worker-service", &embedded))
        .prometheus()
        .health(health)
        .shutdown(run.shutdown())
        .bind(SocketAddr::new(run.host, config.port))
        // Readiness waits for the schema; so does the consumer.
        .startup(migrate_on_startup(db.clone(), migrated))
        .build()?;
    let consumer = Consumer {
        connection,
        db,
        exchange: run.exchange.clone(),
        queue: run.queue.clone(),
        concurrency: run.concurrency.max(1),
    };
    service
        .workers()
        .spawn("user events consumer", move |stop| consumer.run(ready_to_consume, stop));
    Ok(service.serve().await?)
}

fn router(version: &str, environment: &str) -> Router {
    let body = json!({ "service": "worker-service", "version": version, "environment": environment });
    Router::new().route("/", get(move || std::future::ready(Json(body.clone()))))
}

/// Expand and backfill the analytics schema under the lease, retrying while MongoDB cannot be
/// reached; a migration that fails for another reason ends the start-up.
async fn migrate_on_startup(db: Database, migrated: watch::Sender<bool>) -> Result<(), MigrateError> {
    let migrator = MongoMigrator::new(migrations::migrations(Batching::default())?);
    let options = UpOptions {
        phases: Some(vec![Phase::Expand, Phase::Backfill]),
        ..UpOptions::default()
    };
    let mut delay = Duration::from_millis(500);
    loop {
        match migrator.up(&db, &options).await {
            Ok(report) => {
                tracing::info!(%report, "analytics schema up to date");
                migrated.send_replace(true);
                return Ok(());
            }
            Err(error @ MigrateError::Mongo { .. }) => {
                tracing::warn!(%error, retry_in = %humantime::format_duration(delay), "cannot migrate yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(error) => return Err(error),
        }
    }
}

struct Consumer {
    connection: watch::Receiver<Option<Arc<Connection>>>,
    db: Database,
    exchange: String,
    queue: String,
    concurrency: u16,
}

impl Consumer {
    /// Once the schema is migrated, consume until the shutdown, subscribing again whenever the
    /// broker goes away.
    async fn run(self, mut migrated: watch::Receiver<bool>, stop: ShutdownToken) {
        tokio::select! {
            _ = migrated.wait_for(|done| *done) => {}
            () = stop.cancelled() => return,
        }
        let Self {
            connection,
            db,
            exchange,
            queue,
            concurrency,
        } = self;
        let report = Reconnecting::new(connection)
            .concurrency(usize::from(concurrency))
            .run(stop, |connection| {
                let (db, exchange, queue) = (db.clone(), exchange.clone(), queue.clone());
                async move {
                    let (channel, consumer) = subscribe(&connection, &exchange, &queue, concurrency).await?;
                    tracing::info!(%queue, "consuming user events");
                    Ok((channel, consumer, move |delivery| handle(db.clone(), delivery)))
                }
            })
            .await;
        tracing::info!(%report, "consumer stopped");
    }
}

/// Declare the exchange, the queue and its binding, and start consuming.
async fn subscribe(
    connection: &Connection,
    exchange: &str,
    queue: &str,
    prefetch: u16,
) -> Result<(Channel, lapin::Consumer), lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            "user.*".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            "worker-service".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((channel, consumer))
}

async fn handle(db: Database, delivery: Arc<lapin::message::Delivery>) -> Disposition {
    // One span per event, continuing the trace of the request that published it.
    let span = tracing::info_span!("event", routing_key = %delivery.routing_key);
    if let Some(headers) = delivery.properties.headers() {
        let pairs: Vec<(&str, String)> = headers
            .inner()
            .iter()
            .filter_map(|(name, value)| match value {
                lapin::types::AMQPValue::LongString(text) => Some((name.as_str(), text.to_string())),
                _ => None,
            })
            .collect();
        cutover::telemetry::continue_trace(&span, pairs.iter().map(|(name, value)| (*name, value.as_str())));
    }
    tracing::Instrument::instrument(store(db, &delivery), span).await
}

async fn store(db: Database, delivery: &lapin::message::Delivery) -> Disposition {
    let event: UserEvent = match serde_json::from_slice(&delivery.data) {
        Ok(event) => event,
        Err(error) => {
            tracing::warn!(%error, "not a user event; rejected");
            return Disposition::Reject;
        }
    };
    match event.store(&db).await {
        Ok(stored) => {
            tracing::debug!(id = %event.id, stored = %stored, "event stored");
            Disposition::Ack
        }
        Err(StoreError::Invalid(reason)) => {
            tracing::warn!(id = %event.id, %reason, "invalid event; rejected");
            Disposition::Reject
        }
        Err(StoreError::Database(error)) => {
            tracing::warn!(id = %event.id, %error, "cannot store the event now; requeued");
            tokio::time::sleep(Duration::from_secs(1)).await;
            Disposition::Requeue
        }
    }
}
