//! Per-request cost of the drain layer, in-process (no sockets): the same axum router called
//! with `oneshot`, bare and wrapped in `DrainLayer`, in the same run.
//!
//! Run with: `cargo bench -p cutover-benches --bench drain_overhead`

use std::convert::Infallible;

use axum::{Router, body::Body, http::Request, response::Response, routing::get};
use criterion::{Criterion, criterion_group, criterion_main};
use cutover::shutdown::{Shutdown, ShutdownConfig};
use http_body_util::BodyExt;
use tower::{Layer, Service, ServiceExt};

fn router() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

async fn call<S, B>(app: S)
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let response = app
        .oneshot(Request::get("/").body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let body = response.into_body().collect().await.expect("body");
    assert_eq!(body.to_bytes().len(), 5);
}

fn overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let shutdown = runtime.block_on(async {
        Shutdown::builder()
            .config(ShutdownConfig::default().signals(false))
            .build()
            .expect("shutdown")
    });
    let bare = router();
    let wrapped = shutdown.drain_layer().layer(router());
    let per_route = router().layer(shutdown.drain_layer());

    let mut group = c.benchmark_group("GET / in-process");
    group.bench_function("bare router", |b| b.to_async(&runtime).iter(|| call(bare.clone())));
    group.bench_function("DrainLayer around the router", |b| {
        b.to_async(&runtime).iter(|| call(wrapped.clone()));
    });
    group.bench_function("Router::layer(DrainLayer)", |b| {
        b.to_async(&runtime).iter(|| call(per_route.clone()));
    });
    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
