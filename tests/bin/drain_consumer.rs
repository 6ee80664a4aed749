//! A RabbitMQ consumer process for the drain tests: consumes `QUEUE`, records each message in
//! PostgreSQL (`TABLE`, counting how many times each id was processed), and drains on SIGTERM
//! with `cutover_shutdown::rabbitmq::ConsumerDrain`. Prints its consumer report as JSON and
//! exits with the shutdown report's code.

use std::{process::ExitCode, sync::Arc, time::Duration};

use cutover_shutdown::{
    Shutdown, ShutdownConfig,
    rabbitmq::{ConsumerDrain, Disposition},
};
use lapin::{
    Connection, ConnectionProperties,
    options::{BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use sqlx::AssertSqlSafe;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set"))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let (amqp_url, database_url, queue, table) = (env("AMQP_URL"), env("DATABASE_URL"), env("QUEUE"), env("TABLE"));
    let work = Duration::from_millis(env("WORK_MS").parse().expect("WORK_MS is a number"));

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&database_url)
        .await
        .expect("postgres");
    let connection = Arc::new(
        Connection::connect(&amqp_url, ConnectionProperties::default())
            .await
            .expect("amqp"),
    );
    let channel = connection.create_channel().await.expect("channel");
    channel.basic_qos(10, BasicQosOptions::default()).await.expect("qos");
    let consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "drain-test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");

    let shutdown = Shutdown::builder()
        .config(
            ShutdownConfig::default()
                .drain_delay(Duration::ZERO)
                .shutdown_timeout(Duration::from_secs(10)),
        )
        .build()
        .expect("shutdown");
    let upsert = format!(
        "INSERT INTO {table} (id, times) VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET times = {table}.times + 1"
    );
    let drained = shutdown.workers().spawn("consumer", move |stop| async move {
        ConsumerDrain::new(channel)
            .concurrency(4)
            .close_connection(connection)
            .run(consumer, stop, move |delivery| {
                let pool = pool.clone();
                let upsert = upsert.clone();
                async move {
                    let id: i64 = String::from_utf8_lossy(&delivery.data)
                        .parse()
                        .expect("numeric message");
                    tokio::time::sleep(work).await;
                    match sqlx::query(AssertSqlSafe(upsert)).bind(id).execute(&pool).await {
                        Ok(_) => Disposition::Ack,
                        Err(_) => Disposition::Requeue,
                    }
                }
            })
            .await
    });
    eprintln!("consumer ready");
    let report = shutdown.run().await;
    let consumer_report = drained.await.expect("consumer task");
    println!("{}", serde_json::to_string(&consumer_report).expect("json"));
    report.exit()
}
