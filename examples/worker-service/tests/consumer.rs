//! The real `worker-service` binary against the real RabbitMQ and MongoDB of the services
//! script: events stored once however often they are delivered, malformed ones rejected, a
//! drain on SIGTERM, and the whole path from the API's `POST /api/users` to MongoDB.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::{
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use cutover_migrate::mongo;
use cutover_tests::{KillOnDrop, service_url, unique};
use lapin::{
    BasicProperties, Connection, ConnectionProperties, ExchangeKind,
    options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions},
    types::FieldTable,
};
use mongodb::{
    Database,
    bson::{Document, doc},
};

struct Worker {
    child: KillOnDrop,
    port: u16,
    exchange: String,
    db: Database,
    log: std::path::PathBuf,
}

impl Worker {
    async fn start() -> Self {
        let worker = Self::spawn(&service_url("MONGODB_URL")).await;
        worker.wait_ready().await;
        worker
    }

    /// Start the binary with MongoDB at `mongodb_url`, without waiting for readiness.
    async fn spawn(mongodb_url: &str) -> Self {
        let name = unique("worker");
        let db = mongo::connect(&service_url("MONGODB_URL"), Some(&name)).await.unwrap();
        let port = cutover_tests::free_port();
        let log = std::env::temp_dir().join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_worker-service"))
            .env_clear()
            .env("MONGODB_URL", mongodb_url)
            .env("MONGODB_DATABASE", &name)
            .env("AMQP_URL", service_url("AMQP_URL"))
            .env("EVENTS_EXCHANGE", &name)
            .env("EVENTS_QUEUE", &name)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("HEALTH_CHECK_INTERVAL", "500ms")
            .env("SHUTDOWN_DRAIN_DELAY", "0s")
            .env("SHUTDOWN_TIMEOUT", "5s")
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(log.with_extension("err")).unwrap()))
            .spawn()
            .unwrap();
        Self {
            child: KillOnDrop(child),
            port,
            exchange: name,
            db,
            log,
        }
    }

    async fn wait_ready(&self) {
        if let Err(why) = cutover_tests::wait_ready(self.port, Duration::from_secs(60)).await {
            panic!(
                "worker: {why}\n{}",
                std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default()
            );
        }
    }

    async fn count(&self, collection: &str, filter: Document) -> u64 {
        self.db
            .collection::<Document>(collection)
            .count_documents(filter)
            .await
            .unwrap()
    }

    /// Wait until `collection` holds `n` documents matching `filter`.
    async fn wait_for(&self, collection: &str, filter: Document, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let count = self.count(collection, filter.clone()).await;
            if count >= n {
                return;
            }
            assert!(Instant::now() < deadline, "{collection}: {count} of {n} documents");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn publisher(exchange: &str) -> (Arc<Connection>, lapin::Channel) {
    let connection = Arc::new(
        Connection::connect(&service_url("AMQP_URL"), ConnectionProperties::default())
            .await
            .unwrap(),
    );
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
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
        .await
        .unwrap();
    (connection, channel)
}

async fn publish(channel: &lapin::Channel, exchange: &str, body: &str) {
    channel
        .basic_publish(
            exchange.into(),
            "user.created".into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_stored_once_however_often_it_arrives_and_sigterm_drains() {
    let mut worker = Worker::start().await;
    let (_connection, channel) = publisher(&worker.exchange).await;
    for round in 0..2 {
        for n in 0..40 {
            let event = format!(
                r#"{{"id":"e-{n}","type":"user.created","user_id":{n},"timestamp":"2026-11-26T10:00:{:02}Z","data":{{"round":{round}}}}}"#,
                n % 60
            );
            publish(&channel, &worker.exchange, &event).await;
        }
    }
    publish(&channel, &worker.exchange, "not json").await;
    publish(
        &channel,
        &worker.exchange,
        r#"{"id":"bad-time","type":"user.created","user_id":1,"timestamp":"yesterday"}"#,
    )
    .await;
    // A marker published last: once it is stored, everything before it was handled.
    publish(
        &channel,
        &worker.exchange,
        r#"{"id":"last","type":"user.created","user_id":1,"timestamp":"2026-11-26T11:00:00Z"}"#,
    )
    .await;
    worker.wait_for("events", doc! { "_id": "last" }, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(
        worker.count("events", doc! {}).await,
        41,
        "40 events once each, plus the marker"
    );
    assert_eq!(worker.count("user_behavior", doc! {}).await, 41);
    assert_eq!(worker.count("events", doc! { "_id": "bad-time" }).await, 0, "rejected");
    assert_eq!(
        worker.count("events", doc! { "metadata.round": 0 }).await,
        40,
        "the first delivery is the one kept"
    );
    assert_eq!(
        worker
            .count("events", doc! { "processing_status": "pending", "version": "1.3.0" })
            .await,
        41
    );

    Command::new("kill")
        .args(["-TERM", &worker.child.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = worker.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "drained within its budget: {status}");
    worker.db.drop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_created_through_the_api_is_stored_by_the_worker() {
    let worker = Worker::start().await;
    let api_port = cutover_tests::free_port();
    let sqlite = std::env::temp_dir().join(format!("{}.db", unique("api_for_worker")));
    let config = <api_service::Config as clap::Parser>::try_parse_from([
        "api-service",
        "--host",
        "127.0.0.1",
        "--port",
        &api_port.to_string(),
        "--sqlite-path",
        sqlite.to_str().unwrap(),
        "--amqp-url",
        &service_url("AMQP_URL"),
        "--events-exchange",
        &worker.exchange,
        "--health-check-interval",
        "500ms",
    ])
    .unwrap();
    let api = tokio::spawn(api_service::serve(config));
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], api_port));
    cutover_tests::wait_ready(api_port, Duration::from_secs(30))
        .await
        .unwrap();

    // The API takes its database from the environment (PostgreSQL when DATABASE_URL is set):
    // a name no other run used.
    let username = unique("grace");
    let created = reqwest::Client::new()
        .post(format!("http://{address}/api/users"))
        .header("content-type", "application/json")
        .header(
            "user-agent",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        )
        .body(format!(
            r#"{{"username":"{username}","email":"{username}@example.com","preferences":{{}}}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let user: serde_json::Value = created.json().await.unwrap();
    let id = format!("user.created:{}", user["id"]);

    worker.wait_for("user_behavior", doc! { "_id": &id }, 1).await;
    let event = worker
        .db
        .collection::<Document>("events")
        .find_one(doc! { "_id": &id })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        event.get_document("metadata").unwrap().get_str("username").unwrap(),
        username
    );
    let behavior = worker
        .db
        .collection::<Document>("user_behavior")
        .find_one(doc! { "_id": &id })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        behavior
            .get_document("device_info")
            .unwrap()
            .get_str("platform")
            .unwrap(),
        "iPhone"
    );

    // A change is its own event.
    let renamed = unique("grace_renamed");
    let replaced = reqwest::Client::new()
        .put(format!("http://{address}/api/users/{}", user["id"]))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"username":"{renamed}","email":"{renamed}@example.com","preferences":{{}}}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), 200);
    let updated_id = format!("user.updated:{}:", user["id"]);
    worker
        .wait_for(
            "events",
            doc! { "_id": { "$regex": format!("^{updated_id}") }, "event_type": "user.updated" },
            1,
        )
        .await;
    api.abort();
    worker.db.drop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_database_is_down_starts_not_ready_and_recovers() {
    let mongodb_url = service_url("MONGODB_URL");
    let proxy = cutover_tests::FaultProxy::start(&cutover_tests::host_port(&mongodb_url, 27017)).await;
    proxy.cut();
    let mut worker = Worker::spawn(&cutover_tests::retarget(&mongodb_url, proxy.address())).await;
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], worker.port));
    let probe = |path: &'static str| cutover::healthcheck::probe(address, path, Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe("/health/live").await != Ok(200) {
        assert!(
            Instant::now() < deadline,
            "the worker never answered its liveness probe"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(probe("/health/ready").await, Ok(503), "not ready without its database");
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "alive while the database is down"
    );

    proxy.restore();
    worker.wait_ready().await; // the migration ran once MongoDB answered
    assert_eq!(
        worker.count("_migrations", doc! { "state": "applied" }).await,
        4,
        "expand and backfill"
    );
    worker.child.kill().unwrap();
    worker.db.drop().await.unwrap();
}
