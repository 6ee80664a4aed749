//! Server CPU work per request, counted in instructions with `valgrind --tool=callgrind`
//! (repeatable, whatever else the machine is doing): the hello-world server bare and through
//! cutover (drain layer + probe routes). Each is run twice with different request counts and
//! the difference is divided by the difference in requests, so start-up and shutdown cancel.
//!
//! Run with: `cargo bench -p cutover-benches --bench drain_instructions` (needs valgrind).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::Duration,
};

use cutover_benches::{free_port, sigterm, wait_for_listener};

const FEW: u64 = 2_000;
const MANY: u64 = 12_000;

/// Send `count` requests one after another on one keep-alive connection.
fn load(port: u16, count: u64) {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    for _ in 0..count {
        writer
            .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            .expect("write");
        let mut content_length = 0;
        let mut line = String::new();
        reader.read_line(&mut line).expect("status line");
        assert!(line.starts_with("HTTP/1.1 200"), "unexpected response: {line}");
        loop {
            line.clear();
            reader.read_line(&mut line).expect("header");
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = value.trim().parse().expect("content-length");
            }
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body).expect("body");
    }
}

/// Instructions the server executed while starting, answering `count` requests and stopping.
fn instructions(mode: &str, count: u64) -> u64 {
    let port = free_port();
    let out = std::env::temp_dir().join(format!("cutover-callgrind-{mode}-{count}-{port}.out"));
    let mut child = Command::new("valgrind")
        .args(["--tool=callgrind", &format!("--callgrind-out-file={}", out.display())])
        .arg(env!("CARGO_BIN_EXE_bench-server"))
        .args([mode, &port.to_string(), "1"])
        .env("SHUTDOWN_DRAIN_DELAY", "0s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run valgrind ({error}); install it with `apt-get install valgrind`"));
    wait_for_listener(port, Duration::from_secs(60));
    load(port, count);
    sigterm(child.id());
    child.wait().expect("wait");
    let profile = std::fs::read_to_string(&out).expect("callgrind output");
    let _ = std::fs::remove_file(&out);
    profile
        .lines()
        .find_map(|line| line.strip_prefix("totals:").or_else(|| line.strip_prefix("summary:")))
        .and_then(|total| total.trim().parse().ok())
        .expect("instruction total in callgrind output")
}

fn per_request(mode: &str) -> f64 {
    let few = instructions(mode, FEW);
    let many = instructions(mode, MANY);
    #[allow(clippy::cast_precision_loss)]
    let per = (many - few) as f64 / (MANY - FEW) as f64;
    per
}

fn main() {
    let bare = per_request("bare");
    let cutover = per_request("cutover");
    println!("server instructions per request (callgrind, keep-alive GET /, difference of {MANY} and {FEW} requests):");
    println!("  bare axum:              {bare:>8.0}");
    println!("  cutover (drain+probes): {cutover:>8.0}  (+{:.0})", cutover - bare);
    println!(
        "  throughput ratio implied (bare / cutover instructions): {:.3}",
        bare / cutover
    );
}
