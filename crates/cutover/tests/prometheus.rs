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
    let app = Router::new()
        .route("/hello", get(|| async { "hi" }))
        .route("/users/{id}", get(|| async { "a user" }));
    let service = Service::builder(app)
        .service_version("1.2.3")
        .health(health)
        .shutdown(ShutdownConfig::default().drain_delay(Duration::ZERO))
        .prometheus()
        .listener(listener)
        .build()
        .unwrap();
    let handle = service.handle();
    let router = service.router();
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
    for id in [1, 22, 333] {
        let response = client.get(format!("{base}/users/{id}")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }

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
    let labels = r#"api_version="none",service_version="1.2.3""#;
    assert_eq!(
        line(&format!(
            r#"http_requests_total{{method="GET",route="/hello",{labels},status="200"}}"#
        )),
        Some(3.0),
        "{metrics}"
    );
    // The route template, never the raw path: ids do not make series.
    assert_eq!(
        line(&format!(
            r#"http_requests_total{{method="GET",route="/users/{{id}}",{labels},status="200"}}"#
        )),
        Some(3.0),
        "{metrics}"
    );
    assert!(!metrics.contains("/users/22"), "{metrics}");
    assert_eq!(
        line(&format!(
            r#"http_requests_total{{method="GET",route="unmatched",{labels},status="404"}}"#
        )),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            r#"http_request_duration_seconds_bucket{{method="GET",route="/hello",{labels},le="0.005"}}"#
        )),
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
    // Prometheus can scrape to the end: `/metrics` is never refused as the service stops.
    let last = tower::ServiceExt::oneshot(
        router,
        http::Request::get("/metrics").body(axum::body::Body::empty()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(last.status(), 200);
}

#[tokio::test]
async fn with_an_admin_address_metrics_and_details_leave_the_public_one() {
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", public.local_addr().unwrap());
    let admin_base = format!("http://{}", admin.local_addr().unwrap());
    let health = HealthRegistry::builder()
        .check(
            // Not `database`: the recorder is shared with the other test, which checks that one.
            "orders-db",
            check_fn(|_ctx| async { Err("connection refused by db.internal:5432".into()) }),
        )
        .build()
        .unwrap();
    let service = Service::builder(Router::new().route("/hello", get(|| async { "hi" })))
        .health(health)
        .shutdown(ShutdownConfig::default().drain_delay(Duration::ZERO))
        .prometheus()
        .listener(public)
        .admin_listener(admin)
        .build()
        .unwrap();
    let handle = service.handle();
    let served = tokio::spawn(service.serve());
    let client = reqwest::Client::new();
    let get = |url: String| {
        let client = client.clone();
        async move { client.get(url).send().await.unwrap() }
    };
    // Wait for the first check round.
    for _ in 0..50 {
        let body = get(format!("{admin_base}/health")).await.text().await.unwrap();
        if body.contains("connection refused") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(format!("{base}/metrics")).await.status(), 404);
    let metrics = get(format!("{admin_base}/metrics")).await;
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("cutover_lifecycle_phase"));
    // Probes on both; details only on the admin address.
    let public_report = get(format!("{base}/health")).await.text().await.unwrap();
    assert!(!public_report.contains("db.internal"), "{public_report}");
    assert!(public_report.contains("\"last_error\":\"hidden\""), "{public_report}");
    let admin_report = get(format!("{admin_base}/health")).await.text().await.unwrap();
    assert!(
        admin_report.contains("connection refused by db.internal:5432"),
        "{admin_report}"
    );
    assert_eq!(get(format!("{admin_base}/health/live")).await.status(), 200);
    assert_eq!(get(format!("{base}/health/live")).await.status(), 200);

    handle.trigger();
    served.await.unwrap().unwrap();
}
