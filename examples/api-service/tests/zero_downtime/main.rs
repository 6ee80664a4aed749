//! Zero downtime, measured: `api-service` deployed as two versions behind real nginx, HAProxy
//! and Traefik, running the files users copy from `examples/deploy/` (nothing here writes a
//! proxy configuration: see `proxy.rs` and `traefik.rs` for how ports are given to them), while
//! a load generator counts every non-2xx answer and socket error.
//!
//! 1. Blue-green switch through nginx, by the shipped `nginx/switch.sh`.
//! 2. Rolling restart through nginx, with a 2 s lag before a terminated instance leaves the
//!    upstream (the Kubernetes endpoint-removal race).
//! 3. Rolling restart of three instances behind the shipped HAProxy file, driven only by the
//!    readiness probe.
//! 4. Canary 9:1 through nginx (weights by `switch.sh`), then promote.
//! 5. A new version that never becomes ready: `switch.sh` refuses, the old one keeps serving.
//! 6. Long requests in flight during a switch complete; one longer than the shutdown timeout is
//!    cut and the process still exits inside its budget.
//! 7. POST traffic during a rolling restart (HAProxy).
//! 8. Negative control: scenario 3 with no drain delay (and no proxy retries) must show errors.
//! 9. `switch.sh`'s failure paths: no arguments, `nginx -t` failing, the confirmation failing.
//! 10. Blue-green through Traefik by the shipped `blue-green/switch.sh` (Traefik watching the
//!     shipped dynamic file).
//! 11. The same with a green that never becomes ready: refused, routing untouched.
//! 12. Canary 90/10 through Traefik: 200 users with the sticky cookie, `X-Canary: true`, then
//!     `promote.sh --rollback`.
//! 13. A canary that turns unready (draining) under load: its share drops to 0, no errors.
//! 14. `canary/promote.sh` promotes a good canary 10 → 50 → 100 % on Prometheus' verdicts.
//! 15. `promote.sh` rolls back a canary that fails 20 % of its requests.
//! 16. Negative control: scenario 13 without the weighted service's `healthCheck: {}`.
//! 17. Pooled keep-alive at both hops through nginx, POSTs from low-rate clients whose gaps
//!     straddle the service's header timeout: never a closed pooled connection.
//! 18. The same through HAProxy (retries off).
//! 19. Negative control: the service's idle timeout below nginx's pool timeout must show the
//!     keep-alive race (502s on POSTs).
//!
//! Scenarios 1–7, 9–15, 17 and 18 run three times each and must pass every time. At the end no process
//! started for a scenario may still be alive. Prints a table and `N passed, N failed`; exits
//! non-zero if anything failed.
//!
//! Run alone with: `scripts/services.sh up && cargo test -p api-service --test zero_downtime`
//! (`ZERO_DOWNTIME_ONLY=Traefik` runs the scenarios whose name contains that text).

mod hooks;
mod instance;
mod load;
mod timeline;
mod traefik;

