//! A `Service` against hostile and careless clients, over real sockets: slowloris heads and
//! bodies, idle connections, oversized bodies, slow handlers, load beyond the concurrency
//! limit, too many connections, panics, HTTP/2 clients during a drain, and request ids in the
//! logs. Each limit is set low so the tests run in about a second.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;
mod traffic;

use std::time::{Duration, Instant};

use axum::{Router, body::Bytes, routing::get};
use cutover::{Limits, Service, shutdown::ShutdownConfig};
use http::StatusCode;
use serde_json::Value;
use support::{RawConnection, json, serve};
use tokio::net::TcpListener;
use tower::ServiceExt;

fn app() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { "ok" }).post(|body: Bytes| async move { format!("{} bytes", body.len()) }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                "done"
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("the handler fell over");
                }
                "unreachable"
            }),
        )
        .route(
            "/logged",
            get(|| async {
                tracing::info!("inside the handler");
                "logged"
            }),
        )
}

fn quick() -> Limits {
    Limits::default()
        .header_read_timeout(Duration::from_millis(500))
        .idle_timeout(Duration::from_millis(600))
        .body_read_timeout(Duration::from_millis(300))
        .request_timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn a_slowloris_head_is_closed_at_the_header_timeout_while_others_are_served() {
    let running = serve(app(), quick()).await;
    let mut slow = RawConnection::open(running.address).await;
    slow.write("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
    let silent = RawConnection::open(running.address).await;
    let opened = Instant::now();

    // A normal client is answered meanwhile.
    let response = reqwest::get(format!("{}/", running.base)).await.unwrap();
    assert_eq!(response.status(), 200);

    for (name, mut connection) in [("half-sent head", slow), ("silent", silent)] {
        let closed_after = connection.closed_within(Duration::from_secs(3)).await;
        let since_open = opened.elapsed();
        assert!(closed_after.is_some(), "{name}: still open after 3 s");
        assert!(
            since_open >= Duration::from_millis(400) && since_open < Duration::from_millis(2000),
            "{name}: closed after {since_open:?}, the header timeout is 500 ms"
        );
    }
    running.stop().await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    // hyper's own head timeout (which also runs between requests) set out of the way.
    let running = serve(app(), quick().header_read_timeout(Duration::from_secs(30))).await;
    let mut connection = RawConnection::open(running.address).await;
    connection.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let head = connection.read_response_head().await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let answered = Instant::now();
    assert!(connection.closed_within(Duration::from_secs(3)).await.is_some());
    let idle = answered.elapsed();
    assert!(
        idle >= Duration::from_millis(500) && idle < Duration::from_millis(2500),
        "closed after {idle:?}, the idle timeout is 600 ms"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413_problem_json() {
    let running = serve(app(), quick().max_body_size(1024)).await;
    let client = reqwest::Client::new();
    // Refused from its Content-Length, unread.
    let response = client
        .post(format!("{}/", running.base))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 413);
    assert_eq!(problem["title"], "Payload Too Large");
    // Answered before its body was read, the connection cannot be reused: the answer says so,
    // and a client that pools connections never sends its next request into a closed one.
    assert_eq!(response_close(&running.base, 4096).await, Some("close".to_owned()));
    let pooled = reqwest::Client::new();
    for attempt in 0..30 {
        let refused = pooled
            .post(format!("{}/", running.base))
            .body(vec![b'x'; 64 * 1024])
            .send()
            .await
            .unwrap_or_else(|error| panic!("attempt {attempt}: refused request: {error:?}"));
        assert_eq!(refused.status(), 413, "attempt {attempt}");
        let next = pooled
            .get(format!("{}/", running.base))
            .send()
            .await
            .unwrap_or_else(|error| panic!("attempt {attempt}: the request after it: {error:?}"));
        assert_eq!(next.status(), 200, "attempt {attempt}");
    }
    // A chunked body with no length is cut as it passes the limit.
    let mut connection = RawConnection::open(running.address).await;
    connection
        .write("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await;
    for _ in 0..4 {
        connection.write(&format!("400\r\n{}\r\n", "y".repeat(1024))).await;
    }
    connection.write("0\r\n\r\n").await;
    let head = connection.read_response_head().await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{head}"
    );
    // Under the limit is fine.
    let response = client
        .post(format!("{}/", running.base))
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "1000 bytes");
    running.stop().await;
}

/// The `Connection` header of the answer to a POST of `size` bytes.
async fn response_close(base: &str, size: usize) -> Option<String> {
    let response = reqwest::Client::new()
        .post(format!("{base}/"))
        .body(vec![b'x'; size])
        .send()
        .await
        .unwrap();
    response
        .headers()
        .get("connection")
        .map(|value| value.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_handler_over_the_request_timeout_is_answered_503_problem_json() {
    let running = serve(app(), quick().request_timeout(Duration::from_millis(300))).await;
    let started = Instant::now();
    let response = reqwest::get(format!("{}/slow", running.base)).await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["detail"], "the service could not answer in time");
    running.stop().await;
}

#[tokio::test]
async fn a_stalled_body_ends_the_request_with_408_and_the_connection() {
    let running = serve(app(), quick()).await;
    let mut connection = RawConnection::open(running.address).await;
    connection
        .write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nsix by")
        .await;
    let started = Instant::now();
    let head = connection.read_response_head().await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("connection: close"), "{head}");
    assert!(head.contains("content-type: application/problem+json"), "{head}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(connection.closed_within(Duration::from_secs(2)).await.is_some());
    running.stop().await;
}

#[tokio::test]
async fn load_beyond_the_concurrency_limit_is_shed_while_probes_answer() {
    let running = serve(app(), quick().max_concurrent_requests(2)).await;
    let client = reqwest::Client::new();
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            let url = format!("{}/slow", running.base);
            tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shed = client.get(format!("{}/", running.base)).send().await.unwrap();
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers()["retry-after"], "1");
    let problem: Value = shed.json().await.unwrap();
    assert_eq!(problem["type"], "urn:cutover:problem:overloaded");
    for probe in ["/health/live", "/health/ready", "/health"] {
        let response = client.get(format!("{}{probe}", running.base)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{probe} is never shed");
    }
    for request in busy {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    // Capacity is back once they finished.
    assert_eq!(
        client.get(format!("{}/", running.base)).send().await.unwrap().status(),
        200
    );
    running.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_next_request_is_served() {
    let running = serve(app(), quick()).await;
    let client = reqwest::Client::new();
    let response = client.get(format!("{}/panic", running.base)).send().await.unwrap();
    assert_eq!(response.status(), 500);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["detail"], "the server could not complete the request");
    assert!(
        !problem.to_string().contains("fell over"),
        "the panic message is not sent"
    );
    assert_eq!(
        client.get(format!("{}/", running.base)).send().await.unwrap().status(),
        200
    );
    running.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let limits = quick()
        .max_connections(2)
        .header_read_timeout(Duration::from_secs(10))
        .idle_timeout(Duration::from_secs(10));
    let running = serve(app(), limits).await;
    // Two kept-alive connections that have each been answered: nobody may take their place.
    let mut first = RawConnection::open(running.address).await;
    let mut second = RawConnection::open(running.address).await;
    for connection in [&mut first, &mut second] {
        connection.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let head = connection.read_response_head().await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = RawConnection::open(running.address).await;
    third.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        third.read_timeout(Duration::from_millis(500)).await.is_none(),
        "answered although two connections were open"
    );
    drop(first);
    let head = third.read_response_head().await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    running.stop().await;
}

#[tokio::test]
async fn http2_connections_get_a_goaway_when_the_drain_starts() {
    let config = ShutdownConfig::default()
        .drain_delay(Duration::from_secs(3))
        .shutdown_timeout(Duration::from_secs(1));
    // Idle connections are not what closes these ones.
    let limits = quick().idle_timeout(Duration::from_secs(30));
    let running = support::serve_with(app(), limits, config).await;
    let mut h2 = support::Http2::connect(running.address).await;
    assert_eq!(h2.get("/").await, Some(200));
    assert!(!h2.is_closed());

    let triggered = Instant::now();
    running.handle.trigger();
    // The client learns at once that it should go elsewhere, while the server still serves:
    // the drain delay has seconds to run.
    let goaway = h2.closed_within(Duration::from_secs(2)).await;
    assert!(goaway.is_some(), "no GOAWAY within 2 s of the drain starting");
    assert!(triggered.elapsed() < Duration::from_secs(2));
    assert_eq!(
        h2.get("/").await,
        None,
        "no new stream on a connection that got a GOAWAY"
    );

    // A new HTTP/2 connection during the drain is answered, then told to go too.
    let mut late = support::Http2::connect(running.address).await;
    assert_eq!(late.get("/").await, Some(200));
    assert!(late.closed_within(Duration::from_secs(2)).await.is_some());
    running.handle.trigger(); // second trigger: no need to wait out the drain
    let _ = running.served.await;
}

#[tokio::test]
async fn request_ids_are_made_or_kept_and_every_log_line_of_a_request_has_one() {
    let logs = support::CapturedLogs::install();
    let running = serve(app(), quick()).await;
    let client = reqwest::Client::new();
    let made = client
        .get(format!("{}/logged", running.base))
        .header("authorization", "Bearer hunter2-token")
        .send()
        .await
        .unwrap();
    let made_id = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made_id.len(), 36, "a UUID: {made_id}");
    let kept = client
        .get(format!("{}/logged", running.base))
        .header("x-request-id", "upstream-7f3a")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "upstream-7f3a");
    let hostile = client
        .get(format!("{}/", running.base))
        .header("x-request-id", "x".repeat(500))
        .send()
        .await
        .unwrap();
    let replaced = hostile.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(replaced.len(), 36, "a 500-character id is replaced: {replaced}");
    running.stop().await;

    let lines = logs.lines();
    for id in [made_id.as_str(), "upstream-7f3a"] {
        let inside: Vec<&Value> = lines
            .iter()
            .filter(|line| {
                line["fields"]["message"] == "inside the handler" && support::span_field(line, "request_id") == Some(id)
            })
            .collect();
        assert_eq!(
            inside.len(),
            1,
            "the handler's line carries request id {id}: {lines:#?}"
        );
        let finished = lines
            .iter()
            .find(|line| line["target"] == "cutover::access" && support::span_field(line, "request_id") == Some(id));
        let finished = finished.unwrap_or_else(|| panic!("no access line for {id}: {lines:#?}"));
        assert_eq!(finished["fields"]["route"], "/logged");
        assert_eq!(finished["fields"]["status"], 200);
        assert_eq!(finished["fields"]["service_version"], "unknown");
        assert!(finished["fields"]["latency_ms"].is_number(), "{finished}");
        // The span stays small: what a JSON layer re-parses on every line of the request.
        let span = finished["span"].as_object().unwrap();
        let mut names: Vec<&str> = span.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["method", "name", "path", "request_id"], "{finished}");
    }
    let text = lines.iter().map(ToString::to_string).collect::<String>();
    assert!(!text.contains("hunter2"), "the Authorization header reached the logs");
}

#[tokio::test]
async fn the_assembled_router_serves_the_real_wiring_in_process() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service = Service::builder(app())
        .shutdown(ShutdownConfig::default().signals(false).drain_delay(Duration::ZERO))
        .limits(quick().max_body_size(10))
        .listener(listener)
        .build()
        .unwrap();
    let router = service.router();
    let handle = service.handle();
    let request = |method: &str, path: &str, body: &'static str| {
        http::Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::from(body))
            .unwrap()
    };
    let response = router.clone().oneshot(request("GET", "/", "")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let response = router
        .clone()
        .oneshot(request("POST", "/", "more than ten bytes"))
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let response = router.clone().oneshot(request("GET", "/nowhere", "")).await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(json(response).await["title"], "Not Found");
    // The drain is the served one: once the service stops, the router refuses too.
    let served = tokio::spawn(service.serve());
    handle.trigger();
    let _ = served.await.unwrap().unwrap();
    let response = router.clone().oneshot(request("GET", "/", "")).await.unwrap();
    assert_eq!(response.status(), 503);
    let problem = json(response).await;
    assert_eq!(problem["type"], "urn:cutover:problem:shutting-down");
    let live = router.oneshot(request("GET", "/health/live", "")).await.unwrap();
    assert_eq!(live.status(), 200, "probes answer to the end");
}

