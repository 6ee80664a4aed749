//! Per-request cost of the drain layer, in-process (no sockets): the same axum router called
//! with `oneshot`, bare and wrapped in `DrainLayer`, in the same run.
//!
//! Run with: `cargo bench -p cutover-benches --bench drain_overhead`

use axum::{Router, routing::get};
use criterion::{Criterion, criterion_group, criterion_main};
use cutover::shutdown::{Shutdown, ShutdownConfig};
use cutover_benches::get_hello;
use tower::Layer;

fn router() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
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
    group.bench_function("bare router", |b| b.to_async(&runtime).iter(|| get_hello(bare.clone())));
    group.bench_function("DrainLayer around the router", |b| {
        b.to_async(&runtime).iter(|| get_hello(wrapped.clone()));
    });
    group.bench_function("Router::layer(DrainLayer)", |b| {
        b.to_async(&runtime).iter(|| get_hello(per_route.clone()));
    });
    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
