//! Throughput of everything `cutover::Service` puts around an app by default (limits, request
//! ids, trace spans, caught panics, drain, problem bodies) plus Prometheus request metrics and
//! the version layer, against the same router served bare with `axum::serve`: the same
//! load generator (wrk), alternating rounds, one run. Then the same with a JSON log subscriber
//! at INFO, which writes one access line per request.
//!
//! Run with: `cargo bench -p cutover-benches --bench stack_throughput` (goal: ≥ 0.95 without
//! logging).

fn main() {
    let binary = env!("CARGO_BIN_EXE_bench-server");
    cutover_benches::throughput::compare(binary, "bare", "service-full", "/", 9, 3);
    cutover_benches::throughput::compare(binary, "bare", "service-full-logging", "/", 5, 3);
}
