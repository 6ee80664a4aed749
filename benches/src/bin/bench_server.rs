//! A hello-world axum server for the shutdown benchmarks.
//!
//! `bench-server cutover <port>` serves through `cutover::Service` (drain layer, probes,
//! graceful shutdown on SIGTERM); `bench-server bare <port>` serves the same router with plain
//! `axum::serve`. Routes: `/` (hello) and `/slow?ms=N`.

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use axum::{Router, extract::Query, routing::get};
use cutover::{Service, health::HealthRegistry, shutdown::ShutdownConfig};

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
            "cutover" => {
                let health = HealthRegistry::builder().build().expect("registry");
                let config = ShutdownConfig::from_env().expect("SHUTDOWN_* variables");
                match Service::builder(router())
                    .health(health)
                    .shutdown(config)
                    .bind(address)
                    .serve()
                    .await
                {
                    Ok(report) => report.exit(),
                    Err(error) => {
                        eprintln!("{error}");
                        ExitCode::FAILURE
                    }
                }
            }
            other => {
                eprintln!("usage: bench-server <bare|cutover> <port> [workers], not {other:?}");
                ExitCode::from(2)
            }
        }
    })
}
