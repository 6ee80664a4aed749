//! The real `bot-service` binary against the real RabbitMQ and the API (served in-process on
//! its embedded SQLite): a command in, the reply out, in API version 1.2; a refusal to start
//! without its token; the token never in logs or health output.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use bot_service::platform::{SIGNATURE_HEADER, Signer};
use cutover_tests::{free_port, service_url, unique};
use futures_util::StreamExt;
use lapin::{
    BasicProperties, Connection, ConnectionProperties,
    options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};

const TOKEN: &str = "s3cr3t-bot-token-value";

async fn wait_ready(port: u16, what: &str) {
    if let Err(why) = cutover_tests::wait_ready(port, Duration::from_secs(30)).await {
        panic!("{what}: {why}");
    }
}

/// The API on its embedded SQLite, with one user; returns its base URL and the user's id.
async fn api_with_a_user() -> (String, i64) {
    let port = free_port();
    let sqlite = std::env::temp_dir().join(format!("{}.db", unique("api_for_bot")));
    let config = <api_service::Config as clap::Parser>::try_parse_from([
        "api-service",
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--sqlite-path",
        sqlite.to_str().unwrap(),
    ])
    .unwrap();
    // The API reads DATABASE_URL from the environment too: the SQLite file is what it uses
    // only when the variable is absent, so the user name is unique either way.
    tokio::spawn(api_service::serve(config));
    wait_ready(port, "the API").await;
    let username = unique("ada");
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/users"))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"username":"{username}","email":"{username}@example.com","preferences":{{"theme":"dark"}}}}"#
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (format!("http://127.0.0.1:{port}"), created["id"].as_i64().unwrap())
}

struct Bot {
    child: Child,
    port: u16,
    commands: String,
    replies: String,
    log: std::path::PathBuf,
}

impl Drop for Bot {
    fn drop(&mut self) {
        // No bot outlives its test, even one that failed half-way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_bot(api: &str) -> Bot {
    start_bot_with(api, &[])
}

fn start_bot_with(api: &str, envs: &[(&str, String)]) -> Bot {
    let name = unique("bot");
    let port = free_port();
    let log = std::env::temp_dir().join(format!("{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_bot-service"))
        .env_clear()
        .env("BOT_TOKEN", TOKEN)
        .env("API_URL", api)
        .env("AMQP_URL", service_url("AMQP_URL"))
        .env("BOT_COMMANDS_QUEUE", format!("{name}.commands"))
        .env("BOT_REPLIES_QUEUE", format!("{name}.replies"))
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("HEALTH_CHECK_INTERVAL", "500ms")
        .env("SHUTDOWN_DRAIN_DELAY", "0s")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(log.with_extension("err")).unwrap()))
        .spawn()
        .unwrap();
    Bot {
        child,
        port,
        commands: format!("{name}.commands"),
        replies: format!("{name}.replies"),
        log,
    }
}

