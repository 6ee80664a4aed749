//! Wall time of one round of 5 checks that each take 100 ms: cutover runs them concurrently;
//! the baseline runs the same checks one after another, as the original brief does.
//!
//! Run with: `cargo bench -p cutover-benches --bench check_rounds`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use cutover_health::{
    Check, CheckContext, HealthRegistry,
    testing::{Behavior, StaticCheck},
};

const CHECKS: usize = 5;
const CHECK_TIME: Duration = Duration::from_millis(100);

fn slow_check() -> StaticCheck {
    StaticCheck::new(Behavior::Delay(CHECK_TIME, Box::new(Behavior::Healthy)))
}

fn rounds(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut builder = HealthRegistry::builder();
    for i in 0..CHECKS {
        builder = builder.check(format!("check-{i}"), slow_check());
    }
    let registry = builder.build().expect("registry");
    let checks: Vec<StaticCheck> = (0..CHECKS).map(|_| slow_check()).collect();

    let mut group = c.benchmark_group("round of 5 checks x 100 ms");
    group.sample_size(10);
    group.bench_function("cutover (concurrent)", |b| {
        b.to_async(&runtime).iter(|| registry.refresh());
    });
    group.bench_function("brief (sequential)", |b| {
        b.to_async(&runtime).iter(|| async {
            for check in &checks {
                check
                    .check(CheckContext::new("sequential", Duration::from_secs(2)))
                    .await
                    .expect("healthy");
            }
        });
    });
    group.finish();
}

criterion_group!(benches, rounds);
criterion_main!(benches);