use std::{
    future::Future,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use cutover_tests::proxy::{Haproxy, Nginx, Server, Switched};
use hooks::Hooks;
use instance::{Instance, Timing, free_port};
use load::{Kind, Load, Tally};
use traefik::{Prometheus, Setup, Traefik};

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
/// The shipped HAProxy file takes a draining instance out within 0.5–1.0 s of its readiness
/// turning 503 (checks every 500 ms, fall 2): its comment asks for a drain delay of 2 s or more.
const HAPROXY: Timing = Timing {
    drain: Duration::from_secs(2),
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
    timeline::mark(format!("SIGTERM {}", instance.version));
    instance.terminate();
    let budget = timing.drain + timing.timeout + Duration::from_secs(2);
    match instance.wait_exit(budget).await {
        Some((_, took)) => {
            timeline::mark(format!("{} exited", instance.version));
            Ok(took)
        }
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

/// The blue-green switch, by the shipped `nginx/switch.sh`: it waits for green's readiness
/// (refusing if it never comes), moves the traffic, and confirms green is what answers. Blue is
/// then drained by the caller.
async fn switch(nginx: &Nginx, green: &Instance, ready_within: Duration) -> Result<(), String> {
    timeline::mark("switch.sh");
    let switched = nginx.switch(&[Server::one(green.port)], ready_within).await;
    timeline::mark(if switched.ok { "switched" } else { "switch refused" });
    match switched {
        Switched { ok: true, .. } => Ok(()),
        Switched { output, .. } if output.contains("refusing to switch") => Err(format!("refused: {output}")),
        Switched { output, .. } => Err(format!("switch.sh failed: {output}")),
    }
}

/// Any switch through the shipped script that must succeed.
async fn nginx_switch(nginx: &Nginx, servers: &[Server]) -> Result<(), String> {
    timeline::mark("switch.sh");
    let switched = nginx.switch(servers, Duration::from_secs(10)).await;
    if switched.ok {
        Ok(())
    } else {
        Err(format!("switch.sh failed: {}", switched.output))
    }
}

/// Version 1 ready, behind a fresh nginx.
async fn blue_behind_nginx(dir: &Path) -> Result<(Instance, Nginx), String> {
    let blue = ready(dir, free_port(), V1, GOOD).await?;
    let nginx = Nginx::start(dir, &[Server::one(blue.port)]).await;
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
    let green = Instance::start(&dir, free_port(), V2, GOOD, &[]);
    switch(&nginx, &green, Duration::from_secs(15)).await?;
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
    let nginx = Nginx::start(&dir, &servers(&live)).await;
    let load = Load::start(&nginx.url(), CLIENTS, Kind::Get { canary: false }, NGINX_KEEP_ALIVE);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..2 {
        // maxSurge 1, maxUnavailable 0: the new one first, then the old one goes.
        let new = ready(&dir, free_port(), V2, timing).await?;
        live.push(new);
        nginx_switch(&nginx, &servers(&live)).await?;
        let old = live.remove(0);
        timeline::mark("SIGTERM 1.0.0");
        old.terminate();
        tokio::time::sleep(Duration::from_secs(2)).await; // the endpoint-removal lag
        nginx_switch(&nginx, &servers(&live)).await?;
        let mut old = old;
        old.wait_exit(timing.drain + timing.timeout)
            .await
            .ok_or_else(|| "an old instance did not exit".to_owned())?;
        timeline::mark("1.0.0 exited");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = load.stop().await;
    Ok(clean(tally, "2 s lag, 3 s drain".to_owned()))
}

/// Replace each of the three instances of the shipped HAProxy file, one at a time, on the same
/// port: terminate, wait for the exit, start the new version, wait until HAProxy has seen it
/// ready.
async fn haproxy_rolling(dir: &Path, timing: Timing, kind: Kind, haproxy: &[(&str, &str)]) -> Result<Tally, String> {
    let ports = [free_port(), free_port(), free_port()];
    let mut live = Vec::new();
    for port in ports {
        live.push(ready(dir, port, V1, timing).await?);
    }
    let haproxy = Haproxy::start(dir, &ports, haproxy).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await; // two passing checks each (500 ms)
    let load = Load::start(&haproxy.url(), CLIENTS, kind, true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for port in ports {
        let old = live.remove(0);
        let mut old = old;
        timeline::mark("SIGTERM 1.0.0");
        old.terminate();
        old.wait_exit(timing.drain + timing.timeout + Duration::from_secs(2))
            .await
            .ok_or_else(|| "an old instance did not exit".to_owned())?;
        timeline::mark("exited");
        live.push(ready(dir, port, V2, timing).await?);
        timeline::mark("2.0.0 ready");
        tokio::time::sleep(Duration::from_millis(1_200)).await; // HAProxy: rise 2 × 500 ms
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(load.stop().await)
}

async fn rolling_haproxy(dir: PathBuf) -> Run {
    let tally = haproxy_rolling(&dir, HAPROXY, Kind::Get { canary: false }, &[]).await?;
    Ok(clean(tally, "readiness only, 2 s drain".to_owned()))
}

async fn post_during_rolling(dir: PathBuf) -> Run {
    let tally = haproxy_rolling(&dir, HAPROXY, Kind::Post, &[]).await?;
    Ok(clean(tally, "POST /api/users".to_owned()))
}

async fn negative_control(dir: PathBuf) -> Run {
    let no_drain = Timing {
        drain: Duration::ZERO,
        timeout: Duration::from_secs(5),
    };
    // Without retries: the shipped file's retries on connection failures hide most of what a
    // drain-less shutdown does (a handful of errors a run), which is not what this proves.
    let tally = haproxy_rolling(&dir, no_drain, Kind::Get { canary: false }, &[("HAPROXY_RETRIES", "0")]).await?;
    let failures = tally.failures();
    Ok(Outcome {
        tally,
        note: format!("drain 0, retries 0: {failures} failures expected > 0"),
        passed: failures > 0,
    })
}

/// Pooled keep-alive connections at both hops, with low-rate POST clients whose idle gaps
/// straddle a timeout of the service: `PACED_CLIENTS` clients waiting `PACE` ± `PACE_JITTER`
/// after each answer, for `PACED_FOR`. Timeouts are scaled down (200 ms for 10 s or 75 s) so
/// that hundreds of reuses land within a few milliseconds of the timeout in seconds.
const PACED_CLIENTS: usize = 8;
const PACE: Duration = Duration::from_millis(200);
const PACE_JITTER: Duration = Duration::from_millis(3);
const PACED_FOR: Duration = Duration::from_secs(10);

/// `instance_env` for one instance behind the shipped nginx (its upstream pool: `keepalive 32`,
/// idle ones closed after 60 s), paced POSTs through it.
async fn paced_behind_nginx(dir: &Path, instance_env: &[(&str, &str)], paced_for: Duration) -> Result<Tally, String> {
    let mut instance = Instance::start(dir, free_port(), V1, GOOD, instance_env);
    if !instance.wait_ready(Duration::from_secs(15)).await {
        return Err(format!("never became ready:\n{}", instance.log_tail()));
    }
    let nginx = Nginx::start(dir, &[Server::one(instance.port)]).await;
    let load = Load::paced(&nginx.url(), PACED_CLIENTS, Kind::Post, PACE, PACE_JITTER);
    tokio::time::sleep(paced_for).await;
    let tally = load.stop().await;
    drain(instance, GOOD).await?;
    Ok(tally)
}

/// Through nginx: the header read timeout (200 ms here, 10 s by default) never closes a
/// kept-alive connection between requests, so nginx's pooled connections are never closed
/// under it, whatever the gap. (Before 0.2 it did, and a POST reusing one got a 502.)
async fn pooled_across_the_header_timeout(dir: PathBuf) -> Run {
    let tally = paced_behind_nginx(&dir, &[("HTTP_HEADER_READ_TIMEOUT", "200ms")], PACED_FOR).await?;
    Ok(clean(tally, "POSTs every 200 ± 3 ms, header timeout 200 ms".to_owned()))
}

/// The same through the shipped HAProxy file (`http-reuse safe`, pool purged after 5 s).
async fn pooled_across_the_header_timeout_haproxy(dir: PathBuf) -> Run {
    let env = [("HTTP_HEADER_READ_TIMEOUT", "200ms")];
    let ports = [free_port(), free_port(), free_port()];
    let mut instances = Vec::new();
    for port in ports {
        let mut instance = Instance::start(&dir, port, V1, HAPROXY, &env);
        if !instance.wait_ready(Duration::from_secs(15)).await {
            return Err(format!("never became ready:\n{}", instance.log_tail()));
        }
        instances.push(instance);
    }
    // Without retries, so a reset on a reused connection is seen, not hidden.
    let haproxy = Haproxy::start(&dir, &ports, &[("HAPROXY_RETRIES", "0")]).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await; // two passing checks each
    let load = Load::paced(&haproxy.url(), PACED_CLIENTS, Kind::Post, PACE, PACE_JITTER);
    tokio::time::sleep(PACED_FOR).await;
    let tally = load.stop().await;
    for instance in instances {
        drain(instance, HAPROXY).await?;
    }
    Ok(clean(
        tally,
        "POSTs every 200 ± 3 ms, header timeout 200 ms, retries 0".to_owned(),
    ))
}

/// Negative control: the service's idle timeout (200 ms) below nginx's pool timeout (60 s).
/// The service closes pooled connections nginx is about to reuse: some POSTs must get a 502,
/// or the harness cannot see the keep-alive race it guards against.
async fn keep_alive_race(dir: PathBuf) -> Run {
    // Twice as long as the others: about 1 reuse in 80 hits the race on loopback, and a
    // control that sees none by chance would prove nothing.
    let tally = paced_behind_nginx(&dir, &[("HTTP_IDLE_TIMEOUT", "200ms")], 2 * PACED_FOR).await?;
    let failures = tally.failures();
    Ok(Outcome {
        tally,
        note: format!("idle 200 ms < nginx 60 s: {failures} failures expected > 0"),
        passed: failures > 0,
    })
}

async fn canary(dir: PathBuf) -> Run {
    let stable = ready(&dir, free_port(), V1, GOOD).await?;
    let canary = ready(&dir, free_port(), V2, GOOD).await?;
    let nginx = Nginx::start(&dir, &[Server::one(stable.port)]).await;
    let mut tally = Tally::default();
    // 90/10 by the shipped script's weights, under load.
    let load = Load::start(&nginx.url(), CLIENTS, Kind::Get { canary: false }, NGINX_KEEP_ALIVE);
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    nginx_switch(&nginx, &weights).await?;
    tally.merge(load.stop().await);
    let split = Load::start(&nginx.url(), CLIENTS, Kind::Get { canary: false }, NGINX_KEEP_ALIVE);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let split = split.stop().await;
    let share = split.share(V2);
    tally.merge(split);

    // Promote: all traffic to the canary, then the stable version drains.
    let load = Load::start(&nginx.url(), CLIENTS, Kind::Get { canary: false }, NGINX_KEEP_ALIVE);
    tokio::time::sleep(Duration::from_millis(300)).await;
    nginx_switch(&nginx, &[Server::one(canary.port)]).await?;
    drain(stable, GOOD).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let promoted = load.stop().await;
    let after = promoted.share(V2);
    tally.merge(promoted);
    let within = (share - 0.10).abs() <= 0.03;
    let note = format!("split {:.1}% to the canary (weight 9:1), promoted", share * 100.0);
    let passed = tally.failures() == 0 && within && after > 0.0;
    Ok(Outcome { tally, note, passed })
}

/// The shipped `switch.sh`'s failure paths, under load on blue: each one must leave nginx in
/// the state its message describes, and cost clients nothing.
async fn switch_failures(dir: PathBuf) -> Run {
    let (_blue, nginx) = blue_behind_nginx(&dir).await?;
    let green = ready(&dir, free_port(), V2, GOOD).await?;
    let load = Load::start(&nginx.url(), CLIENTS, Kind::Get { canary: false }, NGINX_KEEP_ALIVE);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = nginx.upstream();
    let mut failed = Vec::new();

    // A bad argument: refused before anything is touched.
    let bad = nginx.switch(&[], Duration::from_secs(1)).await;
    if bad.ok || !bad.output.contains("usage: switch.sh") || nginx.upstream() != before {
        failed.push(format!("no arguments: {}", bad.output));
    }

    // The configuration no longer passes `nginx -t` (an operator's broken edit): the old
    // upstream is put back and nothing is reloaded.
    let config = nginx.dir.join("nginx.conf");
    let good = std::fs::read_to_string(&config).map_err(|e| e.to_string())?;
    std::fs::write(&config, format!("{good}\nthis is not a directive;\n")).map_err(|e| e.to_string())?;
    let broken = nginx.switch(&[Server::one(green.port)], Duration::from_secs(5)).await;
    std::fs::write(&config, &good).map_err(|e| e.to_string())?;
    if broken.ok || !broken.output.contains("nginx -t failed; upstream.conf restored") || nginx.upstream() != before {
        failed.push(format!("nginx -t failing: {}", broken.output));
    }
    let blue_only = Load::start(&nginx.url(), 2, Kind::Get { canary: false }, NGINX_KEEP_ALIVE);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let blue_only = blue_only.stop().await;
    if blue_only.share(V1) < 0.999 {
        failed.push(format!(
            "after the refused switch, blue answered {:.1}%",
            blue_only.share(V1) * 100.0
        ));
    }

    // Every confirming request fails (the proxy address is wrong): the switch happened, the
    // script says it could not confirm it, and traffic is on green.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let unconfirmed = nginx
        .switch_with(
            &[Server::one(green.port)],
            Duration::from_secs(5),
            &[("PROXY_URL", closed), ("VERIFY_TIMEOUT", "2".to_owned())],
        )
        .await;
    if unconfirmed.ok
        || !unconfirmed
            .output
            .contains("were not confirmed within 2s (last: request failed")
        || !nginx.upstream().contains(&format!("127.0.0.1:{} ", green.port))
    {
        failed.push(format!("confirmation failing: {}", unconfirmed.output));
    }
    answering(&nginx.url(), V2, 20).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut tally = load.stop().await;
    tally.merge(blue_only);
    let note = if failed.is_empty() {
        "no arguments, nginx -t failing, confirmation failing: each refused or reported, state as said".to_owned()
    } else {
        failed.join("; ")
    };
    Ok(Outcome {
        passed: tally.failures() == 0 && failed.is_empty(),
        tally,
        note,
    })
}

async fn never_ready(dir: PathBuf) -> Run {
    // Blue serves throughout: held until the end, never drained.
    let (_blue, nginx) = blue_behind_nginx(&dir).await?;
    let load = Load::start(&nginx.url(), CLIENTS, Kind::Get { canary: false }, NGINX_KEEP_ALIVE);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Green's database is unreachable: it starts, answers its probes, and is never ready.
    let dead = format!("postgres://cutover:cutover@127.0.0.1:{}/none", free_port());
    let mut green = Instance::start(&dir, free_port(), V2, GOOD, &[("DATABASE_URL", &dead)]);
    let before = nginx.upstream();
    let refused = match switch(&nginx, &green, Duration::from_secs(3)).await {
        Err(reason) if reason.starts_with("refused") => nginx.upstream() == before,
        Err(other) => return Err(other),
        Ok(()) => false,
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
    let green = ready(&dir, free_port(), V2, GOOD).await?;
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
    switch(&nginx, &green, Duration::from_secs(5)).await?;
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

/// The settings every shipped Traefik script gets from the harness: where Traefik and its
/// dynamic file are, and short timeouts.
fn script_env(traefik: &Traefik) -> Vec<(&'static str, String)> {
    vec![
        ("DYNAMIC_FILE", traefik.dynamic.display().to_string()),
        ("PROXY_URL", traefik.url()),
        ("READY_TIMEOUT", "15".to_owned()),
        ("VERIFY_TIMEOUT", "20".to_owned()),
    ]
}

/// Blue on its own behind Traefik's shipped blue-green setup.
async fn traefik_blue(dir: &Path, green_env: Option<&str>) -> Result<(Hooks, Traefik), String> {
    let mut hooks = Hooks::new(dir, &["blue", "green"], GOOD);
    if let Some(words) = green_env {
        hooks.env("green", words);
    }
    hooks.start("blue", V1).await?;
    let servers = [
        ("API_BLUE_URL", hooks.url("blue")),
        ("API_GREEN_URL", hooks.url("green")),
    ];
    let traefik = Traefik::start(dir, Setup::BlueGreen, &servers, |file| file).await;
    answering(&traefik.url(), V1, 5).await?;
    Ok((hooks, traefik))
}

async fn traefik_blue_green(dir: PathBuf) -> Run {
    let (hooks, traefik) = traefik_blue(&dir, None).await?;
    let load = Load::start(&traefik.url(), CLIENTS, Kind::Get { canary: false }, true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ran = hooks
        .script("blue-green/switch.sh", &["green", V2], &script_env(&traefik))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = load.stop().await;
    let switched = ran.code == Some(0) && !hooks.running("blue") && hooks.running("green");
    Ok(Outcome {
        passed: tally.failures() == 0 && switched && tally.share(V2) > 0.0,
        note: if switched {
            "switch.sh green: weights rewritten, confirmed, blue drained".to_owned()
        } else {
            format!("switch.sh: {:?} {}", ran.code, ran.output.trim())
        },
        tally,
    })
}

async fn traefik_green_never_ready(dir: PathBuf) -> Run {
    // Green cannot reach its database: it starts, and is never ready.
    let dead = format!("DATABASE_URL=postgres://cutover:cutover@127.0.0.1:{}/none", free_port());
    let (hooks, traefik) = traefik_blue(&dir, Some(&dead)).await?;
    let before = std::fs::read_to_string(&traefik.dynamic).map_err(|e| e.to_string())?;
    let load = Load::start(&traefik.url(), CLIENTS, Kind::Get { canary: false }, true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut env = script_env(&traefik);
    env.push(("READY_TIMEOUT", "3".to_owned()));
    let ran = hooks.script("blue-green/switch.sh", &["green", V2], &env).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = load.stop().await;
    let untouched = std::fs::read_to_string(&traefik.dynamic).map_err(|e| e.to_string())? == before;
    let refused = ran.code == Some(1) && ran.output.contains("refusing to switch: api-green never became ready");
    let state = untouched && hooks.running("blue") && !hooks.running("green");
    Ok(Outcome {
        passed: tally.failures() == 0 && refused && state && tally.share(V1) >= 0.999,
        note: format!("refused: {refused}; routing untouched, blue serving, green stopped: {state}"),
        tally,
    })
}

/// Stable and canary (started by the hooks) behind Traefik's shipped canary setup.
async fn traefik_canary(
    dir: &Path,
    canary_timing: Timing,
    canary_env: Option<&str>,
    edit: fn(String) -> String,
) -> Result<(Hooks, Traefik), String> {
    let mut hooks = Hooks::new(dir, &["stable", "canary"], canary_timing);
    if let Some(words) = canary_env {
        hooks.env("canary", words);
    }
    hooks.start("stable", V1).await?;
    hooks.start("canary", V2).await?;
    let servers = [
        ("API_STABLE_URL", hooks.url("stable")),
        ("API_CANARY_URL", hooks.url("canary")),
    ];
    let traefik = Traefik::start(dir, Setup::Canary, &servers, edit).await;
    answering(&traefik.url(), V2, 1).await?;
    Ok((hooks, traefik))
}

async fn traefik_sticky_canary(dir: PathBuf) -> Run {
    let (hooks, traefik) = traefik_canary(&dir, GOOD, None, |file| file).await?;
    let sticky = load::sticky_users(&traefik.url(), 200, 15, CLIENTS as u64, V2).await;
    let pinned = Load::start(&traefik.url(), 2, Kind::Get { canary: true }, true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pinned = pinned.stop().await;
    #[allow(clippy::cast_precision_loss)]
    let landed = sticky.landed as f64 / sticky.users as f64;
    let mut tally = sticky.tally;
    let pinned_share = pinned.share(V2);
    tally.merge(pinned);

    // Then `promote.sh --rollback` under load: everything back on stable, the canary drained.
    let load = Load::start(&traefik.url(), CLIENTS, Kind::Get { canary: false }, true);
    let mut env = script_env(&traefik);
    env.extend([("CANARY_VERSION", V2.to_owned()), ("STABLE_VERSION", V1.to_owned())]);
    let ran = hooks.script("canary/promote.sh", &["--rollback"], &env).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    tally.merge(load.stop().await);
    let rolled_back = ran.code == Some(0) && !hooks.running("canary") && hooks.running("stable");

    let passed = tally.failures() == 0
        && (landed - 0.10).abs() <= 0.06
        && sticky.flips == 0
        && pinned_share >= 0.999
        && rolled_back;
    Ok(Outcome {
        note: format!(
            "{} users × 15 requests: {:.1}% landed on the canary (weight 10%), {} answers from another version than the user's first; X-Canary {:.0}%; promote.sh --rollback: {}",
            sticky.users,
            landed * 100.0,
            sticky.flips,
            pinned_share * 100.0,
            if rolled_back {
                "canary drained".to_owned()
            } else {
                format!("{:?} {}", ran.code, ran.output.trim())
            }
        ),
        tally,
        passed,
    })
}

/// The canary starts draining (readiness 503, still serving for 6 s): with the weighted
/// service's `healthCheck: {}` its share goes to 0 before it stops serving; without it
/// (`propagate: false`, the negative control) Traefik keeps sending it 10 % and answers 503.
async fn unready_canary(dir: &Path, propagate: bool) -> Result<(Tally, f64, f64), String> {
    let slow_drain = Timing {
        drain: Duration::from_secs(6),
        timeout: Duration::from_secs(5),
    };
    let edit: fn(String) -> String = if propagate {
        |file| file
    } else {
        |file| {
            file.lines()
                .filter(|l| l.trim() != "healthCheck: {}")
                .map(|l| format!("{l}\n"))
                .collect()
        }
    };
    let (hooks, traefik) = traefik_canary(dir, slow_drain, None, edit).await?;
    let load = Load::start(&traefik.url(), CLIENTS, Kind::Get { canary: false }, true);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let before = load.stop().await;
    let share_before = before.share(V2);
    hooks.terminate("canary");
    let load = Load::start(&traefik.url(), CLIENTS, Kind::Get { canary: false }, true);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let mut tally = load.stop().await;
    let load = Load::start(&traefik.url(), CLIENTS, Kind::Get { canary: false }, true);
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    let after = load.stop().await;
    let share_after = after.share(V2) + after.failures() as f64 / after.total().max(1) as f64;
    tally.merge(before);
    tally.merge(after);
    Ok((tally, share_before, share_after))
}

async fn traefik_unready_canary(dir: PathBuf) -> Run {
    let (tally, before, after) = unready_canary(&dir, true).await?;
    Ok(Outcome {
        passed: tally.failures() == 0 && (0.05..=0.15).contains(&before) && after == 0.0,
        note: format!(
            "canary share {:.1}% before its readiness turned 503, {:.1}% from 2.5 s after (drain 6 s)",
            before * 100.0,
            after * 100.0
        ),
        tally,
    })
}

async fn traefik_unready_canary_without_propagation(dir: PathBuf) -> Run {
    let (tally, before, after) = unready_canary(&dir, false).await?;
    let failures = tally.failures();
    Ok(Outcome {
        passed: failures > 0,
        note: format!(
            "no healthCheck {{}} on the weighted service: {failures} failures expected > 0; canary share {:.1}% → {:.1}% (answered or failed)",
            before * 100.0,
            after * 100.0
        ),
        tally,
    })
}

/// The shipped `promote.sh` judging a canary by Prometheus (10 s windows instead of 1 m).
async fn promote(dir: &Path, canary_env: Option<&str>) -> Result<(Tally, hooks::Ran, Hooks), String> {
    let (hooks, traefik) = traefik_canary(dir, GOOD, canary_env, |file| file).await?;
    let targets = [
        format!("127.0.0.1:{}", hooks.port("stable")),
        format!("127.0.0.1:{}", hooks.port("canary")),
    ];
    let prometheus = Prometheus::start(dir, &targets).await;
    let load = Load::start(&traefik.url(), CLIENTS, Kind::Get { canary: false }, true);
    let mut env = script_env(&traefik);
    env.extend([
        ("CANARY_VERSION", V2.to_owned()),
        ("STABLE_VERSION", V1.to_owned()),
        ("PROMETHEUS_URL", prometheus.url()),
        ("WINDOW", "10s".to_owned()),
        ("ANALYSIS_WINDOW", "10".to_owned()),
    ]);
    let ran = hooks.script("canary/promote.sh", &[], &env).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok((load.stop().await, ran, hooks))
}

async fn promote_good_canary(dir: PathBuf) -> Run {
    let (tally, ran, hooks) = promote(&dir, None).await?;
    let promoted = ran.code == Some(0) && ran.output.contains("promoted: only") && !hooks.running("stable");
    Ok(Outcome {
        passed: tally.failures() == 0 && promoted,
        note: if promoted {
            "10% → 50% → 100% on Prometheus' verdicts, stable drained".to_owned()
        } else {
            format!("promote.sh: {:?} {}", ran.code, ran.output.trim())
        },
        tally,
    })
}

async fn roll_back_bad_canary(dir: PathBuf) -> Run {
    let (tally, ran, hooks) = promote(&dir, Some("INJECT_ERROR_RATE=0.2")).await?;
    let rolled_back = ran.code == Some(1)
        && ran.output.contains("rolling back: at 10% the canary's 5xx ratio")
        && !hooks.running("canary")
        && hooks.running("stable");
    let canary_answers = tally.versions.get(V2).copied().unwrap_or(0);
    let errors = tally.statuses.get(&500).copied().unwrap_or(0);
    let only_500s = tally.failures() == errors && tally.errors == 0;
    #[allow(clippy::cast_precision_loss)]
    let share = errors as f64 / tally.total().max(1) as f64;
    Ok(Outcome {
        // Clients see the canary's 20 % only on its 10 % share, for one analysis window.
        passed: rolled_back && only_500s && errors > 0 && errors * 4 <= canary_answers + 20,
        note: format!(
            "20% failing canary rolled back at 10%: {errors} × 500 seen by clients ({:.2}% of {} requests; {canary_answers} answered by the canary){}",
            share * 100.0,
            tally.total(),
            if rolled_back {
                String::new()
            } else {
                format!("; promote.sh: {:?} {}", ran.code, ran.output.trim())
            }
        ),
        tally,
    })
}

struct Row {
    name: &'static str,
    run: usize,
    outcome: Result<Outcome, String>,
}

/// Where the timelines go: `target/zero-downtime/<scenario>-<run>.svg`.
fn pictures() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/zero-downtime");
    std::fs::create_dir_all(&dir).expect("target/zero-downtime");
    dir
}

async fn run_scenario<F, Fut>(name: &'static str, runs: usize, root: &Path, scenario: F) -> Vec<Row>
where
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = Run>,
{
    let mut rows = Vec::new();
    if std::env::var("ZERO_DOWNTIME_ONLY").is_ok_and(|only| !name.contains(&only)) {
        return rows;
    }
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    for run in 1..=runs {
        let dir = root.join(format!("{slug}-{run}"));
        std::fs::create_dir_all(&dir).expect("scenario dir");
        timeline::begin();
        let outcome = tokio::time::timeout(Duration::from_secs(90), scenario(dir))
            .await
            .unwrap_or_else(|_| Err("timed out after 90 s".to_owned()));
        if let Some(recorded) = timeline::finish() {
            let picture = pictures().join(format!("{slug}-{run}.svg"));
            if let Err(error) = recorded.render(&picture, &format!("{name}, run {run}")) {
                println!("no timeline for {name} run {run}: {error}");
            }
        }
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

/// Processes started for the scenarios (their command line or environment names a path under
/// `root`) that are still alive: every instance, proxy and script must be gone by now.
fn survivors(root: &Path) -> Vec<(u32, String)> {
    let marker = root.to_string_lossy().into_owned();
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me && hooks::alive(*pid))
        .filter_map(|pid| {
            let read = |what: &str| std::fs::read(format!("/proc/{pid}/{what}")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&read("cmdline")).replace('\0', " ");
            let environ = String::from_utf8_lossy(&read("environ")).into_owned();
            (cmdline.contains(&marker) || environ.contains(&marker)).then(|| (pid, cmdline.trim().to_owned()))
        })
        .collect()
}

#[tokio::main]
async fn main() -> ExitCode {
    let root = std::env::temp_dir().join(format!("cutover-zero-downtime-{}", std::process::id()));
    std::fs::create_dir_all(&root).expect("temp dir");
    println!(
        "zero-downtime harness: {CLIENTS} clients; logs in {}, timelines in {}",
        root.display(),
        pictures().display()
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
    rows.extend(run_scenario("9 switch.sh failure paths (nginx)", 3, &root, switch_failures).await);
    rows.extend(run_scenario("10 blue-green (Traefik, switch.sh)", 3, &root, traefik_blue_green).await);
    rows.extend(run_scenario("11 green never ready (Traefik)", 3, &root, traefik_green_never_ready).await);
    rows.extend(
        run_scenario(
            "12 sticky canary 90/10, rollback (Traefik)",
            3,
            &root,
            traefik_sticky_canary,
        )
        .await,
    );
    rows.extend(run_scenario("13 canary turns unready (Traefik)", 3, &root, traefik_unready_canary).await);
    rows.extend(
        run_scenario(
            "14 good canary promoted (Traefik, promote.sh)",
            3,
            &root,
            promote_good_canary,
        )
        .await,
    );
    rows.extend(
        run_scenario(
            "15 bad canary rolled back (Traefik, promote.sh)",
            3,
            &root,
            roll_back_bad_canary,
        )
        .await,
    );
    rows.extend(
        run_scenario(
            "17 pooled POSTs across header timeout (nginx)",
            3,
            &root,
            pooled_across_the_header_timeout,
        )
        .await,
    );
    rows.extend(
        run_scenario(
            "18 pooled POSTs across header timeout (HAProxy)",
            3,
            &root,
            pooled_across_the_header_timeout_haproxy,
        )
        .await,
    );
    rows.extend(run_scenario("8 negative control: drain 0", 1, &root, negative_control).await);
    rows.extend(
        run_scenario(
            "19 negative control: service idles out first (nginx)",
            1,
            &root,
            keep_alive_race,
        )
        .await,
    );
    rows.extend(
        run_scenario(
            "16 negative control: no healthCheck {} (Traefik)",
            1,
            &root,
            traefik_unready_canary_without_propagation,
        )
        .await,
    );
    let survivors = survivors(&root);
    for (pid, what) in &survivors {
        println!("still running after its scenario: pid {pid}: {what}");
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let passed = rows.iter().filter(|r| matches!(&r.outcome, Ok(o) if o.passed)).count();
    let failed = rows.len() - passed + usize::from(!survivors.is_empty());
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
