//! A hostile `Accept-Version` (1 MiB: 262,144 comma-separated versions) against an ordinary one,
//! negotiated the way the version layer does on every request. Before the limits, 45,000
//! entries took 7.75 s; now the header is refused on its length before it is read.
//!
//! Run with: `cargo bench -p cutover-benches --bench negotiation_limits` (goal: the 1 MB
//! header answered in well under 10 ms).

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use cutover_benches::users::versions;
use http::{HeaderMap, HeaderValue, Uri};

fn hostile(c: &mut Criterion) {
    let set = versions();
    let uri: Uri = "/api/users/1".parse().expect("uri");
    let mut ordinary = HeaderMap::new();
    ordinary.insert("accept-version", HeaderValue::from_static("1.2"));
    let huge = vec!["1.0"; 262_144].join(",");
    assert!(huge.len() > 1_000_000);
    let mut hostile = HeaderMap::new();
    hostile.insert("accept-version", HeaderValue::from_str(&huge).expect("header"));
    // Just under the length limit, as many entries as fit: refused on their count.
    let many = vec!["1"; 128].join(",");
    let mut crowded = HeaderMap::new();
    crowded.insert("accept-version", HeaderValue::from_str(&many).expect("header"));

    // One cold measurement first: the number the goal is about.
    let started = Instant::now();
    let refused = set.negotiate(&hostile, &uri);
    let cold = started.elapsed();
    assert!(refused.is_err(), "a 1 MB header must be refused");
    println!("1 MB Accept-Version, first request: refused in {cold:?} (goal < 10 ms)");
    assert!(cold < Duration::from_secs(1), "took {cold:?}");

    let mut group = c.benchmark_group("Accept-Version");
    group.bench_function("1.2 (ordinary, baseline)", |b| {
        b.iter(|| set.negotiate(&ordinary, &uri).expect("ok"));
    });
    group.bench_function("1 MB of versions (refused on length)", |b| {
        b.iter(|| set.negotiate(&hostile, &uri).expect_err("refused"));
    });
    group.bench_function("128 versions in 255 bytes (refused on count)", |b| {
        b.iter(|| set.negotiate(&crowded, &uri).expect_err("refused"));
    });
    group.finish();
}

criterion_group!(benches, hostile);
criterion_main!(benches);
