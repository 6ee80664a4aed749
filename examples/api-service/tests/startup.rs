//! The real `api-service` binary against real dependencies: it starts with nothing configured,
//! starts (not ready) while its dependencies are unreachable and recovers when they return, and
//! refuses malformed configuration with a message that leaks no secret.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::{process::Command, time::Duration};

use common::Service;
use cutover_tests::{FaultProxy, eventually, host_port, retarget, service_url, unique};

#[tokio::test]
async fn starts_on_its_embedded_default_and_becomes_ready() {
    let service = Service::start(&[]);
    let ready = service.wait_until("/health/ready", 200, Duration::from_secs(20)).await;
    assert_eq!(ready["status"], "ready");

    let (status, report) = service.get("/health").await.unwrap();
    assert_eq!(status, 200);
    let mut checks: Vec<_> = report["checks"].as_object().unwrap().keys().cloned().collect();
    checks.sort();
    assert_eq!(
        checks,
        ["disk", "instance-registry", "memory", "sqlite"],
        "only the embedded database, the host checks and the instance registry's"
    );
    assert_eq!(report["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(service.get("/health/startup").await.unwrap().0, 200);

    let version = reqwest::get(format!("{}/health/live", service.base)).await.unwrap();
    assert_eq!(
        version.headers()["x-service-version"],
        env!("CARGO_PKG_VERSION"),
        "every response names the version, probes included"
    );

    let metrics = reqwest::get(format!("{}/metrics", service.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "http_requests_total{",
        "cutover_lifecycle_phase{phase=\"ready\"} 1",
        "cutover_health_check_status{check=\"sqlite\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }

    // The container health check: 0 while ready, 1 with the reason once nothing answers.
    let port = service.base.rsplit(':').next().unwrap().to_owned();
    let healthcheck = || {
        Command::new(env!("CARGO_BIN_EXE_api-service"))
            .env_clear()
            .args(["--port", &port, "healthcheck"])
            .output()
            .unwrap()
    };
    assert!(healthcheck().status.success());
    let mut service = service;
    service.child.kill().unwrap();
    service.child.wait().unwrap();
    let down = healthcheck();
    assert_eq!(down.status.code(), Some(1));
    let reason = String::from_utf8_lossy(&down.stderr);
    assert!(
        reason.starts_with("unhealthy: cannot connect to 127.0.0.1:"),
        "{reason}"
    );
}

#[tokio::test]
async fn sigterm_while_startup_cannot_reach_the_database_exits_within_the_budget() {
    // Nothing listens there: the start-up migration retries for as long as it is allowed to.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = retarget(&service_url("DATABASE_URL"), closed);
    let mut service = Service::start(&[("DATABASE_URL", url), ("SHUTDOWN_GRACE_PERIOD", "10s".to_owned())]);
    service.wait_until("/health/live", 200, Duration::from_secs(20)).await;
    // Long enough for a few retries.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        service.get("/health/ready").await.unwrap().0,
        503,
        "not ready meanwhile"
    );
    let signalled = std::time::Instant::now();
    service.signal("TERM");
    let status = service.exit_status(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "took {:?} to exit",
        signalled.elapsed()
    );
}

#[tokio::test]
async fn unreachable_dependencies_mean_not_ready_but_alive_until_they_return() {
    let database = service_url("DATABASE_URL");
    let redis = service_url("REDIS_URL");
    let amqp = service_url("AMQP_URL");
    let mongodb = service_url("MONGODB_URL");
    let postgres_proxy = FaultProxy::start(&host_port(&database, 5432)).await;
    let redis_proxy = FaultProxy::start(&host_port(&redis, 6379)).await;
    let amqp_proxy = FaultProxy::start(&host_port(&amqp, 5672)).await;
    let mongo_proxy = FaultProxy::start(&host_port(&mongodb, 27017)).await;
    let proxies = [&postgres_proxy, &redis_proxy, &amqp_proxy, &mongo_proxy];
    for proxy in proxies {
        proxy.cut();
    }

    let service = Service::start(&[
        ("DATABASE_URL", retarget(&database, postgres_proxy.address())),
        ("REDIS_URL", retarget(&redis, redis_proxy.address())),
        ("AMQP_URL", retarget(&amqp, amqp_proxy.address())),
        ("MONGODB_URL", retarget(&mongodb, mongo_proxy.address())),
    ]);

    let live = service.wait_until("/health/live", 200, Duration::from_secs(20)).await;
    assert_eq!(live["status"], "alive");
    let not_ready = service.wait_until("/health/ready", 503, Duration::from_secs(5)).await;
    // Wait for a round in which all four have been tried.
    let failed_checks = || async {
        let (_, body) = service.get("/health/ready").await?;
        let mut failed: Vec<String> = body["failed_checks"]
            .as_array()?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        failed.sort();
        Some(failed)
    };
    let all_failed = eventually(Duration::from_secs(10), || async {
        failed_checks()
            .await
            .is_some_and(|failed| failed == ["mongodb", "postgres", "rabbitmq", "redis"])
    })
    .await;
    assert!(
        all_failed,
        "failed checks: {:?}, first answer {not_ready}",
        failed_checks().await
    );

    let (_, report) = service.get("/health").await.unwrap();
    assert_eq!(report["status"], "unhealthy");
    assert!(
        !report.to_string().contains("cutover:cutover@"),
        "password in report: {report}"
    );
    assert_eq!(
        service.get("/health/live").await.unwrap().0,
        200,
        "liveness ignores dependencies"
    );

    for proxy in proxies {
        proxy.restore();
    }
    let ready = service.wait_until("/health/ready", 200, Duration::from_secs(20)).await;
    assert_eq!(ready["checks"]["postgres"], "healthy");
    assert_eq!(ready["checks"]["rabbitmq"], "healthy");

    // And back down again: readiness follows.
    redis_proxy.cut();
    let body = service.wait_until("/health/ready", 503, Duration::from_secs(10)).await;
    assert_eq!(body["failed_checks"], serde_json::json!(["redis"]));

    // The database goes away after start-up: the container health check (what Swarm restarts
    // tasks on) stays healthy, only the readiness variant fails.
    postgres_proxy.cut();
    let database_down = eventually(Duration::from_secs(10), || async {
        failed_checks()
            .await
            .is_some_and(|failed| failed == ["postgres", "redis"])
    })
    .await;
    assert!(database_down, "failed checks: {:?}", failed_checks().await);
    let port = service.base.rsplit(':').next().unwrap().to_owned();
    let healthcheck = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_api-service"))
            .env_clear()
            .args(["--port", &port, "healthcheck"])
            .args(extra)
            .output()
            .unwrap()
    };
    let live = healthcheck(&[]);
    assert!(live.status.success(), "{}", String::from_utf8_lossy(&live.stderr));
    let ready = healthcheck(&["--ready"]);
    assert_eq!(ready.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&ready.stderr).trim(),
        "not ready: /health/ready answered 503"
    );
}

#[tokio::test]
async fn a_dependency_down_from_the_start_gates_readiness_not_startup() {
    // Redis unreachable from the first moment: the instance starts (its own work, the
    // embedded database's migrations, is done), is not ready, and its container health check
    // passes, so no orchestrator restarts it; Redis comes back and it becomes ready on its own.
    let redis = service_url("REDIS_URL");
    let redis_proxy = FaultProxy::start(&host_port(&redis, 6379)).await;
    redis_proxy.cut();
    let service = Service::start(&[
        ("REDIS_URL", retarget(&redis, redis_proxy.address())),
        ("HEALTH_CHECK_INTERVAL", "1s".to_owned()),
    ]);
    let started = service
        .wait_until("/health/startup", 200, Duration::from_secs(20))
        .await;
    assert_eq!(started["status"], "started", "{started}");
    let not_ready = service.wait_until("/health/ready", 503, Duration::from_secs(5)).await;
    assert_eq!(not_ready["failed_checks"], serde_json::json!(["redis"]), "{not_ready}");
    let port = service.base.rsplit(':').next().unwrap().to_owned();
    let healthcheck = Command::new(env!("CARGO_BIN_EXE_api-service"))
        .env_clear()
        .args(["--port", &port, "healthcheck"])
        .output()
        .unwrap();
    assert!(
        healthcheck.status.success(),
        "the container health check fails while Redis is down: {}",
        String::from_utf8_lossy(&healthcheck.stderr)
    );

    redis_proxy.restore();
    let ready = service.wait_until("/health/ready", 200, Duration::from_secs(10)).await;
    assert_eq!(ready["checks"]["redis"], "healthy", "{ready}");
}

#[test]
fn malformed_configuration_is_refused_without_leaking_secrets() {
    let run = |envs: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_api-service"));
        command
            .env_clear()
            .env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .env("NO_COLOR", "1");
        command.env(
            "SQLITE_PATH",
            std::env::temp_dir().join(format!("{}.db", unique("api_service"))),
        );
        for (name, value) in envs {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code(), text)
    };

    let (code, text) = run(&[("DATABASE_URL", "postgres://app:topsecret@db:notaport/app")]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("DATABASE_URL is not usable"), "{text}");
    assert!(!text.contains("topsecret"), "{text}");

    // The same secret from a Docker secret file: read, used, and still never shown.
    let secret = std::env::temp_dir().join(unique("database_url"));
    std::fs::write(&secret, "postgres://app:topsecret@db:notaport/app\n").unwrap();
    let secret = secret.to_str().unwrap();
    let (code, text) = run(&[("DATABASE_URL_FILE", secret)]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("DATABASE_URL is not usable"), "{text}");
    assert!(!text.contains("topsecret"), "{text}");
    let (code, text) = run(&[("DATABASE_URL_FILE", secret), ("DATABASE_URL", "postgres://db/app")]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("DATABASE_URL_FILE and DATABASE_URL are both set"),
        "{text}"
    );
    let (code, text) = run(&[("DATABASE_URL_FILE", "/run/secrets/missing")]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("cannot read DATABASE_URL_FILE (/run/secrets/missing)"),
        "{text}"
    );

    let (code, text) = run(&[("REDIS_URL", "http://cache:6379")]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("REDIS_URL is not usable"), "{text}");

    let (code, text) = run(&[("PORT", "eighty")]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("invalid value 'eighty'"), "{text}");

    let (code, text) = run(&[("HEALTH_CHECK_INTERVAL", "often")]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("HEALTH_CHECK_INTERVAL") || text.contains("--health-check-interval"),
        "{text}"
    );
}

#[test]
fn the_migrate_subcommand_applies_the_expand_phase_once_and_exits() {
    let sqlite = std::env::temp_dir().join(format!("{}.db", unique("migrate_job")));
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_api-service"))
            .env_clear()
            .arg("--sqlite-path")
            .arg(&sqlite)
            .arg("migrate")
            .args(args)
            .output()
            .unwrap()
    };
    let first = run(&[]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let text = String::from_utf8_lossy(&first.stdout).into_owned();
    // The expand phase only (the default of `migrate`): the backfill waits for its own run.
    assert_eq!(
        text.trim_end(),
        "applied 1, 2, 3, 4; 5 left for a later phase",
        "{text}"
    );
    let again = run(&[]);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim_end(),
        "nothing to apply; 5 left for a later phase"
    );
    let wrong = run(&["--phase", "sideways"]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("sideways"));
}
