#!/usr/bin/env bash
# Whether the library crates can be released as they are:
#
#   1. `cargo publish --dry-run` of every publishable crate, in dependency order: each is
#      packaged, unpacked and built on its own from the `.crate` file, against the others'
#      packages, exactly as crates.io would have them (examples, benches and the test crate are
#      `publish = false`);
#   2. the library crates, with every feature, checked by the minimum supported Rust version
#      declared as `rust-version` in Cargo.toml (installed with rustup's minimal profile when
#      missing).
#
#   scripts/release-check.sh            both
#   scripts/release-check.sh publish    only 1
#   scripts/release-check.sh msrv       only 2
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

libraries=(cutover-core cutover-migrate-macros cutover-health cutover-shutdown cutover-versioning cutover-migrate cutover)
what=${1:-all}
case $what in all | publish | msrv) ;; *)
    echo "usage: $0 [publish|msrv]" >&2
    exit 2
    ;;
esac

if [[ $what == all || $what == publish ]]; then
    echo "==> cargo publish --dry-run (${libraries[*]})" >&2
    # What would be published is exactly the library crates: nothing more, nothing less.
    publishable=$(cargo metadata --format-version 1 --no-deps --locked | python3 -c '
import json, sys
print(" ".join(sorted(p["name"] for p in json.load(sys.stdin)["packages"] if p["publish"] is None)))')
    expected=$(printf '%s\n' "${libraries[@]}" | sort | xargs)
    if [[ $publishable != "$expected" ]]; then
        echo "error: the publishable crates are [$publishable], expected [$expected]" >&2
        exit 1
    fi
    started=$SECONDS
    # --workspace publishes in dependency order and resolves each crate's siblings from a local
    # registry of the packages just made, so nothing needs to be on crates.io yet.
    cargo publish --workspace --dry-run --locked --allow-dirty
    echo "    publish dry run: ${#libraries[@]} crates in $((SECONDS - started)) s" >&2
fi

if [[ $what == all || $what == msrv ]]; then
    msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
    [[ -n $msrv ]] || { echo "error: no rust-version in Cargo.toml" >&2; exit 1; }
    echo "==> Rust $msrv (the declared minimum): cargo check of the library crates, all features" >&2
    started=$SECONDS
    if ! rustup run "$msrv" rustc --version >/dev/null 2>&1; then
        rustup toolchain install "$msrv" --profile minimal --no-self-update
    fi
    packages=()
    for library in "${libraries[@]}"; do packages+=(-p "$library"); done
    # Its own target directory: another compiler's artifacts never mix with the main build's.
    CARGO_TARGET_DIR=target/msrv cargo "+$msrv" check --locked --all-features "${packages[@]}"
    echo "    Rust $msrv builds the library crates ($((SECONDS - started)) s)" >&2
fi
