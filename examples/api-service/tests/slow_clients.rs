//! The real `api-service` binary with its default limits against clients that send slowly:
//! 520 connections trickling request bodies a byte every 5 s (more than the 512 concurrency
//! slots) for 30 s, while a normal client creates users. The tricklers pay for their own
//! slowness (408 after the 5 s grace); the normal client never sees anything but 201.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use common::Service;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const TRICKLERS: usize = 520;
const FOR: Duration = Duration::from_secs(30);

/// One trickling client: a `POST /api/users` announcing 100 bytes, sent a byte every 5 s;
/// reconnects whenever it is answered or cut, until `until`. The statuses it got.
async fn trickler(address: String, until: Instant) -> Vec<String> {
    let mut answers = Vec::new();
    while Instant::now() < until {
        let Ok(mut stream) = TcpStream::connect(&address).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let head =
            "POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
        if stream.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let mut buffer = [0u8; 1024];
        let answer = loop {
            if stream.write_all(b"{").await.is_err() {
                break None;
            }
            tokio::select! {
                read = stream.read(&mut buffer) => break match read {
                    Ok(n) if n > 0 => Some(String::from_utf8_lossy(&buffer[..n]).lines().next().unwrap_or("").to_owned()),
                    _ => None,
                },
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            if Instant::now() >= until {
                break None;
            }
        };
        answers.extend(answer);
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_tricklers_cost_themselves_and_not_the_clients_that_send_at_once() {
    let service = Service::start(&[]);
    service.wait_until("/health/ready", 200, Duration::from_secs(20)).await;
    let address = service.base.trim_start_matches("http://").to_owned();
    let until = Instant::now() + FOR;
    let tricklers: Vec<_> = (0..TRICKLERS)
        .map(|_| tokio::spawn(trickler(address.clone(), until)))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let client = reqwest::Client::new();
    let (mut created, mut other) = (0u32, Vec::new());
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        let user = format!("steady{n}");
        let response = client
            .post(format!("{}/api/users", service.base))
            .json(&serde_json::json!({"username": user, "email": format!("{user}@example.com"), "preferences": {}}))
            .send()
            .await;
        match response {
            Ok(response) if response.status() == 201 => created += 1,
            Ok(response) => other.push(response.status().to_string()),
            Err(error) => other.push(format!("{error:?}")),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut answers = Vec::new();
    for trickler in tricklers {
        answers.extend(trickler.await.unwrap());
    }
    assert!(
        other.is_empty(),
        "the steady client got {} failures: {:?}",
        other.len(),
        &other[..other.len().min(5)]
    );
    assert!(created > 100, "only {created} users created in {FOR:?}");
    // Every trickler that got an answer was cut for its slowness, never shed for load.
    let cut = answers.iter().filter(|line| line.starts_with("HTTP/1.1 408")).count();
    assert!(
        cut >= TRICKLERS,
        "408s: {cut}, answers: {:?}",
        &answers[..answers.len().min(5)]
    );
    assert!(
        answers.iter().all(|line| line.starts_with("HTTP/1.1 408")),
        "{:?}",
        answers
            .iter()
            .filter(|line| !line.starts_with("HTTP/1.1 408"))
            .take(5)
            .collect::<Vec<_>>()
    );
}
