//! Per-request cost of `ServiceBuilder::prometheus` request metrics, in-process (no sockets):
//! the same axum router called with `oneshot`, bare, with an empty `from_fn` middleware (the
//! plumbing alone), and with the `track` middleware recording into the installed Prometheus
//! recorder, in the same run.
//!
//! Run with: `cargo bench -p cutover-benches --bench prometheus_overhead`

use axum::{Router, routing::get};
use criterion::{Criterion, criterion_group, criterion_main};
use cutover_benches::get_hello;

fn router() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

fn overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let handle = cutover::prometheus::handle().expect("recorder");
    let bare = router();
    let tracked = router().layer(axum::middleware::from_fn(cutover::prometheus::track));
    // The same middleware plumbing doing nothing: what `from_fn` itself costs.
    let plumbing = router().layer(axum::middleware::from_fn(
        |request: axum::extract::Request, next: axum::middleware::Next| next.run(request),
    ));

    let mut group = c.benchmark_group("GET / in-process");
    group.bench_function("bare router", |b| b.to_async(&runtime).iter(|| get_hello(bare.clone())));
    group.bench_function("from_fn doing nothing", |b| {
        b.to_async(&runtime).iter(|| get_hello(plumbing.clone()));
    });
    group.bench_function("with request metrics", |b| {
        b.to_async(&runtime).iter(|| get_hello(tracked.clone()));
    });
    group.finish();
    // The recorder really recorded: the counter is there.
    assert!(handle.render().contains("http_requests_total"));
}

criterion_group!(benches, overhead);
criterion_main!(benches);
