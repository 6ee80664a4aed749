//! Throughput of a handler returning a user on the newest API version: `Versioned<User>`
//! behind the version layer, versus the same handler returning `Json<User>` with no versioning,
//! same run, same load generator (wrk).
//!
//! Run with: `cargo bench -p cutover-benches --bench versioning_throughput`

fn main() {
    let server = env!("CARGO_BIN_EXE_bench-server");
    cutover_benches::throughput::compare(server, "plain-user", "versioned-user", "/api/users/1", 9, 3);
    // Without the two version-list headers on successful responses (`report_versions(false)`).
    cutover_benches::throughput::compare(server, "plain-user", "versioned-user-lean", "/api/users/1", 9, 3);
}
