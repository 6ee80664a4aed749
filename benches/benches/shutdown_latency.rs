//! Time from SIGTERM to process exit for a cutover server (drain delay 0): idle, and with N
//! requests in flight. With requests in flight the exit waits for them, so the overhead is the
//! exit time minus the time the requests still needed.
//!
//! Run with: `cargo bench -p cutover-benches --bench shutdown_latency`

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cutover_benches::{Percentiles, free_port, sigterm, wait_for_listener};

const RUNS: usize = 15;
const IN_FLIGHT: usize = 100;
const REQUEST_MS: u64 = 300;

fn start(port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_bench-server"))
        .args(["cutover", &port.to_string(), "2"])
        .env("SHUTDOWN_DRAIN_DELAY", "0s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bench-server");
    wait_for_listener(port, Duration::from_secs(10));
    child
}

/// A raw HTTP/1.1 request on its own connection, read to the end; returns the status line.
fn request(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response.lines().next().unwrap_or_default().to_owned()
}

fn main() {
    let mut idle = Vec::new();
    for _ in 0..RUNS {
        let port = free_port();
        let mut child = start(port);
        assert_eq!(request(port, "/"), "HTTP/1.1 200 OK");
        let signalled = Instant::now();
        sigterm(child.id());
        let status = child.wait().expect("wait");
        idle.push(signalled.elapsed());
        assert!(status.success(), "idle shutdown exit status {status}");
    }

    let mut loaded = Vec::new();
    for _ in 0..RUNS {
        let port = free_port();
        let mut child = start(port);
        let requests: Vec<_> = (0..IN_FLIGHT)
            .map(|_| std::thread::spawn(move || request(port, &format!("/slow?ms={REQUEST_MS}"))))
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let signalled = Instant::now();
        sigterm(child.id());
        let status = child.wait().expect("wait");
        loaded.push(signalled.elapsed());
        assert!(status.success(), "loaded shutdown exit status {status}");
        for request in requests {
            assert_eq!(
                request.join().expect("request thread"),
                "HTTP/1.1 200 OK",
                "an in-flight request failed"
            );
        }
    }

    let idle = Percentiles::of(idle);
    let loaded = Percentiles::of(loaded);
    println!("SIGTERM to exit, drain delay 0, {RUNS} runs each:");
    println!(
        "  idle:                          p50 {:>8.1?}  p99 {:>8.1?}",
        idle.p50, idle.p99
    );
    println!(
        "  {IN_FLIGHT} requests in flight ({REQUEST_MS} ms, signalled 100 ms in): p50 {:>8.1?}  p99 {:>8.1?}  (all {IN_FLIGHT} answered 200)",
        loaded.p50, loaded.p99
    );
    println!(
        "  overhead beyond the ~{}ms the requests still needed: p50 {:.1?}",
        REQUEST_MS - 100,
        loaded.p50.saturating_sub(Duration::from_millis(REQUEST_MS - 100))
    );
}
