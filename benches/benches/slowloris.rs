//! The latency of a normal client while 1,000 slowloris connections are open against
//! `cutover::Service` with its default limits, against the same client with none open: wrk's
//! p99 (`wrk -t1 -c8 --latency`), alternating rounds in one run. The attackers send half a
//! request head, then one header line every 2 s, and reconnect as soon as the server closes
//! them (the header read timeout, 10 s by default), so 1,000 stay open throughout.
//!
//! Run with: `cargo bench -p cutover-benches --bench slowloris` (goal: p99 ratio ≤ 2).

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use cutover_benches::{free_port, raise_file_limit, throughput::Server};
use tokio::{io::AsyncWriteExt as _, net::TcpStream};

const ATTACKERS: usize = 1000;
const ROUNDS: usize = 3;
const SECONDS: u32 = 8;

/// wrk's p99 latency and request rate.
fn measure(url: &str) -> (Duration, f64) {
    let output = Command::new("wrk")
        .args(["-t1", "-c8", &format!("-d{SECONDS}s"), "--latency", url])
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains("Non-2xx"), "errors during the run:\n{text}");
    let p99 = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("99%"))
        .map(|value| parse_latency(value.trim()))
        .unwrap_or_else(|| panic!("no p99 in wrk output:\n{text}"));
    let rps = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    (p99, rps)
}

fn parse_latency(text: &str) -> Duration {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().unwrap_or_else(|_| panic!("latency {text}"));
    let seconds = match unit {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        other => panic!("unknown unit {other} in {text}"),
    };
    Duration::from_secs_f64(seconds)
}

/// One slowloris client: half a head, a line every 2 s, reconnect when closed.
async fn attacker(port: u16, open: Arc<AtomicUsize>, closed: Arc<AtomicU64>, stop: tokio_util_stop::Stop) {
    while !stop.is_stopped() {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.is_err() {
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
                () = stop.wait() => break,
            }
            if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stop flag the attackers can await.
mod tokio_util_stop {
    use std::sync::Arc;

    use tokio::sync::watch;

    #[derive(Clone)]
    pub(crate) struct Stop(Arc<watch::Sender<bool>>, watch::Receiver<bool>);

    impl Stop {
        pub(crate) fn new() -> Self {
            let (sender, receiver) = watch::channel(false);
            Self(Arc::new(sender), receiver)
        }

        pub(crate) fn stop(&self) {
            let _ = self.0.send(true);
        }

        pub(crate) fn is_stopped(&self) -> bool {
            *self.1.borrow()
        }

        pub(crate) async fn wait(&self) {
            let mut receiver = self.1.clone();
            let _ = receiver.wait_for(|stopped| *stopped).await;
        }
    }
}

fn main() {
    raise_file_limit();
    let binary = env!("CARGO_BIN_EXE_bench-server");
    let port = free_port();
    let server = Server::start(binary, "service-full", port);
    let url = format!("http://127.0.0.1:{port}/");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    measure(&url); // warm-up
    let mut quiet = Vec::new();
    let mut attacked = Vec::new();
    for round in 0..ROUNDS {
        let (p99, rps) = measure(&url);
        println!("round {round}: no slowloris      p99 {p99:>10.2?}  {rps:>8.0} req/s");
        quiet.push(p99);

        let open = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicU64::new(0));
        let stop = tokio_util_stop::Stop::new();
        for _ in 0..ATTACKERS {
            runtime.spawn(attacker(port, Arc::clone(&open), Arc::clone(&closed), stop.clone()));
        }
        while open.load(Ordering::Relaxed) < ATTACKERS * 95 / 100 {
            std::thread::sleep(Duration::from_millis(50));
        }
        let (p99, rps) = measure(&url);
        println!(
            "round {round}: {} slowloris open  p99 {p99:>10.2?}  {rps:>8.0} req/s  ({} closed by the server so far)",
            open.load(Ordering::Relaxed),
            closed.load(Ordering::Relaxed)
        );
        attacked.push(p99);
        stop.stop();
        while open.load(Ordering::Relaxed) > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let median = |mut values: Vec<Duration>| {
        values.sort();
        values[values.len() / 2]
    };
    let (quiet, attacked) = (median(quiet), median(attacked));
    println!(
        "median p99 of {ROUNDS} rounds x {SECONDS}s, wrk -t1 -c8: none {quiet:.2?}, {ATTACKERS} slowloris {attacked:.2?}; ratio {:.2} (goal <= 2)",
        attacked.as_secs_f64() / quiet.as_secs_f64()
    );
    drop(server);
}
