//! Every built-in check against its real server: passes when up, fails within its timeout when
//! the server is unreachable or stopped, recovers when it comes back; no connection leaks; a
//! probe storm costs the dependency (almost) nothing.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU16, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use cutover_health::{
    Check, HealthRegistry, Registration, Snapshot, Status,
    checks::{
        DiskCheck, HttpCheck, MemoryCheck, MongoCheck, PostgresCheck, RabbitMqCheck, RedisCheck, SqliteCheck,
        Thresholds,
    },
    testing::probe,
};
use cutover_tests::{FaultProxy, RedisServer, eventually, host_port, rabbitmqctl, retarget, service_url, unique};
use lapin::{Connection, ConnectionProperties};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

const TIMEOUT: Duration = Duration::from_millis(1500);
/// Scheduling slack allowed on top of a check's timeout on a loaded 2-core CI machine.
const SLACK: Duration = Duration::from_millis(500);

/// RabbitMQ tests count the broker's connections and one stops the broker: one at a time.
static RABBITMQ: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn registry_with(name: &str, check: impl Check) -> HealthRegistry {
    HealthRegistry::builder()
        .register(Registration::new(name, check).timeout(TIMEOUT))
        .build()
        .unwrap()
}

fn status_of(snapshot: &Arc<Snapshot>, name: &str) -> Status {
    snapshot.check(name).unwrap().status()
}

/// Run a round and assert it fails, and that it failed within the check's timeout.
async fn assert_fails_within_timeout(registry: &HealthRegistry, name: &str) -> String {
    let started = Instant::now();
    let snapshot = registry.refresh().await;
    let elapsed = started.elapsed();
    let state = snapshot.check(name).unwrap();
    assert_eq!(
        state.status(),
        Status::Unhealthy,
        "{name} should fail while its server is down"
    );
    assert!(
        elapsed <= TIMEOUT + SLACK,
        "{name} took {elapsed:?} to fail, timeout is {TIMEOUT:?}"
    );
    state.last_error().unwrap().to_owned()
}

/// A started registry whose every probe runs `check` (on demand with a 1 ns TTL), and its
/// router: 1,000 probes then mean 1,000 runs of the check.
fn check_per_probe(name: &str, check: impl Check) -> (HealthRegistry, Router) {
    let registry = HealthRegistry::builder()
        .check(name, check)
        .on_demand(Duration::from_nanos(1))
        .build()
        .unwrap();
    registry.mark_started();
    let app = registry.router();
    (registry, app)
}

async fn assert_recovers(registry: &HealthRegistry, name: &str, within: Duration) {
    let recovered = eventually(within, || async {
        status_of(&registry.refresh().await, name) == Status::Healthy
    })
    .await;
    let last = registry.snapshot().unwrap();
    assert!(
        recovered,
        "{name} did not recover within {within:?}: {:?}",
        last.check(name).unwrap().last_error()
    );
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

#[tokio::test]
async fn postgres_check_passes_fails_when_unreachable_and_recovers() {
    let url = service_url("DATABASE_URL");
    let proxy = FaultProxy::start(&host_port(&url, 5432)).await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy(&retarget(&url, proxy.address()))
        .unwrap();
    let registry = registry_with("postgres", PostgresCheck::new(pool));

    let snapshot = registry.refresh().await;
    let state = snapshot.check("postgres").unwrap();
    assert_eq!(state.status(), Status::Healthy, "{:?}", state.last_error());
    assert_eq!(state.observed_value().unwrap()["size"], 1);

    proxy.cut();
    assert_fails_within_timeout(&registry, "postgres").await;
    proxy.restore();
    assert_recovers(&registry, "postgres", Duration::from_secs(10)).await;
}

#[tokio::test]
async fn postgres_check_on_a_default_pool_reports_the_real_cause() {
    // A pool with sqlx's defaults (30 s acquire timeout, retrying refused connections) in front
    // of a port nothing listens on: the check must say why, not that it timed out.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = retarget(&service_url("DATABASE_URL"), closed);
    let pool = PgPoolOptions::new().connect_lazy(&url).unwrap();
    let registry = registry_with("postgres", PostgresCheck::new(pool));
    let error = assert_fails_within_timeout(&registry, "postgres").await;
    assert!(error.starts_with("cannot connect: "), "{error}");
    assert!(error.to_lowercase().contains("connection refused"), "{error}");
    assert!(!error.contains("timed out"), "{error}");
}

#[tokio::test]
async fn postgres_check_tells_a_database_that_is_down_from_a_saturated_pool() {
    // Down from the start, with another part of the application (the instance registry, a
    // request) already waiting on the pool: its pending attempt counts toward the pool's
    // size, and must not be mistaken for a saturated pool.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = retarget(&service_url("DATABASE_URL"), closed);
    let pool = PgPoolOptions::new().max_connections(1).connect_lazy(&url).unwrap();
    let waiting = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(drop) }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let registry = registry_with("postgres", PostgresCheck::new(pool));
    let error = assert_fails_within_timeout(&registry, "postgres").await;
    assert!(error.starts_with("cannot connect: "), "{error}");
    assert!(error.to_lowercase().contains("connection refused"), "{error}");
    waiting.abort();

    // Up, with its one connection held by someone else: saturated, and said so.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .connect(&service_url("DATABASE_URL"))
        .await
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let registry = registry_with("postgres", PostgresCheck::new(pool));
    let error = assert_fails_within_timeout(&registry, "postgres").await;
    assert!(error.contains("the pool is saturated"), "{error}");
    assert!(error.contains("size 1, idle 0"), "{error}");
    drop(held);
}

