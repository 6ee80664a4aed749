//! The bot: probes on HTTP, a RabbitMQ consumer for commands that answers through the API and
//! publishes replies, drained on SIGTERM.

use std::{net::SocketAddr, str::FromStr, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{Json, Router, routing::get};
use cutover::{
    Service,
    health::{
        HealthRegistry, Registration,
        checks::{HttpCheck, RabbitMqCheck},
        redact::redact,
    },
    shutdown::{
        ShutdownReport, ShutdownToken,
        rabbitmq::{Disposition, Reconnecting},
    },
};
use lapin::{
    BasicProperties, Channel, Connection,
    message::Delivery,
    options::{BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};
use serde_json::json;
use tokio::sync::watch;

use crate::{
    Config,
    commands::{self, Command, Incoming, Reply},
    platform::{SIGNATURE_HEADER, Signer},
};

/// Check the configuration, register the checks, consume until SIGTERM; returns the report.
pub async fn serve(config: Config) -> anyhow::Result<ShutdownReport> {
    let (token, api) = config.required()?;
    lapin::uri::AMQPUri::from_str(&config.amqp_url)
        .map_err(|error| anyhow::anyhow!("AMQP_URL is not usable ({}): {error}", redact(&config.amqp_url)))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .user_agent(concat!("bot-service/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")?;
    let (rabbitmq, connection) = RabbitMqCheck::reconnecting(&config.amqp_url, "bot-service");
    let upstream = HttpCheck::new(client.clone(), api.join("health/ready")?.as_str())?;
    let health = HealthRegistry::builder()
        .version(config.service_version.clone())
        .background(config.health_check_interval)
        .register(Registration::new("rabbitmq", rabbitmq).timeout(Duration::from_secs(2)))
        // The bot still answers (with "try again") while the API is down: not critical.
        .register(
            Registration::new("api", upstream)
                .non_critical()
                .timeout(Duration::from_secs(2)),
        )
        .build()?;
    let body = json!({
        "service": "bot-service",
        "version": config.service_version,
        "environment": config.environment,
        "api_version": commands::API_VERSION,
    });
    let router = Router::new().route("/", get(move || std::future::ready(Json(body.clone()))));
    let service = Service::builder(router)
        .service_version(&config.service_version)
        .prometheus()
        .health(health)
        .shutdown(config.shutdown())
        .bind(SocketAddr::new(config.host, config.port))
        .build()?;
    let bot = Bot {
        signer: Signer::new(&token),
        connection,
        client,
        api,
        commands: config.commands_queue.clone(),
        replies: config.replies_queue.clone(),
    };
    service.workers().spawn("commands consumer", move |stop| bot.run(stop));
    Ok(service.serve().await?)
}

struct Bot {
    signer: Signer,
    connection: watch::Receiver<Option<Arc<Connection>>>,
    client: reqwest::Client,
    api: url::Url,
    commands: String,
    replies: String,
}

impl Bot {
    /// Answer commands until the shutdown, subscribing again whenever the broker goes away.
    async fn run(self, stop: ShutdownToken) {
        let Self {
            signer,
            connection,
            client,
            api,
            commands,
            replies,
        } = self;
        let report = Reconnecting::new(connection)
            .concurrency(4)
            .run(stop, |connection| {
                let (client, api, commands, replies) = (client.clone(), api.clone(), commands.clone(), replies.clone());
                let signer = signer.clone();
                async move {
                    let (channel, consumer, publisher) = subscribe(&connection, &commands, &replies).await?;
                    tracing::info!(queue = %commands, "answering commands");
                    Ok((channel, consumer, move |delivery| {
                        let channel = Outgoing {
                            publisher: publisher.clone(),
                            replies: replies.clone(),
                            signer: signer.clone(),
                        };
                        handle(client.clone(), api.clone(), channel, delivery)
                    }))
                }
            })
            .await;
        tracing::info!(%report, "consumer stopped");
    }
}

/// Declare both queues, start consuming commands, and open a confirmed channel for replies.
async fn subscribe(
    connection: &Connection,
    commands: &str,
    replies: &str,
) -> Result<(Channel, lapin::Consumer, Channel), lapin::Error> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let channel = connection.create_channel().await?;
    channel
        .queue_declare(commands.into(), durable, FieldTable::default())
        .await?;
    channel.basic_qos(4, BasicQosOptions::default()).await?;
    let consumer = channel
        .basic_consume(
            commands.into(),
            "bot-service".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let publisher = connection.create_channel().await?;
    publisher.confirm_select(ConfirmSelectOptions::default()).await?;
    publisher
        .queue_declare(replies.into(), durable, FieldTable::default())
        .await?;
    Ok((channel, consumer, publisher))
}

/// Where replies go, and the key they are signed with.
struct Outgoing {
    publisher: Channel,
    replies: String,
    signer: Signer,
}

async fn handle(client: reqwest::Client, api: url::Url, outgoing: Outgoing, delivery: Arc<Delivery>) -> Disposition {
    // The message's text headers: the signature, and the sender's trace context if it sent one.
    let headers: Vec<(String, String)> = delivery
        .properties
        .headers()
        .iter()
        .flat_map(|headers| headers.inner().iter())
        .filter_map(|(name, value)| match value {
            AMQPValue::LongString(text) => Some((name.as_str().to_ascii_lowercase(), text.to_string())),
            _ => None,
        })
        .collect();
    // One span per command, continuing the sender's trace; the API calls and the reply carry it on.
    let span = tracing::info_span!("command");
    cutover::telemetry::continue_trace(
        &span,
        headers.iter().map(|(name, value)| (name.as_str(), value.as_str())),
    );
    let signature = headers
        .iter()
        .find(|(name, _)| name == SIGNATURE_HEADER)
        .map(|(_, value)| value.as_str());
    if let Err(why) = outgoing.signer.verify(&delivery.data, signature) {
        // Never acted on, never requeued: a forged command stays forged.
        span.in_scope(|| tracing::warn!(reason = %why, bytes = delivery.data.len(), "command rejected: not from the chat platform"));
        return Disposition::Reject;
    }
    tracing::Instrument::instrument(answer(client, api, outgoing, delivery), span).await
}

async fn answer(client: reqwest::Client, api: url::Url, outgoing: Outgoing, delivery: Arc<Delivery>) -> Disposition {
    let Outgoing {
        publisher,
        replies,
        signer,
    } = outgoing;
    let incoming: Incoming = match serde_json::from_slice(&delivery.data) {
        Ok(incoming) => incoming,
        Err(error) => {
            tracing::warn!(%error, "not a chat command; rejected");
            return Disposition::Reject;
        }
    };
    let text = commands::answer(&client, &api, &Command::parse(&incoming.text)).await;
    let reply = Reply {
        chat_id: incoming.chat_id,
        text,
    };
    let body = match serde_json::to_vec(&reply) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "cannot encode a reply");
            return Disposition::Reject;
        }
    };
    let confirmed = async {
        publisher
            .basic_publish(
                "".into(),
                replies.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into())
                    .with_headers(reply_headers(&signer, &body)),
            )
            .await?
            .await
    }
    .await;
    match confirmed {
        Ok(confirmation) if confirmation.is_ack() => Disposition::Ack,
        Ok(_) | Err(_) => {
            // Not delivered: the command goes back and is answered again.
            tracing::warn!(chat = reply.chat_id, "reply not confirmed; command requeued");
            Disposition::Requeue
        }
    }
}

/// A reply's signature, and the current trace's W3C context when traces are exported.
fn reply_headers(signer: &Signer, body: &[u8]) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(SIGNATURE_HEADER.into(), AMQPValue::LongString(signer.sign(body).into()));
    for (name, value) in cutover::telemetry::trace_context() {
        headers.insert(name.into(), AMQPValue::LongString(value.into()));
    }
    headers
}
