//! `ServiceBuilder::register_instance` over a real socket: the row follows the service's phase
//! (starting, ready, draining) and goes after the drain; a database that stops answering
//! never delays a request and shows as the non-critical `instance-registry` check; the
//! heartbeat's cost in statements, counted by PostgreSQL.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use axum::{Router, routing::get};
use cutover::{
    Service,
    health::Status,
    migrate::{
        MigrationSet,
        instances::{Embedded, Instance, InstanceRegistry},
    },
    shutdown::{ShutdownConfig, ShutdownHandle, ShutdownReport},
};
use cutover_tests::{FaultProxy, PgDatabase, eventually, host_port, retarget, service_url, unique};
use sqlx::{PgPool, SqlitePool};
use tokio::{net::TcpListener, task::JoinHandle};

fn migrations() -> MigrationSet {
    cutover::migrate::embed_migrations!("../cutover-migrate/examples/migrations").unwrap()
}

struct Running {
    base: String,
    handle: ShutdownHandle,
    health: cutover::health::HealthRegistry,
    served: JoinHandle<Result<ShutdownReport, cutover::ServeError>>,
}

async fn serve(registry: InstanceRegistry, drain: Duration) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let service = Service::builder(Router::new().route("/", get(|| async { "ok" })))
        .service_version("2.0.0")
        .register_instance(registry)
        .shutdown(
            ShutdownConfig::default()
                .signals(false)
                .drain_delay(drain)
                .shutdown_timeout(Duration::from_secs(10)),
        )
        .listener(listener)
        .build()
        .unwrap();
    let handle = service.handle();
    let health = service.health().clone();
    let served = tokio::spawn(service.serve());
    Running {
        base,
        handle,
        health,
        served,
    }
}

/// What another process reading the registry sees.
async fn live(reader: &InstanceRegistry) -> Vec<Instance> {
    reader.live().await.unwrap()
}

async fn phase_becomes(reader: &InstanceRegistry, phase: &str) -> bool {
    eventually(Duration::from_secs(5), || async {
        live(reader).await.first().is_some_and(|i| i.phase == phase)
    })
    .await
}

#[tokio::test]
async fn the_row_follows_the_phase_and_goes_after_the_drain_sqlite() {
    let path = std::env::temp_dir().join(format!("{}.db", unique("instances")));
    let pool = SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    let set = migrations();
    let registry = InstanceRegistry::new(&pool, "api", &set).heartbeat(Duration::from_millis(200));
    let id = registry.id().to_owned();
    let reader = InstanceRegistry::new(&pool, "reader", Embedded::new([]));
    let running = serve(registry, Duration::from_millis(800)).await;

    assert!(phase_becomes(&reader, "ready").await, "{:?}", live(&reader).await);
    let row = live(&reader).await.remove(0);
    assert_eq!((row.id.as_str(), row.service.as_str()), (id.as_str(), "api"));
    assert_eq!(row.version, "2.0.0", "the service version is the registry's default");
    assert_eq!(row.migrations, [1]);
    assert_eq!(row.digest, Embedded::from(&set).digest());
    let snapshot = running.health.refresh().await;
    let check = snapshot.check("instance-registry").unwrap();
    assert_eq!(check.status(), Status::Healthy, "{:?}", check.last_error());
    assert!(!check.is_critical());

    running.handle.trigger();
    assert!(phase_becomes(&reader, "draining").await, "{:?}", live(&reader).await);
    let report = running.served.await.unwrap().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(live(&reader).await.is_empty(), "deregistered after the drain");
    pool.close().await;
    let _ = std::fs::remove_file(path);
}

