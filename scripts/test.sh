#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: start (or find) the backing services, then
# check formatting, lints, deployment files and docs, run every test (the zero-downtime
# harness included) against the real services, and check that the library crates publish and
# build with the declared minimum Rust version.
#
#   scripts/test.sh                 everything
#   scripts/test.sh -p cutover-health    extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }

scripts/services.sh up
# shellcheck source=/dev/null
source target/services.env

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy (all targets, all features, warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
step "cutover-migrate with one backend alone (a MongoDB-only build has no sqlx, a SQL one no MongoDB driver)"
for backend in postgres sqlite mongodb; do
    cargo clippy -p cutover-migrate --lib --no-default-features --features "$backend" --locked -- -D warnings
done
step "feature sets: the README's dependency lines in a crate of their own, and each facade feature alone"
scripts/check-features.sh
step "deployment files (hadolint, kubernetes-validate, docker-compose, nginx, haproxy, actionlint)"
scripts/validate-deploy.sh
step "cargo test (all features, real services)"
cargo test --workspace --all-features --locked "$@"
step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --locked --quiet
step "release: cargo publish --dry-run of the library crates, and the minimum Rust version"
scripts/release-check.sh
step "all checks passed"
