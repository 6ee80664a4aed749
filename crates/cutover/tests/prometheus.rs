//! `/metrics` of a served app: request counts and latencies, the lifecycle phase, and the
//! health checks, in the Prometheus text format.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use axum::{Router, routing::get};
use cutover::{
    Service,
    health::{HealthRegistry, Outcome, Registration, check_fn},
    shutdown::ShutdownConfig,
};
use tokio::net::TcpListener;

#[tokio::test]
async fn metrics_count_requests_and_follow_the_phase_and_the_checks() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let health = HealthRegistry::builder()
        .background(Duration::from_millis(200))
        .register(Registration::new(
            "database",
            check_fn(|_ctx| async { Ok(Outcome::healthy()) }),
        ))
        .build()
        .unwrap();
    let service = Service::builder(Router::new().route("/hello", get(|| async { "hi" })))
        .health(health)
        .shutdown(ShutdownConfig::default().drain_delay(Duration::ZERO))
        .prometheus()
        .listener(listener)
        .build()
        .unwrap();
    let handle = service.handle();
    let served = tokio::spawn(service.serve());

    let client = reqwest::Client::new();
    for _ in 0..50 {
        if client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..3 {
        assert_eq!(client.get(format!("{base}/hello")).send().await.unwrap().status(), 200);
    }
    assert_eq!(
        client.get(format!("{base}/nowhere")).send().await.unwrap().status(),
        404
    );

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = |prefix: &str| -> Option<f64> {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    assert!(
        line(r#"http_requests_total{method="GET",status="200"}"#).unwrap() >= 3.0,
        "{metrics}"
    );
    assert_eq!(
        line(r#"http_requests_total{method="GET",status="404"}"#),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"http_request_duration_seconds_bucket{method="GET",le="0.005"}"#),
        "{metrics}"
    );
    assert_eq!(
        line(r#"cutover_lifecycle_phase{phase="ready"}"#),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        line(r#"cutover_lifecycle_phase{phase="starting"}"#),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        line(r#"cutover_health_check_status{check="database"}"#),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        line("http_requests_in_flight"),
        Some(1.0),
        "only the /metrics request itself"
    );

    handle.trigger();
    served.await.unwrap().unwrap();
}
