//! The real `api-service` binary and real signals: SIGTERM drains (readiness 503 at once,
//! requests served for the drain delay, then 503 while in-flight work finishes) and exits 0;
//! a second SIGTERM exits at once with a non-zero status.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use common::Service;

#[tokio::test]
async fn sigterm_drains_then_refuses_then_exits_zero() {
    let mut service = Service::start(&[
        ("SHUTDOWN_DRAIN_DELAY", "2s".to_owned()),
        ("SHUTDOWN_TIMEOUT", "10s".to_owned()),
    ]);
    service.wait_until("/health/ready", 200, Duration::from_secs(20)).await;
    let client = reqwest::Client::new();

    // A request that will still be running when new requests start being refused.
    let slow = tokio::spawn({
        let client = client.clone();
        let url = format!("{}/api/slow?ms=3500", service.base);
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    service.signal("TERM");
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (ready, _) = service.get("/health/ready").await.unwrap();
    let (live, _) = service.get("/health/live").await.unwrap();
    assert_eq!((ready, live), (503, 200), "right after SIGTERM: not ready, alive");

    // Still served for the drain delay, with Connection: close.
    let response = client.get(format!("{}/", service.base)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["connection"], "close");
    let served_until = Instant::now();
    assert!(served_until - signalled < Duration::from_secs(2));

    // After the drain delay: 503 with Retry-After, while the slow request is still running.
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(signalled.elapsed()) + Duration::from_millis(300)).await;
    let refused = client.get(format!("{}/", service.base)).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.headers().contains_key("retry-after"));

    assert_eq!(slow.await.unwrap(), (200, r#"{"slept_ms":3500}"#.to_owned()));
    let status = service.exit_status(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0), "a clean shutdown exits 0");
    let total = signalled.elapsed();
    assert!(
        total >= Duration::from_millis(3000) && total < Duration::from_millis(5000),
        "{total:?}"
    );
}

#[tokio::test]
async fn a_second_sigterm_exits_at_once_with_a_non_zero_status() {
    let mut service = Service::start(&[("SHUTDOWN_DRAIN_DELAY", "20s".to_owned())]);
    service.wait_until("/health/ready", 200, Duration::from_secs(20)).await;
    service.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(service.get("/health/ready").await.unwrap().0, 503, "draining");
    let second = Instant::now();
    service.signal("TERM");
    let status = service.exit_status(Duration::from_secs(2)).await;
    assert!(second.elapsed() < Duration::from_secs(1), "{:?}", second.elapsed());
    assert_eq!(status.code(), Some(128 + 15));
}

#[tokio::test]
async fn ctrl_c_without_a_drain_delay_stops_in_milliseconds() {
    let mut service = Service::start(&[]);
    service.wait_until("/health/ready", 200, Duration::from_secs(20)).await;
    let signalled = Instant::now();
    service.signal("INT");
    let status = service.exit_status(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_millis(1000),
        "{:?}",
        signalled.elapsed()
    );
}
