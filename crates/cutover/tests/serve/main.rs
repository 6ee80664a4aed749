//! `Service` over a real socket: probes from the first moment, readiness after startup work,
//! keep-alive connections closed while draining, in-flight requests completed, streams cut
//! at the deadline, and the whole shutdown inside its budget.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::{
    convert::Infallible,
    net::SocketAddr,
    time::{Duration, Instant},
};

use axum::{Router, body::Body, extract::Query, routing::get};
use cutover::{
    Phase, Service,
    health::{HealthRegistry, testing::StaticCheck},
    shutdown::{ShutdownConfig, ShutdownHandle, ShutdownReport},
};
use tokio::{net::TcpListener, task::JoinHandle};

#[derive(serde::Deserialize)]
struct Ms {
    ms: u64,
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|Query(Ms { ms }): Query<Ms>| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "done"
            }),
        )
        .route(
            "/stream",
            get(|| async {
                let ticks = futures_util::stream::unfold(0u32, |n| async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((Ok::<_, Infallible>(format!("data: {n}\n\n")), n + 1))
                });
                Body::from_stream(ticks)
            }),
        )
}

struct Running {
    base: String,
    handle: ShutdownHandle,
    served: JoinHandle<Result<ShutdownReport, cutover::ServeError>>,
}

async fn start(config: ShutdownConfig, startup_delay: Duration) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    let health = HealthRegistry::builder()
        .check("db", StaticCheck::healthy())
        .build()
        .unwrap();
    let service = Service::builder(app())
        .health(health)
        .shutdown(config.signals(false))
        .listener(listener)
        .startup(async move {
            tokio::time::sleep(startup_delay).await;
            Ok::<(), Infallible>(())
        })
        .build()
        .unwrap();
    let handle = service.handle();
    let served = tokio::spawn(service.serve());
    Running {
        base: format!("http://{address}"),
        handle,
        served,
    }
}

async fn status(client: &reqwest::Client, url: &str) -> u16 {
    client.get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn probes_answer_from_the_start_and_readiness_waits_for_startup_work() {
    let running = start(ShutdownConfig::default(), Duration::from_millis(800)).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", running.base);
    assert_eq!(status(&client, &url("/health/live")).await, 200);
    assert_eq!(status(&client, &url("/health/startup")).await, 503);
    assert_eq!(status(&client, &url("/health/ready")).await, 503);
    assert_eq!(running.handle.phase(), Phase::Starting);

    let started = Instant::now();
    while status(&client, &url("/health/ready")).await != 200 {
        assert!(started.elapsed() < Duration::from_secs(5), "never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status(&client, &url("/health/startup")).await, 200);
    running.handle.trigger();
    let report = running.served.await.unwrap().unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test]
async fn in_flight_requests_complete_and_draining_responses_close_the_connection() {
    let config = ShutdownConfig::default()
        .drain_delay(Duration::from_millis(600))
        .shutdown_timeout(Duration::from_secs(5));
    let running = start(config, Duration::ZERO).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", running.base);
    let ready = async {
        while status(&client, &url("/health/ready")).await != 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), ready).await.unwrap();

    // Keep-alive is on before the shutdown.
    let response = client.get(url("/")).send().await.unwrap();
    assert!(response.headers().get("connection").is_none());

    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = url("/slow?ms=1500");
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let triggered = Instant::now();
    running.handle.trigger();
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Draining: readiness is closed, liveness is not, requests are served with Connection: close.
    assert_eq!(status(&client, &url("/health/ready")).await, 503);
    assert_eq!(status(&client, &url("/health/live")).await, 200);
    let response = client.get(url("/")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["connection"], "close");

    // Stopping: new requests get 503 + Retry-After while the slow one finishes.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let refused = client.get(url("/")).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(refused.headers()["connection"], "close");

    assert_eq!(in_flight.await.unwrap(), (200, "done".to_owned()));
    let report = running.served.await.unwrap().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.in_flight_at_stop, 1);
    assert!(report.requests_rejected >= 1);
    assert!(
        triggered.elapsed() < Duration::from_secs(3),
        "{:?}",
        triggered.elapsed()
    );
    // And the port is closed.
    assert!(client.get(url("/")).send().await.is_err());
}

#[tokio::test]
async fn a_stream_that_never_ends_is_cut_at_the_deadline_and_shutdown_stays_in_budget() {
    let config = ShutdownConfig::default()
        .drain_delay(Duration::ZERO)
        .shutdown_timeout(Duration::from_millis(700));
    let running = start(config, Duration::ZERO).await;
    let client = reqwest::Client::new();
    let mut stream = client.get(format!("{}/stream", running.base)).send().await.unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    assert!(stream.chunk().await.unwrap().is_some(), "the stream is flowing");

    let triggered = Instant::now();
    running.handle.trigger();
    let report = running.served.await.unwrap().unwrap();
    let elapsed = triggered.elapsed();
    assert!(
        elapsed >= Duration::from_millis(700) && elapsed < Duration::from_millis(1500),
        "{elapsed:?}"
    );
    assert_eq!(report.requests_cut, 1);
    assert_eq!(report.exit_code(), 1, "something was cut");

    // The client sees the stream end abnormally instead of hanging.
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match stream.chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => return "ended",
                Err(_) => return "error",
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(ended, "error");
}

#[tokio::test]
async fn failing_startup_work_shuts_the_service_down_and_says_why() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let result = Service::builder(app())
        .shutdown(ShutdownConfig::default().signals(false))
        .listener(listener)
        .startup(async { Err::<(), _>(std::io::Error::other("migration 0004 failed")) })
        .serve()
        .await;
    let error = result.unwrap_err();
    assert_eq!(error.to_string(), "startup failed: migration 0004 failed");
    match error {
        cutover::ServeError::Startup { report, .. } => assert_eq!(report.hooks.len(), 0),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let error = Service::builder(app())
        .shutdown(ShutdownConfig::default().signals(false))
        .bind(address)
        .serve()
        .await
        .unwrap_err();
    assert!(
        error.to_string().starts_with(&format!("cannot listen on {address}: ")),
        "{error}"
    );
}
