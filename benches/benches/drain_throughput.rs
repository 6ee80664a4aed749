//! Throughput of a hello-world axum server with cutover (drain layer, probe routes, graceful
//! shutdown) versus the same router served bare, measured in the same run with the same load
//! generator (wrk, from Debian's `wrk` package). Runs alternate bare / cutover so that drift on
//! the machine affects both; the ratio of medians is reported.
//!
//! Run with: `cargo bench -p cutover-benches --bench drain_throughput`

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use cutover_benches::{free_port, wait_for_listener};

const ROUNDS: usize = 9;
const SECONDS: u32 = 3;

struct Server(Child);

impl Server {
    fn start(mode: &str, port: u16) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_bench-server"))
            .args([mode, &port.to_string(), "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bench-server");
        wait_for_listener(port, Duration::from_secs(10));
        Self(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU time (user + system, in clock ticks) the process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after_name = stat.rsplit_once(')').expect("stat format").1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Requests per second and total requests reported by wrk.
fn wrk(port: u16) -> (f64, f64) {
    let output = Command::new("wrk")
        .args([
            "-t1",
            "-c32",
            &format!("-d{SECONDS}s"),
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .unwrap_or_else(|error| panic!("cannot run wrk ({error}); install it with `apt-get install wrk`"));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains("Non-2xx"), "errors during the run:\n{text}");
    let rps = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    let total = text
        .lines()
        .find_map(|line| {
            line.trim()
                .split_once(" requests in ")
                .map(|(count, _)| count.to_owned())
        })
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk output:\n{text}"));
    (rps, total)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let mut rps = [Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new()];
    let mut ratios = Vec::new();
    for round in 0..ROUNDS {
        // Alternate which goes first, so a trend in the machine's speed favours neither.
        let order = if round % 2 == 0 {
            ["bare", "cutover"]
        } else {
            ["cutover", "bare"]
        };
        let mut this_round = [0.0; 2];
        for mode in order {
            let index = usize::from(mode == "cutover");
            let port = free_port();
            let server = Server::start(mode, port);
            wrk(port); // warm-up, not counted
            let before = cpu_ticks(server.0.id());
            let (throughput, requests) = wrk(port);
            #[allow(clippy::cast_precision_loss)]
            let ticks = (cpu_ticks(server.0.id()) - before) as f64;
            // Server CPU time per request (user + kernel), in microseconds; clock ticks are 10 ms.
            let cpu_us = ticks * 10_000.0 / requests;
            println!("round {round}: {mode:<8} {throughput:>10.0} req/s   {cpu_us:.2} us CPU/request");
            this_round[index] = throughput;
            rps[index].push(throughput);
            cpu[index].push(cpu_us);
        }
        ratios.push(this_round[1] / this_round[0]);
    }
    let [bare_rps, cutover_rps] = rps.map(median);
    let [bare_cpu, cutover_cpu] = cpu.map(median);
    println!("median of {ROUNDS} rounds x {SECONDS}s, wrk -t1 -c32, server on 1 worker thread:");
    println!("  bare axum:              {bare_rps:>10.0} req/s   {bare_cpu:.2} us CPU/request");
    println!("  cutover (drain+probes): {cutover_rps:>10.0} req/s   {cutover_cpu:.2} us CPU/request");
    println!(
        "  throughput ratio: {:.3} (medians), {:.3} (median of per-round ratios); CPU-per-request ratio bare/cutover: {:.3}",
        cutover_rps / bare_rps,
        median(ratios),
        bare_cpu / cutover_cpu
    );
}
