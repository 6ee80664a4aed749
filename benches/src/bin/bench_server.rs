//! A hello-world axum server for the shutdown and stack benchmarks.
//!
//! `bench-server cutover <port>` serves through `cutover::Service` (drain layer, probes,
//! graceful shutdown on SIGTERM); `bench-server bare <port>` serves the same router with plain
//! `axum::serve`. Routes: `/` (hello) and `/slow?ms=N`. `plain-user` and `versioned-user`
//! serve `/api/users/{id}` as `Json<User>`, or as `Versioned<User>` behind the version layer.
//! `service-full` is `cutover::Service` with everything a service gets by default (limits,
//! request ids, trace spans, panics caught, drain) plus Prometheus request metrics and the
//! version layer; `service-full-logging` adds a JSON log subscriber at INFO (one access line
//! per request, written to stdout). `tower-http` and `tower-http-logging` are the baseline a
//! team would assemble by hand with the same duties (`cutover_benches::tower_http_stack`).

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use axum::{
    Router, ServiceExt as _,
    body::Body,
    extract::{Path, Query},
    routing::get,
};
use cutover::{
    Service,
    health::HealthRegistry,
    shutdown::ShutdownConfig,
    versioning::{VersionLayer, Versioned, layer::VersionBody},
};
use cutover_benches::users;
use tower::{Layer, ServiceExt as _};

#[derive(serde::Deserialize)]
struct Ms {
    ms: u64,
}

fn router() -> Router {
    Router::new().route("/", get(|| async { "hello" })).route(
        "/slow",
        get(|Query(Ms { ms }): Query<Ms>| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            "done"
        }),
    )
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(8080);
    let workers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(1);
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        match mode.as_str() {
            "bare" => {
                let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
                axum::serve(listener, router()).await.expect("serve");
                ExitCode::SUCCESS
            }
            "plain-user" => {
                let router = Router::new().route(
                    "/api/users/{id}",
                    get(|Path(id): Path<i64>| async move { axum::Json(users::user(id)) }),
                );
                let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
                axum::serve(listener, router).await.expect("serve");
                ExitCode::SUCCESS
            }
            "versioned-user" | "versioned-user-lean" => {
                let router = Router::new().route(
                    "/api/users/{id}",
                    get(|Path(id): Path<i64>| async move { Versioned::ok(users::user(id)) }),
                );
                let versions = if mode == "versioned-user-lean" {
                    users::lean_versions()
                } else {
                    users::versions()
                };
                let changes = users::changes(&versions);
                let service = VersionLayer::new(versions)
                    .changes(changes)
                    .layer(router)
                    .map_request(|request: axum::extract::Request| request)
                    .map_response(|response: http::Response<VersionBody<Body>>| {
                        response.map(|body| body.into_parts().unwrap_or_else(Body::from))
                    });
                let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
                axum::serve(listener, service.into_make_service()).await.expect("serve");
                ExitCode::SUCCESS
            }
            "api-service" => {
                // The example API as its binary runs it, configured from the environment
                // (SQLITE_PATH, ...); for benchmarks that measure the process.
                let config = <api_service::Config as clap::Parser>::parse_from([
                    "api-service",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                ]);
                match api_service::serve(config).await {
                    Ok(report) => report.exit(),
                    Err(error) => {
                        eprintln!("{error:#}");
                        ExitCode::FAILURE
                    }
                }
            }
            "service-full" | "service-full-logging" => {
                if mode == "service-full-logging" {
                    tracing_subscriber::fmt().json().with_max_level(tracing::Level::INFO).init();
                }
                raise_file_limit();
                let config = ShutdownConfig::from_env().expect("SHUTDOWN_* variables");
                let versions = users::versions();
                let changes = users::changes(&versions);
                let served = Service::builder(router())
                    .service_version("1.0.0")
                    .prometheus()
                    .versioning(VersionLayer::new(versions).changes(changes))
                    .shutdown(config)
                    .bind(address)
                    .serve()
                    .await;
                exit_with(served)
            }
            "tower-http" | "tower-http-logging" => {
                // The baseline: the same duties assembled by hand from tower-http and
                // `metrics`, with the same log subscriber.
                if mode == "tower-http-logging" {
                    tracing_subscriber::fmt().json().with_max_level(tracing::Level::INFO).init();
                }
                raise_file_limit();
                let app = cutover_benches::tower_http_stack::app(router());
                let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
                axum::serve(listener, app).await.expect("serve");
                ExitCode::SUCCESS
            }
            "cutover" => {
                let health = HealthRegistry::builder().build().expect("registry");
                let config = ShutdownConfig::from_env().expect("SHUTDOWN_* variables");
                let served = Service::builder(router())
                    .health(health)
                    .shutdown(config)
                    .bind(address)
                    .serve()
                    .await;
                exit_with(served)
            }
            other => {
                eprintln!(
                    "usage: bench-server <bare|cutover|service-full|service-full-logging|tower-http|tower-http-logging|plain-user|versioned-user> <port> [workers], not {other:?}"
                );
                ExitCode::from(2)
            }
        }
    })
}

/// Room for a thousand connections and more: the soft file limit raised to the hard one.
fn raise_file_limit() {
    cutover_benches::raise_file_limit();
}

/// The exit status of a served `Service`.
fn exit_with(served: Result<cutover::shutdown::ShutdownReport, cutover::ServeError>) -> ExitCode {
    match served {
        Ok(report) => report.exit(),
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
