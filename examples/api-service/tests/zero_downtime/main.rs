//! Zero downtime, measured: `api-service` deployed as two versions behind real nginx and
//! HAProxy (loopback only, proxy retries off) while a load generator counts every non-2xx
//! answer and socket error.
//!
//! 1. Blue-green switch through nginx.
//! 2. Rolling restart through nginx, with a 2 s lag before a terminated instance leaves the
//!    upstream (the Kubernetes endpoint-removal race).
//! 3. Rolling restart behind HAProxy, driven only by the readiness probe.
//! 4. Canary 90/10 through nginx (and `X-Canary: true`), then promote.
//! 5. A new version that never becomes ready: the switch is refused, the old one keeps serving.
//! 6. Long requests in flight during a switch complete; one longer than the shutdown timeout is
//!    cut and the process still exits inside its budget.
//! 7. POST traffic during a rolling restart (HAProxy).
//! 8. Negative control: scenario 3 with no drain delay must show errors, which proves the
//!    harness sees failures.
//!
//! Scenarios 1–7 run three times each and must show zero failures every time. Prints a table and
//! `N passed, N failed`; exits non-zero if anything failed.
//!
//! Run alone with: `scripts/services.sh up && cargo test -p api-service --test zero_downtime`

mod instance;
mod load;
mod proxy;