#[tokio::test]
async fn startup_work_that_cannot_finish_is_retried_and_cancelled_by_a_shutdown() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&attempts);
    let service = Service::builder(app())
        .shutdown(ShutdownConfig::default().signals(false).drain_delay(Duration::ZERO))
        .listener(listener)
        .startup_backoff(cutover::Backoff::new(
            Duration::from_millis(20),
            Duration::from_millis(40),
        ))
        .startup_retrying(
            "database",
            move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Err::<(), _>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)) }
            },
            |error: &std::io::Error| error.kind() == std::io::ErrorKind::ConnectionRefused,
        )
        .build()
        .unwrap();
    let handle = service.handle();
    let served = tokio::spawn(service.serve());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(attempts.load(std::sync::atomic::Ordering::SeqCst) >= 4, "retried");
    assert_eq!(
        handle.phase(),
        cutover::Phase::Starting,
        "not ready while it cannot finish"
    );
    let triggered = Instant::now();
    handle.trigger();
    let report = tokio::time::timeout(Duration::from_secs(3), served)
        .await
        .expect("the shutdown waited for startup work that never ends")
        .unwrap()
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(triggered.elapsed() < Duration::from_secs(1));
    let after = attempts.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        attempts.load(std::sync::atomic::Ordering::SeqCst),
        after,
        "no attempt after the shutdown"
    );

    // A permanent error ends the startup at once.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = Service::builder(app())
        .shutdown(ShutdownConfig::default().signals(false))
        .listener(listener)
        .startup_retrying(
            "migrations",
            || async { Err::<(), _>(std::io::Error::other("migration 3 is broken")) },
            |error: &std::io::Error| error.kind() == std::io::ErrorKind::ConnectionRefused,
        )
        .serve()
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "startup failed: migration 3 is broken");
}
