//! Cost of negotiation per request, and of shaping a user (and a page of 100) for version
//! 1.0, each next to its baseline: no negotiation, and serializing the newest representation.
//!
//! Run with: `cargo bench -p cutover-benches --bench versioning`

use criterion::{Criterion, criterion_group, criterion_main};
use cutover_benches::users::{Page, changes, user, versions};
use http::{HeaderMap, HeaderValue, Uri};

fn negotiation(c: &mut Criterion) {
    let set = versions();
    let plain: Uri = "/api/users/1".parse().expect("uri");
    let in_path: Uri = "/api/v1.2/users/1".parse().expect("uri");
    let in_query: Uri = "/api/users/1?version=1.2".parse().expect("uri");
    let none = HeaderMap::new();
    let mut with_header = HeaderMap::new();
    with_header.insert("accept-version", HeaderValue::from_static("1.2"));

    let mut group = c.benchmark_group("negotiate");
    group.bench_function("no version named (default)", |b| {
        b.iter(|| set.negotiate(&none, &plain).expect("ok"));
    });
    group.bench_function("Accept-Version header", |b| {
        b.iter(|| set.negotiate(&with_header, &plain).expect("ok"));
    });
    group.bench_function("/api/v1.2 path (rewritten)", |b| {
        b.iter(|| set.negotiate(&none, &in_path).expect("ok"));
    });
    group.bench_function("?version= query", |b| {
        b.iter(|| set.negotiate(&none, &in_query).expect("ok"));
    });
    group.finish();
}

fn downgrade(c: &mut Criterion) {
    let set = versions();
    let changes = changes(&set);
    let v1_0 = "1.0".parse().expect("version");
    let one = user(1);
    let page = Page {
        items: (1..=100).map(user).collect(),
        next_cursor: Some("100".into()),
    };
    // Warm the plan cache, as register() would at start-up.
    changes.downgrade(&one, &v1_0).expect("downgrade");
    changes.downgrade(&page, &v1_0).expect("downgrade");

    let mut group = c.benchmark_group("render one user");
    group.bench_function("1.3 (serialize, baseline)", |b| {
        b.iter(|| serde_json::to_vec(&one).expect("json"));
    });
    group.bench_function("1.0 (downgrade + serialize)", |b| {
        b.iter(|| serde_json::to_vec(&changes.downgrade(&one, &v1_0).expect("downgrade")).expect("json"));
    });
    group.finish();

    let mut group = c.benchmark_group("render a page of 100 users");
    group.bench_function("1.3 (serialize, baseline)", |b| {
        b.iter(|| serde_json::to_vec(&page).expect("json"));
    });
    group.bench_function("1.0 (downgrade + serialize)", |b| {
        b.iter(|| serde_json::to_vec(&changes.downgrade(&page, &v1_0).expect("downgrade")).expect("json"));
    });
    group.finish();
}

criterion_group!(benches, negotiation, downgrade);
criterion_main!(benches);
