//! The service of the contract-gate harness, built twice: `contract-blue` (release 1.1: reads
//! `users.name`, embeds the migrations up to the backfill) and `contract-green` (release 2.0:
//! reads `users.display_name`, embeds the contract migration that drops `name` too). Each is a
//! `cutover::Service` that applies its expand migrations at start-up and registers itself with
//! the migrations it embeds, as api-service does.
//!
//! `contract-<release>` serves; `contract-<release> migrate <phase>... [--force-contract <why>]`
//! applies its embedded migrations of those phases once and exits (3 when the contract gate
//! refuses, as `cutover-migrate` does).
//!
//! Environment: `DATABASE_URL`, `PORT`, `SERVICE_VERSION`, `SHUTDOWN_DRAIN_DELAY`,
//! `INSTANCE_HEARTBEAT` (milliseconds for both).

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::get,
};
use cutover::{
    Service,
    migrate::{MigrateError, MigrationSet, Migrator, Phase, UpOptions, instances::InstanceRegistry},
    shutdown::ShutdownConfig,
};
use sqlx::{AssertSqlSafe, PgPool};

/// One release of the service.
pub(crate) struct Release {
    /// Its version.
    pub(crate) version: &'static str,
    /// The column its handler reads.
    pub(crate) column: &'static str,
    /// The migrations it embeds.
    pub(crate) migrations: Result<MigrationSet, MigrateError>,
}

fn env_ms(name: &str, default: u64) -> Duration {
    Duration::from_millis(std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

/// Serve, or migrate, per the command line.
pub(crate) fn main(release: Release) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = runtime.block_on(async move {
        let set = release.migrations?;
        let url = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is not set".to_owned())?;
        match args.first().map(String::as_str) {
            Some("migrate") => migrate(set, &url, &args[1..]).await,
            None => serve(release.version, release.column, set, &url).await,
            Some(other) => Err(format!("unknown command `{other}`: use `migrate <phase>...` or nothing").into()),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

async fn migrate(set: MigrationSet, url: &str, args: &[String]) -> Result<ExitCode, Error> {
    let mut phases = Vec::new();
    let mut force_contract = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--force-contract" => {
                force_contract = Some(args.next().ok_or("--force-contract needs a reason")?.clone());
            }
            phase => phases.push(phase.parse::<Phase>()?),
        }
    }
    let options = UpOptions {
        phases: Some(phases),
        force_contract,
        ..UpOptions::default()
    };
    match Migrator::new(set).up(url, &options).await {
        Ok(report) => {
            for forced in &report.forced {
                eprintln!("WARNING: FORCED past the contract gate: {forced}");
            }
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Err(error @ MigrateError::ContractBlocked(_)) => {
            eprintln!("error: {error}");
            Ok(ExitCode::from(error.exit_code()))
        }
        Err(error) => Err(error.into()),
    }
}

async fn serve(version: &str, column: &'static str, set: MigrationSet, url: &str) -> Result<ExitCode, Error> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .connect_lazy(url)?;
    let port: u16 = std::env::var("PORT")?.parse()?;
    let version = std::env::var("SERVICE_VERSION").unwrap_or_else(|_| version.to_owned());
    let registry = InstanceRegistry::new(&pool, "contract-demo", &set).heartbeat(env_ms("INSTANCE_HEARTBEAT", 10_000));
    let migrator = Migrator::new(set);
    let startup_pool = pool.clone();
    let router = Router::new()
        .route("/", get(|| async { "contract-demo" }))
        .route("/users/{id}", get(user))
        .with_state((pool, column));
    let report = Service::builder(router)
        .service_version(version)
        .register_instance(registry)
        .shutdown(ShutdownConfig::default().drain_delay(env_ms("SHUTDOWN_DRAIN_DELAY", 1_000)))
        .bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .startup_retrying(
            "migrations",
            move || {
                let (migrator, pool) = (migrator.clone(), startup_pool.clone());
                async move {
                    let expand = UpOptions {
                        phases: Some(vec![Phase::Expand]),
                        ..UpOptions::default()
                    };
                    migrator.up(&pool, &expand).await.map(drop)
                }
            },
            MigrateError::is_transient,
        )
        .serve()
        .await?;
    Ok(report.exit())
}

/// `{"id": 7, "<column>": "user 7"}`; a 500 with the database's message when the column is gone.
async fn user(
    State((pool, column)): State<(PgPool, &'static str)>,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    let value: Option<Option<String>> =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT {column} FROM users WHERE id = $1")))
            .bind(id)
            .fetch_optional(&pool)
            .await
            .map_err(|error| (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
    match value {
        Some(value) => Ok(Json(serde_json::json!({ "id": id, column: value }))),
        None => Err((StatusCode::NOT_FOUND, format!("no user {id}"))),
    }
}
