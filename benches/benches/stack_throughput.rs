//! Throughput of everything `cutover::Service` puts around an app by default (limits, request
//! ids, trace spans, caught panics, drain, problem bodies) plus Prometheus request metrics and
//! the version layer, against what a team would assemble by hand from tower-http and `metrics`
//! with the same duties (`cutover_benches::tower_http_stack`), and against the same router
//! served bare with `axum::serve`: the same load generator (wrk, 32 kept-alive connections),
//! alternating rounds, one run. Each comparison runs without logs and with the same JSON log
//! subscriber at INFO, which writes one access line per request.
//!
//! Run with: `cargo bench -p cutover-benches --bench stack_throughput` (goals: ≥ 1.0 against
//! the hand-assembled stack, with logs and without).

fn main() {
    let binary = env!("CARGO_BIN_EXE_bench-server");
    let rounds = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(7);
    // `ONLY=logging` runs the comparisons whose modes contain that text.
    let only = std::env::var("ONLY").unwrap_or_default();
    for (baseline, candidate) in [
        ("tower-http-logging", "service-full-logging"),
        ("tower-http", "service-full"),
        ("bare", "service-full"),
    ] {
        if baseline.contains(&only) || candidate.contains(&only) {
            cutover_benches::throughput::compare(binary, baseline, candidate, "/", rounds, 3);
        }
    }
}
