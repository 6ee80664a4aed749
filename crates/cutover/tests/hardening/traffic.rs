//! Traffic as proxies and real clients send it: pooled keep-alive connections reused after
//! long idle gaps, HTTP/2 connections kept busy by PINGs alone, bodies trickled below the
//! minimum rate, floods of half-open connections at the connection limit, and drains with
//! idle, half-open and busy connections at once.

use std::time::{Duration, Instant};

use cutover::{Limits, shutdown::ShutdownConfig};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    app, quick,
    support::{self, RawConnection, serve},
};

const GET: &str = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

async fn answered(connection: &mut RawConnection) -> bool {
    connection.write(GET).await;
    connection.read_response_head().await.starts_with("HTTP/1.1 200")
}

#[tokio::test]
async fn a_kept_alive_connection_outlives_the_header_timeout_and_closes_at_the_idle_timeout() {
    // The header timeout (300 ms) applies to a head being sent, never to the wait between
    // requests: a pooled connection reused after 4x and 6x the header timeout is answered,
    // and only the idle timeout (2 s) closes it.
    let limits = quick()
        .header_read_timeout(Duration::from_millis(300))
        .idle_timeout(Duration::from_secs(2));
    let running = serve(app(), limits).await;
    let mut connection = RawConnection::open(running.address).await;
    assert!(answered(&mut connection).await);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        answered(&mut connection).await,
        "reused after 1.2 s (header timeout 300 ms)"
    );
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(answered(&mut connection).await, "reused after 1.8 s (idle timeout 2 s)");
    let quiet = Instant::now();
    let closed = connection.closed_within(Duration::from_secs(4)).await;
    assert!(closed.is_some(), "still open 4 s after its last request");
    let idle = quiet.elapsed();
    assert!(
        idle >= Duration::from_millis(1800),
        "closed after {idle:?} idle, the idle timeout is 2 s"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_head_started_on_a_kept_alive_connection_must_arrive_within_the_header_timeout() {
    let limits = quick()
        .header_read_timeout(Duration::from_millis(400))
        .idle_timeout(Duration::from_secs(10));
    let running = serve(app(), limits).await;
    let mut connection = RawConnection::open(running.address).await;
    assert!(answered(&mut connection).await);
    tokio::time::sleep(Duration::from_millis(600)).await;
    connection.write("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
    let started = Instant::now();
    assert!(connection.closed_within(Duration::from_secs(3)).await.is_some());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "closed {took:?} after the head began, the header timeout is 400 ms"
    );
    running.stop().await;
}

#[tokio::test]
async fn pings_do_not_keep_an_idle_http2_connection_open() {
    let limits = quick().idle_timeout(Duration::from_secs(1));
    let running = serve(app(), limits).await;
    let mut h2 = support::Http2::connect_pinging(running.address, Some(Duration::from_millis(200))).await;
    assert_eq!(h2.get("/").await, Some(200));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(h2.get("/").await, Some(200), "reused within the idle timeout");
    let idle = Instant::now();
    assert!(
        h2.closed_within(Duration::from_secs(4)).await.is_some(),
        "a connection kept busy by PINGs alone stayed open"
    );
    assert!(idle.elapsed() >= Duration::from_millis(800), "{:?}", idle.elapsed());
    running.stop().await;
}

/// A POST whose body arrives `chunk` bytes every `every`; the status line of the answer, or
/// `None` when the connection closed without one.
async fn trickled_post(address: std::net::SocketAddr, length: usize, chunk: usize, every: Duration) -> Option<String> {
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let writing = tokio::spawn(async move {
        for _ in (0..length).step_by(chunk) {
            if writer.write_all(&vec![b'x'; chunk]).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    });
    let mut answer = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
        if answer.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    writing.abort();
    let text = String::from_utf8_lossy(&answer).into_owned();
    (!text.is_empty()).then_some(text)
}

#[tokio::test]
async fn a_body_below_the_minimum_rate_gets_408_and_frees_its_slot() {
    // Two slots, both taken by clients trickling 10 bytes a second; the minimum is 1,000 bytes
    // a second after 500 ms. They are cut with 408 (the client is slow, not the server), and
    // a normal client is served meanwhile and after.
    let limits = quick()
        .max_concurrent_requests(2)
        .body_read_timeout(Duration::from_secs(30))
        .min_body_data_rate(1000, Duration::from_millis(500));
    let running = serve(app(), limits).await;
    let started = Instant::now();
    let tricklers: Vec<_> = (0..2)
        .map(|_| {
            let address = running.address;
            tokio::spawn(trickled_post(address, 10_000, 1, Duration::from_millis(100)))
        })
        .collect();
    let mut statuses = Vec::new();
    for trickler in tricklers {
        let answer = trickler.await.unwrap().expect("an answer, not a closed connection");
        let head = answer.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 408"), "{answer}");
        assert!(head.contains("connection: close"), "{answer}");
        assert!(head.contains("application/problem+json"), "{answer}");
        statuses.push(408);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut after {:?}: the grace period is 500 ms",
        started.elapsed()
    );
    let response = reqwest::Client::new()
        .post(format!("{}/", running.base))
        .body(vec![b'x'; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    running.stop().await;
}

#[tokio::test]
async fn uploading_a_body_is_not_charged_to_the_request_timeout() {
    // A body that takes 1.5 s at 60 bytes a second (above the 20 B/s minimum) on a route
    // whose request timeout is 500 ms: the service answered in time once it had the body.
    let limits = quick()
        .request_timeout(Duration::from_millis(500))
        .body_read_timeout(Duration::from_secs(5))
        .min_body_data_rate(20, Duration::from_millis(100));
    let running = serve(app(), limits).await;
    let answer = trickled_post(running.address, 90, 6, Duration::from_millis(100))
        .await
        .expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("90 bytes") || answer.contains("\r\n\r\n"), "{answer}");
    // A slow handler is still the service's fault.
    let response = reqwest::get(format!("{}/slow", running.base)).await.unwrap();
    assert_eq!(response.status(), 503);
    running.stop().await;
}

#[tokio::test]
async fn probes_answer_when_half_open_connections_fill_the_connection_limit() {
    // 1,200 connections that never finish their request head against a limit of 1,024 (the
    // default): the oldest make room, and the liveness probe and a real client get in at once.
    let limits = Limits::default().header_read_timeout(Duration::from_secs(60));
    let running = serve(app(), limits).await;
    let mut flood = Vec::with_capacity(1200);
    for _ in 0..1200 {
        let mut connection = RawConnection::open(running.address).await;
        connection.write("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
        flood.push(connection);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    for path in ["/health/live", "/"] {
        let started = Instant::now();
        let response = client.get(format!("{}{path}", running.base)).send().await;
        let response = response.unwrap_or_else(|error| panic!("{path} during the flood: {error}"));
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{path}: {:?}",
            started.elapsed()
        );
    }
    // The oldest half-open connections were closed to make room; the newest are still open.
    let mut oldest = flood.remove(0);
    assert!(
        oldest.closed_within(Duration::from_secs(1)).await.is_some(),
        "the oldest is still open"
    );
    let mut newest = flood.pop().unwrap();
    assert!(
        newest.closed_within(Duration::from_millis(200)).await.is_none(),
        "the newest was closed"
    );
    drop(flood);
    running.stop().await;
}

#[tokio::test]
async fn stopping_closes_connections_that_carry_no_request_and_finishes_the_rest() {
    // 500 slowloris connections, an idle kept-alive one, and 50 requests in flight when the
    // drain starts: the ones with no request go when the drain delay is over, every request
    // in flight is answered, and the shutdown is clean.
    let config = ShutdownConfig::default()
        .drain_delay(Duration::from_secs(2))
        .shutdown_timeout(Duration::from_secs(10));
    let limits = quick()
        .header_read_timeout(Duration::from_secs(60))
        .idle_timeout(Duration::from_secs(60));
    let running = support::serve_with(app(), limits, config).await;
    let mut slowloris = Vec::new();
    for _ in 0..500 {
        let mut connection = RawConnection::open(running.address).await;
        connection.write("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
        slowloris.push(connection);
    }
    let mut idle = RawConnection::open(running.address).await;
    assert!(answered(&mut idle).await);
    let client = reqwest::Client::new();
    let in_flight: Vec<_> = (0..50)
        .map(|_| {
            let request = client.get(format!("{}/slow", running.base)).send();
            tokio::spawn(async move { request.await.map(|response| response.status().as_u16()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let triggered = Instant::now();
    running.handle.trigger();
    // Through the drain delay, a pooled connection stays open (a proxy may still send on it;
    // closing it under the proxy is the keep-alive race), and what it carries is answered
    // with `Connection: close`.
    assert!(
        idle.closed_within(Duration::from_millis(500)).await.is_none(),
        "an idle kept-alive connection was closed while proxies may still route here"
    );
    idle.write(GET).await;
    let head = idle.read_response_head().await.to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 200") && head.contains("connection: close"),
        "{head}"
    );
    assert!(idle.closed_within(Duration::from_millis(500)).await.is_some());
    // When the drain delay is over, the connections that carry no request go at once.
    for (index, connection) in slowloris.iter_mut().enumerate().step_by(50) {
        assert!(
            connection.closed_within(Duration::from_secs(3)).await.is_some(),
            "half-open connection {index} stayed open past the drain delay"
        );
    }
    let closed_after = triggered.elapsed();
    assert!(
        closed_after >= Duration::from_millis(1900) && closed_after < Duration::from_secs(3),
        "closed {closed_after:?} after the trigger, the drain delay is 2 s"
    );
    for request in in_flight {
        assert_eq!(request.await.unwrap().unwrap(), 200);
    }
    let report = running.served.await.unwrap().unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test]
async fn clients_trickling_small_bodies_never_take_the_slots_of_those_that_send_at_once() {
    // Four slots, twenty clients trickling a 1,000-byte body a byte every 100 ms, still in
    // their grace period: they hold connections, not slots. Clients that send at once are
    // all served meanwhile, and the tricklers are cut with 408 once the grace is over.
    let limits = quick()
        .max_concurrent_requests(4)
        .body_read_timeout(Duration::from_secs(30))
        .min_body_data_rate(1000, Duration::from_secs(2));
    let running = serve(app(), limits).await;
    let tricklers: Vec<_> = (0..20)
        .map(|_| {
            let address = running.address;
            tokio::spawn(trickled_post(address, 1000, 1, Duration::from_millis(100)))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = reqwest::Client::new();
    for _ in 0..20 {
        let response = client
            .post(format!("{}/", running.base))
            .body(vec![b'x'; 100])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "a client that sends at once was refused");
    }
    for trickler in tricklers {
        let answer = trickler.await.unwrap().expect("an answer");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    running.stop().await;
}
