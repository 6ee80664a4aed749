//! Traces, against the real collector (Jaeger, started by the services script) and the real
//! RabbitMQ: a request that arrives with a W3C `traceparent` is exported as the child of the
//! caller's span, named by its route, and the `user.created` event it publishes carries the
//! same trace on to its consumers.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::Service;
use cutover_tests::{jaeger_trace, new_trace, service_url, unique};
use futures_util::StreamExt as _;
use lapin::{
    Connection, ConnectionProperties, ExchangeKind,
    options::{BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_request_is_exported_under_its_caller_and_its_event_carries_the_trace() {
    // Events on an exchange of this test's own, read from a queue bound to it.
    let exchange = unique("traced_users");
    let connection = Connection::connect(&service_url("AMQP_URL"), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .unwrap();
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    let queue = channel
        .queue_declare("".into(), exclusive, FieldTable::default())
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.name().clone(),
            exchange.as_str().into(),
            "user.*".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut events = channel
        .basic_consume(
            queue.name().clone(),
            "test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();

    let service = Service::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", service_url("JAEGER_OTLP_URL")),
        // Export every 200 ms instead of every 5 s, so the test does not wait.
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
        ("AMQP_URL", service_url("AMQP_URL")),
        ("EVENTS_EXCHANGE", exchange.clone()),
        ("SERVICE_VERSION", "1.3.0-traced".to_owned()),
    ]);
    service.wait_until("/health/ready", 200, Duration::from_secs(30)).await;

    let (trace, caller, traceparent) = new_trace();
    let username = unique("traced");
    let response = reqwest::Client::new()
        .post(format!("{}/api/users", service.base))
        .header("traceparent", &traceparent)
        .json(&serde_json::json!({"username": username, "email": format!("{username}@example.com")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    // The event names the same trace.
    let delivery = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("the user.created event within 10 s")
        .unwrap()
        .unwrap();
    let headers = delivery.properties.headers().clone().unwrap_or_default();
    let carried = match headers.inner().get("traceparent") {
        Some(AMQPValue::LongString(value)) => value.to_string(),
        other => panic!("no traceparent on the event: {other:?} in {headers:?}"),
    };
    assert!(carried.starts_with(&format!("00-{trace}-")), "{carried}");
    assert!(
        !carried.contains(&caller),
        "the event's parent is the API's span, not the caller's"
    );

    // The collector has the API's span, a child of the caller's, named by its route.
    let spans = jaeger_trace(&trace, Duration::from_secs(20), |spans| {
        spans.iter().any(|span| span.service == "api-service")
    })
    .await;
    let request = spans
        .iter()
        .find(|span| span.service == "api-service" && span.operation == "POST /api/users")
        .unwrap_or_else(|| panic!("no `POST /api/users` span: {spans:#?}"));
    assert_eq!(request.parent.as_deref(), Some(caller.as_str()), "{request:#?}");
    for tag in [
        "route=/api/users",
        "status=201",
        "service_version=1.3.0-traced",
        "api_version=1.3",
    ] {
        assert!(request.tags.iter().any(|t| t == tag), "{tag} missing: {request:#?}");
    }
    assert!(
        carried.contains(&request.span_id),
        "the event continues from the request's span ({}): {carried}",
        request.span_id
    );
}