/// PostgreSQL through a proxy that can be cut: requests never wait for the heartbeat, the
/// check turns degraded (readiness unaffected), and recovers.
#[tokio::test]
async fn a_database_that_stops_answering_degrades_the_check_and_never_a_request() {
    let url = service_url("DATABASE_URL");
    let proxy = FaultProxy::start(&host_port(&url, 5432)).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect(&retarget(&url, proxy.address()))
        .await
        .unwrap();
    let registry = InstanceRegistry::new(&pool, unique("svc"), &migrations())
        .instance_id(unique("instance"))
        .heartbeat(Duration::from_millis(200));
    let id = registry.id().to_owned();
    let running = serve(registry, Duration::ZERO).await;
    let client = reqwest::Client::new();
    let ready = || async {
        client
            .get(format!("{}/health/ready", running.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    };
    assert!(eventually(Duration::from_secs(5), ready).await);

    proxy.cut();
    let degraded = eventually(Duration::from_secs(5), || async {
        let snapshot = running.health.refresh().await;
        let check = snapshot.check("instance-registry").unwrap();
        check.status() == Status::Unhealthy
            && check
                .last_error()
                .is_some_and(|e| e.contains("cannot write this instance's registry row"))
    })
    .await;
    assert!(degraded, "{:?}", running.health.latest().await);
    for _ in 0..20 {
        let response = client.get(&running.base).send().await.unwrap();
        assert_eq!(response.status(), 200, "requests are served while heartbeats fail");
    }
    assert!(ready().await, "the registry's check is not critical");

    proxy.restore();
    let recovered = eventually(Duration::from_secs(10), || async {
        let snapshot = running.health.refresh().await;
        snapshot.check("instance-registry").unwrap().status() == Status::Healthy
    })
    .await;
    assert!(recovered, "{:?}", running.health.latest().await);
    running.handle.trigger();
    running.served.await.unwrap().unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM _cutover_instances WHERE instance_id = $1")
        .bind(&id)
        .fetch_one(&PgPool::connect(&url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(left, 0);
}

/// One statement per heartbeat: PostgreSQL's own count of rows written to the registry by a
/// service beating every 200 ms for 3 s, in a database of its own.
#[tokio::test]
async fn a_heartbeat_is_one_statement_per_interval() {
    let database = PgDatabase::create("beats").await;
    let pool = database.pool.clone();
    let interval = Duration::from_millis(200);
    let running = serve(
        InstanceRegistry::new(&pool, "api", &migrations()).heartbeat(interval),
        Duration::ZERO,
    )
    .await;
    let window = Duration::from_secs(3);
    tokio::time::sleep(window).await;
    running.handle.trigger();
    running.served.await.unwrap().unwrap();
    // Statistics reach the shared counters within a second of each transaction.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let writes: i64 = sqlx::query_scalar(
        "SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables WHERE relname = '_cutover_instances'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let expected = window.as_millis() / interval.as_millis();
    println!(
        "heartbeat: {writes} registry writes in {} ms at a {} ms interval (expected about {expected} plus phase changes): {} statements per minute at the 10 s default",
        window.as_millis(),
        interval.as_millis(),
        60 / 10
    );
    let writes = u128::try_from(writes).unwrap();
    assert!(
        writes >= expected / 2 && writes <= expected + 5,
        "{writes} writes for about {expected} heartbeats"
    );
    database.drop_database().await;
}

/// The start-up work (migrations) runs only once the row is written: a contract migration
/// applied concurrently either sees the instance or is seen by its migrations.
#[tokio::test]
async fn start_up_work_begins_once_the_instance_is_registered() {
    let pool = SqlitePool::connect("sqlite::memory:").await.unwrap();
    let set = migrations();
    let registry = InstanceRegistry::new(&pool, "api", &set).heartbeat(Duration::from_millis(200));
    let id = registry.id().to_owned();
    let reader = InstanceRegistry::new(&pool, "reader", Embedded::new([]));
    let (seen, seen_by_startup) = tokio::sync::oneshot::channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service = Service::builder(Router::new())
        .register_instance(registry)
        .shutdown(ShutdownConfig::default().signals(false).drain_delay(Duration::ZERO))
        .listener(listener)
        .startup(async move {
            let live = reader.live().await?;
            let _ = seen.send(live.iter().map(|i| (i.id.clone(), i.phase.clone())).collect::<Vec<_>>());
            Ok::<(), cutover::migrate::MigrateError>(())
        })
        .build()
        .unwrap();
    let handle = service.handle();
    let served = tokio::spawn(service.serve());
    let seen = tokio::time::timeout(Duration::from_secs(5), seen_by_startup)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, [(id, "starting".to_owned())]);
    handle.trigger();
    served.await.unwrap().unwrap();
}