#[tokio::test]
async fn postgres_probes_leave_no_connection_behind() {
    let url = service_url("DATABASE_URL");
    let application = unique("cutover_leak");
    let options: PgConnectOptions = url.parse::<PgConnectOptions>().unwrap().application_name(&application);
    // One connection: anything the check opened and did not return would show up as a second.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    let observer = PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&application)
            .fetch_one(&observer)
            .await
            .unwrap()
    };

    let (registry, app) = check_per_probe("postgres", PostgresCheck::new(pool));
    assert_eq!(probe(&app, "/health/ready").await.status, StatusCode::OK);
    let before = count().await;

    for _ in 0..1000 {
        assert_eq!(probe(&app, "/health/ready").await.status, StatusCode::OK);
    }
    let rounds = registry.snapshot().unwrap().round();
    assert!(
        rounds >= 1000,
        "every probe should have run the check, ran {rounds} rounds"
    );
    assert_eq!(before, 1);
    assert_eq!(count().await, before, "connections before and after 1,000 probes");
}

// ---------------------------------------------------------------------------------------------
// SQLite

#[tokio::test]
async fn sqlite_check_passes_and_fails_once_the_pool_is_closed() {
    let path = std::env::temp_dir().join(format!("{}.db", unique("cutover_sqlite")));
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .connect_with(options)
        .await
        .unwrap();
    let registry = registry_with("sqlite", SqliteCheck::new(pool.clone()));
    assert_eq!(status_of(&registry.refresh().await, "sqlite"), Status::Healthy);

    pool.close().await;
    let error = assert_fails_within_timeout(&registry, "sqlite").await;
    assert!(error.contains("closed"), "{error}");
    let _ = std::fs::remove_file(path);
}

// ---------------------------------------------------------------------------------------------
// MongoDB (FerretDB in CI)

#[tokio::test]
async fn mongodb_check_passes_fails_when_unreachable_and_recovers() {
    let url = service_url("MONGODB_URL");
    let proxy = FaultProxy::start(&host_port(&url, 27017)).await;
    let mut options = mongodb::options::ClientOptions::parse(retarget(&url, proxy.address()))
        .await
        .unwrap();
    options.server_selection_timeout = Some(Duration::from_secs(1));
    options.connect_timeout = Some(Duration::from_secs(1));
    options.heartbeat_freq = Some(Duration::from_millis(500));
    options.direct_connection = Some(true);
    let client = mongodb::Client::with_options(options).unwrap();
    let registry = registry_with("mongodb", MongoCheck::new(client));

    let snapshot = registry.refresh().await;
    assert_eq!(
        status_of(&snapshot, "mongodb"),
        Status::Healthy,
        "{:?}",
        snapshot.check("mongodb").unwrap().last_error()
    );

    proxy.cut();
    assert_fails_within_timeout(&registry, "mongodb").await;
    proxy.restore();
    assert_recovers(&registry, "mongodb", Duration::from_secs(15)).await;
}

// ---------------------------------------------------------------------------------------------
// Redis