/// The chat platform's side of RabbitMQ: a confirming channel to publish commands on, and the
/// bot's replies.
async fn chat_platform(bot: &Bot) -> (Connection, lapin::Channel, lapin::Consumer) {
    let connection = Connection::connect(&service_url("AMQP_URL"), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    for queue in [&bot.commands, &bot.replies] {
        channel
            .queue_declare(queue.as_str().into(), durable, FieldTable::default())
            .await
            .unwrap();
    }
    let replies = channel
        .basic_consume(
            bot.replies.as_str().into(),
            "test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    (connection, channel, replies)
}

/// Publish `body` on the bot's commands queue as the chat platform's gateway does: signed with
/// the token (unless `signature` says otherwise), with `headers` besides.
async fn send_command(channel: &lapin::Channel, bot: &Bot, body: &str, signature: Signature, mut headers: FieldTable) {
    let value = match signature {
        Signature::Valid => Some(Signer::new(TOKEN).sign(body.as_bytes())),
        Signature::Forged => Some(Signer::new("not-the-token").sign(body.as_bytes())),
        Signature::For(other) => Some(Signer::new(TOKEN).sign(other)),
        Signature::None => None,
    };
    if let Some(value) = value {
        headers.insert(SIGNATURE_HEADER.into(), AMQPValue::LongString(value.into()));
    }
    channel
        .basic_publish(
            "".into(),
            bot.commands.as_str().into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default().with_headers(headers),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

#[derive(Clone, Copy)]
enum Signature {
    /// Signed with the token.
    Valid,
    /// Signed with another token.
    Forged,
    /// Signed with the token, for another body.
    For(&'static [u8]),
    /// Not signed.
    None,
}

/// The next reply, acked, with its signature checked against the token.
async fn next_reply(replies: &mut lapin::Consumer) -> lapin::message::Delivery {
    let delivery = tokio::time::timeout(Duration::from_secs(20), replies.next())
        .await
        .expect("a reply within 20 s")
        .unwrap()
        .unwrap();
    delivery.ack(BasicAckOptions::default()).await.unwrap();
    let signature = match delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(SIGNATURE_HEADER))
    {
        Some(AMQPValue::LongString(value)) => Some(value.to_string()),
        _ => None,
    };
    Signer::new(TOKEN)
        .verify(&delivery.data, signature.as_deref())
        .unwrap_or_else(|why| panic!("the reply is not signed with the token: {why}"));
    delivery
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_answered_through_the_api_pinned_to_version_1_2() {
    let (api, user) = api_with_a_user().await;
    let mut bot = start_bot(&api);
    wait_ready(bot.port, "the bot").await;

    let (_connection, channel, mut replies) = chat_platform(&bot).await;
    for (chat, text) in [
        (1, format!("/user {user}")),
        (2, "/user 999999999".to_owned()),
        (3, "/dance".to_owned()),
    ] {
        let body = format!(r#"{{"chat_id":{chat},"text":"{text}"}}"#);
        send_command(&channel, &bot, &body, Signature::Valid, FieldTable::default()).await;
    }
    let mut answers = std::collections::BTreeMap::new();
    while answers.len() < 3 {
        let delivery = next_reply(&mut replies).await;
        let reply: bot_service::commands::Reply = serde_json::from_slice(&delivery.data).unwrap();
        answers.insert(reply.chat_id, reply.text);
    }
    assert!(answers[&1].starts_with(&format!("#{user} ada_")), "{answers:?}");
    assert!(answers[&1].ends_with("active"), "{answers:?}");
    assert_eq!(answers[&2], "no user #999999999");
    assert!(answers[&3].contains("unknown command"), "{answers:?}");

    // The token appears nowhere: not in the health report, not in the logs.
    let health = reqwest::get(format!("http://127.0.0.1:{}/health", bot.port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(health.contains("\"api\""), "the API is a check: {health}");
    Command::new("kill")
        .args(["-TERM", &bot.child.id().to_string()])
        .status()
        .unwrap();
    let status = bot.child.wait().unwrap();
    assert!(status.success(), "drained and exited 0: {status}");
    let logs =
        std::fs::read_to_string(&bot.log).unwrap() + &std::fs::read_to_string(bot.log.with_extension("err")).unwrap();
    assert!(logs.contains("starting"), "{logs}");
    assert!(!logs.contains(TOKEN) && !health.contains(TOKEN), "the token leaked");
}

/// Only the chat platform can make the bot act: a command without a signature, or signed with
/// another token, or whose body was changed after signing, is rejected (not answered, not
/// requeued), while a signed one sent after them is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_not_signed_with_the_token_are_rejected() {
    let mut bot = start_bot("http://127.0.0.1:1");
    wait_ready(bot.port, "the bot").await;
    let (_connection, channel, mut replies) = chat_platform(&bot).await;

    for (body, signature) in [
        (r#"{"chat_id":1,"text":"/help"}"#, Signature::None),
        (r#"{"chat_id":2,"text":"/help"}"#, Signature::Forged),
        // A body changed after it was signed.
        (
            r#"{"chat_id":3,"text":"/user 1"}"#,
            Signature::For(br#"{"chat_id":3,"text":"/help"}"#),
        ),
        (r#"{"chat_id":4,"text":"/help"}"#, Signature::Valid),
    ] {
        send_command(&channel, &bot, body, signature, FieldTable::default()).await;
    }

    let answered = next_reply(&mut replies).await;
    let reply: bot_service::commands::Reply = serde_json::from_slice(&answered.data).unwrap();
    assert_eq!(reply.chat_id, 4, "only the signed command is answered: {reply:?}");
    // Nothing else comes: the three others were rejected, not delayed.
    let extra = tokio::time::timeout(Duration::from_secs(2), replies.next()).await;
    assert!(extra.is_err(), "an unsigned command was answered: {extra:?}");
    // And not requeued: the commands queue is empty.
    let queue = channel
        .queue_declare(
            bot.commands.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(queue.message_count(), 0, "a rejected command went back to the queue");

    Command::new("kill")
        .args(["-TERM", &bot.child.id().to_string()])
        .status()
        .unwrap();
    bot.child.wait().unwrap();
    let logs =
        std::fs::read_to_string(&bot.log).unwrap() + &std::fs::read_to_string(bot.log.with_extension("err")).unwrap();
    let rejections = logs.matches("command rejected: not from the chat platform").count();
    assert_eq!(rejections, 3, "{logs}");
    assert!(logs.contains("the message is not signed"), "{logs}");
    assert!(logs.contains("the signature does not match"), "{logs}");
    assert!(!logs.contains(TOKEN), "the token leaked: {logs}");
}

#[test]
fn it_refuses_to_start_without_its_token_or_the_api() {
    let run = |envs: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bot-service"));
        command.env_clear();
        for (key, value) in envs {
            command.env(key, value);
        }
        command.output().unwrap()
    };
    let no_token = run(&[("API_URL", "http://127.0.0.1:1")]);
    assert_eq!(no_token.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("BOT_TOKEN is not set"));
    let no_api = run(&[("BOT_TOKEN", TOKEN)]);
    assert!(String::from_utf8_lossy(&no_api.stderr).contains("API_URL is not set"));
    let bad_api = run(&[("BOT_TOKEN", TOKEN), ("API_URL", "ftp://x")]);
    let message = String::from_utf8_lossy(&bad_api.stderr).into_owned();
    assert!(message.contains("must be http"), "{message}");
    assert!(!message.contains(TOKEN));
}

/// One trace from the chat platform to the database: a command sent with a `traceparent` is
/// handled in a bot span that continues it, the bot's call to the API carries it on (the API's
/// request span is the bot's child), and so does the reply. Read back from the real collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_trace_runs_through_the_bot_into_the_api() {
    // The API runs in this process: its spans go to the collector as `api-service`.
    let telemetry = cutover::telemetry::Telemetry::builder("api-service")
        .otlp_endpoint(service_url("JAEGER_OTLP_URL"))
        .default_filter("warn,cutover=info")
        .init()
        .unwrap();
    let (api, user) = api_with_a_user().await;
    let bot = start_bot_with(
        &api,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", service_url("JAEGER_OTLP_URL")),
            ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
        ],
    );
    wait_ready(bot.port, "the bot").await;
    let (_connection, channel, mut replies) = chat_platform(&bot).await;

    let (trace, caller, traceparent) = cutover_tests::new_trace();
    let mut headers = FieldTable::default();
    headers.insert("traceparent".into(), AMQPValue::LongString(traceparent.into()));
    let body = format!(r#"{{"chat_id":7,"text":"/user {user}"}}"#);
    send_command(&channel, &bot, &body, Signature::Valid, headers).await;
    let reply = next_reply(&mut replies).await;
    let carried = match reply
        .properties
        .headers()
        .clone()
        .unwrap_or_default()
        .inner()
        .get("traceparent")
    {
        Some(AMQPValue::LongString(value)) => value.to_string(),
        other => panic!("no traceparent on the reply: {other:?}"),
    };
    assert!(
        carried.starts_with(&format!("00-{trace}-")),
        "the reply continues the trace: {carried}"
    );
    drop(telemetry); // flushes the API's spans

    let spans = cutover_tests::jaeger_trace(&trace, Duration::from_secs(20), |spans| {
        spans.iter().any(|s| s.service == "bot-service") && spans.iter().any(|s| s.service == "api-service")
    })
    .await;
    let command = spans
        .iter()
        .find(|s| s.service == "bot-service" && s.operation == "command")
        .unwrap_or_else(|| panic!("no bot span: {spans:#?}"));
    assert_eq!(command.parent.as_deref(), Some(caller.as_str()), "{command:#?}");
    let request = spans
        .iter()
        .find(|s| s.service == "api-service" && s.operation == "GET /api/users/{id}")
        .unwrap_or_else(|| panic!("no API span: {spans:#?}"));
    assert_eq!(
        request.parent.as_deref(),
        Some(command.span_id.as_str()),
        "the API's span is the bot's child: {spans:#?}"
    );
    assert!(request.tags.iter().any(|t| t == "api_version=1.2"), "{request:#?}");
}
