//! Probe latency: cutover serving `/health/ready` from its snapshot, versus the original
//! brief's design, where every probe runs every check one after another. Both use the same
//! real PostgreSQL, Redis and MongoDB clients, in the same run, driven in-process.
//!
//! Run with: `scripts/services.sh up && source target/services.env && cargo bench -p cutover-benches --bench probe_latency`

use std::time::{Duration, Instant};

use axum::{Router, body::Body, http::Request, routing::get};
use cutover_benches::{Percentiles, service_url};
use cutover_health::{
    Check, CheckContext, HealthRegistry,
    checks::{MongoCheck, PostgresCheck, RedisCheck},
};
use http_body_util::BodyExt;
use tower::ServiceExt;

const PROBES: usize = 2_000;

async fn measure(app: &Router) -> Percentiles {
    let mut samples = Vec::with_capacity(PROBES);
    for _ in 0..PROBES {
        let started = Instant::now();
        let response = app
            .clone()
            .oneshot(Request::get("/health/ready").body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert!(response.status().is_success(), "probe failed: {}", response.status());
        response.into_body().collect().await.expect("body");
        samples.push(started.elapsed());
    }
    Percentiles::of(samples)
}

/// The brief's `/health/ready`: run every check in turn, then answer.
fn naive_router(postgres: PostgresCheck, redis: RedisCheck, mongo: MongoCheck) -> Router {
    Router::new().route(
        "/health/ready",
        get(move || {
            let (postgres, redis, mongo) = (postgres.clone(), redis.clone(), mongo.clone());
            async move {
                let ctx = || CheckContext::new("probe", Duration::from_secs(2));
                let mut failed = Vec::new();
                if postgres.check(ctx()).await.is_err() {
                    failed.push("postgres");
                }
                if redis.check(ctx()).await.is_err() {
                    failed.push("redis");
                }
                if mongo.check(ctx()).await.is_err() {
                    failed.push("mongodb");
                }
                serde_json::json!({ "status": if failed.is_empty() { "ready" } else { "not_ready" } }).to_string()
            }
        }),
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&service_url("DATABASE_URL"))
            .await
            .expect("connect to PostgreSQL");
        let redis_client = redis::Client::open(service_url("REDIS_URL")).expect("REDIS_URL");
        let redis = redis::aio::ConnectionManager::new(redis_client)
            .await
            .expect("connect to Redis");
        let mongo = mongodb::Client::with_uri_str(service_url("MONGODB_URL"))
            .await
            .expect("MONGODB_URL");

        let postgres_check = PostgresCheck::new(pool);
        let redis_check = RedisCheck::new(redis);
        let mongo_check = MongoCheck::new(mongo);

        let registry = HealthRegistry::builder()
            .check("postgres", postgres_check.clone())
            .check("redis", redis_check.clone())
            .check("mongodb", mongo_check.clone())
            .build()
            .expect("registry");
        registry.mark_started();
        registry.refresh().await;
        let snapshot_app = registry.router();
        let naive_app = naive_router(postgres_check, redis_check, mongo_check);

        // Warm up both, then measure alternately so drift affects both equally.
        measure(&snapshot_app).await;
        measure(&naive_app).await;
        let snapshot = measure(&snapshot_app).await;
        let naive = measure(&naive_app).await;

        println!("probe latency over {PROBES} sequential /health/ready probes (postgres + redis + mongodb)");
        println!("{:<28} {:>10} {:>10} {:>10}", "design", "p50", "p99", "max");
        for (name, p) in [("cutover snapshot", snapshot), ("brief: checks per probe", naive)] {
            println!("{name:<28} {:>10.1?} {:>10.1?} {:>10.1?}", p.p50, p.p99, p.max);
        }
        println!(
            "ratio (brief / snapshot): p50 {:.0}x, p99 {:.0}x",
            naive.p50.as_secs_f64() / snapshot.p50.as_secs_f64(),
            naive.p99.as_secs_f64() / snapshot.p99.as_secs_f64()
        );
    });
}