fn redis_manager(url: &str) -> redis::aio::ConnectionManager {
    let client = redis::Client::open(url).unwrap();
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    redis::aio::ConnectionManager::new_lazy_with_config(client, config).unwrap()
}

#[tokio::test]
async fn redis_check_against_the_shared_server_passes() {
    let registry = registry_with("redis", RedisCheck::new(redis_manager(&service_url("REDIS_URL"))));
    let snapshot = registry.refresh().await;
    assert_eq!(
        status_of(&snapshot, "redis"),
        Status::Healthy,
        "{:?}",
        snapshot.check("redis").unwrap().last_error()
    );
}

#[tokio::test]
async fn redis_check_fails_when_the_server_is_stopped_and_recovers_when_it_restarts() {
    let mut server = RedisServer::start().await;
    let registry = registry_with("redis", RedisCheck::new(redis_manager(&server.url())));
    assert_eq!(status_of(&registry.refresh().await, "redis"), Status::Healthy);

    server.stop();
    assert_fails_within_timeout(&registry, "redis").await;
    // Still down: keeps failing, and the failure count grows.
    assert_fails_within_timeout(&registry, "redis").await;
    assert_eq!(
        registry
            .snapshot()
            .unwrap()
            .check("redis")
            .unwrap()
            .consecutive_failures(),
        2
    );

    server.start_again().await;
    assert_recovers(&registry, "redis", Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_lazy_redis_check_starts_with_redis_down_and_names_the_real_cause() {
    // Built with nothing listening, as a service starting during an outage: no connection is
    // needed to build it, and the failure says why (refused), not that it timed out. Then a
    // server appears on that port and the same check passes.
    let mut server = RedisServer::start().await;
    server.stop();
    let client = redis::Client::open(server.url()).unwrap();
    let check = RedisCheck::lazy(client).unwrap();
    let registry = registry_with("redis", check.clone());
    let error = assert_fails_within_timeout(&registry, "redis").await;
    assert!(error.to_lowercase().contains("refused"), "{error}");
    assert!(!error.contains("timed out"), "{error}");

    server.start_again().await;
    assert_recovers(&registry, "redis", Duration::from_secs(10)).await;
    // The application shares the check's connection.
    let mut shared = check.manager();
    let pong: String = redis::cmd("PING").query_async(&mut shared).await.unwrap();
    assert_eq!(pong, "PONG");
    drop(server);
}

async fn redis_pings(url: &str) -> u64 {
    let mut connection = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_ping:calls="))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

async fn reset_stats(url: &str) {
    let mut connection = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut connection)
        .await
        .unwrap();
}

async fn probe_storm(app: &Router, probes: usize) {
    let tasks: Vec<_> = (0..probes)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { probe(&app, "/health/ready").await.status })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_storm_sends_a_handful_of_pings_in_background_and_on_demand_modes() {
    let server = RedisServer::start().await;
    let url = server.url();

    // Background: probes read the snapshot.
    let background = HealthRegistry::builder()
        .check("redis", RedisCheck::new(redis_manager(&url)))
        .background(Duration::from_secs(10))
        .build()
        .unwrap();
    background.mark_started();
    background.refresh().await;
    reset_stats(&url).await;
    probe_storm(&background.router(), 1000).await;
    let background_pings = redis_pings(&url).await;
    drop(background);

    // On demand: concurrent probes share one round.
    let on_demand = HealthRegistry::builder()
        .check("redis", RedisCheck::new(redis_manager(&url)))
        .on_demand(Duration::from_secs(1))
        .build()
        .unwrap();
    on_demand.mark_started();
    reset_stats(&url).await;
    probe_storm(&on_demand.router(), 1000).await;
    let on_demand_pings = redis_pings(&url).await;

    // Control: the brief's design (every probe runs every check) on the same server, to prove
    // the counter sees the PINGs a naive design would send.
    let (_naive, naive_app) = check_per_probe("redis", RedisCheck::new(redis_manager(&url)));
    reset_stats(&url).await;
    for _ in 0..200 {
        assert_eq!(probe(&naive_app, "/health/ready").await.status, StatusCode::OK);
    }
    let naive_pings = redis_pings(&url).await;

    println!(
        "PINGs for 1,000 concurrent probes: background {background_pings}, on demand {on_demand_pings}; 200 naive probes: {naive_pings}"
    );
    assert!(background_pings <= 2, "background mode sent {background_pings} PINGs");
    assert!(on_demand_pings <= 3, "on-demand mode sent {on_demand_pings} PINGs");
    assert_eq!(naive_pings, 200, "the control must see one PING per naive probe");
}

// ---------------------------------------------------------------------------------------------
// RabbitMQ

async fn amqp_connect(url: &str, name: &str) -> Arc<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Arc::new(Connection::connect(url, properties).await.unwrap())
}

/// Keep a connection to `url` in a watch channel, reconnecting while the test runs: what a
/// service does so its check follows reconnects.
fn amqp_reconnecting(url: String, name: String) -> tokio::sync::watch::Receiver<Option<Arc<Connection>>> {
    let (current, receiver) = tokio::sync::watch::channel(None);
    tokio::spawn(async move {
        while !current.is_closed() {
            let properties = ConnectionProperties::default().with_connection_name(name.as_str().into());
            if let Ok(connection) = Connection::connect(&url, properties).await {
                let connection = Arc::new(connection);
                current.send_replace(Some(Arc::clone(&connection)));
                while connection.status().connected() && !current.is_closed() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                current.send_replace(None);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    receiver
}

#[tokio::test]
async fn rabbitmq_check_fails_when_unreachable_and_recovers_through_a_reconnecting_source() {
    let _serial = RABBITMQ.lock().await;
    let url = service_url("AMQP_URL");
    let proxy = FaultProxy::start(&host_port(&url, 5672)).await;
    let current = amqp_reconnecting(retarget(&url, proxy.address()), unique("cutover_proxy"));
    let registry = registry_with("rabbitmq", RabbitMqCheck::watching(current));
    assert_recovers(&registry, "rabbitmq", Duration::from_secs(10)).await;

    proxy.cut();
    assert!(
        eventually(Duration::from_secs(5), || async {
            status_of(&registry.refresh().await, "rabbitmq") == Status::Unhealthy
        })
        .await
    );
    assert_fails_within_timeout(&registry, "rabbitmq").await;
    proxy.restore();
    assert_recovers(&registry, "rabbitmq", Duration::from_secs(10)).await;
}

#[tokio::test]
async fn rabbitmq_check_fails_when_the_broker_stops_and_recovers_when_it_starts() {
    let _serial = RABBITMQ.lock().await;
    let url = service_url("AMQP_URL");
    let current = amqp_reconnecting(url.clone(), unique("cutover_stop"));
    let registry = registry_with("rabbitmq", RabbitMqCheck::watching(current));
    assert_recovers(&registry, "rabbitmq", Duration::from_secs(10)).await;

    rabbitmqctl(&["stop_app"]);
    let outcome = async {
        let failed = eventually(Duration::from_secs(10), || async {
            status_of(&registry.refresh().await, "rabbitmq") == Status::Unhealthy
        })
        .await;
        let error = if failed {
            Some(assert_fails_within_timeout(&registry, "rabbitmq").await)
        } else {
            None
        };
        (failed, error)
    }
    .await;
    // Start the broker again before asserting, so a failure here cannot break other tests.
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);
    let (failed, error) = outcome;
    assert!(failed, "the check did not notice the broker stopping");
    println!("error while the broker was stopped: {}", error.unwrap_or_default());
    assert_recovers(&registry, "rabbitmq", Duration::from_secs(20)).await;
}

/// `(connections, channels)` the broker has for client connections named `name`.
fn broker_usage(name: &str) -> (usize, u64) {
    let listing = rabbitmqctl(&["-q", "list_connections", "channels", "client_properties"]);
    let ours: Vec<&str> = listing.lines().filter(|line| line.contains(name)).collect();
    let channels = ours
        .iter()
        .map(|line| line.split_whitespace().next().unwrap().parse::<u64>().unwrap())
        .sum();
    (ours.len(), channels)
}

#[tokio::test]
async fn rabbitmq_probes_leave_no_channel_or_connection_behind() {
    let _serial = RABBITMQ.lock().await;
    let url = service_url("AMQP_URL");
    let name = unique("cutover_leak");
    let connection = amqp_connect(&url, &name).await;
    let (registry, app) = check_per_probe("rabbitmq", RabbitMqCheck::new(connection));
    assert_eq!(probe(&app, "/health/ready").await.status, StatusCode::OK);
    let before = broker_usage(&name);
    assert_eq!(before, (1, 0), "one connection and no open channel after a check");

    for _ in 0..1000 {
        assert_eq!(probe(&app, "/health/ready").await.status, StatusCode::OK);
    }
    assert!(registry.snapshot().unwrap().round() >= 1000);
    // The broker updates its channel counts asynchronously; give it a moment.
    let settled = eventually(Duration::from_secs(5), || async { broker_usage(&name) == before }).await;
    assert!(
        settled,
        "after 1,000 probes the broker sees {:?}, before {before:?}",
        broker_usage(&name)
    );
}

// ---------------------------------------------------------------------------------------------
// Upstream HTTP

async fn upstream(status: Arc<AtomicU16>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route(
            "/health",
            get(|State(status): State<Arc<AtomicU16>>| async move {
                StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap()
            }),
        )
        .with_state(status);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    (
        address,
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }),
    )
}

#[tokio::test]
async fn http_check_follows_the_upstream_status_and_is_not_critical_by_default() {
    let status = Arc::new(AtomicU16::new(200));
    let (address, server) = upstream(Arc::clone(&status)).await;
    let url = format!("http://monitor:s3cr3t-pw@{address}/health");
    let check = HttpCheck::new(reqwest::Client::new(), &url).unwrap();
    let registry = HealthRegistry::builder()
        .register(Registration::new("upstream", check).timeout(TIMEOUT))
        .build()
        .unwrap();

    let snapshot = registry.refresh().await;
    assert_eq!(status_of(&snapshot, "upstream"), Status::Healthy);
    assert!(!snapshot.check("upstream").unwrap().is_critical());

    status.store(503, Ordering::SeqCst);
    let error = assert_fails_within_timeout(&registry, "upstream").await;
    assert_eq!(
        error,
        format!("GET http://monitor:***@{address}/health answered 503 Service Unavailable")
    );
    assert_eq!(
        registry.snapshot().unwrap().status(),
        Status::Degraded,
        "non-critical failure"
    );

    server.abort();
    let _ = server.await;
    let error = assert_fails_within_timeout(&registry, "upstream").await;
    assert!(!error.contains("s3cr3t-pw"), "{error}");

    let unroutable = HttpCheck::new(reqwest::Client::new(), "http://10.255.255.1:81/health").unwrap();
    let registry = registry_with("unroutable", unroutable);
    assert_fails_within_timeout(&registry, "unroutable").await;
    assert!(HttpCheck::new(reqwest::Client::new(), "not a url").is_err());
}

// ---------------------------------------------------------------------------------------------
// Memory and disk

#[tokio::test]
async fn memory_check_reads_real_usage_and_fails_above_its_limit() {
    let registry = registry_with("memory", MemoryCheck::new());
    let snapshot = registry.refresh().await;
    let state = snapshot.check("memory").unwrap();
    assert_ne!(state.status(), Status::Unhealthy, "{:?}", state.last_error());
    let percent = state.observed_value().unwrap().as_f64().unwrap();
    assert!(percent > 0.0 && percent <= 100.0, "{percent}");
    assert!(!state.is_critical());

    let strict = registry_with(
        "memory",
        MemoryCheck::new().thresholds(Thresholds::new(0.0, 0.0).unwrap()),
    );
    let error = assert_fails_within_timeout(&strict, "memory").await;
    assert!(
        error.starts_with("memory (") && error.ends_with("above the 0% limit"),
        "{error}"
    );
}

#[tokio::test]
async fn disk_check_reads_real_usage_and_reports_bad_paths() {
    let registry = registry_with("disk", DiskCheck::new(std::env::temp_dir()));
    let snapshot = registry.refresh().await;
    let state = snapshot.check("disk").unwrap();
    let percent = state.observed_value().unwrap().as_f64().unwrap();
    assert!(percent > 0.0 && percent <= 100.0, "{percent}");

    let strict = registry_with(
        "disk",
        DiskCheck::new(std::env::temp_dir()).thresholds(Thresholds::new(0.0, 0.0).unwrap()),
    );
    let error = assert_fails_within_timeout(&strict, "disk").await;
    assert!(error.contains("above the 0% limit"), "{error}");

    let missing = registry_with("disk", DiskCheck::new("/no/such/directory"));
    let error = assert_fails_within_timeout(&missing, "disk").await;
    assert!(error.starts_with("statvfs /no/such/directory"), "{error}");
}
