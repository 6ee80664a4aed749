//! The registry without HTTP: scheduling, timeouts, panics, history, verdicts.
//! Time-based behaviour runs under paused tokio time, so it is exact and instant.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use cutover_health::{
    BuildError, FailureKind, HealthRegistry, Phase, Probe, Registration, Status, check_fn,
    testing::{Behavior, ScriptedCheck, StaticCheck},
};
use tokio::time::Instant;

fn slow(ms: u64) -> StaticCheck {
    StaticCheck::new(Behavior::Delay(Duration::from_millis(ms), Box::new(Behavior::Healthy)))
}

#[test]
fn duplicate_and_invalid_names_are_rejected_at_build_time() {
    let error = HealthRegistry::builder()
        .check("db", StaticCheck::healthy())
        .check("cache", StaticCheck::healthy())
        .check("db", StaticCheck::healthy())
        .build()
        .unwrap_err();
    assert_eq!(error, BuildError::DuplicateName("db".into()));
    assert_eq!(
        error.to_string(),
        "health check `db` is registered twice; check names must be unique"
    );

    let error = HealthRegistry::builder()
        .check("  ", StaticCheck::healthy())
        .build()
        .unwrap_err();
    assert_eq!(error, BuildError::EmptyName);

    let error = HealthRegistry::builder()
        .check("a b", StaticCheck::healthy())
        .build()
        .unwrap_err();
    assert!(matches!(error, BuildError::InvalidName(name) if name == "a b"));

    let error = HealthRegistry::builder()
        .register(Registration::new("db", StaticCheck::healthy()).timeout(Duration::ZERO))
        .build()
        .unwrap_err();
    assert_eq!(error, BuildError::ZeroTimeout("db".into()));

    let error = HealthRegistry::builder()
        .background(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(error, BuildError::ZeroSchedule("interval"));
    assert!(matches!(
        HealthRegistry::builder().jitter(0.9).build(),
        Err(BuildError::InvalidJitter(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn checks_run_concurrently() {
    let mut builder = HealthRegistry::builder();
    for i in 0..5 {
        builder = builder.check(format!("slow-{i}"), slow(100));
    }
    let registry = builder.build().unwrap();
    let started = Instant::now();
    let snapshot = registry.refresh().await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(100) && elapsed < Duration::from_millis(150),
        "{elapsed:?}"
    );
    assert_eq!(snapshot.status(), Status::Healthy);
    assert!(
        snapshot
            .checks()
            .iter()
            .all(|c| c.duration() >= Duration::from_millis(100))
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_check_fails_at_its_timeout_without_delaying_the_others() {
    let registry = HealthRegistry::builder()
        .register(Registration::new("hangs", StaticCheck::new(Behavior::Hang)).timeout(Duration::from_millis(300)))
        .check("fine", StaticCheck::healthy())
        .build()
        .unwrap();
    let started = Instant::now();
    let snapshot = registry.refresh().await;
    assert_eq!(started.elapsed(), Duration::from_millis(300));

    let hangs = snapshot.check("hangs").unwrap();
    assert_eq!(hangs.status(), Status::Unhealthy);
    assert_eq!(hangs.failure(), Some(FailureKind::Timeout));
    assert_eq!(hangs.last_error(), Some("timed out after 300ms"));
    assert_eq!(snapshot.check("fine").unwrap().status(), Status::Healthy);
    assert_eq!(snapshot.status(), Status::Unhealthy);
}

#[tokio::test]
async fn a_panicking_check_is_failed_and_the_registry_keeps_working() {
    let (flaky, script) = ScriptedCheck::new(Behavior::Panic("index out of bounds".into()));
    let registry = HealthRegistry::builder()
        .check("flaky", flaky)
        .check("fine", StaticCheck::healthy())
        .build()
        .unwrap();

    let snapshot = registry.refresh().await;
    let flaky = snapshot.check("flaky").unwrap();
    assert_eq!(flaky.failure(), Some(FailureKind::Panic));
    assert_eq!(flaky.last_error(), Some("check panicked: index out of bounds"));
    assert_eq!(snapshot.check("fine").unwrap().status(), Status::Healthy);

    script.heal();
    let snapshot = registry.refresh().await;
    assert_eq!(snapshot.check("flaky").unwrap().status(), Status::Healthy);
    assert_eq!(snapshot.round(), 2);
}

#[tokio::test]
async fn history_counts_consecutive_failures_and_keeps_the_last_success() {
    let (db, script) = ScriptedCheck::healthy();
    let registry = HealthRegistry::builder().check("db", db).build().unwrap();

    let first = registry.refresh().await;
    let success = first.check("db").unwrap().last_success().unwrap();

    script.fail("connection refused");
    for expected in 1..=3 {
        let snapshot = registry.refresh().await;
        let db = snapshot.check("db").unwrap();
        assert_eq!(db.consecutive_failures(), expected);
        assert_eq!(db.last_success(), Some(success));
        assert_eq!(db.last_error(), Some("connection refused"));
        assert_eq!(db.failure(), Some(FailureKind::Error));
    }

    script.heal();
    let snapshot = registry.refresh().await;
    let db = snapshot.check("db").unwrap();
    assert_eq!(db.consecutive_failures(), 0);
    assert_eq!(db.last_error(), None);
    assert!(db.last_success().unwrap() >= success);
}

#[tokio::test]
async fn overall_status_is_degraded_when_only_non_critical_checks_fail() {
    let registry = HealthRegistry::builder()
        .check("db", StaticCheck::healthy())
        .register(Registration::new("upstream", StaticCheck::failing("502")).non_critical())
        .build()
        .unwrap();
    registry.mark_started();
    assert_eq!(registry.refresh().await.status(), Status::Degraded);
    assert!(registry.readiness().await.is_ready());

    let registry = HealthRegistry::builder()
        .check("db", StaticCheck::new(Behavior::Degraded("replica lag 4s".into())))
        .build()
        .unwrap();
    registry.mark_started();
    let snapshot = registry.refresh().await;
    assert_eq!(snapshot.status(), Status::Degraded);
    assert_eq!(snapshot.check("db").unwrap().message(), Some("replica lag 4s"));
    assert!(registry.readiness().await.is_ready());
}

#[tokio::test(start_paused = true)]
async fn background_mode_runs_on_its_interval_and_probes_never_trigger_checks() {
    let (db, script) = ScriptedCheck::healthy();
    let registry = HealthRegistry::builder()
        .check("db", db)
        .background(Duration::from_secs(10))
        .jitter(0.0)
        .build()
        .unwrap();
    registry.mark_started();
    registry.spawn();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(script.runs(), 1, "the first round starts at once");

    for _ in 0..1000 {
        assert!(registry.readiness().await.is_ready());
    }
    assert_eq!(script.runs(), 1, "probes read the snapshot");

    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(script.runs(), 2);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(script.runs(), 5);
}

#[tokio::test(start_paused = true)]
async fn background_jitter_spreads_rounds_within_bounds() {
    let (db, script) = ScriptedCheck::healthy();
    let registry = HealthRegistry::builder()
        .check("db", db)
        .background(Duration::from_secs(10))
        .jitter(0.2)
        .build()
        .unwrap();
    registry.spawn();
    // 20 rounds of 8..=12 s take between 152 s and 228 s after the first.
    tokio::time::sleep(Duration::from_secs(151)).await;
    assert!(script.runs() <= 20, "{} rounds in 151 s", script.runs());
    tokio::time::sleep(Duration::from_secs(78)).await;
    assert!(script.runs() >= 21, "{} rounds in 229 s", script.runs());
}

#[tokio::test(start_paused = true)]
async fn the_scheduler_stops_when_the_registry_is_dropped() {
    let (db, script) = ScriptedCheck::healthy();
    let registry = HealthRegistry::builder()
        .check("db", db)
        .background(Duration::from_secs(1))
        .build()
        .unwrap();
    registry.spawn();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let runs = script.runs();
    assert_eq!(runs, 3);
    drop(registry);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        script.runs() <= runs + 1,
        "scheduler kept running: {} runs",
        script.runs()
    );
}

#[tokio::test]
async fn on_demand_mode_shares_one_round_between_concurrent_probes() {
    let (db, script) = ScriptedCheck::new(Behavior::Delay(Duration::from_millis(50), Box::new(Behavior::Healthy)));
    let registry = HealthRegistry::builder()
        .check("db", db)
        .on_demand(Duration::from_secs(1))
        .build()
        .unwrap();
    registry.mark_started();
    let probes: Vec<_> = (0..1000)
        .map(|_| {
            let registry = registry.clone();
            tokio::spawn(async move { registry.readiness().await.is_ready() })
        })
        .collect();
    for probe in probes {
        assert!(probe.await.unwrap());
    }
    assert_eq!(script.runs(), 1);
}

#[tokio::test(start_paused = true)]
async fn on_demand_mode_reruns_after_the_ttl() {
    let (db, script) = ScriptedCheck::healthy();
    let registry = HealthRegistry::builder()
        .check("db", db)
        .on_demand(Duration::from_secs(1))
        .build()
        .unwrap();
    registry.latest().await;
    registry.latest().await;
    assert_eq!(script.runs(), 1);
    tokio::time::sleep(Duration::from_millis(1001)).await;
    registry.latest().await;
    assert_eq!(script.runs(), 2);
}

#[tokio::test(start_paused = true)]
async fn readiness_follows_the_lifecycle_and_the_critical_readiness_checks() {
    let (db, db_script) = ScriptedCheck::healthy();
    let (warmup, warmup_script) = ScriptedCheck::healthy();
    let registry = HealthRegistry::builder()
        .check("db", db)
        .register(Registration::new("warmup", warmup).probes([Probe::Startup]))
        .build()
        .unwrap();

    registry.refresh().await;
    let readiness = registry.readiness().await;
    assert!(!readiness.is_ready());
    assert_eq!(readiness.phase(), Phase::Starting);
    assert!(readiness.reason().unwrap().contains("startup work has not completed"));

    registry.mark_started();
    assert!(registry.readiness().await.is_ready());

    // A check outside the readiness probe does not affect readiness.
    warmup_script.fail("cold");
    registry.refresh().await;
    assert!(registry.readiness().await.is_ready());

    db_script.fail("down");
    registry.refresh().await;
    let readiness = registry.readiness().await;
    assert!(!readiness.is_ready());
    assert_eq!(readiness.failed_checks(), ["db"]);

    db_script.heal();
    registry.refresh().await;
    assert!(registry.readiness().await.is_ready());

    registry.lifecycle().advance_to(Phase::Draining);
    let readiness = registry.readiness().await;
    assert!(
        !readiness.is_ready(),
        "draining closes readiness whatever the checks say"
    );
    assert!(readiness.reason().unwrap().starts_with("draining"));
    assert!(registry.liveness().await.is_alive(), "liveness stays up while draining");
}

#[tokio::test(start_paused = true)]
async fn startup_latches_once_startup_checks_pass() {
    let (migrations, script) = ScriptedCheck::new(Behavior::Fail("pending migrations".into()));
    let registry = HealthRegistry::builder()
        .register(Registration::new("migrations", migrations).probes([Probe::Startup]))
        .build()
        .unwrap();

    registry.refresh().await;
    let startup = registry.startup().await;
    assert!(!startup.is_started());
    assert_eq!(startup.reason(), Some("startup work has not completed"));

    registry.mark_started();
    let startup = registry.startup().await;
    assert_eq!(startup.reason(), Some("startup checks failing: migrations"));

    script.heal();
    registry.refresh().await;
    assert!(registry.startup().await.is_started());

    script.fail("down again");
    registry.refresh().await;
    assert!(registry.startup().await.is_started(), "startup is latched");
}

#[tokio::test(start_paused = true)]
async fn startup_latches_on_a_passing_round_even_if_nobody_asked() {
    // A container health check asks the startup probe for the first time long after start-up,
    // when the dependency may be gone again: the round that passed in between counts.
    let (database, script) = ScriptedCheck::healthy();
    let registry = HealthRegistry::builder()
        .register(Registration::new("database", database).probes([Probe::Startup, Probe::Readiness]))
        .build()
        .unwrap();
    registry.mark_started();
    registry.refresh().await;
    script.fail("connection refused");
    registry.refresh().await;
    assert!(!registry.readiness().await.is_ready());
    assert!(
        registry.startup().await.is_started(),
        "the passing round latched startup"
    );
}

#[tokio::test(start_paused = true)]
async fn results_older_than_the_staleness_limit_fail_readiness() {
    let registry = HealthRegistry::builder()
        .check("db", StaticCheck::healthy())
        .background(Duration::from_secs(60))
        .stale_after(Duration::from_secs(5))
        .build()
        .unwrap();
    registry.mark_started();
    registry.spawn();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(registry.readiness().await.is_ready());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let readiness = registry.readiness().await;
    assert!(!readiness.is_ready());
    assert!(readiness.reason().unwrap().contains("stale"), "{readiness:?}");
    assert_eq!(readiness.failed_checks(), ["db"]);
}

#[tokio::test(start_paused = true)]
async fn the_default_staleness_limit_is_three_intervals_plus_the_longest_timeout() {
    let registry = HealthRegistry::builder()
        .register(Registration::new("db", StaticCheck::healthy()).timeout(Duration::from_secs(4)))
        .background(Duration::from_secs(10))
        .build()
        .unwrap();
    let snapshot = registry.refresh().await;
    tokio::time::sleep(Duration::from_secs(34)).await;
    assert!(!registry.is_stale(&snapshot), "34 s old is within 3 x 10 s + 4 s");
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(registry.is_stale(&snapshot));
}

#[tokio::test]
async fn secrets_in_check_errors_never_reach_the_snapshot() {
    let registry = HealthRegistry::builder()
        .check(
            "db",
            check_fn(|_| async {
                Err("error connecting to postgres://app:hunter2@db:5432/app (bot token 12345:ABCDEF)".into())
            }),
        )
        .redact("12345:ABCDEF")
        .build()
        .unwrap();
    let snapshot = registry.refresh().await;
    let error = snapshot.check("db").unwrap().last_error().unwrap();
    assert_eq!(
        error,
        "error connecting to postgres://app:***@db:5432/app (bot token ***)"
    );
}

#[tokio::test]
async fn subscribers_see_every_round() {
    let registry = HealthRegistry::builder()
        .check("db", StaticCheck::healthy())
        .build()
        .unwrap();
    let mut rounds = registry.subscribe();
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < 3 {
            rounds.changed().await.unwrap();
            let round = rounds.borrow_and_update().as_ref().map(|s| s.round()).unwrap();
            seen.push(round);
        }
        seen
    });
    for _ in 0..3 {
        registry.refresh().await;
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(watcher.await.unwrap(), [1, 2, 3]);
}

#[cfg(feature = "metrics")]
#[test]
fn check_results_are_exported_as_metrics() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let registry = HealthRegistry::builder()
                .check("db", StaticCheck::healthy())
                .check("cache", StaticCheck::failing("down"))
                .build()
                .unwrap();
            registry.refresh().await;
        });
    });
    let metrics: Vec<_> = snapshotter.snapshot().into_vec();
    let find = |name: &str, check: &str| {
        metrics
            .iter()
            .find(|(key, ..)| {
                key.key().name() == name && key.key().labels().any(|l| l.key() == "check" && l.value() == check)
            })
            .map(|(_, _, _, value)| value)
    };
    assert_eq!(
        find("cutover_health_check_status", "db"),
        Some(&DebugValue::Gauge(1.0.into()))
    );
    assert_eq!(
        find("cutover_health_check_status", "cache"),
        Some(&DebugValue::Gauge(0.0.into()))
    );
    assert_eq!(
        find("cutover_health_check_failures_total", "cache"),
        Some(&DebugValue::Counter(1))
    );
    assert!(
        matches!(find("cutover_health_check_duration_seconds", "db"), Some(DebugValue::Histogram(v)) if v.len() == 1)
    );
}

