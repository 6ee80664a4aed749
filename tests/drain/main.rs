//! Draining a RabbitMQ consumer against the real broker, with a real process and a real
//! SIGTERM: publish N messages, stop the consumer in the middle of the stream while deliveries
//! are in flight, start it again, and check that every message was processed exactly once.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cutover_tests::{service_url, unique};
use lapin::{
    BasicProperties, Connection, ConnectionProperties,
    options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
};
use sqlx::{AssertSqlSafe, PgPool};

const MESSAGES: i64 = 400;

/// The consumer process; killed if a test fails before it exits on its own.
struct Consumer {
    child: Option<Child>,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Consumer {
    fn start(queue: &str, table: &str) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_drain-consumer"))
            .env("AMQP_URL", service_url("AMQP_URL"))
            .env("DATABASE_URL", service_url("DATABASE_URL"))
            .env("QUEUE", queue)
            .env("TABLE", table)
            .env("WORK_MS", "15")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self { child: Some(child) }
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.as_ref().expect("running").id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait for the process to exit; returns its status code and the consumer report.
    fn finish(mut self, within: Duration) -> (Option<i32>, serde_json::Value) {
        let started = Instant::now();
        let mut child = self.child.take().expect("running");
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if started.elapsed() >= within {
                let _ = child.kill();
                let _ = child.wait();
                panic!("consumer did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report = stdout
            .lines()
            .last()
            .map_or(serde_json::Value::Null, |line| serde_json::from_str(line).unwrap());
        (output.status.code(), report)
    }
}

async fn processed(pool: &PgPool, table: &str) -> (i64, i64) {
    sqlx::query_as::<_, (i64, i64)>(AssertSqlSafe(format!(
        "SELECT count(*), coalesce(max(times), 0)::bigint FROM {table}"
    )))
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn wait_for_processed(pool: &PgPool, table: &str, at_least: i64, within: Duration) -> i64 {
    let started = Instant::now();
    loop {
        let (count, _) = processed(pool, table).await;
        if count >= at_least {
            return count;
        }
        assert!(
            started.elapsed() < within,
            "only {count} of {at_least} processed within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stopped_mid_stream_loses_and_duplicates_nothing() {
    let pool = PgPool::connect(&service_url("DATABASE_URL")).await.unwrap();
    let table = unique("drained");
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, times int NOT NULL)"
    )))
    .execute(&pool)
    .await
    .unwrap();

    let connection = Connection::connect(&service_url("AMQP_URL"), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let queue = unique("cutover_drain");
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for id in 0..MESSAGES {
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                id.to_string().as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    // First run: stop it in the middle of the stream.
    let first = Consumer::start(&queue, &table);
    let before_stop = wait_for_processed(&pool, &table, 60, Duration::from_secs(30)).await;
    first.sigterm();
    let (code, report) = first.finish(Duration::from_secs(15));
    assert_eq!(code, Some(0), "the drain finished in budget: {report}");
    let (after_first, max_times) = processed(&pool, &table).await;
    assert!(after_first < MESSAGES, "stopped mid-stream, processed {after_first}");
    assert!(after_first >= before_stop);
    assert_eq!(max_times, 1);
    assert_eq!(
        report["acked"].as_i64().unwrap(),
        after_first,
        "every processed message was acked: {report}"
    );
    let returned = report["returned_at_stop"].as_i64().unwrap();
    assert!(returned > 0, "prefetched deliveries were handed back at once: {report}");
    println!("first run: {after_first} processed and acked, {returned} returned to the broker at the stop");

    // The rest is back in the queue right away (not only when a connection dies).
    let declared = channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(i64::from(declared.message_count()), MESSAGES - after_first);

    // Second run: finishes the queue.
    let second = Consumer::start(&queue, &table);
    wait_for_processed(&pool, &table, MESSAGES, Duration::from_secs(60)).await;
    second.sigterm();
    let (code, report) = second.finish(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{report}");

    let (total, max_times) = processed(&pool, &table).await;
    assert_eq!(total, MESSAGES, "none lost");
    assert_eq!(max_times, 1, "none processed twice");
    assert_eq!(report["acked"].as_i64().unwrap(), MESSAGES - after_first);

    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!("DROP TABLE {table}")))
        .execute(&pool)
        .await
        .unwrap();
}

/// A consumer whose connection dies subscribes again on the next one, loses nothing, and
/// still drains on shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_consumer_resubscribes_after_its_connection_dies() {
    use std::sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    };

    use cutover_shutdown::{
        Shutdown, ShutdownConfig,
        rabbitmq::{Disposition, Reconnecting},
    };
    use lapin::options::BasicConsumeOptions;

    let connect = || async {
        Arc::new(
            Connection::connect(&service_url("AMQP_URL"), ConnectionProperties::default())
                .await
                .unwrap(),
        )
    };
    let queue = unique("cutover_reconnect");
    let publisher = connect().await;
    let channel = publisher.create_channel().await.unwrap();
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let publish = |n: u64| {
        let channel = channel.clone();
        let queue = queue.clone();
        async move {
            channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    n.to_string().as_bytes(),
                    BasicProperties::default(),
                )
                .await
                .unwrap();
        }
    };

    let first = connect().await;
    let (current, watched) = tokio::sync::watch::channel(Some(Arc::clone(&first)));
    let handled = Arc::new(AtomicU64::new(0));
    let subscriptions = Arc::new(AtomicU64::new(0));
    let shutdown = Shutdown::builder()
        .config(ShutdownConfig::default().drain_delay(Duration::ZERO))
        .build()
        .unwrap();
    let (counted, subscribed, consumed) = (Arc::clone(&handled), Arc::clone(&subscriptions), queue.clone());
    let worker = shutdown.workers().spawn("reconnecting consumer", move |stop| {
        Reconnecting::new(watched)
            .retry_after(Duration::from_millis(100))
            .run(stop, move |connection| {
                let (counted, queue) = (Arc::clone(&counted), consumed.clone());
                subscribed.fetch_add(1, Ordering::SeqCst);
                async move {
                    let channel = connection.create_channel().await?;
                    let consumer = channel
                        .basic_consume(
                            queue.as_str().into(),
                            "t".into(),
                            BasicConsumeOptions::default(),
                            FieldTable::default(),
                        )
                        .await?;
                    let handler = move |_delivery| {
                        counted.fetch_add(1, Ordering::SeqCst);
                        async { Disposition::Ack }
                    };
                    Ok((channel, consumer, handler))
                }
            })
    });
    let wait_for = |n: u64| {
        let handled = Arc::clone(&handled);
        async move {
            let deadline = Instant::now() + Duration::from_secs(15);
            while handled.load(Ordering::SeqCst) < n {
                assert!(
                    Instant::now() < deadline,
                    "{} of {n} handled",
                    handled.load(Ordering::SeqCst)
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    for n in 0..5 {
        publish(n).await;
    }
    wait_for(5).await;
    // The connection dies; the reconnecting task would publish None, then a new connection.
    current.send_replace(None);
    first.close(320, "gone".into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 5..10 {
        publish(n).await;
    }
    current.send_replace(Some(connect().await));
    wait_for(10).await;
    assert_eq!(subscriptions.load(Ordering::SeqCst), 2, "subscribed again once");

    let handle = shutdown.handle();
    let sequence = tokio::spawn(shutdown.run());
    handle.trigger();
    let report = tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sequence.await.unwrap().exit_code(), 0, "drained inside the budget");
    assert_eq!(report.acked, 10, "{report:?}");
    assert!(report.error.is_some(), "the lost connection is reported: {report:?}");
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}
