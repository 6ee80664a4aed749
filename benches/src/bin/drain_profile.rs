//! Runs N in-process requests through a bare router or one wrapped in the drain layer, for
//! instruction counting under `valgrind --tool=callgrind` (deterministic, unlike wall time).
//!
//! `valgrind --tool=callgrind target/release/drain-profile <bare|drained> 20000`

use axum::{Router, body::Body, http::Request, routing::get};
use cutover::shutdown::{Shutdown, ShutdownConfig};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt};

fn router() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let requests: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let shutdown = Shutdown::builder()
            .config(ShutdownConfig::default().signals(false))
            .build()
            .expect("shutdown");
        let drained = shutdown.drain_layer().layer(router());
        let bare = router();
        for _ in 0..requests {
            let request = Request::get("/").body(Body::empty()).expect("request");
            let bytes = if mode == "drained" {
                let response = drained.clone().oneshot(request).await.expect("infallible");
                response.into_body().collect().await.expect("body").to_bytes()
            } else {
                let response = bare.clone().oneshot(request).await.expect("infallible");
                response.into_body().collect().await.expect("body").to_bytes()
            };
            assert_eq!(bytes.len(), 5);
        }
    });
}