#[tokio::test(start_paused = true)]
async fn failing_checks_are_retried_on_the_shorter_failing_interval() {
    let (db, script) = ScriptedCheck::new(Behavior::Fail("connection refused".into()));
    let registry = HealthRegistry::builder()
        .check("db", db)
        .background(Duration::from_secs(10))
        .failing_interval(Duration::from_secs(2))
        .jitter(0.0)
        .build()
        .unwrap();
    registry.spawn();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(script.runs(), 1);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(script.runs(), 4, "rounds at 0, 2, 4 and 6 s while failing");

    script.heal();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(script.runs(), 5, "the round at 8 s sees the recovery");
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(script.runs(), 5, "healthy again: back to the 10 s interval");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(script.runs(), 6);
}

#[tokio::test(start_paused = true)]
async fn a_dependency_down_at_start_fails_readiness_not_startup() {
    // The default: a check gates readiness only. An outage at start must not turn into a
    // crash loop through the startup probe.
    let (redis, script) = ScriptedCheck::new(Behavior::Fail("connection refused".into()));
    let registry = HealthRegistry::builder().check("redis", redis).build().unwrap();
    registry.mark_started();
    registry.refresh().await;
    assert!(
        registry.startup().await.is_started(),
        "{:?}",
        registry.startup().await.reason()
    );
    let readiness = registry.readiness().await;
    assert!(!readiness.is_ready());
    assert_eq!(readiness.failed_checks(), ["redis"]);

    script.heal();
    registry.refresh().await;
    assert!(
        registry.readiness().await.is_ready(),
        "ready once the dependency is back"
    );
}