use std::{
    future::Future,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use instance::{Instance, Timing, free_port};
use load::{Kind, Load, Tally};
use proxy::{Haproxy, Nginx, Server};

const CLIENTS: usize = 8;
/// Clients open a connection per request to nginx: a reload closes the old workers' idle
/// keep-alive connections, and a client that sends on one at that moment gets a reset from
/// nginx itself, whatever the backends do. HAProxy (no reloads here) is driven with keep-alive.
const NGINX_KEEP_ALIVE: bool = false;
/// Drain 1 s, then up to 5 s for requests in flight.
const GOOD: Timing = Timing {
    drain: Duration::from_secs(1),
    timeout: Duration::from_secs(5),
};
const V1: &str = "1.0.0";
const V2: &str = "2.0.0";

struct Outcome {
    tally: Tally,
    note: String,
    passed: bool,
}

type Run = Result<Outcome, String>;

/// Start `version` on `port` and wait until it is ready.
async fn ready(dir: &Path, port: u16, version: &str, timing: Timing) -> Result<Instance, String> {
    let mut instance = Instance::start(dir, port, version, timing, &[]);
    if instance.wait_ready(Duration::from_secs(15)).await {
        Ok(instance)
    } else {
        Err(format!(
            "{version} on {port} never became ready:\n{}",
            instance.log_tail()
        ))
    }
}

/// Terminate `instance` and wait for it to exit inside its budget; returns how long it took.
async fn drain(mut instance: Instance, timing: Timing) -> Result<Duration, String> {
    instance.terminate();
    let budget = timing.drain + timing.timeout + Duration::from_secs(2);
    match instance.wait_exit(budget).await {
        Some((_, took)) => Ok(took),
        None => Err(format!("{} did not exit within {budget:?}", instance.version)),
    }
}

/// Poll through the proxy until `version` answers `n` times in a row.
async fn answering(url: &str, version: &str, n: usize) -> Result<(), String> {
    let client = reqwest::Client::new();
    let (mut streak, deadline) = (0, Instant::now() + Duration::from_secs(10));
    while streak < n {
        if Instant::now() > deadline {
            return Err(format!("{version} never answered {n} times in a row through the proxy"));
        }
        let answered = client.get(format!("{url}/")).send().await.ok().and_then(|r| {
            r.headers()
                .get("x-service-version")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        streak = if answered.as_deref() == Some(version) {
            streak + 1
        } else {
            0
        };
    }
    Ok(())
}

/// The blue-green switch: wait for green's readiness (refuse if it never comes), move the
/// traffic, wait until green is what answers. Blue is then drained by the caller.
async fn switch(nginx: &Nginx, green: &mut Instance, ready_within: Duration) -> Result<(), String> {
    if !green.wait_ready(ready_within).await {
        return Err(format!(
            "refused: {} never became ready within {ready_within:?}",
            green.version
        ));
    }
    nginx.switch(&[Server::one(green.port)]);
    answering(&nginx.url(), &green.version, 20).await
}

/// Version 1 ready, behind a fresh nginx.
async fn blue_behind_nginx(dir: &Path) -> Result<(Instance, Nginx), String> {
    let blue = ready(dir, free_port(), V1, GOOD).await?;
    let nginx = Nginx::start(dir, &[Server::one(blue.port)], None).await;
    Ok((blue, nginx))
}

fn clean(tally: Tally, note: String) -> Outcome {
    Outcome {
        passed: tally.failures() == 0,
        tally,
        note,
    }
}

async fn blue_green(dir: PathBuf) -> Run {
    let (blue, nginx) = blue_behind_nginx(&dir).await?;
    let load = Load::start(&nginx.url(), CLIENTS, Kind::Get { canary: false }, NGINX_KEEP_ALIVE);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut green = Instance::start(&dir, free_port(), V2, GOOD, &[]);
    switch(&nginx, &mut green, Duration::from_secs(15)).await?;
    let blue_exit = drain(blue, GOOD).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = load.stop().await;
    Ok(clean(tally, format!("blue exited {blue_exit:.1?} after SIGTERM")))
}

async fn rolling_with_endpoint_lag(dir: PathBuf) -> Run {
    // The drain delay must outlast the lag: 3 s against 2 s.
    let timing = Timing {
        drain: Duration::from_secs(3),
        timeout: Duration::from_secs(5),
    };
    let mut live = vec![
        ready(&dir, free_port(), V1, timing).await?,
        ready(&dir, free_port(), V1, timing).await?,
    ];
    let servers = |instances: &[Instance]| -> Vec<Server> {
        instances
            .iter()
            .map(|i| Server {
                port: i.port,
                weight: 1,
            })
            .collect()
    };
    let nginx = Nginx::start(&dir, &servers(&live), None).await;
    let load = Load::start(&nginx.url(), CLIENTS, Kind::Get { canary: false }, NGINX_KEEP_ALIVE);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..2 {
        // maxSurge 1, maxUnavailable 0: the new one first, then the old one goes.
        let new = ready(&dir, free_port(), V2, timing).await?;
        live.push(new);
        nginx.switch(&servers(&live));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let old = live.remove(0);
        old.terminate();
        tokio::time::sleep(Duration::from_secs(2)).await; // the endpoint-removal lag
        nginx.switch(&servers(&live));
        let mut old = old;
        old.wait_exit(timing.drain + timing.timeout)
            .await
            .ok_or_else(|| "an old instance did not exit".to_owned())?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = load.stop().await;
    Ok(clean(tally, "2 s lag, 3 s drain".to_owned()))
}

/// Replace each of two instances behind HAProxy, one at a time, on the same port: terminate,
/// wait for the exit, start the new version, wait until HAProxy has seen it ready.
async fn haproxy_rolling(dir: &Path, timing: Timing, kind: Kind) -> Result<Tally, String> {
    let ports = [free_port(), free_port()];
    let mut live = Vec::new();
    for port in ports {
        live.push(ready(dir, port, V1, timing).await?);
    }
    let haproxy = Haproxy::start(dir, &ports).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // two passing checks each
    let load = Load::start(&haproxy.url(), CLIENTS, kind, true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for port in ports {
        let old = live.remove(0);
        let mut old = old;
        old.terminate();
        old.wait_exit(timing.drain + timing.timeout + Duration::from_secs(2))
            .await
            .ok_or_else(|| "an old instance did not exit".to_owned())?;
        live.push(ready(dir, port, V2, timing).await?);
        tokio::time::sleep(Duration::from_millis(500)).await; // HAProxy: rise 2 × 100 ms
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(load.stop().await)
}

async fn rolling_haproxy(dir: PathBuf) -> Run {
    let tally = haproxy_rolling(&dir, GOOD, Kind::Get { canary: false }).await?;
    Ok(clean(tally, "readiness only, 1 s drain".to_owned()))
}

async fn post_during_rolling(dir: PathBuf) -> Run {
    let tally = haproxy_rolling(&dir, GOOD, Kind::Post).await?;
    Ok(clean(tally, "POST /api/users".to_owned()))
}

async fn negative_control(dir: PathBuf) -> Run {
    let no_drain = Timing {
        drain: Duration::ZERO,
        timeout: Duration::from_secs(5),
    };
    let tally = haproxy_rolling(&dir, no_drain, Kind::Get { canary: false }).await?;
    let failures = tally.failures();
    Ok(Outcome {
        tally,
        note: format!("drain 0: {failures} failures expected > 0"),
        passed: failures > 0,
    })
}

async fn canary(dir: PathBuf) -> Run {
    let stable = ready(&dir, free_port(), V1, GOOD).await?;
    let canary = ready(&dir, free_port(), V2, GOOD).await?;
    let weights = [
        Server {
            port: stable.port,
            weight: 9,
        },
        Server {
            port: canary.port,
            weight: 1,
        },
    ];
    let nginx = Nginx::start(&dir, &weights, Some(canary.port)).await;
    let split = Load::start(&nginx.url(), CLIENTS, Kind::Get { canary: false }, NGINX_KEEP_ALIVE);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let split = split.stop().await;
    let share = split.share(V2);

    let pinned = Load::start(&nginx.url(), 2, Kind::Get { canary: true }, NGINX_KEEP_ALIVE);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pinned = pinned.stop().await;
    let pinned_share = pinned.share(V2);

    // Promote: all traffic to the canary, then the stable version drains.
    let load = Load::start(&nginx.url(), CLIENTS, Kind::Get { canary: false }, NGINX_KEEP_ALIVE);
    tokio::time::sleep(Duration::from_millis(300)).await;
    nginx.switch(&[Server::one(canary.port)]);
    answering(&nginx.url(), V2, 20).await?;
    drain(stable, GOOD).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut tally = load.stop().await;
    let promoted = tally.share(V2);
    let within = (share - 0.10).abs() <= 0.03;
    let note = format!(
        "split {:.1}% to the canary (weight 10%), X-Canary {:.0}%",
        share * 100.0,
        pinned_share * 100.0
    );
    let extra_ok = within && pinned_share >= 0.999 && promoted > 0.0;
    for part in [split, pinned] {
        tally.ok += part.ok;
        tally.errors += part.errors;
        for (status, n) in part.statuses {
            *tally.statuses.entry(status).or_default() += n;
        }
    }
    let passed = tally.failures() == 0 && extra_ok;
    Ok(Outcome { tally, note, passed })
}

async fn never_ready(dir: PathBuf) -> Run {
    // Blue serves throughout: held until the end, never drained.
    let (_blue, nginx) = blue_behind_nginx(&dir).await?;
    let load = Load::start(&nginx.url(), CLIENTS, Kind::Get { canary: false }, NGINX_KEEP_ALIVE);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Green's database is unreachable: it starts, answers its probes, and is never ready.
    let dead = format!("postgres://cutover:cutover@127.0.0.1:{}/none", free_port());
    let mut green = Instance::start(&dir, free_port(), V2, GOOD, &[("DATABASE_URL", &dead)]);
    let refused = match switch(&nginx, &mut green, Duration::from_secs(3)).await {
        Err(reason) if reason.starts_with("refused") => true,
        Err(other) => return Err(other),
        Ok(_) => false,
    };
    let green_alive = green.wait_exit(Duration::ZERO).await.is_none();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = load.stop().await;
    let only_blue = tally.share(V1) >= 0.999;
    let passed = tally.failures() == 0 && refused && only_blue && green_alive;
    Ok(Outcome {
        note: format!("switch refused: {refused}; green still running, not ready: {green_alive}"),
        tally,
        passed,
    })
}

async fn long_requests(dir: PathBuf) -> Run {
    let (blue, nginx) = blue_behind_nginx(&dir).await?;
    let mut green = ready(&dir, free_port(), V2, GOOD).await?;
    let load = Load::start(&nginx.url(), CLIENTS, Kind::Get { canary: false }, NGINX_KEEP_ALIVE);
    let slow = |ms: u64| {
        let url = format!("{}/api/slow?ms={ms}", nginx.url());
        tokio::spawn(async move {
            reqwest::Client::new()
                .get(url)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    let in_time: Vec<_> = (0..4).map(|_| slow(3_000)).collect();
    let too_long = slow(20_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    switch(&nginx, &mut green, Duration::from_secs(5)).await?;
    let switched = started.elapsed();
    let blue_exit = drain(blue, GOOD).await?;
    let mut completed = 0;
    for request in in_time {
        if matches!(request.await, Ok(Ok(200))) {
            completed += 1;
        }
    }
    let cut = !matches!(too_long.await, Ok(Ok(200)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = load.stop().await;
    let budget = GOOD.drain + GOOD.timeout + Duration::from_millis(500);
    let passed = tally.failures() == 0 && completed == 4 && cut && blue_exit <= budget;
    Ok(Outcome {
        note: format!(
            "4 × 3 s requests: {completed} completed; 20 s request cut: {cut}; blue exited {blue_exit:.1?} after SIGTERM (budget {budget:?}); traffic moved in {switched:.1?}"
        ),
        tally,
        passed,
    })
}

struct Row {
    name: &'static str,
    run: usize,
    outcome: Result<Outcome, String>,
}

async fn run_scenario<F, Fut>(name: &'static str, runs: usize, root: &Path, scenario: F) -> Vec<Row>
where
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = Run>,
{
    let mut rows = Vec::new();
    for run in 1..=runs {
        let dir = root.join(format!("{}-{run}", name.replace(' ', "-")));
        std::fs::create_dir_all(&dir).expect("scenario dir");
        let outcome = tokio::time::timeout(Duration::from_secs(90), scenario(dir))
            .await
            .unwrap_or_else(|_| Err("timed out after 90 s".to_owned()));
        print_row(name, run, &outcome);
        rows.push(Row { name, run, outcome });
    }
    rows
}

fn print_row(name: &str, run: usize, outcome: &Result<Outcome, String>) {
    match outcome {
        Ok(o) => {
            let versions: Vec<String> = o.tally.versions.iter().map(|(v, n)| format!("{v}:{n}")).collect();
            println!(
                "| {name:<34} | {run} | {:>7} | {:>7} | {:>6} | {:<22} | {:<4} | {}{} |",
                o.tally.total(),
                o.tally.statuses.values().sum::<u64>(),
                o.tally.errors,
                versions.join(" "),
                if o.passed { "pass" } else { "FAIL" },
                o.note,
                if o.tally.samples.is_empty() {
                    String::new()
                } else {
                    format!(" (e.g. {})", o.tally.samples.join("; "))
                }
            );
        }
        Err(error) => println!(
            "| {name:<34} | {run} | {:>7} | {:>7} | {:>6} | {:<22} | FAIL | {error} |",
            "-", "-", "-", "-"
        ),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let root = std::env::temp_dir().join(format!("cutover-zero-downtime-{}", std::process::id()));
    std::fs::create_dir_all(&root).expect("temp dir");
    println!(
        "zero-downtime harness: {CLIENTS} clients, proxy retries off; logs in {}",
        root.display()
    );
    println!(
        "| scenario                           | # | requests | non-2xx | socket errors | versions | result | notes |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    rows.extend(run_scenario("1 blue-green (nginx)", 3, &root, blue_green).await);
    rows.extend(
        run_scenario(
            "2 rolling, 2 s endpoint lag (nginx)",
            3,
            &root,
            rolling_with_endpoint_lag,
        )
        .await,
    );
    rows.extend(run_scenario("3 rolling, readiness only (HAProxy)", 3, &root, rolling_haproxy).await);
    rows.extend(run_scenario("4 canary 90/10, promote (nginx)", 3, &root, canary).await);
    rows.extend(run_scenario("5 green never ready (nginx)", 3, &root, never_ready).await);
    rows.extend(run_scenario("6 long requests in flight (nginx)", 3, &root, long_requests).await);
    rows.extend(run_scenario("7 POST during rolling (HAProxy)", 3, &root, post_during_rolling).await);
    rows.extend(run_scenario("8 negative control: drain 0", 1, &root, negative_control).await);
    let passed = rows.iter().filter(|r| matches!(&r.outcome, Ok(o) if o.passed)).count();
    let failed = rows.len() - passed;
    for row in rows.iter().filter(|r| !matches!(&r.outcome, Ok(o) if o.passed)) {
        println!("failed: {} run {}", row.name, row.run);
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        let _ = std::fs::remove_dir_all(&root);
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
