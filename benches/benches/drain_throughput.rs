//! Throughput of a hello-world axum server with cutover (drain layer, probe routes, graceful
//! shutdown) versus the same router served bare, measured in the same run with the same load
//! generator (wrk, from Debian's `wrk` package).
//!
//! Run with: `cargo bench -p cutover-benches --bench drain_throughput`

fn main() {
    cutover_benches::throughput::compare(env!("CARGO_BIN_EXE_bench-server"), "bare", "cutover", "/", 9, 3);
}
