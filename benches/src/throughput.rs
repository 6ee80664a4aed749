//! Two servers, the same load generator (wrk), alternating rounds: the throughput ratio of a
//! candidate against its baseline, measured in one run.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{free_port, wait_for_listener};

/// `program`, run on CPU `cpu` alone when `taskset` is there and the machine has that CPU.
fn pinned(cpu: usize, program: &str) -> Command {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let taskset = std::path::Path::new("/usr/bin/taskset");
    if cpus > cpu && cpus >= 2 && taskset.exists() {
        let mut command = Command::new(taskset);
        command.args(["-c", &cpu.to_string(), program]);
        command
    } else {
        Command::new(program)
    }
}

/// A `bench-server` process, killed on drop.
#[derive(Debug)]
pub struct Server(pub Child);

impl Server {
    /// Start `bench-server <mode> <port> 1` and wait until it listens.
    ///
    /// # Panics
    ///
    /// If it cannot be started or does not listen within 10 s.
    pub fn start(binary: &str, mode: &str, port: u16) -> Self {
        // The server on the second core and wrk on the first (see `wrk`): on two cores, which
        // core each lands on otherwise changes the result by 10-20 % from run to run.
        let child = pinned(1, binary)
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
///
/// # Panics
///
/// If `/proc/<pid>/stat` cannot be read (not Linux).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after_name = stat.rsplit_once(')').expect("stat format").1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Requests per second and total requests reported by `wrk -t1 -c32` on `url`.
///
/// # Panics
///
/// If wrk is missing, fails, or reports non-2xx responses.
pub fn wrk(url: &str, seconds: u32) -> (f64, f64) {
    let output = pinned(0, "wrk")
        .args(["-t1", "-c32", &format!("-d{seconds}s"), url])
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

/// Run `rounds` alternating rounds of `seconds` against `baseline` and `candidate` modes of
/// `binary`, printing each round and the summary.
pub fn compare(binary: &str, baseline: &str, candidate: &str, path: &str, rounds: usize, seconds: u32) {
    let mut rps = [Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new()];
    let mut ratios = Vec::new();
    for round in 0..rounds {
        // Alternate which goes first, so a trend in the machine's speed favours neither.
        let order = if round % 2 == 0 {
            [baseline, candidate]
        } else {
            [candidate, baseline]
        };
        let mut this_round = [0.0; 2];
        for mode in order {
            let index = usize::from(mode == candidate);
            let port = free_port();
            let server = Server::start(binary, mode, port);
            let url = format!("http://127.0.0.1:{port}{path}");
            wrk(&url, 1); // warm-up, not counted
            let before = cpu_ticks(server.0.id());
            let (throughput, requests) = wrk(&url, seconds);
            #[allow(clippy::cast_precision_loss)]
            let ticks = (cpu_ticks(server.0.id()) - before) as f64;
            // Server CPU time per request (user + kernel), in microseconds; a tick is 10 ms.
            let cpu_us = ticks * 10_000.0 / requests;
            println!("round {round}: {mode:<16} {throughput:>10.0} req/s   {cpu_us:.2} us CPU/request");
            this_round[index] = throughput;
            rps[index].push(throughput);
            cpu[index].push(cpu_us);
        }
        ratios.push(this_round[1] / this_round[0]);
    }
    let [base_rps, cand_rps] = rps.map(median);
    let [base_cpu, cand_cpu] = cpu.map(median);
    println!("median of {rounds} rounds x {seconds}s, wrk -t1 -c32 GET {path}, server on 1 worker thread:");
    println!("  {baseline:<16} {base_rps:>10.0} req/s   {base_cpu:.2} us CPU/request");
    println!("  {candidate:<16} {cand_rps:>10.0} req/s   {cand_cpu:.2} us CPU/request");
    println!(
        "  throughput ratio {candidate}/{baseline}: {:.3} (medians), {:.3} (median of per-round ratios); CPU-per-request ratio: {:.3}",
        cand_rps / base_rps,
        median(ratios),
        base_cpu / cand_cpu
    );
}
